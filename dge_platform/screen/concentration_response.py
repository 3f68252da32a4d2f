"""Concentration-response modelling with the tcplfit2 model family: per-feature model choice,
benchmark dose (BMD) with profile-likelihood BMDL and BMDU, and tcplfit2's continuous hit
call.

Anchor: EPA's tcplfit2 (R package; ``tcplfit2_core``, ``tcplhit2_core``, ``fit*``,
``acy``, ``bmdbounds``, ``hitcontinner``, ``toplikelihood``, ``nestselect``). Its model
shapes, parameter bounds, error model, AIC, model choice, BMR and hit call are followed; the
deliberate differences are listed under *Adaptations* at the end.

Definitions
-----------
Data
    ``expression``: features (genes, pathway or gene-set scores) x wells on a log scale; the
    fit includes the control wells at dose 0. Doses are on the natural scale. d_lo and d_hi
    are the lowest and highest nonzero doses. The response of a well is its value relative
    to the control mean; "per-dose medians" are the medians of that response over the
    replicate wells of each nonzero dose.
Models
    Every model is ``f(d) = b0 + g(d)``, with the baseline b0 free and g one of tcplfit2's
    shapes (all with g(0) = 0; tcplfit2's formulas and parameter names)::

        constant  g = 0                                                   (k = 2: b0, er)
        hill      g = tp / (1 + (ga/d)^p)                                      (k = 5)
        gnls      g = tp / (1 + (ga/d)^p) / (1 + (d/la)^q)    gain-loss        (k = 7)
        poly1     g = a d                                                      (k = 3)
        poly2     g = b1 d + b2 d^2             tcplfit2's default "biphasic"  (k = 4)
        pow       g = a d^p                                                    (k = 4)
        exp2      g = a (exp(d/b) - 1)                                         (k = 4)
        exp3      g = a (exp((d/b)^p) - 1)                                     (k = 5)
        exp4      g = tp (1 - 2^(-d/ga))                                       (k = 4)
        exp5      g = tp (1 - 2^(-(d/ga)^p))                                   (k = 5)

    k counts the fitted parameters: b0, the shape's and the log error scale er.
Parameter bounds (tcplfit2's)
    hill, gnls: |tp| <= 1.2 max |response| over the treated wells; ga in [d_lo/10,
    d_hi sqrt(10)]; p, q in [0.3, 8]; gnls la in [d_lo/10, 100 d_hi] and la >= 10^1.5 ga
    (tcplfit2's minwidth 1.5 in log10 dose). exp4, exp5: |tp| <= 1.2 |largest per-dose
    median| (0.01 if 0); ga in [d_lo/10, d_hi sqrt(10)]; p in [0.3, 8]. pow: p in [0.3,
    20]. exp2, exp3: b in [d_hi/100, 1e8 d_hi]; exp3 p in [0.3, 8]. a, b1, b2 and b0
    unbounded (tcplfit2's +-1e8 |start| bounds, in effect none). One bound is added: exp3's
    exponent (d_hi/b)^p <= 60 at the highest dose (steeper curves overflow; they are steps at
    the top dose that a smaller a and p describe as well).
Errors
    ``errors="t4"`` (default, tcplfit2's ``dt4``): residuals are Student t with 4 degrees of
    freedom and scale exp(er), er (natural log) a parameter of every model;
    log L = sum(log t4((y - f)/exp(er)) - er). ``errors="normal"``: Gaussian residuals of
    constant variance exp(2 er) (tcplfit2's ``dnorm``; EPA BMDS's constant-variance normal
    model). The scale is floored at 1e-6 of the feature's SD (a noise-free curve otherwise
    has an infinite likelihood; at the floor, AIC falls back on the parameter count).
AIC and model choice
    AIC = 2 k - 2 log L at the maximum likelihood. As ``tcplhit2_core``, poly2 is kept only
    when it beats poly1 by AIC and by the likelihood-ratio test (chi2, 1 df, p < 0.05;
    ``nestselect``); then the model with the lowest AIC is ``best_model``, the constant
    included (when it wins there is no curve: direction "none", no BMD).
    Fitting gate (``tcplfit2_core``): the non-constant models are fitted only when at least
    one per-dose median reaches the cutoff in absolute value; otherwise best_model is
    constant, the hit call 0 and the other models' AICs NaN (not fitted).
BMR and BMD
    BMR = ``bmr_sd`` x onesd (tcplfit2's bmr_scale 1.349), onesd = ``control_sd`` or the
    sample SD (ddof 1) of the control wells. BMD = the lowest dose at which |f(d) - f(0)|
    reaches the BMR (tcplfit2's ``acy``: closed-form inverses; gnls on its rising side, the
    first crossing; poly2 the first crossing in either direction, as tcplfit2's biphasic
    poly2). NaN (flag ``bmr_not_reached``) when the curve never gets there up to 10 x d_hi
    (tcplfit2's suggested ``bmd_up_bnd``; BMDs beyond it are extrapolations of one decade
    and more). Flags ``bmd_above_highest_dose`` (BMD > d_hi) and ``bmd_below_lowest_dose``
    (BMD < d_lo): kept but extrapolated.
BMDL and BMDU (``BMD_INTERVAL``)
    Profile likelihood: one parameter is rewritten through the BMD (the amplitude, as
    BMD -> tp = +-BMR / shape(BMD); for poly2 b1 through BMD and b2), the log-likelihood is
    maximized over all the others (b0, shape, er) at fixed BMD, and BMDL/BMDU are the doses
    below/above the BMD where it has fallen by qchisq(0.90, 1) / 2 = 1.353 (one-sided p
    0.05 each, a 90% two-sided interval: tcplfit2's ``onesidedp = .05`` and BMDS's 95%
    BMDL). The search starts at the BMD and steps outward both ways, each step aiming 20%
    beyond the crossing a quadratic through the BMD predicts and warm-started from the last
    fit shifted along log dose; the crossing is then refined by Illinois regula falsi to 1e-3
    log10 units (0.2%) or 1e-3 log-likelihood units. Window [d_lo / 100, 100 d_hi]: a bound
    not reached within it is NaN and flagged (``bmdl_not_reached``, ``bmdu_not_reached``).
    Why profile likelihood: it is what BMDS reports and what tcplfit2 approximates
    (``bmdbounds``); unlike a Wald interval it follows the curve's bounds and skew, and a
    bootstrap would cost ~1000 refits per feature. One model's interval carries no
    model-choice uncertainty (on planted Hill curves it holds the true BMD ~88% of the time
    when the Hill model is fitted alone, ~75% when AIC picks among the ten shapes, often
    exp4 or poly2), and a likelihood-ratio interval is a little short of its level in small
    samples (87.8% for a linear model on 30 wells). So the reported BMDL and BMDU are the
    union of the intervals of the chosen model and of every model within
    ``SUPPORT_DELTA_AIC`` (4) AIC units of it (open when one of theirs is): it covers the
    true BMD for >= 90% of planted Hill genes (tests), at a median width of ~0.5 log10
    units against ~0.3 for the chosen model's alone. Each model's own BMD and BMDL agree
    with BMDS (pybmds 25.2, ``errors="normal"``) within 2%.
Top and AC50 (tcplfit2's)
    hill, exp4, exp5: top = tp and ac50 = ga (their theoretical maximum, possibly beyond
    d_hi). gnls: top = g at its peak (the root of g' between ga and la), ac50 the rising-side
    dose of top/2. poly1, poly2, pow, exp2, exp3: top = the model response with the largest
    |g| at the tested doses, ac50 the (lowest) dose of top/2. Signed; 0 and NaN for the
    constant.
Hit call (``tcplhit2_core`` with continuous hit calls, ``hitcontinner``)
    Scored on the best non-constant model (tcplfit2's ``fit_method``; the same as
    best_model unless the constant wins), the product of
    P1 = 1 - Akaike weight of the constant model against it,
    P2 = 1 - prod over the doses of P(per-dose median relative to b0 does not exceed the
    cutoff), the median taken as the true response plus a t4 (normal) error of scale exp(er),
    P3 = (1 +- F_chi2,1(2 (log L - log L_top=cutoff))) / 2, + when |top| >= cutoff: the
    likelihood-ratio probability that |top| exceeds the cutoff, log L_top=cutoff being the
    profile likelihood with top fixed at sign(top) cutoff (the amplitude for hill, gnls,
    exp4 and exp5; g at d_hi for the others, as ``toplikelihood``).
    Cutoff = ``cutoff_bmad`` x bmad, bmad = the MAD of the control wells scaled by 1.4826
    (R's ``mad()``, which tcpl and the tcplfit2 vignette use for BMAD: ~1 SD for normal
    noise), unless ``cutoff`` is given.
Other columns
    ``ec50`` and ``hill_slope``: the Hill fit's ga and p when that fit beats the constant by
    AIC and ga lies within [d_lo, d_hi] (else NaN), whatever model is chosen. ``max_effect``
    = f(d_hi) - f(0). ``r2`` = 1 - RSS/TSS. ``pvalue``: likelihood-ratio test of
    best_model against the constant (chi2 with the difference in parameters; NaN when the
    constant wins). ``fit_pvalue``: lack-of-fit F-test of best_model against the replicate
    wells (pure error). ``fit_ok``: best_model is not the constant, fit_pvalue > 0.1 (NTP
    2018) and the BMD is finite. ``params``: JSON of best_model's parameters by tcplfit2's
    names in natural dose units, with b0 and er.
QC flags (';'-joined)
    bmd_above_highest_dose, bmd_below_lowest_dose, bmr_not_reached, bmdl_not_reached,
    bmdu_not_reached, lack_of_fit (fit_pvalue <= 0.1), biphasic (gnls chosen with la <=
    d_hi, or the chosen curve turns within the tested doses and falls back by at least the
    BMR by d_hi), control_sd_zero (BMR is 0: no BMD).

Adaptations from tcplfit2
-------------------------
1. Free baseline b0 in every model (tcplfit2 fixes it at 0 and fits only treated wells):
   the plate's control wells pin it and the likelihood carries its uncertainty into the
   BMDL and hit call; EPA BMDS defines continuous models the same way. The constant model
   therefore has k = 2 (tcplfit2: 1) and every k is one more than tcplfit2's.
2. Natural doses with controls at 0; the bounds are relative to d_lo, d_hi and responses
   relative to the control mean. BMDL/BMDU searched within [d_lo/100, 100 d_hi] instead of
   tcplfit2's absolute [1e-5, 1e5] (in its usual uM, ~[d_lo/100, 1000 d_hi]): unit-free.
3. Profile likelihood for BMDL/BMDU and for P3: the other parameters are re-maximized at
   each fixed BMD (fixed top). tcplfit2's ``bmdobj`` and ``toplikelihood`` keep them at
   their maximum-likelihood values (a likelihood slice), which understates the uncertainty
   (narrower intervals, more extreme P3); BMDS profiles. The rewritten amplitude is not
   held to its bound during the profile, and the gnls and poly2 profiles do not force the
   BMD to stay the first crossing.
4. bmd_low_bnd/bmd_up_bnd censoring (optional in tcplfit2) is replaced by flags; BMDs
   beyond 10 d_hi are NaN.
5. The maximum likelihood is found by a vectorized Levenberg-Marquardt from grid profiles
   (tcplfit2: Nelder-Mead per curve from one start): Newton steps on the t4 likelihood
   (observed curvature, floored) with er profiled out by Newton steps; the models that nest
   another (gnls hill, exp5 exp4, exp3 pow, exp2 poly1) also start from its fit, so they
   never fit worse than it.
6. BMAD is R's ``mad()`` (scaled by 1.4826), as tcpl computes it and the tcplfit2 vignette
   uses it: cutoff 3 BMADs ~ 3 SDs. For a cutoff in unscaled MADs pass ``cutoff_bmad`` /
   1.4826 (3 unscaled MADs ~ 2 SDs: on null genes the mean hit call then rises from ~0.01 to
   ~0.05 with 12 control wells).

Implementation: vectorized across features, in blocks of at most ``FIT_CELLS`` features x
wells; the nonlinear parameters start from grid profiles (closed-form least squares over a
grid of shapes) and one Levenberg-Marquardt call maximizes the likelihood of all models of
all features of a block at once (``_Stack``: rows of several models, parameters padded),
as do the constrained refits of the BMD bounds and of P3. Internal parameters are in units
of d_hi on log scales (see the model shapes below).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, gammaln
from scipy.stats import chi2, norm
from scipy.stats import f as f_dist
from scipy.stats import t as t_dist

MODELS = ("constant", "hill", "gnls", "poly1", "poly2", "pow", "exp2", "exp3", "exp4", "exp5")
BMD_INTERVAL = "profile likelihood, 90% two-sided (BMDL and BMDU each one-sided 95%)"
ERRORS = ("t4", "normal")
T_DF = 4.0                    # tcplfit2's dt4
BMR_SD = 1.349                # tcplfit2's bmr_scale
CUTOFF_BMAD = 3.0             # ToxCast/HTTr: cutoff = 3 x BMAD
MAD_SCALE = 1.4826            # R's mad() constant: BMAD as tcpl computes it
ONE_SIDED_P = 0.05            # tcplfit2 bmdbounds onesidedp; BMDS alpha
PROFILE_DROP = float(chi2.ppf(1 - 2 * ONE_SIDED_P, 1) / 2)   # 1.353 log-likelihood units
NEST_P = 0.05                 # poly2 must beat poly1 at this p (nestselect)
MIN_FIT_P = 0.1               # goodness of fit a fit must exceed (NTP 2018)
SUPPORT_DELTA_AIC = 4.0       # models this close to the chosen one widen BMDL-BMDU
BMD_EXTRAPOLATION = 10.0      # BMD reported up to 10 x the highest dose
BOUND_WINDOW = (0.01, 100.0)  # BMDL searched down to d_lo x 0.01, BMDU up to d_hi x 100
TOP_BOUND = 1.2               # |tp| <= 1.2 x the largest response (tcplfit2)
POWER_BOUNDS = (0.3, 8.0)     # hill/gnls p, q; exp3/exp5 p
POW_BOUNDS = (0.3, 20.0)      # pow p
GNLS_MIN_WIDTH = 1.5          # log10(la) - log10(ga) >= 1.5
EXP_MAX_EXPONENT = 60.0       # exp3 (d_hi / b)^p <= 60: exp(60) = 1e26, no overflow
SCALE_FLOOR = 1e-6            # exp(er) >= 1e-6 x the feature's SD
LM_ITERATIONS = 60
FIT_ITERATIONS = 150
PROFILE_ITERATIONS = 60
GENE_BLOCK = 4096             # features per block of the grid profile (bounds memory)
FIT_CELLS = 200_000           # features x wells per block of the fits (~50 MB Jacobians)
LN10 = np.log(10.0)
LN2 = np.log(2.0)
PARAM_COUNT = {"constant": 2, "hill": 5, "gnls": 7, "poly1": 3, "poly2": 4, "pow": 4,
               "exp2": 4, "exp3": 5, "exp4": 4, "exp5": 5}
FLAGS = ("bmd_above_highest_dose", "bmd_below_lowest_dose", "bmr_not_reached",
         "bmdl_not_reached", "bmdu_not_reached", "lack_of_fit", "biphasic", "control_sd_zero")
"""The qc_flags, in the order they are joined."""
FIRST_STEP = 0.02             # log10 dose: the first step of the BMDL/BMDU search
SEARCH_STEPS = 12             # at most, before the crossing is bracketed
REFINE_ITERATIONS = 16
REFINE_TOLERANCE = 1e-3       # log10 dose (0.2%)
EXCESS_TOLERANCE = 1e-3       # log-likelihood units: the bound's crossing is this close
LIKELIHOOD_TOL = 1e-6         # fits stop when a step gains less (log-likelihood units)
CURVATURE_FLOOR = 0.1         # t4 Newton curvature >= 0.1 x the reweighting weight
TOP_ITERATIONS = 30           # the hit call's top-at-cutoff fit (P3)
TOP_TOL = 1e-4


def _columns(models: tuple[str, ...]) -> list[str]:
    return ["best_model", "fit_ok", "direction", "bmr", "bmd", "bmdl", "bmdu", "ac50", "top",
            "hitcall", "ec50", "hill_slope", "max_effect", "r2", "pvalue", "fit_pvalue",
            *[f"aic_{m}" for m in models], "loglik", "control_mean", "control_sd", "cutoff",
            "lowest_dose", "highest_dose", "params", "qc_flags"]


# --- moved from dose_response.py (which imports them from here)

def _profile(y, bases, bound=None):
    """Least squares of y (genes x wells) on [1, basis] for each basis row; best per gene.

    Returns the index of the best basis and its intercept and slope per gene. With
    ``bound`` (per gene), slopes are clipped to [-bound, bound] before the bases are
    compared, so the best basis is the best under the bound.
    """
    yc = y - y.mean(axis=1, keepdims=True)
    bc = bases - bases.mean(axis=1, keepdims=True)
    sbb = np.sum(bc**2, axis=1)
    best = np.empty(len(y), dtype=int)
    for start in range(0, len(y), GENE_BLOCK):
        sby = yc[start:start + GENE_BLOCK] @ bc.T
        if bound is None:
            best[start:start + GENE_BLOCK] = np.argmax(sby**2 / sbb, axis=1)
        else:
            cap = bound[start:start + GENE_BLOCK, None]
            slope = np.clip(sby / sbb, -cap, cap)
            # RSS reduction of each basis at its (clipped) slope
            best[start:start + GENE_BLOCK] = np.argmax(2 * slope * sby - slope**2 * sbb,
                                                       axis=1)
    slope = np.einsum("gw,gw->g", yc, bc[best]) / sbb[best]
    if bound is not None:
        slope = np.clip(slope, -bound, bound)
    intercept = y.mean(axis=1) - slope * bases[best].mean(axis=1)
    return best, intercept, slope


def _solve_damped(jtj, jtr, lam):
    """Marquardt-damped normal equations, batched; non-finite systems give a zero step."""
    bad = ~(np.isfinite(jtj).all(axis=(1, 2)) & np.isfinite(jtr).all(axis=(1, 2)))
    if bad.any():
        jtj, jtr = jtj.copy(), jtr.copy()
        jtj[bad], jtr[bad] = np.eye(jtj.shape[1]), 0.0
    diag = np.einsum("gii->gi", jtj)
    damping = lam[:, None] * (diag + 1e-9 * diag.max(axis=1, keepdims=True) + 1e-300)
    system = jtj + damping[:, :, None] * np.eye(jtj.shape[1])
    try:
        return np.linalg.solve(system, jtr)[..., 0]
    except np.linalg.LinAlgError:  # an exactly singular system: ridge it
        ridge = 1e-8 * np.abs(diag).max(axis=1) + 1e-12
        return np.linalg.solve(system + ridge[:, None, None] * np.eye(jtj.shape[1]),
                               jtr)[..., 0]


class _Errors:
    """Residual model with the log scale er profiled out: ``t4`` or ``normal``.

    ``scale`` returns er's maximum-likelihood value for given residuals (normal: closed
    form; t: Newton steps on er, the negative log-likelihood being convex in er), ``nll`` the
    negative log-likelihood, ``weights`` the gradient weights psi(z)/z = (df + 1)/(df + z^2)
    and the curvature: the observed second derivative of the t log-density rho''(z) (a
    Newton step for the location parameters; the reweighting weights instead would give the
    linear convergence of iteratively reweighted least squares), floored at a tenth of the
    weights (rho'' < 0 beyond |z| = 2: with many such residuals, as on the way to an exact
    fit, a bare Newton matrix is singular).
    """

    def __init__(self, kind: str):
        self.kind = kind
        if kind == "t4":
            self.log_const = gammaln((T_DF + 1) / 2) - gammaln(T_DF / 2) - 0.5 * np.log(
                T_DF * np.pi)
        else:
            self.log_const = -0.5 * np.log(2 * np.pi)

    @np.errstate(over="ignore", invalid="ignore")
    def scale(self, r, s, s_floor, iterations=None):
        """er's maximum-likelihood value; ``iterations``: at most that many Newton steps
        from the warm start ``s`` (within a Levenberg-Marquardt fit, where er moves little
        between steps and Newton converges quadratically)."""
        r2 = r * r
        if self.kind == "normal" or s is None:
            s_ml = np.maximum(0.5 * np.log(np.maximum(r2.mean(axis=1), 1e-300)), s_floor)
            if self.kind == "normal":
                return s_ml
            s = s_ml
        s = np.maximum(s, s_floor)
        n = r.shape[1]
        if iterations is not None:          # a few steps for all rows, no bookkeeping
            for _ in range(iterations):
                s = np.maximum(s - self._newton_step(r2, s, n), s_floor)
            return s
        idx = np.arange(len(r))
        for _ in range(60):
            new = np.maximum(s[idx] - self._newton_step(r2[idx], s[idx], n), s_floor[idx])
            # er is at its optimum, so an error e in er costs ~ n e^2 in log-likelihood
            moving = np.abs(new - s[idx]) > 1e-8
            s[idx] = new
            idx = idx[moving]
            if not len(idx):
                break
        return s

    @staticmethod
    def _newton_step(r2, s, n):
        """Newton step on er of the t negative log-likelihood (convex in er), at most 1."""
        u = r2 * np.exp(-2 * s)[:, None] / T_DF
        a = u / (1 + u)
        grad = n - (T_DF + 1) * a.sum(axis=1)
        hess = 2 * (T_DF + 1) * (a / (1 + u)).sum(axis=1)
        return np.clip(grad / np.maximum(hess, 1e-300), -1.0, 1.0)

    @np.errstate(over="ignore", invalid="ignore")
    def nll(self, r, s):
        n = r.shape[1]
        z2 = r * r * np.exp(-2 * s)[:, None]
        if self.kind == "normal":
            core = 0.5 * z2.sum(axis=1)
        else:
            core = 0.5 * (T_DF + 1) * np.log1p(z2 / T_DF).sum(axis=1)
        return n * (s - self.log_const) + core

    @np.errstate(over="ignore", invalid="ignore")
    def weights(self, r, s):
        """psi(z)/z and the curvature rho''(z) floored at CURVATURE_FLOOR psi(z)/z, z = r /
        exp(er)."""
        if self.kind == "normal":
            return None, None
        z2 = r * r * np.exp(-2 * s)[:, None]
        w = (T_DF + 1) / (T_DF + z2)
        return w, np.maximum(w * (T_DF - z2) / (T_DF + z2), CURVATURE_FLOOR * w)


def _lm(model, params, y, *, lower=-np.inf, upper=np.inf, fix=None, errors=None, aux=None,
        s_floor=None, iterations=LM_ITERATIONS, tol=None):
    """Vectorized Levenberg-Marquardt (Marquardt scaling) within bounds.

    ``model(params, aux)`` returns fitted values (genes x wells) and the Jacobian (genes x
    wells x k); ``aux`` holds per-gene arrays, sliced along with the genes still iterating.
    ``lower``/``upper``: bounds, (k,) or per gene (genes x k); parameters at a bound that
    the gradient pushes against are held for the step (an active set: clipping their steps
    instead stalls the free ones), and ``fix(params, aux)`` applies other constraints after
    the clip.
    ``errors=None``: least squares (objective RSS; ``tol`` relative, default 1e-10). With
    an ``_Errors``: maximum likelihood, the objective the negative log-likelihood with er
    profiled out (``tol`` absolute, default 1e-8). A gene stops when an accepted step gains
    less than ``tol``, when a rejected step's predicted gain is below it, or when the
    damping has grown until steps vanish. Returns params, the objective and er (None for
    least squares).

    Genes that have stopped stay in the working arrays (their steps discarded) until they
    are 30% of them: compacting less often than every iteration saves copying the
    Jacobian.
    """
    n_rows = len(y)
    out_params = params.copy()
    if tol is None:
        tol = 1e-10 if errors is None else 1e-8
    # working set: the rows ``work`` of everything per gene
    work = np.arange(n_rows)
    aux = dict(aux or {})
    lo = lower if np.ndim(lower) < 2 else np.asarray(lower, dtype=float)
    hi = upper if np.ndim(upper) < 2 else np.asarray(upper, dtype=float)
    per_gene = {key for key, value in (("lower", lo), ("upper", hi)) if np.ndim(value) == 2}
    yw, sf = y, s_floor

    def evaluate(p, aux_w, yw, sf, s_start):
        fitted, jac = model(p, aux_w)
        r = yw - fitted
        if errors is None:
            return np.sum(r * r, axis=1), None, r, jac
        s = errors.scale(r, s_start, sf, iterations=None if s_start is None else 2)
        obj = errors.nll(r, s)
        return np.where(np.isfinite(obj), obj, np.inf), s, r, jac

    p = params.copy()
    obj, s, resid, jac = evaluate(p, aux, yw, sf, None)
    out_obj = obj.copy()
    out_s = None if s is None else s.copy()
    lam = np.full(n_rows, 1e-3)
    live = np.ones(n_rows, dtype=bool)
    for _ in range(iterations):
        if live.sum() < 0.7 * len(work):
            keep = np.flatnonzero(live)
            work, p, obj, resid, jac, lam, live = (work[keep], p[keep], obj[keep],
                                                   resid[keep], jac[keep], lam[keep],
                                                   live[keep])
            s = None if s is None else s[keep]
            aux = {key: value[keep] for key, value in aux.items()}
            yw = yw[keep]
            sf = None if sf is None else sf[keep]
            lo = lo[keep] if "lower" in per_gene else lo
            hi = hi[keep] if "upper" in per_gene else hi
        if errors is None or errors.kind == "normal":
            grad = (resid[:, None, :] @ jac)[:, 0]
            jc = jac
        else:
            w, c = errors.weights(resid, s)
            grad = ((w * resid)[:, None, :] @ jac)[:, 0]
            jc = jac * c[..., None]
        held = ((p <= lo) & (grad < 0)) | ((p >= hi) & (grad > 0))
        if held.any():
            grad = np.where(held, 0.0, grad)
            free = ~held[:, None, :]
            curv = (jc * free).transpose(0, 2, 1) @ (jac * free)
        else:
            curv = jc.transpose(0, 2, 1) @ jac
        step = _solve_damped(curv, grad[..., None], lam)
        step = np.where(held, 0.0, step)
        trial = np.clip(p + step, lo, hi)
        if fix is not None:
            trial = fix(trial, aux)
        t_obj, t_s, t_resid, t_jac = evaluate(trial, aux, yw, sf, s)
        better = (t_obj < obj) & live
        predicted = np.einsum("gk,gk->g", step, grad) - 0.5 * np.einsum(
            "gk,gkl,gl->g", step, curv, step)
        if errors is None:
            gain = (obj - t_obj) / np.maximum(obj, 1e-300)
            predicted = 2 * predicted / np.maximum(obj, 1e-300)
            tiny = obj < 1e-300
        else:
            gain = obj - t_obj
            predicted = predicted * np.exp(-2 * s)
            tiny = False
        if better.all():
            p, obj, resid, jac, s = trial, t_obj, t_resid, t_jac, t_s
        elif better.any():
            np.copyto(p, trial, where=better[:, None])
            np.copyto(obj, t_obj, where=better)
            np.copyto(resid, t_resid, where=better[:, None])
            np.copyto(jac, t_jac, where=better[:, None, None])
            if s is not None:
                np.copyto(s, t_s, where=better)
        lam = np.clip(np.where(better, lam / 3, lam * 8), 1e-12, 1e12)
        done = ((better & (gain < tol)) | (~better & (predicted < tol) & (lam < 1))
                | (lam > 1e8) | tiny)
        finished = live & done
        if finished.any():
            rows = work[finished]
            out_params[rows], out_obj[rows] = p[finished], obj[finished]
            if s is not None:
                out_s[rows] = s[finished]
            live &= ~done
        if not live.any():
            break
    rows = work[live]
    out_params[rows], out_obj[rows] = p[live], obj[live]
    if s is not None:
        out_s[rows] = s[live]
    return out_params, out_obj, out_s


def _check_inputs(expression: pd.DataFrame, doses: pd.Series,
                  control_sd: pd.Series | None) -> tuple[np.ndarray, np.ndarray]:
    """Values (genes x wells) and dose per well; ValueError naming what is wrong."""
    missing = [w for w in expression.columns if w not in doses.index]
    if missing:
        raise ValueError(f"doses has no dose for {len(missing)} well(s) of expression: "
                         f"{', '.join(map(str, missing[:5]))}")
    dose = pd.to_numeric(doses.reindex(expression.columns), errors="coerce").to_numpy(float)
    if not np.all(np.isfinite(dose)) or np.any(dose < 0):
        raise ValueError("doses must be finite and >= 0 for every well (controls at dose 0)")
    n_controls = int(np.sum(dose == 0))
    if n_controls == 0:
        raise ValueError("doses has no control wells (dose 0): the control level and the "
                         "benchmark response are defined by them")
    if control_sd is None and n_controls < 2:
        raise ValueError("only 1 control well (dose 0): the control SD needs at least 2, "
                         "or pass control_sd")
    n_doses = len(np.unique(dose[dose > 0]))
    if n_doses < 3:
        raise ValueError(f"only {n_doses} distinct nonzero dose(s): dose-response fitting "
                         "needs at least 3")
    y = expression.to_numpy(dtype=float)
    if not np.all(np.isfinite(y)):
        bad = int(np.sum(~np.isfinite(y).all(axis=1)))
        raise ValueError(f"expression has missing or infinite values in {bad} gene(s)")
    if control_sd is not None:
        absent = expression.index[control_sd.reindex(expression.index).isna().to_numpy()]
        if len(absent):
            raise ValueError(f"control_sd has no value for {len(absent)} gene(s), e.g. "
                             f"{absent[0]}")
    return y, dose


def _lack_of_fit_p(rss, pure_error, df_pure, n_groups, k, tiny):
    """Goodness of fit: F-test of lack of fit against replicate wells (p > 0.1 = fits).

    Sums of squares below ``tiny`` count as zero (noise-free data).
    """
    df_lof = n_groups - k
    if df_lof <= 0 or df_pure <= 0:
        return np.full(len(rss), np.nan)
    lof = np.maximum(rss - pure_error, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = (lof / df_lof) / (pure_error / df_pure)
    p = f_dist.sf(stat, df_lof, df_pure)
    return np.where(lof <= tiny, 1.0, np.where(pure_error <= tiny, 0.0, p))


# --- model shapes, on the internal dose axis x = d / d_hi.
# Each returns the shape h (genes x wells; g = amplitude x h) and its derivatives along
# the shape parameters phi (a list of q genes x wells arrays). x is (wells,) or (genes, 1).
# Internal parameters are chosen so that Levenberg-Marquardt steps are scale-free,
# tcplfit2's bounds are (nearly all) boxes, and no long curved valleys remain:
#   hill, exp4, exp5: log10(ga / d_hi) and p;
#   gnls: log10(ga / d_hi), p, the width w = log10(la / ga) (>= 1.5: a box) and q;
#   exp2, exp3: the exponent at d_hi, z = d_hi / b resp. (d_hi / b)^p, as log10 z, and the
#   amplitude c = a z: h = (exp(z x^p) - 1) / z, which tends to x^p as z -> 0, so the
#   near-linear (near-power) fits that tcplfit2 reaches with b -> 1e8 d_hi are not at the
#   end of a valley in (a, b);
#   pow: p.

def _log_x(x):
    with np.errstate(divide="ignore"):
        return np.log10(x), x > 0


def _hill_shape(phi, x):
    lga, p = phi[:, 0, None], phi[:, 1, None]
    lx, pos = _log_x(x)
    gap = np.where(pos, lx - lga, 0.0)
    h = np.where(pos, expit(p * gap * LN10), 0.0)
    hh = h * (1 - h)
    return h, [-p * LN10 * hh, gap * LN10 * hh]


def _gnls_parts(phi, x):
    lga, p, w, q = (phi[:, i, None] for i in range(4))
    lx, pos = _log_x(x)
    gap = np.where(pos, lx - lga, 0.0)
    past = np.where(pos, lx - lga - w, 0.0)
    gain = np.where(pos, expit(p * gap * LN10), 0.0)
    loss = np.where(pos, expit(-q * past * LN10), 1.0)
    return gain, loss, gap, past, p, q


def _gnls_shape(phi, x):
    gain, loss, gap, past, p, q = _gnls_parts(phi, x)
    gg, ll = gain * (1 - gain) * LN10, loss * (1 - loss) * LN10
    d_la = q * gain * ll                  # d h / d log10(la / d_hi)
    return gain * loss, [-p * gg * loss + d_la, gap * gg * loss, d_la, -past * gain * ll]


def _exp_power(z, x, p=None):
    """h = (exp(z x^p) - 1) / z with its derivatives along log10 z and p (p None: 1)."""
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        pos = x > 0
        log_x = np.where(pos, np.log(np.where(pos, x, 1.0)), 0.0)
        xp = x if p is None else np.where(pos, np.exp(p * log_x), 0.0)
        e = np.exp(z * xp)
        h = np.expm1(z * xp) / z
        d_lz = LN10 * (xp * e - h)
        if p is None:
            return h, [d_lz]
        return h, [d_lz, e * xp * log_x]


def _exp2_shape(phi, x):
    return _exp_power(10.0 ** phi[:, 0, None], x)


def _exp3_shape(phi, x):
    return _exp_power(10.0 ** phi[:, 0, None], x, phi[:, 1, None])


def _exp4_shape(phi, x):
    c = LN2 * x * 10.0 ** -phi[:, 0, None]
    e = np.exp(-c)
    return -np.expm1(-c), [-LN10 * c * e]


def _exp5_shape(phi, x):
    lga, p = phi[:, 0, None], phi[:, 1, None]
    ratio = x * 10.0 ** -lga
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        pos = ratio > 0
        log_ratio = np.where(pos, np.log(np.where(pos, ratio, 1.0)), 0.0)
        c = LN2 * np.where(pos, np.exp(p * log_ratio), 0.0)
        e = np.exp(-c)
        return -np.expm1(-c), [-p * LN10 * c * e, c * log_ratio * e]


def _pow_shape(phi, x):
    p = phi[:, 0, None]
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        pos = x > 0
        log_x = np.where(pos, np.log(np.where(pos, x, 1.0)), 0.0)
        h = np.where(pos, np.exp(p * log_x), 0.0)
        return h, [h * log_x]


@dataclass(frozen=True)
class _Shape:
    """A nonlinear tcplfit2 shape: g = amplitude x h(x; phi)."""

    fn: Callable
    names: tuple[str, ...]        # tcplfit2's names: the amplitude's, then phi's
    amp_bound: str                # "response" (hill, gnls), "median" (exp4, exp5) or "none"
    top_is_amplitude: bool        # top = tp (hill, exp4, exp5; gnls for the hit call's P3)

    def bounds(self, lx_lo):
        """Box bounds of phi (internal coordinates) for log10(d_lo / d_hi) = lx_lo."""
        lga = (lx_lo - 1, 0.5)                      # ga in [d_lo / 10, d_hi sqrt(10)]
        power, z_max = POWER_BOUNDS, np.log10(EXP_MAX_EXPONENT)
        return {
            _hill_shape: ((lga[0], power[0]), (lga[1], power[1])),
            # la in [d_lo / 10, 100 d_hi]: with la >= 10^1.5 ga the lower end is implied;
            # the upper is w <= 2 - log10(ga / d_hi) (``fix``)
            _gnls_shape: ((lga[0], power[0], GNLS_MIN_WIDTH, power[0]),
                          (lga[1], power[1], 2 - lga[0], power[1])),
            # b in [d_hi / 100, 1e8 d_hi]
            _exp2_shape: ((-8.0,), (2.0,)),
            # z = (d_hi / b)^p in [1e-8, 60]; b >= d_hi / 100 (z <= 100^p) by ``fix``
            _exp3_shape: ((-8.0, power[0]), (z_max, power[1])),
            _exp4_shape: ((lga[0],), (lga[1],)),
            _exp5_shape: ((lga[0], power[0]), (lga[1], power[1])),
            _pow_shape: ((POW_BOUNDS[0],), (POW_BOUNDS[1],)),
        }[self.fn]

    def grid(self, lx_lo):
        """Starting grid of phi values (rows)."""
        lo, hi = self.bounds(lx_lo)
        powers = np.geomspace(*POWER_BOUNDS, 10)
        if self.fn in (_hill_shape, _exp5_shape):
            return _mesh(np.arange(lo[0], hi[0] + 1e-9, 0.1), powers)
        if self.fn is _exp4_shape:
            return np.arange(lo[0], hi[0] + 1e-9, 0.05)[:, None]
        if self.fn is _gnls_shape:
            grid = _mesh(np.arange(lo[0], hi[0] + 1e-9, 0.25), [0.7, 1.5, 4.0],
                         np.arange(lo[2], hi[2] + 1e-9, 0.25), [1.5, 5.0])
            return grid[grid[:, 0] + grid[:, 2] <= 2 + 1e-9]
        if self.fn is _exp2_shape:
            return np.r_[-8, -6, -4, np.arange(-3, 2 + 1e-9, 0.05)][:, None]
        if self.fn is _exp3_shape:
            grid = _mesh(np.r_[-8, -5, np.arange(-3, hi[0] + 1e-9, 0.1)], powers)
            return grid[grid[:, 0] <= 2 * grid[:, 1]]
        return np.geomspace(*POW_BOUNDS, 40)[:, None]

    def fix(self, phi):
        """Constraints beyond the box, applied after clipping (phi modified in place)."""
        if self.fn is _gnls_shape:
            phi[:, 2] = np.minimum(phi[:, 2], 2 - phi[:, 0])        # la <= 100 d_hi
        elif self.fn is _exp3_shape:
            phi[:, 0] = np.minimum(phi[:, 0], 2 * phi[:, 1])        # b >= d_hi / 100
        return phi

    def inverse(self, u, phi):
        """x where h(x) = u (> 0), per gene: the lowest such x; NaN if h never gets there."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.fn is _hill_shape:
                x = 10.0 ** (phi[:, 0] - np.log10(1 / u - 1) / phi[:, 1])
                return np.where(u < 1, x, np.nan)
            if self.fn is _exp4_shape:
                return np.where(u < 1, 10.0 ** phi[:, 0] * -np.log1p(-u) / LN2, np.nan)
            if self.fn is _exp5_shape:
                x = 10.0 ** phi[:, 0] * (-np.log1p(-u) / LN2) ** (1 / phi[:, 1])
                return np.where(u < 1, x, np.nan)
            if self.fn is _pow_shape:
                return u ** (1 / phi[:, 0])
            if self.fn in (_exp2_shape, _exp3_shape):
                z = 10.0 ** phi[:, 0]
                p = phi[:, 1] if self.fn is _exp3_shape else 1.0
                return (np.log1p(z * u) / z) ** (1 / p)
            peak = _gnls_peak(phi)
            return _gnls_rising(phi, u, peak)

    def public(self, amplitude, phi, d_hi):
        """tcplfit2's parameters in natural dose units."""
        def scale(col):
            return d_hi * 10.0 ** phi[:, col]

        if self.fn is _hill_shape:
            return {"tp": amplitude, "ga": scale(0), "p": phi[:, 1]}
        if self.fn is _gnls_shape:
            return {"tp": amplitude, "ga": scale(0), "p": phi[:, 1],
                    "la": d_hi * 10.0 ** (phi[:, 0] + phi[:, 2]), "q": phi[:, 3]}
        if self.fn is _exp2_shape:
            z = 10.0 ** phi[:, 0]
            return {"a": amplitude / z, "b": d_hi / z}
        if self.fn is _exp3_shape:
            z = 10.0 ** phi[:, 0]
            return {"a": amplitude / z, "b": d_hi * z ** (-1 / phi[:, 1]), "p": phi[:, 1]}
        if self.fn is _exp4_shape:
            return {"tp": amplitude, "ga": scale(0)}
        if self.fn is _exp5_shape:
            return {"tp": amplitude, "ga": scale(0), "p": phi[:, 1]}
        return {"a": amplitude / d_hi ** phi[:, 0], "p": phi[:, 0]}


