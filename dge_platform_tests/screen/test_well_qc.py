"""Well QC: metrics against direct computations, planted bad wells flagged with the right
reason, clean and strongly treated wells passing, plate layout parsing and the plate plot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dge_platform.outputs.plots import plate_heatmap
from dge_platform.screen.well_qc import plate_layout, well_qc

N_GENES, N_MITO = 400, 13


def synthetic_plate(seed: int = 0, depth: float = 20_000, n_genes: int = N_GENES,
                    n_mito: int = N_MITO, depth_sd: float = 0.2,
                    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """A 96-well plate: DMSO controls in columns 1 and 12, two empty wells (H06, H07),
    4 compounds in the rest, the first of which moves a third of the genes 8-fold."""
    rng = np.random.default_rng(seed)
    genes = [f"G{i:04d}" for i in range(n_genes)]
    symbols = pd.Series([f"MT-CO{i}" if i < n_mito else f"GENE{i}" for i in range(n_genes)],
                        index=genes)
    base = rng.gamma(0.6, 1.0, n_genes) + 0.02
    base[:n_mito] = base[:n_mito].mean() * 2  # ~5 % of counts on MT genes
    base /= base.sum()
    wells = [f"{r}{c:02d}" for r in "ABCDEFGH" for c in range(1, 13)]
    samples = [f"P1_{w}" for w in wells]
    rows = []
    for sample, well in zip(samples, wells):
        column = int(well[1:])
        if well in ("H06", "H07"):
            role, compound, dose = "empty", "none", 0.0
        elif column in (1, 12):
            role, compound, dose = "control", "DMSO", 0.0
        else:
            dose = 10.0 ** (ord(well[0]) % 3)
            role, compound = "sample", f"CMP{(column - 2) % 4 + 1}"
        rows.append({"sample": sample, "plate": "P1", "well": well, "compound": compound,
                     "dose": dose, "well_type": role})
    plate_map = pd.DataFrame(rows).set_index("sample", drop=False)
    effects = np.zeros((n_genes, 4))
    responsive = rng.choice(np.arange(n_mito, n_genes), n_genes // 3, replace=False)
    effects[responsive, 0] = rng.choice([-3.0, 3.0], len(responsive))  # strong, real effect
    for j in range(1, 4):
        effects[rng.choice(np.arange(n_mito, n_genes), 20, replace=False), j] = 1.0
    counts = np.empty((n_genes, len(samples)), dtype=np.int64)
    for k, (_, row) in enumerate(plate_map.iterrows()):
        mu = base.copy()
        if row["well_type"] == "sample":
            mu = mu * 2.0 ** effects[:, int(row["compound"][3:]) - 1]
            mu /= mu.sum()
        scale = 0.01 if row["well_type"] == "empty" else 1.0
        size = depth * np.exp(rng.normal(0, depth_sd)) * scale
        mean = mu * size
        counts[:, k] = rng.negative_binomial(10, 10 / (10 + mean))  # NB, dispersion 0.1
    return pd.DataFrame(counts, index=genes, columns=samples), plate_map, symbols


def plant_problems(counts: pd.DataFrame) -> pd.DataFrame:
    """Shallow treated well C05, high-mito treated well D08, shuffled control E01."""
    counts = counts.copy()
    rng = np.random.default_rng(42)
    counts["P1_C05"] = rng.binomial(counts["P1_C05"], 0.03)
    counts.loc[counts.index[:N_MITO], "P1_D08"] *= 12
    counts["P1_E01"] = rng.permutation(counts["P1_E01"].to_numpy())
    return counts


def test_metrics_equal_direct_computations():
    counts, plate_map, symbols = synthetic_plate()
    qc = well_qc(counts, plate_map, symbols)
    assert list(qc.index) == list(counts.columns)
    np.testing.assert_array_equal(qc["total_counts"].to_numpy(), counts.sum().to_numpy())
    np.testing.assert_array_equal(qc["genes_detected"].to_numpy(), (counts > 0).sum().to_numpy())
    mito = 100 * counts.iloc[:N_MITO].sum() / counts.sum()
    np.testing.assert_allclose(qc["pct_mito"].to_numpy(), mito.to_numpy(), rtol=1e-12)
    assert qc.loc["P1_B03", ["row", "column", "well_type", "compound"]].tolist() == \
        ["B", 3, "sample", "CMP2"]

    # Correlation: log2 CPM + 1 over genes detected in >= half the controls, against the
    # median control profile; for a control both from the *other* controls.
    logcpm = np.log2(counts / counts.sum() * 1e6 + 1)
    controls = plate_map.index[plate_map["well_type"] == "control"]
    expressed = (counts[controls] > 0).mean(axis=1) >= 0.5
    reference = logcpm.loc[expressed, controls].median(axis=1)
    assert qc.loc["P1_B03", "control_correlation"] == pytest.approx(
        np.corrcoef(logcpm.loc[expressed, "P1_B03"], reference)[0, 1], abs=1e-12)
    others = controls.drop("P1_C01")
    expressed = (counts[others] > 0).mean(axis=1) >= 0.5
    reference = logcpm.loc[expressed, others].median(axis=1)
    assert qc.loc["P1_C01", "control_correlation"] == pytest.approx(
        np.corrcoef(logcpm.loc[expressed, "P1_C01"], reference)[0, 1], abs=1e-12)
    assert 0.8 < qc.loc["P1_C01", "control_correlation"] < 1


@pytest.mark.parametrize("seed", range(10, 18))
def test_clean_plates_pass_and_empty_wells_are_reported_not_analysed(seed):
    # Depth spread (log-normal sd 0.3) wider than in the other tests: shallower clean
    # controls correlate worse and must not fail for it.
    counts, plate_map, symbols = synthetic_plate(seed=seed, depth_sd=0.3)
    qc = well_qc(counts, plate_map, symbols)
    empty = qc["well_type"] == "empty"
    assert qc.loc[~empty, "passed"].all(), qc.loc[~qc["passed"] & ~empty, "reason"].tolist()
    assert (qc.loc[~empty, "reason"] == "").all()
    assert qc.loc[empty, "reason"].tolist() == ["empty well", "empty well"]
    assert not qc.loc[empty, "passed"].any()
    assert (qc.loc[empty, "total_counts"] < 0.05 * qc["total_counts"].median()).all()


def test_planted_problems_are_flagged_with_their_reason():
    counts, plate_map, symbols = synthetic_plate(seed=2)
    qc = well_qc(plant_problems(counts), plate_map, symbols)
    failed = qc.index[~qc["passed"] & (qc["well_type"] != "empty")].tolist()
    assert sorted(failed) == ["P1_C05", "P1_D08", "P1_E01"]
    assert qc.loc["P1_C05", "reason"].startswith("low depth: ")
    assert "% of the plate median" in qc.loc["P1_C05", "reason"]
    assert qc.loc["P1_D08", "reason"].startswith("high mitochondrial fraction: ")
    assert qc.loc["P1_D08", "pct_mito"] > 30
    assert qc.loc["P1_E01", "reason"].startswith("control unlike the other controls: ")
    assert abs(qc.loc["P1_E01", "control_correlation"]) < 0.2


def test_strongly_treated_wells_are_not_flagged_for_low_correlation():
    counts, plate_map, symbols = synthetic_plate(seed=3)
    qc = well_qc(counts, plate_map, symbols)
    strong = qc.index[qc["compound"] == "CMP1"]
    controls = qc.index[qc["well_type"] == "control"]
    # The effect is real and large: every CMP1 well correlates far worse than any control
    # (a control with that correlation would be flagged) ...
    assert qc.loc[strong, "control_correlation"].max() < \
        qc.loc[controls, "control_correlation"].min() - 0.1
    # ... yet none fails.
    assert qc.loc[strong, "passed"].all()
    # The same profile in a control well fails.
    counts["P1_A01"] = counts[strong[0]]
    qc = well_qc(counts, plate_map, symbols)
    assert not qc.loc["P1_A01", "passed"]
    assert "control unlike the other controls" in qc.loc["P1_A01", "reason"]


def test_low_depth_plate_does_not_flag_clean_wells():
    # The bundled plate: ~900 UMIs over 1,000 genes per well.
    counts, plate_map, symbols = synthetic_plate(seed=4, depth=900, n_genes=1000)
    qc = well_qc(counts, plate_map, symbols)
    analysed = qc[qc["well_type"] != "empty"]
    assert analysed["passed"].all(), analysed.loc[~analysed["passed"], "reason"].tolist()
    controls = analysed[analysed["well_type"] == "control"]
    assert controls["control_correlation"].min() > 0.3
    # A shuffled control is still caught at this depth.
    counts["P1_F12"] = np.random.default_rng(0).permutation(counts["P1_F12"].to_numpy())
    qc = well_qc(counts, plate_map, symbols)
    assert qc.index[~qc["passed"] & (qc["well_type"] != "empty")].tolist() == ["P1_F12"]


def test_mito_is_nan_without_symbols_or_mt_genes():
    counts, plate_map, symbols = synthetic_plate(seed=5)
    assert well_qc(counts, plate_map)["pct_mito"].isna().all()
    no_mt = symbols.str.replace("MT-", "XX-")
    assert well_qc(counts, plate_map, no_mt)["pct_mito"].isna().all()
    lower = symbols.str.replace("MT-", "mt-")
    np.testing.assert_allclose(well_qc(counts, plate_map, lower)["pct_mito"],
                               well_qc(counts, plate_map, symbols)["pct_mito"])


def test_empty_well_with_full_depth_is_reported():
    counts, plate_map, symbols = synthetic_plate(seed=6)
    counts["P1_H06"] = counts["P1_H05"]
    qc = well_qc(counts, plate_map, symbols)
    assert qc.loc["P1_H06", "reason"].startswith("empty well; empty well has ")
    assert qc.loc["P1_H06", "reason"].endswith("check the plate map")


def test_wells_missing_from_plate_map_are_an_error():
    counts, plate_map, symbols = synthetic_plate(seed=7)
    with pytest.raises(ValueError, match="not in the plate map, e.g. P1_A01"):
        well_qc(counts, plate_map.drop("P1_A01"), symbols)


def test_plate_layout_parses_names_and_infers_format():
    rows, cols, fmt = plate_layout(pd.Series(["A1", "A01", "a1", "h12", "B07"]))
    assert rows.tolist() == [0, 0, 0, 7, 1]
    assert cols.tolist() == [0, 0, 0, 11, 6]
    assert fmt == 96
    assert plate_layout(pd.Series(["A01", "I01"]))[2] == 384
    assert plate_layout(pd.Series(["A13"]))[2] == 384
    assert plate_layout(pd.Series(["P24"]))[:2][0].tolist() == [15]
    with pytest.raises(ValueError, match=r"well 'Q01' is outside a 384-well plate"):
        plate_layout(pd.Series(["A01", "Q01"]))
    with pytest.raises(ValueError, match=r"well 'A25' is outside"):
        plate_layout(pd.Series(["A25"]))
    with pytest.raises(ValueError, match=r"well 'AA1' is not a well name"):
        plate_layout(pd.Series(["AA1"]))


def test_plate_heatmap_is_png_with_flags_and_missing_wells():
    counts, plate_map, symbols = synthetic_plate(seed=8)
    qc = well_qc(plant_problems(counts), plate_map, symbols)
    values = qc.set_index("well")["total_counts"].drop(["A05", "B06"])  # missing -> grey
    flagged = ~qc.set_index("well")["passed"]
    png = plate_heatmap(values, "P1 total counts", label="UMIs", flagged=flagged)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 5000
    png384 = plate_heatmap(pd.Series([1.0, np.nan, 3.0], index=["A01", "P24", "K13"]), "384")
    assert png384[:8] == b"\x89PNG\r\n\x1a\n"


def test_rules_are_per_plate():
    # Plate P2 sequenced 10x shallower than P1: judged against its own median, no well fails;
    # a well of P2 pooled with P1 would be far below 10 % of the overall median.
    deep, plate_map, symbols = synthetic_plate(seed=9)
    shallow, map2, _ = synthetic_plate(seed=10, depth=2_000)
    shallow.columns = [c.replace("P1_", "P2_") for c in shallow.columns]
    map2 = map2.rename(index=lambda s: s.replace("P1_", "P2_")).assign(plate="P2")
    map2["sample"] = map2.index
    counts = pd.concat([deep, shallow], axis=1)
    qc = well_qc(counts, pd.concat([plate_map, map2]), symbols)
    analysed = qc[qc["well_type"] != "empty"]
    assert analysed["passed"].all(), analysed.loc[~analysed["passed"], "reason"].tolist()
    assert qc.loc[qc["plate"] == "P2", "total_counts"].median() < \
        0.15 * qc.loc[qc["plate"] == "P1", "total_counts"].median()
    # The same shallow well fails when planted on the deep plate's own scale.
    counts["P1_B05"] = counts["P2_B05"] // 2
    qc = well_qc(counts, pd.concat([plate_map, map2]), symbols)
    assert qc.loc["P1_B05", "reason"].startswith("low depth: ")
    assert qc.loc["P2_B05", "passed"]
