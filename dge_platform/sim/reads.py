"""Simulated paired-end RNA-seq reads (FASTQ) from a synthetic transcriptome, with known truth.

Transcriptome: ``n_genes`` genes, each a chain of 2-8 random exons whose full isoform is
600-3,000 bp; genes have 1-3 isoforms, the extra ones skipping one or two internal exons, so
isoforms of a gene share most of their sequence (fragments within shared exons are
ambiguous between isoforms, as in real annotations). Genes' sequences are independent,
except that a tenth of the genes carry one exon copied from an earlier gene with 1 %
substitutions, like a paralog's shared domain, so some fragments are ambiguous between genes
too. Ids carry version suffixes (``ENSTSIM00000001.1``, ``ENSGSIM00000001``) so version
stripping is exercised.

Reads: fragments drawn with probability proportional to abundance x transcript length,
fragment length ~ Normal(250, 30) (at least the read length, at most the transcript), start
uniform on the transcript; read 1 is the fragment's first 75 bases and read 2 the reverse
complement of its last 75, or the two swapped for half the fragments (an unstranded library,
salmon's ``IU``). 0.5 % of bases are substituted; qualities are Phred+33, mostly high. All of
it is vectorised with numpy (fixed-width records), so 200,000 pairs take a few seconds,
mostly gzip.

    .venv/bin/python -m dge_platform.sim.reads OUTDIR [--genes 2000] [--pairs 1000000]
        [--samples 6]
"""

from __future__ import annotations

import argparse
import gzip
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

READ_LEN = 75
FRAGMENT_MEAN, FRAGMENT_SD = 250, 30
ERROR_RATE = 0.005
TX_LENGTHS = (600, 3000)
PARALOG_FRACTION, PARALOG_DIVERGENCE = 0.1, 0.01
BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
# Base codes 0-3 are A, C, G, T, so the complement of code c is 3 - c.
QUAL_HIGH, QUAL_LOW = ord("F"), ord(",")  # Phred 37 and 11 (Illumina binned qualities)
LOW_QUAL_RATE = 0.02
GZIP_LEVEL = 1  # gzip dominates the run time; level 1 is ~5x faster than the default 9


@dataclass(frozen=True)
class SimulatedTranscriptome:
    """A written transcriptome and what the reads simulator needs of it.

    Attributes
    ----------
    fasta
        ``transcripts.fa.gz``: one record per transcript, header = versioned transcript id.
    tx2gene
        ``tx2gene.tsv``: columns ``transcript_id`` (versioned), ``gene_id``, ``gene_name``.
    transcripts
        One row per transcript: ``transcript_id``, ``gene_id``, ``gene_name``, ``length``.
    codes
        All transcript sequences concatenated, as base codes 0-3 (A, C, G, T).
    offsets
        Start of each transcript in ``codes`` (same order as ``transcripts``).
    """

    fasta: Path
    tx2gene: Path
    transcripts: pd.DataFrame
    codes: np.ndarray
    offsets: np.ndarray


@dataclass(frozen=True)
class SimulatedSample:
    """A written pair of FASTQ files and the fragments they hold.

    Attributes
    ----------
    fastq_1, fastq_2
        ``<sample>_R1.fastq.gz`` and ``<sample>_R2.fastq.gz``.
    transcript_counts
        True fragments per transcript (index: versioned transcript id; zeros included).
    gene_counts
        True fragments per gene (index: gene id).
    """

    fastq_1: Path
    fastq_2: Path
    transcript_counts: pd.Series
    gene_counts: pd.Series


def _gene_id(i: int) -> str:
    return f"ENSGSIM{i + 1:08d}"


