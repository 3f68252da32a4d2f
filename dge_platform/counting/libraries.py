"""The count matrix built from sequencing outputs named per sample in the sample sheet.

Instead of ``counts:``, a bulk study may give one of these sample-sheet columns, with the
study.yaml keys it needs (docs/study-format/bulk.md, "Counting from reads"):

========  ===================  =================================  ============================
source    sheet column(s)      study.yaml                         per sample
========  ===================  =================================  ============================
bam       ``bam``              ``gtf``, ``strandedness``,         fragments per gene, union
                               ``multimapping``                   overlap (fragment_counting)
quant     ``quant``            ``tx2gene``,                       salmon / kallisto / RSEM
                               ``counts_from_abundance``          output, summed as tximport
fastq     ``fastq_1``,         ``transcriptome``, ``tx2gene``,    salmon index + quant, then
          ``fastq_2``          ``counts_from_abundance``          as quant
========  ===================  =================================  ============================

:func:`plan_counts` checks the inputs cheaply (files exist inside the study, references
readable, quantifier outputs importable) and returns a :class:`CountPlan`.
:func:`count_libraries` does the expensive per-sample work (BAM counting, salmon) in
parallel, caching each sample's result under a key over its input files' contents, the
reference and the settings, so unchanged samples are skipped. :func:`assemble_counts` turns
the cached results into the genes x samples matrix and the per-sample counting statistics.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import current_process, get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dge_platform._core.memo import file_digest, memoised
from dge_platform._core.problems import Problem, examples
from dge_platform.storage.tables import STAT_COLUMNS
from dge_platform.study.kinds import COUNTING_KEYS, KINDS
from dge_platform.study.paths import STUDY_FILE, resolved_problem, study_path

SOURCE_COLUMNS = {"bam": ("bam",), "quant": ("quant",), "fastq": ("fastq_1", "fastq_2")}
OPTIONAL_COLUMNS = ("fastq_2",)  # single-end FASTQ
REFERENCE_KEYS = {"bam": ("gtf",), "quant": ("tx2gene",), "fastq": ("transcriptome", "tx2gene")}
COUNTING_VERSION = "2"
"""Part of every cache key: bump it when a change alters per-sample results."""
SALMON_KMER = 31
INDEX_FOLDER = "salmon_index"
CACHE_DAYS = 30
"""Cached per-sample results unused this long are removed (they are recomputed if needed)."""



@dataclass(frozen=True)
class Library:
    """One sample's sequencing output: sheet column -> file (or folder) path."""

    sample: str
    files: dict[str, Path]


@dataclass(frozen=True)
class CountPlan:
    """How a study's counts are built from the files its sample sheet names.

    Attributes
    ----------
    source
        ``bam``, ``quant`` or ``fastq``.
    libraries
        One per sample, in sample-sheet order.
    references
        study.yaml key (``gtf``, ``tx2gene``, ``transcriptome``) -> path.
    settings
        What else decides the counts: ``strandedness`` and ``multimapping`` (bam),
        ``counts_from_abundance`` and ``quantifier`` (quant, fastq).
    sheet_file
        The sample sheet, for messages.
    """

    source: str
    libraries: tuple[Library, ...]
    references: dict[str, Path]
    settings: dict[str, str]
    sheet_file: str

    def describe(self) -> str:
        """e.g. ``8 BAM files (column 'bam' of samples.csv)``."""
        what = {"bam": "BAM files", "fastq": "FASTQ samples"}.get(
            self.source, f"{self.settings.get('quantifier')} outputs")
        return (f"{len(self.libraries)} {what} (column '{SOURCE_COLUMNS[self.source][0]}' of "
                f"{self.sheet_file})")


# --------------------------------------------------------------------------- planning

def sheet_source(columns: list[str]) -> str | None:
    """The count source a sample sheet's columns name, or None."""
    found = [s for s, cols in SOURCE_COLUMNS.items() if cols[0] in columns]
    return found[0] if len(found) == 1 else ("ambiguous" if found else None)


