"""A combination's interaction contrast (AB - A - B + control) against R DESeq2 1.38.

The fixture (fixtures/r_deseq2/make_r_combination_reference.R) holds one simulated plate of
DMSO, A, B and AB wells analysed in R twice: the factorial design ``~ A + B + A:B`` with
``results(name = "A1.B1")``, and the one-factor design ``~ condition`` with the numeric
contrast AB - A - B, which is what the platform's shared screen fit computes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dge_platform.de.contrast import LinearContrast
from dge_platform.de.fit import fit_deseq2
from dge_platform.study.config import Contrast
from dge_platform_tests._helpers import jaccard
from dge_platform_tests.conftest import FIXTURES

R_DIR = FIXTURES / "r_deseq2"
ALPHA = 0.05


@pytest.fixture(scope="module")
def fitted():
    counts = pd.read_csv(R_DIR / "combination_counts.tsv.gz", sep="\t", index_col=0)
    samples = pd.read_csv(R_DIR / "combination_samples.tsv", sep="\t", index_col=0)
    frame = pd.DataFrame({"condition": pd.Categorical(
        samples["condition"], categories=["DMSO", "A", "AB", "B"])}, index=samples.index)
    contrasts = [Contrast(name=f"{lv}_vs_DMSO", factor="condition", level=lv,
                          reference="DMSO") for lv in ("AB", "A", "B")]
    interaction = LinearContrast("AB_interaction", "condition",
                                 (("AB", 1.0), ("A", -1.0), ("B", -1.0), ("DMSO", 1.0)))
    result = fit_deseq2(counts[samples.index], frame, "~ condition", contrasts, alpha=ALPHA,
                        shrink=False, linear_contrasts=[interaction])
    return result


def _compare(ours: pd.DataFrame, reference: pd.DataFrame) -> None:
    ours = ours.set_index("gene_id").loc[reference.index]
    lfc_r = np.corrcoef(ours["log2_fold_change"], reference["log2_fold_change"])[0, 1]
    assert lfc_r >= 0.999, lfc_r
    ok = reference["pvalue"].notna() & ours["pvalue"].notna()
    p_r = np.corrcoef(np.log10(ours.loc[ok, "pvalue"]), np.log10(reference.loc[ok, "pvalue"]))[0, 1]
    assert p_r >= 0.999, p_r
    called = set(ours.index[ours["padj"] < ALPHA])
    called_r = set(reference.index[reference["padj"] < ALPHA])
    assert len(called_r) > 50
    assert jaccard(called, called_r) >= 0.98, (len(called), len(called_r))
    # the same genes left without padj by independent filtering, but for AB vs DMSO: R's
    # lowess-based choice of the filter threshold drops the 30 lowest-count genes (2 %, none
    # significant) where PyDESeq2's, which the engine follows, keeps them
    assert (ours["padj"].isna() == reference["padj"].isna()).mean() >= 0.97


@pytest.mark.parametrize("file", ["combination_contrast.csv.gz",
                                  "combination_interaction.csv.gz"])
def test_interaction_equals_r(fitted, file):
    """The interaction on the shared one-factor fit equals R's numeric contrast and R's
    A:B term of the factorial design."""
    reference = pd.read_csv(R_DIR / file, index_col="gene_id")
    _compare(fitted.linear_results, reference)


def test_interaction_is_the_difference_of_the_condition_contrasts(fitted):
    """log2FC(interaction) = log2FC(AB) - log2FC(A) - log2FC(B) exactly, and each condition
    contrast equals R's."""
    conditions = pd.read_csv(R_DIR / "combination_conditions.csv.gz")
    lfc = fitted.results.pivot(index="gene_id", columns="contrast", values="log2_fold_change")
    interaction = fitted.linear_results.set_index("gene_id")["log2_fold_change"]
    expected = lfc["AB_vs_DMSO"] - lfc["A_vs_DMSO"] - lfc["B_vs_DMSO"]
    np.testing.assert_allclose(interaction.loc[expected.index], expected, atol=1e-10)
    for name, reference in conditions.groupby("contrast"):
        ours = fitted.results[fitted.results["contrast"] == name]
        _compare(ours, reference.set_index("gene_id"))


def test_interaction_recovers_planted_truth(fitted):
    truth = pd.read_csv(R_DIR / "combination_truth.csv", index_col="gene_id")["interaction_log2"]
    table = fitted.linear_results.set_index("gene_id").loc[truth.index]
    planted = truth != 0
    called = table["padj"] < ALPHA
    assert (called & planted).sum() / called.sum() >= 0.9
    assert np.sign(table.loc[called & planted, "log2_fold_change"]).eq(
        np.sign(truth[called & planted])).all()


def test_linear_contrast_of_a_missing_level_is_refused(fitted):
    counts = pd.read_csv(R_DIR / "combination_counts.tsv.gz", sep="\t", index_col=0)
    samples = pd.read_csv(R_DIR / "combination_samples.tsv", sep="\t", index_col=0)
    kept = samples.index[samples["condition"] != "B"]
    frame = pd.DataFrame({"condition": pd.Categorical(samples.loc[kept, "condition"],
                                                      categories=["DMSO", "A", "AB"])},
                         index=kept)
    with pytest.raises(ValueError, match="level 'B'"):
        fit_deseq2(counts[kept], frame, "~ condition",
                   [Contrast(name="A_vs_DMSO", factor="condition", level="A", reference="DMSO")],
                   shrink=False, linear_contrasts=[LinearContrast(
                       "AB_interaction", "condition",
                       (("AB", 1.0), ("A", -1.0), ("B", -1.0), ("DMSO", 1.0)))])
