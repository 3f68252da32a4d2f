"""Design formulas: which sample-sheet columns they use, how those are typed, and whether
the resulting model can be fitted (full rank, residual degrees of freedom)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix
from formulaic.errors import FormulaicError

from dge_platform._core.problems import Problem
from dge_platform.study.paths import STUDY_FILE


def design_variables(design: str) -> tuple[list[str], list[Problem]]:
    """Sample-sheet columns a DESeq2-style formula refers to, in formula order."""
    try:
        formula = Formula(design)
    except (FormulaicError, SyntaxError, ValueError) as exc:
        return [], [Problem(STUDY_FILE, "design", f"cannot parse formula {design!r}: {exc}",
                            "write e.g. '~ batch + condition'")]
    required = formula.required_variables
    order = [name for name in _tokens(design) if name in required]
    return list(dict.fromkeys(order + sorted(required - set(order)))), []


def _tokens(design: str) -> list[str]:
    for sep in "~+*:()-":
        design = design.replace(sep, " ")
    return design.split()


def is_numeric(values: pd.Series) -> bool:
    """True when every value of a text column parses as a number."""
    return bool(pd.to_numeric(values, errors="coerce").notna().all())


def design_frame(sheet: pd.DataFrame, variables: list[str], *, categorical: set[str],
                 references: dict[str, str]) -> pd.DataFrame:
    """Type the design columns of a text sample sheet.

    Parameters
    ----------
    sheet
        Sample sheet, values as text, indexed by sample.
    variables
        Design columns.
    categorical
        Columns that are always factors (contrast factors, batch), even if numeric.
    references
        Reference level per factor; it becomes the first level (the intercept).

    Returns
    -------
    One column per variable: numeric columns as floats (continuous covariates), others as
    ordered categoricals with the reference level first and the rest sorted.
    """
    frame = pd.DataFrame(index=sheet.index)
    for var in variables:
        col = sheet[var]
        if var not in categorical and is_numeric(col):
            frame[var] = pd.to_numeric(col).astype(float)
            continue
        levels = sorted(col.dropna().unique())
        ref = references.get(var)
        if ref in levels:
            levels = [ref] + [lv for lv in levels if lv != ref]
        frame[var] = pd.Categorical(col, categories=levels)
    return frame


def design_matrix(design: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The model matrix of ``design`` over a typed design frame."""
    return pd.DataFrame(model_matrix(design, frame))


def _rank_deficient(design: str, frame: pd.DataFrame) -> bool:
    matrix = design_matrix(design, frame).to_numpy(dtype=float)
    return np.linalg.matrix_rank(matrix) < matrix.shape[1]


def rank_problems(design: str, frame: pd.DataFrame) -> list[Problem]:
    """Why a design cannot be fitted: single-level factors, confounded factors, no residual
    degrees of freedom, or other linear dependence among its columns."""
    problems = []
    for var in frame.columns:
        if isinstance(frame[var].dtype, pd.CategoricalDtype) and frame[var].nunique() < 2:
            problems.append(Problem(STUDY_FILE, "design", f"column '{var}' has a single level "
                                    f"({frame[var].iloc[0]}), so it cannot be estimated",
                                    f"remove '{var}' from the design"))
    if problems:
        return problems
    matrix = design_matrix(design, frame)
    if np.linalg.matrix_rank(matrix.to_numpy(dtype=float)) == matrix.shape[1]:
        if matrix.shape[1] >= len(frame):
            return [Problem(STUDY_FILE, "design", f"{matrix.shape[1]} coefficients for "
                            f"{len(frame)} samples leave no residual degrees of freedom, so "
                            "dispersion cannot be estimated", "add biological replicates or "
                            "remove terms from the design")]
        return []
    for a, b in itertools.combinations(frame.columns, 2):
        if _rank_deficient(f"~ {a} + {b}", frame[[a, b]]):
            table = pd.crosstab(frame[a], frame[b])
            return [Problem(STUDY_FILE, "design", f"design {design!r} is not full rank: '{a}' "
                            f"is confounded with '{b}' (every level of one occurs with a single "
                            f"level of the other: {_pairs(table)})", f"the effects of '{a}' and "
                            f"'{b}' cannot be separated; drop one from the design, or re-plan "
                            "the experiment so each batch holds every condition")]
    dependent = _dependent_columns(matrix)
    return [Problem(STUDY_FILE, "design", f"design {design!r} is not full rank; linearly "
                    f"dependent coefficient(s): {', '.join(dependent)}", "remove terms, or "
                    "check that every combination of levels in an interaction has samples")]


def _pairs(table: pd.DataFrame) -> str:
    pairs = [f"{r}->{c}" for r in table.index for c in table.columns if table.loc[r, c] > 0]
    return ", ".join(pairs[:6]) + (" ..." if len(pairs) > 6 else "")


def _dependent_columns(matrix: pd.DataFrame) -> list[str]:
    """Columns that add nothing to the span of the columns before them."""
    values, kept, dependent = matrix.to_numpy(dtype=float), [], []
    for j, name in enumerate(matrix.columns):
        trial = kept + [j]
        if np.linalg.matrix_rank(values[:, trial]) == len(trial):
            kept = trial
        else:
            dependent.append(name)
    return dependent


def study_design_frame(sheet: pd.DataFrame, design: str, contrasts: list,
                       batch: str | None, donor: str | None = None) -> pd.DataFrame:
    """The typed design frame of a study: contrast factors, batch and donor are factors (even
    when their labels look numeric), each contrast factor's reference (the first contrast
    naming it) is its base level."""
    variables, _ = design_variables(design)
    categorical = {c.factor for c in contrasts} | {v for v in (batch, donor) if v}
    references = {c.factor: c.reference for c in reversed(contrasts)}
    return design_frame(sheet, variables, categorical=categorical, references=references)


def treatment_matrix(frame: pd.DataFrame, batch: str | None) -> pd.DataFrame:
    """Model matrix of every design variable except the batch (main effects only): the
    effects a batch correction must preserve."""
    kept = [v for v in frame.columns if v != batch]
    formula = "~ " + (" + ".join(kept) if kept else "1")
    return design_matrix(formula, frame[kept] if kept else frame)