def plan_counts(study_dir: Path, values: Mapping[str, Any], sheet: pd.DataFrame,
                sheet_file: str) -> tuple[CountPlan | None, list[Problem]]:
    """Check a study whose counts come from sample-sheet files and return its plan.

    Parameters
    ----------
    study_dir
        The study folder; every path is relative to it and must stay inside it.
    values
        The study.yaml values (validated keys only).
    sheet
        The sample sheet, indexed by sample, text values.
    sheet_file
        The sample sheet's name, for messages.

    Returns
    -------
    The plan, or None and every problem found: a missing or unreadable reference, a sample
    without a file, a file outside the folder or not found, the same file for two samples,
    quantifier outputs that cannot be imported.
    """
    source = sheet_source(list(sheet.columns))
    if source in (None, "ambiguous"):
        named = [c for cols in SOURCE_COLUMNS.values() for c in cols[:1] if c in sheet.columns]
        return None, [Problem(sheet_file, "columns", "has columns of several count sources: "
                              f"{', '.join(named)}", "keep the one the counts come from")] \
            if named else []
    problems = _unused_key_problems(values, source)
    libraries, library_problems = _libraries(study_dir, sheet, sheet_file, source)
    settings = _settings(values, source)
    if source == "quant" and libraries and not library_problems:
        tool, problem = detect_quantifier(libraries, sheet_file, values.get("quantifier"))
        library_problems += [problem] if problem else []
        settings["quantifier"] = tool or ""
    references = {}
    for key in REFERENCE_KEYS[source]:
        if key == "tx2gene" and settings.get("quantifier") == "rsem" and not values.get(key):
            continue  # RSEM outputs carry their genes
        path, problem = _reference(study_dir, values, key, source)
        if problem:
            problems.append(problem)
        else:
            references[key] = path
    problems += library_problems
    if problems:
        return None, problems
    plan = CountPlan(source, tuple(libraries), references, settings, sheet_file)
    problems = _reference_problems(plan, study_dir)
    return (None, problems) if problems else (plan, [])


def declared_sheet(study_dir: Path, raw: Mapping[str, Any]) -> pd.DataFrame | None:
    """The sample sheet of a study without ``counts:`` of a kind that may count from reads
    (raw study.yaml values), read leniently: None when there is none or it cannot be read
    (validation says why)."""
    from dge_platform.readers.sample_sheet import read_sample_sheet

    rel, spec = raw.get("samples"), KINDS.get(raw.get("kind"))
    if not (spec and spec.counts_from_reads) or raw.get("counts") or not isinstance(rel, str):
        return None
    path, refused = study_path(study_dir, rel, "")
    if refused or not path.is_file():
        return None
    return read_sample_sheet(path, rel)[0]


def declared_source(study_dir: Path) -> str | None:
    """``bam``, ``quant`` or ``fastq`` when the study's sample sheet names sequencing outputs
    for its counts, else None; cheap, without validating the study."""
    from dge_platform.study.config import read_study_yaml

    raw, _ = read_study_yaml(study_dir)
    sheet = declared_sheet(study_dir, raw) if raw else None
    source = sheet_source(list(sheet.columns)) if sheet is not None else None
    return source if source in SOURCE_COLUMNS else None


def source_files(study_dir: Path, values: Mapping[str, Any], sheet: pd.DataFrame) -> list[Path]:
    """The files a study's counts are built from that exist inside its folder: references,
    then each sample's files in sheet order (folders expanded). Lenient, so the registry can
    fingerprint an invalid study and notice when a missing file appears."""
    source = sheet_source(list(sheet.columns))
    if source in (None, "ambiguous"):
        return []
    files = []
    named = [values.get(k) for k in REFERENCE_KEYS[source]]
    named += [v for s in sheet.index for c in SOURCE_COLUMNS[source] if c in sheet.columns
              if not pd.isna(v := sheet.at[s, c]) and str(v).strip()]
    for rel in named:
        if not isinstance(rel, str):
            continue
        path, refused = study_path(study_dir, rel.strip(), "")
        if refused is None and path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file()
                            and not resolved_problem(study_dir, p))
        elif refused is None and path.is_file():
            files.append(path)
    return list(dict.fromkeys(files))


def _unused_key_problems(values: Mapping[str, Any], source: str) -> list[Problem]:
    used = {"bam": ("gtf", "multimapping"), "quant": ("tx2gene", "counts_from_abundance",
                                                      "quantifier"),
            "fastq": ("transcriptome", "tx2gene", "counts_from_abundance")}[source]
    return [Problem(STUDY_FILE, key, f"not used when counts come from the sample sheet's "
                    f"'{SOURCE_COLUMNS[source][0]}' column", "remove it")
            for key in COUNTING_KEYS if values.get(key) is not None and key not in used]


