"""The warehouse on S3 (moto's standalone server on 127.0.0.1, checking signatures like S3):
atomic writes, a study run end to end, and the catalog reading it over httpfs, locked down."""

from __future__ import annotations

import io
import json
import os
import re
import sys
import time
import urllib.request
import uuid

import anndata as ad
import boto3
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from dge_platform.cli import main
from dge_platform.storage import warehouse
from dge_platform.storage.catalog import CatalogQueryError, connect, query, refresh_catalog
from dge_platform.storage.home import resolve_home
from dge_platform.storage.warehouse import Warehouse, warehouse_root
from dge_platform_tests._helpers import REFUSED_BY_CONNECTION, counts_frame, run_on
from dge_platform_tests.conftest import dge, sql, write_study

BUCKET, OTHER_BUCKET = "dge", "dge-other"
REGION = "eu-west-1"


@pytest.fixture(scope="module")
def moto_s3():
    """A moto server with an IAM user allowed s3:*, then requiring valid signatures (as S3
    and MinIO do). Yields the endpoint, that user's keys and an S3 client of theirs."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    session = boto3.session.Session(aws_access_key_id="setup", aws_secret_access_key="setup",
                                    region_name=REGION)
    iam = session.client("iam", endpoint_url=endpoint)
    iam.create_user(UserName="dge")
    iam.put_user_policy(UserName="dge", PolicyName="s3", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="dge")["AccessKey"]
    s3 = session.client("s3", endpoint_url=endpoint)
    outside = _parquet_bytes(pd.DataFrame({"leak": [1]}))
    for bucket in (BUCKET, OTHER_BUCKET):
        s3.create_bucket(Bucket=bucket,
                         CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=OTHER_BUCKET, Key="x.parquet", Body=outside)
    s3.put_object(Bucket=BUCKET, Key="private/x.parquet", Body=outside)
    _moto_auth(endpoint, "0")  # from now on every request must be signed by a known key
    client = boto3.session.Session(
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
        region_name=REGION).client("s3", endpoint_url=endpoint)
    yield {"endpoint": endpoint, "key_id": key["AccessKeyId"],
           "secret": key["SecretAccessKey"], "client": client}
    _moto_auth(endpoint, "inf")
    server.stop()


def _moto_auth(endpoint: str, unchecked_requests: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset-auth",
                                                  data=unchecked_requests.encode(),
                                                  headers={"Content-Type": "text/plain"},
                                                  method="POST")).close()


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def aws_env(moto_s3):
    """The standard AWS environment for the moto user, for the whole module."""
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                     "AWS_DEFAULT_REGION"):
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", moto_s3["key_id"])
        env.setenv("AWS_SECRET_ACCESS_KEY", moto_s3["secret"])
        env.setenv("AWS_REGION", REGION)
        env.setenv("AWS_ENDPOINT_URL", moto_s3["endpoint"])
        yield


def _fresh_location() -> str:
    return f"s3://{BUCKET}/warehouse-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def s3_env(aws_env, monkeypatch):
    """A fresh warehouse prefix, also exported as DGE_WAREHOUSE; returns its s3:// location."""
    location = _fresh_location()
    monkeypatch.setenv("DGE_WAREHOUSE", location)
    return location


@pytest.fixture
def s3_home(home, s3_env):
    """The ``home`` data root with its warehouse on S3 (DGE_WAREHOUSE)."""
    return resolve_home(home.root).ensure()


def _keys(moto_s3, prefix: str) -> list[str]:
    listed = moto_s3["client"].list_objects_v2(Bucket=BUCKET,
                                               Prefix=prefix.removeprefix(f"s3://{BUCKET}/"))
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_location_is_local_or_s3_without_credentials(tmp_path):
    assert warehouse_root(str(tmp_path / "wh")) == tmp_path / "wh"
    assert warehouse_root(f"file://{tmp_path}/wh") == tmp_path / "wh"
    with pytest.raises(ValueError, match="local folder or s3://bucket/prefix"):
        warehouse_root("gs://bucket/prefix")
    with pytest.raises(ValueError, match="without credentials") as err:
        warehouse_root("s3://AKIA:hunter2@bucket/prefix")
    assert "hunter2" not in str(err.value)


def test_bad_warehouse_location_names_its_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("DGE_WAREHOUSE", "s3://AKIA:hunter2@bucket/prefix")
    home = resolve_home(tmp_path)
    with pytest.raises(ValueError, match="^DGE_WAREHOUSE: an s3:// warehouse") as err:
        _ = home.warehouse
    assert "hunter2" not in str(err.value)
    with pytest.raises(ValueError, match="^DGE_WAREHOUSE: .*not a 'gs://' location"):
        _ = resolve_home(tmp_path, "gs://bucket/prefix").warehouse
    monkeypatch.setenv("DGE_HOME", str(tmp_path))
    result = CliRunner().invoke(main, ["sql", "select 1"])
    assert result.exit_code == 2 and result.exception.__class__ is SystemExit
    assert "Error: DGE_WAREHOUSE: an s3:// warehouse" in result.output
    assert "hunter2" not in result.output


