"""The soak study and its invariants: versions of a small simulated bulk study to
re-materialize while its inputs change, and what must hold after every run.

Every version is a small bulk study (negative binomial counts drawn afresh; a second contrast
is added or removed every few versions, so deg_results, the QC plots and the report change).
:func:`soak` registers and runs each one through the caller's ``dge add DIR --run`` and
measures, after each run:

- the warehouse: Parquet files (expected: one per table x study, one per cross-study table)
  and bytes, hidden temp files of atomic writes, other stray files in table folders, plot and
  report files, and files of contrasts the study no longer has;
- the catalog: every view's row count against its Parquet files' row counts (footers), and
  whether ``dge sql`` (``catalog.query``) answers;
- the registry: staging folders left by ``dge add``;
- the Dagster home (run history: grows with every run, by design) and this process's
  resident memory (``VmRSS`` in /proc/self/status).

:func:`problems` lists the invariants that failed: a run failed, an extra or missing Parquet
file, a temp or stray file, a file of a removed contrast, an inconsistent catalog, a staging
folder, or (from 25 iterations) memory growth: mean RSS of the last 10 iterations above that
of iterations 5-14 by more than ``MAX_RSS_GROWTH_MB``.

Used by the soak benchmark (``bench/soak.py``), its short test (``test_soak.py``) and the
fault tests (:func:`write_version`, :func:`temp_files`, :func:`catalog_mismatches`).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
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

    from dge_platform.storage.catalog import query
    from dge_platform.storage.tables import TABLES

    wrong = []
    for name in TABLES:
        stored = sum(pq.read_metadata(p).num_rows
                     for p in (home.warehouse / name).rglob("data.parquet"))
        seen = int(query(home, f"select count(*) as n from {name}")["n"].iloc[0])
        if seen != stored:
            wrong.append(f"{name}: view {seen:,} rows, files {stored:,}")
    return wrong


def measure(home, iteration: int, seconds: float, ok: bool, runs: int,
            contrasts: list[str], expected_files: int) -> Figures:
    """The figures of the data root after one iteration (see the module docstring)."""
    from dge_platform.storage.catalog import CatalogQueryError, query
    from dge_platform.storage.tables import TABLES

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
        expected_files=expected_files,
        warehouse_mb=round(tree_bytes(warehouse) / 2**20, 2), artifacts=len(artifacts),
        temp_files=len(temp_files(home)), stray_files=len(stray),
        removed_contrast_files=len(removed),
        staging_dirs=sum(1 for p in home.studies.iterdir() if p.name.startswith(".")),
        catalog_consistent=consistent, sql_ok=sql_ok,
        dagster_mb=round(tree_bytes(home.dagster_home) / 2**20, 2),
        runs=runs, rss_mb=round(rss_mb(), 1))


def soak(home, iterations: int, add_and_run: Callable[[Path], tuple[bool, int]],
         expected_files: int, n_genes: int = 200,
         on_iteration: Callable[[Figures], None] = lambda figures: None) -> list[Figures]:
    """Run ``iterations`` versions of the soak study under the data root ``home`` (a
    ``DgeHome``); ``on_iteration`` gets each one's figures.

    ``add_and_run(folder)`` registers and runs a version as ``dge add DIR --run`` does
    (``registry.add_study``, then ``runner.run_studies`` in the caller's long-lived process)
    and returns whether every run succeeded and how many runs the Dagster instance has
    recorded: the caller brings the registry and Dagster, which this layer does not import.
    ``expected_files``: the Parquet files the study's tables and the cross-study tables make
    (one each)."""
    source = Path(tempfile.mkdtemp(prefix="dge-soak-source-"))
    results = []
    try:
        for iteration in range(iterations):
            contrasts = write_version(source / STUDY_ID, STUDY_ID, iteration, n_genes)
            start = time.perf_counter()
            ok, runs = add_and_run(source / STUDY_ID)
            figures = measure(home, iteration, time.perf_counter() - start, ok, runs, contrasts,
                              expected_files)
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
