"""Transcript quantification from FASTQ reads with salmon (selective alignment).

Pure functions around Debian's ``salmon`` binary (1.10.1 tested): :func:`build_index` builds
a transcriptome index, :func:`quantify` quantifies one sample's reads against it and
:func:`read_run` reads the figures of a finished run back; :mod:`dge_platform.counting.tximport`
then sums the ``quant.sf`` files to genes. Failures raise :class:`SalmonError` naming the
file concerned, with salmon's last stderr lines.

Outputs are written into a hidden sibling temp folder (``.<name>.tmp``) and renamed into
place, so an index or output folder exists only complete; builds of the same target hold a
lock (``.<name>.lock``, :func:`dge_platform._core.locks.file_lock`), so any temp left next to it
then
is a killed build's and is removed. ``--no-version-check`` keeps salmon off the network.

Reproducibility (salmon 1.10.1, measured on dge_platform/sim/reads.py data, 200,000 pairs of
2x75 bp): ``quant.sf`` differs from run to run even with ``-p 1``. Salmon trains its
fragment-length distribution on fragments picked by a randomly seeded generator while a
background thread parses the reads (COMBINE-lab/salmon issues #613, #1032), so effective
lengths differ by up to ~1 % and the estimates of ambiguous isoforms by up to ~10 reads;
sums over a gene's isoforms agreed to 0.002 reads, and rounded gene counts were identical.
``--noFragLengthDist --noEffectiveLengthCorrection -p 1`` is byte-identical run to run but
drops the effective-length correction that accuracy and tximport's lengthScaledTPM rely on,
so it is not used; salmon 1.10.1 has no seed option. More threads add thread-order variation
of the same size. ``--seqBias`` and ``--gcBias`` stay off (salmon's default; they add run
time, and their effect on reproducibility was not measured). Callers should cache a sample's
output (:func:`read_run`) rather than expect a re-run to reproduce it bit for bit.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import subprocess
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from threading import Event

from dge_platform._core.locks import file_lock
from dge_platform._core.memo import file_digest

INSTALL_HINT = ("install Debian's salmon package (sudo apt-get install salmon); see the docs, "
                "'Counting from reads'")
ENV_VAR = "DGE_SALMON"
DEFAULT_KMER = 31
MAX_KMER = 31  # salmon's index stores k-mers in 64 bits
STDERR_LINES = 8
STAMP_FILE = "dge_index.json"  # in an index: the FASTA digest, k and salmon version it has
CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
# Salmon's log lines that say nothing about a failure (progress, timings, banners, index
# loading statistics).
_NOISE = ("[info]", "| ", "---", "===", "Logs will be written", "### ", "version_info",
          "size = ", "Number of ones", "Inventory entries", "Time = ")

log = logging.getLogger(__name__)


class SalmonError(RuntimeError):
    """Salmon is missing, was given unusable input, or failed; the message names the file or
    sample and says what to do."""


@dataclass(frozen=True)
class SalmonRun:
    """Figures of one finished ``salmon quant`` run.

    Attributes
    ----------
    quant_file
        The run's ``quant.sf`` (transcript estimates; its folder is the run's output).
    num_processed
        Fragments (read pairs, or reads for single-end) salmon read.
    num_mapped
        Fragments with a mapping to the index.
    mapping_rate
        ``num_mapped`` as a fraction of ``num_processed`` (``percent_mapped`` / 100), 0-1.
    library_type
        The library format salmon settled on (e.g. ``IU``: inward, unstranded), from
        ``lib_format_counts.json``.
    salmon_version
        The salmon that wrote the output.
    """

    quant_file: Path
    num_processed: int
    num_mapped: int
    mapping_rate: float
    library_type: str
    salmon_version: str


def salmon_executable() -> str:
    """The ``salmon`` to run: ``DGE_SALMON`` if set (a path), else ``salmon`` on ``PATH``.

    Raises
    ------
    SalmonError
        When ``DGE_SALMON`` names no executable file or salmon is not on ``PATH``.
    """
    override = os.environ.get(ENV_VAR, "").strip()
    if override:
        path = Path(override).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        raise SalmonError(f"{ENV_VAR}={override} is not an executable file -> point it to the "
                          f"salmon binary, or unset it and {INSTALL_HINT}")
    found = shutil.which("salmon")
    if not found:
        raise SalmonError(f"salmon not found on PATH -> {INSTALL_HINT}")
    return found


def salmon_version() -> str:
    """The version of :func:`salmon_executable` (e.g. ``"1.10.1"``), part of index and output
    cache keys.

    Raises
    ------
    SalmonError
        When salmon is missing or does not answer ``--version``.
    """
    executable = salmon_executable()
    # Keyed by modification time too, so an upgraded binary is asked again.
    return _version_of(executable, os.stat(executable).st_mtime_ns)


@lru_cache(maxsize=8)
def _version_of(executable: str, mtime_ns: int) -> str:
    done = _run([executable, "--version"], timeout=60)
    words = (done.stdout + done.stderr).split()
    if done.returncode or len(words) < 2 or words[0] != "salmon":
        raise SalmonError(f"{executable} --version failed (exit {done.returncode}): "
                          f"{_tail(done.stderr or done.stdout)} -> {INSTALL_HINT}")
    return words[1]


def fasta_digest(path: Path) -> str:
    """First 16 hex digits of the SHA-256 of the FASTA file's bytes (as stored, so a gzipped
    and a plain copy differ): the index cache key, with the salmon version and k added by the
    caller.

    Raises
    ------
    SalmonError
        When the file cannot be read.
    """
    try:
        return file_digest(Path(path))[:16]
    except OSError as exc:
        raise SalmonError(f"transcriptome {path}: cannot be read ({exc.strerror}) -> check the "
                          "path and its permissions") from exc


def build_index(transcriptome: Path, index_dir: Path, *, kmer: int = DEFAULT_KMER,
                threads: int = 1) -> Path:
    """Build a salmon index of a transcriptome FASTA (``salmon index -t -i -k -p``).

    Parameters
    ----------
    transcriptome
        Transcript sequences, FASTA, optionally gzipped; headers are the transcript ids that
        ``quant.sf`` will list (GENCODE ``|``-separated headers are cut by quant_import).
    index_dir
        Where the index goes. Built into ``.<name>.tmp`` next to it and renamed into place
        only when salmon succeeds, with :data:`STAMP_FILE` recording the FASTA's digest, k
        and the salmon version. An index there with the same stamp is kept (so concurrent
        builds of one index run salmon once); any other is replaced.
    kmer
        k-mer length, odd, at most 31. Transcripts no longer than k are kept in the index
        (listed with 0 reads) but cannot be mapped to, so a warning is logged when some are;
        k=31 suits reads of 75 bp and more, shorter reads or transcripts need a smaller k
        (e.g. 23 or 19) at some cost in speed and specificity. A FASTA with only a handful of
        transcripts is fine as long as some are longer than k.
    threads
        Salmon's ``-p``.

    Returns
    -------
    ``index_dir``.

    Raises
    ------
    SalmonError
        Salmon missing, a bad k, a FASTA that is missing, empty, not FASTA, or has no
        transcript longer than k (salmon 1.10.1 aborts with no usable message on these, so
        they are checked first), or salmon failing (its last stderr lines are shown).
    """
    transcriptome, index_dir = Path(transcriptome), Path(index_dir)
    executable = salmon_executable()
    if kmer % 2 == 0 or not 1 < kmer <= MAX_KMER:
        raise SalmonError(f"salmon index of {transcriptome}: k-mer length {kmer} is not an odd "
                          f"number from 3 to {MAX_KMER} -> use e.g. 31 (reads of 75 bp and "
                          "more) or 23")
    records, short = _fasta_lengths(transcriptome, kmer)
    if short == records:
        raise SalmonError(f"transcriptome {transcriptome}: all {records} transcripts are at most "
                          f"{kmer} bp, salmon cannot index them with k={kmer} -> use a smaller "
                          "k-mer length or the full transcript sequences")
    if short:
        log.warning("transcriptome %s: %d of %d transcripts are at most %d bp; salmon keeps "
                    "them but no read can map to them (use a smaller k to count them)",
                    transcriptome, short, records, kmer)
    stamp = {"fasta_sha256": fasta_digest(transcriptome), "kmer": kmer,
             "salmon_version": _version_of(executable, os.stat(executable).st_mtime_ns)}
    # Concurrent builds of one index wait for the first and then reuse it rather than
    # replace it under a running quantification.
    with _staged(index_dir, reuse=lambda d: _read_stamp(d) == stamp) as tmp:
        if tmp is None:
            return index_dir
        done = _run([executable, "index", "--no-version-check", "-t", str(transcriptome),
                     "-i", str(tmp), "-k", str(kmer), "-p", str(max(1, threads))])
        if done.returncode:
            raise SalmonError(f"salmon index of {transcriptome} failed (exit "
                              f"{_exit(done.returncode)}):\n{_tail(done.stderr)}\n-> check that "
                              "the file is a transcript FASTA and that the disk has space")
        (tmp / STAMP_FILE).write_text(json.dumps(stamp, indent=1) + "\n")
    return index_dir


def _read_stamp(index_dir: Path) -> dict | None:
    """What an index was built from (:data:`STAMP_FILE`), or None."""
    try:
        return json.loads((index_dir / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None


def quantify(index_dir: Path, fastq_1: Path, fastq_2: Path | None, out_dir: Path, *,
             threads: int = 1, library_type: str = "A") -> SalmonRun:
    """Quantify one sample's reads against a salmon index (``salmon quant``).

    Parameters
    ----------
    index_dir
        From :func:`build_index`.
    fastq_1, fastq_2
        Read 1 and read 2 FASTQ (plain or gzipped, 4-line records); ``fastq_2`` None for
        single-end reads (``-r``).
    out_dir
        The run's output folder (``quant.sf``, ``aux_info/``, ``logs/``); an existing one is
        replaced. Written as ``.<name>.tmp`` and renamed into place when the run succeeds.
    threads
        Salmon's ``-p``. More threads are faster; no setting makes salmon 1.10.1 repeat a
        run exactly (see the module notes).
    library_type
        Salmon's ``-l``; ``A`` (default) lets salmon infer it (reported in the result).

    Returns
    -------
    The run's figures (:func:`read_run` of the output).

    Raises
    ------
    SalmonError
        A FASTQ missing, corrupt, truncated (not whole 4-line records) or, for pairs, with
        a different number of reads than its mate (salmon silently stops at the shorter
        file, so records are counted alongside the run), or salmon failing, e.g. when under
        10 fragments map (wrong index or organism). The message names the FASTQ file(s)
        and shows salmon's last stderr lines.
    """
    index_dir, out_dir = Path(index_dir), Path(out_dir)
    fastqs = [Path(fastq_1)] + ([Path(fastq_2)] if fastq_2 is not None else [])
    reads = " and ".join(map(str, fastqs))
    executable = salmon_executable()
    for fastq in fastqs:
        if not fastq.is_file():
            raise SalmonError(f"FASTQ {fastq}: {'not a file' if fastq.exists() else 'not found'}"
                              " -> check the path in the sample table")
    if not (index_dir / "info.json").is_file():
        raise SalmonError(f"salmon index {index_dir}: not found or incomplete -> build it with "
                          "build_index")
    mates = (["-1", str(fastqs[0]), "-2", str(fastqs[1])] if len(fastqs) == 2
             else ["-r", str(fastqs[0])])
    command = [executable, "quant", "--no-version-check", "-i", str(index_dir),
               "-l", library_type, *mates, "--validateMappings", "-p", str(max(1, threads))]
    stop = Event()
    with _staged(out_dir) as tmp, ThreadPoolExecutor(len(fastqs)) as pool:
        # Counting runs beside salmon (zlib releases the GIL), costing no wall time on
        # multi-core hosts; it is stopped rather than waited for when salmon fails.
        counting = [pool.submit(_fastq_records, fastq, stop) for fastq in fastqs]
        try:
            done = _run([*command, "-o", str(tmp)])
            if done.returncode:
                # A count that already failed names the bad file better than salmon does.
                stop.set()
                for future in counting:
                    if future.done():
                        _result_or_error(future, done.stderr)
                raise SalmonError(f"salmon quant of {reads} failed (exit "
                                  f"{_exit(done.returncode)}):\n{_tail(done.stderr)}\n-> check "
                                  "that the FASTQ files are intact and that the index is of "
                                  "the sample's organism")
            counts = [_result_or_error(f, done.stderr) for f in counting]
        finally:
            stop.set()
        if len(counts) == 2 and counts[0] != counts[1]:
            raise SalmonError(f"FASTQ {fastqs[0]} holds {counts[0]:,} reads but its mate "
                              f"{fastqs[1]} {counts[1]:,}; salmon used only the first "
                              f"{min(counts):,} pairs -> supply complete, matching read files")
        run = read_run(tmp)
        if run.num_processed != counts[0]:
            raise SalmonError(f"salmon quant of {reads} processed {run.num_processed:,} of "
                              f"{counts[0]:,} reads -> check that the FASTQ files are intact")
    return read_run(out_dir)


def read_run(out_dir: Path) -> SalmonRun:
    """The figures of a finished ``salmon quant`` output folder (to reuse a cached run).

    Raises
    ------
    SalmonError
        When ``quant.sf``, ``aux_info/meta_info.json`` or ``lib_format_counts.json`` is
        missing or unreadable.
    """
    out_dir = Path(out_dir)
    quant = out_dir / "quant.sf"
    meta = _read_json(out_dir / "aux_info" / "meta_info.json")
    formats = _read_json(out_dir / "lib_format_counts.json")
    if not quant.is_file():
        raise SalmonError(f"salmon output {out_dir}: no quant.sf -> quantify the sample again")
    try:
        library = formats.get("expected_format") or (meta.get("library_types") or [""])[0]
        return SalmonRun(quant_file=quant, num_processed=int(meta["num_processed"]),
                         num_mapped=int(meta["num_mapped"]),
                         mapping_rate=float(meta["percent_mapped"]) / 100.0,
                         library_type=str(library), salmon_version=str(meta["salmon_version"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise SalmonError(f"salmon output {out_dir}: aux_info/meta_info.json lacks {exc} -> "
                          "quantify the sample again") from exc


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SalmonError(f"salmon output {path.parent}: {path.name} missing or unreadable "
                          f"({exc}) -> quantify the sample again") from exc
    if not isinstance(data, dict):
        raise SalmonError(f"salmon output {path}: not a JSON object -> quantify the sample again")
    return data


@contextmanager
def _staged(target: Path, reuse: Callable[[Path], bool] | None = None) -> Iterator[Path | None]:
    """A fresh temp folder beside ``target``, renamed to ``target`` when the block succeeds and
    removed when it fails; None instead when ``reuse(target)`` says the target, checked under
    the lock, is already what the block would make. The lock serialises builds of one target,
    so temps found while holding it are killed builds' leftovers."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    old = target.with_name(f".{target.name}.old")
    with file_lock(target.with_name(f".{target.name}.lock")):
        if reuse is not None and reuse(target):
            yield None
            return
        for stale in (tmp, old):
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
        try:
            yield tmp
            # A folder cannot be renamed over a non-empty one: move the old one aside first
            # (target is briefly absent, never partial).
            if target.exists():
                target.rename(old)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)


