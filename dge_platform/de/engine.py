"""A vectorized DESeq2 engine for "group + block" designs, with PyDESeq2's semantics.

Most designs are one factor of interest whose levels are contrasted (the *group*) plus a
few *block* columns (other factors' treatment dummies, continuous covariates). Recoding the
group one-hot, without intercept, spans the same model space as treatment coding, so the
MLE is the same, and the normal matrix ``X'WX`` becomes ``[[diag(d), C], [C', D]]``: its
inverse (for IRLS steps, Cox-Reid terms, hat diagonals and contrast variances) only needs
the Schur complement of the small ``B x B`` block, computed for all genes at once. Every
step runs on whole gene x sample arrays (no per-gene Python loop), which makes screens with
hundreds of wells and conditions cheap.

The steps follow PyDESeq2 0.5.4 (``DeseqDataSet.deseq2``, ``DeseqStats.summary``,
``lfc_shrink``, ``vst``) with the R-parity trend and prior of
:mod:`dge_platform.de.dispersion`: size factors, gene-wise Cox-Reid dispersions, parametric
trend, prior variance, MAP dispersions, IRLS with the same initialisation, clamping and
stopping rule, Cook's distances, outlier replacement and refit, Wald tests (optionally
against ``|LFC| > threshold``), Cook's filtering, independent filtering and BH; apeGLM-style
shrinkage and the blind VST. Gene-wise and MAP dispersions are R's instead (DESeq2 1.38's
``fitDisp`` line search, vectorized, with its grid refit and means floored at 0.5): with few
residual degrees of freedom the prior variance hinges on where that search stops.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp
from formulaic import model_matrix
from pydeseq2.preprocessing import deseq2_norm_fit, deseq2_norm_transform
from pydeseq2.utils import (
    fit_moments_dispersions,
    fit_rough_dispersions,
    irls_solver,
    lowess,
    n_or_more_replicates,
    robust_method_of_moments_disp,
    trimmed_mean,
)
from scipy.optimize import root_scalar
from scipy.special import digamma, gammaln
from scipy.stats import f as f_dist
from scipy.stats import false_discovery_control, norm, trim_mean

from dge_platform.de.contrast import Contrast, LinearContrast
from dge_platform.de.dispersion import dispersion_prior, parametric_trend

MIN_MU = 0.5
MIN_DISP = 1e-8
MAX_DISP = 10.0
BETA_TOL = 1e-8
MAX_BETA = 30.0
MAX_IRLS_ITER = 250
MIN_REPLICATES = 7
# DESeq2's dispersion line search (fitDisp): it stops once an accepted step gains less than
# DISP_TOL in log posterior, or after DISP_MAX_ITER steps; steps start at DISP_KAPPA0 times
# the derivative, are accepted if they gain DISP_ARMIJO times the linear prediction, and
# keep log alpha within DISP_LOG_ALPHA_RANGE.
DISP_TOL = 1e-6
DISP_MAX_ITER = 100
DISP_KAPPA0 = 1.0
DISP_ARMIJO = 1e-4
DISP_LOG_ALPHA_RANGE = (-30.0, 10.0)
# DESeq2's fitDispGrid: this many equally spaced log dispersions over [min_disp, max_disp],
# then as many from one coarse step below the best to one above it.
DISP_GRID_POINTS = 20
SHRINK_NO_SHRINK_SCALE = 15.0
# Shrinkage Newton steps use the exact Hessian while its curvature along the LFC is at least
# this fraction of the convex part's (see _posterior_newton).
MIN_CURVATURE_RATIO = 0.1
# Without block columns, the reference samples' likelihood in the shrinkage is tabulated per
# gene as a Chebyshev series of this degree on [MLE - w, MLE + w] of the reference log mean
# (ReferenceTerm). Its singularities lie >= pi off the real axis, so the interpolation error
# falls like (pi / w + sqrt((pi / w)^2 + 1))^-degree: ~1e-13 relative here. Iterates rarely
# leave the interval (they are then evaluated exactly); narrower needs fewer terms.
SHRINK_REFERENCE_HALF_WIDTH = 0.5
SHRINK_REFERENCE_DEGREE = 12
# Newton rows (2 starts x genes x levels) shrunk together, bounding the arrays' memory.
SHRINK_BATCH_ROWS = 1 << 18
# "auto" size factors: median of ratios when at least this many genes have no zero count.
MIN_GENES_WITHOUT_ZERO = 50
RESULT_ORDER = ["contrast", "gene_id", "base_mean", "log2_fold_change", "lfc_se", "stat",
                "pvalue", "padj", "log2_fold_change_shrunk"]


@dataclass
class DeseqResult:
    """Everything one study's fit produces.

    Attributes
    ----------
    size_factors
        Size factor per sample.
    normalized_counts
        Counts divided by size factors, genes x samples.
    vst
        Blind variance-stabilized expression (design ignored), genes x samples.
    dispersions
        Per gene: base mean, gene-wise estimate, trend, final (MAP) dispersion, and whether
        the gene was a dispersion outlier.
    results
        One row per contrast and gene: contrast, gene_id, base_mean, log2_fold_change,
        lfc_se, stat, pvalue, padj, log2_fold_change_shrunk.
    size_factor_method
        How the size factors were computed: ``"ratio"`` or ``"poscounts"``.
    linear_results
        The linear contrasts' results (interactions), same columns as ``results``
        (``log2_fold_change_shrunk`` NaN); empty without linear contrasts.
    """

    size_factors: pd.Series
    normalized_counts: pd.DataFrame
    vst: pd.DataFrame
    dispersions: pd.DataFrame
    results: pd.DataFrame
    size_factor_method: str
    linear_results: pd.DataFrame = field(default_factory=pd.DataFrame)


# --------------------------------------------------------------------------------------
# Design
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GroupBlockDesign:
    """A one-hot group factor plus block columns (no intercept).

    Attributes
    ----------
    codes
        Group index of each sample, ``(n,)``.
    levels
        Group labels; ``levels[0]`` is the base level of the equivalent treatment coding.
    block
        Block columns, ``(n, B)``.
    """

    codes: np.ndarray
    levels: tuple[str, ...]
    block: np.ndarray

    @property
    def n_samples(self) -> int:
        return len(self.codes)

    @property
    def n_groups(self) -> int:
        return len(self.levels)

    @property
    def n_block(self) -> int:
        return self.block.shape[1]

    @property
    def n_params(self) -> int:
        return self.n_groups + self.n_block

    @cached_property
    def onehot(self) -> np.ndarray:
        return np.eye(self.n_groups)[self.codes]

    @cached_property
    def matrix(self) -> np.ndarray:
        """The ``(n, K + B)`` design matrix."""
        return np.column_stack([self.onehot, self.block])

    @cached_property
    def treatment_matrix(self) -> np.ndarray:
        """The equivalent treatment-coded matrix ``[1, onehot[:, 1:], block]``."""
        return np.column_stack([np.ones(self.n_samples), self.onehot[:, 1:], self.block])

    @cached_property
    def _summer(self) -> sp.csr_matrix:
        return sp.csr_matrix(self.onehot.T)

    @cached_property
    def _block_outer(self) -> np.ndarray:
        return (self.block[:, :, None] * self.block[:, None, :]).reshape(self.n_samples, -1)

    def group_sums(self, x: np.ndarray) -> np.ndarray:
        """Sum a ``(G, n)`` array over the samples of each group: ``(G, K)``."""
        return np.asarray(self._summer @ x.T).T

    def linear_predictor(self, groups: np.ndarray, block: np.ndarray) -> np.ndarray:
        """``X beta`` for ``(G, K)`` group and ``(G, B)`` block coefficients: ``(G, n)``."""
        eta = groups[:, self.codes]
        if self.n_block:
            eta = eta + block @ self.block.T
        return eta

    def replicates_at_least(self, k: int) -> np.ndarray:
        """Samples whose design row occurs at least ``k`` times (PyDESeq2's rule)."""
        return n_or_more_replicates(pd.DataFrame(self.matrix), k).to_numpy()

    def subset(self, samples: np.ndarray) -> GroupBlockDesign:
        """The design restricted to some samples, dropping groups left empty."""
        present = np.unique(self.codes[samples])
        remap = np.full(self.n_groups, -1)
        remap[present] = np.arange(len(present))
        return GroupBlockDesign(remap[self.codes[samples]],
                                tuple(self.levels[i] for i in present), self.block[samples])

    @classmethod
    def intercept_only(cls, n_samples: int) -> GroupBlockDesign:
        return cls(np.zeros(n_samples, dtype=int), ("all",), np.empty((n_samples, 0)))


@dataclass
class NormalBlocks:
    """Blocks of ``X'WX = [[diag(d), C], [C', D]]`` per gene, with ``E = C / d`` and the
    inverse Schur complement ``(D - C'E)^-1``."""

    d: np.ndarray        # (G, K)
    E: np.ndarray        # (G, K, B)
    s_inv: np.ndarray    # (G, B, B)


def normal_blocks(weights: np.ndarray, design: GroupBlockDesign) -> NormalBlocks:
    """Blocks of the weighted normal matrix for ``(G, n)`` IRLS weights."""
    d = design.group_sums(weights)
    n_genes, b = len(weights), design.n_block
    if b == 0:
        return NormalBlocks(d, np.empty((n_genes, design.n_groups, 0)), np.empty((n_genes, 0, 0)))
    C = np.stack([design.group_sums(weights * design.block[:, j]) for j in range(b)], axis=2)
    D = (weights @ design._block_outer).reshape(n_genes, b, b)
    E = C / d[:, :, None]
    schur = D - np.einsum("gkb,gkc->gbc", C, E)
    return NormalBlocks(d, E, np.linalg.inv(schur))


def solve_normal(blocks: NormalBlocks, rhs_groups: np.ndarray,
                 rhs_block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``X'WX theta = r`` by block elimination: group and block coefficients."""
    if blocks.E.shape[2] == 0:
        return rhs_groups / blocks.d, rhs_block
    beta_block = np.einsum("gbc,gc->gb", blocks.s_inv,
                           rhs_block - np.einsum("gkb,gk->gb", blocks.E, rhs_groups))
    groups = rhs_groups / blocks.d - np.einsum("gkb,gb->gk", blocks.E, beta_block)
    return groups, beta_block


def leverages(blocks: NormalBlocks, design: GroupBlockDesign) -> np.ndarray:
    """``x_i' (X'WX)^-1 x_i`` for every gene and sample, ``(G, n)``."""
    q = 1.0 / blocks.d[:, design.codes]
    if design.n_block:
        delta = blocks.E[:, design.codes, :] - design.block[None]
        q += np.einsum("gib,gib->gi", delta @ blocks.s_inv, delta)
    return q


def contrast_variance(blocks: NormalBlocks, weights: np.ndarray) -> np.ndarray:
    """``c' (X'WX)^-1 c`` for group weights ``c`` (``(K,)``, block weights 0), the
    natural-log variance of a contrast: the group block of the inverse is
    ``diag(1 / d) + E S^-1 E'``."""
    used = np.flatnonzero(weights)
    w = np.asarray(weights, float)[used]
    var = (w**2 / blocks.d[:, used]).sum(axis=1)
    if blocks.E.shape[2]:
        delta = np.einsum("k,gkb->gb", w, blocks.E[:, used])
        var += np.einsum("gb,gbc,gc->g", delta, blocks.s_inv, delta)
    return var


def pair_weights(n_groups: int, level: int, reference: int) -> np.ndarray:
    """Group weights of ``level`` vs ``reference``: ``e_level - e_reference``."""
    weights = np.zeros(n_groups)
    weights[level], weights[reference] = 1.0, -1.0
    return weights


def group_design(frame: pd.DataFrame, design: str,
                 factor: str) -> tuple[pd.Series, pd.DataFrame] | None:
    """Split a design into the groups of ``factor`` and block columns, if it is additive.

    Parameters
    ----------
    frame
        Typed design frame indexed by sample (see :func:`dge_platform.study.design.design_frame`).
    design
        The formula.
    factor
        The categorical factor whose levels are contrasted.

    Returns
    -------
    ``(groups, block)``: the factor per sample (categorical, unused levels dropped) and the
    model-matrix columns of every other term but the intercept; or None when ``factor`` is
    not a categorical main effect free of interactions, or the recoded design does not span
    the same space as the formula's model matrix.
    """
    if factor not in frame or not isinstance(frame[factor].dtype, pd.CategoricalDtype):
        return None
    matrix = model_matrix(design, frame)
    own, block_cols = [], []
    for term, cols in matrix.model_spec.term_slices.items():
        variables = {fa.expr for fa in term.factors}
        names = list(matrix.columns[cols])
        if factor in variables:
            if len(variables) > 1:
                return None  # interaction with the factor of interest
            own += names
        elif str(term) != "1":
            block_cols += names
    if not own:
        return None
    groups = frame[factor].cat.remove_unused_categories()
    block = pd.DataFrame(matrix[block_cols], index=frame.index).astype(float)
    full = np.asarray(matrix, dtype=float)
    recoded = np.column_stack([pd.get_dummies(groups).to_numpy(float), block.to_numpy()])
    rank = np.linalg.matrix_rank(full)
    if recoded.shape[1] != full.shape[1] or rank != full.shape[1] \
            or np.linalg.matrix_rank(np.column_stack([full, recoded])) != rank:
        return None
    return groups, block


# --------------------------------------------------------------------------------------
# Size factors
# --------------------------------------------------------------------------------------

def size_factor_method(counts: np.ndarray, fit_type: str = "auto") -> str:
    """The size factor type to use for a ``(G, n)`` count matrix: ``fit_type`` itself, or
    for ``"auto"`` DESeq2's default median of ratios (``"ratio"``) when at least 50 genes
    have no zero count, else ``"poscounts"`` (DESeq2's advice for sparse counts, where
    median of ratios is undefined or rests on a handful of genes)."""
    if fit_type != "auto":
        return fit_type
    enough = (counts > 0).all(axis=1).sum() >= MIN_GENES_WITHOUT_ZERO
    return "ratio" if enough else "poscounts"


def size_factors(counts: np.ndarray, fit_type: str = "ratio") -> np.ndarray:
    """Size factors of a ``(G, n)`` count matrix, as PyDESeq2's ``fit_size_factors``.

    ``"ratio"``: median of ratios to the gene-wise geometric means over genes without
    zeros. ``"poscounts"``: DESeq2's ``type="poscounts"`` for sparse counts, geometric means
    over positive counts only (divided by n), ratios over positive counts, normalized to a
    geometric mean of 1.
    """
    if fit_type == "ratio":
        if (counts == 0).any(axis=1).all():
            raise ValueError("every gene has a zero count, so median-of-ratios size factors "
                             "are undefined; use size_factors_fit_type='poscounts'")
        logmeans, filtered = deseq2_norm_fit(counts.T)
        return np.asarray(deseq2_norm_transform(counts.T, logmeans, filtered)[1])
    if fit_type == "poscounts":
        positive = counts > 0
        log_counts = np.log(np.where(positive, counts, 1.0))
        logmeans = log_counts.mean(axis=1)
        use = np.isfinite(logmeans) & (logmeans > 0)
        ratios = np.where(positive[use], log_counts[use] - logmeans[use, None], np.nan)
        sf = np.exp(np.nanmedian(ratios, axis=0))
        return sf / np.exp(np.mean(np.log(sf)))
    raise ValueError(f"unknown size factor type {fit_type!r}; use 'ratio', 'poscounts' or "
                     "'auto'")


# --------------------------------------------------------------------------------------
# Negative binomial GLM (IRLS)
# --------------------------------------------------------------------------------------

def nb_nll(counts: np.ndarray, mu: np.ndarray, alpha: np.ndarray,
           logbinom: np.ndarray | None = None) -> np.ndarray:
    """Negative binomial negative log-likelihood per gene (row), as ``pydeseq2.utils.nb_nll``;
    ``logbinom`` (:func:`nb_log_binomial`) can be passed when the counts and dispersions are
    fixed across calls (IRLS), which saves its three log-gamma terms."""
    inv = 1.0 / alpha[:, None]
    if logbinom is None:
        logbinom = nb_log_binomial(counts, alpha)
    return (inv * np.log(alpha[:, None]) - logbinom + (counts + inv) * np.log(mu + inv)
            - counts * np.log(mu)).sum(axis=1)


def nb_log_binomial(counts: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The mean-free term of :func:`nb_nll`, ``(G, n)``."""
    inv = 1.0 / alpha[:, None]
    return gammaln(counts + inv) - gammaln(counts + 1) - gammaln(inv)


@dataclass
class GlmFit:
    """MLE of a group + block NB GLM per gene.

    Attributes
    ----------
    groups, block
        Natural-log coefficients, ``(G, K)`` and ``(G, B)``.
    mu
        Fitted means (not clamped), ``(G, n)``.
    hat
        Hat-matrix diagonals at the last IRLS weights, ``(G, n)``.
    """

    groups: np.ndarray
    block: np.ndarray
    mu: np.ndarray
    hat: np.ndarray


def fit_glm(counts: np.ndarray, size_factors: np.ndarray, design: GroupBlockDesign,
            dispersions: np.ndarray, *, min_mu: float = MIN_MU,
            beta_tol: float = BETA_TOL) -> GlmFit:
    """NB GLM by IRLS for all genes at once, as ``pydeseq2.utils.irls_solver``.

    Same start (least squares on ``log(y / s + 0.1)``), means clamped at ``min_mu`` inside
    the iterations, stopping rule ``|dev - dev_old| / (|dev| + 0.1) < beta_tol`` per gene.
    Genes whose treatment-coded coefficients leave [-30, 30] (or that do not converge in
    250 iterations) are handed to PyDESeq2's own solver, which switches to L-BFGS-B.
    """
    n_genes, k = len(counts), design.n_groups
    X = design.matrix
    log_sf = np.log(size_factors)
    start = np.linalg.lstsq(X, np.log(counts / size_factors + 0.1).T, rcond=None)[0].T
    groups, block = start[:, :k].copy(), start[:, k:].copy()
    mu_c = np.maximum(np.exp(design.linear_predictor(groups, block) + log_sf), min_mu)
    dev = np.full(n_genes, 1000.0)
    active = np.arange(n_genes)
    fallback = np.zeros(n_genes, dtype=bool)
    logbinom = nb_log_binomial(counts, dispersions)
    for _ in range(MAX_IRLS_ITER):
        if not len(active):
            break
        y, mu, disp = counts[active], mu_c[active], dispersions[active]
        w = mu / (1.0 + mu * disp[:, None])
        wz = w * (np.log(mu) - log_sf + (y - mu) / mu)
        new_groups, new_block = solve_normal(normal_blocks(w, design),
                                             design.group_sums(wz), wz @ design.block)
        treatment = np.column_stack([new_groups[:, 0], new_groups[:, 1:] - new_groups[:, :1],
                                     new_block])
        diverged = (np.abs(treatment) > MAX_BETA).any(axis=1)
        fallback[active[diverged]] = True
        keep = ~diverged
        active, new_groups, new_block, y, disp = (active[keep], new_groups[keep],
                                                  new_block[keep], y[keep], disp[keep])
        groups[active], block[active] = new_groups, new_block
        mu = np.maximum(np.exp(design.linear_predictor(new_groups, new_block) + log_sf), min_mu)
        mu_c[active] = mu
        new_dev = -2.0 * nb_nll(y, mu, disp, logbinom[active])
        ratio = np.abs(new_dev - dev[active]) / (np.abs(new_dev) + 0.1)
        dev[active] = new_dev
        active = active[ratio > beta_tol]
    fallback[active] = True

    w = mu_c / (1.0 + mu_c * dispersions[:, None])
    hat = w * leverages(normal_blocks(w, design), design)
    mu = np.exp(design.linear_predictor(groups, block) + log_sf)
    for g in np.flatnonzero(fallback):
        beta, mu[g], hat[g], _ = irls_solver(counts[g], size_factors, design.treatment_matrix,
                                             dispersions[g], min_mu=min_mu, beta_tol=beta_tol)
        groups[g] = beta[0] + np.concatenate([[0.0], beta[1:k]])
        block[g] = beta[k:]
    return GlmFit(groups, block, mu, hat)


def linear_mu(counts: np.ndarray, size_factors: np.ndarray, design: GroupBlockDesign,
              min_mu: float = MIN_MU) -> np.ndarray:
    """Means from least squares on normalized counts (PyDESeq2's ``fit_lin_mu``)."""
    X = design.matrix
    coef = np.linalg.lstsq(X, (counts / size_factors).T, rcond=None)[0]
    return np.maximum(size_factors * (X @ coef).T, min_mu)


# --------------------------------------------------------------------------------------
# Dispersions
# --------------------------------------------------------------------------------------

def log_dispersion_gradient(log_alpha: np.ndarray, counts: np.ndarray, mu: np.ndarray,
                            design: GroupBlockDesign, prior_mean: np.ndarray | None = None,
                            prior_var: float | None = None) -> np.ndarray:
    """Gradient in ``log alpha`` of the Cox-Reid adjusted NB likelihood (negative), plus a
    normal prior on ``log alpha`` when given: minus DESeq2's ``dlog_posterior``."""
    alpha = np.exp(log_alpha)[:, None]
    inv = 1.0 / alpha
    score = (digamma(inv) - digamma(counts + inv) + np.log1p(mu * alpha)
             + (counts - mu) / (mu + inv)).sum(axis=1)
    w = mu / (1.0 + mu * alpha)
    # d/d(log a) of 0.5 log det X'WX = 0.5 a tr((X'WX)^-1 X' dW X), dW/da = -W^2.
    cox_reid = -0.5 * alpha[:, 0] * (w * w * leverages(normal_blocks(w, design), design)).sum(1)
    grad = -score / alpha[:, 0] + cox_reid
    if prior_mean is not None:
        grad += (log_alpha - prior_mean) / prior_var
    return grad


def log_dispersion_posterior(log_alpha: np.ndarray, counts: np.ndarray, mu: np.ndarray,
                             design: GroupBlockDesign, prior_mean: np.ndarray | None = None,
                             prior_var: float | None = None) -> np.ndarray:
    """Cox-Reid adjusted NB log likelihood of log dispersions, plus a normal log prior on
    ``log alpha`` when given: DESeq2's ``log_posterior`` (up to a constant per gene).

    Parameters
    ----------
    log_alpha
        ``(G, m)``: ``m`` log dispersions per gene.
    counts, mu
        Counts and fitted means, ``(G, n)``.
    prior_mean
        Prior mean of ``log alpha`` per gene, ``(G,)``, or None for no prior.
    prior_var
        Prior variance of ``log alpha``.

    Returns
    -------
    The objective at every ``log_alpha``, ``(G, m)``.
    """
    out = np.empty(log_alpha.shape)
    for rows in _chunks(len(counts), counts.shape[1]):  # cache-sized pieces of the arrays
        y, m = counts[rows], mu[rows]
        for t in range(log_alpha.shape[1]):
            alpha = np.exp(log_alpha[rows, t])
            inv = (1.0 / alpha)[:, None]
            loglik = ((gammaln(y + inv) - y * np.log(m + inv)
                       - inv * np.log1p(m * alpha[:, None])).sum(axis=1)
                      - y.shape[1] * gammaln(inv[:, 0]))
            blocks = normal_blocks(m / (1.0 + m * alpha[:, None]), design)
            log_det = np.log(blocks.d).sum(axis=1)
            if design.n_block:
                log_det -= np.linalg.slogdet(blocks.s_inv)[1]
            out[rows, t] = loglik - 0.5 * log_det
    if prior_mean is not None:
        out -= 0.5 * (log_alpha - prior_mean[:, None]) ** 2 / prior_var
    return out


@dataclass
class LineSearch:
    """Where DESeq2's dispersion line search stops, per gene.

    Attributes
    ----------
    log_alpha
        The last accepted point.
    iterations
        Steps tried, accepted or not (at most ``DISP_MAX_ITER``).
    initial, final
        Log posterior at the start and at the end (DESeq2's ``initial_lp`` and
        ``last_lp``; the latter at the previous point when the search stopped below
        ``min_log_alpha``).
    """

    log_alpha: np.ndarray
    iterations: np.ndarray
    initial: np.ndarray
    final: np.ndarray


def line_search_dispersions(counts: np.ndarray, mu: np.ndarray, design: GroupBlockDesign,
                            log_alpha: np.ndarray, *, min_log_alpha: float,
                            prior_mean: np.ndarray | None = None,
                            prior_var: float | None = None) -> LineSearch:
    """DESeq2's ``fitDisp`` for all genes at once: gradient ascent of
    :func:`log_dispersion_posterior` in ``log alpha`` with Armijo backtracking.

    A step of ``kappa`` times the derivative (cut to stay within ``DISP_LOG_ALPHA_RANGE``)
    is accepted if it gains at least ``DISP_ARMIJO * kappa * derivative^2``, else ``kappa``
    is halved; after an accepted step ``kappa`` grows by 10 % up to ``DISP_KAPPA0``, and
    is halved every fifth one. A gene stops when an accepted step gains less than
    ``DISP_TOL``, lands below ``min_log_alpha``, or after ``DISP_MAX_ITER`` steps tried.

    Where the likelihood is flat (few residual degrees of freedom, or heading for the
    floor) this stops well short of the optimum, and the prior variance simulated from
    the gene-wise estimates follows suit; so the search is reproduced, not just its aim.
    """
    has_prior = prior_mean is not None

    def value(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return log_dispersion_posterior(x[:, None], counts[rows], mu[rows], design,
                                        prior_mean[rows] if has_prior else None,
                                        prior_var)[:, 0]

    def slope(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return -log_dispersion_gradient(x, counts[rows], mu[rows], design,
                                        prior_mean[rows] if has_prior else None, prior_var)

    active = np.arange(len(counts))
    x = np.array(log_alpha, dtype=float)
    lp, dlp = value(x, active), slope(x, active)
    initial = lp.copy()
    kappa = np.full(len(x), DISP_KAPPA0)
    iterations, accepted = np.zeros(len(x), dtype=int), np.zeros(len(x), dtype=int)
    low, high = DISP_LOG_ALPHA_RANGE
    for _ in range(DISP_MAX_ITER):
        if not len(active):
            break
        iterations[active] += 1
        a, d, k = x[active], dlp[active], kappa[active]
        proposal = a + k * d
        with np.errstate(divide="ignore", invalid="ignore"):  # d = 0 proposes a itself
            k = np.where(proposal < low, (low - a) / d,
                         np.where(proposal > high, (high - a) / d, k))
            trial = a + k * d
            new_lp = value(trial, active)
            ok = new_lp >= lp[active] + k * DISP_ARMIJO * d * d  # NaN: rejected
        kappa[active] = np.where(ok, k, k / 2)
        rows, new_lp = active[ok], new_lp[ok]
        accepted[rows] += 1
        x[rows] = trial[ok]
        converged = new_lp - lp[rows] < DISP_TOL
        below = ~converged & (x[rows] < min_log_alpha)
        lp[rows[~below]] = new_lp[~below]
        going = rows[~converged & ~below]
        dlp[going] = slope(x[going], going)
        kappa[going] = np.minimum(kappa[going] * 1.1, DISP_KAPPA0)
        kappa[going[accepted[going] % 5 == 0]] /= 2
        stopped = np.zeros(len(x), dtype=bool)
        stopped[rows[converged | below]] = True
        active = active[~stopped[active]]
    return LineSearch(x, iterations, initial, lp)


def grid_dispersions(counts: np.ndarray, mu: np.ndarray, design: GroupBlockDesign,
                     lower: float, upper: float, prior_mean: np.ndarray | None = None,
                     prior_var: float | None = None) -> np.ndarray:
    """DESeq2's ``fitDispGrid``: the log dispersion maximizing
    :func:`log_dispersion_posterior` among ``DISP_GRID_POINTS`` equally spaced points on
    ``[lower, upper]``, refined by as many from one coarse step below the best to one above
    it (not clipped to the bounds; DESeq2 clips the dispersion)."""
    coarse = np.linspace(lower, upper, DISP_GRID_POINTS)
    values = log_dispersion_posterior(np.broadcast_to(coarse, (len(counts), len(coarse))),
                                      counts, mu, design, prior_mean, prior_var)
    delta = coarse[1] - coarse[0]
    fine = coarse[values.argmax(axis=1), None] + np.linspace(-delta, delta, DISP_GRID_POINTS)
    values = log_dispersion_posterior(fine, counts, mu, design, prior_mean, prior_var)
    return fine[np.arange(len(fine)), values.argmax(axis=1)]


def fit_dispersions(counts: np.ndarray, mu: np.ndarray, design: GroupBlockDesign,
                    start: np.ndarray, *, prior_mean: np.ndarray | None = None,
                    prior_var: float | None = None, min_disp: float = MIN_DISP,
                    max_disp: float) -> np.ndarray:
    """Cox-Reid adjusted dispersions as R's DESeq2 estimates them: the MLE
    (``estimateDispersionsGeneEst``) or, with a normal prior on ``log alpha`` (mean
    ``prior_mean``, variance ``prior_var``), the MAP (``estimateDispersionsMAP``).

    :func:`line_search_dispersions` from ``start``. Genes whose search does not converge
    (``DISP_MAX_ITER`` steps; for the MLE also a single one, if above ``10 min_disp``) are
    refitted by :func:`grid_dispersions`, which where the likelihood has several modes
    finds the highest. An MLE search gaining less than a millionth of the log likelihood
    keeps the start. Clipped to ``[min_disp, max_disp]``.
    """
    search = line_search_dispersions(counts, mu, design, np.log(start),
                                     min_log_alpha=np.log(min_disp / 10),
                                     prior_mean=prior_mean, prior_var=prior_var)
    alpha = np.minimum(np.exp(search.log_alpha), max_disp)
    refit = search.iterations >= DISP_MAX_ITER
    if prior_mean is None:
        no_gain = search.final < search.initial + np.abs(search.initial) / 1e6
        alpha[no_gain] = start[no_gain]
        refit = (refit | (search.iterations == 1)) & (alpha > 10 * min_disp)
    if refit.any():
        alpha[refit] = np.exp(grid_dispersions(
            counts[refit], mu[refit], design, np.log(min_disp), np.log(max_disp),
            None if prior_mean is None else prior_mean[refit], prior_var))
    return np.clip(alpha, min_disp, max_disp)


def genewise_dispersions(counts: np.ndarray, size_factors: np.ndarray,
                         design: GroupBlockDesign, *, max_disp: float,
                         min_disp: float = MIN_DISP) -> tuple[np.ndarray, np.ndarray]:
    """Gene-wise dispersions and the means they were fitted with (non-zero genes).

    Starts from the smaller of the rough (linear model) and moments estimates; means from
    a linear model when there are as many distinct design rows as coefficients, else from
    IRLS with the starting dispersions. The means are floored at ``MIN_MU`` as in R's
    ``estimateDispersionsGeneEst`` (PyDESeq2 leaves IRLS means unclamped): with few
    residual degrees of freedom, near-zero means of zero counts change which mode of the
    likelihood is the highest.
    """
    normed = (counts / size_factors).T
    start = np.clip(np.minimum(fit_rough_dispersions(normed, design.matrix),
                               fit_moments_dispersions(normed, size_factors)),
                    min_disp, max_disp)
    if len(np.unique(design.matrix, axis=0)) == design.n_params:
        mu = linear_mu(counts, size_factors, design)
    else:
        mu = np.maximum(fit_glm(counts, size_factors, design, start).mu, MIN_MU)
    return fit_dispersions(counts, mu, design, start, max_disp=max_disp,
                           min_disp=min_disp), mu


def _spread_genes(genewise: np.ndarray, min_disp: float) -> np.ndarray:
    """Genes whose gene-wise dispersion lies more than 2 orders of magnitude above the
    minimum, which the trend is fitted to.

    Raises
    ------
    ValueError
        When there are none: no trend can be fitted (R's ``estimateDispersionsFit`` stops
        too; before, the mean fallback averaged an empty set into an all-NaN result).
    """
    use = genewise > 100 * min_disp
    if not use.any():
        raise ValueError(
            f"every gene's dispersion estimate is within 2 orders of magnitude of the minimum "
            f"({min_disp:g}): the samples vary no more than Poisson noise, so no dispersion "
            "trend can be fitted (R's DESeq2 stops here too). Technical replicates (one "
            "library sequenced again) look like this: name each library's biological sample "
            "with `replicate_of:` in study.yaml so they are summed; otherwise check that the "
            "samples are independent biological replicates")
    return use


@dataclass(frozen=True)
class DispersionTrend:
    """The dispersion-mean trend: ``a0 + a1 / mean``, or a constant when the parametric
    fit fails (PyDESeq2's mean fallback)."""

    coeffs: tuple[float, float] | None
    mean: float | None = None

    @classmethod
    def fit(cls, means: np.ndarray, genewise: np.ndarray,
            min_disp: float = MIN_DISP) -> DispersionTrend:
        use = _spread_genes(genewise, min_disp)
        coeffs = parametric_trend(means[use], genewise[use])
        if coeffs is not None:
            return cls((float(coeffs[0]), float(coeffs[1])))
        warnings.warn("parametric dispersion trend did not converge; using the mean "
                      "dispersion as trend", UserWarning, stacklevel=2)
        return cls(None, float(trim_mean(genewise[genewise > 10 * min_disp], 0.001)))

    def __call__(self, means: np.ndarray) -> np.ndarray:
        if self.coeffs is None:
            return np.full(len(means), self.mean)
        return self.coeffs[0] + self.coeffs[1] / means


@dataclass
class ModelFit:
    """Dispersions and GLM of the non-zero genes."""

    genewise: np.ndarray
    trend: np.ndarray
    dispersions: np.ndarray
    outlier: np.ndarray
    glm: GlmFit


@dataclass(frozen=True)
class DispersionPrior:
    """Squared MAD of log-dispersion residuals and the prior variance of log dispersions."""

    squared_logres: float
    variance: float


def fit_model(counts: np.ndarray, size_factors: np.ndarray, design: GroupBlockDesign, *,
              max_disp: float, trend: DispersionTrend | None = None,
              prior: DispersionPrior | None = None,
              min_disp: float = MIN_DISP) -> tuple[ModelFit, DispersionTrend, DispersionPrior]:
    """Dispersions (gene-wise, trend, prior, MAP, outliers) then the final GLM, for genes
    with a non-zero count. ``trend`` and ``prior`` are fitted unless given (a refit reuses
    them, as PyDESeq2 does)."""
    genewise, mu_hat = genewise_dispersions(counts, size_factors, design, max_disp=max_disp,
                                            min_disp=min_disp)
    means = (counts / size_factors).mean(axis=1)
    trend = trend or DispersionTrend.fit(means, genewise, min_disp)
    fitted = trend(means)
    if prior is None:
        above = genewise >= 100 * min_disp
        residuals = np.log(genewise[above]) - np.log(fitted[above])
        prior = DispersionPrior(*dispersion_prior(residuals, design.n_samples - design.n_params))
    # DESeq2 starts the MAP search from the gene-wise estimate unless below a tenth of the trend.
    map_disp = fit_dispersions(counts, mu_hat, design,
                               np.where(genewise > 0.1 * fitted, genewise, fitted),
                               prior_mean=np.log(fitted), prior_var=prior.variance,
                               max_disp=max_disp, min_disp=min_disp)
    outlier = np.log(genewise) > np.log(fitted) + 2 * np.sqrt(prior.squared_logres)
    dispersions = np.where(outlier, genewise, map_disp)
    glm = fit_glm(counts, size_factors, design, dispersions)
    return ModelFit(genewise, fitted, dispersions, outlier, glm), trend, prior


# --------------------------------------------------------------------------------------
# Cook's distances
# --------------------------------------------------------------------------------------

def cooks_distances(counts: np.ndarray, size_factors: np.ndarray, design: GroupBlockDesign,
                    glm: GlmFit) -> np.ndarray:
    """Cook's distances ``(G, n)`` with PyDESeq2's robust moments dispersion."""
    disp = robust_method_of_moments_disp((counts / size_factors).T,
                                         pd.DataFrame(design.matrix))
    variance = glm.mu + disp[:, None] * glm.mu ** 2
    return ((counts - glm.mu) ** 2 / variance / design.n_params
            * glm.hat / (1 - glm.hat) ** 2)


def cooks_cutoff(design: GroupBlockDesign) -> float:
    """F(0.99; p, n - p), DESeq2's Cook's distance cut-off."""
    return float(f_dist.ppf(0.99, design.n_params, design.n_samples - design.n_params))


def cooks_outliers(counts: np.ndarray, cooks: np.ndarray, screened: np.ndarray,
                   design: GroupBlockDesign) -> np.ndarray:
    """Genes whose p-values DESeq2 sets to NaN: a Cook's distance above the cut-off in a
    sample of a design cell with >= 3 replicates (``screened``: distances after refit,
    replaced samples zeroed), unless 3 or more samples count more than the sample with the
    largest distance."""
    use = design.replicates_at_least(3)
    outlier = (screened[:, use] > cooks_cutoff(design)).any(axis=1)
    rows = np.flatnonzero(outlier)
    top = counts[rows, cooks[rows].argmax(axis=1)]
    outlier[rows] = (counts[rows] > top[:, None]).sum(axis=1) < 3
    return outlier


def replace_outliers(counts: np.ndarray, size_factors: np.ndarray, cooks: np.ndarray,
                     design: GroupBlockDesign,
                     min_replicates: int = MIN_REPLICATES) -> tuple[np.ndarray, np.ndarray]:
    """Replace outlier counts in samples of cells with ``min_replicates`` or more by the
    20 % trimmed mean of normalized counts times the size factor (truncated to integers).

    Returns the genes with a replacement and their new counts.
    """
    replaceable = design.replicates_at_least(min_replicates)
    if not replaceable.any():
        return np.zeros(len(counts), dtype=bool), counts[:0]
    flagged = cooks > cooks_cutoff(design)
    replaced = flagged.any(axis=1)
    sub = counts[replaced].copy()
    trimmed = np.asarray(trimmed_mean(sub / size_factors, trim=0.2, axis=1))
    replacement = (trimmed[:, None] * size_factors).astype(int)
    mask = flagged[replaced] & replaceable
    sub[mask] = replacement[mask]
    return replaced, sub


# --------------------------------------------------------------------------------------
# Tests, filtering, shrinkage
# --------------------------------------------------------------------------------------

def wald_test(lfc: np.ndarray, se: np.ndarray,
              lfc_threshold: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Wald statistics and two-sided p-values of natural-log LFCs; with a positive log2
    ``lfc_threshold``, of ``|LFC| > threshold`` (DESeq2 ``greaterAbs``)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if lfc_threshold > 0:
            null = np.log(2) * lfc_threshold
            stat = np.sign(lfc) * np.fmax((np.abs(lfc) - null) / se, 0)
        else:
            stat = lfc / se
    return stat, 2 * norm.sf(np.abs(stat))


def independent_filtering(pvalues: np.ndarray, base_mean: np.ndarray,
                          alpha: float) -> np.ndarray:
    """BH-adjusted p-values after DESeq2's independent filtering on the base mean, as
    ``DeseqStats._independent_filtering``: the smallest of 50 mean quantiles whose number
    of rejections is within one residual SD of the lowess-smoothed maximum."""
    lower = np.mean(base_mean == 0)
    theta = np.linspace(lower, 0.95 if lower < 0.95 else 1.0, 50)
    cutoffs = np.quantile(base_mean, theta)
    tested = ~np.isnan(pvalues)
    num_rej = bh_rejections(pvalues[tested], base_mean[tested][None, :] >= cutoffs[:, None],
                            alpha)
    fit = lowess(theta, num_rej, frac=1 / 5)
    j = 0
    if num_rej.max() > 10:
        residual = num_rej[num_rej > 0] - fit[num_rej > 0]
        above = np.flatnonzero(num_rej > fit.max() - np.sqrt(np.mean(residual ** 2)))
        j = above[0] if len(above) else 0
    padj = np.full(len(pvalues), np.nan)
    use = (base_mean >= cutoffs[j]) & tested
    if use.any():
        padj[use] = false_discovery_control(pvalues[use], method="bh")
    return padj


def bh_rejections(pvalues: np.ndarray, subsets: np.ndarray, alpha: float) -> np.ndarray:
    """Number of BH-adjusted p-values below ``alpha`` within each of several subsets
    (boolean rows of ``subsets``), from a single sort.

    Within a subset of ``m`` p-values, ``padj_(k) = min_{j >= k} p_(j) m / j``, so the count
    is the largest rank ``j`` with ``p_(j) m / j < alpha`` (the same products as
    :func:`scipy.stats.false_discovery_control`); only p-values below ``alpha`` can qualify.
    """
    m = subsets.sum(axis=1, keepdims=True)
    order = np.argsort(pvalues)
    order = order[:np.searchsorted(pvalues[order], alpha)]
    inside = subsets[:, order]
    ranks = np.cumsum(inside, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        below = inside & (pvalues[order][None, :] * (m / ranks) < alpha)
    return np.where(below, ranks, 0).max(axis=1, initial=0)


def shrinkage_prior_scale(lfc: np.ndarray, se: np.ndarray, min_var: float = 1e-6,
                          max_var: float = 400.0) -> float:
    """apeGLM's adaptive Cauchy scale from MLE LFCs and SEs (PyDESeq2 ``_fit_prior_var``),
    capped at 1."""
    keep = ~np.isnan(lfc)
    S, D = lfc[keep] ** 2, se[keep] ** 2

    def objective(a: float) -> float:
        coeff = 1 / (2 * (a + D) ** 2)
        return ((S - D) * coeff).sum() / coeff.sum() - a

    var = min_var if objective(min_var) < 0 else \
        root_scalar(objective, bracket=(min_var, max_var)).root
    return float(min(np.sqrt(var), 1.0))


@dataclass
class ReferenceTerm:
    """Negative log likelihood of a reference level's samples as a function ``F(a)`` of the
    reference log mean ``a``, per gene, for the shrinkage of every contrast against it.

    Without block columns this term is the same function for all contrasts against the
    reference, and the reference (e.g. all control wells of a screen) usually has many more
    samples than a level: tabulating it once makes each contrast's Newton cost
    proportional to the level's samples. ``F`` is interpolated on ``centre +- w``
    (``w = SHRINK_REFERENCE_HALF_WIDTH``) at Chebyshev points, to ~1e-13 relative (see
    ``SHRINK_REFERENCE_DEGREE``); outside, it is evaluated exactly from the counts.
    """

    centre: np.ndarray  # (G,) reference log mean at the MLE
    coef: np.ndarray    # (3, degree + 1, G) Chebyshev series of F, F', F'' in (a - centre) / w
    y: np.ndarray       # (G, n) counts of the reference samples
    yr: np.ndarray      # (G, n) y + size
    offset: np.ndarray  # (G, n) log size factor - log size

    @classmethod
    def tabulate(cls, y: np.ndarray, size: np.ndarray, offset: np.ndarray,
                 centre: np.ndarray) -> ReferenceTerm:
        """Interpolate ``F`` for counts ``y`` with linear predictor ``a + offset`` (relative
        to ``log(size)``, as in :func:`_posterior_newton`) around ``centre``."""
        w, n = SHRINK_REFERENCE_HALF_WIDTH, SHRINK_REFERENCE_DEGREE + 1
        angles = np.pi * (np.arange(n) + 0.5) / n
        term = cls(centre, np.empty(0), y, y + size[:, None], offset)
        genes = np.arange(len(y))
        values = np.stack([term.exact(centre + w * t, genes)[0] for t in np.cos(angles)])
        # Discrete cosine transform of the values at the nodes -> Chebyshev coefficients.
        coef = (np.cos(np.outer(np.arange(n), angles)) * (2 / n)) @ values
        coef[0] /= 2
        d1 = np.polynomial.chebyshev.chebder(coef) / w
        d2 = np.polynomial.chebyshev.chebder(d1) / w
        term.coef = np.stack([coef, np.pad(d1, ((0, 1), (0, 0))), np.pad(d2, ((0, 2), (0, 0)))])
        return term

    def exact(self, a: np.ndarray, genes: np.ndarray) -> tuple[np.ndarray, ...]:
        """``F``, ``F'`` and ``F''`` at ``a`` for the given genes, from the counts."""
        z = a[:, None] + self.offset[genes]
        e = np.exp(z)  # overflow: inf value, step rejected
        ope = 1 + e
        yr, y = self.yr[genes], self.y[genes]
        mean = yr * e / ope
        return ((yr * np.log(ope) - y * z).sum(axis=1), (mean - y).sum(axis=1),
                (mean / ope).sum(axis=1))

    def __call__(self, a: np.ndarray, genes: np.ndarray) -> tuple[np.ndarray, ...]:
        """``F``, ``F'`` and ``F''`` at ``a`` for the given genes (one each)."""
        t = (a - self.centre[genes]) / SHRINK_REFERENCE_HALF_WIDTH
        outside = np.abs(t) > 1
        t[outside] = 0.0
        c = np.take(self.coef, genes, axis=2)  # (3, degree + 1, rows)
        x2 = 2 * t
        b1, b2 = np.zeros((3, len(a))), np.zeros((3, len(a)))
        for k in range(c.shape[1] - 1, 0, -1):  # Clenshaw's recurrence, three series at once
            b1, b2 = c[:, k] + x2 * b1 - b2, b1
        value, grad, hess = c[:, 0] + t * b1 - b2
        if outside.any():
            value[outside], grad[outside], hess[outside] = \
                self.exact(a[outside], genes[outside])
        return value, grad, hess


def reference_term(counts: np.ndarray, size_factors: np.ndarray, design: GroupBlockDesign,
                   dispersions: np.ndarray, groups: np.ndarray,
                   reference: int) -> ReferenceTerm:
    """The reference samples' part of :func:`shrink_lfc`'s posterior (designs without block
    columns), to share between the contrasts against ``reference``."""
    samples = np.flatnonzero(design.codes == reference)
    offset = np.log(size_factors[samples]) + np.log(dispersions)[:, None]
    return ReferenceTerm.tabulate(counts[:, samples].astype(float), 1.0 / dispersions, offset,
                                  groups[:, reference])


def shrink_lfc(counts: np.ndarray, size_factors: np.ndarray, design: GroupBlockDesign,
               dispersions: np.ndarray, groups: np.ndarray, block: np.ndarray,
               levels: Sequence[int], reference: int, prior_scales: Sequence[float],
               tol: float = 1e-4, max_iter: int = 50) -> np.ndarray:
    """apeGLM-style MAP log fold changes of each of ``levels`` vs ``reference`` (natural
    log), ``(len(levels), G)``.

    The posterior of PyDESeq2's ``nbinomGLM`` in the treatment coding where ``reference``
    is the base level: Cauchy(0, ``prior_scales[i]``) on the LFC, N(0, 15^2) on the
    reference log mean and block coefficients; the other groups stay at their MLE (exact
    without block columns, where they do not enter). Maximized by Newton steps on the few
    coefficients of all genes at once (:func:`_posterior_newton`), from LFC 0 and from the
    MLE; the better of the two modes is returned. (PyDESeq2's L-BFGS-B, started far from
    both, lands in either mode of the rare bimodal posteriors.) ``groups`` and ``block``
    are the MLE coefficients, ``(G, K)`` and ``(G, B)``.

    Without block columns the reference samples enter through one :class:`ReferenceTerm`
    shared by all levels, so each level costs in proportion to its own samples, and levels
    with as many samples are solved together (up to ``SHRINK_BATCH_ROWS`` Newton rows), which
    shares the per-iteration overhead of the long tail of slowly converging genes.
    """
    out = np.empty((len(levels), len(counts)))
    if design.n_block:  # each level has its own design columns: one at a time
        for i, (level, scale) in enumerate(zip(levels, prior_scales)):
            out[i] = _shrink_levels(counts, size_factors, design, dispersions, groups, block,
                                    [level], reference, [scale], tol, max_iter, None)
        return out
    part = reference_term(counts, size_factors, design, dispersions, groups, reference)
    n_samples = np.bincount(design.codes, minlength=design.n_groups)[list(levels)]
    per_batch = max(1, SHRINK_BATCH_ROWS // (2 * len(counts)))
    for n in np.unique(n_samples):
        same = np.flatnonzero(n_samples == n)
        for batch in np.array_split(same, -(-len(same) // per_batch)):
            out[batch] = _shrink_levels(counts, size_factors, design, dispersions, groups,
                                        block, [levels[i] for i in batch], reference,
                                        [prior_scales[i] for i in batch], tol, max_iter, part)
    return out


def _shrink_levels(counts: np.ndarray, size_factors: np.ndarray, design: GroupBlockDesign,
                   dispersions: np.ndarray, groups: np.ndarray, block: np.ndarray,
                   levels: list[int], reference: int, prior_scales: list[float], tol: float,
                   max_iter: int, reference_part: ReferenceTerm | None) -> np.ndarray:
    """:func:`shrink_lfc` of levels solved in one :func:`_posterior_newton`: one level with
    all samples, or (with ``reference_part``) levels with as many samples, each with only
    its own samples (their design rows are then all ``[1, 1]``, so one ``X`` serves all)."""
    size = 1.0 / dispersions
    ys, offsets, starts = [], [], []
    for level in levels:
        samples = np.flatnonzero(design.codes == level) if reference_part is not None \
            else np.arange(design.n_samples)
        codes = design.codes[samples]
        in_level = (codes == level).astype(float)
        others = 1 - in_level - (codes == reference).astype(float)
        # Coefficients: [reference log mean, LFC, block...]; x_i = [1, in_level, block_i].
        X = np.column_stack([1 - others, in_level, design.block[samples]])
        # The linear predictor is taken relative to log(size): z = eta - log(size).
        offset = (groups[:, codes] * others + np.log(size_factors[samples])
                  - np.log(size)[:, None])
        y = counts[:, samples].astype(float)
        ys += [y, y]
        offsets += [offset, offset]
        starts += [np.column_stack([groups[:, reference], lfc, block])
                   for lfc in (np.zeros(len(y)), groups[:, level] - groups[:, reference])]
    theta, value = _posterior_newton(np.concatenate(starts), np.concatenate(ys),
                                     np.tile(size, 2 * len(levels)), np.concatenate(offsets),
                                     X, np.repeat(prior_scales, 2 * len(counts)), tol=tol,
                                     max_iter=max_iter, reference=reference_part)
    lfc, value = theta[:, 1].reshape(len(levels), 2, -1), value.reshape(len(levels), 2, -1)
    return np.where(value[:, 1] < value[:, 0], lfc[:, 1], lfc[:, 0])


def _posterior_newton(theta: np.ndarray, y: np.ndarray, size: np.ndarray, offset: np.ndarray,
                      X: np.ndarray, prior_scale: np.ndarray, *, tol: float, max_iter: int,
                      reference: ReferenceTerm | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Modes of the apeGLM posteriors ``NB(y | exp(X theta + offset + log size), size)``
    x Cauchy(0, ``prior_scale``) on ``theta[1]`` x N(0, 15^2) on the rest, one per row,
    times ``exp(-reference(theta[0]))`` if given (row ``r`` is its gene ``r mod G``).

    Damped Newton from ``theta``: the exact Hessian where it is safely positive definite,
    else the Cauchy term's curvature is replaced by that of the quadratic in ``theta[1]``
    majorizing it at the current point (the likelihood and normal terms are convex, so the
    step is then a descent direction that does not overshoot the prior's pull). Steps are
    halved until the objective does not increase. A row stops once its Newton step is
    below ``tol`` (exact steps) or ``tol**2`` (majorized ones, which converge linearly),
    taking that last step. One evaluation gives value, gradient and Hessian, so an
    accepted step costs one pass over the row's counts.

    Returns
    -------
    The modes, ``(rows, p)``, and the negative log posteriors there (up to a constant per
    row, so comparable between rows of the same gene).
    """
    n_rows, p = theta.shape
    normal = np.full(p, 1 / SHRINK_NO_SHRINK_SCALE ** 2)
    normal[1] = 0.0
    outer = (X[:, :, None] * X[:, None, :]).reshape(len(X), p * p)
    # -log likelihood = sum (y + size) softplus(z) - y z with z = X theta + offset, up to a
    # constant per row; the y z term is linear in theta, so only yX and y.offset are kept.
    yr = y + size[:, None]
    yx, yoff = y @ X, (y * offset).sum(axis=1)
    genes = np.arange(n_rows) % (n_rows if reference is None else len(reference.centre))

    def evaluate(th: np.ndarray, yr: np.ndarray, off: np.ndarray, yx: np.ndarray,
                 yoff: np.ndarray, genes: np.ndarray, s2: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        value = np.empty(len(th))
        grad, hess = np.empty((len(th), p)), np.empty((len(th), p * p))
        for chunk in _chunks(len(th), yr.shape[1]):  # cache-sized pieces of the arrays
            e = np.exp(th[chunk] @ X.T + off[chunk])  # overflow: inf value, step rejected
            ope = 1 + e
            value[chunk] = (yr[chunk] * np.log(ope)).sum(axis=1)
            mean = yr[chunk] * e / ope
            grad[chunk] = mean @ X
            hess[chunk] = (mean / ope) @ outer
        value += (th ** 2 * normal).sum(axis=1) / 2 + np.log1p(th[:, 1] ** 2 / s2) \
            - (yx * th).sum(axis=1) - yoff
        grad += th * normal - yx
        grad[:, 1] += 2 * th[:, 1] / (s2 + th[:, 1] ** 2)
        if reference is not None:
            ref_value, ref_grad, ref_hess = reference(th[:, 0], genes)
            value += ref_value
            grad[:, 0] += ref_grad
            hess[:, 0] += ref_hess
        return value, grad, hess.reshape(len(th), p, p) + np.diag(normal)

    def newton_step(grad: np.ndarray, hess: np.ndarray, beta: np.ndarray,
                    s2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # The Cauchy curvature c enters as H = hess + c e1 e1': Sherman-Morrison on the
        # convex part, whose inverse also tells whether H is positive definite.
        inv = _inverse(hess)
        u, v = np.einsum("gab,gb->ga", inv, grad), inv[:, :, 1]
        c = 2 * (s2 - beta ** 2) / (s2 + beta ** 2) ** 2
        majorize = 1 + c * v[:, 1] <= MIN_CURVATURE_RATIO
        c[majorize] = 2 / (s2[majorize] + beta[majorize] ** 2)
        return u - (c * u[:, 1] / (1 + c * v[:, 1]))[:, None] * v, majorize

    rows = np.arange(n_rows)
    # Of the rows still iterating; the Cauchy scales (squared) last.
    arrays = [theta.copy(), yr, offset, yx, yoff, genes, prior_scale ** 2]
    out_theta, out_value = theta.copy(), np.empty(n_rows)

    def finish(stop: np.ndarray, theta_end: np.ndarray) -> None:
        nonlocal rows, arrays, value, grad, hess, step
        if not stop.any():
            return
        out_theta[rows[stop]], out_value[rows[stop]] = theta_end, value[stop]
        keep = ~stop
        rows, value, grad, hess, step = rows[keep], value[keep], grad[keep], hess[keep], step[keep]
        arrays = [a[keep] for a in arrays]

    with np.errstate(over="ignore", invalid="ignore"):
        value, grad, hess = evaluate(*arrays)
        for _ in range(max_iter):
            step, majorized = newton_step(grad, hess, arrays[0][:, 1], arrays[-1])
            done = np.abs(step).max(axis=1) < np.where(majorized, tol ** 2, tol)
            finish(done, arrays[0][done] - step[done])
            t, pending = 1.0, np.arange(len(rows))
            while len(pending) and t > tol:  # halve until the objective does not increase
                sub = arrays if len(pending) == len(rows) else [a[pending] for a in arrays]
                trial = sub[0] - t * (step if sub is arrays else step[pending])
                val, g, h = evaluate(trial, *sub[1:])
                ok = val <= value[pending] + 1e-12 * np.abs(value[pending])
                accepted = pending[ok]
                arrays[0][accepted], value[accepted] = trial[ok], val[ok]
                grad[accepted], hess[accepted] = g[ok], h[ok]
                pending, t = pending[~ok], t / 2
            stuck = np.zeros(len(rows), dtype=bool)
            stuck[pending] = True  # no decrease along the step: at the mode to rounding
            finish(stuck, arrays[0][stuck])
            if not len(rows):
                break
        out_theta[rows], out_value[rows] = arrays[0], value
    return out_theta, out_value


def _chunks(n_rows: int, n_cols: int, cells: int = 1 << 15) -> list[slice]:
    """Row slices of about ``cells`` array cells, so that elementwise passes stay in cache."""
    step = max(1, cells // max(n_cols, 1))
    return [slice(i, i + step) for i in range(0, n_rows, step)]


def _inverse(a: np.ndarray) -> np.ndarray:
    """Inverses of a stack of small matrices (closed form for 2 x 2)."""
    if a.shape[1] != 2:
        return np.linalg.inv(a)
    inv = np.stack([a[:, 1, 1], -a[:, 0, 1], -a[:, 1, 0], a[:, 0, 0]], axis=1)
    det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
    return inv.reshape(-1, 2, 2) / det[:, None, None]


# --------------------------------------------------------------------------------------
# VST
# --------------------------------------------------------------------------------------

def blind_vst(counts: np.ndarray, size_factors: np.ndarray, base_mean: np.ndarray, *,
              max_disp: float, min_disp: float = MIN_DISP) -> np.ndarray:
    """Blind variance-stabilizing transformation (``vst(use_design=False)``): gene-wise
    dispersions with an intercept-only design, parametric trend on ``base_mean`` (PyDESeq2
    uses the fit's possibly outlier-refitted means), closed-form transform of normalized
    counts (or the mean-dispersion transform if the trend fails)."""
    normed = counts / size_factors
    non_zero = (counts > 0).any(axis=1)
    genewise, _ = genewise_dispersions(counts[non_zero], size_factors,
                                       GroupBlockDesign.intercept_only(counts.shape[1]),
                                       max_disp=max_disp, min_disp=min_disp)
    use = _spread_genes(genewise, min_disp)
    coeffs = parametric_trend(base_mean[non_zero][use], genewise[use])
    if coeffs is None:
        warnings.warn("parametric VST trend did not converge; using the mean dispersion",
                      UserWarning, stacklevel=2)
        mean_disp = trim_mean(genewise[genewise > 10 * min_disp], proportiontocut=0.001)
        return (2 * np.arcsinh(np.sqrt(mean_disp * normed)) - np.log(mean_disp)
                - np.log(4)) / np.log(2)
    a0, a1 = coeffs
    return np.log2((1 + a1 + 2 * a0 * normed
                    + 2 * np.sqrt(a0 * normed * (1 + a1 + a0 * normed))) / (4 * a0))


# --------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------

@dataclass
class FittedDataset:
    """A full fit of every gene (NaN rows for all-zero genes)."""

    design: GroupBlockDesign
    size_factor_method: str
    size_factors: np.ndarray
    base_mean: np.ndarray
    genewise: np.ndarray
    trend: np.ndarray
    dispersions: np.ndarray
    outlier: np.ndarray
    groups: np.ndarray
    block: np.ndarray
    blocks: NormalBlocks       # of the Wald weights
    cooks_outlier: np.ndarray  # p-values set to NaN
    zeroed: np.ndarray         # genes all zero after outlier replacement (p = 1)
    non_zero: np.ndarray


def fit_dataset(counts: np.ndarray, design: GroupBlockDesign, *,
                size_factors_fit_type: str = "auto", refit_cooks: bool = True,
                min_disp: float = MIN_DISP) -> FittedDataset:
    """Run DESeq2's fit on a ``(G, n)`` count matrix: ``DeseqDataSet.deseq2()``
    (``size_factors_fit_type``: see :func:`size_factor_method`)."""
    n_genes, n = counts.shape
    max_disp = max(MAX_DISP, n)
    method = size_factor_method(counts, size_factors_fit_type)
    sf = size_factors(counts, method)
    non_zero = (counts > 0).any(axis=1)
    nz_counts = counts[non_zero]
    model, trend, prior = fit_model(nz_counts, sf, design, max_disp=max_disp, min_disp=min_disp)

    def full(values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        out = np.full((n_genes, *values.shape[1:]), fill, dtype=values.dtype)
        out[non_zero] = values
        return out

    base_mean = (counts / sf).mean(axis=1)
    genewise, fitted, disp = full(model.genewise), full(model.trend), full(model.dispersions)
    outlier = full(model.outlier, False)
    groups, block = full(model.glm.groups), full(model.glm.block)
    mu = full(model.glm.mu)
    cooks = full(cooks_distances(nz_counts, sf, design, model.glm))
    screened = cooks
    zeroed = np.zeros(n_genes, dtype=bool)
    if refit_cooks:
        replaced_nz, new_counts = replace_outliers(nz_counts, sf, cooks[non_zero], design)
        replaced = full(replaced_nz, False)
        if replaced.any():
            now_zero = ~(new_counts > 0).any(axis=1)
            zeroed[np.flatnonzero(replaced)[now_zero]] = True
            base_mean[zeroed], groups[zeroed], block[zeroed] = 0.0, 0.0, 0.0
            mu[zeroed] = sf
            refit = np.flatnonzero(replaced)[~now_zero]
            if len(refit):
                sub, _, _ = fit_model(new_counts[~now_zero], sf, design, max_disp=max_disp,
                                      trend=trend, prior=prior, min_disp=min_disp)
                base_mean[refit] = (new_counts[~now_zero] / sf).mean(axis=1)
                genewise[refit], fitted[refit] = sub.genewise, sub.trend
                disp[refit] = sub.dispersions
                groups[refit], block[refit], mu[refit] = sub.glm.groups, sub.glm.block, sub.glm.mu
                screened = cooks.copy()
                screened[np.ix_(refit, design.replicates_at_least(MIN_REPLICATES))] = 0.0
    cooks_out = np.zeros(n_genes, dtype=bool)
    cooks_out[non_zero] = cooks_outliers(nz_counts, cooks[non_zero], screened[non_zero], design)
    with np.errstate(invalid="ignore"):
        weights = wald_weights(mu, disp)
    tested = non_zero & ~zeroed
    blocks = normal_blocks(weights[tested], design)
    return FittedDataset(design, method, sf, base_mean, genewise, fitted, disp, outlier, groups,
                         block, _expand_blocks(blocks, tested), cooks_out, zeroed, non_zero)


def wald_weights(mu: np.ndarray, dispersions: np.ndarray) -> np.ndarray:
    """GLM weights ``mu / (1 + mu * alpha)`` of the Wald standard errors, ``(G, n)``, with
    the means floored at ``MIN_MU`` as R's ``nbinomWaldTest`` does."""
    floored = np.maximum(mu, MIN_MU)
    return floored / (1 + floored * dispersions[:, None])


def _expand_blocks(blocks: NormalBlocks, rows: np.ndarray) -> NormalBlocks:
    def full(x: np.ndarray) -> np.ndarray:
        out = np.full((len(rows), *x.shape[1:]), np.nan)
        out[rows] = x
        return out
    return NormalBlocks(full(blocks.d), full(blocks.E), full(blocks.s_inv))


def shrunken_lfcs(fit: FittedDataset, counts: np.ndarray,
                  contrasts: list[tuple[int, int]]) -> list[np.ndarray]:
    """``lfc_shrink`` of each ``(level, reference)``: the MLE log fold change, replaced by
    :func:`shrink_lfc`'s MAP where finite (natural log). Contrasts against the same
    reference are shrunk together, sharing its samples' term."""
    nz = fit.non_zero
    groups, block = np.nan_to_num(fit.groups[nz]), np.nan_to_num(fit.block[nz])
    out = [fit.groups[:, level] - fit.groups[:, reference] for level, reference in contrasts]
    for reference in dict.fromkeys(ref for _, ref in contrasts):
        which = [i for i, (_, ref) in enumerate(contrasts) if ref == reference]
        levels = [contrasts[i][0] for i in which]
        scales = [shrinkage_prior_scale(out[i], np.sqrt(contrast_variance(
            fit.blocks, pair_weights(fit.design.n_groups, contrasts[i][0], reference))))
            for i in which]
        values = shrink_lfc(counts[nz], fit.size_factors, fit.design, fit.dispersions[nz],
                            groups, block, levels, reference, scales)
        for i, shrunk in zip(which, values):
            ok = np.isfinite(shrunk)
            out[i] = out[i].copy()
            out[i][np.flatnonzero(nz)[ok]] = shrunk[ok]
    return out


def contrast_results(fit: FittedDataset, weights: np.ndarray, *, alpha: float,
                     lfc_threshold: float = 0.0,
                     shrunk: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """One contrast of the group coefficients (``weights``, see :func:`pair_weights`), as
    ``DeseqStats(cooks_filter=True, independent_filter=True).summary()`` (with
    ``lfc_shrink``'s values ``shrunk`` from :func:`shrunken_lfcs`, else NaN); natural-log
    values converted to log2."""
    used = np.flatnonzero(weights)
    lfc = fit.groups[:, used] @ np.asarray(weights, float)[used]
    se = np.sqrt(contrast_variance(fit.blocks, weights))
    stat, pvalue = wald_test(lfc, se, lfc_threshold)
    se[fit.zeroed], stat[fit.zeroed], pvalue[fit.zeroed] = 0.0, 0.0, 1.0
    pvalue[fit.cooks_outlier] = np.nan
    padj = independent_filtering(pvalue, fit.base_mean, alpha)
    return {"base_mean": fit.base_mean, "log2_fold_change": lfc / np.log(2),
            "lfc_se": se / np.log(2), "stat": stat, "pvalue": pvalue, "padj": padj,
            "log2_fold_change_shrunk": (np.full(len(lfc), np.nan) if shrunk is None
                                        else shrunk / np.log(2))}


def fit_group_design(counts: pd.DataFrame, groups: pd.Series, block: pd.DataFrame | None,
                     contrasts: list[Contrast], *, alpha: float = 0.05,
                     lfc_threshold: float = 0.0, size_factors_fit_type: str = "auto",
                     shrink: bool = True, refit_cooks: bool = True,
                     linear_contrasts: Sequence[LinearContrast] = ()) -> DeseqResult:
    """DESeq2 on a group + block design: fit once, test and shrink every contrast.

    Parameters
    ----------
    counts
        Raw integer counts, genes x samples.
    groups
        Group label per sample (categorical; the order of its categories is the level order).
    block
        Numeric block columns per sample (no intercept), or None.
    contrasts
        ``level`` vs ``reference`` of the group factor.
    alpha
        FDR target of independent filtering. (default: ``0.05``)
    lfc_threshold
        log2 fold change of the null hypothesis, tested ``greaterAbs``. (default: ``0``)
    size_factors_fit_type
        ``"ratio"`` (median of ratios), ``"poscounts"``, or ``"auto"``: ratio when at least
        50 genes have no zero count, else poscounts (:func:`size_factor_method`).
        (default: ``"auto"``)
    shrink
        Add apeGLM-style shrunken log2 fold changes. (default: ``True``)
    refit_cooks
        Replace Cook's outliers in cells with >= 7 replicates and refit. (default: ``True``)
    linear_contrasts
        Weighted sums of the group factor's levels (e.g. interactions), tested like the
        contrasts (not shrunk) into ``linear_results``. (default: none)
    """
    samples = counts.columns
    groups = pd.Series(groups).loc[samples]
    levels = [lv for lv in groups.cat.categories if (groups == lv).any()]
    codes = pd.Categorical(groups, categories=levels).codes.astype(int)
    block_values = np.empty((len(samples), 0)) if block is None or block.shape[1] == 0 \
        else block.loc[samples].to_numpy(float)
    design = GroupBlockDesign(codes, tuple(str(lv) for lv in levels), block_values)
    values = counts.to_numpy(dtype=np.int64)
    fit = fit_dataset(values, design, size_factors_fit_type=size_factors_fit_type,
                      refit_cooks=refit_cooks)
    genes = counts.index.astype(str)
    pairs = [(levels.index(c.level), levels.index(c.reference)) for c in contrasts]
    shrunk = shrunken_lfcs(fit, values, pairs) if shrink else [None] * len(pairs)

    def table(name: str, weights: np.ndarray, c_shrunk: np.ndarray | None) -> pd.DataFrame:
        res = pd.DataFrame(contrast_results(fit, weights, alpha=alpha,
                                            lfc_threshold=lfc_threshold, shrunk=c_shrunk))
        res.insert(0, "gene_id", genes)
        res.insert(0, "contrast", name)
        return res[RESULT_ORDER]

    tables = [table(c.name, pair_weights(len(levels), level, reference), c_shrunk)
              for c, (level, reference), c_shrunk in zip(contrasts, pairs, shrunk)]
    linear = [table(c.name, level_weights(c, levels), None) for c in linear_contrasts]
    names = samples.astype(str)
    normalized = pd.DataFrame(values / fit.size_factors, index=genes, columns=names)
    vst = blind_vst(values, fit.size_factors, fit.base_mean, max_disp=max(MAX_DISP, len(names)))
    dispersions = pd.DataFrame({
        "gene_id": genes, "base_mean": normalized.mean(axis=1).to_numpy(),
        "dispersion_gene_est": fit.genewise, "dispersion_trend": fit.trend,
        "dispersion": fit.dispersions, "dispersion_outlier": fit.outlier.astype(bool),
    })
    return DeseqResult(pd.Series(fit.size_factors, index=names, name="size_factor"), normalized,
                       pd.DataFrame(vst, index=genes, columns=names), dispersions,
                       pd.concat(tables, ignore_index=True), fit.size_factor_method,
                       pd.concat(linear, ignore_index=True) if linear
                       else pd.DataFrame(columns=RESULT_ORDER))


def level_weights(contrast: LinearContrast, levels: list) -> np.ndarray:
    """Group weights of a linear contrast over the fitted ``levels``."""
    weights = np.zeros(len(levels))
    names = [str(lv) for lv in levels]
    for level, weight in contrast.weights:
        if str(level) not in names:
            raise ValueError(f"contrast {contrast.name!r}: level {level!r} of "
                             f"{contrast.factor!r} has no sample in the fit")
        weights[names.index(str(level))] += weight
    return weights


def two_group_test(counts: pd.DataFrame | np.ndarray, size_factors: np.ndarray,
                   dispersions: np.ndarray, level_mask: np.ndarray,
                   reference_mask: np.ndarray, base_mean: np.ndarray, *, alpha: float = 0.05,
                   lfc_threshold: float = 0.0) -> pd.DataFrame:
    """Wald test of two sets of samples with fixed dispersions (no Cook's step): the
    ``level_mask`` samples against the ``reference_mask`` ones, as
    :func:`group_contrast_test`."""
    codes = np.where(np.asarray(level_mask, bool), 1,
                     np.where(np.asarray(reference_mask, bool), 0, -1))
    return group_contrast_test(counts, size_factors, dispersions, codes,
                               np.array([-1.0, 1.0]), base_mean, alpha=alpha,
                               lfc_threshold=lfc_threshold)


def group_contrast_test(counts: pd.DataFrame | np.ndarray, size_factors: np.ndarray,
                        dispersions: np.ndarray, codes: np.ndarray, weights: np.ndarray,
                        base_mean: np.ndarray, *, alpha: float = 0.05,
                        lfc_threshold: float = 0.0) -> pd.DataFrame:
    """Wald test of a contrast of sample groups with fixed dispersions (no Cook's step).

    For empirical nulls of screens (e.g. random splits of control wells): group MLEs by
    the engine's IRLS, Wald test, independent filtering on ``base_mean`` and BH.

    Parameters
    ----------
    counts
        Raw counts, genes x samples.
    size_factors
        Size factor per sample (all columns of ``counts``).
    dispersions
        Final dispersion per gene (NaN for untested genes).
    codes
        Group of each sample, ``0..K-1``; -1 leaves a sample out.
    weights
        Weight of each group in the contrast, ``(K,)`` (``[-1, 1]``: group 1 vs group 0).
    base_mean
        Base mean per gene, for independent filtering.

    Returns
    -------
    One row per gene: log2_fold_change, lfc_se, stat, pvalue, padj.
    """
    index = counts.index if isinstance(counts, pd.DataFrame) else None
    values = np.asarray(counts)
    codes, weights = np.asarray(codes, int), np.asarray(weights, float)
    samples = np.flatnonzero(codes >= 0)
    y = values[:, samples]
    sf = np.asarray(size_factors, float)[samples]
    design = GroupBlockDesign(codes[samples], tuple(f"group{k}" for k in range(len(weights))),
                              np.empty((len(samples), 0)))
    dispersions = np.asarray(dispersions, float)
    use = (y > 0).any(axis=1) & np.isfinite(dispersions)
    lfc, se = np.full(len(y), np.nan), np.full(len(y), np.nan)
    glm = fit_glm(y[use], sf, design, dispersions[use])
    glm_weights = wald_weights(glm.mu, dispersions[use])
    used = np.flatnonzero(weights)
    lfc[use] = glm.groups[:, used] @ weights[used]
    se[use] = np.sqrt(contrast_variance(normal_blocks(glm_weights, design), weights))
    stat, pvalue = wald_test(lfc, se, lfc_threshold)
    padj = independent_filtering(pvalue, np.asarray(base_mean, float), alpha)
    return pd.DataFrame({"log2_fold_change": lfc / np.log(2), "lfc_se": se / np.log(2),
                         "stat": stat, "pvalue": pvalue, "padj": padj}, index=index)
