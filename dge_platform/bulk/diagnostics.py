"""Design diagnostics: which sample variables drive the expression, and whether the design
names them (the classic mistake of an ignored batch).

- **PC association**: the leading principal components of the VST (top 500 variable genes,
  as the QC PCA) tested against every sample variable: one-way ANOVA for a factor, Pearson
  correlation for a number. Variables with one value, or a different value for every sample
  (identifiers), say nothing and are left out.
- **Variance partition**: per gene, the share of its variance each variable explains, from
  one least-squares fit with every variable as a fixed effect. A variable's sum of squares is
  the residual sum of squares gained when it is dropped (type II); its share is the
  omega-squared estimate ``(SS_v - df_v * MSE) / (SS_total + MSE)``, which removes what a
  variable's ``df_v`` parameters fit of the noise (plain SS ratios overstate every variable
  and understate the residual by the degrees of freedom used); the residual's share is the
  rest. Summarised per variable as the median over genes. (R's variancePartition fits random
  effects per gene; for balanced designs these estimates agree without that cost.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from dge_platform.bulk.qc import pca

N_PCS = 5
LEADING_PCS = 2
"""A variable outside the design that explains one of these PCs gets a warning."""
WARN_P = 0.01


def informative_variables(sheet: pd.DataFrame, candidates: Sequence[str]) -> list[str]:
    """The sheet columns that can explain anything: numbers with more than one value (a
    covariate: depth, RIN, cell count), labels with more than one value but not a different
    one for every sample (that is an id)."""
    n = len(sheet)
    return [c for c in candidates if c in sheet.columns
            and 1 < sheet[c].astype(str).nunique() < (n + 1 if _is_numeric(sheet[c]) else n)]


def _is_numeric(values: pd.Series) -> bool:
    return bool(pd.to_numeric(values, errors="coerce").notna().all())


def pc_associations(expression: pd.DataFrame, sheet: pd.DataFrame, variables: Sequence[str],
                    n_pcs: int = N_PCS) -> pd.DataFrame:
    """Per leading PC and variable: ``component``, ``variance_explained``, ``variable``,
    ``test`` (``anova`` or ``correlation``), ``statistic`` (F or r), ``pvalue``."""
    scores, explained = pca(expression)
    rows = []
    for pc in scores.columns[:min(n_pcs, scores.shape[1] - 1)]:
        values = scores[pc]
        for variable in variables:
            column = sheet.loc[scores.index, variable]
            if _is_numeric(column):
                r, p = stats.pearsonr(values, pd.to_numeric(column))
                rows.append((pc, explained[pc], variable, "correlation", r, p))
            else:
                groups = [values[column.astype(str) == level]
                          for level in sorted(column.astype(str).unique())]
                if min(len(g) for g in groups) < 1 or sum(len(g) for g in groups) <= len(groups):
                    continue
                f, p = stats.f_oneway(*groups)
                rows.append((pc, explained[pc], variable, "anova", f, p))
    return pd.DataFrame(rows, columns=["component", "variance_explained", "variable", "test",
                                       "statistic", "pvalue"])


def _design(sheet: pd.DataFrame, variables: Sequence[str]) -> dict[str, np.ndarray]:
    """Each variable's columns of a fixed-effect design (factors as treatment dummies)."""
    blocks = {}
    for variable in variables:
        column = sheet[variable]
        if _is_numeric(column):
            values = pd.to_numeric(column).to_numpy(dtype=float)
            blocks[variable] = (values - values.mean())[:, None]
        else:
            dummies = pd.get_dummies(column.astype(str), drop_first=True, dtype=float)
            blocks[variable] = dummies.to_numpy()
    return blocks


def _residual_ss(y: np.ndarray, columns: list[np.ndarray]) -> np.ndarray:
    """Per gene (rows of ``y``), the residual sum of squares of a fit with an intercept."""
    x = np.column_stack([np.ones(y.shape[1]), *columns]) if columns else \
        np.ones((y.shape[1], 1))
    beta, *_ = np.linalg.lstsq(x, y.T, rcond=None)
    residuals = y.T - x @ beta
    return (residuals**2).sum(axis=0)


def covered_by(sheet: pd.DataFrame, variable: str, design: Sequence[str]) -> bool:
    """Whether the design accounts for ``variable``: it names it, or names a variable that
    determines it (a screen's compound and dose, given its condition)."""
    if variable in design:
        return True
    values = sheet[variable].astype(str)
    return any(d in sheet.columns and values.groupby(sheet[d].astype(str)).nunique().max() == 1
               for d in design)


def separable(sheet: pd.DataFrame, variables: Sequence[str]) -> list[str]:
    """The variables, in order, that a fixed-effect fit can tell apart: each is kept only if
    its columns raise the design's rank by their number and leave residual degrees of freedom
    (aliased or nested ones, like a screen's compound beside its condition, are left out)."""
    blocks = _design(sheet, variables)
    kept, columns = [], [np.ones((len(sheet), 1))]
    for variable, block in blocks.items():
        trial = np.column_stack([*columns, block])
        rank = np.linalg.matrix_rank(trial)
        if rank == trial.shape[1] and len(sheet) - rank >= 2:
            kept.append(variable)
            columns.append(block)
    return kept


def variance_partition(expression: pd.DataFrame, sheet: pd.DataFrame,
                       variables: Sequence[str]) -> pd.DataFrame:
    """Per gene, each variable's share of the variance and the residual's (columns: the
    variables, then ``residual``); genes constant over the samples are left out. The
    variables must be separable (:func:`separable`)."""
    y = expression.to_numpy(dtype=float)
    total = ((y - y.mean(axis=1, keepdims=True))**2).sum(axis=1)
    keep = total > 0
    y, total = y[keep], total[keep]
    blocks = _design(sheet.loc[expression.columns], variables)
    full = _residual_ss(y, list(blocks.values()))
    df_residual = y.shape[1] - 1 - sum(b.shape[1] for b in blocks.values())
    if df_residual < 1:
        raise ValueError("as many parameters as samples: no residual variance to compare with")
    mse = full / df_residual
    shares = pd.DataFrame({
        v: (_residual_ss(y, [b for w, b in blocks.items() if w != v]) - full
            - block.shape[1] * mse) / (total + mse)
        for v, block in blocks.items()}, index=expression.index[keep]).clip(lower=0)
    shares["residual"] = (1 - shares.sum(axis=1)).clip(lower=0)
    return shares


def design_warnings(table: pd.DataFrame) -> list[str]:
    """One line per variable outside the design that explains a leading PC (p < 0.01)."""
    leading = table[table["component"].isin([f"PC{i + 1}" for i in range(LEADING_PCS)])
                    & ~table["in_design"].astype(bool) & (table["pvalue"] < WARN_P)]
    cell_types = leading["cell_type"] if "cell_type" in leading else pd.Series(None, leading.index)
    return [f"{cell_type + ': ' if isinstance(cell_type, str) else ''}{row.component} "
            f"({row.variance_explained:.0%} of the variance) is associated with "
            f"'{row.variable}' (p = {row.pvalue:.1g}), which the design does not include: "
            f"if it is a batch or a confounder, add it to the design (or batch:)"
            for row, cell_type in zip(leading.itertuples(), cell_types)]
