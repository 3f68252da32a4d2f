"""Registered studies: the folders under ``DGE_HOME/studies``, their fingerprints, and adding
or updating one from a user's folder."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from dge_platform.cell_readers import tenx_names
from dge_platform.home import DgeHome
from dge_platform.library_counts import declared_sheet, source_files
from dge_platform.problems import Problem, StudyInputError
from dge_platform.study import (
    STUDY_FILE,
    read_study_yaml,
    resolved_problem,
    study_glob,
    study_path,
)
from dge_platform.validation import ValidatedStudy, hash_files, load_study
from dge_platform.warehouse import remove_stale_temps

# study.yaml keys naming input files (or globs, or a 10x matrix folder), in the order
# validation lists them, so a study's fingerprint equals the input hash its ingest records.
FILE_KEYS = ("counts", "cells", "samples", "plate_map")


def study_folders(home: DgeHome) -> list[Path]:
    """Registered study folders (visible subfolders of the studies folder), sorted by name."""
    if not home.studies.is_dir():
        return []
    return sorted(p for p in home.studies.iterdir() if p.is_dir() and not p.name.startswith("."))


def input_files(study_dir: Path) -> list[Path]:
    """The files a study.yaml names that exist inside the folder, study.yaml first, in the
    order validation lists them (the three files of a 10x matrix folder included).

    Works on invalid studies too, so a change to any input can be noticed cheaply; a path
    the study rules refuse (:func:`study_path`) is left out: validation reports it.
    """
    yaml_path, refused = study_path(study_dir, STUDY_FILE, "")
    files = [yaml_path] if refused is None and yaml_path.is_file() else []
    raw, _ = read_study_yaml(study_dir)
    if raw is None:
        return files
    files += _named_files(study_dir, [raw.get(key) for key in FILE_KEYS])
    files += _sequencing_files(study_dir, raw)
    return files + _named_files(study_dir, raw.get("gene_sets")
                                if isinstance(raw.get("gene_sets"), list) else [])


def _named_files(study_dir: Path, values: list) -> list[Path]:
    files = []
    for value in values:
        if not isinstance(value, str):
            continue
        matches, refused = study_glob(study_dir, value, "")
        for path in [] if refused else matches:
            named = [path / name for name in tenx_names(path)] if path.is_dir() else [path]
            files += [f for f in named if f.is_file()
                      and not resolved_problem(study_dir, f)]
    return files


def _sequencing_files(study_dir: Path, raw: dict) -> list[Path]:
    """The BAM, quantifier or FASTQ files (and references) a bulk study's sample sheet names
    for its counts, as validation lists them."""
    sheet = declared_sheet(study_dir, raw)
    return [] if sheet is None else source_files(study_dir, raw, sheet)


def fingerprint(study_dir: Path) -> str:
    """Content hash of a study's input files; changes whenever any input changes."""
    return hash_files(study_dir, input_files(study_dir))


def add_study(home: DgeHome, source: Path) -> ValidatedStudy:
    """Validate ``source`` and copy its input files to ``DGE_HOME/studies/<id>``.

    Adding an id again replaces that study's folder. Nothing is copied if the study has
    problems; the registered copy is swapped in by renames, never left half-written.
    """
    source = Path(source).resolve()
    study = load_study(source)
    target = home.study_dir(study.config.id)
    if target.resolve() == source:
        return study
    if target.exists() and not target.is_dir():
        raise StudyInputError(str(source), [Problem(STUDY_FILE, "id", f"{target} exists and is "
                                                    "not a study folder", "remove it")])
    home.studies.mkdir(parents=True, exist_ok=True)
    # staging and retired copies of killed 'dge add' runs
    remove_stale_temps(home.studies, ".incoming-*", ".retired-*")
    staging = home.studies / f".incoming-{study.config.id}-{uuid.uuid4().hex[:8]}"
    try:
        for path in study.files:  # named paths: a link inside the study is copied as a file
            dest = staging / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        retired = home.studies / f".retired-{study.config.id}-{uuid.uuid4().hex[:8]}"
        if target.exists():
            target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return study
