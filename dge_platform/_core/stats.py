"""Small statistics every layer uses."""

from __future__ import annotations

import numpy as np
from scipy.stats import false_discovery_control


def bh_adjust(pvalues) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values over the non-missing p-values; NaN stays NaN."""
    p = np.asarray(pvalues, dtype=float)
    padj = np.full(len(p), np.nan)
    tested = ~np.isnan(p)
    if tested.any():
        padj[tested] = false_discovery_control(p[tested], method="bh")
    return padj
