"""Soak: re-materialize one study many times while its inputs change, and watch for leaks.

Every iteration writes a new version of a small simulated bulk study (negative binomial
counts drawn afresh; a second contrast is added or removed every few versions, so
deg_results, the QC plots and the report change), then registers and runs it as
``dge add DIR --run`` does: ``registry.add_study``, then ``runner.run_studies`` in this one
long-lived process. After each run it measures:

- the warehouse: Parquet files (expected: one per table x study, one per cross-study table)
  and bytes, hidden temp files of atomic writes, other stray files in table folders, plot and
  report files, and files of contrasts the study no longer has;
- the catalog: every view's row count against its Parquet files' row counts (footers), and
  whether ``dge sql`` (``catalog.query``) answers;
- the registry: staging folders left by ``dge add``;
- the Dagster home (run history: grows with every run, by design) and this process's
  resident memory (``VmRSS`` in /proc/self/status).

It prints one row per iteration, then a summary, and exits with status 1 if an invariant
failed: a run failed, an extra or missing Parquet file, a temp or stray file, a file of a
removed contrast, an inconsistent catalog, a staging folder, or (from 25 iterations) memory
growth: mean RSS of the last 10 iterations above that of iterations 5-14 by more than
``MAX_RSS_GROWTH_MB``.

    .venv/bin/python bench/soak.py [--iterations 50] [--genes 200] [--home DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

STUDY_ID = "soak"
CONTRASTS = {"treat_vs_ctrl": "treat", "alt_vs_ctrl": "alt"}
"""Contrast name -> tested level (reference: ctrl); the second comes and goes."""
ARTIFACT_FOLDERS = ("qc_plots", "enrichment_plots", "reports")
MAX_RSS_GROWTH_MB = 64.0
"""Allowed growth of the mean RSS between iterations 5-14 and the last 10 (allocator noise
of a 0.5-1 GB Python process; a leak of one study's tables or figures per run exceeds it
within 20 iterations)."""


@dataclass
class Figures:
    """What one iteration measured (sizes in MB)."""

    iteration: int
    seconds: float
    ok: bool
    contrasts: int
    deg_rows: int
    parquet_files: int
    expected_files: int
    warehouse_mb: float
    artifacts: int
    temp_files: int
    stray_files: int
    removed_contrast_files: int
    staging_dirs: int
    catalog_consistent: bool
    sql_ok: bool
    dagster_mb: float
    runs: int
    rss_mb: float


def contrasts_of(version: int) -> list[str]:
    """The contrasts of a study version: the second one in versions 1, 4, 7, ..."""
    return [name for name in CONTRASTS if name == "treat_vs_ctrl" or version % 3 == 1]


def write_version(folder: Path, study_id: str, version: int, n_genes: int = 200) -> list[str]:
    """Write version ``version`` of a small bulk study to ``folder`` (replacing the files):
    3 groups x 3 samples, negative binomial counts with a DESeq2-like dispersion trend and
    planted effects, redrawn for every version. Returns its contrast names."""
    rng = np.random.default_rng(version)
    groups = np.repeat(["ctrl", "treat", "alt"], 3)
    mean = np.exp(rng.uniform(np.log(20), np.log(2000), n_genes))
    effect = {"ctrl": 0.0, "treat": 1.5, "alt": -1.0}
    lfc = np.where(rng.random((n_genes, 1)) < 0.1, [[effect[g] for g in groups]], 0.0)
    mu = mean[:, None] * rng.uniform(0.7, 1.4, len(groups)) * 2 ** lfc
    r = 1 / (0.01 + 1.5 / mean[:, None])
    samples = [f"s{i}" for i in range(len(groups))]
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rng.negative_binomial(r, r / (r + mu)), columns=samples,
                 index=pd.Index([f"g{i}" for i in range(n_genes)], name="gene_id")) \
        .to_csv(folder / "counts.tsv", sep="\t")
    pd.DataFrame({"sample": samples, "condition": groups}) \
        .to_csv(folder / "samples.tsv", sep="\t", index=False)
    names = contrasts_of(version)
    (folder / "study.yaml").write_text(yaml.safe_dump({
        "id": study_id, "kind": "bulk", "organism": "Homo sapiens",
        "title": f"Soak version {version}", "counts": "counts.tsv", "samples": "samples.tsv",
        "design": "~ condition",
        "contrasts": [{"name": name, "factor": "condition", "level": CONTRASTS[name],
                       "reference": "ctrl"} for name in names]}, sort_keys=False))
    return names


def rss_mb() -> float:
    """This process's resident memory (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def temp_files(home) -> list[Path]:
    """Hidden temp files of atomic writes (warehouse, catalog) anywhere under the data root."""
    return [p for p in home.root.rglob(".*.tmp*") if p.is_file()]


