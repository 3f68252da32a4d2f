"""Gene counts from transcript quantifications (salmon, kallisto, RSEM), as R tximport makes them.

Pure functions: :func:`read_tx2gene` reads a transcript-to-gene table and
:func:`import_quantifications` summarises per-sample quantifier outputs to gene-level counts,
abundance (TPM) and length with pytximport, reporting the transcripts the table does not
cover. Problems raise :class:`QuantInputError`, which carries :class:`Problem` s naming the
file and the field (``study.yaml`` and the key for settings). Rounding the estimated counts
is the caller's job (``round_counts``).

Agreement with R tximport 1.26.1 (``ignoreTxVersion=TRUE``) on the airway salmon runs is
checked in ``dge_platform_tests/counting/test_quant_import.py``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from dge_platform._core.problems import EXAMPLES, Problem, format_problems
from dge_platform.readers.counts import (
    SYMBOL_COLUMNS,
    TEXT_ERRORS,
    delimiter_for,
    first_line,
    open_text,
)
from dge_platform.study.paths import STUDY_FILE

Tool = Literal["salmon", "kallisto", "rsem"]
TOOLS = ("salmon", "kallisto", "rsem")
CountsFromAbundance = Literal["no", "lengthScaledTPM"]
# PyDESeq2 takes no per-gene offsets, so bias-corrected counts are the default (see
# import_quantifications).
DEFAULT_COUNTS_FROM_ABUNDANCE: CountsFromAbundance = "lengthScaledTPM"
TX2GENE_COLUMNS = ("transcript_id", "gene_id")
PYTXIMPORT_CFA = {"no": None, "lengthScaledTPM": "length_scaled_tpm"}

# Columns each quantifier writes (tximport's presets); checked before pytximport reads them so
# a wrong file gets a message naming it instead of an AssertionError.
SALMON_COLUMNS = ("Name", "EffectiveLength", "TPM", "NumReads")
KALLISTO_COLUMNS = ("target_id", "eff_length", "est_counts", "tpm")
KALLISTO_H5_DATASETS = ("aux/ids", "aux/eff_lengths", "est_counts")
RSEM_ISOFORM_COLUMNS = ("transcript_id", "gene_id", "effective_length", "expected_count", "TPM")
RSEM_GENE_COLUMNS = ("gene_id", "effective_length", "expected_count", "TPM")
RSEM_GENES, RSEM_ISOFORMS = ".genes.results", ".isoforms.results"

# Id families, to tell a user whose table and quantifications use different id types which.
ID_TYPES = (
    (re.compile(r"^ENS[A-Z]*T\d"), "Ensembl transcript ids (ENST...)"),
    (re.compile(r"^ENS[A-Z]*G\d"), "Ensembl gene ids (ENSG...)"),
    (re.compile(r"^[NX][MR]_\d"), "RefSeq transcript ids (NM_/XM_...)"),
    (re.compile(r"^FBtr\d"), "FlyBase transcript ids (FBtr...)"),
    (re.compile(r"^FBgn\d"), "FlyBase gene ids (FBgn...)"),
    (re.compile(r"^\d+$"), "numeric ids (e.g. Entrez)"),
)


class QuantInputError(ValueError):
    """Quantifier outputs or a tx2gene table that cannot be used; carries every problem."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__(format_problems("quantification inputs", self.problems))


@dataclass(frozen=True)
class Tx2Gene:
    """A transcript-to-gene table, one row per transcript.

    Attributes
    ----------
    table
        Columns ``transcript_id`` (version suffix stripped, unique) and ``gene_id``.
    gene_symbols
        Symbol by gene id (first one listed) when the file has a symbol column, else None.
    path
        The file read.
    rows
        Data rows in the file.
    duplicate_transcripts
        Transcripts listed on 2+ rows (after stripping versions); the first row is kept, as
        tximport does (``match`` takes the first hit).
    multi_gene_transcripts
        Of those, transcripts listed with 2+ different genes (only the first gene gets them).
    """

    table: pd.DataFrame
    gene_symbols: pd.Series | None
    path: Path
    rows: int
    duplicate_transcripts: int
    multi_gene_transcripts: int