def _reference(study_dir: Path, values: Mapping[str, Any], key: str,
               source: str) -> tuple[Path | None, Problem | None]:
    rel = values.get(key)
    what = {"gtf": "the gene annotation (GTF) the reads were aligned against",
            "tx2gene": "a transcript-to-gene table (columns transcript_id, gene_id)",
            "transcriptome": "the transcript sequences (FASTA) to build the salmon index"}[key]
    if rel is None:
        return None, Problem(STUDY_FILE, key, f"required key is missing (counts come from the "
                             f"sample sheet's '{SOURCE_COLUMNS[source][0]}' column)",
                             f"name {what}")
    path, problem = study_path(study_dir, str(rel), key)
    if problem:
        return None, problem
    if not path.is_file():
        return None, Problem(STUDY_FILE, key, f"file {str(rel)!r} not found",
                             "check the path; it is relative to the study folder")
    return path, None


def _libraries(study_dir: Path, sheet: pd.DataFrame, sheet_file: str,
               source: str) -> tuple[list[Library], list[Problem]]:
    problems = []
    files: dict[str, dict[str, Path]] = {s: {} for s in sheet.index}
    for column in SOURCE_COLUMNS[source]:
        if column not in sheet.columns:
            if column not in OPTIONAL_COLUMNS:
                problems.append(Problem(sheet_file, f"column '{column}'", "missing", "add it"))
            continue
        values = sheet[column]
        empty = [str(s) for s, v in values.items() if pd.isna(v) or not str(v).strip()]
        if empty and (column not in OPTIONAL_COLUMNS or len(empty) < len(values)):
            problems.append(Problem(sheet_file, f"column '{column}'", f"no file for "
                                    f"{len(empty)} sample(s): {examples(empty)}",
                                    "give every sample its file"))
        refused, missing = [], []
        for sample, value in values.items():
            if pd.isna(value) or not str(value).strip():
                continue
            path, problem = study_path(study_dir, str(value).strip(), "")
            if problem:
                refused.append(f"{sample}: {problem.message}")
            elif not path.exists():
                missing.append(f"{sample} ({str(value).strip()})")
            else:
                files[sample][column] = path
        if refused:
            problems.append(Problem(sheet_file, f"column '{column}'", f"{len(refused)} path(s) "
                                    f"refused: {examples(refused)}", "name files inside the "
                                    "study folder by their path relative to it"))
        if missing:
            problems.append(Problem(sheet_file, f"column '{column}'", f"{len(missing)} file(s) "
                                    f"not found: {examples(missing)}", "check the paths; "
                                    "they are relative to the study folder"))
    named = [(s, p.resolve()) for s, cols in files.items() for p in cols.values()]
    seen: dict[Path, str] = {}
    for sample, path in named:
        if path in seen and seen[path] != sample:
            problems.append(Problem(sheet_file, f"column '{SOURCE_COLUMNS[source][0]}'",
                                    f"samples {seen[path]!r} and {sample!r} name the same file "
                                    f"{path.name!r}", "give each sample its own file; "
                                    "libraries of one biological sample are separate files "
                                    "with a replicate_of column"))
        seen.setdefault(path, sample)
    return [Library(str(s), f) for s, f in files.items()], problems


def _settings(values: Mapping[str, Any], source: str) -> dict[str, str]:
    if source == "bam":
        return {"strandedness": values.get("strandedness") or "unstranded",
                "multimapping": values.get("multimapping") or "count"}
    settings = {"counts_from_abundance": values.get("counts_from_abundance")
                or "lengthScaledTPM"}
    if source == "fastq":
        settings.update(quantifier="salmon", strandedness=values.get("strandedness") or "auto")
    return settings


def detect_quantifier(libraries: list[Library], sheet_file: str,
                      given: str | None = None) -> tuple[str | None, Problem | None]:
    """salmon, kallisto or rsem, from the ``quant`` paths (a folder's files or the file name);
    every sample must come from the same tool."""
    if given:
        return given, None
    tools = {}
    for library in libraries:
        path = library.files["quant"]
        names = [p.name for p in path.iterdir()] if path.is_dir() else [path.name]
        tool = next((t for t, marks in _QUANT_MARKS.items()
                     if any(m in n for n in names for m in marks)), None)
        tools.setdefault(tool, library.sample)
    if None in tools:
        return None, Problem(sheet_file, "column 'quant'", f"sample {tools[None]!r}: not a "
                             "salmon (quant.sf), kallisto (abundance.h5/.tsv) or RSEM "
                             "(.genes.results/.isoforms.results) output",
                             "name the quantifier's output folder or file, or set quantifier:")
    if len(tools) > 1:
        return None, Problem(sheet_file, "column 'quant'", "samples mix quantifiers: "
                             + ", ".join(f"{t} ({s})" for t, s in tools.items()),
                             "quantify every sample with the same tool")
    return next(iter(tools)), None


