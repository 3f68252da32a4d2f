"""Run study partitions through Dagster from the command line, recorded in the same instance
the UI reads, with step-by-step progress; several studies run in batches (one run per batch
of contiguous partitions, as a backfill does).

Several ``dge`` processes may share one instance at once: they create its storage and register
partitions one at a time (:func:`instance_lock`), and a run whose ``dge run`` process died
(killed, out of memory) is marked failed by the next ``dge run`` on that host, instead of
staying "started" forever.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from dge_platform._core.locks import file_lock
from dge_platform.defs.automation import job_name, last_ingested_hash, outdated_assets
from dge_platform.defs.batch import batch_label, batch_target, study_batches
from dge_platform.defs.partitions import STUDY_PARTITIONS
from dge_platform.storage.home import DgeHome, resolve_home
from dge_platform.study.config import read_study_yaml
from dge_platform.study.kinds import KINDS

CROSS_STUDY = "cross-study"
"""The label of the run refreshing the cross-study tables after the studies' runs."""
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
LAUNCHED_BY_TAG = "dge/launched_by"
PROCESS_TAG = "dge/process"
"""Run tag naming the ``dge run`` process executing the run (:func:`process_id`)."""
INSTANCE_LOCK = ".dge-instance.lock"
UNFINISHED = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


@dataclass
class RunOutcome:
    """How one run (one study, or a batch of studies) ended."""

    study_ids: list[str]
    run_id: str
    success: bool
    seconds: float
    failed_step: str | None = None
    error: str | None = None


@contextmanager
def instance_lock(dagster_home: str | os.PathLike) -> Iterator[None]:
    """Hold the exclusive lock of the ``dge`` processes sharing the instance in ``dagster_home``.

    Dagster's SQLite storages are not safe to create concurrently: processes that start on a
    fresh instance at once fail ("table ... already exists", "dynamic partitions table ...
    does not exist"), or stamp a schema version twice, after which the instance no longer
    loads. Registering partitions checks which exist, then inserts the others: two processes
    adding the same new study at once would both insert it. The kernel releases the lock
    when its holder dies, so a killed process never leaves it held (:func:`file_lock`).
    """
    with file_lock(Path(dagster_home) / INSTANCE_LOCK):
        yield


def instance_for(home: DgeHome) -> dg.DagsterInstance:
    """The Dagster instance stored under the data root (shared with ``dge ui``); its storage
    is created, on first use, by one process at a time (:func:`instance_lock`)."""
    home.ensure()
    os.environ["DAGSTER_HOME"] = str(home.dagster_home)
    os.environ["DGE_HOME"] = str(home.root)
    with instance_lock(home.dagster_home):
        return dg.DagsterInstance.get()


