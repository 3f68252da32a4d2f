"""Enrichment of DEG results: over-representation of up/down DEGs and GSEA prerank.

Both are computed per contrast against the genes actually tested in that contrast (padj
not null), never the whole genome: genes that could not have been called DEGs must not
dilute or inflate the background.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, hypergeom

from dge_platform.enrichment.gsea import prerank

ENRICHMENT_COLUMNS = ["collection", "term", "method", "size", "score", "pvalue", "padj", "genes"]
NUMERIC_COLUMNS = {"size": "int64", "score": "float64", "pvalue": "float64", "padj": "float64"}


def genes_tested(results: pd.DataFrame, key: str = "gene_key") -> pd.DataFrame:
    """Rows of one contrast that were tested (padj not null), one row per gene key."""
    tested = results[results["padj"].notna() & results[key].notna()]
    return tested.sort_values("padj").drop_duplicates(key)


def deg_lists(universe: pd.DataFrame, alpha: float, lfc_threshold: float,
              key: str = "gene_key") -> dict[str, set[str]]:
    """Up- and down-regulated DEGs: padj < alpha and |shrunken log2FC| > threshold."""
    lfc = universe["log2_fold_change_shrunk"].fillna(universe["log2_fold_change"])
    significant = universe["padj"] < alpha
    return {"ora_up": set(universe.loc[significant & (lfc > lfc_threshold), key]),
            "ora_down": set(universe.loc[significant & (lfc < -lfc_threshold), key])}


def over_representation(hits: set[str], universe: set[str],
                        sets: dict[str, list[str]]) -> pd.DataFrame:
    """Hypergeometric test of each set for over-representation of ``hits``.

    Returns per set: term, size (members in the universe), overlap, odds ratio (with a 0.5
    Haldane correction when a cell is empty), p-value P(X >= overlap), BH padj, and the
    overlapping genes.
    """
    hits = hits & universe
    n_universe, n_hits = len(universe), len(hits)
    rows = []
    for term, members in sets.items():
        in_universe = [g for g in members if g in universe]
        overlap = sorted(g for g in in_universe if g in hits)
        size, k = len(in_universe), len(overlap)
        table = np.array([k, size - k, n_hits - k, n_universe - size - n_hits + k], dtype=float)
        if (table == 0).any():
            table += 0.5
        rows.append({"term": term, "size": size, "overlap": k,
                     "score": (table[0] * table[3]) / (table[1] * table[2]),
                     "pvalue": float(hypergeom.sf(k - 1, n_universe, size, n_hits)),
                     "genes": ",".join(overlap)})
    out = pd.DataFrame(rows, columns=["term", "size", "overlap", "score", "pvalue", "genes"])
    out["padj"] = false_discovery_control(out["pvalue"].to_numpy()) if len(out) else []
    return out


def gsea_prerank(ranking: pd.Series, sets: dict[str, list[str]], *, permutations: int = 1000,
                 seed: int = 0) -> pd.DataFrame:
    """GSEA prerank of a gene ranking (e.g. the Wald statistic) against gene sets.

    Returns per set: term, size, score (NES), pvalue, padj (GSEA FDR q-value) and the
    leading-edge genes (comma-separated).
    """
    result = prerank(ranking, sets, permutations=permutations, seed=seed, min_size=1,
                     max_size=1_000_000)
    return pd.DataFrame({"term": result["term"], "size": result["size"], "score": result["nes"],
                         "pvalue": result["pvalue"], "padj": result["fdr"],
                         "genes": result["lead_genes"]})


def enrich_contrast(results: pd.DataFrame, collections: list[tuple[str, str, dict]], *,
                    alpha: float, lfc_threshold: float, permutations: int = 1000,
                    seed: int = 0, gsea: bool = True) -> pd.DataFrame:
    """ORA of up and down DEGs (padj < ``alpha``, |shrunken log2FC| > ``lfc_threshold``) and,
    when ``gsea``, GSEA prerank on the Wald statistic, per collection.

    ``results`` holds one contrast of ``deg_results`` (gene_id, gene_symbol, stat, padj,
    log2 fold changes). Each collection is keyed by gene symbol or Ensembl id; genes are
    matched on that key, restricted to those tested, and sets are kept with 15-500 tested
    members.
    """
    from dge_platform.enrichment.annotation import strip_version
    from dge_platform.enrichment.gene_sets import filter_sets

    tables = []
    for name, id_kind, sets in collections:
        keyed = results.assign(gene_key=results["gene_id"].map(strip_version)
                               if id_kind == "ensembl" else results["gene_symbol"])
        universe = genes_tested(keyed)
        keys = set(universe["gene_key"])
        usable = filter_sets(sets, keys)
        for method, hits in deg_lists(universe, alpha, lfc_threshold).items():
            ora = over_representation(hits, keys, usable).drop(columns="overlap")
            tables.append(ora.assign(collection=name, method=method))
        if not gsea:
            continue
        ranking = universe.dropna(subset=["stat"]).set_index("gene_key")["stat"]
        prerank = gsea_prerank(ranking, usable, permutations=permutations, seed=seed)
        tables.append(prerank.assign(collection=name, method="gsea_prerank"))
    # Empty tables (no DEGs, no usable set) would make concat guess column dtypes.
    tables = [t for t in tables if len(t)]
    if not tables:
        return pd.DataFrame(columns=ENRICHMENT_COLUMNS).astype(NUMERIC_COLUMNS)
    return pd.concat(tables, ignore_index=True)[ENRICHMENT_COLUMNS].astype(NUMERIC_COLUMNS)
