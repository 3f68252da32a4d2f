"""Steps on Celery workers, for real on loopback: two ``dagster-celery worker start`` processes
(deploy/celery.yaml, one slot each) on a Redis broker share the Postgres-backed instance of
deploy/dagster.yaml; ``dagster job execute`` runs the study job over a batch of studies with
``DGE_EXECUTOR=celery``. The event log shows which worker process ran each step, the studies'
tables are complete, and with the dge_heavy pool at 1 no two heavy steps overlapped."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import dagster as dg
import pytest

from dge_platform.definitions import defs  # before DGE_EXECUTOR is set: default executor here
from dge_platform.defs.batch import HEAVY_POOL, range_tags
from dge_platform.defs.partitions import STUDY_PARTITIONS
from dge_platform.runner import instance_for
from dge_platform.storage.catalog import query
from dge_platform.storage.home import DgeHome
from dge_platform_tests.conftest import REPO, write_screen
from dge_platform_tests.services import (  # noqa: F401
    Postgres,
    Redis,
    postgres_server,
    redis_server,
)

STUDIES = ["celery_a", "celery_b", "celery_c"]
WORKERS = ("dge_w1", "dge_w2")
BIN = Path(sys.executable).parent
Workers = dict[str, subprocess.Popen]
RUN_TIMEOUT = 300.0


@pytest.fixture
def celery_home(home: DgeHome, postgres_server: Postgres,  # noqa: F811
                redis_server: Redis, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                tmp_path: Path) -> Iterator[tuple[DgeHome, dg.DagsterInstance, Workers]]:
    """Three registered screens, the instance on a fresh Postgres database with the heavy pool
    at 1, and two starting workers; yields (home, instance, {worker name: process}). Screens,
    because their graph has heavy steps ready at the same time (compound_activity and
    dose_response after deseq2), which only the pool keeps apart."""
    db = f"dge_{uuid.uuid4().hex[:12]}"
    postgres_server.create_database(db)
    env = {**postgres_server.env(db), "DGE_EXECUTOR": "celery",
           "DGE_CELERY_BROKER": redis_server.url(0), "DGE_CELERY_BACKEND": redis_server.url(1),
           "DGE_N_CPUS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    shutil.copy(REPO / "deploy" / "dagster.yaml", home.dagster_home / "dagster.yaml")
    for i, study_id in enumerate(STUDIES):
        write_screen(home.studies / study_id, config={"id": study_id}, seed=i)
    instance = instance_for(home)
    instance.add_dynamic_partitions(STUDY_PARTITIONS["screen"].name, STUDIES)
    # What `dagster instance concurrency set dge_heavy 1` does.
    instance.event_log_storage.set_concurrency_slots(HEAVY_POOL, 1)
    workers = {name: _start_worker(name, tmp_path / f"{name}.log") for name in WORKERS}
    try:
        yield home, instance, workers
    finally:
        _stop(list(workers.values()))
        instance.dispose()


def _start_worker(name: str, log: Path) -> subprocess.Popen:
    """``dagster-celery worker start`` in its own process group (it runs celery as a child).
    ``-i`` imports the definitions before the pool process forks, so no step pays for it."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
             "-y", str(REPO / "deploy" / "celery.yaml"), "-n", name,
             "-i", "dge_platform.definitions", "--",
             "--concurrency=1", "--without-gossip", "--without-mingle"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(processes: list[subprocess.Popen], timeout: float = 5.0) -> None:
    """Warm shutdown of the workers' process groups (the CLI, celery and its pool process),
    all at once; a group still running after ``timeout`` is killed (they hold nothing: the
    broker and database are thrown away)."""
    for process in processes:
        _signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        while time.monotonic() < deadline and (process.poll() is None
                                               or any(p.group == process.pid for p in _procs())):
            time.sleep(0.1)
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass  # the whole group has exited


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@dataclass(frozen=True)
class _Proc:
    pid: int
    parent: int
    group: int