_QUANT_MARKS = {"salmon": ("quant.sf",), "kallisto": ("abundance.h5", "abundance.tsv"),
                "rsem": (".genes.results", ".isoforms.results")}


def _reference_problems(plan: CountPlan, study_dir: Path) -> list[Problem]:
    """Read what is cheap to read now, so ``dge validate`` reports it: the GTF and every
    BAM header (chromosome names), the tx2gene table, the quantifier outputs."""
    from dge_platform.counting.tximport import QuantInputError

    try:
        if plan.source == "bam":
            return _bam_header_problems(plan, study_dir)
        if plan.source == "quant":
            import_quant(plan)
        elif plan.source == "fastq":
            _tx2gene(plan.references["tx2gene"])
            return _salmon_problems(plan)
    except QuantInputError as exc:
        return [_relative(p, study_dir) for p in exc.problems]
    return []


def _salmon_problems(plan: CountPlan) -> list[Problem]:
    from dge_platform.counting.salmon import SalmonError, salmon_executable

    try:
        salmon_executable()
    except SalmonError as exc:
        what, _, fix = str(exc).partition(" -> ")
        return [Problem(plan.sheet_file, "column 'fastq_1'", f"FASTQ inputs are quantified "
                        f"with salmon: {what}", fix)]
    return []


def _bam_header_problems(plan: CountPlan, study_dir: Path) -> list[Problem]:
    import pysam

    from dge_platform.counting.fragments import BamError, chromosome_map
    from dge_platform.readers.gene_models import GtfError

    rel_gtf = _rel(plan.references["gtf"], study_dir)
    try:
        models = gene_models(plan.references["gtf"])
    except (GtfError, OSError) as exc:
        return [Problem(rel_gtf, "", str(exc).replace(str(plan.references["gtf"]), "").strip(
            ": "), "supply the GTF (plain or gzipped) the reads were aligned against")]
    problems = []
    for library in plan.libraries:
        bam = library.files["bam"]
        rel = _rel(bam, study_dir)
        try:
            with pysam.AlignmentFile(str(bam), "rb", check_sq=False) as fh:
                references = list(fh.references)
            chromosome_map(references, models, Path(rel))
        except BamError as exc:
            problems.append(Problem(rel, "", str(exc).split(": ", 1)[-1].replace(
                str(plan.references["gtf"]), rel_gtf), "align against the GTF's genome, or "
                "give the GTF of the genome the reads were aligned to"))
        except (ValueError, OSError) as exc:
            problems.append(Problem(rel, "", f"not a readable BAM file ({exc})",
                                    "supply the aligner's BAM output (any sort order)"))
    return problems


def _rel(path: Path, study_dir: Path) -> str:
    try:
        return str(path.relative_to(study_dir))
    except ValueError:
        return str(path)


def _relative(problem: Problem, study_dir: Path) -> Problem:
    """A problem naming an absolute path inside the study, renamed relative to it."""
    prefix = f"{study_dir}{os.sep}"
    return Problem(problem.file.removeprefix(prefix), problem.field,
                   problem.message.replace(prefix, ""), problem.fix)


# --------------------------------------------------------------------------- readers (memoised)

def gene_models(gtf: Path):
    """The GTF's gene models (memoised)."""
    from dge_platform.readers.gene_models import read_gtf

    return memoised(gtf, read_gtf)


def _tx2gene(path: Path):
    from dge_platform.counting.tximport import read_tx2gene

    return memoised(path, read_tx2gene)


# --------------------------------------------------------------------------- per-sample work

def library_key(plan: CountPlan, library: Library) -> str:
    """Cache key of one sample's result: its files' contents, the reference, the settings and
    the counting code's version (not the sample's name or the study, so a renamed sample or
    a BAM shared by two studies is counted once)."""
    inputs = {"version": COUNTING_VERSION, "source": plan.source, "settings": plan.settings,
              "references": {k: file_digest(p) for k, p in sorted(plan.references.items())
                             if k != "tx2gene"},  # applied after the per-sample step
              "files": {c: file_digest(p) for c, p in sorted(library.files.items())}}
    if plan.source == "fastq":
        from dge_platform.counting.salmon import salmon_version

        inputs["salmon"] = salmon_version()
    text = json.dumps(inputs, sort_keys=True).encode()
    return hashlib.sha256(text).hexdigest()[:24]