def _mesh(*axes):
    return np.column_stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")])


SHAPES = {
    "hill": _Shape(_hill_shape, ("tp", "ga", "p"), "response", True),
    "gnls": _Shape(_gnls_shape, ("tp", "ga", "p", "la", "q"), "response", True),
    "pow": _Shape(_pow_shape, ("a", "p"), "none", False),
    "exp2": _Shape(_exp2_shape, ("a", "b"), "none", False),
    "exp3": _Shape(_exp3_shape, ("a", "b", "p"), "none", False),
    "exp4": _Shape(_exp4_shape, ("tp", "ga"), "median", True),
    "exp5": _Shape(_exp5_shape, ("tp", "ga", "p"), "median", True),
}
POLY_DEGREE = {"constant": 0, "poly1": 1, "poly2": 2}


def _gnls_peak(phi):
    """log10 x of the gnls peak: the root of d log h / d log x = ln10 (p (1 - gain) -
    q (1 - loss)), decreasing in x, between ga and la (tcplfit2's ``gnlsderivobj``)."""
    lo, hi = phi[:, 0].copy(), phi[:, 0] + phi[:, 2]
    for _ in range(60):
        mid = (lo + hi) / 2
        gain, loss, *_ = _gnls_parts(phi, 10.0 ** mid[:, None])
        rising = phi[:, 1] * (1 - gain[:, 0]) > phi[:, 3] * (1 - loss[:, 0])
        lo, hi = np.where(rising, mid, lo), np.where(rising, hi, mid)
    return (lo + hi) / 2


