"""Gene models from a GTF: exon intervals per gene, merged per gene for overlap counting.

Only ``exon`` lines are used (as GenomicFeatures ``exonsBy(txdb, "gene")`` and featureCounts
``-t exon -g gene_id``). Coordinates are kept as 0-based half-open ``[start, end)`` so they
compare directly with BAM positions; GTF lines are 1-based inclusive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dge_platform.readers.counts import TEXT_ERRORS, not_text_problem, open_text

GTF_COLUMNS = 9
STRANDS = ("+", "-", ".")
# key "value"; pairs, tolerant of a missing trailing ';' and unquoted values.
ATTRIBUTE = re.compile(r'\s*([^\s;]+)\s+(?:"([^"]*)"|([^\s;]+))\s*;?')


class GtfError(ValueError):
    """A GTF that cannot be read into gene models; the message names the file and line."""


@dataclass(frozen=True)
class GeneModels:
    """Merged exon intervals of every gene, sorted by chromosome then start.

    Attributes
    ----------
    genes
        One row per gene in first-seen order: ``gene_id`` (index), ``gene_name``, ``chrom``,
        ``strand``. The row number is the gene's integer code in ``exons``.
    exons
        One row per merged exon interval: ``chrom``, ``start`` (0-based), ``end``
        (exclusive), ``strand``, ``gene`` (row number in ``genes``).
    path
        The GTF read, for messages and lineage.
    """

    genes: pd.DataFrame
    exons: pd.DataFrame
    path: Path

    @property
    def chromosomes(self) -> list[str]:
        """Chromosome names with at least one exon, in ``exons`` (sorted) order."""
        return list(pd.unique(self.exons["chrom"]))


def parse_attributes(text: str) -> dict[str, str]:
    """Parse a GTF attribute column (``gene_id "X"; gene_name "Y";``) into a dict."""
    return {m.group(1): m.group(2) if m.group(2) is not None else m.group(3)
            for m in ATTRIBUTE.finditer(text)}


def _exon_line(fields: list[str], where: str) -> tuple[str, int, int, str, str, str]:
    """(chrom, start0, end, strand, gene_id, gene_name) of one exon line, or GtfError."""
    if len(fields) != GTF_COLUMNS:
        raise GtfError(f"{where}: expected {GTF_COLUMNS} tab-separated columns, "
                       f"found {len(fields)}")
    chrom, start, end, strand = fields[0], fields[3], fields[4], fields[6]
    try:
        start_1, end_1 = int(start), int(end)
    except ValueError:
        raise GtfError(f"{where}: start/end must be integers, got {start!r}/{end!r}") from None
    if start_1 < 1 or end_1 < start_1:
        raise GtfError(f"{where}: need 1 <= start <= end, got {start_1}..{end_1}")
    if strand not in STRANDS:
        raise GtfError(f"{where}: strand must be one of {'/'.join(STRANDS)}, got {strand!r}")
    attributes = parse_attributes(fields[8])
    gene_id = attributes.get("gene_id")
    if not gene_id:
        raise GtfError(f"{where}: exon line has no gene_id attribute")
    return chrom, start_1 - 1, end_1, strand, gene_id, attributes.get("gene_name", "")


def merge_intervals(exons: pd.DataFrame) -> pd.DataFrame:
    """Union of overlapping or touching intervals within each (gene, chrom).

    Counting asks only "does a read overlap this gene", so merged intervals give the same
    answer with fewer intervals to search.
    """
    e = exons.sort_values(["gene", "chrom", "start"], kind="stable").reset_index(drop=True)
    gene, chrom = e["gene"].to_numpy(), e["chrom"].to_numpy()
    start, end = e["start"].to_numpy(), e["end"].to_numpy()
    same_group = np.r_[False, (gene[1:] == gene[:-1]) & (chrom[1:] == chrom[:-1])]
    # Running max of ends within a group: a new interval starts where the previous ones end.
    group = np.cumsum(~same_group)
    run_end = pd.Series(end).groupby(group).cummax().to_numpy()
    new = ~same_group | np.r_[True, start[1:] > run_end[:-1]]
    block = np.cumsum(new)
    merged = e.groupby(block, sort=False).agg(
        chrom=("chrom", "first"), start=("start", "min"), end=("end", "max"),
        strand=("strand", "first"), gene=("gene", "first"))
    return merged.sort_values(["chrom", "start", "end"], kind="stable").reset_index(drop=True)


def read_gtf(path: str | Path) -> GeneModels:
    """Read the exons of a GTF(.gz) into merged per-gene intervals.

    Raises
    ------
    GtfError
        On a malformed exon line (wrong column count, bad coordinates or strand, no
        ``gene_id``) or a GTF without exon lines; the message gives the file and 1-based
        line number. Also for a file that is not plain or gzipped UTF-8 text (binary,
        another compression, truncated gzip).
    FileNotFoundError
        When the file does not exist.
    """
    path = Path(path)
    rows: list[tuple[str, int, int, str, str, str]] = []
    try:
        with open_text(path) as fh:
            for number, line in enumerate(fh, start=1):
                if line.startswith("#") or not line.strip():
                    continue
                fields = line.rstrip("\n").rstrip("\r").split("\t")
                # Cheap feature-type test first: most lines of a real GTF are not exons.
                if len(fields) > 2 and fields[2] != "exon":
                    continue
                rows.append(_exon_line(fields, f"{path}: line {number}"))
    except TEXT_ERRORS as exc:
        raise GtfError(f"{path}: {not_text_problem(str(path), exc).message}") from exc
    if not rows:
        raise GtfError(f"{path}: no exon lines (a GTF with feature type 'exon' is needed)")
    raw = pd.DataFrame(rows, columns=["chrom", "start", "end", "strand", "gene_id", "gene_name"])
    # A gene on two chromosomes or strands (rare, e.g. PAR copies) keeps all its exons, as
    # exonsBy and featureCounts do; the gene table shows the first.
    genes = raw.groupby("gene_id", sort=False).agg(
        gene_name=("gene_name", "first"), chrom=("chrom", "first"), strand=("strand", "first"))
    raw["gene"] = genes.index.get_indexer(raw["gene_id"])
    exons = merge_intervals(raw[["chrom", "start", "end", "strand", "gene"]])
    return GeneModels(genes=genes, exons=exons, path=path)
