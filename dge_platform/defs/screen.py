"""Screen assets: well QC, activity calls, dose-response, potency and compound similarity.

The screen's DE is the shared ``deseq2`` fit (every compound x dose vs the control wells);
these assets read its tables. Each runs its per-study body for every study of the step
(``defs/batch.py``); studies of another kind yield nothing and get empty tables.
"""

from collections.abc import Iterator
from functools import partial

import dagster as dg
import numpy as np
import pandas as pd

from dge_platform import plots
from dge_platform.compound_activity import (
    NULL_QUANTILE,
    activity_calls,
    null_deg_counts,
    pseudo_treatment_size,
)
from dge_platform.compound_similarity import compound_similarity as similarity_of
from dge_platform.compound_similarity import conditions, informative_genes, signature_matrix
from dge_platform.defs.batch import (
    HEAVY_STEP,
    StudyEvent,
    StudyFiles,
    StudyTables,
    cpu_budget,
    run_per_study,
    table_asset,
)
from dge_platform.defs.bulk import study_config
from dge_platform.defs.resources import DeseqResource, DgeHomeResource
from dge_platform.dose_response import compound_potency as potency_of
from dge_platform.dose_response import fit_dose_response
from dge_platform.plate_map import ROLE, condition_plates, condition_table
from dge_platform.study_tables import sheet_from_samples_table, to_wide
from dge_platform.tables import TABLES
from dge_platform.warehouse import Warehouse
from dge_platform.well_qc import well_qc as well_qc_of

GROUP = "screen"
CODE_VERSION = "screen-1"
MAX_PLATES_SHOWN = 4
SCREEN_PLOTS, SIMILARITY_PLOTS = "screen_plots", "similarity_plots"


def _screen_asset(table: str, note: str = "", **kwargs):
    return table_asset(table, group=GROUP, code_version=CODE_VERSION, note=note, **kwargs)


def _skip(context: dg.AssetExecutionContext, study_id: str, kind: str) -> bool:
    if kind != "screen":
        context.log.info(f"{study_id}: study kind '{kind}': screen assets skipped")
        return True
    return False


@_screen_asset("well_qc", "Plate heatmaps (depth, genes detected, flags) are in the "
               "metadata and in warehouse/screen_plots/study_id=<id>/.")
def well_qc(context: dg.AssetExecutionContext, dge_home: DgeHomeResource,
            raw_counts: StudyTables, samples: StudyTables, genes: StudyTables,
            studies: StudyTables):
    yield from run_per_study(context, partial(_well_qc, context),
                             warehouse=Warehouse(dge_home.home().warehouse),
                             raw_counts=raw_counts, samples=samples, genes=genes, studies=studies)


def _well_qc(context: dg.AssetExecutionContext, study_id: str, raw_counts: pd.DataFrame,
             samples: pd.DataFrame, genes: pd.DataFrame,
             studies: pd.DataFrame) -> Iterator[StudyEvent]:
    config = study_config(studies)
    if _skip(context, study_id, config.kind):
        return
    sheet = sheet_from_samples_table(samples)
    qc = well_qc_of(to_wide(raw_counts, "count"), sheet,
                    genes.set_index("gene_id")["gene_symbol"])
    figures = {}
    for plate, wells in qc.groupby("plate", sort=True):
        by_well = wells.set_index("well")
        failed = ~by_well["passed"]
        figures[f"plate_{plate}_depth"] = plots.plate_heatmap(
            np.log10(by_well["total_counts"].clip(lower=1)), f"{plate}: log10 total counts",
            label="log10 counts", flagged=failed)
        figures[f"plate_{plate}_genes"] = plots.plate_heatmap(
            by_well["genes_detected"], f"{plate}: genes detected", label="genes", flagged=failed)
        figures[f"plate_{plate}_flags"] = plots.plate_heatmap(
            failed.astype(float), f"{plate}: failed wells (x)", cmap="Reds", label="failed",
            flagged=failed)
    yield StudyFiles(SCREEN_PLOTS, {f"{name}.png": png for name, png in figures.items()})
    reasons = qc.loc[~qc["passed"], "reason"].str.split("; ").explode().value_counts()
    shown = sorted(qc["plate"].unique())[:MAX_PLATES_SHOWN]
    yield dg.Output(qc[TABLES["well_qc"].stored_columns], metadata={
        "n_wells": len(qc), "n_failed": int((~qc["passed"]).sum()),
        "failed_by_reason": dg.MetadataValue.json(reasons.to_dict()),
        **{name: dg.MetadataValue.md(plots.markdown_image(png, name))
           for name, png in figures.items() if name.split("_")[1] in shown},
    })


