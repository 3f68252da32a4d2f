"""Read a study's count input into one genes x samples table.

Supported inputs: a genes x samples matrix (TSV/CSV, optionally gzipped, first column gene
id), featureCounts output, STAR ``ReadsPerGene.out.tab`` files (one per sample),
nf-core/rnaseq merged gene matrices (``*.merged.gene_counts*.tsv``) and an h5ad (samples x
genes). Readers only parse; value checks live in :mod:`count_checks`.
"""

from __future__ import annotations

import glob
import gzip
import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dge_platform._core.problems import Problem
from dge_platform.study.config import StudyConfig
from dge_platform.study.paths import STUDY_FILE, study_glob, study_path

SYMBOL_COLUMNS = ("gene_name", "gene_symbol", "symbol")
FEATURECOUNTS_ANNOTATION = ["Chr", "Start", "End", "Strand", "Length"]
STAR_SUFFIX = "ReadsPerGene.out.tab"
# STAR ReadsPerGene columns: 1 gene id, 2 unstranded, 3 read 1 sense (htseq -s yes), 4 reverse.
STAR_COLUMN = {"unstranded": 1, "forward": 2, "reverse": 3}
# nf-core/rnaseq merged matrices: salmon.merged.gene_counts.tsv (and _length_scaled, _scaled),
# rsem.merged.gene_counts.tsv. Salmon's carry gene_name, RSEM's transcript_id(s), after gene_id.
NFCORE_MARK = ".merged.gene_counts"
# Annotation column -> whether it is kept as gene symbols.
NFCORE_ANNOTATION = {"gene_name": True, "transcript_id(s)": False}


@dataclass
class CountInput:
    """A count matrix as read from disk, before value checks.

    Attributes
    ----------
    counts
        Genes x samples, numeric (possibly float, NaN or negative until checked).
    gene_symbols
        Gene symbols by gene id when the input carries them, else None.
    obs
        Per-sample annotation carried by the input (h5ad ``obs``), else None.
    files
        Every input file read, for hashing and lineage.
    """

    counts: pd.DataFrame
    gene_symbols: pd.Series | None
    obs: pd.DataFrame | None
    files: list[Path]


# Leading bytes of inputs that are not (gzipped) UTF-8 text, named for the user.
NOT_TEXT_MAGIC = {b"PK\x03\x04": "a zip archive", b"BZh": "bzip2-compressed",
                  b"\xfd7zXZ\x00": "xz-compressed", b"\x28\xb5\x2f\xfd": "zstd-compressed",
                  b"7z\xbc\xaf\x27\x1c": "a 7z archive", b"\x89HDF": "an HDF5 file",
                  b"\xff\xfe": "UTF-16 text", b"\xfe\xff": "UTF-16 text"}
SNIFF_BYTES = 1 << 16


class NotTextError(ValueError):
    """A table that is another compression, an archive or binary data rather than text."""


def open_text(path: Path) -> io.TextIOBase:
    """Open a text file, gunzipping by content (not by name).

    Raises
    ------
    NotTextError
        When the file starts like another format (zip, bzip2, xz, zstd, HDF5, UTF-16) or
        its first 64 KiB (after gunzipping) hold a NUL byte, which text never does.
    """
    with path.open("rb") as fh:
        head = fh.read(8)
    gzipped = head[:2] == b"\x1f\x8b"
    for magic, what in NOT_TEXT_MAGIC.items():
        if head.startswith(magic):
            raise NotTextError(f"it is {what}, not a plain or gzipped UTF-8 text table")
    with (gzip.open(path, "rb") if gzipped else path.open("rb")) as fh:
        if b"\0" in fh.read(SNIFF_BYTES):
            raise NotTextError("it holds binary data (NUL bytes), not text")
    if gzipped:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return path.open("r", encoding="utf-8-sig", newline="")


def first_line(path: Path) -> str:
    """The first line of a (possibly gzipped) text file, without its line ending."""
    with open_text(path) as fh:
        return fh.readline().rstrip("\r\n")


def delimiter_for(path: Path) -> str:
    """Delimiter implied by the file name: ``.csv`` is comma, anything else is tab."""
    name = path.name.lower().removesuffix(".gz")
    return "," if name.endswith(".csv") else "\t"


