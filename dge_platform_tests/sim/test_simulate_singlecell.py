"""The single-cell simulator (dge_platform/sim/singlecell.py): shape, sparse integer counts,
metadata, determinism, mitochondrial fraction, doublets, and planted DE recoverable from a
crude pseudobulk."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from dge_platform.sim.singlecell import MITO_SYMBOLS, cell_type_names, simulate_cells

N_CELLS, N_GENES, N_DONORS, N_TYPES = 3000, 800, 6, 4


@pytest.fixture(scope="module")
def sim():
    return simulate_cells(n_cells=N_CELLS, n_genes=N_GENES, n_donors=N_DONORS,
                          n_cell_types=N_TYPES, de_fraction=0.1, de_lfc=1.0,
                          doublet_rate=0.05, seed=7)


def test_shape_and_sparse_integer_counts(sim):
    X = sim.adata.X
    assert sim.adata.shape == (N_CELLS, N_GENES)
    assert isinstance(X, sp.csr_matrix) and X.dtype == np.float32
    assert X.has_canonical_format
    assert np.all(X.data > 0) and np.array_equal(X.data, np.round(X.data))
    totals = np.asarray(X.sum(axis=1)).ravel()
    assert 1000 <= totals.mean() <= 3000
    assert X.nnz / np.prod(X.shape) < 0.5  # most genes are zero in most cells


def test_metadata(sim):
    obs, var = sim.adata.obs, sim.adata.var
    assert obs.index.is_unique and obs.index[0] == "c000001"
    assert {"donor", "condition", "cell_type", "capture", "true_doublet"} <= set(obs.columns)
    assert list(obs["condition"].cat.categories) == ["ctrl", "stim"]
    assert set(obs["donor"]) == {f"d{i:02d}" for i in range(1, N_DONORS + 1)}
    assert list(obs["cell_type"].cat.categories) == ["T cells", "B cells", "Monocytes",
                                                     "type_4"]
    # Four donors per channel and condition: 6 donors -> 2 pools x 2 conditions.
    assert set(obs["capture"]) == {"ctrl_pool1", "ctrl_pool2", "stim_pool1", "stim_pool2"}
    assert (obs["capture"].astype(str).str.split("_").str[0]
            == obs["condition"].astype(str)).all()
    assert obs.groupby("capture", observed=True)["donor"].nunique().max() == 4
    # Every donor x condition x cell type is populated; donors x conditions are balanced.
    cells = obs.groupby(["cell_type", "donor", "condition"], observed=False).size()
    assert (cells > 10).all()
    per_sample = obs.groupby(["donor", "condition"], observed=True).size()
    assert per_sample.max() - per_sample.min() <= 1
    assert obs["true_doublet"].dtype == bool
    assert obs["true_doublet"].mean() == pytest.approx(0.05, abs=0.01)
    assert var.index.is_unique and var.index[0] == "ENSG00000000001"
    assert tuple(var["gene_symbol"].iloc[:len(MITO_SYMBOLS)]) == MITO_SYMBOLS
    assert var["gene_symbol"].is_unique
    assert {"CD3E", "MS4A1", "CD14", "LYZ"} <= set(var["gene_symbol"])


def test_same_seed_same_output_other_seed_differs(sim):
    kwargs = dict(n_cells=N_CELLS, n_genes=N_GENES, n_donors=N_DONORS, n_cell_types=N_TYPES,
                  de_fraction=0.1, de_lfc=1.0, doublet_rate=0.05)
    again = simulate_cells(**kwargs, seed=7)
    assert (again.adata.X != sim.adata.X).nnz == 0
    pd.testing.assert_frame_equal(again.adata.obs, sim.adata.obs)
    pd.testing.assert_frame_equal(again.truth, sim.truth)
    other = simulate_cells(**kwargs, seed=8)
    assert (other.adata.X != sim.adata.X).nnz > 0


def test_mito_fraction_realistic(sim):
    X = sim.adata.X
    mito = sim.adata.var["gene_symbol"].str.startswith("MT-").to_numpy()
    fraction = np.asarray(X[:, mito].sum(axis=1)).ravel() / np.asarray(X.sum(axis=1)).ravel()
    assert 0.02 <= np.median(fraction) <= 0.08
    assert np.mean((fraction > 0.01) & (fraction < 0.12)) > 0.95


def test_markers_mark_their_type(sim):
    adata = sim.adata[~sim.adata.obs["true_doublet"].to_numpy()]
    symbols = adata.var["gene_symbol"].to_numpy()
    for cell_type, marker in [("T cells", "CD3E"), ("B cells", "MS4A1"),
                              ("Monocytes", "LYZ")]:
        x = np.asarray(adata.X[:, symbols == marker].todense()).ravel()
        own = (adata.obs["cell_type"] == cell_type).to_numpy()
        assert x[own].mean() > 20 * x[~own].mean()
        assert (x[own] > 0).mean() > 0.9


def test_truth_table(sim):
    truth = sim.truth
    assert list(truth.columns) == ["cell_type", "gene_id", "true_lfc"]
    assert len(truth) == N_TYPES * N_GENES
    assert set(truth["cell_type"]) == set(cell_type_names(N_TYPES))
    assert not truth.duplicated(["cell_type", "gene_id"]).any()
    de = truth[truth["true_lfc"] != 0]
    assert set(de["true_lfc"].abs()) == {1.0}
    assert de.groupby("cell_type").size().eq(round(0.1 * N_GENES)).all()
    # A different set per cell type, never a mitochondrial gene.
    sets = [set(g) for _, g in de.groupby("cell_type")["gene_id"]]
    assert len(sets[0] & sets[1]) < len(sets[0]) / 2
    assert not set(de["gene_id"]) & set(sim.adata.var_names[:len(MITO_SYMBOLS)])


def test_planted_de_direction_in_crude_pseudobulk(sim):
    """Per cell type, summed counts per donor x condition, CPM, mean log2 stim/ctrl over
    donors: planted genes move in the planted direction, the others do not move."""
    adata = sim.adata[~sim.adata.obs["true_doublet"].to_numpy()]
    obs = adata.obs
    checked = 0
    for cell_type in obs["cell_type"].cat.categories:
        log_cpm = {}
        for condition in ("ctrl", "stim"):
            rows = []
            for donor in obs["donor"].cat.categories:
                mask = ((obs["cell_type"] == cell_type) & (obs["condition"] == condition)
                        & (obs["donor"] == donor)).to_numpy()
                summed = np.asarray(adata.X[mask].sum(axis=0)).ravel()
                rows.append(np.log2((summed + 1) / summed.sum() * 1e6))
            log_cpm[condition] = np.array(rows)
        estimate = (log_cpm["stim"] - log_cpm["ctrl"]).mean(axis=0)
        true = (sim.truth[sim.truth["cell_type"] == cell_type].set_index("gene_id")
                .loc[adata.var_names, "true_lfc"].to_numpy())
        expressed = np.asarray(adata.X[(obs["cell_type"] == cell_type).to_numpy()]
                               .mean(axis=0)).ravel() > 0.2
        de = expressed & (true != 0)
        null = expressed & (true == 0)
        assert de.sum() >= 5
        assert np.mean(np.sign(estimate[de]) == np.sign(true[de])) > 0.9
        assert np.median(np.abs(estimate[de] - true[de])) < 0.3
        assert np.median(np.abs(estimate[null])) < 0.2
        checked += de.sum()
    assert checked >= 20


@pytest.mark.parametrize("kwargs", [dict(n_genes=20), dict(conditions=("a", "a")),
                                    dict(doublet_rate=1.0)])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        simulate_cells(**{"n_cells": 200, **kwargs})