def catalog_mismatches(home) -> list[str]:
    """Tables whose catalog view's row count differs from their Parquet files' row count."""
    import pyarrow.parquet as pq

    from dge_platform.catalog import query
    from dge_platform.tables import TABLES

    wrong = []
    for name in TABLES:
        stored = sum(pq.read_metadata(p).num_rows
                     for p in (home.warehouse / name).rglob("data.parquet"))
        seen = int(query(home, f"select count(*) as n from {name}")["n"].iloc[0])
        if seen != stored:
            wrong.append(f"{name}: view {seen:,} rows, files {stored:,}")
    return wrong


def measure(home, instance, iteration: int, seconds: float, ok: bool,
            contrasts: list[str]) -> Figures:
    """The figures of the data root after one iteration (see the module docstring)."""
    from dge_platform.catalog import CatalogQueryError, query
    from dge_platform.tables import TABLES

    warehouse = home.warehouse
    parquet = list(warehouse.rglob("data.parquet"))
    tables = {p.name for p in warehouse.iterdir()} & set(TABLES)
    stray = [p for t in tables for p in (warehouse / t).rglob("*")
             if p.is_file() and p.name != "data.parquet" and not p.name.endswith(".tmp")]
    artifacts = [p for f in ARTIFACT_FOLDERS
                 for p in (warehouse / f / f"study_id={STUDY_ID}").glob("*") if p.is_file()]
    removed = [p for p in artifacts if any(c in p.name for c in CONTRASTS if c not in contrasts)]
    try:
        deg_rows = int(query(home, "select count(*) as n from deg_results")["n"].iloc[0])
        consistent, sql_ok = not catalog_mismatches(home), True
    except CatalogQueryError:
        deg_rows, consistent, sql_ok = -1, False, False
    return Figures(
        iteration=iteration, seconds=round(seconds, 1), ok=ok, contrasts=len(contrasts),
        deg_rows=deg_rows, parquet_files=len(parquet),
        expected_files=len(TABLES),  # one study: one file per table, cross-study ones too
        warehouse_mb=round(tree_bytes(warehouse) / 2**20, 2), artifacts=len(artifacts),
        temp_files=len(temp_files(home)), stray_files=len(stray),
        removed_contrast_files=len(removed),
        staging_dirs=sum(1 for p in home.studies.iterdir() if p.name.startswith(".")),
        catalog_consistent=consistent, sql_ok=sql_ok,
        dagster_mb=round(tree_bytes(home.dagster_home) / 2**20, 2),
        runs=instance.get_runs_count(), rss_mb=round(rss_mb(), 1))


def soak(home, iterations: int, n_genes: int = 200,
         on_iteration: Callable[[Figures], None] = lambda figures: None) -> list[Figures]:
    """Run ``iterations`` versions of the soak study through ``dge add --run``'s code path
    under the data root ``home`` (a ``DgeHome``); ``on_iteration`` gets each one's figures."""
    from dge_platform.registry import add_study
    from dge_platform.runner import instance_for, run_studies

    instance = instance_for(home)
    source = Path(tempfile.mkdtemp(prefix="dge-soak-source-"))
    results = []
    try:
        for iteration in range(iterations):
            contrasts = write_version(source / STUDY_ID, STUDY_ID, iteration, n_genes)
            start = time.perf_counter()
            add_study(home, source / STUDY_ID)
            outcomes = run_studies(instance, [STUDY_ID], echo=lambda line: None)
            figures = measure(home, instance, iteration, time.perf_counter() - start,
                              all(o.success for o in outcomes), contrasts)
            results.append(figures)
            on_iteration(figures)
    finally:
        shutil.rmtree(source, ignore_errors=True)
    return results


def rss_growth_mb(results: list[Figures]) -> float | None:
    """Mean RSS of the last 10 iterations minus that of iterations 5-14 (None below 25
    iterations: the first ones import and warm up, and the windows must not overlap)."""
    if len(results) < 25:
        return None
    return float(np.mean([f.rss_mb for f in results[-10:]])
                 - np.mean([f.rss_mb for f in results[5:15]]))