def process_id(pid: int) -> str | None:
    """``host:pid:start`` for a running process (start: its start time in clock ticks after
    boot, from /proc), which a later process reusing the pid does not share; None when no
    such process runs (or /proc is missing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); the command name in field 2 may hold spaces, so count after ')'.
    return f"{socket.gethostname()}:{pid}:{stat.rsplit(')', 1)[1].split()[19]}"


def fail_orphaned_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """Mark as failed the unfinished runs of ``dge run`` processes of this host that died.

    ``execute_in_process`` runs in the ``dge run`` process itself, and no daemon monitors it:
    when that process is killed, its run would stay "started" forever in the UI and in run
    queries. Returns the runs marked failed.
    """
    host = socket.gethostname()
    orphans = []
    for run in instance.get_runs(dg.RunsFilter(statuses=UNFINISHED,
                                               tags={LAUNCHED_BY_TAG: "dge run"})):
        owner = run.tags.get(PROCESS_TAG, "")
        owner_host, _, pid = owner.rpartition(":")[0].rpartition(":")
        if owner_host == host and pid.isdigit() and process_id(int(pid)) != owner:
            instance.report_run_failed(run, message=f"the dge run process that executed this "
                                       f"run ({owner}) died before the run ended")
            orphans.append(run)
    return orphans


def declared_kind(study_id: str) -> str:
    """The kind a registered study declares in its study.yaml (under the data root the runs'
    resources resolve, ``DGE_HOME``: :func:`instance_for` sets it). A study that declares
    none (or an unknown one) runs in the bulk graph, whose ingest step fails naming every
    problem of its study.yaml."""
    raw, _ = read_study_yaml(resolve_home().study_dir(study_id))
    kind = (raw or {}).get("kind")
    return kind if isinstance(kind, str) and kind in KINDS else "bulk"


def register_studies(instance: dg.DagsterInstance, kinds: Mapping[str, str],
                     echo: Callable[[str], None] = print) -> dict[str, list[str]]:
    """Add the studies (``{study_id: kind}``) as partitions of their kinds (new ones in the
    given order) and return every kind's partitions in order, under :func:`instance_lock`;
    first mark the runs of dead ``dge run`` processes failed (:func:`fail_orphaned_runs`),
    saying so."""
    with instance_lock(instance.root_directory):
        for run in fail_orphaned_runs(instance):
            echo(f"marked run {run.run_id[:8]} ({run.job_name}) failed: its dge run process "
                 f"{run.tags[PROCESS_TAG]} died before the run ended")
        order = {}
        for kind, partitions in STUDY_PARTITIONS.items():
            instance.add_dynamic_partitions(partitions.name,
                                            [s for s, k in kinds.items() if k == kind])
            order[kind] = instance.get_dynamic_partitions(partitions.name)
        return order


def run_studies(instance: dg.DagsterInstance, study_ids: Sequence[str],
                echo: Callable[[str], None] = print) -> list[RunOutcome]:
    """Materialize every asset of the studies in this process, printing progress: per kind,
    one run of the kind's job per batch of up to ``MAX_STUDIES_PER_RUN`` studies that are
    contiguous partitions (new studies become partitions in the given order, so a first run
    of all is one range per kind), then one run refreshing the cross-study tables when any
    study succeeded."""
    kinds = {study_id: declared_kind(study_id) for study_id in study_ids}
    order = register_studies(instance, kinds, echo)
    outcomes = [_run_batch(instance, kind, batch, echo) for kind in STUDY_PARTITIONS
                for batch in study_batches(order[kind], [s for s in study_ids
                                                         if kinds[s] == kind])]
    if any(o.success for o in outcomes):
        outcomes.append(_run(instance, "cross_study_job", [CROSS_STUDY], None, {}, echo))
    return outcomes


def run_study(instance: dg.DagsterInstance, study_id: str,
              echo: Callable[[str], None] = print) -> RunOutcome:
    """Materialize every asset of one study in one run."""
    return run_studies(instance, [study_id], echo)[0]


def _run_batch(instance: dg.DagsterInstance, kind: str, batch: list[str],
               echo: Callable[[str], None]) -> RunOutcome:
    partition_key, tags = batch_target(batch)
    return _run(instance, job_name(kind), batch, partition_key, tags, echo)


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
                                        tags={**tags, LAUNCHED_BY_TAG: "dge run",
                                              **_process_tag()})
    finally:
        done.set()
        watcher.join()
    outcome = RunOutcome(batch, run_id, result.success, time.monotonic() - start)
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            outcome.failed_step = step_name(event.step_key)
            outcome.error = _failure_text(event) or (error.message.strip() if error else None)
            break
    return outcome


def step_name(step_key: str) -> str:
    """A step as people name it: its asset or multi-asset name, without the kind prefix of the
    op (``bulk__deseq2`` -> ``deseq2``; the run's job already says which kind)."""
    return step_key.split("__", 1)[-1]


def _process_tag() -> dict[str, str]:
    """This process's :data:`PROCESS_TAG` (none where /proc is missing: no orphan detection)."""
    me = process_id(os.getpid())
    return {PROCESS_TAG: me} if me else {}


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
        return None, f"  {step_name(event.step_key)}: started"
    if event.event_type_value == "ASSET_MATERIALIZATION":
        mat = event.event_specific_data.materialization
        rows = mat.metadata.get("dagster/row_count")
        # The table's name: the kind prefix of the asset key is the run's job already.
        return mat.partition, (f"    wrote {mat.asset_key.path[-1]}"
                               + (f" ({rows.value:,} rows)" if rows else ""))
    if event.event_type_value == "ASSET_CHECK_EVALUATION":
        check = event.event_specific_data
        return check.partition, (f"    check {check.check_name}: "
                                 f"{'passed' if check.passed else 'FAILED'}")
    if event.event_type_value == "STEP_SUCCESS":
        return None, f"  {step_name(event.step_key)}: done"
    if event.event_type_value == "STEP_FAILURE":
        return None, f"  {step_name(event.step_key)}: FAILED"
    return None


def study_status(instance: dg.DagsterInstance, kind: str, study_id: str, current_hash: str,
                 versions: dict[dg.AssetKey, str]) -> str:
    """'up to date', 'inputs changed', 'code changed (...)' or 'never run' for one valid
    registered study of the kind (``versions``: the kind graph's code versions)."""
    last = last_ingested_hash(instance, kind, study_id)
    if last is None:
        return "never run"
    if last != current_hash:
        return "inputs changed"
    outdated = outdated_assets(instance, study_id, versions)
    return f"code changed ({', '.join(outdated)})" if outdated else "up to date"
