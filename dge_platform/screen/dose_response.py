"""Dose-response modelling of a transcriptomic screen: per-gene benchmark doses (BMDs) and
EC50s, BMDExpress-style, and a transcriptional point of departure (tPOD) per compound.

Definitions (quoted by docs/study-format/screen.md)
----------------------------------
Dose axis
    Doses are in the units of the plate map; controls (vehicle) are dose 0. The Hill model
    is fitted on dose itself (it is defined at 0). The linear and exponential models are
    fitted on the shifted log dose x = log10(1 + d / d0) with d0 = lowest nonzero dose / 10:
    x = 0 for controls and x ~ log10(d / d0) across the tested doses. BMDExpress fits
    these models on untransformed dose, which for the log-spaced doses of a screen gives
    the lowest doses almost no leverage and lines drawn through the top dose; the shift
    places the controls one decade below the lowest dose instead of at minus infinity.
Models (expression on a log2 scale, f(0) = response of the controls)
    constant  f = a                                          (1 parameter, the null)
    linear    f = a + b x                                    (2)
    exp       f = a + b (exp(c x) - 1), |c| x_max <= 10      (3) - BMDExpress Exp2-like
              (accelerating, c > 0) and Exp4-like (saturating, c < 0) shapes, written
              additively because the response is already log2
    hill      f = bottom + top d^n / (ec50^n + d^n), n in [0.5, 8],
              ec50 in [lowest nonzero dose / 10, highest dose x 10]          (4)
              bottom is free (the control wells pin it down), top is signed
Model choice
    Each model is fitted by least squares (equivalently Gaussian maximum likelihood) and
    scored by AIC = -2 log L + 2 (k + 1). The non-constant model with the lowest AIC is
    chosen only if it beats the constant model both by AIC and by the F-test of nested
    models, F = ((RSS0 - RSS) / (k - 1)) / (RSS / (N - k)), with p < 0.05 (BMDExpress:
    nested-model tests, then AIC). Otherwise best_model is "constant" and there is no BMD.
    The F-test is approximate for the nonlinear models, and as the best of three models is
    tested it passes ~7% (not 5%) of pure-noise genes; the input genes are meant to be
    already called responsive at some dose.
    ``fit_ok`` additionally requires the goodness-of-fit (lack-of-fit F-test against the
    replicate wells at each dose) p > 0.1, the NTP 2018 filter.
BMR and BMD
    BMR = ``bmr_sd`` x SD of the control wells of the gene (sample SD; 1 SD by default, as
    in the NTP 2018 transcriptomic BMD guidance). The BMD is the dose at which the chosen
    model departs from its control level by the BMR: |f(BMD) - f(0)| = BMR. All models are
    monotone, so the BMD is unique and solved in closed form. BMD is NaN when the model
    never reaches the BMR up to 10 x the highest dose (the extrapolation allowed for the
    EC50); BMDs above the highest dose are kept but flagged ``bmd_above_highest_dose``,
    BMDs below the lowest nonzero dose flagged ``bmd_below_lowest_dose``.
EC50
    The ec50 parameter of the Hill fit: the dose of half the maximal Hill response. Reported
    whatever model is chosen, but only when the Hill fit itself beats the constant model
    (F-test p < 0.05) and the EC50 lies within the tested nonzero doses; otherwise NaN
    (flagged ``ec50_outside_tested_doses`` when the fit is significant but the EC50 is not
    within the doses).
tPOD
    See ``compound_potency``: median BMD of the 20 most sensitive qualifying genes.

The fits are vectorized across genes: the nonlinear parameters (Hill log10 ec50 and n,
exponential rate c) are profiled over a grid with closed-form least squares for the linear
ones, then refined jointly by a few vectorized Levenberg-Marquardt steps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import f as f_dist

MODELS = ("constant", "linear", "exp", "hill")
N_PARAMS = {"constant": 1, "linear": 2, "exp": 3, "hill": 4}
ALPHA = 0.05              # trend test of the chosen model vs the constant model
MIN_FIT_P = 0.1           # goodness-of-fit p-value a fit must exceed (NTP 2018)
HILL_N_BOUNDS = (0.5, 8.0)
EC50_EXTENSION = 10.0     # EC50 searched, and BMDs extrapolated, one decade beyond the doses
LOG_DOSE_SHIFT = 10.0     # controls sit at lowest dose / 10 on the log-dose axis
EXP_MAX_RATE = 10.0       # |c| x_max; steeper exponentials are steps at the top dose
LM_ITERATIONS = 60
GENE_BLOCK = 4096         # genes per block of the grid profile (bounds memory)
LN10 = np.log(10.0)

DOSE_RESPONSE_COLUMNS = [
    "gene_id", "best_model", "fit_ok", "direction", "bmr", "bmd", "ec50", "hill_slope",
    "max_effect", "r2", "pvalue", "fit_pvalue", "aic_constant", "aic_linear", "aic_exp",
    "aic_hill", "control_mean", "control_sd", "lowest_dose", "highest_dose", "qc_flags",
]
POTENCY_COLUMNS = ["compound", "n_genes_fitted", "n_genes_with_bmd", "tpod",
                   "tpod_gene_count", "tpod_below_lowest_dose", "lowest_bmd", "median_ec50",
                   "reason"]


# --- model curves and Jacobians (params: genes x k, returns genes x wells and x wells x k)

def _hill_basis(log_ec50, n, dose):
    """d^n / (ec50^n + d^n), written as a logistic in log dose; 0 at dose 0."""
    with np.errstate(divide="ignore"):
        log_dose = np.log10(dose)
    h = expit(-np.asarray(n)[..., None] * (np.asarray(log_ec50)[..., None] - log_dose) * LN10)
    return np.where(dose > 0, h, 0.0), log_dose


def _hill(params, dose):
    bottom, top, log_ec50, n = params.T
    h, log_dose = _hill_basis(log_ec50, n, dose)
    fitted = bottom[:, None] + top[:, None] * h
    slope = -top[:, None] * h * (1 - h) * LN10
    gap = np.where(dose > 0, log_ec50[:, None] - log_dose, 0.0)
    jac = np.stack([np.ones_like(h), h, slope * n[:, None], slope * gap], axis=-1)
    return fitted, jac


def _exp(params, x):
    a, b, c = params.T
    e = np.exp(c[:, None] * x)
    fitted = a[:, None] + b[:, None] * (e - 1)
    jac = np.stack([np.ones_like(e), e - 1, b[:, None] * x * e], axis=-1)
    return fitted, jac


def _profile(y, bases):
    """Least squares of y (genes x wells) on [1, basis] for each basis row; best per gene.

    Returns the index of the best basis and its intercept and slope per gene.
    """
    yc = y - y.mean(axis=1, keepdims=True)
    bc = bases - bases.mean(axis=1, keepdims=True)
    sbb = np.sum(bc**2, axis=1)
    best = np.empty(len(y), dtype=int)
    for start in range(0, len(y), GENE_BLOCK):
        sby = yc[start:start + GENE_BLOCK] @ bc.T
        best[start:start + GENE_BLOCK] = np.argmax(sby**2 / sbb, axis=1)
    slope = np.einsum("gw,gw->g", yc, bc[best]) / sbb[best]
    intercept = y.mean(axis=1) - slope * bases[best].mean(axis=1)
    return best, intercept, slope


def _levenberg_marquardt(model, params, y, lower, upper):
    """Vectorized Levenberg-Marquardt (Marquardt scaling), steps projected onto the bounds.

    ``model(params)`` returns fitted values and the Jacobian. Genes drop out once a step
    gains nothing (relative RSS change < 1e-10) or the damping has grown until steps vanish.
    """
    params = params.copy()
    fitted, jac = model(params)
    rss = np.sum((y - fitted) ** 2, axis=1)
    lam = np.full(len(y), 1e-3)
    eye = np.eye(params.shape[1])
    active = np.arange(len(y))
    for _ in range(LM_ITERATIONS):
        j, r = jac[active], y[active] - fitted[active]
        jt = j.transpose(0, 2, 1)
        jtj, jtr = jt @ j, (jt @ r[..., None])
        diag = np.einsum("gii->gi", jtj)
        damping = lam[active, None] * (diag + 1e-9 * diag.max(axis=1, keepdims=True) + 1e-300)
        step = np.linalg.solve(jtj + damping[:, :, None] * eye, jtr)[..., 0]
        trial = np.clip(params[active] + step, lower, upper)
        trial_fitted, trial_jac = model(trial)
        trial_rss = np.sum((y[active] - trial_fitted) ** 2, axis=1)
        better = trial_rss < rss[active]
        gain = (rss[active] - trial_rss) / np.maximum(rss[active], 1e-300)
        took = active[better]
        params[took], fitted[took], jac[took] = (trial[better], trial_fitted[better],
                                                 trial_jac[better])
        rss[took] = trial_rss[better]
        lam[active] = np.clip(np.where(better, lam[active] / 3, lam[active] * 4), 1e-12, 1e12)
        done = (better & (gain < 1e-10)) | (lam[active] > 1e8) | (rss[active] < 1e-300)
        active = active[~done]
        if not len(active):
            break
    return params, rss


# --- input checks

def _check_inputs(expression: pd.DataFrame, doses: pd.Series,
                  control_sd: pd.Series | None) -> tuple[np.ndarray, np.ndarray]:
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


# --- fitting

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


def _bmd(model, params, bmr, d0):
    """Dose where |f(d) - f(0)| = bmr for each gene's chosen model (NaN if never)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if model == "linear":
            x = bmr / np.abs(params[:, 1])
            return d0 * np.expm1(x * LN10)
        if model == "exp":
            t = bmr / np.abs(params[:, 1])
            c = params[:, 2]
            x = np.where(c > 0, np.log1p(t), np.log1p(-np.minimum(t, 1.0))) / c
            return np.where(np.isfinite(x) & (x > 0), d0 * np.expm1(x * LN10), np.nan)
        if model == "hill":
            u = bmr / np.abs(params[:, 1])
            d = 10 ** params[:, 2] * (u / (1 - u)) ** (1 / params[:, 3])
            return np.where(u < 1, d, np.nan)
    raise ValueError(model)


