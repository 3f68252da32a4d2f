"""Counts built from sequencing outputs named in the sample sheet (``bam``, ``quant``,
``fastq_1``/``fastq_2``): validation, per-sample caching and the count matrix, on the real
airway BAM subsets and salmon outputs against R's summarizeOverlaps and tximport."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest
import yaml

from dge_platform.counting.libraries import assemble_counts, count_libraries, summed_stats
from dge_platform.counting.tximport import import_quantifications, read_tx2gene
from dge_platform.registry import fingerprint
from dge_platform.storage.tables import STAT_COLUMNS
from dge_platform.validation import input_files, validate_study, with_built_counts
from dge_platform_tests.conftest import FIXTURES, REPO

UPSTREAM = REPO / "data" / "upstream" / "airway"
R_COUNTING = FIXTURES / "r_counting"
# The airway samples: cell line and dexamethasone treatment (airway colData).
AIRWAY = {"SRR1039508": ("N61311", "untrt"), "SRR1039509": ("N61311", "trt"),
          "SRR1039512": ("N052611", "untrt"), "SRR1039513": ("N052611", "trt"),
          "SRR1039516": ("N080611", "untrt"), "SRR1039517": ("N080611", "trt"),
          "SRR1039520": ("N061011", "untrt"), "SRR1039521": ("N061011", "trt")}
CONTRAST = {"name": "trt_vs_untrt", "factor": "dex", "level": "trt", "reference": "untrt"}
GROUP_CONTRAST = {"name": "b_vs_a", "factor": "group", "level": "b", "reference": "a"}


def write_sheet_and_yaml(folder: Path, rows: list[dict], **config) -> Path:
    """samples.csv from ``rows`` and a bulk study.yaml naming it (``config`` on top)."""
    pd.DataFrame(rows).to_csv(folder / "samples.csv", index=False)
    (folder / "study.yaml").write_text(yaml.safe_dump({
        "kind": "bulk", "organism": "human", "samples": "samples.csv", **config}))
    return folder


def write_bam_study(folder: Path, **extra) -> Path:
    """The eight airway BAM subsets as a study counted from BAM + GTF."""
    shutil.copytree(UPSTREAM / "bam_subsets", folder / "bams")
    shutil.copy(UPSTREAM / "Homo_sapiens.GRCh37.75_subset.gtf.gz", folder / "genes.gtf.gz")
    return write_sheet_and_yaml(
        folder, [{"sample": s, "cell": c, "dex": d, "bam": f"bams/{s}_subset.bam"}
                 for s, (c, d) in AIRWAY.items()],
        id="airway_bam", gtf="genes.gtf.gz", design="~ cell + dex", contrasts=[CONTRAST],
        **extra)


def write_quant_study(folder: Path, **extra) -> Path:
    """The two airway salmon runs, each also copied under a second name (a group of two
    needs two files), as a study counted from quantifier outputs."""
    quants = folder / "salmon"
    for run in ("SRR1039508", "SRR1039509"):
        shutil.copytree(UPSTREAM / "salmon_quants" / run, quants / run)
        shutil.copytree(UPSTREAM / "salmon_quants" / run, quants / f"{run}_copy")
    shutil.copy(UPSTREAM / "human_tx2gene_orgHsEgDb_3.16.tsv.gz", folder / "tx2gene.tsv.gz")
    return write_sheet_and_yaml(folder, [
        {"sample": "A", "dex": "untrt", "quant": "salmon/SRR1039508"},
        {"sample": "B", "dex": "trt", "quant": "salmon/SRR1039509"},
        {"sample": "C", "dex": "untrt", "quant": "salmon/SRR1039508_copy/quant.sf.gz"},
        {"sample": "D", "dex": "trt", "quant": "salmon/SRR1039509_copy"}],
        id="airway_quant", tx2gene="tx2gene.tsv.gz", design="~ dex", contrasts=[CONTRAST],
        **extra)


@pytest.fixture(scope="module")
def bam_study(tmp_path_factory):
    return write_bam_study(tmp_path_factory.mktemp("bam_study"))


def problems_of(folder: Path) -> list[str]:
    return [str(p) for p in validate_study(folder).problems]


# --------------------------------------------------------------------------- validation

def test_bam_study_validates_without_counting(bam_study):
    report = validate_study(bam_study)
    assert report.problems == []
    study = report.study
    assert study.counts is None  # counted by the library_counts asset, not by validation
    assert study.plan.describe() == "8 BAM files (column 'bam' of samples.csv)"
    assert study.plan.settings == {"strandedness": "unstranded", "multimapping": "count"}
    names = [str(p.relative_to(bam_study)) for p in study.files]
    assert names[:3] == ["study.yaml", "samples.csv", "genes.gtf.gz"]
    assert names[3:] == [f"bams/{s}_subset.bam" for s in AIRWAY]
    # The sensor's fingerprint covers the same files as the input hash ingest records.
    assert input_files(bam_study) == study.files
    assert fingerprint(bam_study) == study.input_hash


def test_changed_bam_changes_the_fingerprint(tmp_path):
    folder = write_bam_study(tmp_path / "s")
    before = fingerprint(folder)
    bam = folder / "bams" / "SRR1039512_subset.bam"
    shutil.copy(folder / "bams" / "SRR1039513_subset.bam", bam)
    assert fingerprint(folder) != before


def test_bam_study_input_problems_name_file_and_fix(tmp_path):
    folder = write_bam_study(tmp_path / "s")
    config = yaml.safe_load((folder / "study.yaml").read_text())
    del config["gtf"]
    (folder / "study.yaml").write_text(yaml.safe_dump(config))
    (folder / "bams" / "SRR1039520_subset.bam").unlink()
    sheet = pd.read_csv(folder / "samples.csv")
    sheet.loc[1, "bam"] = "../elsewhere.bam"
    sheet.loc[3, "bam"] = sheet.loc[2, "bam"]
    sheet.to_csv(folder / "samples.csv", index=False)
    problems = problems_of(folder)
    assert problems == [
        "study.yaml: gtf: required key is missing (counts come from the sample sheet's 'bam' "
        "column) -> name the gene annotation (GTF) the reads were aligned against",
        "samples.csv: column 'bam': 1 path(s) refused: SRR1039509: path '../elsewhere.bam' "
        "leads outside the study folder ('..') -> name files inside the study folder by "
        "their path relative to it",
        "samples.csv: column 'bam': 1 file(s) not found: SRR1039520 "
        "(bams/SRR1039520_subset.bam) -> check the paths; they are relative to the study "
        "folder",
        "samples.csv: column 'bam': samples 'SRR1039512' and 'SRR1039513' name the same file "
        "'SRR1039512_subset.bam' -> give each sample its own file; libraries of one "
        "biological sample are separate files with a replicate_of column"]


def test_bam_of_another_genome_naming(tmp_path):
    folder = write_bam_study(tmp_path / "s")
    gtf = pd.read_csv(folder / "genes.gtf.gz", sep="\t", header=None, comment="#")
    gtf[0] = "chr" + gtf[0].astype(str)
    gtf.to_csv(folder / "genes.gtf.gz", sep="\t", header=False, index=False, quoting=3)
    problems = problems_of(folder)
    assert len(problems) == 8
    assert problems[0].startswith("bams/SRR1039508_subset.bam: no chromosome name of the BAM")
    assert 'The GTF uses "chr" names' in problems[0]
    assert "genes.gtf.gz" in problems[0] and str(folder) not in problems[0]


def test_counts_and_sequencing_columns_do_not_mix(tmp_path):
    folder = write_bam_study(tmp_path / "s", counts="counts.tsv")
    pd.DataFrame({"gene_id": ["g1", "g2"], **{s: [5, 7] for s in AIRWAY}}).to_csv(
        folder / "counts.tsv", sep="\t", index=False)
    report = validate_study(folder)
    assert [str(p) for p in report.problems] == [
        "study.yaml: gtf: only used when counts come from the sample sheet's bam, quant or "
        "fastq_1 column (this study gives counts:) -> remove it"]
    config = yaml.safe_load((folder / "study.yaml").read_text())
    del config["gtf"]
    (folder / "study.yaml").write_text(yaml.safe_dump(config))
    report = validate_study(folder)
    assert report.problems == []
    assert [str(w) for w in report.warnings] == [
        "samples.csv: column 'bam': not used: the counts come from 'counts:' in study.yaml "
        "-> remove 'counts:' to count from these files"]


def test_no_counts_and_no_sequencing_column(tmp_path):
    folder = write_bam_study(tmp_path / "s")
    pd.read_csv(folder / "samples.csv").drop(columns="bam").to_csv(folder / "samples.csv",
                                                                   index=False)
    assert problems_of(folder) == [
        "study.yaml: counts: required key is missing -> name the count matrix, or give each "
        "sample's BAM, quantifier output or FASTQ files in a bam, quant or fastq_1 column of "
        "the sample sheet"]


def test_sequencing_keys_only_for_bulk(tmp_path):
    folder = tmp_path / "sc"
    folder.mkdir()
    (folder / "study.yaml").write_text(yaml.safe_dump({
        "id": "sc", "kind": "singlecell", "organism": "human", "counts": "cells.h5ad",
        "donor": "donor", "design": "~ condition", "tx2gene": "t.tsv",
        "contrasts": [{"name": "x", "factor": "condition", "level": "a", "reference": "b"}]}))
    assert ("study.yaml: tx2gene: only used by kind: bulk, whose counts may come from "
            "sequencing outputs (this study is 'singlecell') -> remove it") in problems_of(folder)


# --------------------------------------------------------------------------- BAM counting

@pytest.fixture(scope="module")
def counted(bam_study, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    plan = validate_study(bam_study).study.plan
    run = count_libraries(plan, cache, workers=2)
    return plan, cache, run


def test_bam_counts_equal_r_summarize_overlaps(counted, bam_study):
    plan, cache, run = counted
    assert sorted(run.counted) == sorted(AIRWAY) and run.reused == []
    built = assemble_counts(plan, cache, run.keys)
    expected = pd.read_csv(R_COUNTING / "summarize_overlaps_counts.csv", index_col="gene_id")
    pd.testing.assert_frame_equal(built.counts.loc[expected.index, expected.columns],
                                  expected, check_names=False, check_dtype=False)
    study = with_built_counts(validate_study(bam_study).study, built)
    assert study.counts.dtypes.eq("int64").all()
    assert study.gene_symbols["ENSG00000116649"] == "SRM"
    stats = study.count_stats
    assert list(stats.columns) == list(STAT_COLUMNS)
    assert (stats["count_source"] == "bam").all()
    # Every fragment has exactly one outcome.
    parts = stats[["assigned", "unassigned_ambiguity", "unassigned_no_features",
                   "unassigned_multimapping", "unassigned_unmapped", "unassigned_other"]]

    assert (parts.sum(axis=1) == stats["total_fragments"]).all()
    assert (stats["assigned"] == expected.sum()).all()
    # Multi-mapping fragments are counted (as R does) and reported: R's own numbers.
    totals = pd.read_csv(R_COUNTING / "bam_totals.csv", index_col=0)
    assert stats["multimapping_fragments"].to_dict() == \
        totals.loc[list(AIRWAY), "fragments_multimapped_NH_gt1"].to_dict()
    assert (stats["unassigned_multimapping"] == 0).all()


def test_unchanged_samples_are_not_counted_again(counted, tmp_path):
    plan, cache, run = counted
    again = count_libraries(plan, cache, workers=2)
    assert again.counted == [] and sorted(again.reused) == sorted(AIRWAY)
    assert again.keys == run.keys
    # A changed setting is a different result for every sample.
    stranded = type(plan)(plan.source, plan.libraries, plan.references,
                          {**plan.settings, "strandedness": "reverse"}, plan.sheet_file)
    assert count_libraries(stranded, tmp_path, workers=1).counted == list(AIRWAY)


def test_only_the_changed_bam_is_counted_again(tmp_path):
    folder = write_bam_study(tmp_path / "s")
    cache = tmp_path / "cache"
    plan = validate_study(folder).study.plan
    count_libraries(plan, cache, workers=1)
    # Results are keyed by content: a BAM replaced by one already counted is reused...
    shutil.copy(folder / "bams" / "SRR1039517_subset.bam",
                folder / "bams" / "SRR1039516_subset.bam")
    plan = validate_study(folder).study.plan
    run = count_libraries(plan, cache, workers=1)
    assert run.counted == []
    built = assemble_counts(plan, cache, run.keys)
    assert built.counts["SRR1039516"].equals(built.counts["SRR1039517"])
    # ... and a new one is counted, alone.
    bam = folder / "bams" / "SRR1039520_subset.bam"
    with pysam.AlignmentFile(str(bam)) as whole:
        records, header = list(whole), whole.header
    with pysam.AlignmentFile(str(bam), "wb", header=header) as out:
        for record in records[: len(records) // 2]:
            out.write(record)
    plan = validate_study(folder).study.plan
    run = count_libraries(plan, cache, workers=1)
    assert run.counted == ["SRR1039520"]
    built = assemble_counts(plan, cache, run.keys)
    assert built.stats.loc["SRR1039520", "total_fragments"] < 0.6 * built.stats.loc[
        "SRR1039521", "total_fragments"]


def test_summed_stats_add_technical_replicates():
    stats = pd.DataFrame({"count_source": ["bam"] * 3, "total_fragments": [100, 300, 50],
                          "assigned": [80, 150, 40], "unassigned_unmapped": [10, 30, 5],
                          "mapping_rate": [0.9, 0.9, 0.9]},
                         index=pd.Index(["a1", "a2", "b"], name="sample"))
    stats = stats.reindex(columns=list(STAT_COLUMNS))
    summed = summed_stats(stats, pd.Series({"a1": "A", "a2": "A", "b": "B"}))
    assert summed.loc["A", "total_fragments"] == 400
    assert summed.loc["A", "assigned"] == 230
    assert summed.loc["A", "assigned_fraction"] == pytest.approx(230 / 400)
    assert summed.loc["B", "mapping_rate"] == pytest.approx(45 / 50)
    assert summed["unassigned_ambiguity"].isna().all()


# --------------------------------------------------------------------------- quantifier outputs

def test_quant_study_counts_are_rounded_tximport(tmp_path):
    folder = write_quant_study(tmp_path / "q")
    report = validate_study(folder)
    assert report.problems == []
    study = report.study
    quant = import_quantifications(
        {"A": UPSTREAM / "salmon_quants" / "SRR1039508",
         "B": UPSTREAM / "salmon_quants" / "SRR1039509"},
        read_tx2gene(UPSTREAM / "human_tx2gene_orgHsEgDb_3.16.tsv.gz"))
    expected = quant.counts.round().astype("int64")
    pd.testing.assert_frame_equal(study.counts[["A", "B"]], expected, check_names=False)
    assert study.counts["C"].equals(study.counts["A"])
    stats = study.count_stats
    assert (stats["count_source"] == "salmon").all()
    # salmon's own numbers (aux_info/meta_info.json) and tximport's unmapped transcripts.
    assert stats.loc["A", "total_fragments"] == 22935521
    assert stats.loc["A", "mapping_rate"] == pytest.approx(0.9200054797)
    assert stats.loc["A", "unassigned_not_in_tx2gene"] == round(quant.unmapped_reads["A"])
    # salmon's library type IU (lib_format_counts.json), also for a quant.sf named directly
    assert (stats["inferred_strandedness"] == "unstranded").all()
    assert [str(w) for w in report.warnings] == [
        "samples.csv: column 'quant': 182,573 of 205,870 transcripts are not in "
        "tx2gene.tsv.gz and are left out (up to 87.6% of a sample's reads; "
        "unassigned_not_in_tx2gene in the samples table)"]


def test_quant_study_with_unmatched_tx2gene(tmp_path):
    folder = write_quant_study(tmp_path / "q")
    pd.DataFrame({"transcript_id": ["NM_1", "NM_2"], "gene_id": ["g1", "g2"]}).to_csv(
        folder / "tx2gene.tsv.gz", sep="\t", index=False)
    problems = problems_of(folder)
    assert len(problems) == 1
    assert problems[0].startswith("tx2gene.tsv.gz: ")
    assert str(folder) not in problems[0]


def test_quant_counts_from_abundance_no(tmp_path):
    folder = write_quant_study(tmp_path / "q", counts_from_abundance="no")
    study = validate_study(folder).study
    expected = pd.read_csv(R_COUNTING / "tximport_counts_no.csv.gz", index_col=0)
    got = study.counts.loc[expected.index, ["A", "B"]].to_numpy()
    assert np.array_equal(got, expected.to_numpy().round())


# --------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def bam_run(tmp_path_factory):
    """The BAM study added and run through the dge command (read-only tests share it)."""
    from click.testing import CliRunner

    from dge_platform.cli import main

    root = tmp_path_factory.mktemp("home") / "dge"
    source = write_bam_study(tmp_path_factory.mktemp("incoming") / "airway_bam")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DGE_HOME", str(root))
        mp.setenv("DGE_N_CPUS", "2")
        result = CliRunner().invoke(main, ["add", str(source), "--run"],
                                    catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return root, result


def sql(root: Path, text: str) -> pd.DataFrame:
    from dge_platform.storage.catalog import query
    from dge_platform.storage.home import DgeHome

    return query(DgeHome(root), text)


def test_dge_run_counts_bams_into_raw_counts(bam_run):
    root, _ = bam_run
    raw = sql(root, "select gene_id, sample, count from raw_counts "
                    "where study_id = 'airway_bam'")
    wide = raw.pivot(index="gene_id", columns="sample", values="count")
    expected = pd.read_csv(R_COUNTING / "summarize_overlaps_counts.csv", index_col="gene_id")
    pd.testing.assert_frame_equal(wide.loc[expected.index, expected.columns], expected,
                                  check_names=False, check_dtype=False)
    studies = sql(root, "select counts_file, n_samples from studies")
    assert studies.to_dict("records") == [
        {"counts_file": "8 BAM files (column 'bam' of samples.csv)", "n_samples": 8}]


def test_sample_qc_reports_fragment_assignment(bam_run):
    root, _ = bam_run
    qc = sql(root, "select * from sample_qc order by sample").set_index("sample")
    samples = sql(root, "select * from samples order by sample").set_index("sample")
    expected = pd.read_csv(R_COUNTING / "summarize_overlaps_counts.csv", index_col="gene_id")
    assert list(qc.index) == list(AIRWAY)
    assert (qc["assigned"] == expected.sum()).all()
    assert (qc["library_size"] == expected.sum()).all()
    assert (qc["count_source"] == "bam").all()
    for column in ("total_fragments", "unassigned_ambiguity", "unassigned_no_features",
                   "assigned_fraction"):
        assert qc[column].equals(samples[column]), column
    assert samples["bam"].iloc[0] == "bams/SRR1039508_subset.bam"


def test_report_and_ui_show_counting(bam_run):
    root, _ = bam_run
    report = (root / "warehouse" / "reports" / "study_id=airway_bam" / "report.html").read_text()
    assert ">Counting</h2>" in report and "unassigned_ambiguity" in report
    assert "qc_fragment_assignment" in report
    import dagster as dg

    with dg.DagsterInstance.from_config(str(root / "dagster_home")) as instance:
        event = instance.get_latest_materialization_event(
            dg.AssetKey(["bulk", "library_counts"]))
    metadata = event.asset_materialization.metadata
    assert sorted(metadata["counted"].value) == sorted(AIRWAY)
    assert "![fragment_assignment](data:image/png;base64," in metadata[
        "fragment_assignment"].value


# --------------------------------------------------------------------------- FASTQ through salmon

@pytest.fixture(scope="module")
def fastq_run(tmp_path_factory):
    """A simulated FASTQ study (known truth) added and run twice through dge: the second run,
    after a change that does not touch the reads, reuses the index and every quantification."""
    from click.testing import CliRunner

    from dge_platform.cli import main
    from dge_platform.sim.reads import simulate_study
    from dge_platform_tests._helpers import require_salmon

    require_salmon()
    source = tmp_path_factory.mktemp("incoming") / "reads"
    simulate_study(source, n_genes=300, n_pairs=100_000, n_samples=4, seed=3)
    config = {"id": "reads", "kind": "bulk", "organism": "human", "samples": "samples.tsv",
              "transcriptome": "reference/transcripts.fa.gz",
              "tx2gene": "reference/tx2gene.tsv", "design": "~ condition",
              "contrasts": [{"name": "treat_vs_ctrl", "factor": "condition",
                             "level": "treat", "reference": "ctrl"}]}
    (source / "study.yaml").write_text(yaml.safe_dump(config))
    root = tmp_path_factory.mktemp("home") / "dge"
    runs = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DGE_HOME", str(root))
        for title in ("first", "second"):
            (source / "study.yaml").write_text(yaml.safe_dump({**config, "title": title}))
            result = CliRunner().invoke(main, ["add", str(source), "--run"],
                                        catch_exceptions=False)
            assert result.exit_code == 0, result.output
            runs.append(result)
    return root, source


def test_fastq_gene_counts_follow_the_truth(fastq_run, record_property):
    root, source = fastq_run
    raw = sql(root, "select gene_id, sample, count from raw_counts")
    counts = raw.pivot(index="gene_id", columns="sample", values="count")
    truth = pd.read_csv(source / "truth" / "gene_counts.tsv", sep="\t", index_col="gene_id")
    assert set(counts.index) == set(truth.index)
    for sample in truth.columns:
        rho = counts[sample].reindex(truth.index).corr(truth[sample], method="spearman")
        record_property(f"report: FASTQ->salmon->raw_counts Spearman {sample}",
                        round(float(rho), 4))
        assert rho >= 0.95, sample
    qc = sql(root, "select * from sample_qc order by sample").set_index("sample")
    assert (qc["count_source"] == "fastq").all()
    assert (qc["total_fragments"] == 100_000).all()
    assert (qc["mapping_rate"] > 0.99).all()
    samples = sql(root, "select inferred_strandedness from samples")
    assert (samples["inferred_strandedness"] == "unstranded").all()  # salmon's -l A found IU


def test_fastq_study_finds_the_simulated_changes(fastq_run):
    root, source = fastq_run
    results = sql(root, "select gene_id, log2_fold_change, padj from deg_results")
    truth = pd.read_csv(source / "truth" / "gene_lfc.tsv", sep="\t", index_col="gene_id")
    called = results[results["padj"] < 0.05].set_index("gene_id")
    true_lfc = truth["log2_fold_change"].reindex(called.index)
    # Called genes are true changes, in the true direction.
    assert len(called) >= 15
    assert (true_lfc != 0).mean() >= 0.9
    assert (np.sign(true_lfc[true_lfc != 0]) == np.sign(called["log2_fold_change"][
        true_lfc != 0])).all()


def test_second_run_reuses_index_and_quantifications(fastq_run):
    import dagster as dg

    root, _ = fastq_run
    with dg.DagsterInstance.from_config(str(root / "dagster_home")) as instance:
        def events(asset):
            return [r.asset_materialization.metadata for r in instance.fetch_materializations(
                dg.AssetKey(["bulk", asset]), limit=10).records]

        index = events("salmon_index")
        counted = events("library_counts")
    assert [m["built"].value for m in index] == [False, True]  # newest first
    assert [len(m["counted"].value) for m in counted] == [0, 4]
    assert sorted(counted[0]["reused"].value) == ["ctrl1", "ctrl2", "treat3", "treat4"]


def test_quantifier_is_detected_from_the_outputs(tmp_path):
    from dge_platform.counting.libraries import Library, detect_quantifier

    (tmp_path / "k1").mkdir()
    (tmp_path / "k1" / "abundance.h5").write_bytes(b"x")
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "quant.sf").write_text("x")
    (tmp_path / "r1.genes.results").write_text("x")
    (tmp_path / "other.txt").write_text("x")

    def detect(*paths):
        return detect_quantifier([Library(f"x{i}", {"quant": tmp_path / p})
                                  for i, p in enumerate(paths)], "samples.csv")

    assert detect("k1") == ("kallisto", None)
    assert detect("s1", "s1/quant.sf") == ("salmon", None)
    assert detect("r1.genes.results") == ("rsem", None)
    tool, problem = detect("s1", "k1")
    assert tool is None and str(problem) == (
        "samples.csv: column 'quant': samples mix quantifiers: salmon (x0), kallisto (x1) -> "
        "quantify every sample with the same tool")
    tool, problem = detect("s1", "other.txt")
    assert str(problem).startswith("samples.csv: column 'quant': sample 'x1': not a salmon "
                                   "(quant.sf), kallisto (abundance.h5/.tsv) or RSEM")


def test_fastq_study_without_salmon_says_how_to_install(tmp_path, monkeypatch):
    folder = tmp_path / "reads"
    (folder / "fastq").mkdir(parents=True)
    (folder / "tx.fa").write_text(">t1\nACGT\n")
    (folder / "t2g.tsv").write_text("transcript_id\tgene_id\nt1\tg1\n")
    rows = []
    for i, group in enumerate(["a", "a", "b", "b"]):
        for mate in (1, 2):
            (folder / "fastq" / f"s{i}_{mate}.fq").write_text("@r\nACGT\n+\nIIII\n")
        rows.append({"sample": f"s{i}", "group": group, "fastq_1": f"fastq/s{i}_1.fq",
                     "fastq_2": f"fastq/s{i}_2.fq"})
    write_sheet_and_yaml(folder, rows, id="reads", transcriptome="tx.fa", tx2gene="t2g.tsv",
                         design="~ group", contrasts=[GROUP_CONTRAST])
    monkeypatch.setenv("DGE_SALMON", str(tmp_path / "no-salmon"))
    problems = problems_of(folder)
    assert len(problems) == 1
    assert problems[0].startswith("samples.csv: column 'fastq_1': FASTQ inputs are quantified "
                                  "with salmon: DGE_SALMON=")
    assert "sudo apt-get install salmon" in problems[0]


def test_damaged_bam_fails_the_run_and_keeps_previous_results(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from dge_platform.cli import main

    monkeypatch.setenv("DGE_HOME", str(tmp_path / "home"))
    source = write_bam_study(tmp_path / "incoming" / "airway_bam")

    def dge(*args):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    assert dge("add", str(source), "--run").exit_code == 0
    before = dge("sql", "select * from raw_counts order by all").output
    bam = tmp_path / "home" / "studies" / "airway_bam" / "bams" / "SRR1039513_subset.bam"
    good = bam.read_bytes()
    bam.write_bytes(good[:20_000])  # header intact, records cut off: validation sees it
    result = dge("run", "airway_bam")
    assert result.exit_code == 1
    assert "airway_bam: FAILED at step library_counts" in result.output
    assert ("bams/SRR1039513_subset.bam: not a readable BAM file (no BGZF EOF marker; file "
            "may be truncated)") in result.output
    # Damage inside a compressed block, end marker intact: found while counting.
    bam.write_bytes(good[:30_000] + bytes(255 - b for b in good[30_000:30_200]) + good[30_200:])
    result = dge("run", "airway_bam")
    assert result.exit_code == 1
    assert "airway_bam: FAILED at step library_counts" in result.output
    assert "bams/SRR1039513_subset.bam: unreadable BAM" in result.output
    assert "-> replace the file with a complete copy (dge add) and run again" in result.output
    assert dge("sql", "select * from raw_counts order by all").output == before


def test_reads_on_the_other_strand_are_refused_and_unstranded_is_noted(tmp_path):
    """A reverse-stranded library counted as forward would miss most fragments: an error;
    counted as unstranded (the default): a note saying what to set."""
    from dge_platform.sim.bam import simulate_bam

    folder = tmp_path / "s"
    (folder / "bams").mkdir(parents=True)
    rows = []
    for i, group in enumerate(["a", "a", "b", "b"]):
        simulate_bam(folder / "bams", n_pairs=3_000, n_genes=200, seed=1, read_seed=10 + i,
                     stranded="reverse", bam_name=f"s{i}")
        rows.append({"sample": f"s{i}", "group": group, "bam": f"bams/s{i}.bam"})

    def build(strandedness):
        write_sheet_and_yaml(folder, rows, id="stranded", gtf="bams/annotation.gtf",
                             design="~ group", contrasts=[GROUP_CONTRAST],
                             strandedness=strandedness)
        report = validate_study(folder)
        assert report.problems == []
        study = report.study
        run = count_libraries(study.plan, tmp_path / "cache", workers=1)
        return study, assemble_counts(study.plan, tmp_path / "cache", run.keys)

    study, built = build("forward")
    assert (built.stats["inferred_strandedness"] == "reverse").all()
    assert (built.stats["strand_sense_fraction"] < 0.01).all()
    assert [str(p) for p in built.problems] == [
        "study.yaml: strandedness: is forward but the reads are reverse-stranded: 0% of "
        "fragments on their gene's strand, 100% on the opposite one (median sample); counting "
        "on the wrong strand misses most fragments -> set strandedness: reverse"]
    with pytest.raises(Exception, match="is forward but the reads are reverse-stranded"):
        with_built_counts(study, built)
    study, built = build("unstranded")
    assert built.problems == []
    assert built.notes[-1].startswith("the library looks reverse-stranded (0% of fragments on "
                                      "their gene's strand")
    assert built.notes[-1].endswith("set strandedness: reverse")
    assert build("reverse")[1].notes == []


def test_rsem_gene_results_need_no_tx2gene(tmp_path):
    folder = tmp_path / "rsem"
    (folder / "rsem").mkdir(parents=True)
    rng = np.random.default_rng(0)
    genes = [f"ENSG{i:011d}" for i in range(50)]
    rows = []
    for i, group in enumerate(["a", "a", "b", "b"]):
        expected = rng.gamma(2.0, 200.0, len(genes)).round(2)
        pd.DataFrame({"gene_id": genes, "transcript_id(s)": "t", "length": 1500.0,
                      "effective_length": 1350.0, "expected_count": expected,
                      "TPM": expected / expected.sum() * 1e6, "FPKM": 0.0}).to_csv(
            folder / "rsem" / f"s{i}.genes.results", sep="\t", index=False)
        rows.append({"sample": f"s{i}", "group": group, "quant": f"rsem/s{i}.genes.results"})
    write_sheet_and_yaml(folder, rows, id="rsem", design="~ group",
                         contrasts=[GROUP_CONTRAST], counts_from_abundance="no")
    report = validate_study(folder)
    assert report.problems == []
    study = report.study
    assert study.plan.settings["quantifier"] == "rsem" and "tx2gene" not in study.plan.references
    expected = pd.read_csv(folder / "rsem" / "s2.genes.results", sep="\t", index_col=0)
    assert (study.counts["s2"] == expected["expected_count"].round()).all()
    assert (study.count_stats["count_source"] == "rsem").all()
    assert study.count_stats.loc["s2", "assigned"] == round(expected["expected_count"].sum())


def test_dge_validate_of_a_quant_study_prints_its_summary_only(tmp_path):
    from click.testing import CliRunner

    from dge_platform.cli import main

    folder = write_quant_study(tmp_path / "q")
    result = CliRunner().invoke(main, ["validate", str(folder)], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "warning: samples.csv: column 'quant': 182,573 of 205,870 transcripts are not in "
        "tx2gene.tsv.gz and are left out (up to 87.6% of a sample's reads; "
        "unassigned_not_in_tx2gene in the samples table)",
        "OK: study 'airway_quant' (bulk): 4 samples x 12,112 genes, 1 contrast(s), design ~ dex"]


def test_a_daemonic_worker_counts_samples_in_turn(bam_study, tmp_path, monkeypatch):
    """Celery's prefork workers are daemonic and may not start processes."""
    import multiprocessing

    plan = validate_study(bam_study).study.plan
    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True, raising=False)
    run = count_libraries(plan, tmp_path, workers=2)
    assert run.counted == list(AIRWAY)


def test_unreadable_gtf_is_named_by_validation(tmp_path):
    folder = write_bam_study(tmp_path / "s")
    (folder / "genes.gtf.gz").unlink()
    (folder / "genes.gtf.gz").write_text('1\tx\texon\tabc\t10\t.\t+\t.\tgene_id "A";\n')
    assert problems_of(folder) == [
        "genes.gtf.gz: line 1: start/end must be integers, got 'abc'/'10' -> supply the GTF "
        "(plain or gzipped) the reads were aligned against"]