@dataclass(frozen=True)
class GeneQuant:
    """Gene-level quantifications of several samples (genes x samples, genes sorted as R's
    tximport returns them).

    Attributes
    ----------
    counts
        Estimated counts (doubles; the caller rounds them), per ``counts_from_abundance``.
    abundance
        Gene TPM: the sum of the transcripts' TPM.
    length
        Abundance-weighted average effective transcript length (tximport's offset matrix;
        genes without abundance in a sample get their average length over samples).
    counts_from_abundance
        ``"no"`` or ``"lengthScaledTPM"``: how ``counts`` were made.
    tool
        ``salmon``, ``kallisto`` or ``rsem``.
    gene_symbols
        Symbols by gene id from the tx2gene table, else None.
    transcripts
        Transcript rows per quantification file (0 for RSEM gene-level input).
    unmapped_transcripts
        Transcript rows whose id (version stripped) is not in tx2gene; tximport drops them.
    unmapped_reads
        Per sample, the estimated reads of those transcripts.
    unmapped_fraction_of_reads
        Per sample, ``unmapped_reads`` over all estimated reads of the file.
    tx2gene_duplicate_transcripts
        See :attr:`Tx2Gene.duplicate_transcripts` (0 without a table).
    estimated_reads
        Per sample, the estimated reads of every transcript (or gene) in the file.
    files
        The quantification files read, by sample, for hashing and lineage.
    """

    counts: pd.DataFrame
    abundance: pd.DataFrame
    length: pd.DataFrame
    counts_from_abundance: CountsFromAbundance
    tool: Tool
    gene_symbols: pd.Series | None
    transcripts: int
    unmapped_transcripts: int
    unmapped_reads: pd.Series
    unmapped_fraction_of_reads: pd.Series
    tx2gene_duplicate_transcripts: int = 0
    estimated_reads: pd.Series | None = None
    files: dict[str, Path] = field(default_factory=dict)


def strip_version(ids: pd.Series) -> pd.Series:
    """Transcript ids without their version suffix: everything from the first dot, as
    tximport's ``ignoreTxVersion`` does (``sub("\\\\..*", "", id)``)."""
    return ids.str.replace(r"\..*", "", regex=True)


