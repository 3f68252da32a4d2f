"""Mechanism-of-action hypotheses from a screen: compounds whose transcriptional signatures
correlate, clusters of signatures, and each compound's nearest other compounds.

A signature is one contrast (compound x dose vs the vehicle controls) over genes; by default
the Wald statistic, which weighs a fold change by its certainty, so noisy genes of
weakly-covered conditions do not dominate. Similarity is the Pearson correlation of two
signatures over the informative genes (all matrix operations: 200 conditions x 20,000 genes
take well under a second).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

ALPHA = 0.05
MAX_GENES = 2000
MIN_SIGNIFICANT_GENES = 20
N_VARIABLE_GENES = 500
N_NEIGHBORS = 5
CUT_DISTANCE = 0.7

NEIGHBOR_COLUMNS = ["contrast", "compound", "dose", "rank", "neighbor_contrast",
                    "neighbor_compound", "neighbor_dose", "correlation"]


@dataclass
class SimilarityResult:
    """Signature similarity of a screen's conditions.

    Attributes
    ----------
    similarity
        Condition x condition Pearson correlation over the informative genes (inactive
        conditions: 0 off the diagonal, see ``inactive``).
    clusters
        Indexed by contrast: compound, dose, cluster (1, 2, ... numbered in dendrogram
        order) and order (the condition's position among the dendrogram leaves).
    neighbors
        Long table, ``NEIGHBOR_COLUMNS``: per condition its nearest conditions of *other*
        compounds, rank 1 = most correlated.
    order
        Contrasts in dendrogram leaf order.
    inactive
        Conditions whose signature has no variance over the informative genes (no response):
        they correlate with nothing, are left out of ``neighbors`` and form singleton
        clusters.
    notes
        Plain-language notes on edge cases met (inactive conditions, too few conditions).
    """

    similarity: pd.DataFrame
    clusters: pd.DataFrame
    neighbors: pd.DataFrame
    order: list[str]
    inactive: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def signature_matrix(deg_results: pd.DataFrame, value: str = "stat") -> pd.DataFrame:
    """Genes x conditions (contrast names) of one result column, in order of first
    appearance; NaN where a gene was not tested in a condition."""
    rows = deg_results.drop_duplicates(["gene_id", "contrast"])
    matrix = rows.pivot(index="gene_id", columns="contrast", values=value)
    matrix = matrix.reindex(index=pd.unique(rows["gene_id"]), columns=pd.unique(rows["contrast"]))
    matrix.index.name, matrix.columns.name = "gene_id", None
    return matrix.astype(float)


def conditions(deg_results: pd.DataFrame) -> pd.DataFrame:
    """Compound and dose of each contrast, indexed by contrast."""
    table = deg_results.drop_duplicates("contrast").set_index("contrast")
    return table.reindex(columns=["compound", "dose"])


def informative_genes(deg_results: pd.DataFrame, *, alpha: float = ALPHA,
                      max_genes: int = MAX_GENES, min_genes: int = MIN_SIGNIFICANT_GENES,
                      n_variable: int = N_VARIABLE_GENES, value: str = "stat") -> list[str]:
    """Genes that carry the screen's signal.

    Genes with padj < ``alpha`` in at least one condition, strongest first (smallest padj,
    ties by largest |``value``|), at most ``max_genes``. When fewer than ``min_genes`` (20)
    are significant, correlations over so few genes are mostly noise, so the significant
    genes are topped up with the most variable genes of the signature matrix (variance of
    ``value`` across conditions, untested = 0) up to ``n_variable`` (500) genes.
    """
    tested = deg_results.dropna(subset=["gene_id"])
    magnitude = tested[value].abs()
    per_gene = pd.DataFrame({"padj": tested["padj"], "magnitude": magnitude,
                             "gene_id": tested["gene_id"]}).groupby("gene_id", sort=False)
    best = pd.DataFrame({"padj": per_gene["padj"].min(), "magnitude": per_gene["magnitude"].max()})
    significant = best[best["padj"] < alpha].sort_values(["padj", "magnitude"],
                                                         ascending=[True, False], kind="stable")
    genes = significant.index[:max_genes].tolist()
    if len(genes) >= min_genes:
        return genes
    signatures = signature_matrix(tested, value).fillna(0.0)
    variance = signatures.var(axis=1, ddof=0)
    variance = variance[(variance > 0) & ~variance.index.isin(genes)]
    extra = variance.sort_values(ascending=False, kind="stable").index
    return genes + extra[:max(0, min(n_variable, max_genes) - len(genes))].tolist()


def correlation_matrix(signatures: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Pearson correlation between columns (untested genes count as 0, no change); columns
    without variance correlate 0 with every other column (1 with themselves) and are
    returned as inactive."""
    x = signatures.fillna(0.0).to_numpy(dtype=float)
    x = x - x.mean(axis=0)
    norms = np.sqrt((x**2).sum(axis=0))
    scale = np.max(np.abs(x), initial=0.0)
    inactive = norms <= 1e-12 * max(scale, 1.0) * np.sqrt(max(len(x), 1))
    z = np.divide(x, norms, out=np.zeros_like(x), where=~inactive)
    r = np.clip(z.T @ z, -1.0, 1.0)
    np.fill_diagonal(r, 1.0)
    names = list(signatures.columns)
    return pd.DataFrame(r, index=names, columns=names), [n for n, i in zip(names, inactive) if i]


def _cluster(similarity: pd.DataFrame, cut_distance: float) -> tuple[np.ndarray, np.ndarray]:
    """Average-linkage clusters on 1 - r cut at ``cut_distance``, numbered in leaf order."""
    from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
    from scipy.spatial.distance import squareform

    n = len(similarity)
    if n < 2:
        return np.ones(n, dtype=int), np.arange(n)
    distance = np.clip(1.0 - similarity.to_numpy(dtype=float), 0.0, 2.0)
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform((distance + distance.T) / 2, checks=False), "average")
    order = leaves_list(tree)
    raw = fcluster(tree, t=cut_distance, criterion="distance")
    renumber = {c: i + 1 for i, c in enumerate(pd.unique(raw[order]))}
    return np.array([renumber[c] for c in raw]), order