def _gnls_rising(phi, u, peak):
    """x on the rising side of gnls (below the peak) where h = u; NaN above the peak."""
    h_peak = _gnls_shape(phi, 10.0 ** peak[:, None])[0][:, 0]
    lo = phi[:, 0] - 40 / phi[:, 1]       # h ~ 1e-40 there
    hi = peak.copy()
    for _ in range(80):
        mid = (lo + hi) / 2
        below = _gnls_shape(phi, 10.0 ** mid[:, None])[0][:, 0] < u
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return np.where(u < h_peak, 10.0 ** ((lo + hi) / 2), np.nan)


# --- model variants for the Levenberg-Marquardt fits (params: rows x k)
# A variant is a model in one parametrization: "full" (b0, amplitude(s), phi), "value"
# (g(x0) = v held: b0 and phi for the shapes, whose amplitude becomes v / h(x0); b0 for
# poly1; b0 and b2 for poly2, b1 eliminated) or "amplitude" (amplitude held: b0, phi).
# All rows of one fit, whatever their variant, go through one Levenberg-Marquardt call
# (``_Stack``): the per-iteration cost of numpy calls is then paid once, not per model.

def _jac_out(out, theta, x, k):
    return np.empty((len(theta), len(x), k)) if out is None else out


def _shape_model(shape, x):
    def model(theta, aux, out=None):
        h, dh = shape.fn(theta[:, 2:], x)
        jac = _jac_out(out, theta, x, 2 + len(dh))
        amp = theta[:, 1, None]
        jac[..., 0], jac[..., 1] = 1.0, h
        for i, d in enumerate(dh):
            jac[..., 2 + i] = amp * d
        return theta[:, :1] + amp * h, jac
    return model


