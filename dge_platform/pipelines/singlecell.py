"""Single-cell steps: cell QC, embedding and annotation, pseudobulks, DESeq2 per cell type and
exploratory markers, each for one study."""

from __future__ import annotations

import pandas as pd

from dge_platform.de.fit import analysis_samples
from dge_platform.outputs import plots
from dge_platform.pipelines.de import Fit, de_tables
from dge_platform.pipelines.step import Markdown, StepFailure, StepResult, png_files
from dge_platform.singlecell.checks import SAMPLE, cell_samples
from dge_platform.singlecell.de import fit_cell_types
from dge_platform.singlecell.embedding import annotate_clusters, embed_cells
from dge_platform.singlecell.markers import marker_genes as rank_markers
from dge_platform.singlecell.pseudobulk import Pseudobulk, pseudobulk, pseudobulk_summary
from dge_platform.singlecell.qc import cell_qc as cell_qc_table
from dge_platform.singlecell.qc import failed_by_reason, qc_summary
from dge_platform.storage.frames import sheet_from_samples_table, to_long, to_wide
from dge_platform.storage.tables import TABLES
from dge_platform.study.config import StudyConfig

CELL_TYPE = "cell_type"
SEED = 0
CELL_QC_PLOTS, SC_PLOTS = "cell_qc_plots", "sc_plots"


def _capture(config: StudyConfig) -> str:
    """The column whose groups QC thresholds and doublet simulation are computed in."""
    return config.capture or SAMPLE


def cell_qc(config: StudyConfig, cell_counts) -> StepResult:
    """Per cell: counts, genes, mitochondrial %, doublet score, pass/fail and the reason."""
    capture = cell_counts.obs[_capture(config)].astype(str)
    qc = cell_qc_table(cell_counts, _capture(config), seed=SEED, **config.qc.model_dump())
    if not qc["passed"].any():
        raise StepFailure(f"study '{config.id}': every one of {len(qc)} cells failed QC; check "
                          "the counts are raw UMIs, or loosen the 'qc:' thresholds in "
                          "study.yaml", {"reasons": qc["reason"].value_counts().head(10).to_dict()})
    table = qc.assign(cell_id=cell_counts.obs_names.astype(str),
                      sample=cell_counts.obs[SAMPLE].astype(str).to_numpy(),
                      donor=cell_counts.obs[config.donor].astype(str).to_numpy(),
                      capture=capture.to_numpy())[TABLES["cell_qc"].stored_columns]
    figure = plots.cell_qc_distributions(qc, capture)
    result = StepResult(files={CELL_QC_PLOTS: {"cell_qc.png": figure}})
    return result.add(
        "cell_qc", table.reset_index(drop=True), n_cells=len(table),
        n_passed=int(table["passed"].sum()),
        fraction_passed=round(float(table["passed"].mean()), 4),
        failed_by_reason={k: int(v) for k, v in failed_by_reason(qc).items()},
        per_capture=Markdown(qc_summary(qc, capture).to_markdown()),
        qc_distributions=Markdown(plots.markdown_image(figure, "cell QC")))


def sc_processed(config: StudyConfig, cell_counts, cell_qc: pd.DataFrame) -> StepResult:
    """The QC-passed cells embedded, integrated, clustered and labelled; UMAPs."""
    cells = cell_counts[cell_qc.loc[cell_qc["passed"], "cell_id"].astype(str).to_numpy()]
    integrate_key = config.batch or config.donor
    embedded = embed_cells(cells, integrate_key=integrate_key,
                           resolution=config.clustering_resolution, seed=SEED)
    metadata = {}
    if config.cell_type:
        labels, source = cells.obs[config.cell_type].astype(str), "input"
    else:
        try:
            labels, scores = annotate_clusters(embedded, config.markers)
        except ValueError as err:
            raise StepFailure(f"study '{config.id}': study.yaml markers: {err}") from None
        source = "markers"
        metadata["marker_scores"] = Markdown(scores.to_markdown())
    embedded.obs[CELL_TYPE] = pd.Categorical(labels.astype(str).to_numpy())
    figures = _umaps(embedded, config)
    table = pd.DataFrame({
        "cell_id": embedded.obs_names.astype(str), "sample": embedded.obs[SAMPLE].astype(str),
        "cluster": embedded.obs["leiden"].astype(str),
        CELL_TYPE: embedded.obs[CELL_TYPE].astype(str), "cell_type_source": source,
        "umap_1": embedded.obsm["X_umap"][:, 0],
        "umap_2": embedded.obsm["X_umap"][:, 1]}).reset_index(drop=True)
    counts = table[CELL_TYPE].value_counts()
    result = StepResult(files={SC_PLOTS: png_files(figures)})
    result.add("sc_processed", embedded, n_cells=embedded.n_obs,
               n_clusters=int(embedded.obs["leiden"].nunique()), integrated_over=integrate_key,
               **{name: Markdown(plots.markdown_image(png, name))
                  for name, png in figures.items()})
    return result.add("cell_types", table, **metadata, cell_type_source=source,
                      cells_per_type={str(k): int(v) for k, v in counts.items()})


