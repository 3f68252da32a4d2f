"""Bulk studies: the count matrix, or the plan to build counts from the sample sheet's BAM,
quantifier or FASTQ files; the sample sheet; the design."""

from __future__ import annotations

import pandas as pd

from dge_platform._core.problems import Problem
from dge_platform.counting.libraries import (
    SOURCE_COLUMNS,
    assemble_counts,
    plan_counts,
    sheet_source,
)
from dge_platform.study.config import StudyConfig
from dge_platform.study.kinds import COUNTING_KEYS
from dge_platform.study.paths import STUDY_FILE
from dge_platform.validation.checker import Checker
from dge_platform.validation.design import check_design


def check(c: Checker) -> None:
    """Read and check a bulk study: counts, sample sheet, counting plan, gene sets, design."""
    _check_samples(c, plan=True)


def summary(config: StudyConfig, samples: pd.DataFrame, cells) -> list[str]:
    """Nothing beyond the size line ``dge validate`` prints for every study."""
    return []


def check_unknown_kind(c: Checker) -> None:
    """A study whose kind is invalid (reported already): the bulk checks that need no kind,
    so one run still reports every problem with its counts, sample sheet and design."""
    _check_samples(c, plan=False)


def _check_samples(c: Checker, *, plan: bool) -> None:
    c.read_counts()
    c.read_sheet(required=True)
    if plan:
        plan_study_counts(c)
    c.read_gene_sets()
    c.read_network()
    if c.counts is not None and c.sheet is not None:
        c.match_samples()
    if c.sheet is not None:
        check_design(c, c.sheet, c.v.get("design"), c.v.get("contrasts") or [],
                     c.v.get("batch"))


def plan_study_counts(c: Checker) -> None:
    """With ``counts:`` any sequencing-output column is unused; without it the sample sheet
    must name each sample's BAM, quantifier output or FASTQ files."""
    source = sheet_source(list(c.sheet.columns)) if c.sheet is not None else None
    if c.v.get("counts") or "counts" in c.invalid:
        if source not in (None, "ambiguous"):
            c.warnings.append(Problem(c.sheet_file, f"column '{SOURCE_COLUMNS[source][0]}'",
                                      "not used: the counts come from 'counts:' in study.yaml",
                                      "remove 'counts:' to count from these files"))
        c.problems += [Problem(STUDY_FILE, key, "only used when counts come from the "
                               "sample sheet's bam, quant or fastq_1 column (this study "
                               "gives counts:)", "remove it")
                       for key in COUNTING_KEYS if c.v.get(key) is not None]
        return
    if c.sheet is None:
        return
    if source is None:
        c.problems.append(Problem(STUDY_FILE, "counts", "required key is missing",
                                  "name the count matrix, or give each sample's BAM, "
                                  "quantifier output or FASTQ files in a bam, quant or "
                                  "fastq_1 column of the sample sheet"))
        return
    plan, problems = plan_counts(c.dir, c.v, c.sheet, c.sheet_file)
    c.problems += problems
    if plan is None:
        return
    c.plan = plan
    if plan.source == "quant":
        c.built = assemble_counts(plan)
        c.counts = c.built.counts  # for the sample match; checked when built
