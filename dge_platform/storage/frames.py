"""Catalog tables in and out of frames: long <-> wide matrices, the stored sample sheet."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dge_platform.storage.tables import STAT_COLUMNS


def to_long(matrix: pd.DataFrame, value: str) -> pd.DataFrame:
    """Genes x samples to long form (gene_id, sample, <value>), gene-major."""
    n_genes, n_samples = matrix.shape
    genes = pd.Categorical(matrix.index.astype(str))
    samples = pd.Categorical(matrix.columns.astype(str), categories=matrix.columns.astype(str))
    return pd.DataFrame({
        "gene_id": genes.take(np.repeat(np.arange(n_genes), n_samples)),
        "sample": samples.take(np.tile(np.arange(n_samples), n_genes)),
        value: matrix.to_numpy().ravel(),
    })


def to_wide(long: pd.DataFrame, value: str) -> pd.DataFrame:
    """Long (gene_id, sample, <value>) back to genes x samples, in first-seen order."""
    genes = pd.unique(long["gene_id"].astype(str))
    samples = pd.unique(long["sample"].astype(str))
    wide = long.assign(gene_id=long["gene_id"].astype(str), sample=long["sample"].astype(str)) \
        .pivot(index="gene_id", columns="sample", values=value).loc[genes, samples]
    wide.columns.name = None
    return wide


def long_counts_problems(long: pd.DataFrame, samples: pd.Series, genes: pd.Series) -> list[str]:
    """Inconsistencies between stored long counts and the samples and genes tables."""
    problems = []
    if set(long["sample"].astype(str)) != set(samples.astype(str)):
        problems.append("samples in raw_counts differ from the samples table")
    if set(long["gene_id"].astype(str)) != set(genes.astype(str)):
        problems.append("genes in raw_counts differ from the genes table")
    if len(long) != len(samples) * len(genes):
        problems.append(f"{len(long)} rows, expected {len(samples)} samples x {len(genes)} genes")
    if long[["gene_id", "sample"]].duplicated().any():
        problems.append("some gene x sample pairs are stored more than once")
    if (long["count"] < 0).any():
        problems.append("negative counts")
    return problems


COMPUTED_SAMPLE_COLUMNS = ("library_size", "genes_detected", *STAT_COLUMNS)


def sheet_from_samples_table(samples: pd.DataFrame) -> pd.DataFrame:
    """The text sample sheet back from the stored ``samples`` table, indexed by sample."""
    sheet = samples.drop(columns=[c for c in COMPUTED_SAMPLE_COLUMNS if c in samples.columns])
    sheet = sheet.set_index("sample")
    sheet.index = sheet.index.astype(str)
    return sheet.astype(object).where(sheet.notna(), None)
