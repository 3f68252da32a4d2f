"""Concurrency: studies materialized at once while catalog queries run the whole time.

Four small studies run (a) in one Dagster run with the multiprocess executor (every step a
process: concurrent Parquet writes and catalog refreshes) and (b) as four ``dge run <study>``
processes sharing one fresh Dagster instance, while a thread queries the catalog in a loop
(``catalog.query``, what ``dge sql`` runs). No query may fail or meet a lock, and every
result must be complete: a study's deg_results and raw_counts have no rows or all of them.
The figures (queries, failures, lock errors) go to the run's "figures" section.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dagster as dg
import pytest

from dge_platform.defs.batch import range_tags
from dge_platform.defs.partitions import STUDY_PARTITIONS
from dge_platform.runner import QUIET_LOGS, instance_for
from dge_platform.sim.soak import write_version
from dge_platform.storage.catalog import query
from dge_platform.storage.home import DgeHome
from dge_platform_tests.conftest import REPO, dge_process

STUDIES = ["c0", "c1", "c2", "c3"]
GENES = 200
SAMPLES = 9  # write_version: 3 groups x 3
LOCK_ERRORS = ("Could not set lock", "database is locked", "Conflicting lock")
PROBE = ("select 'deg_results' as tbl, study_id, count(*) as n from deg_results group by all "
         "union all select 'raw_counts', study_id, count(*) from raw_counts group by all")


@pytest.fixture
def four_studies(home: DgeHome) -> dict[tuple[str, str], int]:
    """Four registered studies; returns each (table, study)'s row count once materialized."""
    full = {}
    for i, study_id in enumerate(STUDIES):
        contrasts = write_version(home.study_dir(study_id), study_id, i, GENES)
        full |= {("deg_results", study_id): GENES * len(contrasts),
                 ("raw_counts", study_id): GENES * SAMPLES}
    return full


@dataclass
class QueryStats:
    """What the query loop saw."""

    queries: int = 0
    failures: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)

    def lock_errors(self, *texts: str) -> int:
        """Failures, and other texts (run output, event logs), that mention a lock."""
        return sum(any(lock in text for lock in LOCK_ERRORS) for text in [*self.failures, *texts])

    def findings(self, lock_errors: int) -> tuple[int, Counter[str], list[str]]:
        """(lock errors, failures by message, partial results): all empty when sound."""
        return lock_errors, Counter(self.failures), self.partial

    def figures(self, seconds: float, lock_errors: int) -> str:
        return (f"{self.queries} queries in {seconds:.1f} s, {len(self.failures)} failed, "
                f"{lock_errors} lock errors, {len(self.partial)} partial results")


@contextmanager
def query_loop(home: DgeHome, full: dict[tuple[str, str], int]) -> Iterator[QueryStats]:
    """Query the catalog in a thread, back to back, until the block ends; each result must
    hold every row of a study's table or none."""
    stats, stop = QueryStats(), threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                counts = query(home, PROBE)
            except Exception as err:  # every failure is a finding: counted, then asserted
                stats.failures.append(f"{type(err).__name__}: {err}")
            else:
                stats.partial += [f"{r.tbl}/{r.study_id}: {r.n} rows"
                                  for r in counts.itertuples()
                                  if r.n != full[(r.tbl, r.study_id)]]
            stats.queries += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield stats
    finally:
        stop.set()
        thread.join(timeout=60)


def assert_complete(home: DgeHome, full: dict[tuple[str, str], int]) -> None:
    counts = query(home, PROBE)
    assert {(r.tbl, r.study_id): r.n for r in counts.itertuples()} == full


def multiprocess_study_job() -> dg.JobDefinition:
    """The bulk job on the multiprocess executor (each step in its own process), built from
    the platform's definitions; step processes rebuild it by importing this module."""
    from dge_platform.definitions import defs
    from dge_platform.defs.automation import JOBS

    job = dg.define_asset_job("bulk_job_multiprocess", selection=JOBS["bulk"].selection,
                              executor_def=dg.multiprocess_executor)
    return dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(job.name)


