"""MoA measures at 384-well plate scale: speed against straightforward per-condition loops,
agreement with them, and the calibration of the activity and consistency p-values.

Target (MoA issue): robust_z + consensus_signatures + activity_map + consistency_map of a
384-well plate (24 DMSO + 180 conditions x 2 wells, 20,000 genes, 1,000 feature genes) <= 15 s
on 2 cores. Baseline in the same run, what a notebook would write: robust z with pandas per
plate, MODZ with scipy ``spearmanr`` per condition, average precision with sklearn
``average_precision_score`` per query well, and the relabelling / class-shuffle tests as
plain loops over relabellings (on a sample of conditions / shuffles, extrapolated). The
platform's mAP is copairs'; the loops must give the same mAP and the same exact p-values.

Inputs (seeded, no network): VST-like expression (gene means U(2, 12), noise sd U(0.15, 0.4)
log2 units: VST makes the spread roughly even across genes); 45 compounds x 4 doses in
duplicate; 30 active compounds in 6 MoA classes of 5 (class signature on 300 genes, +-1
log2 at the top dose, plus a compound part on 100 genes, N(0, 0.7); nothing at the two low
doses, half at the third), 15 inactive compounds annotated to 3 more classes. The
120 inactive conditions give the false positive rates of ``pvalue`` (relabelling) and
``pvalue_copairs``.

Replicate plates: the same screen laid out as two plates, each with its 24 DMSO wells and
every condition once (2 x 204 wells of 384-well plates), a plate offset per gene (sd 0.3
log2); robust_z per plate, then activity_map with replicates across plates (stratified
relabelling p, 25 x 25 joint relabellings per condition), its timing, its agreement with a
plain loop over the joint relabellings and its false positive rates; again with the
feature genes chosen on each plate's median-centred expression, since over the raw
expression of several plates the plate offsets choose them; the timing on 3 plates.

    .venv/bin/python bench/moa.py [--genes 20000] [--loop-conditions 6] [--null-size 10000]
"""

from __future__ import annotations

import argparse
import time
from itertools import combinations, product

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, spearmanr
from sklearn.metrics import average_precision_score

from dge_platform.screen.moa import (
    activity_map,
    consensus_signatures,
    consistency_map,
    feature_genes,
    moa_enrichment,
    robust_z,
)
from dge_platform.screen.similarity import nearest_neighbors

