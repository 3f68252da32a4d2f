"""Sample-level QC of a bulk study: PCA, sample distances, and outlier flags with reasons."""

from __future__ import annotations

import numpy as np
import pandas as pd

N_TOP_GENES = 500
MIN_LIBRARY_FRACTION = 0.2
MIN_DETECTED_FRACTION = 0.5
MIN_ASSIGNED_RATIO = 0.7
"""A sample assigning fewer than this share of the median sample's assigned fraction of
fragments is flagged (wrong annotation or strandedness, rRNA or genomic DNA, degradation)."""
MAX_DISTANCE_Z = 3.5
MIN_DISTANCE_RATIO = 1.2


def pca(expression: pd.DataFrame, n_top: int = N_TOP_GENES) -> tuple[pd.DataFrame, pd.Series]:
    """PCA of the most variable genes, as DESeq2's ``plotPCA``.

    Parameters
    ----------
    expression
        Variance-stabilized expression, genes x samples.
    n_top
        Number of genes with the highest variance across samples to use.

    Returns
    -------
    Sample scores (columns PC1, PC2, ...) and the fraction of variance each PC explains.
    """
    variances = expression.var(axis=1, ddof=1).to_numpy()
    top = np.argsort(-variances, kind="stable")[:min(n_top, len(variances))]
    x = expression.to_numpy(dtype=float)[top].T
    x = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    names = [f"PC{i + 1}" for i in range(len(s))]
    scores = pd.DataFrame(u * s, index=expression.columns, columns=names)
    explained = pd.Series(s**2 / np.sum(s**2), index=names)
    return scores, explained


def sample_distances(expression: pd.DataFrame) -> pd.DataFrame:
    """Euclidean distances between samples over all genes (``dist(t(assay(vsd)))``)."""
    x = expression.to_numpy(dtype=float).T
    sq = np.sum(x**2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)
    np.fill_diagonal(d2, 0)
    return pd.DataFrame(np.sqrt(d2), index=expression.columns, columns=expression.columns)


def flag_outliers(distances: pd.DataFrame, library_size: pd.Series,
                  genes_detected: pd.Series,
                  assigned_fraction: pd.Series | None = None) -> pd.DataFrame:
    """Flag samples that look like outliers, each with the reason.

    Rules: mean distance to the other samples with a modified z-score above 3.5
    (Iglewicz and Hoaglin: (x - median) / (1.4826 MAD)) and at least 20 % above the median
    (with few samples the MAD can be tiny, making ordinary spread look extreme); library
    size below 20 % of the median; genes detected below 50 % of the median; when counts were
    built from reads, a fraction of fragments assigned to genes below 70 % of the median
    sample's (``assigned_fraction``, NA where unknown). Pass distances computed on
    batch-corrected expression, or a whole batch looks like an outlier.

    Returns
    -------
    Per sample: mean_distance, outlier (bool) and outlier_reason ('' when not flagged).
    """
    n = len(distances)
    mean_distance = distances.sum(axis=1) / max(n - 1, 1)
    center = mean_distance.median()
    spread = 1.4826 * (mean_distance - center).abs().median()
    reasons = {s: [] for s in distances.index}
    for sample, value in mean_distance.items():
        z = (value - center) / spread if spread > 0 else 0.0
        if n >= 4 and z > MAX_DISTANCE_Z and value > MIN_DISTANCE_RATIO * center:
            reasons[sample].append(f"mean distance to the other samples {value:.1f} is far "
                                   f"above the median {center:.1f} (robust z {z:.1f} > "
                                   f"{MAX_DISTANCE_Z})")
    for sample, value in library_size.items():
        if value < MIN_LIBRARY_FRACTION * library_size.median():
            reasons[sample].append(f"library size {value:,.0f} is below 20% of the median "
                                   f"({library_size.median():,.0f})")
    for sample, value in genes_detected.items():
        if value < MIN_DETECTED_FRACTION * genes_detected.median():
            reasons[sample].append(f"{value:,.0f} genes detected, below half the median "
                                   f"({genes_detected.median():,.0f})")
    fractions = assigned_fraction.dropna().astype(float) if assigned_fraction is not None \
        else pd.Series(dtype=float)
    for sample, value in fractions.items():
        if value < MIN_ASSIGNED_RATIO * fractions.median():
            reasons[sample].append(f"{value:.0%} of fragments assigned to genes, well below the "
                                   f"median sample's {fractions.median():.0%}")
    return pd.DataFrame({
        "mean_distance": mean_distance,
        "outlier": [bool(reasons[s]) for s in distances.index],
        "outlier_reason": ["; ".join(reasons[s]) for s in distances.index],
    }, index=distances.index)
