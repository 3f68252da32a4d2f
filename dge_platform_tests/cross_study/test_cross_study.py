"""Cross-study views: gene keys across naming schemes, recurrence counts on a hand-made
catalog, contrast similarity against a naive pandas pairwise loop, and CMap-style
connectivity search (self first, inverse last, KS against a direct computation)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dge_platform.cross_study.meta_analysis import (
    NEIGHBOR_COLUMNS,
    RECURRENCE_COLUMNS,
    contrast_similarity,
    gene_recurrence,
    signature_key,
    signature_values,
)
from dge_platform.cross_study.signature_search import (
    SEARCH_COLUMNS,
    connectivity_scores,
    query_from_contrast,
)

TP53, MYC, GAPDH = "ENSG00000141510", "ENSG00000136997", "ENSG00000111640"


def rows(study, contrast, cell_type, genes):
    """deg_results rows: genes = (gene_id, gene_symbol, base_mean, lfc, pvalue, significant)."""
    frame = pd.DataFrame(genes, columns=["gene_id", "gene_symbol", "base_mean",
                                         "log2_fold_change", "pvalue", "significant"])
    frame["significant"] = frame["significant"].astype(object)
    frame.insert(0, "study_id", study)
    frame.insert(1, "contrast", contrast)
    frame["cell_type"] = cell_type
    frame["stat"] = frame["log2_fold_change"] * 4
    frame["padj"] = frame["pvalue"]
    return frame


def hand_made() -> pd.DataFrame:
    """Study A: versioned Ensembl ids with symbols. B: mouse-style symbols as gene_id, no
    gene_symbol. C: single-cell (per cell type), Ensembl ids of another version, no symbols
    (they reach the symbols through A). A/c1 also lists a second, weaker Ensembl id
    annotated TP53: the stronger one stands for the gene."""
    return pd.concat([
        rows("A", "c1", None, [(f"{TP53}.17", "TP53", 100.0, 2.0, 1e-5, True),
                               ("ENSG00000999001.1", "TP53", 5.0, -5.0, 1e-6, True),
                               (f"{MYC}.14", "MYC", 100.0, -1.0, 1e-4, True),
                               (f"{GAPDH}.15", "GAPDH", 100.0, 0.1, 0.5, False)]),
        rows("A", "c2", None, [(f"{TP53}.17", "TP53", 100.0, 1.5, 1e-3, True),
                               (f"{MYC}.14", "MYC", 100.0, 0.5, 0.2, False),
                               (f"{GAPDH}.15", "GAPDH", 100.0, 0.2, 0.3, None)]),
        rows("B", "d1", None, [("Tp53", None, 50.0, 3.0, 1e-6, True),
                               ("Myc", None, 50.0, 1.2, 1e-3, True),
                               ("Gapdh", None, 0.0, np.nan, np.nan, None)]),
        rows("C", "e1", "T", [(f"{TP53}.5", None, 20.0, -0.5, 1e-3, True),
                              (f"{MYC}.3", None, 20.0, -2.0, 1e-4, True),
                              ("ENSG00000999999.1", None, 20.0, 0.3, 0.4, False)]),
        rows("C", "e1", "B", [(f"{TP53}.5", None, 20.0, 1.0, 0.1, False),
                              (f"{MYC}.3", None, 20.0, -1.5, 1e-3, True)]),
    ], ignore_index=True)


# --------------------------------------------------------------------------- gene keys

def test_versioned_ensembl_ids_and_symbols_in_any_case_share_a_key():
    results = hand_made()
    keys = signature_key(results)
    assert list(keys.columns) == ["study_id", "contrast", "cell_type", "signature", "gene_key"]
    assert keys.index.equals(results.index)
    by_id = dict(zip(results["gene_id"], keys["gene_key"].astype(object)))
    # Symbol present -> the symbol; "Tp53" -> upper-cased; Ensembl-only C -> A's symbol.
    assert by_id[f"{TP53}.17"] == by_id["Tp53"] == by_id[f"{TP53}.5"] == "TP53"
    assert by_id[f"{MYC}.3"] == by_id["Myc"] == "MYC"
    assert by_id["ENSG00000999999.1"] == "ENSG00000999999"       # version dropped
    assert keys["signature"].tolist() == [0] * 4 + [1] * 3 + [2] * 3 + [3] * 3 + [4] * 2
    assert keys.loc[keys["signature"] == 4, "cell_type"].eq("B").all()


# --------------------------------------------------------------------------- recurrence

def test_gene_recurrence_counts_on_a_hand_made_catalog():
    out = gene_recurrence(hand_made())
    assert list(out.columns) == RECURRENCE_COLUMNS
    assert out["gene_key"].tolist() == ["MYC", "TP53", "ENSG00000999999", "GAPDH"]
    table = out.set_index("gene_key")
    counts = ["n_studies", "n_contrasts", "n_up", "n_down", "n_studies_up", "n_studies_down"]
    # TP53: up in A/c1, A/c2, B/d1; down in C/e1/T; not significant in C/e1/B. The weaker
    # duplicate in A/c1 (down, base_mean 5) does not count.
    assert table.loc["TP53", counts].tolist() == [3, 5, 3, 1, 2, 1]
    assert table.loc["TP53", "median_log2_fold_change"] == 1.5      # of 2, 1.5, 3, -0.5, 1
    assert table.loc["TP53", ["fraction_up", "fraction_down"]].tolist() == [0.6, 0.2]
    assert table.loc["MYC", counts].tolist() == [3, 5, 1, 3, 1, 2]
    assert table.loc["MYC", "median_log2_fold_change"] == -1.0
    # GAPDH: B has no p-value (not tested); A/c2's null significant counts as not.
    assert table.loc["GAPDH", counts].tolist() == [1, 2, 0, 0, 0, 0]
    assert table.loc["GAPDH", "median_log2_fold_change"] == pytest.approx(0.15)
    assert table.loc["ENSG00000999999", counts].tolist() == [1, 1, 0, 0, 0, 0]
    assert table.loc["TP53", "gene_symbol"] == "TP53"


# --------------------------------------------------------------------------- similarity

def random_catalog(seed: int = 0, n_studies: int = 4, per_study: int = 6,
                   n_genes: int = 400) -> pd.DataFrame:
    """Random statistics with holes: each study filters its own genes by base_mean, and
    each signature misses ~10% of statistics on top. Study 1, contrast 0 is planted as a
    noisy copy of study 0, contrast 0, over a single-cell cell type."""
    rng = np.random.default_rng(seed)
    frames, planted = [], rng.normal(size=n_genes)
    for s in range(n_studies):
        base_mean = rng.gamma(0.8, 40.0, n_genes)
        for c in range(per_study):
            stat = rng.normal(size=n_genes)
            if c == 0 and s in (0, 1):
                stat = planted + (0.3 if s else 0.1) * rng.normal(size=n_genes)
            stat[rng.random(n_genes) < 0.1] = np.nan
            frames.append(pd.DataFrame({
                "study_id": f"S{s}", "contrast": f"c{c}",
                "cell_type": "T cell" if (s, c) == (1, 0) else None,
                "gene_id": [f"ENSG{g:011d}.{s + 1}" for g in range(n_genes)],
                "gene_symbol": [f"gene{g}" if s % 2 else f"GENE{g}" for g in range(n_genes)],
                "base_mean": base_mean, "stat": stat}))
    return pd.concat(frames, ignore_index=True)


def naive_correlations(results: pd.DataFrame, min_base_mean: float
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """r and shared-gene counts for every pair, one pandas Series.corr per pair."""
    kept = results[(results["base_mean"] >= min_base_mean) & results["stat"].notna()]
    kept = kept.assign(gene=kept["gene_symbol"].str.upper(),
                       sig=kept["study_id"] + "/" + kept["contrast"])
    matrix = kept.pivot(index="gene", columns="sig", values="stat")
    names = list(matrix.columns)
    r = pd.DataFrame(np.nan, index=names, columns=names)
    n = pd.DataFrame(0, index=names, columns=names)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pair = matrix[[a, b]].dropna()
            n.loc[a, b] = n.loc[b, a] = len(pair)
            r.loc[a, b] = r.loc[b, a] = pair[a].corr(pair[b])
    return r, n


def test_contrast_similarity_equals_naive_pairwise_pearson():
    results = random_catalog()
    r, n = naive_correlations(results, 10.0)
    out = contrast_similarity(results, min_base_mean=10.0, min_shared_genes=150, top_k=50,
                              block_size=5)             # several blocks, ragged last one
    assert list(out.columns) == NEIGHBOR_COLUMNS
    query = out["study_id"] + "/" + out["contrast"]
    neighbor = out["neighbor_study_id"] + "/" + out["neighbor_contrast"]
    expected_r = np.array([r.loc[q, t] for q, t in zip(query, neighbor)])
    assert np.max(np.abs(out["correlation"].to_numpy() - expected_r)) < 1e-10
    assert out["n_shared_genes"].tolist() == [n.loc[q, t] for q, t in zip(query, neighbor)]
    # Exactly the pairs sharing >= 150 genes are listed, each by decreasing r.
    qualifying = {(a, b) for a in r.index for b in r.columns if a != b and n.loc[a, b] >= 150}
    assert 0 < len(qualifying) < len(r) * (len(r) - 1)      # the threshold bites
    assert set(zip(query, neighbor)) == qualifying
    assert all(np.all(np.diff(g.to_numpy()) <= 0) for _, g in out.groupby(query)["correlation"])
    assert all(ranks == list(range(1, len(ranks) + 1)) for ranks in out.groupby(query)["rank"]
               .apply(list))


def test_contrast_similarity_ranks_the_planted_pair_first():
    out = contrast_similarity(random_catalog(seed=1), top_k=3)
    first = out[out["rank"] == 1].set_index(["study_id", "contrast"])
    hit = first.loc[("S0", "c0")]
    assert (hit["neighbor_study_id"], hit["neighbor_contrast"], hit["neighbor_cell_type"]) \
        == ("S1", "c0", "T cell")
    assert hit["correlation"] > 0.9
    back = first.loc[("S1", "c0")]
    assert (back["cell_type"], back["neighbor_study_id"], back["neighbor_contrast"]) \
        == ("T cell", "S0", "c0")
    # Other studies only: S0/c0's neighbours then all come from S1..S3.
    other = contrast_similarity(random_catalog(seed=1), top_k=5, exclude_same_study=True)
    assert (other["study_id"] != other["neighbor_study_id"]).all()


def test_signature_values_spreads_one_value_per_signature_and_key():
    values, signatures, keys = signature_values(hand_made(), value="log2_fold_change")
    assert signatures.shape == (5, 3) and list(keys[:2]) == ["ENSG00000999999", "GAPDH"]
    assert values[0, list(keys).index("TP53")] == 2.0      # base_mean 100 beats 5
    assert np.isnan(values[2, list(keys).index("GAPDH")])  # B: no fold change


# --------------------------------------------------------------------------- search

def search_catalog(seed: int = 0, n_genes: int = 1000, n_signatures: int = 12) -> pd.DataFrame:
    """Random signatures plus Q (the query's source, study S0, Ensembl ids with symbols)
    and its inverse R (study S1, lower-case symbols as gene_id, no gene_symbol)."""
    rng = np.random.default_rng(seed)
    q_stat = rng.normal(size=n_genes) * 3
    frames = []
    for i in range(n_signatures):
        stat = rng.normal(size=n_genes) * 3
        name, study = f"random{i}", f"S{i % 3}"
        if i == 0:
            stat, name, study = q_stat, "Q", "S0"
        elif i == 1:
            stat, name, study = -q_stat + rng.normal(size=n_genes) * 0.3, "R", "S1"
        symbols = [f"GENE{g}" for g in range(n_genes)]
        lower = study == "S1"
        frames.append(pd.DataFrame({
            "study_id": study, "contrast": name, "cell_type": None,
            "gene_id": [s.lower() for s in symbols] if lower
            else [f"ENSG{g:011d}.{i}" for g in range(n_genes)],
            "gene_symbol": None if lower else symbols, "base_mean": 100.0, "stat": stat,
            "significant": np.abs(stat) > 6}))
    return pd.concat(frames, ignore_index=True)


def direct_ks(ranks: np.ndarray, n: int) -> float:
    """CMap 1.0 KS, straight from the definition."""
    ranks = np.sort(ranks)
    j = np.arange(1, len(ranks) + 1)
    t = len(ranks)
    a, b = np.max(j / t - ranks / n), np.max(ranks / n - (j - 1) / t)
    return a if a > b else -b


def test_connectivity_ranks_the_source_first_and_its_inverse_last():
    results = search_catalog()
    q = results[results["contrast"] == "Q"].set_index("gene_symbol")["stat"]
    order = q.sort_values(ascending=False).index
    up = [g.lower() for g in order[:40]]                   # symbols in any case
    down = [f"ENSG{int(g[4:]):011d}.99" for g in order[-40:]] + ["NOT_A_GENE"]  # other version
    out = connectivity_scores(up, down, results, permutations=500, seed=1)
    assert list(out.columns) == SEARCH_COLUMNS and len(out) == 12
    assert out["rank"].tolist() == list(range(1, 13))
    assert out.iloc[0]["contrast"] == "Q" and out.iloc[0]["score"] == 1.0
    assert out.iloc[0]["es_up"] > 0.9 and out.iloc[0]["es_down"] < -0.9
    assert out.iloc[-1]["contrast"] == "R" and out.iloc[-1]["score"] == -1.0
    assert out.iloc[0]["pvalue"] == out.iloc[-1]["pvalue"] == 1 / 501
    assert out["score"].between(-1, 1).all() and out["fdr"].ge(out["pvalue"]).all()
    assert out["pvalue"].iloc[1:-1].min() > 0.01          # random signatures: no signal
    assert (out["n_up_matched"] == 40).all() and (out["n_down_matched"] == 40).all()
    assert out.attrs["unmatched_down"] == ["NOT_A_GENE"] and out.attrs["n_up_matched"] == 40

    # ES against the definition, ranks by stat (descending) within each signature.
    for contrast in ["Q", "R", "random5"]:
        sig = results[results["contrast"] == contrast].reset_index(drop=True)
        rank = sig["stat"].rank(ascending=False, method="first").to_numpy()
        names = (sig["gene_symbol"].fillna(sig["gene_id"])).str.upper()
        position = dict(zip(names, rank))
        row = out.set_index("contrast").loc[contrast]
        assert row["es_up"] == pytest.approx(
            direct_ks(np.array([position[g.upper()] for g in up]), len(sig)), abs=1e-12)
        assert row["es_down"] == pytest.approx(direct_ks(np.array(
            [position[g] for g in order[-40:]]), len(sig)), abs=1e-12)

    again = connectivity_scores(up, down, results, permutations=500, seed=1)
    pd.testing.assert_frame_equal(out, again)
    # One-sided queries score the side they have.
    only_up = connectivity_scores(up, [], results, permutations=100)
    assert only_up.iloc[0]["contrast"] == "Q" and only_up.iloc[-1]["contrast"] == "R"
    assert np.isnan(only_up["es_down"]).all() and (only_up["n_down_matched"] == 0).all()


def test_query_from_contrast_finds_its_own_contrast():
    results = search_catalog()
    up, down = query_from_contrast(results, "S0", "Q", n=25)
    q = results[(results["contrast"] == "Q") & results["significant"]]
    assert up == q[q["stat"] > 0].sort_values("stat", ascending=False)["gene_symbol"] \
        .head(25).tolist()
    assert down == q[q["stat"] < 0].sort_values("stat")["gene_symbol"].head(25).tolist()
    assert 10 < len(up) <= 25 and 10 < len(down) <= 25
    out = connectivity_scores(up, down, results, permutations=100)
    assert out.iloc[0]["contrast"] == "Q" and out.iloc[-1]["contrast"] == "R"


def test_query_errors_are_explained():
    results = search_catalog()
    with pytest.raises(ValueError, match="none of the 3 query genes .*match a gene"):
        connectivity_scores(["NOPE1", "NOPE2"], ["NOPE3"], results)
    with pytest.raises(ValueError, match="both the up and the down list: GENE1"):
        connectivity_scores(["GENE1"], ["gene1"], results)
    with pytest.raises(ValueError, match="no genes"):
        connectivity_scores([], [], results)
    with pytest.raises(ValueError, match="no results for study 'S0', contrast 'missing'"):
        query_from_contrast(results, "S0", "missing")
    single_cell = hand_made()
    with pytest.raises(ValueError, match=r"per cell type: choose one of \['B', 'T'\]"):
        query_from_contrast(single_cell, "C", "e1")
    assert query_from_contrast(single_cell, "C", "e1", cell_type="T") == ([], ["MYC", "TP53"])
