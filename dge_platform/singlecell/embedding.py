"""Normalisation, embedding, integration, clustering and marker-based annotation of cells.

The standard single-cell pipeline (Luecken and Theis 2019; Heumos et al. 2023):
log-normalised counts, highly variable genes chosen on the raw counts (Seurat v3 variance
stabilisation, per batch), PCA of the scaled variable genes, Harmony integration of the
PCs over a batch key (Korsunsky et al. 2019), a kNN graph, Leiden clusters and UMAP.

Choices forced by this stack (see ``stack-feasibility.md`` section 4): neighbours are
exact (``transformer="sklearn"``; pynndescent costs ~45 s of JIT per process), Harmony is
called directly through harmonypy 2.x (scanpy's wrapper breaks on its N x d output), and
Leiden runs on igraph.

The input is never modified and its count matrix never densified; only the cells x
variable-genes matrix is made dense for scaling (100,000 x 2,000 float32 = 0.8 GB).
"""

from __future__ import annotations

import time
import warnings

import anndata
import numpy as np
import pandas as pd
from scipy import sparse

TARGET_SUM = 1e4
MAX_SCALED = 10.0
N_NEIGHBORS = 15
UNASSIGNED = "unassigned"


def _slim(x, obs: pd.DataFrame | pd.Index, var_names: pd.Index) -> anndata.AnnData:
    """An AnnData around ``x`` (shared, not copied) with a minimal obs and var."""
    obs = obs if isinstance(obs, pd.DataFrame) else pd.DataFrame(index=obs)
    return anndata.AnnData(X=x, obs=obs, var=pd.DataFrame(index=var_names))


def log_normalize(x, target_sum: float = TARGET_SUM) -> sparse.csr_matrix:
    """``log1p`` of counts scaled to ``target_sum`` per cell, as a new float32 CSR matrix
    (cells without counts stay zero)."""
    out = sparse.csr_matrix(x, dtype=np.float32, copy=True)
    totals = np.asarray(out.sum(axis=1, dtype=np.float64)).ravel()
    with np.errstate(divide="ignore"):
        factor = np.where(totals > 0, target_sum / totals, 0.0).astype(np.float32)
    out.data *= np.repeat(factor, np.diff(out.indptr))
    np.log1p(out.data, out=out.data)
    return out


def _highly_variable(counts, log_x, obs: pd.DataFrame, var_names: pd.Index, n_hvg: int,
                     batch_key: str | None) -> tuple[np.ndarray, str]:
    """Boolean HVG mask and the flavour used: Seurat v3 on the counts, else Seurat on the
    log data (when loess fails, e.g. on very few genes or cells), else all genes."""
    import scanpy as sc

    n_genes = len(var_names)
    if n_hvg >= n_genes:
        return np.ones(n_genes, dtype=bool), "all_genes"
    key_obs = obs[[batch_key]].astype(str) if batch_key else pd.DataFrame(index=obs.index)
    attempts = [("seurat_v3", counts), ("seurat", log_x)]
    errors = []
    for flavor, x in attempts:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table = sc.pp.highly_variable_genes(
                    _slim(x, key_obs, var_names), flavor=flavor, n_top_genes=n_hvg,
                    batch_key=batch_key, inplace=False)
            mask = table["highly_variable"].to_numpy(dtype=bool)
            if mask.sum() >= 2:
                return mask, flavor
            errors.append(f"{flavor}: {int(mask.sum())} genes selected")
        except Exception as error:  # noqa: BLE001 - fall through to the next flavour
            errors.append(f"{flavor}: {error}")
    warnings.warn("highly variable gene selection failed (" + "; ".join(errors)
                  + "); using all genes", stacklevel=3)
    return np.ones(n_genes, dtype=bool), "all_genes"


