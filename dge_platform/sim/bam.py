"""Simulated paired-end RNA-seq alignments: a synthetic GTF and a coordinate-sorted BAM.

Annotation: ``n_genes`` genes over 10 chromosomes (``1``..``10``), each one transcript of
2-12 exons (100-400 bp) with 300-5,000 bp introns, random strand; gene starts are uniform, so
some genes overlap (ambiguous fragments exist, as in real annotations).

Reads: ``n_pairs`` fragments, 90 % from genes (gene chosen by a log-normal expression,
fragment start uniform on the gene's exonic sequence, 2x75 bp, insert 150-400 bp measured on
the transcript, so reads crossing an exon junction get an ``N`` gap) and 10 % from random
genomic positions (intronic / intergenic: no feature). Read 1 is on the gene's strand or the
opposite with equal probability (an unstranded library), or always on it (``stranded=
"forward"``, featureCounts ``-s 1``) or always opposite (``"reverse"``, ``-s 2``, e.g. TruSeq
stranded); intergenic pairs take either strand. Sequences and qualities are drawn from a pool
of random strings, so the BAM compresses about like a real one.

``overlapping=False`` lays the genes out one per slot of 60,800 bp along the chromosomes
(in turn), so no two genes overlap or come within 1,000 bp: every fragment then hits at most
one gene (at most ~9,800 genes). The random draws are the same either way.

Multi-mappers: a fraction ``multi_fraction`` (3 %) of the genic fragments also align, as
secondary pairs (flag 0x100), to 1 or 2 other genes (picked uniformly); all their records carry
``NH:i:2`` or ``NH:i:3`` and ``HI:i:1..3``; every other record has ``NH:i:1``. Tags are
``AS:i nM:i MD:Z NH:i HI:i``, NH after a string tag, so a decoder walks the aux fields to it.
Every record is properly paired; featureCounts' default filters drop only the multi-mappers
(``Unassigned_MultiMapping``), ``-M`` counts every alignment pair.

The SAM text is built in Python and converted to BAM by pysam's bundled samtools.

    .venv/bin/python -m dge_platform.sim.bam OUTDIR [--pairs 2000000] [--genes 20000]
        [--multi-fraction 0.03] [--stranded forward|reverse] [--no-overlap] [--seed 7]
        [--name reads] [--read-seed N]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pysam

READ_LEN = 75
N_CHROM, CHROM_LEN = 10, 60_000_000
POOL = 4096
STRANDED = ("unstranded", "forward", "reverse")
# Longest gene: 12 exons of 400 bp and 11 introns of 5,000 bp; then at least 1,000 bp apart.
SLOT = 12 * 400 + 11 * 5_000 + 1_000


def simulate_gtf(path: Path, n_genes: int, rng: np.random.Generator,
                 overlapping: bool = True) -> list[tuple]:
    """Write the GTF; return per gene (chrom, strand, exon starts, exon ends) 0-based."""
    per_chrom = (CHROM_LEN - 100_000) // SLOT
    if not overlapping and n_genes > N_CHROM * per_chrom:
        raise ValueError(f"at most {N_CHROM * per_chrom:,} genes without overlaps")
    genes = []
    lines = []
    for g in range(n_genes):
        chrom = str(rng.integers(1, N_CHROM + 1))
        strand = "+" if rng.random() < 0.5 else "-"
        n_exons = int(rng.integers(2, 13))
        lengths = rng.integers(100, 401, n_exons)
        introns = rng.integers(300, 5001, n_exons - 1)
        start = int(rng.integers(1_000, CHROM_LEN - 100_000))
        if not overlapping:
            chrom, start = str(g % N_CHROM + 1), 1_000 + (g // N_CHROM) * SLOT
        starts = start + np.r_[0, np.cumsum(lengths[:-1] + introns)]
        ends = starts + lengths
        genes.append((chrom, strand, starts, ends))
        gid = f"SIMG{g:05d}"
        attrs = f'gene_id "{gid}"; gene_name "Sim{g}";'
        lines.append(f"{chrom}\tsim\tgene\t{starts[0] + 1}\t{ends[-1]}\t.\t{strand}\t.\t{attrs}\n")
        tx = f'{attrs} transcript_id "SIMT{g:05d}";'
        lines.append(f"{chrom}\tsim\ttranscript\t{starts[0] + 1}\t{ends[-1]}\t.\t{strand}\t.\t"
                     f"{tx}\n")
        for k, (s, e) in enumerate(zip(starts, ends)):
            lines.append(f'{chrom}\tsim\texon\t{s + 1}\t{e}\t.\t{strand}\t.\t{tx} '
                         f'exon_number "{k + 1}";\n')
    path.write_text("".join(lines))
    return genes


def _place(starts, ends, offset: int, length: int) -> tuple[int, str]:
    """Genomic start and CIGAR of ``length`` bases at transcript ``offset`` (clipped to the
    transcript end)."""
    cum = np.r_[0, np.cumsum(ends - starts)]
    offset = min(offset, int(cum[-1]) - length)
    k = int(np.searchsorted(cum, offset, side="right") - 1)
    pos = int(starts[k] + offset - cum[k])
    cigar, left, x, prev_end = [], length, pos, pos
    while left > 0:
        take = min(left, int(ends[k]) - x)
        if cigar:
            cigar.append(f"{x - prev_end}N")
        cigar.append(f"{take}M")
        left -= take
        prev_end = x + take
        k += 1
        if left > 0:
            x = int(starts[k])
    return pos, "".join(cigar)


def _pair_lines(name: str, chrom: str, p1: int, c1: str, p2: int, c2: str, forward: bool,
                seqs: tuple[str, str, str, str], nh: int, hi: int) -> list[tuple[int, int, str]]:
    """The two SAM lines of one alignment pair, as (chrom, pos, line) for sorting."""
    # The leftmost read is on the forward strand: read 1 there if the fragment is forward.
    f_left, f_right = (99, 147) if forward else (163, 83)
    if hi > 1:  # a secondary alignment of a multi-mapper
        f_left, f_right = f_left | 0x100, f_right | 0x100
    tlen = p2 + READ_LEN - p1
    s1, q1, s2, q2 = seqs
    tags = f"AS:i:148\tnM:i:0\tMD:Z:{READ_LEN}\tNH:i:{nh}\tHI:i:{hi}\n"
    c = int(chrom)
    return [(c, p1, f"{name}\t{f_left}\t{chrom}\t{p1 + 1}\t255\t{c1}\t=\t{p2 + 1}\t"
                    f"{tlen}\t{s1}\t{q1}\t{tags}"),
            (c, p2, f"{name}\t{f_right}\t{chrom}\t{p2 + 1}\t255\t{c2}\t=\t{p1 + 1}\t"
                    f"{-tlen}\t{s2}\t{q2}\t{tags}")]


def _genic_pair(gene: tuple, insert: int, rng: np.random.Generator) -> tuple[int, str, int, str]:
    """(pos1, cigar1, pos2, cigar2) of a pair from ``gene``'s transcript."""
    chrom, strand, starts, ends = gene
    tx_len = int((ends - starts).sum())
    frag = min(insert, tx_len)
    off = int(rng.integers(0, max(tx_len - frag, 0) + 1))
    p1, c1 = _place(starts, ends, off, READ_LEN)
    p2, c2 = _place(starts, ends, off + frag - READ_LEN, READ_LEN)
    return p1, c1, p2, c2


