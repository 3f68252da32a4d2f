"""Fragment counting from BAM equals R summarizeOverlaps on the airway BAM subsets.

References: ``fixtures/r_counting`` (README.md there; made by make_r_counting_reference.R).
Stranded modes are compared with the ``_pairs_{forward,reverse}`` files (R GAlignmentPairs,
strandMode 1: a pair takes read 1's strand, as featureCounts -s 1 / -s 2). Those hold mated
pairs only, so they are compared with ``both_mates=True`` (featureCounts -B); by default a
singleton counts too, on its own strand (inverted for read 2), as featureCounts does. The
``summarize_overlaps_counts_{forward,reverse}.csv`` files (fragments=TRUE with strand: a pair
counts when EITHER mate is on the gene's strand) are not a featureCounts meaning and are not
reproduced.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pysam
import pytest

from dge_platform.counting.fragments import (
    STRANDEDNESS,
    BamError,
    count_fragments,
    infer_strandedness,
    strand_fraction,
)
from dge_platform.readers.gene_models import GtfError, read_gtf
from dge_platform.sim.bam import simulate_bam
from dge_platform_tests.conftest import FIXTURES, REPO

AIRWAY = REPO / "data" / "upstream" / "airway"
R_COUNTING = FIXTURES / "r_counting"
GTF = AIRWAY / "Homo_sapiens.GRCh37.75_subset.gtf.gz"
SAMPLES = ["SRR1039508", "SRR1039509", "SRR1039512", "SRR1039513", "SRR1039516",
           "SRR1039517", "SRR1039520", "SRR1039521"]


def bam(sample: str) -> Path:
    return AIRWAY / "bam_subsets" / f"{sample}_subset.bam"


@pytest.fixture(scope="module")
def models():
    return read_gtf(GTF)


@pytest.fixture(scope="module")
def unstranded(models):
    return {s: count_fragments(bam(s), models) for s in SAMPLES}


def r_counts(name: str) -> pd.DataFrame:
    return pd.read_csv(R_COUNTING / f"summarize_overlaps_counts{name}.csv", index_col=0)


def assert_equal_to_r(ours: dict[str, pd.Series], expected: pd.DataFrame):
    got = pd.DataFrame(ours)[expected.columns]
    assert set(got.index) == set(expected.index)
    got = got.loc[expected.index]
    diff = got != expected
    assert not diff.to_numpy().any(), (
        f"{int(diff.to_numpy().sum())} of {diff.size} cells differ:\n"
        f"{got[diff.any(axis=1)]}\nR:\n{expected[diff.any(axis=1)]}")


def test_unstranded_counts_equal_summarize_overlaps(unstranded):
    assert_equal_to_r({s: c for s, (c, _) in unstranded.items()}, r_counts(""))


def test_stats_match_r_fragment_totals(unstranded):
    totals = pd.read_csv(R_COUNTING / "bam_totals.csv", index_col=0)
    r = r_counts("")
    for sample, (counts, stats) in unstranded.items():
        row = totals.loc[sample]
        assert stats["Assigned"] == counts.sum() == r[sample].sum()
        assert stats["Assigned"] == row.counted_summarize_overlaps
        assert stats["Unassigned_Ambiguity"] == row.fragments_ambiguous_genes
        assert stats["Unassigned_NoFeatures"] == row.fragments_no_feature
        assert stats["fragments"] == row.fragments
        assert stats["fragments_pairs"] == row.fragments_mated_pairs
        assert stats["fragments_singletons"] == row.fragments_unmated
        assert stats["records"] == row.bam_records
        assert stats["Unassigned_Unmapped"] == 0
        assert stats["Assigned"] + stats["Unassigned_Ambiguity"] \
            + stats["Unassigned_NoFeatures"] == stats["fragments"]


def test_primary_only_equals_r_without_secondary(models):
    assert_equal_to_r({s: count_fragments(bam(s), models, primary_only=True)[0]
                       for s in SAMPLES}, r_counts("_primary"))


@pytest.mark.parametrize("strandedness", ["forward", "reverse"])
def test_stranded_pairs_equal_galignmentpairs(models, strandedness):
    ours = {s: count_fragments(bam(s), models, strandedness, both_mates=True)[0]
            for s in SAMPLES}
    assert_equal_to_r(ours, r_counts(f"_pairs_{strandedness}"))


def test_stranded_singletons_counted_by_default(models):
    # SRR1039517 has 6 unmated fragments; counting them can only add.
    with_lone, stats = count_fragments(bam("SRR1039517"), models, "forward")
    pairs_only, stats_pairs = count_fragments(bam("SRR1039517"), models, "forward",
                                              both_mates=True)
    assert (with_lone >= pairs_only).all()
    assert stats_pairs["Unassigned_Singleton"] == stats["fragments_singletons"] == 6


# --------------------------------------------------------------------------- small cases

GTF_TEXT = (
    '{chrom}\tt\texon\t101\t200\t.\t+\t.\tgene_id "A"; gene_name "a";\n'
    '{chrom}\tt\texon\t301\t400\t.\t+\t.\tgene_id "A"; gene_name "a";\n'
    '{chrom}\tt\texon\t1001\t1100\t.\t-\t.\tgene_id "B"; gene_name "b";\n'
    '{chrom}\tt\ttranscript\t1001\t1100\t.\t-\t.\tgene_id "B";\n'
)


def write_bam(path: Path, reads: list[tuple], chrom: str = "1") -> Path:
    """reads: (name, flag, pos0, cigar, mate_pos0); mates on the same chromosome."""
    return write_tagged_bam(path, [(*read, []) for read in reads], chrom)


def test_union_semantics_on_small_cases(tmp_path):
    gtf = tmp_path / "g.gtf"
    gtf.write_text(GTF_TEXT.format(chrom="1"))
    models = read_gtf(gtf)
    reads = [
        # pair in A's two exons (one mate in each): A
        ("p1", 99, 150, "20M", 320), ("p1", 147, 320, "20M", 150),
        # pair with one mate in A and one in B: ambiguous
        ("p2", 99, 380, "10M", 1050), ("p2", 147, 1050, "10M", 380),
        # spliced read whose N gap spans exon 301-400 (0-based 300-400) and lands in intron
        ("s1", 0, 210, "10M200N10M", -1),
        # only the deletion covers exon 300-400: D is part of the block (GenomicAlignments)
        ("d1", 0, 270, "5M140D5M", -1),
        # pair with secondary copy: both count (no multimapping filter)
        ("m1", 99, 1010, "10M", 1030), ("m1", 147, 1030, "10M", 1010),
        ("m1", 99 | 256, 160, "10M", 170), ("m1", 147 | 256, 170, "10M", 160),
    ]
    counts, stats = count_fragments(write_bam(tmp_path / "x.bam", reads), models)
    assert counts.to_dict() == {"A": 3, "B": 1}
    assert stats["Unassigned_Ambiguity"] == 1
    assert stats["Unassigned_NoFeatures"] == 1
    assert stats["fragments"] == 6
    fwd, _ = count_fragments(tmp_path / "x.bam", models, "forward")
    rev, _ = count_fragments(tmp_path / "x.bam", models, "reverse")
    # 99 = read 1 forward: + strand fragments; d1 is unpaired forward on +. Only genes on
    # the fragment's strand can make it ambiguous, so p2 counts for A (forward), B (reverse).
    assert fwd.to_dict() == {"A": 4, "B": 0}
    assert rev.to_dict() == {"A": 0, "B": 2}


def test_votes_rule_resolves_pairs_like_featurecounts(tmp_path):
    gtf = tmp_path / "g.gtf"
    gtf.write_text(GTF_TEXT.format(chrom="1")
                   + '1\tt\texon\t181\t260\t.\t-\t.\tgene_id "C";\n')
    models = read_gtf(gtf)
    reads = [
        # mate 1 in A and C, mate 2 in A: union ambiguous, votes A (2 votes to 1)
        ("v1", 99, 185, "10M", 320), ("v1", 147, 320, "10M", 185),
        # mate 1 in A and C, mate 2 in no gene: a tie, ambiguous in both
        ("v2", 99, 185, "10M", 600), ("v2", 147, 600, "10M", 185),
    ]
    path = write_bam(tmp_path / "v.bam", reads)
    union, union_stats = count_fragments(path, models)
    votes, votes_stats = count_fragments(path, models, resolution="votes")
    assert union.to_dict() == {"A": 0, "B": 0, "C": 0}
    assert union_stats["Unassigned_Ambiguity"] == 2
    assert votes.to_dict() == {"A": 1, "B": 0, "C": 0}
    assert votes_stats["Unassigned_Ambiguity"] == 1
    with pytest.raises(ValueError, match="resolution must be one of"):
        count_fragments(path, models, resolution="largest")


def test_bad_gtf_line_names_file_and_line(tmp_path):
    gtf = tmp_path / "bad.gtf"
    gtf.write_text("#comment\n" + GTF_TEXT.format(chrom="1")
                   + '1\tt\texon\t500\tx\t.\t+\t.\tgene_id "C";\n')
    with pytest.raises(GtfError, match=r"bad\.gtf: line 6: start/end must be integers"):
        read_gtf(gtf)
    gtf.write_text('1\tt\texon\t500\t600\t.\t+\n')
    with pytest.raises(GtfError, match=r"line 1: expected 9 tab-separated columns, found 7"):
        read_gtf(gtf)
    gtf.write_text('1\tt\texon\t500\t600\t.\t+\t.\tgene_name "C";\n')
    with pytest.raises(GtfError, match="line 1: exon line has no gene_id"):
        read_gtf(gtf)


def test_gtf_not_utf8_text_names_file(tmp_path):
    latin = tmp_path / "latin1.gtf"
    latin.write_bytes('1\tt\texon\t500\t600\t.\t+\t.\tgene_id "C\u00e9";\n'.encode("latin-1"))
    with pytest.raises(GtfError, match=r"latin1\.gtf: cannot be parsed: not UTF-8 text"):
        read_gtf(latin)
    cut = tmp_path / "cut.gtf.gz"
    cut.write_bytes(GTF.read_bytes()[:3000])
    with pytest.raises(GtfError, match=r"cut\.gtf\.gz: cannot be parsed: damaged gzip data"):
        read_gtf(cut)
    binary = tmp_path / "binary.gtf"
    binary.write_bytes(b"1\tt\texon\0\0\0")
    with pytest.raises(GtfError, match=r"binary\.gtf: cannot be parsed: .*NUL bytes"):
        read_gtf(binary)


def test_chromosome_naming_mismatch_is_explained(tmp_path):
    gtf = tmp_path / "g.gtf"
    gtf.write_text(GTF_TEXT.format(chrom="chr1"))
    path = write_bam(tmp_path / "x.bam", [("r", 0, 150, "10M", -1)], chrom="1")
    with pytest.raises(BamError, match=r'The GTF uses "chr" names .* and the BAM does not'):
        count_fragments(path, read_gtf(gtf))


def test_unreadable_and_truncated_bam(tmp_path, models):
    junk = tmp_path / "junk.bam"
    junk.write_bytes(b"not a bam at all")
    with pytest.raises(BamError, match="junk.bam: unreadable BAM"):
        count_fragments(junk, models)
    cut = tmp_path / "cut.bam"
    cut.write_bytes(bam("SRR1039508").read_bytes()[:200_000])
    with pytest.raises(BamError, match="cut.bam: (unreadable|truncated) BAM"):
        count_fragments(cut, models)
    with pytest.raises(BamError, match="not found"):
        count_fragments(tmp_path / "missing.bam", models)


# --------------------------------------------------------------------------- multi-mappers

FC_SAMPLES = ["SRR1039508", "SRR1039520"]
# featureCounts -p --countReadPairs options (make_featurecounts_reference.sh) -> our keywords
FC_OPTIONS = {"": {"multimapping": "skip"},
              "--primary": {"multimapping": "skip", "primary_only": True},
              "-M": {"multimapping": "count"},
              "-M --primary": {"multimapping": "count", "primary_only": True}}


def featurecounts_reference(name: str) -> pd.DataFrame:
    return pd.read_csv(R_COUNTING / f"featurecounts_{name}.csv", keep_default_na=False,
                       dtype={"options": str})


@pytest.mark.parametrize("options", list(FC_OPTIONS))
def test_votes_equal_featurecounts_multimapping_and_primary(models, options):
    counts_ref = featurecounts_reference("counts")
    counts_ref = counts_ref[counts_ref["options"] == options].set_index("gene_id")
    summary = featurecounts_reference("summary")
    summary = summary[summary["options"] == options].set_index("status")
    assert len(counts_ref) == len(models.genes) and len(summary) >= 10
    for sample in FC_SAMPLES:
        counts, stats = count_fragments(bam(sample), models, resolution="votes",
                                        **FC_OPTIONS[options])
        assert counts.to_dict() == counts_ref[sample].to_dict(), sample
        # every featureCounts summary line, zeros included
        assert {k: stats.get(k, 0) for k in summary.index} == summary[sample].to_dict(), sample


def test_skip_drops_exactly_the_multimapping_fragments(unstranded, models):
    totals = pd.read_csv(R_COUNTING / "bam_totals.csv", index_col=0)
    for sample, (counts, stats) in unstranded.items():
        # R's fragments with a record of NH > 1 (readGAlignmentsList asMates, as counted)
        n_multi = totals.loc[sample, "fragments_multimapped_NH_gt1"]
        assert stats["multimapping_fragments"] == n_multi > 0
        assert stats["Unassigned_MultiMapping"] == 0
        skipped, skip_stats = count_fragments(bam(sample), models, multimapping="skip")
        assert skip_stats["Unassigned_MultiMapping"] == skip_stats["multimapping_fragments"] \
            == n_multi
        assert skip_stats["fragments"] == stats["fragments"] - n_multi
        assert skip_stats["Assigned"] == skipped.sum()
        assert (skipped <= counts).all() and skipped.sum() < counts.sum()
    with pytest.raises(ValueError, match="multimapping must be one of count, skip"):
        count_fragments(bam("SRR1039508"), models, multimapping="all")


def write_tagged_bam(path: Path, reads: list[tuple], chrom: str = "1") -> Path:
    """reads: (name, flag, pos0, cigar or None for unmapped, mate_pos0, tags), mates on the
    same chromosome; tags as pysam ``set_tags`` takes them (with an optional value type)."""
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": chrom, "LN": 10_000}]}
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        for name, flag, pos, cigar, mpos, tags in sorted(reads, key=lambda r: r[2]):
            a = pysam.AlignedSegment(out.header)
            a.query_name, a.flag, a.reference_id, a.reference_start = name, flag, 0, pos
            a.mapping_quality = 60
            if cigar:
                a.cigarstring = cigar
            a.next_reference_id, a.next_reference_start = 0, mpos
            length = a.query_alignment_length if cigar else 10
            a.query_sequence = "A" * length
            a.query_qualities = pysam.qualitystring_to_array("I" * length)
            a.set_tags(tags)
            out.write(a)
    return path


def test_multimapper_counted_per_alignment_or_skipped(tmp_path):
    gtf = tmp_path / "g.gtf"
    gtf.write_text(GTF_TEXT.format(chrom="1"))
    models = read_gtf(gtf)
    nh2 = [("NH", 2)]
    reads = [
        # a unique pair in A
        ("u1", 99, 150, "10M", 320, [("NH", 1)]), ("u1", 147, 320, "10M", 150, [("NH", 1)]),
        # a pair aligned twice, NH:i:2 on both mates: primary in B, secondary in A
        ("m1", 99, 1010, "10M", 1030, nh2), ("m1", 147, 1030, "10M", 1010, nh2),
        ("m1", 99 | 256, 160, "10M", 170, nh2), ("m1", 147 | 256, 170, "10M", 160, nh2),
    ]
    path = write_tagged_bam(tmp_path / "m.bam", reads)
    counts, stats = count_fragments(path, models)
    assert counts.to_dict() == {"A": 2, "B": 1}
    assert stats["Unassigned_MultiMapping"] == 0 and stats["multimapping_fragments"] == 2
    skipped, skip_stats = count_fragments(path, models, multimapping="skip")
    assert skipped.to_dict() == {"A": 1, "B": 0}
    assert skip_stats["Unassigned_MultiMapping"] == skip_stats["multimapping_fragments"] == 2
    assert skip_stats["Assigned"] == skip_stats["fragments"] == 1


# Expected values below are featureCounts 2.0.3's (-p --countReadPairs, with the options
# named) on this BAM and GTF, checked when the test was written.
FC_RULES_GTF = (
    '1\tt\texon\t101\t200\t.\t+\t.\tgene_id "A"; transcript_id "a";\n'
    '1\tt\texon\t301\t400\t.\t+\t.\tgene_id "A"; transcript_id "a";\n'
    '1\tt\texon\t1001\t1100\t.\t-\t.\tgene_id "B"; transcript_id "b";\n'
    '1\tt\texon\t2001\t2100\t.\t-\t.\tgene_id "C"; transcript_id "c";\n')
FC_RULES_READS = [
    ("u1", 99, 150, "10M", 320, [("NH", 1)]), ("u1", 147, 320, "10M", 150, [("NH", 1)]),
    # NH 2, both mates, two loci (B primary, A secondary)
    ("m1", 99, 1010, "10M", 1030, [("NH", 2), ("HI", 1)]),
    ("m1", 147, 1030, "10M", 1010, [("NH", 2), ("HI", 1)]),
    ("m1", 99 | 256, 160, "10M", 170, [("NH", 2), ("HI", 2)]),
    ("m1", 147 | 256, 170, "10M", 160, [("NH", 2), ("HI", 2)]),
    # NH 2 on one mate only: a multi-mapper
    ("h1", 99, 1020, "10M", 1040, [("NH", 1)]), ("h1", 147, 1040, "10M", 1020, [("NH", 2)]),
    ("h2", 99, 2020, "10M", 2040, [("NH", 2)]), ("h2", 147, 2040, "10M", 2020, [("NH", 1)]),
    # the secondary flag with NH 1, or without NH, is not a multi-mapper
    ("s1", 99 | 256, 2010, "10M", 2030, [("NH", 1)]),
    ("s1", 147 | 256, 2030, "10M", 2010, [("NH", 1)]),
    ("s2", 99 | 256, 110, "10M", 130, []), ("s2", 147 | 256, 130, "10M", 110, []),
    ("n1", 99, 115, "10M", 135, []), ("n1", 147, 135, "10M", 115, []),  # no NH: unique
    # NH 3 on a mate whose mate is unmapped; NH 2 on a single-end read
    ("x1", 73, 1050, "10M", 1050, [("NH", 3)]), ("x1", 133, 1050, None, 1050, []),
    ("y1", 0, 1060, "10M", -1, [("NH", 2)]),
    # NH 2 on the unmapped mate only: not a multi-mapper
    ("z1", 73, 1090, "10M", 1090, [("NH", 1)]), ("z1", 133, 1090, None, 1090, [("NH", 2)]),
    # NH after tags of other types (A, B array, f, Z, H) and as C / s integers
    ("k1", 99, 2085, "10M", 2090, [("XA", "A", "A"), ("XB", [1, 2, 3]), ("XF", 1.5, "f"),
                                   ("XZ", "zz", "Z"), ("NH", 3, "C")]),
    ("k1", 147, 2090, "10M", 2085, [("NH", 3, "s"), ("XH", "AB", "H")]),
    # unpaired records (mates not in the file): each is a fragment, as in featureCounts
    ("w1", 97, 2070, "10M", 5000, [("NH", 1)]), ("w1", 97 | 256, 2075, "10M", 5000, [("NH", 1)]),
    ("w1", 97 | 256, 2078, "10M", 6000, [("NH", 1)]),
    ("w2", 97, 2080, "10M", 5000, [("NH", 2)]), ("w2", 97 | 256, 120, "10M", 5500, [("NH", 2)]),
    # a supplementary record is a fragment of its own
    ("p1", 99, 1070, "10M", 1080, [("NH", 1)]), ("p1", 147, 1080, "10M", 1070, [("NH", 1)]),
    ("p1", 99 | 2048, 180, "10M", 1080, [("NH", 1)]),
]


@pytest.mark.parametrize("options, expected_counts, expected_stats", [
    ("", {"A": 4, "B": 2, "C": 4}, {"Assigned": 10, "Unassigned_MultiMapping": 9}),
    ("--primary", {"A": 3, "B": 2, "C": 1},
     {"Assigned": 6, "Unassigned_MultiMapping": 9, "Unassigned_Secondary": 4}),
    ("-M", {"A": 6, "B": 6, "C": 7}, {"Assigned": 19}),
    ("-M --primary", {"A": 3, "B": 6, "C": 4}, {"Assigned": 13, "Unassigned_Secondary": 6}),
])
def test_multimapping_rules_follow_featurecounts(tmp_path, options, expected_counts,
                                                 expected_stats):
    gtf = tmp_path / "g.gtf"
    gtf.write_text(FC_RULES_GTF)
    path = write_tagged_bam(tmp_path / "rules.bam", FC_RULES_READS)
    counts, stats = count_fragments(path, read_gtf(gtf), resolution="votes",
                                    **FC_OPTIONS[options])
    assert counts.to_dict() == expected_counts
    for key in ("Assigned", "Unassigned_MultiMapping", "Unassigned_Secondary",
                "Unassigned_NoFeatures", "Unassigned_Ambiguity"):
        assert stats[key] == expected_stats.get(key, 0), key
    # multi-mappers among the fragments kept by the other filters: m1 (2 pairs), h1, h2, x1,
    # y1, k1, w2 (2 records); with --primary not the secondary m1 and w2 ones
    assert stats["multimapping_fragments"] == (7 if "--primary" in options else 9)


def test_read_over_many_genes_still_votes(tmp_path):
    # Five genes share exon 1001-1100 (like the constant exons of a protocadherin cluster);
    # G1 also has exon 1301-1400. Mate 1 in the shared exon votes for all five, mate 2 for
    # G1 only: featureCounts (votes) gives the pair to G1, union calls it ambiguous.
    gtf = tmp_path / "g.gtf"
    gtf.write_text("".join(f'1\tt\texon\t1001\t1100\t.\t+\t.\tgene_id "G{k}";\n'
                           for k in range(1, 6))
                   + '1\tt\texon\t1301\t1400\t.\t+\t.\tgene_id "G1";\n')
    models = read_gtf(gtf)
    path = write_tagged_bam(tmp_path / "many.bam", [
        ("r1", 99, 1040, "10M", 1340, [("NH", 1)]), ("r1", 147, 1340, "10M", 1040, [("NH", 1)])])
    votes, _ = count_fragments(path, models, resolution="votes")
    assert votes.to_dict() == {"G1": 1, "G2": 0, "G3": 0, "G4": 0, "G5": 0}
    union, stats = count_fragments(path, models)
    assert union.sum() == 0 and stats["Unassigned_Ambiguity"] == 1


# --------------------------------------------------------------------------- strand evidence

def test_airway_strand_evidence_is_unstranded(unstranded, models):
    # The airway libraries are unstranded (Illumina TruSeq, not stranded): sense ~ antisense.
    # No airway gene is on ".": unstranded union Assigned is exactly sense + antisense.
    for sample, (_, stats) in unstranded.items():
        sense, antisense = stats["strand_sense"], stats["strand_antisense"]
        assert 0.4 <= strand_fraction(stats) <= 0.6, (sample, sense, antisense)
        assert sense + antisense == stats["Assigned"], sample
        assert infer_strandedness(stats) == "unstranded", sample
    # The same single-pass evidence whatever strandedness is counted with; a stranded count
    # assigns at least the fragments that are evidence for its strand.
    for sample in ("SRR1039508", "SRR1039517"):
        _, ref = unstranded[sample]
        for mode, key in (("forward", "strand_sense"), ("reverse", "strand_antisense")):
            _, stats = count_fragments(bam(sample), models, mode)
            assert (stats["strand_sense"], stats["strand_antisense"]) == (
                ref["strand_sense"], ref["strand_antisense"]), (sample, mode)
            assert stats["Assigned"] >= stats[key]


STRAND_GTF = (
    '1\tt\texon\t101\t200\t.\t+\t.\tgene_id "A";\n'
    '1\tt\texon\t301\t400\t.\t+\t.\tgene_id "A";\n'
    '1\tt\texon\t1001\t1100\t.\t-\t.\tgene_id "B";\n'
    '1\tt\texon\t2001\t2100\t.\t.\t.\tgene_id "D";\n')
NH1, NH2 = [("NH", 1)], [("NH", 2)]
STRAND_READS = [
    # pairs: read 1 forward (99/147) or reverse (163 leftmost read 2, 83 read 1)
    ("p1", 99, 150, "10M", 320, NH1), ("p1", 147, 320, "10M", 150, NH1),  # A +: sense
    ("p2", 163, 150, "10M", 320, NH1), ("p2", 83, 320, "10M", 150, NH1),  # A -: antisense
    ("p3", 99, 1010, "10M", 1050, NH1), ("p3", 147, 1050, "10M", 1010, NH1),  # B +: anti
    ("p4", 163, 1010, "10M", 1050, NH1), ("p4", 83, 1050, "10M", 1010, NH1),  # B -: sense
    # single-end reads, and read 2s whose mate is not in the file (strand inverted)
    ("s1", 0, 120, "10M", -1, NH1),  # A +: sense
    ("s2", 16, 130, "10M", -1, NH1),  # A -: antisense
    ("s3", 1 | 16 | 128, 140, "10M", 5000, NH1),  # read 2 on - in A, fragment +: sense
    ("s4", 1 | 128, 1060, "10M", 5000, NH1),  # read 2 on + in B, fragment -: sense
    # neither: A and B (ambiguous), the "." gene D, no gene
    ("a1", 99, 380, "10M", 1070, NH1), ("a1", 147, 1070, "10M", 380, NH1),
    ("d1", 99, 2010, "10M", 2050, NH1), ("d1", 147, 2050, "10M", 2010, NH1),
    ("n1", 99, 600, "10M", 700, NH1), ("n1", 147, 700, "10M", 600, NH1),
    # a multi-mapper in A (sense) and a secondary pair in B (antisense)
    ("m1", 99, 160, "10M", 330, NH2), ("m1", 147, 330, "10M", 160, NH2),
    ("c1", 99 | 256, 1020, "10M", 1080, NH1), ("c1", 147 | 256, 1080, "10M", 1020, NH1),
    # one read name, two unpaired records in A on opposite strands: one union fragment with
    # no strand (neither), two votes fragments (one sense, one antisense)
    ("x1", 0, 170, "10M", -1, NH1), ("x1", 16 | 256, 350, "10M", -1, NH1),
]


@pytest.mark.parametrize("options, sense, antisense", [
    ({}, 6, 4),
    ({"resolution": "votes"}, 7, 5),
    ({"multimapping": "skip"}, 5, 4),  # not m1
    ({"primary_only": True}, 7, 3),  # not c1; x1's primary record alone: sense
    ({"both_mates": True}, 3, 3),  # pairs only: p1, p4, m1 / p2, p3, c1
])
def test_strand_evidence_on_known_orientations(tmp_path, options, sense, antisense):
    gtf = tmp_path / "g.gtf"
    gtf.write_text(STRAND_GTF)
    models = read_gtf(gtf)
    path = write_tagged_bam(tmp_path / "strand.bam", STRAND_READS)
    for mode in STRANDEDNESS:
        _, stats = count_fragments(path, models, mode, **options)
        assert (stats["strand_sense"], stats["strand_antisense"]) == (sense, antisense), mode
        assert sense + antisense <= stats["fragments"]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """Small simulated BAMs (dge_platform/sim/bam.py), 3 % multi-mappers: per library
    strandedness the GTF and BAM; genes apart, so a fragment hits at most one gene."""
    folder = tmp_path_factory.mktemp("simulated")
    return {s: simulate_bam(folder / s, n_pairs=20_000, n_genes=300, seed=3, stranded=s,
                            overlapping=False)
            for s in ("unstranded", "forward", "reverse")}


@pytest.mark.parametrize("library", ["forward", "reverse"])
def test_stranded_simulation_is_inferred(simulated, library):
    gtf, path = simulated[library]
    models = read_gtf(gtf)
    for mode in STRANDEDNESS:
        _, stats = count_fragments(path, models, mode)
        fraction = strand_fraction(stats)
        # only intergenic pairs (random strand) landing in exons go the other way
        assert (fraction if library == "forward" else 1 - fraction) > 0.99, (mode, fraction)
        assert infer_strandedness(stats) == library
    # counting a reverse library as forward keeps only that stray evidence
    _, right = count_fragments(path, models, library)
    _, wrong = count_fragments(path, models, "reverse" if library == "forward" else "forward")
    assert wrong["Assigned"] < 0.01 * right["Assigned"]


@pytest.mark.parametrize("options", [
    {}, {"resolution": "votes"}, {"multimapping": "skip"}, {"primary_only": True},
    {"resolution": "votes", "multimapping": "skip", "primary_only": True}])
def test_strand_evidence_equals_stranded_counts_when_genes_apart(simulated, options):
    # When no fragment hits two genes and no gene is on ".": forward Assigned is exactly the
    # sense evidence, reverse Assigned the antisense, unstranded Assigned both.
    gtf, path = simulated["unstranded"]
    models = read_gtf(gtf)
    stats = {mode: count_fragments(path, models, mode, **options)[1] for mode in STRANDEDNESS}
    u = stats["unstranded"]
    assert u["Unassigned_Ambiguity"] == 0 and u["strand_sense"] > 1000
    assert 0.45 <= strand_fraction(u) <= 0.55
    for mode in STRANDEDNESS:
        assert (stats[mode]["strand_sense"], stats[mode]["strand_antisense"]) == (
            u["strand_sense"], u["strand_antisense"])
    assert stats["forward"]["Assigned"] == u["strand_sense"]
    assert stats["reverse"]["Assigned"] == u["strand_antisense"]
    assert u["Assigned"] == u["strand_sense"] + u["strand_antisense"]


def test_infer_strandedness_thresholds():
    assert infer_strandedness({"strand_sense": 980, "strand_antisense": 19}) is None  # < 1000
    assert infer_strandedness({"strand_sense": 9_000, "strand_antisense": 1_000}) == "forward"
    assert infer_strandedness({"strand_sense": 500, "strand_antisense": 4_500}) == "reverse"
    assert infer_strandedness({"strand_sense": 2_600, "strand_antisense": 2_400}) \
        == "unstranded"
    assert infer_strandedness({"strand_sense": 7_000, "strand_antisense": 3_000}) is None
    assert strand_fraction({"strand_sense": 0, "strand_antisense": 0}) is None
