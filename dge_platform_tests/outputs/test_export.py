"""`dge export`: DEG tables as xlsx (about sheet + one sheet per contrast), csv and parquet.

One small three-group study is run once for the module (CLI tests read it, none change it);
single-cell and screen layouts are checked on the pure functions with hand-made rows."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook

from dge_platform.outputs.export import (
    GENE_COLUMNS,
    build_export,
    default_output_name,
    deg_export_tables,
    export_table,
    unique_sheet_names,
    write_export,
)
from dge_platform_tests.conftest import dge, write_study

LONG = "treatment_B_high_dose_vs_vehicle_ctrl"  # 37 characters: its sheet name is cut to 31
CONTRASTS = ["treatA_vs_ctrl", LONG]
SHEET_COLUMNS = list(GENE_COLUMNS)


def _three_group_study(folder):
    """200 genes, ctrl / treatA / treatB x 3, planted 4-fold changes, symbols in the input."""
    rng = np.random.default_rng(11)
    n_genes, groups = 200, ["ctrl"] * 3 + ["treatA"] * 3 + ["treatB"] * 3
    names = [f"s{i}" for i in range(len(groups))]
    mean = rng.uniform(30, 800, n_genes)
    effect = np.ones((n_genes, len(groups)))
    effect[:20, 3:6] = 4.0       # up in treatA
    effect[20:35, 3:6] = 0.25    # down in treatA
    effect[35:60, 6:9] = 4.0     # up in treatB
    counts = pd.DataFrame(rng.poisson(mean[:, None] * effect), columns=names,
                          index=pd.Index([f"ENSG{i:011d}" for i in range(n_genes)],
                                         name="gene_id"))
    counts.insert(0, "gene_symbol", [f"GENE{i}" for i in range(n_genes)])
    samples = pd.DataFrame({"sample": names, "condition": groups})
    return write_study(folder, counts=counts, samples=samples, config={
        "id": "toy3", "title": "Three groups", "design": "~ condition", "batch": None,
        "contrasts": [{"name": "treatA_vs_ctrl", "factor": "condition", "level": "treatA",
                       "reference": "ctrl"},
                      {"name": LONG, "factor": "condition", "level": "treatB",
                       "reference": "ctrl"}]})


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export") / "dge"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DGE_HOME", str(root))
        source = _three_group_study(tmp_path_factory.mktemp("incoming") / "toy3")
        result = dge("add", str(source), "--run")
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def toy_home(toy_run, monkeypatch):
    monkeypatch.setenv("DGE_HOME", str(toy_run))
    return toy_run


def _stored(contrast: str | None = None) -> pd.DataFrame:
    """deg_results through ``dge sql`` (CSV keeps every digit; JSON would round)."""
    where = f"where contrast = '{contrast}'" if contrast else ""
    result = dge("sql", f"select * from deg_results {where} order by contrast, gene_id",
                 "--format", "csv")
    assert result.exit_code == 0, result.output
    return pd.read_csv(io.StringIO(result.output), float_precision="round_trip")


def _check_sorted(frame: pd.DataFrame) -> None:
    padj = frame["padj"].to_numpy(dtype=float)
    tested = ~np.isnan(padj)
    n_tested = int(tested.sum())
    assert tested[:n_tested].all() and not tested[n_tested:].any()  # untested genes last
    assert (np.diff(padj[:n_tested]) >= 0).all()
    lfc = frame["log2_fold_change"].abs().to_numpy(dtype=float)
    same_padj = np.diff(padj) == 0
    assert (np.diff(lfc)[same_padj] <= 1e-12).all()


def test_xlsx_about_sheet_and_one_sheet_per_contrast(toy_home, tmp_path):
    target = tmp_path / "out.xlsx"
    result = dge("export", "toy3", "--format", "xlsx", "--output", str(target))
    assert result.exit_code == 0, result.output
    stored = _stored()
    alpha = 0.05
    up = int((stored["significant"] & (stored["log2_fold_change"] > 0)).sum())
    down = int((stored["significant"] & (stored["log2_fold_change"] < 0)).sum())
    assert up >= 40 and down >= 10  # the planted effects are found
    assert result.output.splitlines() == [
        f"wrote {target}",
        f"toy3: 'about' sheet + 2 sheet(s) (2 contrast(s)); 400 rows; {up + down} DEGs at "
        f"padj < {alpha:g} ({up} up, {down} down)"]

    book = pd.read_excel(target, sheet_name=None)
    sheet_names = ["about", "treatA_vs_ctrl", LONG[:31]]
    assert list(book) == sheet_names
    for contrast, name in zip(CONTRASTS, sheet_names[1:]):
        sheet, rows = book[name], _stored(contrast)
        assert list(sheet.columns) == SHEET_COLUMNS  # no all-null compound/dose/cell_type
        assert len(sheet) == len(rows) == 200
        _check_sorted(sheet)
        merged = sheet.merge(rows, on="gene_id", suffixes=("", "_sql"), validate="1:1")
        for col in SHEET_COLUMNS[2:]:  # openpyxl writes 16 significant digits (Excel shows 15)
            np.testing.assert_allclose(merged[col].to_numpy(dtype=float),
                                       merged[f"{col}_sql"].to_numpy(dtype=float),
                                       rtol=2e-15, atol=0, err_msg=col)
        assert (merged["gene_symbol"] == merged["gene_symbol_sql"]).all()
        assert sheet["gene_symbol"].iloc[0].startswith("GENE")

    raw = pd.read_excel(target, sheet_name="about", header=None, dtype=object)
    cells = raw.fillna("").astype(str).to_numpy()
    settings = {r[0]: r[1] for r in cells}
    assert settings["study_id"] == "toy3" and settings["title"] == "Three groups"
    assert settings["design"] == "~ condition" and float(settings["alpha"]) == alpha
    assert float(settings["lfc_threshold"]) == 0
    assert settings["platform_version"].startswith("dge-platform ")
    datetime.fromisoformat(settings["exported_at"])
    header = next(i for i, r in enumerate(cells) if r[0] == "sheet")
    listing = pd.read_excel(target, sheet_name="about", skiprows=header, nrows=2)
    assert listing["sheet"].tolist() == sheet_names[1:]
    assert listing["contrast"].tolist() == CONTRASTS
    assert listing["comparison"].tolist() == ["condition: treatA vs ctrl",
                                              "condition: treatB vs ctrl"]
    for row in listing.itertuples():
        rows = stored[stored["contrast"] == row.contrast]
        sig = rows["significant"].astype(bool)
        assert row.genes == len(rows) and row.tested == rows["padj"].notna().sum()
        assert row.degs_up == (sig & (rows["log2_fold_change"] > 0)).sum()
        assert row.degs_down == (sig & (rows["log2_fold_change"] < 0)).sum()
    legend = {r[0]: r[1] for r in cells[header + 4:]}
    assert "Benjamini-Hochberg" in legend["padj"] and "shrunk" in legend["log2_fold_change_shrunk"]
    assert "cell_type" not in legend and "compound" not in legend

    wb = load_workbook(target)
    ws = wb["treatA_vs_ctrl"]
    assert ws.freeze_panes == "A2"
    assert ws.column_dimensions["A"].width >= len("gene_symbol")
    assert ws.auto_filter.ref == "A1:J201"


def test_csv_single_contrast_default_path(toy_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = dge("export", "toy3", "--contrast", LONG, "--format", "csv")
    assert result.exit_code == 0, result.output
    target = tmp_path / f"toy3_deg_results_{LONG}.csv"
    assert result.output.splitlines()[0] == f"wrote {target}"
    assert "1 contrast(s) in one table; 200 rows" in result.output
    frame = pd.read_csv(target, float_precision="round_trip")
    assert list(frame.columns) == ["contrast", *SHEET_COLUMNS]
    assert set(frame["contrast"]) == {LONG}
    _check_sorted(frame)
    stored = _stored(LONG)
    ours = frame.sort_values("gene_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(ours, stored[ours.columns], check_exact=True)


def test_parquet_all_contrasts_round_trips(toy_home, tmp_path):
    target = tmp_path / "all.parquet"
    assert dge("export", "toy3", "--format", "parquet", "--output", str(target)).exit_code == 0
    frame = pd.read_parquet(target)
    assert list(frame.columns) == ["contrast", *SHEET_COLUMNS]
    assert frame["contrast"].drop_duplicates().tolist() == CONTRASTS  # study.yaml order
    for _, part in frame.groupby("contrast"):
        _check_sorted(part)
    stored = _stored().drop(columns=["study_id", "compound", "dose", "cell_type"])
    ours = frame.sort_values(["contrast", "gene_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(ours, stored[ours.columns], check_dtype=False,
                                  check_exact=True)


def test_errors_exit_1_with_a_clear_message(toy_home, tmp_path):
    result = dge("export", "nope", "--format", "csv")
    assert result.exit_code == 1
    assert result.output.startswith("error: no study 'nope' under ") and "studies: toy3" \
        in result.output
    result = dge("export", "toy3", "--contrast", "treatC_vs_ctrl", "--format", "xlsx")
    assert result.exit_code == 1
    assert result.output == (f"error: study 'toy3' has no contrast 'treatC_vs_ctrl'; "
                             f"available: treatA_vs_ctrl, {LONG}\n")
    result = dge("export", "toy3", "--format", "csv",
                 "--output", str(tmp_path / "missing" / "x.csv"))
    assert result.exit_code == 1 and "does not exist" in result.output
    result = dge("export", "toy3", "--format", "tsv")
    assert result.exit_code == 2 and "'tsv' is not one of" in result.output


def test_registered_but_not_run(home):
    assert "register a study folder with 'dge add DIR'" in dge(
        "export", "toy", "--format", "csv").output
    write_study(home.studies / "fresh", config={"id": "fresh"})
    result = dge("export", "fresh", "--format", "csv")
    assert result.exit_code == 1
    assert result.output == ("error: no DEG results yet for study 'fresh'; run 'dge run "
                             "fresh' first\n")


# ---- pure functions: single-cell, screens, sheet names --------------------------------------

STUDY = {"study_id": "sc", "title": "PBMC", "kind": "singlecell", "design": "~ donor + condition",
         "alpha": 0.1, "lfc_threshold": 0.5,
         "contrasts": json.dumps([{"name": "stim_vs_ctrl", "factor": "condition",
                                   "level": "stim", "reference": "ctrl"},
                                  {"name": "late_vs_ctrl", "factor": "condition",
                                   "level": "late", "reference": "ctrl"}])}


def _rows(contrast, cell_type, padj, lfc, **extra):
    n = len(padj)
    padj = np.asarray(padj, dtype=float)
    return pd.DataFrame({
        "study_id": "sc", "contrast": contrast, "gene_id": [f"g{i}" for i in range(n)],
        "gene_symbol": [f"G{i}" for i in range(n)], "base_mean": 10.0 + np.arange(n),
        "log2_fold_change": lfc, "lfc_se": 0.3, "stat": np.asarray(lfc) / 0.3,
        "pvalue": padj / 2, "padj": padj, "log2_fold_change_shrunk": np.asarray(lfc) / 2,
        "significant": padj < 0.1, "compound": None, "dose": np.nan, "cell_type": cell_type,
        **extra})


def _single_cell_results():
    return pd.concat([
        _rows("stim_vs_ctrl", "CD14+ Monocytes", [0.5, 0.01, np.nan, 0.01], [0.2, -1.0, 3.0, 2.0]),
        _rows("stim_vs_ctrl", "B cells", [0.05, 0.2, 0.01], [1.5, 0.1, -0.7]),
        _rows("late_vs_ctrl", "B cells", [0.3, 0.3], [0.1, -0.9]),
    ], ignore_index=True)


def test_single_cell_sheet_per_contrast_and_cell_type():
    results = _single_cell_results()
    tables = deg_export_tables(results, STUDY)
    assert list(tables) == ["stim_vs_ctrl B cells", "stim_vs_ctrl CD14+ Monocytes",
                            "late_vs_ctrl B cells"]
    mono = tables["stim_vs_ctrl CD14+ Monocytes"]
    assert list(mono.columns) == SHEET_COLUMNS  # keyed by contrast x cell type: both dropped
    # padj ascending, ties by |log2FC| descending, untested last
    assert mono["gene_id"].tolist() == ["g3", "g1", "g0", "g2"]
    assert tables["late_vs_ctrl B cells"]["gene_id"].tolist() == ["g1", "g0"]

    one = deg_export_tables(results, STUDY, contrast="stim_vs_ctrl")
    assert list(one) == ["B cells", "CD14+ Monocytes"]  # one contrast: named by cell type

    long = export_table(results, STUDY)
    assert list(long.columns[:2]) == ["contrast", "cell_type"]
    assert "compound" not in long.columns and "dose" not in long.columns
    assert long[["contrast", "cell_type"]].drop_duplicates().values.tolist() == [
        ["stim_vs_ctrl", "B cells"], ["stim_vs_ctrl", "CD14+ Monocytes"],
        ["late_vs_ctrl", "B cells"]]

    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    export = build_export(results, STUDY, exported_at=when, version="9.9")
    listing = export.about["sheets"]
    assert listing[["sheet", "cell_type", "genes", "tested", "degs_up", "degs_down"]] \
        .values.tolist() == [["stim_vs_ctrl B cells", "B cells", 3, 3, 1, 1],
                             ["stim_vs_ctrl CD14+ Monocytes", "CD14+ Monocytes", 4, 3, 1, 1],
                             ["late_vs_ctrl B cells", "B cells", 2, 2, 0, 0]]
    settings = dict(export.about["study"].values.tolist())
    assert settings["exported_at"] == "2025-01-02T03:04:05+00:00"
    assert settings["platform_version"] == "dge-platform 9.9"
    assert settings["alpha"] == 0.1 and settings["lfc_threshold"] == 0.5
    assert "cell_type" in export.about["columns"]["column"].tolist()


def test_single_cell_xlsx_round_trip(tmp_path):
    results = _single_cell_results()
    path = write_export(build_export(results, STUDY), "xlsx", tmp_path / "sc.xlsx")
    book = pd.read_excel(path, sheet_name=None)
    assert list(book) == ["about", "stim_vs_ctrl B cells", "stim_vs_ctrl CD14+ Monocytes",
                          "late_vs_ctrl B cells"]
    mono = book["stim_vs_ctrl CD14+ Monocytes"]
    expected = deg_export_tables(results, STUDY)["stim_vs_ctrl CD14+ Monocytes"]
    pd.testing.assert_frame_equal(mono, expected, check_dtype=False)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically


def test_screen_keeps_compound_and_dose():
    results = pd.concat([
        _rows("ETOPOSIDE_10uM", None, [0.01, 0.5], [2.0, 0.1], compound="ETOPOSIDE", dose=10.0),
        _rows("ETOPOSIDE_1uM", None, [0.2, 0.04], [0.3, -1.0], compound="ETOPOSIDE", dose=1.0),
    ], ignore_index=True)
    study = {**STUDY, "kind": "screen", "contrasts": "[]"}
    long = export_table(results, study)
    assert list(long.columns) == ["contrast", *SHEET_COLUMNS, "compound", "dose"]
    export = build_export(results, study)
    assert [s.name for s in export.sheets] == ["ETOPOSIDE_10uM", "ETOPOSIDE_1uM"]
    assert export.about["sheets"][["compound", "dose"]].values.tolist() == [
        ["ETOPOSIDE", 10.0], ["ETOPOSIDE", 1.0]]
    with pytest.raises(KeyError):
        export_table(results, study, contrast="nope")


def test_sheet_names_are_excel_safe_and_unique():
    names = unique_sheet_names(["a/b:c*d?e[f]g\\h", "About", "x" * 40, "X" * 35, "'quoted'",
                                "history", "", "same", "SAME"])
    assert names == ["a_b_c_d_e_f_g_h", "About~2", "x" * 31, "X" * 29 + "~2", "quoted",
                     "history~2", "sheet", "same", "SAME~2"]
    assert all(len(n) <= 31 for n in names)
    assert len({n.lower() for n in names}) == len(names)


def test_default_output_name():
    assert default_output_name("airway", "xlsx") == "airway_deg_results.xlsx"
    assert default_output_name("kang", "csv", "stim_vs_ctrl") == \
        "kang_deg_results_stim_vs_ctrl.csv"
