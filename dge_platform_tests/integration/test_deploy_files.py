"""deploy/: every YAML file parses, the instance and workspace files pass Dagster's own
schemas, the Helm values hold the fields the runbook relies on, and the files agree with the
code (pool name, heavy steps' CPUs, executor and warehouse variables)."""

import shutil
from pathlib import Path

import pytest
import yaml

from dge_platform.defs.batch import HEAVY_POOL, HEAVY_STEP_RESOURCES
from dge_platform_tests.conftest import REPO
from dge_platform_tests.services import PG_ENV

DEPLOY = REPO / "deploy"
HEAVY_ASSETS = {"bulk": {"library_counts", "deseq2", "enrichment", "sample_scores"},
                "screen": {"deseq2", "compound_activity", "dose_response", "enrichment",
                           "sample_scores", "combinations"},
                "singlecell": {"cell_qc", "sc_processed", "deseq2", "marker_genes", "enrichment",
                               "sample_scores"}}
"""The steps of each kind's job that fit models or hold a study's cells in memory."""


def _load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def test_every_deploy_yaml_parses():
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert {f.relative_to(DEPLOY).as_posix() for f in files} >= {
        "dagster.yaml", "celery.yaml", "workspace.yaml", "helm/values.yaml"}
    for path in files:
        assert isinstance(yaml.safe_load(path.read_text()), dict), path


def test_instance_yaml_passes_dagster_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster_postgres import DagsterPostgresStorage

    for name in PG_ENV:
        monkeypatch.setenv(name, "5432" if name == "DGE_PG_PORT" else "x")
    shutil.copy(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    storage = process_config(DagsterPostgresStorage.config_type(), config["storage"]["postgres"])
    assert storage.success, storage.errors
    db = storage.value["postgres_db"]
    # Every connection field comes from the environment; no value is written in the file.
    assert {key: spec for key, spec in _load("dagster.yaml")["storage"]["postgres"]
            ["postgres_db"].items() if key != "scheme"} == {
        key: {"env": f"DGE_PG_{env}"} for key, env in (
            ("hostname", "HOST"), ("port", "PORT"), ("username", "USER"),
            ("password", "PASSWORD"), ("db_name", "DB"))}
    assert db["scheme"] == "postgresql+psycopg2"
    assert config["concurrency"]["pools"] == {"default_limit": 2, "granularity": "op"}
    assert config["telemetry"] == {"enabled": False}


def test_celery_and_workspace_yaml_pass_dagster_schemas(monkeypatch: pytest.MonkeyPatch):
    from dagster._core.workspace.config_schema import ensure_workspace_config
    from dagster_celery.cli import get_validated_config

    monkeypatch.setenv("DGE_CELERY_BROKER", "redis://broker:6379/0")
    monkeypatch.setenv("DGE_CELERY_BACKEND", "redis://broker:6379/1")
    celery = get_validated_config(str(DEPLOY / "celery.yaml"))
    assert (celery["broker"], celery["backend"]) == ("redis://broker:6379/0",
                                                     "redis://broker:6379/1")
    assert celery["config_source"]["worker_prefetch_multiplier"] == 1
    monkeypatch.setenv("DGE_CODE_SERVER_HOST", "code-server")
    workspace = ensure_workspace_config(_load("workspace.yaml"), str(DEPLOY / "workspace.yaml"))
    assert workspace["load_from"][0]["grpc_server"]["location_name"] == "dge_platform"


def test_helm_values_hold_the_production_settings():
    values = _load("helm/values.yaml")
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    assert "postgresqlPassword" not in values["postgresql"]
    [code] = values["dagster-user-deployments"]["deployments"]
    assert code["dagsterApiGrpcArgs"] == ["-m", "dge_platform.definitions"]
    assert code["includeConfigInLaunchedRuns"] == {"enabled": True}
    env = {item["name"]: item["value"] for item in code["env"]}
    assert env["DGE_EXECUTOR"] == "k8s"
    assert env["DGE_WAREHOUSE"].startswith("s3://")
    assert {"name": "dge-aws"} in code["envSecrets"]
    # A heavy step asks Kubernetes for the CPUs its threads and workers will use.
    assert env["DGE_N_CPUS"] == HEAVY_STEP_RESOURCES["requests"]["cpu"]
    assert values["concurrency"]["enabled"] is True
    assert values["concurrency"]["pools"]["granularity"] == "op"
    assert values["dagsterWebserver"]["service"]["type"] == "ClusterIP"
    assert "nginx.ingress.kubernetes.io/auth-url" in values["ingress"]["annotations"]
    assert values["telemetry"] == {"enabled": False}
    # No literal secrets anywhere in deploy/.
    text = "\n".join(p.read_text() for p in DEPLOY.rglob("*.yaml")).lower()
    assert "aws_secret_access_key:" not in text and "password: " not in text.replace(
        "password: {env:", "")


def test_heavy_steps_are_in_the_pool_with_pod_resources():
    import json

    from dge_platform.definitions import defs

    for kind, heavy in HEAVY_ASSETS.items():
        job = defs.resolve_job_def(f"{kind}_job")
        pools = {name.removeprefix(f"{kind}__"): node.definition.pool
                 for name, node in job.graph.node_dict.items()}
        assert {name for name, pool in pools.items() if pool == HEAVY_POOL} == heavy
        assert set(pools.values()) == {HEAVY_POOL, None}
        for name in heavy:
            node = job.graph.node_dict[f"{kind}__{name}"]
            tag = json.loads(node.definition.tags["dagster-k8s/config"])
            assert tag["container_config"]["resources"] == HEAVY_STEP_RESOURCES
    assert HEAVY_POOL in (DEPLOY / "dagster.yaml").read_text()
    assert HEAVY_POOL in (DEPLOY / "helm" / "values.yaml").read_text()


@pytest.mark.parametrize("choice, name", [("multiprocess", "multi_or_in_process_executor"),
                                          ("celery", "celery")])
def test_executor_follows_dge_executor(choice: str, name: str):
    from dge_platform.definitions import step_executor

    assert step_executor(choice).name == name
    with pytest.raises(ValueError, match="expected multiprocess, celery or k8s"):
        step_executor("dask")


def test_cpu_setting_reads_dge_n_cpus():
    from dge_platform.definitions import cpu_setting

    assert (cpu_setting("0"), cpu_setting("3")) == (0, 3)
    for bad in ("two", "-1", "1.5", ""):
        with pytest.raises(ValueError, match="DGE_N_CPUS=.*expected a whole number of CPUs"):
            cpu_setting(bad)
