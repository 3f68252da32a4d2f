"""Gene counts from quantifier outputs agree with R tximport; nf-core merged matrices read.

R references: ``fixtures/r_counting/tximport_*`` (tximport 1.26.1, ignoreTxVersion=TRUE, on
the airway salmon runs; see that folder's README).
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from dge_platform.counting.tximport import (
    QuantInputError,
    import_quantifications,
    read_tx2gene,
    strip_version,
)
from dge_platform.readers.count_checks import check_counts
from dge_platform.validation import validate_study
from dge_platform_tests.conftest import FIXTURES, REPO

ROOT = REPO
UPSTREAM = ROOT / "data" / "upstream" / "airway"
R_DIR = FIXTURES / "r_counting"
NFCORE = FIXTURES / "nfcore" / "salmon.merged.gene_counts.tsv"
SAMPLES = ["SRR1039508", "SRR1039509"]
TX2GENE = UPSTREAM / "human_tx2gene_orgHsEgDb_3.16.tsv.gz"
RTOL = 1e-6


def max_relative_difference(ours: pd.DataFrame, theirs: pd.DataFrame) -> float:
    assert list(ours.index) == list(theirs.index)
    assert list(ours.columns) == list(theirs.columns)
    a, b = ours.to_numpy(), theirs.to_numpy()
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def r_matrix(name: str) -> pd.DataFrame:
    return pd.read_csv(R_DIR / name, index_col=0)


def r_unmapped() -> dict[str, str]:
    lines = (R_DIR / "tximport_unmapped.txt").read_text().splitlines()
    return dict(line.split("\t") for line in lines)


@pytest.fixture(scope="module")
def tx2gene():
    return read_tx2gene(TX2GENE)


@pytest.fixture(scope="module", params=["no", "lengthScaledTPM"])
def airway(request, tx2gene):
    paths = {s: UPSTREAM / "salmon_quants" / s for s in SAMPLES}
    return request.param, import_quantifications(paths, tx2gene,
                                                 counts_from_abundance=request.param)


def test_tx2gene_first_row_per_transcript(tx2gene):
    unmapped = r_unmapped()
    assert tx2gene.rows == int(unmapped["tx2gene_table_rows"])
    assert len(tx2gene.table) == int(unmapped["tx2gene_transcripts"])
    assert tx2gene.duplicate_transcripts == int(
        unmapped["tx2gene_transcripts_with_several_genes (first row kept)"])
    raw = pd.read_csv(TX2GENE, sep="\t", dtype=str)
    first = raw.drop_duplicates("transcript_id").set_index("transcript_id")["gene_id"]
    ours = tx2gene.table.set_index("transcript_id")["gene_id"]
    assert ours.equals(first)
    # ENST00000007735 is listed with ENSG00000006059 first, then an alt-haplotype gene.
    assert ours["ENST00000007735"] == "ENSG00000006059"
    assert tx2gene.gene_symbols["ENSG00000256069"] == "A2MP1"


def test_gene_quantifications_equal_r_tximport(airway):
    cfa, quant = airway
    figures = {
        "counts": max_relative_difference(quant.counts, r_matrix(f"tximport_counts_{cfa}.csv.gz")),
        "abundance": max_relative_difference(quant.abundance,
                                             r_matrix("tximport_abundance.csv.gz")),
        "length": max_relative_difference(quant.length, r_matrix("tximport_length.csv.gz")),
    }
    assert all(v < RTOL for v in figures.values()), figures
    assert quant.counts_from_abundance == cfa
    assert quant.counts.shape == (int(r_unmapped()["genes_out"]), 2)


def test_unmapped_transcripts_and_reads_equal_r(airway):
    _, quant = airway
    unmapped = r_unmapped()
    assert quant.transcripts == int(unmapped["salmon_transcripts"])
    assert quant.unmapped_transcripts == int(unmapped["salmon_transcripts_not_in_tx2gene"])
    for sample in SAMPLES:
        total = float(unmapped[f"NumReads_total_{sample}"])
        mapped = float(unmapped[f"NumReads_mapped_{sample}"])
        assert quant.unmapped_reads[sample] == pytest.approx(total - mapped, rel=1e-12)
        assert quant.unmapped_fraction_of_reads[sample] == pytest.approx(1 - mapped / total,
                                                                         rel=1e-12)


def test_length_scaled_counts_keep_library_size(tx2gene):
    paths = {s: UPSTREAM / "salmon_quants" / s / "quant.sf.gz" for s in SAMPLES}
    default = import_quantifications(paths, tx2gene)
    assert default.counts_from_abundance == "lengthScaledTPM"
    plain = import_quantifications(paths, tx2gene, counts_from_abundance="no")
    np.testing.assert_allclose(default.counts.sum(), plain.counts.sum(), rtol=1e-12)
    # Rounded by the caller as round_counts does.
    checked, problems = check_counts(default.counts, "quant", round_counts=True)
    assert problems == [] and checked.dtypes.eq(np.int64).all()


# Small quantification files in other tools' formats, made from the first transcripts of the
# airway salmon runs, so every format must give the salmon result.
N_TX = 3000


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
    out = tmp_path_factory.mktemp("quants")
    table = pd.read_csv(TX2GENE, sep="\t", dtype=str).drop_duplicates("transcript_id")
    gene_of = table.set_index("transcript_id")["gene_id"]
    frames = {}
    for sample in SAMPLES:
        df = pd.read_csv(UPSTREAM / "salmon_quants" / sample / "quant.sf.gz", sep="\t",
                         nrows=N_TX)
        (out / "salmon" / sample).mkdir(parents=True)
        df.to_csv(out / "salmon" / sample / "quant.sf", sep="\t", index=False)
        frames[sample] = df
        kallisto = pd.DataFrame({"target_id": df["Name"], "length": df["Length"],
                                 "eff_length": df["EffectiveLength"],
                                 "est_counts": df["NumReads"], "tpm": df["TPM"]})
        (out / "kallisto" / sample).mkdir(parents=True)
        kallisto.to_csv(out / "kallisto" / sample / "abundance.tsv", sep="\t", index=False)
        with h5py.File(out / "kallisto" / sample / "abundance.h5", "w") as h5:
            h5["aux/ids"] = df["Name"].to_numpy().astype("S")
            h5["aux/eff_lengths"] = df["EffectiveLength"].to_numpy()
            h5["est_counts"] = df["NumReads"].to_numpy()
        genes = strip_version(df["Name"]).map(gene_of).fillna("ENSG_NONE")
        rsem = pd.DataFrame({"transcript_id": df["Name"], "gene_id": genes,
                             "length": df["Length"], "effective_length": df["EffectiveLength"],
                             "expected_count": df["NumReads"], "TPM": df["TPM"],
                             "FPKM": 0.0, "IsoPct": 0.0})
        (out / "rsem").mkdir(exist_ok=True)
        rsem.to_csv(out / "rsem" / f"{sample}.isoforms.results", sep="\t", index=False)
    return out, frames


def test_kallisto_tsv_and_rsem_isoforms_match_salmon(subset, tx2gene):
    out, _ = subset
    salmon = import_quantifications({s: out / "salmon" / s for s in SAMPLES}, tx2gene)
    kallisto = import_quantifications({s: out / "kallisto" / s / "abundance.tsv"
                                       for s in SAMPLES}, tx2gene, tool="kallisto")
    rsem = import_quantifications({s: out / "rsem" / f"{s}.isoforms.results" for s in SAMPLES},
                                  tx2gene, tool="rsem")
    for other in (kallisto, rsem):
        for matrix in ("counts", "abundance", "length"):
            pd.testing.assert_frame_equal(getattr(other, matrix), getattr(salmon, matrix),
                                          rtol=1e-12)
        assert other.unmapped_transcripts == salmon.unmapped_transcripts > 0
    # Without a table, RSEM's own gene_id column maps the isoforms ("ENSG_NONE" = unmapped).
    own = import_quantifications({s: out / "rsem" / f"{s}.isoforms.results" for s in SAMPLES},
                                 None, tool="rsem", counts_from_abundance="no")
    assert own.counts.drop(index="ENSG_NONE").equals(
        import_quantifications({s: out / "salmon" / s for s in SAMPLES}, tx2gene,
                               counts_from_abundance="no").counts)


def test_kallisto_h5_counts_match_salmon(subset, tx2gene):
    out, _ = subset
    salmon = import_quantifications({s: out / "salmon" / s for s in SAMPLES}, tx2gene,
                                    counts_from_abundance="no")
    h5 = import_quantifications({s: out / "kallisto" / s for s in SAMPLES}, tx2gene,
                                tool="kallisto", counts_from_abundance="no")
    assert h5.files[SAMPLES[0]].name == "abundance.h5"
    pd.testing.assert_frame_equal(h5.counts, salmon.counts, rtol=1e-12)
    # TPM is recomputed from counts / effective length (R's read_kallisto_h5 does the same)
    # over this subset's transcripts: proportional to salmon's (6-decimal) TPM column.
    for sample in SAMPLES:
        expressed = salmon.abundance[sample] > 0.1
        ratio = (h5.abundance[sample] / salmon.abundance[sample])[expressed]
        np.testing.assert_allclose(ratio, ratio.median(), rtol=1e-3)


def test_rsem_gene_level_as_tximport(tmp_path):
    """genes.results need no tx2gene; lengthScaledTPM on them is tximport's gene-level
    formula, so R's transcript-level result is reproduced from R's gene matrices."""
    counts, abundance, length = (r_matrix(f"tximport_{n}.csv.gz")
                                 for n in ("counts_no", "abundance", "length"))
    paths = {}
    for sample in SAMPLES:
        genes = pd.DataFrame({"gene_id": counts.index, "transcript_id(s)": "t",
                              "length": length[sample], "effective_length": length[sample],
                              "expected_count": counts[sample], "TPM": abundance[sample],
                              "FPKM": 0.0})
        paths[sample] = tmp_path / f"{sample}.genes.results"
        genes.to_csv(paths[sample], sep="\t", index=False, float_format="%.17g")
    plain = import_quantifications(paths, None, tool="rsem", counts_from_abundance="no")
    assert max_relative_difference(plain.counts, counts) == 0
    scaled = import_quantifications(paths, None, tool="rsem")
    assert max_relative_difference(
        scaled.counts, r_matrix("tximport_counts_lengthScaledTPM.csv.gz")) < RTOL
    assert scaled.unmapped_transcripts == 0


# Errors ---------------------------------------------------------------------------------------

def problem_text(exc_info) -> str:
    return "\n".join(str(p) for p in exc_info.value.problems)


def test_tx2gene_missing_column(tmp_path):
    path = tmp_path / "t2g.tsv"
    path.write_text("tx\tgene\nENST1\tENSG1\n")
    with pytest.raises(QuantInputError) as exc:
        read_tx2gene(path)
    assert problem_text(exc).startswith(f"{path}: header: missing column(s) transcript_id, "
                                        "gene_id; found tx, gene")


def test_tx2gene_wrong_delimiter_and_missing_file(tmp_path):
    path = tmp_path / "t2g.tsv"
    path.write_text("transcript_id,gene_id\nENST1,ENSG1\n")
    with pytest.raises(QuantInputError) as exc:
        read_tx2gene(path)
    assert "does not split on the delimiter" in problem_text(exc)
    with pytest.raises(QuantInputError) as exc:
        read_tx2gene(tmp_path / "absent.tsv")
    assert "tx2gene file not found" in problem_text(exc)


def test_tx2gene_strips_versions_keeps_first_row(tmp_path):
    path = tmp_path / "t2g.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("transcript_id,gene_id,gene_name\nENST1.2,ENSG1,A\nENST1.3,ENSG2,B\n"
                 "ENST2.1,ENSG2,B\n")
    t2g = read_tx2gene(path)
    assert t2g.table.to_dict("list") == {"transcript_id": ["ENST1", "ENST2"],
                                         "gene_id": ["ENSG1", "ENSG2"]}
    assert (t2g.duplicate_transcripts, t2g.multi_gene_transcripts) == (1, 1)
    assert t2g.gene_symbols.to_dict() == {"ENSG1": "A", "ENSG2": "B"}


def write_t2g(tmp_path, rows: str):
    path = tmp_path / "t2g.tsv"
    path.write_text("transcript_id\tgene_id\n" + rows)
    return read_tx2gene(path)


def test_tx2gene_matching_nothing(subset, tmp_path):
    out, _ = subset
    t2g = write_t2g(tmp_path, "ENST99999999999.1\tENSG1\n")
    with pytest.raises(QuantInputError) as exc:
        import_quantifications({s: out / "salmon" / s for s in SAMPLES}, t2g)
    text = problem_text(exc)
    assert text.startswith(f"{tmp_path / 't2g.tsv'}: column transcript_id: matches none of the "
                           "3,000 quantified transcripts (quantified e.g. ENST00000456328")
    assert "versions are ignored on both sides" in text and "annotation release" in text


def test_transcript_id_type_mismatch(subset, tmp_path):
    out, _ = subset
    t2g = write_t2g(tmp_path, "NM_000014.6\tA2M\nNM_000015.3\tNAT2\n")
    with pytest.raises(QuantInputError) as exc:
        import_quantifications({s: out / "salmon" / s for s in SAMPLES}, t2g)
    assert ("transcript id type mismatch: " in problem_text(exc)
            and "has Ensembl transcript ids (ENST...), the table has RefSeq transcript ids"
            in problem_text(exc))


def test_swapped_tx2gene_columns(subset, tmp_path):
    out, frames = subset
    tx = strip_version(frames[SAMPLES[0]]["Name"]).head(2)
    t2g = write_t2g(tmp_path, "".join(f"ENSG{i}\t{t}\n" for i, t in enumerate(tx)))
    with pytest.raises(QuantInputError) as exc:
        import_quantifications({s: out / "salmon" / s for s in SAMPLES}, t2g)
    assert "the two columns look swapped" in problem_text(exc)


def test_unreadable_and_wrong_quant_files(subset, tx2gene, tmp_path):
    out, _ = subset
    with pytest.raises(QuantInputError) as exc:
        import_quantifications({"a": tmp_path / "nowhere"}, tx2gene)
    assert problem_text(exc) == (f"{tmp_path / 'nowhere'}: salmon output file not found -> "
                                 "check the path")
    (tmp_path / "empty").mkdir()
    with pytest.raises(QuantInputError) as exc:
        import_quantifications({"a": tmp_path / "empty"}, tx2gene)
    assert "no quant.sf or quant.sf.gz in this salmon folder" in problem_text(exc)
    # A kallisto file given as salmon output.
    path = out / "kallisto" / SAMPLES[0] / "abundance.tsv"
    with pytest.raises(QuantInputError) as exc:
        import_quantifications({"a": path}, tx2gene)
    assert problem_text(exc).startswith(f"{path}: header: not salmon output (salmon): missing "
                                        "column(s) Name, EffectiveLength, TPM, NumReads")
    binary = tmp_path / "quant.sf"
    binary.write_bytes(b"PK\x03\x04 zipped")
    with pytest.raises(QuantInputError) as exc:
        import_quantifications({"a": binary}, tx2gene)
    assert "cannot be read as text: it is a zip archive" in problem_text(exc)


def test_samples_with_different_transcripts(subset, tx2gene, tmp_path):
    out, frames = subset
    shuffled = frames[SAMPLES[1]].iloc[::-1]
    shuffled.to_csv(tmp_path / "quant.sf", sep="\t", index=False)
    with pytest.raises(QuantInputError) as exc:
        import_quantifications({"a": out / "salmon" / SAMPLES[0], "b": tmp_path / "quant.sf"},
                               tx2gene)
    assert "lists different transcripts (or another order)" in problem_text(exc)


def test_transcript_tools_need_tx2gene_and_one_file_kind(subset, tx2gene):
    out, _ = subset
    with pytest.raises(QuantInputError) as exc:
        import_quantifications({s: out / "salmon" / s for s in SAMPLES}, None)
    assert "needs a transcript-to-gene table" in problem_text(exc)
    mixed = {SAMPLES[0]: out / "kallisto" / SAMPLES[0] / "abundance.h5",
             SAMPLES[1]: out / "kallisto" / SAMPLES[1] / "abundance.tsv"}
    with pytest.raises(QuantInputError) as exc:
        import_quantifications(mixed, tx2gene, tool="kallisto")
    assert "samples mix kallisto output kinds" in problem_text(exc)


# nf-core/rnaseq merged gene matrices ----------------------------------------------------------

def nfcore_study(toy_study: Path, name: str = "salmon.merged.gene_counts.tsv", **changes) -> Path:
    shutil.copy(NFCORE, toy_study / name)
    config = yaml.safe_load((toy_study / "study.yaml").read_text())
    config.update(counts=name, **changes)
    (toy_study / "study.yaml").write_text(yaml.safe_dump(config))
    return toy_study


def test_nfcore_merged_counts_need_round_counts(toy_study):
    problems = [str(p) for p in validate_study(nfcore_study(toy_study)).problems]
    assert len(problems) == 1
    assert problems[0].startswith("salmon.merged.gene_counts.tsv: values: non-integer counts")
    assert problems[0].endswith("-> nf-core/rnaseq merged gene counts are estimated "
                                "(salmon/RSEM) counts, not integers: set round_counts: true in "
                                "study.yaml to round them for DESeq2 (as "
                                "DESeqDataSetFromTximport does)")


def test_nfcore_merged_counts_rounded_with_symbols(toy_study):
    report = validate_study(nfcore_study(toy_study, round_counts=True))
    assert report.problems == []
    study = report.study
    raw = pd.read_csv(NFCORE, sep="\t", index_col=0)
    assert list(study.counts.columns) == [f"s{i}" for i in range(1, 7)]
    assert list(study.counts.index) == list(raw.index)
    # np.rint: halves to even, as R's round() in DESeqDataSetFromTximport.
    assert study.counts.loc["ENSG00000000003"].tolist() == [679, 448, 874, 408, 1138, 1048]
    assert study.counts.loc["ENSG00000000005", "s6"] == 0
    assert study.gene_symbols["ENSG00000000938"] == "FGR"


def test_nfcore_format_forced_for_a_renamed_file(toy_study):
    """``counts_format: nfcore`` reads the pipeline's matrix under any file name."""
    report = validate_study(nfcore_study(toy_study, "gene_counts.tsv", round_counts=True,
                                         counts_format="nfcore"))
    assert report.problems == []
    assert report.study.gene_symbols["ENSG00000000938"] == "FGR"