@dataclass
class CountingRun:
    """What :func:`count_libraries` did: per sample its cache key and whether it was reused."""

    keys: dict[str, str] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    counted: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    index: Path | None = None


def count_libraries(plan: CountPlan, cache: Path, *, workers: int = 1,
                    log: Callable[[str], None] = lambda _: None) -> CountingRun:
    """Run the per-sample step (BAM counting, salmon quant) for every sample whose result is
    not cached, ``workers`` at a time; quant outputs need none.

    Results are written atomically under ``cache`` (``<key>.parquet`` per BAM, ``<key>/``
    per salmon run), so a killed run keeps the samples it finished.

    Raises
    ------
    dge_platform.counting.fragments.BamError, dge_platform.counting.salmon.SalmonError
        For a BAM or FASTQ that cannot be processed, naming it.
    """
    run = CountingRun()
    if plan.source == "quant":
        return run
    cache.mkdir(parents=True, exist_ok=True)
    prune_cache(cache)
    todo = []
    for library in plan.libraries:
        key = run.keys[library.sample] = library_key(plan, library)
        if _cached(cache, plan.source, key):
            os.utime(cache / (f"{key}.parquet" if plan.source == "bam" else key))
            run.reused.append(library.sample)
        else:
            todo.append(library)
    if plan.source == "fastq":
        run.index = salmon_index(plan.references["transcriptome"], cache, threads=workers)[0]
    for library, seconds in _run_pending(plan, todo, cache, run, workers, log):
        run.counted.append(library.sample)
        run.seconds[library.sample] = seconds
    return run


def _cached(cache: Path, source: str, key: str) -> bool:
    return (cache / f"{key}.parquet").is_file() if source == "bam" \
        else (cache / key / "quant.sf").is_file()


def salmon_index(transcriptome: Path, cache: Path, *, threads: int = 1) -> tuple[Path, bool]:
    """The salmon index of ``transcriptome`` under ``cache`` and whether it was built now:
    only when no index of the same FASTA content, k-mer size and salmon version exists."""
    from dge_platform.counting.salmon import build_index, fasta_digest, salmon_version

    folder = cache / INDEX_FOLDER / (f"{fasta_digest(transcriptome)}-k{SALMON_KMER}-"
                                     f"salmon{salmon_version()}")
    if folder.is_dir():
        os.utime(folder)
        return folder, False
    folder.parent.mkdir(parents=True, exist_ok=True)
    build_index(transcriptome, folder, kmer=SALMON_KMER, threads=threads)
    return folder, True


def _run_pending(plan: CountPlan, todo: list[Library], cache: Path, run: CountingRun,
                 workers: int, log: Callable[[str], None]):
    if plan.source == "fastq":  # salmon is multi-threaded itself: one sample at a time
        for library in todo:
            start = time.perf_counter()
            _salmon_sample(library, run.index, cache / run.keys[library.sample],
                           plan.settings["strandedness"], workers)
            log(f"{library.sample}: salmon quant done")
            yield library, time.perf_counter() - start
        return
    args = [(library.files["bam"], cache / f"{run.keys[library.sample]}.parquet",
             plan.settings) for library in todo]
    # A daemonic process (a Celery prefork worker's) may not start children: count in turn.
    if workers <= 1 or len(todo) <= 1 or current_process().daemon:
        for library, a in zip(todo, args):
            seconds = _count_bam(plan.references["gtf"], *a)
            log(f"{library.sample}: counted in {seconds:.1f} s")
            yield library, seconds
        return
    # Processes, not threads: the GIL serialises BAM decompression; spawn, because forking a
    # process that runs Dagster's and numba's threads can deadlock.
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)),
                             mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_count_bam, plan.references["gtf"], *a) for a in args]
        for library, future in zip(todo, futures):
            seconds = future.result()
            log(f"{library.sample}: counted in {seconds:.1f} s")
            yield library, seconds


