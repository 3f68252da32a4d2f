"""The Dagster instance on PostgreSQL, configured by deploy/dagster.yaml as shipped: ``dge run``
records its runs, event log, materializations, check results and study partitions in a real
Postgres server (queried directly here), reads the connection from ``DGE_PG_*`` and writes
the password nowhere."""

import shutil
import uuid
from pathlib import Path

import pytest

from dge_platform.storage.home import DgeHome
from dge_platform_tests.conftest import REPO, dge, write_study
from dge_platform_tests.services import Postgres, postgres_server  # noqa: F401

DEPLOY_INSTANCE = REPO / "deploy" / "dagster.yaml"


@pytest.fixture
def pg_home(home: DgeHome, postgres_server: Postgres,  # noqa: F811
            monkeypatch: pytest.MonkeyPatch) -> tuple[DgeHome, str]:
    """A data root whose Dagster instance is deploy/dagster.yaml on a fresh database."""
    db = f"dge_{uuid.uuid4().hex[:12]}"
    postgres_server.create_database(db)
    for name, value in postgres_server.env(db).items():
        monkeypatch.setenv(name, value)
    shutil.copy(DEPLOY_INSTANCE, home.dagster_home / "dagster.yaml")
    return home, db


def test_dge_run_is_recorded_in_postgres(pg_home, postgres_server: Postgres,  # noqa: F811
                                         tmp_path: Path):
    home, db = pg_home
    folder = write_study(tmp_path / "pg_study", config={"id": "pg_study"})
    result = dge("add", str(folder), "--run")
    assert result.exit_code == 0, result.output

    runs = postgres_server.query(db, "select pipeline_name, status from runs "
                                     "order by create_timestamp")
    assert runs == [("bulk_job", "SUCCESS"), ("cross_study_job", "SUCCESS")]
    assert postgres_server.query(db, "select partitions_def_name, partition "
                                      "from dynamic_partitions") == [("bulk_studies", "pg_study")]
    # The study's run: every step started and succeeded, in Postgres's event log.
    events = dict(postgres_server.query(db, """
        select e.dagster_event_type, count(*) from event_logs e join runs r using (run_id)
        where r.pipeline_name = 'bulk_job' and e.dagster_event_type is not null group by 1"""))
    assert events["STEP_START"] == events["STEP_SUCCESS"] >= 8
    assert "STEP_FAILURE" not in events
    # Materializations carry the study partition; the asset index knows every table.
    materialized = {key for key, in postgres_server.query(db, """
        select asset_key from event_logs
        where dagster_event_type = 'ASSET_MATERIALIZATION' and partition = %s""", "pg_study")}
    assert {f'["bulk", "{table}"]' for table in ("deg_results", "raw_counts", "sample_qc",
                                         "study_report")} <= materialized
    indexed = {key for key, in postgres_server.query(db, "select asset_key from asset_keys")}
    assert materialized <= indexed and '["gene_recurrence"]' in indexed
    checks = postgres_server.query(db, """
        select check_name, execution_status from asset_check_executions
        where asset_key = '["bulk", "deg_results"]'""")
    assert checks == [("deg_results_valid", "SUCCEEDED")]

    # Nothing went to the default SQLite storage, and the password is nowhere in the records.
    assert not list(home.dagster_home.rglob("*.db"))
    leaks = postgres_server.query(db, """
        select (select count(*) from runs where run_body like %s)
             + (select count(*) from event_logs where event like %s)""",
                  *[f"%{postgres_server.password}%"] * 2)
    assert leaks == [(0,)]
    assert postgres_server.password not in result.output
