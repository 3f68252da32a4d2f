"""The enrichment step: ORA and GSEA prerank of every contrast (and cell type) of a study."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import pandas as pd

from dge_platform.enrichment.annotation import id_type
from dge_platform.enrichment.gene_sets import load_collections
from dge_platform.enrichment.ora import enrich_contrast
from dge_platform.outputs import plots
from dge_platform.pipelines.step import Markdown, StepResult, file_stem, png_files
from dge_platform.storage.tables import TABLES
from dge_platform.study.config import StudyConfig

ENRICHMENT_PLOTS = "enrichment_plots"


def active_contrasts(compound_activity: pd.DataFrame) -> set[str]:
    """A screen's active conditions: the only ones whose ranking GSEA is worth running on."""
    return set(compound_activity.loc[compound_activity["active"].astype(bool), "contrast"])


def enrichment(config: StudyConfig, study_dir: Path, deg_results: pd.DataFrame,
               gsea_contrasts: Collection[str] | None = None) -> StepResult:
    """ORA of every contrast (per cell type in single-cell studies) and GSEA prerank with a
    dot plot of those in ``gsea_contrasts`` (None: all), against the organism's shipped
    collections and the study's own GMT files."""
    collections = load_collections(config.organism, study_dir, config.gene_sets,
                                   id_type(deg_results["gene_id"]))
    if not collections:
        reason = (f"no gene set collection ships for organism '{config.organism}': add your own "
                  "GMT files with 'gene_sets:' in study.yaml")
        result = StepResult(files={ENRICHMENT_PLOTS: {}})
        result.warning(reason)
        return result.add("enrichment", TABLES["enrichment"].empty(), skipped=reason)
    tables, figures = [], {}
    # One ranking per contrast, and per cell type in single-cell studies.
    groups = deg_results.assign(cell_type=deg_results["cell_type"].astype(object)) \
        .groupby(["contrast", "cell_type"], dropna=False, sort=True)
    for (contrast, cell_type), rows in groups:
        full = gsea_contrasts is None or contrast in gsea_contrasts
        table = enrich_contrast(rows, collections, alpha=config.alpha,
                                lfc_threshold=config.deg_min_lfc,
                                permutations=config.gsea_permutations, seed=0, gsea=full)
        cell_type = None if pd.isna(cell_type) else str(cell_type)
        tables.append(table.assign(contrast=contrast, cell_type=cell_type))
        if full:
            label = contrast if cell_type is None else f"{contrast}_{cell_type}"
            figures[f"enrichment_{file_stem(label)}"] = plots.enrichment_dotplot(
                table, f"Top terms: {contrast}" + (f" in {cell_type}" if cell_type else ""))
    columns = TABLES["enrichment"].stored_columns
    found = pd.concat(tables, ignore_index=True)[columns] if tables \
        else TABLES["enrichment"].empty()
    significant = found[found["padj"] < 0.05].groupby(["contrast", "cell_type", "method"],
                                                      dropna=False).size()
    result = StepResult(files={ENRICHMENT_PLOTS: png_files(figures)})
    return result.add(
        "enrichment", found, collections=", ".join(name for name, _, _ in collections),
        significant_terms=Markdown(significant.rename("n").reset_index().to_markdown(index=False)),
        **{name: Markdown(plots.markdown_image(png, name)) for name, png in figures.items()})
