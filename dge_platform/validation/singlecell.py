"""Single-cell studies: the cells and their metadata, summed into biological samples (donor
x design variables x batch) whose design is then checked."""

from __future__ import annotations

import pandas as pd

from dge_platform._core.problems import Problem
from dge_platform.readers.cells import read_cells
from dge_platform.singlecell.checks import (
    SAMPLE,
    cell_count_problems,
    cell_metadata_problems,
    cell_samples,
    donor_problems,
    marker_problems,
    sample_sheet,
)
from dge_platform.singlecell.pseudobulk import sum_counts
from dge_platform.study.config import StudyConfig
from dge_platform.study.design import design_variables
from dge_platform.validation.checker import Checker
from dge_platform.validation.design import check_design


def summary(config: StudyConfig, samples: pd.DataFrame, cells) -> list[str]:
    """What ``dge validate`` says of a valid single-cell study beyond its size: cells, donors,
    cell types and what a pseudobulk sums."""
    obs = cells.obs
    types = (f"{obs[config.cell_type].nunique()} cell types in '{config.cell_type}'"
             if config.cell_type else f"cell types from markers ({', '.join(config.markers)})")
    return [f"{cells.n_obs:,} cells from {obs[config.donor].nunique()} donors; {types}; "
            f"pseudobulks per cell type x {' x '.join(config.pseudobulk_keys)}"]


def check(c: Checker) -> None:
    """Read and check a single-cell study: cells, gene sets, the design of its samples."""
    check_cells(c)
    c.read_gene_sets()
    c.read_network()
    if c.sheet is not None:
        check_design(c, c.sheet, c.v.get("design"), c.v.get("contrasts") or [],
                     c.v.get("batch"), min_replicates=1, donor=c.v.get("donor"))


def check_cells(c: Checker) -> None:
    """Read the cells, check counts and metadata, derive the biological samples (donor x
    design variables x batch) and their summed counts."""
    if not c.v.get("counts"):
        return
    config = c.config
    cells, _, problems = read_cells(config, c.dir)
    c.problems += problems
    if cells is None:
        return
    c.problems += cell_count_problems(cells, c.counts_file, round_counts=c.v["round_counts"])
    dropped = cells.uns.pop("cells_without_metadata", 0)
    if dropped:
        c.warnings.append(Problem(str(config.cells), "", f"{dropped} cell(s) of "
                                  f"{c.counts_file} have no row and are left out",
                                  "add rows for them if they should be analysed"))
    if not config.donor or c.problems:
        return
    c.sheet_file = config.cells or c.counts_file
    variables = design_variables(config.design)[0] if config.design else []
    problems = cell_metadata_problems(cells.obs, config, c.sheet_file, variables)
    problems += marker_problems(cells, config)
    c.problems += problems
    if problems:
        return
    if c.v["round_counts"]:
        cells.X.data = cells.X.data.round()
    keys = config.pseudobulk_keys
    samples = cell_samples(cells.obs, keys)
    if SAMPLE in cells.obs.columns and SAMPLE not in keys and SAMPLE != config.capture:
        cells.obs = cells.obs.rename(columns={SAMPLE: f"input_{SAMPLE}"})
    cells.obs[SAMPLE] = samples
    c.sheet = sample_sheet(cells.obs, samples, keys)
    c.counts = sum_counts(cells, samples)
    c.cells = cells
    if "gene_symbol" in cells.var.columns:
        c.gene_symbols = cells.var["gene_symbol"].astype("string")
    c.problems += donor_problems(c.sheet, config, c.sheet_file)