def _procs() -> list[_Proc]:
    """Running processes (zombies excluded), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue  # exited meanwhile
        if state != "Z":
            found.append(_Proc(int(stat.parent.name), int(parent), int(group)))
    return found


def _descendants(pid: int) -> set[int]:
    """Every running process below ``pid`` (the celery main process and its pool child)."""
    children: dict[int, list[int]] = {}
    for proc in _procs():
        children.setdefault(proc.parent, []).append(proc.pid)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def test_steps_run_on_both_workers_and_heavy_steps_never_overlap(celery_home, tmp_path,
                                                                 record_property):
    home, instance, workers = celery_home
    # Launched while the workers start: its steps wait in the broker's queue meanwhile.
    start = time.monotonic()
    with (tmp_path / "run.log").open("wb") as out:
        launched = subprocess.run(
            [str(BIN / "dagster"), "job", "execute", "-m", "dge_platform.definitions",
             "-j", "screen_job", "--tags", json.dumps(range_tags(STUDIES[0], STUDIES[-1]))],
            stdout=out, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT, check=False)
    seconds = time.monotonic() - start
    logs = {name: tmp_path / f"{name}.log" for name in ["run", *WORKERS]}
    assert launched.returncode == 0, "\n".join(f"{n}:\n{_tail(p)}" for n, p in logs.items())
    processes = {name: _descendants(process.pid) for name, process in workers.items()}

    [run] = instance.get_runs(dg.RunsFilter(job_name="screen_job"))
    assert run.status == dg.DagsterRunStatus.SUCCESS
    events = [entry for entry in instance.all_logs(run.run_id) if entry.dagster_event]
    starts = {e.step_key: e for e in events if e.dagster_event.event_type_value == "STEP_START"}
    ends = {e.step_key: e for e in events if e.dagster_event.event_type_value == "STEP_SUCCESS"}
    assert set(starts) == set(ends) and len(starts) >= 10

    # Which worker ran each step: the worker name Celery recorded, and the pid of the process
    # that emitted STEP_START, which must belong to that worker's process tree.
    ran_on = {e.step_key: e.dagster_event.engine_event_data.metadata["Celery worker"].value
              .split("@")[0] for e in events
              if e.dagster_event.event_type_value == "ENGINE_EVENT"
              and "Celery worker" in e.dagster_event.engine_event_data.metadata}
    assert set(ran_on) == set(starts)
    for step, worker in ran_on.items():
        assert starts[step].dagster_event.pid in processes[worker], step
    per_worker = Counter(ran_on.values())
    assert set(per_worker) == set(WORKERS) and min(per_worker.values()) >= 2, per_worker

    # Pool dge_heavy at 1: heavy steps ran one after the other...
    heavy = _heavy_steps()
    spans = sorted((starts[s].timestamp, ends[s].timestamp, s) for s in heavy)
    # deseq2, compound_activity, dose_response, enrichment, sample_scores, combinations
    assert len(spans) == 6
    for (_, end, step), (start_next, _, step_next) in pairwise(spans):
        assert start_next >= end, f"{step_next} started before {step} ended"
    # ...and the limit is what kept them apart: a heavy step whose inputs were ready before
    # another heavy step started was only submitted once that one had ended.
    snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    ready = {step.key: max([ends[h.step_key].timestamp for i in step.inputs
                            for h in i.upstream_output_handles], default=0.0)
             for step in snapshot.steps}
    submitted = {e.step_key: e.timestamp for e in events
                 if (e.user_message or "").startswith("Submitting celery task")}
    waited = {(b, a) for b in heavy for a in heavy - {b}
              if ready[b] <= starts[a].timestamp and submitted[b] >= ends[a].timestamp}
    assert waited, spans

    # Every study's tables are complete: 60 genes x 4 conditions, 15 wells each.
    counts = query(home, """
        select study_id, (select count(*) from deg_results d where d.study_id = s.study_id),
               (select count(*) from well_qc q where q.study_id = s.study_id)
        from studies s order by 1""")
    assert counts.to_numpy().tolist() == [[s, 240, 15] for s in STUDIES]
    assert all((home.warehouse / "reports" / f"study_id={s}" / "report.html").is_file()
               for s in STUDIES)
    record_property("report: celery run of 3 studies (s)", round(seconds, 1))
    record_property("report: celery steps per worker", dict(sorted(per_worker.items())))
    record_property("report: heavy steps held back by the pool (step, behind)", sorted(waited))


def _heavy_steps() -> set[str]:
    job = defs.resolve_job_def("screen_job")
    return {name for name, node in job.graph.node_dict.items()
            if node.definition.pool == HEAVY_POOL}