def simulate_bam(outdir: Path, n_pairs: int = 2_000_000, n_genes: int = 20_000,
                 seed: int = 7, multi_fraction: float = 0.03, stranded: str = "unstranded",
                 overlapping: bool = True, bam_name: str = "reads",
                 read_seed: int | None = None) -> tuple[Path, Path]:
    """Write ``annotation.gtf`` and ``{bam_name}.bam`` (coordinate-sorted) under ``outdir``.

    ``stranded``: "unstranded" (read 1 on either strand), "forward" (read 1 on the gene's
    strand) or "reverse" (read 1 opposite); ``overlapping``: see the module docstring.
    ``read_seed``: draw the expression and reads from their own seed (the GTF still from
    ``seed``), for several samples of one annotation.
    """
    if stranded not in STRANDED:
        raise ValueError(f"stranded must be one of {', '.join(STRANDED)}, got {stranded!r}")
    rng = np.random.default_rng(seed)
    outdir.mkdir(parents=True, exist_ok=True)
    gtf, bam = outdir / "annotation.gtf", outdir / f"{bam_name}.bam"
    genes = simulate_gtf(gtf, n_genes, rng, overlapping)
    if read_seed is not None:
        rng = np.random.default_rng([seed, read_seed])
    expression = rng.lognormal(0, 1.5, n_genes)
    chosen = rng.choice(n_genes, size=n_pairs, p=expression / expression.sum())
    genic = rng.random(n_pairs) < 0.9
    insert = rng.integers(150, 401, n_pairs)
    flip = rng.random(n_pairs) < 0.5
    intergenic_flip = flip.copy()
    if stranded != "unstranded":  # read 1 (the leftmost read when forward) on a fixed side
        flip[:] = stranded == "reverse"
    pool_seq = ["".join(rng.choice(list("ACGT"), READ_LEN)) for _ in range(POOL)]
    pool_qual = ["".join(rng.choice(list("?@ABCDEFGHIJ"), READ_LEN)) for _ in range(POOL)]
    picks = rng.integers(0, POOL, (n_pairs, 2))
    multi = genic & (rng.random(n_pairs) < multi_fraction)
    n_other = rng.integers(1, 3, n_pairs)  # extra loci of a multi-mapper
    records: list[tuple[int, int, str]] = []  # (chrom, pos, line) for sorting
    for i in range(n_pairs):
        seqs = (pool_seq[picks[i, 0]], pool_qual[picks[i, 0]],
                pool_seq[picks[i, 1]], pool_qual[picks[i, 1]])
        name = f"sim.{i}"
        if genic[i]:
            gene = genes[chosen[i]]
            chrom, strand = gene[0], gene[1]
            p1, c1, p2, c2 = _genic_pair(gene, int(insert[i]), rng)
            forward = (strand == "+") != bool(flip[i])
        else:
            chrom = str(rng.integers(1, N_CHROM + 1))
            p1 = int(rng.integers(0, CHROM_LEN - 1_000))
            p2, c1, c2 = p1 + int(insert[i]) - READ_LEN, f"{READ_LEN}M", f"{READ_LEN}M"
            forward = bool(intergenic_flip[i])
        nh = 1 + int(n_other[i]) if multi[i] else 1
        records += _pair_lines(name, chrom, p1, c1, p2, c2, forward, seqs, nh, 1)
        for hi in range(2, nh + 1):
            other = genes[int(rng.integers(0, n_genes))]
            q1, d1, q2, d2 = _genic_pair(other, int(insert[i]), rng)
            records += _pair_lines(name, other[0], q1, d1, q2, d2,
                                   (other[1] == "+") != bool(flip[i]), seqs, nh, hi)
    records.sort(key=lambda r: (r[0], r[1]))
    sam = outdir / f"{bam_name}.sam"
    with sam.open("w") as fh:
        fh.write("@HD\tVN:1.6\tSO:coordinate\n")
        for c in range(1, N_CHROM + 1):
            fh.write(f"@SQ\tSN:{c}\tLN:{CHROM_LEN}\n")
        fh.writelines(r[2] for r in records)
    threads = str(max(1, (os.cpu_count() or 1)))
    pysam.samtools.view("-b", "-@", threads, "-o", str(bam), str(sam), catch_stdout=False)
    sam.unlink()
    return gtf, bam


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--pairs", type=int, default=2_000_000)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--multi-fraction", type=float, default=0.03)
    parser.add_argument("--stranded", choices=STRANDED, default="unstranded",
                        help="read 1 on either strand, the gene's (forward) or the other")
    parser.add_argument("--no-overlap", action="store_true",
                        help="genes in disjoint slots: a fragment hits at most one gene")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--name", default="reads", help="BAM file name without .bam")
    parser.add_argument("--read-seed", type=int, default=None,
                        help="seed of the reads alone (samples of one annotation)")
    args = parser.parse_args()
    t = time.perf_counter()
    gtf, bam = simulate_bam(args.outdir, args.pairs, args.genes, seed=args.seed,
                            multi_fraction=args.multi_fraction, stranded=args.stranded,
                            overlapping=not args.no_overlap, bam_name=args.name,
                            read_seed=args.read_seed)
    print(f"wrote {gtf} and {bam} ({bam.stat().st_size / 1e6:.0f} MB) "
          f"in {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
