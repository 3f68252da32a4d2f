"""The study sensor and the nightly schedule, evaluated against a real Dagster instance and an
isolated data root."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from dge_platform.defs.automation import (
    DATA_VERSION_TAG,
    SCHEDULES,
    current_code_versions,
    last_ingested_hash,
    outdated_assets,
    study_sensor,
)
from dge_platform.defs.batch import RANGE_END_TAG, RANGE_START_TAG
from dge_platform.defs.resources import DgeHomeResource
from dge_platform.registry import fingerprint
from dge_platform.runner import study_status
from dge_platform_tests.conftest import copy_bundled, write_study


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def _resources(home) -> dict:
    return {"dge_home": DgeHomeResource(root=str(home.root))}


def evaluate(instance, home, cursor: str | None = None) -> dg.SensorResult:
    """One sensor tick, applied like the daemon would: new partition keys are added."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=_resources(home))
    result = study_sensor(context)
    assert isinstance(result, dg.SensorResult)
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def schedule_requests(instance, home, when: datetime) -> list[dg.RunRequest]:
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                        resources=_resources(home))
    out = {s.name: s for s in SCHEDULES}["nightly_reprocess_bulk"](context)
    if out is None:
        return []
    if isinstance(out, (dg.RunRequest, dg.SkipReason)):
        out = [out]
    return [r for r in out if isinstance(r, dg.RunRequest)]


def rewrite_counts(folder, seed: int = 1) -> None:
    """Replace counts.tsv with different (still valid) numbers."""
    counts = pd.read_csv(folder / "counts.tsv", sep="\t", index_col=0)
    rng = np.random.default_rng(seed)
    changed = pd.DataFrame(rng.poisson(80, size=counts.shape) + 1, index=counts.index,
                           columns=counts.columns)
    assert not changed.equals(counts)
    changed.to_csv(folder / "counts.tsv", sep="\t")


def test_new_valid_study_is_registered_observed_and_requested(home, instance):
    folder = write_study(home.studies / "toy")
    version = fingerprint(folder)

    result = evaluate(instance, home)

    assert [(r.partitions_def_name, list(r.partition_keys))
            for r in result.dynamic_partitions_requests] == [("bulk_studies", ["toy"])]
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.partition_key == "toy"
    assert request.job_name == "bulk_job"
    assert request.run_key == f"toy:{version}"
    observations = [e for e in result.asset_events if isinstance(e, dg.AssetObservation)]
    assert len(observations) == 1
    obs = observations[0]
    assert obs.asset_key == dg.AssetKey(["bulk", "study_inputs"])
    assert obs.partition == "toy"
    assert obs.tags[DATA_VERSION_TAG] == version
    assert json.loads(result.cursor) == {"toy": version}
    assert instance.get_dynamic_partitions("bulk_studies") == ["toy"]


def test_unchanged_study_is_not_requested_again(home, instance):
    write_study(home.studies / "toy")
    first = evaluate(instance, home)
    assert len(first.run_requests) == 1

    second = evaluate(instance, home, cursor=first.cursor)

    assert second.run_requests == []
    assert second.dynamic_partitions_requests == []
    assert second.asset_events == []
    assert json.loads(second.cursor) == json.loads(first.cursor)


def test_changed_input_file_requests_a_new_run(home, instance):
    folder = write_study(home.studies / "toy")
    first = evaluate(instance, home)
    old_key = first.run_requests[0].run_key

    rewrite_counts(folder)
    second = evaluate(instance, home, cursor=first.cursor)

    new_version = fingerprint(folder)
    assert len(second.run_requests) == 1
    request = second.run_requests[0]
    assert request.partition_key == "toy"
    assert request.run_key == f"toy:{new_version}"
    assert request.run_key != old_key
    # Already a partition: no second add request, but a new data version is observed.
    assert second.dynamic_partitions_requests == []
    assert [e.tags[DATA_VERSION_TAG] for e in second.asset_events] == [new_version]