def test_warehouse_round_trip_on_s3(s3_env, moto_s3):
    wh = Warehouse(s3_env)
    assert wh.on_s3 and wh.uri == s3_env
    written = wh.write("raw_counts", "s1", counts_frame(5).assign(study_id="s1"))
    assert str(written.path) == f"{s3_env}/raw_counts/study_id=s1/data.parquet"
    assert (written.rows, written.bytes) == (5, written.path.stat().st_size)
    wh.write("gene_recurrence", None, pd.DataFrame({"gene_key": ["g1"], "n_studies": [2]}))
    pd.testing.assert_frame_equal(wh.read("raw_counts", "s1"), counts_frame(5))
    assert wh.has_data("raw_counts") and not wh.has_data("vst")
    assert wh.tables_with_data() == {"raw_counts", "gene_recurrence"}
    with pytest.raises(FileNotFoundError, match="materialize it first"):
        wh.read("raw_counts", "s2")

    wh.replace_files("reports", "s1", {"report.html": b"<html>1</html>", "old.png": b"png"})
    wh.replace_files("reports", "s1", {"report.html": b"<html>2</html>"})
    assert [p.name for p in wh.files("reports", "s1")] == ["report.html"]
    report = wh.files("reports", "s1")[0]
    assert report.read_bytes() == b"<html>2</html>" and report.suffix == ".html"
    key = report.path.removeprefix(f"{BUCKET}/")
    assert moto_s3["client"].head_object(Bucket=BUCKET, Key=key)["ContentType"] == "text/html"

    cells = ad.AnnData(np.arange(6, dtype=np.float32).reshape(3, 2),
                       obs=pd.DataFrame(index=["c1", "c2", "c3"]),
                       var=pd.DataFrame(index=["g1", "g2"]))
    wh.write_h5ad("cell_counts", "s1", cells)
    back = wh.read_h5ad("cell_counts", "s1")
    np.testing.assert_array_equal(back.X, cells.X)
    assert list(back.obs_names) == ["c1", "c2", "c3"]
    wh.remove_h5ad("cell_counts", "s1")
    wh.remove_h5ad("cell_counts", "s1")  # already gone: fine
    with pytest.raises(FileNotFoundError):
        wh.read_h5ad("cell_counts", "s1")
    prefix = s3_env.removeprefix(f"s3://{BUCKET}/")
    assert _keys(moto_s3, s3_env) == [f"{prefix}/{k}" for k in (
        "gene_recurrence/data.parquet", "raw_counts/study_id=s1/data.parquet",
        "reports/study_id=s1/report.html")]


def test_failed_s3_write_leaves_the_previous_object(s3_env, moto_s3, monkeypatch, tmp_path):
    """Nothing reaches S3 from a failed write; its staged temp and a dead writer's are gone."""
    staging = tmp_path / "staging"
    monkeypatch.setattr(warehouse, "_S3_STAGING", staging)
    wh = Warehouse(s3_env)
    wh.write("raw_counts", "s1", counts_frame(4))
    dead = staging / f".data.parquet.123.{uuid.uuid4().hex}.tmp"
    dead.write_bytes(b"partial")
    old = time.time() - warehouse.STALE_TEMP_SECONDS - 60
    os.utime(dead, (old, old))
    before = _keys(moto_s3, s3_env)
    real = pq.write_table

    def crash(table, where, **kwargs):
        real(table.slice(0, 1), where, **kwargs)  # a partial file is staged, then...
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        wh.write("raw_counts", "s1", counts_frame(10, offset=100))
    assert _keys(moto_s3, s3_env) == before
    assert wh.read("raw_counts", "s1")["count"].sum() == 6
    assert list(staging.iterdir()) == []


