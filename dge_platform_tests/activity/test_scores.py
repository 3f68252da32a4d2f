"""Activity scores recover planted pathway and TF activity; inputs are shaped as the methods
expect (strongest statistic per gene symbol, untested genes left out)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dge_platform.activity.scores import activity, gene_statistics, network_overlap


def _planted(seed: int = 0):
    """400 genes, 4 sources of 30 signed targets (overlapping); condition c1 activates A and
    represses B, c2 activates C; D is never active."""
    rng = np.random.default_rng(seed)
    genes = pd.Index([f"G{i}" for i in range(400)])
    edges = []
    for k, source in enumerate("ABCD"):
        targets = genes[k * 25: k * 25 + 30]
        edges += [(source, t, float(rng.choice([-1.0, 1.0]))) for t in targets]
    net = pd.DataFrame(edges, columns=["source", "target", "weight"])
    stats = pd.DataFrame(rng.normal(size=(400, 2)), index=genes, columns=["c1", "c2"])
    for condition, source, sign in (("c1", "A", 1), ("c1", "B", -1), ("c2", "C", 1)):
        rows = net[net["source"] == source]
        stats.loc[rows["target"], condition] += sign * 3 * rows["weight"].to_numpy()
    return stats, net


@pytest.mark.parametrize("method", ["mlm", "ulm"])
def test_planted_activity_is_recovered(method):
    stats, net = _planted()
    table = activity(stats, net, method=method).set_index(["condition", "source"])
    assert table.loc[("c1", "A"), "score"] > 5 and table.loc[("c1", "A"), "padj"] < 1e-3
    assert table.loc[("c1", "B"), "score"] < -5
    assert table.loc[("c2", "C"), "score"] > 5
    assert abs(table.loc[("c1", "D"), "score"]) < 3 and abs(table.loc[("c2", "A"), "score"]) < 3
    assert (table["n_targets"] == 30).all() and (table["method"] == method).all()
    # padj: Benjamini-Hochberg over the sources of one condition.
    c1 = table.loc["c1"].sort_values("pvalue")
    expected = np.minimum.accumulate((c1["pvalue"] * 4 / np.arange(1, 5))[::-1])[::-1]
    np.testing.assert_allclose(c1["padj"], np.minimum(expected, 1))


def test_sources_with_too_few_targets_in_the_data_are_not_scored():
    stats, net = _planted()
    kept = stats.drop(index=net.loc[net["source"] == "D", "target"][:27])  # D keeps 3
    table = activity(kept, net, method="ulm")
    assert "D" not in set(table["source"]) and {"A", "B", "C"} <= set(table["source"])
    per_source, matched = network_overlap(net, kept.index)
    assert per_source["D"] == 3 and 0 < matched < 1


def test_gene_statistics_keep_the_strongest_statistic_per_symbol():
    results = pd.DataFrame({
        "contrast": ["x", "x", "x", "x", "y"],
        "gene_symbol": ["TP53", "TP53", None, "MDM2", "TP53"],
        "stat": [1.0, -4.0, 9.0, np.nan, 2.0]})
    wide = gene_statistics(results, ["contrast"])
    assert wide.loc["TP53", "x"] == -4.0 and wide.loc["TP53", "y"] == 2.0
    assert "MDM2" not in wide.index  # untested (null statistic)