def _count_bam(gtf: Path, bam: Path, out: Path, settings: dict[str, str]) -> float:
    """Count one BAM into ``out`` (Parquet: gene_id, count; stats in the file's metadata)."""
    from dge_platform.counting.fragments import count_fragments

    start = time.perf_counter()
    models = gene_models(gtf)
    counts, stats = count_fragments(bam, models, strandedness=settings["strandedness"],
                                    multimapping=settings["multimapping"])
    table = pa.table({"gene_id": counts.index.astype(str).to_numpy(),
                      "count": counts.to_numpy(np.int64)})
    table = table.replace_schema_metadata({b"dge_stats": json.dumps(stats).encode()})
    from dge_platform.storage.warehouse import atomic_path

    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    return time.perf_counter() - start


def _salmon_sample(library: Library, index: Path, out: Path, strandedness: str,
                   threads: int) -> None:
    from dge_platform.counting.salmon import quantify

    library_type = {"auto": "A", "unstranded": "IU", "forward": "ISF", "reverse": "ISR"}
    quantify(index, library.files["fastq_1"], library.files.get("fastq_2"), out,
             threads=threads, library_type=library_type[strandedness]
             if library.files.get("fastq_2") else {"auto": "A", "unstranded": "U",
                                                   "forward": "SF",
                                                   "reverse": "SR"}[strandedness])


def prune_cache(cache: Path, max_age_days: float = CACHE_DAYS) -> int:
    """Remove cached results (and salmon indexes) unused for ``max_age_days``; every use
    touches them. Returns the number removed. Temps of killed writes go after an hour."""
    from dge_platform.storage.warehouse import remove_stale_temps

    remove_stale_temps(cache, ".*.tmp")
    limit = time.time() - max_age_days * 86400
    removed = 0
    for path in [*cache.glob("*"), *(cache / INDEX_FOLDER).glob("*")]:
        if path.name == INDEX_FOLDER or path.name.startswith(".") or path.stat().st_mtime > limit:
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        removed += 1
    return removed


# --------------------------------------------------------------------------- assembling

@dataclass
class BuiltCounts:
    """A study's counts as built from its sequencing outputs.

    Attributes
    ----------
    counts
        Genes x samples (sample-sheet order); float for quantifier estimates (rounded later
        with ``round_counts``), int64 for BAM counts.
    stats
        Per sample: the :data:`STAT_COLUMNS`.
    gene_symbols
        Gene names from the GTF or tx2gene table, else None.
    estimated
        Whether counts are estimates (to round): quantifier outputs.
    notes
        Observations for the user (unmapped transcripts, multi-mappers, strandedness).
    problems
        Why the counts must not be used (reads on the other strand than configured).
    """

    counts: pd.DataFrame
    stats: pd.DataFrame
    gene_symbols: pd.Series | None
    estimated: bool
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def assemble_counts(plan: CountPlan, cache: Path | None = None,
                    keys: Mapping[str, str] | None = None) -> BuiltCounts:
    """The genes x samples matrix and per-sample statistics from the plan's cached
    per-sample results (``keys`` from :func:`count_libraries`); quant outputs are imported
    directly.

    A BAM study whose reads lie on the other strand than ``strandedness`` says gets a
    problem in ``problems`` (its counts would miss most fragments); a stranded library counted
    as unstranded, or the reverse, gets a note.

    Raises
    ------
    FileNotFoundError
        When a sample's cached result is missing (run :func:`count_libraries` first).
    dge_platform.counting.tximport.QuantInputError
        For quantifier outputs that cannot be imported.
    """
    if plan.source == "bam":
        return _assemble_bam(plan, cache, keys)
    if plan.source == "quant":
        quant = import_quant(plan)
        stats = _quant_stats(plan, quant, {lib.sample: _run_info(lib.files["quant"])
                                           for lib in plan.libraries})
    else:
        quant = import_quant(plan, {lib.sample: cache / keys[lib.sample]
                                    for lib in plan.libraries})
        stats = _quant_stats(plan, quant, {lib.sample: _run_info(cache / keys[lib.sample])
                                           for lib in plan.libraries})
    notes = []
    if quant.unmapped_transcripts:
        notes.append(f"{quant.unmapped_transcripts:,} of {quant.transcripts:,} transcripts "
                     f"are not in {plan.references['tx2gene'].name} and are left out "
                     f"(up to {quant.unmapped_fraction_of_reads.max():.1%} of a sample's "
                     "reads; unassigned_not_in_tx2gene in the samples table)")
    return BuiltCounts(quant.counts, stats, quant.gene_symbols, True, notes)