def test_one_multiprocess_run_over_four_studies(home, four_studies, record_property):
    # Entered, the instance is the current one for loading definitions below; otherwise
    # Dagster may reach for the state storage of an instance an earlier test disposed.
    with instance_for(home) as instance:
        _multiprocess_run(home, instance, four_studies, record_property)


def _multiprocess_run(home, instance, four_studies, record_property):
    instance.add_dynamic_partitions(STUDY_PARTITIONS["bulk"].name, STUDIES)
    # Steps fork from a server that imported the definitions once; spawning a fresh
    # interpreter per step would import them for each of the job's steps.
    executor = {"max_concurrent": len(STUDIES), "start_method": {
        "forkserver": {"preload_modules": ["dge_platform.definitions"]}}}
    start = time.monotonic()
    with query_loop(home, four_studies) as stats:
        # By its package path: pytest imports this file as a top-level module, which the
        # step processes could not import (``dg.reconstructable`` would name that).
        job = dg.build_reconstructable_job("dge_platform_tests.integration.test_concurrency",
                                           multiprocess_study_job.__name__,
                                           reconstructor_working_directory=str(REPO))
        with dg.execute_job(job, instance=instance,
                            tags=range_tags(STUDIES[0], STUDIES[-1]),
                            run_config={**QUIET_LOGS, "execution": {"config": executor}}) as result:
            success, run_id = result.success, result.run_id
    seconds = time.monotonic() - start
    log = [entry.message for entry in instance.all_logs(run_id)]
    locks = stats.lock_errors(*log)
    record_property("report: concurrency, one multiprocess run of 4 studies",
                    stats.figures(seconds, locks))
    assert success, "\n".join(m for m in log if "error" in m.lower())[-3000:]
    assert_complete(home, four_studies)
    assert stats.findings(locks) == (0, Counter(), [])
    assert stats.queries > 0


def test_four_dge_run_processes_at_once(home, four_studies, record_property):
    start = time.monotonic()
    with query_loop(home, four_studies) as stats:
        runs = [dge_process("run", study_id) for study_id in STUDIES]
        outputs = [run.communicate(timeout=600)[0] for run in runs]
    seconds = time.monotonic() - start
    locks = stats.lock_errors(*outputs)
    record_property("report: concurrency, 4 dge run processes",
                    stats.figures(seconds, locks))
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output[-3000:]
    assert_complete(home, four_studies)
    assert stats.findings(locks) == (0, Counter(), [])
    statuses = [run.status for run in instance_for(home).get_runs()]
    assert statuses == [dg.DagsterRunStatus.SUCCESS] * 2 * len(STUDIES)  # studies + cross-study


# A `dge` process: registers its study once every process has imported and the go file exists.
STARTER = """
import sys, time
from pathlib import Path
from dge_platform.storage.home import resolve_home
from dge_platform.runner import instance_for, register_studies
go, ready, study_id = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
ready.touch()
deadline = time.monotonic() + 300
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.001)
register_studies(instance_for(resolve_home()), {study_id: "bulk"}, echo=print)
"""


def test_dge_processes_starting_together_on_a_fresh_instance(home, tmp_path):
    """Without the runner's instance lock, processes creating the SQLite storage at once
    failed ("table ... already exists", "dynamic partitions table ... does not exist") or
    stamped schedules.db twice, after which the instance no longer loaded."""
    go = tmp_path / "go"
    starters = [subprocess.Popen([sys.executable, "-c", STARTER, str(go),
                                  str(tmp_path / f"ready-{study_id}"), study_id],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)
                for study_id in STUDIES]
    deadline = time.monotonic() + 300
    while len(list(tmp_path.glob("ready-*"))) < len(STUDIES):
        assert time.monotonic() < deadline and all(s.poll() is None for s in starters), \
            [s.communicate()[0] for s in starters if s.poll() is not None]
        time.sleep(0.01)
    go.touch()
    outputs = [s.communicate(timeout=300)[0] for s in starters]
    assert [s.returncode for s in starters] == [0] * len(STUDIES), outputs
    registered = instance_for(home).get_dynamic_partitions(STUDY_PARTITIONS["bulk"].name)
    assert sorted(registered) == STUDIES