TARGET = 15.0
DOSES = (0.1, 1.0, 10.0, 100.0)
DOSE_EFFECT = (0.0, 0.0, 0.5, 1.0)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def simulate(n_genes: int, seed: int = 0, plates: int = 1
             ) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Expression (genes x wells), plate map and each condition's MoA class. One plate: 24
    DMSO + 180 conditions x 2 wells (384 wells); more: per plate 24 DMSO + every condition
    once, a plate offset per gene."""
    rng = np.random.default_rng(seed)
    compounds = [f"CMP{i:02d}" for i in range(45)]
    moa = {c: f"MOA{i // 5}" for i, c in enumerate(compounds)}
    replicates = (0, 1) if plates == 1 else (0,)
    rows = [("DMSO", "DMSO", 0.0, "control")] * 24
    rows += [(f"{c}_{d:g}uM", c, d, "sample") for c in compounds for d in DOSES
             for _ in replicates]
    sheet = pd.concat([pd.DataFrame(rows, columns=["condition", "compound", "dose", "role"])
                       .assign(plate=f"P{p + 1}") for p in range(plates)], ignore_index=True)
    sheet.index = [f"w{i:03d}" if plates == 1 else f"{plate}_w{i:03d}"
                   for i, plate in enumerate(sheet["plate"])]
    sd = rng.uniform(0.15, 0.4, n_genes)
    values = rng.normal(size=(n_genes, len(sheet))) * sd[:, None] + rng.uniform(2, 12, n_genes)[
        :, None]
    classes = {}
    for compound in compounds[:30]:
        if moa[compound] not in classes:
            classes[moa[compound]] = np.zeros(n_genes)
            hit = rng.choice(n_genes, 300, replace=False)
            classes[moa[compound]][hit] = rng.choice([-1.0, 1.0], 300)
        own = np.zeros(n_genes)
        own[rng.choice(n_genes, 100, replace=False)] = rng.normal(0, 0.7, size=100)
        for dose, effect in zip(DOSES, DOSE_EFFECT):
            wells = (sheet["compound"] == compound) & (sheet["dose"] == dose)
            values[:, wells.to_numpy()] += (effect * (classes[moa[compound]] + own))[:, None]
    if plates > 1:
        for plate in sheet["plate"].unique():
            on_plate = (sheet["plate"] == plate).to_numpy()
            values[:, on_plate] += rng.normal(0, 0.3, size=(n_genes, 1))
    expression = pd.DataFrame(values, index=[f"G{i:05d}" for i in range(n_genes)],
                              columns=sheet.index)
    moa_of = sheet[sheet["role"] == "sample"].drop_duplicates("condition").set_index(
        "condition")["compound"].map(moa)
    return expression, sheet, moa_of


def loop_robust_z(expression: pd.DataFrame, sheet: pd.DataFrame) -> pd.DataFrame:
    out = []
    for _, wells in sheet.groupby("plate"):
        controls = expression[wells.index[wells["role"] == "control"]]
        median = controls.median(axis=1)
        mad = controls.sub(median, axis=0).abs().median(axis=1).clip(lower=0.1)
        out.append(expression[wells.index].sub(median, axis=0).div(1.4826 * mad, axis=0))
    return pd.concat(out, axis=1)


def loop_modz(z: pd.DataFrame, labels: pd.Series, features: list[str]) -> pd.DataFrame:
    signatures = {}
    for condition, wells in labels.groupby(labels, sort=False):
        block = z[wells.index]
        if len(wells) == 1:
            signatures[condition] = block.iloc[:, 0]
            continue
        r = np.array([[spearmanr(block.loc[features, a], block.loc[features, b])[0]
                       for b in block] for a in block])
        raw = np.array([np.mean([max(r[i, j], 0) for j in range(len(r)) if j != i])
                        for i in range(len(r))])
        weights = np.maximum(raw, 0.01) / np.maximum(raw, 0.01).sum()
        signatures[condition] = block @ weights
    return pd.DataFrame(signatures)


def loop_profiles(z: pd.DataFrame, sheet: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """activity_map's profiles: centred on the control median, scaled by all wells' MAD."""
    block = z.loc[features, sheet.index].T
    controls = block[sheet["role"] == "control"]
    return (block - controls.median()) / (1.4826 * (block - block.median()).abs().median())


def loop_map(pool: np.ndarray, chosen: tuple[int, ...]) -> tuple[float, float]:
    """mAP of the chosen wells of a pool re-centred on the others (sklearn AP per query) and
    the mean cosine among them."""
    rest = [i for i in range(len(pool)) if i not in chosen]
    centred = pool - np.median(pool[rest], axis=0)
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    cosine = unit @ unit.T
    aps = [average_precision_score([j in chosen for j in range(len(pool)) if j != q],
                                   [cosine[q, j] for j in range(len(pool)) if j != q])
           for q in chosen]
    return float(np.mean(aps)), float(np.mean([cosine[a, b] for a, b in combinations(chosen, 2)]))


def loop_stratified_p(pools: list[tuple[np.ndarray, int]]) -> float:
    """The relabelling p across plates: every joint choice of the condition's wells within
    each plate's pool, each plate re-centred on its other wells; a chosen well's positives
    are the chosen wells of all plates, its negatives its own plate's other wells."""
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
            aps.append(average_precision_score([chosen[j] for j in ranked], cosine[q, ranked]))
        scores.append((float(np.mean(aps)),
                       float(np.mean([cosine[a, b] for a, b in combinations(queries, 2)]))))
    first = scores[0]
    return sum(s[0] > first[0] + 1e-9 or (abs(s[0] - first[0]) <= 1e-9 and s[1] >= first[1]
                                          - 1e-9) for s in scores) / len(scores)


def loop_relabelling_p(pool: np.ndarray, k: int) -> float:
    scores = [loop_map(pool, c) for c in combinations(range(len(pool)), k)]
    first = scores[0]
    return sum(s[0] > first[0] + 1e-9 or (abs(s[0] - first[0]) <= 1e-9 and s[1] >= first[1]
                                          - 1e-9) for s in scores) / len(scores)