def import_quant(plan: CountPlan, paths: Mapping[str, Path] | None = None):
    """tximport of the plan's quantifier outputs (or of ``paths``, salmon runs)."""
    from dge_platform.counting.tximport import import_quantifications

    paths = paths or {lib.sample: lib.files["quant"] for lib in plan.libraries}
    return import_quantifications(dict(paths), _tx2gene(plan.references["tx2gene"])
                                  if "tx2gene" in plan.references else None,
                                  tool=plan.settings["quantifier"],
                                  counts_from_abundance=plan.settings["counts_from_abundance"])


def _assemble_bam(plan: CountPlan, cache: Path, keys: Mapping[str, str]) -> BuiltCounts:
    columns, rows = {}, []
    for library in plan.libraries:
        path = cache / f"{keys[library.sample]}.parquet"
        table = pq.read_table(path)
        stats = json.loads(table.schema.metadata[b"dge_stats"])
        columns[library.sample] = pd.Series(table["count"].to_numpy(),
                                            index=table["gene_id"].to_pylist())
        rows.append(_bam_stats(library.sample, stats))
    counts = pd.DataFrame(columns)
    counts.index.name = "gene_id"
    models = gene_models(plan.references["gtf"])
    symbols = models.genes["gene_name"].replace("", pd.NA).dropna().astype("string")
    stats = _stats_frame(rows)
    notes = []
    multi = int(stats["unassigned_multimapping"].sum())
    if plan.settings["multimapping"] == "skip" and multi:
        notes.append(f"{multi:,} multi-mapping fragments not counted (multimapping: skip)")
    problems, strand_notes = strandedness_findings(stats, plan.settings["strandedness"])
    return BuiltCounts(counts, stats, symbols if len(symbols) else None, False,
                       notes + strand_notes, problems)


def strandedness_findings(stats: pd.DataFrame,
                          configured: str) -> tuple[list[Problem], list[str]]:
    """Problems and notes comparing ``strandedness`` with what the fragments show.

    Per sample, ``strand_sense_fraction`` is the share of fragments on exactly one stranded
    gene whose read 1 lies on that gene's strand (near 1 forward, near 0 reverse, near 0.5
    unstranded) and ``inferred_strandedness`` what it says (null when undecided). Counting a
    library on the wrong strand loses most fragments: a problem. Counting a stranded library
    as unstranded also counts antisense transcription into overlapping genes, and the reverse
    loses half the fragments: notes.
    """
    inferred = stats["inferred_strandedness"].dropna()
    if inferred.empty:
        return [], []
    majority = inferred.mode().iloc[0]
    others = sorted(inferred.index[inferred != majority])
    notes = [f"sample(s) {', '.join(others)} look {', '.join(sorted(set(inferred[others])))}"
             f" while most look {majority}: check their library prep"] if others else []
    fraction = float(stats.loc[inferred.index, "strand_sense_fraction"].astype(float).median())
    shown = (f"{fraction:.0%} of fragments on their gene's strand, {1 - fraction:.0%} on the "
             "opposite one (median sample)")
    if majority == configured:
        return [], notes
    if configured in ("forward", "reverse") and majority in ("forward", "reverse"):
        return [Problem(STUDY_FILE, "strandedness", f"is {configured} but the reads are "
                        f"{majority}-stranded: {shown}; counting on the wrong strand misses "
                        "most fragments", f"set strandedness: {majority}")], notes
    if configured == "unstranded":
        return [], notes + [f"the library looks {majority}-stranded ({shown}) but strandedness "
                            "is unstranded: antisense fragments count for overlapping genes; "
                            f"set strandedness: {majority}"]
    return [], notes + [f"strandedness is {configured} but the library looks unstranded "
                        f"({shown}): about half of the fragments are not counted; set "
                        "strandedness: unstranded"]


def _bam_stats(sample: str, stats: dict[str, int]) -> dict[str, Any]:
    assigned = stats["Assigned"]
    total = stats["fragments"] + stats["Unassigned_Unmapped"] + stats["Unassigned_MultiMapping"]
    from dge_platform.counting.fragments import infer_strandedness, strand_fraction

    return {"sample": sample, "count_source": "bam", "total_fragments": total,
            "strand_sense_fraction": strand_fraction(stats),
            "inferred_strandedness": infer_strandedness(stats),
            "assigned": assigned,
            "unassigned_ambiguity": stats["Unassigned_Ambiguity"],
            "unassigned_no_features": stats["Unassigned_NoFeatures"],
            "unassigned_multimapping": stats["Unassigned_MultiMapping"],
            "multimapping_fragments": stats["multimapping_fragments"],
            "unassigned_unmapped": stats["Unassigned_Unmapped"],
            "unassigned_other": stats["Unassigned_Secondary"] + stats["Unassigned_Singleton"],
            "assigned_fraction": assigned / total if total else np.nan,
            # Aligners often leave unmapped reads out of the BAM: then the rate is unknown.
            "mapping_rate": (total - stats["Unassigned_Unmapped"]) / total
            if total and stats["Unassigned_Unmapped"] else None}


