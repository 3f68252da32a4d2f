"""The study job, the sensor that registers new or changed studies, and the nightly schedule."""

import json
import os

import dagster as dg

from dge_platform.defs.batch import (
    MAX_STUDIES_PER_RUN,
    batch_label,
    batch_target,
    study_batches,
)
from dge_platform.defs.partitions import study_partitions
from dge_platform.defs.resources import DgeHomeResource
from dge_platform.home import DgeHome
from dge_platform.problems import format_problems
from dge_platform.registry import fingerprint, study_folders
from dge_platform.validation import validate_study

DATA_VERSION_TAG = "dagster/data_version"
REPROCESS_CRON_ENV = "DGE_REPROCESS_CRON"

study_job = dg.define_asset_job(
    "study_job",
    # Cross-study tables refresh once after the studies (their own job and automation).
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups("cross_study"),
    description="Materialize every asset of one study partition, or of a batch of studies "
    "(a partition key range: one step per asset covers every study of the batch).",
)


def last_ingested_hash(instance: dg.DagsterInstance, study_id: str) -> str | None:
    """Input hash recorded by the study's latest successful ingest, if any."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("studies"), asset_partitions=[study_id]),
        limit=25).records
    for record in records:
        # A run can record `studies` and still fail later; only a successful run counts.
        run = instance.get_run_by_id(record.run_id)
        if run is None or run.status != dg.DagsterRunStatus.SUCCESS:
            continue
        meta = record.asset_materialization.metadata.get("input_hash")
        return meta.value if meta is not None else None
    return None


CODE_VERSION_TAG = "dagster/code_version"


def current_code_versions() -> dict[dg.AssetKey, str]:
    """The code version of every versioned asset in the platform's definitions."""
    from dge_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    return {key: graph.get(key).code_version for key in graph.get_all_asset_keys()
            if graph.get(key).code_version}


def outdated_assets(instance: dg.DagsterInstance, study_id: str,
                    versions: dict[dg.AssetKey, str]) -> list[str]:
    """Assets whose latest materialization for the study ran older code (bump an asset's
    ``code_version`` when its method changes, and the nightly schedule re-runs the study)."""
    outdated = []
    for key, version in versions.items():
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[study_id]), limit=1).records
        if records and records[0].asset_materialization.tags.get(CODE_VERSION_TAG) != version:
            outdated.append(key.to_user_string())
    return outdated


@dg.sensor(job=study_job, minimum_interval_seconds=30,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Watches DGE_HOME/studies: a new valid study becomes a partition and runs; "
           "a changed input file (new content hash) re-runs it; an invalid study is logged with "
           "every problem and skipped until its files change.")
def study_sensor(context: dg.SensorEvaluationContext, dge_home: DgeHomeResource) -> dg.SensorResult:
    home = dge_home.home()
    seen: dict[str, str] = json.loads(context.cursor or "{}")
    known = set(context.instance.get_dynamic_partitions(study_partitions.name))
    new_keys, requests, observations = [], [], []
    for folder in study_folders(home):
        study_id, version = folder.name, fingerprint(folder)
        if seen.get(study_id) == version:
            continue
        seen[study_id] = version
        report = validate_study(folder, expected_id=study_id)
        if report.problems:
            context.log.warning(format_problems(study_id, report.problems))
            continue
        if study_id not in known:
            new_keys.append(study_id)
        observations.append(dg.AssetObservation("study_inputs", partition=study_id,
                                                tags={DATA_VERSION_TAG: version}))
        if last_ingested_hash(context.instance, study_id) != version:
            requests.append(dg.RunRequest(partition_key=study_id, run_key=f"{study_id}:{version}"))
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[study_partitions.build_add_request(new_keys)] if new_keys else [],
        asset_events=observations,
        cursor=json.dumps(seen, sort_keys=True),
    )


def _needs_reprocessing(instance: dg.DagsterInstance, home: DgeHome, study_id: str,
                        versions: dict[dg.AssetKey, str]) -> bool:
    """A registered study whose inputs changed since its last successful ingest, that never
    completed one, or whose tables older code made (a removed folder is skipped)."""
    folder = home.study_dir(study_id)
    return folder.is_dir() and (last_ingested_hash(instance, study_id) != fingerprint(folder)
                                or bool(outdated_assets(instance, study_id, versions)))


@dg.schedule(job=study_job, cron_schedule=os.environ.get(REPROCESS_CRON_ENV, "0 3 * * *"),
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Nightly: re-run every registered study whose inputs changed since its "
             "last successful ingest, that never completed one, or whose outputs were made by "
             f"an older code version of an asset, in runs of up to {MAX_STUDIES_PER_RUN} "
             "contiguous studies. Set DGE_REPROCESS_CRON to change the time.")
def nightly_reprocess(context: dg.ScheduleEvaluationContext, dge_home: DgeHomeResource):
    home = dge_home.home()
    stamp = context.scheduled_execution_time.isoformat()
    versions = current_code_versions()
    order = context.instance.get_dynamic_partitions(study_partitions.name)
    stale = [study_id for study_id in order
             if _needs_reprocessing(context.instance, home, study_id, versions)]
    for batch in study_batches(order, stale):
        partition_key, tags = batch_target(batch)
        yield dg.RunRequest(partition_key=partition_key, tags=tags,
                            run_key=f"{batch_label(batch)}:nightly:{stamp}")
