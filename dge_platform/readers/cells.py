"""Read a single-cell study's counts and cell metadata into one sparse AnnData.

Supported counts: an h5ad (cells x genes, raw counts in ``X`` or a named layer), a 10x
``filtered_feature_bc_matrix`` folder (Cell Ranger MTX triplet, v2 or v3 layout) and a 10x
``.h5``. Cell metadata comes from the h5ad's ``obs`` or a ``cells:`` sheet (CSV/TSV, one row
per cell, first column or ``cell_id``/``barcode`` naming the cell); an optional ``samples:``
sheet adds per-sample columns to cells through their ``sample`` column. The matrix stays
sparse (CSR) throughout: a cell matrix is never densified.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from dge_platform._core.problems import Problem
from dge_platform.readers.counts import SYMBOL_COLUMNS, damaged_matrix_problem
from dge_platform.readers.sample_sheet import SAMPLE_COLUMN, read_sample_sheet, read_text_table
from dge_platform.study.config import StudyConfig
from dge_platform.study.paths import STUDY_FILE, study_path

CELL_ID_COLUMNS = ("cell_id", "barcode", "cell")
GENE_SYMBOL = "gene_symbol"
TENX_V3 = ("barcodes.tsv.gz", "features.tsv.gz", "matrix.mtx.gz")
TENX_V2 = ("barcodes.tsv", "genes.tsv", "matrix.mtx")


def tenx_names(folder: Path) -> tuple[str, ...]:
    """The files of a 10x matrix folder: Cell Ranger v3 (gzipped) names, else v2 names."""
    names = {p.name for p in folder.iterdir()}
    return TENX_V3 if {"features.tsv.gz", "matrix.mtx.gz"} & names else TENX_V2


def cell_counts_format(config: StudyConfig, path: Path) -> str:
    """``h5ad``, ``10x_mtx`` (a folder) or ``10x_h5``, from ``counts_format`` or the path."""
    if config.counts_format != "auto":
        return config.counts_format
    if path.is_dir():
        return "10x_mtx"
    return "10x_h5" if path.name.lower().endswith(".h5") else "h5ad"


def read_cells(config: StudyConfig, study_dir: Path):
    """The study's cells as an AnnData with cell metadata in ``obs``, or None and problems.

    ``X`` is the raw count matrix as CSR (values unchecked: see :mod:`cell_checks`);
    ``var`` is indexed by gene id with a ``gene_symbol`` column where the input has symbols.
    Returns ``(adata, files read, problems)``.
    """
    path, problem = study_path(study_dir, config.counts, "counts")
    if problem:
        return None, [], [problem]
    if not path.exists():
        return None, [], [Problem(STUDY_FILE, "counts", f"{config.counts!r} not found",
                                  "check the path; it is relative to the study folder")]
    if path.is_dir():  # a 10x folder: its files may be symbolic links too
        problems = [problem for name in tenx_names(path) if (problem := study_path(
            study_dir, f"{config.counts}/{name}", "counts")[1])]
        if problems:
            return None, [], problems
    fmt = cell_counts_format(config, path)
    reader = {"h5ad": _read_h5ad, "10x_mtx": _read_10x_mtx, "10x_h5": _read_10x_h5}.get(fmt)
    if reader is None:
        return None, [], [Problem(STUDY_FILE, "counts_format", f"{fmt!r} is not a single-cell "
                                  "format", "use auto, h5ad, 10x_mtx or 10x_h5")]
    adata, files, problems = reader(config, path)
    if adata is None:
        return None, files, problems
    problem = damaged_matrix_problem(adata.X, config.counts)
    if problem:
        return None, files, [problem]
    adata.X = sp.csr_matrix(adata.X)
    adata.obs_names = adata.obs_names.astype(str)
    if config.cells:
        adata, sheet_files, problems = _join_cell_sheet(adata, config, study_dir)
        files += sheet_files
        if adata is None:
            return None, files, problems
    if config.samples:
        adata, sheet_files, problems = _join_sample_sheet(adata, config, study_dir)
        files += sheet_files
    return adata, files, problems


def _read_h5ad(config: StudyConfig, path: Path):
    import anndata as ad

    rel = config.counts
    try:
        adata = ad.read_h5ad(path)
    except Exception as exc:  # noqa: BLE001 - damaged files raise anything
        return None, [], [Problem(rel, "", f"not a readable h5ad file: {exc}", "write it with "
                                  "anndata's write_h5ad, cells as rows (obs), genes as columns")]
    if config.counts_layer:
        if config.counts_layer not in adata.layers:
            return None, [path], [Problem(STUDY_FILE, "counts_layer", f"layer "
                                          f"{config.counts_layer!r} not in {rel}; layers: "
                                          f"{', '.join(adata.layers) or 'none'}", "name a layer "
                                          "holding raw counts, or drop counts_layer to use X")]
        matrix = adata.layers[config.counts_layer]
    else:
        matrix = adata.X
    out = ad.AnnData(X=matrix if sp.issparse(matrix) else sp.csr_matrix(np.asarray(matrix)),
                     obs=adata.obs.copy(), var=adata.var.copy())
    symbols = [c for c in out.var.columns if str(c).lower() in SYMBOL_COLUMNS]
    out.var = out.var.rename(columns={symbols[0]: GENE_SYMBOL}) if symbols else out.var
    out.var_names = out.var_names.astype(str)
    return out, [path], []


def _read_10x_mtx(config: StudyConfig, path: Path):
    import scanpy as sc

    expected = tenx_names(path)
    missing = [name for name in expected if not (path / name).is_file()]
    if missing:
        return None, [], [Problem(config.counts, "", f"not a 10x matrix folder: missing "
                                  f"{', '.join(missing)}", "point counts: at Cell Ranger's "
                                  "filtered_feature_bc_matrix folder (matrix, features/genes, "
                                  "barcodes)")]
    files = [path / n for n in expected]
    try:
        adata = sc.read_10x_mtx(path, var_names="gene_ids", gex_only=True, cache=False)
    except Exception as exc:  # noqa: BLE001 - damaged files raise anything
        return None, files, [Problem(config.counts, "", f"cannot read the 10x matrix: {exc}",
                                     "pass Cell Ranger's output folder unchanged")]
    adata.var = adata.var.rename(columns={"gene_symbols": GENE_SYMBOL})
    return adata, files, []


def _read_10x_h5(config: StudyConfig, path: Path):
    import scanpy as sc

    try:
        adata = sc.read_10x_h5(path, gex_only=True)
    except Exception as exc:  # noqa: BLE001 - damaged files raise anything
        return None, [path], [Problem(config.counts, "", f"not a readable 10x .h5 file: {exc}",
                                      "pass Cell Ranger's filtered_feature_bc_matrix.h5")]
    # Cell Ranger's .h5 is indexed by symbol (not unique); ids are the stable key.
    adata.var[GENE_SYMBOL] = adata.var_names.astype(str)
    adata.var_names = adata.var["gene_ids"].astype(str)
    adata.var = adata.var.drop(columns=["gene_ids"])
    return adata, [path], []


def _sheet_path(config: StudyConfig, study_dir: Path, key: str):
    rel = getattr(config, key)
    path, problem = study_path(study_dir, rel, key)
    if problem:
        return None, [problem]
    if not path.is_file():
        return None, [Problem(STUDY_FILE, key, f"{rel!r} not found", "give a CSV/TSV file "
                              "inside the study folder")]
    return path, []


def _join_cell_sheet(adata, config: StudyConfig, study_dir: Path):
    """Cell metadata from the ``cells:`` sheet, matched to the matrix's cell ids.

    Cells of the matrix without a row are left out (e.g. barcodes demultiplexing could not
    assign); their number is kept in ``uns['cells_without_metadata']`` for a warning. Rows
    naming cells absent from the matrix are an error (the sheet belongs to another matrix).
    """
    rel = config.cells
    path, problems = _sheet_path(config, study_dir, "cells")
    if path is None:
        return None, [], problems
    sheet, problems = read_text_table(path, rel)
    if sheet is None:
        return None, [path], problems
    id_col = next((c for c in sheet.columns if c.lower() in CELL_ID_COLUMNS), sheet.columns[0])
    ids = sheet[id_col]
    if ids.isna().any() or ids.duplicated().any():
        dup = ids[ids.duplicated()].dropna().unique().tolist()[:3]
        return None, [path], [Problem(rel, f"column '{id_col}'", "cell ids must be unique and "
                                      f"non-empty (repeated: {', '.join(dup) or 'none'})",
                                      "list each cell once")]
    sheet = sheet.set_index(id_col)
    unknown = sheet.index.difference(adata.obs_names)
    if len(unknown):
        return None, [path], [Problem(rel, f"column '{id_col}'", f"{len(unknown)} of "
                                      f"{len(sheet)} cell id(s) are not in {config.counts}: "
                                      f"{', '.join(unknown[:3])}", "use the matrix's barcodes "
                                      "(e.g. AAACCCAAGGAGAGTA-1) as cell ids")]
    kept = adata.obs_names.isin(sheet.index)
    dropped = int((~kept).sum())
    adata = adata[kept].copy()
    adata.obs = sheet.loc[adata.obs_names]
    adata.obs.index.name = None
    adata.uns["cells_without_metadata"] = dropped
    return adata, [path], []


def _join_sample_sheet(adata, config: StudyConfig, study_dir: Path):
    """Per-sample columns of the ``samples:`` sheet, joined to cells by their ``sample``."""
    rel = config.samples
    path, problems = _sheet_path(config, study_dir, "samples")
    if path is None:
        return None, [], problems
    sheet, problems = read_sample_sheet(path, rel)
    if sheet is None:
        return None, [path], problems
    if SAMPLE_COLUMN not in adata.obs.columns:
        return None, [path], [Problem(config.cells or config.counts, f"column '{SAMPLE_COLUMN}'",
                                      "missing, so cells cannot be matched to the samples sheet",
                                      "add each cell's sample to the cell metadata")]
    cell_samples = adata.obs[SAMPLE_COLUMN].astype(str)
    unknown = sorted(set(cell_samples) - set(sheet.index))
    if unknown:
        return None, [path], [Problem(rel, f"column '{SAMPLE_COLUMN}'", f"no row for sample(s) "
                                      f"{', '.join(unknown[:5])} of the cell metadata",
                                      "add a row per sample")]
    clash = [c for c in sheet.columns if c in adata.obs.columns]
    if clash:
        return None, [path], [Problem(rel, "header", f"column(s) {', '.join(clash)} also in the "
                                      "cell metadata", "keep each column in one place")]
    joined = sheet.loc[cell_samples]
    joined.index = adata.obs_names
    adata.obs = pd.concat([adata.obs, joined], axis=1)
    return adata, [path], []
