"""`dge explore` page times: the bundled warehouse, and a 200 M-row deg_results.

Targets (issue 18): every page <= 1 s on the bundled warehouse, <= 2 s on 200 M rows. A page's
time is what the server does for it: the page function (its queries and figures, the Dash
callback's work) plus the DEG grid's first 100 rows where the page has the grid. The browser's
own drawing is not in it (the browser tests check that pages render).

Baseline in the same run: the same pages over the naive layout of `bench/catalog.py` (one
unsorted Parquet file per study x contrast, a plain DuckDB view over them), so the ratio is
what the platform's sorted, partitioned warehouse buys the explorer.

    .venv/bin/python bench/explorer.py                 # bundled (data/, after make run) + 200 M
    .venv/bin/python bench/explorer.py --studies 20    # 20 M rows, quicker
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from catalog import SEED, gene_pool, study_frame  # noqa: E402

from dge_platform.explorer.app import render  # noqa: E402
from dge_platform.explorer.data import DegFilter, ExplorerData  # noqa: E402
from dge_platform.storage.catalog import (  # noqa: E402
    ALLOWED_STATEMENTS,
    CatalogConnection,
    refresh_catalog,
)
from dge_platform.storage.home import resolve_home  # noqa: E402
from dge_platform.storage.warehouse import Warehouse  # noqa: E402

TARGET_BUNDLED, TARGET_LARGE = 1.0, 2.0


class NaiveData(ExplorerData):
    """The explorer's queries with deg_results read from the naive files (a temporary view
    shadowing the catalog's); every other table is the catalog's."""

    def __init__(self, home, naive: Path):
        super().__init__(home)
        con = duckdb.connect(str(home.catalog), read_only=True)
        con.execute(f"create temp view deg_results as select * from "
                    f"read_parquet('{naive}/*.parquet')")
        self._naive = CatalogConnection(con, ALLOWED_STATEMENTS)

    def _connection(self):
        return self._naive


def page_time(data: ExplorerData, url: str, grid: tuple | None,
              repeats: int = 3) -> tuple[float, float]:
    """Seconds of a page (plus its grid's first 100 rows): the first load, and the median of
    ``repeats`` more (the explorer caches whole-warehouse summaries until the catalog
    changes)."""
    def once():
        path, _, search = url.partition("?")
        body = json.dumps(render(data, path, search), default=str)
        assert "Something went wrong" not in body, url
        if grid:
            data.deg_page(*grid, DegFilter(), None, 0, 100)

    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1:]) if repeats else times[0]


def bundled(root: Path) -> None:
    home = resolve_home(root)
    if not home.catalog.exists():
        print(f"bundled: no catalog under {root} (run `make run` first); skipped")
        return
    data = ExplorerData(home)
    pages = [("/", "studies", None), ("/studies/airway", "study (bulk)", None),
             ("/studies/airway/contrasts/dex_trt_vs_untrt", "contrast + grid",
              ("airway", "dex_trt_vs_untrt", None)),
             ("/genes/FKBP5", "gene", None), ("/studies/kang2018_pbmc", "study (single-cell)",
                                              None),
             ("/studies/macseq_pmmsq033", "study (screen)", None),
             ("/studies/macseq_pmmsq033/plates/PMMSq033", "plate", None),
             ("/studies/macseq_pmmsq033/compounds/CAMPTOTHECIN", "compound", None),
             ("/filter?up=airway%7Cdex_trt_vs_untrt%7C&unchanged=kang2018_pbmc%7Cstim_vs_ctrl"
              "%7CCD14%2B%20Monocytes", "multi-contrast filter", None)]
    print("| page (bundled warehouse) | first load (s) | again (s) | target |")
    print("|---|---|---|---|")
    for url, label, grid in pages:
        first, again = page_time(data, url, grid)
        print(f"| {label} | {first:.3f} | {again:.3f} | <= {TARGET_BUNDLED:.0f} s "
              f"{'PASS' if max(first, again) <= TARGET_BUNDLED else 'FAIL'} |", flush=True)


def large(studies: int, contrasts: int, genes: int, keep: bool) -> None:
    root = Path(tempfile.mkdtemp(prefix="dge_explore_bench_"))
    try:
        _large(root, studies, contrasts, genes)
    finally:
        if keep:
            print(f"kept: {root}")
        else:
            shutil.rmtree(root)


def _large(root: Path, studies: int, contrasts: int, genes: int) -> None:
    home = resolve_home(root / "home").ensure()
    naive = root / "naive"
    naive.mkdir()
    warehouse = Warehouse(home.warehouse)
    pool = gene_pool(genes)
    names = [f"treat{c:02d}_vs_ctrl" for c in range(contrasts)]
    rng = np.random.default_rng(SEED)
    start = time.perf_counter()
    for s in range(studies):
        study_id = f"S{s:04d}"
        frame = study_frame(s, names, pool)
        warehouse.write("deg_results", study_id, frame)
        warehouse.write("genes", study_id, frame[["gene_id", "gene_symbol"]].iloc[:genes])
        warehouse.write("studies", study_id, _study_row(study_id, names, genes))
        table = pa.Table.from_pandas(frame.assign(study_id=study_id), preserve_index=False)
        for c, name in enumerate(names):
            part = table.slice(c * genes, genes).take(rng.permutation(genes))
            pq.write_table(part, naive / f"{study_id}__{name}.parquet")
        if s % 20 == 0:
            print(f"  generated {s + 1}/{studies} studies ({time.perf_counter() - start:.0f} s)",
                  flush=True)
    refresh_catalog(home, force=True)
    rows = studies * contrasts * genes
    gene = pool[1][int(np.argmax(pool[2]))]
    mid = f"S{studies // 2:04d}"
    pages = [("/", "studies", None), (f"/studies/{mid}", "study", None),
             (f"/studies/{mid}/contrasts/{names[1]}", "contrast + grid", (mid, names[1], None)),
             (f"/genes/{gene}", "gene", None),
             (f"/filter?up=S0000%7C{names[0]}%7C&down=S0001%7C{names[0]}%7C", "filter", None)]
    # One process may not hold the catalog open twice with different settings: the
    # platform's pages first, then the baseline's.
    platform = ExplorerData(home)
    fast = [page_time(platform, url, grid) for url, _, grid in pages]
    platform.close()
    baseline = NaiveData(home, naive)
    slow = [page_time(baseline, url, grid, repeats=0) for url, _, grid in pages]
    print(f"\n| page ({rows:,} deg_results rows) | platform: first load (s) | again (s) | "
          f"naive layout, first load (s) | naive / platform | target |")
    print("|---|---|---|---|---|---|")
    for (_, label, _), (first, again), (naive_first, _) in zip(pages, fast, slow):
        print(f"| {label} | {first:.3f} | {again:.3f} | {naive_first:.3f} | "
              f"{naive_first / first:.1f}x | <= {TARGET_LARGE:.0f} s "
              f"{'PASS' if max(first, again) <= TARGET_LARGE else 'FAIL'} |", flush=True)


def _study_row(study_id: str, contrasts: list[str], genes: int):
    import pandas as pd

    spec = [{"name": c, "factor": "condition", "level": c.split("_")[0], "reference": "ctrl"}
            for c in contrasts]
    return pd.DataFrame([{
        "title": f"Synthetic study {study_id}", "kind": "bulk", "organism": "Homo sapiens",
        "design": "~ condition", "contrasts": json.dumps(spec), "alpha": 0.05,
        "lfc_threshold": 0.0, "batch": None, "n_samples": 6, "n_genes": genes,
        "counts_file": "counts.tsv", "input_hash": "", "config": json.dumps({"id": study_id}),
        "materialized_at": pd.Timestamp.now(tz="UTC")}])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=REPO / "data")
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--contrasts", type=int, default=50)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    bundled(args.home)
    if args.studies:
        large(args.studies, args.contrasts, args.genes, args.keep)


if __name__ == "__main__":
    main()