def problems(results: list[Figures]) -> list[str]:
    """Every invariant that failed, one line each (empty: all held)."""
    found = []
    for f in results:
        checks = {"run failed": not f.ok,
                  f"{f.parquet_files} Parquet files, expected {f.expected_files}":
                      f.parquet_files != f.expected_files,
                  f"{f.temp_files} temp file(s)": f.temp_files,
                  f"{f.stray_files} stray file(s) in table folders": f.stray_files,
                  f"{f.removed_contrast_files} file(s) of removed contrasts":
                      f.removed_contrast_files,
                  f"{f.staging_dirs} registry staging folder(s)": f.staging_dirs,
                  "catalog views disagree with the Parquet files": not f.catalog_consistent,
                  "dge sql failed": not f.sql_ok}
        found += [f"iteration {f.iteration}: {what}" for what, failed in checks.items() if failed]
    growth = rss_growth_mb(results)
    if growth is not None and growth > MAX_RSS_GROWTH_MB:
        found.append(f"memory grew {growth:.1f} MB (mean RSS, iterations 5-14 -> last 10), "
                     f"more than {MAX_RSS_GROWTH_MB:g} MB")
    return found


def summary(results: list[Figures]) -> list[str]:
    """Summary lines: timing, files, catalog, memory and Dagster run history."""
    frame = pd.DataFrame([asdict(f) for f in results])
    first, last = results[0], results[-1]
    runs = last.runs - first.runs
    growth = rss_growth_mb(results)
    per_run = (last.dagster_mb - first.dagster_mb) / runs if runs else float("nan")
    return [
        f"iterations: {len(results)}, all runs ok: {bool(frame['ok'].all())}; seconds per "
        f"iteration: median {frame['seconds'].median():.1f}, max {frame['seconds'].max():.1f}",
        f"warehouse: {last.parquet_files} Parquet files (expected {last.expected_files}) at the "
        f"end, {frame['parquet_files'].min()}-{frame['parquet_files'].max()} throughout; "
        f"{frame['warehouse_mb'].min():.2f}-{frame['warehouse_mb'].max():.2f} MB; plot/report "
        f"files {frame['artifacts'].min()}-{frame['artifacts'].max()}",
        f"left behind (max over iterations): temp files {frame['temp_files'].max()}, stray files "
        f"{frame['stray_files'].max()}, files of removed contrasts "
        f"{frame['removed_contrast_files'].max()}, registry staging folders "
        f"{frame['staging_dirs'].max()}",
        f"catalog consistent with the Parquet files: {int(frame['catalog_consistent'].sum())}/"
        f"{len(results)} iterations; dge sql answered: {int(frame['sql_ok'].sum())}/{len(results)}",
        f"RSS: {first.rss_mb:.0f} MB after iteration 0, {last.rss_mb:.0f} MB at the end, max "
        f"{frame['rss_mb'].max():.0f} MB; growth (mean of last 10 vs iterations 5-14): "
        + (f"{growth:+.1f} MB (limit {MAX_RSS_GROWTH_MB:g})" if growth is not None
           else "n/a (< 25 iterations)"),
        f"Dagster home: {first.dagster_mb:.1f} -> {last.dagster_mb:.1f} MB over {runs} runs "
        f"({per_run * 1024:.0f} KB per run; run history, kept until pruned); "
        f"{last.runs} runs recorded",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--genes", type=int, default=200, help="genes of the simulated study")
    parser.add_argument("--home", type=Path, default=None,
                        help="data root to use (default: a new temporary one, removed after)")
    args = parser.parse_args()

    from dge_platform.home import resolve_home

    root = args.home or Path(tempfile.mkdtemp(prefix="dge-soak-"))
    home = resolve_home(root).ensure()
    columns = list(Figures.__dataclass_fields__)
    print(f"soak: {args.iterations} iterations of a {args.genes}-gene study under {home.root}")
    print(" ".join(f"{c:>{max(len(c), 6)}}" for c in columns), flush=True)

    def show(figures: Figures) -> None:
        print(" ".join(f"{str(v):>{max(len(c), 6)}}" for c, v in asdict(figures).items()),
              flush=True)

    try:
        results = soak(home, args.iterations, args.genes, show)
    finally:
        if args.home is None:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print("\n".join(summary(results)))
    failed = problems(results)
    print("\n".join(["", "invariants: all held"] if not failed
                    else ["", f"invariants: {len(failed)} failed", *failed]))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
