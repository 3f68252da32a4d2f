"""Cell embedding, clustering, Harmony integration, marker-based annotation and per-cell
marker genes on simulated cells with a donor effect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

from dge_platform.outputs.plots import umap_plot
from dge_platform.sim.singlecell import NAMED_MARKERS, simulate_cells
from dge_platform.singlecell.embedding import annotate_clusters, embed_cells
from dge_platform.singlecell.markers import MARKER_COLUMNS, marker_genes

MARKERS = {cell_type: list(symbols) for cell_type, symbols in NAMED_MARKERS.items()}


@pytest.fixture(scope="module")
def sim():
    return simulate_cells(n_cells=2000, n_genes=2000, n_donors=6, n_cell_types=3, seed=2)


@pytest.fixture(scope="module")
def embedded(sim):
    adata = sim.adata
    before = (adata.X.copy(), adata.obs.copy(), adata.var.copy(), dict(adata.uns))
    out = embed_cells(adata, integrate_key="donor", n_hvg=1000, n_pcs=20, resolution=0.3)
    return out, before


def _other_label_fraction(x: np.ndarray, labels: pd.Series, k: int = 30) -> float:
    """Mean fraction of each cell's k nearest neighbours with another label (mixing)."""
    neighbours = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(
        x, return_distance=False)[:, 1:]
    values = labels.astype(str).to_numpy()
    return float((values[neighbours] != values[:, None]).mean())


def test_embedding_layout(sim, embedded):
    out, _ = embedded
    adata = sim.adata
    assert out.shape == adata.shape and out is not adata
    assert out.obs_names.equals(adata.obs_names) and out.var_names.equals(adata.var_names)
    assert {"donor", "cell_type"} <= set(out.obs.columns)
    assert sp.issparse(out.X) and out.X.dtype == np.float32
    counts = adata.X.toarray()
    expected = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)
    rows = np.arange(0, adata.n_obs, 97)
    np.testing.assert_allclose(out.X[rows].toarray(), expected[rows], rtol=1e-5, atol=1e-6)
    assert out.var["highly_variable"].sum() == 1000
    assert out.uns["embedding"]["hvg_flavor"] == "seurat_v3"
    assert out.uns["embedding"]["integrated"]
    for key, width in [("X_pca", 20), ("X_pca_harmony", 20), ("X_umap", 2),
                       ("X_umap_unintegrated", 2)]:
        assert out.obsm[key].shape == (adata.n_obs, width), key
        assert np.isfinite(out.obsm[key]).all(), key
    assert not np.allclose(out.obsm["X_pca"], out.obsm["X_pca_harmony"])
    assert isinstance(out.obs["leiden"].dtype, pd.CategoricalDtype)
    assert set(out.obs["leiden"].cat.categories) == {str(i) for i in
                                                     range(out.obs["leiden"].nunique())}


def test_input_not_modified(sim, embedded):
    _, (x, obs, var, uns) = embedded
    adata = sim.adata
    assert sp.issparse(adata.X) and (adata.X != x).nnz == 0
    pd.testing.assert_frame_equal(adata.obs, obs)
    pd.testing.assert_frame_equal(adata.var, var)
    assert set(adata.uns) == set(uns) and not adata.obsm and not adata.obsp


def test_leiden_recovers_cell_types(sim, embedded):
    out, _ = embedded
    assert adjusted_rand_score(sim.adata.obs["cell_type"], out.obs["leiden"]) > 0.8


def test_harmony_mixes_donors_but_not_cell_types(sim, embedded):
    out, _ = embedded
    obs = sim.adata.obs
    before = _other_label_fraction(out.obsm["X_pca"], obs["donor"])
    after = _other_label_fraction(out.obsm["X_pca_harmony"], obs["donor"])
    # 6 even donors: perfect mixing is ~0.83; the simulated donor effect separates them.
    assert before < 0.5 and after > before + 0.2
    assert _other_label_fraction(out.obsm["X_pca_harmony"], obs["cell_type"]) < 0.02


def test_annotation_labels_cells(sim, embedded):
    out, _ = embedded
    lowercase = {t: [s.lower() for s in symbols] for t, symbols in MARKERS.items()}
    labels, table = annotate_clusters(out, lowercase)
    assert labels.index.equals(out.obs_names) and labels.name == "cell_type"
    assert list(labels.cat.categories) == [*MARKERS, "unassigned"]
    truth = sim.adata.obs["cell_type"].astype(str)
    assert (labels.astype(str) == truth).mean() >= 0.9
    assert list(table.columns) == ["cluster", *MARKERS, "n_cells", "best_z", "assigned"]
    assert table["n_cells"].sum() == out.n_obs
    assert set(table["cluster"]) == set(out.obs["leiden"].astype(str))
    assert "leiden" in out.obs and "score" not in " ".join(out.obs.columns)