def _run(command: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, errors="replace",
                              timeout=timeout, check=False)
    except OSError as exc:
        raise SalmonError(f"cannot run {command[0]}: {exc.strerror} -> {INSTALL_HINT}") from exc


def _exit(code: int) -> str:
    # Salmon aborts (SIGABRT) on some bad inputs; a negative code is the signal.
    return f"killed by signal {-code}" if code < 0 else str(code)


def _tail(stderr: str, lines: int = STDERR_LINES) -> str:
    """Salmon's last stderr lines that say something (warnings, errors), indented."""
    all_lines = [line.rstrip() for line in stderr.replace("\r", "\n").splitlines()
                 if line.strip()]
    telling = [line for line in all_lines if not any(n in line for n in _NOISE)]
    return "\n".join(f"    {line}" for line in (telling or all_lines)[-lines:]) or "    (none)"


def _fasta_lengths(path: Path, kmer: int) -> tuple[int, int]:
    """Records in a (gzipped) FASTA and how many are at most ``kmer`` bp long."""
    records = short = length = 0
    try:
        with _open_bytes(path) as fh:
            for line in fh:
                if line.startswith(b">"):
                    if records and length <= kmer:
                        short += 1
                    records, length = records + 1, 0
                elif records:
                    length += len(line.strip())
                elif line.strip():
                    raise SalmonError(f"transcriptome {path}: not FASTA (the first line does "
                                      "not start with '>') -> supply transcript sequences in "
                                      "FASTA format")
    except FileNotFoundError as exc:
        raise SalmonError(f"transcriptome {path}: not found -> check the path") from exc
    except (OSError, EOFError, zlib.error) as exc:
        raise SalmonError(f"transcriptome {path}: cannot be read ({exc}) -> supply an intact "
                          "plain or gzipped FASTA") from exc
    if not records:
        raise SalmonError(f"transcriptome {path}: no FASTA records -> supply the transcript "
                          "sequences")
    return records, short + (length <= kmer)


