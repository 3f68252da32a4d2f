"""Salmon on simulated reads recovers the true gene counts; index and output folders appear
only complete; missing salmon and bad FASTQ files give errors naming what to fix.

Tests that run salmon skip when it is not installed, and fail under CI (env ``CI``), where
it should have been installed (as dge_platform_tests/services.py does for its servers).
"""

from __future__ import annotations

import gzip
import json
import logging
import stat
from pathlib import Path

import pandas as pd
import pytest

from dge_platform.counting.salmon import (
    SalmonError,
    build_index,
    fasta_digest,
    quantify,
    read_run,
    salmon_executable,
    salmon_version,
)
from dge_platform.counting.tximport import import_quantifications, read_tx2gene
from dge_platform.sim.reads import random_abundances, simulate_sample, simulate_transcriptome
from dge_platform_tests._helpers import require_salmon

N_GENES = 200
N_PAIRS = 200_000
MIN_SPEARMAN = 0.95



@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """A 200-gene transcriptome, its index and two samples of different abundances,
    quantified."""
    require_salmon()
    root = tmp_path_factory.mktemp("salmon")
    ref = simulate_transcriptome(root / "reference", N_GENES, seed=1)
    index = build_index(ref.fasta, root / "index")
    samples, runs = {}, {}
    for name, seed in (("s1", 11), ("s2", 12)):
        sim = simulate_sample(ref, root / "fastq", name, N_PAIRS, seed=seed,
                              abundances=random_abundances(ref, seed=seed))
        samples[name] = sim
        runs[name] = quantify(index, sim.fastq_1, sim.fastq_2, root / "quant" / name)
    return {"root": root, "ref": ref, "index": index, "samples": samples, "runs": runs}


def test_runs_report_mapping_figures(simulated):
    for name, run in simulated["runs"].items():
        assert run.num_processed == N_PAIRS
        assert run.mapping_rate > 0.9, (name, run)
        assert 0 < run.num_mapped <= run.num_processed
        assert run.library_type == "IU"  # inward, unstranded, as simulated
        assert run.salmon_version == salmon_version()
        assert run.quant_file.name == "quant.sf" and run.quant_file.is_file()
        # A cached output reads back as the same run.
        assert read_run(run.quant_file.parent) == run


@pytest.mark.parametrize("counts_from_abundance", ["no", "lengthScaledTPM"])
def test_gene_counts_follow_truth(simulated, counts_from_abundance, record_property):
    tx2gene = read_tx2gene(simulated["ref"].tx2gene)
    quant = import_quantifications({n: r.quant_file.parent for n, r in simulated["runs"].items()},
                                   tx2gene, tool="salmon",
                                   counts_from_abundance=counts_from_abundance)
    # Versioned ids in FASTA and tx2gene match once stripped: nothing unmapped.
    assert quant.unmapped_transcripts == 0
    rhos = {}
    for name, sim in simulated["samples"].items():
        truth = sim.gene_counts
        estimate = quant.counts[name].reindex(truth.index)
        assert not estimate.isna().any()
        rhos[name] = round(float(estimate.corr(truth, method="spearman")), 4)
        # Counts stay on the scale of the mapped fragments.
        assert estimate.sum() == pytest.approx(simulated["runs"][name].num_mapped, rel=0.01)
    record_property("report: salmon spearman", {counts_from_abundance: rhos})
    assert min(rhos.values()) >= MIN_SPEARMAN, rhos


def test_single_end_reads(simulated, tmp_path):
    sim = simulated["samples"]["s1"]
    run = quantify(simulated["index"], sim.fastq_1, None, tmp_path / "se")
    assert run.num_processed == N_PAIRS
    assert run.mapping_rate > 0.9
    assert run.library_type == "U"  # single-end, unstranded


def test_few_and_short_transcripts(tmp_path, caplog):
    require_salmon()
    ref = simulate_transcriptome(tmp_path / "ref", n_genes=2, seed=3)
    sim = simulate_sample(ref, tmp_path / "fastq", "tiny", 2_000, seed=4)
    fasta = tmp_path / "with_short.fa"
    with gzip.open(ref.fasta, "rt") as fh:
        fasta.write_text(fh.read() + ">ENSTSIMSHORT.1\nACGTTGCAACGTAGCT\n")
    with caplog.at_level(logging.WARNING, logger="dge_platform.counting.salmon"):
        index = build_index(fasta, tmp_path / "index")
    assert "1 of" in caplog.text and "at most 31 bp" in caplog.text
    run = quantify(index, sim.fastq_1, sim.fastq_2, tmp_path / "quant")
    assert run.num_processed == 2_000 and run.mapping_rate > 0.9
    quant = pd.read_csv(run.quant_file, sep="\t", index_col=0)
    # Salmon keeps a transcript shorter than k in its output, with no reads.
    assert quant.loc["ENSTSIMSHORT.1", "NumReads"] == 0
    assert len(quant) == len(ref.transcripts) + 1


