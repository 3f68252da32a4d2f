"""One job per study kind, the sensor that registers new or changed studies in their kind's
partitions, and the nightly schedules that re-run stale studies."""

import json
import os

import dagster as dg

from dge_platform._core.problems import format_problems
from dge_platform.defs import ASSETS, KIND_ASSETS
from dge_platform.defs.batch import (
    MAX_STUDIES_PER_RUN,
    batch_label,
    batch_target,
    study_batches,
)
from dge_platform.defs.partitions import STUDY_PARTITIONS
from dge_platform.defs.resources import DgeHomeResource
from dge_platform.registry import fingerprint, study_folders
from dge_platform.storage.home import DgeHome
from dge_platform.study.kinds import KINDS
from dge_platform.validation import validate_study

DATA_VERSION_TAG = "dagster/data_version"
CODE_VERSION_TAG = "dagster/code_version"
REPROCESS_CRON_ENV = "DGE_REPROCESS_CRON"

JOBS = {kind: dg.define_asset_job(
    f"{kind}_job", selection=dg.AssetSelection.groups(kind),
    description=f"Materialize every asset of one {spec.title} study, or of a batch of them (a "
    "partition key range: one step per asset covers every study of the batch).")
    for kind, spec in KINDS.items()}
"""Each kind's job: its whole graph over its partitions. Cross-study tables refresh after the
studies (their own job and automation)."""


def job_name(kind: str) -> str:
    return JOBS[kind].name


def last_ingested_hash(instance: dg.DagsterInstance, kind: str, study_id: str) -> str | None:
    """Input hash recorded by the study's latest successful ingest, if any."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey([kind, "studies"]),
                              asset_partitions=[study_id]), limit=25).records
    for record in records:
        # A run can record `studies` and still fail later; only a successful run counts.
        run = instance.get_run_by_id(record.run_id)
        if run is None or run.status != dg.DagsterRunStatus.SUCCESS:
            continue
        meta = record.asset_materialization.metadata.get("input_hash")
        return meta.value if meta is not None else None
    return None


def current_code_versions(kind: str | None = None) -> dict[dg.AssetKey, str]:
    """The code version of every versioned asset (of one kind's graph, if given)."""
    assets = ASSETS if kind is None else KIND_ASSETS[kind]
    return {key: asset.code_versions_by_key[key]
            for asset in assets if isinstance(asset, dg.AssetsDefinition)
            for key in asset.keys if asset.code_versions_by_key.get(key)}


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


@dg.sensor(jobs=list(JOBS.values()), minimum_interval_seconds=30,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Watches DGE_HOME/studies: a new valid study becomes a partition of its "
           "kind and runs its kind's job; a changed input file (new content hash) re-runs it; "
           "an invalid study is logged with every problem and skipped until its files change.")
def study_sensor(context: dg.SensorEvaluationContext, dge_home: DgeHomeResource) -> dg.SensorResult:
    home = dge_home.home()
    seen: dict[str, str] = json.loads(context.cursor or "{}")
    new_keys: dict[str, list[str]] = {kind: [] for kind in KINDS}
    requests, observations = [], []
    for folder in study_folders(home):
        study_id, version = folder.name, fingerprint(folder)
        if seen.get(study_id) == version:
            continue
        seen[study_id] = version
        report = validate_study(folder, expected_id=study_id)
        if report.problems:
            context.log.warning(format_problems(study_id, report.problems))
            continue
        kind = report.study.config.kind
        if not context.instance.has_dynamic_partition(STUDY_PARTITIONS[kind].name, study_id):
            new_keys[kind].append(study_id)
        observations.append(dg.AssetObservation(dg.AssetKey([kind, "study_inputs"]),
                                                partition=study_id,
                                                tags={DATA_VERSION_TAG: version}))
        if last_ingested_hash(context.instance, kind, study_id) != version:
            requests.append(dg.RunRequest(job_name=job_name(kind), partition_key=study_id,
                                          run_key=f"{study_id}:{version}"))
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[STUDY_PARTITIONS[kind].build_add_request(keys)
                                     for kind, keys in new_keys.items() if keys],
        asset_events=observations,
        cursor=json.dumps(seen, sort_keys=True),
    )


def needs_reprocessing(instance: dg.DagsterInstance, home: DgeHome, kind: str, study_id: str,
                       versions: dict[dg.AssetKey, str]) -> bool:
    """A registered study whose inputs changed since its last successful ingest, that never
    completed one, or whose tables older code made (a removed folder is skipped)."""
    folder = home.study_dir(study_id)
    return folder.is_dir() and (last_ingested_hash(instance, kind, study_id) != fingerprint(folder)
                                or bool(outdated_assets(instance, study_id, versions)))


def nightly_reprocess(kind: str) -> dg.ScheduleDefinition:
    """The kind's nightly schedule over its partitions."""
    @dg.schedule(name=f"nightly_reprocess_{kind}", job=JOBS[kind],
                 cron_schedule=os.environ.get(REPROCESS_CRON_ENV, "0 3 * * *"),
                 default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"Nightly: re-run every registered {KINDS[kind].title} study "
                 "whose inputs changed since its last successful ingest, that never completed "
                 "one, or whose outputs were made by an older code version of an asset, in "
                 f"runs of up to {MAX_STUDIES_PER_RUN} contiguous studies. Set "
                 "DGE_REPROCESS_CRON to change the time.")
    def schedule(context: dg.ScheduleEvaluationContext, dge_home: DgeHomeResource):
        home = dge_home.home()
        stamp = context.scheduled_execution_time.isoformat()
        versions = current_code_versions(kind)
        order = context.instance.get_dynamic_partitions(STUDY_PARTITIONS[kind].name)
        stale = [study_id for study_id in order
                 if needs_reprocessing(context.instance, home, kind, study_id, versions)]
        for batch in study_batches(order, stale):
            partition_key, tags = batch_target(batch)
            yield dg.RunRequest(partition_key=partition_key, tags=tags,
                                run_key=f"{batch_label(batch)}:nightly:{stamp}")

    return schedule


SCHEDULES = [nightly_reprocess(kind) for kind in KINDS]
