"""The vectorized DESeq2 engine against PyDESeq2 (the R-parity path) on every design the
platform uses, and the screen simulator against its planted truth."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from dge_platform.de.engine import (
    DispersionTrend,
    GroupBlockDesign,
    blind_vst,
    contrast_variance,
    fit_dataset,
    group_design,
    pair_weights,
    shrink_lfc,
    shrinkage_prior_scale,
    two_group_test,
)
from dge_platform.de.fit import fit_deseq2
from dge_platform.screen.plate_map import analysis_wells
from dge_platform.screen.well_qc import well_qc
from dge_platform.sim.screen import simulate_screen
from dge_platform.study.config import Contrast
from dge_platform.study.design import study_design_frame
from dge_platform.validation import load_study
from dge_platform_tests._helpers import jaccard, simulate
from dge_platform_tests.conftest import BUNDLED


def both_engines(counts, frame, design, contrasts, **kwargs):
    return tuple(fit_deseq2(counts, frame, design, contrasts, n_cpus=2, engine=engine, **kwargs)
                 for engine in ("vectorized", "pydeseq2"))


def rel_diff(a, b) -> np.ndarray:
    a, b = np.asarray(a, float), np.asarray(b, float)
    both = np.isfinite(a) & np.isfinite(b)
    return np.abs(a[both] - b[both]) / np.abs(b[both])


def assert_agree(ours, ref, *, min_jaccard: float = 0.98, shrunk_within: float | None = 0.995,
                 filtered_mismatch: float = 0.05) -> None:
    """Engine results match PyDESeq2's: size factors exactly, dispersions where both
    optimizers converge, statistics closely."""
    np.testing.assert_allclose(ours.size_factors, ref.size_factors, rtol=1e-10)
    # The engine estimates dispersions as R's DESeq2 does (fitDisp's line search, which
    # stops once a step gains < 1e-6 log likelihood, and means floored at 0.5), PyDESeq2 by
    # L-BFGS-B: most genes agree to 1e-4, but where the likelihood is flat the two stop up
    # to ~20 % apart (2 % of genes), which moves the trend fitted on them by a few %.
    # Agreement with R itself is asserted in test_bulk_de, test_screen_vs_r and
    # test_dispersion_prior.
    for col, median, q98 in (("dispersion_gene_est", 1e-3, 0.3), ("dispersion_trend", 0.05, 0.15),
                             ("dispersion", 0.05, 0.5)):
        diff = rel_diff(ours.dispersions[col], ref.dispersions[col])
        assert np.median(diff) < median and np.quantile(diff, 0.98) < q98, col
    assert (ours.dispersions["dispersion_outlier"] != ref.dispersions["dispersion_outlier"]) \
        .mean() < 0.01
    for name in ref.results["contrast"].unique():
        a = ours.results[ours.results["contrast"] == name].set_index("gene_id")
        b = ref.results[ref.results["contrast"] == name].set_index("gene_id")
        assert list(a.index) == list(b.index)
        np.testing.assert_allclose(a["base_mean"], b["base_mean"], rtol=1e-8)
        assert (a["log2_fold_change"].isna() == b["log2_fold_change"].isna()).all()
        tested = a["log2_fold_change"].notna()
        assert np.corrcoef(a.loc[tested, "log2_fold_change"],
                           b.loc[tested, "log2_fold_change"])[0, 1] >= 0.999
        # The engine floors means at 0.5 in the Wald weights as R does; PyDESeq2 does not.
        assert np.median(rel_diff(a["pvalue"], b["pvalue"])) < 0.02
        assert (a["pvalue"].isna() != b["pvalue"].isna()).mean() < 0.002
        # Independent filtering picks one of 50 mean cut-offs; where the number of
        # rejections is flat in the cut-off, a nearby one may be picked.
        assert (a["padj"].isna() != b["padj"].isna()).mean() < filtered_mismatch
        sig_a, sig_b = set(a.index[a["padj"] < 0.05]), set(b.index[b["padj"] < 0.05])
        if len(sig_a | sig_b) >= 20:
            assert jaccard(sig_a, sig_b) >= min_jaccard, name
        if shrunk_within is not None:
            sa, sb = a["log2_fold_change_shrunk"], b["log2_fold_change_shrunk"]
            ok = sa.notna() & sb.notna()
            # The Cauchy prior makes a few posteriors bimodal; PyDESeq2's L-BFGS-B may end
            # in the worse mode, the engine returns the better one.
            assert (np.abs(sa[ok] - sb[ok]) < 0.05).mean() >= shrunk_within, name


def bundled(name: str, n_genes: int | None = None):
    study = load_study(BUNDLED / name)
    cfg = study.config
    counts = study.counts
    if n_genes:
        counts = counts.iloc[np.sort(np.random.default_rng(0).choice(len(counts), n_genes,
                                                                     replace=False))]
    frame = study_design_frame(study.samples, cfg.design, cfg.contrasts, cfg.batch)
    return counts, frame, cfg


@pytest.mark.parametrize("name,n_genes", [("pasilla", 4000), ("airway", 4000)])
def test_bundled_designs_agree(name, n_genes):
    counts, frame, cfg = bundled(name, n_genes)
    ours, ref = both_engines(counts, frame, cfg.design, cfg.contrasts, alpha=cfg.alpha)
    assert_agree(ours, ref)
    # The blind VST's trend is fitted on gene-wise estimates too (see assert_agree): its
    # asymptote moves by ~1 % on airway, shifting the whole log2 scale by ~0.014.
    diff = np.abs(ours.vst.to_numpy() - ref.vst.to_numpy())
    assert np.median(diff) < 0.02 and diff.max() < 0.05


def test_lfc_threshold_agrees():
    counts, frame, cfg = bundled("pasilla", 2000)
    ours, ref = both_engines(counts, frame, cfg.design, cfg.contrasts, lfc_threshold=0.5,
                             shrink=False)
    # Few rejections against |LFC| > 0.5: the filtering cut-off moves with the dispersions.
    assert_agree(ours, ref, shrunk_within=None, filtered_mismatch=0.1)


def test_continuous_covariate_and_non_base_reference_agree():
    counts, sheet, _ = simulate(n_genes=800, n_per_group=6, seed=11)
    sheet["condition"] = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    sheet["age"] = [str(v) for v in np.random.default_rng(1).uniform(20, 70, 12).round()]
    contrasts = [Contrast(name="b_vs_a", factor="condition", level="b", reference="a"),
                 Contrast(name="c_vs_b", factor="condition", level="c", reference="b")]
    frame = study_design_frame(sheet, "~ age + condition", contrasts, None)
    assert group_design(frame, "~ age + condition", "condition")[1].columns.tolist() == ["age"]
    # With a block column the shrinkage keeps the third group at its MLE: close, not exact.
    assert_agree(*both_engines(counts, frame, "~ age + condition", contrasts),
                 shrunk_within=0.97)


def screen_frame(plate_map: pd.DataFrame) -> pd.DataFrame:
    pm = plate_map.set_index("sample")
    conditions = ["DMSO"] + sorted(set(pm["condition"]) - {"DMSO"})
    return pd.DataFrame({"plate": pd.Categorical(pm["plate"]),
                         "condition": pd.Categorical(pm["condition"], categories=conditions)},
                        index=pm.index)


def screen_contrasts(levels: list[str]) -> list[Contrast]:
    return [Contrast(name=f"{lv}_vs_DMSO", factor="condition", level=lv, reference="DMSO")
            for lv in levels]


@pytest.fixture(scope="module")
def small_screen():
    screen = simulate_screen(n_genes=1000, seed=3)
    frame = screen_frame(screen.plate_map)
    contrasts = screen_contrasts([c for c in screen.true_lfc.columns
                                  if c.startswith(("CMP01", "CMP02", "CMP03", "CMP09"))])
    ours, ref = both_engines(screen.counts, frame, "~ condition", contrasts, shrink=False)
    return screen, frame, ours, ref


def test_screen_agrees(small_screen):
    _, _, ours, ref = small_screen
    assert_agree(ours, ref, min_jaccard=0.95, shrunk_within=None, filtered_mismatch=0.15)


@pytest.mark.parametrize("n_plates,fit_type", [(1, "poscounts"), (2, "ratio")])
def test_screen_designs_agree(n_plates, fit_type):
    screen = simulate_screen(n_genes=800, n_plates=n_plates, seed=5)
    design = "~ plate + condition" if n_plates > 1 else "~ condition"
    contrasts = screen_contrasts(["CMP01_1uM", "CMP02_10uM", "CMP09_10uM"])
    assert_agree(*both_engines(screen.counts, screen_frame(screen.plate_map), design, contrasts,
                               size_factors_fit_type=fit_type), min_jaccard=0.95,
                 filtered_mismatch=0.15, shrunk_within=0.99 if n_plates == 1 else 0.97)


def test_cooks_outliers_replaced_and_refitted_as_pydeseq2():
    counts, sheet, _ = simulate(n_genes=600, n_per_group=8, seed=5)
    rng = np.random.default_rng(0)
    for gene in rng.choice(len(counts), 15, replace=False):  # planted outliers
        counts.iloc[gene, rng.integers(16)] *= 40
    contrasts = [Contrast(name="t_vs_c", factor="condition", level="treat", reference="ctrl")]
    frame = study_design_frame(sheet, "~ condition", contrasts, None)
    ours, ref = both_engines(counts, frame, "~ condition", contrasts)
    assert_agree(ours, ref)
    # Refitted genes get the replaced counts' base mean: same genes in both.
    moved = ~np.isclose(ours.results["base_mean"], ours.normalized_counts.mean(axis=1).to_numpy())
    assert moved.sum() >= 10
    np.testing.assert_allclose(ours.results["base_mean"], ref.results["base_mean"], rtol=1e-10)


def test_tabulated_reference_shrinkage_equals_exact_posterior():
    # Without block columns the reference samples enter the shrinkage through a Chebyshev
    # table (ReferenceTerm); a zero block column forces the exact posterior over all samples
    # (the block coefficient stays at 0), one level at a time: the same modes.
    screen = simulate_screen(n_genes=1500, seed=7)
    frame = screen_frame(screen.plate_map)
    counts = screen.counts.to_numpy(np.int64)
    levels = list(frame["condition"].cat.categories)
    design = GroupBlockDesign(frame["condition"].cat.codes.to_numpy(int), tuple(levels),
                              np.empty((counts.shape[1], 0)))
    fit = fit_dataset(counts, design)
    nz = fit.non_zero
    zero_block = GroupBlockDesign(design.codes, design.levels, np.zeros((len(design.codes), 1)))
    groups = np.nan_to_num(fit.groups[nz])
    chosen = [1, 7, len(levels) - 1]
    scales = [shrinkage_prior_scale(fit.groups[:, level] - fit.groups[:, 0],
                                    np.sqrt(contrast_variance(
                                        fit.blocks, pair_weights(len(levels), level, 0))))
              for level in chosen]
    fast, exact = (shrink_lfc(counts[nz], fit.size_factors, d, fit.dispersions[nz], groups,
                              np.zeros((nz.sum(), d.n_block)), chosen, 0, scales)
                   for d in (design, zero_block))
    np.testing.assert_allclose(fast, exact, rtol=0, atol=1e-8)


def test_group_design_rejects_interactions_and_numeric_factors():
    frame = pd.DataFrame({"a": pd.Categorical(list("xxyyxy")), "b": pd.Categorical(list("uvuvvu")),
                          "c": [1.0, 2, 3, 4, 5, 6]})
    assert group_design(frame, "~ a + b + a:b", "a") is None
    assert group_design(frame, "~ c + a", "c") is None
    groups, block = group_design(frame, "~ b + c + a", "a")
    assert list(groups.cat.categories) == ["x", "y"] and list(block.columns) == ["b[T.v]", "c"]


def test_simulated_screen_truth_is_recovered(small_screen):
    screen, frame, ours, ref = small_screen
    truth = screen.true_lfc.abs() > 0
    truth = truth[[c.removesuffix("_vs_DMSO") for c in ours.results["contrast"].unique()]]
    stats = {}
    for label, fit in (("engine", ours), ("pydeseq2", ref)):
        res = fit.results.assign(condition=fit.results["contrast"].str.replace("_vs_DMSO", ""))
        called = res[res["padj"] < 0.05]
        true_calls = truth.stack().loc[list(zip(called["gene_id"], called["condition"]))]
        stats[label] = (1 - true_calls.mean(), true_calls.sum() / truth.to_numpy().sum())
    fdp, sensitivity = stats["engine"]
    print(f"\nscreen: engine FDP {fdp:.3f} sensitivity {sensitivity:.3f}; "
          f"pydeseq2 {stats['pydeseq2']}")
    assert fdp <= 0.08
    assert abs(sensitivity - stats["pydeseq2"][1]) <= 0.02
    inactive = ours.results[ours.results["contrast"].str.startswith("CMP09")]
    assert (inactive["padj"] < 0.05).sum() <= 3


def test_two_group_test_null_and_speed(small_screen):
    screen, frame, ours, _ = small_screen
    dmso = (frame["condition"] == "DMSO").to_numpy()
    disp = ours.dispersions["dispersion"].to_numpy()
    base_mean = ours.results.drop_duplicates("gene_id")["base_mean"].to_numpy()
    sf = ours.size_factors.to_numpy()
    # The same statistics as the fit for a contrast (no block: other groups do not enter).
    level = (frame["condition"] == "CMP01_10uM").to_numpy()
    res = two_group_test(screen.counts, sf, disp, level, dmso, base_mean)
    fit = ours.results[ours.results["contrast"] == "CMP01_10uM_vs_DMSO"].set_index("gene_id")
    # Genes without counts in either set are left untested.
    untested = res["log2_fold_change"].isna()
    assert (screen.counts.loc[untested, level | dmso] == 0).all().all()
    np.testing.assert_allclose(res.loc[~untested, "log2_fold_change"],
                               fit.loc[~untested, "log2_fold_change"], atol=1e-4)  # IRLS tol
    np.testing.assert_allclose(res.loc[~untested, "lfc_se"], fit.loc[~untested, "lfc_se"],
                               rtol=1e-4)
    # DMSO vs DMSO: (almost) nothing is called.
    rng = np.random.default_rng(0)
    half = rng.permutation(np.flatnonzero(dmso))
    a, b = np.zeros_like(dmso), np.zeros_like(dmso)
    a[half[:8]], b[half[8:]] = True, True
    null = two_group_test(screen.counts, sf, disp, a, b, base_mean)
    assert (null["padj"] < 0.05).sum() <= 2
    # Fast enough for many random splits: 20,000 genes x 20 wells.
    big = pd.concat([screen.counts] * 20, ignore_index=True)
    wells = np.zeros(len(dmso), bool)
    wells[np.flatnonzero(dmso)[:10]] = True
    start = time.perf_counter()
    two_group_test(big, sf, np.tile(disp, 20), level, wells, np.tile(base_mean, 20))
    assert time.perf_counter() - start < 0.5


def screen_wells(name: str):
    """A bundled screen's analysed wells (controls and treated wells passing well QC, as
    the deseq2 asset selects them), its design frame and contrasts."""
    study = load_study(BUNDLED / name)
    cfg = study.config
    qc = well_qc(study.counts, study.samples, study.gene_symbols)
    wells, untested, _ = analysis_wells(study.samples, qc["passed"], cfg.control,
                                        cfg.sheet_file)
    contrasts = [c for c in cfg.contrasts if c.name not in untested]
    frame = study_design_frame(study.samples.loc[wells], cfg.design, contrasts, cfg.batch)
    return study.counts[wells], frame, cfg.design, contrasts


def test_sparse_plate_mean_trend_fallback_as_pydeseq2():
    # ~800 UMIs per well over 1,000 genes: most gene-wise dispersions sit at the floor and
    # the parametric trend fails in both engines, which fall back to the mean dispersion.
    counts, frame, design, contrasts = screen_wells("macseq_pmmsq033")
    with pytest.warns(UserWarning, match="using the mean dispersion as trend"):
        ours = fit_deseq2(counts, frame, design, contrasts[:1], engine="vectorized",
                          shrink=False)
    ref = fit_deseq2(counts, frame, design, contrasts[:1], engine="pydeseq2", shrink=False,
                     n_cpus=2)
    assert ours.size_factor_method == ref.size_factor_method == "poscounts"
    a, b = ours.dispersions, ref.dispersions
    # The same rule (PyDESeq2's _fit_mean_dispersion_trend: 0.1 % trimmed mean of the
    # gene-wise estimates above 10 x min_disp): on PyDESeq2's estimates it gives its trend.
    with pytest.warns(UserWarning, match="using the mean dispersion as trend"):
        pydeseq2_rule = DispersionTrend.fit(b["base_mean"].to_numpy(),
                                            b["dispersion_gene_est"].to_numpy())
    np.testing.assert_allclose(pydeseq2_rule.mean, b["dispersion_trend"].dropna(), rtol=1e-12)
    assert np.ptp(a["dispersion_trend"].dropna()) == 0
    # The estimates differ only where a start at the floor has an inward gradient above
    # L-BFGS-B's pgtol: PyDESeq2 then fails its line search on a few genes (which ones
    # turns on rounding) and grid-searches them; of ~20 genes above the floor that moves
    # the trimmed mean (39 here, 27 in PyDESeq2).
    genewise = rel_diff(a["dispersion_gene_est"], b["dispersion_gene_est"])
    assert (genewise < 1e-4).mean() > 0.97
    assert 0.5 < a["dispersion_trend"].iloc[0] / b["dispersion_trend"].iloc[0] < 2
    # The MAP dispersions (mostly at the bound max(10, n)) and the blind VST follow.
    assert np.median(rel_diff(a["dispersion"], b["dispersion"])) < 1e-6
    assert np.abs(ours.vst.to_numpy() - ref.vst.to_numpy()).max() < 0.05


@pytest.mark.filterwarnings("ignore:parametric")
def test_size_factor_auto_picks_ratio_unless_sparse():
    dense, sheet, _ = simulate(n_genes=300, n_per_group=3, seed=2)
    contrasts = [Contrast(name="t_vs_c", factor="condition", level="treat", reference="ctrl")]
    frame = study_design_frame(sheet, "~ condition", contrasts, None)
    sparse = dense.copy()
    rng = np.random.default_rng(0)
    # A zero in all but 49 genes: too few complete genes for median of ratios.
    hit = rng.permutation(len(sparse))[49:]
    sparse.to_numpy()[hit, rng.integers(sparse.shape[1], size=len(hit))] = 0
    assert (sparse > 0).all(axis=1).sum() == 49 and (dense > 0).all(axis=1).sum() >= 50
    fits = {}
    for counts, expected in ((dense, "ratio"), (sparse, "poscounts")):
        auto = fit_deseq2(counts, frame, "~ condition", contrasts, shrink=False)
        explicit = fit_deseq2(counts, frame, "~ condition", contrasts, shrink=False,
                              size_factors_fit_type=expected)
        assert auto.size_factor_method == explicit.size_factor_method == expected
        np.testing.assert_allclose(auto.size_factors, explicit.size_factors, rtol=1e-12)
        fits[expected] = auto
    # PyDESeq2 gets the resolved type too.
    ref = fit_deseq2(sparse, frame, "~ condition", contrasts, shrink=False, engine="pydeseq2")
    assert ref.size_factor_method == "poscounts"
    np.testing.assert_allclose(ref.size_factors, fits["poscounts"].size_factors, rtol=1e-10)


def test_poisson_only_counts_stop_with_the_technical_replicate_hint():
    """Samples with no over-dispersion (here one library copied six times, as a technical
    replicate is) leave every gene-wise dispersion at the floor: the trend and the VST
    refuse, as R does, instead of averaging an empty set into NaN."""
    rng = np.random.default_rng(1)
    counts = np.repeat(rng.poisson(50, (12, 1)).astype(float) + 1, 6, axis=1)
    size_factors = np.ones(6)
    with pytest.raises(ValueError, match="no more than Poisson noise.*replicate_of"):
        blind_vst(counts, size_factors, counts.mean(axis=1), max_disp=10.0)
    with pytest.raises(ValueError, match="within 2 orders of magnitude of the minimum"):
        DispersionTrend.fit(counts.mean(axis=1), np.full(12, 1e-8))
