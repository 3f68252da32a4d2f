"""Plate-position effects: position covariates, the ANOVA against scipy, a planted edge effect
found and warned about, clean plates quiet (p-values roughly uniform), skipped plates, and
the simulator's edge option."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dge_platform.de.engine import MAX_DISP, blind_vst, size_factors
from dge_platform.screen.plate_position import (
    EFFECT_COLUMNS,
    edge_warnings,
    position_covariates,
    position_effects,
)
from dge_platform.screen.well_qc import log_cpm, well_qc
from dge_platform.sim.screen import simulate_screen


def vst(counts: pd.DataFrame) -> pd.DataFrame:
    """Blind VST, as the screen pipeline's ``vst`` table holds it."""
    values = counts.to_numpy(dtype=float)
    factors = size_factors(values)
    return pd.DataFrame(blind_vst(values, factors, (values / factors).mean(axis=1),
                                  max_disp=MAX_DISP), index=counts.index, columns=counts.columns)


def screen_effects(**kwargs) -> tuple[pd.DataFrame, pd.DataFrame, object]:
    screen = simulate_screen(**{"n_genes": 1000, **kwargs})
    qc = well_qc(screen.counts, screen.plate_map.set_index("sample", drop=False))
    return position_effects(vst(screen.counts), qc), qc, screen


def test_position_covariates_per_plate_format():
    plate_map = pd.DataFrame({
        "plate": ["P1"] * 6 + ["P2"] * 3,
        "well": ["A01", "B02", "H12", "A05", "D01", "G11", "O23", "P24", "I13"],
    }, index=[f"s{i}" for i in range(9)])
    covariates = position_covariates(plate_map)
    assert covariates["edge"].tolist() == ["edge", "inner", "edge", "edge", "edge", "inner",
                                           "inner", "edge", "inner"]
    assert covariates["row"].tolist() == list("ABHADGOPI")
    assert covariates["column"].tolist() == ["c01", "c02", "c12", "c05", "c01", "c11", "c23",
                                             "c24", "c13"]
    # G11 is inner on a 96-well plate; on a 384-well plate (P2 has row O) so is O23.
    assert list(covariates.index) == list(plate_map.index)
    # without a plate column the map is one plate
    assert position_covariates(plate_map[["well"]].iloc[:6])["edge"].tolist() == \
        covariates["edge"].iloc[:6].tolist()


