"""Parquet warehouse: one file per table and study, written atomically, on disk or on S3.

Layout: ``<warehouse>/<table>/study_id=<id>/data.parquet`` (hive partitioning, zstd, rows
sorted by the table's ``sort_by`` columns, row groups of ``ROW_GROUP_ROWS``).
``study_id`` lives in the path only; DuckDB adds it as a column when reading. Cell-level data
stays AnnData: ``<warehouse>/<asset>/study_id=<id>/cells.h5ad``.

The root is a local folder or ``s3://bucket/prefix`` (:func:`warehouse_root`; S3 through
universal-pathlib and s3fs). Every write is atomic, so a reader sees the old file or the new
one, never part of one:

- local: the data goes to a hidden temp file beside the target, is fsynced and renamed over
  it (a rename within one file system is atomic);
- S3 has no rename, but an object becomes visible only once its upload completes: the data
  goes to a local temp file that is then uploaded in one PUT (above 100 MiB s3fs uses a
  multipart upload, which S3 likewise publishes only on completion, and aborts on failure).

Temp files of writers that died are removed by the next write that stages in the same
folder once they are older than ``STALE_TEMP_SECONDS`` (no write takes that long): the
target's folder locally, the per-user staging folder in the system temp directory for S3.
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias
from urllib.parse import urlsplit

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from dge_platform.storage.tables import TABLES

PARTITION_KEY = "study_id"
DATA_FILE = "data.parquet"
H5AD_FILE = "cells.h5ad"
STALE_TEMP_SECONDS = 3600
# Rows per Parquet row group: DuckDB's own row group size. DuckDB scans a file's row groups in
# parallel and skips those whose min/max statistics exclude a filter, so a study's million
# deg_results rows in ~8 groups sorted by gene beat one 1-Mi-row group (pyarrow's default).
ROW_GROUP_ROWS = 122_880

StoragePath: TypeAlias = Path | UPath
"""A warehouse location: a local ``Path``, or a universal-pathlib ``UPath`` on S3."""
# Where S3 writes are staged before their upload (per user: the system temp dir is shared).
_S3_STAGING = Path(tempfile.gettempdir()) / f"dge-warehouse-staging-{os.getuid()}"


@dataclass(frozen=True)
class S3Settings:
    """How to reach an ``s3://`` warehouse, read from the standard AWS environment only.

    ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``);
    ``AWS_REGION`` or ``AWS_DEFAULT_REGION``; ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``
    for an S3-compatible store (MinIO, Ceph, moto), addressed path-style. Credentials stay
    out of ``repr`` and of every path and storage option, so logs and metadata never show them.
    """

    endpoint: str | None = None
    region: str | None = None
    key_id: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls) -> S3Settings:
        env = os.environ.get
        return cls(endpoint=env("AWS_ENDPOINT_URL_S3") or env("AWS_ENDPOINT_URL"),
                   region=env("AWS_REGION") or env("AWS_DEFAULT_REGION"),
                   key_id=env("AWS_ACCESS_KEY_ID"), secret=env("AWS_SECRET_ACCESS_KEY"),
                   session_token=env("AWS_SESSION_TOKEN"))

    def storage_options(self) -> dict[str, object]:
        """s3fs options: endpoint and region only; botocore reads the credentials from the
        same variables itself. Directory listings are not cached: other processes write."""
        client = {"endpoint_url": self.endpoint, "region_name": self.region}
        options: dict[str, object] = {
            "client_kwargs": {k: v for k, v in client.items() if v}, "use_listings_cache": False}
        if self.endpoint:
            options["config_kwargs"] = {"s3": {"addressing_style": "path"}}
        return options


def warehouse_root(location: str | os.PathLike | StoragePath) -> StoragePath:
    """The warehouse at ``location``: a local folder (made absolute) or ``s3://bucket/prefix``.

    Raises
    ------
    ValueError
        For another scheme, an S3 location without a bucket, or one holding credentials
        (they belong in the environment: locations are shown in logs and asset metadata).
    """
    if isinstance(location, UPath) and not isinstance(location, Path):
        return location
    if "://" not in str(location):
        return Path(location).expanduser().resolve()
    parts = urlsplit(str(location))
    if parts.scheme == "file":
        return Path(parts.path).resolve()
    if parts.scheme != "s3":
        raise ValueError(f"warehouse location must be a local folder or s3://bucket/prefix, "
                         f"not a '{parts.scheme}://' location")
    if "@" in parts.netloc or not parts.netloc:
        raise ValueError("an s3:// warehouse location is s3://bucket/prefix, without "
                         "credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
    return UPath(f"s3://{parts.netloc}/{parts.path.strip('/')}",
                 **S3Settings.from_env().storage_options())


@dataclass(frozen=True)
class WrittenTable:
    """Where a partition was written and what it holds."""

    path: StoragePath
    rows: int
    bytes: int


class Warehouse:
    """Reads and writes table partitions under one warehouse root (local or S3)."""

    def __init__(self, root: str | os.PathLike | StoragePath):
        self.root = warehouse_root(root)

    @property
    def on_s3(self) -> bool:
        return not isinstance(self.root, Path)

    @property
    def uri(self) -> str:
        """The root as DuckDB reads it: an absolute local path or ``s3://bucket/prefix``."""
        return str(self.root)

    def table_dir(self, table: str) -> StoragePath:
        return self.root / table

    def partition_path(self, table: str, study_id: str | None) -> StoragePath:
        """Where a study's partition of ``table`` lives; ``None``: the file of a
        cross-study table."""
        if study_id is None:
            return self.table_dir(table) / DATA_FILE
        return self._study_dir(table, study_id) / DATA_FILE

    def write(self, table: str, study_id: str | None, frame: pd.DataFrame) -> WrittenTable:
        """Replace one study's partition of ``table`` (``None``: the whole cross-study
        table) with ``frame``, atomically (see the module docstring)."""
        path = self.partition_path(table, study_id)
        # A study's partition holds its id in the path only; cross-study rows keep theirs.
        data = frame if study_id is None else frame.drop(columns=[PARTITION_KEY],
                                                         errors="ignore")
        arrow = _sorted(table, pa.Table.from_pandas(data, preserve_index=False))
        with atomic_path(path) as tmp:
            pq.write_table(arrow, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS)
            size = tmp.stat().st_size
        return WrittenTable(path, arrow.num_rows, size)

    def write_file(self, folder: str, study_id: str, name: str, data: bytes) -> StoragePath:
        """Write a non-table artifact (plot, report) atomically under
        ``<warehouse>/<folder>/study_id=<id>/<name>``."""
        path = self._study_dir(folder, study_id) / name
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return path

    def write_h5ad(self, name: str, study_id: str, adata) -> StoragePath:
        """Replace a study's AnnData under ``<warehouse>/<name>/`` atomically (lzf: fast to
        write and read, about half the size of uncompressed)."""
        path = self._study_dir(name, study_id) / H5AD_FILE
        with atomic_path(path) as tmp:
            adata.write_h5ad(tmp, compression="lzf")
        return path

    def read_h5ad(self, name: str, study_id: str):
        """A study's AnnData written by :meth:`write_h5ad` (from S3: through a local temp
        file, since HDF5 reads a file, not a stream)."""
        import anndata as ad

        path = self._study_dir(name, study_id) / H5AD_FILE
        if not path.exists():
            raise FileNotFoundError(f"'{name}' has no cells for study '{study_id}' ({path}); "
                                    "materialize it first")
        if not self.on_s3:
            return ad.read_h5ad(path)
        with _staged(path) as tmp:
            path.fs.get_file(path.path, str(tmp))
            return ad.read_h5ad(tmp)

    def remove_h5ad(self, name: str, study_id: str) -> None:
        """Drop a study's AnnData (the study no longer has cells of this kind)."""
        (self._study_dir(name, study_id) / H5AD_FILE).unlink(missing_ok=True)

    def replace_files(self, folder: str, study_id: str,
                      files: dict[str, bytes]) -> list[StoragePath]:
        """Write a study's full set of artifacts in ``folder`` and drop any older ones (e.g.
        plots of a contrast that no longer exists)."""
        paths = [self.write_file(folder, study_id, name, data) for name, data in files.items()]
        for old in self.files(folder, study_id):
            if old.name not in files:
                old.unlink(missing_ok=True)
        return paths

    def files(self, folder: str, study_id: str) -> list[StoragePath]:
        """A study's artifacts in ``folder``, sorted by name."""
        where = self._study_dir(folder, study_id)
        return sorted((p for p in where.glob("*") if p.is_file() and not p.name.startswith(".")),
                      key=lambda p: p.name)

    def read(self, table: str, study_id: str) -> pd.DataFrame:
        """One study's partition of ``table``."""
        path = self.partition_path(table, study_id)
        if not path.exists():
            raise FileNotFoundError(f"table '{table}' has no data for study '{study_id}' "
                                    f"({path}); materialize it first")
        if not self.on_s3:
            return pq.read_table(path).to_pandas()
        with path.open("rb") as fh:
            return pq.read_table(fh).to_pandas()

    def has_data(self, table: str) -> bool:
        """True when at least one study has a partition of ``table``, or the cross-study
        table has been written."""
        return any(self._data_files(self.table_dir(table)))

    def tables_with_data(self) -> set[str]:
        """Every table :meth:`has_data` is true for, from one listing of the warehouse (one
        paginated LIST on S3 rather than a few per table)."""
        return {table for table, *_ in self._data_files(self.root)}

    def _study_dir(self, folder: str, study_id: str) -> StoragePath:
        return self.table_dir(folder) / f"{PARTITION_KEY}={study_id}"

    def _data_files(self, under: StoragePath) -> Iterator[tuple[str, ...]]:
        """The data files under ``under`` that a table's view reads, as parts relative to the
        root: (table, data.parquet) or (table, study_id=<id>, data.parquet)."""
        for path in under.rglob(DATA_FILE):
            parts = path.relative_to(self.root).parts
            if len(parts) == 2 or (len(parts) == 3 and parts[1].startswith(f"{PARTITION_KEY}=")):
                yield parts