def read_tx2gene(path: Path | str) -> Tx2Gene:
    """Read a transcript-to-gene table.

    Parameters
    ----------
    path
        Tab-separated (``.csv``: comma-separated), optionally gzipped, with a header holding
        ``transcript_id`` and ``gene_id``; a ``symbol``/``gene_name``/``gene_symbol`` column
        is kept as gene symbols. Other columns are ignored.

    Returns
    -------
    One row per transcript: version suffixes stripped and, for transcripts listed more than
    once, the first row kept (tximport's behaviour; counted in the result).

    Raises
    ------
    QuantInputError
        When the file is missing, unreadable, not text, lacks a column or has no rows.
    """
    path = Path(path)
    rel = str(path)
    _require_file(path, rel, "tx2gene")
    sep = delimiter_for(path)
    try:
        with open_text(path) as fh:
            df = pd.read_csv(fh, sep=sep, dtype=str, keep_default_na=False)
    except TEXT_ERRORS as exc:
        raise QuantInputError([Problem(rel, "", f"cannot be read as text: {exc}",
                                       "supply a plain or gzipped tab-separated table")]) from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as exc:
        raise QuantInputError([Problem(rel, "", f"cannot be parsed: {str(exc).strip()}",
                                       "supply a tab-separated table with a header row")]) from exc
    missing = [c for c in TX2GENE_COLUMNS if c not in df.columns]
    if missing:
        other = "," if sep == "\t" else "\t"
        hint = ("; the header does not split on the delimiter implied by the name (.csv: comma, "
                "else tab)" if len(df.columns) == 1 and other in str(df.columns[0]) else "")
        raise QuantInputError([Problem(rel, "header", f"missing column(s) "
                                       f"{', '.join(missing)}; found "
                                       f"{', '.join(map(str, df.columns[:6]))}{hint}",
                                       "name the columns transcript_id and gene_id (as in "
                                       "tximport's tx2gene)")])
    rows = len(df)
    df["transcript_id"] = strip_version(df["transcript_id"].str.strip())
    df["gene_id"] = df["gene_id"].str.strip()
    df = df[(df["transcript_id"] != "") & (df["gene_id"] != "")]
    if df.empty:
        raise QuantInputError([Problem(rel, "", "has no rows with both a transcript_id and a "
                                       "gene_id", "supply the transcript-to-gene rows")])
    repeated = df["transcript_id"].duplicated(keep=False)
    genes_per_tx = df.loc[repeated].groupby("transcript_id")["gene_id"].nunique()
    symbol_cols = [c for c in df.columns if c.lower() in SYMBOL_COLUMNS]
    symbols = None
    if symbol_cols:
        named = df[df[symbol_cols[0]] != ""]
        symbols = (named.drop_duplicates("gene_id").set_index("gene_id")[symbol_cols[0]]
                   .astype("string"))
    first = df.drop_duplicates("transcript_id", keep="first")
    return Tx2Gene(first[list(TX2GENE_COLUMNS)].reset_index(drop=True), symbols, path,
                   rows=rows, duplicate_transcripts=int(genes_per_tx.size),
                   multi_gene_transcripts=int((genes_per_tx > 1).sum()))