def fake_salmon(folder: Path, body: str) -> Path:
    """An executable shell script standing in for salmon (to spy on or fail a build)."""
    script = folder / "salmon"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_index_appears_only_when_complete(tmp_path, monkeypatch):
    real = require_salmon()
    ref = simulate_transcriptome(tmp_path / "ref", n_genes=5, seed=5)
    parent = tmp_path / "indexes"
    parent.mkdir()
    index = parent / "idx"
    # Leftovers of a killed build and an older index at the target.
    (parent / ".idx.tmp").mkdir()
    (parent / ".idx.tmp" / "half.bin").write_bytes(b"x")
    index.mkdir()
    (index / "old.bin").write_bytes(b"x")
    seen, calls = tmp_path / "seen_during_build.txt", tmp_path / "calls.txt"
    spy = fake_salmon(tmp_path, f'echo "$1" >> "{calls}"\n[ "$1" = index ] && '
                      f'ls -a "{parent}" "{parent}/.idx.tmp" > "{seen}"\nexec "{real}" "$@"')
    monkeypatch.setenv("DGE_SALMON", str(spy))
    assert build_index(ref.fasta, index) == index
    during = seen.read_text().split()
    # Salmon wrote into a fresh temp (the killed build's file gone); the old index stayed in
    # place until the rename.
    assert ".idx.tmp" in during and "idx" in during and "half.bin" not in during
    assert (index / "info.json").is_file() and not (index / "old.bin").exists()
    assert sorted(p.name for p in parent.iterdir()) == [".idx.lock", "idx"]
    # The same FASTA, k and salmon again: the index is kept; another k rebuilds it.
    build_index(ref.fasta, index)
    assert calls.read_text().split().count("index") == 1
    build_index(ref.fasta, index, kmer=23)
    assert calls.read_text().split().count("index") == 2
    assert json.loads((index / "dge_index.json").read_text())["kmer"] == 23


def test_failed_index_build_leaves_nothing(tmp_path, monkeypatch):
    ref = simulate_transcriptome(tmp_path / "ref", n_genes=3, seed=6)
    # A build that writes part of an index and then fails, as a full disk would.
    failing = fake_salmon(tmp_path, '[ "$1" = --version ] && echo "salmon 1.10.1" && exit 0\n'
                          'while [ $# -gt 0 ]; do [ "$1" = -i ] && mkdir -p "$2" && '
                          'echo x > "$2/pos.bin"; shift; done\n'
                          'echo "[error] simulated: No space left on device" >&2; exit 1')
    monkeypatch.setenv("DGE_SALMON", str(failing))
    index = tmp_path / "indexes" / "idx"
    with pytest.raises(SalmonError) as caught:
        build_index(ref.fasta, index)
    message = str(caught.value)
    assert str(ref.fasta) in message and "No space left on device" in message
    assert not index.exists()
    assert [p.name for p in index.parent.iterdir()] == [".idx.lock"]


@pytest.mark.parametrize("content, expected", [
    ("", "no FASTA records"),
    ("this is not fasta\n", "not FASTA"),
    (">t1\nACGT\n>t2\nACGTACGT\n", "all 2 transcripts are at most 31 bp"),
])
def test_unusable_fasta_is_named(tmp_path, monkeypatch, content, expected):
    # Salmon 1.10.1 aborts without a usable message on these; they are caught before it runs.
    monkeypatch.setenv("DGE_SALMON", str(fake_salmon(tmp_path, "exit 99")))
    fasta = tmp_path / "transcripts.fa"
    fasta.write_text(content)
    with pytest.raises(SalmonError, match=expected) as caught:
        build_index(fasta, tmp_path / "idx")
    assert str(fasta) in str(caught.value)
    assert not (tmp_path / "idx").exists()


def test_bad_kmer_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("DGE_SALMON", str(fake_salmon(tmp_path, "exit 99")))
    with pytest.raises(SalmonError, match="odd number"):
        build_index(tmp_path / "t.fa", tmp_path / "idx", kmer=32)


def test_missing_salmon_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("DGE_SALMON", str(tmp_path / "no" / "salmon"))
    with pytest.raises(SalmonError, match="apt-get install salmon") as caught:
        salmon_executable()
    assert "DGE_SALMON" in str(caught.value)
    monkeypatch.delenv("DGE_SALMON")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SalmonError, match="apt-get install salmon"):
        salmon_version()