def check_delimiter(rel: str, sep: str, header: str) -> Problem | None:
    """Report a file whose header does not split on ``sep`` but would on the other delimiter."""
    other = "\t" if sep == "," else ","
    if sep not in header and other in header:
        names = {",": "comma", "\t": "tab"}
        return Problem(rel, "header", f"expected {names[sep]}-separated values but the header "
                       f"has no {names[sep]} and contains {names[other]}s",
                       f"save it {names[sep]}-separated, or rename it to "
                       f"'{'.csv' if other == ',' else '.tsv'}' so the delimiter matches")
    return None


def detect_format(config: StudyConfig, counts_path: str) -> str:
    """Resolve ``counts_format: auto`` from the path and the file's first line."""
    if config.counts_format != "auto":
        return config.counts_format
    lower = counts_path.lower()
    if lower.endswith(".h5ad"):
        return "h5ad"
    if STAR_SUFFIX.lower() in lower:
        return "star"
    if is_nfcore_counts(counts_path):
        return "nfcore"
    return "matrix"


def is_nfcore_counts(name: str) -> bool:
    """Whether a file name is an nf-core/rnaseq merged gene matrix
    (``<quantifier>.merged.gene_counts*.tsv``, optionally gzipped)."""
    lower = Path(name).name.lower().removesuffix(".gz")
    return NFCORE_MARK in lower and lower.endswith(".tsv")


def read_counts(config: StudyConfig, study_dir: Path) -> tuple[CountInput | None, list[Problem]]:
    """Read the study's counts in whichever supported format it is given.

    Returns the parsed input, or None with the problems that prevented reading it.
    """
    fmt = detect_format(config, config.counts)
    if fmt == "star":
        return _read_star(config, study_dir)
    if glob.has_magic(config.counts) and fmt == "matrix":
        return _read_matrices(config, study_dir)
    path, problem = study_path(study_dir, config.counts, "counts")
    problem = problem or _check_file(path, config.counts, "counts")
    if problem:
        return None, [problem]
    if fmt == "h5ad":
        return _read_h5ad(config, path)
    try:
        if fmt == "matrix" and first_line(path).startswith("# Program:featureCounts"):
            fmt = "featurecounts"
        if fmt == "featurecounts":
            return _read_featurecounts(path, config.counts)
        if fmt == "nfcore":
            return _read_nfcore(path, config.counts)
        return _read_matrix(path, config.counts)
    except TEXT_ERRORS as exc:
        return None, [not_text_problem(config.counts, exc)]


# Raised while reading a file that is not (gzipped) UTF-8 text; EOFError and zlib.error come
# from truncated or damaged gzip streams.
TEXT_ERRORS = (UnicodeDecodeError, gzip.BadGzipFile, EOFError, zlib.error, NotTextError)


def not_text_problem(rel: str, exc: Exception) -> Problem:
    """The problem for a file that is not (gzipped) UTF-8 text."""
    if isinstance(exc, NotTextError):
        what = str(exc)
    elif isinstance(exc, UnicodeDecodeError):
        what = "not UTF-8 text (UnicodeDecodeError)"
    else:
        what = f"damaged gzip data ({type(exc).__name__})"
    return Problem(rel, "", f"cannot be parsed: {what}",
                   "supply a plain or gzipped UTF-8 text table (TSV/CSV)")


def _check_file(path: Path, rel: str, key: str) -> Problem | None:
    if not path.exists():
        return Problem(STUDY_FILE, key, f"file {rel!r} not found", "check the path; it is "
                       "relative to the study folder")
    if not path.is_file():
        return Problem(STUDY_FILE, key, f"{rel!r} is not a file", "name a file, not a folder")
    try:
        with path.open("rb") as fh:
            empty = fh.read(1) == b""
    except OSError as exc:
        return Problem(rel, "", f"cannot be read: {exc.strerror}", "check its permissions")
    if empty:
        return Problem(rel, "", "file is empty", "supply the file with its contents")
    return None


