"""Bulk RNA-seq assets: DESeq2 fit and tests, batch-corrected VST, QC plots and report.

Each asset runs its per-study body for every study of the step (``defs/batch.py``): the body
reads that study's inputs, calls the pure modules and yields tables, files and metadata.
Studies of another kind yield nothing and get empty tables.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import dagster as dg
import pandas as pd

from dge_platform.batch_correction import remove_batch_effect
from dge_platform.bulk_de import analysis_samples, fit_deseq2, result_problems, sample_summary
from dge_platform.deseq_engine import DeseqResult
from dge_platform.design import study_design_frame, treatment_matrix
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
from dge_platform.defs.partitions import study_partitions
from dge_platform.defs.resources import DeseqResource, DgeHomeResource
from dge_platform import plots
from dge_platform.plate_map import analysis_wells, condition_table
from dge_platform.problems import format_problems
from dge_platform.pseudobulk import Pseudobulk, fit_cell_types
from dge_platform.qc import flag_outliers, pca, sample_distances
from dge_platform.library_counts import STAT_COLUMNS, summed_stats
from dge_platform.replicates import collapse_sheet
from dge_platform.report import (
    build_report,
    build_screen_report,
    build_singlecell_report,
    deg_summary,
)
from dge_platform.study import StudyConfig
from dge_platform.study_tables import sheet_from_samples_table, to_long, to_wide
from dge_platform.tables import TABLES
from dge_platform.warehouse import Warehouse

GROUP = "bulk"
CODE_VERSION = "bulk-1"
DE_KINDS = ("bulk", "screen", "singlecell")
SAMPLE_LEVEL_KINDS = ("bulk", "screen")
"""Kinds whose DESeq2 samples are the study's own samples (single-cell tests pseudobulks)."""
REPORT_FILE = "report.html"


def study_config(studies: pd.DataFrame) -> StudyConfig:
    """The study.yaml snapshot recorded at ingest."""
    return StudyConfig.model_validate_json(studies["config"].iloc[0])


@dg.multi_asset(
    outs={name: table_out(name, CODE_VERSION) for name in ("size_factors", "normalized_counts", "vst",
                                        "gene_dispersions", "deg_results")},
    ins={"raw_counts": dg.AssetIn(), "samples": dg.AssetIn(), "studies": dg.AssetIn(),
         "genes": dg.AssetIn(), "well_qc": dg.AssetIn(), "pseudobulk_counts": dg.AssetIn(),
         "pseudobulk_samples": dg.AssetIn()},
    check_specs=[
        dg.AssetCheckSpec("size_factors_valid", asset="size_factors", blocking=True,
                          description="Every size factor is positive and finite."),
        dg.AssetCheckSpec("deg_results_valid", asset="deg_results", blocking=True,
                          description="Every contrast present with every gene; p-values and "
                          "padj within [0, 1] where not null."),
    ],
    partitions_def=study_partitions,
    backfill_policy=BACKFILL_POLICY,
    group_name=GROUP,
    **HEAVY_STEP,
    description="One DESeq2 fit of the study's full design (technical replicates summed "
    "first; for screens the wells that passed well_qc), then every contrast: Wald test "
    "(lfc_threshold as the alternative hypothesis), "
    "Cook's outlier handling, independent filtering, BH padj and shrunken log2 fold changes. "
    "Batch enters the design; corrected counts are never tested. Also the blind VST. "
    "Single-cell studies: one fit per cell type over its pseudobulks, each contrast tested "
    "where at least 2 donors per group remain (the others are listed under 'untested').",
)
def deseq2(context: dg.AssetExecutionContext, deseq: DeseqResource, raw_counts: StudyTables,
           samples: StudyTables, studies: StudyTables, genes: StudyTables,
           well_qc: StudyTables, pseudobulk_counts: StudyTables,
           pseudobulk_samples: StudyTables):
    with cpu_budget(deseq.cpus()):
        yield from run_per_study(context, partial(_deseq2, context, deseq),
                                 raw_counts=raw_counts, samples=samples, studies=studies,
                                 genes=genes, well_qc=well_qc,
                                 pseudobulk_counts=pseudobulk_counts,
                                 pseudobulk_samples=pseudobulk_samples)


