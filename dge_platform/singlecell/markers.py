"""Marker genes of cell types or clusters: per-cell Wilcoxon rank-sum tests, one group
against all other cells.

These p-values are EXPLORATORY and must not be read as evidence of differential
expression. The test treats every cell as an independent replicate, but cells are not:
cells of one donor (and one capture) share that donor's genotype, environment and
handling, so the real number of replicates is the number of donors, not thousands of
cells. Donor-to-donor variation, which any claim about a population has to beat, is
ignored, and with thousands of cells even a tiny or donor-driven shift gets a vanishing
p-value (pseudoreplication: Squair et al. 2021, Nat Commun 12:5692; Zimmerman et al. 2021,
Nat Commun 12:738). The groups were also usually defined from the same data (clusters),
which inflates significance further ("double dipping"). Use the ranking to name and
describe clusters; for inference between conditions use pseudobulk DE (counts summed per
donor x cell type, tested with the bulk DESeq2 engine).
"""

from __future__ import annotations

import warnings

import anndata
import numpy as np
import pandas as pd

MARKER_COLUMNS = ["group", "rank", "gene_id", "gene_symbol", "score", "log2_fold_change",
                  "pvalue", "padj", "pct_in_group", "pct_other_groups", "method",
                  "exploratory"]
METHOD = "wilcoxon_per_cell"


def marker_genes(adata, groupby: str, *, n_genes: int = 100, min_cells: int = 3
                 ) -> pd.DataFrame:
    """Top marker genes of each group by a per-cell Wilcoxon test against all other cells.

    Parameters
    ----------
    adata
        Cells x genes with log-normalised expression in ``X`` (the output of
        ``cell_embedding.embed_cells``). Not modified.
    groupby
        ``obs`` column with the groups (cell type or cluster).
    n_genes
        Top genes reported per group (by Wilcoxon z-score, i.e. up in the group).
    min_cells
        Groups with fewer cells are skipped (their cells still count as "other").

    Returns
    -------
    One row per group and gene, columns ``MARKER_COLUMNS``: group, rank (1 = best),
    gene_id, gene_symbol (NA when unknown), score (Wilcoxon z), log2_fold_change (of mean
    expression, from ``expm1`` of the log data), pvalue, padj (Benjamini-Hochberg over all
    genes of the group), pct_in_group and pct_other_groups (fraction of cells, 0-1, with a
    non-zero count), method ("wilcoxon_per_cell") and exploratory (always True; see the
    module docstring). Empty (with these columns) when no group has ``min_cells`` cells
    or there is nothing to compare a group with.
    """
    import scanpy as sc

    from dge_platform.singlecell.embedding import check_log_normalized

    if groupby not in adata.obs.columns:
        raise ValueError(f"obs has no column {groupby!r} (columns: "
                         f"{', '.join(map(str, adata.obs.columns))})")
    check_log_normalized(adata, "marker_genes")
    labels = adata.obs[groupby]
    present = labels.notna().to_numpy()
    labels = labels.astype(object).where(labels.notna(), "nan").astype(str)
    sizes = labels[present].value_counts()
    eligible = sorted(g for g, n in sizes.items() if n >= max(min_cells, 2))
    n_other = [len(labels) - sizes[g] for g in eligible]
    if not eligible or max(n_other, default=0) == 0:
        return pd.DataFrame(columns=MARKER_COLUMNS)
    obs = pd.DataFrame({"_group": pd.Categorical(labels.to_numpy())}, index=adata.obs_names)
    slim = anndata.AnnData(X=adata.X, obs=obs,
                           var=pd.DataFrame(index=adata.var_names.astype(str)))
    slim.uns["log1p"] = {"base": (adata.uns.get("log1p") or {}).get("base")}
    n_top = int(min(n_genes, adata.n_vars))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.rank_genes_groups(slim, "_group", groups=eligible, reference="rest",
                                method="wilcoxon", pts=True, n_genes=n_top, use_raw=False,
                                tie_correct=False)
        table = sc.get.rank_genes_groups_df(slim, group=None)
    if "group" not in table.columns:  # a single group comes back without the column
        table.insert(0, "group", eligible[0])
    table["rank"] = table.groupby("group", sort=False).cumcount() + 1
    symbols = (adata.var["gene_symbol"].astype("string") if "gene_symbol" in adata.var
               else pd.Series(pd.NA, index=adata.var_names, dtype="string"))
    symbols.index = adata.var_names.astype(str)
    result = pd.DataFrame({
        "group": table["group"].astype(str).to_numpy(),
        "rank": table["rank"].to_numpy(dtype=np.int64),
        "gene_id": table["names"].astype(str).to_numpy(),
        "gene_symbol": symbols.reindex(table["names"].astype(str)).to_numpy(),
        "score": table["scores"].to_numpy(dtype=float),
        "log2_fold_change": table["logfoldchanges"].to_numpy(dtype=float),
        "pvalue": table["pvals"].to_numpy(dtype=float),
        "padj": table["pvals_adj"].to_numpy(dtype=float),
        "pct_in_group": table["pct_nz_group"].to_numpy(dtype=float),
        "pct_other_groups": table["pct_nz_reference"].to_numpy(dtype=float),
    })
    result["method"] = METHOD
    result["exploratory"] = True
    return result[MARKER_COLUMNS].reset_index(drop=True)
