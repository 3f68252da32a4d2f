"""Pseudobulk: raw counts summed per cell type x biological sample, tested with DESeq2.

A pseudobulk is the sum of the raw counts of one cell type's QC-passed cells from one
biological sample (donor x condition, plus any other design variable). Pseudobulks with
fewer than ``min_cells`` cells are dropped and reported. Each cell type is then fitted with
the study's design (e.g. the paired ``~ donor + condition``) exactly like a bulk study
(:func:`dge_platform.bulk_de.fit_deseq2`); a contrast is tested in a cell type only when at
least two donors remain on each side (see :mod:`dge_platform.cell_checks` for why).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dge_platform.bulk_de import fit_deseq2
from dge_platform.cell_checks import MIN_DONORS
from dge_platform.deseq_engine import DeseqResult
from dge_platform.design import rank_problems, study_design_frame
from dge_platform.study import Contrast

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


def testable_contrasts(sheet: pd.DataFrame, contrasts: Sequence[Contrast], donor_key: str,
                       min_donors: int = MIN_DONORS) -> tuple[list[Contrast], dict[str, str]]:
    """The contrasts a cell type's pseudobulks can test (at least ``min_donors`` donors on
    each side), and the reason for each one they cannot."""
    tested, skipped = [], {}
    for c in contrasts:
        donors = {part: sheet.loc[sheet[c.factor] == getattr(c, part), donor_key].nunique()
                  for part in ("level", "reference")}
        short = [f"{c.factor}={getattr(c, p)} has {n} donor(s)" for p, n in donors.items()
                 if n < min_donors]
        if short:
            skipped[c.name] = (f"{'; '.join(short)} with enough cells; at least {min_donors} "
                               "donors per group are needed")
        else:
            tested.append(c)
    return tested, skipped


def fit_cell_types(pb: Pseudobulk, design: str, contrasts: Sequence[Contrast], *,
                   donor_key: str, batch: str | None = None, alpha: float = 0.05,
                   lfc_threshold: float = 0.0, n_cpus: int = 1
                   ) -> tuple[dict[str, tuple[DeseqResult, list[Contrast]]], dict[str, str]]:
    """One DESeq2 fit per cell type over its kept pseudobulks.

    Returns the fit and tested contrasts per cell type, and the reason for every cell type
    x contrast left untested (key ``"<cell type>: <contrast>"``).
    """
    fits, skipped = {}, {}
    kept = pb.kept
    for cell_type, sheet in kept.groupby(pb.cell_type_key, sort=True):
        tested, reasons = testable_contrasts(sheet, contrasts, donor_key)
        if tested:
            frame = study_design_frame(sheet, design, list(tested), batch, donor_key)
            problems = rank_problems(design, frame)
            if problems:
                reasons.update({c.name: f"design cannot be fitted: {problems[0].message}"
                                for c in tested})
                tested = []
        skipped.update({f"{cell_type}: {name}": why for name, why in reasons.items()})
        if not tested:
            continue
        fit = fit_deseq2(pb.counts[sheet.index], frame, design, tested, alpha=alpha,
                         lfc_threshold=lfc_threshold, n_cpus=n_cpus)
        fits[str(cell_type)] = (fit, tested)
    return fits, skipped


def pseudobulk_de(pb: Pseudobulk, design: str, contrasts: Sequence[Contrast], *,
                  donor_key: str = "donor", batch: str | None = None, alpha: float = 0.05,
                  lfc_threshold: float = 0.0, n_cpus: int = 1
                  ) -> tuple[pd.DataFrame, dict[str, str]]:
    """DESeq2 per cell type (:func:`fit_cell_types`): every tested contrast's results with a
    ``cell_type`` column, and the untested cell type x contrast pairs with the reason."""
    fits, skipped = fit_cell_types(pb, design, contrasts, donor_key=donor_key, batch=batch,
                                   alpha=alpha, lfc_threshold=lfc_threshold, n_cpus=n_cpus)
    tables = [fit.results.assign(cell_type=cell_type) for cell_type, (fit, _) in fits.items()]
    return (pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()), skipped
