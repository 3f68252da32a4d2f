"""Parquet warehouse + DuckDB catalog: atomic writes, views that pick up new studies, and a
read-only SQL surface."""

from __future__ import annotations

import os

import pandas as pd
import pyarrow.parquet as pq
import pytest

from dge_platform.catalog import CatalogQueryError, query, refresh_catalog
from dge_platform.tables import TABLES
from dge_platform.warehouse import Warehouse


def counts_frame(n: int, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"gene_id": [f"g{i}" for i in range(n)], "sample": "s1",
                         "count": range(offset, offset + n)})


def test_empty_catalog_has_every_table_with_its_columns(home):
    refresh_catalog(home)
    for name, spec in TABLES.items():
        result = query(home, f"select * from {name}")
        assert len(result) == 0
        assert list(result.columns) == [c for c, _ in spec.columns]


def test_new_study_is_visible_without_rebuilding_the_catalog(home):
    wh = Warehouse(home.warehouse)
    wh.write("raw_counts", "s-one", counts_frame(3))
    assert refresh_catalog(home) is True
    stamp = home.catalog.stat().st_mtime_ns
    wh.write("raw_counts", "s-two", counts_frame(5))
    assert refresh_catalog(home) is False
    assert home.catalog.stat().st_mtime_ns == stamp
    result = query(home, "select study_id, count(*) as n from raw_counts group by 1 order by 1")
    assert result.to_dict("records") == [{"study_id": "s-one", "n": 3}, {"study_id": "s-two", "n": 5}]


def test_numeric_looking_study_id_stays_text(home):
    Warehouse(home.warehouse).write("raw_counts", "2024", counts_frame(2))
    refresh_catalog(home)
    assert query(home, "select distinct study_id from raw_counts")["study_id"].tolist() == ["2024"]


def test_failed_write_leaves_previous_partition_intact(home, monkeypatch):
    wh = Warehouse(home.warehouse)
    wh.write("raw_counts", "s1", counts_frame(4))
    refresh_catalog(home)
    real = pq.write_table

    def crash(table, where, **kwargs):
        real(table.slice(0, 1), where, **kwargs)  # a partial file reaches the disk, then...
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        wh.write("raw_counts", "s1", counts_frame(10, offset=100))
    folder = wh.partition_path("raw_counts", "s1").parent
    assert sorted(os.listdir(folder)) == ["data.parquet"]
    assert query(home, "select sum(count) as total from raw_counts")["total"].item() == 6


def test_stale_temp_files_are_cleaned_on_next_write(home):
    wh = Warehouse(home.warehouse)
    wh.write("raw_counts", "s1", counts_frame(1))
    folder = wh.partition_path("raw_counts", "s1").parent
    stale = folder / ".data.parquet.123.dead.tmp"
    stale.write_bytes(b"partial")
    os.utime(stale, (0, 0))
    wh.write("raw_counts", "s1", counts_frame(2))
    assert not stale.exists()


@pytest.mark.parametrize("sql,expect", [
    ("COPY raw_counts TO '{wh}/out.csv'", "COPY statements are not allowed"),
    ("EXPORT DATABASE '{wh}/dump'", "EXPORT statements are not allowed"),
    ("ATTACH '{tmp}/other.duckdb' AS other", "ATTACH statements are not allowed"),
    ("INSTALL httpfs", "LOAD statements are not allowed"),  # DuckDB types INSTALL as LOAD
    ("LOAD httpfs", "LOAD statements are not allowed"),
    ("SET enable_external_access = true", "SET statements are not allowed"),
    ("CREATE TABLE x AS SELECT 1", "CREATE statements are not allowed"),
    ("DROP VIEW raw_counts", "DROP statements are not allowed"),
    ("select 1; COPY (select 1) TO '{tmp}/x.csv'", "COPY statements are not allowed"),
    ("select * from read_csv('/etc/passwd')", "refused: Permission Error"),
    ("select * from read_text('{tmp}/secret.txt')", "refused: Permission Error"),
    ("select * from glob('/etc/*')", "refused: Permission Error"),
    ("select * from nonexistent_table", "SQL error: Catalog Error"),
])
def test_sql_is_read_only_and_confined_to_the_warehouse(home, tmp_path, sql, expect):
    (tmp_path / "secret.txt").write_text("secret")
    refresh_catalog(home)
    with pytest.raises(CatalogQueryError, match=expect.replace("(", r"\(")):
        query(home, sql.format(wh=home.warehouse, tmp=tmp_path))
    assert not (home.warehouse / "out.csv").exists() and not (tmp_path / "x.csv").exists()


def test_notebook_connection_cannot_unlock_settings(home):
    from dge_platform.catalog import open_catalog

    refresh_catalog(home)
    con = open_catalog(home.root)
    with pytest.raises(Exception, match="configuration has been locked"):
        con.execute("SET enable_external_access = true")
    with pytest.raises(Exception, match="read-only"):
        con.execute("CREATE TABLE t AS SELECT 1")
    assert con.execute("select count(*) from studies").fetchone() == (0,)
