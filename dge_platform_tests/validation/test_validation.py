"""Every bad input named in the study contract gets a clear problem naming file and field."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pandas as pd
import pytest

from dge_platform.validation import validate_study
from dge_platform_tests._helpers import edit_yaml, problems_of
from dge_platform_tests.conftest import copy_bundled, write_study


def only_problem(folder) -> str:
    found = problems_of(folder)
    assert len(found) == 1, found
    return found[0]



def test_valid_toy_study_passes(toy_study):
    report = validate_study(toy_study)
    assert report.problems == []
    assert report.study.counts.shape == (12, 6)
    assert report.study.counts.dtypes.unique().tolist() == [np.dtype("int64")]
    assert list(report.study.samples.index) == [f"s{i}" for i in range(1, 7)]


@pytest.mark.parametrize("name,genes,samples", [("airway", 63677, 8), ("pasilla", 14599, 7)])
def test_bundled_real_studies_are_valid(tmp_path, name, genes, samples):
    report = validate_study(copy_bundled(name, tmp_path))
    assert report.problems == [] and report.warnings == []
    assert report.study.counts.shape == (genes, samples)


def test_missing_study_yaml(tmp_path):
    assert only_problem(tmp_path) == (f"study.yaml: not found in {tmp_path} -> create study.yaml "
                                      "(see the docs, 'Study format')")


def test_malformed_yaml_names_the_line(toy_study):
    (toy_study / "study.yaml").write_text("id: toy\nkind: [bulk\n")
    msg = only_problem(toy_study)
    assert msg.startswith("study.yaml: line ") and "not valid YAML" in msg


def test_yaml_that_is_not_a_mapping(toy_study):
    (toy_study / "study.yaml").write_text("- just\n- a list\n")
    assert "must be a mapping" in only_problem(toy_study)


@pytest.mark.parametrize("key", ["id", "kind", "organism", "design", "contrasts"])
def test_missing_required_key(toy_study, key):
    edit_yaml(toy_study, **{key: None})
    found = problems_of(toy_study)
    assert f"study.yaml: {key}: required key is missing -> add this key" in found


def test_missing_counts_names_both_ways_to_give_them(toy_study):
    edit_yaml(toy_study, counts=None)
    assert problems_of(toy_study) == [
        "study.yaml: counts: required key is missing -> name the count matrix, or give each "
        "sample's BAM, quantifier output or FASTQ files in a bam, quant or fastq_1 column of "
        "the sample sheet"]


def test_missing_samples_key_for_bulk(toy_study):
    edit_yaml(toy_study, samples=None)
    assert only_problem(toy_study).startswith("study.yaml: samples: required key is missing")


def test_unknown_key_suggests_spelling(toy_study):
    edit_yaml(toy_study, desing="~ condition")
    assert only_problem(toy_study) == ("study.yaml: desing: unknown key -> did you mean "
                                       "'design'?")


def test_unknown_kind(toy_study):
    edit_yaml(toy_study, kind="microarray")
    msg = only_problem(toy_study)
    assert msg.startswith("study.yaml: kind:") and "'bulk', 'singlecell' or 'screen'" in msg


@pytest.mark.parametrize("bad_id", ["../x", "Airway", "a b", "x/y", "-lead", ""])
def test_bad_study_id(toy_study, bad_id):
    edit_yaml(toy_study, id=bad_id)
    msg = only_problem(toy_study)
    assert msg.startswith(f"study.yaml: id: invalid study id {bad_id!r}")
    assert "lowercase letters, digits" in msg


@pytest.mark.parametrize("field,value,expect", [
    ("alpha", 1.5, "alpha: Input should be less than 1"),
    ("lfc_threshold", -1, "lfc_threshold: Input should be greater than or equal to 0"),
    ("design", "condition", "design: must be a formula starting with '~'"),
    ("contrasts", [], "contrasts: no contrast listed -> list at least one comparison"),
    ("gsea_permutations", 10, "gsea_permutations: Input should be greater than or equal to 100"),
    ("enrichment_min_lfc", -0.5, "enrichment_min_lfc: Input should be greater than or equal to 0"),
    ("gene_sets", "sets.gmt", "gene_sets: Input should be a valid list"),
])
def test_malformed_values(toy_study, field, value, expect):
    edit_yaml(toy_study, **{field: value})
    assert expect in only_problem(toy_study)


def test_contrast_with_missing_and_unknown_keys(toy_study):
    edit_yaml(toy_study, contrasts=[{"name": "x", "factor": "condition", "level": "treat",
                                     "referense": "ctrl"}])
    found = problems_of(toy_study)
    assert "study.yaml: contrasts[0].reference: required key is missing -> add this key" in found
    assert any(p.startswith("study.yaml: contrasts[0].referense: unknown key") for p in found)


def test_counts_file_missing(toy_study):
    edit_yaml(toy_study, counts="nope.tsv")
    assert only_problem(toy_study) == ("study.yaml: counts: file 'nope.tsv' not found -> check "
                                       "the path; it is relative to the study folder")


def test_counts_path_outside_study_folder(toy_study):
    edit_yaml(toy_study, counts="../../etc/passwd")
    assert "leads outside the study folder" in only_problem(toy_study)


def test_symlink_leaving_the_study_folder_is_refused(toy_study, tmp_path):
    outside = tmp_path / "elsewhere.tsv"
    (toy_study / "counts.tsv").rename(outside)
    os.symlink(outside, toy_study / "counts.tsv")
    assert "leads outside the study folder" in only_problem(toy_study)


def test_empty_counts_file(toy_study):
    (toy_study / "counts.tsv").write_text("")
    assert only_problem(toy_study) == \
        "counts.tsv: file is empty -> supply the file with its contents"


def test_unreadable_counts_file(toy_study, monkeypatch):
    target = toy_study / "counts.tsv"
    real_open = type(target).open

    def deny(self, *args, **kwargs):
        if self == target:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(type(target), "open", deny)  # root ignores chmod, so deny explicitly
    assert only_problem(toy_study) == ("counts.tsv: cannot be read: Permission denied -> check "
                                       "its permissions")


def test_binary_garbage_counts_file(toy_study):
    (toy_study / "counts.tsv").write_bytes(bytes(range(256)) * 4)
    assert only_problem(toy_study).startswith("counts.tsv: cannot be parsed")


def test_empty_sample_sheet(toy_study):
    (toy_study / "samples.tsv").write_text("")
    assert only_problem(toy_study) == "samples.tsv: file is empty -> supply the sample sheet"


def test_header_only_counts(toy_study):
    (toy_study / "counts.tsv").write_text("gene_id\ts1\ts2\n")
    assert only_problem(toy_study).startswith("counts.tsv: has no gene rows")


def test_wrong_delimiter_in_counts(toy_study):
    frame = pd.read_csv(toy_study / "counts.tsv", sep="\t", index_col=0)
    frame.to_csv(toy_study / "counts.tsv", sep=",")
    msg = only_problem(toy_study)
    assert msg.startswith("counts.tsv: header: expected tab-separated values but the header has "
                          "no tab and contains commas")
    assert "rename it to '.csv'" in msg


def test_wrong_delimiter_in_sample_sheet(toy_study):
    sheet = pd.read_csv(toy_study / "samples.tsv", sep="\t")
    sheet.to_csv(toy_study / "samples.tsv", sep=",", index=False)
    assert only_problem(toy_study).startswith("samples.tsv: header: expected tab-separated")


def test_duplicate_gene_ids(toy_study):
    text = (toy_study / "counts.tsv").read_text().replace("\ng3\t", "\ng2\t")
    (toy_study / "counts.tsv").write_text(text)
    assert only_problem(toy_study).startswith("counts.tsv: gene id column: 1 duplicate gene "
                                              "id(s): g2")


def test_duplicate_sample_names_in_matrix(toy_study):
    lines = (toy_study / "counts.tsv").read_text().split("\n")
    lines[0] = lines[0].replace("s2", "s1")
    (toy_study / "counts.tsv").write_text("\n".join(lines))
    assert problems_of(toy_study)[0] == ("counts.tsv: header: duplicate sample name(s): s1 -> "
                                         "give every sample column a unique name")


def test_duplicate_sample_names_in_sheet(toy_study):
    sheet = pd.read_csv(toy_study / "samples.tsv", sep="\t")
    sheet.loc[1, "sample"] = "s1"
    sheet.to_csv(toy_study / "samples.tsv", sep="\t", index=False)
    assert problems_of(toy_study)[0].startswith("samples.tsv: column 'sample': duplicate sample "
                                                "name(s): s1")


def test_sample_sheet_without_sample_column(toy_study):
    sheet = pd.read_csv(toy_study / "samples.tsv", sep="\t").rename(columns={"sample": "name"})
    sheet.to_csv(toy_study / "samples.tsv", sep="\t", index=False)
    assert only_problem(toy_study).startswith("samples.tsv: column 'sample': missing; found "
                                              "columns: name, condition, batch")


def _set_count(folder, gene, sample, value):
    frame = pd.read_csv(folder / "counts.tsv", sep="\t", index_col=0).astype(object)
    frame.loc[gene, sample] = value
    frame.to_csv(folder / "counts.tsv", sep="\t")


def test_non_integer_counts(toy_study):
    _set_count(toy_study, "g4", "s2", 3.5)
    assert only_problem(toy_study).startswith("counts.tsv: values: non-integer counts: 1 "
                                              "value(s), e.g. gene/sample g4/s2")


def test_non_integer_counts_allowed_with_round_counts(toy_study):
    _set_count(toy_study, "g4", "s2", 3.7)
    edit_yaml(toy_study, round_counts=True)
    report = validate_study(toy_study)
    assert report.problems == []
    assert report.study.counts.loc["g4", "s2"] == 4


def test_negative_counts(toy_study):
    _set_count(toy_study, "g0", "s6", -2)
    assert only_problem(toy_study).startswith("counts.tsv: values: negative counts: 1 value(s), "
                                              "e.g. gene/sample g0/s6")


def test_nan_counts(toy_study):
    _set_count(toy_study, "g1", "s3", "")
    assert only_problem(toy_study).startswith("counts.tsv: values: missing or infinite counts: "
                                              "1 value(s), e.g. gene/sample g1/s3")


def test_text_in_count_column(toy_study):
    _set_count(toy_study, "g1", "s3", "lots")
    assert only_problem(toy_study).startswith("counts.tsv: column 's3': non-numeric value "
                                              "'lots' at gene g1")


def test_all_zero_sample(toy_study):
    frame = pd.read_csv(toy_study / "counts.tsv", sep="\t", index_col=0)
    frame["s5"] = 0
    frame.to_csv(toy_study / "counts.tsv", sep="\t")
    assert only_problem(toy_study).startswith("counts.tsv: samples: all-zero sample(s): s5")


def test_sample_in_matrix_but_not_sheet(toy_study):
    frame = pd.read_csv(toy_study / "counts.tsv", sep="\t", index_col=0)
    frame["s7"] = 5
    frame.to_csv(toy_study / "counts.tsv", sep="\t")
    assert only_problem(toy_study).startswith("samples.tsv: column 'sample': 1 sample(s) of "
                                              "counts.tsv missing from the sheet: s7")


def test_sample_in_sheet_but_not_matrix(toy_study):
    frame = pd.read_csv(toy_study / "counts.tsv", sep="\t", index_col=0).drop(columns="s6")
    frame.to_csv(toy_study / "counts.tsv", sep="\t")
    assert only_problem(toy_study).startswith("samples.tsv: column 'sample': 1 sample(s) not in "
                                              "counts.tsv: s6")


def test_design_column_missing(toy_study):
    edit_yaml(toy_study, design="~ donor + condition")
    assert only_problem(toy_study).startswith("samples.tsv: column 'donor': used in design "
                                              "'~ donor + condition' but missing")


def test_empty_design_value(toy_study):
    sheet = pd.read_csv(toy_study / "samples.tsv", sep="\t")
    sheet.loc[2, "batch"] = ""
    sheet.to_csv(toy_study / "samples.tsv", sep="\t", index=False)
    assert only_problem(toy_study).startswith("samples.tsv: column 'batch': empty for sample(s) s3")


def test_contrast_level_absent(toy_study):
    edit_yaml(toy_study, contrasts=[{"name": "x", "factor": "condition", "level": "Treat",
                                     "reference": "ctrl"}])
    assert only_problem(toy_study) == (
        "study.yaml: contrasts[0].level: level 'Treat' not found in column 'condition' of "
        "samples.tsv (levels: ctrl, treat) -> use one of the levels present (values are "
        "case-sensitive)")


def test_contrast_factor_not_in_design(toy_study):
    edit_yaml(toy_study, contrasts=[{"name": "x", "factor": "batch", "level": "b2",
                                     "reference": "b1"}], design="~ condition")
    found = problems_of(toy_study)
    assert "study.yaml: contrasts[0].factor: 'batch' is not in the design '~ condition' -> " \
           "contrast a factor of the design" in found


def test_group_with_one_replicate(toy_study):
    sheet = pd.read_csv(toy_study / "samples.tsv", sep="\t")
    sheet["condition"] = ["ctrl", "ctrl", "ctrl", "ctrl", "ctrl", "treat"]
    sheet.to_csv(toy_study / "samples.tsv", sep="\t", index=False)
    assert only_problem(toy_study).startswith(
        "study.yaml: contrasts[0].level: group 'condition=treat' of contrast 'treat_vs_ctrl' "
        "has 1 biological replicate(s); at least 2 are needed")


def test_technical_replicates_do_not_count_as_biological(toy_study):
    sheet = pd.read_csv(toy_study / "samples.tsv", sep="\t")
    sheet["library_of"] = ["c1", "c2", "c3", "t1", "t1", "t1"]
    sheet["batch"] = ["b1", "b2", "b1", "b2", "b2", "b2"]
    sheet.to_csv(toy_study / "samples.tsv", sep="\t", index=False)
    edit_yaml(toy_study, replicate_of="library_of", design="~ condition")
    found = problems_of(toy_study)
    assert len(found) == 1
    assert found[0].startswith("study.yaml: contrasts[0].level: group 'condition=treat' of "
                               "contrast 'treat_vs_ctrl' has 1 biological replicate(s) after "
                               "summing technical replicates")


def test_technical_replicates_must_share_design_values(toy_study):
    sheet = pd.read_csv(toy_study / "samples.tsv", sep="\t")
    sheet["library_of"] = ["c1", "c1", "c2", "t1", "t2", "t3"]
    sheet.to_csv(toy_study / "samples.tsv", sep="\t", index=False)
    edit_yaml(toy_study, replicate_of="library_of")
    assert only_problem(toy_study).startswith("samples.tsv: column 'batch': technical replicates "
                                              "of 'c1' (by 'library_of') differ in 'batch'")


def test_batch_confounded_with_condition(toy_study):
    sheet = pd.read_csv(toy_study / "samples.tsv", sep="\t")
    sheet["batch"] = ["b1", "b1", "b1", "b2", "b2", "b2"]
    sheet.to_csv(toy_study / "samples.tsv", sep="\t", index=False)
    msg = only_problem(toy_study)
    assert msg.startswith("study.yaml: design: design '~ batch + condition' is not full rank: "
                          "'batch' is confounded with 'condition'")
    assert "b1->ctrl, b2->treat" in msg


def test_no_residual_degrees_of_freedom(tmp_path):
    counts = pd.DataFrame(np.arange(1, 17).reshape(4, 4), columns=["a", "b", "c", "d"],
                          index=pd.Index(["g1", "g2", "g3", "g4"], name="gene_id"))
    samples = pd.DataFrame({"sample": ["a", "b", "c", "d"], "condition": ["ctrl", "ctrl",
                            "treat", "treat"], "batch": ["b1", "b2", "b1", "b2"]})
    folder = write_study(tmp_path / "toy", counts=counts, samples=samples,
                         config={"design": "~ batch * condition"})
    assert only_problem(folder) == (
        "study.yaml: design: 4 coefficients for 4 samples leave no residual degrees of freedom, "
        "so dispersion cannot be estimated -> add biological replicates or remove terms from "
        "the design")


def test_nested_donor_is_reported_as_confounded(toy_study):
    sheet = pd.read_csv(toy_study / "samples.tsv", sep="\t")
    sheet["donor"] = ["d1", "d2", "d3", "d4", "d5", "d6"]
    sheet.to_csv(toy_study / "samples.tsv", sep="\t", index=False)
    edit_yaml(toy_study, design="~ donor + condition")
    assert "'donor' is confounded with 'condition'" in only_problem(toy_study)


def test_batch_column_missing(toy_study):
    edit_yaml(toy_study, batch="lane", design="~ condition")
    assert only_problem(toy_study).startswith("study.yaml: batch: column 'lane' not in samples.tsv")


def test_batch_not_in_design_warns(toy_study):
    edit_yaml(toy_study, design="~ condition")
    report = validate_study(toy_study)
    assert report.problems == []
    assert [str(w) for w in report.warnings][0].startswith(
        "study.yaml: batch: batch column 'batch' is not in the design, so testing ignores it")


def test_numeric_group_labels_warn(toy_study):
    sheet = pd.read_csv(toy_study / "samples.tsv", sep="\t")
    sheet["donor"] = [1, 2, 3, 1, 2, 3]
    sheet.to_csv(toy_study / "samples.tsv", sep="\t", index=False)
    edit_yaml(toy_study, design="~ donor + condition")
    report = validate_study(toy_study)
    assert report.problems == []
    assert any("column 'donor': is numeric, so the design treats it as a continuous" in str(w)
               for w in report.warnings)


def test_every_problem_reported_at_once(toy_study):
    edit_yaml(toy_study, alpha=2, design="~ donor + condition", desing="x")
    _set_count(toy_study, "g0", "s1", -1)
    found = problems_of(toy_study)
    assert len(found) == 4, found
    assert any(p.startswith("study.yaml: alpha:") for p in found)
    assert any(p.startswith("study.yaml: desing: unknown key") for p in found)
    assert any(p.startswith("counts.tsv: values: negative counts") for p in found)
    assert any(p.startswith("samples.tsv: column 'donor'") for p in found)


def test_gzipped_csv_and_crlf_are_read(toy_study):
    frame = pd.read_csv(toy_study / "counts.tsv", sep="\t", index_col=0)
    with gzip.open(toy_study / "counts.csv.gz", "wt", newline="") as fh:
        frame.to_csv(fh, lineterminator="\r\n")
    edit_yaml(toy_study, counts="counts.csv.gz")
    report = validate_study(toy_study)
    assert report.problems == []
    pd.testing.assert_frame_equal(report.study.counts, frame.astype("int64"), check_names=False)


def test_r_style_sheet_with_unnamed_row_name_column(toy_study):
    sheet = pd.read_csv(toy_study / "samples.tsv", sep="\t").set_index("sample")
    sheet.index.name = None
    sheet.to_csv(toy_study / "samples.csv")  # header starts with an empty field, as R writes it
    edit_yaml(toy_study, samples="samples.csv")
    report = validate_study(toy_study)
    assert report.problems == []
    assert list(report.study.samples.index) == [f"s{i}" for i in range(1, 7)]
