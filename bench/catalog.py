"""The DuckDB catalog at scale: the platform's warehouse layout against a naive one, same run.

Generates ``--studies`` x ``--contrasts`` x ``--genes`` rows of realistic ``deg_results``
(default 200 x 50 x 20,000 = 200 M rows) and writes them twice:

* platform: each study through the platform's own ``Warehouse.write`` into a temporary
  DGE_HOME, then ``refresh_catalog``; queried with ``catalog.query(home, sql)``, which is what
  ``dge sql`` runs (a fresh read-only connection per query);
* naive: one unsorted Parquet file per study x contrast (rows shuffled, default pyarrow
  settings, ``study_id`` as a column) and a DuckDB view over ``*.parquet`` on a plain
  connection.

Five cookbook-style queries are timed on both (median of 3 runs after one warm-up); prints
query, platform seconds, naive seconds and naive / platform, plus generation time and bytes
on disk of both layouts.

    .venv/bin/python bench/catalog.py [--studies 200] [--contrasts 50] [--genes 20000] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.special import ndtr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SEED = 7
STUDY = "S0003"


def gene_pool(n_genes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed gene ids, symbols and per-gene DE propensity shared by every study."""
    rng = np.random.default_rng(SEED)
    ids = np.array([f"ENSG{i:011d}" for i in range(100000, 100000 + n_genes)], dtype=object)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    stems = rng.choice(letters, size=(n_genes, 5))
    lengths = rng.integers(2, 6, n_genes)
    symbols = np.array([f"{''.join(s[:k])}{i % 97 + 1}" for i, (s, k)
                        in enumerate(zip(stems, lengths))], dtype=object)
    # Unique, deterministic symbols: the suffix keeps stems with the same letters apart.
    _, first = np.unique(symbols, return_index=True)
    dup = np.ones(n_genes, bool)
    dup[first] = False
    symbols[dup] = [f"{s}-{i}" for i, s in zip(np.flatnonzero(dup), symbols[dup])]
    propensity = rng.beta(0.5, 9.5, n_genes)  # mean 0.05: some genes respond everywhere
    return ids, symbols, propensity


def bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg per row, NaN-aware (NaN stays NaN)."""
    out = np.full_like(p, np.nan)
    for r in range(p.shape[0]):
        ok = np.flatnonzero(~np.isnan(p[r]))
        order = ok[np.argsort(p[r, ok])]
        m = len(order)
        q = p[r, order] * m / np.arange(1, m + 1)
        q = np.minimum.accumulate(q[::-1])[::-1]
        out[r, order] = np.minimum(q, 1.0)
    return out


def study_frame(index: int, contrasts: list[str], pool) -> pd.DataFrame:
    """One study's deg_results as the bulk asset emits them (contrast-major, gene order)."""
    ids, symbols, propensity = pool
    rng = np.random.default_rng(SEED + 1000 + index)
    n_c, n_g = len(contrasts), len(ids)
    base_mean = np.exp(rng.normal(3.5, 2.0, n_g))
    se = 0.15 + 1.5 / np.sqrt(base_mean + 0.5)
    de = rng.random((n_c, n_g)) < propensity * 0.8
    true_lfc = np.where(de, rng.choice([-1, 1], (n_c, n_g)) * rng.gamma(4.0, 0.5, (n_c, n_g)),
                        0.0)
    lfc = true_lfc + rng.normal(0, 1, (n_c, n_g)) * se
    stat = lfc / se
    pvalue = 2 * ndtr(-np.abs(stat))
    filtered = np.broadcast_to(base_mean < 1.0, (n_c, n_g))  # independent filtering
    padj = bh(np.where(filtered, np.nan, pvalue))
    shrunk = lfc / (1 + se ** 2)
    frame = pd.DataFrame({
        "contrast": np.repeat(np.array(contrasts, dtype=object), n_g),
        "gene_id": np.tile(ids, n_c),
        "gene_symbol": np.tile(symbols, n_c),
        "base_mean": np.tile(base_mean, n_c),
        "log2_fold_change": lfc.ravel(),
        "lfc_se": np.tile(se, n_c),
        "stat": stat.ravel(),
        "pvalue": pvalue.ravel(),
        "padj": padj.ravel(),
        "log2_fold_change_shrunk": shrunk.ravel(),
        "significant": np.nan_to_num(padj.ravel(), nan=1.0) < 0.05,
        "compound": None,
        "dose": np.nan,
        "cell_type": None,
    })
    return frame


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def queries(gene: str, contrast: str) -> list[tuple[str, str]]:
    return [
        ("1 top 20 of one contrast",
         "select gene_symbol, base_mean, log2_fold_change, padj from deg_results "
         f"where study_id = '{STUDY}' and contrast = '{contrast}' and padj is not null "
         "order by padj, gene_symbol limit 20"),
        ("2 DEG counts per study x contrast",
         "select study_id, contrast, "
         "count(*) filter (where significant and log2_fold_change > 0) as up, "
         "count(*) filter (where significant and log2_fold_change < 0) as down "
         "from deg_results group by all order by 1, 2"),
        ("3 genes significant in >= 3 studies",
         "select gene_symbol, count(distinct study_id) as studies, count(*) as signatures "
         "from deg_results where significant group by 1 "
         "having count(distinct study_id) >= 3 order by signatures desc, gene_symbol"),
        ("4 contrasts where a gene is significant",
         "select study_id, contrast, log2_fold_change, padj from deg_results "
         f"where gene_symbol = '{gene}' and significant order by padj"),
        ("5 one gene's log2FC everywhere",
         "select study_id, contrast, log2_fold_change from deg_results "
         f"where gene_symbol = '{gene}' order by 1, 2"),
    ]