def _sorted(table: str, arrow: pa.Table) -> pa.Table:
    """``arrow`` sorted by the table's ``sort_by`` columns that it has (nulls last, arrow's
    default)."""
    spec = TABLES.get(table)
    keys = [(c, "ascending") for c in (spec.sort_by if spec else ())
            if c in arrow.column_names and not pa.types.is_null(arrow.schema.field(c).type)]
    return arrow.sort_by(keys) if keys and arrow.num_rows else arrow


@contextmanager
def atomic_path(path: StoragePath) -> Iterator[Path]:
    """A local temp file to write, that becomes ``path`` whole when the block succeeds (see
    the module docstring); nothing changes when it fails."""
    with _staged(path) as tmp:
        yield tmp
        if isinstance(path, Path):
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)  # the data is on disk before the rename makes it the file
            finally:
                os.close(fd)
            os.replace(tmp, path)
        else:
            # The staged name ends in .tmp: type the object by its own name (reports as HTML).
            kind = mimetypes.guess_type(path.name)[0]
            path.fs.put_file(str(tmp), path.path, **({"ContentType": kind} if kind else {}))


@contextmanager
def _staged(path: StoragePath) -> Iterator[Path]:
    """A hidden local temp path for ``path``, removed afterwards: beside it locally (so a
    rename can publish it), in the per-user staging folder for S3. Stale temps of dead writers
    in that folder are cleared first."""
    folder = path.parent if isinstance(path, Path) else _S3_STAGING
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder)
    tmp = folder / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temps(folder: Path, *patterns: str) -> None:
    """Drop the temp files (or folders) matching ``patterns`` (default: ``.*.tmp``) that
    writers which died left in ``folder``: those older than ``STALE_TEMP_SECONDS``, so not in
    progress."""
    cutoff = time.time() - STALE_TEMP_SECONDS
    for tmp in (p for pattern in patterns or (".*.tmp",) for p in folder.glob(pattern)):
        try:
            if tmp.stat().st_mtime >= cutoff:
                continue
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()
        except FileNotFoundError:
            pass
