"""Parquet warehouse + DuckDB catalog: atomic writes, views that pick up new studies, and a
read-only SQL surface."""

from __future__ import annotations

import os
import time
import uuid

import pyarrow.parquet as pq
import pytest

from dge_platform.storage.catalog import CatalogQueryError, query, refresh_catalog
from dge_platform.storage.tables import TABLES
from dge_platform.storage.warehouse import STALE_TEMP_SECONDS, Warehouse
from dge_platform_tests._helpers import REFUSED_BY_CONNECTION, counts_frame, run_on


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
    assert result.to_dict("records") == [{"study_id": "s-one", "n": 3},
                                         {"study_id": "s-two", "n": 5}]


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
    from dge_platform.storage.catalog import open_catalog

    refresh_catalog(home)
    con = open_catalog(home.root)
    with pytest.raises(Exception, match="configuration has been locked"):
        con.execute("SET enable_external_access = true")
    with pytest.raises(Exception, match="read-only"):
        con.execute("CREATE TABLE t AS SELECT 1")
    assert con.execute("select count(*) from studies").fetchone() == (0,)


@pytest.mark.parametrize("name,write", [
    ("data.parquet", lambda wh: wh.write("raw_counts", "s1", counts_frame(1))),
    ("report.html", lambda wh: wh.write_file("raw_counts", "s1", "report.html", b"<html/>")),
    ("cells.h5ad", lambda wh: wh.write_h5ad("raw_counts", "s1", _cells())),
])
def test_every_atomic_write_clears_stale_temps_in_its_folder(home, name, write):
    """Any write (table, plot or report, h5ad) removes the temps of dead writers in its folder
    once older than STALE_TEMP_SECONDS, whatever file they were for; younger ones stay."""
    wh = Warehouse(home.warehouse)
    folder = wh.partition_path("raw_counts", "s1").parent
    folder.mkdir(parents=True)
    stale = [folder / f".{n}.123.{uuid.uuid4().hex}.tmp" for n in ("data.parquet", "plot.png",
                                                                   "cells.h5ad")]
    in_progress = folder / f".{name}.456.{uuid.uuid4().hex}.tmp"
    for tmp in [*stale, in_progress]:
        tmp.write_bytes(b"partial")
    for tmp in stale:
        old = time.time() - STALE_TEMP_SECONDS - 60
        os.utime(tmp, (old, old))
    write(wh)
    assert sorted(os.listdir(folder)) == sorted([name, in_progress.name])


def _cells():
    import anndata as ad
    import numpy as np

    return ad.AnnData(np.ones((2, 2), dtype=np.float32))



@pytest.mark.parametrize("surface", ["query", "connect"])
@pytest.mark.parametrize("statement,expect", REFUSED_BY_CONNECTION + [
    ("select * from read_parquet('{wh}/../../outside.parquet')", "refused: Permission Error"),
])
def test_both_surfaces_are_read_only_and_confined_to_the_warehouse(home, tmp_path, surface,
                                                                    statement, expect):
    wh = Warehouse(home.warehouse)
    wh.write("raw_counts", "s1", counts_frame(2))
    counts_frame(1).to_parquet(tmp_path / "outside.parquet")
    refresh_catalog(home)
    before = sorted(p for p in home.root.rglob("*") if p.is_file())
    with pytest.raises(CatalogQueryError, match=expect.replace("(", r"\(")):
        run_on(surface, home, statement.format(wh=home.warehouse, tmp=tmp_path))
    assert sorted(p for p in home.root.rglob("*") if p.is_file()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dge_home", "outside.parquet"]
    assert wh.read("raw_counts", "s1")["count"].sum() == 1


def test_notebook_connection_hands_out_results_only(home):
    from dge_platform.storage.catalog import open_catalog

    Warehouse(home.warehouse).write("raw_counts", "s1", counts_frame(4))
    refresh_catalog(home)
    with open_catalog(home.root) as con:
        assert con.execute("select count(*) from raw_counts where count >= $1", [2]).fetchone() \
            == (2,)
        con.sql("SET VARIABLE min_count = 3")
        assert con.sql("select count(*) as n from raw_counts "
                       "where count >= getvariable('min_count')").df()["n"].item() == 1
        assert [d[0] for d in con.sql("select * from raw_counts").description] == \
            ["study_id", "gene_id", "sample", "count"]
        # No DuckDB relation or cursor: they could run any statement or write files.
        for name in ("cursor", "duplicate", "to_parquet", "register_filesystem", "read_csv"):
            with pytest.raises(AttributeError, match="read-only catalog connection"):
                getattr(con, name)
        with pytest.raises(CatalogQueryError, match="SQL error: Catalog Error"):
            con.sql("select * from nonexistent_table")
