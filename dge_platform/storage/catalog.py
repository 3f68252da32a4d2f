"""DuckDB catalog: SQL views over the Parquet warehouse, and read-only querying.

The catalog file holds only views whose globs pick up every study's partition, so it is
rebuilt only when a table gains its first data (or the warehouse moves). It is rebuilt into a
temporary file and renamed into place, so readers never meet a write lock. Queries run on a
read-only connection that can read the warehouse and nothing else.

A warehouse on S3 is read through DuckDB's httpfs extension, loaded from the file that the
pip package ``duckdb-extension-httpfs`` ships (nothing is downloaded at run time), with the
credentials and endpoint of the environment given to each connection as a temporary secret:
it lives in that connection's memory, never in the catalog file.
"""

from __future__ import annotations

import functools
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import pandas as pd

from dge_platform._core.locks import file_lock
from dge_platform.storage.home import DgeHome
from dge_platform.storage.tables import TABLES, TableSpec
from dge_platform.storage.warehouse import (
    DATA_FILE,
    PARTITION_KEY,
    S3Settings,
    Warehouse,
    atomic_path,
)

ALLOWED_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})
"""What :func:`query` (``dge sql``) runs."""
NOTEBOOK_STATEMENTS = ALLOWED_STATEMENTS | {duckdb.StatementType.SET}
"""What :func:`connect` runs: also SET, for ``SET VARIABLE``; the locked configuration
refuses every setting."""
S3_SECRET = "dge_warehouse"


class CatalogQueryError(Exception):
    """A query was refused or failed, or the catalog cannot reach the warehouse; the message
    says why."""


def httpfs_extension() -> Path:
    """DuckDB's httpfs extension as shipped by the pip package ``duckdb-extension-httpfs``
    for the installed DuckDB (the package's version must match DuckDB's).

    Raises
    ------
    CatalogQueryError
        When the package is missing or built for another DuckDB version.
    """
    wanted = f"pip install duckdb-extension-httpfs=={duckdb.__version__}"
    try:
        import duckdb_extension_httpfs
    except ImportError:
        raise CatalogQueryError("reading an s3:// warehouse needs DuckDB's httpfs extension "
                                f"from the package duckdb-extension-httpfs: {wanted}") from None
    path = (Path(duckdb_extension_httpfs.__file__).parent / "extensions"
            / f"v{duckdb.__version__}" / "httpfs.duckdb_extension")
    if not path.is_file():
        raise CatalogQueryError(f"duckdb-extension-httpfs has no httpfs for DuckDB "
                                f"{duckdb.__version__} ({path} is missing): {wanted}")
    return path


class CatalogConnection:
    """A read-only connection to the catalog: SQL in, results out.

    DuckDB confines file access to the warehouse, but cannot tell reading a file there from
    writing one: a raw connection could ``COPY`` over a study's Parquet file. This one runs
    only statements of the allowed types, and hands out results, not DuckDB relations or
    cursors that could run other SQL. Refusals and failures raise :class:`CatalogQueryError`.

    ``sql``/``query``/``execute`` run the statements (parameters go to the last one);
    ``df()``, ``fetchall()``, ``fetchone()``, ``fetchmany()``, ``fetchnumpy()``, ``arrow()``,
    ``pl()`` and ``description`` give the last result: ``con.sql("select ...").df()``.
    """

    _RESULTS = frozenset({"df", "fetchdf", "fetch_df", "fetchall", "fetchone", "fetchmany",
                          "fetchnumpy", "arrow", "fetch_arrow_table", "pl", "description"})

    def __init__(self, con: duckdb.DuckDBPyConnection,
                 allowed: frozenset[duckdb.StatementType]):
        self._con = con
        self._allowed = allowed

    def execute(self, sql: str, parameters: object = None) -> CatalogConnection:
        with _query_errors():
            statements = self._con.extract_statements(sql)
        if not statements:
            raise CatalogQueryError("no SQL statement given")
        for stmt in statements:
            if stmt.type not in self._allowed:
                allowed = "" if duckdb.StatementType.SET not in self._allowed else " and SET"
                raise CatalogQueryError(f"{stmt.type.name} statements are not allowed: the "
                                        "catalog is read-only (only SELECT queries, including "
                                        f"DESCRIBE, SHOW and EXPLAIN{allowed}, may run)")
        for i, stmt in enumerate(statements, 1):
            with _query_errors():
                self._con.execute(stmt, parameters if i == len(statements) else None)
        return self

    sql = query = execute

    def __getattr__(self, name: str):
        if name not in self._RESULTS:
            raise AttributeError(f"the read-only catalog connection has no '{name}': run SQL "
                                 "with sql(), then fetch with df(), fetchall(), arrow() or pl()")
        result = getattr(self._con, name)
        if not callable(result):
            return result

        @functools.wraps(result)
        def fetch(*args, **kwargs):
            with _query_errors():
                return result(*args, **kwargs)
        return fetch

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> CatalogConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def _query_errors() -> Iterator[None]:
    """DuckDB errors as :class:`CatalogQueryError`, a refused file access said as such."""
    try:
        yield
    except duckdb.PermissionException as exc:
        raise CatalogQueryError(f"refused: {str(exc).splitlines()[0]} (queries may read only "
                                "the catalog's tables)") from None
    except duckdb.Error as exc:
        raise CatalogQueryError(f"SQL error: {str(exc).strip()}") from None