def test_cluster_without_its_markers_is_unassigned(sim, embedded):
    out, _ = embedded
    partial = {t: MARKERS[t] for t in ("T cells", "B cells")}
    labels, table = annotate_clusters(out, partial)
    monocytes = (sim.adata.obs["cell_type"] == "Monocytes").to_numpy()
    assert (labels[monocytes] == "unassigned").mean() > 0.9
    assert (labels[~monocytes].astype(str) == sim.adata.obs["cell_type"][~monocytes]
            .astype(str)).mean() > 0.9


def test_missing_markers_raise(embedded):
    out, _ = embedded
    with pytest.raises(ValueError, match=r"NK cells.*NCAM1, KLRD1.*symbol spelling"):
        annotate_clusters(out, {**MARKERS, "NK cells": ["NCAM1", "KLRD1"]})
    labels, table = annotate_clusters(out, {**MARKERS, "T cells": ["CD3E", "NOPE1"]})
    assert table.attrs["missing_markers"] == {"T cells": ["NOPE1"]}


def test_without_integration_harmony_is_a_copy(sim):
    adata = sim.adata[:600].copy()
    out = embed_cells(adata, integrate_key=None, n_hvg=500, n_pcs=10, resolution=0.3)
    np.testing.assert_array_equal(out.obsm["X_pca"], out.obsm["X_pca_harmony"])
    np.testing.assert_array_equal(out.obsm["X_umap"], out.obsm["X_umap_unintegrated"])
    assert not out.uns["embedding"]["integrated"]


def test_tiny_input_caps_pcs(sim):
    adata = sim.adata[:40, :60].copy()
    out = embed_cells(adata, integrate_key="condition", n_hvg=30, n_pcs=50)
    n_pcs = out.obsm["X_pca"].shape[1]
    assert n_pcs <= min(40, 30) - 1
    assert out.obsm["X_pca_harmony"].shape == (40, n_pcs)
    assert out.obs["leiden"].notna().all()


def test_marker_genes_rank_planted_markers(sim, embedded):
    out, _ = embedded
    uns_before = set(out.uns)
    table = marker_genes(out, "cell_type", n_genes=50)
    assert list(table.columns) == MARKER_COLUMNS
    assert table["exploratory"].all() and (table["method"] == "wilcoxon_per_cell").all()
    assert set(table["group"]) == set(MARKERS)
    for cell_type, symbols in MARKERS.items():
        rows = table[table["group"] == cell_type]
        assert rows["rank"].tolist() == list(range(1, 51))
        ranks = rows.set_index("gene_symbol")["rank"].reindex(symbols)
        # Every planted marker ranks in the top 1 % of the 2,000 genes, though not always
        # in the top 5: the simulator also up-regulates 3 % of genes per type 4.5-12x on
        # a high baseline, and those broadly expressed genes get larger Wilcoxon z-scores.
        # By fold change, the planted (~60x) markers lead their group's list.
        assert ranks.notna().all() and ranks.max() <= 20, ranks
        by_fold = rows.sort_values("log2_fold_change", ascending=False)["gene_symbol"]
        assert set(by_fold.head(len(symbols))) == set(symbols), by_fold.head(6)
        top = rows.set_index("gene_symbol").loc[symbols]
        assert (top["log2_fold_change"] > 3).all()
        assert (top["pct_in_group"] > 0.8).all() and (top["pct_other_groups"] < 0.25).all()
        assert (top["padj"] < 1e-10).all()
    assert set(out.uns) == uns_before and "rank_genes_groups" not in out.uns


def test_marker_genes_skip_small_groups(sim, embedded):
    out, _ = embedded
    view = out[:, :300].copy()
    view.obs["group"] = np.where(np.arange(out.n_obs) < 2, "rare",
                                 out.obs["cell_type"].astype(str))
    table = marker_genes(view, "group", n_genes=5, min_cells=3)
    assert "rare" not in set(table["group"]) and len(table) == 3 * 5


def test_umap_plot(sim, embedded):
    out, _ = embedded
    png = umap_plot(out.obsm["X_umap"], out.obs["leiden"], "Leiden clusters")
    assert png.startswith(b"\x89PNG")
    png = umap_plot(out.obsm["X_umap_unintegrated"], sim.adata.obs["donor"], "donor")
    assert png.startswith(b"\x89PNG")


def test_raw_counts_are_refused(sim):
    with pytest.raises(ValueError, match="looks like raw counts"):
        marker_genes(sim.adata, "cell_type")
    counts = sim.adata.copy()
    counts.obs["leiden"] = counts.obs["cell_type"].astype(str)
    with pytest.raises(ValueError, match="looks like raw counts"):
        annotate_clusters(counts, MARKERS)
