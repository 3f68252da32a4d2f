"""Batch-corrected expression for visualization and export (never for testing).

Testing models batch as a design covariate; correcting the matrix first and testing it
would pretend the corrected values were measured and understate variance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def sum_to_zero_coding(batch: pd.Series) -> pd.DataFrame:
    """R's ``contr.sum`` coding of a factor: k-1 columns, the last level coded -1."""
    levels = sorted(batch.astype(str).unique())
    coding = np.zeros((len(batch), len(levels) - 1))
    for j, level in enumerate(levels[:-1]):
        coding[(batch.astype(str) == level).to_numpy(), j] = 1.0
    coding[(batch.astype(str) == levels[-1]).to_numpy(), :] = -1.0
    return pd.DataFrame(coding, index=batch.index,
                        columns=[f"batch{j + 1}" for j in range(len(levels) - 1)])


def remove_batch_effect(expression: pd.DataFrame, batch: pd.Series,
                        treatment: pd.DataFrame) -> pd.DataFrame:
    """Subtract batch effects from log-scale expression, as ``limma::removeBatchEffect``.

    Parameters
    ----------
    expression
        Log-scale expression (e.g. VST), genes x samples.
    batch
        Batch label per sample.
    treatment
        Model matrix (samples x coefficients, with intercept) of the effects to preserve,
        e.g. the condition.

    Returns
    -------
    Expression with the fitted batch effects (sum-to-zero coded) removed, genes x samples.
    """
    samples = expression.columns
    batch_design = sum_to_zero_coding(batch.loc[samples])
    design = np.hstack([treatment.loc[samples].to_numpy(dtype=float), batch_design.to_numpy()])
    coef, *_ = np.linalg.lstsq(design, expression.to_numpy(dtype=float).T, rcond=None)
    batch_coef = coef[treatment.shape[1]:]
    corrected = expression.to_numpy(dtype=float) - (batch_design.to_numpy() @ batch_coef).T
    return pd.DataFrame(corrected, index=expression.index, columns=samples)
