"""Scores per sample: GSVA equals R GSVA 1.46 on airway (Hallmark), PROGENy per-sample scores
recover a planted pathway shift, and gene symbols are chosen as documented."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dge_platform.activity.models import progeny_model
from dge_platform.activity.samples import expression_by_symbol, gene_set_scores, pathway_scores
from dge_platform.enrichment.gene_sets import read_gmt
from dge_platform.resources import resource_path
from dge_platform_tests.conftest import FIXTURES

R_ACTIVITY = FIXTURES / "r_activity"


def test_gsva_equals_r_gsva_per_sample():
    expression = pd.read_csv(R_ACTIVITY / "gsva_input.csv.gz", index_col=0)
    expected = pd.read_csv(R_ACTIVITY / "gsva_hallmark.csv.gz", index_col=0)
    sets = read_gmt(resource_path("genesets", "h.all.v7.0.symbols.gmt.gz"))
    scores = gene_set_scores(expression, sets).pivot(index="source", columns="sample",
                                                     values="score")
    scores = scores.loc[expected.index, expected.columns]
    for sample in expected.columns:
        assert np.corrcoef(scores[sample], expected[sample])[0, 1] >= 0.99, sample
    # R's kernel CDF is a truncated lookup table; the rest is the same walk.
    assert float((scores - expected).abs().max().max()) < 0.05


def test_pathway_scores_recover_a_planted_shift():
    """Samples 4-7 get the p53 footprint added (each target moved by 2 SD in its weight's
    direction): their p53 scores are high, the others' low, unrelated pathways near 0."""
    model = progeny_model("Homo sapiens")
    genes = model["target"].drop_duplicates().to_numpy()
    rng = np.random.default_rng(1)
    expression = pd.DataFrame(rng.normal(8, 1, size=(len(genes), 8)), index=genes,
                              columns=[f"s{i}" for i in range(8)])
    p53 = model[model["source"] == "p53"].set_index("target")["weight"]
    expression.loc[p53.index, ["s4", "s5", "s6", "s7"]] += 2 * np.sign(p53.to_numpy())[:, None]
    scores = pathway_scores(expression, model).pivot(index="source", columns="sample",
                                                     values="score")
    assert (scores.loc["p53", ["s4", "s5", "s6", "s7"]] > 3).all()
    assert (scores.loc["p53", ["s0", "s1", "s2", "s3"]] < -3).all()
    assert scores.drop(index="p53").abs().to_numpy().mean() < 2


def test_symbols_keep_the_most_expressed_gene():
    expression = pd.DataFrame({"a": [1.0, 5.0, 3.0, 2.0], "b": [1.0, 7.0, 3.0, 2.0]},
                              index=["ENSG1", "ENSG2", "ENSG3", "ENSG4"])
    symbols = pd.Series({"ENSG1": "TP53", "ENSG2": "TP53", "ENSG3": None, "ENSG4": "MDM2"})
    named = expression_by_symbol(expression, symbols)
    assert named.loc["TP53"].tolist() == [5.0, 7.0] and set(named.index) == {"TP53", "MDM2"}