def _sql_text(value: str | bool) -> str:
    """A SQL literal: booleans bare, text single-quoted."""
    if isinstance(value, bool):
        return str(value).lower()
    return "'" + value.replace("'", "''") + "'"


def _state_path(home: DgeHome) -> Path:
    return home.catalog.with_suffix(".state.json")


def _read_state(home: DgeHome) -> dict | None:
    """What the catalog was built for; None without a catalog or a readable state (a refresh
    killed before publishing it), which makes the next refresh rebuild."""
    if not home.catalog.exists():
        return None
    try:
        return json.loads(_state_path(home).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _view_sql(spec: TableSpec, warehouse: Warehouse, has_data: bool) -> str:
    if not has_data:
        cols = ", ".join(f"CAST(NULL AS {typ}) AS {name}" for name, typ in spec.columns)
        return f"CREATE VIEW {spec.name} AS SELECT {cols} WHERE false"
    if not spec.per_study:
        path = _sql_text(str(warehouse.partition_path(spec.name, None)))
        return f"CREATE VIEW {spec.name} AS SELECT * FROM read_parquet({path})"
    pattern = _sql_text(str(warehouse.table_dir(spec.name) / f"{PARTITION_KEY}=*" / DATA_FILE))
    return (f"CREATE VIEW {spec.name} AS SELECT {PARTITION_KEY}, * EXCLUDE ({PARTITION_KEY}) "
            f"FROM read_parquet({pattern}, hive_partitioning = true, union_by_name = true, "
            f"hive_types = {{'{PARTITION_KEY}': VARCHAR}})")


def _open(database: Path, warehouse: Warehouse, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that can read ``warehouse``: on S3, with httpfs loaded from its
    pip package and the environment's S3 settings as a temporary secret scoped to the
    warehouse. Extensions are never installed or auto-loaded, secrets never persisted."""
    extension = httpfs_extension() if warehouse.on_s3 else None
    con = duckdb.connect(str(database), read_only=read_only,
                         config={"autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False,
                                 "allow_persistent_secrets": False})
    if extension is None:
        return con
    try:
        con.execute(f"LOAD {_sql_text(str(extension))}")
        con.execute(_s3_secret_sql(S3Settings.from_env(), warehouse.uri.rstrip("/") + "/"))
    except duckdb.Error as exc:
        con.close()
        # Not DuckDB's message: it may quote the statement, which holds the secret key.
        raise CatalogQueryError(f"cannot set up S3 access to the warehouse {warehouse.uri} "
                                f"from the environment ({type(exc).__name__})") from None
    return con


def _s3_secret_sql(settings: S3Settings, scope: str) -> str:
    """``CREATE TEMPORARY SECRET`` for ``settings``: a custom endpoint (MinIO, moto) is
    addressed path-style, over TLS only when its URL says https."""
    options: dict[str, str | bool | None] = {
        "KEY_ID": settings.key_id, "SECRET": settings.secret,
        "SESSION_TOKEN": settings.session_token, "REGION": settings.region or "us-east-1",
        "SCOPE": scope}
    if settings.endpoint:
        url = urlsplit(settings.endpoint)
        options |= {"ENDPOINT": url.netloc, "URL_STYLE": "path", "USE_SSL": url.scheme == "https"}
    body = "".join(f", {key} {_sql_text(value)}" for key, value in options.items()
                   if value is not None)
    return f"CREATE TEMPORARY SECRET {S3_SECRET} (TYPE s3{body})"


@contextmanager
def _catalog_lock(home: DgeHome) -> Iterator[None]:
    home.root.mkdir(parents=True, exist_ok=True)
    with file_lock(home.root / ".catalog.lock"):
        yield


def refresh_catalog(home: DgeHome, *, force: bool = False) -> bool:
    """Rebuild the catalog if a table gained or lost all its data, or the warehouse moved;
    return True if rebuilt."""
    with _catalog_lock(home):
        warehouse = Warehouse(home.warehouse)
        written = warehouse.tables_with_data()
        state = {"warehouse": warehouse.uri, "tables": {name: name in written for name in TABLES}}
        # Only the lock's holder makes temp catalogs: any left are a killed refresh's.
        for stale in home.root.glob(f".{home.catalog.stem}.*.tmp*"):
            stale.unlink(missing_ok=True)
        if not force and _read_state(home) == state:
            return False
        tmp = home.catalog.with_name(f".{home.catalog.name}.{uuid.uuid4().hex}.tmp")
        try:
            con = _open(tmp, warehouse, read_only=False)
            for spec in TABLES.values():
                con.execute(_view_sql(spec, warehouse, state["tables"][spec.name]))
            con.close()
            os.replace(tmp, home.catalog)
        finally:
            tmp.unlink(missing_ok=True)
            tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
        # Published by rename like the catalog: readers do not take the lock.
        with atomic_path(_state_path(home)) as state_tmp:
            state_tmp.write_text(json.dumps(state))
        return True


def connect(home: DgeHome) -> CatalogConnection:
    """A read-only connection to the catalog that can read the warehouse and nothing else.

    It cannot write files, attach databases, install or load extensions, or change these
    settings: DuckDB may open files under the warehouse only (local folder or S3 prefix, plus
    its own spill folder beside the catalog), with external access off and the configuration
    locked; :class:`CatalogConnection` refuses statements that would write there. Use it from
    notebooks: ``connect(resolve_home()).sql("select ...").df()``.
    """
    return _connect(home, NOTEBOOK_STATEMENTS)


def _connect(home: DgeHome, allowed: frozenset[duckdb.StatementType]) -> CatalogConnection:
    warehouse = Warehouse(home.warehouse)
    state = _read_state(home)
    if state is None or state.get("warehouse") != warehouse.uri:
        refresh_catalog(home)
    con = _open(home.catalog, warehouse, read_only=True)
    con.execute("SET allowed_directories = $dirs", {"dirs": [warehouse.uri.rstrip("/") + "/"]})
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return CatalogConnection(con, allowed)


def open_catalog(root: str | os.PathLike | None = None) -> CatalogConnection:
    """The notebook entry point: a read-only connection (see :func:`connect`) to the catalog
    under ``root`` (default: ``$DGE_HOME``, else the repository's ``data/``)."""
    from dge_platform.storage.home import resolve_home

    return connect(resolve_home(root))


def query(home: DgeHome, sql: str) -> pd.DataFrame:
    """Run read-only SQL against the catalog and return the last statement's result.

    Raises
    ------
    CatalogQueryError
        For statements other than SELECT/EXPLAIN (COPY, EXPORT, ATTACH, INSTALL, SET, ...),
        for access outside the warehouse, and for SQL errors.
    """
    with _connect(home, ALLOWED_STATEMENTS) as con:
        return con.execute(sql).df()
