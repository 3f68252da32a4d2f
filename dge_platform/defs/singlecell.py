"""Single-cell assets: cell QC, embedding and annotation, pseudobulks, exploratory markers.

cell_counts (h5ad, from ingest) -> cell_qc -> sc_processed + cell_types -> pseudobulk_counts +
pseudobulk_samples -> deseq2 (per cell type, ``defs/bulk.py``). Cell-level data stays AnnData
in the warehouse; everything a user queries is a catalog table. Other kinds get empty tables.
"""

from collections.abc import Iterator
from functools import partial

import dagster as dg
import pandas as pd

from dge_platform import plots
from dge_platform.cell_checks import SAMPLE, cell_samples
from dge_platform.cell_embedding import annotate_clusters, embed_cells
from dge_platform.cell_qc import cell_qc as run_cell_qc, failed_by_reason, qc_summary
from dge_platform.defs.batch import (
    BACKFILL_POLICY,
    HEAVY_STEP,
    StudyEvent,
    StudyFiles,
    StudyTables,
    cpu_budget,
    run_per_study,
    table_asset,
    table_out,
)
from dge_platform.defs.bulk import study_config
from dge_platform.defs.partitions import study_partitions
from dge_platform.defs.resources import DeseqResource, DgeHomeResource
from dge_platform.marker_genes import marker_genes as rank_markers
from dge_platform.pseudobulk import pseudobulk, pseudobulk_summary
from dge_platform.study import StudyConfig
from dge_platform.study_tables import to_long
from dge_platform.tables import TABLES
from dge_platform.warehouse import Warehouse

GROUP = "singlecell"
CODE_VERSION = "singlecell-1"
CELL_TYPE = "cell_type"
SEED = 0


def _skip(context: dg.AssetExecutionContext, study_id: str, config: StudyConfig) -> bool:
    if config.kind == "singlecell":
        return False
    context.log.info(f"{study_id}: study kind '{config.kind}': single-cell assets skipped")
    return True


def _capture(config: StudyConfig) -> str:
    """The column whose groups QC thresholds and doublet simulation are computed in."""
    return config.capture or SAMPLE


@table_asset("cell_qc", group=GROUP, code_version=CODE_VERSION, note="Thresholds come from "
             "study.yaml 'qc:' (default: 5 MADs on log counts and log genes, 3 MADs on "
             "mitochondrial %, scrublet doublets per capture). Distribution plots go to "
             "warehouse/cell_qc_plots/.", **HEAVY_STEP)
def cell_qc(context: dg.AssetExecutionContext, dge_home: DgeHomeResource,
            deseq: DeseqResource, cell_counts: StudyTables, studies: StudyTables):
    with cpu_budget(deseq.cpus()):
        yield from run_per_study(context, partial(_cell_qc, context),
                                 warehouse=Warehouse(dge_home.home().warehouse),
                                 cell_counts=cell_counts, studies=studies)


def _cell_qc(context: dg.AssetExecutionContext, study_id: str, cell_counts,
             studies: pd.DataFrame) -> Iterator[StudyEvent]:
    config = study_config(studies)
    if _skip(context, study_id, config):
        yield StudyFiles("cell_qc_plots", {})
        return
    capture = cell_counts.obs[_capture(config)].astype(str)
    result = run_cell_qc(cell_counts, _capture(config), seed=SEED, **config.qc.model_dump())
    if not result["passed"].any():
        raise dg.Failure(description=f"study '{study_id}': every one of {len(result)} cells "
                         "failed QC; check the counts are raw UMIs, or loosen the 'qc:' "
                         "thresholds in study.yaml", metadata={
                             "reasons": dg.MetadataValue.json(
                                 result["reason"].value_counts().head(10).to_dict())})
    table = result.assign(cell_id=cell_counts.obs_names.astype(str),
                          sample=cell_counts.obs[SAMPLE].astype(str).to_numpy(),
                          donor=cell_counts.obs[config.donor].astype(str).to_numpy(),
                          capture=capture.to_numpy())[TABLES["cell_qc"].stored_columns]
    summary = qc_summary(result, capture)
    figure = plots.cell_qc_distributions(result, capture)
    yield StudyFiles("cell_qc_plots", {"cell_qc.png": figure})
    yield dg.Output(table.reset_index(drop=True), metadata={
        "n_cells": len(table), "n_passed": int(table["passed"].sum()),
        "fraction_passed": round(float(table["passed"].mean()), 4),
        "failed_by_reason": dg.MetadataValue.json(
            {k: int(v) for k, v in failed_by_reason(result).items()}),
        "per_capture": dg.MetadataValue.md(summary.to_markdown()),
        "qc_distributions": dg.MetadataValue.md(plots.markdown_image(figure, "cell QC")),
    })


