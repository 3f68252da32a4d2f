"""Per-process memo of what is read from files (digests, parsed references), reused while a
file is unchanged: the sensor re-fingerprints studies with multi-gigabyte BAMs every few
seconds, and validation and counting read the same GTF and FASTA in one process."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_ENTRIES = 4096
_MEMO: dict[tuple, Any] = {}


def memoised(path: Path, reader: Callable[[Path], Any]) -> Any:
    """``reader(path)``, reused while ``path`` keeps its size, mtime and inode."""
    st = path.stat()
    key = (reader.__module__, reader.__qualname__, str(path.resolve()), st.st_size,
           st.st_mtime_ns, st.st_ino)
    if key not in _MEMO:
        if len(_MEMO) >= MAX_ENTRIES:
            _MEMO.clear()
        _MEMO[key] = reader(path)
    return _MEMO[key]


def file_digest(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes, memoised."""
    return memoised(path, _sha256)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
