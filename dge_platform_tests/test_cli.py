"""The dge command end to end on the bundled real data: validate, add, run, status, sql."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from dge_platform.cli import main
from dge_platform_tests.conftest import copy_bundled, write_study


def dge(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def airway_registered(home, tmp_path):
    source = copy_bundled("airway", tmp_path / "incoming")
    result = dge("add", str(source), "--run")
    assert result.exit_code == 0, result.output
    return home.study_dir("airway")


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


def test_add_and_run_materializes_real_study(airway_registered, home):
    result = dge("sql", "select count(*) as n from raw_counts")
    assert result.exit_code == 0
    assert result.output.split() == ["n", "509416"]
    samples = json.loads(dge("sql", "select sample, dex, library_size from samples "
                                    "order by sample", "--format", "json").output)
    assert samples[0] == {"sample": "SRR1039508", "dex": "untrt", "library_size": 20637971}
    study = dge("sql", "select n_samples, n_genes, design from studies", "--format", "csv")
    assert study.output == "n_samples,n_genes,design\n8,63677,~ cell + dex\n"


def test_run_output_shows_progress_and_summary(airway_registered):
    result = dge("run", "airway")
    assert result.exit_code == 0, result.output
    assert "[airway]     wrote raw_counts (509,416 rows)" in result.output
    assert "[airway]     check raw_counts_complete: passed" in result.output
    assert "airway: ok" in result.output
    assert "DuckDB catalog:" in result.output


def test_failed_run_keeps_previous_results(airway_registered, home):
    before = dge("sql", "select sum(count) as total from raw_counts").output
    counts = airway_registered / "airway_counts.csv.gz"
    frame = pd.read_csv(counts, index_col=0)
    frame.iloc[0, 0] = -5
    frame.to_csv(counts)
    assert "invalid (1 problem(s); run 'dge validate" in dge("status").output
    result = dge("run", "airway")
    assert result.exit_code == 1
    assert "airway: FAILED at step ingest_study" in result.output
    assert "airway_counts.csv.gz: values: negative counts: 1 value(s), e.g. gene/sample " \
           "ENSG00000000003/SRR1039508" in result.output
    assert dge("sql", "select sum(count) as total from raw_counts").output == before


def test_status_reports_up_to_date_then_changed(airway_registered):
    result = dge("status")
    assert result.exit_code == 0
    assert result.output.splitlines()[1].split() == ["airway", "bulk", "8", "1", "up", "to", "date"]
    counts = airway_registered / "airway_counts.csv.gz"
    frame = pd.read_csv(counts, index_col=0)
    frame.iloc[0, 0] += 1
    frame.to_csv(counts)
    assert dge("status").output.splitlines()[1].split()[-2:] == ["inputs", "changed"]


def test_add_rejects_invalid_study_and_keeps_registered_one(airway_registered, tmp_path):
    bad = copy_bundled("airway", tmp_path / "bad")
    (bad / "samples.tsv").write_text((bad / "samples.tsv").read_text().replace("untrt", "ctrl"))
    result = dge("add", str(bad))
    assert result.exit_code == 1
    assert "study.yaml: contrasts[0].reference: level 'untrt' not found in column 'dex'" \
           in result.output
    assert "untrt" in (airway_registered / "samples.tsv").read_text()


def test_add_again_updates_the_study(airway_registered, tmp_path):
    source = copy_bundled("airway", tmp_path / "v2")
    (source / "study.yaml").write_text((source / "study.yaml").read_text()
                                       .replace("title: Dexamethasone", "title: Dex v2"))
    assert dge("add", str(source), "--run").exit_code == 0
    assert dge("sql", "select title from studies", "--format", "csv").output.startswith(
        "title\n\"Dex v2 in primary")


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
