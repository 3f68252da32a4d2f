"""The study report step: one self-contained HTML file per study, built by its kind's builder
from the study's tables and the plots the earlier steps wrote to the warehouse."""

from __future__ import annotations

import pandas as pd

from dge_platform.outputs.report import (
    build_report,
    build_screen_report,
    build_singlecell_report,
)
from dge_platform.pipelines.activity import ACTIVITY_PLOTS
from dge_platform.pipelines.bulk import DESIGN_PLOTS
from dge_platform.pipelines.screen import (
    COMBINATION_PLOTS,
    DOSE_PLOTS,
    PATHWAY_DOSE_PLOTS,
    POD_PLOTS,
    SCREEN_PLOTS,
    SCREEN_POSITION_PLOTS,
    SIMILARITY_PLOTS,
)
from dge_platform.pipelines.step import StepResult
from dge_platform.storage.warehouse import Warehouse
from dge_platform.study.config import StudyConfig

REPORTS, REPORT_FILE = "reports", "report.html"


def _figures(warehouse: Warehouse, study_id: str, folders: tuple[str, ...]) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for folder in folders
            for p in warehouse.files(folder, study_id) if p.suffix == ".png"}


def _report(warehouse: Warehouse, study_id: str, html: str) -> StepResult:
    data = html.encode()
    path = warehouse.table_dir(REPORTS) / f"study_id={study_id}" / REPORT_FILE
    return StepResult(files={REPORTS: {REPORT_FILE: data}},
                      materialized={"report": path, "size_bytes": len(data)})


def bulk_report(config: StudyConfig, warehouse: Warehouse, deg_results: pd.DataFrame,
                enrichment: pd.DataFrame, sample_qc: pd.DataFrame, samples: pd.DataFrame,
                design_diagnostics: pd.DataFrame) -> StepResult:
    """Design, QC, DEG summary and explorer, enrichment, the QC, design and activity plots."""
    figures = _figures(warehouse, config.id, ("qc_plots", DESIGN_PLOTS, ACTIVITY_PLOTS))
    study = {"id": config.id, "title": config.title or config.id, "kind": config.kind,
             "organism": config.organism, "design": config.design, "batch": config.batch,
             "alpha": config.alpha, "lfc_threshold": config.lfc_threshold}
    return _report(warehouse, config.id, build_report(
        study=study, samples=samples, sample_qc=sample_qc.set_index("sample"),
        results=deg_results, enrichment=enrichment, plots=figures, design=design_diagnostics))


def screen_report(config: StudyConfig, warehouse: Warehouse, deg_results: pd.DataFrame,
                  well_qc: pd.DataFrame, compound_activity: pd.DataFrame,
                  compound_potency: pd.DataFrame, compound_pod: pd.DataFrame,
                  plate_position_effects: pd.DataFrame, compound_similarity: pd.DataFrame,
                  design_diagnostics: pd.DataFrame, moa_retrieval: pd.DataFrame,
                  combinations: pd.DataFrame) -> StepResult:
    """Well QC and plate heatmaps, position effects, activity calls, points of departure and
    dose-response curves, MoA retrieval and similarity, combinations, DEG explorer."""
    figures = _figures(warehouse, config.id, (SCREEN_PLOTS, SIMILARITY_PLOTS, DESIGN_PLOTS,
                                              ACTIVITY_PLOTS, DOSE_PLOTS, PATHWAY_DOSE_PLOTS,
                                              POD_PLOTS, SCREEN_POSITION_PLOTS,
                                              COMBINATION_PLOTS))
    study = {"id": config.id, "title": config.title or config.id,
             "organism": config.organism, "control": config.control,
             "design": config.design, "alpha": config.alpha,
             "lfc_threshold": config.lfc_threshold}
    return _report(warehouse, config.id, build_screen_report(
        study=study, well_qc=well_qc, activity=compound_activity, potency=compound_potency,
        similarity=compound_similarity, results=deg_results, plots=figures,
        design=design_diagnostics, pods=compound_pod, position_effects=plate_position_effects,
        moa=moa_retrieval, combinations=combinations))


def singlecell_report(config: StudyConfig, warehouse: Warehouse, deg_results: pd.DataFrame,
                      enrichment: pd.DataFrame, cell_qc: pd.DataFrame,
                      pseudobulk_samples: pd.DataFrame, marker_genes: pd.DataFrame,
                      design_diagnostics: pd.DataFrame, untested: dict[str, str]) -> StepResult:
    """Cell QC, UMAPs, pseudobulks, the DEG explorer and enrichment per cell type,
    exploratory markers; ``untested``: the cell type x contrast pairs DESeq2 left out."""
    figures = _figures(warehouse, config.id, ("cell_qc_plots", "sc_plots", DESIGN_PLOTS,
                                              ACTIVITY_PLOTS))
    study = {"id": config.id, "title": config.title or config.id,
             "organism": config.organism, "design": config.design, "donor": config.donor,
             "batch": config.batch, "alpha": config.alpha,
             "lfc_threshold": config.lfc_threshold}
    return _report(warehouse, config.id, build_singlecell_report(
        study=study, cell_qc=cell_qc, pseudobulks=pseudobulk_samples, results=deg_results,
        enrichment=enrichment, markers=marker_genes, plots=figures, untested=untested,
        design=design_diagnostics))