@dataclass
class _Fit:
    """One DESeq2 fit of a study (single-cell: of one cell type) and what it tested."""

    fit: DeseqResult
    contrasts: list
    counts: pd.DataFrame
    sheet: pd.DataFrame
    cell_type: str | None = None


def _deseq2(context: dg.AssetExecutionContext, deseq: DeseqResource, study_id: str,
            raw_counts: pd.DataFrame, samples: pd.DataFrame, studies: pd.DataFrame,
            genes: pd.DataFrame, well_qc: pd.DataFrame, pseudobulk_counts: pd.DataFrame,
            pseudobulk_samples: pd.DataFrame) -> Iterator[StudyEvent]:
    config = study_config(studies)
    if config.kind not in DE_KINDS:
        context.log.info(f"{study_id}: study kind '{config.kind}': bulk DE assets skipped")
        return
    sheet = sheet_from_samples_table(samples)
    if config.kind == "singlecell":
        fits, untested = _cell_type_fits(pseudobulk_counts, pseudobulk_samples, sheet, config,
                                         deseq.cpus())
    else:
        fits, untested = _study_fit(to_wide(raw_counts, "count").astype("int64"), sheet,
                                    well_qc, config, deseq.cpus())
    for name, reason in untested.items():
        context.log.warning(f"{study_id}: {name} not tested: {reason}")
    symbols = genes.set_index("gene_id")["gene_symbol"]
    results = pd.concat([f.fit.results.assign(cell_type=f.cell_type) for f in fits],
                        ignore_index=True)
    results = results.assign(gene_symbol=symbols.reindex(results["gene_id"]).to_numpy(),
                             significant=(results["padj"] < config.alpha).fillna(False))
    results = _with_conditions(results, fits[0].sheet if config.kind == "screen" else None)
    results = results[TABLES["deg_results"].stored_columns]
    summary = pd.concat([sample_summary(f.counts, f.fit.size_factors, f.sheet) for f in fits],
                        ignore_index=True)
    collapsed = int(raw_counts["sample"].nunique() - fits[0].counts.shape[1]) \
        if config.kind in SAMPLE_LEVEL_KINDS else 0
    yield dg.Output(summary, "size_factors", metadata={
        "method": ", ".join(sorted({f.fit.size_factor_method for f in fits})),
        "technical_replicates_collapsed": collapsed,
        "preview": dg.MetadataValue.md(summary.head(50).to_markdown(index=False))})
    yield dg.Output(pd.concat([to_long(f.fit.normalized_counts, "normalized_count")
                               for f in fits], ignore_index=True), "normalized_counts")
    yield dg.Output(pd.concat([to_long(f.fit.vst, "vst") for f in fits], ignore_index=True),
                    "vst")
    dispersions = pd.concat([f.fit.dispersions.assign(cell_type=f.cell_type) for f in fits],
                            ignore_index=True)[TABLES["gene_dispersions"].stored_columns]
    yield dg.Output(dispersions, "gene_dispersions", metadata={
        "dispersion_outliers": int(dispersions["dispersion_outlier"].sum())})
    by = ("contrast", "cell_type") if config.kind == "singlecell" else ("contrast",)
    counts_by_contrast = deg_summary(results, config.alpha, by)
    label = counts_by_contrast[list(by)].astype(str).agg("/".join, axis=1)
    yield dg.Output(results, "deg_results", metadata={
        "untested": dg.MetadataValue.json(untested),
        "deg_summary": dg.MetadataValue.md(counts_by_contrast.to_markdown(index=False)),
        **{f"deg_up/{key}": int(n) for key, n in zip(label, counts_by_contrast["up"])},
        **{f"deg_down/{key}": int(n) for key, n in zip(label, counts_by_contrast["down"])},
    })
    bad = summary.loc[~((summary["size_factor"] > 0) & summary["size_factor"].abs().lt(float("inf"))),
                      "sample"].tolist()
    yield dg.AssetCheckResult(check_name="size_factors_valid", asset_key="size_factors",
                              passed=not bad, metadata={"bad_samples": dg.MetadataValue.json(bad)})
    problems = [f"{f.cell_type}: {p}" if f.cell_type else p for f in fits
                for p in result_problems(results[results["cell_type"].isna() if f.cell_type is None
                                                 else results["cell_type"] == f.cell_type],
                                         f.contrasts, f.counts.shape[0])]
    yield dg.AssetCheckResult(check_name="deg_results_valid", asset_key="deg_results",
                              passed=not problems,
                              metadata={"problems": dg.MetadataValue.json(problems)})


