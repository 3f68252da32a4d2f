"""Enrichment of DEG results: over-representation of up/down DEGs and GSEA prerank.

Both are computed per contrast against the genes actually tested in that contrast (padj
not null), never the whole genome: genes that could not have been called DEGs must not
dilute or inflate the background.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, hypergeom

ENRICHMENT_COLUMNS = ["collection", "term", "method", "size", "score", "pvalue", "padj", "genes"]


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