def test_invalid_study_is_logged_and_skipped_until_changed(home, instance, capfd):
    folder = write_study(home.studies / "broken", config={"id": "broken", "kind": "nonsense"})
    version = fingerprint(folder)

    result = evaluate(instance, home)
    logged = capfd.readouterr().err

    assert result.run_requests == []
    assert result.dynamic_partitions_requests == []
    assert result.asset_events == []
    assert instance.get_dynamic_partitions("bulk_studies") == []
    # Recorded in the cursor, so it is not validated again until its files change.
    assert json.loads(result.cursor) == {"broken": version}
    # The sensor's log (shown on the tick in the UI) carries every problem.
    assert "problem(s) in study broken" in logged and "kind" in logged

    again = evaluate(instance, home, cursor=result.cursor)
    assert again.run_requests == []
    assert "broken" not in capfd.readouterr().err

    # Fixing the file makes it a new version: now it is validated and requested.
    cfg = yaml.safe_load((folder / "study.yaml").read_text())
    cfg["kind"] = "bulk"
    (folder / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    fixed = evaluate(instance, home, cursor=again.cursor)
    assert [r.partition_key for r in fixed.run_requests] == ["broken"]
    assert [list(r.partition_keys) for r in fixed.dynamic_partitions_requests] == [["broken"]]


def test_folder_name_differing_from_id_is_not_requested(home, instance, capfd):
    write_study(home.studies / "other")  # its study.yaml says id: toy

    result = evaluate(instance, home)
    logged = capfd.readouterr().err

    assert result.run_requests == []
    assert result.dynamic_partitions_requests == []
    assert instance.get_dynamic_partitions("bulk_studies") == []
    assert "differs from the study's folder name 'other'" in logged


def test_invalid_study_does_not_block_a_valid_one(home, instance):
    write_study(home.studies / "broken", config={"id": "broken", "kind": "nonsense"})
    write_study(home.studies / "toy")

    result = evaluate(instance, home)

    assert [r.partition_key for r in result.run_requests] == ["toy"]
    assert set(json.loads(result.cursor)) == {"broken", "toy"}


def test_bundled_study_is_picked_up(home, instance):
    folder = copy_bundled("pasilla", home.studies)

    result = evaluate(instance, home)

    assert [r.run_key for r in result.run_requests] == [f"pasilla:{fingerprint(folder)}"]


def test_materialized_study_is_up_to_date_until_inputs_change(home):
    from dge_platform.runner import instance_for, run_study

    folder = write_study(home.studies / "toy")
    version = fingerprint(folder)
    instance = instance_for(home)
    try:
        outcome = run_study(instance, "toy", echo=lambda line: None)
        assert outcome.success, outcome.error
        assert last_ingested_hash(instance, "bulk", "toy") == version

        # A fresh sensor (empty cursor) still observes it, but requests no run.
        fresh = evaluate(instance, home)
        assert fresh.run_requests == []
        assert fresh.dynamic_partitions_requests == []
        assert [e.tags[DATA_VERSION_TAG] for e in fresh.asset_events] == [version]

        night = datetime(2025, 1, 2, 3, 0, tzinfo=UTC)
        assert schedule_requests(instance, home, night) == []

        # A method change (bumped code_version of an asset) makes the study stale too.
        versions = current_code_versions("bulk")
        assert outdated_assets(instance, "toy", versions) == []
        bumped = {**versions, dg.AssetKey(["bulk", "deg_results"]): "bulk-next"}
        assert outdated_assets(instance, "toy", bumped) == ["bulk/deg_results"]
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("dge_platform.defs.automation.current_code_versions",
                       lambda kind=None: bumped)
            assert [r.partition_key for r in schedule_requests(instance, home, night)] == ["toy"]
            assert study_status(instance, "bulk", "toy", version, bumped) == \
                "code changed (bulk/deg_results)"
        assert study_status(instance, "bulk", "toy", version, versions) == "up to date"

        rewrite_counts(folder)
        new_version = fingerprint(folder)
        assert new_version != version

        requests = schedule_requests(instance, home, night)
        assert len(requests) == 1
        assert requests[0].partition_key == "toy"
        assert requests[0].run_key == f"toy:nightly:{night.isoformat()}"

        changed = evaluate(instance, home, cursor=fresh.cursor)
        assert [r.run_key for r in changed.run_requests] == [f"toy:{new_version}"]
    finally:
        instance.dispose()


def test_schedule_requests_registered_study_that_never_ran(home, instance):
    write_study(home.studies / "toy")
    instance.add_dynamic_partitions("bulk_studies", ["toy"])
    when = datetime(2025, 1, 2, 3, 0, tzinfo=UTC)

    assert [r.partition_key for r in schedule_requests(instance, home, when)] == ["toy"]

    # A partition whose folder was removed is skipped.
    instance.add_dynamic_partitions("bulk_studies", ["gone"])
    assert [r.partition_key for r in schedule_requests(instance, home, when)] == ["toy"]


def test_failed_ingest_is_retried(home):
    from dge_platform.runner import instance_for, run_study

    folder = write_study(home.studies / "toy")
    # A file where the raw_counts table folder should be: that output's write fails, after
    # the 'studies' output (which carries input_hash) was already materialized.
    (home.warehouse / "raw_counts").write_text("not a folder")
    instance = instance_for(home)
    try:
        outcome = run_study(instance, "toy", echo=lambda line: None)
        assert not outcome.success
        assert last_ingested_hash(instance, "bulk", "toy") != fingerprint(folder)
        night = datetime(2025, 1, 2, 3, 0, tzinfo=UTC)
        assert [r.partition_key for r in schedule_requests(instance, home, night)] == ["toy"]
    finally:
        instance.dispose()


def test_schedule_batches_contiguous_stale_studies(home, instance):
    for study_id in ("a", "b", "c"):
        write_study(home.studies / study_id, config={"id": study_id})
    instance.add_dynamic_partitions("bulk_studies", ["a", "b", "c"])
    when = datetime(2025, 1, 2, 3, 0, tzinfo=UTC)

    request, = schedule_requests(instance, home, when)

    assert request.partition_key is None
    assert request.tags == {RANGE_START_TAG: "a", RANGE_END_TAG: "c"}
    assert request.run_key == f"a..c:nightly:{when.isoformat()}"

    # Without b's folder, a..c would cover a study that is not to be run: two runs.
    shutil.rmtree(home.studies / "b")
    assert [(r.partition_key, r.tags) for r in schedule_requests(instance, home, when)] == [
        ("a", {}), ("c", {})]
