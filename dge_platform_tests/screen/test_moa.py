"""MoA measures: robust z and MODZ against direct computations, activity and consistency mAP
against copairs and a hand-computed AP, the relabelling tests (one plate, and stratified
across plates) against brute-force loops and their calibration on planted inactive
conditions, single-plate activity pinned, MoA enrichment against scipy, edge cases."""

from __future__ import annotations

from itertools import combinations, product

import numpy as np
import pandas as pd
import pytest
from copairs.map import average_precision, mean_average_precision
from scipy.stats import binom, hypergeom, spearmanr
from sklearn.metrics import average_precision_score

from dge_platform.screen import moa
from dge_platform.screen.moa import (
    MIN_WEIGHT,
    STRENGTH_Z,
    _class_permutation_test,
    _relabelling_pvalue,
    activity_map,
    consensus_signatures,
    consistency_map,
    feature_genes,
    moa_enrichment,
    robust_z,
)

ALPHA = 0.05


def plate_sheet(conditions: list[tuple[str, int]], n_controls: int,
                plate: str = "P1") -> pd.DataFrame:
    """Plate map: ``n_controls`` DMSO wells, then ``(condition, wells)`` treated wells."""
    rows = [("DMSO", "control")] * n_controls
    rows += [(name, "sample") for name, n in conditions for _ in range(n)]
    sheet = pd.DataFrame(rows, columns=["condition", "role"])
    sheet["compound"] = sheet["condition"].str.split("_").str[0]
    sheet["dose"] = np.where(sheet["role"] == "control", 0.0, 1.0)
    sheet["plate"] = plate
    sheet.index = [f"{plate}_w{i:03d}" for i in range(len(sheet))]
    return sheet