def handmade_qc(n_controls: int = 12, edge_shift: float = 0.0, seed: int = 0
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A 96-well plate's QC table with controls in columns 1 and 12 and rows A-F (edge:
    rows A, and columns 1 and 12 always), treated wells elsewhere; expression of 200 genes."""
    rng = np.random.default_rng(seed)
    wells = [f"{r}{c:02d}" for r in "ABCDEFGH" for c in range(1, 13)]
    control_wells = [f"{r}{c:02d}" for c in (1, 12) for r in "BCDEFG"][:n_controls]
    qc = pd.DataFrame({"plate": "P1", "well": wells,
                       "well_type": ["control" if w in control_wells else "sample"
                                     for w in wells],
                       "passed": True,
                       "total_counts": np.exp(rng.normal(10, 0.2, len(wells)))},
                      index=[f"P1_{w}" for w in wells])
    expression = pd.DataFrame(rng.normal(5, 1, (200, len(wells))), columns=qc.index)
    return qc, expression


def test_anova_and_edge_effect_match_scipy():
    qc, expression = handmade_qc()
    # controls: columns 1 and 12 (all edge) would give no contrast: move two inside
    qc.loc[["P1_B01", "P1_C01"], "well_type"] = "sample"
    qc.loc[["P1_C05", "P1_D06"], "well_type"] = "control"
    table = position_effects(expression, qc, n_pcs=2)
    assert list(table.columns) == EFFECT_COLUMNS
    assert set(table["variable"]) == {"PC1", "PC2", "log10_depth"}
    controls = qc.index[qc["well_type"] == "control"]
    depth = np.log10(qc.loc[controls, "total_counts"])
    rows = qc.loc[controls, "well"].str[0]
    columns = qc.loc[controls, "well"].str[1:]
    edge = ~qc.loc[controls, "well"].isin(["C05", "D06"])
    got = table[table["variable"] == "log10_depth"].set_index("position")
    for position, labels in (("row", rows), ("column", columns), ("edge", edge)):
        expected = stats.f_oneway(*[depth[labels == v] for v in labels.unique()])
        assert got.loc[position, "statistic"] == pytest.approx(expected.statistic, rel=1e-10)
        assert got.loc[position, "pvalue"] == pytest.approx(expected.pvalue, rel=1e-10)
        assert got.loc[position, "df"] == labels.nunique() - 1
        assert got.loc[position, "df_resid"] == len(controls) - labels.nunique()
    t = stats.ttest_ind(depth[edge], depth[~edge])
    assert got.loc["edge", "statistic"] == pytest.approx(t.statistic**2, rel=1e-10)
    assert got.loc["edge", "effect"] == pytest.approx(depth[edge].mean() - depth[~edge].mean())
    group_means = depth.groupby(rows).transform("mean")
    eta2 = ((group_means - depth.mean())**2).sum() / ((depth - depth.mean())**2).sum()
    assert got.loc["row", "effect"] == pytest.approx(eta2)
    assert (table["n_wells"] == 12).all()
    # PC scores: the controls' centred expression of the more expressed half of the genes
    # (200 genes < 500 most variable: no further selection) projected on its first
    # right-singular vectors; PC1's edge test equals a t-test on them.
    values = expression[controls].to_numpy()
    means = values.mean(axis=1)
    centred = (values - means[:, None])[means >= np.median(means)]
    assert len(centred) == 100
    u, s, _ = np.linalg.svd(centred.T, full_matrices=False)
    pc1 = u[:, 0] * s[0]
    t = stats.ttest_ind(pc1[edge.to_numpy()], pc1[~edge.to_numpy()])
    pc_edge = table.set_index(["variable", "position"]).loc[("PC1", "edge")]
    assert pc_edge["pvalue"] == pytest.approx(t.pvalue, rel=1e-8)


def test_components_use_the_most_variable_expressed_genes():
    qc, expression = handmade_qc(n_controls=12)
    qc.loc[["P1_B01", "P1_C01", "P1_D01"], "well_type"] = "sample"
    qc.loc[["P1_C05", "P1_D06", "P1_E07"], "well_type"] = "control"
    inner = ["P1_C05", "P1_D06", "P1_E07"]
    expression.iloc[:100] += 5  # the expressed half
    weak, strong = expression.copy(), expression.copy()
    weak.loc[150:159, inner] += 8  # a big shift, but in weak genes only: not looked at
    strong.loc[0:9, inner] += 8
    pvalue = {}
    for name, values in (("weak", weak), ("strong", strong)):
        table = position_effects(values, qc, n_pcs=1, n_top_genes=20)
        pvalue[name] = table.set_index(["variable", "position"]).loc[("PC1", "edge"), "pvalue"]
    assert pvalue["strong"] < 1e-6 < 0.01 < pvalue["weak"]


def test_plates_without_enough_controls_are_skipped_and_no_contrast_means_no_edge_test():
    qc, expression = handmade_qc(n_controls=7)
    qc.loc["P1_D05", "well_type"] = "control"  # 8 controls, one inner: tested
    assert len(position_effects(expression, qc)) > 0
    qc.loc["P1_D05", "passed"] = False  # 7 usable controls
    assert position_effects(expression, qc).empty
    qc, expression = handmade_qc(n_controls=12)  # every control on the edge
    table = position_effects(expression, qc)
    assert len(table) and "edge" not in set(table["position"])  # rows and columns only
    assert edge_warnings(table) == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_edge_effect_is_found_and_warned(seed):
    table, _, screen = screen_effects(seed=seed, edge_effect=1.0)
    edge = table[table["position"] == "edge"].set_index("variable")
    assert edge["pvalue"].min() < 0.01
    assert edge.loc["log10_depth", "effect"] < 0  # shallower edge wells
    (warning,) = edge_warnings(table)
    assert warning.startswith("plate P1: edge wells differ from inner wells among its 16 "
                              "control wells in ")
    best = edge["pvalue"].idxmin()
    assert f"{best} (p = {edge.loc[best, 'pvalue']:.2g}, edge - inner " in warning
    assert "position_effects: edge" in warning
    assert len(screen.edge_genes) == 50


def test_log_cpm_input_finds_the_edge_genes_too():
    screen = simulate_screen(n_genes=1000, seed=1, edge_effect=1.0)
    qc = well_qc(screen.counts, screen.plate_map.set_index("sample", drop=False))
    table = position_effects(log_cpm(screen.counts.astype(float)), qc)
    pcs = table[(table["position"] == "edge") & (table["variable"] != "log10_depth")]
    assert pcs["pvalue"].min() < 1e-3
    # the stored well_qc table (plain row index, wells in 'sample') reads the same
    pd.testing.assert_frame_equal(
        position_effects(log_cpm(screen.counts.astype(float)), qc.reset_index(drop=True)),
        table)


def test_edge_warnings_name_each_plate_once():
    table = pd.DataFrame({
        "plate": ["P1", "P1", "P1", "P2", "P3"], "variable": ["PC1", "log10_depth", "PC2",
                                                              "PC1", "PC1"],
        "position": ["edge", "edge", "row", "edge", "edge"],
        "statistic": 1.0, "df": 1, "df_resid": 14,
        "pvalue": [1e-4, 0.004, 1e-9, 0.02, 0.009], "effect": [2.0, -0.1, 0.3, 1.0, -1.5],
        "n_wells": 16})
    assert edge_warnings(table) == [
        "plate P1: edge wells differ from inner wells among its 16 control wells in PC1 "
        "(p = 0.0001, edge - inner +2), log10_depth (p = 0.004, edge - inner -0.1); compounds "
        "on the edge are confounded with it: model it (position_effects: edge) or keep "
        "compounds off the outer ring",
        "plate P3: edge wells differ from inner wells among its 16 control wells in PC1 "
        "(p = 0.009, edge - inner -1.5); compounds on the edge are confounded with it: model "
        "it (position_effects: edge) or keep compounds off the outer ring"]
    assert edge_warnings(table, alpha=1e-3) == [edge_warnings(table)[0].replace(
        ", log10_depth (p = 0.004, edge - inner -0.1)", "")]


def test_clean_plates_give_no_edge_warning_and_uniform_pvalues():
    warned, pvalues = [], []
    for seed in range(20):
        table, _, _ = screen_effects(seed=100 + seed)
        warned += [seed] if edge_warnings(table) else []
        pvalues += table.loc[table["position"] == "edge", "pvalue"].tolist()
    # at most rare false positives (4 tests per plate at alpha 0.01: ~4 % of plates)
    assert len(warned) <= 2, warned
    # no warning on these seeds at all
    for seed in (0, 3, 5):
        assert edge_warnings(screen_effects(seed=seed)[0]) == []
    # p-values of the edge tests are roughly uniform
    assert len(pvalues) >= 70
    assert stats.kstest(pvalues, "uniform").pvalue > 0.01
    assert 0.3 < np.mean(np.array(pvalues) < 0.5) < 0.7


def test_simulated_edge_effect_truth():
    plain = simulate_screen(n_genes=1000, seed=4)
    screen = simulate_screen(n_genes=1000, seed=4, edge_effect=1.0)
    edge = position_covariates(screen.plate_map.set_index("sample"))["edge"] == "edge"
    ratio = screen.size_factors / plain.size_factors
    np.testing.assert_allclose(ratio[edge.to_numpy()], 2**-0.5)
    np.testing.assert_allclose(ratio[~edge.to_numpy()], 1.0)
    # the edge genes move by about +-1 log2 between edge and inner wells (normalized)
    normalized = screen.counts / screen.counts.sum()
    shift = np.log2(normalized.loc[:, edge.to_numpy()].mean(axis=1)
                    / normalized.loc[:, ~edge.to_numpy()].mean(axis=1))
    assert shift[screen.edge_genes].abs().median() > 0.7
    assert shift.drop(screen.edge_genes).abs().median() < 0.3
