"""Where a study's files are: the study file's name and the rules for paths it names.

Paths in study.yaml are relative to the study folder and may not leave it (docs/security.md).
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

from dge_platform._core.problems import Problem, short_repr

STUDY_FILE = "study.yaml"


PATH_FIX = ("name a file inside the study folder by its path relative to the folder; copy "
            "shared files in (symbolic links must stay inside the folder)")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _path_text_problem(relative: str) -> str | None:
    """Why a path from study.yaml is refused as written (before touching the disk), or None."""
    if "\0" in relative:
        return "contains a NUL byte"
    if _URL.match(relative):
        return "is a URL; only files inside the study folder are read"
    if relative.startswith("~"):
        return "starts with '~' (home folders are not expanded)"
    if os.path.isabs(relative):
        return "leads outside the study folder (absolute path)"
    if os.path.normpath(relative).split(os.sep)[0] == os.pardir:
        return "leads outside the study folder ('..')"
    return None


def resolved_problem(study_dir: Path, path: Path) -> str | None:
    """Why ``path`` is refused once symbolic links are resolved, or None (also when it does
    not exist: callers report a missing file with their own advice)."""
    try:
        root, target = study_dir.resolve(), path.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop before Python 3.13
        return f"cannot be resolved ({getattr(exc, 'strerror', None) or 'symbolic link loop'})"
    if target != root and root not in target.parents:
        return "leads outside the study folder through a symbolic link"
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # e.g. a name too long for the file system
        return f"cannot be accessed ({exc.strerror})"
    return None


def study_path(study_dir: Path, relative: str, key: str) -> tuple[Path | None, Problem | None]:
    """The path of a file named by ``key`` in study.yaml, or the problem refusing it.

    Paths are relative to the study folder, without NUL bytes, URLs, ``~``, absolute paths
    or ``..`` above the folder, and must resolve inside the folder after following symbolic
    links. The path is returned as named (``study_dir`` joined with the normalized path), so
    a file keeps its name even when it is a link to another file of the study.
    """
    why = _path_text_problem(relative)
    if key and os.path.normpath(relative) == STUDY_FILE:  # key "": study.yaml itself is read
        why = "is study.yaml itself, not a data file"
    path = study_dir / os.path.normpath(relative)
    why = why or resolved_problem(study_dir, path)
    if why:
        return None, Problem(STUDY_FILE, key, f"path {short_repr(relative)} {why}", PATH_FIX)
    return path, None


def study_glob(study_dir: Path, pattern: str, key: str) -> tuple[list[Path], Problem | None]:
    """Files matching a glob relative to the study folder (sorted), under the rules of
    :func:`study_path` for the pattern and for every match."""
    why = _path_text_problem(pattern)
    if why:
        return [], Problem(STUDY_FILE, key, f"pattern {short_repr(pattern)} {why}", PATH_FIX)
    matches = sorted(Path(p) for p in glob.glob(str(study_dir / os.path.normpath(pattern))))
    refused = {p: why for p in matches if (why := resolved_problem(study_dir, p))}
    if refused:
        first, why = next(iter(refused.items()))
        return [], Problem(STUDY_FILE, key, f"{len(refused)} file(s) matched by "
                           f"{short_repr(pattern)} are refused: "
                           f"{first.relative_to(study_dir)} {why}", PATH_FIX)
    return matches, None
