"""The ingest tables of a validated study: studies, samples, genes and raw_counts."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from dge_platform.gene_annotation import map_symbols
from dge_platform.library_counts import STAT_COLUMNS, matrix_stats
from dge_platform.validation import ValidatedStudy


def study_row(study: ValidatedStudy, materialized_at: datetime | None = None) -> pd.DataFrame:
    """One row describing the study (settings from study.yaml and its input fingerprint)."""
    cfg = study.config
    return pd.DataFrame([{
        "title": cfg.title or cfg.id,
        "kind": cfg.kind,
        "organism": cfg.organism,
        "design": cfg.design,
        "contrasts": json.dumps([c.model_dump() for c in cfg.contrasts]),
        "alpha": cfg.alpha,
        "lfc_threshold": cfg.lfc_threshold,
        "batch": cfg.batch,
        "n_samples": study.counts.shape[1],
        "n_genes": study.counts.shape[0],
        "counts_file": cfg.counts or study.plan.describe(),
        "input_hash": study.input_hash,
        "config": cfg.model_dump_json(),
        "materialized_at": pd.Timestamp(materialized_at or datetime.now(timezone.utc)),
    }])


def samples_table(study: ValidatedStudy) -> pd.DataFrame:
    """The sample sheet, with library size and detected genes from the counts and the
    counting statistics (:data:`STAT_COLUMNS`; count_source 'matrix' for counts: input)."""
    table = study.samples.reset_index()
    table["library_size"] = study.counts.sum(axis=0).to_numpy()
    table["genes_detected"] = (study.counts > 0).sum(axis=0).to_numpy()
    stats = study.count_stats if study.count_stats is not None \
        else matrix_stats(list(study.samples.index))
    table = table.drop(columns=[c for c in STAT_COLUMNS if c in table.columns])
    return table.join(stats, on="sample")


def genes_table(study: ValidatedStudy) -> pd.DataFrame:
    """Gene ids in matrix order, with symbols: those the input carries, else mapped from
    Ensembl ids with the shipped annotation table."""
    ids = pd.Series(study.counts.index.astype(str))
    known = study.gene_symbols.reindex(study.counts.index) if study.gene_symbols is not None \
        else None
    return pd.DataFrame({"gene_id": ids.to_numpy(),
                         "gene_symbol": map_symbols(ids, known).to_numpy()})


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
