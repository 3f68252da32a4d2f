"""Throwaway PostgreSQL and Redis servers on loopback, for tests of the scale-out setup.

Each server gets a free port and a temporary folder, starts within a bounded wait and is
stopped at teardown. Missing binaries skip the tests with the command that installs them, or
fail them under CI (env ``CI``), where ``.ci/run`` should have installed them.

Test modules use the session fixtures by importing them::

    from dge_platform_tests.services import postgres_server, redis_server  # noqa: F401
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

INSTALL = "apt-get install -y postgresql redis-server"
PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
"""Debian keeps initdb and pg_ctl out of PATH, in one folder per major version."""
START_TIMEOUT = 30.0
PG_USER = "dge"
PG_ENV = ("DGE_PG_HOST", "DGE_PG_PORT", "DGE_PG_USER", "DGE_PG_PASSWORD", "DGE_PG_DB")
"""The variables deploy/dagster.yaml reads its Postgres connection from."""


@dataclass(frozen=True)
class Postgres:
    """A running PostgreSQL server; its superuser's password exists only in this process."""

    host: str
    port: int
    password: str = field(repr=False)  # kept out of tracebacks and test reports

    def connect(self, db: str = "postgres"):
        """A psycopg2 connection to database ``db`` (autocommit); close it after use."""
        import psycopg2

        connection = psycopg2.connect(host=self.host, port=self.port, user=PG_USER,
                                      password=self.password, dbname=db)
        connection.autocommit = True
        return connection

    def query(self, db: str, sql: str, *params) -> list[tuple]:
        """The rows of one statement on database ``db``."""
        with closing(self.connect(db)) as connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def create_database(self, name: str) -> None:
        """An empty database ``name`` (one per test keeps their rows apart)."""
        self.query("postgres", f'create database "{name}"')

    def env(self, db: str) -> dict[str, str]:
        """The ``DGE_PG_*`` variables pointing deploy/dagster.yaml at database ``db``."""
        return dict(zip(PG_ENV, (self.host, str(self.port), PG_USER, self.password, db)))


@dataclass(frozen=True)
class Redis:
    """A running Redis server without persistence."""

    host: str
    port: int

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def missing(what: str) -> None:
    """Skip (or, under CI, fail) because a server binary is not installed."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} not found: .ci/run should have installed it ({INSTALL})",
                    pytrace=False)
    pytest.skip(f"{what} not installed; run: sudo {INSTALL}")


def _pg_binary(name: str) -> str:
    for folder in PG_BIN_DIRS:
        if (folder / name).is_file():
            return str(folder / name)
    return shutil.which(name) or ""


def _as_db_owner(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the packaged ``postgres`` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run_as_db_owner(command: list[str], log: Path | None = None) -> None:
    """Run a PostgreSQL tool, raising with its output (and the server log) if it fails."""
    done = subprocess.run(_as_db_owner(command), capture_output=True, text=True,
                          timeout=START_TIMEOUT + 5, check=False)
    if done.returncode:
        tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
        raise RuntimeError(f"{Path(command[0]).name} failed ({done.returncode}):\n"
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}{tail}")


def _wait_for(ready, what: str, log: Path | None, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not start within {timeout:.0f} s\n{tail}")


@contextmanager
def running_postgres() -> Iterator[Postgres]:
    """initdb + pg_ctl on 127.0.0.1 at a free port, in a temporary folder; durability is off
    (fsync, synchronous commit), which is what makes a throwaway server fast."""
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if not (initdb and pg_ctl):
        missing("PostgreSQL (initdb, pg_ctl)")
    # A folder directly under /tmp, so the postgres user can reach it (pytest's are 0700).
    root = Path(tempfile.mkdtemp(prefix="dge-pg-"))
    password, port = secrets.token_urlsafe(24), free_port()
    (root / "pwfile").write_text(password)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(root / "pwfile", "postgres")
    data, log = root / "data", root / "server.log"
    options = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' "
               "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    try:
        _run_as_db_owner([initdb, "-D", str(data), "-U", PG_USER, "--pwfile",
                          str(root / "pwfile"), "--auth=scram-sha-256", "--no-sync", "-E",
                          "UTF8", "--locale=C.UTF-8"])
        (root / "pwfile").unlink()
        _run_as_db_owner([pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t",
                          str(int(START_TIMEOUT)), "-o", options, "start"], log)
        server = Postgres("127.0.0.1", port, password)
        _wait_for(lambda: _accepts(server), "PostgreSQL", log)
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_db_owner([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
                           capture_output=True, timeout=START_TIMEOUT, check=False)
        shutil.rmtree(root, ignore_errors=True)


def _accepts(server: Postgres) -> bool:
    import psycopg2

    try:
        server.connect().close()
        return True
    except psycopg2.OperationalError:
        return False


@contextmanager
def running_redis() -> Iterator[Redis]:
    """redis-server on 127.0.0.1 at a free port, no RDB/AOF persistence."""
    binary = shutil.which("redis-server")
    if not binary:
        missing("redis-server")
    root = Path(tempfile.mkdtemp(prefix="dge-redis-"))
    port, log = free_port(), root / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port),
                                    "--save", "", "--appendonly", "no", "--dir", str(root)],
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        server = Redis("127.0.0.1", port)
        _wait_for(lambda: process.poll() is None and _pings(server), "redis-server", log)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)


def _pings(server: Redis) -> bool:
    import redis

    try:
        return bool(redis.Redis(server.host, server.port, socket_timeout=1).ping())
    except redis.exceptions.ConnectionError:
        return False


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """A PostgreSQL server for the test session (create a database per test)."""
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    """A Redis server for the test session."""
    with running_redis() as server:
        yield server


@contextmanager
def explore_server(home: Path) -> Iterator[str]:
    """``dge explore`` over the catalog of ``home`` on a free loopback port: its base URL,
    once the app answers (60 s at most); stopped on exit."""
    import urllib.request

    from dge_platform_tests.conftest import dge_process

    port = free_port()
    proc = dge_process("explore", "--port", str(port), env={"DGE_HOME": str(home)})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(base + "/_dash-layout", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)