def simulate_transcriptome(out_dir: Path, n_genes: int = 200,
                           seed: int | np.random.Generator = 0,
                           paralog_fraction: float = PARALOG_FRACTION) -> SimulatedTranscriptome:
    """Write ``transcripts.fa.gz`` and ``tx2gene.tsv`` for ``n_genes`` random genes.

    Parameters
    ----------
    out_dir
        Created if missing.
    n_genes
        Genes; each gets 1-3 isoforms (about 2 on average).
    seed
        Seed or generator; the same seed gives the same files.
    paralog_fraction
        Share of genes with one exon copied (1 % diverged) from an earlier gene, so some
        reads are ambiguous between genes too.
    """
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, pieces = [], []
    pool: list[np.ndarray] = []  # exons of the genes so far, for paralogs to copy
    tx = 0
    for g in range(n_genes):
        n_exons = int(rng.integers(2, 9))
        full = int(rng.integers(TX_LENGTHS[0], TX_LENGTHS[1] + 1))
        # Exon lengths: a random split of the full length, each at least 60 bp.
        cuts = np.sort(rng.choice(np.arange(1, full // 60), n_exons - 1, replace=False)) * 60
        lengths = np.diff(np.r_[0, cuts, full])
        exons = [rng.integers(0, 4, n, dtype=np.uint8) for n in lengths]
        if pool and rng.random() < paralog_fraction:
            copy = pool[int(rng.integers(len(pool)))].copy()
            changed = rng.random(copy.size) < PARALOG_DIVERGENCE
            copy[changed] = (copy[changed] + rng.integers(1, 4, int(changed.sum()))) % 4
            exons[int(rng.integers(n_exons))] = copy
        pool.extend(exons)
        keep = [np.ones(n_exons, dtype=bool)]
        n_iso = int(rng.integers(1, 4))
        internal = np.arange(1, n_exons - 1)
        for _ in range(n_iso - 1):
            if internal.size == 0:
                break
            skip = rng.choice(internal, min(internal.size, int(rng.integers(1, 3))),
                              replace=False)
            mask = np.ones(n_exons, dtype=bool)
            mask[skip] = False
            # Two isoforms skipping the same exons would be identical: salmon collapses
            # duplicate sequences, so keep only distinct exon sets.
            if not any((mask == k).all() for k in keep):
                keep.append(mask)
        for mask in keep:
            seq = np.concatenate([e for e, k in zip(exons, mask) if k])
            tx += 1
            rows.append((f"ENSTSIM{tx:08d}.{int(rng.integers(1, 4))}", _gene_id(g),
                         f"SIM{g + 1}", seq.size))
            pieces.append(seq)
    transcripts = pd.DataFrame(rows, columns=["transcript_id", "gene_id", "gene_name", "length"])
    codes = np.concatenate(pieces)
    offsets = np.r_[0, np.cumsum(transcripts["length"].to_numpy())[:-1]].astype(np.int64)
    fasta, tx2gene = out_dir / "transcripts.fa.gz", out_dir / "tx2gene.tsv"
    letters = BASES[codes]
    with gzip.open(fasta, "wb", compresslevel=GZIP_LEVEL) as fh:
        for tid, start, n in zip(transcripts["transcript_id"], offsets, transcripts["length"]):
            fh.write(f">{tid}\n".encode())
            # 60 columns, as FASTA files usually are (salmon reads multi-line records).
            seq = letters[start:start + n].tobytes()
            fh.write(b"\n".join(seq[i:i + 60] for i in range(0, n, 60)) + b"\n")
    transcripts[["transcript_id", "gene_id", "gene_name"]].to_csv(tx2gene, sep="\t", index=False)
    return SimulatedTranscriptome(fasta, tx2gene, transcripts, codes, offsets)


def random_abundances(transcriptome: SimulatedTranscriptome,
                      seed: int | np.random.Generator = 0, sigma: float = 1.5) -> pd.Series:
    """Log-normal relative abundances per transcript (index: transcript id)."""
    rng = np.random.default_rng(seed)
    ids = transcriptome.transcripts["transcript_id"]
    return pd.Series(rng.lognormal(0.0, sigma, len(ids)), index=ids.to_numpy())


def _fastq(path: Path, names: np.ndarray, seqs: np.ndarray, quals: np.ndarray) -> None:
    """Write fixed-width records as one byte block: name, sequence, ``+``, quality."""
    n, width = seqs.shape
    nl = np.full((n, 1), ord("\n"), dtype=np.uint8)
    plus = np.frombuffer(b"+\n", dtype=np.uint8)[None, :].repeat(n, axis=0)
    block = np.hstack([names, nl, seqs, nl, plus, quals, nl])
    with gzip.open(path, "wb", compresslevel=GZIP_LEVEL) as fh:
        fh.write(block.tobytes())


def simulate_sample(transcriptome: SimulatedTranscriptome, out_dir: Path, sample: str,
                    n_pairs: int = 200_000, seed: int | np.random.Generator = 0,
                    abundances: pd.Series | np.ndarray | None = None) -> SimulatedSample:
    """Write ``<sample>_R1.fastq.gz`` and ``<sample>_R2.fastq.gz`` under ``out_dir``.

    Parameters
    ----------
    transcriptome
        From :func:`simulate_transcriptome`.
    out_dir
        Created if missing.
    sample
        Sample name: file names and read names (``@<sample>.<n>/1``).
    n_pairs
        Read pairs (fragments).
    seed
        Seed or generator.
    abundances
        Relative abundance per transcript (a Series by transcript id, or an array in
        ``transcriptome.transcripts`` order); default :func:`random_abundances` with ``seed``.
        Fragments are drawn proportionally to abundance x length.

    Returns
    -------
    The files and the true fragment counts per transcript and gene.
    """
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = transcriptome.transcripts
    if abundances is None:
        abundances = random_abundances(transcriptome, rng)
    if isinstance(abundances, pd.Series):
        abundances = abundances.reindex(table["transcript_id"]).fillna(0.0).to_numpy()
    lengths = table["length"].to_numpy()
    weight = np.asarray(abundances, dtype=float) * lengths
    tx = rng.choice(len(table), size=n_pairs, p=weight / weight.sum())
    tx_len = lengths[tx]
    frag = np.rint(rng.normal(FRAGMENT_MEAN, FRAGMENT_SD, n_pairs)).astype(np.int64)
    frag = np.clip(frag, READ_LEN, tx_len)
    start = (rng.random(n_pairs) * (tx_len - frag + 1)).astype(np.int64)
    base = transcriptome.offsets[tx] + start
    cols = np.arange(READ_LEN)
    left = transcriptome.codes[base[:, None] + cols]
    right = 3 - transcriptome.codes[(base + frag - READ_LEN)[:, None] + cols][:, ::-1]
    flip = rng.random(n_pairs) < 0.5
    r1 = np.where(flip[:, None], right, left)
    r2 = np.where(flip[:, None], left, right)
    files = []
    for mate, reads in ((1, r1), (2, r2)):
        errors = rng.random(reads.shape) < ERROR_RATE
        # A substitution is one of the three other bases.
        reads = np.where(errors, (reads + rng.integers(1, 4, reads.shape)) % 4, reads)
        quals = np.where(errors | (rng.random(reads.shape) < LOW_QUAL_RATE), QUAL_LOW,
                         QUAL_HIGH).astype(np.uint8)
        width = len(str(n_pairs))
        names = np.frombuffer("".join(f"@{sample}.{i:0{width}d}/{mate}" for i in range(n_pairs))
                              .encode(), dtype=np.uint8).reshape(n_pairs, -1)
        path = out_dir / f"{sample}_R{mate}.fastq.gz"
        _fastq(path, names, BASES[reads], quals)
        files.append(path)
    counts = pd.Series(np.bincount(tx, minlength=len(table)),
                       index=table["transcript_id"].to_numpy(), name=sample)
    genes = counts.groupby(table["gene_id"].to_numpy()).sum().rename(sample)
    return SimulatedSample(files[0], files[1], counts, genes)


def simulate_study(out_dir: Path, n_genes: int = 2000, n_pairs: int = 1_000_000,
                   n_samples: int = 6, seed: int = 0, de_fraction: float = 0.1) -> pd.DataFrame:
    """Write a reads study: ``reference/`` (FASTA, tx2gene), ``fastq/`` (pairs per sample),
    ``samples.tsv`` (sample, condition, fastq_1, fastq_2 relative to ``out_dir``) and
    ``truth/`` (true fragment counts per gene and transcript, true log2 fold changes).

    Half the samples are ``ctrl``, half ``treat``; ``de_fraction`` of the genes change by
    2^+-(1-3) in ``treat`` (all isoforms of a gene alike). Returns the sample table.
    """
    rng = np.random.default_rng(seed)
    ref = simulate_transcriptome(out_dir / "reference", n_genes, rng)
    table = ref.transcripts
    base = random_abundances(ref, rng)
    gene_ids = table["gene_id"].unique()
    lfc = pd.Series(0.0, index=gene_ids)
    de = rng.choice(gene_ids.size, int(round(de_fraction * gene_ids.size)), replace=False)
    lfc.iloc[de] = rng.choice([-1, 1], de.size) * rng.uniform(1, 3, de.size)
    tx_lfc = lfc.reindex(table["gene_id"]).to_numpy()
    rows, tx_truth, gene_truth = [], {}, {}
    for i in range(n_samples):
        condition = "ctrl" if i < (n_samples + 1) // 2 else "treat"
        name = f"{condition}{i + 1}"
        # Biological scatter: gamma noise with CV 0.2 on each transcript.
        abundance = (base.to_numpy() * 2.0 ** (tx_lfc * (condition == "treat"))
                     * rng.gamma(25.0, 1 / 25.0, len(table)))
        sim = simulate_sample(ref, out_dir / "fastq", name, n_pairs, rng, abundance)
        rows.append((name, condition, str(sim.fastq_1.relative_to(out_dir)),
                     str(sim.fastq_2.relative_to(out_dir))))
        tx_truth[name], gene_truth[name] = sim.transcript_counts, sim.gene_counts
    samples = pd.DataFrame(rows, columns=["sample", "condition", "fastq_1", "fastq_2"])
    samples.to_csv(out_dir / "samples.tsv", sep="\t", index=False)
    truth = out_dir / "truth"
    truth.mkdir(exist_ok=True)
    pd.DataFrame(gene_truth).rename_axis("gene_id").to_csv(truth / "gene_counts.tsv", sep="\t")
    pd.DataFrame(tx_truth).rename_axis("transcript_id").to_csv(truth / "transcript_counts.tsv",
                                                               sep="\t")
    lfc.rename_axis("gene_id").rename("log2_fold_change").to_csv(truth / "gene_lfc.tsv",
                                                                 sep="\t")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=1_000_000, help="read pairs per sample")
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    t = time.perf_counter()
    samples = simulate_study(args.outdir, args.genes, args.pairs, args.samples, args.seed)
    print(f"wrote {len(samples)} samples x {args.pairs:,} pairs under {args.outdir} "
          f"in {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
