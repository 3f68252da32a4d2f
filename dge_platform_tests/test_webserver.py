"""The real dagster-webserver serves the platform's definitions: assets with the study partition,
the asset check, the sensor and the schedule, as the UI sees them over GraphQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from conftest import write_study
from dge_platform_tests.services import free_port

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = REPO / "workspace.yaml"
STARTUP_TIMEOUT = 90.0
ASSETS = {"studies", "samples", "genes", "raw_counts", "study_inputs"}


class Server:
    def __init__(self, port: int, proc: subprocess.Popen, log: Path):
        self.base = f"http://127.0.0.1:{port}"
        self.proc = proc
        self.log = log

    def get(self, path: str) -> tuple[int, bytes]:
        with urllib.request.urlopen(self.base + path, timeout=10) as resp:
            return resp.status, resp.read()

    def graphql(self, query: str) -> dict:
        request = urllib.request.Request(
            self.base + "/graphql", data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as resp:
            body = json.loads(resp.read())
        assert "errors" not in body, body["errors"]
        return body["data"]

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def _stop(proc: subprocess.Popen) -> None:
    """End the webserver and its code-server child (same process group)."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure no child of the group lingers.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"dagster-webserver exited with {server.proc.returncode}:\n"
                        f"{server.log_tail()}")
        try:
            status, _ = server.get("/server_info")
            if status == 200:
                data = server.graphql("{ workspaceOrError { __typename ... on Workspace { "
                                      "locationEntries { name loadStatus } } } }")
                entries = data["workspaceOrError"]["locationEntries"]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
            last_error = err
        time.sleep(0.5)
    pytest.fail(f"dagster-webserver not ready after {STARTUP_TIMEOUT:.0f} s ({last_error}):\n"
                f"{server.log_tail()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A webserver on a free port over an isolated data root holding the 'toy' study.

    Module-scoped (one start for every test here), so it builds its data root the same way
    the ``home`` fixture does instead of using that function-scoped fixture.
    """
    from dge_platform.home import resolve_home

    tmp = tmp_path_factory.mktemp("webserver")
    home = resolve_home(tmp / "dge_home").ensure()
    write_study(home.studies / "toy")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(home.dagster_home))
        mp.setenv("DGE_HOME", str(home.root))
        instance = dg.DagsterInstance.get()
        try:
            instance.add_dynamic_partitions("studies", ["toy"])
            assert instance.get_dynamic_partitions("studies") == ["toy"]
        finally:
            instance.dispose()

    port = free_port()
    log = tmp / "webserver.log"
    env = {**os.environ, "DAGSTER_HOME": str(home.dagster_home), "DGE_HOME": str(home.root)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster_webserver", "-w", str(WORKSPACE),
             "-h", "127.0.0.1", "-p", str(port)],
            env=env, cwd=tmp, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    srv = Server(port, proc, log)
    try:
        _wait_ready(srv)
        yield srv
    finally:
        _stop(proc)


def test_server_info_and_ui_root(server):
    status, body = server.get("/server_info")
    assert status == 200
    info = json.loads(body)
    assert info["dagster_version"] == dg.__version__
    assert info["dagster_webserver_version"] == dg.__version__
    status, _ = server.get("/")
    assert status == 200


def test_assets_are_partitioned_by_the_study_key(server):
    data = server.graphql("""{ assetNodes { assetKey { path } isPartitioned partitionKeys
        groupName jobNames
        partitionDefinition { type dimensionTypes { dynamicPartitionsDefinitionName } } } }""")
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    assert ASSETS <= set(nodes)
    for key in ASSETS:
        node = nodes[key]
        assert node["isPartitioned"], key
        assert node["partitionKeys"] == ["toy"], key
        assert node["partitionDefinition"]["type"] == "DYNAMIC", key
        assert [d["dynamicPartitionsDefinitionName"]
                for d in node["partitionDefinition"]["dimensionTypes"]] == ["studies"], key
        assert node["groupName"] == "ingest", key
    for key in ASSETS - {"study_inputs"}:
        assert "study_job" in nodes[key]["jobNames"], key


def test_raw_counts_has_its_asset_check(server):
    data = server.graphql("""{ assetNodes { assetKey { path }
        assetChecksOrError { __typename ... on AssetChecks { checks { name blocking } } } } }""")
    checks = {"/".join(n["assetKey"]["path"]): n["assetChecksOrError"] for n in data["assetNodes"]}
    assert checks["raw_counts"]["__typename"] == "AssetChecks"
    assert [(c["name"], c["blocking"]) for c in checks["raw_counts"]["checks"]] == [
        ("raw_counts_complete", True)]
    for key in ASSETS - {"raw_counts"}:
        assert checks[key].get("checks", []) == [], key


def test_sensor_and_schedule_are_loaded(server):
    data = server.graphql("""{ repositoriesOrError { __typename ... on RepositoryConnection {
        nodes { sensors { name targets { pipelineName } sensorState { status } }
                schedules { name cronSchedule pipelineName scheduleState { status } } } } } }""")
    repos = data["repositoriesOrError"]
    assert repos["__typename"] == "RepositoryConnection"
    sensors = {s["name"]: s for r in repos["nodes"] for s in r["sensors"]}
    schedules = {s["name"]: s for r in repos["nodes"] for s in r["schedules"]}
    assert "study_sensor" in sensors
    assert [t["pipelineName"] for t in sensors["study_sensor"]["targets"]] == ["study_job"]
    assert sensors["study_sensor"]["sensorState"]["status"] == "RUNNING"
    assert "nightly_reprocess" in schedules
    nightly = schedules["nightly_reprocess"]
    assert nightly["pipelineName"] == "study_job"
    assert nightly["cronSchedule"] == os.environ.get("DGE_REPROCESS_CRON", "0 3 * * *")
    assert nightly["scheduleState"]["status"] == "RUNNING"