def _study_fit(counts: pd.DataFrame, sheet: pd.DataFrame, well_qc: pd.DataFrame,
               config: StudyConfig, n_cpus: int) -> tuple[list[_Fit], dict[str, str]]:
    """The one fit of a bulk study or screen (screens: wells that passed well QC)."""
    contrasts, untested = config.contrasts, {}
    if config.kind == "screen":
        counts, sheet, untested = _screen_wells(counts, sheet,
                                                well_qc.set_index("sample")["passed"], config)
        contrasts = [c for c in contrasts if c.name not in untested]
    counts, sheet = analysis_samples(counts, sheet, config.replicate_of)
    frame = study_design_frame(sheet, config.design, contrasts, config.batch)
    fit = fit_deseq2(counts, frame, config.design, contrasts, alpha=config.alpha,
                     lfc_threshold=config.lfc_threshold, n_cpus=n_cpus)
    return [_Fit(fit, contrasts, counts, sheet)], untested


def _cell_type_fits(pseudobulk_counts: pd.DataFrame, pseudobulk_samples: pd.DataFrame,
                    sheet: pd.DataFrame, config: StudyConfig,
                    n_cpus: int) -> tuple[list[_Fit], dict[str, str]]:
    """A single-cell study's fits: one per cell type over its kept pseudobulks, whose
    design values are those of their biological sample."""
    kept = pseudobulk_samples[pseudobulk_samples["kept"]].set_index("pseudobulk_sample")
    pb_sheet = sheet.loc[kept["sample"].astype(str)].set_index(kept.index)
    pb_sheet["cell_type"] = kept["cell_type"].astype(str)
    counts = to_wide(pseudobulk_counts.rename(columns={"pseudobulk_sample": "sample"}), "count")
    pb = Pseudobulk(counts.astype("int64")[pb_sheet.index], pb_sheet, "cell_type")
    fits, untested = fit_cell_types(pb, config.design, config.contrasts, donor_key=config.donor,
                                    batch=config.batch, alpha=config.alpha,
                                    lfc_threshold=config.lfc_threshold, n_cpus=n_cpus)
    if not fits:
        raise dg.Failure(description=f"study '{config.id}': no cell type has enough donors "
                         "for any contrast: " + "; ".join(f"{k}: {v}" for k, v in untested.items()))
    out = []
    for cell_type, (fit, tested) in fits.items():
        counts, cell_sheet = analysis_samples(pb.counts[fit.size_factors.index],
                                              pb_sheet.loc[fit.size_factors.index], None)
        out.append(_Fit(fit, tested, counts, cell_sheet, cell_type))
    return out, untested