def loop_class_maps(signatures: pd.DataFrame, meta: pd.DataFrame) -> pd.Series:
    unit = signatures / np.linalg.norm(signatures, axis=0)
    cosine = (unit.T @ unit).to_numpy()
    aps = {}
    for i, query in enumerate(meta.index):
        others = [j for j in range(len(meta)) if meta["compound"].iloc[j]
                  != meta["compound"].iloc[i]]
        relevant = [meta["moa"].iloc[j] == meta["moa"].iloc[i] for j in others]
        if any(relevant):
            aps[query] = average_precision_score(relevant, cosine[i, others])
    return pd.Series(aps).groupby(meta["moa"]).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--features", type=int, default=1_000)
    parser.add_argument("--null-size", type=int, default=10_000)
    parser.add_argument("--loop-conditions", type=int, default=6,
                        help="conditions whose relabelling test the plain loop repeats")
    parser.add_argument("--loop-shuffles", type=int, default=50,
                        help="class shuffles the plain loop repeats (extrapolated)")
    parser.add_argument("--calibration-seeds", type=int, default=5,
                        help="further simulated plates for the activity false positive rates")
    args = parser.parse_args()

    expression, sheet, moa_of = simulate(args.genes)
    treated = sheet[sheet["role"] == "sample"]
    robust_z(expression, sheet)  # warm-up: imports, first touch of the output's memory
    t_z, z = _timed(lambda: robust_z(expression, sheet))
    t_features, features = _timed(lambda: feature_genes(expression, args.features))
    t_modz, consensus = _timed(lambda: consensus_signatures(z, treated["condition"], features))
    t_activity, activity = _timed(lambda: activity_map(z, sheet, features,
                                                       null_size=args.null_size))
    active = activity.set_index("condition")["retrieved"]
    meta = treated.drop_duplicates("condition").set_index("condition")[["compound", "dose"]]
    meta["moa"] = moa_of
    chosen = active.index[active]
    t_consistency, consistency = _timed(lambda: consistency_map(
        consensus.signatures[chosen], meta.loc[chosen], features, null_size=args.null_size))
    unit = consensus.signatures.loc[features]
    unit = (unit - unit.mean()) / np.linalg.norm(unit - unit.mean(), axis=0)
    similarity = unit.T @ unit
    t_enrichment, _ = _timed(lambda: moa_enrichment(
        nearest_neighbors(similarity, meta, 5), moa_of))
    total = t_z + t_features + t_modz + t_activity + t_consistency

    l_z, z_loop = _timed(lambda: loop_robust_z(expression, sheet))
    l_modz, modz_loop = _timed(lambda: loop_modz(z_loop, treated["condition"], features))
    profiles = loop_profiles(z, sheet, features).to_numpy()
    position = {w: i for i, w in enumerate(sheet.index)}
    controls = [position[w] for w in sheet.index[sheet["role"] == "control"]]
    pools = {c: profiles[[position[w] for w in wells.index] + controls]
             for c, wells in treated.groupby("condition", sort=False)}
    l_map, map_loop = _timed(lambda: {c: loop_map(pool, (0, 1))[0] for c, pool in pools.items()})
    sample = list(pools)[::len(pools) // args.loop_conditions][:args.loop_conditions]
    l_p, p_loop = _timed(lambda: {c: loop_relabelling_p(pools[c], 2) for c in sample})
    l_p *= len(pools) / len(sample)
    cmeta = meta.loc[chosen]
    l_class, class_loop = _timed(lambda: loop_class_maps(consensus.signatures.loc[features, chosen],
                                                         cmeta))
    rng = np.random.default_rng(0)
    compounds = cmeta["compound"].unique()
    classes = cmeta.drop_duplicates("compound").set_index("compound")["moa"]

    def shuffled_maps():
        relabel = pd.Series(rng.permutation(classes.to_numpy()), index=compounds)
        return loop_class_maps(consensus.signatures.loc[features, chosen],
                               cmeta.assign(moa=cmeta["compound"].map(relabel).to_numpy()))
    l_shuffles, _ = _timed(lambda: [shuffled_maps() for _ in range(args.loop_shuffles)])
    l_class += l_shuffles * args.null_size / args.loop_shuffles
    loop_total = l_z + l_modz + l_map + l_p + l_class

    platform_map = activity.set_index("condition")["map"]
    map_diff = max(abs(platform_map[c] - v) for c, v in map_loop.items())
    p_equal = all(np.isclose(activity.set_index("condition").loc[c, "pvalue"], p)
                  for c, p in p_loop.items())
    z_diff = float(np.abs(z_loop[z.columns].to_numpy() - z.to_numpy()).max())
    modz_diff = float(np.abs(modz_loop[consensus.signatures.columns].to_numpy()
                             - consensus.signatures.to_numpy()).max())
    class_diff = float((consistency.set_index("moa")["map"] - class_loop).abs().max())

    print(f"384-well plate: {args.genes:,} genes, {len(features):,} features, 24 DMSO + "
          f"{treated['condition'].nunique()} conditions x 2 wells; null size {args.null_size:,}")
    print(f"{'step':<44}{'platform':>10}{'loops':>11}{'ratio':>8}")
    rows = [("robust_z", t_z, l_z), ("feature_genes", t_features, None),
            ("consensus_signatures (MODZ)", t_modz, l_modz),
            ("activity_map: copairs mAP + exact relabelling p", t_activity, l_map + l_p),
            (f"consistency_map ({len(chosen)} retrieved conditions)", t_consistency, l_class)]
    for name, ours, loop in rows:
        print(f"{name:<44}{ours:>9.2f}s" + (f"{loop:>10.1f}s{loop / ours:>7.0f}x" if loop else ""))
    print(f"{'total':<44}{total:>9.2f}s{loop_total:>10.1f}s{loop_total / total:>7.0f}x   "
          f"(target <= {TARGET:.0f} s: {'met' if total <= TARGET else 'NOT met'})")
    print(f"moa_enrichment (5 neighbours, similarity outside): {t_enrichment:.2f} s; loops' "
          f"relabelling p extrapolated from {len(sample)} conditions, class shuffles from "
          f"{args.loop_shuffles}")
    print(f"agreement with the loops: robust z max |diff| {z_diff:.1e}, MODZ {modz_diff:.1e}, "
          f"activity mAP (copairs vs sklearn) {map_diff:.1e}, relabelling p "
          f"{'identical' if p_equal else 'DIFFERENT'} on {len(sample)} conditions, "
          f"consistency mAP {class_diff:.1e}")

    tables = [activity] + [activity_map(robust_z(e, s), s, feature_genes(e, args.features),
                                        null_size=args.null_size, seed=seed)
                           for seed in range(1, args.calibration_seeds + 1)
                           for e, s, _ in [simulate(args.genes, seed)]]
    _print_calibration(tables)
    print("consistency per class (retrieved conditions):")
    print(consistency.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    replicate_plates(args)


def replicate_plates(args: argparse.Namespace) -> None:
    """The same screen on two replicate plates: timing, agreement with the loop,
    calibration."""
    expression, sheet, _ = simulate(args.genes, plates=2)
    t_z, z = _timed(lambda: robust_z(expression, sheet))
    t_features, features = _timed(lambda: feature_genes(expression, args.features))
    t_activity, activity = _timed(lambda: activity_map(z, sheet, features,
                                                       null_size=args.null_size))
    treated = sheet[sheet["role"] == "sample"]
    profiles = pd.concat([loop_profiles(z, wells, features)
                          for _, wells in sheet.groupby("plate", sort=False)])
    pools = {}
    for condition, wells in treated.groupby("condition", sort=False):
        pools[condition] = [(profiles.loc[list(mine.index) + list(
            sheet.index[(sheet["plate"] == plate) & (sheet["role"] == "control")])].to_numpy(),
            len(mine)) for plate, mine in wells.groupby("plate", sort=False)]
    sample = list(pools)[::len(pools) // args.loop_conditions][:args.loop_conditions]
    l_p, p_loop = _timed(lambda: {c: loop_stratified_p(pools[c]) for c in sample})
    l_p *= len(pools) / len(sample)
    table = activity.set_index("condition")
    p_equal = all(np.isclose(table.loc[c, "pvalue"], p) for c, p in p_loop.items())
    print(f"\nreplicate plates: 2 plates x (24 DMSO + {len(pools)} conditions x 1 well), "
          f"{len(features):,} features; null size {args.null_size:,} (joint relabellings "
          f"per condition: {int(table['n_null'].max())}, enumerated)")
    print(f"robust_z {t_z:.2f} s, feature_genes {t_features:.2f} s, activity_map (copairs mAP "
          f"+ stratified relabelling p) {t_activity:.2f} s; loop relabelling p {l_p:.0f} s "
          f"(extrapolated from {len(sample)} conditions, "
          f"{'identical' if p_equal else 'DIFFERENT'} p)")
    tables, centred_tables = [activity], []
    for seed in range(args.calibration_seeds + 1):
        if seed:
            expression, sheet, _ = simulate(args.genes, seed, plates=2)
            z = robust_z(expression, sheet)
            tables.append(activity_map(z, sheet, feature_genes(expression, args.features),
                                       null_size=args.null_size, seed=seed))
        centred_tables.append(activity_map(
            z, sheet, feature_genes(expression, args.features, plates=sheet["plate"]),
            null_size=args.null_size, seed=seed))
    print("features chosen on the pooled expression (plate offsets pick them):")
    _print_calibration(tables)
    print("features chosen on each plate's centred expression (feature_genes(plates=), what "
          "the screen step does):")
    _print_calibration(centred_tables)
    expression, sheet, _ = simulate(args.genes, plates=3)
    z = robust_z(expression, sheet)
    features = feature_genes(expression, args.features, plates=sheet["plate"])
    t_three, three = _timed(lambda: activity_map(z, sheet, features, null_size=args.null_size))
    print(f"3 replicate plates (25^3 joint relabellings > null size: sampled, early stop): "
          f"activity_map {t_three:.2f} s, median {int(three['n_null'].median())} draws")


def _print_calibration(tables: list[pd.DataFrame]) -> None:
    """Retrieved active conditions and the false positive rates of the inactive ones."""
    table = pd.concat(tables, ignore_index=True)
    truly = _active(table)
    inactive = table[~truly]
    rate = {"active retrieved": table.loc[truly, "retrieved"].mean(),
            "half dose retrieved": table.loc[truly & (table["dose"] == 10.0), "retrieved"].mean(),
            "p05": np.mean(inactive["pvalue"] < 0.05), "p01": np.mean(inactive["pvalue"] < 0.01),
            "copairs p05": np.mean(inactive["pvalue_copairs"] < 0.05),
            "copairs p01": np.mean(inactive["pvalue_copairs"] < 0.01),
            "padj": np.mean(inactive["padj"] < 0.05),
            "copairs padj": np.mean(np.concatenate([_copairs_bh(t)[~_active(t)]
                                                    for t in tables]) < 0.05)}
    print(f"activity over {len(tables)} screens, {int(truly.sum())} active / {len(inactive)} "
          f"inactive conditions: retrieved (padj < 0.05) {rate['active retrieved']:.2f} of "
          f"active (half dose {rate['half dose retrieved']:.2f})")
    print(f"  inactive called at p < 0.05: relabelling {rate['p05']:.3f}, copairs "
          f"{rate['copairs p05']:.3f}; at p < 0.01: {rate['p01']:.3f}, copairs "
          f"{rate['copairs p01']:.3f}; at padj < 0.05: {rate['padj']:.3f}, copairs p + BH "
          f"{rate['copairs padj']:.3f}")


def _active(table: pd.DataFrame) -> np.ndarray:
    effect = dict(zip(DOSES, DOSE_EFFECT))
    return np.array([c < "CMP30" and effect[d] > 0
                     for c, d in zip(table["compound"], table["dose"])])


def _copairs_bh(table: pd.DataFrame) -> np.ndarray:
    return false_discovery_control(table["pvalue_copairs"].to_numpy())


if __name__ == "__main__":
    main()
