"""The dge command end to end on the bundled real data: validate, add, run, status, sql."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from dge_platform.cli import main
from dge_platform_tests._helpers import simulate
from dge_platform_tests.conftest import copy_bundled, write_study


def dge(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def airway_run(tmp_path_factory):
    """The bundled airway study added and run once (read-only tests share it)."""
    root = tmp_path_factory.mktemp("airway") / "dge"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DGE_HOME", str(root))
        source = copy_bundled("airway", tmp_path_factory.mktemp("incoming"))
        result = dge("add", str(source), "--run")
    assert result.exit_code == 0, result.output
    return root, result


@pytest.fixture
def airway_registered(airway_run, monkeypatch):
    monkeypatch.setenv("DGE_HOME", str(airway_run[0]))
    return airway_run[0] / "studies" / "airway"


@pytest.fixture
def sim_registered(home, tmp_path):
    """A small simulated study (fast to fit) registered and run, for tests that change it."""
    counts, sheet, _ = simulate(n_genes=300, n_per_group=3, seed=5)
    source = write_study(tmp_path / "incoming" / "sim", counts=counts, samples=sheet.reset_index(),
                         config={"id": "sim", "design": "~ condition", "batch": None,
                                 "title": "Simulated v1",
                                 "contrasts": [{"name": "t_vs_c", "factor": "condition",
                                                "level": "treat", "reference": "ctrl"}]})
    result = dge("add", str(source), "--run")
    assert result.exit_code == 0, result.output
    return source, home.study_dir("sim")


def test_validate_ok_and_bad(tmp_path):
    good = copy_bundled("pasilla", tmp_path)
    result = dge("validate", str(good))
    assert result.exit_code == 0
    assert result.output == ("OK: study 'pasilla' (bulk): 7 samples x 14,599 genes, 1 "
                             "contrast(s), design ~ type + condition\n")
    bad = write_study(tmp_path / "bad", config={"id": "../x", "alpha": 0})
    result = dge("validate", str(bad))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == f"2 problem(s) in study {bad}:"
    assert lines[1].startswith("  1. study.yaml: id: invalid study id '../x'")
    assert lines[2].startswith("  2. study.yaml: alpha: Input should be greater than 0")


def test_add_and_run_materializes_real_study(airway_registered):
    result = dge("sql", "select count(*) as n from raw_counts")
    assert result.exit_code == 0
    assert result.output.split() == ["n", "509416"]
    samples = json.loads(dge("sql", "select sample, dex, library_size from samples "
                                    "order by sample", "--format", "json").output)
    assert samples[0] == {"sample": "SRR1039508", "dex": "untrt", "library_size": 20637971}
    study = dge("sql", "select n_samples, n_genes, design from studies", "--format", "csv")
    assert study.output == "n_samples,n_genes,design\n8,63677,~ cell + dex\n"


def test_run_output_shows_progress_and_summary(airway_run):
    result = airway_run[1]
    assert "[airway]     wrote raw_counts (509,416 rows)" in result.output
    assert "[airway]     check raw_counts_complete: passed" in result.output
    assert "airway: ok" in result.output
    assert "DuckDB catalog:" in result.output


def _edit_counts(study_dir, value):
    counts = study_dir / "counts.tsv"
    frame = pd.read_csv(counts, sep="\t", index_col=0)
    frame.iloc[0, 0] = value
    frame.to_csv(counts, sep="\t")


def test_failed_run_keeps_previous_results(sim_registered):
    _, registered = sim_registered
    before = {t: dge("sql", f"select * from {t} order by all").output
              for t in ("raw_counts", "deg_results", "sample_qc")}
    _edit_counts(registered, -5)
    assert "invalid (1 problem(s); run 'dge validate" in dge("status").output
    result = dge("run", "sim")
    assert result.exit_code == 1
    assert "sim: FAILED at step ingest_study" in result.output
    assert "counts.tsv: values: negative counts: 1 value(s), e.g. gene/sample g0/s0" \
        in result.output
    for table, text in before.items():
        assert dge("sql", f"select * from {table} order by all").output == text


def test_status_reports_up_to_date_then_changed(sim_registered):
    _, registered = sim_registered
    result = dge("status")
    assert result.exit_code == 0
    assert result.output.splitlines()[1].split() == ["sim", "bulk", "6", "1", "up", "to", "date"]
    _edit_counts(registered, 1234)
    assert dge("status").output.splitlines()[1].split()[-2:] == ["inputs", "changed"]


def test_add_rejects_invalid_study_and_keeps_registered_one(sim_registered):
    source, registered = sim_registered
    (source / "samples.tsv").write_text((source / "samples.tsv").read_text()
                                        .replace("ctrl", "control"))
    result = dge("add", str(source))
    assert result.exit_code == 1
    assert "study.yaml: contrasts[0].reference: level 'ctrl' not found in column 'condition'" \
        in result.output
    assert "ctrl" in (registered / "samples.tsv").read_text()


def test_add_again_updates_the_study(sim_registered):
    source, _ = sim_registered
    (source / "study.yaml").write_text((source / "study.yaml").read_text()
                                       .replace("Simulated v1", "Simulated v2"))
    assert dge("add", str(source), "--run").exit_code == 0
    assert dge("sql", "select title from studies", "--format", "csv").output == \
        "title\nSimulated v2\n"


def test_run_unknown_study(home):
    result = dge("run", "nope")
    assert result.exit_code == 1
    assert "no registered study 'nope'" in result.output


def test_sql_errors_exit_non_zero(home, tmp_path):
    result = dge("sql", f"COPY studies TO '{tmp_path}/x.csv'")
    assert result.exit_code == 1
    assert result.output.startswith("error: COPY statements are not allowed")


def test_sql_output_file(airway_registered, tmp_path):
    target = tmp_path / "out.csv"
    result = dge("sql", "select sample from samples order by 1", "--format", "csv",
                 "--output", str(target))
    assert result.output == f"wrote 8 row(s) to {target}\n"
    assert target.read_text().splitlines()[:2] == ["sample", "SRR1039508"]


def test_enrichment_makes_biological_sense_for_dexamethasone(airway_registered):
    def rows(query):
        return json.loads(dge("sql", query, "--format", "json").output)

    methods = rows("select collection, method, count(*) as n from enrichment group by all "
                   "order by all")
    assert {(r["collection"], r["method"]) for r in methods} == {
        (c, m) for c in ("GO_BP_ensembl", "Hallmark", "Reactome")
        for m in ("gsea_prerank", "ora_down", "ora_up")}
    top_go = [r["term"] for r in rows(
        "select term from enrichment where collection = 'GO_BP_ensembl' and method = 'ora_up' "
        "order by pvalue limit 20")]
    assert "GO:0071385_cellular_response_to_glucocorticoid_stimulus" in top_go
    top_hallmark = [r["term"] for r in rows(
        "select term from enrichment where collection = 'Hallmark' and method = 'gsea_prerank' "
        "order by padj, abs(score) desc limit 5")]
    # Dexamethasone is the adipogenic inducer in differentiation cocktails.
    assert "HALLMARK_ADIPOGENESIS" in top_hallmark
    mapped = rows("select count(gene_symbol) as n from genes")[0]["n"]
    assert mapped > 30_000
    report = (airway_registered.parents[1] / "warehouse" / "reports" / "study_id=airway"
              / "report.html").read_text()
    assert ">Enrichment</h2>" in report and "HALLMARK_ADIPOGENESIS" in report


def test_run_all_registered_studies_in_one_batched_run(home):
    for study_id in ("toy_a", "toy_b"):
        write_study(home.studies / study_id, config={"id": study_id})
    result = dge("run")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "[toy_a..toy_b]   ingest_study: started" in lines
    assert "[toy_b]     wrote raw_counts (72 rows)" in lines
    # Bulk studies run the bulk graph only: no screen or single-cell table, not even empty.
    assert not [line for line in lines if "well_qc" in line or "cell_qc" in line]
    assert "[toy_a..toy_b]     check deg_results_valid: passed" in lines
    assert len([line for line in lines if line.startswith("toy_a, toy_b: ok (")]) == 1


def test_pathway_activity_of_dexamethasone(airway_registered):
    """PROGENy reads glucocorticoid signalling through the Androgen footprint (GR and AR bind
    the same response elements): its strongest, positive pathway in airway."""
    result = dge("sql", "select source, score, padj from pathway_activity "
                 "where study_id='airway' order by abs(score) desc limit 5", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = [line.split(",") for line in result.output.strip().splitlines()[1:]]
    assert len(rows) == 5 and rows[0][0] == "Androgen"
    assert float(rows[0][1]) > 5 and float(rows[0][2]) < 0.01


def test_tf_activity_of_dexamethasone(airway_registered):
    """With the shipped CollecTRI network, the glucocorticoid receptor (NR3C1) is airway's
    most activated TF."""
    result = dge("sql", "select source, score, padj, n_targets from tf_activity "
                 "where study_id='airway' order by score desc limit 3", "--format", "csv")
    assert result.exit_code == 0, result.output
    source, score, padj, n_targets = result.output.strip().splitlines()[1].split(",")
    assert source == "NR3C1" and float(score) > 5 and float(padj) < 1e-4
    assert int(n_targets) > 100


def test_sample_scores_of_airway(airway_registered):
    """Every sample scored on the 14 PROGENy pathways and the 50 Hallmark sets; the treated
    samples' Androgen (glucocorticoid) scores above every untreated one's."""
    result = dge("sql", "select s.sample, s.collection, s.source, s.score, m.dex "
                 "from sample_scores s join samples m using (study_id, sample) "
                 "where study_id = 'airway'", "--format", "csv")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()[1:]
    rows = [line.split(",") for line in lines]
    assert len(rows) == 8 * (14 + 50)
    androgen = [(dex, float(score)) for _, collection, source, score, dex in rows
                if collection == "PROGENy" and source == "Androgen"]
    treated = [s for dex, s in androgen if dex == "trt"]
    untreated = [s for dex, s in androgen if dex == "untrt"]
    assert len(treated) == len(untreated) == 4 and min(treated) > max(untreated)
