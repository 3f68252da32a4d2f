"""Assets several kinds' graphs have, built once per kind: the study's files, ingest, the
DESeq2 step, batch correction, enrichment, pathway and TF activity, sample scores, design
diagnostics and the report (keys ``<kind>/<name>``, group ``<kind>``).

Each factory takes what differs between kinds as arguments (the kind's DESeq2 step and its
inputs, the report builder and its tables), never the kind's name to test.
"""

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from dge_platform.defs.batch import HEAVY_STEP
from dge_platform.defs.partitions import STUDY_PARTITIONS
from dge_platform.defs.steps import (
    for_each_study,
    kind_ins,
    run_step,
    study_asset,
    study_multi_asset,
    table_asset,
    table_out,
    warehouse,
)
from dge_platform.pipelines import activity as activity_steps
from dge_platform.pipelines import bulk as bulk_steps
from dge_platform.pipelines import ingest as ingest_steps
from dge_platform.pipelines.de import DE_OUTPUTS
from dge_platform.pipelines.enrichment import active_contrasts
from dge_platform.pipelines.enrichment import enrichment as enrichment_step
from dge_platform.pipelines.step import StepResult
from dge_platform.study.config import StudyConfig

INGEST_VERSION, DE_VERSION, ENRICHMENT_VERSION = "ingest-1", "bulk-1", "enrichment-1"
ACTIVITY_VERSION = "activity-1"
INGEST_TABLES = ("studies", "samples", "genes", "raw_counts")


def study_inputs(kind: str) -> dg.AssetSpec:
    """The files of a registered study folder (observed by the sensor)."""
    return dg.AssetSpec(
        [kind, "study_inputs"], group_name=kind, partitions_def=STUDY_PARTITIONS[kind],
        description="The files of a registered study folder (study.yaml, counts, sample "
        "sheet). The study sensor observes them; their content hash is the data version, so a "
        "changed file marks everything downstream stale.")


def ingest_study(kind: str, *, deps: Sequence[str] = (), cells: bool = False,
                 note: str = "") -> dg.AssetsDefinition:
    """Validation and the ingest tables (``cells``: also the cells as h5ad)."""
    outs = {name: table_out(name, kind, INGEST_VERSION) for name in INGEST_TABLES}
    if cells:
        outs["cell_counts"] = dg.AssetOut(
            key_prefix=[kind], io_manager_key="h5ad_io", kinds={"h5ad"},
            code_version=INGEST_VERSION,
            description="The study's cells x genes raw counts (sparse) with the validated "
            "cell metadata and each cell's biological sample, as h5ad in "
            "warehouse/cell_counts/.")

    @study_multi_asset(
        kind=kind, name=f"{kind}__ingest_study", outs=outs,
        deps=[dg.AssetKey([kind, name]) for name in ("study_inputs", *deps)],
        check_specs=[dg.AssetCheckSpec(
            "raw_counts_complete", asset=dg.AssetKey([kind, "raw_counts"]), blocking=True,
            description="Re-reads the stored tables: every gene x sample pair once, counts "
            "non-negative, samples and genes identical to the samples and genes tables.")],
        description="Validates the study (every check of 'dge validate'); on any problem the "
        "run fails before writing, naming the study, so the previous tables of every study "
        f"in the step stay intact. {note}".strip())
    def ingest(context: dg.AssetExecutionContext):
        home, cpus = context.resources.dge_home.home(), context.resources.deseq.cpus()
        yield from for_each_study(
            context, lambda study_id: ingest_steps.ingest(home, study_id, cpus, context.log.info),
            checks_after_write=lambda study_id: [ingest_steps.stored_counts_check(home,
                                                                                  study_id)])

    return ingest


def deseq2(kind: str, step: Callable[..., StepResult], inputs: Sequence[str],
           note: str, extra_outputs: Sequence[str] = ()) -> dg.AssetsDefinition:
    """The kind's DESeq2 step (``step(config, **inputs, n_cpus)``) and its five tables, plus
    the kind's ``extra_outputs`` computed on the same fit (screens: combination_effects)."""
    @study_multi_asset(
        kind=kind, name=f"{kind}__deseq2",
        outs={name: table_out(name, kind, DE_VERSION) for name in (*DE_OUTPUTS, *extra_outputs)},
        ins=kind_ins(kind, "studies", *inputs),
        check_specs=[
            dg.AssetCheckSpec("size_factors_valid", asset=dg.AssetKey([kind, "size_factors"]),
                              blocking=True,
                              description="Every size factor is positive and finite."),
            dg.AssetCheckSpec("deg_results_valid", asset=dg.AssetKey([kind, "deg_results"]),
                              blocking=True, description="Every contrast present with every "
                              "gene; p-values and padj within [0, 1] where not null."),
        ],
        **HEAVY_STEP,
        description="DESeq2 (R parity): Wald test of every contrast (lfc_threshold as the "
        "alternative hypothesis), Cook's outlier handling, independent filtering, BH padj and "
        "shrunken log2 fold changes; batch enters the design, corrected counts are never "
        f"tested. Also the blind VST. {note}")
    def deseq2_asset(context: dg.AssetExecutionContext, **tables):
        yield from run_step(context, step, heavy=True, **tables)

    return deseq2_asset