def _shape_at_value(shape, x):
    def model(theta, aux, out=None):
        h, dh = shape.fn(theta[:, 1:], x)
        h0, dh0 = shape.fn(theta[:, 1:], aux["x0"][:, None])
        jac = _jac_out(out, theta, x, 1 + len(dh))
        v = aux["v"][:, None]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ratio = h / h0
            jac[..., 0] = 1.0
            for i, (d, d0) in enumerate(zip(dh, dh0)):
                jac[..., 1 + i] = v * (d - ratio * d0) / h0
            return theta[:, :1] + v * ratio, jac
    return model


def _shape_at_amplitude(shape, x):
    def model(theta, aux, out=None):
        h, dh = shape.fn(theta[:, 1:], x)
        jac = _jac_out(out, theta, x, 1 + len(dh))
        amp = aux["amp"][:, None]
        jac[..., 0] = 1.0
        for i, d in enumerate(dh):
            jac[..., 1 + i] = amp * d
        return theta[:, :1] + amp * h, jac
    return model


def _poly_model(degree, x):
    basis = np.column_stack([x**i for i in range(degree + 1)])

    def model(theta, aux, out=None):
        jac = _jac_out(out, theta, x, degree + 1)
        jac[...] = basis
        return theta @ basis.T, jac
    return model