def _scaled_pca(log_x, hvg: np.ndarray, n_pcs: int, seed: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA of the variable genes scaled to unit variance (clipped at 10), as
    ``sc.pp.scale(max_value=10)`` + ``sc.pp.pca``. Returns scores, loadings (genes x PCs)
    and variance ratios."""
    from sklearn.decomposition import PCA

    dense = log_x[:, hvg].toarray()  # cells x n_hvg float32: the only dense matrix
    dense -= dense.mean(axis=0, dtype=np.float64).astype(np.float32)
    # Column variances in row blocks: numpy's std would hold a float64 copy of it all.
    sum_sq = np.zeros(dense.shape[1])
    for start in range(0, dense.shape[0], 8192):
        block = dense[start:start + 8192].astype(np.float64)
        sum_sq += np.einsum("ij,ij->j", block, block)
    std = np.sqrt(sum_sq / max(dense.shape[0] - 1, 1)).astype(np.float32)
    std[~(std > 0)] = 1.0
    dense /= std
    np.clip(dense, None, MAX_SCALED, out=dense)
    solver = "arpack" if n_pcs < min(dense.shape) else "full"
    pca = PCA(n_components=n_pcs, svd_solver=solver, random_state=seed, copy=False)
    scores = pca.fit_transform(dense).astype(np.float32)
    return scores, pca.components_.T, pca.explained_variance_ratio_


def _harmony(x_pca: np.ndarray, obs: pd.DataFrame, key: str, seed: int) -> np.ndarray:
    import harmonypy

    meta = pd.DataFrame({key: obs[key].astype(str).to_numpy()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        corrected = np.asarray(harmonypy.run_harmony(
            np.asarray(x_pca, dtype=np.float64), meta, key, verbose=False,
            random_state=seed).Z_corr)
    if corrected.shape != x_pca.shape:  # harmonypy < 2 returns d x N
        corrected = corrected.T
    return corrected.astype(np.float32)


def embed_cells(adata, *, integrate_key: str | None, n_hvg: int = 2000, n_pcs: int = 30,
                resolution: float = 1.0, seed: int = 0) -> anndata.AnnData:
    """Log-normalise, embed, integrate and cluster cells.

    Parameters
    ----------
    adata
        Cells x genes, raw counts in a sparse ``X``. Not modified.
    integrate_key
        ``obs`` column to integrate over with Harmony (donor, capture, ...); ``None`` (or a
        column with a single level) for no integration.
    n_hvg
        Highly variable genes for PCA.
    n_pcs
        Principal components (capped at ``min(n_cells, n_hvg) - 1``).
    resolution
        Leiden resolution (higher: more clusters).
    seed
        Random state of PCA, Harmony, neighbours, UMAP and Leiden.

    Returns
    -------
    A new AnnData with the same cells and genes, ``obs`` and ``var`` copied:

    * ``X``: ``log1p(normalize_total(counts, 1e4))``, sparse float32 (``uns["log1p"]``
      set, so scanpy tools treat it as log data);
    * ``var["highly_variable"]``: Seurat v3 on the counts, per ``integrate_key`` batch
      (fallback: Seurat dispersion on the log data; ``uns["embedding"]["hvg_flavor"]``);
    * ``obsm["X_pca"]`` (and ``varm["PCs"]``, zero outside the variable genes,
      ``uns["pca"]["variance_ratio"]``): PCA of the variable genes scaled to unit
      variance, clipped at 10;
    * ``obsm["X_pca_harmony"]``: Harmony-corrected PCs, or a copy of ``X_pca`` without
      integration;
    * ``obsm["X_umap_unintegrated"]`` (UMAP of ``X_pca``) and ``obsm["X_umap"]`` (UMAP of
      ``X_pca_harmony``; the same array without integration);
    * ``obs["leiden"]``: categorical clusters "0", "1", ... on the kNN graph
      (15 exact neighbours) of ``X_pca_harmony``, kept in ``obsp``/``uns["neighbors"]``;
    * ``uns["embedding"]``: parameters as used (integrated or not, n_pcs, hvg flavour...)
      and ``seconds`` per step. The first call in a process also pays ~10-20 s of numba
      compilation inside umap-learn (neighbour connectivities and UMAP).
    """
    import scanpy as sc

    if integrate_key is not None and integrate_key not in adata.obs.columns:
        raise ValueError(f"obs has no column {integrate_key!r} to integrate over (columns: "
                         f"{', '.join(map(str, adata.obs.columns))})")
    n_cells, n_genes = adata.shape
    if n_cells < 3 or n_genes < 2:
        raise ValueError(f"need at least 3 cells and 2 genes to embed, got {n_cells} x "
                         f"{n_genes}")
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[step] = round(now - clock, 2)
        clock = now

    counts = sparse.csr_matrix(adata.X)
    log_x = log_normalize(counts)
    out = anndata.AnnData(X=log_x, obs=adata.obs.copy(), var=adata.var.copy())
    out.uns["log1p"] = {"base": None}
    lap("normalize")

    levels = adata.obs[integrate_key].nunique(dropna=True) if integrate_key else 0
    integrate = integrate_key is not None and levels >= 2
    hvg, flavor = _highly_variable(counts, log_x, adata.obs, adata.var_names, n_hvg,
                                   integrate_key if integrate else None)
    out.var["highly_variable"] = hvg
    lap("hvg")

    n_pcs_used = int(max(1, min(n_pcs, n_cells - 1, int(hvg.sum()) - 1)))
    scores, loadings, ratio = _scaled_pca(log_x, hvg, n_pcs_used, seed)
    out.obsm["X_pca"] = scores
    pcs = np.zeros((n_genes, n_pcs_used), dtype=np.float32)
    pcs[hvg] = loadings
    out.varm["PCs"] = pcs
    out.uns["pca"] = {"variance_ratio": ratio}
    lap("scale_pca")
    out.obsm["X_pca_harmony"] = (_harmony(scores, adata.obs, integrate_key, seed)
                                 if integrate else scores.copy())
    lap("harmony")

    n_neighbors = int(min(N_NEIGHBORS, n_cells - 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if integrate:
            sc.pp.neighbors(out, n_neighbors=n_neighbors, use_rep="X_pca",
                            transformer="sklearn", random_state=seed,
                            key_added="neighbors_unintegrated")
            lap("neighbors_unintegrated")
            sc.tl.umap(out, neighbors_key="neighbors_unintegrated", random_state=seed)
            out.obsm["X_umap_unintegrated"] = out.obsm.pop("X_umap")
            del out.uns["neighbors_unintegrated"]
            for key in ("neighbors_unintegrated_distances",
                        "neighbors_unintegrated_connectivities"):
                del out.obsp[key]
            lap("umap_unintegrated")
        sc.pp.neighbors(out, n_neighbors=n_neighbors, use_rep="X_pca_harmony",
                        transformer="sklearn", random_state=seed)
        lap("neighbors")
        sc.tl.umap(out, random_state=seed)
        if not integrate:
            out.obsm["X_umap_unintegrated"] = out.obsm["X_umap"].copy()
        lap("umap")
        sc.tl.leiden(out, resolution=resolution, flavor="igraph", n_iterations=2,
                     directed=False, random_state=seed, key_added="leiden")
        lap("leiden")
    out.uns.pop("umap", None)
    out.uns["embedding"] = {
        "integrate_key": integrate_key or "", "integrated": bool(integrate),
        "n_hvg": int(hvg.sum()), "hvg_flavor": flavor, "n_pcs": n_pcs_used,
        "n_neighbors": n_neighbors, "resolution": float(resolution), "seed": int(seed),
        "target_sum": TARGET_SUM, "seconds": seconds,
    }
    return out


def check_log_normalized(adata, what: str) -> None:
    """Raise when ``X`` looks like raw counts (integers above 20 in a sample of values):
    scores and tests on counts would be dominated by sequencing depth."""
    x = adata.X
    values = x.data if sparse.issparse(x) else np.asarray(x).ravel()
    sample = np.asarray(values[:1_000_000], dtype=np.float64)
    if sample.size and sample.max() > 20 and np.all(sample == np.round(sample)):
        raise ValueError(f"{what} needs log-normalised expression in X, but X looks like raw "
                         "counts (integers up to "
                         f"{sample.max():.0f}); pass the AnnData returned by embed_cells")


def marker_ids(adata, markers: dict[str, list[str]]) -> tuple[dict[str, list[str]],
                                                               dict[str, list[str]]]:
    """Gene ids of each cell type's marker symbols, and the symbols not found.

    A symbol matches ``var["gene_symbol"]`` or a var name, case-insensitively; a symbol
    with several ids (duplicated symbols) contributes all of them.
    """
    ids = pd.Series(adata.var_names.astype(str), index=adata.var_names.astype(str))
    lookup: dict[str, list[str]] = {}
    for gene_id in ids:
        lookup.setdefault(gene_id.upper(), []).append(gene_id)
    if "gene_symbol" in adata.var.columns:
        symbols = adata.var["gene_symbol"].astype("string")
        for gene_id, symbol in zip(ids, symbols):
            if not pd.isna(symbol):
                key = str(symbol).upper()
                if gene_id not in lookup.setdefault(key, []):
                    lookup[key].append(gene_id)
    found: dict[str, list[str]] = {}
    missing: dict[str, list[str]] = {}
    for cell_type, symbols in markers.items():
        hits: list[str] = []
        for symbol in symbols:
            matched = lookup.get(str(symbol).upper(), [])
            hits += [g for g in matched if g not in hits]
            if not matched:
                missing.setdefault(cell_type, []).append(str(symbol))
        found[cell_type] = hits
    return found, missing


def annotate_clusters(adata, markers: dict[str, list[str]], cluster_key: str = "leiden"
                      ) -> tuple[pd.Series, pd.DataFrame]:
    """Name clusters after the cell type whose markers score highest in them.

    Parameters
    ----------
    adata
        Output of :func:`embed_cells` (log-normalised ``X``, clusters in
        ``obs[cluster_key]``). Not modified.
    markers
        Marker gene symbols per cell type, e.g. ``{"T cells": ["CD3E", "IL7R"]}``;
        matched to ``var["gene_symbol"]`` or var names, case-insensitively.
    cluster_key
        ``obs`` column with the clusters.

    Returns
    -------
    The cell type of each cell (Series named ``cell_type`` indexed like ``obs``,
    categorical: the types of ``markers`` in order, then "unassigned"), and one row per
    cluster: the mean marker score of each cell type (one column per type), ``cluster``,
    ``n_cells``, ``best_z`` (the winning type's z-score across clusters) and ``assigned``.

    Raises
    ------
    ValueError
        When every marker of a cell type is absent from the matrix.

    Notes
    -----
    Each type is scored per cell with ``sc.tl.score_genes`` (mean of its markers minus
    the mean of expression-matched random control genes), averaged per cluster and
    z-scored across clusters, so a type with many or highly expressed markers does not win
    everywhere. A cluster takes the type with the highest z-score, unless that type's mean
    score in the cluster is <= 0 (its markers are not above background): "unassigned".
    With a single cluster the raw mean scores decide.
    """
    import scanpy as sc

    if cluster_key not in adata.obs.columns:
        raise ValueError(f"obs has no column {cluster_key!r} with clusters; run embed_cells "
                         "first or pass cluster_key")
    if not markers:
        raise ValueError("no cell types given: pass markers as {cell type: [gene symbols]}")
    check_log_normalized(adata, "annotate_clusters")
    found, missing = marker_ids(adata, markers)
    absent = [t for t, ids in found.items() if not ids]
    if absent:
        detail = "; ".join(f"{t}: {', '.join(map(str, markers[t])) or '(none given)'}"
                           for t in absent)
        raise ValueError(f"no marker gene of cell type(s) {', '.join(absent)} is in the "
                         f"matrix (looked for symbols {detail} in var['gene_symbol'] and the "
                         f"var names, ignoring case). Check the species and symbol spelling, "
                         f"give other markers for these types, or drop them from markers.")
    slim = _slim(adata.X, adata.obs_names, adata.var_names.astype(str))
    names = list(markers)
    scores = pd.DataFrame(index=adata.obs_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, cell_type in enumerate(names):
            sc.tl.score_genes(slim, found[cell_type], score_name=f"_score_{k}",
                              random_state=0, use_raw=False)
            scores[cell_type] = slim.obs[f"_score_{k}"].to_numpy()
    clusters = adata.obs[cluster_key].astype(str)
    means = scores.groupby(clusters.to_numpy(), sort=False).mean()
    order = pd.Index(pd.unique(clusters)).astype(str)
    if isinstance(adata.obs[cluster_key].dtype, pd.CategoricalDtype):
        order = pd.Index(adata.obs[cluster_key].cat.categories.astype(str))
        order = order[order.isin(means.index)]
    means = means.loc[order]
    spread = means.std(axis=0, ddof=0)
    if len(means) > 1:
        z = (means - means.mean(axis=0)) / spread.where(spread > 0)
        z = z.fillna(0.0)
    else:
        z = means.copy()
    best = z.idxmax(axis=1)
    best_score = pd.Series([means.at[c, t] for c, t in best.items()], index=means.index)
    assigned = best.where(best_score > 0, UNASSIGNED)
    table = means.copy()
    table.insert(0, "cluster", means.index)
    table["n_cells"] = clusters.value_counts().reindex(means.index).to_numpy()
    table["best_z"] = [z.at[c, t] for c, t in best.items()]
    table["assigned"] = assigned.to_numpy()
    table = table.reset_index(drop=True)
    categories = names + [UNASSIGNED]
    labels = pd.Series(pd.Categorical(clusters.map(assigned).to_numpy(),
                                      categories=categories),
                       index=adata.obs_names, name="cell_type")
    table.attrs["missing_markers"] = missing
    return labels, table
