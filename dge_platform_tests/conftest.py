"""Shared fixtures: an isolated data root, bundled real studies, and a builder for small
synthetic studies (valid by default, broken on request)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "data" / "studies"
FIXTURES = REPO / "dge_platform_tests" / "fixtures"
"""R reference outputs and small real inputs (each folder's README says how they were made)."""


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty data root, also exported as DGE_HOME/DAGSTER_HOME for code that reads them."""
    from dge_platform.storage.home import resolve_home

    root = tmp_path / "dge_home"
    monkeypatch.setenv("DGE_HOME", str(root))
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
    return resolve_home(root).ensure()


def dge(*args: str):
    """Invoke the ``dge`` CLI in process; exceptions propagate."""
    from click.testing import CliRunner

    from dge_platform.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def sql(query: str) -> pd.DataFrame:
    """A catalog query through ``dge sql`` (JSON output), as a DataFrame."""
    result = dge("sql", query, "--format", "json")
    assert result.exit_code == 0, result.output
    return pd.DataFrame(json.loads(result.output))


def copy_bundled(name: str, dest: Path) -> Path:
    """Copy a bundled study folder (data/studies/<name>) to ``dest``/<name>."""
    target = dest / name
    shutil.copytree(BUNDLED / name, target)
    return target


def write_study(folder: Path, *, config: dict | None = None, counts: pd.DataFrame | None = None,
                samples: pd.DataFrame | None = None, counts_name: str = "counts.tsv",
                samples_name: str = "samples.tsv") -> Path:
    """Write a small valid bulk study (12 genes, 3 vs 3 in two batches), with overrides."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"s{i}" for i in range(1, 7)]
    if counts is None:
        counts = pd.DataFrame(rng.poisson(50, size=(12, 6)) + 1, columns=names,
                              index=pd.Index([f"g{i}" for i in range(12)], name="gene_id"))
    if samples is None:
        samples = pd.DataFrame({"sample": names, "condition": ["ctrl"] * 3 + ["treat"] * 3,
                                "batch": ["b1", "b2", "b1", "b2", "b1", "b2"]})
    sep = "," if counts_name.removesuffix(".gz").endswith(".csv") else "\t"
    counts.to_csv(folder / counts_name, sep=sep)
    ssep = "," if samples_name.endswith(".csv") else "\t"
    samples.to_csv(folder / samples_name, sep=ssep, index=False)
    base = {"id": "toy", "kind": "bulk", "organism": "Homo sapiens", "counts": counts_name,
            "samples": samples_name, "design": "~ batch + condition", "batch": "batch",
            "contrasts": [{"name": "treat_vs_ctrl", "factor": "condition", "level": "treat",
                           "reference": "ctrl"}]}
    base.update(config or {})
    base = {k: v for k, v in base.items() if v is not None}
    (folder / "study.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    return folder


@pytest.fixture
def toy_study(tmp_path) -> Path:
    return write_study(tmp_path / "toy")


def write_screen(folder: Path, *, plates: int = 1, n_genes: int = 60, config: dict | None = None,
                 plate_map: pd.DataFrame | None = None, seed: int = 0) -> Path:
    """Write a small valid screen: per plate 6 DMSO wells, 2 compounds x 2 doses x 2 wells and
    one empty well; one counts file per plate (``counts/plate<k>.tsv``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "counts").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    genes = pd.Index([f"g{i:03d}" for i in range(n_genes)], name="gene_id")
    rows = []
    for p in range(1, plates + 1):
        layout = [("DMSO", 0.0, "control")] * 6 + [
            (c, d, "sample") for c in ("cpdA", "cpdB") for d in (1.0, 10.0) for _ in range(2)]
        layout.append(("none", 0.0, "empty"))
        for i, (compound, dose, well_type) in enumerate(layout):
            rows.append({"sample": f"P{p}_{chr(65 + i // 12)}{i % 12 + 1:02d}", "plate": f"P{p}",
                         "well": f"{chr(65 + i // 12)}{i % 12 + 1:02d}", "compound": compound,
                         "dose": dose, "dose_unit": "uM", "well_type": well_type})
    generated = pd.DataFrame(rows)
    for p, wells in generated.groupby("plate", sort=False):
        means = rng.gamma(2.0, 50.0, size=(n_genes, 1))
        counts = pd.DataFrame(rng.poisson(means, size=(n_genes, len(wells))), index=genes,
                              columns=wells["sample"].to_numpy())
        counts.loc[:, wells.loc[wells["well_type"] == "empty", "sample"]] = 0
        counts.to_csv(folder / "counts" / f"{p.lower()}.tsv", sep="\t")
    (plate_map if plate_map is not None else generated).to_csv(folder / "plate_map.tsv",
                                                               sep="\t", index=False)
    base = {"id": "toy_screen", "kind": "screen", "organism": "Homo sapiens",
            "counts": "counts/*.tsv", "plate_map": "plate_map.tsv", "control": "DMSO"}
    base.update(config or {})
    base = {k: v for k, v in base.items() if v is not None}
    (folder / "study.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    return folder


REPORT_PREFIX = "report: "


def pytest_terminal_summary(terminalreporter):
    """Print the figures tests record with ``record_property("report: <what>", value)`` (case
    counts of fuzzing, query and lock-error counts of concurrency runs), once at the end; works
    under xdist, which forwards each test's recorded properties to the controller."""
    lines = [f"{name[len(REPORT_PREFIX):]}: {value}"
             for reports in terminalreporter.stats.values() for report in reports
             for name, value in getattr(report, "user_properties", ())
             if getattr(report, "when", None) == "call" and name.startswith(REPORT_PREFIX)]
    if lines:
        terminalreporter.section("figures")
        for line in sorted(lines):
            terminalreporter.write_line(line)


def dge_process(*args: str, **popen):
    """Start the ``dge`` CLI (the environment's console script) as its own process, with this
    process's environment (``DGE_HOME`` of the ``home`` fixture) and unbuffered output, so a
    test can follow its progress line by line; stdout and stderr merged, as text. Returns
    the ``subprocess.Popen``."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONUNBUFFERED": "1", **popen.pop("env", {})}
    return subprocess.Popen([str(Path(sys.executable).with_name("dge")), *args], env=env,
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **popen)

