"""DuckDB catalog: SQL views over the Parquet warehouse, and read-only querying.

The catalog file holds only views whose globs pick up every study's partition, so it is
rebuilt only when a table gains its first data. It is rebuilt into a temporary file and
renamed into place, so readers never meet a write lock. Queries run on a read-only
connection that can read the warehouse and nothing else.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import pandas as pd

from dge_platform.home import DgeHome
from dge_platform.tables import TABLES, TableSpec
from dge_platform.warehouse import DATA_FILE, PARTITION_KEY, Warehouse

ALLOWED_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


class CatalogQueryError(Exception):
    """A query was refused or failed; the message says why."""


def _state_path(home: DgeHome) -> Path:
    return home.catalog.with_suffix(".state.json")


def _view_sql(spec: TableSpec, warehouse: Warehouse) -> str:
    if not warehouse.has_data(spec.name):
        cols = ", ".join(f"CAST(NULL AS {typ}) AS {name}" for name, typ in spec.columns)
        return f"CREATE VIEW {spec.name} AS SELECT {cols} WHERE false"
    if not spec.per_study:
        path = warehouse.partition_path(spec.name, None).resolve()
        return f"CREATE VIEW {spec.name} AS SELECT * FROM read_parquet('{path}')"
    pattern = str(warehouse.table_dir(spec.name).resolve() / f"{PARTITION_KEY}=*" / DATA_FILE)
    return (f"CREATE VIEW {spec.name} AS SELECT {PARTITION_KEY}, * EXCLUDE ({PARTITION_KEY}) "
            f"FROM read_parquet('{pattern}', hive_partitioning = true, union_by_name = true, "
            f"hive_types = {{'{PARTITION_KEY}': VARCHAR}})")


def _desired_state(home: DgeHome) -> dict[str, bool]:
    warehouse = Warehouse(home.warehouse)
    return {name: warehouse.has_data(name) for name in TABLES}


@contextmanager
def _catalog_lock(home: DgeHome) -> Iterator[None]:
    home.root.mkdir(parents=True, exist_ok=True)
    with open(home.root / ".catalog.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def refresh_catalog(home: DgeHome, *, force: bool = False) -> bool:
    """Rebuild the catalog if a table gained or lost all its data; return True if rebuilt."""
    with _catalog_lock(home):
        state = _desired_state(home)
        current = _state_path(home)
        if not force and home.catalog.exists() and current.exists() \
                and json.loads(current.read_text()) == state:
            return False
        warehouse = Warehouse(home.warehouse)
        tmp = home.catalog.with_name(f".{home.catalog.name}.{uuid.uuid4().hex}.tmp")
        try:
            con = duckdb.connect(str(tmp))
            for spec in TABLES.values():
                con.execute(_view_sql(spec, warehouse))
            con.close()
            os.replace(tmp, home.catalog)
        finally:
            tmp.unlink(missing_ok=True)
            tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
        current.write_text(json.dumps(state))
        return True


def connect(home: DgeHome) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the catalog that can read the warehouse and nothing else.

    It cannot write files, attach databases, install or load extensions, or change these
    settings. Use it from notebooks: ``connect(resolve_home()).sql("select ...").df()``.
    """
    if not home.catalog.exists():
        refresh_catalog(home)
    con = duckdb.connect(str(home.catalog), read_only=True,
                         config={"autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False})
    con.execute("SET allowed_directories = $dirs", {"dirs": [str(home.warehouse.resolve()) + "/"]})
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def open_catalog(root: str | os.PathLike | None = None) -> duckdb.DuckDBPyConnection:
    """The notebook entry point: a read-only connection (see :func:`connect`) to the catalog
    under ``root`` (default: ``$DGE_HOME``, else the repository's ``data/``)."""
    from dge_platform.home import resolve_home

    return connect(resolve_home(root))


def query(home: DgeHome, sql: str) -> pd.DataFrame:
    """Run read-only SQL against the catalog and return the last statement's result.

    Raises
    ------
    CatalogQueryError
        For statements other than SELECT/EXPLAIN (COPY, EXPORT, ATTACH, INSTALL, SET, ...),
        for access outside the warehouse, and for SQL errors.
    """
    con = connect(home)
    try:
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as exc:
            raise CatalogQueryError(f"SQL error: {exc}") from None
        if not statements:
            raise CatalogQueryError("no SQL statement given")
        for stmt in statements:
            if stmt.type not in ALLOWED_STATEMENTS:
                kind = stmt.type.name
                raise CatalogQueryError(f"{kind} statements are not allowed: the catalog is "
                                        "read-only (only SELECT queries, including DESCRIBE, "
                                        "SHOW and EXPLAIN, may run)")
        result = None
        for stmt in statements:
            try:
                result = con.execute(stmt).df()
            except duckdb.PermissionException as exc:
                raise CatalogQueryError(f"refused: {str(exc).splitlines()[0]} (queries may read "
                                        "only the catalog's tables)") from None
            except duckdb.Error as exc:
                raise CatalogQueryError(f"SQL error: {str(exc).strip()}") from None
        return result
    finally:
        con.close()