@_screen_asset("compound_activity", "The null: per plate, 200 random splits of the usable "
               "control wells (pseudo-treatment of the median replicate count) tested like "
               "real contrasts with the fit's dispersions.", **HEAVY_STEP)
def compound_activity(context: dg.AssetExecutionContext, deseq: DeseqResource,
                      raw_counts: StudyTables, samples: StudyTables, size_factors: StudyTables,
                      gene_dispersions: StudyTables, deg_results: StudyTables,
                      studies: StudyTables):
    with cpu_budget(deseq.cpus()):
        yield from run_per_study(context, partial(_compound_activity, context),
                                 raw_counts=raw_counts, samples=samples,
                                 size_factors=size_factors, gene_dispersions=gene_dispersions,
                                 deg_results=deg_results, studies=studies)


def _compound_activity(context: dg.AssetExecutionContext, study_id: str,
                       raw_counts: pd.DataFrame, samples: pd.DataFrame,
                       size_factors: pd.DataFrame, gene_dispersions: pd.DataFrame,
                       deg_results: pd.DataFrame, studies: pd.DataFrame) -> Iterator[StudyEvent]:
    config = study_config(studies)
    if _skip(context, study_id, config.kind):
        return
    sheet = sheet_from_samples_table(samples)
    analysed = size_factors.set_index("sample")["size_factor"]
    sheet = sheet.loc[analysed.index]
    table = condition_table(sheet)
    table = table[table["condition"].isin(set(deg_results["contrast"]))]
    table = table.rename(columns={"condition": "contrast"})
    table["plate"] = condition_plates(sheet).reindex(table["contrast"]).to_numpy()
    dispersions = gene_dispersions.set_index("gene_id")
    counts = to_wide(raw_counts, "count").loc[dispersions.index, analysed.index]
    nulls = {}
    for plate, wells in sheet[sheet[ROLE] == "control"].groupby("plate"):
        controls = wells.index.tolist()
        n_treated = pseudo_treatment_size(table["n_wells"], len(controls))
        nulls[plate] = null_deg_counts(
            counts, analysed, dispersions["dispersion"],
            dispersions["base_mean"], controls, n_treated, alpha=config.alpha,
            lfc_threshold=config.lfc_threshold, seed=0)
        context.log.info(f"{study_id} plate {plate}: null of {len(nulls[plate])} control splits "
                         f"({n_treated} vs {len(controls) - n_treated} wells), 95th percentile "
                         f"{np.quantile(nulls[plate], NULL_QUANTILE):.1f} DEGs")
    calls = activity_calls(deg_results, table, nulls, alpha=config.alpha)
    yield dg.Output(calls, metadata={
        "n_conditions": len(calls), "n_active": int(calls["active"].sum()),
        "null_threshold_by_plate": dg.MetadataValue.json(
            {p: float(np.quantile(v, NULL_QUANTILE)) for p, v in nulls.items()}),
        "active": dg.MetadataValue.md(calls[calls["active"]].sort_values(
            "n_deg", ascending=False).head(40).to_markdown(index=False)),
    })


@_screen_asset("dose_response", "Fitted on each compound's wells and its plates' controls "
               "(dose 0), on VST expression, for genes with padj < alpha at any dose of the "
               "compound. Compounds with fewer than 3 doses are skipped.", **HEAVY_STEP)
def dose_response(context: dg.AssetExecutionContext, deseq: DeseqResource, vst: StudyTables,
                  samples: StudyTables, deg_results: StudyTables, genes: StudyTables,
                  studies: StudyTables):
    with cpu_budget(deseq.cpus()):
        yield from run_per_study(context, partial(_dose_response, context), vst=vst,
                                 samples=samples, deg_results=deg_results, genes=genes,
                                 studies=studies)


