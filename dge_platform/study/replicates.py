"""Technical replicates: libraries sequenced from the same biological sample.

They are summed into one column before anything else (as DESeq2's ``collapseReplicates``),
because treating them as biological replicates understates the variance and inflates
significance.
"""

from __future__ import annotations

import pandas as pd

from dge_platform._core.problems import Problem

N_TECHNICAL = "n_technical_replicates"


def technical_replicate_problems(sheet: pd.DataFrame, column: str, variables: list[str],
                                 file: str) -> list[Problem]:
    """Check that every technical-replicate group is one biological sample.

    All members of a group must agree on every design variable; otherwise they are not
    technical replicates of one library.
    """
    if column not in sheet.columns:
        return [Problem(file, f"column '{column}'", "named by replicate_of but missing from "
                        "the sample sheet", "add the column (the biological sample each "
                        "library belongs to) or remove replicate_of")]
    if sheet[column].isna().any():
        missing = ", ".join(sheet.index[sheet[column].isna()][:3])
        return [Problem(file, f"column '{column}'", f"empty for sample(s) {missing}",
                        "give every library its biological sample (its own name if it "
                        "has no technical replicates)")]
    problems = []
    for var in variables:
        if var not in sheet.columns:
            continue
        mixed = sheet.groupby(column)[var].nunique(dropna=False)
        for group in mixed.index[mixed > 1]:
            problems.append(Problem(file, f"column '{var}'", f"technical replicates of "
                                    f"'{group}' (by '{column}') differ in '{var}'",
                                    "technical replicates must share every design value; "
                                    "check the replicate_of column"))
    return problems


def collapse_technical_replicates(counts: pd.DataFrame, sheet: pd.DataFrame,
                                  column: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sum the counts of technical replicates into one sample per group.

    Parameters
    ----------
    counts
        Genes x libraries.
    sheet
        Sample sheet indexed by library, with the grouping ``column``.
    column
        Sheet column naming the biological sample of each library.

    Returns
    -------
    Genes x biological samples (named by the group value) and the sheet with one row per
    group, the first library's values, and the number of libraries summed.
    """
    groups = sheet.loc[counts.columns, column]
    summed = counts.T.groupby(groups.to_numpy(), sort=False).sum().T
    summed.index.name = counts.index.name
    return summed, collapse_sheet(sheet, column).loc[summed.columns]


def collapse_sheet(sheet: pd.DataFrame, column: str) -> pd.DataFrame:
    """One sheet row per biological sample, with the number of libraries it sums."""
    collapsed = sheet.groupby(column, sort=False).first()
    collapsed[N_TECHNICAL] = sheet.groupby(column, sort=False).size()
    collapsed.index.name = sheet.index.name
    return collapsed