def test_study_runs_end_to_end_on_s3(s3_home, s3_env, moto_s3, tmp_path):
    source = write_study(tmp_path / "toy")
    assert dge("add", str(source)).exit_code == 0
    result = dge("run", "toy")
    assert result.exit_code == 0, result.output
    assert f"Report toy: {s3_env}/reports/study_id=toy/report.html" in result.output

    degs = sql("select gene_id, log2_fold_change, padj from deg_results where study_id = 'toy' "
               "order by gene_id")
    assert len(degs) == 12 and degs["log2_fold_change"].notna().all()
    # The same Parquet object, read by pandas through s3fs, as any other tool would.
    direct = pd.read_parquet(f"{s3_env}/deg_results/study_id=toy/data.parquet", storage_options={
        "client_kwargs": {"endpoint_url": moto_s3["endpoint"]}})
    pd.testing.assert_frame_equal(
        direct.sort_values("gene_id")[["gene_id", "log2_fold_change", "padj"]]
        .reset_index(drop=True), degs, check_dtype=False)
    assert Warehouse(s3_env).read("deg_results", "toy").shape == direct.shape
    # Nothing went to the local warehouse folder, and no local file holds the secret key.
    assert not any((s3_home.root / "warehouse").iterdir())
    secret = moto_s3["secret"].encode()
    leaks = [p for p in s3_home.root.rglob("*") if p.is_file() and secret in p.read_bytes()]
    assert leaks == [] and moto_s3["secret"] not in result.output


def test_catalog_reads_s3_and_keeps_the_secret_out_of_its_file(s3_home, s3_env, moto_s3):
    Warehouse(s3_home.warehouse).write("raw_counts", "s1", counts_frame(3))
    assert refresh_catalog(s3_home)
    with connect(s3_home) as con:
        assert con.sql("select sum(count) from raw_counts").fetchone() == (3,)
        secrets = con.sql("select name, persistent, storage, secret_string "
                          "from duckdb_secrets()").fetchall()
        allowed = con.sql("select current_setting('allowed_directories')").fetchone()[0]
    assert [s[:3] for s in secrets] == [("dge_warehouse", False, "memory")]
    assert "secret=redacted" in secrets[0][3] and moto_s3["secret"] not in secrets[0][3]
    # The S3 prefix is the only warehouse DuckDB may open (besides its own spill folder).
    assert sorted(allowed) == sorted([f"{s3_env}/", f"{s3_home.catalog}.tmp/"])
    for path in s3_home.root.glob("catalog.duckdb*"):
        assert moto_s3["secret"].encode() not in path.read_bytes()
    assert query(s3_home, "select count(*) as n from raw_counts")["n"].item() == 3


S3_REFUSED = [
    ("select * from read_parquet('s3://" + OTHER_BUCKET + "/x.parquet')",
     "refused: Permission Error"),
    ("select * from read_parquet('s3://" + BUCKET + "/private/x.parquet')",
     "refused: Permission Error"),
    ("select * from read_parquet('{wh}-sibling/x.parquet')", "refused: Permission Error"),
    ("select * from glob('s3://" + BUCKET + "/*')", "refused: Permission Error"),
    ("select * from read_parquet('http://127.0.0.1/x.parquet')", "refused: Permission Error"),
    # DuckDB's prefix check passes '..', its HTTP client collapses it and S3 refuses the
    # request: the signature covers the path as written.
    ("select * from read_parquet('{wh}/../private/x.parquet')", "SignatureDoesNotMatch"),
    ("select * from duckdb_secrets(redact := false)", "unredacted secrets is disabled"),
    ("CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')", "CREATE statements are not allowed"),
]


@pytest.fixture(scope="module")
def s3_catalog(aws_env, tmp_path_factory):
    """A data root whose S3 warehouse holds one raw_counts partition, catalog built (shared
    by the lockdown cases: nothing may change it)."""
    home = resolve_home(tmp_path_factory.mktemp("s3_catalog"), _fresh_location()).ensure()
    Warehouse(home.warehouse).write("raw_counts", "s1", counts_frame(2))
    refresh_catalog(home)
    return home


@pytest.mark.parametrize("surface", ["query", "connect"])
@pytest.mark.parametrize("statement,expect", REFUSED_BY_CONNECTION + S3_REFUSED)
def test_s3_catalog_is_read_only_and_confined_to_the_prefix(s3_catalog, moto_s3, tmp_path,
                                                           surface, statement, expect):
    (tmp_path / "outside.parquet").write_bytes(_parquet_bytes(counts_frame(1)))
    before = _keys(moto_s3, f"s3://{BUCKET}/"), sorted(s3_catalog.root.rglob("*"))
    with pytest.raises(CatalogQueryError, match=re.escape(expect)) as err:
        run_on(surface, s3_catalog, statement.format(wh=s3_catalog.warehouse_uri, tmp=tmp_path))
    assert moto_s3["secret"] not in str(err.value)
    assert (_keys(moto_s3, f"s3://{BUCKET}/"), sorted(s3_catalog.root.rglob("*"))) == before
    assert [p.name for p in tmp_path.iterdir()] == ["outside.parquet"]


def test_missing_httpfs_package_is_a_clear_error(s3_home, monkeypatch):
    monkeypatch.setitem(sys.modules, "duckdb_extension_httpfs", None)
    with pytest.raises(CatalogQueryError, match=r"pip install duckdb-extension-httpfs==1\.5\.5"):
        query(s3_home, "select 1")