def _umaps(embedded, config: StudyConfig) -> dict[str, bytes]:
    """UMAP before and after integration, coloured by each label users check."""
    colours = dict.fromkeys([CELL_TYPE, *(c.factor for c in config.contrasts), config.donor,
                             config.batch])
    figures = {}
    for column in (c for c in colours if c):
        for key, when in (("X_umap_unintegrated", "before"), ("X_umap", "after")):
            figures[f"umap_{when}_integration_{column}"] = plots.umap_plot(
                embedded.obsm[key], embedded.obs[column].astype(str),
                f"UMAP {when} integration: {column}")
    return figures


def pseudobulks(config: StudyConfig, cell_counts, cell_types: pd.DataFrame) -> StepResult:
    """Raw counts of QC-passed cells summed per cell type x biological sample."""
    types = cell_types.set_index("cell_id")[CELL_TYPE]
    cells = cell_counts[types.index.astype(str).to_numpy()].copy()
    cells.obs[CELL_TYPE] = types.to_numpy()
    summed = pseudobulk(cells, [CELL_TYPE, *config.pseudobulk_keys],
                        min_cells=config.min_cells_per_pseudobulk)
    factor = config.contrasts[0].factor
    samples = summed.samples.reset_index()
    table = pd.DataFrame({
        "pseudobulk_sample": samples["pseudobulk_sample"], CELL_TYPE: samples[CELL_TYPE],
        "donor": samples[config.donor], "condition": samples[factor],
        "sample": cell_samples(samples, config.pseudobulk_keys),
        "n_cells": samples["n_cells"].astype("int64"),
        "total_counts": samples["total_counts"].astype("int64"),
        "kept": samples["kept"], "reason": samples["reason"]})
    labels = table.set_index("pseudobulk_sample")
    long = to_long(summed.counts, "count").rename(columns={"sample": "pseudobulk_sample"})
    keys = long["pseudobulk_sample"].astype(str)
    long = long.assign(**{c: labels[c].reindex(keys).to_numpy()
                          for c in (CELL_TYPE, "donor", "condition")})
    dropped = table.loc[~table["kept"], ["pseudobulk_sample", "n_cells"]]
    result = StepResult()
    for row in dropped.itertuples():
        result.warning(f"pseudobulk {row.pseudobulk_sample} dropped "
                       f"({row.n_cells} cells < {config.min_cells_per_pseudobulk})")
    result.add("pseudobulk_counts", long[TABLES["pseudobulk_counts"].stored_columns],
               n_pseudobulks=summed.counts.shape[1], n_genes=summed.counts.shape[0])
    return result.add("pseudobulk_samples", table, n_kept=int(table["kept"].sum()),
                      n_dropped=len(dropped), dropped=dropped.to_dict("records"),
                      per_cell_type=Markdown(pseudobulk_summary(table).to_markdown(index=False)))


def deseq2(config: StudyConfig, samples: pd.DataFrame, genes: pd.DataFrame,
           pseudobulk_counts: pd.DataFrame, pseudobulk_samples: pd.DataFrame,
           n_cpus: int) -> StepResult:
    """One DESeq2 fit per cell type over its kept pseudobulks, whose design values are those
    of their biological sample; contrasts tested where at least 2 donors per group remain."""
    kept = pseudobulk_samples[pseudobulk_samples["kept"]].set_index("pseudobulk_sample")
    sheet = sheet_from_samples_table(samples)
    pb_sheet = sheet.loc[kept["sample"].astype(str)].set_index(kept.index)
    pb_sheet[CELL_TYPE] = kept[CELL_TYPE].astype(str)
    counts = to_wide(pseudobulk_counts.rename(columns={"pseudobulk_sample": "sample"}), "count")
    pb = Pseudobulk(counts.astype("int64")[pb_sheet.index], pb_sheet, CELL_TYPE)
    fits, untested = fit_cell_types(pb, config.design, config.contrasts, donor_key=config.donor,
                                    batch=config.batch, alpha=config.alpha,
                                    lfc_threshold=config.lfc_threshold, n_cpus=n_cpus)
    if not fits:
        raise StepFailure(f"study '{config.id}': no cell type has enough donors for any "
                          "contrast: " + "; ".join(f"{k}: {v}" for k, v in untested.items()))
    found = []
    for cell_type, (fit, tested) in fits.items():
        cell_counts, cell_sheet = analysis_samples(pb.counts[fit.size_factors.index],
                                                   pb_sheet.loc[fit.size_factors.index], None)
        found.append(Fit(fit, tested, cell_counts, cell_sheet, cell_type))
    return de_tables(found, untested, config, genes)


def marker_genes(config: StudyConfig, sc_processed) -> StepResult:
    """Exploratory per-cell markers of each cell type (not for inference)."""
    table = rank_markers(sc_processed, CELL_TYPE).rename(columns={"group": CELL_TYPE})
    top = table[table["rank"] <= 5].groupby(CELL_TYPE)["gene_symbol"].agg(
        lambda s: ", ".join(s.astype(str)))
    return StepResult().add(
        "marker_genes", table[TABLES["marker_genes"].stored_columns],
        exploratory="per-cell Wilcoxon: cells are not independent replicates, so p-values "
        "are not valid for inference; use deg_results (pseudobulk DESeq2)",
        top_markers=Markdown(top.to_frame().to_markdown()))
