"""The catalog's tables: their names, columns and meaning (the SQL contract).

Every table is stored as Parquet partitioned by ``study_id``; the catalog exposes each as a
DuckDB view of the same name. Columns listed here are the guaranteed ones; ``samples``
also carries each study's own sample-sheet columns.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableSpec:
    """A catalog table: name, description and guaranteed columns (name, DuckDB type)."""

    name: str
    description: str
    columns: tuple[tuple[str, str], ...]


TABLES: dict[str, TableSpec] = {spec.name: spec for spec in [
    TableSpec("studies", "One row per study: its study.yaml settings and input fingerprint.", (
        ("study_id", "VARCHAR"), ("title", "VARCHAR"), ("kind", "VARCHAR"),
        ("organism", "VARCHAR"), ("design", "VARCHAR"), ("contrasts", "VARCHAR"),
        ("alpha", "DOUBLE"), ("lfc_threshold", "DOUBLE"), ("batch", "VARCHAR"),
        ("n_samples", "BIGINT"), ("n_genes", "BIGINT"), ("counts_file", "VARCHAR"),
        ("input_hash", "VARCHAR"), ("materialized_at", "TIMESTAMP WITH TIME ZONE"))),
    TableSpec("samples", "One row per sample as given in the sample sheet (text values), "
              "plus the study's own columns.", (
                  ("study_id", "VARCHAR"), ("sample", "VARCHAR"),
                  ("library_size", "BIGINT"), ("genes_detected", "BIGINT"))),
    TableSpec("genes", "Genes of each study's count matrix, with symbols where the input "
              "carries them.", (
                  ("study_id", "VARCHAR"), ("gene_id", "VARCHAR"), ("gene_symbol", "VARCHAR"))),
    TableSpec("raw_counts", "Raw counts in long form, one row per gene and sample, as read "
              "from the study's input (before technical replicates are summed).", (
                  ("study_id", "VARCHAR"), ("gene_id", "VARCHAR"), ("sample", "VARCHAR"),
                  ("count", "BIGINT"))),
]}
