"""Checks on a single-cell study's cells, and the biological samples they come from.

Cells of one donor are not independent replicates: testing them as such gives p-values that
shrink with the number of cells, not with the evidence. The platform therefore tests
pseudobulks (counts summed per donor x condition x cell type), and a single-cell study must
name its donor column and have at least two donors in every compared group.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from dge_platform._core.problems import Problem
from dge_platform.readers.count_checks import EXAMPLES, MAX_COUNT
from dge_platform.study.config import StudyConfig
from dge_platform.study.kinds import PER_CELL_WARNING
from dge_platform.study.paths import STUDY_FILE

SAMPLE = "sample"
MIN_DONORS = 2


def cell_count_problems(adata, file: str, *, round_counts: bool = False) -> list[Problem]:
    """Problems with a cells x genes count matrix, checked on its stored values only."""
    problems = []
    if adata.n_obs == 0 or adata.n_vars == 0:
        return [Problem(file, "", f"has {adata.n_obs} cells and {adata.n_vars} genes",
                        "supply the filtered cell matrix")]
    for axis, names in (("cell ids", adata.obs_names), ("gene ids", adata.var_names)):
        dup = names[names.duplicated()].unique().tolist()
        if dup:
            problems.append(Problem(file, axis, f"{len(dup)} duplicate(s): "
                                    f"{', '.join(map(str, dup[:EXAMPLES]))}", "make them unique"))
    matrix = sp.csr_matrix(adata.X)
    values = matrix.data
    if matrix.dtype == bool:
        problems.append(Problem(file, "values", "a boolean matrix, not counts",
                                "supply raw UMI counts"))
    elif not np.isfinite(values).all():
        problems.append(Problem(file, "values", "missing or infinite counts",
                                "supply raw UMI counts"))
    elif (values < 0).any():
        problems.append(Problem(file, "values", "negative counts", "supply raw counts; "
                                "normalized, scaled or log values cannot be summed into "
                                "pseudobulks"))
    elif (values > MAX_COUNT).any():
        problems.append(Problem(file, "values", f"counts above {MAX_COUNT:,}",
                                "supply raw UMI counts (these values cannot be)"))
    elif not round_counts and (np.abs(values - np.rint(values)) > 1e-6).any():
        problems.append(Problem(file, "values", "non-integer counts (normalized or log "
                                "values?)", "supply raw integer counts, e.g. in X or a layer "
                                "named by counts_layer"))
    return problems


def cell_metadata_problems(obs: pd.DataFrame, config: StudyConfig, file: str,
                           variables: list[str]) -> list[Problem]:
    """Required cell metadata columns present and filled: donor, design variables, batch,
    capture and cell type."""
    wanted = {v: "design" for v in variables}
    wanted.update({config.donor: "donor", config.batch: "batch", config.capture: "capture",
                   config.cell_type: "cell_type"})
    problems = []
    for column, key in wanted.items():
        if not column:
            continue
        field = f"column '{column}'"
        if column not in obs.columns:
            problems.append(Problem(file, field, f"named by {key} in study.yaml but missing; "
                                    f"cell metadata columns: {', '.join(map(str, obs.columns))}",
                                    "add the column or fix study.yaml"))
            continue
        empty = obs.index[obs[column].isna()]
        if len(empty):
            problems.append(Problem(file, field, f"empty for {len(empty)} cell(s), e.g. "
                                    f"{', '.join(map(str, empty[:EXAMPLES]))}",
                                    "fill it for every cell or drop those cells"))
    if not config.cell_type and not config.markers:
        problems.append(Problem(STUDY_FILE, "cell_type", "no cell type column and no markers",
                                "name the cell metadata column with cell type labels, or give "
                                "markers: {cell type: [gene symbols]} to annotate clusters"))
    return problems


def marker_problems(adata, config: StudyConfig) -> list[Problem]:
    """Cell types of ``markers:`` none of whose genes are in the matrix (used only when no
    cell type column is given: such a type could never be assigned)."""
    from dge_platform.singlecell.embedding import marker_ids

    if config.cell_type or not config.markers:
        return []
    found, missing = marker_ids(adata, config.markers)
    return [Problem(STUDY_FILE, f"markers.{cell_type}", f"none of {', '.join(missing[cell_type])}"
                    f" is a gene of {config.counts} (matched on gene_symbol or gene id, any "
                    "case)", "list marker genes present in the matrix, or drop this cell type")
            for cell_type, ids in found.items() if not ids]


def cell_samples(obs: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Each cell's biological sample: its values of ``keys`` (donor, design variables, batch)
    joined by ``_``."""
    return obs[keys].astype(str).agg("_".join, axis=1).rename(SAMPLE)


def sample_sheet(obs: pd.DataFrame, samples: pd.Series, keys: list[str]) -> pd.DataFrame:
    """One row per biological sample with its key columns and the other cell metadata
    columns that are constant within every sample (text values)."""
    constant = [c for c in obs.columns if c not in keys and c != SAMPLE
                and (obs.groupby(samples.to_numpy(), observed=True)[c].nunique(dropna=False)
                     <= 1).all()]
    sheet = obs[keys + constant].astype(str).groupby(samples.to_numpy(), sort=True).first()
    sheet.index.name = SAMPLE
    return sheet.astype(object)


def sum_by_sample(adata, samples: pd.Series) -> pd.DataFrame:
    """Genes x samples raw counts summed over each sample's cells (exact int64 sums)."""
    codes, names = pd.factorize(samples, sort=True)
    indicator = sp.csr_matrix((np.ones(len(codes), dtype=np.int64),
                               (codes, np.arange(len(codes)))), shape=(len(names), len(codes)))
    sums = indicator @ sp.csr_matrix(adata.X, dtype=np.int64)
    frame = pd.DataFrame(sums.toarray().T, index=adata.var_names.astype(str),
                         columns=names.astype(str))
    frame.index.name = "gene_id"
    return frame


def donor_problems(sheet: pd.DataFrame, config: StudyConfig, file: str) -> list[Problem]:
    """Every compared group needs at least ``MIN_DONORS`` donors (module doc: why)."""
    problems = []
    for i, c in enumerate(config.contrasts):
        if c.factor not in sheet.columns:
            continue
        for part in ("level", "reference"):
            value = getattr(c, part)
            donors = sheet.loc[sheet[c.factor] == value, config.donor].nunique()
            if donors < MIN_DONORS:
                problems.append(Problem(
                    STUDY_FILE, f"contrasts[{i}].{part}", f"group '{c.factor}={value}' of "
                    f"contrast '{c.name}' has cells from {donors} donor(s) in {file}; at least "
                    f"{MIN_DONORS} are needed: {PER_CELL_WARNING}", "add donors, or drop this "
                    "contrast"))
    return problems
