"""Bulk differential expression: one DESeq2 fit per study, then every contrast.

Mirrors R's ``DESeq()`` followed by ``results(contrast=...)`` and ``lfcShrink``: median-of-
ratios size factors (poscounts for sparse counts), dispersion trend and shrinkage, Wald
tests (against ``lfc_threshold`` as the alternative hypothesis when set), Cook's outlier
handling, independent filtering and BH adjustment. Shrunken log2 fold changes use
PyDESeq2's apeGLM-style prior.

Two engines compute the same statistics: the vectorized engine
(:mod:`dge_platform.de.engine`) for designs that are one contrasted factor plus additive
terms (nearly all studies and screens), and PyDESeq2 itself (with the R-parity dispersion
trend and prior) for anything else.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from pydeseq2.dds import DeseqDataSet
from pydeseq2.default_inference import DefaultInference
from pydeseq2.ds import DeseqStats

from dge_platform.de.contrast import Contrast, LinearContrast
from dge_platform.de.dispersion import RParityDeseqDataSet
from dge_platform.de.engine import (
    DeseqResult,
    fit_group_design,
    group_design,
    size_factor_method,
)
from dge_platform.study.replicates import N_TECHNICAL, collapse_technical_replicates

RESULT_COLUMNS = {
    "baseMean": "base_mean", "log2FoldChange": "log2_fold_change", "lfcSE": "lfc_se",
    "stat": "stat", "pvalue": "pvalue", "padj": "padj",
}


def coefficient_name(contrast: Contrast) -> str:
    """The model-matrix column of ``level`` vs its factor's base level (formulaic naming)."""
    return f"{contrast.factor}[T.{contrast.level}]"


def fit_deseq2(counts: pd.DataFrame, frame: pd.DataFrame, design: str,
               contrasts: list[Contrast], *, alpha: float = 0.05, lfc_threshold: float = 0.0,
               n_cpus: int = 1, shrink: bool = True,
               engine: Literal["auto", "vectorized", "pydeseq2"] = "auto",
               size_factors_fit_type: Literal["auto", "ratio", "poscounts"] = "auto",
               linear_contrasts: Sequence[LinearContrast] = ()) -> DeseqResult:
    """Fit the study's design once and test every contrast.

    Parameters
    ----------
    counts
        Raw integer counts, genes x samples.
    frame
        Typed design frame indexed by sample (see :func:`dge_platform.study.design.design_frame`);
        the first category of each factor is its base level.
    design
        The DESeq2-style formula.
    contrasts
        Comparisons to test; all factors must be in the design.
    alpha
        FDR target used by independent filtering. (default: ``0.05``)
    lfc_threshold
        |log2 fold change| of the null hypothesis; when positive, tests are against
        ``greaterAbs`` as in ``results(lfcThreshold=, altHypothesis="greaterAbs")``.
        (default: ``0``)
    n_cpus
        Worker processes for PyDESeq2. (default: ``1``)
    shrink
        Add shrunken log2 fold changes. (default: ``True``)
    engine
        ``"vectorized"``: :func:`dge_platform.de.engine.fit_group_design` (the contrasts
        must share one factor, additive in the design); ``"pydeseq2"``: PyDESeq2;
        ``"auto"``: the vectorized engine whenever it applies. (default: ``"auto"``)
    size_factors_fit_type
        ``"ratio"`` (median of ratios, DESeq2's default), ``"poscounts"`` (sparse counts,
        e.g. DRUG-seq), or ``"auto"``: ratio when at least 50 genes have no zero count over
        the analysed samples, else poscounts. The result's ``size_factor_method`` says which
        was used. (default: ``"auto"``)
    linear_contrasts
        Weighted sums of the contrasts' factor levels (a combination's interaction), into
        the result's ``linear_results``; the vectorized engine only. (default: none)
    """
    frame = frame.loc[counts.columns]
    split = (_group_split(frame, design, [*contrasts, *linear_contrasts])
             if engine != "pydeseq2" else None)
    if (engine == "vectorized" or linear_contrasts) and split is None:
        raise ValueError(f"design {design!r} with these contrasts is not a group + block "
                         "design" + ("; linear contrasts need one" if linear_contrasts
                                     else "; use engine='pydeseq2'"))
    if split is not None:
        groups, block = split
        return fit_group_design(counts, groups, block, contrasts, alpha=alpha,
                                lfc_threshold=lfc_threshold,
                                size_factors_fit_type=size_factors_fit_type, shrink=shrink,
                                linear_contrasts=linear_contrasts)
    return _fit_pydeseq2(counts, frame, design, contrasts, alpha=alpha,
                         lfc_threshold=lfc_threshold, n_cpus=n_cpus, shrink=shrink,
                         size_factors_fit_type=size_factors_fit_type)


