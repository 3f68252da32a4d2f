"""Gene counts from aligned read pairs: union-mode overlap of fragments with exons.

Semantics are those of R ``GenomicAlignments::summarizeOverlaps(mode="Union",
singleEnd=FALSE, fragments=TRUE, ignore.strand=TRUE)`` on ``exonsBy(txdb, "gene")`` (the
airway package's counts; equal gene by gene on the airway BAM subsets, see
``dge_platform_tests/test_fragment_counting.py``):

* a fragment is a mate pair (mates matched by read name, positions and flags, as Rsamtools
  ``asMates=TRUE``) or a record whose mate is not found (a singleton or single-end read);
* its aligned blocks are the CIGAR M/=/X/D runs (N gaps split blocks; D stays inside a block,
  as GenomicAlignments ``grglist`` keeps deletions);
* it counts 1 for a gene when its blocks overlap exons of exactly that one gene, else it is
  "ambiguous" (2+ genes) or "no feature";
* every alignment record is used: secondary alignments and NH > 1 are NOT filtered (each
  alignment pair of a multi-mapper is its own fragment), unless ``primary_only``.

Stranded modes follow featureCounts ``-s 1`` / ``-s 2`` on pairs (R ``GAlignmentPairs``,
strandMode 1): a pair takes read 1's strand, "reverse" inverts it, and only genes on that
strand (or on ".") are considered. A singleton takes its own strand, inverted when it is read 2,
as featureCounts does.

``resolution="votes"`` swaps the union rule for featureCounts' (the gene hit by most of the
fragment's reads wins): equal to ``featureCounts -p --countReadPairs`` (bench/counting.py).

Speed: BAM records are decoded by a numba kernel straight from the decompressed stream
(pysam reads and checks the header); per-record Python attribute access would cost several
microseconds per record, more than featureCounts spends on the whole record. Mates are
paired over the whole file by sorting one 64-bit key, so any sort order works (no index,
no name sort) at ~80 bytes of memory per record. Not handled: CIGARs of more than 65,535
operations (stored in the ``CG`` tag; long reads only).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numba
import numpy as np
import pandas as pd
import pysam

from dge_platform.gene_models import GeneModels

STRANDEDNESS = ("unstranded", "forward", "reverse")
CHUNK_BYTES = 1 << 24
RESOLUTIONS = ("union", "votes")
# Distinct genes kept per record and strand (a read overlapping more is ambiguous anyway).
HIT_SLOTS = 4
# SAM flag bits.
PAIRED, UNMAPPED, MATE_UNMAPPED = 0x1, 0x4, 0x8
READ2, SECONDARY, SUPPLEMENTARY = 0x80, 0x100, 0x800


class BamError(ValueError):
    """A BAM that cannot be counted (unreadable, truncated, or naming other chromosomes)."""


# --------------------------------------------------------------------------- kernels

@numba.njit(inline="always", cache=True)
def _u32(buf, p):
    return (np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8) | (np.int64(buf[p + 2]) << 16)
            | (np.int64(buf[p + 3]) << 24))


@numba.njit(inline="always", cache=True)
def _i32(buf, p):
    v = _u32(buf, p)
    return v - (np.int64(1) << 32) if v >= (np.int64(1) << 31) else v


@numba.njit(inline="always", cache=True)
def _add_hit(slots, g):
    """Add gene ``g`` to a record's gene slots (-1 empty); the last slot becomes -2 when
    more distinct genes are hit than there are slots."""
    k = slots.shape[0]
    for t in range(k):
        if slots[t] == g:
            return
        if slots[t] == -1:
            slots[t] = g
            return
    slots[k - 1] = -2


@numba.njit(cache=True)
def _block_hits(c, qs, qe, chrom_off, starts, ends, run_max, gene, strand, slots):
    """Add the genes whose exons overlap ``[qs, qe)`` on chromosome ``c`` to ``slots``.

    ``slots[0]`` any strand, ``slots[1]`` + strand, ``slots[2]`` - strand genes; '.' genes
    count for both strands.
    Exons are sorted by start with a running max of ends, so the backward scan stops at the
    first exon whose predecessors all end before ``qs``.
    """
    lo, hi = chrom_off[c], chrom_off[c + 1]
    a, b = lo, hi
    while a < b:  # first exon starting at or after qe
        m = (a + b) >> 1
        if starts[m] < qe:
            a = m + 1
        else:
            b = m
    i = a - 1
    while i >= lo and run_max[i] > qs:
        if ends[i] > qs:
            g = gene[i]
            _add_hit(slots[0], g)
            if strand[i] >= 0:
                _add_hit(slots[1], g)
            if strand[i] <= 0:
                _add_hit(slots[2], g)
        i -= 1


@numba.njit(cache=True)
def _parse_records(buf, n_buf, ref_map, chrom_off, starts, ends, run_max, gene, strand,
                   name_hash, ref, pos, mref, mpos, flag, hits):
    """Decode complete BAM records of ``buf[:n_buf]``; return (records, bytes consumed)."""
    p = 0
    n = 0
    while p + 4 <= n_buf:
        size = _i32(buf, p)
        if size < 32:
            return -1, p  # corrupt record
        if p + 4 + size > n_buf:
            break
        r = p + 4
        refid = _i32(buf, r)
        start = _i32(buf, r + 4)
        l_name = np.int64(buf[r + 8])
        n_cigar = np.int64(buf[r + 12]) | (np.int64(buf[r + 13]) << 8)
        f = np.int64(buf[r + 14]) | (np.int64(buf[r + 15]) << 8)
        h = np.uint64(0xCBF29CE484222325)  # FNV-1a of the read name
        for k in range(r + 32, r + 32 + l_name - 1):
            h = (h ^ np.uint64(buf[k])) * np.uint64(0x100000001B3)
        name_hash[n] = h
        ref[n] = refid
        pos[n] = start
        mref[n] = _i32(buf, r + 20)
        mpos[n] = _i32(buf, r + 24)
        flag[n] = f
        codes = hits[n]
        codes[:, :] = -1
        c = ref_map[refid] if 0 <= refid < ref_map.shape[0] else -1
        if c >= 0 and (f & 0x4) == 0:
            q = r + 32 + l_name
            block_start = start
            x = start
            for j in range(n_cigar):
                v = _u32(buf, q + 4 * j)
                op = v & 0xF
                length = v >> 4
                if op == 0 or op == 2 or op == 7 or op == 8:  # M D = X: aligned block
                    x += length
                elif op == 3:  # N: the gap ends a block
                    if x > block_start:
                        _block_hits(c, block_start, x, chrom_off, starts, ends, run_max,
                                    gene, strand, codes)
                    x += length
                    block_start = x
            if x > block_start:
                _block_hits(c, block_start, x, chrom_off, starts, ends, run_max, gene,
                            strand, codes)
        n += 1
        p += 4 + size
    return n, p


@numba.njit(cache=True)
def _pair_mates(order, key, name_hash, ref, pos, mref, mpos, flag, mate):
    """Set ``mate[i]`` to the index of record i's mate (or -1), scanning equal-key runs.

    Mates share the read name, see each other's position as their mate position, are read 1
    and read 2, and agree on the secondary/supplementary bits.
    """
    n = order.shape[0]
    s = 0
    while s < n:
        e = s + 1
        while e < n and key[order[e]] == key[order[s]]:
            e += 1
        for a in range(s, e):
            i = order[a]
            if mate[i] >= 0:
                continue
            for b in range(a + 1, e):
                j = order[b]
                if (mate[j] < 0 and name_hash[i] == name_hash[j]
                        and ref[i] == mref[j] and pos[i] == mpos[j]
                        and ref[j] == mref[i] and pos[j] == mpos[i]
                        and (flag[i] & 0x900) == (flag[j] & 0x900)
                        and (((flag[i] & 0x40) != 0 and (flag[j] & 0x80) != 0)
                             or ((flag[i] & 0x80) != 0 and (flag[j] & 0x40) != 0))):
                    mate[i] = j
                    mate[j] = i
                    break
        s = e


@numba.njit(cache=True)
def _assign(order, fragment, mate, flag, hits, mode, votes_rule, n_genes):
    """Counts per gene and (assigned, ambiguous, no feature) over fragments.

    ``order`` lists the used records grouped by ``fragment`` id; ``mode`` 0 unstranded,
    1 forward, 2 reverse. A paired record takes read 1's strand, an unpaired one its own
    strand, inverted for read 2. Union rule: exactly one gene over all the fragment's
    records. Votes rule (featureCounts): the gene hit by the most records, if unique.
    """
    counts = np.zeros(n_genes, np.int64)
    votes = np.zeros(n_genes, np.int64)
    touched = np.empty(64, np.int64)
    assigned = ambiguous = no_feature = 0
    n = order.shape[0]
    k = hits.shape[2]
    s = 0
    while s < n:
        n_touched = 0
        overflow = False
        e = s
        while e < n and fragment[order[e]] == fragment[order[s]]:
            i = order[e]
            side = 0
            if mode != 0:
                j = mate[i]
                if j >= 0:
                    first = i if (flag[i] & 0x40) != 0 else j
                    minus = (flag[first] & 0x10) != 0
                else:
                    minus = ((flag[i] & 0x10) != 0) != ((flag[i] & 0x80) != 0)
                if mode == 2:
                    minus = not minus
                side = 2 if minus else 1
            for t in range(k):
                g = hits[i, side, t]
                if g == -2:
                    overflow = True
                elif g >= 0:
                    if votes[g] == 0 and n_touched < touched.shape[0]:
                        touched[n_touched] = g
                        n_touched += 1
                    votes[g] += 1
            e += 1
        code = -1
        if overflow:
            code = -2
        elif n_touched == 1:
            code = touched[0]
        elif n_touched > 1:
            code = -2
            if votes_rule:
                best = 0
                for t in range(n_touched):
                    v = votes[touched[t]]
                    if v > best:
                        best = v
                        code = touched[t]
                    elif v == best:
                        code = -2
        for t in range(n_touched):
            votes[touched[t]] = 0
        if code >= 0:
            counts[code] += 1
            assigned += 1
        elif code == -2:
            ambiguous += 1
        else:
            no_feature += 1
        s = e
    return counts, assigned, ambiguous, no_feature


# --------------------------------------------------------------------------- python side

def chromosome_map(bam_refs: list[str], models: GeneModels, bam_path: Path) -> np.ndarray:
    """Index of each BAM reference among the GTF's chromosomes (-1 when absent).

    Raises
    ------
    BamError
        When no BAM reference names a GTF chromosome; says when a "chr" prefix explains it.
    """
    gtf_chroms = models.chromosomes
    index = {c: i for i, c in enumerate(gtf_chroms)}
    mapping = np.array([index.get(r, -1) for r in bam_refs], dtype=np.int64)
    if len(mapping) and (mapping >= 0).any():
        return mapping
    bam_set = set(bam_refs)
    hint = ""
    if any(c.startswith("chr") and c[3:] in bam_set for c in gtf_chroms):
        hint = ' The GTF uses "chr" names (e.g. "chr1") and the BAM does not ("1").'
    elif any(("chr" + c) in bam_set for c in gtf_chroms):
        hint = ' The BAM uses "chr" names (e.g. "chr1") and the GTF does not ("1").'
    raise BamError(
        f"{bam_path}: no chromosome name of the BAM ({', '.join(bam_refs[:5]) or 'none'}"
        f"{', ...' if len(bam_refs) > 5 else ''}) occurs in the GTF {models.path} "
        f"({', '.join(gtf_chroms[:5])}{', ...' if len(gtf_chroms) > 5 else ''}).{hint} "
        "Use a GTF of the genome the reads were aligned to.")


def _exon_arrays(models: GeneModels) -> tuple[np.ndarray, ...]:
    """Exons grouped by chromosome (``models.chromosomes`` order), sorted by start, with
    running max of ends."""
    e = models.exons
    chrom_code = pd.Categorical(e["chrom"], categories=models.chromosomes).codes
    order = np.lexsort((e["start"].to_numpy(), chrom_code))
    chrom_code = chrom_code[order]
    starts = e["start"].to_numpy(np.int64)[order]
    ends = e["end"].to_numpy(np.int64)[order]
    gene = e["gene"].to_numpy(np.int64)[order]
    strand = e["strand"].map({"+": 1, "-": -1, ".": 0}).to_numpy(np.int64)[order]
    chrom_off = np.searchsorted(chrom_code, np.arange(len(models.chromosomes) + 1))
    run_max = pd.Series(ends).groupby(chrom_code).cummax().to_numpy(np.int64)
    return chrom_off.astype(np.int64), starts, ends, run_max, gene, strand


def _skip_header(fh, bam_path: Path) -> None:
    """Read past the decompressed BAM header (magic, text, references) of ``fh``."""
    def take(n: int) -> bytes:
        b = fh.read(n)
        if len(b) != n:
            raise BamError(f"{bam_path}: truncated BAM header")
        return b
    magic = take(4)
    if magic != b"BAM\x01":
        raise BamError(f"{bam_path}: not a BAM file (decompressed magic {magic!r})")
    l_text = int.from_bytes(take(4), "little")
    take(l_text)
    for _ in range(int.from_bytes(take(4), "little")):
        take(int.from_bytes(take(4), "little") + 4)


def _read_records(bam_path: Path, ref_map: np.ndarray, exon_arrays) -> dict[str, np.ndarray]:
    """Decode every record of the BAM into per-record arrays (fields and gene hits)."""
    columns = {"name_hash": np.uint64, "ref": np.int32, "pos": np.int32, "mref": np.int32,
               "mpos": np.int32, "flag": np.int32}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in [*columns, "hits"]}
    try:
        with gzip.open(bam_path, "rb") as fh:
            _skip_header(fh, bam_path)
            rest = b""
            while True:
                chunk = fh.read(CHUNK_BYTES)
                if not chunk and not rest:
                    break
                buf = np.frombuffer(rest + chunk, dtype=np.uint8)
                # A record is >= 36 bytes, which bounds the records in a buffer.
                size = len(buf) // 36 + 1
                out = {k: np.empty(size, dtype=t) for k, t in columns.items()}
                out["hits"] = np.empty((size, 3, HIT_SLOTS), dtype=np.int32)
                n, used = _parse_records(buf, len(buf), ref_map, *exon_arrays, *out.values())
                if n < 0:
                    raise BamError(f"{bam_path}: corrupt BAM record near decompressed "
                                   f"offset {used}")
                for k in parts:  # copies: the buffers are sized for the worst case
                    parts[k].append(out[k][:n].copy())
                rest = bytes(buf[used:])
                if not chunk:
                    if rest:
                        raise BamError(f"{bam_path}: truncated BAM (incomplete last record)")
                    break
    except (EOFError, OSError, zlib.error) as err:
        raise BamError(f"{bam_path}: unreadable BAM ({err})") from err
    if not parts["hits"]:  # a BAM with a header and no records
        return {**{k: np.empty(0, t) for k, t in columns.items()},
                "hits": np.empty((0, 3, HIT_SLOTS), np.int32)}
    return {k: np.concatenate(v) for k, v in parts.items()}


def mate_index(rec: dict[str, np.ndarray], use: np.ndarray) -> np.ndarray:
    """Index of each record's mate among the ``use``d paired records, -1 for none."""
    flag = rec["flag"]
    candidate = np.flatnonzero(use & ((flag & PAIRED) != 0) & ((flag & MATE_UNMAPPED) == 0))
    a = rec["ref"].astype(np.int64) << 32 | rec["pos"].astype(np.int64)
    b = rec["mref"].astype(np.int64) << 32 | rec["mpos"].astype(np.int64)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    # One 64-bit key per record (order-free in the two positions), sorted once; the kernel
    # checks the exact fields, so a key collision only costs a comparison.
    key = rec["name_hash"] ^ (lo.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) \
        ^ (hi.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)) \
        ^ (flag & (SECONDARY | SUPPLEMENTARY)).astype(np.uint64)
    mate = np.full(len(flag), -1, dtype=np.int64)
    order = candidate[np.argsort(key[candidate], kind="stable")]
    _pair_mates(order, key, rec["name_hash"], rec["ref"], rec["pos"], rec["mref"],
                rec["mpos"], flag, mate)
    return mate


