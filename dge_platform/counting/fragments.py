"""Gene counts from aligned read pairs: union-mode overlap of fragments with exons.

Semantics are those of R ``GenomicAlignments::summarizeOverlaps(mode="Union",
singleEnd=FALSE, fragments=TRUE, ignore.strand=TRUE)`` on ``exonsBy(txdb, "gene")`` (the
airway package's counts; equal gene by gene on the airway BAM subsets, see
``dge_platform_tests/counting/test_fragment_counting.py``):

* a fragment is a mate pair (mates matched by read name, positions and flags, as Rsamtools
  ``asMates=TRUE``) or the records of a read name whose mates are not found (singletons,
  single-end reads);
* its aligned blocks are the CIGAR M/=/X/D runs (N gaps split blocks; D stays inside a block,
  as GenomicAlignments ``grglist`` keeps deletions);
* it counts 1 for a gene when its blocks overlap exons of exactly that one gene, else it is
  "ambiguous" (2+ genes) or "no feature";
* with ``multimapping="count"`` (the default) every alignment record is used: secondary
  alignments and NH > 1 are NOT filtered (each alignment pair of a multi-mapper is its own
  fragment), unless ``primary_only``.

``multimapping="skip"`` is featureCounts' default instead (no ``-M``): a fragment with a
record whose NH tag is above 1 is not counted and is reported as ``Unassigned_MultiMapping``.
featureCounts checks this before the secondary flag (``--primary``); a record without NH
counts as unique. The ``multimapping_fragments`` statistic gives their number in both modes.

Stranded modes follow featureCounts ``-s 1`` / ``-s 2`` on pairs (R ``GAlignmentPairs``,
strandMode 1): a pair takes read 1's strand, "reverse" inverts it, and only genes on that
strand (or on ".") are considered. A singleton takes its own strand, inverted when it is read 2,
as featureCounts does.

``resolution="votes"`` swaps the union rule for featureCounts' (the gene hit by most of the
fragment's reads wins, each unpaired record its own fragment): equal to ``featureCounts -p
--countReadPairs`` (``-M`` for "count", ``--primary`` for ``primary_only``), gene by gene and
on every summary line, on the airway subsets (tests) and a simulated BAM (bench/counting.py).
``both_mates`` is R's ``GAlignmentPairs`` (mates found), not featureCounts ``-B`` (mate mapped).

Speed: BAM records are decoded by a numba kernel straight from the decompressed stream
(pysam reads and checks the header); per-record Python attribute access would cost several
microseconds per record, more than featureCounts spends on the whole record. Mates are
paired over the whole file by sorting one 64-bit key per record in place, so any sort order
works (no index, no name sort). Memory: ~45 bytes per record at the peak (36 of fields, NH
and a 4-byte gene code, the gene lists of multi-gene records on the side, then the sort
keys and mate indices); featureCounts streams. Not handled: CIGARs of more than 65,535
operations (stored in the ``CG`` tag; long reads only).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gzip
import sys
import zlib
from pathlib import Path

import numba
import numpy as np
import pandas as pd
import pysam

from dge_platform.readers.gene_models import GeneModels

STRANDEDNESS = ("unstranded", "forward", "reverse")
CHUNK_BYTES = 1 << 22  # decompressed bytes decoded at a time
RESOLUTIONS = ("union", "votes")
MULTIMAPPING = ("count", "skip")
# Distinct genes kept per record; a read overlapping more makes its fragment ambiguous
# (featureCounts could still give it to a gene its mate votes for too).
MAX_GENES_PER_READ = 1024
# SAM flag bits.
PAIRED, UNMAPPED, MATE_UNMAPPED = 0x1, 0x4, 0x8
READ2, SECONDARY, SUPPLEMENTARY = 0x80, 0x100, 0x800


def _malloc_trim():
    """glibc's ``malloc_trim``, or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


