"""Batched runs: several studies in one run over a partition key range, the backfill policy,
the daemon's split of a backfill into runs, and a failing study in a batch."""

import logging
import math
import time

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from dge_platform.definitions import defs
from dge_platform.defs.batch import (
    MAX_STUDIES_PER_RUN,
    RANGE_END_TAG,
    RANGE_START_TAG,
    study_batches,
)
from dge_platform.runner import instance_for, run_studies, run_study
from dge_platform.storage.catalog import query
from dge_platform.storage.home import resolve_home
from dge_platform.storage.tables import TABLES
from dge_platform_tests.conftest import write_screen, write_study

STUDIES = ["bulk_a", "bulk_b", "screen_c"]
SILENT = {"echo": lambda line: None}


def _write_three(home) -> None:
    """Two tiny bulk studies with different counts and one tiny one-plate screen."""
    write_study(home.studies / "bulk_a", config={"id": "bulk_a"})
    rng = np.random.default_rng(7)
    counts = pd.DataFrame(rng.poisson(40, size=(12, 6)) + 1,
                          columns=[f"s{i}" for i in range(1, 7)],
                          index=pd.Index([f"g{i}" for i in range(12)], name="gene_id"))
    write_study(home.studies / "bulk_b", config={"id": "bulk_b"}, counts=counts)
    write_screen(home.studies / "screen_c", config={"id": "screen_c"})


def _materialized(home):
    """The three studies registered and materialized in one batched run."""
    _write_three(home)
    instance = instance_for(home)
    try:
        outcomes = run_studies(instance, STUDIES, **SILENT)
        yield home, instance, outcomes
    finally:
        instance.dispose()


@pytest.fixture
def batch_home(home):
    """A batch of its own, for a test that changes the studies."""
    yield from _materialized(home)


@pytest.fixture(scope="module")
def shared_batch(tmp_path_factory):
    """One batch shared by the tests that only read it (a run costs ~20 s)."""
    root = tmp_path_factory.mktemp("batch") / "dge_home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DGE_HOME", str(root))
        mp.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        yield from _materialized(resolve_home(root).ensure())


def _table(home, table: str, study_id: str) -> pd.DataFrame:
    frame = query(home, f"select * exclude (study_id) from {table} "
                        f"where study_id = '{study_id}' order by all")
    return frame.reset_index(drop=True)