def _open_bytes(path: Path):
    """``path`` opened for binary reading, through gzip when it starts with gzip's magic."""
    with Path(path).open("rb") as fh:
        gzipped = fh.read(2) == GZIP_MAGIC
    return gzip.open(path, "rb") if gzipped else Path(path).open("rb")


def _fastq_records(path: Path, stop: Event | None = None) -> int:
    """Records in a FASTQ (plain or gzipped), from its line count (-1 if ``stop`` is set
    before the end).

    Raises
    ------
    SalmonError
        For a corrupt or truncated gzip stream, or a line count that is not a multiple of 4
        (a record cut off; multi-line FASTQ records are not supported).
    """
    lines = 0
    last = b"\n"
    try:
        with _open_bytes(path) as fh:
            while chunk := fh.read(CHUNK):
                if stop is not None and stop.is_set():
                    return -1
                lines += chunk.count(b"\n")
                last = chunk[-1:]
    except (OSError, EOFError, zlib.error) as exc:
        raise SalmonError(f"FASTQ {path}: corrupt or truncated ({exc}) -> download or copy "
                          "the file again") from exc
    lines += last != b"\n"  # a last line without its newline
    if lines % 4:
        raise SalmonError(f"FASTQ {path}: {lines:,} lines, not whole 4-line records (truncated?)"
                          " -> download or copy the file again")
    return lines // 4


def _result_or_error(future, stderr: str) -> int:
    """A record count, or its error with salmon's view of the same file added."""
    try:
        return future.result()
    except SalmonError as exc:
        raise SalmonError(f"{exc}\nsalmon's last messages:\n{_tail(stderr)}") from exc