_MALLOC_TRIM = _malloc_trim()


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
def _add_hit(genes, n, g, sides):
    """Add gene ``g`` on ``sides`` (bit 0: +, bit 1: -) to ``genes[:n]`` (entries
    ``gene << 2 | sides``); return the new n, -1 past ``MAX_GENES_PER_READ`` genes."""
    for t in range(n):
        if (genes[t] >> 2) == g:
            genes[t] |= sides
            return n
    if n == genes.shape[0]:
        return -1
    genes[n] = (g << 2) | sides
    return n + 1


@numba.njit(cache=True)
def _block_hits(c, qs, qe, chrom_off, starts, ends, run_max, gene, strand, genes, n):
    """Add the genes whose exons overlap ``[qs, qe)`` on chromosome ``c`` to ``genes[:n]``
    (see ``_add_hit``; a '.' exon counts on both sides); return the new n (-1: too many).

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
    while i >= lo and run_max[i] > qs and n >= 0:
        if ends[i] > qs:
            sides = 1 if strand[i] > 0 else (2 if strand[i] < 0 else 3)
            n = _add_hit(genes, n, gene[i], sides)
        i -= 1
    return n


@numba.njit(inline="always", cache=True)
def _u16(buf, p):
    return np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8)


@numba.njit(cache=True)
def _aux_nh(buf, a, end):
    """The NH value among the aux fields ``buf[a:end]`` (1 when absent, featureCounts' reading
    of a missing NH; 0 for a negative one), or -1 when a field is malformed (unknown type or
    past the record)."""
    while a + 3 <= end:
        nh = buf[a] == 78 and buf[a + 1] == 72  # "NH"
        t = buf[a + 2]
        a += 3
        if t == 65 or t == 99 or t == 67:  # A c C
            if nh and a + 1 <= end:
                v = np.int64(buf[a])
                return 0 if t == 99 and v >= 128 else v
            a += 1
        elif t == 115 or t == 83:  # s S
            if nh and a + 2 <= end:
                v = _u16(buf, a)
                return 0 if t == 115 and v >= 32768 else v
            a += 2
        elif t == 105 or t == 73:  # i I
            if nh and a + 4 <= end:
                return max(_i32(buf, a), 0) if t == 105 else _u32(buf, a)
            a += 4
        elif t == 102:  # f
            a += 4
        elif t == 100:  # d (htslib reads it, not in the spec)
            a += 8
        elif t == 90 or t == 72:  # Z H: NUL-terminated
            while a < end and buf[a] != 0:
                a += 1
            a += 1
        elif t == 66:  # B: subtype, int32 count, values
            if a + 5 > end:
                return -1
            sub = buf[a]
            count = _u32(buf, a + 1)
            if sub == 99 or sub == 67:
                width = 1
            elif sub == 115 or sub == 83:
                width = 2
            elif sub == 105 or sub == 73 or sub == 102:
                width = 4
            else:
                return -1
            a += 5 + width * count
        else:
            return -1
    return 1 if a <= end else -1


@numba.njit(cache=True)
def _parse_records(buf, n_buf, ref_map, chrom_off, starts, ends, run_max, gene, strand,
                   name_hash, ref, pos, mref, mpos, flag, nh, hit, multi_start, multi_n,
                   flat):
    """Decode complete BAM records of ``buf[:n_buf]``.

    Returns (records, multi-gene records, genes in ``flat``, bytes consumed, ``flat``);
    records is -1 for a corrupt record. ``nh[i]`` is the NH tag (1 when absent). ``hit[i]``
    codes record i's genes: -1 none; ``g << 2 | sides`` for exactly one gene g (bit 0: it
    counts on the + side, bit 1: on the - side, both for a '.' gene); ``-2 - m`` for
    several: multi-gene record m has ``multi_n[m]`` genes (-1 for more than
    MAX_GENES_PER_READ), coded alike in ``flat`` from ``multi_start[m]``. Most records hit at
    most one gene, so a record costs 4 bytes of gene codes. ``flat`` is returned grown if
    needed.
    """
    genes = np.empty(MAX_GENES_PER_READ, np.int32)
    p = 0
    n = 0
    m = 0
    n_flat = 0
    while p + 4 <= n_buf:
        size = _i32(buf, p)
        if size < 32:
            return -1, m, n_flat, p, flat  # corrupt record
        if p + 4 + size > n_buf:
            break
        r = p + 4
        end = r + size
        refid = _i32(buf, r)
        start = _i32(buf, r + 4)
        l_name = np.int64(buf[r + 8])
        n_cigar = _u16(buf, r + 12)
        f = _u16(buf, r + 14)
        l_seq = _i32(buf, r + 16)
        q = r + 32 + l_name
        aux = q + 4 * n_cigar + ((l_seq + 1) >> 1) + l_seq
        if l_seq < 0 or aux > end:
            return -1, m, n_flat, p, flat
        v = _aux_nh(buf, aux, end)
        if v < 0:
            return -1, m, n_flat, p, flat
        nh[n] = min(v, 2147483647)
        h = np.uint64(0xCBF29CE484222325)  # FNV-1a of the read name
        for k in range(r + 32, r + 32 + l_name - 1):
            h = (h ^ np.uint64(buf[k])) * np.uint64(0x100000001B3)
        name_hash[n] = h
        ref[n] = refid
        pos[n] = start
        mref[n] = _i32(buf, r + 20)
        mpos[n] = _i32(buf, r + 24)
        flag[n] = f
        code = -1
        c = ref_map[refid] if 0 <= refid < ref_map.shape[0] else -1
        if c >= 0 and (f & 0x4) == 0:
            k = 0
            block_start = start
            x = start
            for j in range(n_cigar):
                w = _u32(buf, q + 4 * j)
                op = w & 0xF
                length = w >> 4
                if op == 0 or op == 2 or op == 7 or op == 8:  # M D = X: aligned block
                    x += length
                elif op == 3:  # N: the gap ends a block
                    if x > block_start and k >= 0:
                        k = _block_hits(c, block_start, x, chrom_off, starts, ends, run_max,
                                        gene, strand, genes, k)
                    x += length
                    block_start = x
            if x > block_start and k >= 0:
                k = _block_hits(c, block_start, x, chrom_off, starts, ends, run_max, gene,
                                strand, genes, k)
            if k == 1:
                code = genes[0]
            elif k != 0:
                if n_flat + genes.shape[0] > flat.shape[0]:
                    grown = np.empty(max(n_flat + genes.shape[0], 2 * flat.shape[0]),
                                     np.int32)
                    grown[:n_flat] = flat[:n_flat]
                    flat = grown
                multi_start[m] = n_flat
                multi_n[m] = k
                for t in range(k):
                    flat[n_flat] = genes[t]
                    n_flat += 1
                code = -2 - m
                m += 1
        hit[n] = code
        n += 1
        p = end
    return n, m, n_flat, p, flat


@numba.njit(cache=True)
def _mate_keys(candidate, n_candidates, idx_bits, name_hash, ref, pos, mref, mpos, flag):
    """Per candidate record (``candidate[i]`` true) a 64-bit hash equal for mates (read
    name, the two positions order-free, the secondary/supplementary bits), its low
    ``idx_bits`` bits replaced by the record index: sorting these groups possible mates
    and carries their indices along (a truncated hash only costs comparisons)."""
    packed = np.empty(n_candidates, np.uint64)
    low = (np.uint64(1) << np.uint64(idx_bits)) - np.uint64(1)
    t = 0
    for i in range(candidate.shape[0]):
        if not candidate[i]:
            continue
        a = (np.int64(ref[i]) << 32) | (np.int64(pos[i]) & 0xFFFFFFFF)
        b = (np.int64(mref[i]) << 32) | (np.int64(mpos[i]) & 0xFFFFFFFF)
        lo, hi = (a, b) if a <= b else (b, a)
        key = (name_hash[i] ^ (np.uint64(lo) * np.uint64(0x9E3779B97F4A7C15))
               ^ (np.uint64(hi) * np.uint64(0xC2B2AE3D27D4EB4F))
               ^ np.uint64(flag[i] & 0x900))
        packed[t] = (key & ~low) | np.uint64(i)
        t += 1
    return packed


@numba.njit(cache=True)
def _pair_mates(packed, idx_bits, name_hash, ref, pos, mref, mpos, flag, mate):
    """Set ``mate[i]`` to the index of record i's mate (or leave -1), scanning runs of equal
    hash in the sorted ``packed`` keys of ``_mate_keys``.

    Mates share the read name, see each other's position as their mate position, are read 1
    and read 2, and agree on the secondary/supplementary bits.
    """
    n = packed.shape[0]
    low = (np.uint64(1) << np.uint64(idx_bits)) - np.uint64(1)
    s = 0
    while s < n:
        e = s + 1
        while e < n and (packed[e] & ~low) == (packed[s] & ~low):
            e += 1
        for a in range(s, e):
            i = np.int64(packed[a] & low)
            if mate[i] >= 0:
                continue
            for b in range(a + 1, e):
                j = np.int64(packed[b] & low)
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


@numba.njit(inline="always", cache=True)
def _vote(g, votes, touched, n_touched):
    if votes[g] == 0:
        touched[n_touched] = g
        n_touched += 1
    votes[g] += 1
    return n_touched


@numba.njit(cache=True)
def _resolve(records, s, e, mate, flag, nh, hit, multi_start, multi_n, flat, mode,
             votes_rule, skip_multi, primary_only, counts, out, votes, touched):
    """Give the fragment of records ``records[s:e]`` its outcome (see ``_assign``)."""
    is_multi = False
    is_secondary = False
    for a in range(s, e):
        i = records[a]
        is_multi |= nh[i] > 1
        is_secondary |= (flag[i] & 0x100) != 0
    dropped_secondary = primary_only and is_secondary
    if is_multi and not dropped_secondary:
        out[5] += 1
    if is_multi and skip_multi:
        out[3] += 1
        return
    if dropped_secondary:
        out[4] += 1
        return
    n_touched = 0
    overflow = False
    # Strand evidence, whatever the mode: the one gene (code) the records hit ignoring
    # strand, and the forward-mode sides of the records that hit it.
    only = -1
    several = False
    frag_sides = 0
    for a in range(s, e):
        i = records[a]
        j = mate[i]
        if j >= 0:
            first = i if (flag[i] & 0x40) != 0 else j
            minus = (flag[first] & 0x10) != 0
        else:
            minus = ((flag[i] & 0x10) != 0) != ((flag[i] & 0x80) != 0)
        read_side = 2 if minus else 1  # forward mode's side
        side = 0 if mode == 0 else (read_side if mode == 1 else 3 - read_side)
        h = hit[i]
        if h >= 0:
            if only < 0:
                only = h
            elif (only >> 2) != (h >> 2):
                several = True
            else:
                only |= h
            frag_sides |= read_side
            if side == 0 or (h & side) != 0:
                n_touched = _vote(h >> 2, votes, touched, n_touched)
        elif h <= -2:
            several = True
            mi = -2 - h
            k = multi_n[mi]
            if k < 0:
                overflow = True
            for t in range(multi_start[mi], multi_start[mi] + k):
                h = flat[t]
                if side == 0 or (h & side) != 0:
                    n_touched = _vote(h >> 2, votes, touched, n_touched)
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
        out[0] += 1
    elif code == -2:
        out[1] += 1
    else:
        out[2] += 1
    if mate[records[s]] >= 0:
        out[6] += 1
    if only >= 0 and not several:
        gene_side = only & 3  # 3: a '.' gene (or exons on both strands), no evidence
        if (gene_side == 1 or gene_side == 2) and (frag_sides == 1 or frag_sides == 2):
            out[7 if frag_sides == gene_side else 8] += 1


@numba.njit(cache=True)
def _assign(use, mate, grouped, lone_order, lone_group, flag, nh, hit, multi_start, multi_n,
            flat, mode, votes_rule, skip_multi, primary_only, n_genes):
    """Counts per gene and outcome totals over the fragments of the ``use``d records.

    A fragment is a mate pair, and either each unpaired record alone or (``grouped``) a run
    of equal ``lone_group`` in the unpaired records ``lone_order``. ``mode`` 0
    unstranded, 1 forward, 2 reverse. A fragment with a record of NH > 1 is a multi-mapper;
    one of secondary records is secondary. featureCounts' order of filters: a multi-mapper is
    dropped when ``skip_multi`` (even if secondary), then a secondary one when
    ``primary_only``; the rest are resolved. A paired record takes read 1's strand, an
    unpaired one its own strand, inverted for read 2. Union rule: exactly one gene over all
    the fragment's records. Votes rule (featureCounts): the gene hit by the most records, if
    unique.

    Strand evidence, in every mode: a resolved fragment whose records, ignoring strand, hit
    exactly one gene, on + or - (not '.'), is sense when its forward-mode strand (that of its
    records hitting the gene) is the gene's, antisense when it is the other; neither when those
    records disagree (several unpaired records of one read name).

    Returns counts and (assigned, ambiguous, no feature, multi-mappers dropped, secondary
    dropped, multi-mappers among the fragments not dropped as secondary, resolved pairs,
    sense, antisense).
    """
    counts = np.zeros(n_genes, np.int64)
    votes = np.zeros(n_genes, np.int64)
    touched = np.empty(n_genes, np.int64)  # the distinct genes of a fragment
    out = np.zeros(9, np.int64)
    pair = np.empty(2, np.int64)
    for i in range(use.shape[0]):
        if not use[i]:
            continue
        j = mate[i]
        if j > i or (j < 0 and not grouped):
            pair[0] = i
            pair[1] = j
            _resolve(pair, 0, 2 if j >= 0 else 1, mate, flag, nh, hit, multi_start, multi_n,
                     flat, mode, votes_rule, skip_multi, primary_only, counts, out, votes,
                     touched)
    n = lone_order.shape[0]
    s = 0
    while s < n:
        e = s + 1
        while e < n and lone_group[e] == lone_group[s]:
            e += 1
        _resolve(lone_order, s, e, mate, flag, nh, hit, multi_start, multi_n, flat, mode,
                 votes_rule, skip_multi, primary_only, counts, out, votes, touched)
        s = e
    return counts, out


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


def _release_freed_memory() -> None:
    """Return freed heap memory to the system (glibc ``malloc_trim``; nothing elsewhere).

    The per-buffer copies of ``_read_records`` are small heap blocks; freed once
    concatenated, they would stay resident (glibc only trims the heap's top) and double the
    peak."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _read_records(bam_path: Path, ref_map: np.ndarray, exon_arrays) -> dict[str, np.ndarray]:
    """Decode every record of the BAM into per-record arrays (fields, NH, gene code) and the
    gene lists of the multi-gene records (``multi_start``, ``multi_n``, ``flat``; see
    ``_parse_records``)."""
    columns = {"name_hash": np.uint64, "ref": np.int32, "pos": np.int32, "mref": np.int32,
               "mpos": np.int32, "flag": np.int32, "nh": np.int32, "hit": np.int32}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in [*columns, "multi_start", "multi_n",
                                                          "flat"]}
    out: dict[str, np.ndarray] = {}
    flat = np.empty(0, np.int32)
    n_multi = n_flat = 0
    try:
        with gzip.open(bam_path, "rb") as fh:
            _skip_header(fh, bam_path)
            rest = b""
            while True:
                chunk = fh.read(CHUNK_BYTES)
                if not chunk and not rest:
                    break
                buf = np.frombuffer(rest + chunk, dtype=np.uint8)
                # A record is >= 36 bytes, which bounds the records in a buffer. The output
                # buffers are reused (a buffer is at most two chunks unless a record is
                # longer than a chunk), their records copied out.
                size = len(buf) // 36 + 1
                if not out or len(out["hit"]) < size:
                    size = max(size, 2 * CHUNK_BYTES // 36 + 1)
                    out = {k: np.empty(size, dtype=t) for k, t in columns.items()}
                    out["multi_start"] = np.empty(size, np.int64)
                    out["multi_n"] = np.empty(size, np.int32)
                    flat = np.empty(max(len(flat), 4 * size), np.int32)
                n, m, k, used, flat = _parse_records(buf, len(buf), ref_map, *exon_arrays,
                                                     *out.values(), flat)
                if n < 0:
                    raise BamError(f"{bam_path}: corrupt BAM record near decompressed "
                                   f"offset {used}")
                for key in columns:
                    parts[key].append(out[key][:n].copy())
                if m:  # multi-gene records are numbered per buffer: offset past earlier ones
                    hit = parts["hit"][-1]
                    hit[hit <= -2] -= n_multi
                    parts["multi_start"].append(out["multi_start"][:m] + n_flat)
                    parts["multi_n"].append(out["multi_n"][:m].copy())
                    parts["flat"].append(flat[:k].copy())
                    n_multi += m
                    n_flat += k
                rest = buf[used:].tobytes()
                if not chunk:
                    if rest:
                        raise BamError(f"{bam_path}: truncated BAM (incomplete last record)")
                    break
    except (EOFError, OSError, zlib.error) as err:
        raise BamError(f"{bam_path}: unreadable BAM ({err})") from err
    del out, flat
    empty = {**columns, "multi_start": np.int64, "multi_n": np.int32, "flat": np.int32}
    rec = {}
    for key, t in empty.items():  # one column at a time: the parts go as it is built
        rec[key] = np.concatenate(parts.pop(key)) if parts[key] else np.empty(0, t)
        _release_freed_memory()
    return rec


def mate_index(rec: dict[str, np.ndarray], use: np.ndarray) -> np.ndarray:
    """Index of each record's mate among the ``use``d paired records, -1 for none (int32
    when the indices fit)."""
    flag = rec["flag"]
    n = len(flag)
    candidate = use & ((flag & PAIRED) != 0) & ((flag & MATE_UNMAPPED) == 0)
    idx_bits = max(1, (n - 1).bit_length())
    packed = _mate_keys(candidate, int(candidate.sum()), idx_bits, rec["name_hash"],
                        rec["ref"], rec["pos"], rec["mref"], rec["mpos"], flag)
    del candidate
    packed.sort()  # in place: 8 bytes a candidate, no argsort
    mate = np.full(n, -1, dtype=np.int32 if n < 2**31 else np.int64)
    _pair_mates(packed, idx_bits, rec["name_hash"], rec["ref"], rec["pos"], rec["mref"],
                rec["mpos"], flag, mate)
    return mate


def unpaired_groups(name_hash: np.ndarray, lone: np.ndarray,
                    split: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The unpaired records ``lone`` (indices) sorted into groups of one read name (and equal
    ``split``), as Rsamtools makes one fragment of a name's "unmated" records: (records,
    group key per record)."""
    group = name_hash[lone]
    if split is not None:
        group = group ^ (split[lone].astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    by_group = np.argsort(group, kind="stable")
    return lone[by_group].astype(np.int64), group[by_group]


STRAND_EVIDENCE_MIN = 1000
"""Fewest evidence fragments (sense + antisense) :func:`infer_strandedness` decides on."""


def strand_fraction(stats: dict[str, int]) -> float | None:
    """``strand_sense / (strand_sense + strand_antisense)`` of :func:`count_fragments`'s
    stats (RSeQC infer_experiment's "1++,1--,2+-,2-+" fraction for pairs), None without
    evidence."""
    sense, antisense = stats.get("strand_sense", 0), stats.get("strand_antisense", 0)
    return sense / (sense + antisense) if sense + antisense else None


def infer_strandedness(stats: dict[str, int], min_fragments: int = STRAND_EVIDENCE_MIN,
                       stranded: float = 0.8, unstranded: tuple[float, float] = (0.4, 0.6),
                       ) -> str | None:
    """The library's ``strandedness`` from the strand evidence of :func:`count_fragments`'s
    stats (computed whatever strandedness it was counted with): "forward" when at least
    ``stranded`` of the evidence fragments are sense, "reverse" when at least ``stranded``
    are antisense, "unstranded" when the sense fraction is within ``unstranded``; None when
    undecided (fewer than ``min_fragments`` evidence fragments, or a fraction in between)."""
    fraction = strand_fraction(stats)
    if fraction is None or stats["strand_sense"] + stats["strand_antisense"] < min_fragments:
        return None
    if fraction >= stranded:
        return "forward"
    if 1 - fraction >= stranded:
        return "reverse"
    if unstranded[0] <= fraction <= unstranded[1]:
        return "unstranded"
    return None


def count_fragments(bam_path: str | Path, models: GeneModels,
                    strandedness: str = "unstranded", primary_only: bool = False,
                    both_mates: bool = False, resolution: str = "union",
                    multimapping: str = "count",
                    ) -> tuple[pd.Series, dict[str, int]]:
    """Count fragments per gene by union-mode overlap with the genes' exons.

    Parameters
    ----------
    bam_path
        A BAM file, any sort order (mates are paired over the whole file), no index needed.
    models
        Gene models from :func:`dge_platform.readers.gene_models.read_gtf`.
    strandedness
        "unstranded", "forward" (read 1 on the gene's strand, featureCounts ``-s 1``) or
        "reverse" (``-s 2``).
    primary_only
        Skip secondary alignments (flag 0x100; featureCounts ``--primary``); by default every
        record is used, as R does.
    resolution
        "union" (R summarizeOverlaps): a fragment counts when all its records together hit
        exactly one gene; the unpaired records of one read name form one fragment (Rsamtools).
        "votes" (featureCounts ``-p --countReadPairs``, no ``-O``): each record votes for
        every gene it hits and the gene with the most votes wins, if unique (a pair with one
        mate in genes A and B and the other in A counts for A); each unpaired record is its
        own fragment. A record hitting more than ``MAX_GENES_PER_READ`` genes makes its
        fragment ambiguous in both.
    both_mates
        Count only pairs with both mates found (R ``GAlignmentPairs``); by default unpaired
        records count too, as R ``fragments=TRUE`` and featureCounts do. The unpaired
        fragments are reported as ``Unassigned_Singleton``. featureCounts ``-B`` differs for
        a record whose mapped mate is missing from the BAM: it counts it.
    multimapping
        "count": every alignment counts, a multi-mapper once per alignment pair (R
        summarizeOverlaps, featureCounts ``-M``). "skip": a fragment with a record whose NH
        tag is above 1 is not counted but reported as ``Unassigned_MultiMapping``
        (featureCounts' default; a record without NH is unique, and the secondary flag alone
        does not make a multi-mapper).

    Returns
    -------
    counts
        Fragments per ``gene_id`` for every gene of ``models`` (zeros included), int64.
    stats
        featureCounts-style summary, in fragments: ``Assigned``, ``Unassigned_Unmapped``,
        ``Unassigned_Singleton`` (with ``both_mates``), ``Unassigned_MultiMapping`` (with
        "skip"), ``Unassigned_Secondary`` (with ``primary_only``), ``Unassigned_NoFeatures``,
        ``Unassigned_Ambiguity``; featureCounts' order of filters, so with "skip" and
        ``primary_only`` a secondary multi-mapper is ``Unassigned_MultiMapping``. Plus
        ``records``, ``fragments`` (resolved: Assigned + NoFeatures + Ambiguity),
        ``fragments_pairs`` and ``fragments_singletons`` (of those) and
        ``multimapping_fragments``: fragments with NH > 1 among those the other filters
        keep, counted ("count") or not ("skip"). Strand evidence, the same whatever
        ``strandedness`` (see :func:`infer_strandedness`): ``strand_sense`` and
        ``strand_antisense``, among the resolved fragments (those counted in ``fragments``)
        that hit, ignoring strand, exactly one gene and that gene is on + or - (not "."),
        those whose strand (read 1's for a pair; an unpaired record's own, inverted for read
        2: the "forward" rule) is the gene's, and the opposite. Unpaired records of one read
        name that hit the gene on both strands count in neither. Without "." genes,
        unstranded union ``Assigned`` = sense + antisense (except those rare read names);
        without genes of opposite strands overlapping one fragment, "forward" ``Assigned`` =
        sense and "reverse" ``Assigned`` = antisense (union).

    Raises
    ------
    BamError
        When the BAM is missing, unreadable or truncated, or its chromosome names do not occur
        in the GTF (the message says when "chr" prefixes differ).
    ValueError
        For an unknown ``strandedness``, ``resolution`` or ``multimapping``.
    """
    for name, value, allowed in (("resolution", resolution, RESOLUTIONS),
                                 ("strandedness", strandedness, STRANDEDNESS),
                                 ("multimapping", multimapping, MULTIMAPPING)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    bam_path = Path(bam_path)
    if not bam_path.is_file():
        raise BamError(f"{bam_path}: BAM file not found")
    try:
        with pysam.AlignmentFile(str(bam_path), "rb", check_sq=False) as bam:
            bam_refs = list(bam.references)
    except (ValueError, OSError) as err:
        raise BamError(f"{bam_path}: unreadable BAM ({err})") from err
    ref_map = chromosome_map(bam_refs, models, bam_path)
    if len(models.genes) >= 1 << 29:  # hit codes keep the gene in 29 bits
        raise ValueError(f"{models.path}: more than {1 << 29:,} genes")
    rec = _read_records(bam_path, ref_map, _exon_arrays(models))
    flag = rec["flag"]
    unmapped = (flag & UNMAPPED) != 0
    mapped = ~unmapped
    # Pairs never mix primary and secondary records, so pairing every mapped record and then
    # filtering pairs the same records as filtering first.
    mate = mate_index(rec, mapped)
    lone = mapped & (mate < 0)
    use = mapped & ~lone if both_mates else mapped
    if resolution == "union":  # Rsamtools: one fragment per read name's unpaired records
        lone_order, lone_group = unpaired_groups(
            rec["name_hash"], np.flatnonzero(lone),
            (flag & SECONDARY) != 0 if primary_only else None)
        n_singletons = int(len(np.unique(lone_group))) if both_mates else 0
        if both_mates:
            lone_order, lone_group = lone_order[:0], lone_group[:0]
    else:  # featureCounts: each unpaired record is a fragment
        lone_order, lone_group = np.empty(0, np.int64), np.empty(0, np.uint64)
        n_singletons = int(lone.sum()) if both_mates else 0
    del lone
    counts, out = _assign(
        use, mate, resolution == "union", lone_order, lone_group, flag, rec["nh"], rec["hit"],
        rec["multi_start"], rec["multi_n"], rec["flat"],
        STRANDEDNESS.index(strandedness), resolution == "votes", multimapping == "skip",
        primary_only, len(models.genes))
    (assigned, ambiguous, no_feature, multi_skipped, secondary_skipped, multi_kept, pairs,
     sense, antisense) = (int(v) for v in out)
    n_fragments = assigned + ambiguous + no_feature  # _assign gives each one outcome
    # An unmapped fragment: an unmapped record whose mate is unmapped too (or that has
    # none), counted once per pair, as featureCounts reports it.
    lone_unmapped = unmapped & (((flag & PAIRED) == 0) | ((flag & MATE_UNMAPPED) != 0))
    unmapped_fragments = int((lone_unmapped & ((flag & READ2) == 0)).sum())
    stats = {
        "Assigned": assigned,
        "Unassigned_Unmapped": unmapped_fragments,
        "Unassigned_Singleton": n_singletons,
        "Unassigned_MultiMapping": multi_skipped,
        "Unassigned_Secondary": secondary_skipped,
        "Unassigned_NoFeatures": no_feature,
        "Unassigned_Ambiguity": ambiguous,
        "records": int(len(flag)),
        "fragments": n_fragments,
        "fragments_pairs": pairs,
        "fragments_singletons": n_fragments - pairs,
        "multimapping_fragments": multi_kept,
        "strand_sense": sense,
        "strand_antisense": antisense,
    }
    series = pd.Series(counts, index=models.genes.index.copy(), name=bam_path.name)
    series.index.name = "gene_id"
    return series, stats