def _run_info(path: Path) -> dict[str, Any]:
    """Reads processed and mapped, from salmon's ``aux_info/meta_info.json`` or kallisto's
    ``run_info.json`` next to the output, and the strandedness salmon's library type shows
    (``lib_format_counts.json``); empty when absent."""
    folder = path if path.is_dir() else path.parent
    info: dict[str, Any] = {}
    for name, processed, mapped in (("aux_info/meta_info.json", "num_processed", "num_mapped"),
                                    ("run_info.json", "n_processed", "n_pseudoaligned")):
        data = _json(folder / name)
        if processed in data and mapped in data:
            info = {"processed": float(data[processed]), "mapped": float(data[mapped])}
            break
    library_type = str(_json(folder / "lib_format_counts.json").get("expected_format", ""))
    # Salmon's codes: I/O/M mate orientation, then S stranded (F read 1 sense, R antisense)
    # or U unstranded.
    strand = ("forward" if library_type.endswith("SF") else "reverse"
              if library_type.endswith("SR") else "unstranded" if library_type.endswith("U")
              else None)
    return {**info, "strandedness": strand} if strand else info


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _quant_stats(plan: CountPlan, quant, info: Mapping[str, dict[str, Any]]) -> pd.DataFrame:
    rows = []
    source = plan.settings["quantifier"] if plan.source == "quant" else "fastq"
    for sample in quant.counts.columns:
        unmapped = float(quant.unmapped_reads[sample])
        assigned = float(quant.estimated_reads[sample]) - unmapped
        run = info.get(sample, {})
        processed, mapped = run.get("processed"), run.get("mapped")
        rows.append({"sample": sample, "count_source": source,
                     "total_fragments": processed, "assigned": round(assigned),
                     "unassigned_unmapped": processed - mapped if processed else None,
                     "unassigned_not_in_tx2gene": round(unmapped),
                     "assigned_fraction": assigned / processed if processed else None,
                     "mapping_rate": mapped / processed if processed else None,
                     "inferred_strandedness": run.get("strandedness")})
    return _stats_frame(rows)


def matrix_stats(samples: list[str]) -> pd.DataFrame:
    """The statistics of samples whose counts came as a matrix: only the source is known."""
    return _stats_frame([{"sample": s, "count_source": "matrix"} for s in samples])


def summed_stats(stats: pd.DataFrame, groups: pd.Series) -> pd.DataFrame:
    """Statistics per analysed sample: fragment numbers summed over the libraries of each
    group (``groups``: library -> analysed sample), rates recomputed from the sums."""
    counts = [c for c, t in STAT_COLUMNS.items() if t == "BIGINT"]
    grouped = stats.groupby(groups.reindex(stats.index).to_numpy(), sort=False)
    out = grouped[counts].sum(min_count=1)
    out["count_source"] = grouped["count_source"].first()
    total = out["total_fragments"].astype("Float64")
    out["assigned_fraction"] = out["assigned"] / total
    out["mapping_rate"] = (total - out["unassigned_unmapped"]) / total
    known_rate = stats["mapping_rate"].notna().groupby(groups.reindex(stats.index).to_numpy(),
                                                       sort=False).all()
    out.loc[~known_rate.reindex(out.index), "mapping_rate"] = pd.NA
    out.index.name = "sample"
    return _stats_frame(out.reset_index().to_dict("records"))


def _stats_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows to a frame with every stat column in its catalog type (nullable)."""
    frame = pd.DataFrame(rows).set_index("sample")
    dtypes = {"VARCHAR": "string", "BIGINT": "Int64", "DOUBLE": "Float64"}
    return pd.DataFrame({c: (frame[c] if c in frame else pd.Series(pd.NA, index=frame.index))
                         .astype(dtypes[t]) for c, t in STAT_COLUMNS.items()})
