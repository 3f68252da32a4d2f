"""Activity scores of a network's sources (pathways, TFs) from per-gene statistics.

The methods are decoupler's (``decoupler.mt.mlm`` and ``ulm``, equal to R decoupleR's
``run_mlm`` / ``run_ulm``; ``dge_platform_tests/activity`` checks it against R fixtures):

- ``mlm``: per contrast, the genes' statistics regressed on every source's weights at once
  (with an intercept); a source's score is the t-value of its coefficient. PROGENy's
  authors recommend it for pathways, whose footprints overlap.
- ``ulm``: the same, one source at a time; for TFs, whose regulons are many and small.

Statistics go in as a genes x conditions frame (the Wald statistic of each contrast, or a
sample's scaled expression); a gene a condition lacks counts as 0 (no evidence), as decoupler
does for missing values. Sources with fewer than ``min_targets`` genes in the data are not
scored. p-values are the t-tests' two-sided ones (decoupler adjusts ulm's itself; the raw
ones are kept here); ``padj`` is Benjamini-Hochberg over the sources of one condition.
"""

from __future__ import annotations

from typing import Literal

import pandas as pd
from scipy.stats import t as t_dist

from dge_platform._core.stats import bh_adjust

Method = Literal["mlm", "ulm"]
MIN_TARGETS = 5
"""decoupler's default ``tmin``: a source needs this many of its targets in the data."""


def gene_statistics(results: pd.DataFrame, by: list[str], *, gene: str = "gene_symbol",
                    value: str = "stat") -> pd.DataFrame:
    """Genes x conditions from a long table (one column per group of ``by``): a gene named
    twice in one condition (two Ensembl ids, one symbol) keeps its strongest statistic;
    genes without a name and untested values (null) are left out."""
    rows = results.dropna(subset=[gene, value])
    rows = rows.assign(_strength=rows[value].abs()).sort_values("_strength", ascending=False)
    rows = rows.drop_duplicates([*by, gene])
    wide = rows.pivot_table(index=gene, columns=by, values=value, aggfunc="first")
    return wide.fillna(0.0)


def network_overlap(net: pd.DataFrame, genes: pd.Index) -> tuple[pd.Series, float]:
    """Per source, its targets present among ``genes``; and the fraction of the network's
    targets present (low when the study's gene ids do not map to the network's)."""
    present = net["target"].isin(genes)
    per_source = present.groupby(net["source"]).sum().astype("int64")
    targets = net["target"].drop_duplicates()
    return per_source, float(targets.isin(genes).mean()) if len(targets) else 0.0


def activity(stats: pd.DataFrame, net: pd.DataFrame, *, method: Method,
             min_targets: int = MIN_TARGETS) -> pd.DataFrame:
    """Every source's activity in every condition (a column of ``stats``).

    Parameters
    ----------
    stats
        Genes x conditions statistics (index: gene names as the network's targets).
    net
        The network, long: ``source``, ``target``, ``weight`` (signed: the mode of
        regulation times its confidence).
    method
        ``mlm`` (pathways) or ``ulm`` (TFs), see the module docstring.
    min_targets
        Sources with fewer targets in ``stats`` are not scored.

    Returns
    -------
    One row per condition and scored source: ``condition`` (the column label of ``stats``),
    ``source``, ``score``, ``pvalue``, ``padj``, ``n_targets``, ``method``.
    """
    import decoupler as dc  # heavy (numba, plotting): only where activities are computed

    net = net[["source", "target", "weight"]]
    n_targets, _ = network_overlap(net, stats.index)
    scored = n_targets.index[n_targets >= min_targets]
    columns = ["condition", "source", "score", "pvalue", "padj", "n_targets", "method"]
    if stats.shape[1] == 0 or len(scored) == 0:
        return pd.DataFrame(columns=columns)
    # Conditions by position: column labels may be tuples (contrast, cell type).
    positions = [f"c{i}" for i in range(stats.shape[1])]
    data = pd.DataFrame(stats.to_numpy(dtype=float).T, index=positions,
                        columns=stats.index.astype(str))
    run = dc.mt.mlm if method == "mlm" else dc.mt.ulm
    # Every gene is a data point of the fit, zero-filled ones too, as in R decoupleR.
    scores, pvalues = run(data=data, net=net[net["source"].isin(scored)], tmin=min_targets,
                          empty=False)
    if method == "ulm":
        # decoupler 2.2 returns ulm's p-values BH-adjusted per condition; the raw ones are its
        # t-test's: n genes, n - 2 degrees of freedom.
        pvalues = pd.DataFrame(2 * t_dist.sf(scores.abs(), stats.shape[0] - 2),
                               index=scores.index, columns=scores.columns)
    long = scores.stack().rename("score").to_frame().join(pvalues.stack().rename("pvalue"))
    long.index.names = ["position", "source"]
    long = long.reset_index()
    long["condition"] = [stats.columns[int(p[1:])] for p in long["position"]]
    long["padj"] = long.groupby("position")["pvalue"].transform(bh_adjust)
    long["n_targets"] = n_targets.reindex(long["source"]).to_numpy()
    long["method"] = method
    return long[columns].reset_index(drop=True)

