"""Pseudobulk: raw counts summed per cell type x biological sample, tested with DESeq2.

A pseudobulk is the sum of the raw counts of one cell type's QC-passed cells from one
biological sample (donor x condition, plus any other design variable). Pseudobulks with
fewer than ``min_cells`` cells are dropped and reported. Each cell type is then fitted with
the study's design (e.g. the paired ``~ donor + condition``) exactly like a bulk study
(:func:`dge_platform.de.fit.fit_deseq2`); a contrast is tested in a cell type only when at
least two donors remain on each side (see :mod:`dge_platform.singlecell.checks` for why).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

SEPARATOR = "|"


def sum_counts(adata, groups: pd.Series) -> pd.DataFrame:
    """Genes x groups: raw counts of each group's cells summed (sparse, exact).

    ``groups`` gives each cell's group, aligned with ``adata.obs_names``; groups appear in
    sorted order.
    """
    import anndata as ad
    import scanpy as sc

    labels = pd.Categorical(np.asarray(groups, dtype=str))
    cells = ad.AnnData(X=adata.X, obs=pd.DataFrame({"group": labels}, index=adata.obs_names),
                       var=pd.DataFrame(index=adata.var_names.astype(str)))
    summed = sc.get.aggregate(cells, by="group", func="sum")  # float64: exact below 2**53
    frame = pd.DataFrame(np.rint(np.asarray(summed.layers["sum"])).astype(np.int64).T,
                         index=cells.var_names, columns=summed.obs_names.astype(str))
    frame.index.name = "gene_id"
    return frame[sorted(frame.columns)]


@dataclass
class Pseudobulk:
    """Pseudobulk counts of one study.

    Attributes
    ----------
    counts
        Genes x kept pseudobulk samples, int64.
    samples
        Every cell type x sample group, kept or not, indexed by pseudobulk sample
        (``<cell type>|<key values>``): the key columns, ``n_cells``, ``total_counts``,
        ``kept`` and ``reason`` (why a group was dropped; empty when kept).
    cell_type_key
        The column holding the cell type.
    """

    counts: pd.DataFrame
    samples: pd.DataFrame
    cell_type_key: str

    @property
    def kept(self) -> pd.DataFrame:
        """The kept pseudobulk samples, in ``counts`` column order."""
        return self.samples.loc[self.counts.columns]


def pseudobulk(adata, keys: Sequence[str], *, min_cells: int = 10) -> Pseudobulk:
    """Sum raw counts per combination of ``keys`` (cell type first, then e.g. donor and
    condition) over the cells of ``adata`` (pass only QC-passed cells).

    Parameters
    ----------
    adata
        Cells x genes raw counts (sparse) with the ``keys`` columns in ``obs``.
    keys
        Grouping columns; the first is the cell type.
    min_cells
        Groups with fewer cells are dropped (reported in ``samples``). (default: ``10``)
    """
    keys = list(keys)
    obs = adata.obs[keys].astype(str)
    names = obs.agg(SEPARATOR.join, axis=1)
    counts = sum_counts(adata, names)
    samples = obs.groupby(names.to_numpy(), sort=True).first()
    samples["n_cells"] = names.value_counts().reindex(samples.index).to_numpy()
    samples["total_counts"] = counts.sum(axis=0).reindex(samples.index).to_numpy()
    samples["kept"] = samples["n_cells"] >= min_cells
    samples["reason"] = np.where(samples["kept"], "", [
        f"{n} cell(s), fewer than min_cells_per_pseudobulk ({min_cells})"
        for n in samples["n_cells"]])
    samples.index.name = "pseudobulk_sample"
    return Pseudobulk(counts[samples.index[samples["kept"]]], samples, keys[0])


def pseudobulk_summary(samples: pd.DataFrame) -> pd.DataFrame:
    """Per cell type of a ``pseudobulk_samples`` table: pseudobulks kept and dropped, cells
    summed and donors."""
    kept = samples["kept"].astype(bool)
    return samples.assign(dropped=~kept, kept=kept).groupby("cell_type").agg(
        pseudobulks=("kept", "sum"), dropped=("dropped", "sum"), cells=("n_cells", "sum"),
        donors=("donor", "nunique")).reset_index()
