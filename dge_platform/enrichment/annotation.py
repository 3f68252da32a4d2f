"""Gene identifier mapping (Ensembl, Entrez, symbol) from the shipped annotation table."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pandas as pd

from dge_platform.resources import resource_path

HUMAN_TABLE = resource_path("annotation", "human_genes_orgHsEgDb_3.16.tsv.gz")
ENSEMBL_PATTERN = re.compile(r"^ENS[A-Z]*G\d{11}(\.\d+)?$")


def strip_version(gene_id: str) -> str:
    """``ENSG00000105835.13`` -> ``ENSG00000105835``; other ids unchanged."""
    return gene_id.split(".")[0] if ENSEMBL_PATTERN.match(gene_id) else gene_id


def id_type(gene_ids: pd.Series) -> str:
    """'ensembl' when most ids look like Ensembl gene ids, else 'symbol'."""
    sample = gene_ids.astype(str).head(2000)
    return "ensembl" if sample.str.match(ENSEMBL_PATTERN).mean() > 0.5 else "symbol"


@lru_cache(maxsize=2)
def _ensembl_to_symbol(path: Path) -> pd.Series:
    table = pd.read_csv(path, sep="\t", dtype=str, usecols=["ensembl_id", "symbol"])
    table = table.dropna().drop_duplicates("ensembl_id")
    return table.set_index("ensembl_id")["symbol"]


def map_symbols(gene_ids: pd.Series, known: pd.Series | None = None,
                table: Path = HUMAN_TABLE) -> pd.Series:
    """Gene symbol per gene id: symbols the input carried first, then the annotation table
    for Ensembl ids (version suffix ignored); missing where neither knows the gene."""
    ids = gene_ids.astype(str)
    symbols = pd.Series(pd.NA, index=ids.index, dtype="string")
    if known is not None:
        symbols = symbols.fillna(pd.Series(known.to_numpy(), index=ids.index, dtype="string"))
    if id_type(ids) == "ensembl" and table.exists():
        mapped = ids.map(strip_version).map(_ensembl_to_symbol(table))
        symbols = symbols.fillna(mapped.astype("string"))
    return symbols
