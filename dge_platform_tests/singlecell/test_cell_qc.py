"""Cell QC: metrics against direct computations, planted bad cells failed with the right
reason, per-capture thresholds, absolute limits, Scrublet doublets on simulated doublets,
the threshold fallback, the input left untouched, and the QC plot."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.metrics import roc_auc_score

from dge_platform.outputs.plots import cell_qc_distributions
from dge_platform.sim.singlecell import simulate_cells
from dge_platform.singlecell.qc import (
    QC_COLUMNS,
    QC_REASONS,
    cell_qc,
    doublet_scores,
    outlier_flags,
    qc_metrics,
    qc_summary,
)

N_HIGH_MITO, N_LOW_COUNTS = 6, 6


def _replace_rows(x: sp.csr_matrix, rows: dict[int, np.ndarray]) -> sp.csr_matrix:
    """A copy of ``x`` with some rows replaced by dense vectors."""
    lil = x.tolil(copy=True)
    for i, row in rows.items():
        lil[i] = row
    out = lil.tocsr().astype(np.float32)
    out.eliminate_zeros()
    return out


@pytest.fixture(scope="module")
def planted():
    """Simulated cells (5 % doublets, 4 captures) with planted bad cells: 6 with 40-60 %
    of counts on MT genes, 6 thinned to ~1 % of their counts, one without any count."""
    sim = simulate_cells(n_cells=2000, n_genes=1500, n_donors=6, n_cell_types=3,
                         doublet_rate=0.05, seed=1)
    adata = sim.adata
    rng = np.random.default_rng(7)
    singlets = np.flatnonzero(~adata.obs["true_doublet"].to_numpy())
    chosen = rng.choice(singlets, N_HIGH_MITO + N_LOW_COUNTS + 1, replace=False)
    high_mito, low_counts, empty = (chosen[:N_HIGH_MITO],
                                    chosen[N_HIGH_MITO:N_HIGH_MITO + N_LOW_COUNTS],
                                    chosen[-1])
    mito = adata.var["gene_symbol"].str.startswith("MT-").to_numpy()
    rows = {}
    for i in high_mito:
        row = adata.X[i].toarray().ravel()
        nuclear = row[~mito].sum()
        share = rng.uniform(0.4, 0.6)
        row[mito] = rng.multinomial(int(nuclear * share / (1 - share)),
                                    np.full(mito.sum(), 1 / mito.sum()))
        rows[i] = row
    for i in low_counts:
        rows[i] = rng.binomial(adata.X[i].toarray().ravel().astype(int), 0.01)
    rows[empty] = np.zeros(adata.n_vars)
    adata.X = _replace_rows(adata.X, rows)
    names = adata.obs_names
    return {"adata": adata, "high_mito": names[high_mito], "low_counts": names[low_counts],
            "empty": names[empty]}


@pytest.fixture(scope="module")
def qc_run(planted):
    adata = planted["adata"]
    before = (adata.X.copy(), adata.obs.copy(), adata.var.copy())
    table = cell_qc(adata, "capture", seed=0)
    return table, before


def test_metrics_match_direct_computation(planted):
    adata = planted["adata"]
    metrics = qc_metrics(adata)
    dense = adata.X.toarray()
    mito = adata.var["gene_symbol"].str.upper().str.startswith("MT-").to_numpy()
    total = dense.sum(axis=1)
    np.testing.assert_array_equal(metrics["total_counts"], total.astype(np.int64))
    np.testing.assert_array_equal(metrics["n_genes"], (dense > 0).sum(axis=1))
    with np.errstate(invalid="ignore"):
        expected = 100 * dense[:, mito].sum(axis=1) / total
    np.testing.assert_allclose(metrics["pct_mito"], expected, rtol=1e-6)
    assert metrics["total_counts"].dtype == np.int64 and metrics["n_genes"].dtype == np.int64
    assert np.isnan(metrics.loc[planted["empty"], "pct_mito"])


def test_planted_bad_cells_fail_with_their_reason(planted, qc_run):
    table, _ = qc_run
    assert list(table.columns) == QC_COLUMNS
    assert table.index.equals(planted["adata"].obs_names)
    reasons = table["reason"].str.split(";")
    assert all("high_mito" in reasons[c] for c in planted["high_mito"])
    assert all("low_counts" in reasons[c] and "low_genes" in reasons[c]
               for c in planted["low_counts"])
    assert table.loc[planted["empty"], "reason"] == "no_counts"
    planted_cells = planted["high_mito"].append(planted["low_counts"]).append(
        pd.Index([planted["empty"]]))
    assert not table.loc[planted_cells, "passed"].any()
    # reasons are listed in QC_REASONS order, "" exactly when passed
    for reason in table["reason"].unique():
        parts = [p for p in reason.split(";") if p]
        assert parts == sorted(parts, key=QC_REASONS.index)
    assert ((table["reason"] == "") == table["passed"]).all()


def test_good_cells_pass(planted, qc_run):
    table, _ = qc_run
    adata = planted["adata"]
    bad = planted["high_mito"].append(planted["low_counts"]).append(
        pd.Index([planted["empty"]]))
    good = adata.obs_names[~adata.obs["true_doublet"].to_numpy()].difference(bad)
    assert table.loc[good, "passed"].mean() > 0.95


def test_doublet_scores_separate_simulated_doublets(planted, qc_run):
    table, _ = qc_run
    truth = planted["adata"].obs["true_doublet"]
    scored = table["doublet_score"].notna()
    assert scored.mean() > 0.99  # all but the planted low-quality cells
    assert table.loc[~scored, "predicted_doublet"].sum() == 0
    assert roc_auc_score(truth[scored], table.loc[scored, "doublet_score"]) > 0.8
    assert table.loc[truth, "doublet_score"].mean() > 2 * table.loc[~truth,
                                                                    "doublet_score"].mean()
    called = table["predicted_doublet"]
    assert called.sum() >= 0.3 * truth.sum()  # heterotypic doublets are findable
    assert truth[called].mean() > 0.5  # and calls are mostly true doublets (5 % overall)
    assert (table.loc[called, "reason"].str.contains("doublet")).all()
    groups = table.attrs["doublet_groups"]
    assert set(groups) == set(planted["adata"].obs["capture"].astype(str))
    assert all(g["status"] == "scored" and 0 < g["threshold"] < 1 for g in groups.values())


def test_input_not_modified_and_x_stays_sparse(planted, qc_run):
    _, (x, obs, var) = qc_run
    adata = planted["adata"]
    assert sp.issparse(adata.X) and adata.X.dtype == np.float32
    assert (adata.X != x).nnz == 0
    pd.testing.assert_frame_equal(adata.obs, obs)
    pd.testing.assert_frame_equal(adata.var, var)
    assert not adata.uns.get("scrublet") and "doublet_score" not in adata.obs


def test_deeper_capture_is_judged_against_itself(planted):
    """Thin every capture but one (a sixth of the cells) to 5 % of its counts: per capture
    the deep one passes; judged against all cells together a large share of it would fail."""
    adata = planted["adata"].copy()
    deep = adata.obs["capture"].astype(str) == "stim_pool2"
    x = adata.X.tocsr(copy=True)
    rng = np.random.default_rng(3)
    shallow_rows = np.repeat(~deep.to_numpy(), np.diff(x.indptr))
    x.data[shallow_rows] = rng.binomial(x.data[shallow_rows].astype(int), 0.05)
    x.eliminate_zeros()
    adata.X = x
    metrics = qc_metrics(adata)
    ok = metrics["total_counts"] > 0
    per_capture = outlier_flags(metrics, adata.obs["capture"])
    pooled = outlier_flags(metrics, pd.Series("all", index=adata.obs_names))
    depth_flags = ["low_counts", "high_counts", "low_genes", "high_genes"]
    deep_rate = per_capture.loc[deep & ok, depth_flags].any(axis=1).mean()
    assert deep_rate <= 0.05
    assert per_capture.loc[~deep & ok, depth_flags].any(axis=1).mean() <= 0.05
    pooled_rate = pooled.loc[deep & ok, depth_flags].any(axis=1).mean()
    assert pooled_rate > 0.3 and pooled_rate > 5 * deep_rate


def test_absolute_thresholds_apply_in_addition(planted):
    adata = planted["adata"]
    metrics = qc_metrics(adata)
    groups = adata.obs["capture"]
    median = metrics["total_counts"].median()
    flags = outlier_flags(metrics, groups, min_counts=median, max_pct_mito=5.0,
                          max_genes=1000, min_genes=1)
    present = metrics["total_counts"] > 0
    assert (flags["low_counts"] == (present & (metrics["total_counts"] < median))).all()
    assert (flags.loc[present & (metrics["pct_mito"] > 5), "high_mito"]).all()
    assert flags.loc[present & (metrics["n_genes"] > 1000), "high_genes"].all()
    default = outlier_flags(metrics, groups)
    assert flags["high_mito"].sum() > default["high_mito"].sum() + 100
    assert (flags["high_mito"] | ~default["high_mito"]).all()  # MAD flags still there
    table = cell_qc(adata, "capture", doublets=False, min_counts=median)
    assert (table["passed"] <= (table["total_counts"] >= median)).all()
    assert table["doublet_score"].isna().all() and not table["predicted_doublet"].any()


def test_zero_mad_flags_nothing():
    metrics = pd.DataFrame({"total_counts": [100, 100, 100, 100, 5000, 0],
                            "n_genes": [50, 50, 50, 50, 60, 0],
                            "pct_mito": [0.0, 0.0, 0.0, 0.0, 0.0, np.nan]},
                           index=[f"c{i}" for i in range(6)])
    flags = outlier_flags(metrics, pd.Series("g", index=metrics.index))
    assert flags.loc["c5"].tolist() == [True, False, False, False, False, False]
    assert not flags.iloc[:5].any().any()  # MAD 0 on every metric: nothing flagged
    single = outlier_flags(metrics.iloc[:5], pd.Series(list("abcde"), metrics.index[:5]))
    assert not single.any().any()


def test_flags_vectorised_at_scale():
    rng = np.random.default_rng(0)
    n = 100_000
    metrics = pd.DataFrame({"total_counts": rng.lognormal(8, 0.5, n).astype(np.int64),
                            "n_genes": rng.lognormal(7, 0.4, n).astype(np.int64),
                            "pct_mito": rng.gamma(2, 2, n)})
    groups = pd.Series(rng.integers(0, 32, n).astype(str), index=metrics.index)
    start = time.perf_counter()
    flags = outlier_flags(metrics, groups)
    assert time.perf_counter() - start < 1.0
    assert flags.shape == (n, 6)


def test_small_groups_and_threshold_fallback(planted, monkeypatch):
    adata = planted["adata"]
    keep = (adata.obs["capture"].astype(str) == "ctrl_pool1").to_numpy()
    sub = adata[keep].copy()
    groups = pd.Series(np.where(np.arange(sub.n_obs) < 60, "small", "large"),
                       index=sub.obs_names)
    # Scrublet's automatic threshold fails on unimodal scores; simulate that failure.
    import skimage.filters

    def unimodal(*args, **kwargs):
        raise RuntimeError("Unable to find two maxima in histogram")

    monkeypatch.setattr(skimage.filters, "threshold_minimum", unimodal)
    scores = doublet_scores(sub, groups)
    small = (groups == "small").to_numpy()
    assert scores.loc[small, "doublet_score"].isna().all()
    assert scores.loc[~small, "doublet_score"].notna().all()
    assert not scores["predicted_doublet"].any()
    assert scores["predicted_doublet"].dtype == bool
    report = scores.attrs["doublet_groups"]
    assert report["small"]["status"] == "too_few_cells"
    assert report["large"]["status"] == "no_threshold"
    assert np.isnan(report["large"]["threshold"])


def test_summary_and_plot(planted, qc_run):
    table, _ = qc_run
    groups = planted["adata"].obs["capture"]
    summary = qc_summary(table, groups)
    assert list(summary.index) == sorted(groups.astype(str).unique()) + ["all"]
    assert summary.loc["all", "n_cells"] == len(table)
    assert summary.loc["all", "n_passed"] == table["passed"].sum()
    assert summary.loc["all", "no_counts"] == 1
    assert summary.loc["all", "high_mito"] == table["reason"].str.contains("high_mito").sum()
    assert summary.iloc[:-1]["n_cells"].sum() == len(table)
    assert summary["doublet_status"].iloc[:-1].eq("scored").all()
    png = cell_qc_distributions(table, groups)
    assert png.startswith(b"\x89PNG")


def test_missing_capture_key_is_explained(planted):
    with pytest.raises(ValueError, match="no column 'lane'"):
        cell_qc(planted["adata"], "lane")
