"""`dge ui` listens on loopback only: every TCP socket its processes (webserver, daemon, code
server) listen on is bound to 127.0.0.1 or ::1, never to all interfaces."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from dge_platform_tests._helpers import STARTUP_TIMEOUT, _stop
from dge_platform_tests.services import free_port

LISTEN = "0A"
LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1 in /proc/net


def _group_pids(pgid: int) -> list[int]:
    """Processes of one process group (the ``dge ui`` session)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
            except ProcessLookupError:
                pass
    return pids


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except (FileNotFoundError, PermissionError):
        pass
    return inodes


def listening_addresses(pgid: int) -> list[tuple[str, int]]:
    """(hex address, port) of every TCP socket in LISTEN state owned by the group."""
    inodes = set().union(*(_socket_inodes(pid) for pid in _group_pids(pgid)))
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port = fields[1].split(":")
            if fields[3] == LISTEN and fields[9] in inodes:
                found.append((address, int(port, 16)))
    return found


def test_dge_ui_listens_on_loopback_only(home, tmp_path):
    port = free_port()
    dge = Path(sys.executable).with_name("dge")
    log = tmp_path / "ui.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(dge), "ui", "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=os.environ.copy())
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"dge ui not up after {STARTUP_TIMEOUT:.0f} s:\n"
                                + log.read_text(errors="replace")[-3000:])
                time.sleep(0.5)
        sockets = listening_addresses(proc.pid)
    finally:
        _stop(proc)
    # The code server talks over a Unix socket; any TCP listener must be on loopback.
    assert port in {p for _, p in sockets}
    assert all(address in LOOPBACK for address, _ in sockets), sockets