def test_nfcore_rsem_merged_counts_drop_transcript_ids(toy_study):
    raw = pd.read_csv(NFCORE, sep="\t")
    raw = raw.rename(columns={"gene_name": "transcript_id(s)"})
    raw["transcript_id(s)"] = "ENST1,ENST2"
    raw.to_csv(toy_study / "rsem.merged.gene_counts.tsv", sep="\t", index=False)
    config = yaml.safe_load((toy_study / "study.yaml").read_text())
    config.update(counts="rsem.merged.gene_counts.tsv", round_counts=True)
    (toy_study / "study.yaml").write_text(yaml.safe_dump(config))
    report = validate_study(toy_study)
    assert report.problems == []
    assert report.study.counts.shape == (8, 6)
    assert report.study.gene_symbols is None


def test_nfcore_name_with_other_header(toy_study):
    nfcore_study(toy_study)
    (toy_study / "salmon.merged.gene_counts.tsv").write_text("gene\ts1\nENSG1\t1.5\n")
    problems = [str(p) for p in validate_study(toy_study).problems]
    assert problems == ["salmon.merged.gene_counts.tsv: header: not an nf-core/rnaseq merged "
                        "gene matrix: expected columns gene_id, gene_name (or "
                        "transcript_id(s)), then samples; found gene, s1 -> pass the "
                        "pipeline's *.merged.gene_counts*.tsv unchanged, or set "
                        "counts_format: matrix"]


def test_every_bad_file_reported_and_unknown_tool(subset, tx2gene, tmp_path):
    out, _ = subset
    paths = {s: out / "kallisto" / s / "abundance.tsv" for s in SAMPLES}
    with pytest.raises(QuantInputError) as exc:
        import_quantifications(paths, tx2gene, tool="salmon")
    assert len(exc.value.problems) == 2
    with pytest.raises(QuantInputError) as exc:
        import_quantifications(paths, tx2gene, tool="star")
    assert problem_text(exc) == ("study.yaml: tool: unknown quantifier 'star' -> use one of "
                                 "salmon, kallisto, rsem")