def _poly_at_value(degree, x):
    def model(theta, aux, out=None):
        x0, v = aux["x0"][:, None], aux["v"][:, None]
        jac = _jac_out(out, theta, x, degree)
        fitted = theta[:, :1] + v * x / x0
        jac[..., 0] = 1.0
        if degree == 2:
            quad = x * x - x0 * x
            fitted = fitted + theta[:, 1:2] * quad
            jac[..., 1] = quad
        return fitted, jac
    return model


def _variant_size(name, kind):
    if name in POLY_DEGREE:
        degree = POLY_DEGREE[name]
        return degree + 1 if kind == "full" else degree
    q = len(SHAPES[name].names) - 1
    return 2 + q if kind == "full" else 1 + q


def _runs(code):
    """(code, rows) per variant present: slices when ``code`` is sorted (the rows of a stack
    are built sorted and stay so in any increasing subset), else index arrays."""
    if len(code) and np.all(code[1:] >= code[:-1]):
        edges = np.flatnonzero(np.diff(code)) + 1
        starts, stops = np.r_[0, edges], np.r_[edges, len(code)]
        return [(code[a], slice(a, b)) for a, b in zip(starts, stops)]
    return [(c, np.flatnonzero(code == c)) for c in np.unique(code)]


class _Stack:
    """Rows of several model variants fitted together; params padded to the widest.

    ``aux["code"]`` gives each row's variant (an index into ``variants``); padded params
    are held at 0 by their bounds.
    """

    def __init__(self, variants, design):
        self.variants = list(variants)
        self.sizes = [_variant_size(name, kind) for name, kind in self.variants]
        self.width = max(self.sizes)
        self.fns = []
        for name, kind in self.variants:
            if name in POLY_DEGREE:
                degree = POLY_DEGREE[name]
                fn = (_poly_model if kind == "full" else _poly_at_value)(degree, design.x)
            else:
                fn = {"full": _shape_model, "value": _shape_at_value,
                      "amplitude": _shape_at_amplitude}[kind](SHAPES[name], design.x)
            self.fns.append(fn)
        self.n_wells = len(design.x)
        self._runs = (None, None)

    def runs(self, code):
        """``_runs(code)``, cached: within a fit the code array changes only on compaction."""
        if self._runs[0] is not code:
            self._runs = (code, _runs(code))
        return self._runs[1]

    def model(self, theta, aux):
        code = aux["code"]
        fitted = np.empty((len(theta), self.n_wells))
        jac = np.empty((len(theta), self.n_wells, self.width))
        for c, rows in self.runs(code):
            k = self.sizes[c]
            sub = {key: value[rows] for key, value in aux.items()}
            if isinstance(rows, slice):      # fill the Jacobian in place
                fitted[rows] = self.fns[c](theta[rows, :k], sub, jac[rows, :, :k])[0]
            else:
                fitted[rows], jac[rows, :, :k] = self.fns[c](theta[rows, :k], sub)
            jac[rows, :, k:] = 0.0
        return fitted, jac

    def fix(self, theta, aux):
        for c, rows in self.runs(aux["code"]):
            name, kind = self.variants[c]
            if name in SHAPES:
                offset = 2 if kind == "full" else 1
                k = self.sizes[c]
                theta[rows, offset:k] = SHAPES[name].fix(theta[rows, offset:k])
        return theta

    def shift(self, theta, delta, aux):
        """"value" params for x0 moved by ``delta`` log10 units: the same curve shifted
        along log dose by delta, which still meets the held value at the new x0 (keeping
        phi instead would rescale the amplitude v / h(x0) by up to 10^(p delta)). The warm
        start of each step of the BMDL/BMDU search."""
        theta = theta.copy()
        for c, rows in _runs(aux["code"]):
            name, kind = self.variants[c]
            d = delta[rows]
            if name in ("hill", "gnls", "exp4", "exp5"):
                theta[rows, 1] += d                              # log10 ga
            elif name == "exp2":
                theta[rows, 1] -= d                              # log10 z, z ~ 1 / b
            elif name == "exp3":
                theta[rows, 1] -= theta[rows, 2] * d             # z ~ b^-p
            elif name == "poly2":
                theta[rows, 1] *= 10.0 ** (-2 * d)               # b2
        return theta

    def pad(self, blocks):
        """Stack (code, params, lower, upper) blocks into padded arrays."""
        theta = np.zeros((sum(len(b[1]) for b in blocks), self.width))
        lower, upper, code = np.zeros_like(theta), np.zeros_like(theta), []
        start = 0
        for c, params, lo, hi in blocks:
            rows = slice(start, start + len(params))
            k = params.shape[1]
            theta[rows, :k] = params
            lower[rows, :k], upper[rows, :k] = lo, hi
            code.append(np.full(len(params), c))
            start += len(params)
        return theta, lower, upper, np.concatenate(code) if code else np.zeros(0, int)

    def fit(self, theta, lower, upper, y, errs, s_floor, aux, iterations, tol=None):
        return _lm(self.model, theta, y, lower=lower, upper=upper, fix=self.fix, errors=errs,
                   aux=aux, s_floor=s_floor, iterations=iterations, tol=tol)


# --- design

@dataclass
class _Design:
    dose: np.ndarray              # per well
    x: np.ndarray                 # dose / d_hi
    d_lo: float
    d_hi: float
    control: np.ndarray           # bool per well
    levels: np.ndarray            # nonzero doses
    level_of: np.ndarray          # per well: index into levels (-1 for controls)
    groups: np.ndarray            # per well: index into all distinct doses (pure error)
    n_groups: int

    @classmethod
    def of(cls, dose):
        levels = np.unique(dose[dose > 0])
        d_hi = levels.max()
        level_of = np.where(dose > 0, np.searchsorted(levels, dose), -1)
        uniq, groups = np.unique(dose, return_inverse=True)
        return cls(dose, dose / d_hi, levels.min(), d_hi, dose == 0, levels, level_of,
                   groups, len(uniq))

    @property
    def lx_lo(self):
        return np.log10(self.d_lo / self.d_hi)


# --- fitting

def _shape_start(name, y, design, amp_max):
    """Grid profile (least squares under the amplitude bound): params b0, amplitude, phi;
    and the bounds."""
    shape = SHAPES[name]
    lo, hi = shape.bounds(design.lx_lo)
    grid = shape.grid(design.lx_lo)
    best, b0, amp = _profile(y, shape.fn(grid, design.x)[0], amp_max)
    n = len(y)
    lower = np.column_stack([np.full(n, -np.inf), -amp_max, np.tile(lo, (n, 1))])
    upper = np.column_stack([np.full(n, np.inf), amp_max, np.tile(hi, (n, 1))])
    theta = np.clip(np.column_stack([b0, amp, grid[best]]), lower, upper)
    theta[:, 2:] = shape.fix(theta[:, 2:])
    return theta, lower, upper


def _poly_start(name, y, design):
    degree = POLY_DEGREE[name]
    basis = np.column_stack([design.x**i for i in range(degree + 1)])
    theta = np.linalg.lstsq(basis, y.T, rcond=None)[0].T
    return theta, np.full(theta.shape[1], -np.inf), np.full(theta.shape[1], np.inf)


def _fit_models(names, y, design, errs, s_floor, amp_bounds, starts=None):
    """Maximum-likelihood fits of ``names`` for all genes of ``y``, in one stacked call.

    ``starts``: optional extra starting params per model (genes x k); the better start by
    likelihood is refined. Returns {name: (theta, nll, er)}.
    """
    stack = _Stack([(name, "full") for name in names], design)
    blocks = []
    n = len(y)
    for c, name in enumerate(names):
        if name in POLY_DEGREE:
            theta, lo, hi = _poly_start(name, y, design)
        else:
            theta, lo, hi = _shape_start(name, y, design, amp_bounds[SHAPES[name].amp_bound])
            if starts and name in starts:
                alt = np.clip(starts[name], lo, hi)
                alt[:, 2:] = SHAPES[name].fix(alt[:, 2:])
                model = stack.fns[c]
                pick = _nll_at(model, alt, y, errs, s_floor) < _nll_at(model, theta, y, errs,
                                                                       s_floor)
                theta[pick] = alt[pick]
        blocks.append((c, theta, lo, hi))
    theta, lower, upper, code = stack.pad(blocks)
    rows = np.tile(np.arange(n), len(names))
    theta, nll, s = stack.fit(theta, lower, upper, y[rows], errs, s_floor[rows],
                              {"code": code}, FIT_ITERATIONS, LIKELIHOOD_TOL)
    return {name: (theta[c * n:(c + 1) * n, :stack.sizes[c]], nll[c * n:(c + 1) * n],
                   s[c * n:(c + 1) * n]) for c, name in enumerate(names)}


NESTS = {"gnls": "hill", "exp5": "exp4", "exp3": "pow", "exp2": "poly1"}


def _nested_start(name, theta):
    """Full params of ``name`` reproducing the fit ``theta`` of the model it nests."""
    n = len(theta)
    if name == "gnls":                       # loss part at its farthest, q = 5
        return np.column_stack([theta, 2 - theta[:, 2], np.full(n, 5.0)])
    if name == "exp5":
        return np.column_stack([theta, np.ones(n)])
    low = np.full(n, -8.0)                   # exponent 1e-8: exp(z x^p) - 1 ~ z x^p
    if name == "exp3":
        return np.column_stack([theta[:, :2], low, theta[:, 2]])
    return np.column_stack([theta[:, :2], low])