def fragment_ids(name_hash: np.ndarray, mate: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Fragment id per record: a pair shares its first record's index; the unpaired records
    of one read name form one fragment (as Rsamtools groups "unmated" records), -1 unused."""
    n = len(mate)
    idx = np.arange(n)
    fragment = np.where(mate >= 0, np.minimum(idx, mate), idx)
    lone = np.flatnonzero(use & (mate < 0))
    if len(lone):
        # First record of each read name among the unpaired ones, offset past record ids.
        _, first, inverse = np.unique(name_hash[lone], return_index=True, return_inverse=True)
        fragment[lone] = n + first[inverse]
    fragment[~use] = -1
    return fragment


def count_fragments(bam_path: str | Path, models: GeneModels,
                    strandedness: str = "unstranded", primary_only: bool = False,
                    both_mates: bool = False, resolution: str = "union",
                    ) -> tuple[pd.Series, dict[str, int]]:
    """Count fragments per gene by union-mode overlap with the genes' exons.

    Parameters
    ----------
    bam_path
        A BAM file, any sort order (mates are paired over the whole file), no index needed.
    models
        Gene models from :func:`dge_platform.gene_models.read_gtf`.
    strandedness
        "unstranded", "forward" (read 1 on the gene's strand, featureCounts ``-s 1``) or
        "reverse" (``-s 2``).
    primary_only
        Skip secondary alignments (flag 0x100); by default every record is used, as R does.
    resolution
        "union" (R summarizeOverlaps): a fragment counts when all its records together hit
        exactly one gene. "votes" (featureCounts, no ``-O``): each record votes for every
        gene it hits and the gene with the most votes wins, if unique; a pair with one mate
        in genes A and B and the other in A counts for A. A record hitting more than
        ``HIT_SLOTS`` genes makes its fragment ambiguous in both.
    both_mates
        Count only pairs with both mates found (featureCounts ``-B``, R ``GAlignmentPairs``);
        by default unpaired records count too, as R ``fragments=TRUE`` and featureCounts do.

    Returns
    -------
    counts
        Fragments per ``gene_id`` for every gene of ``models`` (zeros included), int64.
    stats
        featureCounts-style summary: ``Assigned``, ``Unassigned_Unmapped``,
        ``Unassigned_Secondary`` (records), ``Unassigned_NoFeatures``, ``Unassigned_Singleton``
        (with ``both_mates``), ``Unassigned_Ambiguity``, plus
        ``records``, ``fragments``, ``fragments_pairs`` and ``fragments_singletons``.

    Raises
    ------
    BamError
        When the BAM is missing, unreadable or truncated, or its chromosome names do not occur
        in the GTF (the message says when "chr" prefixes differ).
    ValueError
        For an unknown ``strandedness``.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, "
                         f"got {resolution!r}")
    if strandedness not in STRANDEDNESS:
        raise ValueError(f"strandedness must be one of {', '.join(STRANDEDNESS)}, "
                         f"got {strandedness!r}")
    bam_path = Path(bam_path)
    if not bam_path.is_file():
        raise BamError(f"{bam_path}: BAM file not found")
    try:
        with pysam.AlignmentFile(str(bam_path), "rb", check_sq=False) as bam:
            bam_refs = list(bam.references)
    except (ValueError, OSError) as err:
        raise BamError(f"{bam_path}: unreadable BAM ({err})") from err
    ref_map = chromosome_map(bam_refs, models, bam_path)
    rec = _read_records(bam_path, ref_map, _exon_arrays(models))
    flag = rec["flag"]
    unmapped = (flag & UNMAPPED) != 0
    secondary = (flag & SECONDARY) != 0
    use = ~unmapped & ~secondary if primary_only else ~unmapped
    mate = mate_index(rec, use)
    paired = mate >= 0
    lone = use & ~paired
    if both_mates:
        use = use & paired
    fragment = fragment_ids(rec["name_hash"], mate, use)
    used = np.flatnonzero(use)
    order = used[np.argsort(fragment[used], kind="stable")]
    counts, assigned, ambiguous, no_feature = _assign(
        order, fragment, mate, flag, rec["hits"], STRANDEDNESS.index(strandedness),
        resolution == "votes", len(models.genes))
    n_pairs = int((use & paired).sum()) // 2
    n_fragments = int(assigned + ambiguous + no_feature)  # _assign gives each one outcome
    # An unmapped fragment: an unmapped record whose mate is unmapped too (or that has
    # none), counted once per pair, as featureCounts reports it.
    lone_unmapped = unmapped & (((flag & PAIRED) == 0) | ((flag & MATE_UNMAPPED) != 0))
    unmapped_fragments = int((lone_unmapped & ((flag & READ2) == 0)).sum())
    stats = {
        "Assigned": int(assigned),
        "Unassigned_Unmapped": unmapped_fragments,
        "Unassigned_Secondary": int((~unmapped & secondary).sum()) if primary_only else 0,
        "Unassigned_NoFeatures": int(no_feature),
        "Unassigned_Singleton": int(len(np.unique(rec["name_hash"][lone]))) if both_mates else 0,
        "Unassigned_Ambiguity": int(ambiguous),
        "records": int(len(flag)),
        "fragments": n_fragments,
        "fragments_pairs": n_pairs,
        "fragments_singletons": n_fragments - n_pairs,
    }
    series = pd.Series(counts, index=models.genes.index.copy(), name=bam_path.name)
    series.index.name = "gene_id"
    return series, stats
