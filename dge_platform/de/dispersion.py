"""Dispersion trend and prior as R's DESeq2 computes them, plugged into PyDESeq2.

PyDESeq2 0.5.4 departs from DESeq2 1.38 in two places that move p-values on real data:

* the parametric trend ``a0 + a1 / mean``: R (``parametricDispersionFit``) drops genes
  whose gene-wise estimate is at the floor (<= 100 x minDisp) and those far from the
  current curve *before* each Gamma GLM fit; PyDESeq2 fits its first curve on every gene,
  floor values included, and converges elsewhere (a1 2.47 instead of R's 3.60 on airway);
* with 1-3 residual degrees of freedom R matches the distribution of log-dispersion
  residuals by simulation (``estimateDispersionsPriorVar``), where PyDESeq2 uses the MAD
  formula, which floors the prior variance at 0.25 and over-shrinks. The match is so noisy
  that only R's own random stream reproduces R's value, so that stream is replayed here
  (:class:`RRandomStream`).

The tests compare both against R fixtures (``dge_platform_tests/de/test_bulk_de.py``,
``dge_platform_tests/de/test_dispersion_prior.py``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from pydeseq2.dds import DeseqDataSet
from pydeseq2.utils import mean_absolute_deviation
from scipy.special import ndtri, polygamma
from skmisc.loess import loess

HIST_BREAKS = np.arange(-20, 21) / 2
PRIOR_VAR_GRID = np.linspace(0, 8, 200)
PRIOR_VAR_FINE_GRID = np.linspace(0, 8, 1000)
MIN_PRIOR_VAR = 0.25
SIMULATED_DRAWS = 10_000


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
    Kullback-Leibler divergence over a grid of 200 variances, smoothed by loess (degree 2,
    span 0.2, R's own loess code via scikit-misc), as ``estimateDispersionsPriorVar`` does.

    The KL curve is flat near its minimum and its Monte Carlo noise (1e4 draws per grid
    point) moves the argmin by more than the prior variance itself: R's residuals for the
    Kang 2018 CD14+ monocyte pseudobulks give anything from 0.25 to 0.9 depending on the
    random stream (R: 0.913). So the draws replay R's own stream after ``set.seed(seed)``
    (:class:`RRandomStream`); on R's residuals this returns R's value exactly.
    """
    residuals = np.asarray(residuals, dtype=float)
    lo, hi = HIST_BREAKS[0], HIST_BREAKS[-1]
    observed = residuals[(residuals > lo) & (residuals < hi)]
    if not len(observed):  # R's hist() has no density here, the prior falls to the floor
        return MIN_PRIOR_VAR
    obs_density = _r_hist_density(observed[None, :])[0]
    stream = RRandomStream(seed)
    draws = np.empty((len(PRIOR_VAR_GRID), SIMULATED_DRAWS))
    for row, var in enumerate(PRIOR_VAR_GRID):
        # log(rchisq(1e4, df)) + rnorm(1e4, 0, sqrt(x)) - log(df), in R's order
        chisq = stream.rchisq(SIMULATED_DRAWS, df)
        normal = stream.rnorm(SIMULATED_DRAWS, 0.0, np.sqrt(var))
        with np.errstate(divide="ignore"):
            draws[row] = np.log(chisq) + normal - np.log(df)
    inside = (draws > lo) & (draws < hi)
    rand_density = _r_hist_density(np.where(inside, draws, np.nan))
    both = np.concatenate([np.broadcast_to(obs_density, rand_density.shape), rand_density], axis=1)
    small = np.where(both > 0, both, np.inf).min(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = obs_density * (np.log(obs_density + small) - np.log(rand_density + small))
    divergences = terms.sum(axis=1)
    smoother = loess(PRIOR_VAR_GRID, divergences, span=0.2, degree=2)
    smoother.fit()
    smooth = smoother.predict(PRIOR_VAR_FINE_GRID).values
    return float(max(PRIOR_VAR_FINE_GRID[np.argmin(smooth)], MIN_PRIOR_VAR))


def _r_hist_density(values: np.ndarray) -> np.ndarray:
    """``hist(x, breaks = HIST_BREAKS)$density`` per row of ``values`` (NaN: not in the
    sample; others within the breaks): bins closed on the right, the lowest closed on both
    sides, and R's fuzz of 1e-7 bin widths on the breaks."""
    width = np.diff(HIST_BREAKS)
    fuzz = 1e-7 * np.median(width)
    breaks = HIST_BREAKS + np.r_[-fuzz, np.full(len(HIST_BREAKS) - 1, fuzz)]
    n_bins = len(width)
    keep = ~np.isnan(values)
    x = values[keep]
    # equal widths: the arithmetic bin, then exact comparison with the (fuzzy) breaks
    bins = np.clip(np.ceil((x - HIST_BREAKS[0]) / width[0]).astype(np.intp) - 1, 0, n_bins - 1)
    bins -= (x <= breaks[bins]) & (bins > 0)
    bins += (x > breaks[bins + 1]) & (bins < n_bins - 1)
    rows = np.broadcast_to(np.arange(values.shape[0])[:, None], values.shape)[keep]
    counts = np.bincount(rows * n_bins + bins, minlength=values.shape[0] * n_bins)
    n = keep.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts.reshape(-1, n_bins) / (n * width)


# R's random number generation (src/main/RNG.c, src/nmath/{snorm,sexp,rgamma,rchisq}.c of
# R 4.2), replayed in numpy for ``simulated_prior_variance``.
_R_FIXUP_ZERO = 0.5 * 2.328306437080797e-10  # fixup(): unif_rand never returns 0
_EXP_Q = np.array([  # sexp.c: q[k-1] = sum(log(2)^k / k!), k = 1..16
    0.6931471805599453, 0.9333736875190459, 0.9888777961838675, 0.9984959252914960,
    0.9998292811061389, 0.9999833164100727, 0.9999985691438767, 0.9999998906925558,
    0.9999999924734159, 0.9999999995283275, 0.9999999999728814, 0.9999999999985598,
    0.9999999999999289, 0.9999999999999968, 0.9999999999999999, 1.0000000000000000])
_EXP_A = np.array([sum([_EXP_Q[0]] * k, 0.0) for k in range(70)])  # a += q[0], k times
_LOOKAHEAD = 48  # uniforms one rgamma trial may read past its start (exp_rand <= 17)


class RRandomStream:
    """R's default random streams after ``set.seed(seed)``: Mersenne-Twister uniforms
    (``unif_rand``), Inversion normals (``rnorm``) and ``rchisq`` (``rgamma``: Ahrens-Dieter
    GS for shape < 1, GD for shape >= 1, with ``exp_rand``), draw for draw.

    The rejection samplers consume a variable number of uniforms, so each ``rchisq`` block
    evaluates the trial lengths at every offset of a window of uniforms, follows the chain of
    trials from the current position by pointer doubling, and evaluates the draws only on
    that chain. Values agree with R's to a few ulp (numpy's log/exp and scipy's ``ndtri``
    against R's libm and ``qnorm``); the number of uniforms consumed agrees exactly.
    """

    def __init__(self, seed: int) -> None:
        s = seed & 0xFFFFFFFF
        for _ in range(50):  # RNG_Init: initial scrambling
            s = (69069 * s + 1) & 0xFFFFFFFF
        words = np.empty(625, dtype=np.uint32)
        for j in range(625):
            s = (69069 * s + 1) & 0xFFFFFFFF
            words[j] = s
        # words[0] is overwritten by mti = 624 (FixupSeeds), the state is words[1:]
        self._bitgen = np.random.MT19937(0)
        self._bitgen.state = {"bit_generator": "MT19937",
                              "state": {"key": words[1:], "pos": 624}}
        self._buffer = np.empty(0)
        self._pos = 0
        self._per_draw: dict[float, float] = {}  # uniforms used per rchisq draw, by df

    def _peek(self, n: int) -> np.ndarray:
        if self._pos + n > len(self._buffer):
            more = max(self._pos + n - len(self._buffer), 1 << 19)
            fresh = self._bitgen.random_raw(more) * 2.3283064365386963e-10  # MT_genrand
            np.maximum(fresh, _R_FIXUP_ZERO, out=fresh)  # 0 is the only value below
            self._buffer = np.concatenate([self._buffer[self._pos:], fresh])
            self._pos = 0
        return self._buffer[self._pos:self._pos + n]

    def runif(self, n: int) -> np.ndarray:
        out = self._peek(n).copy()
        self._pos += n
        return out

    def rnorm(self, n: int, mean: float = 0.0, sd: float = 1.0) -> np.ndarray:
        if sd == 0:  # rnorm.c returns mu without drawing
            return np.full(n, mean)
        u = self.runif(2 * n)
        return mean + sd * _norm_from(u[0::2], u[1::2])

    def rchisq(self, n: int, df: float) -> np.ndarray:
        shape = df / 2
        per_draw = self._per_draw.get(shape, 4.0 if shape < 1 else 3.0)
        window = int(n * per_draw * 1.05) + 500
        while True:
            u = self._peek(window + _LOOKAHEAD)
            out = (_gamma_gs if shape < 1 else _gamma_gd)(u, window, n, shape)
            if out is not None:
                values, used = out
                self._pos += used
                self._per_draw[shape] = used / n
                return 2.0 * values  # rchisq(df) = rgamma(df / 2, scale = 2)
            window *= 2


def _norm_from(u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
    """norm_rand(), INVERSION: two uniforms for 2^-27 resolution, then qnorm."""
    big = 134217728.0
    return ndtri((np.floor(big * u1) + u2) / big)


def _exp_rand_fraction(u: np.ndarray) -> np.ndarray:
    """What ``exp_rand()`` keeps of its first uniform ``u`` once the doubling loop has
    stripped the leading zero bits: ``u * 2^(k + 1) - 1``, exactly."""
    mant = np.frexp(u)[0]
    frac = 2.0 * mant - 1.0
    frac[mant == 0.5] = 1.0  # u = 2^-k: doubling reaches exactly 1, then 2
    return frac


def _exp_rand_length(u: np.ndarray) -> np.ndarray:
    """Uniforms one ``exp_rand()`` reads given its first uniform ``u``: 1 if the fraction
    is <= q[0], else 2 + the first i with fraction <= q[i]."""
    frac = _exp_rand_fraction(u)
    length = 1 + 2 * (frac > _EXP_Q[0])
    far = np.flatnonzero(frac > _EXP_Q[1])
    length[far] = 2 + np.searchsorted(_EXP_Q, frac[far], side="left")
    return length


def _exp_rand_value(u: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``exp_rand()`` starting at each offset ``at`` of ``u``."""
    first = u[at]
    frac = _exp_rand_fraction(first)
    mant, ex = np.frexp(first)
    a = _EXP_A[(mant == 0.5) - ex]  # q[0] added once per doubling that stays <= 1
    value = a + frac
    long = np.flatnonzero(frac > _EXP_Q[0])
    if len(long):
        extra = np.searchsorted(_EXP_Q, frac[long], side="left")
        start = at[long] + 1
        umin = u[start]
        for j in range(1, int(extra.max()) + 1):
            umin = np.where(extra >= j, np.minimum(umin, u[start + np.minimum(j, extra)]), umin)
        value[long] = a[long] + umin * _EXP_Q[0]
    return value


def _chain(step: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` positions from 0 following ``i -> i + step[i]``, by pointer
    doubling; positions at or past ``len(step)`` are returned as ``len(step)``."""
    n = len(step)
    jump = np.empty(n + 1, dtype=np.intp)
    np.minimum(np.arange(n) + step, n, out=jump[:n])
    jump[n] = n
    chain = np.zeros(count, dtype=np.intp)
    have = 1
    while have < count:
        take = min(have, count - have)
        np.take(jump, chain[:take], out=chain[have:have + take])
        have += take
        if have < count:
            jump = np.take(jump, jump)
    return chain


def _gamma_gs(u: np.ndarray, window: int, n: int, shape: float):
    """n rgamma(shape < 1) draws from ``u`` (GS): each trial reads one uniform then one
    exp_rand, and the trials follow each other whatever they decide. Returns (values,
    uniforms used), or None if ``window`` is too short."""
    trial_length = 1 + _exp_rand_length(u[1:window + 1])
    trials = _chain(trial_length, int(window / 2.5))  # a trial reads 2.7 on average
    trials = trials[trials < window]
    e = 1.0 + 0.36787944117144232159 * shape
    p = e * u[trials]
    expo = _exp_rand_value(u, trials + 1)
    above = p >= 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(above, -np.log((e - p) / shape), np.exp(np.log(p) / shape))
        accept = np.where(above, expo >= (1.0 - shape) * np.log(x), expo >= x)
    accepted = np.flatnonzero(accept)
    if len(accepted) < n:
        return None
    last = trials[accepted[n - 1]]
    return x[accepted[:n]], int(last + trial_length[last])


def _gamma_gd(u: np.ndarray, window: int, n: int, shape: float):
    """n rgamma(shape >= 1) draws from ``u`` (GD), as :func:`_gamma_gs`.

    A draw reads 2 uniforms (a normal: immediate acceptance when t >= 0), else a third
    (squeeze and quotient acceptance), else double-exponential trials (step 8) until one
    is accepted: every offset of the window is decided, then the chain is followed once.
    """
    s2 = shape - 0.5
    s = np.sqrt(s2)
    d = 5.656854 - s * 12.0
    r = 1.0 / shape
    q0 = ((((((2.424e-4 * r + 2.4511e-4) * r + -7.388e-5) * r + 0.00144121) * r
            + 0.00801191) * r + 0.02083148) * r + 0.04166669) * r
    if shape <= 3.686:
        b, si, c = 0.463 + s + 0.178 * s2, 1.235, 0.195 / s - 0.079 + 0.16 * s
    elif shape <= 13.022:
        b, si, c = 1.654 + 0.0076 * s2, 1.68 / s + 0.275, 0.062 / s + 0.024
    else:
        b, si, c = 1.77, 0.75, 0.1515 / s

    def quotient(t):
        v = t / (s + s)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                np.abs(v) <= 0.25,
                q0 + 0.5 * t * t * ((((((0.1233795 * v + -0.1367177) * v + 0.1423657) * v
                                       + -0.1662921) * v + 0.2000062) * v + -0.250003) * v
                                    + 0.3333333) * v,
                q0 - s * t + 0.25 * t * t + (s2 + s2) * np.log(1.0 + v))

    def double_exponential_trials(pos):
        """Steps 8-11 from offsets ``pos``: (x, end) of the first accepted trial, 4 trials
        at a time; end > window when the trials run off the window."""
        trial_length = np.append(1 + _exp_rand_length(u[:window]), window)  # e, then u
        x, end = np.empty(len(pos)), np.empty(len(pos), dtype=np.intp)
        rows = np.arange(len(pos))
        while len(rows):
            trials = np.empty((len(rows), 4), dtype=np.intp)
            trials[:, 0] = np.minimum(pos, window)
            for k in range(1, 4):
                trials[:, k] = np.minimum(trials[:, k - 1] + trial_length[trials[:, k - 1]],
                                          window)
            expo = _exp_rand_value(u, trials.ravel()).reshape(trials.shape)
            after = trials + trial_length[trials]  # past this trial's uniform w
            w = u[np.minimum(after - 1, window)]
            w = w + w - 1.0
            t = np.where(w < 0.0, b - si * expo, b + si * expo)
            q = quotient(t)
            with np.errstate(over="ignore", invalid="ignore"):
                ok = (t >= -0.71874483771719) & (q > 0.0) & (
                    c * np.abs(w) <= np.expm1(q) * np.exp(expo - 0.5 * t * t))
            ok |= trials >= window  # off the window: the chain check rejects the window
            hit = ok.any(axis=1)
            first = np.argmax(ok, axis=1)[hit]
            xs = s + 0.5 * t[hit, first]
            x[rows[hit]] = xs * xs
            end[rows[hit]] = after[hit, first]
            pos = after[~hit, 3]
            rows = rows[~hit]
        return x, end

    big = 134217728.0
    p = (np.floor(big * u[:window]) + u[1:window + 1]) / big
    length = np.full(window, 2, dtype=np.intp)  # t >= 0 (p >= 1/2): immediate acceptance
    value = np.full(window, np.nan)
    lower = np.flatnonzero(p < 0.5)
    t = ndtri(p[lower])
    x = s + 0.5 * t
    uu = u[lower + 2]
    with np.errstate(divide="ignore"):
        done = (d * uu <= t * t * t) | ((x > 0.0) & (np.log(1.0 - uu) <= quotient(t)))
    length[lower] = 3
    value[lower[done]] = x[done] * x[done]
    rejected = lower[~done]
    value[rejected], end = double_exponential_trials(rejected + 3)
    length[rejected] = end - rejected
    starts = _chain(length, n)
    if starts[-1] >= window or starts[-1] + length[starts[-1]] > window:
        return None
    immediate = p[starts] >= 0.5
    x = s + 0.5 * ndtri(p[starts[immediate]])
    out = value[starts]
    out[immediate] = x * x
    return out, int(starts[-1] + length[starts[-1]])