def _nll_at(model, theta, y, errs, s_floor):
    r = y - model(theta, {})[0]
    nll = errs.nll(r, errs.scale(r, None, s_floor))
    return np.where(np.isfinite(nll), nll, np.inf)


def _fitted(name, theta, x):
    """f at x (wells) for internal params."""
    if name in POLY_DEGREE:
        return _poly_model(POLY_DEGREE[name], x)(theta, {})[0]
    return _shape_model(SHAPES[name], x)(theta, {})[0]


def _response(name, theta, x):
    """g = f - f(0) at x for internal params."""
    return _fitted(name, theta, x) - theta[:, :1]


# --- BMD, top, AC50 (internal units: x = dose / d_hi)

def _bmd_x(name, theta, bmr):
    """Lowest x where |g| = bmr, and the sign of g there (NaN, 0 when never)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if name == "poly1":
            x = bmr / np.abs(theta[:, 1])
            sign = np.sign(theta[:, 1])
        elif name == "poly2":
            x, sign = _poly2_crossing(theta[:, 1], theta[:, 2], bmr)
        else:
            x = SHAPES[name].inverse(bmr / np.abs(theta[:, 1]), theta[:, 2:])
            sign = np.sign(theta[:, 1])
    x = np.where(np.isfinite(x) & (x > 0) & (bmr > 0), x, np.nan)
    return x, np.where(np.isnan(x), 0.0, sign)


def _poly2_crossing(b1, b2, level):
    """Lowest positive x with b1 x + b2 x^2 = +level or -level; the sign reached first."""
    best = np.full(len(b1), np.inf)
    sign = np.zeros(len(b1))
    for target in (1.0, -1.0):
        c = target * level
        with np.errstate(divide="ignore", invalid="ignore"):
            root = np.sqrt(b1 * b1 + 4 * b2 * c)
            quad = np.abs(b2) > 1e-12 * np.abs(b1) + 1e-300
            roots = [np.where(quad, (-b1 + root) / (2 * b2), c / b1),
                     np.where(quad, (-b1 - root) / (2 * b2), np.nan)]
        for r in roots:
            ok = np.isfinite(r) & (r > 0) & (r < best)
            best = np.where(ok, r, best)
            sign = np.where(ok, target, sign)
    return np.where(np.isfinite(best), best, np.nan), sign


def _top_ac50(name, theta, design):
    """tcplfit2's top (signed) and ac50 (internal x) of each gene's curve."""
    n = len(theta)
    if name == "constant":
        return np.zeros(n), np.full(n, np.nan)
    if name in ("hill", "exp4", "exp5"):
        return theta[:, 1].copy(), 10.0 ** theta[:, 2]
    if name == "gnls":
        peak = _gnls_peak(theta[:, 2:])
        h_peak = _gnls_shape(theta[:, 2:], 10.0 ** peak[:, None])[0][:, 0]
        return theta[:, 1] * h_peak, _gnls_rising(theta[:, 2:], 0.5 * h_peak, peak)
    # unbounded shapes: the largest |g| at the tested doses
    g = _response(name, theta, design.levels / design.d_hi)
    top = g[np.arange(n), np.argmax(np.abs(g), axis=1)]
    with np.errstate(divide="ignore", invalid="ignore"):
        if name == "poly2":
            ac50, _ = _poly2_crossing(theta[:, 1], theta[:, 2], np.abs(top) / 2)
        elif name == "poly1":
            ac50 = np.abs(top / 2 / theta[:, 1])
        else:
            ac50 = SHAPES[name].inverse(np.abs(top / 2 / theta[:, 1]), theta[:, 2:])
    return top, ac50


def _response_at(name, theta, x_per_gene):
    """g at one x per gene."""
    if name in POLY_DEGREE:
        powers = x_per_gene[:, None] ** np.arange(1, POLY_DEGREE[name] + 1)
        return np.sum(theta[:, 1:] * powers, axis=1)
    return theta[:, 1] * SHAPES[name].fn(theta[:, 2:], x_per_gene[:, None])[0][:, 0]


def _turns(name, theta, bmr):
    """gnls with la <= d_hi, or the curve turns within the tested doses and falls back by
    >= bmr by d_hi."""
    if name not in ("gnls", "poly2"):
        return np.zeros(len(theta), dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_turn = (10.0 ** _gnls_peak(theta[:, 2:]) if name == "gnls"
                  else -theta[:, 1] / (2 * theta[:, 2]))
    inside = (x_turn > 0) & (x_turn < 1)
    fall = np.abs(_response_at(name, theta, np.where(inside, x_turn, 1.0))
                  - _response_at(name, theta, np.ones(len(theta))))
    turned = inside & (fall >= np.maximum(bmr, 1e-12))
    if name == "gnls":
        turned |= theta[:, 2] + theta[:, 4] <= 0.0     # la <= d_hi
    return turned


# --- profile likelihood

def _profile_start(name, theta):
    """Params of the "value"/"amplitude" variants at the full fit."""
    if name in POLY_DEGREE:
        return theta[:, [0, 2]] if POLY_DEGREE[name] == 2 else theta[:, :1]
    return np.column_stack([theta[:, :1], theta[:, 2:]])


def _profile_blocks(groups, design, kind_of):
    """Stack of profile variants for {name: theta} groups; returns stack, padded start,
    bounds and codes."""
    names = list(groups)
    stack = _Stack([(name, kind_of(name)) for name in names], design)
    blocks = []
    for c, name in enumerate(names):
        start = _profile_start(name, groups[name])
        if name in SHAPES:
            lo, hi = SHAPES[name].bounds(design.lx_lo)
            lo, hi = np.r_[-np.inf, lo], np.r_[np.inf, hi]
        else:
            lo, hi = np.full(start.shape[1], -np.inf), np.full(start.shape[1], np.inf)
        blocks.append((c, start, lo, hi))
    return (stack, *stack.pad(blocks))


def _bmd_bounds(groups, nll_hat, y, design, errs, s_floor, bmd_x, sign, bmr):
    """BMDL and BMDU in x units by profile likelihood; NaN when not reached.

    ``groups``: {model: full params of its genes}; the other arrays are per gene in the
    order of the groups. The profile negative log-likelihood of the BMD (all other
    parameters re-maximized) is followed outward from the BMD, both ways at once: each step
    aims 20% beyond the crossing predicted by a quadratic through the BMD (growing 1.3- to
    10-fold) and starts its fit from the last fit inside, shifted along log dose
    (``_Stack.shift``), until the profile has risen by PROFILE_DROP or the window ends; the
    crossing is then refined by Illinois regula falsi on log10 x.
    """
    stack, start0, lower0, upper0, code0 = _profile_blocks(groups, design, lambda _: "value")
    n = len(start0)
    # rows 0..n-1 search down (BMDL), n..2n-1 up (BMDU)
    side = np.r_[np.full(n, -1.0), np.full(n, 1.0)]
    t0 = np.tile(np.log10(bmd_x), 2)
    edge = np.where(side < 0, np.log10(design.d_lo * BOUND_WINDOW[0] / design.d_hi),
                    np.log10(BOUND_WINDOW[1]))
    v, y2, s_floor2 = np.tile(sign * bmr, 2), np.vstack([y, y]), np.tile(s_floor, 2)
    nll_hat2, code = np.tile(nll_hat, 2), np.tile(code0, 2)
    lower, upper = np.vstack([lower0, lower0]), np.vstack([upper0, upper0])

    def excess(start, t, rows):
        th, nll, _ = stack.fit(start, lower[rows], upper[rows], y2[rows], errs,
                               s_floor2[rows], {"code": code[rows], "x0": 10.0 ** t,
                                                "v": v[rows]}, PROFILE_ITERATIONS,
                               LIKELIHOOD_TOL)
        return th, np.where(np.isfinite(nll), nll - nll_hat2[rows] - PROFILE_DROP, np.inf)

    def warm(theta, delta, rows):
        theta = stack.shift(theta, delta, {"code": code[rows]})
        return stack.fix(np.clip(theta, lower[rows], upper[rows]), {"code": code[rows]})

    t_in, g_in = t0.copy(), np.full(2 * n, -PROFILE_DROP)
    th_in = np.vstack([start0, start0])
    t_out, g_out = np.full(2 * n, np.nan), np.full(2 * n, np.nan)
    todo = np.flatnonzero(side * (edge - t0) > 0)
    reach = np.full(2 * n, FIRST_STEP)
    for _ in range(SEARCH_STEPS):
        if not len(todo):
            break
        t = t0[todo] + side[todo] * reach[todo]
        t = np.where(side[todo] > 0, np.minimum(t, edge[todo]), np.maximum(t, edge[todo]))
        th, g = excess(warm(th_in[todo], t - t_in[todo], todo), t, todo)
        crossed = g >= 0
        t_out[todo[crossed]], g_out[todo[crossed]] = t[crossed], g[crossed]
        keep = todo[~crossed]
        t_in[keep], th_in[keep], g_in[keep] = t[~crossed], th[~crossed], g[~crossed]
        rise = np.maximum(g[~crossed] + PROFILE_DROP, 1e-12)
        gap = np.abs(t[~crossed] - t0[keep])
        aim = 1.2 * gap * np.sqrt(PROFILE_DROP / rise)
        reach[keep] = np.clip(aim, 1.3 * gap, 10 * gap)
        todo = keep[t[~crossed] != edge[keep]]

    found = np.flatnonzero(np.isfinite(t_out))
    a, ga, b, gb = t_in[found], g_in[found], t_out[found], g_out[found]
    start = th_in[found]
    last = np.zeros(len(found))      # which end moved last (Illinois)
    for _ in range(REFINE_ITERATIONS):
        idx = np.flatnonzero((np.abs(b - a) > REFINE_TOLERANCE)
                             & (np.minimum(-ga, gb) > EXCESS_TOLERANCE))
        if not len(idx):
            break
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            t = (a[idx] * gb[idx] - b[idx] * ga[idx]) / (gb[idx] - ga[idx])
        inside = np.isfinite(t) & ((t - a[idx]) * (t - b[idx]) < 0)
        t = np.where(inside, t, (a[idx] + b[idx]) / 2)
        th, g = excess(warm(start[idx], t - a[idx], found[idx]), t, found[idx])
        low = g < 0
        # keep the bracket; halve the stale end's excess when the same end moves twice
        ii, jj = idx[low], idx[~low]
        gb[ii] = np.where(last[ii] == -1, gb[ii] / 2, gb[ii])
        ga[jj] = np.where(last[jj] == 1, ga[jj] / 2, ga[jj])
        a[ii], ga[ii], start[ii], last[ii] = t[low], g[low], th[low], -1
        b[jj], gb[jj], last[jj] = t[~low], g[~low], 1
    out = np.full(2 * n, np.nan)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        t = (a * gb - b * ga) / (gb - ga)
    t = np.where(np.isfinite(t), t, (a + b) / 2)
    out[found] = 10.0 ** np.clip(t, np.minimum(a, b), np.maximum(a, b))
    return out[:n], out[n:]


def _top_probability(groups, nll_hat, top, cutoff, y, design, errs, s_floor):
    """tcplfit2's P3 (``toplikelihood``), the other parameters profiled: the likelihood
    with top held at sign(top) x cutoff, by the amplitude (hill, gnls, exp4, exp5) or by g
    at d_hi (the others)."""
    def kind_of(name):
        return "amplitude" if name in SHAPES and SHAPES[name].top_is_amplitude else "value"

    stack, start, lower, upper, code = _profile_blocks(groups, design, kind_of)
    held = np.where(top < 0, -1.0, 1.0) * cutoff
    aux = {"code": code, "amp": held, "x0": np.ones(len(start)), "v": held}
    # A probability: 1e-4 in log-likelihood is ample, and far-off tops need long fits
    _, nll, _ = stack.fit(start, lower, upper, y, errs, s_floor, aux, TOP_ITERATIONS,
                          TOP_TOL)
    deviance = np.maximum(2 * (nll - nll_hat), 0.0)
    tail = chi2.cdf(np.where(np.isfinite(deviance), deviance, np.inf), 1)
    return np.where(np.abs(top) >= cutoff, (1 + tail) / 2, (1 - tail) / 2)


def _exceed_probability(y, b0, s, top, cutoff, design, errs):
    """tcplfit2's P2: 1 - prod_doses P(median response at the dose below the cutoff)."""
    rel = y - b0[:, None]
    medians = np.column_stack([np.median(rel[:, design.level_of == i], axis=1)
                               for i in range(len(design.levels))])
    sign = np.where(top < 0, -1.0, 1.0)[:, None]
    z = sign * (medians - sign * cutoff[:, None]) / np.exp(s)[:, None]
    below = t_dist.sf(z, T_DF) if errs.kind == "t4" else norm.sf(z)
    return 1 - np.prod(below, axis=1)