def test_one_run_per_kind_materializes_every_study(shared_batch):
    home, instance, outcomes = shared_batch
    assert [(o.study_ids, o.success) for o in outcomes] == [
        (["bulk_a", "bulk_b"], True), (["screen_c"], True), (["cross-study"], True)], \
        [o.error for o in outcomes]
    runs = instance.get_runs(dg.RunsFilter(job_name="bulk_job"))
    assert len(runs) == 1 and len(instance.get_runs()) == 3  # + screen_job, cross-study
    assert (runs[0].tags[RANGE_START_TAG], runs[0].tags[RANGE_END_TAG]) == ("bulk_a", "bulk_b")
    screen_run, = instance.get_runs(dg.RunsFilter(job_name="screen_job"))

    degs = query(home, "select study_id, count(*) n from deg_results group by 1 order by 1")
    assert degs.values.tolist() == [["bulk_a", 12], ["bulk_b", 12], ["screen_c", 60 * 4]]
    wells = query(home, "select study_id, count(*) n from well_qc group by 1")
    assert wells.values.tolist() == [["screen_c", 15]]
    # No table of one kind holds anything, not even an empty file, for another kind's study.
    for table, study_id in (("well_qc", "bulk_a"), ("compound_activity", "bulk_b"),
                            ("sample_qc", "screen_c"), ("cell_qc", "bulk_a")):
        assert not (home.warehouse / table / f"study_id={study_id}").exists(), table
    assert len(_table(home, "sample_qc", "bulk_b")) == 6
    assert len(_table(home, "compound_activity", "screen_c")) == 4

    # One materialization per study and asset of its kind, with its own row count; none of
    # another kind's assets.
    for kind, run, key, rows in (("bulk", runs[0], "deg_results", [12, 12]),
                                 ("bulk", runs[0], "raw_counts", [72, 72]),
                                 ("screen", screen_run, "deg_results", [240]),
                                 ("screen", screen_run, "well_qc", [15])):
        studies = [s for s in STUDIES if s.startswith(kind)]
        for study_id, n in zip(studies, rows):
            records = instance.fetch_materializations(dg.AssetRecordsFilter(
                asset_key=dg.AssetKey([kind, key]), asset_partitions=[study_id]),
                limit=5).records
            assert [r.run_id for r in records] == [run.run_id], (key, study_id)
            metadata = records[0].asset_materialization.metadata
            assert metadata["dagster/row_count"].value == n
            # Each study's materialization describes its columns from the table contract.
            schema = metadata["dagster/column_schema"].value
            assert [c.name for c in schema.columns] == TABLES[key].stored_columns
            assert all(c.description for c in schema.columns), (key, study_id)
    assert not instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey(["screen", "well_qc"]), asset_partitions=["bulk_a"]),
        limit=1).records
    report = instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey(["screen", "study_report"]), asset_partitions=["screen_c"]),
        limit=1).records
    assert report[0].asset_materialization.metadata["size_bytes"].value > 0
    for study_id in ("bulk_a", "screen_c"):  # one report per study of the batch, by kind
        assert (home.warehouse / "reports" / f"study_id={study_id}" / "report.html").exists()
    assert "conditions active)" in (home.warehouse / "reports" / "study_id=screen_c"
                                    / "report.html").read_text()

    # The batch's tables equal those of one run per study.
    batched = {s: _table(home, "deg_results", s) for s in ("bulk_b", "screen_c")}
    for study_id, table in batched.items():
        assert run_study(instance, study_id, **SILENT).success
        pd.testing.assert_frame_equal(_table(home, "deg_results", study_id), table)
    assert table.loc[table["contrast"] == "cpdA_10uM", "compound"].eq("cpdA").all()


def test_checks_of_a_batch_cover_every_study(shared_batch):
    _, instance, outcomes = shared_batch
    evaluations = [r.event_log_entry.dagster_event.event_specific_data
                   for r in instance.get_records_for_run(outcomes[0].run_id, limit=10_000).records
                   if r.event_log_entry.dagster_event
                   and r.event_log_entry.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]
    by_name = {e.check_name: e for e in evaluations}
    assert set(by_name) == {"raw_counts_complete", "size_factors_valid", "deg_results_valid",
                            "pathway_activity_complete", "tf_activity_complete"}
    # The toy genes (g0, g1, ...) are neither PROGENy footprint nor CollecTRI target genes:
    # nothing can be scored, which the (non-blocking) activity checks report for both studies.
    for name in ("pathway_activity_complete", "tf_activity_complete"):
        activity = by_name.pop(name)
        assert not activity.passed
        assert activity.metadata["failed_studies"].value == ["bulk_a", "bulk_b"]
        assert activity.metadata["bulk_a/unscored_contrasts"].value == ["treat_vs_ctrl"]
    for evaluation in by_name.values():
        assert evaluation.passed
        assert evaluation.metadata["failed_studies"].value == []
        assert evaluation.metadata["studies_checked"].value == ["bulk_a", "bulk_b"]
    assert by_name["deg_results_valid"].metadata["bulk_b/problems"].value == []


def test_every_asset_has_the_multi_run_backfill_policy():
    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable
            and graph.get(k).partitions_def is not None]
    # bulk 19 (ingest 4 + counting 2), screen 26, single-cell 22 (with cell_counts); each
    # with pathway_activity, tf_activity, sample_scores and design_diagnostics
    assert len(keys) == 70
    cross_study = [k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable
                   and graph.get(k).partitions_def is None]
    assert sorted(k.path[-1] for k in cross_study) == ["contrast_similarity", "gene_recurrence"]
    for key in keys:
        policy = graph.get(key).backfill_policy
        assert policy == dg.BackfillPolicy.multi_run(MAX_STUDIES_PER_RUN), key
        assert policy.max_partitions_per_run == MAX_STUDIES_PER_RUN == 10


