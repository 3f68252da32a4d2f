"""The checks every kind's design goes through: design columns, contrasts, replicates and
rank, and the warnings about batch and numeric columns."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dge_platform._core.problems import Problem
from dge_platform.study.design import (
    design_variables,
    is_numeric,
    rank_problems,
    study_design_frame,
)
from dge_platform.study.paths import STUDY_FILE
from dge_platform.study.replicates import collapse_sheet, technical_replicate_problems
from dge_platform.validation.checker import Checker

MIN_REPLICATES = 2


def check_design(c: Checker, sheet: pd.DataFrame, design: str | None, contrasts: list,
                 batch: str | None, min_replicates: int = MIN_REPLICATES,
                 donor: str | None = None) -> None:
    """Design columns, contrasts, replicates and rank; screens pass their tested wells
    and derived design, contrasts and batch; single-cell studies their donor column
    (a factor) and samples (donors are counted separately)."""
    if design is None:
        return
    variables, problems = design_variables(design)
    c.problems += problems
    file = c.sheet_file
    absent = [v for v in variables if v not in sheet.columns]
    for var in absent:
        c.problems.append(Problem(file, f"column '{var}'", f"used in design "
                                  f"{design!r} but missing; columns: "
                                  f"{', '.join(sheet.columns)}", "add the column or fix "
                                  "the design"))
    present = [v for v in variables if v in sheet.columns]
    factors = {contrast.factor for contrast in contrasts} | {batch, donor}
    for var in present:
        if sheet[var].isna().any():
            samples = ", ".join(sheet.index[sheet[var].isna()][:5])
            c.problems.append(Problem(file, f"column '{var}'", f"empty for sample(s) "
                                      f"{samples}", "fill in every design value"))
        elif (var not in factors and is_numeric(sheet[var])
              and not np.isfinite(pd.to_numeric(sheet[var])).all()):
            c.problems.append(Problem(file, f"column '{var}'", "holds an infinite value, "
                                      "so it cannot be a continuous covariate",
                                      "give finite numbers, or text labels if it names "
                                      "groups"))
    if batch and batch not in sheet.columns:
        c.problems.append(Problem(STUDY_FILE, "batch", f"column '{batch}' not in {file}",
                                  "name a sample-sheet column"))
    _check_contrasts(c, contrasts, design, variables, present, sheet)
    if c.problems:
        return
    if c.v.get("replicate_of"):
        c.problems += technical_replicate_problems(sheet, c.v["replicate_of"], variables, file)
        if c.problems:
            return
        sheet = collapse_sheet(sheet, c.v["replicate_of"])
    _check_replicates(c, contrasts, sheet, min_replicates)
    frame = study_design_frame(sheet, design, contrasts, batch, donor)
    c.problems += rank_problems(design, frame)
    _warn(c, variables, frame, factors, batch)


def _check_contrasts(c: Checker, contrasts: list, design: str, variables: list[str],
                     present: list[str], sheet: pd.DataFrame) -> None:
    for i, contrast in enumerate(contrasts):
        key = f"contrasts[{i}]"
        if contrast.factor not in variables:
            c.problems.append(Problem(STUDY_FILE, f"{key}.factor", f"'{contrast.factor}' is "
                                      f"not in the design {design!r}",
                                      "contrast a factor of the design"))
            continue
        if contrast.factor not in present:
            continue
        levels = sorted(sheet[contrast.factor].dropna().unique())
        for part in ("level", "reference"):
            value = getattr(contrast, part)
            if value not in levels:
                c.problems.append(Problem(STUDY_FILE, f"{key}.{part}", f"level {value!r}"
                                          f" not found in column '{contrast.factor}' of "
                                          f"{c.sheet_file} (levels: "
                                          f"{', '.join(levels)})", "use one of the levels "
                                          "present (values are case-sensitive)"))


def _check_replicates(c: Checker, contrasts: list, sheet: pd.DataFrame,
                      min_replicates: int) -> None:
    note = " after summing technical replicates" if c.v.get("replicate_of") else ""
    for i, contrast in enumerate(contrasts):
        for part in ("level", "reference"):
            value = getattr(contrast, part)
            n = int((sheet[contrast.factor] == value).sum())
            if n < min_replicates:
                c.problems.append(Problem(
                    STUDY_FILE, f"contrasts[{i}].{part}", f"group '{contrast.factor}={value}' "
                    f"of contrast '{contrast.name}' has {n} biological replicate(s){note}; at "
                    f"least {min_replicates} are needed to estimate variability",
                    "add biological replicates (technical replicates do not count) or drop "
                    "this contrast"))


def _warn(c: Checker, variables: list[str], frame: pd.DataFrame, categorical: set,
          batch: str | None) -> None:
    sheet = c.sheet
    if batch and batch in sheet.columns and batch not in variables:
        c.warnings.append(Problem(STUDY_FILE, "batch", f"batch column '{batch}' is not in "
                                  "the design, so testing ignores it", f"add '{batch}' to "
                                  "the design (e.g. '~ " + batch + " + condition')"))
    for var in frame.columns:
        if var in categorical or not is_numeric(sheet[var]):
            continue
        values = pd.to_numeric(sheet[var])
        if (values % 1 == 0).all() and values.nunique() <= len(values) / 2:
            c.warnings.append(Problem(c.sheet_file, f"column '{var}'", "is numeric, so "
                                      "the design treats it as a continuous covariate",
                                      "if it labels groups (donor, batch), use text labels "
                                      "such as d1, d2"))
