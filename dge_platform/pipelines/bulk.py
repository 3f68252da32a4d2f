"""Bulk RNA-seq steps: the DESeq2 fit, batch-corrected VST and sample QC with its plots.

``deseq2`` and ``batch_corrected`` also serve screens, whose DE tests their own wells the same
way once well QC has chosen them (``pipelines/screen.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dge_platform.bulk.batch_correction import remove_batch_effect
from dge_platform.bulk.diagnostics import (
    covered_by,
    design_warnings,
    informative_variables,
    pc_associations,
    separable,
    variance_partition,
)
from dge_platform.bulk.qc import flag_outliers, pca, sample_distances
from dge_platform.counting.libraries import summed_stats
from dge_platform.outputs import plots
from dge_platform.pipelines.de import de_tables, fit_samples
from dge_platform.pipelines.step import Markdown, StepResult, png_files
from dge_platform.storage.frames import sheet_from_samples_table, to_long, to_wide
from dge_platform.storage.tables import STAT_COLUMNS, TABLES
from dge_platform.study.config import StudyConfig
from dge_platform.study.design import design_variables, study_design_frame, treatment_matrix
from dge_platform.study.replicates import collapse_sheet

QC_PLOTS = "qc_plots"


def deseq2(config: StudyConfig, raw_counts: pd.DataFrame, samples: pd.DataFrame,
           genes: pd.DataFrame, n_cpus: int) -> StepResult:
    """One DESeq2 fit of the study's full design, then every contrast (``pipelines/de.py``)."""
    counts = to_wide(raw_counts, "count").astype("int64")
    fit = fit_samples(counts, sheet_from_samples_table(samples), config, config.contrasts,
                      n_cpus)
    collapsed = int(raw_counts["sample"].nunique() - fit.counts.shape[1])
    return de_tables([fit], {}, config, genes, collapsed=collapsed)