def timed(run, repeats: int = 3) -> tuple[float, pd.DataFrame]:
    result = run()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--contrasts", type=int, default=50)
    parser.add_argument("--genes", type=int, default=20000)
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--unsorted", action="store_true",
                        help="write the platform files as before sort_by and row groups: "
                             "unsorted, pyarrow's default row group size (for comparison)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to generate (default: a new folder under $TMPDIR)")
    args = parser.parse_args()

    import duckdb

    from dge_platform.storage import warehouse as warehouse_module
    from dge_platform.storage.catalog import query, refresh_catalog
    from dge_platform.storage.home import resolve_home
    from dge_platform.storage.warehouse import Warehouse

    if args.unsorted:
        warehouse_module.ROW_GROUP_ROWS = None
        warehouse_module._sorted = lambda table, arrow: arrow

    root = Path(tempfile.mkdtemp(prefix="dge_catalog_bench_", dir=args.dir))
    home = resolve_home(root / "home").ensure()
    naive = root / "naive"
    naive.mkdir()
    warehouse = Warehouse(home.warehouse)
    pool = gene_pool(args.genes)
    contrasts = [f"treat{c:02d}_vs_ctrl" for c in range(args.contrasts)]
    rows = args.studies * args.contrasts * args.genes
    print(f"platform layout: {'unsorted, default row groups' if args.unsorted else 'sorted'}")
    print(f"{args.studies} studies x {args.contrasts} contrasts x {args.genes:,} genes = "
          f"{rows:,} rows under {root}", flush=True)

    t_gen = t_platform = t_naive = 0.0
    rng = np.random.default_rng(SEED)
    for s in range(args.studies):
        study_id = f"S{s:04d}"
        t0 = time.perf_counter()
        frame = study_frame(s, contrasts, pool)
        t1 = time.perf_counter()
        warehouse.write("deg_results", study_id, frame)
        t2 = time.perf_counter()
        table = pa.Table.from_pandas(frame.assign(study_id=study_id), preserve_index=False)
        for c, name in enumerate(contrasts):
            part = table.slice(c * args.genes, args.genes)
            part = part.take(rng.permutation(args.genes))
            pq.write_table(part, naive / f"{study_id}__{name}.parquet")
        t3 = time.perf_counter()
        t_gen, t_platform, t_naive = t_gen + t1 - t0, t_platform + t2 - t1, t_naive + t3 - t2
        if s % 10 == 0 or s == args.studies - 1:
            print(f"  study {s + 1}/{args.studies}: generate {t_gen:.0f} s, platform write "
                  f"{t_platform:.0f} s, naive write {t_naive:.0f} s", flush=True)
    refresh_catalog(home, force=True)

    platform_bytes = dir_bytes(home.warehouse / "deg_results")
    naive_bytes = dir_bytes(naive)
    naive_con = duckdb.connect()
    naive_con.execute(f"create view deg_results as select * from "
                      f"read_parquet('{naive}/*.parquet')")
    gene = pool[1][int(np.argmax(pool[2]))]  # the most often significant gene
    results = []
    for label, sql in queries(gene, contrasts[len(contrasts) // 2]):
        t_plat, r_plat = timed(lambda sql=sql: query(home, sql))
        t_naive_q, r_naive = timed(lambda sql=sql: naive_con.execute(sql).df())
        same = r_plat.reset_index(drop=True).equals(
            r_naive[r_plat.columns].reset_index(drop=True))
        results.append((label, t_plat, t_naive_q, len(r_plat), same))
        print(f"  {label}: platform {t_plat:.3f} s, naive {t_naive_q:.3f} s "
              f"({len(r_plat)} rows, same result: {same})", flush=True)
    naive_con.close()

    print()
    print(f"deg_results: {rows:,} rows; generation {t_gen:.0f} s; writes: platform "
          f"{t_platform:.0f} s, naive {t_naive:.0f} s")
    n_platform = len(list((home.warehouse / "deg_results").glob("study_id=*/*.parquet")))
    print(f"on disk: platform {platform_bytes / 1e9:.2f} GB ({n_platform} files), naive "
          f"{naive_bytes / 1e9:.2f} GB ({len(list(naive.glob('*.parquet')))} files)")
    print()
    print("| query | platform `dge sql` (s) | naive (s) | naive / platform |")
    print("|---|---|---|---|")
    for label, t_plat, t_naive_q, _, _ in results:
        print(f"| {label} | {t_plat:.3f} | {t_naive_q:.3f} | {t_naive_q / t_plat:.1f}x |")
    if args.keep:
        print(f"\nkept: {root}")
    else:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
