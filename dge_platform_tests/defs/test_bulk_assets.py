"""The bulk asset chain through `dge run`: tables, checks, plots and report in the warehouse."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dge_platform.storage.tables import TABLES
from dge_platform_tests._helpers import explorer_panels, simulate
from dge_platform_tests.conftest import copy_bundled, dge, sql, write_study


@pytest.fixture(scope="module")
def pasilla_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DGE_HOME", str(root / "dge"))
        source = copy_bundled("pasilla", root / "incoming")
        result = dge("add", str(source), "--run")
        yield root / "dge", result


@pytest.fixture
def pasilla_home(pasilla_run, monkeypatch):
    monkeypatch.setenv("DGE_HOME", str(pasilla_run[0]))
    return pasilla_run[0]


def test_run_reports_checks_degs_and_report(pasilla_run):
    home, result = pasilla_run
    assert result.exit_code == 0, result.output
    for check in ("raw_counts_complete", "size_factors_valid", "deg_results_valid"):
        assert f"check {check}: passed" in result.output
    report = home / "warehouse" / "reports" / "study_id=pasilla" / "report.html"
    assert f"Report pasilla: {report}" in result.output
    assert "pasilla treated_vs_untreated" in result.output
    html = report.read_text()
    # Static PNGs: QC, the p-value histogram, the design heatmap (volcano, MA, enrichment:
    # plotly, in the DEG explorer and the enrichment section)
    assert sorted(re.findall(r'<img alt="([^"]+)"', html)) == [
        "pc_associations", "pvalues_treated_vs_untreated", "qc_dispersions", "qc_distances",
        "qc_library_sizes", "qc_pca_condition", "qc_pca_type"]
    assert "treated_vs_untreated" in html and "~ type + condition" in html
    (panel,) = explorer_panels(html)
    genes = panel["table"]["columns"][panel["table"]["keys"].index("gene_id")]
    tested = sql("select gene_id from deg_results where padj is not null")["gene_id"]
    assert sorted(genes) == sorted(tested)


def test_deg_results_table(pasilla_home):
    table = sql("select * from deg_results")
    expected = [c for c, _ in TABLES["deg_results"].columns]
    assert list(table.columns) == expected
    assert len(table) == 14599
    assert (table["significant"] == (table["padj"] < 0.05)).all()
    counts = sql("select contrast, count(*) as n from deg_results where padj < 0.05 group by 1")
    assert counts.to_dict("records") == [{"contrast": "treated_vs_untreated",
                                          "n": int((table["padj"] < 0.05).sum())}]
    # The vignette's top gene (pasilla itself, FBgn0039155) is strongly down.
    top = table.set_index("gene_id").loc["FBgn0039155"]
    assert top["log2_fold_change"] == pytest.approx(-4.619837, abs=1e-3)


def test_normalization_tables(pasilla_home):
    sf = sql("select sample, size_factor, library_size from size_factors order by sample")
    assert len(sf) == 7 and (sf["size_factor"] > 0).all()
    joined = sql("select n.sample, n.gene_id, n.normalized_count, r.count, s.size_factor "
                 "from normalized_counts n join raw_counts r using (study_id, gene_id, sample) "
                 "join size_factors s using (study_id, sample)")
    np.testing.assert_allclose(joined["normalized_count"], joined["count"] / joined["size_factor"])
    assert sql("select count(*) as n from vst")["n"].item() == 14599 * 7
    corrected = sql("select count(*) as n from batch_corrected")["n"].item()
    assert corrected == 14599 * 7


def test_sample_qc_and_plots(pasilla_home):
    qc = sql("select * from sample_qc order by sample")
    assert len(qc) == 7
    assert not qc["outlier"].any(), qc[qc["outlier"]]["outlier_reason"].tolist()
    untreated = qc[qc["sample"].str.startswith("untreated")]["pc1"]
    treated = qc[qc["sample"].str.startswith("treated")]["pc1"]
    assert np.sign(untreated).nunique() == 1 and np.sign(treated).nunique() == 1
    assert np.sign(untreated.iloc[0]) != np.sign(treated.iloc[0])  # PC1 separates condition
    plots = sorted(p.name for p in (pasilla_home / "warehouse" / "qc_plots"
                                    / "study_id=pasilla").iterdir())
    assert plots == ["ma_treated_vs_untreated.png", "pvalues_treated_vs_untreated.png",
                     "qc_dispersions.png", "qc_distances.png", "qc_library_sizes.png",
                     "qc_pca_condition.png", "qc_pca_type.png",
                     "volcano_treated_vs_untreated.png"]


def test_study_without_batch_with_technical_replicates(home):
    counts, sheet, _ = simulate(n_genes=400, n_per_group=4, seed=11)
    counts["s0_rerun"] = counts["s0"] // 2
    samples = sheet.reset_index()
    samples["library_of"] = samples["sample"]
    samples.loc[len(samples)] = {"sample": "s0_rerun", "condition": "ctrl", "library_of": "s0"}
    write_study(home.studies / "toy", counts=counts, samples=samples,
                config={"design": "~ condition", "batch": None, "replicate_of": "library_of",
                        "contrasts": [{"name": "t_vs_c", "factor": "condition", "level": "treat",
                                       "reference": "ctrl"}]})
    result = dge("run", "toy")
    assert result.exit_code == 0, result.output
    assert "wrote batch_corrected (0 rows)" in result.output  # no batch column: empty table
    sf = sql("select sample, library_size, n_technical_replicates from size_factors "
             "where sample = 's0'")
    assert sf.to_dict("records") == [{"sample": "s0", "n_technical_replicates": 2,
                                      "library_size": int(counts["s0"].sum()
                                                          + counts["s0_rerun"].sum())}]
    assert sql("select count(*) as n from sample_qc")["n"].item() == 8