def _screen_wells(counts: pd.DataFrame, sheet: pd.DataFrame, passed: pd.Series,
                  config: StudyConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """A screen's tested wells: controls and treated wells that passed well QC (``passed``,
    from the well_qc table), plus conditions left untested and why."""
    wells, untested, problems = analysis_wells(sheet, passed.astype(bool), config.control,
                                               config.sheet_file)
    if problems:
        raise dg.Failure(description=format_problems(config.id, problems))
    return counts[wells], sheet.loc[wells], untested


def _with_conditions(results: pd.DataFrame, sheet: pd.DataFrame | None) -> pd.DataFrame:
    """Add each screen contrast's compound and dose (null for other studies)."""
    if sheet is None:
        return results.assign(compound=None, dose=float("nan"))
    table = condition_table(sheet).set_index("condition")
    return results.assign(compound=table["compound"].reindex(results["contrast"]).to_numpy(),
                          dose=table["dose"].reindex(results["contrast"]).to_numpy())


@table_asset("batch_corrected", group=GROUP, code_version=CODE_VERSION,
             note="Empty unless the study names a batch column.")
def batch_corrected(context: dg.AssetExecutionContext, vst: StudyTables, samples: StudyTables,
                    studies: StudyTables):
    yield from run_per_study(context, partial(_batch_corrected, context), vst=vst,
                             samples=samples, studies=studies)


def _batch_corrected(context: dg.AssetExecutionContext, study_id: str, vst: pd.DataFrame,
                     samples: pd.DataFrame, studies: pd.DataFrame) -> Iterator[StudyEvent]:
    config = study_config(studies)
    if not config.batch or config.kind not in SAMPLE_LEVEL_KINDS:
        context.log.info(f"{study_id}: no batch column in study.yaml: nothing to correct")
        return
    corrected = _without_batch(to_wide(vst, "vst"), _analysis_sheet(samples, config), config)
    yield dg.Output(to_long(corrected, "batch_corrected_vst"), metadata={"batch": config.batch})


def _analysis_sheet(samples: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    """Sample sheet per analysed sample (one row per technical-replicate group)."""
    sheet = sheet_from_samples_table(samples)
    return collapse_sheet(sheet, config.replicate_of) if config.replicate_of else sheet


def _without_batch(expression: pd.DataFrame, sheet: pd.DataFrame,
                   config: StudyConfig) -> pd.DataFrame:
    """VST with the batch removed and the other design effects preserved (no-op without batch)."""
    if not config.batch:
        return expression
    frame = study_design_frame(sheet.loc[expression.columns], config.design, config.contrasts,
                               config.batch)
    return remove_batch_effect(expression, frame[config.batch],
                               treatment_matrix(frame, config.batch))


@table_asset("sample_qc", group=GROUP, code_version=CODE_VERSION, note="Also writes the QC plots (PNG) to "
              "warehouse/qc_plots/study_id=<id>/. Bulk studies only (screens have well_qc).")
def sample_qc(context: dg.AssetExecutionContext, dge_home: DgeHomeResource, vst: StudyTables,
              size_factors: StudyTables, deg_results: StudyTables,
              gene_dispersions: StudyTables, samples: StudyTables, studies: StudyTables):
    yield from run_per_study(context, partial(_sample_qc, context),
                             warehouse=Warehouse(dge_home.home().warehouse), vst=vst,
                             size_factors=size_factors, deg_results=deg_results,
                             gene_dispersions=gene_dispersions, samples=samples, studies=studies)


def _sample_qc(context: dg.AssetExecutionContext, study_id: str, vst: pd.DataFrame,
               size_factors: pd.DataFrame, deg_results: pd.DataFrame,
               gene_dispersions: pd.DataFrame, samples: pd.DataFrame,
               studies: pd.DataFrame) -> Iterator[StudyEvent]:
    config = study_config(studies)
    if config.kind != "bulk":
        context.log.info(f"{study_id}: sample QC is for bulk studies (screens: well_qc)")
        return
    expression = to_wide(vst, "vst")
    sheet = _analysis_sheet(samples, config)
    scores, explained = pca(expression)
    distances = sample_distances(expression)
    per_sample = size_factors.set_index("sample")
    groups = samples.set_index("sample")[config.replicate_of] if config.replicate_of \
        else pd.Series(samples["sample"].to_numpy(), index=samples["sample"])
    counting = summed_stats(samples.set_index("sample")[list(STAT_COLUMNS)], groups)
    flags = flag_outliers(sample_distances(_without_batch(expression, sheet, config)),
                          per_sample["library_size"], per_sample["genes_detected"],
                          counting["assigned_fraction"])
    table = pd.DataFrame({"sample": expression.columns, "pc1": scores["PC1"].to_numpy(),
                          "pc2": scores["PC2"].to_numpy() if "PC2" in scores else 0.0})
    table = table.join(per_sample["library_size"], on="sample").join(counting, on="sample")
    table = table.join(flags, on="sample")[TABLES["sample_qc"].stored_columns]
    figures = {}
    if (counting["count_source"] != "matrix").any():
        figures["qc_fragment_assignment"] = plots.fragment_assignment(
            samples.set_index("sample")[list(STAT_COLUMNS)])
    for column in dict.fromkeys([c.factor for c in config.contrasts] + [config.batch]):
        if column:
            figures[f"qc_pca_{column}"] = plots.pca_plot(
                scores, explained, sheet.loc[expression.columns, column].rename(column),
                f"PCA of VST (top 500 genes) by {column}")
    figures["qc_distances"] = plots.distance_heatmap(distances)
    figures["qc_library_sizes"] = plots.library_sizes(per_sample["library_size"], flags["outlier"])
    figures["qc_dispersions"] = plots.dispersion_plot(gene_dispersions)
    for contrast in config.contrasts:
        rows = deg_results[deg_results["contrast"] == contrast.name]
        figures[f"ma_{contrast.name}"] = plots.ma_plot(rows, config.alpha, contrast.name)
        figures[f"volcano_{contrast.name}"] = plots.volcano_plot(
            rows, config.alpha, config.lfc_threshold, contrast.name)
        figures[f"pvalues_{contrast.name}"] = plots.pvalue_histogram(rows, contrast.name)
    yield StudyFiles("qc_plots", {f"{name}.png": png for name, png in figures.items()})
    outliers = table.loc[table["outlier"], ["sample", "outlier_reason"]]
    yield dg.Output(table, metadata={
        "outliers": dg.MetadataValue.json(outliers.to_dict("records")),
        "variance_explained": dg.MetadataValue.json(
            {k: round(float(v), 4) for k, v in explained.head(5).items()}),
        **{name: dg.MetadataValue.md(plots.markdown_image(png, name)) for name, png in figures.items()},
    })


@dg.asset(
    partitions_def=study_partitions,
    backfill_policy=BACKFILL_POLICY,
    group_name=GROUP,
    kinds={"html"},
    code_version=CODE_VERSION,
    description="The study's self-contained HTML report, written to "
    "warehouse/reports/study_id=<id>/report.html. Bulk: design, QC, DEG summary and top "
    "genes per contrast, enrichment, every plot. Screens: well QC and plate heatmaps, "
    "activity calls, potency, compound similarity, top genes of the most active conditions. "
    "Single-cell: cell QC, UMAPs, pseudobulks, DEGs, volcano plots and enrichment per cell "
    "type, exploratory markers.",
)
def study_report(context: dg.AssetExecutionContext, dge_home: DgeHomeResource,
                 deg_results: StudyTables, enrichment: StudyTables, sample_qc: StudyTables,
                 samples: StudyTables, studies: StudyTables, well_qc: StudyTables,
                 compound_activity: StudyTables, compound_potency: StudyTables,
                 compound_similarity: StudyTables, cell_qc: StudyTables,
                 pseudobulk_samples: StudyTables, marker_genes: StudyTables):
    warehouse = Warehouse(dge_home.home().warehouse)
    yield from run_per_study(context, partial(_study_report, context, warehouse),
                             warehouse=warehouse, deg_results=deg_results,
                             enrichment=enrichment, sample_qc=sample_qc, samples=samples,
                             studies=studies, well_qc=well_qc,
                             compound_activity=compound_activity,
                             compound_potency=compound_potency,
                             compound_similarity=compound_similarity, cell_qc=cell_qc,
                             pseudobulk_samples=pseudobulk_samples, marker_genes=marker_genes)


def _study_report(context: dg.AssetExecutionContext, warehouse: Warehouse, study_id: str,
                  deg_results: pd.DataFrame, enrichment: pd.DataFrame,
                  sample_qc: pd.DataFrame, samples: pd.DataFrame, studies: pd.DataFrame,
                  well_qc: pd.DataFrame, compound_activity: pd.DataFrame,
                  compound_potency: pd.DataFrame, compound_similarity: pd.DataFrame,
                  cell_qc: pd.DataFrame, pseudobulk_samples: pd.DataFrame,
                  marker_genes: pd.DataFrame) -> Iterator[StudyEvent]:
    config = study_config(studies)
    if config.kind == "singlecell":
        figures = {p.stem: p.read_bytes() for folder in ("cell_qc_plots", "sc_plots")
                   for p in warehouse.files(folder, study_id) if p.suffix == ".png"}
        for (contrast, cell_type), rows in deg_results.groupby(["contrast", "cell_type"]):
            figures[f"volcano_{contrast}_{cell_type}"] = plots.volcano_plot(
                rows, config.alpha, config.lfc_threshold, f"{contrast}: {cell_type}")
        study = {"id": config.id, "title": config.title or config.id,
                 "organism": config.organism, "design": config.design, "donor": config.donor,
                 "batch": config.batch, "alpha": config.alpha}
        untested = _deseq2_untested(context, study_id)
        html = build_singlecell_report(study=study, cell_qc=cell_qc,
                                       pseudobulks=pseudobulk_samples, results=deg_results,
                                       enrichment=enrichment, markers=marker_genes,
                                       plots=figures, untested=untested).encode()
        yield from _report_files(warehouse, study_id, html)
        return
    if config.kind == "screen":
        figures = {p.stem: p.read_bytes() for folder in ("screen_plots", "similarity_plots")
                   for p in warehouse.files(folder, study_id) if p.suffix == ".png"}
        study = {"id": config.id, "title": config.title or config.id,
                 "organism": config.organism, "control": config.control,
                 "design": config.design, "alpha": config.alpha,
                 "lfc_threshold": config.lfc_threshold}
        html = build_screen_report(study=study, well_qc=well_qc, activity=compound_activity,
                                   potency=compound_potency, similarity=compound_similarity,
                                   results=deg_results, plots=figures).encode()
        yield from _report_files(warehouse, study_id, html)
        return
    figures = {p.stem: p.read_bytes() for folder in ("qc_plots", "enrichment_plots")
               for p in warehouse.files(folder, study_id) if p.suffix == ".png"}
    study = {"id": config.id, "title": config.title or config.id, "kind": config.kind,
             "organism": config.organism, "design": config.design, "batch": config.batch,
             "alpha": config.alpha, "lfc_threshold": config.lfc_threshold}
    html = build_report(study=study, samples=samples, sample_qc=sample_qc.set_index("sample"),
                        results=deg_results, enrichment=enrichment, plots=figures).encode()
    yield from _report_files(warehouse, study_id, html)


def _deseq2_untested(context: dg.AssetExecutionContext, study_id: str) -> dict[str, str]:
    """The 'untested' metadata of the study's latest deg_results materialization."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("deg_results"), asset_partitions=[study_id]),
        limit=1).records
    if not records:
        return {}
    materialization = records[0].asset_materialization
    value = materialization.metadata.get("untested") if materialization else None
    return dict(value.value) if value is not None else {}


def _report_files(warehouse: Warehouse, study_id: str, html: bytes) -> Iterator[StudyEvent]:
    yield StudyFiles("reports", {REPORT_FILE: html})
    path = warehouse.table_dir("reports") / f"study_id={study_id}" / REPORT_FILE
    yield dg.MaterializeResult(metadata={"report": dg.MetadataValue.path(str(path)),
                                         "size_bytes": len(html)})
