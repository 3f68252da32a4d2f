"""Bulk DE against R/Bioconductor DESeq2 1.38 on the bundled real studies, and against
planted truth in simulated counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dge_platform.bulk.batch_correction import remove_batch_effect
from dge_platform.de.dispersion import parametric_trend, simulated_prior_variance
from dge_platform.de.fit import analysis_samples, fit_deseq2
from dge_platform.study.config import Contrast
from dge_platform.study.design import study_design_frame, treatment_matrix
from dge_platform.validation import load_study
from dge_platform_tests._helpers import jaccard, simulate
from dge_platform_tests.conftest import BUNDLED, REPO

FIXTURES = REPO / "dge_platform_tests" / "fixtures" / "r_deseq2"


def r_table(name: str) -> pd.DataFrame:
    path = FIXTURES / f"{name}.csv.gz"
    return pd.read_csv(path if path.exists() else FIXTURES / f"{name}.csv")


def fit_bundled(name: str, **kwargs):
    study = load_study(BUNDLED / name)
    cfg = study.config
    frame = study_design_frame(study.samples, cfg.design, cfg.contrasts, cfg.batch)
    return study, frame, fit_deseq2(study.counts, frame, cfg.design, cfg.contrasts,
                                    alpha=cfg.alpha, n_cpus=2, **kwargs)


@pytest.fixture(scope="module", params=["pasilla", "airway"])
def bundled_fit(request):
    return request.param, *fit_bundled(request.param)



def test_agrees_with_r_deseq2(bundled_fit):
    name, study, _, fit = bundled_fit
    r = r_table(f"{name}_results").set_index("gene_id")
    py = fit.results.set_index("gene_id")
    assert list(py.index) == list(study.counts.index) == list(r.index)
    np.testing.assert_allclose(py["base_mean"], r["baseMean"], rtol=1e-10)
    expressed = r["baseMean"] >= 10
    lfc_r = np.corrcoef(py.loc[expressed, "log2_fold_change"],
                        r.loc[expressed, "log2FoldChange"])[0, 1]
    sig_py, sig_r = set(py.index[py["padj"] < 0.05]), set(r.index[r["padj"] < 0.05])
    print(f"\n{name}: Pearson r(LFC) {lfc_r:.6f}; DEGs R {len(sig_r)} py {len(sig_py)}; "
          f"Jaccard {jaccard(sig_py, sig_r):.4f}")
    assert lfc_r >= 0.99
    assert jaccard(sig_py, sig_r) >= 0.95
    # Genes DESeq2 leaves untested keep their row with a null padj.
    assert py["padj"].isna().sum() == pytest.approx(r["padj"].isna().sum(), rel=0.05)
    assert (py.loc[study.counts.sum(axis=1) == 0, "padj"].isna()).all()


def test_size_factors_and_vst_match_r(bundled_fit):
    name, _, _, fit = bundled_fit
    sf = r_table(f"{name}_size_factors").set_index("sample")["size_factor"]
    np.testing.assert_allclose(fit.size_factors.loc[sf.index], sf, rtol=1e-10)
    vst = r_table(f"{name}_vst_top500").set_index("gene_id")
    diff = (fit.vst.loc[vst.index, vst.columns] - vst).abs().to_numpy()
    # R fits the blind VST trend on a 1,000-gene subsample; values agree closely, not exactly.
    assert np.median(diff) < 0.1 and np.corrcoef(fit.vst.loc[vst.index, vst.columns].to_numpy()
                                                 .ravel(), vst.to_numpy().ravel())[0, 1] > 0.999


def test_dispersion_trend_and_prior_follow_r(bundled_fit):
    name, _, _, fit = bundled_fit
    r = r_table(f"{name}_dispersions").set_index("gene_id")
    ours = fit.dispersions.set_index("gene_id")
    tested = r["dispFit"].notna()
    trend_err = ((ours.loc[tested, "dispersion_trend"] - r.loc[tested, "dispFit"]).abs()
                 / r.loc[tested, "dispFit"]).max()
    final_err = ((ours.loc[tested, "dispersion"] - r.loc[tested, "dispersion"]).abs()
                 / r.loc[tested, "dispersion"]).median()
    print(f"\n{name}: trend max rel err {trend_err:.4f}, final dispersion median rel err "
          f"{final_err:.4f}")
    assert trend_err < 0.05 and final_err < 0.1


def test_shrunken_fold_changes_are_shrunk(bundled_fit):
    name, study, _, fit = bundled_fit
    res = fit.results.dropna(subset=["log2_fold_change", "log2_fold_change_shrunk"])
    # R reference shrinks with the normal prior (apeglm is not packaged for Debian), so the
    # two shrinkers agree in ranking, not in value.
    r = r_table(f"{name}_shrunk").set_index("gene_id")["log2FoldChange"]
    both = res.set_index("gene_id").join(r.rename("r_normal")).dropna()
    assert np.corrcoef(both["log2_fold_change_shrunk"], both["r_normal"])[0, 1] > 0.9
    shrunk = res["log2_fold_change_shrunk"].abs() <= res["log2_fold_change"].abs() + 1e-6
    assert shrunk.mean() > 0.99
    # A gene with an all-zero group has no finite MLE (IRLS stops somewhere near 10); its
    # posterior mode under the Cauchy prior is not bound to that stopping point.
    factor = study.config.contrasts[0].factor
    group_max = study.counts.T.groupby(study.samples[factor].to_numpy()).max().T
    determined = group_max.loc[res["gene_id"]].gt(0).all(axis=1).to_numpy()
    strong = res[(res["padj"] < 1e-10) & determined]
    np.testing.assert_allclose(strong["log2_fold_change_shrunk"], strong["log2_fold_change"],
                               atol=0.3)


def test_parametric_trend_reproduces_r_exactly():
    r = r_table("airway_dispersions").join(r_table("airway_results")["baseMean"])
    r = r[r["dispGeneEst"].notna()]
    use = r["dispGeneEst"] > 1e-6
    coeffs = parametric_trend(r.loc[use, "baseMean"].to_numpy(),
                              r.loc[use, "dispGeneEst"].to_numpy())
    trend = coeffs[0] + coeffs[1] / r["baseMean"]
    np.testing.assert_allclose(trend, r["dispFit"], rtol=1e-5)


def test_simulated_prior_variance_matches_r_on_r_residuals():
    r = r_table("airway_dispersions").dropna()
    r = r[r["dispGeneEst"] >= 1e-6]
    residuals = (np.log(r["dispGeneEst"]) - np.log(r["dispFit"])).to_numpy()
    expected = r_table("airway_dispersion_prior")["disp_prior_var"].item()
    assert simulated_prior_variance(residuals, df=3) == pytest.approx(expected, abs=0.03)


def test_lfc_threshold_is_the_alternative_hypothesis():
    _, _, fit = fit_bundled("pasilla", lfc_threshold=1.0, shrink=False)
    r = r_table("pasilla_results_lfc1").set_index("gene_id")
    py = fit.results.set_index("gene_id")
    sig_py, sig_r = set(py.index[py["padj"] < 0.05]), set(r.index[r["padj"] < 0.05])
    print(f"\npasilla lfcThreshold=1: DEGs R {len(sig_r)} py {len(sig_py)}")
    assert jaccard(sig_py, sig_r) >= 0.9
    # Not a post-hoc filter: genes with |LFC| > 1 but uncertain are not called.
    assert ((py["log2_fold_change"].abs() > 1) & ~(py["padj"] < 0.05)).sum() > 0


def test_batch_correction_matches_limma():
    for name, factor, level, batch in [("airway", "dex", "trt", "cell"),
                                       ("pasilla", "condition", "treated", "type")]:
        vst = r_table(f"{name}_vst_top500").set_index("gene_id")
        expected = r_table(f"{name}_vst_top500_batch_removed").set_index("gene_id")
        study = load_study(BUNDLED / name)
        frame = study_design_frame(study.samples, study.config.design, study.config.contrasts,
                                   batch).loc[vst.columns]
        corrected = remove_batch_effect(vst, frame[batch], treatment_matrix(frame, batch))
        np.testing.assert_allclose(corrected.to_numpy(), expected.to_numpy(), atol=1e-9)
        assert (frame[factor] == level).any()



def test_planted_truth_fdr_and_sensitivity():
    counts, sheet, truth = simulate()
    contrasts = [Contrast(name="t_vs_c", factor="condition", level="treat", reference="ctrl")]
    frame = study_design_frame(sheet, "~ condition", contrasts, None)
    fit = fit_deseq2(counts, frame, "~ condition", contrasts, alpha=0.05, n_cpus=1, shrink=False)
    called = set(fit.results.loc[fit.results["padj"] < 0.05, "gene_id"])
    fdp = len(called - truth) / max(len(called), 1)
    sensitivity = len(called & truth) / len(truth)
    print(f"\nsimulated: {len(called)} called, sensitivity {sensitivity:.3f}, FDP {fdp:.3f}")
    assert fdp <= 0.05 + 0.03  # alpha within sampling noise
    assert sensitivity > 0.7


def test_shrinkage_of_contrast_not_against_base_level():
    counts, sheet, _ = simulate(n_genes=300, n_per_group=4, seed=3)
    sheet["condition"] = ["a"] * 2 + ["b"] * 3 + ["c"] * 3
    contrasts = [Contrast(name="b_vs_a", factor="condition", level="b", reference="a"),
                 Contrast(name="c_vs_b", factor="condition", level="c", reference="b")]
    frame = study_design_frame(sheet, "~ condition", contrasts, None)
    fit = fit_deseq2(counts, frame, "~ condition", contrasts, alpha=0.05, n_cpus=1)
    c_vs_b = fit.results[fit.results["contrast"] == "c_vs_b"].set_index("gene_id")
    # Same as a study whose only contrast makes b the base level.
    direct_frame = study_design_frame(sheet, "~ condition", contrasts[1:], None)
    assert list(direct_frame["condition"].cat.categories) == ["b", "a", "c"]
    direct = fit_deseq2(counts, direct_frame, "~ condition", contrasts[1:], alpha=0.05,
                        n_cpus=1).results.set_index("gene_id")
    np.testing.assert_allclose(c_vs_b["log2_fold_change_shrunk"],
                               direct["log2_fold_change_shrunk"], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(c_vs_b["pvalue"], direct["pvalue"], rtol=1e-4)


def test_technical_replicates_are_summed():
    counts = pd.DataFrame({"L1": [1, 2], "L2": [3, 4], "L3": [5, 6]}, index=["g1", "g2"])
    sheet = pd.DataFrame({"library_of": ["A", "A", "B"], "condition": ["x", "x", "y"]},
                         index=pd.Index(["L1", "L2", "L3"], name="sample"))
    summed, collapsed = analysis_samples(counts, sheet, "library_of")
    assert summed.to_dict("list") == {"A": [4, 6], "B": [5, 6]}
    assert collapsed["n_technical_replicates"].tolist() == [2, 1]


def test_continuous_covariate_in_design():
    counts, sheet, truth = simulate(n_genes=500, n_per_group=4, seed=9)
    sheet["age"] = ["31", "45", "52", "38", "29", "61", "44", "50"]
    contrasts = [Contrast(name="t_vs_c", factor="condition", level="treat", reference="ctrl")]
    frame = study_design_frame(sheet, "~ age + condition", contrasts, None)
    assert frame["age"].dtype == float
    fit = fit_deseq2(counts, frame, "~ age + condition", contrasts, n_cpus=1, shrink=False)
    called = set(fit.results.loc[fit.results["padj"] < 0.05, "gene_id"])
    assert len(called & truth) / len(truth) > 0.6
