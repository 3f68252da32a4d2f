"""The real dagster-webserver serves the platform's definitions: assets with the study partition,
the asset check, the sensor and the schedule, as the UI sees them over GraphQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
from conftest import write_study

from dge_platform_tests._helpers import STARTUP_TIMEOUT, _stop
from dge_platform_tests.conftest import REPO
from dge_platform_tests.services import free_port

WORKSPACE = REPO / "workspace.yaml"
ASSETS = {"bulk/studies", "bulk/samples", "bulk/genes", "bulk/raw_counts", "bulk/study_inputs"}


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
    from dge_platform.storage.home import resolve_home

    tmp = tmp_path_factory.mktemp("webserver")
    home = resolve_home(tmp / "dge_home").ensure()
    write_study(home.studies / "toy")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(home.dagster_home))
        mp.setenv("DGE_HOME", str(home.root))
        instance = dg.DagsterInstance.get()
        try:
            instance.add_dynamic_partitions("bulk_studies", ["toy"])
            assert instance.get_dynamic_partitions("bulk_studies") == ["toy"]
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
                for d in node["partitionDefinition"]["dimensionTypes"]] == ["bulk_studies"], key
        assert node["groupName"] == "bulk", key
    for key in ASSETS - {"bulk/study_inputs"}:
        assert "bulk_job" in nodes[key]["jobNames"], key
        assert not {"screen_job", "singlecell_job"} & set(nodes[key]["jobNames"]), key
    # The other kinds' graphs have their own partitions, with no partition for this study.
    assert nodes["screen/well_qc"]["partitionKeys"] == []
    assert nodes["singlecell/cell_qc"]["groupName"] == "singlecell"


def test_columns_are_described_in_the_ui(server):
    data = server.graphql("""{ assetNodes(assetKeys: [{path: ["bulk", "deg_results"]}]) {
        description metadataEntries { label
            ... on TableSchemaMetadataEntry { schema { columns { name type description } } }
        } } }""")
    node, = data["assetNodes"]
    assert node["description"].startswith("Differential expression")
    schema, = [e["schema"] for e in node["metadataEntries"]
               if e["label"] == "dagster/column_schema"]
    columns = {c["name"]: c["description"] for c in schema["columns"]}
    assert {"log2_fold_change", "padj", "stat"} <= set(columns)
    assert all(columns.values()), columns


def test_raw_counts_has_its_asset_check(server):
    data = server.graphql("""{ assetNodes { assetKey { path }
        assetChecksOrError { __typename ... on AssetChecks { checks { name blocking } } } } }""")
    checks = {"/".join(n["assetKey"]["path"]): n["assetChecksOrError"] for n in data["assetNodes"]}
    assert checks["bulk/raw_counts"]["__typename"] == "AssetChecks"
    assert [(c["name"], c["blocking"]) for c in checks["bulk/raw_counts"]["checks"]] == [
        ("raw_counts_complete", True)]
    for key in ASSETS - {"bulk/raw_counts"}:
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
    assert sorted(t["pipelineName"] for t in sensors["study_sensor"]["targets"]) == [
        "bulk_job", "screen_job", "singlecell_job"]
    assert sensors["study_sensor"]["sensorState"]["status"] == "RUNNING"
    for kind in ("bulk", "screen", "singlecell"):
        nightly = schedules[f"nightly_reprocess_{kind}"]
        assert nightly["pipelineName"] == f"{kind}_job"
        assert nightly["cronSchedule"] == os.environ.get("DGE_REPROCESS_CRON", "0 3 * * *")
        assert nightly["scheduleState"]["status"] == "RUNNING"
