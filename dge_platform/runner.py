"""Run study partitions through Dagster from the command line, recorded in the same instance
the UI reads, with step-by-step progress; several studies run in batches (one run per batch
of contiguous partitions, as a backfill does)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dagster as dg

from dge_platform.home import DgeHome
from dge_platform.defs.automation import last_ingested_hash, outdated_assets
from dge_platform.defs.batch import batch_label, batch_target, study_batches
from dge_platform.defs.partitions import study_partitions

CROSS_STUDY = "cross-study"
"""The label of the run refreshing the cross-study tables after the studies' runs."""
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@dataclass
class RunOutcome:
    """How one run (one study, or a batch of studies) ended."""

    study_ids: list[str]
    run_id: str
    success: bool
    seconds: float
    failed_step: str | None = None
    error: str | None = None


def instance_for(home: DgeHome) -> dg.DagsterInstance:
    """The Dagster instance stored under the data root (shared with ``dge ui``)."""
    home.ensure()
    os.environ["DAGSTER_HOME"] = str(home.dagster_home)
    os.environ["DGE_HOME"] = str(home.root)
    return dg.DagsterInstance.get()


def run_studies(instance: dg.DagsterInstance, study_ids: Sequence[str],
                echo: Callable[[str], None] = print) -> list[RunOutcome]:
    """Materialize every asset of the studies in this process, printing progress: one run per
    batch of up to ``MAX_STUDIES_PER_RUN`` studies that are contiguous partitions (new
    studies become partitions in the given order, so a first run of all is one range), then
    one run refreshing the cross-study tables when any study succeeded."""
    instance.add_dynamic_partitions(study_partitions.name, list(study_ids))
    order = instance.get_dynamic_partitions(study_partitions.name)
    outcomes = [_run_batch(instance, batch, echo) for batch in study_batches(order, study_ids)]
    if any(o.success for o in outcomes):
        outcomes.append(_run(instance, "cross_study_job", [CROSS_STUDY], None, {}, echo))
    return outcomes


def run_study(instance: dg.DagsterInstance, study_id: str,
              echo: Callable[[str], None] = print) -> RunOutcome:
    """Materialize every asset of one study in one run."""
    return run_studies(instance, [study_id], echo)[0]


def _run_batch(instance: dg.DagsterInstance, batch: list[str],
               echo: Callable[[str], None]) -> RunOutcome:
    partition_key, tags = batch_target(batch)
    return _run(instance, "study_job", batch, partition_key, tags, echo)


def _run(instance: dg.DagsterInstance, job_name: str, batch: list[str],
         partition_key: str | None, tags: dict[str, str],
         echo: Callable[[str], None]) -> RunOutcome:
    from dge_platform.definitions import defs

    job = defs.resolve_job_def(job_name)
    run_id = str(uuid.uuid4())
    start = time.monotonic()
    done = threading.Event()
    watcher = threading.Thread(target=_follow,
                               args=(instance, run_id, batch_label(batch), echo, done))
    watcher.start()
    try:
        result = job.execute_in_process(partition_key=partition_key, instance=instance,
                                        run_id=run_id, raise_on_error=False,
                                        run_config=QUIET_LOGS,
                                        tags={**tags, "dge/launched_by": "dge run"})
    finally:
        done.set()
        watcher.join()
    outcome = RunOutcome(batch, run_id, result.success, time.monotonic() - start)
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            outcome.failed_step = event.step_key
            outcome.error = _failure_text(event) or (error.message.strip() if error else None)
            break
    return outcome


def _failure_text(event: dg.DagsterEvent) -> str | None:
    """The description of a raised ``dg.Failure`` (our validation report, or a batch step's
    failure naming the study), if that was it."""
    data = event.step_failure_data
    return data.user_failure_data.description if data.user_failure_data else None


def _follow(instance: dg.DagsterInstance, run_id: str, label: str,
            echo: Callable[[str], None], done: threading.Event) -> None:
    """Print step starts, materializations and step ends as the run records them; each line
    is prefixed with its study (materializations) or the run's studies (``first..last``)."""
    cursor = None
    while True:
        finished = done.is_set()
        while True:
            batch = instance.get_records_for_run(run_id, cursor=cursor)
            for record in batch.records:
                described = _describe(record.event_log_entry)
                if described:
                    study_id, line = described
                    echo(f"[{study_id or label}] {line}")
            cursor = batch.cursor
            if not batch.has_more:
                break
        if finished:
            return
        done.wait(0.5)


def _describe(entry) -> tuple[str | None, str] | None:
    """(the event's study partition if it has one, progress text) for events worth a line."""
    event = entry.dagster_event
    if event is None:
        return None
    if event.event_type_value == "STEP_START":
        return None, f"  {event.step_key}: started"
    if event.event_type_value == "ASSET_MATERIALIZATION":
        mat = event.event_specific_data.materialization
        rows = mat.metadata.get("dagster/row_count")
        return mat.partition, (f"    wrote {mat.asset_key.to_user_string()}"
                               + (f" ({rows.value:,} rows)" if rows else ""))
    if event.event_type_value == "ASSET_CHECK_EVALUATION":
        check = event.event_specific_data
        return check.partition, (f"    check {check.check_name}: "
                                 f"{'passed' if check.passed else 'FAILED'}")
    if event.event_type_value == "STEP_SUCCESS":
        return None, f"  {event.step_key}: done"
    if event.event_type_value == "STEP_FAILURE":
        return None, f"  {event.step_key}: FAILED"
    return None


def study_status(instance: dg.DagsterInstance, study_id: str, current_hash: str,
                 versions: dict[dg.AssetKey, str]) -> str:
    """'up to date', 'inputs changed', 'code changed (...)' or 'never run' for one valid
    registered study."""
    last = last_ingested_hash(instance, study_id)
    if last is None:
        return "never run"
    if last != current_hash:
        return "inputs changed"
    outdated = outdated_assets(instance, study_id, versions)
    return f"code changed ({', '.join(outdated)})" if outdated else "up to date"