def planted_z(seed: int, n_features: int = 300, n_controls: int = 24, n_inactive: int = 20,
              n_active: int = 10, wells: int = 4, shift: float = 0.6
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """z profiles: controls and inactive conditions N(0, 1); each active condition adds its
    own shift vector (sd ``shift``) to all its wells."""
    rng = np.random.default_rng(seed)
    sheet = plate_sheet([(f"INACT{i}_1uM", wells) for i in range(n_inactive)]
                        + [(f"ACT{i}_1uM", wells) for i in range(n_active)], n_controls)
    values = rng.normal(size=(n_features, len(sheet)))
    for i in range(n_active):
        columns = (sheet["condition"] == f"ACT{i}_1uM").to_numpy()
        values[:, columns] += shift * rng.normal(size=(n_features, 1))
    return pd.DataFrame(values, index=[f"g{i}" for i in range(n_features)],
                        columns=sheet.index), sheet


def plain_ap(relevant: list[bool], scores: list[float]) -> float:
    """Average precision by its definition: mean over the positives of the precision at
    their rank (descending score)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = np.asarray(relevant)[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


# --- robust z, features, MODZ ---------------------------------------------------------------

def test_robust_z_against_hand_computation_with_mad_floor_and_two_plates():
    sheet = pd.DataFrame({
        "plate": ["A"] * 5 + ["B"] * 4,
        "role": ["control"] * 4 + ["sample"] + ["control"] * 3 + ["sample"]},
        index=[f"w{i}" for i in range(9)])
    expression = pd.DataFrame(
        [[1, 2, 3, 4, 5.5, 10, 12, 16, 18],           # A: median 2.5, MAD 1; B: 12, MAD 2
         [5, 5, 5.02, 5.04, 5.31, 1, 1, 1, 1.3]],     # MAD 0.01 and 0: floored at 0.1
        index=["g1", "g2"], columns=sheet.index)
    z = robust_z(expression, sheet)
    assert z.loc["g1", "w4"] == pytest.approx((5.5 - 2.5) / 1.4826)
    assert z.loc["g1", "w8"] == pytest.approx((18 - 12) / (1.4826 * 2))
    assert z.loc["g2", "w4"] == pytest.approx((5.31 - 5.01) / (1.4826 * 0.1))
    assert z.loc["g2", "w8"] == pytest.approx(0.3 / (1.4826 * 0.1))
    assert z.loc["g1", "w0"] == pytest.approx((1 - 2.5) / 1.4826)  # controls too
    assert z.loc["g2", "w5"] == 0.0
    assert robust_z(expression, sheet, min_mad=0.001).loc["g2", "w4"] == \
        pytest.approx(0.3 / (1.4826 * 0.01))


def test_robust_z_plate_without_controls_names_the_plate():
    sheet = plate_sheet([("X_1uM", 2)], 2, "P1")
    other = plate_sheet([("Y_1uM", 2)], 0, "P2")
    both = pd.concat([sheet, other])
    expression = pd.DataFrame(np.ones((3, len(both))), columns=both.index)
    with pytest.raises(ValueError, match="'P2' has no control wells"):
        robust_z(expression, both)
    with pytest.raises(ValueError, match="'P2' has no control wells"):
        activity_map(expression, both, list(expression.index))


def test_feature_genes_largest_variance_ties_in_order_constant_genes_out():
    rng = np.random.default_rng(0)
    base = rng.normal(size=8)
    expression = pd.DataFrame([base * 3, base, -base, np.full(8, 4.0), base * 2, base * 0.5],
                              index=["big", "tie1", "tie2", "flat", "mid", "small"])
    assert feature_genes(expression, n=4) == ["big", "mid", "tie1", "tie2"]
    assert feature_genes(expression, n=10) == ["big", "mid", "tie1", "tie2", "small"]


def test_modz_weights_consensus_and_quality_against_a_spearman_loop():
    rng = np.random.default_rng(1)
    n_genes, features = 400, [f"g{i}" for i in range(0, 400, 2)]
    sizes = {"A": 3, "B": 4, "C": 2, "D": 1}
    wells, labels = [], []
    for name, n in sizes.items():
        wells += [f"{name}{i}" for i in range(n)]
        labels += [name] * n
    z = pd.DataFrame(rng.normal(size=(n_genes, len(wells))), columns=wells,
                     index=[f"g{i}" for i in range(n_genes)])
    shared = 2.5 * rng.normal(size=n_genes)
    z[["A0", "A1", "B0", "B1", "B2"]] += shared[:, None]
    z["B3"] = -z["B0"]  # anti-correlated replicate: weight floored at MIN_WEIGHT
    result = consensus_signatures(z, pd.Series(labels, index=wells), features)

    for name, n in sizes.items():
        members = [w for w, c in zip(wells, labels) if c == name]
        if n == 1:
            weights, cc = np.ones(1), np.nan
        else:
            r = np.array([[spearmanr(z.loc[features, a], z.loc[features, b])[0]
                           for b in members] for a in members])
            raw = [np.mean([max(r[i, j], 0) for j in range(n) if j != i]) for i in range(n)]
            weights = np.maximum(raw, MIN_WEIGHT) / np.maximum(raw, MIN_WEIGHT).sum()
            cc = np.percentile([r[i, j] for i, j in combinations(range(n), 2)], 75)
        np.testing.assert_allclose(result.weights[members], weights, atol=1e-12)
        consensus = z[members].to_numpy() @ weights
        np.testing.assert_allclose(result.signatures[name], consensus, atol=1e-12)
        strength = int((np.abs(pd.Series(consensus, index=z.index)[features]) >= STRENGTH_Z).sum())
        quality = result.quality.loc[name]
        assert quality["n_wells"] == n and quality["signature_strength"] == strength
        if n == 1:
            assert np.isnan(quality["replicate_correlation"]) and np.isnan(quality["tas"])
        else:
            assert quality["replicate_correlation"] == pytest.approx(cc)
            assert quality["tas"] == pytest.approx(np.sqrt(strength * max(cc, 0) / 200))
    b_weights = result.weights[["B0", "B1", "B2", "B3"]]
    assert b_weights["B3"] < 0.05 * b_weights["B0"]  # the floored outlier barely counts


def test_empty_feature_list_is_an_error_everywhere():
    z, sheet = planted_z(0, n_inactive=2, n_active=0, wells=2)
    with pytest.raises(ValueError, match="feature genes"):
        consensus_signatures(z, sheet["condition"], [])
    with pytest.raises(ValueError, match="feature genes"):
        activity_map(z, sheet, ["not_a_gene"])
    meta = pd.DataFrame({"compound": ["a"], "moa": ["m"]}, index=["g0"])
    with pytest.raises(ValueError, match="feature genes"):
        consistency_map(z, meta, [])


# --- activity -------------------------------------------------------------------------------

def test_activity_map_is_copairs_on_the_same_matrices(tmp_path):
    """Two plates, duplicates and triplicates, a single-well condition and one spread one
    well per plate: map and pvalue_copairs equal copairs called directly on the profiles
    activity_map documents (z centred on the plate's control median, scaled by the MAD of
    all the plate's wells), positives on any plate, negatives on the query's plate."""
    rng = np.random.default_rng(2)
    first = plate_sheet([("A_1uM", 3), ("B_1uM", 2), ("ONE_1uM", 1), ("SPLIT_1uM", 1)], 8, "P1")
    second = plate_sheet([("A_1uM", 2), ("C_1uM", 3), ("SPLIT_1uM", 1)], 6, "P2")
    sheet = pd.concat([first, second])
    z = pd.DataFrame(rng.normal(size=(60, len(sheet))), columns=sheet.index,
                     index=[f"g{i}" for i in range(60)])
    z.loc[:, sheet.index[sheet["condition"] == "A_1uM"]] += rng.normal(size=(60, 1))
    features = list(z.index[:50])
    result = activity_map(z, sheet, features, null_size=2000, seed=3).set_index("condition")

    profiles = []
    for plate in ("P1", "P2"):
        block = z.loc[features, sheet.index[sheet["plate"] == plate]].T
        controls = block[sheet.loc[block.index, "role"] == "control"]
        spread = 1.4826 * (block - block.median()).abs().median()
        profiles.append((block - controls.median()) / spread)
    profiles = pd.concat(profiles)
    meta = sheet.loc[profiles.index].reset_index(drop=True)
    meta["ref"] = np.where(meta["role"] == "control", np.arange(len(meta)), -1)
    ap = average_precision(meta, profiles.to_numpy(), pos_sameby=["condition", "ref"],
                           pos_diffby=[], neg_sameby=["plate"],
                           neg_diffby=["condition", "ref"], progress_bar=False)
    ap = ap[(ap["role"] == "sample") & (ap["n_pos_pairs"] > 0)]
    direct = mean_average_precision(ap, ["condition"], null_size=2000, threshold=ALPHA, seed=3,
                                    progress_bar=False, cache_dir=tmp_path).set_index("condition")
    assert set(direct.index) == {"A_1uM", "B_1uM", "C_1uM", "SPLIT_1uM"}
    for condition in direct.index:
        assert result.loc[condition, "map"] == direct.loc[condition, "mean_average_precision"]
        assert result.loc[condition, "pvalue_copairs"] == pytest.approx(
            direct.loc[condition, "p_value"], rel=1e-6)
    assert result.loc["A_1uM", "n_profiles"] == 5
    assert result.loc["A_1uM", "n_null"] == 2000      # C(11, 3) C(8, 2) = 4620: sampled
    assert result.loc["SPLIT_1uM", "n_null"] == 9 * 7  # one of 9 wells on P1, of 7 on P2
    assert result.loc["B_1uM", "n_null"] == 45         # one plate: all C(10, 2) enumerated
    assert result["note"].drop("ONE_1uM").isna().all()
    row = result.loc["ONE_1uM"]
    assert np.isnan(row["map"]) and np.isnan(row["pvalue"]) and not row["retrieved"]
    assert row["note"].startswith("one well")
    assert list(result.loc[["A_1uM", "B_1uM"], "compound"]) == ["A", "B"]


def test_average_precision_of_a_hand_made_plate():
    """3 controls, one duplicate condition, 4 features. Every feature holds the same values
    over the plate ({-1, 0, 1} on the controls, {3, 1} on the treated wells), so centring on
    the control median (0) and the plate-wide MAD scaling leave the cosines unchanged.
    a1 = (3,3,3,1): its replicate (cos 0.655) outranks every control (at most 0.33): AP 1.
    a2 = (1,1,1,3): c1 = (0,0,0,1) has cos 0.866 > 0.655 with it: the replicate is 2nd, AP
    1/2. mAP = 0.75."""
    sheet = plate_sheet([("A_1uM", 2)], 3)
    z = pd.DataFrame([[0, 1, -1, 3, 1], [0, -1, 1, 3, 1], [0, 1, -1, 3, 1], [1, 0, -1, 1, 3]],
                     index=["f1", "f2", "f3", "f4"], columns=sheet.index, dtype=float)
    result = activity_map(z, sheet, list(z.index), null_size=100)
    assert result.loc[0, "map"] == pytest.approx(0.75)
    wells = z.T.to_numpy()
    unit = wells / np.linalg.norm(wells, axis=1, keepdims=True)
    cosine = unit @ unit.T
    assert cosine[3, 4] == pytest.approx(12 / np.sqrt(28 * 12))  # a1 . a2
    assert cosine[4, 0] == pytest.approx(3 / np.sqrt(12))         # a2 . c1
    # query a1 ranks (a2, c2, c1, c3), query a2 ranks (c1, a2's replicate a1, ...)
    for query, expected in ((3, 1.0), (4, 0.5)):
        others = [0, 1, 2, 7 - query]
        assert plain_ap([j >= 3 for j in others], list(cosine[query, others])) == expected
    # 10 ways to choose 2 of the 5 wells; the observed one is among them
    assert result.loc[0, "n_null"] == 10 and result.loc[0, "pvalue"] >= 0.1


def test_relabelling_pvalue_against_a_brute_force_loop():
    """The exact test, spelled out: every choice of the condition's wells among its wells and
    the plate's controls is re-centred on the other wells' median, scored by mAP (sklearn's
    average precision), ties broken by the mean cosine among the chosen wells."""
    rng = np.random.default_rng(4)
    sheet = plate_sheet([("A_1uM", 3), ("B_1uM", 2)], 7)
    z = pd.DataFrame(rng.normal(size=(30, len(sheet))), columns=sheet.index)
    z.loc[:, sheet.index[sheet["condition"] == "A_1uM"]] += 0.8 * rng.normal(size=(30, 1))
    result = activity_map(z, sheet, list(z.index), null_size=10_000).set_index("condition")
    x = z.T.to_numpy()
    x = x / (1.4826 * np.median(np.abs(x - np.median(x, axis=0)), axis=0))
    controls = np.flatnonzero(sheet["role"] == "control")
    for condition in ("A_1uM", "B_1uM"):
        pool = x[np.r_[np.flatnonzero(sheet["condition"] == condition), controls]]
        k = int((sheet["condition"] == condition).sum())
        scores = []
        for chosen in combinations(range(len(pool)), k):
            rest = [i for i in range(len(pool)) if i not in chosen]
            centred = pool - np.median(pool[rest], axis=0)
            unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
            cosine = unit @ unit.T
            aps = [average_precision_score([j in chosen for j in range(len(pool)) if j != q],
                                           [cosine[q, j] for j in range(len(pool)) if j != q])
                   for q in chosen]
            together = np.mean([cosine[a, b] for a, b in combinations(chosen, 2)])
            scores.append((np.mean(aps), together))
        observed = scores[0]
        at_least = sum(s[0] > observed[0] + 1e-9 or (abs(s[0] - observed[0]) <= 1e-9
                                                     and s[1] >= observed[1] - 1e-9)
                       for s in scores)
        assert result.loc[condition, "pvalue"] == pytest.approx(at_least / len(scores))
        assert result.loc[condition, "map"] == pytest.approx(observed[0], abs=1e-6)


def test_single_plate_values_pinned():
    """A single-plate screen gives the values activity_map gave before replicates on other
    plates counted (pinned from that code): duplicates enumerated, triplicates sampled to
    null_size, early-stopped inactive conditions, a single well."""
    rng = np.random.default_rng(11)
    sheet = plate_sheet([("A_1uM", 2), ("B_1uM", 2), ("C_1uM", 3), ("D_1uM", 4), ("E_1uM", 3),
                         ("ONE_1uM", 1)], 12)
    genes = [f"g{i}" for i in range(120)]
    expression = pd.DataFrame(rng.normal(size=(120, len(sheet))) * rng.uniform(0.1, 1, (120, 1))
                              + rng.uniform(2, 12, (120, 1)), columns=sheet.index, index=genes)
    for name in ("A_1uM", "C_1uM"):
        expression.loc[:, sheet.index[sheet["condition"] == name]] += \
            0.8 * rng.normal(size=(120, 1))
    result = activity_map(robust_z(expression, sheet), sheet, genes[:100], null_size=300,
                          seed=5).set_index("condition")
    pinned = {"A_1uM": (1.0, 0.01098901098901099, 91, 0.0033222591362126247),
              "B_1uM": (0.14583333333333331, 0.7472527472527473, 91, 0.46179401993355484),
              "C_1uM": (1.0, 0.006644518272425249, 300, 0.0033222591362126247),
              "D_1uM": (0.4956349206349206, 0.2857142857142857, 70, 0.2059800664451827),
              "E_1uM": (0.3565934065934066, 0.7142857142857143, 28, 0.23255813953488372)}
    for condition, values in pinned.items():
        row = result.loc[condition]
        assert (row["map"], row["pvalue"], row["n_null"], row["pvalue_copairs"]) == values
    assert np.isnan(result.loc["ONE_1uM", "pvalue"]) and result.loc["ONE_1uM", "n_null"] == 0


def stratified_brute_force(pools: list[tuple[np.ndarray, int]]) -> tuple[float, float]:
    """Observed mAP and exact p of the stratified test, spelled out: on every plate every
    choice of the condition's wells among its pool (its wells first, then its controls),
    each plate re-centred on its other wells' median; a chosen well's positives are the
    chosen wells of all plates, its negatives the other wells of its plate; ties of mAP
    broken by the mean cosine among the chosen wells."""
    scores = []
    for joint in product(*[combinations(range(len(pool)), k) for pool, k in pools]):
        units, plate, chosen = [], [], []
        for p, ((pool, _), picked) in enumerate(zip(pools, joint)):
            rest = [i for i in range(len(pool)) if i not in picked]
            centred = pool - np.median(pool[rest], axis=0)
            units.append(centred / np.linalg.norm(centred, axis=1, keepdims=True))
            plate += [p] * len(pool)
            chosen += [i in picked for i in range(len(pool))]
        cosine = np.vstack(units) @ np.vstack(units).T
        queries = np.flatnonzero(chosen)
        aps = []
        for q in queries:
            ranked = [j for j in range(len(plate))
                      if j != q and (chosen[j] or plate[j] == plate[q])]
            aps.append(plain_ap([chosen[j] for j in ranked], list(cosine[q, ranked])))
        together = np.mean([cosine[a, b] for a, b in combinations(queries, 2)])
        scores.append((np.mean(aps), together))
    observed = scores[0]
    at_least = sum(s[0] > observed[0] + 1e-9 or (abs(s[0] - observed[0]) <= 1e-9
                                                 and s[1] >= observed[1] - 1e-9) for s in scores)
    return observed[0], at_least / len(scores)


def test_three_plates_unequal_wells_against_a_brute_force_loop(monkeypatch):
    """A on 3 plates with 2 + 1 + 1 wells (C(7, 2) 5 4 = 420 joint relabellings), B on 2
    plates (1 + 2: 60), C on one plate of the three (C(7, 3) = 35), D one well: map and
    exact p equal the stratified test spelled out; the sampled p (null_size under 420)
    is the exact one when its draws are every other joint relabelling."""
    rng = np.random.default_rng(6)
    sheet = pd.concat([plate_sheet([("A_1uM", 2), ("B_1uM", 1), ("D_1uM", 1)], 5, "P1"),
                       plate_sheet([("A_1uM", 1), ("C_1uM", 3)], 4, "P2"),
                       plate_sheet([("A_1uM", 1), ("B_1uM", 2)], 3, "P3")])
    z = pd.DataFrame(rng.normal(size=(40, len(sheet))), columns=sheet.index)
    z.loc[:, sheet.index[sheet["condition"] == "A_1uM"]] += 0.5 * rng.normal(size=(40, 1))
    result = activity_map(z, sheet, list(z.index)).set_index("condition")
    pools = {}
    for _, wells in sheet.groupby("plate"):
        x = z[wells.index].T.to_numpy()
        x = x / (1.4826 * np.median(np.abs(x - np.median(x, axis=0)), axis=0))
        controls = x[(wells["role"] == "control").to_numpy()]
        for condition in ("A_1uM", "B_1uM", "C_1uM"):
            mine = (wells["condition"] == condition).to_numpy()
            if mine.any():
                pools.setdefault(condition, []).append((np.vstack([x[mine], controls]),
                                                        int(mine.sum())))
    exact = {}
    for condition, n_ways in (("A_1uM", 420), ("B_1uM", 60), ("C_1uM", 35)):
        observed, pvalue = exact[condition] = stratified_brute_force(pools[condition])
        row = result.loc[condition]
        assert row["map"] == pytest.approx(observed, abs=1e-9)  # copairs' map
        assert row["pvalue"] == pytest.approx(pvalue) and row["n_null"] == n_ways
    assert result.loc["A_1uM", "pvalue"] < 0.05 and result.loc["B_1uM", "pvalue"] > 0.05
    assert result.loc["A_1uM", "n_profiles"] == 4 and result.loc["D_1uM", "note"] == \
        "one well: no replicate to retrieve"
    # The sampled path scores the same statistic: draws scripted to be every joint
    # relabelling but the observed one, no early stop, give p = (1 + count) / (1 + draws),
    # the exact p; whether a plate's choices are scored up front and looked up (all, A's
    # single-well plates only, none) or draw by draw.
    monkeypatch.setattr(moa, "_STOP_AFTER", 10**6)
    for table_cells in (moa._TABLE_CELLS, 1000, 0):
        monkeypatch.setattr(moa, "_TABLE_CELLS", table_cells)
        for condition in ("A_1uM", "B_1uM"):
            scripted = ScriptedDraws(pools[condition])
            assert _relabelling_pvalue(pools[condition], scripted.n_draws, scripted) == \
                (pytest.approx(exact[condition][1]), scripted.n_draws)


class ScriptedDraws:
    """Stands in for the random generator of _relabelling_pvalue: its draws pick, in turn,
    every joint relabelling of ``pools`` but the observed one (0 for the chosen wells)."""

    def __init__(self, pools: list[tuple[np.ndarray, int]]):
        joint = list(product(*[combinations(range(len(pool)), k) for pool, k in pools]))[1:]
        self.n_draws = len(joint)
        self.draws = [np.array([[0.0 if i in picked[p] else 1.0 for i in range(len(pool))]
                                for picked in joint]) for p, (pool, _) in enumerate(pools)]
        self.calls = 0

    def random(self, shape: tuple[int, int]) -> np.ndarray:
        out = self.draws[self.calls % len(self.draws)]
        self.calls += 1
        assert out.shape == shape
        return out


def _false_positive_check(pvalues: np.ndarray, what: str) -> None:
    """The rate at p < 0.05 must be within sampling error of a level-0.05 test: an exact
    test's expected rate is just under 0.05, so the observed one may exceed it by chance,
    but not beyond the binomial 99th percentile (copairs' null reaches 0.15-0.40 here)."""
    n = len(pvalues)
    false = int(np.sum(pvalues < ALPHA))
    assert binom.sf(false - 1, n, ALPHA) > 0.01, \
        f"{what}: false positive rate {false / n:.3f} ({false}/{n}) at p < 0.05"


def test_activity_planted_truth_inactive_stay_inactive_active_are_retrieved():
    inactive, padj_inactive, copairs_inactive = [], [], []
    for seed in range(6):
        z, sheet = planted_z(seed)
        result = activity_map(z, sheet, list(z.index), null_size=999, seed=seed)
        is_active = result["condition"].str.startswith("ACT")
        assert result.loc[is_active, "retrieved"].all(), result[is_active]
        assert (result.loc[is_active, "map"] > 0.8).all()
        inactive.append(result.loc[~is_active, "pvalue"])
        padj_inactive.append(result.loc[~is_active, "padj"])
        copairs_inactive.append(result.loc[~is_active, "pvalue_copairs"])
    inactive, padj = np.concatenate(inactive), np.concatenate(padj_inactive)
    copairs_rate = np.mean(np.concatenate(copairs_inactive) < ALPHA)
    _false_positive_check(inactive, f"120 inactive conditions (copairs' p: {copairs_rate:.3f})")
    assert np.mean(padj < ALPHA) <= ALPHA, f"padj < 0.05 rate {np.mean(padj < ALPHA):.3f}"


def test_activity_calibrated_through_robust_z_where_copairs_is_not():
    """Expression with gene-specific means and spreads, robust_z against the plate's own
    controls, duplicates: the relabelling p holds level; copairs' p (the reference-noise
    bias: duplicates share the control median's noise) does not."""
    pvalues, copairs = [], []
    for seed in range(8):
        rng = np.random.default_rng(100 + seed)
        sheet = plate_sheet([(f"I{i}_1uM", 2) for i in range(30)], 24)
        spread = rng.uniform(0.05, 1.0, size=(300, 1))
        expression = pd.DataFrame(rng.normal(size=(300, len(sheet))) * spread
                                  + rng.uniform(2, 12, size=(300, 1)), columns=sheet.index)
        result = activity_map(robust_z(expression, sheet), sheet, list(expression.index),
                              seed=seed)
        assert (result["n_null"] == 325).all()  # C(26, 2): exact
        pvalues.append(result["pvalue"])
        copairs.append(result["pvalue_copairs"])
    _false_positive_check(np.concatenate(pvalues), "240 inactive duplicates via robust_z")
    assert np.mean(np.concatenate(copairs) < ALPHA) > 0.1



def replicate_plates(seed: int, n_inactive: int, n_active: int, n_genes: int = 300,
                     n_plates: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replicate plates: each holds 24 controls and every condition once. Expression with
    gene-specific means and spreads, a plate offset per gene and a plate-wide scale; an
    active condition adds its own shift (sd 1 gene spread) to its wells on every plate."""
    rng = np.random.default_rng(seed)
    conditions = [(f"I{i}_1uM", 1) for i in range(n_inactive)]
    conditions += [(f"ACT{i}_1uM", 1) for i in range(n_active)]
    plates = [plate_sheet(conditions, 24, f"P{p + 1}") for p in range(n_plates)]
    mean, spread = rng.uniform(2, 12, (n_genes, 1)), rng.uniform(0.05, 1.0, (n_genes, 1))
    shifts = {f"ACT{i}_1uM": spread * rng.normal(size=(n_genes, 1)) for i in range(n_active)}
    blocks = []
    for plate in plates:
        block = (mean + rng.normal(0, 0.5, (n_genes, 1)) + rng.uniform(0.8, 1.25) * spread
                 * rng.normal(size=(n_genes, len(plate))))
        for condition, shift in shifts.items():
            block[:, (plate["condition"] == condition).to_numpy()] += shift
        blocks.append(block)
    sheet = pd.concat(plates)
    return pd.DataFrame(np.hstack(blocks), index=[f"g{i}" for i in range(n_genes)],
                        columns=sheet.index), sheet


def test_activity_two_replicate_plates_calibrated_through_robust_z():
    """The replicate-plates layout (each condition once on each of 2 plates, 24 controls a
    plate, robust_z per plate): each well retrieves its replicate on the other plate among
    its own plate's controls; the stratified relabelling test (25 x 25 = 625 joint
    relabellings, enumerated) holds level on inactive conditions and calls the planted
    active ones."""
    pvalues, copairs = [], []
    for seed in range(20):
        expression, sheet = replicate_plates(200 + seed, n_inactive=60, n_active=6)
        result = activity_map(robust_z(expression, sheet), sheet, list(expression.index),
                              seed=seed)
        assert (result["n_profiles"] == 2).all() and (result["n_null"] == 625).all()
        assert result["note"].isna().all()
        active = result["condition"].str.startswith("ACT")
        assert result.loc[active, "retrieved"].all(), result[active]
        assert (result.loc[active, "map"] == 1).all()
        pvalues.append(result.loc[~active, "pvalue"])
        copairs.append(result.loc[~active, "pvalue_copairs"])
    copairs_rate = np.mean(np.concatenate(copairs) < ALPHA)
    _false_positive_check(np.concatenate(pvalues), "1200 inactive conditions on 2 replicate "
                          f"plates (copairs' p: {copairs_rate:.3f})")

# --- consistency ----------------------------------------------------------------------------

def planted_classes(seed: int, strength: float, n_genes: int = 300) -> tuple[pd.DataFrame,
                                                                             pd.DataFrame]:
    """Consensus signatures of 3 classes x 3 compounds x 2 doses: class vector (sd
    ``strength``, half at the low dose) + compound vector (sd 1) + noise (sd 0.5)."""
    rng = np.random.default_rng(seed)
    signatures, rows = {}, []
    for m in range(3):
        shared = strength * rng.normal(size=n_genes)
        for c in range(3):
            own = rng.normal(size=n_genes)
            for dose in (1, 2):
                name = f"C{m}{c}_{dose}uM"
                signatures[name] = shared * dose / 2 + own + 0.5 * rng.normal(size=n_genes)
                rows.append((name, f"C{m}{c}", f"MOA{m}"))
    meta = pd.DataFrame(rows, columns=["condition", "compound", "moa"]).set_index("condition")
    return pd.DataFrame(signatures, index=[f"g{i}" for i in range(n_genes)]), meta


def test_consistency_planted_classes_retrieved_random_classes_not():
    signatures, meta = planted_classes(0, strength=2.0)
    result = consistency_map(signatures, meta, list(signatures.index), null_size=2000)
    assert list(result["moa"]) == ["MOA0", "MOA1", "MOA2"]
    assert (result["map"] >= 0.8).all() and result["retrieved"].all(), result
    assert (result["n_compounds"] == 3).all() and (result["n_profiles"] == 6).all()
    observed, _ = _class_permutation_test(signatures.to_numpy().T, meta["compound"].to_numpy(),
                                          meta["moa"].to_numpy(), list(result["moa"]), 10,
                                          np.random.default_rng(0))
    np.testing.assert_allclose(observed, result["map"], atol=1e-6)  # copairs' mAP
    pvalues, retrieved = [], []
    for seed in range(1, 21):
        signatures, meta = planted_classes(seed, strength=0.0)
        result = consistency_map(signatures, meta, list(signatures.index), null_size=500,
                                 seed=seed)
        pvalues.append(result["pvalue"])
        retrieved.append(result["retrieved"])
    _false_positive_check(np.concatenate(pvalues), "60 random classes")
    rate = np.mean(np.concatenate(retrieved))
    assert rate <= ALPHA, f"random classes retrieved at padj < 0.05: {rate:.3f}"


def test_consistency_unannotated_and_singleton_classes():
    signatures, meta = planted_classes(0, strength=2.0)
    unannotated = meta.assign(moa=np.nan)
    assert consistency_map(signatures, unannotated, list(signatures.index)).empty
    # MOA2 reduced to C20 and C21, C22 given classes of their own: all three left out, their
    # conditions stay negatives; C01 unannotated
    meta = meta.copy()
    meta.loc[meta["compound"] == "C21", "moa"] = "S21"
    meta.loc[meta["compound"] == "C22", "moa"] = "S22"
    meta.loc[meta["compound"] == "C01", "moa"] = np.nan
    result = consistency_map(signatures, meta, list(signatures.index), null_size=200)
    assert list(result["moa"]) == ["MOA0", "MOA1"]
    assert list(result["n_compounds"]) == [2, 3] and list(result["n_profiles"]) == [4, 6]


# --- MoA enrichment -------------------------------------------------------------------------

def test_moa_enrichment_against_scipy_hypergeom_and_bh():
    moa_of = pd.Series({"a1": "X", "a2": "X", "b1": "X", "c1": "Y", "d1": "Y", "e1": "Z",
                        "f1": np.nan, "g1": "X", "q1": np.nan, "r1": np.nan})
    compound = {n: n[0] for n in moa_of.index}
    neighbors = pd.DataFrame(
        [("q1", "b1"), ("q1", "g1"), ("q1", "c1"), ("q1", "f1"),
         ("r1", "c1"), ("r1", "d1"), ("r1", "e1"),
         ("a1", "b1"), ("a1", "c1"), ("a1", "g1"),
         ("e1", "f1")], columns=["contrast", "neighbor_contrast"])
    neighbors["compound"] = neighbors["contrast"].map(compound)
    neighbors["neighbor_compound"] = neighbors["neighbor_contrast"].map(compound)
    neighbors["rank"] = neighbors.groupby("contrast").cumcount() + 1
    result = moa_enrichment(neighbors, moa_of).set_index("contrast")

    # annotated conditions that appear in the table: a1 b1 c1 d1 e1 g1 (a2 never does)
    known = {"a1": "X", "b1": "X", "c1": "Y", "d1": "Y", "e1": "Z", "g1": "X"}
    expected = {}
    for query, hits in {"q1": ["X", "X", "Y"], "r1": ["Y", "Y", "Z"],
                        "a1": ["X", "Y", "X"]}.items():
        population = [c for n, c in known.items() if compound[n] != compound[query]]
        tests = [(hypergeom.sf(hits.count(m) - 1, len(population), population.count(m),
                               len(hits)), -hits.count(m), m) for m in sorted(set(hits))]
        p, minus_x, m = min(tests)
        expected[query] = (m, -minus_x, len(hits), p)
    for query, (m, x, n, p) in expected.items():
        row = result.loc[query]
        assert (row["moa_hypothesis"], row["n_neighbors_in_class"],
                row["n_neighbors_annotated"]) == (m, x, n)
        assert row["moa_hypothesis_pvalue"] == pytest.approx(p)
    assert expected["a1"][0] == "X" and expected["q1"][0] == "X" and expected["r1"][0] == "Y"
    assert pd.isna(result.loc["e1", "moa_hypothesis"]) and \
        result.loc["e1", "n_neighbors_annotated"] == 0
    p = np.array([expected[q][3] for q in ("q1", "r1", "a1")])
    order = np.argsort(p)
    ranked = p[order] * 3 / np.arange(1, 4)
    bh = np.minimum.accumulate(ranked[::-1])[::-1]
    padj = np.empty(3)
    padj[order] = np.minimum(bh, 1)
    np.testing.assert_allclose(result.loc[["q1", "r1", "a1"], "moa_hypothesis_padj"], padj)
    assert np.isnan(result.loc["e1", "moa_hypothesis_padj"])


def test_moa_enrichment_all_unannotated():
    neighbors = pd.DataFrame({"contrast": ["a", "a", "b"], "compound": ["A", "A", "B"],
                              "neighbor_contrast": ["b", "c", "a"],
                              "neighbor_compound": ["B", "C", "A"], "rank": [1, 2, 1]})
    result = moa_enrichment(neighbors, pd.Series(np.nan, index=["a", "b", "c"]))
    assert list(result["contrast"]) == ["a", "b"]
    assert result["moa_hypothesis"].isna().all() and result["moa_hypothesis_padj"].isna().all()
    assert (result["n_neighbors_annotated"] == 0).all()


def test_feature_genes_per_plate_ignore_plate_offsets():
    """A gene shifted between two plates (same response on both) is variable across all
    wells but not within a plate: per-plate centring leaves it out, keeps the responding
    genes, and changes nothing on one plate."""
    rng = np.random.default_rng(3)
    wells = [f"P{p}_{i}" for p in (1, 2) for i in range(20)]
    plates = pd.Series([w[:2] for w in wells], index=wells)
    expression = pd.DataFrame(rng.normal(0, 0.1, (50, 40)), columns=wells,
                              index=[f"g{i}" for i in range(50)])
    expression.loc["g0", plates.index[plates == "P2"]] += 5.0  # plate effect
    responders = [w for w in wells if int(w.split("_")[1]) < 4]
    expression.loc[["g1", "g2"], responders] += 2.0  # a response on both plates
    assert feature_genes(expression, 3)[0] == "g0"
    per_plate = feature_genes(expression, 3, plates=plates)
    assert "g0" not in per_plate and {"g1", "g2"} <= set(per_plate)
    one = plates.index[plates == "P1"]
    assert feature_genes(expression[one], 5, plates=plates[one]) == \
        feature_genes(expression[one], 5)