def head_fastq(source: Path, dest: Path, records: int) -> Path:
    with gzip.open(source, "rt") as fh:
        lines = [next(fh) for _ in range(4 * records)]
    with gzip.open(dest, "wt") as out:
        out.writelines(lines)
    return dest


@pytest.fixture
def small_pair(simulated, tmp_path):
    sim = simulated["samples"]["s2"]
    return (head_fastq(sim.fastq_1, tmp_path / "r1.fastq.gz", 2_000),
            head_fastq(sim.fastq_2, tmp_path / "r2.fastq.gz", 2_000))


def test_truncated_gzip_names_the_file(simulated, small_pair, tmp_path):
    r1, r2 = small_pair
    cut = tmp_path / "cut_R1.fastq.gz"
    cut.write_bytes(r1.read_bytes()[: r1.stat().st_size // 2])
    out = tmp_path / "quant"
    with pytest.raises(SalmonError) as caught:
        quantify(simulated["index"], cut, r2, out)
    message = str(caught.value)
    # The record count names the bad file (salmon's own error does not say which it was).
    assert f"FASTQ {cut}: corrupt or truncated" in message
    assert sorted(p.name for p in tmp_path.iterdir() if "quant" in p.name) == [".quant.lock"]


def test_garbage_fastq_names_the_file(simulated, tmp_path):
    garbage = tmp_path / "garbage.fastq"
    garbage.write_text("this is not a FASTQ file\n" * 8)
    with pytest.raises(SalmonError) as caught:
        quantify(simulated["index"], garbage, None, tmp_path / "quant")
    message = str(caught.value)
    assert str(garbage) in message and "failed" in message
    assert "minAssignedFrags" in message  # salmon's own reason, from its stderr
    assert not (tmp_path / "quant").exists()


def test_mates_of_different_length_are_refused(simulated, small_pair, tmp_path):
    # Salmon stops at the shorter file and exits 0; the record count catches it.
    r1, r2 = small_pair
    short = head_fastq(r2, tmp_path / "short_R2.fastq.gz", 500)
    with pytest.raises(SalmonError, match="2,000 reads but its mate") as caught:
        quantify(simulated["index"], r1, short, tmp_path / "quant")
    assert str(short) in str(caught.value)
    assert not (tmp_path / "quant").exists()


def test_missing_fastq_and_index(simulated, small_pair, tmp_path):
    r1, _ = small_pair
    with pytest.raises(SalmonError, match="not found") as caught:
        quantify(simulated["index"], r1, tmp_path / "nope_R2.fastq.gz", tmp_path / "quant")
    assert "nope_R2.fastq.gz" in str(caught.value)
    with pytest.raises(SalmonError, match="build_index"):
        quantify(tmp_path / "no_index", r1, None, tmp_path / "quant")


def test_read_run_of_incomplete_output(tmp_path):
    (tmp_path / "quant.sf").write_text("Name\tLength\tEffectiveLength\tTPM\tNumReads\n")
    with pytest.raises(SalmonError, match="meta_info.json missing"):
        read_run(tmp_path)


def test_fasta_digest_follows_content(tmp_path):
    a, b = tmp_path / "a.fa", tmp_path / "b.fa"
    a.write_text(">t1\nACGT\n")
    b.write_text(">t1\nACGA\n")
    assert fasta_digest(a) == fasta_digest(a) and len(fasta_digest(a)) == 16
    assert fasta_digest(a) != fasta_digest(b)
    with pytest.raises(SalmonError, match="cannot be read"):
        fasta_digest(tmp_path / "missing.fa")


def test_simulated_truth_matches_files(tmp_path):
    ref = simulate_transcriptome(tmp_path / "ref", n_genes=20, seed=7)
    sim = simulate_sample(ref, tmp_path / "fq", "x", 1_000, seed=8)
    assert sim.transcript_counts.sum() == sim.gene_counts.sum() == 1_000
    for fastq in (sim.fastq_1, sim.fastq_2):
        with gzip.open(fastq, "rt") as fh:
            lines = fh.read().splitlines()
        assert len(lines) == 4_000 and len(lines[1]) == 75 and lines[2] == "+"
    genes = pd.read_csv(ref.tx2gene, sep="\t")
    assert list(genes.columns) == ["transcript_id", "gene_id", "gene_name"]
    assert genes["transcript_id"].str.fullmatch(r"ENSTSIM\d{8}\.\d").all()
    assert genes["gene_id"].nunique() == 20
    assert (genes.groupby("gene_id").size() <= 3).all()