def fit_dose_response(expression: pd.DataFrame, doses: pd.Series, *,
                      control_sd: pd.Series | None = None, bmr_sd: float = 1.0) -> pd.DataFrame:
    """Fit constant, linear, exponential and Hill models per gene; BMD, EC50 and direction.

    Definitions of the models, model choice, BMR, BMD and EC50 are in the module docstring.

    Parameters
    ----------
    expression
        Genes x wells on a log2 scale (VST or log2 normalized counts): one compound's wells
        at all its doses plus the plate's control wells.
    doses
        Dose per well (index: the well names of ``expression``); controls at dose 0. At least
        1 control well (2 without ``control_sd``) and 3 distinct nonzero doses are required.
    control_sd
        SD of the control wells per gene (e.g. pooled over plates); by default the sample SD
        (ddof 1) of this call's control wells.
    bmr_sd
        The benchmark response in control SDs (1, as NTP 2018).

    Returns
    -------
    One row per gene: gene_id, best_model (constant, linear, exp or hill), fit_ok, direction
    (up/down, sign of max_effect; none when it is 0), bmr, bmd, ec50 and hill_slope (of the
    Hill fit), max_effect (f(highest dose) - f(0), log2), r2, pvalue (F-test vs the constant
    model), fit_pvalue (lack-of-fit goodness of fit), aic_<model>, control_mean, control_sd,
    lowest_dose and highest_dose (nonzero), qc_flags (';'-separated: control_sd_zero,
    bmr_not_reached, bmd_above_highest_dose, bmd_below_lowest_dose,
    ec50_outside_tested_doses, lack_of_fit). When best_model is constant, direction,
    max_effect, r2, pvalue and fit_pvalue describe the lowest-AIC non-constant model, which
    did not pass.
    """
    y, dose = _check_inputs(expression, doses, control_sd)
    n_genes, n_wells = y.shape
    nonzero = dose[dose > 0]
    d_low, d_high = nonzero.min(), nonzero.max()
    d0 = d_low / LOG_DOSE_SHIFT
    x = np.log10(1 + dose / d0)
    x_max = x.max()

    controls = y[:, dose == 0]
    control_mean = controls.mean(axis=1)
    sd = (control_sd.reindex(expression.index).to_numpy(float) if control_sd is not None
          else controls.std(axis=1, ddof=1))
    bmr = bmr_sd * sd

    tss = np.sum((y - y.mean(axis=1, keepdims=True)) ** 2, axis=1)
    # Noise-free data fit exactly; a floor keeps log(RSS) finite so AIC falls back on the
    # parameter count.
    floor = 1e-12 * tss + 1e-300
    params, rss = {}, {"constant": tss}

    # linear: closed form
    _, a, b = _profile(y, x[None, :])
    params["linear"] = np.column_stack([a, b])
    rss["linear"] = np.sum((y - a[:, None] - b[:, None] * x) ** 2, axis=1)

    # exponential: profile the rate c on a grid, then refine
    rates = np.linspace(-EXP_MAX_RATE, EXP_MAX_RATE, 41)
    rates = rates[rates != 0] / x_max
    best, a, b = _profile(y, np.expm1(rates[:, None] * x))
    bound = EXP_MAX_RATE / x_max
    params["exp"], rss["exp"] = _levenberg_marquardt(
        lambda p: _exp(p, x), np.column_stack([a, b, rates[best]]), y,
        np.array([-np.inf, -np.inf, -bound]), np.array([np.inf, np.inf, bound]))

    # Hill: profile (log10 ec50, n) on a grid, then refine
    lo, hi = np.log10(d_low / EC50_EXTENSION), np.log10(d_high * EC50_EXTENSION)
    grid_ec50 = np.linspace(lo, hi, int(np.ceil((hi - lo) / 0.1)) + 1)
    grid_n = np.geomspace(*HILL_N_BOUNDS, 9)
    ge, gn = (g.ravel() for g in np.meshgrid(grid_ec50, grid_n))
    best, bottom, top = _profile(y, _hill_basis(ge, gn, dose)[0])
    params["hill"], rss["hill"] = _levenberg_marquardt(
        lambda p: _hill(p, dose), np.column_stack([bottom, top, ge[best], gn[best]]), y,
        np.array([-np.inf, -np.inf, lo, HILL_N_BOUNDS[0]]),
        np.array([np.inf, np.inf, hi, HILL_N_BOUNDS[1]]))

    rss = {m: np.maximum(r, floor) for m, r in rss.items()}
    aic = {m: n_wells * (np.log(2 * np.pi * rss[m] / n_wells) + 1) + 2 * (N_PARAMS[m] + 1)
           for m in MODELS}
    pvalue = {}
    for m in MODELS[1:]:
        k = N_PARAMS[m]
        with np.errstate(divide="ignore", invalid="ignore"):
            stat = ((rss["constant"] - rss[m]) / (k - 1)) / (rss[m] / (n_wells - k))
        pvalue[m] = np.where(rss["constant"] - rss[m] > floor, f_dist.sf(stat, k - 1,
                                                                        n_wells - k), 1.0)

    # Lowest-AIC non-constant candidate; ties go to the simpler model (argmin is first).
    candidates = list(MODELS[1:])
    stacked = np.column_stack([aic[m] for m in candidates])
    pick = np.argmin(stacked, axis=1)
    rows = np.arange(n_genes)
    cand_aic = stacked[rows, pick]
    cand_p = np.column_stack([pvalue[m] for m in candidates])[rows, pick]
    responsive = (cand_p < ALPHA) & (cand_aic < aic["constant"])
    best_model = np.where(responsive, np.array(candidates)[pick], "constant")

    groups, group_index = np.unique(dose, return_inverse=True)
    group_means = np.stack([y[:, group_index == i].mean(axis=1) for i in range(len(groups))],
                           axis=1)
    pure_error = np.sum((y - group_means[:, group_index]) ** 2, axis=1)
    df_pure = n_wells - len(groups)

    bmd = np.full(n_genes, np.nan)
    max_effect = np.empty(n_genes)
    fit_p = np.full(n_genes, np.nan)
    for i, m in enumerate(candidates):
        chosen = pick == i
        p = params[m][chosen]
        if m == "linear":
            max_effect[chosen] = p[:, 1] * x_max
        elif m == "exp":
            max_effect[chosen] = p[:, 1] * np.expm1(p[:, 2] * x_max)
        else:
            top_dose = _hill_basis(p[:, 2], p[:, 3], np.array([d_high]))[0][:, 0]
            max_effect[chosen] = p[:, 1] * top_dose
        fit_p[chosen] = _lack_of_fit_p(rss[m][chosen], pure_error[chosen], df_pure,
                                       len(groups), N_PARAMS[m], 100 * floor[chosen])
        bmd[chosen] = _bmd(m, p, bmr[chosen], d0)
    bmd[~responsive | ~(bmr > 0)] = np.nan
    bmd[bmd > d_high * EC50_EXTENSION] = np.nan
    r2 = 1 - np.column_stack([rss[m] for m in candidates])[rows, pick] / np.maximum(tss, 1e-300)
    fit_ok = responsive & ~(fit_p <= MIN_FIT_P)

    hill_ec50 = 10 ** params["hill"][:, 2]
    hill_ok = pvalue["hill"] < ALPHA
    in_range = (hill_ec50 >= d_low) & (hill_ec50 <= d_high)
    ec50 = np.where(hill_ok & in_range, hill_ec50, np.nan)
    hill_slope = np.where(hill_ok & in_range, params["hill"][:, 3], np.nan)

    flags = [[] for _ in range(n_genes)]
    for mask, text in [
        (responsive & ~(bmr > 0), "control_sd_zero"),
        (responsive & (bmr > 0) & np.isnan(bmd), "bmr_not_reached"),
        (bmd > d_high, "bmd_above_highest_dose"),
        (bmd < d_low, "bmd_below_lowest_dose"),
        (hill_ok & ~in_range, "ec50_outside_tested_doses"),
        (responsive & (fit_p <= MIN_FIT_P), "lack_of_fit"),
    ]:
        for g in np.flatnonzero(mask):
            flags[g].append(text)

    out = pd.DataFrame({
        "gene_id": expression.index.to_numpy(), "best_model": best_model, "fit_ok": fit_ok,
        "direction": np.select([max_effect > 0, max_effect < 0], ["up", "down"], "none"),
        "bmr": bmr, "bmd": bmd,
        "ec50": ec50, "hill_slope": hill_slope, "max_effect": max_effect, "r2": r2,
        "pvalue": cand_p, "fit_pvalue": fit_p,
        **{f"aic_{m}": aic[m] for m in MODELS},
        "control_mean": control_mean, "control_sd": sd, "lowest_dose": d_low,
        "highest_dose": d_high, "qc_flags": [";".join(f) for f in flags],
    })
    return out[DOSE_RESPONSE_COLUMNS]


