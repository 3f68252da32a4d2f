"""Pseudobulk DE per cell type: one DESeq2 fit per cell type over its kept pseudobulks."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from dge_platform.de.contrast import Contrast
from dge_platform.de.engine import DeseqResult
from dge_platform.de.fit import fit_deseq2
from dge_platform.singlecell.checks import MIN_DONORS
from dge_platform.singlecell.pseudobulk import Pseudobulk
from dge_platform.study.design import rank_problems, study_design_frame


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