# --- public API

def model_response(model: str, params: dict, dose: np.ndarray) -> np.ndarray:
    """f(dose) = b0 + g(dose) of one model at tcplfit2-named parameters (natural doses).

    Parameters
    ----------
    model
        One of ``MODELS``.
    params
        As in the ``params`` column: b0 and the shape's parameters (tp, ga, p, la, q, a, b,
        b1, b2; er ignored).
    dose
        Doses (0 for controls).
    """
    d = np.asarray(dose, dtype=float)
    b0 = params["b0"]
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        pos = d > 0
        safe = np.where(pos, d, 1.0)
        if model == "constant":
            g = np.zeros_like(d)
        elif model == "hill":
            g = np.where(pos, params["tp"] / (1 + (params["ga"] / safe) ** params["p"]), 0.0)
        elif model == "gnls":
            gain = np.where(pos, 1 / (1 + (params["ga"] / safe) ** params["p"]), 0.0)
            g = params["tp"] * gain / (1 + (d / params["la"]) ** params["q"])
        elif model == "poly1":
            g = params["a"] * d
        elif model == "poly2":
            g = params["b1"] * d + params["b2"] * d**2
        elif model == "pow":
            g = params["a"] * np.where(pos, safe ** params["p"], 0.0)
        elif model == "exp2":
            g = params["a"] * np.expm1(d / params["b"])
        elif model == "exp3":
            g = params["a"] * np.expm1(np.where(pos, (safe / params["b"]) ** params["p"], 0))
        elif model == "exp4":
            g = params["tp"] * (1 - 2.0 ** (-d / params["ga"]))
        elif model == "exp5":
            g = params["tp"] * (1 - 2.0 ** -np.where(pos, (safe / params["ga"]) ** params["p"],
                                                     0.0))
        else:
            raise ValueError(f"unknown model {model!r}; one of {', '.join(MODELS)}")
    return b0 + g


def _public_params(name, theta, s, d_hi):
    if name in POLY_DEGREE:
        named = {"b0": theta[:, 0]}
        if name == "poly1":
            named["a"] = theta[:, 1] / d_hi
        elif name == "poly2":
            named |= {"b1": theta[:, 1] / d_hi, "b2": theta[:, 2] / d_hi**2}
    else:
        named = {"b0": theta[:, 0]} | SHAPES[name].public(theta[:, 1], theta[:, 2:], d_hi)
    return named | {"er": s}


