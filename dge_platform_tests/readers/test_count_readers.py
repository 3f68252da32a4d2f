"""Each supported count input yields the same genes x samples matrix."""

from __future__ import annotations

import csv
import gzip

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from dge_platform.validation import validate_study
from dge_platform_tests.conftest import copy_bundled, write_study


def reference(folder) -> pd.DataFrame:
    return pd.read_csv(folder / "counts.tsv", sep="\t", index_col=0)


def set_yaml(folder, **changes):
    config = yaml.safe_load((folder / "study.yaml").read_text())
    config.update(changes)
    (folder / "study.yaml").write_text(yaml.safe_dump(config))


def test_airway_csv_with_short_header_and_crlf(tmp_path):
    study = validate_study(copy_bundled("airway", tmp_path)).study
    # First and last rows of the published airway matrix.
    assert study.counts.loc["ENSG00000000003"].tolist() == [679, 448, 873, 408, 1138, 1047, 770,
                                                            572]
    # Independent parse with the csv module: same genes, same per-sample totals.
    with gzip.open(tmp_path / "airway" / "airway_counts.csv.gz", "rt", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == list(study.counts.columns)
    assert [r[0] for r in rows[1:]] == list(study.counts.index)
    totals = np.array([[int(v) for v in r[1:]] for r in rows[1:]]).sum(axis=0)
    assert study.counts.sum(axis=0).tolist() == totals.tolist()


def test_matrix_with_gene_name_column_keeps_symbols(toy_study):
    frame = reference(toy_study)
    frame.insert(0, "gene_name", [f"SYM{i}" for i in range(len(frame))])
    frame.to_csv(toy_study / "counts.tsv", sep="\t")
    study = validate_study(toy_study).study
    assert list(study.counts.columns) == [f"s{i}" for i in range(1, 7)]
    assert study.gene_symbols["g3"] == "SYM3"


def test_featurecounts_output(toy_study):
    frame = reference(toy_study)
    annot = pd.DataFrame({"Chr": "chr1", "Start": 1, "End": 100, "Strand": "+", "Length": 100},
                         index=frame.index)
    bams = {s: f"/data/align/{s}.Aligned.sortedByCoord.out.bam" for s in frame.columns}
    fc = pd.concat([annot, frame.rename(columns=bams)], axis=1)
    fc.index.name = "Geneid"
    with open(toy_study / "featurecounts.txt", "w") as fh:
        fh.write('# Program:featureCounts v2.0.3; Command:"featureCounts" "-a" "x.gtf"\n')
        fc.to_csv(fh, sep="\t")
    set_yaml(toy_study, counts="featurecounts.txt")
    study = validate_study(toy_study).study
    pd.testing.assert_frame_equal(study.counts, frame, check_names=False)


@pytest.mark.parametrize("strandedness,column", [("unstranded", 1), ("forward", 2), ("reverse", 3)])
def test_star_reads_per_gene(toy_study, strandedness, column):
    frame = reference(toy_study)
    (toy_study / "star").mkdir()
    for sample in frame.columns:
        body = pd.DataFrame({0: frame.index, 1: frame[sample], 2: frame[sample] * 2,
                             3: frame[sample] * 3})
        head = pd.DataFrame({0: ["N_unmapped", "N_multimapping", "N_noFeature", "N_ambiguous"],
                             1: [10, 20, 30, 40], 2: [10, 20, 30, 40], 3: [10, 20, 30, 40]})
        pd.concat([head, body]).to_csv(toy_study / "star" / f"{sample}.ReadsPerGene.out.tab",
                                       sep="\t", header=False, index=False)
    set_yaml(toy_study, counts="star/*ReadsPerGene.out.tab", strandedness=strandedness)
    study = validate_study(toy_study).study
    pd.testing.assert_frame_equal(study.counts, frame * column, check_names=False)


def test_star_needs_strandedness(toy_study):
    (toy_study / "star").mkdir()
    (toy_study / "star" / "s1.ReadsPerGene.out.tab").write_text("g0\t1\t2\t3\n")
    set_yaml(toy_study, counts="star/*ReadsPerGene.out.tab")
    problems = [str(p) for p in validate_study(toy_study).problems]
    assert problems[0].startswith("study.yaml: strandedness: required for STAR ReadsPerGene input")


def test_star_glob_matching_nothing(toy_study):
    set_yaml(toy_study, counts="star/*ReadsPerGene.out.tab", strandedness="reverse")
    problems = [str(p) for p in validate_study(toy_study).problems]
    assert problems[0].startswith(
        "study.yaml: counts: no file matches 'star/*ReadsPerGene.out.tab'")


@pytest.mark.parametrize("sparse", [False, True])
def test_h5ad_counts_and_obs_as_sample_sheet(toy_study, sparse):
    frame = reference(toy_study)
    sheet = pd.read_csv(toy_study / "samples.tsv", sep="\t", index_col="sample")
    matrix = frame.T.to_numpy().astype(np.float32)
    adata = ad.AnnData(X=sp.csr_matrix(matrix) if sparse else matrix, obs=sheet,
                       var=pd.DataFrame({"gene_symbol": [f"S{i}" for i in range(len(frame))]},
                                        index=frame.index))
    adata.write_h5ad(toy_study / "counts.h5ad")
    config = yaml.safe_load((toy_study / "study.yaml").read_text())
    config.pop("samples")
    config["counts"] = "counts.h5ad"
    (toy_study / "study.yaml").write_text(yaml.safe_dump(config))
    report = validate_study(toy_study)
    assert report.problems == []
    pd.testing.assert_frame_equal(report.study.counts, frame, check_names=False)
    assert report.study.samples.loc["s4", "condition"] == "treat"
    assert report.study.gene_symbols["g2"] == "S2"


def test_h5ad_missing_layer(toy_study):
    frame = reference(toy_study)
    ad.AnnData(X=frame.T.to_numpy()).write_h5ad(toy_study / "counts.h5ad")
    set_yaml(toy_study, counts="counts.h5ad", counts_layer="raw")
    problems = [str(p) for p in validate_study(toy_study).problems]
    assert problems[0] == ("study.yaml: counts_layer: layer 'raw' not in counts.h5ad; layers: "
                           "none -> name a layer holding raw counts, or drop counts_layer to use X")


def test_corrupt_h5ad(toy_study):
    (toy_study / "counts.h5ad").write_bytes(b"not hdf5 at all")
    set_yaml(toy_study, counts="counts.h5ad")
    problems = [str(p) for p in validate_study(toy_study).problems]
    assert problems[0].startswith("counts.h5ad: not a readable h5ad file")


def test_csv_extension_detects_comma(tmp_path):
    folder = write_study(tmp_path / "toy", counts_name="counts.csv", samples_name="samples.csv")
    assert validate_study(folder).problems == []


def test_fingerprint_covers_glob_matches_validation_reads(toy_study):
    """A glob may match a file whose name starts with '~' (refused when named directly):
    validation reads it, so the sensor's fingerprint must cover it too."""
    from dge_platform.registry import fingerprint
    from dge_platform.validation import input_files

    frame = reference(toy_study)
    frame = frame.rename(columns={frame.columns[0]: "~" + frame.columns[0]})
    sheet = pd.read_csv(toy_study / "samples.tsv", sep="\t")
    sheet.loc[0, "sample"] = frame.columns[0]
    sheet.to_csv(toy_study / "samples.tsv", sep="\t", index=False)
    for sample in frame.columns:
        body = pd.DataFrame({0: frame.index, 1: frame[sample], 2: 0, 3: 0})
        body.to_csv(toy_study / f"{sample}.ReadsPerGene.out.tab", sep="\t", header=False,
                    index=False)
    set_yaml(toy_study, counts="*ReadsPerGene.out.tab", strandedness="unstranded")
    study = validate_study(toy_study).study
    assert (toy_study / f"{frame.columns[0]}.ReadsPerGene.out.tab") in study.files
    assert input_files(toy_study) == study.files
    assert fingerprint(toy_study) == study.input_hash
