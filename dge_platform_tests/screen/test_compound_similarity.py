"""Compound similarity: planted mechanisms recovered by neighbours and clusters, correlations
against numpy, informative-gene selection and its fallback, edge cases and scale."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from scipy.stats import false_discovery_control, norm

from dge_platform.outputs.plots import similarity_heatmap
from dge_platform.screen.similarity import (
    NEIGHBOR_COLUMNS,
    compound_similarity,
    conditions,
    informative_genes,
    signature_matrix,
)

MECHANISMS = {"HDAC": ["VORINOSTAT", "PANOBINOSTAT", "ENTINOSTAT"],
              "TOP2": ["ETOPOSIDE", "DOXORUBICIN", "MITOXANTRONE"],
              "MTOR": ["RAPAMYCIN", "TORIN1", "EVEROLIMUS"]}
DOSES = (1.0, 10.0)


def screen_results(seed: int = 0, n_genes: int = 2000, n_signature: int = 150,
                   inactive: bool = False) -> pd.DataFrame:
    """DEG results of 3 mechanisms x 3 compounds x 2 doses: the compounds of a mechanism
    share the direction of its signature genes (Wald stat +-5 at the high dose, half at the
    low dose, plus a compound-specific part), with unit noise everywhere. ``inactive`` adds
    a compound whose stat is exactly 0 (no response at all)."""
    rng = np.random.default_rng(seed)
    genes = [f"G{i:05d}" for i in range(n_genes)]
    frames = []
    for compounds in MECHANISMS.values():
        signature = np.zeros(n_genes)
        members = rng.choice(n_genes, n_signature, replace=False)
        signature[members] = rng.choice([-5.0, 5.0], n_signature)
        for compound in compounds:
            own = np.zeros(n_genes)
            own[rng.choice(n_genes, 40, replace=False)] = rng.normal(0, 3, 40)
            for dose in DOSES:
                scale = 1.0 if dose == max(DOSES) else 0.5
                stat = scale * (signature + own) + rng.normal(0, 1, n_genes)
                frames.append(_result_frame(genes, compound, dose, stat))
    if inactive:
        frames.append(_result_frame(genes, "DMSO2", 1.0, np.zeros(n_genes)))
    return pd.concat(frames, ignore_index=True)


def _result_frame(genes: list[str], compound: str, dose: float, stat: np.ndarray) -> pd.DataFrame:
    pvalue = 2 * norm.sf(np.abs(stat))
    return pd.DataFrame({
        "contrast": f"{compound}_{dose:g}", "compound": compound, "dose": dose, "gene_id": genes,
        "log2_fold_change": stat / 4, "log2_fold_change_shrunk": stat / 5, "stat": stat,
        "padj": false_discovery_control(pvalue)})


def mechanism_of(contrasts: pd.Series) -> pd.Series:
    lookup = {c: m for m, compounds in MECHANISMS.items() for c in compounds}
    return contrasts.str.rsplit("_", n=1).str[0].map(lookup)


def test_signature_matrix_and_conditions_from_long_results():
    results = screen_results()
    signatures = signature_matrix(results)
    assert signatures.shape == (2000, 18)
    assert list(signatures.columns[:2]) == ["VORINOSTAT_1", "VORINOSTAT_10"]
    row = results.iloc[12345]
    assert signatures.loc[row["gene_id"], row["contrast"]] == row["stat"]
    shrunk = signature_matrix(results.iloc[1:], value="log2_fold_change_shrunk")
    assert np.isnan(shrunk.loc["G00000", "VORINOSTAT_1"])  # not tested -> NaN
    assert shrunk.loc["G00001", "VORINOSTAT_1"] == pytest.approx(results["stat"].iloc[1] / 5)
    meta = conditions(results)
    assert meta.loc["ETOPOSIDE_10"].tolist() == ["ETOPOSIDE", 10.0]


def test_informative_genes_are_the_significant_ones_strongest_first():
    results = screen_results()
    genes = informative_genes(results, alpha=0.05)
    best = results.groupby("gene_id")["padj"].min()
    assert set(genes) == set(best.index[best < 0.05])
    assert len(genes) > 300  # the planted signatures
    assert best[genes].is_monotonic_increasing
    assert informative_genes(results, alpha=0.05, max_genes=50) == genes[:50]


def test_informative_genes_fall_back_to_most_variable():
    results = screen_results()
    results["padj"] = 1.0  # nothing significant
    genes = informative_genes(results, alpha=0.05, n_variable=100)
    variance = signature_matrix(results).var(axis=1, ddof=0)
    assert genes == variance.sort_values(ascending=False).index[:100].tolist()
    # A few significant genes come first, then the most variable others.
    results.loc[results["gene_id"].isin(["G01999", "G01998"]), "padj"] = 0.01
    genes = informative_genes(results, alpha=0.05, n_variable=100)
    assert genes[:2] == ["G01998", "G01999"] or genes[:2] == ["G01999", "G01998"]
    assert len(genes) == 100 and len(set(genes)) == 100


def test_correlation_equals_numpy_corrcoef_on_informative_genes():
    results = screen_results(seed=1)
    signatures = signature_matrix(results)
    genes = informative_genes(results, alpha=0.05)
    result = compound_similarity(signatures, genes, conditions_meta=conditions(results))
    expected = np.corrcoef(signatures.loc[genes].to_numpy().T)
    np.testing.assert_allclose(result.similarity.to_numpy(), expected, atol=1e-12)
    assert result.similarity.loc["VORINOSTAT_10", "PANOBINOSTAT_10"] > 0.5
    assert abs(result.similarity.loc["VORINOSTAT_10", "ETOPOSIDE_10"]) < 0.3


def test_neighbours_are_other_compounds_of_the_same_mechanism():
    results = screen_results(seed=2)
    signatures = signature_matrix(results)
    genes = informative_genes(results, alpha=0.05)
    result = compound_similarity(signatures, genes, n_neighbors=5,
                                 conditions_meta=conditions(results))
    neighbors = result.neighbors
    assert list(neighbors.columns) == NEIGHBOR_COLUMNS
    assert len(neighbors) == 18 * 5
    assert all(ranks == [1, 2, 3, 4, 5]
               for ranks in neighbors.groupby("contrast")["rank"].apply(list))
    # Never itself nor another dose of the same compound.
    assert (neighbors["compound"] != neighbors["neighbor_compound"]).all()
    # The 4 conditions of the 2 other compounds of the mechanism come first ...
    top = neighbors[neighbors["rank"] <= 4]
    assert (mechanism_of(top["contrast"]) == mechanism_of(top["neighbor_contrast"])).all()
    # ... and the 5th, from another mechanism, correlates far less.
    fifth = neighbors[neighbors["rank"] == 5]
    assert (mechanism_of(fifth["contrast"]) != mechanism_of(fifth["neighbor_contrast"])).all()
    assert fifth["correlation"].max() < top["correlation"].min() - 0.2
    # Correlations are the matrix's values, in decreasing order per condition.
    for _, row in neighbors.iloc[[0, 17, 44]].iterrows():
        assert row["correlation"] == result.similarity.loc[row["contrast"],
                                                           row["neighbor_contrast"]]
    assert (neighbors.groupby("contrast")["correlation"].diff().dropna() <= 0).all()
    first = neighbors.iloc[0]
    assert first["neighbor_dose"] in DOSES and first["dose"] in DOSES


def test_clusters_recover_the_mechanisms_and_follow_leaf_order():
    results = screen_results(seed=3)
    signatures = signature_matrix(results)
    result = compound_similarity(signatures, informative_genes(results, alpha=0.05),
                                 conditions_meta=conditions(results))
    clusters = result.clusters
    truth = mechanism_of(pd.Series(clusters.index, index=clusters.index))
    partition = {frozenset(g.index) for _, g in clusters.groupby("cluster")}
    expected = {frozenset(g.index) for _, g in truth.groupby(truth)}
    assert partition == expected
    assert sorted(clusters["cluster"].unique()) == [1, 2, 3]
    assert result.order == clusters.sort_values("order").index.tolist()
    # Clusters are numbered in leaf order, so each occupies a contiguous block.
    assert clusters.loc[result.order, "cluster"].is_monotonic_increasing


def test_inactive_compound_correlates_with_nothing_and_gets_no_neighbours():
    results = screen_results(seed=4, inactive=True)
    signatures = signature_matrix(results)
    genes = informative_genes(results, alpha=0.05)
    result = compound_similarity(signatures, genes, conditions_meta=conditions(results))
    assert result.inactive == ["DMSO2_1"]
    assert result.notes and "DMSO2_1" in result.notes[0]
    row = result.similarity.loc["DMSO2_1"]
    assert row["DMSO2_1"] == 1.0
    assert (row.drop("DMSO2_1") == 0).all()
    assert "DMSO2_1" not in set(result.neighbors["contrast"])
    assert "DMSO2_1" not in set(result.neighbors["neighbor_contrast"])
    assert (result.clusters["cluster"] == result.clusters.loc["DMSO2_1", "cluster"]).sum() == 1
    # The other conditions are untouched by it.
    active = [c for c in signatures.columns if c != "DMSO2_1"]
    np.testing.assert_allclose(result.similarity.loc[active, active].to_numpy(),
                               np.corrcoef(signatures.loc[genes, active].to_numpy().T),
                               atol=1e-12)


def test_fewer_than_two_conditions_and_no_metadata():
    results = screen_results(seed=5)
    one = signature_matrix(results[results["contrast"] == "TORIN1_10"])
    result = compound_similarity(one, list(one.index))
    assert result.similarity.to_numpy().tolist() == [[1.0]]
    assert result.neighbors.empty and list(result.neighbors.columns) == NEIGHBOR_COLUMNS
    assert result.clusters["cluster"].tolist() == [1]
    assert any("nothing to compare" in note for note in result.notes)
    # Without metadata each condition is its own compound: other doses may be neighbours.
    two = signature_matrix(results[results["compound"] == "TORIN1"])
    result = compound_similarity(two, informative_genes(results, alpha=0.05), n_neighbors=3)
    assert result.neighbors["neighbor_contrast"].tolist() == ["TORIN1_10", "TORIN1_1"]
    # With metadata the two doses are one compound: no neighbours left.
    result = compound_similarity(two, list(two.index), conditions_meta=conditions(results))
    assert result.neighbors.empty


def test_scales_to_a_full_screen():
    rng = np.random.default_rng(6)
    signatures = pd.DataFrame(rng.normal(size=(20_000, 200)),
                              index=[f"G{i}" for i in range(20_000)],
                              columns=[f"C{j // 2}_{j % 2}" for j in range(200)])
    meta = pd.DataFrame({"compound": [f"C{j // 2}" for j in range(200)],
                         "dose": [float(j % 2) for j in range(200)]}, index=signatures.columns)
    start = time.perf_counter()
    result = compound_similarity(signatures, list(signatures.index), conditions_meta=meta)
    assert time.perf_counter() - start < 5
    assert result.similarity.shape == (200, 200) and len(result.neighbors) == 200 * 5
    # Unrelated random signatures: nothing clusters at r >= 0.3 on average.
    assert result.clusters["cluster"].nunique() == 200
    png = similarity_heatmap(result.similarity, result.order, result.clusters["cluster"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_similarity_heatmap_png():
    results = screen_results(seed=7)
    result = compound_similarity(signature_matrix(results),
                                 informative_genes(results, alpha=0.05),
                                 conditions_meta=conditions(results))
    png = similarity_heatmap(result.similarity, result.order, result.clusters["cluster"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert similarity_heatmap(result.similarity, result.order, None)[:4] == b"\x89PNG"