def import_quantifications(
        paths: dict[str, Path | str], tx2gene: Tx2Gene | None = None, *, tool: Tool = "salmon",
        counts_from_abundance: CountsFromAbundance = DEFAULT_COUNTS_FROM_ABUNDANCE) -> GeneQuant:
    """Summarise per-sample quantifications to genes, as R's ``tximport`` does.

    Parameters
    ----------
    paths
        Sample name -> quantifier output: a salmon folder or its ``quant.sf`` (``.gz``
        allowed); a kallisto folder, ``abundance.h5`` or ``abundance.tsv`` (all samples the
        same kind); an RSEM ``*.isoforms.results`` or ``*.genes.results`` (all the same kind).
    tx2gene
        From :func:`read_tx2gene`; required except for RSEM (gene-level files need none, and
        isoform files carry their own ``gene_id`` column, used when no table is given).
    tool
        The quantifier. (default: ``"salmon"``)
    counts_from_abundance
        ``"lengthScaledTPM"`` (default): counts re-made from the gene TPM times the gene's
        average length over samples, scaled to each sample's total estimated counts.
        ``"no"``: the summed estimated counts, to be used with ``length`` as a per-gene
        offset. The platform's DESeq2 (PyDESeq2) takes no offsets, and summed counts
        without the offset carry the samples' differences in average transcript length
        (differential isoform usage) into gene-level tests; lengthScaledTPM counts correct
        for it without an offset (Soneson, Love & Robinson 2015, F1000Research 4:1521).
        For RSEM gene-level files R's tximport ignores the setting (it needs transcripts);
        here the same gene-level formula is applied to RSEM's gene TPM and length.

    Returns
    -------
    Gene counts, abundance and length with the unmapped-transcript report. Transcript ids
    are compared without version suffixes and without anything after a ``|`` (GENCODE
    FASTA headers).

    Raises
    ------
    QuantInputError
        For missing or unreadable files, files of another tool, missing columns, samples
        with different transcripts, and a tx2gene table that matches no transcript.
    """
    if counts_from_abundance not in PYTXIMPORT_CFA:
        raise QuantInputError([Problem(STUDY_FILE, "counts_from_abundance", f"unknown value "
                                       f"{counts_from_abundance!r}", "use no or lengthScaledTPM")])
    if tool not in TOOLS:
        raise QuantInputError([Problem(STUDY_FILE, "tool", f"unknown quantifier {tool!r}",
                                       f"use one of {', '.join(TOOLS)}")])
    if not paths:
        raise QuantInputError([Problem(STUDY_FILE, "quant", "no quantification files given",
                                       "name one output per sample")])
    files = {sample: _resolve(Path(p), tool) for sample, p in paths.items()}
    problems = [p for _, p in files.values() if p]
    if problems:
        raise QuantInputError(problems)
    files = {sample: f for sample, (f, _) in files.items()}
    kind = _file_kind(files, tool)
    problems = []
    for path in files.values():
        try:
            _check_columns(path, kind)
        except QuantInputError as exc:
            problems += exc.problems
    if problems:
        raise QuantInputError(problems)
    if kind == "rsem_genes":
        return _rsem_gene_level(files, counts_from_abundance)
    if tx2gene is None and kind != "rsem_isoforms":
        raise QuantInputError([Problem(STUDY_FILE, "tx2gene", f"{tool} quantifies transcripts and "
                                       "needs a transcript-to-gene table to sum them to genes",
                                       "set tx2gene: to a table with columns transcript_id "
                                       "and gene_id")])
    txdata = _transcript_data(files, kind)
    table = tx2gene.table if tx2gene is not None else _rsem_map(files)
    where = str(tx2gene.path) if tx2gene is not None else "gene_id column of the RSEM files"
    ids = pd.Series(np.asarray(txdata.coords["transcript_id"].values), dtype=object)
    mapped = ids.isin(set(table["transcript_id"])).to_numpy()
    if not mapped.any():
        raise QuantInputError([_no_match_problem(ids, table, where, files)])
    counts = txdata["counts"].to_numpy()
    unmapped_reads = counts[~mapped].sum(axis=0)
    totals = counts.sum(axis=0)
    genes = _summarise(txdata, table, counts_from_abundance)
    samples = list(files)
    frames = [_gene_frame(genes[v], samples) for v in ("counts", "abundance", "length")]
    symbols = tx2gene.gene_symbols if tx2gene is not None else None
    return GeneQuant(*frames, counts_from_abundance=counts_from_abundance, tool=tool,
                     gene_symbols=symbols, transcripts=len(ids),
                     unmapped_transcripts=int((~mapped).sum()),
                     unmapped_reads=pd.Series(unmapped_reads, index=samples),
                     unmapped_fraction_of_reads=pd.Series(
                         np.divide(unmapped_reads, totals, out=np.zeros_like(totals),
                                   where=totals > 0), index=samples),
                     tx2gene_duplicate_transcripts=(tx2gene.duplicate_transcripts
                                                    if tx2gene is not None else 0),
                     estimated_reads=pd.Series(totals, index=samples), files=files)


def _require_file(path: Path, rel: str, what: str) -> None:
    if not path.exists():
        raise QuantInputError([Problem(rel, "", f"{what} file not found", "check the path")])
    if not path.is_file():
        raise QuantInputError([Problem(rel, "", f"{what} is not a file", "name a file")])
    try:
        with path.open("rb") as fh:
            empty = fh.read(1) == b""
    except OSError as exc:
        raise QuantInputError([Problem(rel, "", f"cannot be read: {exc.strerror}",
                                       "check its permissions")]) from exc
    if empty:
        raise QuantInputError([Problem(rel, "", "file is empty", "supply the file with its "
                                       "contents")])


