"""The Definitions load, validate with Dagster's own CLI, and hold one graph per study kind."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import textwrap

import dagster as dg
import pytest

from dge_platform.definitions import defs
from dge_platform.defs import KIND_ASSETS
from dge_platform.storage.tables import TABLES
from dge_platform.study.kinds import KINDS
from dge_platform_tests.conftest import REPO

SHARED = {"study_inputs", "studies", "samples", "genes", "raw_counts", "size_factors",
          "normalized_counts", "vst", "gene_dispersions", "deg_results", "enrichment",
          "pathway_activity", "tf_activity", "sample_scores", "design_diagnostics",
          "study_report"}
OWN = {"bulk": {"salmon_index", "library_counts", "sample_qc", "batch_corrected"},
       "screen": {"well_qc", "plate_position_effects", "compound_activity", "dose_response",
                  "pathway_dose_response", "compound_potency", "compound_pod",
                  "compound_similarity", "compound_signatures", "moa_retrieval",
                  "combination_effects", "combinations", "pathway_combination_effects",
                  "batch_corrected"},
       "singlecell": {"cell_counts", "cell_qc", "sc_processed", "cell_types",
                      "pseudobulk_counts", "pseudobulk_samples", "marker_genes"}}
MAX_ASSET_BODY_LINES = 15


def _graph_keys(kind: str) -> set[str]:
    graph = defs.resolve_asset_graph()
    return {k.path[-1] for k in graph.get_all_asset_keys() if k.path[0] == kind}


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_has_its_own_graph_partitions_and_job(kind):
    graph = defs.resolve_asset_graph()
    assert _graph_keys(kind) == SHARED | OWN[kind]
    for name in _graph_keys(kind):
        node = graph.get(dg.AssetKey([kind, name]))
        assert node.group_name == kind
        assert node.partitions_def.name == KINDS[kind].partitions
        # Lineage stays inside the kind's graph.
        assert {p.path[0] for p in node.parent_keys} <= {kind}, name
    for name in ("studies", "samples", "genes", "raw_counts"):
        assert dg.AssetKey([kind, "study_inputs"]) in \
            graph.get(dg.AssetKey([kind, name])).parent_keys
    job = defs.resolve_job_def(f"{kind}_job")
    assert {k.path[0] for k in job.asset_layer.executable_asset_keys} == {kind}
    assert job.partitions_def.name == KINDS[kind].partitions


def test_cross_study_tables_depend_on_every_kinds_deg_results():
    graph = defs.resolve_asset_graph()
    for name in ("gene_recurrence", "contrast_similarity"):
        assert graph.get(dg.AssetKey(name)).parent_keys == {
            dg.AssetKey([kind, "deg_results"]) for kind in KINDS}


def test_tables_shared_by_kinds_are_one_warehouse_table():
    """Every table asset is named by its warehouse table, so ``deg_results`` of every kind is
    the one table (and one catalog view) ``deg_results``."""
    graph = defs.resolve_asset_graph()
    tables = {k.path[-1] for k in graph.get_all_asset_keys()
              if graph.get(k).is_materializable and k.path[-1] in TABLES}
    assert {"deg_results", "enrichment", "samples", "well_qc", "cell_qc"} <= tables


def test_columns_have_descriptions_in_the_ui():
    node = defs.resolve_asset_graph().get(dg.AssetKey(["bulk", "deg_results"]))
    schema = node.metadata["dagster/column_schema"]
    described = {c.name: c.description for c in schema.columns}
    assert set(described) == set(TABLES["deg_results"].stored_columns)
    assert all(described.values())
    assert node.description == TABLES["deg_results"].description


def test_asset_bodies_are_thin():
    """Every asset body calls a plain pipeline step and maps its result: at most ~15 lines."""
    long = {}
    for kind, assets in KIND_ASSETS.items():
        for asset in assets:
            if not isinstance(asset, dg.AssetsDefinition):
                continue
            source = textwrap.dedent(inspect.getsource(asset.op.compute_fn.decorated_fn))
            func = next(n for n in ast.walk(ast.parse(source))
                        if isinstance(n, ast.FunctionDef))
            body = func.body[1:] if ast.get_docstring(func) else func.body
            lines = body[-1].end_lineno - body[0].lineno + 1
            if lines > MAX_ASSET_BODY_LINES:
                long[f"{kind}/{asset.op.name}"] = lines
    assert not long, long


def test_dagster_cli_validates_workspace(home):
    result = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w",
                             str(REPO / "workspace.yaml")], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Validation successful" in result.stdout + result.stderr
