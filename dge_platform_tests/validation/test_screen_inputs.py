"""Screen inputs: plate maps, well roles, per-plate count files and the derived design."""

from __future__ import annotations

import pandas as pd
import pytest

from dge_platform.screen.plate_map import condition_label, well_role
from dge_platform.validation import validate_study
from dge_platform_tests.conftest import BUNDLED, write_screen


def problems_of(folder) -> list[str]:
    return [str(p) for p in validate_study(folder).problems]


def plate_map_of(folder) -> pd.DataFrame:
    return pd.read_csv(folder / "plate_map.tsv", sep="\t", dtype=str)


def test_bundled_macseq_plate_is_valid():
    report = validate_study(BUNDLED / "macseq_pmmsq033")
    assert report.problems == []
    study = report.study
    assert study.counts.shape == (1000, 384)
    roles = study.samples["role"].value_counts().to_dict()
    # 234 MCF10A compound wells, 19 DMSO, 9 Staurosporine; Media and other cell models: other
    assert roles == {"sample": 234, "other": 122, "control": 19, "positive_control": 9}
    assert study.config.design == "~ condition"
    assert len(study.config.contrasts) == 78  # 26 compounds x 3 doses
    assert all(c.reference == "DMSO" and c.factor == "condition" for c in study.config.contrasts)
    assert "ETOPOSIDE_10uM" in {c.name for c in study.config.contrasts}


def test_multi_plate_screen_reads_every_plate_and_blocks_on_plate(tmp_path):
    report = validate_study(write_screen(tmp_path / "s", plates=3))
    assert report.problems == []
    study = report.study
    assert study.counts.shape == (60, 3 * 15)
    assert study.config.design == "~ plate + condition"
    assert study.config.batch == "plate"
    assert [c.name for c in study.config.contrasts] == ["cpdA_1uM", "cpdA_10uM", "cpdB_1uM",
                                                       "cpdB_10uM"]
    assert study.samples.loc["P2_B03", "role"] == "empty"


def test_too_few_control_wells_names_the_plate(tmp_path):
    folder = write_screen(tmp_path / "s", plates=2)
    pm = plate_map_of(folder)
    drop = pm.index[(pm["plate"] == "P2") & (pm["compound"] == "DMSO")][:3]
    pm.loc[drop, "well_type"] = "empty"
    pm.to_csv(folder / "plate_map.tsv", sep="\t", index=False)
    found = problems_of(folder)
    assert found == ["plate_map.tsv: column 'plate': plate 'P2' has 3 usable control well(s) "
                     "(DMSO); at least 4 are needed to estimate the plate's baseline and its null "
                     "distribution -> add control wells to that plate, or leave the plate out of "
                     "the screen"]


def test_all_zero_control_wells_are_not_usable(tmp_path):
    folder = write_screen(tmp_path / "s")
    counts = pd.read_csv(folder / "counts" / "p1.tsv", sep="\t", index_col=0)
    counts[["P1_A01", "P1_A02", "P1_A03"]] = 0
    counts.to_csv(folder / "counts" / "p1.tsv", sep="\t")
    assert "plate 'P1' has 3 usable control well(s)" in " ".join(problems_of(folder))


@pytest.mark.parametrize("dose, expect", [
    ("ten", "plate_map.tsv: column 'dose': not numeric for 1 well(s), e.g. P1_A07='ten' -> give "
            "doses as plain numbers and put the unit in 'dose_unit'"),
    ("-1", "plate_map.tsv: column 'dose': negative for well(s) P1_A07 -> doses must be >= 0"),
])
def test_bad_doses(tmp_path, dose, expect):
    folder = write_screen(tmp_path / "s")
    pm = plate_map_of(folder)
    pm.loc[6, "dose"] = dose
    pm.to_csv(folder / "plate_map.tsv", sep="\t", index=False)
    assert problems_of(folder) == [expect]


def test_plate_map_missing_columns(tmp_path):
    folder = write_screen(tmp_path / "s")
    plate_map_of(folder).drop(columns=["dose", "plate"]).to_csv(folder / "plate_map.tsv",
                                                                 sep="\t", index=False)
    found = problems_of(folder)
    assert len(found) == 2
    assert found[0].startswith("plate_map.tsv: column 'plate': missing from the plate map")


def test_screen_needs_control_and_plate_map(tmp_path):
    folder = write_screen(tmp_path / "s", config={"control": None, "plate_map": None})
    found = problems_of(folder)
    assert "study.yaml: control: required key is missing -> name the vehicle of the control " \
           "wells, e.g. control: DMSO" in found
    assert any(p.startswith("study.yaml: plate_map: required key is missing") for p in found)


def test_control_compound_absent(tmp_path):
    folder = write_screen(tmp_path / "s", config={"control": "DMSO-0.1%"})
    assert problems_of(folder)[0].startswith("study.yaml: control: no well of plate_map.tsv has "
                                             "compound 'DMSO-0.1%'")


def test_plate_files_with_different_genes(tmp_path):
    folder = write_screen(tmp_path / "s", plates=2)
    counts = pd.read_csv(folder / "counts" / "p2.tsv", sep="\t", index_col=0)
    counts.iloc[:-1].to_csv(folder / "counts" / "p2.tsv", sep="\t")
    assert problems_of(folder) == ["counts/p2.tsv: column 1 (gene ids): lists different genes "
                                   "from counts/p1.tsv -> count every plate against the same "
                                   "annotation, genes in the same order"]


