"""Enrichment asset: ORA and GSEA prerank of every contrast against offline collections."""

import re
from collections.abc import Iterator
from functools import partial

import dagster as dg
import pandas as pd

from dge_platform import plots
from dge_platform.defs.batch import (
    BACKFILL_POLICY,
    HEAVY_STEP,
    StudyEvent,
    StudyFiles,
    StudyTables,
    cpu_budget,
    run_per_study,
)
from dge_platform.defs.bulk import DE_KINDS, study_config
from dge_platform.defs.partitions import study_partitions
from dge_platform.defs.resources import DeseqResource, DgeHomeResource
from dge_platform.enrichment import enrich_contrast
from dge_platform.gene_annotation import id_type
from dge_platform.gene_sets import load_collections
from dge_platform.home import DgeHome
from dge_platform.tables import TABLES
from dge_platform.warehouse import Warehouse


def _file_safe(name: str) -> str:
    """A plot file stem from a contrast / cell type label (spaces, '+' and '/' replaced)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


@dg.asset(
    io_manager_key="warehouse_io",
    partitions_def=study_partitions,
    backfill_policy=BACKFILL_POLICY,
    group_name="enrichment",
    kinds={"parquet"},
    code_version="enrichment-1",
    **HEAVY_STEP,
    description=TABLES["enrichment"].description + " Empty when no collection applies. "
    "Screens: ORA for every compound x dose, GSEA prerank and plots for active conditions "
    "only (an inactive condition's ranking is noise, and hundreds of GSEA runs per plate "
    "would dominate the run).",
)
def enrichment(context: dg.AssetExecutionContext, dge_home: DgeHomeResource,
               deseq: DeseqResource, deg_results: StudyTables, studies: StudyTables,
               compound_activity: StudyTables):
    home = dge_home.home()
    # GSEA's numba loops would otherwise start one thread per host core.
    with cpu_budget(deseq.cpus()):
        yield from run_per_study(context, partial(_enrichment, context, home),
                                 warehouse=Warehouse(home.warehouse), deg_results=deg_results,
                                 studies=studies, compound_activity=compound_activity)


def _enrichment(context: dg.AssetExecutionContext, home: DgeHome, study_id: str,
                deg_results: pd.DataFrame, studies: pd.DataFrame,
                compound_activity: pd.DataFrame) -> Iterator[StudyEvent]:
    config = study_config(studies)
    if config.kind not in DE_KINDS:
        context.log.info(f"{study_id}: study kind '{config.kind}' has no DE results to enrich")
        yield StudyFiles("enrichment_plots", {})
        return
    collections = load_collections(config.organism, home.study_dir(study_id), config.gene_sets,
                                   id_type(deg_results["gene_id"]))
    if not collections:
        reason = (f"no gene set collection ships for organism '{config.organism}': add your own "
                  "GMT files with 'gene_sets:' in study.yaml")
        context.log.warning(f"{study_id}: {reason}")
        yield StudyFiles("enrichment_plots", {})
        yield dg.Output(TABLES["enrichment"].empty(), metadata={"skipped": reason})
        return
    tables, figures = [], {}
    active = set(compound_activity.loc[compound_activity["active"].astype(bool), "contrast"])
    # One ranking per contrast, and per cell type in single-cell studies.
    groups = deg_results.assign(cell_type=deg_results["cell_type"].astype(object)) \
        .groupby(["contrast", "cell_type"], dropna=False, sort=True)
    for (contrast, cell_type), rows in groups:
        full = config.kind != "screen" or contrast in active
        table = enrich_contrast(rows, collections, alpha=config.alpha,
                                lfc_threshold=config.deg_min_lfc,
                                permutations=config.gsea_permutations, seed=0, gsea=full)
        cell_type = None if pd.isna(cell_type) else str(cell_type)
        tables.append(table.assign(contrast=contrast, cell_type=cell_type))
        if full:
            label = contrast if cell_type is None else f"{contrast}_{cell_type}"
            figures[f"enrichment_{_file_safe(label)}"] = plots.enrichment_dotplot(
                table, f"Top terms: {contrast}" + (f" in {cell_type}" if cell_type else ""))
    columns = TABLES["enrichment"].stored_columns
    result = pd.concat(tables, ignore_index=True)[columns] if tables \
        else TABLES["enrichment"].empty()
    yield StudyFiles("enrichment_plots", {f"{name}.png": png for name, png in figures.items()})
    significant = result[result["padj"] < 0.05].groupby(["contrast", "cell_type", "method"],
                                                       dropna=False).size()
    yield dg.Output(result, metadata={
        "collections": ", ".join(name for name, _, _ in collections),
        "significant_terms": dg.MetadataValue.md(significant.rename("n").reset_index()
                                                 .to_markdown(index=False)),
        **{name: dg.MetadataValue.md(plots.markdown_image(png, name))
           for name, png in figures.items()},
    })