def nearest_neighbors(similarity: pd.DataFrame, meta: pd.DataFrame, n_neighbors: int,
                      exclude: list[str] | None = None) -> pd.DataFrame:
    """The ``n_neighbors`` most correlated conditions of each condition, leaving out the
    condition itself, every dose of the same compound and the ``exclude``d conditions."""
    names = np.asarray(similarity.index)
    r = similarity.to_numpy(dtype=float).copy()
    compounds = meta["compound"].to_numpy(dtype=object)
    same = compounds[:, None] == compounds[None, :]
    same |= np.eye(len(names), dtype=bool)
    skipped = np.isin(names, exclude or [])
    r[same | skipped[None, :]] = -np.inf
    k = max(0, min(n_neighbors, len(names) - 1))
    ranked = np.argsort(-r, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(r, ranked, axis=1)
    query, rank = np.nonzero(np.isfinite(best) & ~skipped[:, None])
    target = ranked[query, rank]
    doses = meta["dose"].to_numpy()
    return pd.DataFrame({
        "contrast": names[query], "compound": compounds[query], "dose": doses[query],
        "rank": rank + 1, "neighbor_contrast": names[target],
        "neighbor_compound": compounds[target], "neighbor_dose": doses[target],
        "correlation": best[query, rank],
    }, columns=NEIGHBOR_COLUMNS)


def compound_similarity(signatures: pd.DataFrame, genes: list[str], *,
                        n_neighbors: int = N_NEIGHBORS,
                        conditions_meta: pd.DataFrame | None = None,
                        cut_distance: float = CUT_DISTANCE) -> SimilarityResult:
    """Similarity, clusters and nearest other compounds of a screen's signatures.

    Parameters
    ----------
    signatures
        Genes x conditions (:func:`signature_matrix`).
    genes
        Informative genes (:func:`informative_genes`); genes missing from ``signatures``
        are ignored.
    n_neighbors
        Neighbours listed per condition.
    conditions_meta
        Compound and dose per contrast: indexed by contrast, or with a ``contrast``
        column (:func:`conditions`). Without it every condition is its own compound.
    cut_distance
        Height at which the average-linkage tree on 1 - r is cut: 0.7 keeps together
        conditions whose signatures correlate at r >= 0.3 on average, far above chance
        over hundreds of genes (sd of r about 1/sqrt(n genes)), while unrelated (r ~ 0) and
        inactive conditions stay apart.

    Returns
    -------
    :class:`SimilarityResult`. Neighbours leave out other doses of the same compound:
    MoA hypotheses are about *other* compounds.
    """
    names = list(signatures.columns)
    if conditions_meta is None:
        meta = pd.DataFrame({"compound": names, "dose": np.nan}, index=names)
    else:
        meta = conditions_meta.set_index("contrast") if "contrast" in conditions_meta.columns \
            else conditions_meta
        meta = meta.reindex(index=names, columns=["compound", "dose"])
        unknown = meta["compound"].isna()
        meta.loc[unknown, "compound"] = np.asarray(names, dtype=object)[unknown.to_numpy()]
    used = signatures.reindex([g for g in dict.fromkeys(genes) if g in signatures.index])
    notes = []
    if len(used) < 3:
        notes.append(f"only {len(used)} informative gene(s) in the signatures: similarities "
                     "are undefined and reported as 0")
    similarity, inactive = correlation_matrix(used)
    if inactive:
        notes.append(f"{len(inactive)} condition(s) without any response over the "
                     f"{len(used)} informative genes (e.g. {', '.join(inactive[:5])}): their "
                     "correlations are undefined, set to 0, and they get no neighbours")
    if len(names) < 2:
        notes.append(f"{len(names)} condition(s): nothing to compare")
    cluster_ids, order = _cluster(similarity, cut_distance)
    position = np.empty(len(names), dtype=int)
    position[order] = np.arange(len(names))
    clusters = meta.assign(cluster=cluster_ids, order=position)
    clusters.index.name = "contrast"
    neighbors = nearest_neighbors(similarity, meta, n_neighbors, exclude=inactive)
    return SimilarityResult(similarity=similarity, clusters=clusters, neighbors=neighbors,
                            order=[names[i] for i in order], inactive=inactive, notes=notes)