def analysis_sheet(samples: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    """Sample sheet per analysed sample (one row per technical-replicate group)."""
    sheet = sheet_from_samples_table(samples)
    return collapse_sheet(sheet, config.replicate_of) if config.replicate_of else sheet


def without_batch(expression: pd.DataFrame, sheet: pd.DataFrame,
                  config: StudyConfig) -> pd.DataFrame:
    """VST with the batch removed and the other design effects preserved (no-op without batch)."""
    if not config.batch:
        return expression
    frame = study_design_frame(sheet.loc[expression.columns], config.design, config.contrasts,
                               config.batch)
    return remove_batch_effect(expression, frame[config.batch],
                               treatment_matrix(frame, config.batch))


def batch_corrected(config: StudyConfig, vst: pd.DataFrame, samples: pd.DataFrame) -> StepResult:
    """The VST without the study's batch effect (none without a batch column)."""
    result = StepResult()
    if not config.batch:
        result.info("no batch column in study.yaml: nothing to correct")
        return result
    corrected = without_batch(to_wide(vst, "vst"), analysis_sheet(samples, config), config)
    return result.add("batch_corrected", to_long(corrected, "batch_corrected_vst"),
                      batch=config.batch)


def sample_qc(config: StudyConfig, vst: pd.DataFrame, size_factors: pd.DataFrame,
              deg_results: pd.DataFrame, gene_dispersions: pd.DataFrame,
              samples: pd.DataFrame) -> StepResult:
    """Per analysed sample: PCA scores, counting statistics and outlier flags; the QC plots."""
    expression = to_wide(vst, "vst")
    sheet = analysis_sheet(samples, config)
    scores, explained = pca(expression)
    per_sample = size_factors.set_index("sample")
    groups = samples.set_index("sample")[config.replicate_of] if config.replicate_of \
        else pd.Series(samples["sample"].to_numpy(), index=samples["sample"])
    counting = summed_stats(samples.set_index("sample")[list(STAT_COLUMNS)], groups)
    flags = flag_outliers(sample_distances(without_batch(expression, sheet, config)),
                          per_sample["library_size"], per_sample["genes_detected"],
                          counting["assigned_fraction"])
    table = pd.DataFrame({"sample": expression.columns, "pc1": scores["PC1"].to_numpy(),
                          "pc2": scores["PC2"].to_numpy() if "PC2" in scores else 0.0})
    table = table.join(per_sample["library_size"], on="sample").join(counting, on="sample")
    table = table.join(flags, on="sample")[TABLES["sample_qc"].stored_columns]
    figures = _qc_figures(config, expression, sheet, scores, explained, per_sample, flags,
                          samples, gene_dispersions, deg_results)
    outliers = table.loc[table["outlier"], ["sample", "outlier_reason"]]
    result = StepResult(files={QC_PLOTS: png_files(figures)})
    return result.add(
        "sample_qc", table, outliers=outliers.to_dict("records"),
        variance_explained={k: round(float(v), 4) for k, v in explained.head(5).items()},
        **{name: Markdown(plots.markdown_image(png, name)) for name, png in figures.items()})


def _qc_figures(config: StudyConfig, expression: pd.DataFrame, sheet: pd.DataFrame,
                scores: pd.DataFrame, explained: pd.Series, per_sample: pd.DataFrame,
                flags: pd.DataFrame, samples: pd.DataFrame, gene_dispersions: pd.DataFrame,
                deg_results: pd.DataFrame) -> dict[str, bytes]:
    """PCA by each contrast factor and the batch, distances, library sizes, dispersions, and
    MA, volcano and p-value plots per contrast (and fragment assignment for reads input)."""
    figures = {}
    stats = samples.set_index("sample")[list(STAT_COLUMNS)]
    if (stats["count_source"] != "matrix").any():
        figures["qc_fragment_assignment"] = plots.fragment_assignment(stats)
    for column in dict.fromkeys([c.factor for c in config.contrasts] + [config.batch]):
        if column:
            figures[f"qc_pca_{column}"] = plots.pca_plot(
                scores, explained, sheet.loc[expression.columns, column].rename(column),
                f"PCA of VST (top 500 genes) by {column}")
    figures["qc_distances"] = plots.distance_heatmap(sample_distances(expression))
    figures["qc_library_sizes"] = plots.library_sizes(per_sample["library_size"], flags["outlier"])
    figures["qc_dispersions"] = plots.dispersion_plot(gene_dispersions)
    for contrast in config.contrasts:
        rows = deg_results[deg_results["contrast"] == contrast.name]
        figures[f"ma_{contrast.name}"] = plots.ma_plot(rows, config.alpha, contrast.name)
        figures[f"volcano_{contrast.name}"] = plots.volcano_plot(
            rows, config.alpha, config.lfc_threshold, contrast.name)
        figures[f"pvalues_{contrast.name}"] = plots.pvalue_histogram(rows, contrast.name)
    return figures


DESIGN_PLOTS = "design_plots"


def design_diagnostics(config: StudyConfig, vst: pd.DataFrame, samples: pd.DataFrame,
                       pseudobulk_samples: pd.DataFrame | None = None) -> StepResult:
    """Leading PCs against every sample variable, and the variance partition; a warning for
    each variable outside the design that explains PC1 or PC2. Single-cell studies
    (``pseudobulk_samples``): per cell type, over its kept pseudobulks, whose variables are
    their sample's and their cell count and depth."""
    expression = to_wide(vst, "vst")
    sheet = analysis_sheet(samples, config)
    groups = ({None: sheet.loc[expression.columns]} if pseudobulk_samples is None
              else _pseudobulk_sheets(pseudobulk_samples, sheet, list(expression.columns)))
    design = [v for v in [*design_variables(config.design)[0], config.batch, config.donor] if v]
    result = StepResult(files={DESIGN_PLOTS: {}})
    tables, figures = [], {}
    for cell_type, group in groups.items():
        table = _diagnose(expression[list(group.index)], group, design)
        if table is None:
            result.info(f"{cell_type + ': ' if cell_type else ''}no sample variable with more "
                        "than one value, or fewer than 3 samples: nothing to diagnose")
            continue
        tables.append(table.assign(cell_type=cell_type))
        pcs = table[table["component"] != "variance_partition"]
        name = "pc_associations" + (f"_{cell_type}" if cell_type else "")
        figures[name] = plots.pc_association_heatmap(
            pcs, f"{cell_type}: sample variables vs PCs" if cell_type else None)
    if not tables:
        return result
    table = pd.concat(tables, ignore_index=True)[TABLES["design_diagnostics"].stored_columns]
    warnings = design_warnings(table)
    for warning in warnings:
        result.warning(warning)
    result.files[DESIGN_PLOTS] = png_files(figures)
    shares = table[table["component"] == "variance_partition"]
    return result.add("design_diagnostics", table, warnings=warnings, variance_shares={
        " / ".join(filter(None, (row.cell_type, row.variable))): round(float(row.statistic), 4)
        for row in shares.itertuples()}, pc_associations=Markdown("\n\n".join(
            plots.markdown_image(figure, name) for name, figure in figures.items())))


def _diagnose(expression: pd.DataFrame, sheet: pd.DataFrame,
              design: list[str]) -> pd.DataFrame | None:
    """PC associations and variance shares of one set of samples (None: nothing to test)."""
    variables = informative_variables(sheet, [c for c in sheet.columns if c != "sample"])
    if not variables or expression.shape[1] < 3:
        return None
    pcs = pc_associations(expression, sheet, variables)
    # Design variables first: the shares then say what the design leaves to others.
    ordered = [v for v in variables if v in design] + [v for v in variables if v not in design]
    shares = variance_partition(expression, sheet, separable(sheet, ordered)).median()
    table = pd.concat([pcs, pd.DataFrame({
        "component": "variance_partition", "variable": shares.index,
        "test": "median_variance_share", "statistic": shares.to_numpy()})], ignore_index=True)
    table["in_design"] = [covered_by(sheet, v, design) if v in sheet.columns else False
                          for v in table["variable"]]
    return table


def _pseudobulk_sheets(pseudobulk_samples: pd.DataFrame, sheet: pd.DataFrame,
                       analysed: list[str]) -> dict[str, pd.DataFrame]:
    """Per cell type, its analysed pseudobulks' sheet: their sample's variables plus cell
    count and log depth (a pseudobulk of few cells is a classic driver of PC1)."""
    kept = pseudobulk_samples[pseudobulk_samples["pseudobulk_sample"].isin(analysed)]
    own = ["n_cells", "log10_counts"]
    frame = kept.assign(log10_counts=np.log10(kept["total_counts"].clip(lower=1)))
    frame = frame.set_index("pseudobulk_sample")[["cell_type", "sample", *own]].join(
        sheet.drop(columns=[c for c in own if c in sheet.columns]), on="sample")
    return {cell_type: rows.drop(columns=["cell_type"])
            for cell_type, rows in frame.groupby("cell_type", sort=True)}

