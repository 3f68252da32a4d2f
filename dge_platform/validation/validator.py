"""Validate a study folder completely before any asset runs, collecting every problem.

The study.yaml checks (``study``) run first, then the checks of the study's kind, looked up
by kind name in :data:`CHECKS`; the study's files are listed by ``inputs``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from dge_platform._core.problems import Problem, StudyInputError
from dge_platform.counting.libraries import SOURCE_COLUMNS, BuiltCounts, CountPlan
from dge_platform.readers.count_checks import check_counts
from dge_platform.study.config import StudyConfig, parse_study_config, read_study_yaml
from dge_platform.study.kinds import KINDS
from dge_platform.validation import bulk, screen, singlecell
from dge_platform.validation.checker import Checker
from dge_platform.validation.inputs import hash_files, input_files
from dge_platform.validation.study import (
    id_problems,
    kind_problems,
    problem_keys,
    registered_folder_problems,
    valid_fields,
)

__all__ = ["CHECKS", "KindValidation", "ValidatedStudy", "ValidationReport", "hash_files",
           "load_study", "study_summary", "validate_study", "with_built_counts"]


@dataclass(frozen=True)
class KindValidation:
    """What validation does per kind: ``check`` reads the study's inputs into a
    :class:`Checker` and adds its problems and warnings; ``summary(config, samples, cells)``
    gives the lines ``dge validate`` prints of a valid study beyond its size."""

    check: Callable[[Checker], None]
    summary: Callable[..., list[str]]


CHECKS: dict[str, KindValidation] = {
    "bulk": KindValidation(bulk.check, bulk.summary),
    "screen": KindValidation(screen.check, screen.summary),
    "singlecell": KindValidation(singlecell.check, singlecell.summary),
}
"""Each kind's validation (``study.kinds.KINDS``), by kind name."""
if CHECKS.keys() != KINDS.keys():
    raise RuntimeError(f"validation checks the kinds {sorted(CHECKS)} but study.kinds declares "
                       f"{sorted(KINDS)}: give each kind its checks in CHECKS")


@dataclass
class ValidatedStudy:
    """A study whose inputs passed every check.

    Attributes
    ----------
    config
        The parsed study.yaml.
    study_dir
        The study folder.
    counts
        Raw integer counts, genes x samples, columns in sample-sheet order. Single-cell:
        the cells' counts summed per biological sample. None while counts from BAM or
        FASTQ files are not built yet (``plan``; see :func:`with_built_counts`).
    samples
        Sample sheet (text values), indexed by sample, same order as ``counts``.
        Single-cell: one row per biological sample (donor x design variables x batch).
    gene_symbols
        Gene symbol by gene id where the input carries them, else None.
    files
        Every input file, study.yaml first (:func:`~dge_platform.validation.inputs.input_files`).
    warnings
        Non-fatal observations to show the user.
    cells
        Single-cell: the cells x genes raw counts (sparse AnnData) with cell metadata and
        each cell's biological ``sample`` in ``obs``; else None.
    plan
        How counts are built from the sample sheet's ``bam``/``quant``/``fastq_1`` files;
        None for ``counts:`` input.
    count_stats
        Per-sample counting statistics (``library_counts.STAT_COLUMNS``) once counts are
        built from sequencing outputs, else None.
    """

    config: StudyConfig
    study_dir: Path
    counts: pd.DataFrame | None
    samples: pd.DataFrame
    gene_symbols: pd.Series | None
    files: list[Path]
    warnings: list[Problem] = field(default_factory=list)
    cells: Any = None
    plan: CountPlan | None = None
    count_stats: pd.DataFrame | None = None

    @property
    def input_hash(self) -> str:
        """Content hash of every input file (the study's data version)."""
        return hash_files(self.study_dir, self.files)


@dataclass
class ValidationReport:
    """What ``validate_study`` found: the study if valid, else every problem."""

    study: ValidatedStudy | None
    problems: list[Problem]
    warnings: list[Problem]


def load_study(study_dir: Path, expected_id: str | None = None) -> ValidatedStudy:
    """Validate a study and return it, or raise :class:`StudyInputError` with every problem."""
    report = validate_study(study_dir, expected_id)
    if report.study is None:
        raise StudyInputError(str(study_dir), report.problems)
    return report.study


def validate_study(study_dir: Path, expected_id: str | None = None) -> ValidationReport:
    """Check a study folder: study.yaml, count matrix, sample sheet, design and contrasts.

    Checks run as far as the inputs allow, so one call reports every problem at once.
    ``expected_id`` is the id a registered study must carry (its folder name).
    """
    study_dir = Path(study_dir)
    if expected_id is not None:
        problems = registered_folder_problems(study_dir, expected_id)
        if problems:
            return ValidationReport(None, problems, [])
    raw, problems = read_study_yaml(study_dir)
    if raw is None:
        return ValidationReport(None, problems, [])
    config, problems = parse_study_config(raw)
    problems += kind_problems(raw)
    problems += id_problems(raw, expected_id)
    values = dict(config) if config else valid_fields(raw, problems)
    checker = Checker(study_dir, values, problems, problem_keys(problems))
    kind = values.get("kind")  # absent when invalid (reported)
    (bulk.check_unknown_kind if kind is None else CHECKS[kind].check)(checker)
    if checker.problems or config is None:
        return ValidationReport(None, checker.problems, checker.warnings)
    if checker.derived is not None:  # a screen's design, contrasts and batch
        config = config.model_copy(update=checker.derived)
    study = ValidatedStudy(config, study_dir, checker.counts, checker.sheet,
                           checker.gene_symbols, input_files(study_dir, raw), checker.warnings,
                           checker.cells, checker.plan)
    if checker.built is not None:  # quantifier outputs: imported during validation
        try:
            study = with_built_counts(study, checker.built)
        except StudyInputError as err:
            return ValidationReport(None, err.problems, checker.warnings)
    return ValidationReport(study, [], study.warnings)


def with_built_counts(study: ValidatedStudy, built: BuiltCounts) -> ValidatedStudy:
    """The study with counts built from its sequencing outputs: estimated counts rounded
    (as ``DESeqDataSetFromTximport`` does), the count checks applied, statistics and notes
    attached.

    Raises
    ------
    StudyInputError
        When the built counts fail a check (e.g. a sample with no assigned fragment), or
        the reads lie on the other strand than ``strandedness`` says.
    """
    where = study.plan.describe()
    counts, problems = check_counts(built.counts, where, round_counts=built.estimated)
    problems = built.problems + problems
    if problems:
        raise StudyInputError(str(study.study_dir), problems)
    counts = counts[list(study.samples.index)]
    symbols = built.gene_symbols if study.gene_symbols is None else study.gene_symbols
    notes = [Problem(study.plan.sheet_file, f"column '{SOURCE_COLUMNS[study.plan.source][0]}'",
                     note) for note in built.notes]
    return replace(study, counts=counts, gene_symbols=symbols, count_stats=built.stats,
                   warnings=[*study.warnings, *notes])



def study_summary(study: ValidatedStudy) -> list[str]:
    """The kind's lines on a valid study for ``dge validate`` (wells by role, cells...)."""
    return CHECKS[study.config.kind].summary(study.config, study.samples, study.cells)