@dg.multi_asset(
    outs={"sc_processed": dg.AssetOut(
              io_manager_key="h5ad_io", kinds={"h5ad"}, code_version=CODE_VERSION,
              description="QC-passed cells, log-normalized (10,000 counts per cell, log1p), "
              "highly variable genes, PCA, Harmony integration over the study's batch (or "
              "donor), neighbours, UMAP before and after integration, Leiden clusters and cell "
              "type labels, as h5ad in warehouse/sc_processed/."),
          "cell_types": table_out("cell_types", CODE_VERSION)},
    partitions_def=study_partitions,
    backfill_policy=BACKFILL_POLICY,
    group_name=GROUP,
    **HEAVY_STEP,
    description="Embeds and labels the QC-passed cells. Cell types come from the study's "
    "cell_type column, else each Leiden cluster gets the type whose study.yaml markers score "
    "highest (clusters without a positive marker score stay 'unassigned'). UMAPs coloured by "
    "cell type, condition, donor and batch, before and after integration, are in the metadata "
    "and warehouse/sc_plots/.",
)
def sc_processed(context: dg.AssetExecutionContext, dge_home: DgeHomeResource,
                 deseq: DeseqResource, cell_counts: StudyTables, cell_qc: StudyTables,
                 studies: StudyTables):
    with cpu_budget(deseq.cpus()):
        yield from run_per_study(context, partial(_sc_processed, context),
                                 warehouse=Warehouse(dge_home.home().warehouse),
                                 cell_counts=cell_counts, cell_qc=cell_qc, studies=studies)


def _sc_processed(context: dg.AssetExecutionContext, study_id: str, cell_counts,
                  cell_qc: pd.DataFrame, studies: pd.DataFrame) -> Iterator[StudyEvent]:
    config = study_config(studies)
    if _skip(context, study_id, config):
        yield StudyFiles("sc_plots", {})
        return
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
            raise dg.Failure(description=f"study '{study_id}': study.yaml markers: {err}") from None
        source = "markers"
        metadata["marker_scores"] = dg.MetadataValue.md(scores.to_markdown())
    embedded.obs[CELL_TYPE] = pd.Categorical(labels.astype(str).to_numpy())
    figures = _umaps(embedded, config)
    table = pd.DataFrame({
        "cell_id": embedded.obs_names.astype(str), "sample": embedded.obs[SAMPLE].astype(str),
        "cluster": embedded.obs["leiden"].astype(str), CELL_TYPE: embedded.obs[CELL_TYPE].astype(str),
        "cell_type_source": source, "umap_1": embedded.obsm["X_umap"][:, 0],
        "umap_2": embedded.obsm["X_umap"][:, 1]}).reset_index(drop=True)
    yield StudyFiles("sc_plots", {f"{name}.png": png for name, png in figures.items()})
    yield dg.Output(embedded, "sc_processed", metadata={
        "n_cells": embedded.n_obs, "n_clusters": int(embedded.obs["leiden"].nunique()),
        "integrated_over": integrate_key,
        **{name: dg.MetadataValue.md(plots.markdown_image(png, name))
           for name, png in figures.items()}})
    counts = table[CELL_TYPE].value_counts()
    yield dg.Output(table, "cell_types", metadata={
        **metadata, "cell_type_source": source,
        "cells_per_type": dg.MetadataValue.json({str(k): int(v) for k, v in counts.items()})})


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


