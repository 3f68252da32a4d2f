"""Dispersion trend and prior as R's DESeq2 computes them, plugged into PyDESeq2.

PyDESeq2 0.5.4 departs from DESeq2 1.38 in two places that move p-values on real data:

* the parametric trend ``a0 + a1 / mean``: R (``parametricDispersionFit``) drops genes
  whose gene-wise estimate is at the floor (<= 100 x minDisp) and those far from the
  current curve *before* each Gamma GLM fit; PyDESeq2 fits its first curve on every gene,
  floor values included, and converges elsewhere (a1 2.47 instead of R's 3.60 on airway);
* with 1-3 residual degrees of freedom R matches the distribution of log-dispersion
  residuals by simulation (``estimateDispersionsPriorVar``), where PyDESeq2 uses the MAD
  formula, which floors the prior variance at 0.25 and over-shrinks.

The tests compare both against R fixtures (``dge_platform_tests/test_bulk_de.py``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from pydeseq2.dds import DeseqDataSet
from pydeseq2.utils import mean_absolute_deviation
from scipy.special import polygamma
from skmisc.loess import loess

HIST_BREAKS = np.arange(-20, 21) / 2
PRIOR_VAR_GRID = np.linspace(0, 8, 200)
PRIOR_VAR_FINE_GRID = np.linspace(0, 8, 1000)
MIN_PRIOR_VAR = 0.25


class RParityDeseqDataSet(DeseqDataSet):
    """A ``DeseqDataSet`` whose dispersion trend and prior variance follow DESeq2."""

    def _fit_parametric_dispersion_trend(self, vst: bool = False) -> None:
        column = "vst_genewise_dispersions" if vst else "genewise_dispersions"
        if column not in self.var:
            self.fit_genewise_dispersions(vst)
        genes = self.var.loc[self.non_zero_genes]
        use = genes[column] > 100 * self.min_disp
        coeffs = parametric_trend(genes.loc[use, "_normed_means"].to_numpy(),
                                  genes.loc[use, column].to_numpy())
        if coeffs is None:
            warnings.warn("parametric dispersion trend did not converge; using the mean "
                          "dispersion as trend", UserWarning, stacklevel=2)
            self._fit_mean_dispersion_trend(vst)
            return
        trend = pd.Series(coeffs, index=["a0", "a1"])
        if vst:
            self.uns["vst_trend_coeffs"] = trend
            return
        self.uns["trend_coeffs"] = trend
        self.uns["disp_function_type"] = "parametric"
        self.var["fitted_dispersions"] = np.nan
        non_zero = self.var["non_zero"]
        self.var.loc[non_zero, "fitted_dispersions"] = self.disp_function(
            self.var.loc[non_zero, "_normed_means"])

    def _fit_mean_dispersion_trend(self, vst: bool = False) -> None:
        # PyDESeq2's VST fallback also overwrites the design's fitted dispersions (the
        # trend the fit used) with the VST mean; keep them, as DESeq2 does.
        fitted = self.var.get("fitted_dispersions") if vst else None
        super()._fit_mean_dispersion_trend(vst)
        if fitted is not None:
            self.var["fitted_dispersions"] = fitted

    def fit_dispersion_prior(self) -> None:
        if "fitted_dispersions" not in self.var:
            self.fit_dispersion_trend()
        genes = self.var.loc[self.non_zero_genes]
        residuals = np.log(genes["genewise_dispersions"]) - np.log(genes["fitted_dispersions"])
        above = genes["genewise_dispersions"] >= 100 * self.min_disp
        squared_logres, variance = dispersion_prior(
            residuals[above].to_numpy(), self.n_obs - self.obsm["design_matrix"].shape[-1])
        self.uns["_squared_logres"] = np.float64(squared_logres)
        self.uns["prior_disp_var"] = np.float64(variance)


def dispersion_prior(residuals: np.ndarray, df: int) -> tuple[float, float]:
    """Spread of log-dispersion residuals and the prior variance of log dispersions.

    Parameters
    ----------
    residuals
        log(gene-wise) - log(trend) of the genes with gene-wise dispersion >= 100 x minDisp.
    df
        Residual degrees of freedom, samples - coefficients.

    Returns
    -------
    The squared scaled MAD of the residuals (PyDESeq2's ``_squared_logres``, also the
    dispersion-outlier threshold), and the prior variance: DESeq2's simulation match when
    1 <= df <= 3, else ``max(MAD^2 - trigamma(df / 2), 0.25)`` as PyDESeq2.
    """
    squared_logres = mean_absolute_deviation(residuals) ** 2
    if 0 < df <= 3:
        return squared_logres, simulated_prior_variance(residuals, df)
    return squared_logres, float(max(squared_logres - polygamma(1, df / 2), MIN_PRIOR_VAR))


def parametric_trend(means: np.ndarray, dispersions: np.ndarray,
                     max_iter: int = 10) -> np.ndarray | None:
    """Fit ``dispersion = a0 + a1 / mean`` as DESeq2's ``parametricDispersionFit``.

    Iterates a Gamma GLM (identity link, IRLS), each time on the genes whose dispersion is
    within [1e-4, 15] times the current curve. Returns (a0, a1), or None if it fails.
    """
    family = sm.families.Gamma(link=sm.families.links.Identity())
    coeffs = np.array([0.1, 1.0])
    for _ in range(max_iter + 1):
        ratio = dispersions / (coeffs[0] + coeffs[1] / means)
        good = (ratio > 1e-4) & (ratio < 15)
        design = np.column_stack([np.ones(good.sum()), 1 / means[good]])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fit = sm.GLM(dispersions[good], design, family=family).fit(start_params=coeffs)
            except (ValueError, np.linalg.LinAlgError, FloatingPointError):
                return None
        previous, coeffs = coeffs, np.asarray(fit.params)
        if not np.all(coeffs > 0):
            return None
        if np.sum(np.log(coeffs / previous) ** 2) < 1e-6 and fit.converged:
            return coeffs
    return None


def simulated_prior_variance(residuals: np.ndarray, df: int, seed: int = 2) -> float:
    """DESeq2's prior variance of log dispersions for 1-3 residual degrees of freedom.

    Finds the variance of a normal prior which, added to the sampling distribution of
    log(chi2_df / df), best matches the histogram of observed log residuals: the smallest
    Kullback-Leibler divergence over a grid, smoothed by loess (degree 2, span 0.2, R's own
    loess code via scikit-misc), as ``estimateDispersionsPriorVar`` does.
    """
    rng = np.random.default_rng(seed)
    lo, hi = HIST_BREAKS[0], HIST_BREAKS[-1]
    observed = residuals[(residuals > lo) & (residuals < hi)]
    obs_density, _ = np.histogram(observed, bins=HIST_BREAKS, density=True)
    divergences = []
    for var in PRIOR_VAR_GRID:
        draws = (np.log(rng.chisquare(df, size=10_000)) - np.log(df)
                 + rng.normal(0, np.sqrt(var), size=10_000))
        rand_density, _ = np.histogram(draws[(draws > lo) & (draws < hi)], bins=HIST_BREAKS,
                                       density=True)
        both = np.concatenate([obs_density, rand_density])
        small = both[both > 0].min()
        divergences.append(np.sum(obs_density * (np.log(obs_density + small)
                                                 - np.log(rand_density + small))))
    smoother = loess(PRIOR_VAR_GRID, np.asarray(divergences), span=0.2, degree=2)
    smoother.fit()
    smooth = smoother.predict(PRIOR_VAR_FINE_GRID).values
    return float(max(PRIOR_VAR_FINE_GRID[np.argmin(smooth)], MIN_PRIOR_VAR))
