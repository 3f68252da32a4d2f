"""Dose-response fits: exact recovery on noise-free curves, planted EC50s under noise, model
choice against statsmodels, tPOD against an independent median, input errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from dge_platform.screen.dose_response import compound_potency, fit_dose_response

# An 8-point 3-fold dilution series topping out at 10 (uM), as in a DRUG-seq screen.
LEVELS = 10 * 3.0 ** -np.arange(8)[::-1]


def design(levels=LEVELS, replicates: int = 3, controls: int = 16) -> pd.Series:
    doses = np.concatenate([np.zeros(controls), np.repeat(levels, replicates)])
    return pd.Series(doses, index=[f"w{i:02d}" for i in range(len(doses))])


def hill(dose, ec50, n, top):
    """Hill response above the control level; 0 at dose 0."""
    dose = np.asarray(dose, dtype=float)
    ec50, n, top = (np.asarray(v, dtype=float)[:, None] for v in (ec50, n, top))
    with np.errstate(divide="ignore"):
        return top * np.where(dose > 0, 1 / (1 + (ec50 / dose) ** n), 0.0)


def frame(values, doses: pd.Series, prefix: str = "g") -> pd.DataFrame:
    return pd.DataFrame(values, index=[f"{prefix}{i}" for i in range(len(values))],
                        columns=doses.index)


def planted(n_genes: int, doses: pd.Series, seed: int, noise: float = 0.3,
            potency: float = 1.0):
    """Hill genes: |max log2FC| 1-3 up or down, slope 1-3, EC50 log-uniform within the
    doses, at least one dilution step (3-fold) inside either end, divided by ``potency``."""
    rng = np.random.default_rng(seed)
    levels = np.unique(doses[doses > 0])
    ec50 = 10 ** rng.uniform(np.log10(3 * levels.min()), np.log10(levels.max() / 3),
                             n_genes) / potency
    n = rng.uniform(1, 3, n_genes)
    top = rng.uniform(1, 3, n_genes) * rng.choice([-1, 1], n_genes)
    values = 8 + hill(doses, ec50, n, top) + rng.normal(0, noise, (n_genes, len(doses)))
    return frame(values, doses), ec50, n, top


def test_noise_free_hill_recovers_ec50_slope_and_analytic_bmd():
    doses = design(replicates=2, controls=8)
    ec50 = np.array([0.03, 0.2, 1.0, 3.0])
    n = np.array([0.8, 1.5, 2.5, 4.0])
    top = np.array([2.0, -1.5, 3.0, -1.0])
    expression = frame(7 + hill(doses, ec50, n, top), doses)
    sd = pd.Series(0.25, index=expression.index)
    out = fit_dose_response(expression, doses, control_sd=sd, bmr_sd=1.0)

    assert list(out["best_model"]) == ["hill"] * 4
    assert out["fit_ok"].all()
    np.testing.assert_allclose(out["ec50"], ec50, rtol=1e-6)
    np.testing.assert_allclose(out["hill_slope"], n, rtol=1e-6)
    # BMR = 1 x control SD; inverting f(d) - f(0) = top d^n / (ec50^n + d^n) at |.| = BMR.
    u = 0.25 / np.abs(top)
    np.testing.assert_allclose(out["bmd"], ec50 * (u / (1 - u)) ** (1 / n), rtol=1e-6)
    np.testing.assert_allclose(out["bmr"], 0.25)
    np.testing.assert_allclose(out["max_effect"], hill([10.0], ec50, n, top)[:, 0], rtol=1e-6)
    assert list(out["direction"]) == ["up", "down", "up", "down"]
    np.testing.assert_allclose(out["r2"], 1.0, atol=1e-9)
    # The first BMD (0.0026) is below the lowest dose (0.0046): kept, flagged.
    assert out["qc_flags"].tolist() == ["bmd_below_lowest_dose", "", "", ""]
    # bmr_sd scales the benchmark response.
    twice = fit_dose_response(expression, doses, control_sd=sd, bmr_sd=2.0)
    u2 = 0.5 / np.abs(top)
    np.testing.assert_allclose(twice["bmd"], ec50 * (u2 / (1 - u2)) ** (1 / n), rtol=1e-6)


def test_bmr_beyond_the_hill_plateau_gives_no_bmd():
    doses = design(replicates=2, controls=8)
    expression = frame(7 + hill(doses, [0.5], [2.0], [0.4]), doses)
    out = fit_dose_response(expression, doses, control_sd=pd.Series(0.5, index=["g0"]))
    assert out.loc[0, "best_model"] == "hill"
    assert np.isnan(out.loc[0, "bmd"])
    assert out.loc[0, "qc_flags"] == "bmr_not_reached"
    np.testing.assert_allclose(out.loc[0, "ec50"], 0.5, rtol=1e-6)


def test_linear_data_choose_the_linear_model():
    doses = design()
    x = np.log10(1 + doses.to_numpy() / (LEVELS.min() / 10))
    slope = np.array([0.3, -0.5, 1.0])
    exact = fit_dose_response(frame(7 + slope[:, None] * x, doses), doses,
                              control_sd=pd.Series(0.2, index=["g0", "g1", "g2"]))
    assert list(exact["best_model"]) == ["linear"] * 3
    # |b| x(BMD) = BMR with x = log10(1 + d / d0), d0 = lowest dose / 10.
    np.testing.assert_allclose(exact["bmd"],
                               LEVELS.min() / 10 * (10 ** (0.2 / np.abs(slope)) - 1), rtol=1e-9)
    assert list(exact["direction"]) == ["up", "down", "up"]

    rng = np.random.default_rng(5)
    slope = rng.uniform(0.3, 0.6, 200) * rng.choice([-1, 1], 200)
    noisy = frame(8 + slope[:, None] * x + rng.normal(0, 0.3, (200, len(doses))), doses)
    out = fit_dose_response(noisy, doses)
    assert (out["best_model"] == "linear").mean() >= 0.6
    assert (out["best_model"] != "constant").all()
    assert ((out["direction"] == "down") == (slope < 0)).all()


def test_aic_and_trend_pvalue_match_statsmodels_ols():
    doses = design()
    x = np.log10(1 + doses.to_numpy() / (LEVELS.min() / 10))
    rng = np.random.default_rng(2)
    expression = frame(8 + 0.4 * x + rng.normal(0, 0.3, (5, len(doses))), doses)
    out = fit_dose_response(expression, doses)
    for (_, row), y in zip(out.iterrows(), expression.to_numpy()):
        ols = sm.OLS(y, sm.add_constant(x)).fit()
        null = sm.OLS(y, np.ones_like(y)).fit()
        # statsmodels counts mean parameters only; we also count the residual variance.
        assert row["aic_linear"] == pytest.approx(ols.aic + 2, rel=1e-9)
        assert row["aic_constant"] == pytest.approx(null.aic + 2, rel=1e-9)
        if row["best_model"] == "linear":
            assert row["pvalue"] == pytest.approx(ols.f_pvalue, rel=1e-6)
            assert row["r2"] == pytest.approx(ols.rsquared, rel=1e-9)


def test_flat_data_choose_the_constant_model_without_bmd():
    doses = design()
    exact = fit_dose_response(frame(np.full((2, len(doses)), 5.0), doses), doses)
    assert list(exact["best_model"]) == ["constant"] * 2
    assert not exact["fit_ok"].any() and exact["bmd"].isna().all()
    assert list(exact["direction"]) == ["none"] * 2 and (exact["pvalue"] == 1).all()

    rng = np.random.default_rng(3)
    out = fit_dose_response(frame(8 + rng.normal(0, 0.3, (300, len(doses))), doses), doses)
    constant = out["best_model"] == "constant"
    assert constant.mean() >= 0.9
    assert out.loc[constant, "bmd"].isna().all()
    assert not out.loc[constant, "fit_ok"].any()
    assert out.loc[constant, "ec50"].isna().mean() >= 0.95


def test_planted_ec50s_are_recovered_under_noise():
    """Tolerance: median |log10(EC50 estimate / true EC50)| <= 0.15 (1.4-fold) and >= 90%
    of genes within 0.5 log10 (3.2-fold), for 300 Hill genes with noise SD 0.3 log2,
    8 doses x 3 replicates + 16 controls. An EC50 the fit cannot place within the tested
    doses is NaN and counts as a miss."""
    doses = design()
    expression, ec50, n, top = planted(300, doses, seed=11)
    out = fit_dose_response(expression, doses)
    error = np.abs(np.log10(out["ec50"].to_numpy() / ec50))
    assert np.nanmedian(error) <= 0.15
    assert np.mean(error <= 0.5) >= 0.9
    assert (out["best_model"] != "constant").all()
    assert ((out["direction"] == "down") == (top < 0)).all()
    assert out["fit_ok"].mean() >= 0.8  # lack-of-fit p <= 0.1 rejects ~10% by chance
    # BMDs against the true curve at the true 1 SD BMR (estimated SD from 16 controls).
    u = 0.3 / np.abs(top)
    true_bmd = ec50 * (u / (1 - u)) ** (1 / n)
    bmd_error = np.abs(np.log10(out["bmd"].to_numpy() / true_bmd))
    assert np.nanmedian(bmd_error) <= 0.25
    assert np.mean(bmd_error <= 0.5) >= 0.85


def test_fewer_doses_still_recover_ec50s_within_a_looser_tolerance():
    doses = design(levels=10 * 10.0 ** (-0.5 * np.arange(5)[::-1]))
    expression, ec50, _, _ = planted(300, doses, seed=12)
    error = np.abs(np.log10(fit_dose_response(expression, doses)["ec50"].to_numpy() / ec50))
    assert np.nanmedian(error) <= 0.2
    assert np.mean(error <= 0.5) >= 0.9


def test_down_regulated_genes_mirror_up_regulated_ones():
    doses = design()
    up, _, _, _ = planted(60, doses, seed=13)
    down = 16 - up  # the mirror image about 8
    fit_up, fit_down = fit_dose_response(up, doses), fit_dose_response(down, doses)
    assert (fit_down["direction"] != fit_up["direction"]).all()
    responsive = fit_down["best_model"] != "constant"
    assert (fit_down.loc[responsive, "bmd"].dropna() > 0).all()
    assert list(fit_down["best_model"]) == list(fit_up["best_model"])
    np.testing.assert_allclose(fit_down["bmd"], fit_up["bmd"], rtol=1e-5)
    np.testing.assert_allclose(fit_down["ec50"], fit_up["ec50"], rtol=1e-5)
    np.testing.assert_allclose(fit_down["max_effect"], -fit_up["max_effect"], rtol=1e-5)


def potency_rows(compound: str, bmds, *, fit_ok=True, highest_dose=10.0) -> pd.DataFrame:
    bmds = np.asarray(bmds, dtype=float)
    return pd.DataFrame({"compound": compound, "gene_id": [f"{compound}{i}" for i in
                                                           range(len(bmds))],
                         "fit_ok": fit_ok, "bmd": bmds, "ec50": 2 * bmds, "lowest_dose": 0.05,
                         "highest_dose": highest_dose})


def test_tpod_is_the_median_bmd_of_the_20_most_sensitive_qualifying_genes():
    rng = np.random.default_rng(4)
    good = 10 ** rng.uniform(-2, 0.9, 50)
    table = pd.concat([
        potency_rows("A", good),
        potency_rows("A", [1e-4, 2e-4], fit_ok=False),  # lowest BMDs, but fits rejected
        potency_rows("A", [20.0, 50.0]),                 # above the highest dose
        potency_rows("A", [np.nan]),
        potency_rows("B", [0.1, 0.2, 0.3]),
        potency_rows("C", [0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.4, 15.0]),
        potency_rows("D", [0.01, 0.02, 0.03, 0.04, 0.06]),  # lowest dose 0.05
    ], ignore_index=True)
    out = compound_potency(table).set_index("compound")

    lowest = np.sort(good)[:20]
    assert out.loc["A", "tpod"] == pytest.approx((lowest[9] + lowest[10]) / 2)
    assert out.loc["A", "tpod_gene_count"] == 20
    assert out.loc["A", "lowest_bmd"] == pytest.approx(good.min())
    assert out.loc["A", "median_ec50"] == pytest.approx(2 * out.loc["A", "tpod"])
    assert out.loc["A", "n_genes_fitted"] == 55
    assert out.loc["A", "n_genes_with_bmd"] == 52
    assert out.loc["A", "reason"] == ""
    assert out["tpod_below_lowest_dose"].tolist() == [False, False, False, True]
    assert out.loc["D", "tpod"] == pytest.approx(0.03)

    assert np.isnan(out.loc["B", "tpod"]) and out.loc["B", "tpod_gene_count"] == 0
    assert out.loc["B", "reason"] == ("only 3 gene(s) with fit_ok and a BMD within the tested "
                                      "doses; the tPOD needs at least 5")
    # Fewer than 20 qualify: the median is over all 7 in range.
    assert out.loc["C", "tpod"] == pytest.approx(0.4)
    assert out.loc["C", "tpod_gene_count"] == 7
    assert compound_potency(table, n_sensitive=3).set_index("compound").loc["C", "tpod"] \
        == pytest.approx(0.2)


def test_tpod_recovers_planted_potency():
    """Tolerance: tPOD within 0.25 log10 of the median of the 20 lowest true BMDs (true
    curves at BMR = the true noise SD); a 3-fold more potent compound gets a tPOD 1.5-5-fold
    lower (picking the lowest of noisy BMDs biases each tPOD a little)."""
    doses = design()
    tpods, fits = {}, []
    for name, potency in [("weak", 1), ("potent", 3)]:
        # The same genes and noise, EC50s 3-fold lower for the potent compound.
        expression, ec50, n, top = planted(200, doses, seed=21, potency=potency)
        u = 0.3 / np.abs(top)
        tpods[name] = np.median(np.sort(ec50 * (u / (1 - u)) ** (1 / n))[:20])
        fits.append(fit_dose_response(expression, doses).assign(compound=name))
    out = compound_potency(pd.concat(fits)).set_index("compound")
    for name, true in tpods.items():
        assert abs(np.log10(out.loc[name, "tpod"] / true)) <= 0.25
    assert 1.5 <= out.loc["weak", "tpod"] / out.loc["potent", "tpod"] <= 5
    assert (out["tpod_gene_count"] == 20).all()
    # The most sensitive genes respond below the lowest dose (0.0046): flagged as such.
    assert out["tpod_below_lowest_dose"].tolist() == [True, True]


def test_input_errors_say_what_is_wrong():
    doses = design()
    expression = frame(np.ones((2, len(doses))), doses)
    with pytest.raises(ValueError, match=r"no control wells \(dose 0\)"):
        fit_dose_response(expression, doses.replace(0.0, 0.001))
    two = design(levels=np.array([1.0, 10.0]))
    with pytest.raises(ValueError, match="only 2 distinct nonzero dose"):
        fit_dose_response(frame(np.ones((2, len(two))), two), two)
    with pytest.raises(ValueError, match="no dose for 1 well.*w00"):
        fit_dose_response(expression, doses.drop("w00"))
    with pytest.raises(ValueError, match="only 1 control well"):
        one = design(controls=1)
        fit_dose_response(frame(np.ones((2, len(one))), one), one)
    with pytest.raises(ValueError, match="control_sd has no value for 1 gene"):
        fit_dose_response(expression, doses, control_sd=pd.Series([0.2], index=["g0"]))
    with pytest.raises(ValueError, match="lacks column.*compound"):
        compound_potency(fit_dose_response(expression, doses))
