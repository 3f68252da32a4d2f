"""A study's input files, listed once: what validation records as the study's files (and
hashes as its data version) and what the registry fingerprints to notice a changed study.

One enumerator serves both, so a registered study's fingerprint equals the input hash its
ingest records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dge_platform._core.memo import file_digest
from dge_platform.counting.libraries import declared_sheet, source_files
from dge_platform.readers.cells import tenx_names
from dge_platform.study.config import read_study_yaml
from dge_platform.study.paths import STUDY_FILE, resolved_problem, study_glob, study_path

FILE_KEYS = ("counts", "cells", "samples", "plate_map")
"""study.yaml keys naming input files (or globs, or a 10x matrix folder), in listing order."""


def input_files(study_dir: Path, raw: Mapping[str, Any] | None = None) -> list[Path]:
    """The files a study.yaml names that exist inside the folder: study.yaml, then the files
    of ``counts``, ``cells``, ``samples`` and ``plate_map`` (the three files of a 10x matrix
    folder), the BAM, quantifier or FASTQ files and references a bulk study's sample sheet
    names for its counts, the ``gene_sets`` files and the ``tf_network`` file.

    ``raw`` is the study.yaml mapping when already read. Works on invalid studies too, so a
    change to any input can be noticed cheaply; a path the study rules refuse
    (:func:`study_path`) is left out: validation reports it.
    """
    yaml_path, refused = study_path(study_dir, STUDY_FILE, "")
    files = [yaml_path] if refused is None and yaml_path.is_file() else []
    if raw is None:
        raw, _ = read_study_yaml(study_dir)
    if raw is None:
        return files
    files += _named_files(study_dir, [raw.get(key) for key in FILE_KEYS])
    files += _sequencing_files(study_dir, raw)
    files += _named_files(study_dir, raw.get("gene_sets")
                          if isinstance(raw.get("gene_sets"), list) else [])
    return files + _named_files(study_dir, [raw.get("tf_network")])


def hash_files(study_dir: Path, files: list[Path]) -> str:
    """SHA-256 over file names (relative to the study) and the files' SHA-256 digests, which
    are memoised per process while a file is unchanged: the sensor re-checks studies with
    multi-gigabyte BAMs every few seconds."""
    digest = hashlib.sha256()
    root = study_dir.resolve()
    for path in files:
        digest.update(str(path.resolve().relative_to(root)).encode() + b"\0")
        digest.update(file_digest(path).encode() + b"\n")
    return digest.hexdigest()[:16]


def _named_files(study_dir: Path, values: list) -> list[Path]:
    """The files named by study.yaml values: a name that exists as written is that file (or
    10x folder), as the readers take it; any other name is a glob."""
    files = []
    for value in values:
        if not isinstance(value, str):
            continue
        path, refused = study_path(study_dir, value, "")
        if refused is None and path.exists():
            matches = [path]
        else:
            matches, refused = study_glob(study_dir, value, "")
        for path in [] if refused else matches:
            named = [path / name for name in tenx_names(path)] if path.is_dir() else [path]
            files += [f for f in named if f.is_file()
                      and not resolved_problem(study_dir, f)]
    return files


def _sequencing_files(study_dir: Path, raw: Mapping[str, Any]) -> list[Path]:
    """The BAM, quantifier or FASTQ files (and references) a bulk study's sample sheet names
    for its counts."""
    sheet = declared_sheet(study_dir, raw)
    return [] if sheet is None else source_files(study_dir, raw, sheet)
