"""Simulated DRUG-seq dose-response screens with known truth.

Counts are negative binomial around ``base mean x size factor x plate effect x 2^lfc``:
log-normal base means at DRUG-seq depth (median ~20 UMIs per gene and well), a DESeq2-like
dispersion trend ``0.05 + 1/mu`` with log-normal scatter, log-normal size factors, and per
compound a set of responsive genes whose log2 fold change follows a Hill curve in dose.
Optionally, cytotoxic compounds (their top dose wells collapse to ~5 % of the depth), a
plate-edge effect (edge wells shallower, a set of genes shifted), mechanism-of-action
classes (compounds of a class share most of their responsive genes and directions) and
combination wells (pairs of compounds at their top doses, with planted additive,
synergistic, antagonistic and emergent genes), all recorded in the truth.

    from dge_platform.sim.screen import simulate_screen
    screen = simulate_screen(n_genes=20_000, plate_format=96)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from dge_platform.screen.plate_map import (
    annotate_plate_map,
    combination_label,
    condition_label,
)
from dge_platform.screen.well_qc import PLATE_SHAPES, ROW_LETTERS

CONTROL = "DMSO"
UNIT = "uM"
# Layouts per plate format when not given: 16 + 10 x 4 x 2 = 96 wells; 24 + 30 x 6 x 2 = 384
# wells (180 compound-dose conditions).
DEFAULT_LAYOUTS = {
    96: {"n_controls": 16, "n_compounds": 10, "doses": (0.01, 0.1, 1.0, 10.0)},
    384: {"n_controls": 24, "n_compounds": 30, "doses": (0.003, 0.01, 0.03, 0.1, 1.0, 10.0)},
}
CYTOTOXIC_DEPTH = 0.05
"""Depth (fraction of the well's own) left in the wells of a cytotoxic compound's top doses."""
EDGE_GENE_FRACTION = 0.05
"""Fraction of the genes an edge effect shifts."""
MOA_SHARED = 0.8
"""Fraction of a MoA class's gene program each member compound keeps (the rest of its
responsive genes are its own)."""
INTERACTION_MIN_MEAN = 50.0
"""Interaction genes are drawn among genes of at least this base mean (UMIs per well): the
genes a combination plate can resolve."""
INTERACTION_LFC = (1.5, 2.5)
"""Range of the planted |interaction| (log2), uniform."""


@dataclass
class SimulatedScreen:
    """A simulated screen and its ground truth.

    Attributes
    ----------
    counts
        UMI counts, genes (``G00001``...) x wells (``P1_A01``...), int64.
    plate_map
        One row per well: sample, plate, well, compound, dose, dose_unit, well_type
        (``control`` for DMSO wells, else ``sample``), replicate and condition
        (``{compound}_{dose:g}uM`` as :func:`dge_platform.screen.plate_map.condition_label`
        names it, or ``DMSO``).
    true_lfc
        True log2 fold change vs DMSO, genes x compound-dose condition.
    ec50
        EC50 per compound (uM); NaN for inactive compounds.
    responsive
        Whether each gene responds to each compound, genes x compound.
    size_factors
        True size factor per well.
    dispersions
        True NB dispersion per gene (at its base mean).
    cytotoxic
        Lowest cytotoxic dose per compound (uM); NaN for compounds that are not cytotoxic.
    edge_genes
        Genes shifted in edge wells (empty without an edge effect).
    moa
        MoA class per compound (empty without MoA classes).
    combinations
        One row per combination condition: condition, compound, dose, compound_2, dose_2
        and the monotherapy conditions mono_1, mono_2 (empty without combinations).
    interaction
        Planted interaction (log2: combination - A - B + control), genes x combination;
        ``true_lfc`` holds the combinations' total effect (A + B + interaction).
    interaction_class
        Per gene and combination: ``synergistic`` (interaction in the direction of A + B),
        ``antagonistic`` (against it), ``emergent`` (neither agent alone changes the gene),
        ``additive`` (an agent changes it, no interaction) or ``unchanged``.
    """

    counts: pd.DataFrame
    plate_map: pd.DataFrame
    true_lfc: pd.DataFrame
    ec50: pd.Series
    responsive: pd.DataFrame
    size_factors: pd.Series
    dispersions: pd.Series
    cytotoxic: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    edge_genes: list[str] = field(default_factory=list)
    moa: pd.Series = field(default_factory=lambda: pd.Series(dtype=object))
    combinations: pd.DataFrame = field(default_factory=pd.DataFrame)
    interaction: pd.DataFrame = field(default_factory=pd.DataFrame)
    interaction_class: pd.DataFrame = field(default_factory=pd.DataFrame)

    def annotated_sheet(self) -> pd.DataFrame:
        """The plate map as validation annotates it (text values, indexed by well, with
        ``role`` and ``condition``), as the steps of a screen read it back."""
        plate_map = self.plate_map.drop(columns="condition").set_index("sample").astype(object)
        return annotate_plate_map(plate_map.astype(str).where(plate_map.notna(), None),
                                  CONTROL)


def hill(dose: np.ndarray | float, ec50: np.ndarray | float,
         slope: np.ndarray | float) -> np.ndarray:
    """Fraction of the maximal effect reached at ``dose``: d^h / (ec50^h + d^h)."""
    d = np.asarray(dose, dtype=float) ** slope
    return d / (np.asarray(ec50, dtype=float) ** slope + d)


def plate_layout(plate: str, plate_format: int, n_controls: int, compounds: list[str],
                 doses: tuple[float, ...], n_replicates: int, plate_index: int,
                 rng: np.random.Generator,
                 combinations: list[tuple[str, float, str, float]] = (),
                 combination_replicates: int = 0) -> pd.DataFrame:
    """Assign controls and compound-dose replicates to the wells of one plate.

    Wells are filled in random order (so controls and each condition are spread over the
    grid); wells left over stay empty and are not returned. Replicate numbers continue
    across plates (plate 2 holds replicates n+1..2n of each condition). ``combinations``
    (compound, dose, compound_2, dose_2) get ``combination_replicates`` wells each and the
    columns compound_2 and dose_2 (empty for the other wells).
    """
    n_rows, n_cols = PLATE_SHAPES[plate_format]
    wells = [f"{ROW_LETTERS[r]}{c + 1:02d}" for r in range(n_rows)
             for c in range(n_cols)]
    content = [(CONTROL, 0.0, plate_index * n_controls + i + 1, None, np.nan)
               for i in range(n_controls)]
    content += [(cmp, dose, plate_index * n_replicates + r + 1, None, np.nan) for cmp in compounds
                for dose in doses for r in range(n_replicates)]
    content += [(a, dose_a, plate_index * combination_replicates + r + 1, b, dose_b)
                for a, dose_a, b, dose_b in combinations for r in range(combination_replicates)]
    if len(content) > len(wells):
        raise ValueError(f"{len(content)} wells needed, a {plate_format}-well plate has "
                         f"{len(wells)}")
    slots = np.sort(rng.choice(len(wells), size=len(content), replace=False))
    order = rng.permutation(len(content))
    rows = []
    for slot, k in zip(slots, order):
        compound, dose, replicate, compound_2, dose_2 = content[k]
        control = compound == CONTROL
        label = (CONTROL if control else condition_label(compound, dose, UNIT)
                 if compound_2 is None else combination_label(compound, dose, compound_2,
                                                              dose_2, UNIT))
        rows.append({
            "sample": f"{plate}_{wells[slot]}", "plate": plate, "well": wells[slot],
            "compound": compound, "dose": dose, "dose_unit": UNIT,
            "well_type": "control" if control else "sample", "replicate": replicate,
            "condition": label,
            **({"compound_2": compound_2, "dose_2": dose_2} if combinations else {}),
        })
    return pd.DataFrame(rows)


def simulate_screen(n_genes: int = 20_000, n_plates: int = 1, plate_format: int = 96,
                    n_controls: int | None = None, n_compounds: int | None = None,
                    doses: tuple[float, ...] | None = None, n_replicates: int = 2,
                    frac_responsive: float = 0.05, inactive_compounds: int = 2,
                    seed: int = 0, cytotoxic_compounds: int = 0,
                    edge_effect: float = 0.0, moa_groups: int = 0, n_combinations: int = 0,
                    combination_replicates: int | None = None, interactions: bool = True,
                    n_interaction_genes: int = 30) -> SimulatedScreen:
    """Simulate a DRUG-seq dose-response screen.

    Parameters
    ----------
    n_genes
        Genes. (default: ``20_000``)
    n_plates
        Plates; each holds the full layout (controls and every compound-dose replicate),
        with its own well assignment and small per-gene plate effects. (default: ``1``)
    plate_format
        96 or 384 wells. (default: ``96``)
    n_controls, n_compounds, doses
        DMSO wells per plate, compounds and doses (uM); ``None`` takes the format's default
        layout (96: 16, 10, 4 doses; 384: 24, 30, 6 doses = 180 conditions).
    n_replicates
        Wells per compound-dose condition and plate. (default: ``2``)
    frac_responsive
        Fraction of genes responding to each active compound. (default: ``0.05``)
    inactive_compounds
        The last compounds have no effect at all. (default: ``2``)
    seed
        Random seed. (default: ``0``)
    cytotoxic_compounds
        The first compounds kill the cells at their top doses: every well of the top dose
        (CMP01, CMP03, ...) or of the top two doses (CMP02, CMP04, ...) keeps
        ``CYTOTOXIC_DEPTH`` (5 %) of its depth, so it also detects far fewer genes;
        ``cytotoxic`` in the result holds each compound's lowest such dose.
        (default: ``0``)
    edge_effect
        Plate-edge effect in log2 units, on every well of the first and last row and
        column (DMSO included): ``EDGE_GENE_FRACTION`` (5 %) of the genes shifted by
        ``+-edge_effect`` (random sign per gene; ``edge_genes`` in the result), and the
        depth scaled by ``2^(-edge_effect / 2)`` (evaporation, fewer cells).
        (default: ``0.0``)

    moa_groups
        Mechanism-of-action classes (``MOA1``...), assigned to the compounds in turn (the
        inactive ones too: an annotated compound may be inactive on these cells). Each class
        has a gene program (``frac_responsive`` of the genes, with directions and sizes);
        each member responds to ``MOA_SHARED`` (80 %) of it, sizes scaled by 0.8-1.2, plus
        its own genes for the rest. The plate map gets a ``moa`` column. (default: ``0``)
    n_combinations
        Combination conditions: pairs of active compounds (CMP01 + CMP02, CMP03 + CMP04, ...
        then further pairs) at their top doses, in ``combination_replicates`` wells each
        (default: ``n_replicates``); the plate map gets ``compound_2`` and ``dose_2``.
        (default: ``0``)
    interactions
        Plant interactions in each combination: ``n_interaction_genes`` synergistic genes
        (interaction in the direction of A + B, where |A + B| >= 1), as many antagonistic
        (against it) and emergent genes (unchanged by either agent), |interaction| uniform in
        ``INTERACTION_LFC``, among genes of base mean >= ``INTERACTION_MIN_MEAN``. False:
        every combination is exactly additive. (default: ``True``)

    The options after ``seed`` draw from their own random streams, so without them (the
    defaults) the output is the same as before they existed, bit for bit.
    """
    layout = DEFAULT_LAYOUTS[plate_format]
    n_controls = layout["n_controls"] if n_controls is None else n_controls
    n_compounds = layout["n_compounds"] if n_compounds is None else n_compounds
    doses = tuple(layout["doses"] if doses is None else doses)
    rng = np.random.default_rng(seed)
    genes = [f"G{i + 1:05d}" for i in range(n_genes)]
    compounds = [f"CMP{i + 1:02d}" for i in range(n_compounds)]
    active = np.arange(n_compounds) < n_compounds - inactive_compounds
    pairs = combination_pairs([c for c, a in zip(compounds, active) if a], max(doses),
                              n_combinations)
    reps_2 = n_replicates if combination_replicates is None else combination_replicates

    plate_map = pd.concat([
        plate_layout(f"P{p + 1}", plate_format, n_controls, compounds, doses, n_replicates, p,
                     rng, pairs, reps_2)
        for p in range(n_plates)], ignore_index=True)

    base_mean = np.exp(rng.normal(np.log(20), 1.5, n_genes))
    dispersion = (0.05 + 1 / base_mean) * np.exp(rng.normal(0, 0.5, n_genes))
    size_factors = np.exp(rng.normal(0, 0.2, len(plate_map)))

    # Truth per compound: responsive genes, maximal effect, EC50 inside the dose range, slope.
    responsive = (rng.random((n_genes, n_compounds)) < frac_responsive) & active
    max_lfc = rng.normal(1.5, 0.5, (n_genes, n_compounds)) * rng.choice([-1, 1], (n_genes,
                                                                              n_compounds))
    max_lfc = np.where(responsive, max_lfc, 0.0)
    moa = pd.Series(dtype=object)
    if moa_groups:
        moa = _plant_moa(responsive, max_lfc, compounds, active, moa_groups, frac_responsive,
                         np.random.default_rng([seed, 2]))
        plate_map["moa"] = plate_map["compound"].map(moa)
        if pairs:  # a combination has no class of its own
            plate_map.loc[plate_map["compound_2"].notna(), "moa"] = None
    log_doses = np.log(doses)
    ec50 = np.where(active, np.exp(rng.uniform(log_doses.min(), log_doses.max(), n_compounds)),
                    np.nan)
    slope = rng.uniform(1, 2, n_compounds)
    conditions = [condition_label(c, d, UNIT) for c in compounds for d in doses]
    true_lfc = np.column_stack([
        max_lfc[:, i] * (hill(d, ec50[i], slope[i]) if active[i] else 0.0)
        for i in range(n_compounds) for d in doses])

    true_lfc = pd.DataFrame(true_lfc, index=genes, columns=conditions)
    combos = pd.DataFrame()
    interaction = interaction_class = pd.DataFrame(index=genes)
    if pairs:
        combos, interaction, interaction_class = _plant_combinations(
            true_lfc, base_mean, pairs, interactions, n_interaction_genes,
            np.random.default_rng([seed, 3]))
        totals = pd.DataFrame({
            c: true_lfc[m1] + true_lfc[m2] + interaction[c]
            for c, m1, m2 in zip(combos["condition"], combos["mono_1"], combos["mono_2"])})
        true_lfc = pd.concat([true_lfc, totals], axis=1)
        conditions = list(true_lfc.columns)

    plate_effect = np.ones((n_genes, n_plates))
    if n_plates > 1:
        plate_effect = np.exp(rng.normal(0, 0.1, (n_genes, n_plates)))
    cond_index = {c: j for j, c in enumerate(conditions)}
    lfc = np.zeros((n_genes, len(plate_map)))
    treated = plate_map["condition"] != CONTROL
    cols = plate_map.loc[treated, "condition"].map(cond_index).to_numpy()
    lfc[:, treated.to_numpy()] = true_lfc.to_numpy()[:, cols]
    plate_idx = plate_map["plate"].str[1:].astype(int).to_numpy() - 1
    cytotoxic = pd.Series(np.nan, index=compounds, name="cytotoxic_dose")
    edge_genes: list[str] = []
    if cytotoxic_compounds or edge_effect:
        size_factors, edge_genes = _plant_options(
            lfc, size_factors, plate_map, cytotoxic, genes, plate_format, doses,
            cytotoxic_compounds, edge_effect, np.random.default_rng([seed, 1]))
    mu = base_mean[:, None] * size_factors[None, :] * plate_effect[:, plate_idx] * 2.0 ** lfc
    # Gamma-Poisson mixture = NB with mean mu and variance mu + dispersion mu^2.
    shape = 1 / dispersion[:, None]
    counts = rng.poisson(rng.gamma(shape, mu / shape)).astype(np.int64)

    samples = plate_map["sample"].tolist()
    return SimulatedScreen(
        counts=pd.DataFrame(counts, index=pd.Index(genes, name="gene_id"), columns=samples),
        plate_map=plate_map,
        true_lfc=true_lfc,
        ec50=pd.Series(ec50, index=compounds, name="ec50"),
        responsive=pd.DataFrame(responsive, index=genes, columns=compounds),
        size_factors=pd.Series(size_factors, index=samples, name="size_factor"),
        dispersions=pd.Series(dispersion, index=genes, name="dispersion"),
        cytotoxic=cytotoxic,
        edge_genes=edge_genes,
        moa=moa,
        combinations=combos,
        interaction=interaction,
        interaction_class=interaction_class,
    )


def combination_pairs(compounds: list[str], dose: float,
                      n: int) -> list[tuple[str, float, str, float]]:
    """``n`` pairs of ``compounds`` at ``dose``: disjoint neighbours first (1 + 2, 3 + 4, ...),
    then the remaining pairs in order."""
    from itertools import combinations

    first = [(compounds[i], compounds[i + 1]) for i in range(0, len(compounds) - 1, 2)]
    rest = [p for p in combinations(compounds, 2) if p not in first]
    chosen = (first + rest)[:n]
    if len(chosen) < n:
        raise ValueError(f"{n} combinations asked, {len(compounds)} active compounds give "
                         f"{len(chosen)}")
    return [(a, dose, b, dose) for a, b in chosen]


def _plant_moa(responsive: np.ndarray, max_lfc: np.ndarray, compounds: list[str],
               active: np.ndarray, n_groups: int, frac_responsive: float,
               rng: np.random.Generator) -> pd.Series:
    """MoA classes of :func:`simulate_screen`: rewrites ``responsive`` and ``max_lfc`` in
    place (active compounds only) and returns the class per compound."""
    n_genes = len(responsive)
    classes = [f"MOA{i % n_groups + 1}" for i in range(len(compounds))]
    program = rng.random((n_genes, n_groups)) < frac_responsive
    sizes = rng.normal(1.5, 0.5, (n_genes, n_groups)) * rng.choice([-1, 1], (n_genes, n_groups))
    for i in np.flatnonzero(active):
        g = i % n_groups
        kept = program[:, g] & (rng.random(n_genes) < MOA_SHARED)
        own = ~program[:, g] & (rng.random(n_genes) < frac_responsive * (1 - MOA_SHARED))
        responsive[:, i] = kept | own
        max_lfc[:, i] = np.where(kept, sizes[:, g] * rng.uniform(0.8, 1.2, n_genes),
                                 np.where(own, max_lfc[:, i], 0.0))
        # own genes keep the compound's drawn effect; draw one where it had none
        missing = own & (max_lfc[:, i] == 0)
        max_lfc[missing, i] = rng.normal(1.5, 0.5, missing.sum()) * rng.choice(
            [-1, 1], missing.sum())
    return pd.Series(classes, index=compounds, name="moa")


def _plant_combinations(true_lfc: pd.DataFrame, base_mean: np.ndarray,
                        pairs: list[tuple[str, float, str, float]], interactions: bool,
                        n_genes_per_class: int, rng: np.random.Generator
                        ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The combinations' table, planted interactions and classes (genes x combination)."""
    rows, planted, classes = [], {}, {}
    expressed = base_mean >= INTERACTION_MIN_MEAN
    for a, dose_a, b, dose_b in pairs:
        label = combination_label(a, dose_a, b, dose_b, UNIT)
        mono_1, mono_2 = condition_label(a, dose_a, UNIT), condition_label(b, dose_b, UNIT)
        rows.append({"condition": label, "compound": a, "dose": dose_a, "compound_2": b,
                     "dose_2": dose_b, "mono_1": mono_1, "mono_2": mono_2})
        lfc_a, lfc_b = true_lfc[mono_1].to_numpy(), true_lfc[mono_2].to_numpy()
        expected = lfc_a + lfc_b
        effect = np.zeros(len(base_mean))
        kind = np.where((lfc_a != 0) | (lfc_b != 0), "additive", "unchanged").astype(object)
        if interactions:
            strong = expressed & (np.abs(expected) >= 1) & (
                (np.abs(lfc_a) >= 1) | (np.abs(lfc_b) >= 1))
            silent = expressed & (lfc_a == 0) & (lfc_b == 0)
            pool = rng.permutation(np.flatnonzero(strong))
            n = min(n_genes_per_class, len(pool) // 2)
            size = lambda k: rng.uniform(*INTERACTION_LFC, k)  # noqa: E731
            for genes, sign, name in ((pool[:n], 1.0, "synergistic"),
                                      (pool[n:2 * n], -1.0, "antagonistic")):
                effect[genes] = sign * np.sign(expected[genes]) * size(len(genes))
                kind[genes] = name
            emergent = rng.choice(np.flatnonzero(silent),
                                  min(n_genes_per_class, silent.sum()), replace=False)
            effect[emergent] = rng.choice([-1.0, 1.0], len(emergent)) * size(len(emergent))
            kind[emergent] = "emergent"
        planted[label], classes[label] = effect, kind
    index = true_lfc.index
    return (pd.DataFrame(rows), pd.DataFrame(planted, index=index),
            pd.DataFrame(classes, index=index))


def edge_wells(wells: pd.Series, plate_format: int) -> np.ndarray:
    """Whether each well (``A01``...) lies on the outer ring of a plate of that format."""
    n_rows, n_cols = PLATE_SHAPES[plate_format]
    rows = wells.str[0].map(ROW_LETTERS.index).to_numpy()
    cols = wells.str[1:].astype(int).to_numpy() - 1
    return (rows == 0) | (rows == n_rows - 1) | (cols == 0) | (cols == n_cols - 1)


def _plant_options(lfc: np.ndarray, size_factors: np.ndarray, plate_map: pd.DataFrame,
                   cytotoxic: pd.Series, genes: list[str], plate_format: int,
                   doses: tuple[float, ...], cytotoxic_compounds: int, edge_effect: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Cytotoxic top doses and the edge effect of :func:`simulate_screen`: scales the size
    factors (returned, a new array), shifts ``lfc`` in place for edge genes of edge wells,
    fills ``cytotoxic`` and returns the edge genes too."""
    size_factors = size_factors.copy()
    top = sorted(doses, reverse=True)
    for i, compound in enumerate(cytotoxic.index[:cytotoxic_compounds]):
        killed = top[:min(1 + i % 2, len(top))]
        cytotoxic[compound] = min(killed)
        wells = (plate_map["compound"] == compound) & plate_map["dose"].isin(killed)
        size_factors[wells.to_numpy()] *= CYTOTOXIC_DEPTH
    edge_genes: list[str] = []
    if edge_effect:
        n_edge = max(1, round(EDGE_GENE_FRACTION * len(genes)))
        chosen = np.sort(rng.choice(len(genes), n_edge, replace=False))
        signs = rng.choice([-1.0, 1.0], n_edge)
        edge = edge_wells(plate_map["well"], plate_format)
        lfc[np.ix_(chosen, np.flatnonzero(edge))] += (signs * edge_effect)[:, None]
        size_factors[edge] *= 2.0 ** (-edge_effect / 2)
        edge_genes = [genes[i] for i in chosen]
    return size_factors, edge_genes


def write_screen_study(folder: Path, screen: SimulatedScreen, study_id: str) -> Path:
    """Write ``screen`` as a screen study folder: one gzipped count file per plate, the plate
    map (with ``compound_2``, ``dose_2`` and ``moa`` when simulated) and study.yaml (control
    DMSO, default design and contrasts)."""
    (folder / "counts").mkdir(parents=True)
    for plate, wells in screen.plate_map.groupby("plate", sort=False):
        screen.counts[wells["sample"]].rename_axis("gene_id").to_csv(
            folder / "counts" / f"{plate}.tsv.gz", sep="\t")
    screen.plate_map.drop(columns="condition").to_csv(folder / "plate_map.tsv", sep="\t",
                                                      index=False)
    (folder / "study.yaml").write_text(yaml.safe_dump({
        "id": study_id, "kind": "screen", "organism": "Homo sapiens",
        "counts": "counts/*.tsv.gz", "plate_map": "plate_map.tsv", "control": CONTROL}))
    return folder
