"""The single-cell graph: cells (h5ad) -> cell QC -> embedding and cell types -> pseudobulks
-> DESeq2 per cell type -> markers, enrichment and the report, each asset a call of its step
in ``pipelines/singlecell.py``. Cell-level data stays AnnData in the warehouse; everything a
user queries is a catalog table."""

from typing import Any

import dagster as dg

from dge_platform.defs import shared
from dge_platform.defs.batch import HEAVY_STEP
from dge_platform.defs.steps import kind_ins, run_step, study_multi_asset, table_asset, table_out
from dge_platform.pipelines import report
from dge_platform.pipelines import singlecell as singlecell_steps

KIND = "singlecell"
CODE_VERSION = "singlecell-1"


@table_asset("cell_qc", kind=KIND, code_version=CODE_VERSION,
             ins=kind_ins(KIND, "cell_counts", "studies"), **HEAVY_STEP,
             note="Thresholds come from study.yaml 'qc:' (default: 5 MADs on log counts and "
             "log genes, 3 MADs on mitochondrial %, scrublet doublets per capture). "
             "Distribution plots go to warehouse/cell_qc_plots/.")
def cell_qc(context: dg.AssetExecutionContext, **tables):
    yield from run_step(context, singlecell_steps.cell_qc, heavy=True, **tables)


@study_multi_asset(
    kind=KIND, name="singlecell__sc_processed",
    outs={"sc_processed": dg.AssetOut(
              key_prefix=[KIND], io_manager_key="h5ad_io", kinds={"h5ad"},
              code_version=CODE_VERSION,
              description="QC-passed cells, log-normalized (10,000 counts per cell, log1p), "
              "highly variable genes, PCA, Harmony integration over the study's batch (or "
              "donor), neighbours, UMAP before and after integration, Leiden clusters and cell "
              "type labels, as h5ad in warehouse/sc_processed/."),
          "cell_types": table_out("cell_types", KIND, CODE_VERSION)},
    ins=kind_ins(KIND, "cell_counts", "cell_qc", "studies"), **HEAVY_STEP,
    description="Embeds and labels the QC-passed cells. Cell types come from the study's "
    "cell_type column, else each Leiden cluster gets the type whose study.yaml markers score "
    "highest (clusters without a positive marker score stay 'unassigned'). UMAPs coloured by "
    "cell type, condition, donor and batch, before and after integration, are in the metadata "
    "and warehouse/sc_plots/.")
def sc_processed(context: dg.AssetExecutionContext, **tables):
    yield from run_step(context, singlecell_steps.sc_processed, heavy=True, **tables)


@study_multi_asset(
    kind=KIND, name="singlecell__pseudobulks",
    outs={name: table_out(name, KIND, CODE_VERSION)
          for name in ("pseudobulk_counts", "pseudobulk_samples")},
    ins=kind_ins(KIND, "cell_counts", "cell_types", "studies"),
    description="Sums the raw counts of QC-passed cells per cell type x biological sample "
    "(donor x design variables x batch), sparse throughout. Pseudobulks with fewer than "
    "min_cells_per_pseudobulk cells (default 10) are dropped and listed with the reason.")
def pseudobulks(context: dg.AssetExecutionContext, **tables):
    yield from run_step(context, singlecell_steps.pseudobulks, **tables)


@table_asset("marker_genes", kind=KIND, code_version=CODE_VERSION,
             ins=kind_ins(KIND, "sc_processed", "studies"), **HEAVY_STEP)
def marker_genes(context: dg.AssetExecutionContext, **tables):
    yield from run_step(context, singlecell_steps.marker_genes, heavy=True, **tables)


def untested_pairs(context: dg.AssetExecutionContext, study_id: str) -> dict[str, Any]:
    """The cell type x contrast pairs the study's latest DESeq2 step left untested (its
    deg_results metadata), for the report."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey([KIND, "deg_results"]),
                              asset_partitions=[study_id]), limit=1).records
    materialization = records[0].asset_materialization if records else None
    value = materialization.metadata.get("untested") if materialization else None
    return {"untested": dict(value.value) if value is not None else {}}


ASSETS = [
    shared.study_inputs(KIND),
    shared.ingest_study(KIND, cells=True, note="raw_counts and samples hold the cells summed "
                        "per biological sample; the cells themselves go to cell_counts (h5ad)."),
    cell_qc, sc_processed, pseudobulks,
    shared.deseq2(KIND, singlecell_steps.deseq2,
                  ("samples", "genes", "pseudobulk_counts", "pseudobulk_samples"),
                  "One fit per cell type over its pseudobulks; each contrast is tested where "
                  "at least 2 donors per group remain (the others are listed under "
                  "'untested')."),
    marker_genes, shared.enrichment(KIND), shared.contrast_activity(KIND),
    shared.sample_scores(KIND, ("pseudobulk_samples",)),
    shared.design_diagnostics(KIND, ("pseudobulk_samples",)),
    shared.study_report(KIND, report.singlecell_report,
                        ("deg_results", "enrichment", "cell_qc", "pseudobulk_samples",
                         "marker_genes", "design_diagnostics"),
                        "Cell QC, UMAPs, pseudobulks, DEGs, volcano plots and enrichment per "
                        "cell type, exploratory markers.", extra=untested_pairs),
]
"""The single-cell graph, from the cells to the report."""
