"""Screen plate maps with combination wells (compound_2, dose_2) and MoA classes: how they
are annotated, and the clear problems of bad ones."""

from __future__ import annotations

import pandas as pd
import pytest

from dge_platform.sim.screen import simulate_screen, write_screen_study
from dge_platform.validation import validate_study


@pytest.fixture(scope="module")
def combo_screen():
    return simulate_screen(n_genes=300, n_controls=8, n_compounds=4, doses=(1.0, 10.0),
                           n_replicates=2, inactive_compounds=0, n_combinations=2,
                           moa_groups=2, seed=5)


@pytest.fixture
def folder(tmp_path, combo_screen):
    return write_screen_study(tmp_path / "combo", combo_screen, "combo")


def edit_plate_map(folder, change) -> None:
    pm = pd.read_csv(folder / "plate_map.tsv", sep="\t", dtype=str, keep_default_na=False)
    change(pm)
    pm.to_csv(folder / "plate_map.tsv", sep="\t", index=False)


def problems_of(folder) -> list[str]:
    return [str(p) for p in validate_study(folder).problems]


def test_combination_wells_become_their_own_conditions(folder, combo_screen):
    # one combination listed the other way round in some wells: the same treatment
    def swap(pm):
        rows = pm.index[pm["compound_2"] == "CMP02"][:1]
        pm.loc[rows, ["compound", "compound_2"]] = [["CMP02", "CMP01"]]
    edit_plate_map(folder, swap)
    report = validate_study(folder)
    assert report.problems == []
    samples = report.study.samples
    combos = samples[samples["compound_2"].notna() & (samples["role"] == "sample")]
    assert set(combos["condition"]) == set(combo_screen.combinations["condition"]) \
        == {"CMP01_10uM+CMP02_10uM", "CMP03_10uM+CMP04_10uM"}
    assert set(combos["compound"]) == {"CMP01 + CMP02", "CMP03 + CMP04"}
    assert set(combos["compound_1"]) == {"CMP01", "CMP03"}
    contrasts = {c.name for c in report.study.config.contrasts}
    assert {"CMP01_10uM+CMP02_10uM", "CMP01_10uM", "CMP02_10uM"} <= contrasts
    assert samples.loc[samples["compound"] == "CMP01", "moa"].eq("MOA1").all()


def test_dose_2_without_compound_2(folder):
    def orphan(pm):
        pm.loc[pm["compound"] == "CMP03", "dose_2"] = "5"
    edit_plate_map(folder, orphan)
    found = problems_of(folder)
    assert any("column 'dose_2': given for well(s)" in p and "without a 'compound_2'" in p
               for p in found), found


def test_compound_2_without_dose_2(folder):
    def undosed(pm):
        pm.loc[pm["compound_2"] == "CMP02", "dose_2"] = ""
    edit_plate_map(folder, undosed)
    found = problems_of(folder)
    assert any("column 'dose_2': empty for combination well(s)" in p for p in found), found


def test_combination_without_its_monotherapy_names_the_combination(folder):
    def drop_mono(pm):
        mono = (pm["compound"] == "CMP02") & (pm["dose"] == "10.0") & (pm["compound_2"] == "")
        pm.loc[mono, "dose"] = "3"
    edit_plate_map(folder, drop_mono)
    found = problems_of(folder)
    assert any("combination 'CMP01_10uM+CMP02_10uM' has no monotherapy well(s) of CMP02 at 10"
               in p and "additivity cannot be assessed" in p for p in found), found


def test_second_agent_on_a_control_well(folder):
    def on_control(pm):
        wells = pm.index[pm["compound"] == "DMSO"][:1]
        pm.loc[wells, ["compound_2", "dose_2"]] = [["CMP01", "1"]]
    edit_plate_map(folder, on_control)
    found = problems_of(folder)
    assert any("column 'compound_2': set on well(s)" in p and "not treated wells" in p
               for p in found), found


def test_moa_with_one_class_only(folder):
    def one_class(pm):
        pm.loc[pm["compound"] != "DMSO", "moa"] = "kinase"
    edit_plate_map(folder, one_class)
    found = problems_of(folder)
    assert any("column 'moa': one class only ('kinase')" in p for p in found), found


def test_moa_with_two_classes_for_one_compound(folder):
    def mixed(pm):
        wells = pm.index[(pm["compound"] == "CMP01") & (pm["compound_2"] == "")][:1]
        pm.loc[wells, "moa"] = "MOA2"
    edit_plate_map(folder, mixed)
    found = problems_of(folder)
    assert any("column 'moa': compound(s) CMP01 have more than one class" in p
               for p in found), found


def test_condition_classes_leave_out_combinations_and_empty_cells(combo_screen):
    from dge_platform.screen.plate_map import condition_classes

    sheet = combo_screen.annotated_sheet()
    sheet.loc[sheet["condition"] == "CMP04_1uM", "moa"] = " "
    classes = condition_classes(sheet)
    assert "CMP01_10uM+CMP02_10uM" not in classes.index and "CMP04_1uM" not in classes.index
    assert classes["CMP01_10uM"] == combo_screen.moa["CMP01"]
    assert classes["CMP04_10uM"] == combo_screen.moa["CMP04"]
    assert condition_classes(sheet.drop(columns="moa")).empty
