"""Scores per sample: PROGENy pathway activity and GSVA gene-set scores of each analysed sample
(well, pseudobulk), so activity can be plotted, tested and fitted against dose.

- Pathways: each gene's expression (VST) z-scored over the samples, then decoupler's ``mlm``
  per sample on the PROGENy footprints (:mod:`.scores`): a sample's score says how far its
  pathway activity lies from the study's average.
- Gene sets: decoupler's GSVA (Gaussian kernel CDF per gene, rank walk per sample, maximum
  positive plus negative deviation), as R GSVA's ``gsva(method="gsva", kcdf="Gaussian")``:
  per-sample scores r >= 0.998 against GSVA 1.46 on airway with Hallmark
  (``dge_platform_tests/activity``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from dge_platform.activity.scores import activity

MIN_SET_SIZE, MAX_SET_SIZE = 15, 500
"""GSVA's ``min.sz`` / ``max.sz``, as the platform's enrichment uses them."""


def expression_by_symbol(expression: pd.DataFrame, symbols: pd.Series) -> pd.DataFrame:
    """Genes x samples re-indexed by gene symbol: genes without a symbol dropped, a symbol on
    several genes keeps the gene with the highest mean expression."""
    named = expression.assign(_symbol=symbols.reindex(expression.index).to_numpy())
    named = named.dropna(subset=["_symbol"])
    named = named.assign(_mean=named.drop(columns="_symbol").mean(axis=1))
    named = named.sort_values("_mean", ascending=False).drop_duplicates("_symbol")
    return named.set_index("_symbol").drop(columns="_mean").rename_axis("gene_symbol")


def pathway_scores(expression: pd.DataFrame, model: pd.DataFrame) -> pd.DataFrame:
    """Per sample and pathway: ``sample``, ``source``, ``score`` (mlm t-value on the sample's
    z-scored expression). Genes constant over the samples carry no information and are left
    out; fewer than 2 samples give no scores."""
    if expression.shape[1] < 2:
        return pd.DataFrame(columns=["sample", "source", "score"])
    spread = expression.std(axis=1, ddof=1)
    varying = expression[spread > 0]
    scaled = varying.sub(varying.mean(axis=1), axis=0).div(spread[spread > 0], axis=0)
    scores = activity(scaled, model, method="mlm")
    return scores.rename(columns={"condition": "sample"})[["sample", "source", "score"]]


def gene_set_scores(expression: pd.DataFrame, sets: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Per sample and gene set: ``sample``, ``source`` (the set), ``score`` (GSVA), for the
    sets with 15-500 genes among the expressed (non-constant) ones."""
    import decoupler as dc  # heavy: only where scores are computed

    varying = expression[expression.std(axis=1, ddof=1) > 1e-10]  # as GSVA filters genes
    net = pd.DataFrame([(name, gene) for name, genes in sets.items() for gene in genes],
                       columns=["source", "target"]).drop_duplicates()
    net = net[net["target"].isin(varying.index)]
    sizes = net["source"].value_counts()
    net = net[net["source"].isin(sizes.index[(sizes >= MIN_SET_SIZE) & (sizes <= MAX_SET_SIZE)])]
    if varying.shape[1] < 2 or net.empty:
        return pd.DataFrame(columns=["sample", "source", "score"])
    data = pd.DataFrame(varying.to_numpy(dtype=float).T, index=varying.columns.astype(str),
                        columns=varying.index.astype(str))
    scores, _ = dc.mt.gsva(data=data, net=net, tmin=MIN_SET_SIZE, kcdf="gaussian")
    long = scores.stack().rename("score").reset_index()
    long.columns = ["sample", "source", "score"]
    return long
