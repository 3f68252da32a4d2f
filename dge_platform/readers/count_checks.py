"""Value checks on a genes x samples count matrix: the rules DESeq2 relies on."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dge_platform._core.problems import EXAMPLES, Problem, examples
from dge_platform.readers.counts import is_nfcore_counts

# Largest count accepted: R's DESeq2 stores counts as 32-bit integers, and the bound keeps
# int64 sums over any realistic matrix exact (larger values are not read counts).
MAX_COUNT = 2**31 - 1


def check_counts(counts: pd.DataFrame, file: str, *, round_counts: bool = False,
                 allow_empty_samples: bool = False) -> tuple[pd.DataFrame | None, list[Problem]]:
    """Check raw counts and return them as int64.

    Parameters
    ----------
    counts
        Genes x samples as read from ``file``.
    file
        The file name used in problems.
    round_counts
        Allow non-integer values (estimated counts from salmon/RSEM) and round them, as
        ``DESeqDataSetFromTximport`` does. (default: ``False``)
    allow_empty_samples
        Accept all-zero samples: a screen's failed or empty wells, which well QC reports
        and testing leaves out. (default: ``False``)

    Returns
    -------
    The checked integer matrix, or None and every problem found.
    """
    problems: list[Problem] = []
    if counts.shape[0] == 0 or counts.shape[1] == 0:
        what = "gene rows" if counts.shape[0] == 0 else "sample columns"
        return None, [Problem(file, "", f"has no {what}", "supply a genes x samples matrix "
                              "with the gene id in the first column")]
    ids = pd.Series(counts.index)
    empty = ids.isna() | (ids.astype(str).str.strip() == "")
    if empty.any():
        problems.append(Problem(file, "gene id column", f"{int(empty.sum())} row(s) with an "
                                "empty or NA gene id", "give every row a gene id"))
    ids = ids[~empty]
    dup = ids[ids.duplicated()].astype(str).unique().tolist()
    if dup:
        problems.append(Problem(file, "gene id column", f"{len(dup)} duplicate gene id(s): "
                                f"{examples(dup)}", "make gene ids unique (sum or drop "
                                "duplicated rows before loading)"))
    numeric = {}
    for col in counts.columns:
        column = counts[col]
        # A column of True/False would pass as 1/0, but booleans are not counts.
        values = (pd.Series(np.nan, index=column.index) if pd.api.types.is_bool_dtype(column)
                  else pd.to_numeric(column, errors="coerce"))
        bad = column[values.isna() & column.notna()]
        if len(bad):
            problems.append(Problem(file, f"column {col!r}", f"non-numeric value "
                                    f"{str(bad.iloc[0])!r} at gene {bad.index[0]}", "counts "
                                    "must be numbers; move annotation columns out of the count "
                                    "matrix"))
        numeric[col] = values
    if problems:
        return None, problems
    values = pd.DataFrame(numeric, index=counts.index).to_numpy(dtype=float)
    problems += _value_problems(values, counts, file, round_counts, allow_empty_samples)
    if problems:
        return None, problems
    result = pd.DataFrame(np.rint(values).astype(np.int64), index=counts.index.astype(str),
                          columns=counts.columns.astype(str))
    result.index.name = "gene_id"
    return result, []


def _non_integer_fix(file: str) -> str:
    """What to do about non-integer counts; nf-core/rnaseq merged matrices always hold them."""
    if is_nfcore_counts(file):
        return ("nf-core/rnaseq merged gene counts are estimated (salmon/RSEM) counts, not "
                "integers: set round_counts: true in study.yaml to round them for DESeq2 (as "
                "DESeqDataSetFromTximport does)")
    return ("DESeq2 needs raw integer counts; for estimated counts (salmon, RSEM) set "
            "round_counts: true in study.yaml")


def _value_problems(values: np.ndarray, counts: pd.DataFrame, file: str,
                    round_counts: bool, allow_empty_samples: bool) -> list[Problem]:
    problems = []
    samples = counts.columns.astype(str)

    def where(mask: np.ndarray) -> str:
        genes, cols = np.nonzero(mask)
        cells = [f"{counts.index[g]}/{samples[c]}" for g, c in zip(genes[:EXAMPLES], cols)]
        return f"{int(mask.sum())} value(s), e.g. gene/sample {examples(cells)}"

    nan = ~np.isfinite(values)
    if nan.any():
        problems.append(Problem(file, "values", f"missing or infinite counts: {where(nan)}",
                                "fill missing counts (0 if the gene was not detected)"))
    finite = np.where(nan, 0.0, values)
    neg = finite < 0
    if neg.any():
        problems.append(Problem(file, "values", f"negative counts: {where(neg)}",
                                "supply raw counts; normalized or log values cannot be tested"))
    huge = finite > MAX_COUNT
    if huge.any():
        problems.append(Problem(file, "values", f"counts above {MAX_COUNT:,}: {where(huge)}",
                                "supply raw read counts (these values cannot be)"))
    frac = np.abs(finite - np.rint(finite)) > 1e-8
    if frac.any() and not round_counts:
        problems.append(Problem(file, "values", f"non-integer counts: {where(frac)}",
                                _non_integer_fix(file)))
    zero = [s for s, total in zip(samples, finite.sum(axis=0)) if total == 0]
    if zero and not allow_empty_samples:
        problems.append(Problem(file, "samples", f"all-zero sample(s): {examples(zero)}",
                                "remove failed libraries from the matrix and the sample sheet"))
    return problems
