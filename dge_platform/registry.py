"""Registered studies: the folders under ``DGE_HOME/studies``, their fingerprints, and adding
or updating one from a user's folder."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from dge_platform._core.problems import Problem, StudyInputError
from dge_platform.storage.home import DgeHome
from dge_platform.storage.warehouse import remove_stale_temps
from dge_platform.study.paths import STUDY_FILE
from dge_platform.validation import ValidatedStudy, hash_files, input_files, load_study


def study_folders(home: DgeHome) -> list[Path]:
    """Registered study folders (visible subfolders of the studies folder), sorted by name."""
    if not home.studies.is_dir():
        return []
    return sorted(p for p in home.studies.iterdir() if p.is_dir() and not p.name.startswith("."))


def fingerprint(study_dir: Path) -> str:
    """Content hash of a study's input files (:func:`input_files`, as validation lists them,
    so it equals the input hash a study's ingest records); changes whenever any input
    changes. Works on invalid studies too."""
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