def _resolve(path: Path, tool: Tool) -> tuple[Path, Problem | None]:
    """The quantification file behind a sample's path (a folder -> its main output)."""
    rel = str(path)
    if path.is_dir():
        if tool == "salmon":
            names = ["quant.sf", "quant.sf.gz"]
        elif tool == "kallisto":
            names = ["abundance.h5", "abundance.tsv"]
        else:
            names = sorted(p.name for p in path.iterdir()
                           if RSEM_ISOFORMS in p.name or RSEM_GENES in p.name)
            if len(names) != 1:
                return path, Problem(rel, "", f"holds {len(names)} RSEM results files "
                                     f"({', '.join(names[:4]) or 'none'})", "name the "
                                     "*.genes.results or *.isoforms.results file itself")
        found = [path / n for n in names if (path / n).is_file()]
        if not found:
            return path, Problem(rel, "", f"no {' or '.join(names)} in this {tool} folder",
                                 f"point to the {tool} output folder of the sample or to "
                                 "the file itself")
        path = found[0]
    try:
        _require_file(path, rel, f"{tool} output")
    except QuantInputError as exc:
        return path, exc.problems[0]
    return path, None


def _file_kind(files: dict[str, Path], tool: Tool) -> str:
    """``salmon``, ``kallisto_tsv``, ``kallisto_h5``, ``rsem_genes`` or ``rsem_isoforms``; every
    sample must be the same kind (pytximport reads all files with one set of columns)."""
    kinds = {}
    for path in files.values():
        name = path.name.lower()
        if tool == "salmon":
            kind = "salmon"
        elif tool == "kallisto":
            kind = "kallisto_h5" if name.endswith(".h5") else "kallisto_tsv"
        else:
            kind = "rsem_genes" if RSEM_GENES in name else "rsem_isoforms"
        kinds.setdefault(kind, path)
    if len(kinds) > 1:
        shown = ", ".join(f"{k} ({p})" for k, p in kinds.items())
        raise QuantInputError([Problem(str(next(iter(kinds.values()))), "",
                                       f"samples mix {tool} output kinds: {shown}",
                                       "give every sample the same kind of file")])
    return next(iter(kinds))


def _check_columns(path: Path, kind: str) -> None:
    rel = str(path)
    if kind == "kallisto_h5":
        import h5py

        try:
            with h5py.File(path, "r") as h5:
                missing = [d for d in KALLISTO_H5_DATASETS if d not in h5]
        except OSError as exc:
            raise QuantInputError([Problem(rel, "", f"not a readable HDF5 file: {exc}",
                                           "pass kallisto's abundance.h5 unchanged")]) from exc
        if missing:
            raise QuantInputError([Problem(rel, "", f"missing dataset(s) {', '.join(missing)}",
                                           "pass kallisto's abundance.h5 unchanged")])
        return
    if kind == "kallisto_tsv" and path.suffix != ".tsv":
        # pytximport's kallisto reader takes .h5 or plain .tsv only.
        raise QuantInputError([Problem(rel, "", "kallisto text output must be an uncompressed "
                                       "abundance.tsv", "gunzip it, or use abundance.h5")])
    expected = {"salmon": SALMON_COLUMNS, "kallisto_tsv": KALLISTO_COLUMNS,
                "rsem_genes": RSEM_GENE_COLUMNS, "rsem_isoforms": RSEM_ISOFORM_COLUMNS}[kind]
    try:
        header = first_line(path).split("\t")
    except TEXT_ERRORS as exc:
        raise QuantInputError([Problem(rel, "", f"cannot be read as text: {exc}",
                                       "pass the quantifier's output file unchanged")]) from exc
    missing = [c for c in expected if c not in header]
    if missing:
        tool = kind.split("_")[0]
        raise QuantInputError([Problem(rel, "header", f"not {tool} output ({kind}): missing "
                                       f"column(s) {', '.join(missing)}; found "
                                       f"{', '.join(header[:6])}", "check the quantifier "
                                       "(tool) and pass its output file unchanged")])


