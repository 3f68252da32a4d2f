"""Plain helpers (functions, constants) shared by several test modules; fixtures are in
conftest.py. Test modules import these from here, never from each other."""

from __future__ import annotations

import os
import signal
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from dge_platform.counting.salmon import SalmonError, salmon_executable
from dge_platform.storage.catalog import connect, query
from dge_platform.validation import validate_study

# --- Bulk DE: planted truth and signature overlap (test_bulk_de, test_deseq_engine, ...)

def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def simulate(n_genes=2000, n_per_group=4, de_fraction=0.1, seed=7):
    """Negative-binomial counts with a DESeq2-like dispersion trend and planted fold changes."""
    rng = np.random.default_rng(seed)
    mean = np.exp(rng.uniform(np.log(20), np.log(5000), n_genes))
    dispersion = 0.01 + 1.5 / mean
    lfc = np.zeros(n_genes)
    de = rng.choice(n_genes, int(de_fraction * n_genes), replace=False)
    lfc[de] = rng.choice([-1, 1], len(de)) * rng.uniform(0.8, 2.5, len(de))
    groups = np.array(["ctrl"] * n_per_group + ["treat"] * n_per_group)
    sizes = rng.uniform(0.7, 1.4, len(groups))
    mu = mean[:, None] * sizes[None, :] * np.where(groups == "treat", 2 ** lfc[:, None], 1)
    r = 1 / dispersion[:, None]
    counts = rng.negative_binomial(r, r / (r + mu))
    samples = [f"s{i}" for i in range(len(groups))]
    frame = pd.DataFrame({"sample": samples, "condition": groups}).set_index("sample")
    return (pd.DataFrame(counts, index=[f"g{i}" for i in range(n_genes)], columns=samples),
            frame, set(f"g{i}" for i in de))



# --- Study validation (test_validation, test_enrichment)

def problems_of(folder) -> list[str]:
    report = validate_study(folder)
    assert report.study is None, "expected the study to be rejected"
    return [str(p) for p in report.problems]


def edit_yaml(folder, **changes):
    path = folder / "study.yaml"
    config = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))



# --- Salmon (test_salmon_quant, test_library_counts)

def require_salmon() -> str:
    """Salmon's path; skip without it, or fail under CI."""
    try:
        return salmon_executable()
    except SalmonError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (.ci/run should have installed it)", pytrace=False)
        pytest.skip(str(exc))



# --- dagster-webserver processes (test_webserver, test_network_binding)

STARTUP_TIMEOUT = 90.0


def _stop(proc: subprocess.Popen) -> None:
    """End the webserver and its code-server child (same process group)."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure no child of the group lingers.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return



# --- Warehouse and catalog (test_catalog, test_s3_warehouse)

def counts_frame(n: int, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"gene_id": [f"g{i}" for i in range(n)], "sample": "s1",
                         "count": range(offset, offset + n)})


def run_on(surface: str, home, sql: str) -> pd.DataFrame:
    """``sql`` through ``query`` (``dge sql``) or the notebook connection (``connect``)."""
    if surface == "query":
        return query(home, sql)
    with connect(home) as con:
        return con.sql(sql).df()


# Refused through both surfaces, whatever the warehouse ({wh}: its location; {tmp}: a local
# folder outside it holding outside.parquet). DuckDB itself would run the first two: its file
# confinement lets the warehouse be written too, so the statement check stops them.
REFUSED_BY_CONNECTION = [
    ("COPY raw_counts TO '{wh}/raw_counts/study_id=s1/data.parquet' (FORMAT parquet)",
     "COPY statements are not allowed"),
    ("EXPORT DATABASE '{wh}/dump'", "EXPORT statements are not allowed"),
    ("COPY (select 1) TO '{tmp}/x.csv'", "COPY statements are not allowed"),
    ("ATTACH '{tmp}/other.duckdb' AS other", "ATTACH statements are not allowed"),
    ("INSTALL httpfs", "LOAD statements are not allowed"),
    ("LOAD httpfs", "LOAD statements are not allowed"),
    ("select * from read_parquet('{tmp}/outside.parquet')", "refused: Permission Error"),
    ("select * from read_csv('/etc/passwd')", "refused: Permission Error"),
]
