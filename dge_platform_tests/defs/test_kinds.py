"""Study kinds are declared once (``study/kinds.py``), and every layer that acts per kind
covers exactly the declared kinds; a fourth kind takes the steps of the docs' checklist
(architecture page) and nothing else, shown here with a toy kind run end to end."""

from __future__ import annotations

import dagster as dg
import pytest

from dge_platform.defs import KIND_ASSETS, shared
from dge_platform.defs.partitions import STUDY_PARTITIONS
from dge_platform.defs.resources import (
    CpuBudgetResource,
    DgeHomeResource,
    H5adIOManager,
    WarehouseIOManager,
)
from dge_platform.pipelines import bulk as bulk_steps
from dge_platform.storage.catalog import query
from dge_platform.study.kinds import KINDS, KindSpec
from dge_platform.validation import CHECKS, KindValidation, validate_study
from dge_platform.validation.bulk import check_unknown_kind, summary
from dge_platform_tests.conftest import write_study

TOY = KindSpec(name="organoid", title="organoid panel", partitions="organoid_studies",
               required=(("design", "add this key"), ("contrasts", "add this key")))


def test_every_per_kind_table_covers_exactly_the_declared_kinds():
    assert set(CHECKS) == set(KINDS)
    assert set(KIND_ASSETS) == set(KINDS)
    assert set(STUDY_PARTITIONS) == set(KINDS)
    assert len({spec.partitions for spec in KINDS.values()}) == len(KINDS)


def test_a_kinds_own_keys_are_refused_in_another_kinds_study(toy_study):
    text = (toy_study / "study.yaml").read_text()
    (toy_study / "study.yaml").write_text(text + "control: DMSO\n")
    problems = [str(p) for p in validate_study(toy_study).problems]
    assert "study.yaml: control: only used by kind: screen (this study is 'bulk') -> " \
           "remove it" in problems


@pytest.fixture
def toy_kind(monkeypatch):
    """Steps 1, 3 and 5 of the checklist for a toy kind whose science is bulk's: its spec,
    its validation entry, and its graph built from the shared assets."""
    monkeypatch.setitem(KINDS, TOY.name, TOY)
    # Bulk's reading without the counting plan, and bulk's (empty) summary.
    monkeypatch.setitem(CHECKS, TOY.name, KindValidation(check_unknown_kind, summary))
    monkeypatch.setitem(STUDY_PARTITIONS, TOY.name,
                        dg.DynamicPartitionsDefinition(name=TOY.partitions))
    return [shared.study_inputs(TOY.name), shared.ingest_study(TOY.name),
            shared.deseq2(TOY.name, bulk_steps.deseq2, ("raw_counts", "samples", "genes"),
                          "As bulk."),
            shared.batch_corrected(TOY.name), shared.enrichment(TOY.name)]


def test_a_toy_kind_validates_and_runs_only_its_own_graph(home, toy_kind):
    folder = write_study(home.studies / "toy")
    text = (folder / "study.yaml").read_text().replace("kind: bulk", "kind: organoid")
    (folder / "study.yaml").write_text(text)
    report = validate_study(folder)
    assert report.problems == [] and report.study.config.kind == "organoid"

    dge_home = DgeHomeResource(root=str(home.root))
    defs = dg.Definitions(
        assets=toy_kind,
        jobs=[dg.define_asset_job("organoid_job", selection=dg.AssetSelection.groups("organoid"))],
        resources={"dge_home": dge_home, "deseq": CpuBudgetResource(n_cpus=1),
                   "warehouse_io": WarehouseIOManager(dge_home=dge_home),
                   "h5ad_io": H5adIOManager(dge_home=dge_home)})
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TOY.partitions, ["toy"])
        result = defs.resolve_job_def("organoid_job").execute_in_process(
            partition_key="toy", instance=instance)
        assert result.success
        materialized = {e.asset_key.to_user_string()
                        for e in result.get_asset_materialization_events()}
    assert "organoid/deg_results" in materialized
    assert {key.split("/")[0] for key in materialized} == {"organoid"}
    degs = query(home, "select count(*) n, count(padj) tested from deg_results "
                       "where study_id = 'toy'")
    assert degs["n"].item() > 0 and degs["tested"].item() > 0
    assert query(home, "select kind from studies where study_id = 'toy'")["kind"].item() \
        == "organoid"