def fit_concentration_response(expression: pd.DataFrame, doses: pd.Series, *,
                               control_sd: pd.Series | None = None,
                               cutoff: pd.Series | None = None, bmr_sd: float = BMR_SD,
                               cutoff_bmad: float = CUTOFF_BMAD, errors: str = "t4",
                               models: tuple[str, ...] = MODELS) -> pd.DataFrame:
    """Fit the tcplfit2 models per feature; choose by AIC; BMD, BMDL/BMDU and hit call.

    Everything is defined in the module docstring.

    Parameters
    ----------
    expression
        Features (genes or pathway/gene-set scores) x wells on a log scale: one compound's
        wells at all its doses plus the plate's control wells.
    doses
        Dose per well (index: the well names of ``expression``), natural scale, controls at
        0. At least 1 control well (2 unless both ``control_sd`` and ``cutoff`` are given)
        and 3 distinct nonzero doses.
    control_sd
        onesd per feature (e.g. pooled over plates); by default the sample SD of the control
        wells.
    cutoff
        Hit-call cutoff per feature (response units); by default ``cutoff_bmad`` x BMAD of
        the control wells.
    bmr_sd
        BMR in control SDs (tcplfit2's bmr_scale, 1.349).
    cutoff_bmad
        The cutoff in BMADs (3, as ToxCast and HTTr).
    errors
        "t4" (tcplfit2's default) or "normal".
    models
        Models to fit, from ``MODELS``; the constant model is always fitted (it anchors the
        hit call and the p-value).

    Returns
    -------
    One row per feature (index: the features), the columns of the module docstring:
    best_model, fit_ok, direction, bmr, bmd, bmdl, bmdu, ac50, top, hitcall, ec50,
    hill_slope, max_effect, r2, pvalue, fit_pvalue, aic_<model> per model fitted, loglik,
    control_mean, control_sd, cutoff, lowest_dose, highest_dose, params (JSON),
    qc_flags.
    """
    if errors not in ERRORS:
        raise ValueError(f"errors must be one of {', '.join(ERRORS)}, not {errors!r}")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(map(str, unknown))}; choose from "
                         f"{', '.join(MODELS)}")
    models = tuple(m for m in MODELS if m in set(models) | {"constant"})
    if not (np.isfinite(bmr_sd) and bmr_sd > 0):
        raise ValueError(f"bmr_sd must be a positive number, not {bmr_sd}")
    y, dose = _check_inputs(expression, doses, control_sd)
    n_controls = int(np.sum(dose == 0))
    if cutoff is None and n_controls < 2:
        raise ValueError("only 1 control well (dose 0): the cutoff (BMAD) needs at least 2, "
                         "or pass cutoff")
    if cutoff is not None:
        cut = cutoff.reindex(expression.index).to_numpy(float)
        if not np.all(np.isfinite(cut) & (cut >= 0)):
            raise ValueError("cutoff must have a finite value >= 0 for every feature")
    design = _Design.of(dose)
    controls = y[:, design.control]
    sd = (control_sd.reindex(expression.index).to_numpy(float) if control_sd is not None
          else controls.std(axis=1, ddof=1))
    if cutoff is None:
        bmad = MAD_SCALE * np.median(
            np.abs(controls - np.median(controls, axis=1, keepdims=True)), axis=1)
        cut = cutoff_bmad * bmad
    errs = _Errors(errors)
    size = max(64, FIT_CELLS // y.shape[1])
    blocks = [_fit_block(y[i:i + size], design, sd[i:i + size], cut[i:i + size], bmr_sd,
                         errs, models)
              for i in range(0, len(y), size)]
    out = pd.DataFrame({key: np.concatenate([b[key] for b in blocks]) if blocks else []
                        for key in _columns(models)}, index=expression.index)
    return out[_columns(models)]


def _fit_block(y, design, sd, cut, bmr_sd, errs, models):
    """All of fit_concentration_response for one block of features."""
    n_genes, n_wells = y.shape
    control_mean = y[:, design.control].mean(axis=1)
    bmr = bmr_sd * sd
    treated = y[:, ~design.control] - control_mean[:, None]
    medians = np.column_stack([np.median(y[:, design.level_of == i], axis=1)
                               for i in range(len(design.levels))]) - control_mean[:, None]
    # tcplfit2 fits curves only when a per-dose median reaches the cutoff
    gate = np.flatnonzero((np.abs(medians) >= cut[:, None]).any(axis=1))
    tss = np.sum((y - y.mean(axis=1, keepdims=True)) ** 2, axis=1)
    floor = 1e-12 * tss + 1e-300
    s_floor = np.log(SCALE_FLOOR * np.sqrt(tss / n_wells) + 1e-150)

    a0 = medians[np.arange(n_genes), np.argmax(np.abs(medians), axis=1)]
    amp_bounds = {"response": TOP_BOUND * np.maximum(np.abs(treated).max(axis=1), 1e-12),
                  "median": TOP_BOUND * np.where(a0 == 0, 0.01, np.abs(a0)),
                  "none": np.full(n_genes, np.inf)}

    fits = _fit_all(y, design, errs, s_floor, amp_bounds, gate, models)
    aic = {m: 2 * PARAM_COUNT[m] + 2 * fits[m][1] for m in models}
    best_idx, hit_idx, has_fit = _choose(aic, models)
    best_model = np.array(models)[best_idx]

    out = {key: np.full(n_genes, np.nan) for key in
           ("bmd", "bmdl", "bmdu", "ac50", "top", "max_effect", "r2", "pvalue", "fit_pvalue",
            "loglik", "ec50", "hill_slope")}
    direction = np.full(n_genes, "none", dtype=object)
    params = np.empty(n_genes, dtype=object)
    biphasic = np.zeros(n_genes, dtype=bool)

    pure = np.zeros(n_genes)
    for group in range(design.n_groups):
        cols = y[:, design.groups == group]
        pure += np.sum((cols - cols.mean(axis=1, keepdims=True)) ** 2, axis=1)
    df_pure = n_wells - design.n_groups

    bound_groups, bound_rows, bound_x, bound_sign = {}, [], [], []
    for i, name in enumerate(models):
        rows = np.flatnonzero(best_idx == i)
        if not len(rows):
            continue
        theta, nll, s = (part[rows] for part in fits[name])
        rss = np.sum((y[rows] - _fitted(name, theta, design.x)) ** 2, axis=1)
        out["r2"][rows] = 1 - rss / np.maximum(tss[rows], 1e-300)
        out["loglik"][rows] = -nll
        out["fit_pvalue"][rows] = _lack_of_fit_p(rss, pure[rows], df_pure, design.n_groups,
                                                 PARAM_COUNT[name] - 1, 100 * floor[rows])
        named = _public_params(name, theta, s, design.d_hi)
        params[rows] = [json.dumps({k: float(v[j]) for k, v in named.items()})
                        for j in range(len(rows))]
        top, ac50 = _top_ac50(name, theta, design)
        out["top"][rows], out["ac50"][rows] = top, ac50 * design.d_hi
        if name == "constant":
            out["max_effect"][rows] = 0.0
            continue
        out["max_effect"][rows] = _response_at(name, theta, np.ones(len(rows)))
        direction[rows] = np.where(top > 0, "up", np.where(top < 0, "down", "none"))
        out["pvalue"][rows] = chi2.sf(2 * (fits["constant"][1][rows] - nll),
                                      PARAM_COUNT[name] - PARAM_COUNT["constant"])
        biphasic[rows] = _turns(name, theta, bmr[rows])
        bmd_x, sign = _bmd_x(name, theta, bmr[rows])
        bmd_x[bmd_x > BMD_EXTRAPOLATION] = np.nan
        out["bmd"][rows] = bmd_x * design.d_hi
    # BMDL/BMDU: the union of the intervals of the chosen model and of every other model
    # within SUPPORT_DELTA_AIC of it (each its own profile likelihood), so that the
    # interval carries the uncertainty of the model choice too.
    curve = (best_model != "constant") & np.isfinite(out["bmd"])
    best_aic = np.column_stack([aic[m] for m in models])[np.arange(n_genes), best_idx]
    for i, name in enumerate(models):
        if name == "constant":
            continue
        with np.errstate(invalid="ignore"):
            rows = np.flatnonzero(curve & ((best_idx == i)
                                           | (aic[name] <= best_aic + SUPPORT_DELTA_AIC)))
        if not len(rows):
            continue
        theta = fits[name][0][rows]
        bmd_x, sign = _bmd_x(name, theta, bmr[rows])
        ok = np.isfinite(bmd_x) & (bmd_x <= BMD_EXTRAPOLATION)
        if ok.any():
            bound_groups[name] = theta[ok]
            bound_rows.append(rows[ok])
            bound_x.append(bmd_x[ok])
            bound_sign.append(sign[ok])
    if bound_groups:
        rows = np.concatenate(bound_rows)
        low, high = _bmd_bounds(bound_groups, _fits_nll(fits, bound_groups, rows), y[rows],
                                design, errs, s_floor[rows], np.concatenate(bound_x),
                                np.concatenate(bound_sign), bmr[rows])
        # a bound not reached (NaN) by any supported model leaves the union open
        low = pd.Series(np.where(np.isnan(low), -np.inf, low)).groupby(rows).min()
        high = pd.Series(np.where(np.isnan(high), np.inf, high)).groupby(rows).max()
        out["bmdl"][low.index] = np.where(np.isfinite(low), low, np.nan) * design.d_hi
        out["bmdu"][high.index] = np.where(np.isfinite(high), high, np.nan) * design.d_hi

    hitcall = _hit_calls(fits, aic, models, hit_idx, has_fit, y, cut, design, errs, s_floor)

    if "hill" in models:
        hill = fits["hill"][0]
        ga = design.d_hi * 10.0 ** hill[:, 2]
        with np.errstate(invalid="ignore"):
            usable = (aic["hill"] < aic["constant"]) & (ga >= design.d_lo) & (ga <= design.d_hi)
        out["ec50"] = np.where(usable, ga, np.nan)
        out["hill_slope"] = np.where(usable, hill[:, 3], np.nan)

    curve = best_model != "constant"
    bmd = out["bmd"]
    with np.errstate(invalid="ignore"):
        fit_ok = curve & (out["fit_pvalue"] > MIN_FIT_P) & np.isfinite(bmd)
        raised = {
            "bmd_above_highest_dose": bmd > design.d_hi,
            "bmd_below_lowest_dose": bmd < design.d_lo,
            "bmr_not_reached": curve & (bmr > 0) & np.isnan(bmd),
            "bmdl_not_reached": np.isfinite(bmd) & np.isnan(out["bmdl"]),
            "bmdu_not_reached": np.isfinite(bmd) & np.isnan(out["bmdu"]),
            "lack_of_fit": curve & (out["fit_pvalue"] <= MIN_FIT_P),
            "biphasic": curve & biphasic,
            "control_sd_zero": ~(bmr > 0),
        }
    flags = [[] for _ in range(n_genes)]
    for name in FLAGS:
        for g in np.flatnonzero(raised[name]):
            flags[g].append(name)

    return {
        "best_model": best_model, "fit_ok": fit_ok, "direction": direction, "bmr": bmr,
        **out, "hitcall": hitcall, **{f"aic_{m}": aic[m] for m in models},
        "control_mean": control_mean, "control_sd": sd, "cutoff": cut,
        "lowest_dose": np.full(n_genes, design.d_lo),
        "highest_dose": np.full(n_genes, design.d_hi), "params": params,
        "qc_flags": np.array([";".join(f) for f in flags], dtype=object),
    }


def _fit_all(y, design, errs, s_floor, amp_bounds, gate, models):
    """{model: (params, nll, er)} per gene: the constant for all, the others for the genes
    through the gate (NaN for the rest)."""
    n_genes = len(y)
    fits = {"constant": _fit_models(["constant"], y, design, errs, s_floor,
                                    amp_bounds)["constant"]}
    found = {}
    if len(gate):
        bounds = {key: value[gate] for key, value in amp_bounds.items()}
        # Nested models start also from the fit of the model they nest (the better start
        # by likelihood is refined), so they never fit worse than it: gnls nests hill
        # (la -> infinity), exp5 exp4 (p = 1), exp3 pow and exp2 poly1 (b -> infinity).
        first = [m for m in models[1:] if m not in NESTS or NESTS[m] not in models]
        if first:
            found = _fit_models(first, y[gate], design, errs, s_floor[gate], bounds)
        second = [m for m in models[1:] if m not in first]
        if second:
            starts = {m: _nested_start(m, found[NESTS[m]][0]) for m in second}
            found |= _fit_models(second, y[gate], design, errs, s_floor[gate], bounds,
                                 starts)
    for name in models[1:]:
        k = _variant_size(name, "full")
        theta, nll, s = (np.full((n_genes, k), np.nan), np.full(n_genes, np.nan),
                         np.full(n_genes, np.nan))
        if name in found:
            theta[gate], nll[gate], s[gate] = found[name]
        fits[name] = (theta, nll, s)
    return fits


def _choose(aic, models):
    """Per gene: the index (into ``models``) of the lowest AIC, the constant included, and
    of the best non-constant model (tcplfit2's fit_method; ``has_fit`` False when none was
    fitted). poly2 competes only if it beats poly1 by the likelihood-ratio test
    (tcplfit2's nestselect), else poly1 stands for both."""
    selectable = dict(aic)
    if "poly1" in models and "poly2" in models:
        a1, a2 = aic["poly1"], aic["poly2"]
        with np.errstate(invalid="ignore"):
            keep2 = (a2 <= a1) & (chi2.sf(a1 - a2 + 2, 1) < NEST_P)
        selectable["poly2"] = np.where(keep2, a2, np.nan)
        selectable["poly1"] = np.where(keep2, np.nan, a1)
    table = np.column_stack([np.where(np.isnan(selectable[m]), np.inf, selectable[m])
                             for m in models])
    best_idx = np.argmin(table, axis=1)
    if len(models) == 1:
        return best_idx, np.zeros(len(table), dtype=int), np.zeros(len(table), dtype=bool)
    hit_idx = 1 + np.argmin(table[:, 1:], axis=1)
    return best_idx, hit_idx, np.isfinite(table[np.arange(len(table)), hit_idx])


def _hit_calls(fits, aic, models, hit_idx, has_fit, y, cut, design, errs, s_floor):
    """tcplfit2's continuous hit call P1 P2 P3 on each gene's best non-constant model; 0
    where none was fitted."""
    hitcall = np.zeros(len(y))
    groups, all_rows, tops = {}, [], []
    p12 = np.zeros(len(y))
    for i, name in enumerate(models[1:], start=1):
        rows = np.flatnonzero((hit_idx == i) & has_fit)
        if not len(rows):
            continue
        theta, _, s = (part[rows] for part in fits[name])
        top, _ = _top_ac50(name, theta, design)
        with np.errstate(over="ignore"):
            p1 = 1 - expit((aic[name][rows] - aic["constant"][rows]) / 2)
        p12[rows] = p1 * _exceed_probability(y[rows], theta[:, 0], s, top, cut[rows], design,
                                             errs)
        groups[name] = theta
        all_rows.append(rows)
        tops.append(top)
    if groups:
        rows = np.concatenate(all_rows)
        p3 = _top_probability(groups, _fits_nll(fits, groups, rows), np.concatenate(tops),
                              cut[rows], y[rows], design, errs, s_floor[rows])
        calls = p12[rows] * p3
        hitcall[rows] = np.where(np.isnan(calls), 0.0, calls)
    return hitcall


def _fits_nll(fits, groups, rows):
    """The maximum-likelihood nll of each row's model, rows in the order of ``groups``."""
    parts, start = [], 0
    for name, theta in groups.items():
        parts.append(fits[name][1][rows[start:start + len(theta)]])
        start += len(theta)
    return np.concatenate(parts)


def fit_groups(groups: dict[str, tuple[pd.DataFrame, pd.Series]], *, n_jobs: int = 1,
               **options) -> dict[str, pd.DataFrame | str]:
    """:func:`fit_concentration_response` of independent sets (a screen's compounds), in
    ``n_jobs`` processes when there are several sets (the fits are single-threaded numpy).

    Parameters
    ----------
    groups
        Name -> (expression, doses) of one set.
    n_jobs
        Worker processes (joblib's loky); 1 fits in this process.
    options
        Keyword arguments of :func:`fit_concentration_response`.

    Returns
    -------
    Name -> its fits, or the message of the ``ValueError`` that refused it (fewer than 3
    doses, no controls...), in the order of ``groups``.
    """
    from joblib import Parallel, delayed

    def one(expression: pd.DataFrame, doses: pd.Series) -> pd.DataFrame | str:
        try:
            return fit_concentration_response(expression, doses, **options)
        except ValueError as err:
            return str(err)

    jobs = max(1, min(n_jobs, len(groups)))
    # largest sets first, so that the workers finish together
    order = sorted(groups, key=lambda name: -groups[name][0].size)
    found = Parallel(n_jobs=jobs)(delayed(one)(*groups[name]) for name in order) \
        if jobs > 1 else [one(*groups[name]) for name in order]
    by_name = dict(zip(order, found))
    return {name: by_name[name] for name in groups}