def test_daemon_splits_a_backfill_into_batches():
    """One iteration of the daemon's backfill loop on a backfill of 21 studies requests
    ceil(21 / 10) = 3 runs over contiguous ranges, the same batches `dge run` uses. Uses
    Dagster's own daemon entry point and test utilities (internal modules): runs are queued,
    not executed."""
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.test_utils import create_test_daemon_workspace_context, instance_for_test
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.backfill import execute_backfill_iteration

    keys = [f"s{i:02d}" for i in range(2 * MAX_STUDIES_PER_RUN + 1)]
    launcher = {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"}
    with instance_for_test(overrides={"run_launcher": launcher}) as instance:
        instance.add_dynamic_partitions("bulk_studies", keys)
        graph = defs.resolve_asset_graph()
        selection = [k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable
                     and k.path[0] == "bulk"]
        instance.add_backfill(PartitionBackfill.from_asset_partitions(
            backfill_id="all_studies", asset_graph=graph, partition_names=keys,
            asset_selection=selection, backfill_timestamp=time.time(), tags={},
            dynamic_partitions_store=instance, all_partitions=False, title=None,
            description=None, run_config=None))
        target = ModuleTarget(module_name="dge_platform.definitions", attribute="defs",
                              working_directory=None, location_name="dge")
        with create_test_daemon_workspace_context(target, instance) as workspace:
            list(execute_backfill_iteration(workspace, logging.getLogger("backfill")))
        runs = instance.get_runs()

    assert len(runs) == math.ceil(len(keys) / MAX_STUDIES_PER_RUN) == 3
    ranges = sorted((r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in runs)
    assert ranges == [(b[0], b[-1]) for b in study_batches(keys, keys)]
    assert ranges == [("s00", "s09"), ("s10", "s19"), ("s20", "s20")]
    assert all(set(r.asset_selection) == set(selection) for r in runs)


def test_batches_follow_the_partition_order_and_its_gaps():
    order = ["c", "a", "d", "b", "e"]
    assert study_batches(order, ["a", "b", "c", "e"], size=2) == [["c", "a"], ["b", "e"]]
    assert study_batches(order, ["a", "d", "e"], size=10) == [["a", "d"], ["e"]]
    assert study_batches(order, ["d", "c", "a", "b", "e"], size=10) == [order]
    assert study_batches(order, []) == []


def test_broken_study_fails_the_batch_and_keeps_every_study_intact(batch_home):
    home, instance, _ = batch_home
    before = {(t, s): _table(home, t, s) for t in ("raw_counts", "deg_results", "well_qc")
              for s in STUDIES}
    # New counts for bulk_a, and a negative count for bulk_b.
    for study_id in ("bulk_a", "bulk_b"):
        counts = home.studies / study_id / "counts.tsv"
        frame = pd.read_csv(counts, sep="\t", index_col=0) + 5
        if study_id == "bulk_b":
            frame.iloc[0, 0] = -5
        frame.to_csv(counts, sep="\t")

    outcome, screen, _ = run_studies(instance, STUDIES, **SILENT)

    assert not outcome.success and outcome.study_ids == ["bulk_a", "bulk_b"]
    assert screen.success  # another kind's run is not held back
    assert outcome.failed_step == "ingest_study"
    assert outcome.error.startswith("study 'bulk_b' failed (this step covers 2 studies; none "
                                    "of them were written)")
    assert "negative counts" in outcome.error
    for (table, study_id), frame in before.items():
        pd.testing.assert_frame_equal(_table(home, table, study_id), frame)
