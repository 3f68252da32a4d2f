"""Faults: kill -9 in the middle of a Parquet write, a catalog rebuild and a ``dge run``.

Afterwards no partial file may be visible (the catalog's views read complete files only, so
``dge sql`` returns the previous results), and the next write, refresh or run must succeed
without manual clean-up, leaving no temp file beyond the documented retention (a dead
writer's hidden temp file goes at the first write in its folder once older than
``STALE_TEMP_SECONDS``).

The kills are synchronised, not timed: the test polls for the victim's temp file, freezes
the process (SIGSTOP), and kills it only if the file is still there, i.e. mid-write.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from dge_platform.runner import (
    LAUNCHED_BY_TAG,
    PROCESS_TAG,
    fail_orphaned_runs,
    instance_for,
    process_id,
)
from dge_platform.sim.soak import catalog_mismatches, temp_files, write_version
from dge_platform.storage.catalog import _catalog_lock, refresh_catalog
from dge_platform.storage.tables import TABLES
from dge_platform.storage.warehouse import STALE_TEMP_SECONDS, Warehouse
from dge_platform_tests.conftest import REPO, dge, dge_process, sql

TIMEOUT = 300.0
STUDY = "k"
# Rows of the frame a killed writer writes: its temp file exists long enough to be seen.
BIG = 3_000_000

WRITER = """
import sys
import numpy as np
import pandas as pd
from dge_platform.storage.warehouse import Warehouse
root, study, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
genes = np.array([f"g{i}" for i in range(1000)], dtype=object)
frame = pd.DataFrame({"gene_id": np.resize(genes, rows), "sample": "s1",
                      "count": np.arange(rows, dtype="int64")})
while True:
    Warehouse(root).write("raw_counts", study, frame)
"""
REFRESHER = """
import sys
from dge_platform.storage.catalog import refresh_catalog
from dge_platform.storage.home import resolve_home
home = resolve_home(sys.argv[1])
while True:
    refresh_catalog(home, force=True)
"""


def python_process(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stopped(pid: int) -> bool:
    """True once the process is stopped (state T in /proc/<pid>/stat)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def kill_mid_write(proc: subprocess.Popen, temps: Callable[[], list[Path]]) -> list[Path]:
    """SIGKILL ``proc`` while it has a temp file (``temps()``): poll for one, freeze the
    process, and kill it if the file is still there (else resume it and poll on). Returns
    the temp files it left."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        if temps():
            os.kill(proc.pid, signal.SIGSTOP)
            while not _stopped(proc.pid):
                assert time.monotonic() < deadline
                time.sleep(0.001)
            left = temps()
            if left:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return left
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.001)
    proc.kill()
    raise AssertionError(f"no temp file appeared within {TIMEOUT:g} s")


def rows_frame(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"gene_id": [f"g{i}" for i in range(rows)], "sample": "s1",
                         "count": np.arange(rows, dtype="int64")})


def count(table: str) -> int:
    return int(sql(f"select count(*) as n from {table}")["n"].iloc[0])


def test_kill_during_parquet_write(home):
    warehouse = Warehouse(home.warehouse)
    warehouse.write("raw_counts", STUDY, rows_frame(1000))
    refresh_catalog(home)
    folder = warehouse.partition_path("raw_counts", STUDY).parent
    writer = python_process(WRITER, str(home.warehouse), STUDY, str(BIG))
    left = kill_mid_write(writer, lambda: list(folder.glob(".*.tmp")))

    # The view reads the last complete file: the one before the killed write (or an earlier
    # complete write of the killed writer), never the temp file.
    committed = pq.read_metadata(warehouse.partition_path("raw_counts", STUDY)).num_rows
    assert committed in (1000, BIG)
    assert count("raw_counts") == committed
    assert all(p.exists() and p.name.startswith(".") for p in left)

    # The next write succeeds; the dead writer's temp stays until it is older than the
    # retention, then the next write in the folder removes it.
    warehouse.write("raw_counts", STUDY, rows_frame(500))
    assert count("raw_counts") == 500
    assert all(p.exists() for p in left)
    old = time.time() - STALE_TEMP_SECONDS - 60
    for p in left:
        os.utime(p, (old, old))
    warehouse.write("raw_counts", STUDY, rows_frame(700))
    assert count("raw_counts") == 700
    assert sorted(p.name for p in folder.iterdir()) == ["data.parquet"]


def _kill_during_refresh(home) -> tuple[list[Path], dict[str, int]]:
    """Kill a process rebuilding the catalog while its temp catalog exists; returns the
    files it left and the row counts ``dge sql`` showed before."""
    warehouse = Warehouse(home.warehouse)
    warehouse.write("raw_counts", STUDY, rows_frame(1000))
    warehouse.write("raw_counts", "other", rows_frame(10))
    refresh_catalog(home)
    before = {"raw_counts": count("raw_counts"), "deg_results": count("deg_results")}
    refresher = python_process(REFRESHER, str(home.root))
    left = kill_mid_write(refresher, lambda: list(home.root.glob(".catalog.duckdb.*.tmp")))
    return left, before


def test_kill_during_catalog_refresh(home):
    left, before = _kill_during_refresh(home)
    assert left
    assert {t: count(t) for t in before} == before
    assert refresh_catalog(home, force=True)
    assert {t: count(t) for t in before} == before


def test_next_refresh_removes_temp_catalogs_of_killed_refreshes(home):
    """Only the holder of the catalog lock makes temp catalogs: any other is a dead one's."""
    _kill_during_refresh(home)
    assert refresh_catalog(home, force=True)
    assert temp_files(home) == []


