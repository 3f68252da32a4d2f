"""Well QC 2.0: httrpl's count-distribution metrics on hand-computed wells, their plate
fences (a planted outlier caught, clean plates and reproduced compound effects left alone),
cytotoxic top doses and viability, plate-map checks of viability and treated doses, and the
simulator's cytotoxic option."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from dge_platform.screen.plate_map import plate_map_problems
from dge_platform.screen.well_qc import (
    COUNT_STAT_COLUMNS,
    QC_COLUMNS,
    count_stats,
    cytotoxic_doses,
    tukey_fences,
    viability_fraction,
    well_qc,
)
from dge_platform.sim.screen import simulate_screen

# --------------------------------------------------------------------------------------
# httrpl metrics by hand
# --------------------------------------------------------------------------------------

# 12 genes x 5 wells; the expected values are worked out in the comments.
HAND = pd.DataFrame({
    # total 30; >= 5 counts: 10, 5, 5 -> n_cov5 3. Cumulative proportions from the top:
    # 10/30, 15/30, 20/30, 24/30 = 0.8 (not > 0.8: httrpl's test is strict), 27/30 -> n_sig80
    # 5. Only 7 genes detected: the 10 top genes hold everything -> top10_prop 1.
    # Gini, ascending x at ranks 6..12 = 1, 2, 3, 4, 5, 5, 10: sum i x_i = 305,
    # 2 * 305 / (12 * 30) - 13 / 12 = 61/36 - 39/36 = 11/18.
    "uneven": [10, 5, 5, 4, 3, 2, 1, 0, 0, 0, 0, 0],
    # 12 x 10: n_cov5 12; k/12 > 0.8 first at k = 10; top10 100/120; gini 0.
    "flat": [10] * 12,
    # one gene: n_cov5 1, n_sig80 1, top10 1, gini 2 * 12 * 100 / (12 * 100) - 13/12 = 11/12.
    "single": [100] + [0] * 11,
    # gene i has i counts (total 78): n_cov5 8 (5..12); from the top 12, 23, 33, 42, 50, 57,
    # 63 -> 63/78 = 0.808 > 0.8 at rank 7; top10 (78 - 1 - 2)/78; gini
    # 2 * sum i^2 / (12 * 78) - 13/12 = 1300/936 - 13/12 = 11/36.
    "ramp": list(range(1, 13)),
    "empty": [0] * 12,
}, index=[f"G{i:02d}" for i in range(12)])

EXPECTED = pd.DataFrame({
    "n_cov5": [3, 12, 1, 8, 0],
    "n_sig80": [5, 10, 1, 7, np.nan],
    "top10_prop": [1.0, 100 / 120, 1.0, 75 / 78, np.nan],
    "gini": [11 / 18, 0.0, 11 / 12, 11 / 36, np.nan],
}, index=HAND.columns)


def reldist_gini(x: np.ndarray) -> float:
    """reldist::gini(x) with unit weights, line by line."""
    x = np.sort(x).astype(float)
    weights = np.full(len(x), 1 / len(x))
    p = np.cumsum(weights)
    nu = np.cumsum(weights * x)
    nu = nu / nu[-1]
    return float(np.sum(nu[1:] * p[:-1]) - np.sum(nu[:-1] * p[1:]))


def test_count_stats_match_hand_computations():
    stats = count_stats(HAND)
    assert list(stats.columns) == COUNT_STAT_COLUMNS
    assert stats["n_cov5"].dtype.kind == "i"
    pd.testing.assert_frame_equal(stats, EXPECTED, check_dtype=False, rtol=1e-12, atol=1e-12)
    for well in ["uneven", "flat", "single", "ramp"]:
        assert stats.loc[well, "gini"] == pytest.approx(reldist_gini(HAND[well].to_numpy()),
                                                        abs=1e-12)


def test_count_stats_do_not_depend_on_dtype_gene_order_or_blocks():
    rng = np.random.default_rng(1)
    counts = pd.DataFrame(rng.negative_binomial(2, 0.05, (300, 37)))
    stats = count_stats(counts)
    shuffled = count_stats(counts.sample(frac=1, random_state=2).astype(float), block=5)
    pd.testing.assert_frame_equal(stats, shuffled, check_dtype=False, rtol=1e-12)
    # n_sig80 straight from its definition
    for well in counts.columns[:5]:
        ordered = np.sort(counts[well].to_numpy())[::-1]
        proportion = np.cumsum(ordered) / ordered.sum()
        assert stats.loc[well, "n_sig80"] == np.flatnonzero(proportion > 0.8)[0] + 1


def test_tukey_fences_are_httrpl_outer_fences():
    # R: quantile(1:8) -> Q1 2.75, Q3 6.25, IQR 3.5
    assert tukey_fences(pd.Series(np.arange(1.0, 9.0))) == pytest.approx((2.75 - 10.5,
                                                                          6.25 + 10.5))
    assert np.isnan(tukey_fences(pd.Series([1.0, 2.0, np.nan]))[0])


# --------------------------------------------------------------------------------------
# Fences in well_qc
# --------------------------------------------------------------------------------------

def sim_qc(**kwargs) -> tuple[pd.DataFrame, object]:
    screen = simulate_screen(**{"n_genes": 2000, **kwargs})
    return well_qc(screen.counts, screen.plate_map.set_index("sample", drop=False)), screen


def test_new_columns_follow_the_old_ones():
    qc, screen = sim_qc(seed=3)
    old = ["sample", "plate", "well", "row", "column", "well_type", "compound", "dose",
           "total_counts", "genes_detected", "pct_mito", "control_correlation", "passed",
           "reason"]
    assert list(qc.columns) == QC_COLUMNS == [*old, *COUNT_STAT_COLUMNS, "cytotoxic"]
    pd.testing.assert_frame_equal(qc[COUNT_STAT_COLUMNS], count_stats(screen.counts))
    assert qc["cytotoxic"].dtype == bool


def test_fences_catch_a_jackpot_and_a_low_complexity_control():
    screen = simulate_screen(n_genes=2000, seed=3)
    plate_map = screen.plate_map.set_index("sample", drop=False)
    counts = screen.counts.copy()
    jackpot = plate_map.index[plate_map["well_type"] == "sample"][10]
    control = plate_map.index[plate_map["well_type"] == "control"][3]
    counts.loc["G00001", jackpot] += counts[jackpot].sum()  # half the well on one gene
    top = counts[control].sort_values().index[-50:]
    counts.loc[top, control] *= 8  # 50 genes take over the library
    qc = well_qc(counts, plate_map)
    assert sorted(qc.index[~qc["passed"]]) == sorted([jackpot, control])
    for well in (jackpot, control):
        reason = qc.loc[well, "reason"]
        assert "n_sig80 below plate fence: " in reason
        assert "gini above plate fence: " in reason
        assert "(Q1 - 3 x IQR of the plate's wells)" in reason
        assert "low depth" not in reason  # deeper, not shallower
        assert not qc.loc[well, "cytotoxic"]
    assert qc.loc[jackpot, "n_sig80"] < 0.5 * qc["n_sig80"].median()


@pytest.mark.parametrize("seed", range(4))
def test_clean_simulated_plates_pass(seed):
    for n_plates in (1, 2):
        qc, _ = sim_qc(seed=seed, n_plates=n_plates)
        assert qc["passed"].all(), qc.loc[~qc["passed"], "reason"].tolist()
        assert not qc["cytotoxic"].any()


def strong_compound_plate(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """92 of 96 wells: 24 DMSO, STRONG at 2 doses x 4 wells, 3 compounds x 4 doses x 5
    wells; STRONG induces 40 of the most expressed genes 6-fold, concentrating the counts
    on them."""
    rng = np.random.default_rng(seed)
    n_genes = 1500
    base = np.sort(np.exp(rng.normal(0, 1.5, n_genes)))[::-1]
    wells = [f"{r}{c:02d}" for r in "ABCDEFGH" for c in range(1, 13)]
    content = [("DMSO", 0.0, "control")] * 24 + [
        ("STRONG", dose, "sample") for dose in (1.0, 10.0) for _ in range(4)] + [
        (cmp, dose, "sample") for cmp in ("CMP2", "CMP3", "CMP4")
        for dose in (0.1, 1.0, 10.0, 30.0) for _ in range(5)]
    order = rng.permutation(len(wells))
    plate_map = pd.DataFrame([{"sample": f"P1_{wells[i]}", "plate": "P1", "well": wells[i],
                               "compound": c, "dose": d, "well_type": t}
                              for i, (c, d, t) in zip(order, content)]).set_index(
        "sample", drop=False)
    mu = np.tile(base, (len(plate_map), 1)).T
    strong = (plate_map["compound"] == "STRONG").to_numpy()
    mu[np.ix_(np.arange(5, 45), np.flatnonzero(strong))] *= 6
    mu = mu / mu.sum(axis=0) * 30_000 * np.exp(rng.normal(0, 0.2, len(plate_map)))
    counts = rng.negative_binomial(10, 10 / (10 + mu))
    return pd.DataFrame(counts, columns=plate_map.index), plate_map


def test_reproduced_compound_effects_are_not_fence_failures():
    counts, plate_map = strong_compound_plate()
    qc = well_qc(counts, plate_map, fence_metrics=tuple(COUNT_STAT_COLUMNS))
    strong = qc.index[qc["compound"] == "STRONG"]
    # On the plain plate fences, the compound's wells are outliers ...
    for metric, side in (("top10_prop", 1), ("gini", 1), ("n_sig80", 0)):
        fence = tukey_fences(qc[metric])[side]
        beyond = qc.loc[strong, metric] > fence if side else qc.loc[strong, metric] < fence
        assert beyond.mean() > 0.8, metric
    # ... but every replicate shows it: the compound's effect, not a failed library.
    assert qc["passed"].all(), qc.loc[~qc["passed"], "reason"].tolist()
    # A jackpot in one of them is still caught.
    counts[strong[0]] = counts[strong[0]] + np.eye(len(counts))[0] * counts[strong[0]].sum() * 2
    qc = well_qc(counts, plate_map, fence_metrics=tuple(COUNT_STAT_COLUMNS))
    assert qc.index[~qc["passed"]].tolist() == [strong[0]]
    assert "net of the shift its compound x dose replicates show" in qc.loc[strong[0],
                                                                             "reason"]


def test_top10_fence_is_off_by_default_as_in_httrpl():
    counts, plate_map = strong_compound_plate(seed=1)
    well = plate_map.index[plate_map["well_type"] == "sample"][0]
    counts.loc[:9, well] *= 3  # the top genes only: n_sig80 and gini move far less
    default = well_qc(counts, plate_map)
    asked = well_qc(counts, plate_map, fence_metrics=("top10_prop",))
    assert "top10_prop above plate fence" in asked.loc[well, "reason"]
    assert "top10_prop" not in default.loc[well, "reason"]
    with pytest.raises(ValueError, match="unknown fence metric"):
        well_qc(counts, plate_map, fence_metrics=("top5",))


# --------------------------------------------------------------------------------------
# Cytotoxicity
# --------------------------------------------------------------------------------------

def truth_wells(screen) -> pd.Index:
    plate_map = screen.plate_map.set_index("sample")
    lowest = plate_map["compound"].map(screen.cytotoxic)
    return plate_map.index[(plate_map["dose"] >= lowest).to_numpy()]


@pytest.mark.parametrize("kwargs", [
    {"seed": 1, "cytotoxic_compounds": 3},
    {"seed": 2, "cytotoxic_compounds": 4, "n_plates": 2},
    {"seed": 5, "cytotoxic_compounds": 10},  # every compound: 30 of 80 treated wells dead
    {"seed": 3, "cytotoxic_compounds": 6, "plate_format": 384, "n_genes": 1000},
])
def test_planted_cytotoxic_top_doses_are_flagged(kwargs):
    qc, screen = sim_qc(**kwargs)
    expected = truth_wells(screen)
    assert sorted(qc.index[qc["cytotoxic"]]) == sorted(expected)
    assert (qc.loc[expected, "reason"] == "cytotoxic").all()
    assert not qc.loc[expected, "passed"].any()
    assert qc.loc[~qc.index.isin(expected), "passed"].all()
    assert (qc.loc[expected, "total_counts"]
            < 0.15 * qc.loc[qc["well_type"] == "control", "total_counts"].median()).all()
    doses = cytotoxic_doses(qc)
    truth = screen.cytotoxic.rename("cytotoxic_dose").rename_axis("compound")
    pd.testing.assert_series_equal(doses.sort_index(), truth.sort_index())
    assert doses.notna().sum() == kwargs["cytotoxic_compounds"]


def test_no_cytotoxic_flags_on_controls_or_a_dmso_only_plate():
    screen = simulate_screen(n_genes=2000, seed=1, cytotoxic_compounds=3)
    plate_map = screen.plate_map.set_index("sample", drop=False)
    dmso = plate_map.assign(compound="DMSO", dose=0.0, well_type="control")
    qc = well_qc(screen.counts, dmso)
    assert not qc["cytotoxic"].any()
    dead = truth_wells(screen)
    # the collapsed wells still fail, for what they are
    assert all(r.startswith("low depth: ") for r in qc.loc[dead, "reason"])
    assert cytotoxic_doses(qc).empty
    # collapsed control wells on a screen plate are not cytotoxic either
    controls = plate_map.index[plate_map["well_type"] == "control"][:3]
    counts = screen.counts.copy()
    counts[controls] = counts[controls] // 20
    qc = well_qc(counts, plate_map)
    assert not qc.loc[controls, "cytotoxic"].any()
    assert all(r.startswith("low depth: ") for r in qc.loc[controls, "reason"])


def test_single_dead_wells_and_non_monotone_failures_are_not_cytotoxic():
    screen = simulate_screen(n_genes=2000, seed=4)
    plate_map = screen.plate_map.set_index("sample", drop=False)
    treated = plate_map[plate_map["well_type"] == "sample"]
    counts = screen.counts.copy()
    # CMP01: one of the two top-dose wells dies (a technical failure)
    one = treated.index[(treated["compound"] == "CMP01") & (treated["dose"] == 10.0)][0]
    # CMP02: both wells of its lowest dose die, the higher doses are fine
    low = treated.index[(treated["compound"] == "CMP02") & (treated["dose"] == 0.01)]
    for well in [one, *low]:
        counts[well] = counts[well] // 20
    qc = well_qc(counts, plate_map)
    assert not qc["cytotoxic"].any()
    assert all(qc.loc[w, "reason"].startswith("low depth: ") for w in [one, *low])
    assert cytotoxic_doses(qc).isna().all()
    # Both top-dose wells of CMP01 dead, and one of the two wells below: cytotoxic from
    # 1 uM (half the wells of every dose from there up).
    pair = treated.index[(treated["compound"] == "CMP01") & (treated["dose"] == 10.0)]
    below = treated.index[(treated["compound"] == "CMP01") & (treated["dose"] == 1.0)][0]
    for well in [*pair, below]:
        counts[well] = screen.counts[well] // 20
    qc = well_qc(counts, plate_map)
    assert sorted(qc.index[qc["cytotoxic"]]) == sorted([*pair, below])
    assert cytotoxic_doses(qc)["CMP01"] == 1.0


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_viability_column_flags_treated_wells(scale):
    screen = simulate_screen(n_genes=2000, seed=6)
    plate_map = screen.plate_map.set_index("sample", drop=False)
    treated = plate_map.index[plate_map["well_type"] == "sample"]
    control = plate_map.index[plate_map["well_type"] == "control"][0]
    viability = pd.Series(0.95, index=plate_map.index)
    viability[treated[:3]] = [0.3, 0.49, 0.5]
    viability[control] = 0.1  # a control is never cytotoxic
    viability[treated[3]] = np.nan  # not measured
    qc = well_qc(screen.counts, plate_map.assign(viability=viability * scale))
    assert qc.index[qc["cytotoxic"]].tolist() == list(treated[:2])
    assert qc.loc[treated[0], "reason"] == "cytotoxic: viability 30% below 50%"
    assert not qc.loc[treated[:2], "passed"].any()
    assert qc.loc[[treated[2], treated[3], control], "passed"].all()
    doses = cytotoxic_doses(qc)
    for well in treated[:2]:
        compound = plate_map.loc[well, "compound"]
        assert doses[compound] == plate_map.loc[treated[:2]].query(
            "compound == @compound")["dose"].min()


def test_viability_scale_is_decided_for_the_whole_column():
    assert viability_fraction(pd.Series([0.5, 1.0, 0.2])).tolist() == [0.5, 1.0, 0.2]
    assert viability_fraction(pd.Series(["50", 100, 1.0])).tolist() == [0.5, 1.0, 0.01]
    assert viability_fraction(pd.Series(["x", None, 0.4])).iloc[2] == 0.4


# --------------------------------------------------------------------------------------
# Plate-map checks
# --------------------------------------------------------------------------------------

def sheet(n: int = 12) -> pd.DataFrame:
    wells = [f"A{c:02d}" for c in range(1, n + 1)]
    frame = pd.DataFrame({"plate": "P1", "well": wells,
                          "compound": ["DMSO"] * 4 + ["cpdA"] * (n - 4),
                          "dose": ["0"] * 4 + ["1"] * (n - 4)},
                         index=[f"P1_{w}" for w in wells])
    return frame.astype(object)


def test_plate_map_with_valid_viability_has_no_problems():
    for values in (["0.9"] * 11 + [""], ["95"] * 6 + ["40.5"] * 6):
        assert plate_map_problems(sheet().assign(viability=values), "plate_map.tsv",
                                  "DMSO") == []


def test_bad_viability_names_column_rows_and_fix():
    frame = sheet().assign(viability=["90", "abc", "-5", "80", "101", "50", "n/a", "70",
                                      "", "-1", "150", "20"])
    problems = [str(p) for p in plate_map_problems(frame, "plate_map.tsv", "DMSO")]
    assert problems == [
        "plate_map.tsv: column 'viability': not numeric for 2 well(s): P1_A02='abc', "
        "P1_A07='n/a' -> give viability as a number, a fraction of the vehicle in [0, 1] or "
        "a percent in [0, 100]; leave unmeasured wells empty",
        "plate_map.tsv: column 'viability': negative for well(s) P1_A03, P1_A10 -> viability "
        "is a fraction in [0, 1] or a percent in [0, 100]; fix those values",
        "plate_map.tsv: column 'viability': above 100 for well(s) P1_A05, P1_A11 (the column "
        "is read as percent because its maximum is above 1) -> give viability as a percent "
        "in [0, 100] (or every value as a fraction in [0, 1])"]


def test_many_bad_rows_are_cut_at_five():
    frame = sheet(20).assign(viability=["-1"] * 20)
    (problem,) = plate_map_problems(frame, "plate_map.tsv", "DMSO")
    assert problem.field == "column 'viability'"
    assert problem.message == ("negative for well(s) P1_A01, P1_A02, P1_A03, P1_A04, "
                               "P1_A05 (+15 more)")


def test_treated_wells_need_positive_doses():
    frame = sheet()
    frame.loc[["P1_A05", "P1_A09"], "dose"] = ["0", "0.0"]
    (problem,) = plate_map_problems(frame, "plate_map.tsv", "DMSO")
    assert problem.field == "column 'dose'"
    assert problem.message == ("0 for treated well(s) P1_A05, P1_A09: doses of treated wells "
                               "must be > 0")
    assert "name its compound 'DMSO'" in problem.fix
    # a negative dose keeps its own problem (not reported twice), 0 on controls is fine
    frame = sheet()
    frame.loc["P1_A06", "dose"] = "-1"
    assert [p.message for p in plate_map_problems(frame, "plate_map.tsv", "DMSO")] == [
        "negative for well(s) P1_A06"]


# --------------------------------------------------------------------------------------
# Simulator
# --------------------------------------------------------------------------------------

def test_simulator_defaults_are_unchanged():
    # sha256 prefixes of the counts from before the cytotoxic/edge options existed
    for kwargs, digest in [({"n_genes": 2000, "seed": 0}, "8d35ba15d63da9f7"),
                           ({"n_genes": 3000, "n_plates": 2, "seed": 5}, "489a238df90d5abb")]:
        screen = simulate_screen(**kwargs)
        assert hashlib.sha256(screen.counts.to_numpy().tobytes()).hexdigest()[:16] == digest
        assert screen.cytotoxic.isna().all() and screen.edge_genes == []


def test_simulator_cytotoxic_truth():
    plain = simulate_screen(n_genes=1000, seed=8)
    screen = simulate_screen(n_genes=1000, seed=8, cytotoxic_compounds=2)
    # CMP01 loses its top dose (10 uM), CMP02 its top two (1 and 10 uM)
    assert screen.cytotoxic[["CMP01", "CMP02"]].tolist() == [10.0, 1.0]
    assert screen.cytotoxic.drop(["CMP01", "CMP02"]).isna().all()
    dead = truth_wells(screen)
    assert len(dead) == 2 + 4  # two replicate wells per dose
    ratio = screen.size_factors / plain.size_factors
    np.testing.assert_allclose(ratio[dead], 0.05)
    np.testing.assert_allclose(ratio.drop(dead), 1.0)