def _group_split(frame: pd.DataFrame, design: str,
                 contrasts: Sequence[Contrast | LinearContrast]
                 ) -> tuple[pd.Series, pd.DataFrame] | None:
    factors = {c.factor for c in contrasts}
    return group_design(frame, design, factors.pop()) if len(factors) == 1 else None


def _fit_pydeseq2(counts: pd.DataFrame, frame: pd.DataFrame, design: str,
                  contrasts: list[Contrast], *, alpha: float, lfc_threshold: float,
                  n_cpus: int, shrink: bool, size_factors_fit_type: str) -> DeseqResult:
    inference = DefaultInference(n_cpus=n_cpus)
    method = size_factor_method(counts.to_numpy(), size_factors_fit_type)
    with warnings.catch_warnings():
        # PyDESeq2 warns on low residual df and slow convergence; both are expected here.
        warnings.simplefilter("ignore", UserWarning)
        dds = _fitted(counts, frame, design, inference, method)
        tables = []
        for contrast in contrasts:
            stats = contrast_stats(dds, contrast, alpha=alpha, lfc_threshold=lfc_threshold,
                                   inference=inference)
            table = results_table(stats, contrast)
            table["log2_fold_change_shrunk"] = shrunken_lfc(
                stats, contrast, frame,
                lambda f: _fitted(counts, f, design, inference, method),
                inference) if shrink else np.nan
            tables.append(table)
        dds.vst(use_design=False)
    genes = counts.index.astype(str)
    samples = counts.columns.astype(str)
    size_factors = pd.Series(np.asarray(dds.obs["size_factors"]), index=samples,
                             name="size_factor")
    normalized = pd.DataFrame(np.asarray(dds.layers["normed_counts"]).T, index=genes,
                              columns=samples)
    vst = pd.DataFrame(np.asarray(dds.layers["vst_counts"]).T, index=genes, columns=samples)
    var = dds.var
    dispersions = pd.DataFrame({
        "gene_id": genes,
        "base_mean": normalized.mean(axis=1).to_numpy(),
        "dispersion_gene_est": _column(var, "genewise_dispersions"),
        "dispersion_trend": _column(var, "fitted_dispersions"),
        "dispersion": _column(var, "dispersions"),
        "dispersion_outlier": _column(var, "_outlier_genes", fill=False).astype(bool),
    })
    return DeseqResult(size_factors, normalized, vst, dispersions, pd.concat(tables), method)


def _column(var: pd.DataFrame, name: str, fill=np.nan) -> np.ndarray:
    return var[name].to_numpy() if name in var.columns else np.full(len(var), fill)


def _fitted(counts: pd.DataFrame, frame: pd.DataFrame, design: str,
            inference: DefaultInference, size_factors_fit_type: str) -> DeseqDataSet:
    dds = RParityDeseqDataSet(counts=counts.T, metadata=frame, design=design, refit_cooks=True,
                              inference=inference, quiet=True,
                              size_factors_fit_type=size_factors_fit_type)
    dds.deseq2()
    return dds


