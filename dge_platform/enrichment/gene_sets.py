"""Gene set collections (GMT): the ones shipped in ``dge_platform/resources/genesets`` and a
study's own."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dge_platform.resources import resource_path

GENESETS_DIR = resource_path("genesets")
MIN_SET_SIZE = 15
MAX_SET_SIZE = 500


@dataclass(frozen=True)
class Collection:
    """A named gene set collection and the identifier type of its members."""

    name: str
    path: Path
    id_type: str  # "symbol" or "ensembl"


# Shipped collections per organism (provenance and licences: dge_platform/resources/README.md).
SHIPPED = {
    "homo sapiens": [
        Collection("GO_BP", GENESETS_DIR / "go_bp_human_symbols.gmt.gz", "symbol"),
        Collection("GO_BP_ensembl", GENESETS_DIR / "go_bp_human_ensembl.gmt.gz", "ensembl"),
        Collection("Hallmark", GENESETS_DIR / "h.all.v7.0.symbols.gmt.gz", "symbol"),
        Collection("Reactome", GENESETS_DIR / "ReactomePathways_2021-09.gmt.gz", "symbol"),
    ],
}
ORGANISM_ALIASES = {"human": "homo sapiens", "hsa": "homo sapiens", "h. sapiens": "homo sapiens"}


def shipped_collections(organism: str) -> list[Collection]:
    """Collections shipped for an organism (matched case-insensitively, common aliases)."""
    key = organism.strip().lower()
    return SHIPPED.get(ORGANISM_ALIASES.get(key, key), [])


class GmtError(ValueError):
    """A GMT file that cannot be used; the message names the line."""


def read_gmt(path: Path) -> dict[str, list[str]]:
    """Read a GMT file (optionally gzipped): name, description, then member ids per line.

    Raises
    ------
    GmtError
        On a line with fewer than three fields, or when no set is found.
    """
    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    sets: dict[str, list[str]] = {}
    with opener(path, "rt", encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            fields = line.rstrip("\r\n").split("\t")
            if not line.strip():
                continue
            if len(fields) < 3:
                raise GmtError(f"line {number} has {len(fields)} tab-separated field(s); GMT "
                               "lines are: name, description, gene ids...")
            members = [g for g in fields[2:] if g]
            sets[fields[0]] = sorted(set(sets.get(fields[0], []) + members))
    if not sets:
        raise GmtError("contains no gene sets")
    return sets


def filter_sets(sets: dict[str, list[str]], universe: set[str], *,
                min_size: int = MIN_SET_SIZE, max_size: int = MAX_SET_SIZE) -> dict[str, list[str]]:
    """Restrict sets to the universe and keep those with ``min_size``-``max_size`` members."""
    kept = {}
    for name, members in sets.items():
        present = [g for g in members if g in universe]
        if min_size <= len(present) <= max_size:
            kept[name] = present
    return kept


def load_collections(organism: str, study_dir: Path, user_sets: list[str],
                     gene_id_type: str) -> list[tuple[str, str, dict[str, list[str]]]]:
    """Collections to test for a study: (name, id type, sets).

    Shipped collections for the organism, except GO by symbol when the study is keyed by
    Ensembl ids (GO by Ensembl id avoids the symbol mapping), plus the study's own GMT
    files (named by file stem; id type detected from their members).
    """
    from dge_platform.enrichment.annotation import id_type

    chosen = []
    for collection in shipped_collections(organism):
        if collection.id_type == "ensembl" and gene_id_type != "ensembl":
            continue
        if collection.name == "GO_BP" and gene_id_type == "ensembl":
            continue
        chosen.append((collection.name, collection.id_type, read_gmt(collection.path)))
    for rel in user_sets:
        sets = read_gmt(study_dir / rel)
        members = pd.Series([g for genes in sets.values() for g in genes])
        chosen.append((Path(rel).name.split(".")[0], id_type(members), sets))
    return chosen