def read_header(path: Path, sep: str) -> list[str]:
    """The first row of a table as written (pandas renames repeated names to ``a.1`` and
    empty ones to ``Unnamed: 2`` when it reads a header)."""
    with open_text(path) as fh:
        row = pd.read_csv(fh, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
    return [str(v) for v in row.iloc[0]] if len(row) else []


def header_duplicates(fields: list[str]) -> list[str]:
    """Names that occur more than once in a header."""
    seen, dups = set(), []
    for name in fields:
        if name in seen and name not in dups:
            dups.append(name)
        seen.add(name)
    return dups


def _read_table(path: Path, rel: str, sep: str,
                **kwargs) -> tuple[pd.DataFrame | None, list[Problem]]:
    try:
        with open_text(path) as fh:
            return pd.read_csv(fh, sep=sep, **kwargs), []
    except TEXT_ERRORS as exc:
        return None, [not_text_problem(rel, exc)]
    except (pd.errors.ParserError, OSError) as exc:
        return None, [Problem(rel, "", f"cannot be parsed: {str(exc).strip()}",
                              "check that every row has the same number of fields")]
    except pd.errors.EmptyDataError:
        return None, [Problem(rel, "", "file has no data", "supply a header and data rows")]


def _read_matrix(path: Path, rel: str) -> tuple[CountInput | None, list[Problem]]:
    sep = delimiter_for(path)
    header = first_line(path)
    problem = check_delimiter(rel, sep, header)
    if problem:
        return None, [problem]
    df, problems = _read_table(path, rel, sep, index_col=0, dtype={0: str})
    if df is None:
        return None, problems
    # A header one field short (R write.csv style) has no name for the id column.
    names = read_header(path, sep)
    first = 1 if len(names) == df.shape[1] + 1 else 0  # index of the first sample name
    samples = names[first:]
    unnamed = [str(first + i + 1) for i, name in enumerate(samples) if not name.strip()]
    if unnamed:
        return None, [Problem(rel, "header", f"column(s) {', '.join(unnamed[:5])} have no "
                              "sample name", "name every sample column")]
    dups = header_duplicates(samples)
    if dups:
        return None, [Problem(rel, "header", f"duplicate sample name(s): {', '.join(dups)}",
                              "give every sample column a unique name")]
    symbols = None
    symbol_cols = [c for c in df.columns if str(c).lower() in SYMBOL_COLUMNS]
    if symbol_cols:
        symbols = df[symbol_cols[0]].astype("string")
        df = df.drop(columns=symbol_cols)
    df.index = _gene_ids(df.index)
    return CountInput(df, symbols, None, [path]), []


def _read_featurecounts(path: Path, rel: str) -> tuple[CountInput | None, list[Problem]]:
    df, problems = _read_table(path, rel, "\t", comment="#", dtype={"Geneid": str})
    if df is None:
        return None, problems
    missing = [c for c in ["Geneid", *FEATURECOUNTS_ANNOTATION] if c not in df.columns]
    if missing:
        return None, [Problem(rel, "header", f"not featureCounts output: missing column(s) "
                              f"{', '.join(missing)}", "pass featureCounts' main output file "
                              "(not the .summary), or set counts_format: matrix")]
    df = df.drop(columns=FEATURECOUNTS_ANNOTATION).set_index("Geneid")
    # featureCounts names samples by BAM path; keep the file stem as the sample name.
    renamed = [_bam_sample_name(c) for c in df.columns]
    dups = header_duplicates(renamed)
    if dups:
        return None, [Problem(rel, "header", f"BAM names map to duplicate sample names: "
                              f"{', '.join(dups)}", "give each BAM a unique file name")]
    df.columns = renamed
    df.index = _gene_ids(df.index)
    return CountInput(df, None, None, [path]), []


def _read_nfcore(path: Path, rel: str) -> tuple[CountInput | None, list[Problem]]:
    """An nf-core/rnaseq ``*.merged.gene_counts*.tsv``: ``gene_id``, then ``gene_name``
    (salmon; kept as symbols) or ``transcript_id(s)`` (RSEM; dropped), then one column per
    sample. The values are estimated (non-integer) counts: :func:`check_counts` refuses them
    unless the study sets ``round_counts: true``."""
    header = read_header(path, "\t")
    if header[:1] != ["gene_id"] or len(header) < 2 or header[1] not in NFCORE_ANNOTATION:
        return None, [Problem(rel, "header", f"not an nf-core/rnaseq merged gene matrix: "
                              f"expected columns gene_id, gene_name (or transcript_id(s)), "
                              f"then samples; found {', '.join(header[:3]) or 'nothing'}",
                              "pass the pipeline's *.merged.gene_counts*.tsv unchanged, or set "
                              "counts_format: matrix")]
    samples = header[2:]
    if not samples:
        return None, [Problem(rel, "header", "has no sample columns", "pass the merged matrix "
                              "of all samples")]
    dups = header_duplicates(samples)
    if dups:
        return None, [Problem(rel, "header", f"duplicate sample name(s): {', '.join(dups)}",
                              "give every sample column a unique name")]
    df, problems = _read_table(path, rel, "\t", dtype={"gene_id": str, header[1]: str})
    if df is None:
        return None, problems
    df = df.set_index("gene_id")
    symbols = df[header[1]].astype("string") if NFCORE_ANNOTATION[header[1]] else None
    df = df.drop(columns=header[1])
    df.index = _gene_ids(df.index)
    if symbols is not None:
        symbols.index = df.index
    return CountInput(df, symbols, None, [path]), []


def _gene_ids(index: pd.Index) -> pd.Index:
    """Gene ids as text, keeping empty (NA) ids missing for :func:`check_counts` to report
    rather than turning them into the gene ``"nan"``."""
    return pd.Index([str(g) if pd.notna(g) else None for g in index], dtype=object,
                    name="gene_id")


def _bam_sample_name(column: str) -> str:
    name = Path(column).name
    for suffix in (".bam", ".sam", ".Aligned.sortedByCoord.out", "Aligned.sortedByCoord.out",
                   ".sorted", ".markdup"):
        name = name.removesuffix(suffix)
    return name


def _read_star(config: StudyConfig, study_dir: Path) -> tuple[CountInput | None, list[Problem]]:
    if config.strandedness is None:
        return None, [Problem(STUDY_FILE, "strandedness", "required for STAR ReadsPerGene input",
                              "set strandedness: unstranded (STAR column 2), forward (column 3, "
                              "htseq-count -s yes) or reverse (column 4, -s reverse; e.g. "
                              "TruSeq stranded)")]
    files, problems = _matched_files(study_dir, config.counts, "STAR outputs")
    if not files:
        return None, problems
    columns = {}
    for path, rel in files:
        df, errs = _read_table(path, rel, "\t", header=None, dtype={0: str})
        if df is None or df.shape[1] != 4:
            problems.extend(errs or [Problem(rel, "", f"has {df.shape[1]} columns, STAR "
                                             "ReadsPerGene files have 4", "pass STAR's "
                                             "ReadsPerGene.out.tab files unchanged")])
            continue
        df = df[~df[0].fillna("").str.startswith("N_")].set_index(0)
        sample = path.name.removesuffix(STAR_SUFFIX).rstrip("._") or path.parent.name
        if sample in columns:
            problems.append(Problem(rel, "", f"sample name {sample!r} is used by another file",
                                    "name each file <sample>.ReadsPerGene.out.tab"))
            continue
        columns[sample] = df[STAR_COLUMN[config.strandedness]]
    if problems:
        return None, problems
    genes = {tuple(col.index) for col in columns.values()}
    if len(genes) > 1:
        return None, [Problem(STUDY_FILE, "counts", "the STAR files list different genes",
                              "count every sample against the same annotation (GTF)")]
    df = pd.DataFrame(columns)
    df.index = _gene_ids(df.index)
    return CountInput(df, None, None, [path for path, _ in files]), []


def _matched_files(study_dir: Path, pattern: str,
                   what: str) -> tuple[list[tuple[Path, str]], list[Problem]]:
    """Readable files matching a glob relative to the study folder, with their relative
    names; problems for files that lead outside the folder, are missing or empty."""
    paths, problem = study_glob(study_dir, pattern, "counts")
    if problem:
        return [], [problem]
    if not paths:
        return [], [Problem(STUDY_FILE, "counts", f"no file matches {pattern!r}",
                            f"check the glob of the {what}; it is relative to the study folder")]
    files, problems = [], []
    for path in paths:
        rel = str(path.relative_to(study_dir))
        problem = _check_file(path, rel, "counts")
        if problem:
            problems.append(problem)
        else:
            files.append((path, rel))
    return files, problems


def _read_matrices(config: StudyConfig, study_dir: Path) -> tuple[CountInput | None, list[Problem]]:
    """One genes x samples matrix per file (e.g. one per plate), joined by columns; every
    file must list the same genes and sample names must be unique across files."""
    files, problems = _matched_files(study_dir, config.counts, "count files")
    if not files:
        return None, problems
    parts, symbols = [], None
    for path, rel in files:
        try:
            part, errs = _read_matrix(path, rel)
        except TEXT_ERRORS as exc:
            part, errs = None, [not_text_problem(rel, exc)]
        problems += errs
        if part is None:
            continue
        if parts and not part.counts.index.equals(parts[0][1].counts.index):
            problems.append(Problem(rel, "column 1 (gene ids)", f"lists different genes from "
                                    f"{parts[0][0]}", "count every plate against the same "
                                    "annotation, genes in the same order"))
            continue
        seen = {s: r for r, p in parts for s in p.counts.columns}
        clash = [s for s in part.counts.columns if s in seen]
        if clash:
            problems.append(Problem(rel, "header", f"sample name(s) also in "
                                    f"{seen[clash[0]]}: {', '.join(clash[:5])}", "make sample "
                                    "names unique across files, e.g. prefix them with the plate"))
            continue
        symbols = part.gene_symbols if symbols is None else symbols
        parts.append((rel, part))
    if problems:
        return None, problems
    counts = pd.concat([p.counts for _, p in parts], axis=1)
    return CountInput(counts, symbols, None, [p.files[0] for _, p in parts]), []


def damaged_matrix_problem(matrix: object, rel: str) -> Problem | None:
    """A sparse matrix whose index arrays disagree (a damaged file), or None.

    anndata loads ``indices``/``indptr`` unchecked, and scipy reads out of bounds on such a
    matrix (a segmentation fault, not an exception), so it is refused before any arithmetic.
    """
    try:
        getattr(matrix, "check_format", lambda full_check: None)(full_check=True)
    except ValueError as exc:
        return Problem(rel, "", f"damaged sparse matrix: {exc}", "write the file again with "
                       "anndata's write_h5ad")
    return None


def _read_h5ad(config: StudyConfig, path: Path) -> tuple[CountInput | None, list[Problem]]:
    import anndata as ad

    rel = config.counts
    try:
        adata = ad.read_h5ad(path)
    except Exception as exc:  # noqa: BLE001 - damaged files raise anything
        return None, [Problem(rel, "", f"not a readable h5ad file: {exc}", "write it with "
                              "anndata's write_h5ad, samples as rows (obs) and genes as "
                              "columns (var)")]
    if config.counts_layer:
        if config.counts_layer not in adata.layers:
            return None, [Problem(STUDY_FILE, "counts_layer", f"layer {config.counts_layer!r} "
                                  f"not in {rel}; layers: {', '.join(adata.layers) or 'none'}",
                                  "name a layer holding raw counts, or drop counts_layer to use X")]
        matrix = adata.layers[config.counts_layer]
    else:
        matrix = adata.X
    problem = damaged_matrix_problem(matrix, rel)
    if problem:
        return None, [problem]
    dense = matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)
    df = pd.DataFrame(dense.T, index=adata.var_names.astype(str),
                      columns=adata.obs_names.astype(str))
    df.index.name = "gene_id"
    symbol_cols = [c for c in adata.var.columns if str(c).lower() in SYMBOL_COLUMNS]
    symbols = adata.var[symbol_cols[0]].astype("string") if symbol_cols else None
    obs = adata.obs.copy()
    obs.index = obs.index.astype(str)
    return CountInput(df, symbols, obs, [path]), []
