"""The compound screen graph: ingest, well QC, the shared DESeq2 fit (every compound x dose
against the control wells), activity calls, dose-response, potency, similarity, enrichment
and the report, each asset a call of its step in ``pipelines/screen.py``."""

import dagster as dg

from dge_platform.defs import shared
from dge_platform.defs.batch import HEAVY_STEP
from dge_platform.defs.steps import kind_ins, run_step, study_multi_asset, table_asset, table_out
from dge_platform.pipelines import report
from dge_platform.pipelines import screen as screen_steps

KIND = "screen"
CODE_VERSION = "screen-3"


def _screen_asset(table: str, inputs: tuple[str, ...], note: str = "", **kwargs):
    return table_asset(table, kind=KIND, code_version=CODE_VERSION,
                       ins=kind_ins(KIND, "studies", *inputs), note=note, **kwargs)


@_screen_asset("well_qc", ("raw_counts", "samples", "genes"), "Plate heatmaps (depth, genes "
               "detected, flags) are in the metadata and in warehouse/screen_plots/study_id=<id>/.")
def well_qc(context: dg.AssetExecutionContext, **tables):
    yield from run_step(context, screen_steps.well_qc, **tables)


@_screen_asset("plate_position_effects", ("raw_counts", "well_qc"),
               "On log CPM of the control wells that passed QC; heatmap in the metadata and "
               "warehouse/position_plots/. 'position_effects: edge | row_column' in study.yaml "
               "adds the term to the design.")
def plate_position_effects(context: dg.AssetExecutionContext, **tables):
    yield from run_step(context, screen_steps.plate_position_effects, **tables)


@_screen_asset("compound_activity", ("raw_counts", "samples", "size_factors",
                                     "gene_dispersions", "deg_results"),
               "The null: per plate, 200 random splits of the usable control wells "
               "(pseudo-treatment of the median replicate count) tested like real contrasts "
               "with the fit's dispersions.", **HEAVY_STEP)
def compound_activity(context: dg.AssetExecutionContext, **tables):
    yield from run_step(context, screen_steps.compound_activity, heavy=True, **tables)


@_screen_asset("dose_response", ("vst", "samples", "deg_results", "genes"),
               "Fitted on each compound's wells and its plates' controls (dose 0), on VST "
               "expression, for genes with padj < alpha at any dose of the compound. Compounds "
               "with fewer than 3 doses are skipped (listed in the metadata). Curves of the "
               "most sensitive genes with BMD and interval in the metadata and "
               "warehouse/dose_response_plots/.", **HEAVY_STEP)
def dose_response(context: dg.AssetExecutionContext, **tables):
    yield from run_step(context, screen_steps.dose_response, heavy=True, **tables)


@_screen_asset("pathway_dose_response", ("sample_scores", "samples"),
               "Curves of the most sensitive scores in the metadata and "
               "warehouse/pathway_dose_plots/.")
def pathway_dose_response(context: dg.AssetExecutionContext, **tables):
    yield from run_step(context, screen_steps.pathway_dose_response, **tables)


@_screen_asset("compound_potency", ("dose_response",), "tPOD = median BMD of the compound's "
               "most sensitive genes (see the docs, 'Compound screens').")
def compound_potency(context: dg.AssetExecutionContext, **tables):
    yield from run_step(context, screen_steps.compound_potency, **tables)


@_screen_asset("compound_pod", ("dose_response", "pathway_dose_response", "well_qc", "genes"),
               "Gene sets: the shipped collections of the organism and the study's own "
               "(gene_sets:). POD summary plot in the metadata and warehouse/pod_plots/.")
def compound_pod(context: dg.AssetExecutionContext, **tables):
    home = context.resources.dge_home.home()
    yield from run_step(context, screen_steps.compound_pod,
                        per_study=lambda study_id: {"study_dir": home.study_dir(study_id)},
                        **tables)


@study_multi_asset(
    kind=KIND, name="screen__moa",
    outs={name: table_out(name, KIND, CODE_VERSION)
          for name in ("compound_signatures", "moa_retrieval")},
    ins=kind_ins(KIND, "vst", "samples", "genes", "studies"),
    description="Mechanism of action you can trust: per compound x dose the consensus "
    "signature of its wells (CMap's MODZ of robust z-scores against the plate's controls), "
    "replicate correlation and transcriptional activity score; phenotypic activity mean "
    "average precision (copairs) of its wells against the plate's controls, and with a moa "
    "(or target) column in the plate map, the consistency mAP of each class over the active "
    "conditions.")
def moa(context: dg.AssetExecutionContext, **tables):
    yield from run_step(context, screen_steps.moa, **tables)


@_screen_asset("compound_similarity", ("deg_results", "compound_activity",
                                       "compound_signatures", "samples"),
               "Signatures are the consensus (MODZ) signatures over informative genes "
               "(significant in some condition); only active conditions are compared, since "
               "inactive signatures are noise. Each neighbour carries its MoA class and each "
               "condition the class its neighbours are enriched for. Heatmap in the metadata.")
def compound_similarity(context: dg.AssetExecutionContext, **tables):
    yield from run_step(context, screen_steps.compound_similarity, **tables)


@_screen_asset("combinations", ("combination_effects", "raw_counts", "samples",
                                "size_factors", "gene_dispersions"),
               "The null: per plate, 100 relabellings in which nothing interacts (control "
               "wells as pseudo AB/A/B/control, or one monotherapy's wells as pseudo AB and A), "
               "tested like real interactions with the fit's dispersions. Observed-vs-expected "
               "scatters and class counts in the metadata and warehouse/combination_plots/.",
               **HEAVY_STEP)
def combinations(context: dg.AssetExecutionContext, **tables):
    yield from run_step(context, screen_steps.combinations, heavy=True, **tables)


@_screen_asset("pathway_combination_effects", ("sample_scores", "samples",
                                               "combination_effects"),
               "On the per-well PROGENy and Hallmark GSVA scores of sample_scores.")
def pathway_combination_effects(context: dg.AssetExecutionContext, **tables):
    yield from run_step(context, screen_steps.pathway_combination_effects, **tables)


ASSETS = [
    shared.study_inputs(KIND), shared.ingest_study(KIND), well_qc, plate_position_effects,
    shared.deseq2(KIND, screen_steps.deseq2, ("raw_counts", "samples", "genes", "well_qc"),
                  "One fit of the control wells and the treated wells that passed well_qc; "
                  "every compound x dose is a contrast against the control, and every "
                  "combination's interaction (AB - A - B + control) is tested on the same fit "
                  "into combination_effects.", extra_outputs=("combination_effects",)),
    shared.batch_corrected(KIND), compound_activity, dose_response, pathway_dose_response,
    compound_potency, compound_pod, moa, compound_similarity, combinations,
    pathway_combination_effects, shared.contrast_activity(KIND),
    shared.sample_scores(KIND), shared.design_diagnostics(KIND),
    shared.enrichment(KIND, gsea_only_for_active=True,
                      note="ORA for every compound x dose, GSEA prerank and plots for active "
                      "conditions only (an inactive condition's ranking is noise, and hundreds "
                      "of GSEA runs per plate would dominate the run)."),
    shared.study_report(KIND, report.screen_report,
                        ("deg_results", "well_qc", "compound_activity", "compound_potency",
                         "compound_pod", "plate_position_effects", "compound_similarity",
                         "design_diagnostics", "moa_retrieval", "combinations"),
                        "Well QC and plate heatmaps, activity calls, potency, MoA retrieval "
                        "and similarity, combinations, top genes of the most active "
                        "conditions."),
]
"""The screen graph, from the plate's files to its report."""
