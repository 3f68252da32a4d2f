"""The Definitions load, validate with Dagster's own CLI, and hold the expected graph."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg

from dge_platform.definitions import defs
from dge_platform_tests.conftest import REPO


def test_definitions_load_with_expected_assets():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"study_inputs", "studies", "samples", "genes", "raw_counts"} <= keys
    for key in ("studies", "samples", "genes", "raw_counts"):
        node = graph.get(dg.AssetKey(key))
        assert node.partitions_def.name == "studies"
        assert dg.AssetKey("study_inputs") in node.parent_keys


def test_dagster_cli_validates_workspace(home):
    result = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w",
                             str(REPO / "workspace.yaml")], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Validation successful" in result.stdout + result.stderr
