"""Enrichment: gene sets and id mapping, ORA against scipy, prerank against gseapy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import hypergeom, spearmanr

from dge_platform.enrichment.annotation import map_symbols, strip_version
from dge_platform.enrichment.gene_sets import (
    GmtError,
    filter_sets,
    load_collections,
    read_gmt,
    shipped_collections,
)
from dge_platform.enrichment.gsea import prerank
from dge_platform.enrichment.ora import (
    deg_lists,
    enrich_contrast,
    genes_tested,
    gsea_prerank,
    over_representation,
)
from dge_platform.validation import validate_study
from dge_platform_tests._helpers import edit_yaml, problems_of


def test_shipped_human_collections_read():
    collections = {c.name: c for c in shipped_collections("Homo sapiens")}
    assert set(collections) == {"GO_BP", "GO_BP_ensembl", "Hallmark", "Reactome"}
    hallmark = read_gmt(collections["Hallmark"].path)
    assert len(hallmark) == 50
    assert "FKBP5" in hallmark["HALLMARK_ANDROGEN_RESPONSE"]
    go = read_gmt(collections["GO_BP_ensembl"].path)
    assert all(g.startswith("ENSG") for members in list(go.values())[:20] for g in members)
    assert shipped_collections("Drosophila melanogaster") == []


def test_gmt_errors(tmp_path):
    bad = tmp_path / "bad.gmt"
    bad.write_text("SET_A\tdesc\tG1\tG2\nSET_B only-two-fields\n")
    with pytest.raises(GmtError, match="line 2 has 1 tab-separated field"):
        read_gmt(bad)


def test_study_gene_sets_are_validated(toy_study):
    (toy_study / "sets.gmt").write_text("S1 no tabs here\n")
    edit_yaml(toy_study, gene_sets=["sets.gmt", "missing.gmt"])
    found = problems_of(toy_study)
    assert "study.yaml: gene_sets[1]: 'missing.gmt' not found -> give a GMT file inside the " \
           "study folder" in found
    assert any(p.startswith("sets.gmt: not a usable GMT file: line 1 has 1 tab-separated")
               for p in found)
    (toy_study / "sets.gmt").write_text("S1\td\tg1\tg2\n")
    edit_yaml(toy_study, gene_sets=["sets.gmt"])
    assert validate_study(toy_study).problems == []


def test_ensembl_ids_map_to_symbols():
    ids = pd.Series(["ENSG00000096060.14", "ENSG00000157514", "ENSG00000120129", "NOT_A_GENE"])
    symbols = map_symbols(ids)
    assert symbols.tolist()[:3] == ["FKBP5", "TSC22D3", "DUSP1"]
    assert pd.isna(symbols.iloc[3])
    assert strip_version("ENSG00000096060.14") == "ENSG00000096060"
    carried = map_symbols(pd.Series(["ENSG00000096060"]), pd.Series(["MyName"]))
    assert carried.tolist() == ["MyName"]


def test_ora_pvalues_equal_scipy_hypergeometric():
    rng = np.random.default_rng(0)
    genes = [f"g{i}" for i in range(1000)]
    results = pd.DataFrame({"gene_key": genes, "padj": rng.uniform(0, 1, 1000),
                            "log2_fold_change": rng.normal(0, 1, 1000),
                            "log2_fold_change_shrunk": rng.normal(0, 1, 1000)})
    results.loc[:99, "padj"] = np.nan  # untested genes are not in the universe
    planted = genes[100:140]
    results.loc[results["gene_key"].isin(planted),
                ["padj", "log2_fold_change_shrunk"]] = [1e-4, 2.0]
    sets = {"planted": planted + genes[:10], "random": list(rng.choice(genes, 60, replace=False))}
    universe = genes_tested(results)
    hits = deg_lists(universe, alpha=0.05, lfc_threshold=0.0)["ora_up"]
    out = over_representation(hits, set(universe["gene_key"]), sets).set_index("term")
    n_universe = 900
    for term, members in sets.items():
        in_universe = [g for g in members if g in set(universe["gene_key"])]
        k = len(set(in_universe) & hits)
        expected = hypergeom.sf(k - 1, n_universe, len(in_universe), len(hits))
        assert out.loc[term, "pvalue"] == pytest.approx(expected, rel=1e-12)
        assert out.loc[term, "size"] == len(in_universe)
    assert out.loc["planted", "size"] == 40  # the 10 untested members do not count
    assert out.loc["planted", "pvalue"] < 1e-20


def test_filter_sets_by_size_in_universe():
    sets = {"small": ["a", "b"], "ok": [f"g{i}" for i in range(20)] + ["absent"]}
    kept = filter_sets(sets, {f"g{i}" for i in range(30)} | {"a", "b"})
    assert list(kept) == ["ok"] and len(kept["ok"]) == 20


def planted_ranking(seed: int = 3, n_genes: int = 3000, n_sets: int = 60):
    rng = np.random.default_rng(seed)
    genes = [f"G{i}" for i in range(n_genes)]
    sets = {f"SET{j}": list(rng.choice(genes, int(rng.integers(20, 120)), replace=False))
            for j in range(n_sets)}
    stat = pd.Series(rng.normal(0, 1, n_genes), index=genes)
    stat[sets["SET0"]] += 1.5   # planted up
    stat[sets["SET1"]] -= 1.5   # planted down
    for j, effect in enumerate(np.linspace(-0.6, 0.6, 16)):  # graded weaker signals
        stat[sets[f"SET{j + 2}"]] += effect
    return stat, sets


def test_prerank_recovers_planted_signal_and_is_reproducible():
    stat, sets = planted_ranking()
    first = gsea_prerank(stat, sets, permutations=1000, seed=11).set_index("term")
    again = gsea_prerank(stat, sets, permutations=1000, seed=11).set_index("term")
    pd.testing.assert_frame_equal(first, again)
    assert first.loc["SET0", "score"] > 2 and first.loc["SET0", "padj"] < 0.01
    assert first.loc["SET1", "score"] < -2 and first.loc["SET1", "padj"] < 0.01
    null_sets = first.drop(index=[f"SET{j}" for j in range(18)])
    assert (null_sets["padj"] < 0.05).mean() < 0.1


def test_prerank_agrees_with_gseapy():
    import gseapy

    stat, sets = planted_ranking(seed=5)
    ours = gsea_prerank(stat, sets, permutations=1000, seed=1).set_index("term")
    ref = gseapy.prerank(rnk=stat.sort_values(ascending=False), gene_sets=sets,
                         permutation_num=1000, seed=1, threads=1, min_size=1, max_size=1000,
                         outdir=None, no_plot=True, verbose=False).res2d.set_index("Term")
    ref_es = ref["ES"].astype(float)
    ours_es = prerank(stat, sets, permutations=100, seed=1, min_size=1, max_size=1000) \
        .set_index("term")["es"]
    np.testing.assert_allclose(ours_es.loc[ref_es.index], ref_es, atol=1e-10)
    either = (ours["padj"] < 0.25) | (ref["FDR q-val"].astype(float).loc[ours.index] < 0.25)
    rho = spearmanr(ours.loc[either, "score"],
                    ref["NES"].astype(float).loc[ours.index][either]).statistic
    print(f"\nSpearman NES vs gseapy over {int(either.sum())} sets: {rho:.4f}")
    assert rho >= 0.95
    lead_ours = set(ours.loc["SET0", "genes"].split(","))
    assert lead_ours == set(ref.loc["SET0", "Lead_genes"].split(";"))


def test_collections_for_a_study(tmp_path):
    (tmp_path / "mine.gmt").write_text("MY_SET\tdesc\tENSG00000096060\tENSG00000157514\n")
    ensembl = load_collections("Homo sapiens", tmp_path, ["mine.gmt"], "ensembl")
    assert [(name, kind) for name, kind, _ in ensembl] == [
        ("GO_BP_ensembl", "ensembl"), ("Hallmark", "symbol"), ("Reactome", "symbol"),
        ("mine", "ensembl")]
    symbols = load_collections("human", tmp_path, [], "symbol")
    assert [name for name, _, _ in symbols] == ["GO_BP", "Hallmark", "Reactome"]
    assert load_collections("Drosophila melanogaster", tmp_path, [], "symbol") == []


def test_enrich_contrast_uses_study_sets_and_tested_universe():
    stat, sets = planted_ranking()
    results = pd.DataFrame({"gene_id": stat.index, "gene_symbol": stat.index, "stat": stat.values,
                            "padj": np.where(stat.abs() > 2, 1e-3, 0.5),
                            "log2_fold_change": stat.values / 2,
                            "log2_fold_change_shrunk": stat.values / 2})
    table = enrich_contrast(results, [("mine", "symbol", sets)], alpha=0.05, lfc_threshold=0.0,
                            permutations=200, seed=0)
    assert set(table["method"]) == {"ora_up", "ora_down", "gsea_prerank"}
    assert list(table.columns) == ["collection", "term", "method", "size", "score", "pvalue",
                                   "padj", "genes"]
    best_up = table[table["method"] == "ora_up"].nsmallest(1, "pvalue")["term"].item()
    best_gsea = table[table["method"] == "gsea_prerank"].nlargest(1, "score")["term"].item()
    assert best_up == best_gsea == "SET0"
