"""The DESeq2 step's tables, shared by every kind: fits in, catalog tables and checks out.

Each kind prepares its own fits (``pipelines/bulk.py``: the study's samples, technical
replicates summed; ``pipelines/screen.py``: the wells that passed QC; ``pipelines/singlecell.py``:
one fit per cell type over pseudobulks) and hands them to :func:`de_tables`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from dge_platform.de.contrast import Contrast, LinearContrast
from dge_platform.de.engine import DeseqResult
from dge_platform.de.fit import analysis_samples, fit_deseq2, result_problems, sample_summary
from dge_platform.outputs.report import deg_summary
from dge_platform.pipelines.step import Check, Markdown, StepResult
from dge_platform.storage.frames import to_long
from dge_platform.storage.tables import TABLES
from dge_platform.study.config import StudyConfig
from dge_platform.study.design import study_design_frame

DE_OUTPUTS = ("size_factors", "normalized_counts", "vst", "gene_dispersions", "deg_results")


@dataclass
class Fit:
    """One DESeq2 fit of a study (single-cell: of one cell type) and what it tested."""

    fit: DeseqResult
    contrasts: list
    counts: pd.DataFrame
    sheet: pd.DataFrame
    cell_type: str | None = None


def fit_samples(counts: pd.DataFrame, sheet: pd.DataFrame, config: StudyConfig,
                contrasts: Sequence[Contrast], n_cpus: int,
                linear_contrasts: Sequence[LinearContrast] = ()) -> Fit:
    """The one fit of a study's samples (technical replicates summed first), with the
    ``linear_contrasts`` (screens' interactions) tested on it too."""
    counts, sheet = analysis_samples(counts, sheet, config.replicate_of)
    frame = study_design_frame(sheet, config.design, list(contrasts), config.batch)
    fit = fit_deseq2(counts, frame, config.design, list(contrasts), alpha=config.alpha,
                     lfc_threshold=config.lfc_threshold, n_cpus=n_cpus,
                     linear_contrasts=linear_contrasts)
    return Fit(fit, list(contrasts), counts, sheet)


def de_tables(fits: list[Fit], untested: dict[str, str], config: StudyConfig,
              genes: pd.DataFrame, *, collapsed: int = 0,
              conditions: pd.DataFrame | None = None) -> StepResult:
    """The DESeq2 step's five tables, their metadata and its two checks.

    Parameters
    ----------
    fits
        The study's fits (one; single-cell: one per cell type).
    untested
        Contrasts (or cell type x contrast pairs) left untested, with the reason.
    genes
        The study's genes table (symbols).
    collapsed
        Libraries merged into others as technical replicates.
    conditions
        Screens: compound and dose per contrast (``condition``, ``compound``, ``dose``);
        other kinds have none.
    """
    result = StepResult()
    for name, reason in untested.items():
        result.warning(f"{name} not tested: {reason}")
    symbols = genes.set_index("gene_id")["gene_symbol"]
    results = pd.concat([f.fit.results.assign(cell_type=f.cell_type) for f in fits],
                        ignore_index=True)
    results = results.assign(gene_symbol=symbols.reindex(results["gene_id"]).to_numpy(),
                             significant=(results["padj"] < config.alpha).fillna(False))
    results = _with_conditions(results, conditions)[TABLES["deg_results"].stored_columns]
    summary = pd.concat([sample_summary(f.counts, f.fit.size_factors, f.sheet) for f in fits],
                        ignore_index=True)
    result.add("size_factors", summary,
               method=", ".join(sorted({f.fit.size_factor_method for f in fits})),
               technical_replicates_collapsed=collapsed,
               preview=Markdown(summary.head(50).to_markdown(index=False)))
    result.add("normalized_counts", pd.concat(
        [to_long(f.fit.normalized_counts, "normalized_count") for f in fits], ignore_index=True))
    result.add("vst", pd.concat([to_long(f.fit.vst, "vst") for f in fits], ignore_index=True))
    dispersions = pd.concat([f.fit.dispersions.assign(cell_type=f.cell_type) for f in fits],
                            ignore_index=True)[TABLES["gene_dispersions"].stored_columns]
    result.add("gene_dispersions", dispersions,
               dispersion_outliers=int(dispersions["dispersion_outlier"].sum()))
    by = ("contrast", "cell_type") if any(f.cell_type for f in fits) else ("contrast",)
    counts_by_contrast = deg_summary(results, config.alpha, by)
    label = counts_by_contrast[list(by)].astype(str).agg("/".join, axis=1)
    result.add("deg_results", results, untested=dict(untested),
               deg_summary=Markdown(counts_by_contrast.to_markdown(index=False)),
               **{f"deg_up/{key}": int(n) for key, n in zip(label, counts_by_contrast["up"])},
               **{f"deg_down/{key}": int(n)
                  for key, n in zip(label, counts_by_contrast["down"])})
    result.checks += [_size_factor_check(summary), _results_check(results, fits)]
    return result


def _size_factor_check(summary: pd.DataFrame) -> Check:
    valid = (summary["size_factor"] > 0) & summary["size_factor"].abs().lt(float("inf"))
    bad = summary.loc[~valid, "sample"].tolist()
    return Check("size_factors_valid", "size_factors", not bad, {"bad_samples": bad})


def _results_check(results: pd.DataFrame, fits: list[Fit]) -> Check:
    problems = [f"{f.cell_type}: {p}" if f.cell_type else p for f in fits
                for p in result_problems(results[results["cell_type"].isna() if f.cell_type is None
                                                 else results["cell_type"] == f.cell_type],
                                         f.contrasts, f.counts.shape[0])]
    return Check("deg_results_valid", "deg_results", not problems, {"problems": problems})


def _with_conditions(results: pd.DataFrame, conditions: pd.DataFrame | None) -> pd.DataFrame:
    """Add each screen contrast's compound and dose (null for other studies)."""
    if conditions is None:
        return results.assign(compound=None, dose=float("nan"))
    table = conditions.set_index("condition")
    return results.assign(compound=table["compound"].reindex(results["contrast"]).to_numpy(),
                          dose=table["dose"].reindex(results["contrast"]).to_numpy())