def test_catalog_state_cut_short_by_a_kill_is_rebuilt(home):
    """A kill between the state file's truncation and its write leaves it empty (a
    non-atomic write): queries and the next refresh must rebuild, not fail on it."""
    Warehouse(home.warehouse).write("raw_counts", STUDY, rows_frame(1000))
    refresh_catalog(home)
    home.catalog.with_suffix(".state.json").write_text("")
    assert count("raw_counts") == 1000
    assert not refresh_catalog(home)
    assert count("raw_counts") == 1000


def test_kill_dge_run_mid_run(home):
    write_version(home.study_dir(STUDY), STUDY, 0)
    assert dge("run", STUDY).exit_code == 0
    before = {t: count(t) for t in TABLES}
    results = sql("select * from deg_results order by all")
    assert before["deg_results"] == 200

    # Version 1 adds a contrast and redraws the counts. After the run's first write (a table
    # of the ingest step) the IO manager refreshes the catalog, which waits for the catalog
    # lock held here: the run is killed there, one table into its first step.
    write_version(home.study_dir(STUDY), STUDY, 1)
    warehouse = Warehouse(home.warehouse)
    ingest = [warehouse.partition_path(t, STUDY) for t in ("studies", "samples", "genes",
                                                           "raw_counts")]
    inodes = {path: path.stat().st_ino for path in ingest}
    with _catalog_lock(home):
        run = dge_process("run", STUDY, start_new_session=True)
        deadline = time.monotonic() + TIMEOUT
        while all(path.stat().st_ino == inodes[path] for path in ingest):
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0]
            time.sleep(0.01)
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()

    # One table holds the new version, whole; every other table, and every count, is as before.
    assert sum(path.stat().st_ino != inodes[path] for path in ingest) == 1
    assert {t: count(t) for t in TABLES} == before
    pd.testing.assert_frame_equal(sql("select * from deg_results order by all"), results)
    assert catalog_mismatches(home) == []
    killed, = instance_for(home).get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))

    # The next run needs no clean-up: it marks the dead run failed and replaces every table.
    result = dge("run", STUDY)
    assert result.exit_code == 0, result.output
    assert f"marked run {killed.run_id[:8]} (bulk_job) failed" in result.output
    assert instance_for(home).get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
    assert count("deg_results") == 400
    assert catalog_mismatches(home) == []
    assert temp_files(home) == []


def test_only_runs_of_dead_dge_processes_are_failed(home):
    instance = instance_for(home)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    owners = {"alive": process_id(os.getpid()),
              "dead": f"{process_id(os.getpid()).split(':')[0]}:{dead}:1",
              "reused pid": process_id(os.getpid()).rsplit(":", 1)[0] + ":1",
              "other host": f"elsewhere:{dead}:1"}
    runs = {}
    for name, owner in owners.items():
        runs[name] = dg.DagsterRun(job_name="bulk_job", run_id=str(uuid.uuid4()),
                                   status=dg.DagsterRunStatus.STARTED,
                                   tags={LAUNCHED_BY_TAG: "dge run", PROCESS_TAG: owner})
        instance.add_run(runs[name])
    failed = {run.run_id for run in fail_orphaned_runs(instance)}
    assert failed == {runs["dead"].run_id, runs["reused pid"].run_id}
    assert {name: instance.get_run_by_id(run.run_id).status for name, run in runs.items()} == {
        "alive": dg.DagsterRunStatus.STARTED, "dead": dg.DagsterRunStatus.FAILURE,
        "reused pid": dg.DagsterRunStatus.FAILURE, "other host": dg.DagsterRunStatus.STARTED}
