"""Parquet warehouse: one file per table and study, written atomically.

Layout: ``<warehouse>/<table>/study_id=<id>/data.parquet`` (hive partitioning, zstd, rows
sorted by the table's ``sort_by`` columns, row groups of ``ROW_GROUP_ROWS``).
``study_id`` lives in the path only; DuckDB adds it as a column when reading. Cell-level data
stays AnnData: ``<warehouse>/<asset>/study_id=<id>/cells.h5ad``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dge_platform.tables import TABLES

PARTITION_KEY = "study_id"
DATA_FILE = "data.parquet"
H5AD_FILE = "cells.h5ad"
STALE_TEMP_SECONDS = 3600
# Rows per Parquet row group: DuckDB's own row group size. DuckDB scans a file's row groups in
# parallel and skips those whose min/max statistics exclude a filter, so a study's million
# deg_results rows in ~8 groups sorted by gene beat one 1-Mi-row group (pyarrow's default).
ROW_GROUP_ROWS = 122_880


@dataclass(frozen=True)
class WrittenTable:
    """Where a partition was written and what it holds."""

    path: Path
    rows: int
    bytes: int


class Warehouse:
    """Reads and writes table partitions under one warehouse folder."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def table_dir(self, table: str) -> Path:
        return self.root / table

    def partition_path(self, table: str, study_id: str | None) -> Path:
        """Where a study's partition of ``table`` lives; ``None``: the file of a
        cross-study table."""
        if study_id is None:
            return self.table_dir(table) / DATA_FILE
        return self.table_dir(table) / f"{PARTITION_KEY}={study_id}" / DATA_FILE

    def write(self, table: str, study_id: str | None, frame: pd.DataFrame) -> WrittenTable:
        """Replace one study's partition of ``table`` (``None``: the whole cross-study
        table) with ``frame``, atomically.

        The data goes to a hidden temporary file in the same folder, is flushed to disk and
        renamed over the old file, so readers see either the old or the new partition.
        """
        path = self.partition_path(table, study_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(path.parent)
        # A study's partition holds its id in the path only; cross-study rows keep theirs.
        data = frame if study_id is None else frame.drop(columns=[PARTITION_KEY],
                                                         errors="ignore")
        arrow = _sorted(table, pa.Table.from_pandas(data, preserve_index=False))
        with _atomic(path) as tmp, tmp.open("wb") as fh:
            pq.write_table(arrow, fh, compression="zstd", row_group_size=ROW_GROUP_ROWS)
            fh.flush()
            os.fsync(fh.fileno())
        return WrittenTable(path, arrow.num_rows, path.stat().st_size)

    def write_file(self, folder: str, study_id: str, name: str, data: bytes) -> Path:
        """Write a non-table artifact (plot, report) atomically under
        ``<warehouse>/<folder>/study_id=<id>/<name>``."""
        path = self.table_dir(folder) / f"{PARTITION_KEY}={study_id}" / name
        with _atomic(path) as tmp:
            tmp.write_bytes(data)
        return path

    def write_h5ad(self, name: str, study_id: str, adata) -> Path:
        """Replace a study's AnnData under ``<warehouse>/<name>/`` atomically (lzf: fast to
        write and read, about half the size of uncompressed)."""
        path = self.table_dir(name) / f"{PARTITION_KEY}={study_id}" / H5AD_FILE
        with _atomic(path) as tmp:
            adata.write_h5ad(tmp, compression="lzf")
        return path

    def read_h5ad(self, name: str, study_id: str):
        """A study's AnnData written by :meth:`write_h5ad`."""
        import anndata as ad

        path = self.table_dir(name) / f"{PARTITION_KEY}={study_id}" / H5AD_FILE
        if not path.exists():
            raise FileNotFoundError(f"'{name}' has no cells for study '{study_id}' ({path}); "
                                    "materialize it first")
        return ad.read_h5ad(path)

    def remove_h5ad(self, name: str, study_id: str) -> None:
        """Drop a study's AnnData (the study no longer has cells of this kind)."""
        (self.table_dir(name) / f"{PARTITION_KEY}={study_id}" / H5AD_FILE).unlink(missing_ok=True)

    def replace_files(self, folder: str, study_id: str, files: dict[str, bytes]) -> list[Path]:
        """Write a study's full set of artifacts in ``folder`` and drop any older ones (e.g.
        plots of a contrast that no longer exists)."""
        paths = [self.write_file(folder, study_id, name, data) for name, data in files.items()]
        for old in self.files(folder, study_id):
            if old not in paths:
                old.unlink(missing_ok=True)
        return paths

    def files(self, folder: str, study_id: str) -> list[Path]:
        """A study's artifacts in ``folder``, sorted by name."""
        where = self.table_dir(folder) / f"{PARTITION_KEY}={study_id}"
        return sorted(p for p in where.glob("*") if p.is_file() and not p.name.startswith("."))

    def read(self, table: str, study_id: str) -> pd.DataFrame:
        """One study's partition of ``table``."""
        path = self.partition_path(table, study_id)
        if not path.exists():
            raise FileNotFoundError(f"table '{table}' has no data for study '{study_id}' "
                                    f"({path}); materialize it first")
        return pq.read_table(path).to_pandas()

    def has_data(self, table: str) -> bool:
        """True when at least one study has a partition of ``table``, or the cross-study
        table has been written."""
        return (self.table_dir(table) / DATA_FILE).exists() or \
            any(self.table_dir(table).glob(f"{PARTITION_KEY}=*/{DATA_FILE}"))


def _sorted(table: str, arrow: pa.Table) -> pa.Table:
    """``arrow`` sorted by the table's ``sort_by`` columns that it has (nulls last, arrow's
    default)."""
    spec = TABLES.get(table)
    keys = [(c, "ascending") for c in (spec.sort_by if spec else ())
            if c in arrow.column_names and not pa.types.is_null(arrow.schema.field(c).type)]
    return arrow.sort_by(keys) if keys and arrow.num_rows else arrow


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """A hidden temporary path beside ``path``, renamed over it when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _remove_stale_temps(folder: Path) -> None:
    """Drop temp files left by writers that died (older than an hour, so not in progress)."""
    cutoff = time.time() - STALE_TEMP_SECONDS
    for tmp in folder.glob(f".{DATA_FILE}.*.tmp"):
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except FileNotFoundError:
            pass