def contrast_stats(dds: DeseqDataSet, contrast: Contrast, *, alpha: float,
                   lfc_threshold: float = 0.0,
                   inference: DefaultInference | None = None) -> DeseqStats:
    """Wald test of one contrast on a fitted dataset, with Cook's filtering, independent
    filtering and BH adjustment; ``lfc_threshold > 0`` tests |LFC| > threshold."""
    hypothesis = {"lfc_null": lfc_threshold, "alt_hypothesis": "greaterAbs"} \
        if lfc_threshold > 0 else {}
    stats = DeseqStats(dds, contrast=[contrast.factor, contrast.level, contrast.reference],
                       alpha=alpha, cooks_filter=True, independent_filter=True,
                       inference=inference, quiet=True, **hypothesis)
    stats.summary()
    return stats


def results_table(stats: DeseqStats, contrast: Contrast) -> pd.DataFrame:
    """One row per gene: contrast, gene_id, base_mean, log2_fold_change, lfc_se, stat,
    pvalue, padj (NaN where independent filtering or Cook's distance removed the gene, as
    in DESeq2)."""
    table = stats.results_df.rename(columns=RESULT_COLUMNS)[list(RESULT_COLUMNS.values())].copy()
    table.index = table.index.astype(str)
    table.insert(0, "gene_id", table.index)
    table.insert(0, "contrast", contrast.name)
    return table.reset_index(drop=True)


def shrunken_lfc(stats: DeseqStats, contrast: Contrast, frame: pd.DataFrame,
                 refit: Callable[[pd.DataFrame], DeseqDataSet],
                 inference: DefaultInference) -> np.ndarray:
    """apeGLM-style shrunken log2 fold changes for one contrast.

    PyDESeq2 shrinks model coefficients, and ``factor[T.level]`` is level vs the factor's
    base level; a contrast against another reference is refitted (``refit``) with that
    reference releveled to the base.
    """
    if frame[contrast.factor].cat.categories[0] != contrast.reference:
        releveled = frame.copy()
        levels = [lv for lv in frame[contrast.factor].cat.categories if lv != contrast.reference]
        releveled[contrast.factor] = releveled[contrast.factor].cat.reorder_categories(
            [contrast.reference, *levels])
        stats = contrast_stats(refit(releveled), contrast, alpha=stats.alpha,
                               inference=inference)
    stats.lfc_shrink(coeff=coefficient_name(contrast))
    return stats.results_df["log2FoldChange"].to_numpy()


def analysis_samples(counts: pd.DataFrame, sheet: pd.DataFrame,
                     replicate_of: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Counts and sheet per biological sample: technical replicates summed when the study
    names a ``replicate_of`` column, with the number of libraries per sample."""
    if replicate_of:
        return collapse_technical_replicates(counts, sheet, replicate_of)
    sheet = sheet.loc[counts.columns].copy()
    sheet[N_TECHNICAL] = 1
    return counts, sheet


def sample_summary(counts: pd.DataFrame, size_factors: pd.Series,
                   sheet: pd.DataFrame) -> pd.DataFrame:
    """Per analysed sample: size factor, library size, genes detected, libraries summed."""
    return pd.DataFrame({
        "sample": counts.columns.astype(str),
        "size_factor": size_factors.loc[counts.columns].to_numpy(),
        "library_size": counts.sum(axis=0).to_numpy(),
        "genes_detected": (counts > 0).sum(axis=0).to_numpy(),
        "n_technical_replicates": sheet.loc[counts.columns, N_TECHNICAL].to_numpy(),
    })


def result_problems(results: pd.DataFrame, contrasts: list[Contrast], n_genes: int) -> list[str]:
    """Violations of what a DEG table must satisfy: every contrast present with every gene,
    p-values and adjusted p-values within [0, 1] where not null."""
    problems = []
    for c in contrasts:
        rows = int((results["contrast"] == c.name).sum())
        if rows != n_genes:
            problems.append(f"contrast '{c.name}' has {rows} rows, expected {n_genes}")
    for column in ("pvalue", "padj"):
        values = results[column].dropna()
        if ((values < 0) | (values > 1)).any():
            outside = int(((values < 0) | (values > 1)).sum())
            problems.append(f"{column} outside [0, 1] for {outside} rows")
    return problems