@dg.multi_asset(
    outs={"pseudobulk_counts": table_out("pseudobulk_counts", CODE_VERSION),
          "pseudobulk_samples": table_out("pseudobulk_samples", CODE_VERSION)},
    partitions_def=study_partitions,
    backfill_policy=BACKFILL_POLICY,
    group_name=GROUP,
    description="Sums the raw counts of QC-passed cells per cell type x biological sample "
    "(donor x design variables x batch), sparse throughout. Pseudobulks with fewer than "
    "min_cells_per_pseudobulk cells (default 10) are dropped and listed with the reason.",
)
def pseudobulks(context: dg.AssetExecutionContext, cell_counts: StudyTables,
                cell_types: StudyTables, studies: StudyTables):
    yield from run_per_study(context, partial(_pseudobulks, context), cell_counts=cell_counts,
                             cell_types=cell_types, studies=studies)


def _pseudobulks(context: dg.AssetExecutionContext, study_id: str, cell_counts,
                 cell_types: pd.DataFrame, studies: pd.DataFrame) -> Iterator[StudyEvent]:
    config = study_config(studies)
    if _skip(context, study_id, config):
        return
    types = cell_types.set_index("cell_id")[CELL_TYPE]
    cells = cell_counts[types.index.astype(str).to_numpy()].copy()
    cells.obs[CELL_TYPE] = types.to_numpy()
    result = pseudobulk(cells, [CELL_TYPE, *config.pseudobulk_keys],
                        min_cells=config.min_cells_per_pseudobulk)
    factor = config.contrasts[0].factor
    samples = result.samples.reset_index()
    table = pd.DataFrame({
        "pseudobulk_sample": samples["pseudobulk_sample"], CELL_TYPE: samples[CELL_TYPE],
        "donor": samples[config.donor], "condition": samples[factor],
        "sample": cell_samples(samples, config.pseudobulk_keys),
        "n_cells": samples["n_cells"].astype("int64"),
        "total_counts": samples["total_counts"].astype("int64"),
        "kept": samples["kept"], "reason": samples["reason"]})
    labels = table.set_index("pseudobulk_sample")
    long = to_long(result.counts, "count").rename(columns={"sample": "pseudobulk_sample"})
    keys = long["pseudobulk_sample"].astype(str)
    long = long.assign(**{c: labels[c].reindex(keys).to_numpy()
                          for c in (CELL_TYPE, "donor", "condition")})
    dropped = table.loc[~table["kept"], ["pseudobulk_sample", "n_cells"]]
    for row in dropped.itertuples():
        context.log.warning(f"{study_id}: pseudobulk {row.pseudobulk_sample} dropped "
                            f"({row.n_cells} cells < {config.min_cells_per_pseudobulk})")
    yield dg.Output(long[TABLES["pseudobulk_counts"].stored_columns], "pseudobulk_counts",
                    metadata={"n_pseudobulks": result.counts.shape[1],
                              "n_genes": result.counts.shape[0]})
    per_type = pseudobulk_summary(table)
    yield dg.Output(table, "pseudobulk_samples", metadata={
        "n_kept": int(table["kept"].sum()), "n_dropped": len(dropped),
        "dropped": dg.MetadataValue.json(dropped.to_dict("records")),
        "per_cell_type": dg.MetadataValue.md(per_type.to_markdown(index=False))})


@table_asset("marker_genes", group=GROUP, code_version=CODE_VERSION, **HEAVY_STEP)
def marker_genes(context: dg.AssetExecutionContext, deseq: DeseqResource,
                 sc_processed: StudyTables, studies: StudyTables):
    with cpu_budget(deseq.cpus()):
        yield from run_per_study(context, partial(_marker_genes, context),
                                 sc_processed=sc_processed, studies=studies)


def _marker_genes(context: dg.AssetExecutionContext, study_id: str, sc_processed,
                  studies: pd.DataFrame) -> Iterator[StudyEvent]:
    config = study_config(studies)
    if _skip(context, study_id, config):
        return
    table = rank_markers(sc_processed, CELL_TYPE).rename(columns={"group": CELL_TYPE})
    top = table[table["rank"] <= 5].groupby(CELL_TYPE)["gene_symbol"].agg(
        lambda s: ", ".join(s.astype(str)))
    yield dg.Output(table[TABLES["marker_genes"].stored_columns], metadata={
        "exploratory": "per-cell Wilcoxon: cells are not independent replicates, so p-values "
        "are not valid for inference; use deg_results (pseudobulk DESeq2)",
        "top_markers": dg.MetadataValue.md(top.to_frame().to_markdown())})
