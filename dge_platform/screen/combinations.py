"""Combination treatments: is a pair's transcriptional response the sum of its parts?

On the log scale of the screen's one DESeq2 fit (monotherapies, combinations and controls
share size factors, dispersions and the control wells), a combination of A at dose a and B
at dose b is additive for a gene when its effect is the sum of the agents' effects. The
**interaction** ``AB - A - B + control`` (the ``A:B`` term of ``~ A + B + A:B`` on those four
groups) is tested by Wald with the engine's DESeq2 semantics (Cook's filtering, independent
filtering, BH per combination); combination responses are often not the sum of the
monotherapies (Diaz et al., eLife 2020).

Each gene of each combination gets a class (``alpha`` is the study's):

* ``emergent``: the interaction and the combination's own effect (vs control) have
  padj < alpha, while neither agent alone changes the gene (both padj >= alpha);
* ``synergistic``: the interaction has padj < alpha and the same sign as the expected
  additive effect A + B, and an agent changes the gene (the combination goes further than
  the sum);
* ``antagonistic``: the interaction has padj < alpha against the expected effect, and an
  agent changes the gene (the combination falls short of the sum, or reverses it);
* ``additive``: no significant interaction, while the combination or an agent changes the
  gene (padj < alpha);
* ``unchanged``: none of them changes the gene, including the rare gene whose interaction
  alone reaches padj < alpha (a sum of four noisy means, with no effect to be non-additive
  to); null when the interaction was not tested (all-zero gene, Cook's outlier).

A combination's **non-additivity** is its count of genes with interaction padj < alpha, and
the fraction of its DEGs (vs control) that are non-additive. Its null is empirical, as for
activity calls: random relabellings of the plate's wells in which nothing interacts, tested
like a real interaction with the fit's dispersions. Half of the splits draw the four pseudo
groups from the control wells; the other half draw pseudo-AB and pseudo-A from one
monotherapy's wells and pseudo-B and pseudo-control from the controls (AB - A - B + C =
M - M - D + D), so treated wells' extra variability enters the null. A combination is
non-additive when its count exceeds the null's 95th percentile.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import t as t_dist

from dge_platform._core.stats import bh_adjust
from dge_platform.de.contrast import LinearContrast
from dge_platform.de.engine import group_contrast_test
from dge_platform.screen.activity import NULL_QUANTILE
from dge_platform.screen.plate_map import (
    COMPOUND_1,
    COMPOUND_2,
    CONDITION,
    DOSE_2,
    ROLE,
    has_second_agent,
)

N_NULL_SPLITS = 100
CLASSES = ("synergistic", "antagonistic", "emergent", "additive", "unchanged")
MIN_PSEUDO_CONTROLS = 1
INTERACTION_WEIGHTS = np.array([1.0, -1.0, -1.0, 1.0])
"""Group weights of the interaction, groups in the order AB, A, B, control."""

EFFECT_COLUMNS = ["combination", "gene_id", "base_mean", "log2_fold_change", "lfc_se", "stat",
                  "pvalue", "padj", "observed_log2fc", "observed_padj", "expected_log2fc",
                  "agent_1_log2fc", "agent_1_padj", "agent_2_log2fc", "agent_2_padj",
                  "interaction_class"]


def combination_table(sheet: pd.DataFrame) -> pd.DataFrame:
    """One row per combination condition of an annotated plate map (wells of any QC):
    combination, compound_1, dose_1, compound_2, dose_2, dose_unit, mono_1 and mono_2 (the
    monotherapy conditions at the combination's doses), plate (comma-joined) and n_wells."""
    columns = ["combination", "compound_1", "dose_1", "compound_2", "dose_2", "dose_unit",
               "mono_1", "mono_2", "plate", "n_wells"]
    treated = sheet[sheet[ROLE] == "sample"]
    combined = treated[has_second_agent(treated)]
    if combined.empty:
        return pd.DataFrame(columns=columns)
    single = treated[~has_second_agent(treated)]
    mono = {(c, float(d)): label for c, d, label in
            zip(single["compound"], pd.to_numeric(single["dose"]), single[CONDITION])}
    rows = []
    for label, wells in combined.groupby(CONDITION, sort=False):
        first = wells.iloc[0]
        dose_1, dose_2 = float(first["dose"]), float(first[DOSE_2])
        rows.append({
            "combination": label, "compound_1": first[COMPOUND_1], "dose_1": dose_1,
            "compound_2": first[COMPOUND_2], "dose_2": dose_2,
            "dose_unit": first.get("dose_unit"),
            "mono_1": mono.get((first[COMPOUND_1], dose_1)),
            "mono_2": mono.get((first[COMPOUND_2], dose_2)),
            "plate": ",".join(sorted(set(wells["plate"]))), "n_wells": len(wells)})
    return pd.DataFrame(rows, columns=columns)


def interaction_contrasts(combinations: pd.DataFrame, control: str,
                          factor: str = CONDITION) -> list[LinearContrast]:
    """The interaction ``AB - A - B + control`` of each combination, named as it."""
    return [LinearContrast(row.combination, factor, ((row.combination, 1.0), (row.mono_1, -1.0),
                                                     (row.mono_2, -1.0), (control, 1.0)))
            for row in combinations.itertuples()]


def interaction_classes(interaction: np.ndarray, interaction_padj: np.ndarray,
                        interaction_pvalue: np.ndarray, expected: np.ndarray,
                        observed_padj: np.ndarray, agent_1_padj: np.ndarray,
                        agent_2_padj: np.ndarray, alpha: float) -> np.ndarray:
    """The class of each gene (see the module docstring); NaN p-values or padj count as not
    significant, a NaN interaction p-value gives a null class."""
    with np.errstate(invalid="ignore"):
        interacts = np.asarray(interaction_padj) < alpha
        observed = np.asarray(observed_padj) < alpha
        agents = (np.asarray(agent_1_padj) < alpha) | (np.asarray(agent_2_padj) < alpha)
    along = np.sign(interaction) == np.sign(expected)
    classes = np.select(
        [interacts & observed & ~agents, interacts & agents & along & (expected != 0),
         interacts & agents, observed | agents],
        ["emergent", "synergistic", "antagonistic", "additive"], "unchanged").astype(object)
    classes[np.isnan(np.asarray(interaction_pvalue, float))] = None
    return classes


def combination_effects(interactions: pd.DataFrame, results: pd.DataFrame,
                        combinations: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Per combination and gene: the interaction test, the observed, expected and agents'
    log2 fold changes and the class (``EFFECT_COLUMNS``).

    Parameters
    ----------
    interactions
        The interaction contrasts' results (contrast = combination; gene_id, base_mean,
        log2_fold_change, lfc_se, stat, pvalue, padj), from the screen's fit.
    results
        The same fit's condition contrasts (contrast, gene_id, log2_fold_change, padj),
        with every combination and monotherapy.
    combinations
        :func:`combination_table` rows of the tested combinations.
    """
    if interactions.empty:
        return pd.DataFrame(columns=EFFECT_COLUMNS)
    needed = set(combinations["combination"]) | set(combinations["mono_1"]) \
        | set(combinations["mono_2"])
    results = results[results["contrast"].isin(needed)]
    lfc = results.pivot(index="gene_id", columns="contrast", values="log2_fold_change")
    padj = results.pivot(index="gene_id", columns="contrast", values="padj")
    tables = []
    for row in combinations.itertuples():
        table = interactions[interactions["contrast"] == row.combination]
        genes = table["gene_id"]

        def get(frame: pd.DataFrame, name: str, genes: pd.Series = genes) -> np.ndarray:
            return frame[name].reindex(genes).to_numpy()

        expected = get(lfc, row.mono_1) + get(lfc, row.mono_2)
        table = table.rename(columns={"contrast": "combination"}).assign(
            observed_log2fc=get(lfc, row.combination), observed_padj=get(padj, row.combination),
            expected_log2fc=expected, agent_1_log2fc=get(lfc, row.mono_1),
            agent_1_padj=get(padj, row.mono_1), agent_2_log2fc=get(lfc, row.mono_2),
            agent_2_padj=get(padj, row.mono_2))
        table["interaction_class"] = interaction_classes(
            table["log2_fold_change"].to_numpy(), table["padj"].to_numpy(),
            table["pvalue"].to_numpy(), expected, table["observed_padj"].to_numpy(),
            table["agent_1_padj"].to_numpy(), table["agent_2_padj"].to_numpy(), alpha)
        tables.append(table[EFFECT_COLUMNS])
    return pd.concat(tables, ignore_index=True)


def pseudo_group_sizes(combinations: pd.DataFrame, n_wells: pd.Series,
                       n_controls: int) -> tuple[int, int, int]:
    """Wells of pseudo-AB, pseudo-A and pseudo-B in the control-only null splits: the
    median replicate counts of the combinations and of their monotherapies, shrunk so that
    at least ``MIN_PSEUDO_CONTROLS`` controls stay the pseudo-control."""
    sizes = [int(np.median(combinations["n_wells"])),
             int(np.median(n_wells.reindex(combinations["mono_1"]).dropna())),
             int(np.median(n_wells.reindex(combinations["mono_2"]).dropna()))]
    sizes = [max(1, s) for s in sizes]
    while sum(sizes) > n_controls - MIN_PSEUDO_CONTROLS and max(sizes) > 1:
        sizes[int(np.argmax(sizes))] -= 1
    if sum(sizes) > n_controls - MIN_PSEUDO_CONTROLS:
        raise ValueError(f"{n_controls} control wells cannot hold a null split (three pseudo "
                         f"groups and {MIN_PSEUDO_CONTROLS} pseudo-controls)")
    return sizes[0], sizes[1], sizes[2]


def null_interaction_counts(counts: pd.DataFrame, size_factors: pd.Series,
                            dispersions: pd.Series, base_mean: pd.Series,
                            controls: list[str], monotherapies: list[list[str]],
                            sizes: tuple[int, int, int], *, alpha: float,
                            lfc_threshold: float = 0.0, n_splits: int = N_NULL_SPLITS,
                            seed: int = 0, n_jobs: int = 1) -> np.ndarray:
    """Counts of genes with interaction padj < ``alpha`` in ``n_splits`` null relabellings.

    Parameters
    ----------
    counts
        Raw counts, genes x wells (the analysed wells).
    size_factors, dispersions, base_mean
        From the screen's fit, per well and per gene.
    controls
        The plate's usable control wells.
    monotherapies
        Wells of each monotherapy condition on the plate; those with at least 4 wells serve
        the monotherapy splits (2 + 2 at least), otherwise every split uses controls only.
    sizes
        Wells of pseudo-AB, pseudo-A and pseudo-B (:func:`pseudo_group_sizes`).
    alpha, lfc_threshold
        The study's settings.
    n_splits, seed
        Splits and the generator seed (fixed: reruns give the same null, whatever
        ``n_jobs``).
    n_jobs
        Worker processes (joblib's loky) testing the splits.
    """
    from joblib import Parallel, delayed

    # every split draws from the controls and the monotherapies: test on those wells only
    pool = list(dict.fromkeys([*controls, *(w for m in monotherapies for w in m)]))
    splits = null_splits(pd.Index(pool), controls, monotherapies, sizes, n_splits, seed)
    values = counts[pool].to_numpy()
    factors = size_factors.reindex(pool).to_numpy(float)
    disp, means = dispersions.to_numpy(float), base_mean.to_numpy(float)
    if n_jobs > 1:
        found = Parallel(n_jobs=n_jobs)(
            delayed(_n_significant)(values, factors, disp, codes, means, alpha, lfc_threshold)
            for codes in splits)
    else:
        found = [_n_significant(values, factors, disp, codes, means, alpha, lfc_threshold)
                 for codes in splits]
    return np.asarray(found, dtype=np.int64)


def _n_significant(values: np.ndarray, factors: np.ndarray, dispersions: np.ndarray,
                   codes: np.ndarray, base_mean: np.ndarray, alpha: float,
                   lfc_threshold: float) -> int:
    """Genes whose interaction has padj < ``alpha`` for one split's group codes."""
    result = group_contrast_test(values, factors, dispersions, codes, INTERACTION_WEIGHTS,
                                 base_mean, alpha=alpha, lfc_threshold=lfc_threshold)
    return int((result["padj"] < alpha).sum())


def null_splits(wells: pd.Index, controls: list[str], monotherapies: list[list[str]],
                sizes: tuple[int, int, int], n_splits: int, seed: int) -> list[np.ndarray]:
    """The relabellings of :func:`null_interaction_counts`: per split, a group code per
    well (0 pseudo-AB, 1 pseudo-A, 2 pseudo-B, 3 pseudo-control, -1 unused). Even splits
    draw every group from the controls; odd ones (when a monotherapy has >= 4 wells) draw
    pseudo-AB and pseudo-A from one monotherapy's wells, pseudo-B and pseudo-control from
    the controls."""
    rng = np.random.default_rng(seed)
    usable = [m for m in monotherapies if len(m) >= 4]
    control_index = wells.get_indexer(controls)
    splits = []
    for i in range(n_splits):
        codes = np.full(len(wells), -1)
        picked = rng.permutation(control_index)
        if usable and i % 2:
            mono = rng.permutation(wells.get_indexer(usable[rng.integers(len(usable))]))
            half = min(sizes[0], len(mono) // 2)
            codes[mono[:half]] = 0
            codes[mono[half:2 * half]] = 1
            n_b = min(sizes[2], len(picked) - MIN_PSEUDO_CONTROLS)
            codes[picked[:n_b]] = 2
            codes[picked[n_b:]] = 3
        else:
            a, b, c = sizes
            codes[picked[:a]] = 0
            codes[picked[a:a + b]] = 1
            codes[picked[a + b:a + b + c]] = 2
            codes[picked[a + b + c:]] = 3
        splits.append(codes)
    return splits


def combination_summary(effects: pd.DataFrame, combinations: pd.DataFrame,
                        null_by_plate: dict[str, np.ndarray], *, alpha: float,
                        quantile: float = NULL_QUANTILE) -> pd.DataFrame:
    """One row per tested combination: its DEGs, non-additive genes and classes, its
    plate's null threshold, the empirical p-value and the call.

    The empirical p-value is ``(1 + #null counts >= observed) / (1 + #splits)``; a
    combination on several plates is held to the strictest plate.
    """
    table = combinations.copy()
    grouped = effects.groupby("combination")
    deg = grouped["observed_padj"].apply(lambda p: int((p < alpha).sum()))
    nonadditive = grouped["padj"].apply(lambda p: int((p < alpha).sum()))
    both = effects[(effects["observed_padj"] < alpha) & (effects["padj"] < alpha)]
    deg_nonadditive = both.groupby("combination").size()
    classes = effects.pivot_table(index="combination", columns="interaction_class",
                                  values="gene_id", aggfunc="size", fill_value=0)
    names = table["combination"]
    table["n_deg"] = deg.reindex(names).fillna(0).astype(int).to_numpy()
    table["n_nonadditive"] = nonadditive.reindex(names).fillna(0).astype(int).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        table["frac_nonadditive"] = (deg_nonadditive.reindex(names).fillna(0).to_numpy()
                                     / table["n_deg"].to_numpy())
    for name in CLASSES[:4]:
        column = classes[name] if name in classes.columns else pd.Series(dtype=float)
        table[f"n_{name}"] = column.reindex(names).fillna(0).astype(int).to_numpy()
    plates = table["plate"].str.split(",")
    table["null_threshold"] = [max(float(np.quantile(null_by_plate[p], quantile)) for p in ps)
                               for ps in plates]
    table["null_median"] = [max(float(np.median(null_by_plate[p])) for p in ps) for ps in plates]
    table["n_null_splits"] = [min(len(null_by_plate[p]) for p in ps) for ps in plates]
    table["pvalue"] = [max((1 + int((null_by_plate[p] >= n).sum())) / (1 + len(null_by_plate[p]))
                           for p in ps) for ps, n in zip(plates, table["n_nonadditive"])]
    table["nonadditive"] = table["n_nonadditive"] > table["null_threshold"]
    return table


def pathway_interactions(scores: pd.DataFrame, sheet: pd.DataFrame,
                         combinations: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Additivity of per-well scores (pathway activities, gene-set scores) per combination.

    For each combination and score: the group means of the combination, its monotherapies
    and its plates' controls, the interaction ``AB - A - B + control`` with a t-test on the
    pooled within-group variance (df = wells - 4), BH across the scores of the
    combination, and the class of :func:`interaction_classes` (the agents' and the
    combination's own effects tested the same way against the controls).

    Parameters
    ----------
    scores
        Scores x wells.
    sheet
        Annotated plate map of the wells (``role``, ``condition``, ``plate``).
    combinations
        :func:`combination_table` rows.

    Returns
    -------
    combination, feature, observed, expected, interaction, stat, pvalue, padj,
    interaction_class.
    """
    rows = []
    for row in combinations.itertuples():
        plates = row.plate.split(",")
        on_plates = sheet.index.intersection(scores.columns)
        on_plates = on_plates[sheet.loc[on_plates, "plate"].isin(plates).to_numpy()]
        labels = sheet.loc[on_plates, CONDITION]
        controls = on_plates[(sheet.loc[on_plates, ROLE] == "control").to_numpy()]
        groups = [on_plates[(labels == g).to_numpy()]
                  for g in (row.combination, row.mono_1, row.mono_2)] + [controls]
        if min(len(g) for g in groups) == 0:
            continue
        values = [scores[g].to_numpy(float) for g in groups]
        means = np.column_stack([v.mean(axis=1) for v in values])
        n = np.array([v.shape[1] for v in values])
        df = n.sum() - 4
        if df < 1:
            continue
        pooled = sum(((v - v.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
                     for v in values) / df
        interaction, stat, pvalue = _group_t_test(means, pooled, n, df, INTERACTION_WEIGHTS)
        observed, _, p_obs = _group_t_test(means, pooled, n, df, [1, 0, 0, -1])
        agent_1, _, p_1 = _group_t_test(means, pooled, n, df, [0, 1, 0, -1])
        agent_2, _, p_2 = _group_t_test(means, pooled, n, df, [0, 0, 1, -1])
        padj = bh_adjust(pvalue)
        table = pd.DataFrame({
            "combination": row.combination, "feature": scores.index, "observed": observed,
            "expected": agent_1 + agent_2, "interaction": interaction, "stat": stat,
            "pvalue": pvalue, "padj": padj})
        table["interaction_class"] = interaction_classes(
            interaction, padj, pvalue, agent_1 + agent_2, bh_adjust(p_obs), bh_adjust(p_1),
            bh_adjust(p_2), alpha)
        rows.append(table)
    columns = ["combination", "feature", "observed", "expected", "interaction", "stat",
               "pvalue", "padj", "interaction_class"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)



def _group_t_test(means: np.ndarray, pooled: np.ndarray, n: np.ndarray, df: int,
                  weights: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contrast of group means (features x groups) with the pooled variance: effect, t and
    the two-sided p-value."""
    w = np.asarray(weights, float)
    effect = means @ w
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = effect / np.sqrt(pooled * (w**2 / n).sum())
    return effect, stat, 2 * t_dist.sf(np.abs(stat), df)