def compound_potency(dose_response: pd.DataFrame, *, n_sensitive: int = 20,
                     min_genes: int = 5) -> pd.DataFrame:
    """Transcriptional point of departure (tPOD) per compound.

    tPOD = median BMD of the ``n_sensitive`` (20) genes with the lowest BMDs among the
    qualifying genes: fit_ok (a non-constant model chosen with p < 0.05 and goodness of
    fit p > 0.1) and a BMD no higher than the highest tested dose. This is the "median
    of the 20 most sensitive genes" tPOD of Farmahin et al. 2017 (Arch Toxicol 91:2045);
    with fewer qualifying genes, all of them are used. Below ``min_genes`` (5) qualifying
    genes the tPOD is NaN and ``reason`` says why. BMDs below the lowest tested dose count
    (excluding them would discard a potent compound's most sensitive genes) but are
    extrapolations between the controls and the lowest dose, so a tPOD below the lowest
    dose is flagged (``tpod_below_lowest_dose``): read it as "below the tested range".

    Parameters
    ----------
    dose_response
        Concatenated ``fit_dose_response`` outputs with a ``compound`` column.

    Returns
    -------
    One row per compound: compound, n_genes_fitted, n_genes_with_bmd (fit_ok with a BMD,
    in range or not), tpod, tpod_gene_count (genes the median is over), lowest_bmd (of the
    qualifying genes), median_ec50 (of the tPOD genes with an EC50),
    tpod_below_lowest_dose, reason ('' when the tPOD is defined).
    """
    needed = {"compound", "fit_ok", "bmd", "ec50", "lowest_dose", "highest_dose"}
    absent = needed - set(dose_response.columns)
    if absent:
        raise ValueError(f"dose_response lacks column(s) {', '.join(sorted(absent))}; pass "
                         "fit_dose_response outputs with a compound column")
    rows = []
    for compound, table in dose_response.groupby("compound", sort=True):
        with_bmd = table[table["fit_ok"].astype(bool) & table["bmd"].notna()]
        qualifying = with_bmd[with_bmd["bmd"] <= with_bmd["highest_dose"]]
        sensitive = qualifying.nsmallest(n_sensitive, "bmd")
        enough = len(qualifying) >= min_genes
        rows.append({
            "compound": compound, "n_genes_fitted": len(table),
            "n_genes_with_bmd": len(with_bmd),
            "tpod": float(sensitive["bmd"].median()) if enough else np.nan,
            "tpod_gene_count": len(sensitive) if enough else 0,
            "tpod_below_lowest_dose": bool(enough and sensitive["bmd"].median()
                                           < table["lowest_dose"].min()),
            "lowest_bmd": float(qualifying["bmd"].min()) if len(qualifying) else np.nan,
            "median_ec50": float(sensitive["ec50"].median()) if enough else np.nan,
            "reason": "" if enough else (
                f"only {len(qualifying)} gene(s) with fit_ok and a BMD within the tested "
                f"doses; the tPOD needs at least {min_genes}"),
        })
    return pd.DataFrame(rows, columns=POTENCY_COLUMNS)
