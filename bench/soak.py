"""Soak: re-materialize one study many times while its inputs change, and watch for leaks.

Every iteration writes a new version of a small simulated bulk study (negative binomial
counts drawn afresh; a second contrast is added or removed every few versions, so
deg_results, the QC plots and the report change), then registers and runs it as
``dge add DIR --run`` does: ``registry.add_study``, then ``runner.run_studies`` in this one
long-lived process. After each run it measures the warehouse, the catalog, the registry's
staging folders, the Dagster home and this process's memory (``dge_platform.sim.soak`` lists
each figure and invariant).

It prints one row per iteration, then a summary, and exits with status 1 if an invariant
failed: a run failed, an extra or missing Parquet file, a temp or stray file, a file of a
removed contrast, an inconsistent catalog, a staging folder, or (from 25 iterations) memory
growth: mean RSS of the last 10 iterations above that of iterations 5-14 by more than
``MAX_RSS_GROWTH_MB``. The study versions, the measurements and the invariants are
:mod:`dge_platform.sim.soak`'s (the tests use them too); this script runs and reports them.

    .venv/bin/python bench/soak.py [--iterations 50] [--genes 200] [--home DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from dge_platform.sim.soak import (
    MAX_RSS_GROWTH_MB,
    STUDY_ID,
    Figures,
    problems,
    rss_growth_mb,
    soak,
)


def expected_files() -> int:
    """One Parquet file per table of the soak's (bulk) study and per cross-study table."""
    from dge_platform.defs import tables_of

    return len(tables_of("bulk")) + 2


def add_and_run(home) -> Callable[[Path], tuple[bool, int]]:
    """``dge add DIR --run`` in this one long-lived process: ``registry.add_study``, then
    ``runner.run_studies``; returns whether every run succeeded and the runs recorded."""
    from dge_platform.registry import add_study
    from dge_platform.runner import instance_for, run_studies

    instance = instance_for(home)

    def run(folder: Path) -> tuple[bool, int]:
        add_study(home, folder)
        outcomes = run_studies(instance, [STUDY_ID], echo=lambda line: None)
        return all(o.success for o in outcomes), instance.get_runs_count()

    return run


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

    from dge_platform.storage.home import resolve_home

    root = args.home or Path(tempfile.mkdtemp(prefix="dge-soak-"))
    home = resolve_home(root).ensure()
    columns = list(Figures.__dataclass_fields__)
    print(f"soak: {args.iterations} iterations of a {args.genes}-gene study under {home.root}")
    print(" ".join(f"{c:>{max(len(c), 6)}}" for c in columns), flush=True)

    def show(figures: Figures) -> None:
        print(" ".join(f"{str(v):>{max(len(c), 6)}}" for c, v in asdict(figures).items()),
              flush=True)

    try:
        results = soak(home, args.iterations, add_and_run(home), expected_files(), args.genes,
                       show)
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
