"""Sample QC: PCA and distances against exact formulas, outlier rules on planted outliers."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial.distance import pdist, squareform

from dge_platform.bulk.qc import flag_outliers, pca, sample_distances


def expression(seed: int = 0, n_genes: int = 800, n_samples: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.normal(8, 1, (n_genes, 1)) + rng.normal(0, 0.3, (n_genes, n_samples))
    values[:100, n_samples // 2:] += 2  # a condition effect on 100 genes
    return pd.DataFrame(values, index=[f"g{i}" for i in range(n_genes)],
                        columns=[f"s{i}" for i in range(n_samples)])


def test_pca_matches_covariance_eigendecomposition():
    expr = expression()
    scores, explained = pca(expr, n_top=500)
    top = expr.loc[expr.var(axis=1).sort_values(ascending=False).index[:500]].T
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(top.to_numpy(), rowvar=False)))[::-1]
    np.testing.assert_allclose(explained.to_numpy()[:3], (eigenvalues / eigenvalues.sum())[:3],
                               rtol=1e-8)
    np.testing.assert_allclose(scores.var(axis=0, ddof=1).to_numpy()[:3], eigenvalues[:3],
                               rtol=1e-8)
    # PC1 separates the planted condition.
    assert np.sign(scores["PC1"].iloc[:4]).nunique() == 1
    assert np.sign(scores["PC1"].iloc[0]) != np.sign(scores["PC1"].iloc[-1])


def test_sample_distances_match_scipy():
    expr = expression(seed=1)
    expected = squareform(pdist(expr.T.to_numpy()))
    np.testing.assert_allclose(sample_distances(expr).to_numpy(), expected, atol=1e-9)


def test_outlier_rules_flag_planted_problems_only():
    expr = expression(seed=2, n_samples=10)
    library = pd.Series(2e7, index=expr.columns)
    detected = pd.Series(15_000, index=expr.columns)
    clean = flag_outliers(sample_distances(expr), library, detected)
    assert not clean["outlier"].any()

    expr["s3"] += np.random.default_rng(3).normal(0, 1.5, len(expr))  # a degraded library
    library["s5"] = 2e6
    detected["s7"] = 5_000
    flags = flag_outliers(sample_distances(expr), library, detected)
    assert flags.index[flags["outlier"]].tolist() == ["s3", "s5", "s7"]
    assert "mean distance to the other samples" in flags.loc["s3", "outlier_reason"]
    assert flags.loc["s5", "outlier_reason"].startswith("library size 2,000,000 is below 20%")
    assert flags.loc["s7", "outlier_reason"].startswith("5,000 genes detected, below half")


def test_low_assigned_fraction_is_flagged_when_known():
    expr = expression(seed=2, n_samples=10)
    library = pd.Series(2e7, index=expr.columns)
    detected = pd.Series(15_000, index=expr.columns)
    assigned = pd.Series(0.8, index=expr.columns, dtype="Float64")
    assigned["s2"] = 0.45  # e.g. the wrong strandedness, or mostly rRNA
    assigned["s4"] = pd.NA  # unknown: never flagged
    flags = flag_outliers(sample_distances(expr), library, detected, assigned)
    assert flags.index[flags["outlier"]].tolist() == ["s2"]
    assert flags.loc["s2", "outlier_reason"] == (
        "45% of fragments assigned to genes, well below the median sample's 80%")
    unknown = pd.Series(pd.NA, index=expr.columns, dtype="Float64")
    assert not flag_outliers(sample_distances(expr), library, detected, unknown)["outlier"].any()