class _FromPytximport(logging.Filter):
    """Drops pytximport's records: it logs progress and warns about dropped transcripts on
    the root logger; the numbers are reported in :class:`GeneQuant` instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pytximport" not in record.pathname


@contextmanager
def _quiet_pytximport() -> Iterator[None]:
    """Without pytximport's log records and its tqdm progress bars, which would land in
    ``dge validate``'s output (tqdm reads ``TQDM_DISABLE`` only at import)."""
    from unittest import mock

    root, quiet = logging.getLogger(), _FromPytximport()
    root.addFilter(quiet)
    try:
        with mock.patch("pytximport.core._tximport.tqdm", _no_progress), \
                mock.patch("pytximport.utils._summarize_rsem_gene_data.tqdm", _no_progress):
            yield
    finally:
        root.removeFilter(quiet)


def _no_progress(iterable, *_, **__):
    return iterable


def _readers() -> dict[str, Callable]:
    from pytximport.importers import read_kallisto, read_rsem, read_salmon

    return {"salmon": read_salmon, "kallisto_tsv": read_kallisto, "kallisto_h5": read_kallisto,
            "rsem_genes": read_rsem, "rsem_isoforms": read_rsem}


def _pytximport(files: dict[str, Path], kind: str, **kwargs):
    """Run pytximport, turning the assertion and import errors of bad files into problems."""
    from pytximport import tximport

    data_type = kind.split("_")[0]
    if kind == "kallisto_tsv":
        # R's kallisto preset reads the tpm column; pytximport would recompute TPM otherwise.
        kwargs["abundance_column"] = "tpm"
    seen: dict[str, list[str]] = {}

    def importer(path, **importer_kwargs):
        # Records each file's transcript ids: tximport stops when samples list different
        # transcripts (or a different order), pytximport would pair them up by position.
        data = _readers()[kind](path, **importer_kwargs)
        seen[str(path)] = list(data["transcript_id"])
        return data

    try:
        with _quiet_pytximport():
            result = tximport([str(p) for p in files.values()], data_type=data_type,
                              output_type="xarray", custom_importer=importer, **kwargs)
    except (AssertionError, ImportError, ValueError, KeyError, OSError) as exc:
        raise QuantInputError([Problem(", ".join(map(str, files.values()))[:200], "",
                                       f"pytximport could not read the {data_type} files: "
                                       f"{exc}", "check that every sample's file is the "
                                       "quantifier's unchanged output against the same "
                                       "transcriptome")]) from exc
    ids = list(seen.values())
    for path, other in zip(list(seen)[1:], ids[1:]):
        if other != ids[0]:
            raise QuantInputError([Problem(path, "", f"lists different transcripts (or another "
                                           f"order) than {next(iter(seen))}", "quantify every "
                                           "sample against the same index")])
    return result


def _transcript_data(files: dict[str, Path], kind: str):
    """Transcript-level counts, abundance and length of all samples (ids without versions)."""
    return _pytximport(files, kind, return_transcript_data=True,
                       ignore_transcript_version=True, ignore_after_bar=True)


def _rsem_map(files: dict[str, Path]) -> pd.DataFrame:
    """transcript -> gene from the first RSEM isoforms file (its ``gene_id`` column)."""
    path = next(iter(files.values()))
    with open_text(path) as fh:
        df = pd.read_csv(fh, sep="\t", usecols=["transcript_id", "gene_id"], dtype=str)
    df["transcript_id"] = strip_version(df["transcript_id"])
    return df.drop_duplicates("transcript_id")


def _summarise(txdata, table: pd.DataFrame, counts_from_abundance: CountsFromAbundance):
    """Gene-level dataset from transcript-level data, with pytximport's summariser.

    The map handed over has one row per transcript and only transcripts that were
    quantified: pytximport drops duplicated (transcript, gene) pairs but asserts that no
    transcript remains with several genes, so the first-row-wins choice of tximport
    (``match``) is made here. With that map the result equals R's to ~1e-14.
    """
    from pytximport.utils import convert_transcripts_to_genes

    ids = set(np.asarray(txdata.coords["transcript_id"].values))
    table = table[table["transcript_id"].isin(ids)].copy()
    with _quiet_pytximport():
        return convert_transcripts_to_genes(txdata, table,
                                            counts_from_abundance=PYTXIMPORT_CFA[
                                                counts_from_abundance])


