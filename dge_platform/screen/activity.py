"""Activity calls of a screen: is a compound x dose's DEG count beyond what control wells
produce against each other?

The null is empirical and per plate, as in the Novartis DRUG-seq pipeline: control wells are
split at random many times into a pseudo-treatment of the screen's typical replicate count
and a pseudo-reference of the remaining controls, each split tested exactly like a real
contrast (same size factors, the screen fit's final dispersions, Wald test, independent
filtering, BH at the study's alpha, against its lfc_threshold). A condition is active when
its DEG count exceeds the 95th percentile of its plate's null DEG counts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dge_platform.de.engine import two_group_test

N_SPLITS = 200
NULL_QUANTILE = 0.95

ACTIVITY_COLUMNS = ["contrast", "compound", "dose", "dose_unit", "plate", "n_wells", "n_up",
                    "n_down", "n_deg", "null_threshold", "null_median", "n_null_splits",
                    "active"]


def pseudo_treatment_size(n_wells: pd.Series, n_controls: int) -> int:
    """Wells in each pseudo-treatment: the conditions' median replicate count, leaving at
    least two controls as the pseudo-reference."""
    typical = int(np.median(n_wells)) if len(n_wells) else 2
    return int(np.clip(typical, 1, max(1, n_controls - 2)))


def null_deg_counts(counts: pd.DataFrame, size_factors: pd.Series, dispersions: pd.Series,
                    base_mean: pd.Series, controls: list[str], n_treated: int, *,
                    alpha: float, lfc_threshold: float = 0.0, n_splits: int = N_SPLITS,
                    seed: int = 0) -> np.ndarray:
    """DEG counts of ``n_splits`` random control-vs-control pseudo-contrasts.

    Parameters
    ----------
    counts
        Raw counts, genes x wells (at least the ``controls`` columns).
    size_factors, dispersions, base_mean
        From the screen's fit: per well, and per gene (final dispersion, mean of
        normalized counts over every analysed well) so filtering matches real contrasts.
    controls
        The plate's usable control wells.
    n_treated
        Wells drawn as the pseudo-treatment.
    alpha, lfc_threshold
        The study's significance settings.
    n_splits, seed
        Number of random splits and the generator seed (fixed: reruns give the same null).
    """
    rng = np.random.default_rng(seed)
    sub = counts[controls]
    factors = size_factors.loc[controls]
    n_deg = np.empty(n_splits, dtype=np.int64)
    for i in range(n_splits):
        treated = np.zeros(len(controls), dtype=bool)
        treated[rng.choice(len(controls), size=n_treated, replace=False)] = True
        result = two_group_test(sub, factors, dispersions, treated, ~treated, base_mean,
                                alpha=alpha, lfc_threshold=lfc_threshold)
        n_deg[i] = int((result["padj"] < alpha).sum())
    return n_deg


def activity_calls(deg_results: pd.DataFrame, conditions: pd.DataFrame,
                   null_by_plate: dict[str, np.ndarray], *, alpha: float,
                   quantile: float = NULL_QUANTILE) -> pd.DataFrame:
    """One row per tested compound x dose: DEG counts, its plate's null threshold, the call.

    Parameters
    ----------
    deg_results
        Screen DEG table (contrast, log2_fold_change, padj).
    conditions
        Per contrast: contrast, compound, dose, dose_unit, plate, n_wells. A condition on
        several plates is held to the strictest of their thresholds.
    null_by_plate
        Null DEG counts per plate (:func:`null_deg_counts`).
    """
    significant = deg_results[deg_results["padj"] < alpha]
    up = significant[significant["log2_fold_change"] > 0].groupby("contrast").size()
    down = significant[significant["log2_fold_change"] < 0].groupby("contrast").size()
    thresholds = {plate: float(np.quantile(null, quantile))
                  for plate, null in null_by_plate.items()}
    table = conditions.copy()
    table["n_up"] = up.reindex(table["contrast"]).fillna(0).astype(int).to_numpy()
    table["n_down"] = down.reindex(table["contrast"]).fillna(0).astype(int).to_numpy()
    table["n_deg"] = table["n_up"] + table["n_down"]
    plates = table["plate"].str.split(",")
    table["null_threshold"] = [max(thresholds[p] for p in ps) for ps in plates]
    table["null_median"] = [max(float(np.median(null_by_plate[p])) for p in ps) for ps in plates]
    table["n_null_splits"] = [min(len(null_by_plate[p]) for p in ps) for ps in plates]
    table["active"] = table["n_deg"] > table["null_threshold"]
    return table[ACTIVITY_COLUMNS].reset_index(drop=True)
