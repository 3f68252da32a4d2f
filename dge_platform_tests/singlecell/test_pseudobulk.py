"""Pseudobulk sums, the minimum-cells filter and the per-cell-type replicate rules."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from dge_platform.singlecell.de import pseudobulk_de
from dge_platform.singlecell.pseudobulk import pseudobulk
from dge_platform.study.config import Contrast
from dge_platform_tests.conftest import FIXTURES

CELLS = FIXTURES / "r_deseq2" / "singlecell_sim_cells.h5ad"
KEYS = ["cell_type", "donor", "condition"]
STIM = Contrast(name="stim_vs_ctrl", factor="condition", level="stim", reference="ctrl")


def test_sums_match_a_dense_groupby_and_small_groups_are_dropped():
    cells = ad.read_h5ad(CELLS)
    # Make one group small: keep only 4 cells of T cells | d01 | stim.
    group = cells.obs[KEYS].astype(str).agg("|".join, axis=1)
    small = np.flatnonzero(group == "T cells|d01|stim")
    cells = cells[np.setdiff1d(np.arange(cells.n_obs), small[4:])].copy()
    result = pseudobulk(cells, KEYS, min_cells=10)
    assert sp.issparse(cells.X)
    dense = pd.DataFrame(cells.X.toarray(), index=cells.obs_names, columns=cells.var_names)
    direct = dense.groupby(cells.obs[KEYS].astype(str).agg("|".join, axis=1)).sum().T
    kept = result.samples.index[result.samples["kept"]]
    np.testing.assert_array_equal(result.counts[kept].to_numpy(), direct[kept].to_numpy())
    assert result.counts.dtypes.eq(np.int64).all()
    dropped = result.samples.loc["T cells|d01|stim"]
    assert not dropped["kept"] and dropped["n_cells"] == 4
    assert dropped["reason"] == "4 cell(s), fewer than min_cells_per_pseudobulk (10)"
    assert "T cells|d01|stim" not in result.counts.columns
    assert result.samples["n_cells"].sum() == cells.n_obs


def test_cell_types_without_two_donors_per_group_are_skipped_with_the_reason():
    cells = ad.read_h5ad(CELLS)
    obs = cells.obs
    # B cells: only donor d01 has stimulated B cells left.
    drop = (obs["cell_type"] == "B cells") & (obs["condition"] == "stim") & (obs["donor"] != "d01")
    cells = cells[~drop.to_numpy()].copy()
    result = pseudobulk(cells, KEYS, min_cells=10)
    results, skipped = pseudobulk_de(result, "~ donor + condition", [STIM])
    assert set(results["cell_type"]) == {"Monocytes", "T cells"}
    assert list(skipped) == ["B cells: stim_vs_ctrl"]
    assert skipped["B cells: stim_vs_ctrl"].startswith("condition=stim has 1 donor(s)")
    assert "at least 2 donors per group" in skipped["B cells: stim_vs_ctrl"]
    assert len(results) == 2 * cells.n_vars


def test_summaries_count_per_cell_type_and_per_reason():
    from dge_platform.singlecell.pseudobulk import pseudobulk_summary
    from dge_platform.singlecell.qc import failed_by_reason

    samples = pd.DataFrame({"cell_type": ["A", "A", "B"], "kept": [True, False, True],
                            "n_cells": [10, 3, 12], "donor": ["d1", "d2", "d1"]})
    assert pseudobulk_summary(samples).to_dict("records") == [
        {"cell_type": "A", "pseudobulks": 1, "dropped": 1, "cells": 13, "donors": 2},
        {"cell_type": "B", "pseudobulks": 1, "dropped": 0, "cells": 12, "donors": 1}]
    qc = pd.DataFrame({"reason": ["", "doublet", "low_counts;high_mito", "doublet"],
                       "passed": [True, False, False, False], "total_counts": [9, 8, 1, 9],
                       "n_genes": [5, 5, 1, 5], "pct_mito": [1.0, 1.0, 40.0, 1.0]})
    assert failed_by_reason(qc).to_dict() == {"low_counts": 1, "high_mito": 1, "doublet": 2}