def _gene_frame(values, samples: list[str]) -> pd.DataFrame:
    """A genes x samples frame, genes sorted as R's ``rowsum`` returns them."""
    frame = pd.DataFrame(np.asarray(values.values, dtype=float),
                         index=pd.Index(np.asarray(values["gene_id"].values).astype(str),
                                        name="gene_id"),
                         columns=samples)
    return frame.sort_index()


def _rsem_gene_level(files: dict[str, Path],
                     counts_from_abundance: CountsFromAbundance) -> GeneQuant:
    """RSEM ``*.genes.results``: already per gene; read as tximport (``txIn=FALSE``) does,
    gene ids untouched."""
    data = _pytximport(files, "rsem_genes", gene_level=True, ignore_transcript_version=False,
                       ignore_after_bar=False)
    totals = pd.Series(np.asarray(data["counts"].values, dtype=float).sum(axis=0),
                       index=list(files))
    if counts_from_abundance == "lengthScaledTPM":
        from pytximport.utils import convert_abundance_to_counts

        # R's makeCountsFromAbundance on gene matrices, as tximport applies it after summing
        # transcripts: TPM x average length over samples, scaled to each sample's total.
        data["counts"] = convert_abundance_to_counts(data["counts"], data["abundance"],
                                                     data["length"], "length_scaled_tpm")
    samples = list(files)
    frames = [_gene_frame(data[v], samples) for v in ("counts", "abundance", "length")]
    zeros = pd.Series(0.0, index=samples)
    return GeneQuant(*frames, counts_from_abundance=counts_from_abundance, tool="rsem",
                     gene_symbols=None, transcripts=0, unmapped_transcripts=0,
                     unmapped_reads=zeros, unmapped_fraction_of_reads=zeros.copy(),
                     estimated_reads=totals, files=files)


def id_type(ids: pd.Series) -> str | None:
    """The id family most of ``ids`` belong to (by the first 1,000), or None."""
    head = ids.astype(str).head(1000)
    best, share = None, 0.0
    for pattern, name in ID_TYPES:
        frac = float(head.str.match(pattern).mean()) if len(head) else 0.0
        if frac > max(share, 0.5):
            best, share = name, frac
    return best


def _no_match_problem(ids: pd.Series, table: pd.DataFrame, where: str,
                      files: dict[str, Path]) -> Problem:
    """Why no quantified transcript is in tx2gene: different id types, swapped columns,
    or (same family) different versions/annotation releases."""
    quant_type, map_type = id_type(ids), id_type(table["transcript_id"])
    examples = (f"quantified e.g. {', '.join(ids.head(EXAMPLES))}; tx2gene e.g. "
                f"{', '.join(table['transcript_id'].head(EXAMPLES))}")
    first = str(next(iter(files.values())))
    if ids.isin(set(table["gene_id"])).any():
        return Problem(where, "columns transcript_id/gene_id", "no quantified transcript is "
                       f"in column transcript_id, but they are in column gene_id ({examples})",
                       "the two columns look swapped: name the transcript column "
                       "transcript_id and the gene column gene_id")
    if quant_type and map_type and quant_type != map_type:
        return Problem(where, "column transcript_id", f"transcript id type mismatch: {first} "
                       f"has {quant_type}, the table has {map_type} ({examples})",
                       "use a tx2gene table made from the same annotation as the "
                       "quantifier's index (e.g. from its GTF)")
    return Problem(where, "column transcript_id", f"matches none of the {len(ids):,} "
                   f"quantified transcripts ({examples}); versions are ignored on both sides",
                   "check the id type and annotation release: the table must come from the "
                   "annotation used to build the quantifier's index")