def batch_corrected(kind: str) -> dg.AssetsDefinition:
    """The VST without the study's batch effect."""
    @table_asset("batch_corrected", kind=kind, code_version=DE_VERSION,
                 ins=kind_ins(kind, "vst", "samples", "studies"),
                 note="Empty unless the study names a batch column.")
    def batch_corrected_asset(context: dg.AssetExecutionContext, **tables):
        yield from run_step(context, bulk_steps.batch_corrected, **tables)

    return batch_corrected_asset


def enrichment(kind: str, *, gsea_only_for_active: bool = False,
               note: str = "") -> dg.AssetsDefinition:
    """ORA and GSEA prerank of every contrast; ``gsea_only_for_active``: GSEA only for the
    conditions compound_activity calls active (screens)."""
    extra = ("compound_activity",) if gsea_only_for_active else ()

    @table_asset("enrichment", kind=kind, code_version=ENRICHMENT_VERSION,
                 ins=kind_ins(kind, "deg_results", "studies", *extra), **HEAVY_STEP,
                 note=f"Empty when no collection applies. {note}".strip())
    def enrichment_asset(context: dg.AssetExecutionContext, **tables):
        home = context.resources.dge_home.home()
        yield from run_step(context, _enrichment, heavy=True,
                            per_study=lambda study_id: {"study_dir": home.study_dir(study_id)},
                            **tables)

    return enrichment_asset


def _enrichment(config: StudyConfig, deg_results: pd.DataFrame, study_dir: Path,
                compound_activity: pd.DataFrame | None = None) -> StepResult:
    active = None if compound_activity is None else active_contrasts(compound_activity)
    return enrichment_step(config, study_dir, deg_results, active)


def contrast_activity(kind: str) -> dg.AssetsDefinition:
    """Pathway and TF activity of every contrast (``pipelines/activity.py``)."""
    @study_multi_asset(
        kind=kind, name=f"{kind}__activity",
        outs={name: table_out(name, kind, ACTIVITY_VERSION)
              for name in ("pathway_activity", "tf_activity")},
        ins=kind_ins(kind, "deg_results", "studies"),
        check_specs=[dg.AssetCheckSpec(f"{name}_complete", asset=dg.AssetKey([kind, name]),
                                       description="Every contrast scored; every score finite.")
                     for name in ("pathway_activity", "tf_activity")],
        description="What the DEG lists mean: PROGENy pathway activity (decoupler's "
        "multivariate linear model on each contrast's Wald statistics, top 500 genes per "
        "pathway, human and mouse) and TF activity (univariate linear model on the signed "
        "targets of CollecTRI, human, or the study's tf_network). Heatmaps in the metadata "
        "and warehouse/activity_plots/.")
    def activity_asset(context: dg.AssetExecutionContext, **tables):
        home = context.resources.dge_home.home()
        yield from run_step(context, activity_steps.contrast_activity,
                            per_study=lambda study_id: {"study_dir": home.study_dir(study_id)},
                            **tables)

    return activity_asset


def sample_scores(kind: str, inputs: Sequence[str] = ()) -> dg.AssetsDefinition:
    """PROGENy and GSVA Hallmark scores of every analysed sample (``pipelines/activity.py``);
    ``inputs``: what the kind adds (single-cell: its pseudobulks' cell types)."""
    @table_asset("sample_scores", kind=kind, code_version=ACTIVITY_VERSION,
                 ins=kind_ins(kind, "vst", "genes", "studies", *inputs), **HEAVY_STEP)
    def sample_scores_asset(context: dg.AssetExecutionContext, **tables):
        yield from run_step(context, activity_steps.sample_scores, heavy=True, **tables)

    return sample_scores_asset


def design_diagnostics(kind: str, inputs: Sequence[str] = ()) -> dg.AssetsDefinition:
    """Which sample variables drive the expression, and whether the design names them
    (``inputs``: the kind's further tables, single-cell's ``pseudobulk_samples``)."""
    @table_asset("design_diagnostics", kind=kind, code_version=DE_VERSION,
                 ins=kind_ins(kind, "vst", "samples", "studies", *inputs),
                 note="The PC-association heatmap is in the metadata and "
                 "warehouse/design_plots/; warnings in the run log and the report.")
    def design_diagnostics_asset(context: dg.AssetExecutionContext, **tables):
        yield from run_step(context, bulk_steps.design_diagnostics, **tables)

    return design_diagnostics_asset


def study_report(kind: str, build: Callable[..., StepResult], inputs: Sequence[str], note: str,
                 extra: Callable[[dg.AssetExecutionContext, str], dict[str, Any]] | None = None
                 ) -> dg.AssetsDefinition:
    """The study's HTML report, built by ``build(config, warehouse, **inputs, **extra)``;
    ``extra(context, study_id)`` adds arguments read from Dagster (the run's metadata)."""
    # After the activity step, whose heatmaps the report shows.
    @study_asset(kind=kind, name="study_report", ins=kind_ins(kind, "studies", *inputs),
                 deps=[dg.AssetKey([kind, "pathway_activity"])],
                 kinds={"html"}, code_version=DE_VERSION,
                 description="The study's self-contained HTML report, written to "
                 f"warehouse/reports/study_id=<id>/report.html. {note}")
    def report(context: dg.AssetExecutionContext, **tables):
        def per_study(study_id: str) -> dict[str, Any]:
            return {"warehouse": warehouse(context),
                    **(extra(context, study_id) if extra else {})}

        yield from run_step(context, build, per_study=per_study, **tables)

    return report