def _dose_response(context: dg.AssetExecutionContext, study_id: str, vst: pd.DataFrame,
                   samples: pd.DataFrame, deg_results: pd.DataFrame, genes: pd.DataFrame,
                   studies: pd.DataFrame) -> Iterator[StudyEvent]:
    config = study_config(studies)
    if _skip(context, study_id, config.kind):
        return
    expression = to_wide(vst, "vst")
    sheet = sheet_from_samples_table(samples).loc[expression.columns]
    doses = pd.to_numeric(sheet["dose"])
    significant = deg_results[deg_results["padj"] < config.alpha]
    fits, skipped = [], {}
    for compound, wells in sheet[sheet[ROLE] == "sample"].groupby("compound", sort=True):
        responsive = significant.loc[significant["compound"] == compound, "gene_id"].unique()
        if len(responsive) == 0:
            skipped[compound] = "no gene with padj < alpha at any dose"
            continue
        controls = sheet.index[(sheet[ROLE] == "control") & sheet["plate"].isin(wells["plate"])]
        used = wells.index.append(controls)
        try:
            fit = fit_dose_response(expression.loc[responsive, used], doses.loc[used])
        except ValueError as err:
            skipped[compound] = str(err)
            continue
        fits.append(fit.assign(compound=compound))
    symbols = genes.set_index("gene_id")["gene_symbol"]
    if not fits:
        context.log.info(f"{study_id}: no compound had responsive genes over enough doses")
        table = TABLES["dose_response"].empty()
    else:
        table = pd.concat(fits, ignore_index=True)
        table["gene_symbol"] = symbols.reindex(table["gene_id"]).to_numpy()
        first = TABLES["dose_response"].stored_columns
        table = table[first + [c for c in table.columns if c not in first]]
    yield dg.Output(table, metadata={
        "n_compounds_fitted": len(fits), "skipped": dg.MetadataValue.json(skipped),
        "n_genes_with_bmd": int(table["bmd"].notna().sum()) if len(table) else 0})


@_screen_asset("compound_potency", "tPOD = median BMD of the compound's most sensitive genes "
               "(see README, 'Screens').")
def compound_potency(context: dg.AssetExecutionContext, dose_response: StudyTables,
                     studies: StudyTables):
    yield from run_per_study(context, partial(_compound_potency, context),
                             dose_response=dose_response, studies=studies)


def _compound_potency(context: dg.AssetExecutionContext, study_id: str,
                      dose_response: pd.DataFrame, studies: pd.DataFrame) -> Iterator[StudyEvent]:
    config = study_config(studies)
    if _skip(context, study_id, config.kind):
        return
    table = potency_of(dose_response) if len(dose_response) else TABLES["compound_potency"].empty()
    yield dg.Output(table, metadata={
        "n_compounds_with_tpod": int(table["tpod"].notna().sum()) if len(table) else 0,
        "potency": dg.MetadataValue.md(table.sort_values("tpod").head(40).to_markdown(
            index=False)) if len(table) else ""})


@_screen_asset("compound_similarity", "Signatures are Wald statistics over informative genes "
               "(significant in some condition); only active conditions are compared, since "
               "inactive signatures are noise. Heatmap in the metadata.")
def compound_similarity(context: dg.AssetExecutionContext, dge_home: DgeHomeResource,
                        deg_results: StudyTables, compound_activity: StudyTables,
                        studies: StudyTables):
    yield from run_per_study(context, partial(_compound_similarity, context),
                             warehouse=Warehouse(dge_home.home().warehouse),
                             deg_results=deg_results, compound_activity=compound_activity,
                             studies=studies)


def _compound_similarity(context: dg.AssetExecutionContext, study_id: str,
                         deg_results: pd.DataFrame, compound_activity: pd.DataFrame,
                         studies: pd.DataFrame) -> Iterator[StudyEvent]:
    config = study_config(studies)
    if _skip(context, study_id, config.kind):
        return
    active = compound_activity.loc[compound_activity["active"], "contrast"]
    rows = deg_results[deg_results["contrast"].isin(set(active))]
    if active.nunique() < 2:
        context.log.info(f"{study_id}: {active.nunique()} active condition(s): nothing to "
                         "compare")
        yield StudyFiles(SIMILARITY_PLOTS, {})
        yield dg.Output(TABLES["compound_similarity"].empty(),
                        metadata={"n_active": int(active.nunique())})
        return
    genes = informative_genes(rows, alpha=config.alpha)
    result = similarity_of(signature_matrix(rows), genes, conditions_meta=conditions(rows))
    table = result.neighbors.join(result.clusters["cluster"], on="contrast")
    heatmap = plots.similarity_heatmap(result.similarity, result.order,
                                       result.clusters["cluster"])
    yield StudyFiles(SIMILARITY_PLOTS, {"similarity_heatmap.png": heatmap})
    yield dg.Output(table[TABLES["compound_similarity"].stored_columns], metadata={
        "n_active": int(active.nunique()), "n_genes": len(genes),
        "n_clusters": int(result.clusters["cluster"].nunique()),
        "notes": dg.MetadataValue.json(result.notes),
        "similarity_heatmap": dg.MetadataValue.md(plots.markdown_image(heatmap, "similarity")),
    })