def test_sample_names_repeated_across_plate_files(tmp_path):
    folder = write_screen(tmp_path / "s", plates=2)
    counts = pd.read_csv(folder / "counts" / "p2.tsv", sep="\t", index_col=0)
    counts.columns = [c.replace("P2_", "P1_") for c in counts.columns]
    counts.to_csv(folder / "counts" / "p2.tsv", sep="\t")
    assert problems_of(folder)[0].startswith("counts/p2.tsv: header: sample name(s) also in "
                                             "counts/p1.tsv: P1_A01")


def test_single_well_condition_warns(tmp_path):
    folder = write_screen(tmp_path / "s")
    pm = plate_map_of(folder)
    pm.loc[6, "dose"] = "3"
    pm.to_csv(folder / "plate_map.tsv", sep="\t", index=False)
    report = validate_study(folder)
    assert report.problems == []
    assert "2 compound x dose condition(s) have a single well (cpdA_1uM, cpdA_3uM)" \
        in str(report.warnings[0])


def test_screen_keys_refused_for_bulk(toy_study):
    import yaml

    raw = yaml.safe_load((toy_study / "study.yaml").read_text())
    raw["control"] = "DMSO"
    (toy_study / "study.yaml").write_text(yaml.safe_dump(raw))
    assert problems_of(toy_study) == ["study.yaml: control: only used by kind: screen (this study "
                                      "is 'bulk') -> remove it"]


@pytest.mark.parametrize("well_type, compound, role", [
    ("Sample", "ETOPOSIDE", "sample"), ("SA", "x", "sample"), ("RC", "DMSO", "control"),
    ("Vehicle_control", "dmso", "control"), ("Vehicle_control", "Media", "other"),
    ("Positive_control", "Staurosporine", "positive_control"), ("EMPTY", "none", "empty"),
    ("other_cell_model", "DMSO", "other"), (None, "DMSO", "control"), (None, "cpd", "sample"),
])
def test_well_role_rule(well_type, compound, role):
    assert well_role(well_type, compound, "DMSO") == role


def test_condition_labels_are_contrast_safe():
    assert condition_label("VINBLASTINE SULFATE", 0.1, "uM") == "VINBLASTINE-SULFATE_0.1uM"
    assert condition_label("AZD-5991", 10.0, None) == "AZD-5991_10"


def test_plate_map_columns_in_any_case_and_blank_control_doses(tmp_path):
    folder = write_screen(tmp_path / "s")
    pm = plate_map_of(folder).rename(columns={"plate": "Plate", "dose": "Dose",
                                              "compound": "COMPOUND"})
    pm.loc[pm["COMPOUND"] == "DMSO", "Dose"] = None
    pm.to_csv(folder / "plate_map.tsv", sep="\t", index=False)
    report = validate_study(folder)
    assert report.problems == []
    assert (report.study.samples.loc[report.study.samples["role"] == "control", "dose"]
            == "0").all()
    assert len(report.study.config.contrasts) == 4


def test_treated_well_without_dose(tmp_path):
    folder = write_screen(tmp_path / "s")
    pm = plate_map_of(folder)
    pm.loc[7, "dose"] = None
    pm.to_csv(folder / "plate_map.tsv", sep="\t", index=False)
    assert problems_of(folder) == ["plate_map.tsv: column 'dose': empty for treated well(s) "
                                   "P1_A08 -> give every compound well its dose (controls may "
                                   "stay empty or 0)"]


def test_dge_validate_reports_wells_by_role(tmp_path):
    from dge_platform_tests.conftest import dge

    result = dge("validate", str(write_screen(tmp_path / "s", plates=2)))
    assert result.exit_code == 0
    assert "OK: study 'toy_screen' (screen): 30 samples x 60 genes, 4 contrast(s), design " \
           "~ plate + condition" in result.output
    assert "wells by role: sample 16, control 12, empty 2; plates: 2; control: DMSO" \
        in result.output


def test_samples_key_serves_as_plate_map(tmp_path):
    folder = write_screen(tmp_path / "s", config={"plate_map": None, "samples": "plate_map.tsv"})
    report = validate_study(folder)
    assert report.problems == []
    assert len(report.study.config.contrasts) == 4
    both = write_screen(tmp_path / "t", config={"samples": "plate_map.tsv"})
    assert problems_of(both) == ["study.yaml: samples: a screen takes plate_map or samples, "
                                 "not both -> keep plate_map"]


def test_position_effects_add_their_terms_to_the_design(tmp_path):
    """The derived design (and a study's own) gains the plate-position terms, whose columns
    the plate map gets from the well names; terms the layout confounds with the conditions
    are refused like any confounded design."""
    report = validate_study(write_screen(tmp_path / "derived", plates=2,
                                         config={"position_effects": "edge"}))
    assert report.problems == []
    assert report.study.config.design == "~ plate + position_edge + condition"
    sheet = report.study.samples
    assert sheet.loc["P1_A01", "position_edge"] == "edge"
    assert sheet.loc["P1_B02", "position_edge"] == "inner"
    own = validate_study(write_screen(tmp_path / "own", config={
        "position_effects": "edge", "design": "~ condition"}))
    assert own.problems == []
    assert own.study.config.design == "~ position_edge + condition"
    # the toy plate fills rows A-B only: its conditions sit in their own columns
    confounded = validate_study(write_screen(tmp_path / "rc", config={
        "position_effects": "row_column"}))
    (problem,) = confounded.problems
    assert problem.field == "design"
    assert "~ position_row + position_column + condition" in problem.message
    assert "is not full rank" in problem.message and "confounded" in problem.message
