"""Shared fixtures: an isolated data root, bundled real studies, and a builder for small
synthetic studies (valid by default, broken on request)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "data" / "studies"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty data root, also exported as DGE_HOME/DAGSTER_HOME for code that reads them."""
    from dge_platform.home import resolve_home

    root = tmp_path / "dge_home"
    monkeypatch.setenv("DGE_HOME", str(root))
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
    return resolve_home(root).ensure()


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
