"""Screen steps: well QC, the shared DESeq2 fit, activity calls, dose-response, potency and
compound similarity, each for one screen."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from dge_platform._core.problems import format_problems
from dge_platform.enrichment.annotation import id_type
from dge_platform.enrichment.gene_sets import load_collections
from dge_platform.outputs import plots
from dge_platform.pipelines.de import de_tables, fit_samples
from dge_platform.pipelines.step import Markdown, StepFailure, StepResult, file_stem, png_files
from dge_platform.screen.activity import (
    NULL_QUANTILE,
    activity_calls,
    null_deg_counts,
    pseudo_treatment_size,
)
from dge_platform.screen.combinations import CLASSES as INTERACTION_CLASSES
from dge_platform.screen.combinations import (
    combination_effects,
    combination_summary,
    combination_table,
    interaction_contrasts,
    null_interaction_counts,
    pathway_interactions,
    pseudo_group_sizes,
)
from dge_platform.screen.concentration_response import fit_groups
from dge_platform.screen.moa import (
    activity_map,
    consensus_signatures,
    consistency_map,
    feature_genes,
    moa_enrichment,
    robust_z,
)
from dge_platform.screen.plate_map import (
    CONDITION,
    ROLE,
    analysis_wells,
    condition_classes,
    condition_plates,
    condition_table,
    has_second_agent,
    moa_column,
)
from dge_platform.screen.plate_position import edge_warnings, position_effects
from dge_platform.screen.potency import MIN_HITCALL, category_indices, compound_pods
from dge_platform.screen.potency import compound_potency as potency_table
from dge_platform.screen.similarity import compound_similarity as similarity_of
from dge_platform.screen.similarity import conditions, informative_genes
from dge_platform.screen.well_qc import cytotoxic_doses, log_cpm
from dge_platform.screen.well_qc import well_qc as well_qc_table
from dge_platform.storage.frames import sheet_from_samples_table, to_wide
from dge_platform.storage.tables import TABLES
from dge_platform.study.config import StudyConfig

MAX_PLATES_SHOWN = 4
SCREEN_PLOTS, SIMILARITY_PLOTS = "screen_plots", "similarity_plots"
DOSE_PLOTS, PATHWAY_DOSE_PLOTS, POD_PLOTS = ("dose_response_plots", "pathway_dose_plots",
                                             "pod_plots")
SCREEN_POSITION_PLOTS = "position_plots"
COMBINATION_PLOTS = "combination_plots"
MAX_COMBINATION_PANELS = 6
CURVES_PER_COMPOUND = 6
MAX_CURVE_PANELS = 6
SCORE_KEY_SEP = "::"
NULL_SEED = 0


def well_qc(config: StudyConfig, raw_counts: pd.DataFrame, samples: pd.DataFrame,
            genes: pd.DataFrame) -> StepResult:
    """Per well: depth, genes detected, mitochondrial fraction, control correlation, httrpl's
    count metrics, cytotoxicity, pass/fail; plate heatmaps of depth, genes, n_cov5, Gini and
    failures."""
    qc = well_qc_table(to_wide(raw_counts, "count"), sheet_from_samples_table(samples),
                       genes.set_index("gene_id")["gene_symbol"])
    figures = {}
    for plate, wells in qc.groupby("plate", sort=True):
        by_well = wells.set_index("well")
        failed = ~by_well["passed"]
        figures[f"plate_{plate}_depth"] = plots.plate_heatmap(
            np.log10(by_well["total_counts"].clip(lower=1)), f"{plate}: log10 total counts",
            label="log10 counts", flagged=failed)
        figures[f"plate_{plate}_genes"] = plots.plate_heatmap(
            by_well["genes_detected"], f"{plate}: genes detected", label="genes", flagged=failed)
        figures[f"plate_{plate}_flags"] = plots.plate_heatmap(
            failed.astype(float), f"{plate}: failed wells (x)", cmap="Reds", label="failed",
            flagged=failed)
        # well QC 2.0 (httrpl): coverage and evenness of the counts
        figures[f"plate_{plate}_n_cov5"] = plots.plate_heatmap(
            by_well["n_cov5"], f"{plate}: genes with >= 5 counts (n_cov5)", label="genes",
            flagged=failed)
        figures[f"plate_{plate}_gini"] = plots.plate_heatmap(
            by_well["gini"], f"{plate}: Gini coefficient of the counts", cmap="magma_r",
            label="Gini", flagged=failed)
    reasons = qc.loc[~qc["passed"], "reason"].str.split("; ").explode().value_counts()
    shown = sorted(qc["plate"].unique())[:MAX_PLATES_SHOWN]
    result = StepResult(files={SCREEN_PLOTS: png_files(figures)})
    return result.add(
        "well_qc", qc[TABLES["well_qc"].stored_columns], n_wells=len(qc),
        n_failed=int((~qc["passed"]).sum()), failed_by_reason=reasons.to_dict(),
        **{name: Markdown(plots.markdown_image(png, name))
           for name, png in figures.items() if name.split("_")[1] in shown})


def plate_position_effects(config: StudyConfig, raw_counts: pd.DataFrame,
                           well_qc: pd.DataFrame) -> StepResult:
    """Per plate, whether the control wells' expression (first PCs of log CPM) and depth
    depend on row, column or edge; a warning per plate whose edge wells differ."""
    result = StepResult()
    expression = log_cpm(to_wide(raw_counts, "count").astype(float))
    table = position_effects(expression, well_qc)
    warnings = edge_warnings(table)
    for text in warnings:
        result.warning(text)
    figure = plots.position_effects_heatmap(table) if len(table) else None
    result.files[SCREEN_POSITION_PLOTS] = {"position_effects.png": figure} if figure else {}
    return result.add(
        "plate_position_effects", table[TABLES["plate_position_effects"].stored_columns],
        n_plates=int(table["plate"].nunique()) if len(table) else 0, edge_warnings=warnings,
        in_design=config.position_effects or "none",
        **({"heatmap": Markdown(plots.markdown_image(figure, "position effects"))}
           if figure else {}))


def deseq2(config: StudyConfig, raw_counts: pd.DataFrame, samples: pd.DataFrame,
           genes: pd.DataFrame, well_qc: pd.DataFrame, n_cpus: int) -> StepResult:
    """One DESeq2 fit of the control wells and the treated wells that passed well QC, then
    every compound x dose against the control (conditions without usable wells untested)."""
    counts = to_wide(raw_counts, "count").astype("int64")
    sheet = sheet_from_samples_table(samples)
    passed = well_qc.set_index("sample")["passed"].astype(bool)
    wells, untested, problems = analysis_wells(sheet, passed, config.control, config.sheet_file)
    if problems:
        raise StepFailure(format_problems(config.id, problems))
    contrasts = [c for c in config.contrasts if c.name not in untested]
    combos, skipped = testable_combinations(combination_table(sheet.loc[wells]), contrasts,
                                            config.control)
    fit = fit_samples(counts[wells], sheet.loc[wells], config, contrasts, n_cpus,
                      interaction_contrasts(combos, config.control))
    collapsed = int(raw_counts["sample"].nunique() - fit.counts.shape[1])
    result = de_tables([fit], untested, config, genes, collapsed=collapsed,
                       conditions=condition_table(fit.sheet))
    for name, why in skipped.items():
        result.warning(f"combination {name}: additivity not assessed: {why}")
    effects = combination_effects(fit.fit.linear_results, fit.fit.results, combos, config.alpha)
    effects.insert(2, "gene_symbol", genes.set_index("gene_id")["gene_symbol"]
                   .reindex(effects["gene_id"]).to_numpy())
    classes = effects["interaction_class"].value_counts()
    return result.add(
        "combination_effects", effects[TABLES["combination_effects"].stored_columns],
        n_combinations=len(combos), skipped=skipped,
        **{f"n_{name}": int(classes.get(name, 0)) for name in INTERACTION_CLASSES[:4]})


def testable_combinations(combos: pd.DataFrame, contrasts: list, control: str
                          ) -> tuple[pd.DataFrame, dict[str, str]]:
    """The combinations whose interaction the fit can test (the combination and both
    monotherapies tested against the control), and why the others cannot be."""
    tested = {c.level for c in contrasts if c.reference == control and c.factor == CONDITION}
    keep, skipped = [], {}
    for row in combos.itertuples():
        missing = [c for c in (row.combination, row.mono_1, row.mono_2) if c not in tested]
        if missing:
            skipped[row.combination] = (f"{', '.join(missing)} not tested against {control} "
                                        "(every well failed QC, or not among the contrasts)")
        keep.append(not missing)
    return combos.loc[np.array(keep, dtype=bool)].reset_index(drop=True), skipped


def compound_activity(config: StudyConfig, raw_counts: pd.DataFrame, samples: pd.DataFrame,
                      size_factors: pd.DataFrame, gene_dispersions: pd.DataFrame,
                      deg_results: pd.DataFrame) -> StepResult:
    """Each condition's DEG count against its plate's null of control-well splits."""
    result = StepResult()
    analysed = size_factors.set_index("sample")["size_factor"]
    sheet = sheet_from_samples_table(samples).loc[analysed.index]
    table = condition_table(sheet)
    table = table[table["condition"].isin(set(deg_results["contrast"]))]
    table = table.rename(columns={"condition": "contrast"})
    table["plate"] = condition_plates(sheet).reindex(table["contrast"]).to_numpy()
    dispersions = gene_dispersions.set_index("gene_id")
    counts = to_wide(raw_counts, "count").loc[dispersions.index, analysed.index]
    nulls = {}
    for plate, wells in sheet[sheet[ROLE] == "control"].groupby("plate"):
        controls = wells.index.tolist()
        n_treated = pseudo_treatment_size(table["n_wells"], len(controls))
        nulls[plate] = null_deg_counts(
            counts, analysed, dispersions["dispersion"], dispersions["base_mean"], controls,
            n_treated, alpha=config.alpha, lfc_threshold=config.lfc_threshold, seed=NULL_SEED)
        result.info(f"plate {plate}: null of {len(nulls[plate])} control splits "
                    f"({n_treated} vs {len(controls) - n_treated} wells), 95th percentile "
                    f"{np.quantile(nulls[plate], NULL_QUANTILE):.1f} DEGs")
    calls = activity_calls(deg_results, table, nulls, alpha=config.alpha)
    return result.add(
        "compound_activity", calls, n_conditions=len(calls), n_active=int(calls["active"].sum()),
        null_threshold_by_plate={p: float(np.quantile(v, NULL_QUANTILE))
                                 for p, v in nulls.items()},
        active=Markdown(calls[calls["active"]].sort_values("n_deg", ascending=False)
                        .head(40).to_markdown(index=False)))


def _fit_compounds(config: StudyConfig, expression: pd.DataFrame, sheet: pd.DataFrame,
                   features_of: Callable[[str], pd.Index], n_cpus: int = 1
                   ) -> tuple[list[pd.DataFrame], dict[str, str]]:
    """Concentration-response fits of each compound's features (``features_of(compound)``)
    over its wells and its plates' controls (dose 0), compounds in ``n_cpus`` processes;
    compounds that cannot be fitted are returned with the reason (fewer than 3 doses, no
    feature)."""
    doses = _well_doses(sheet)
    groups, skipped = {}, {}
    for compound, wells in sheet[sheet[ROLE] == "sample"].groupby("compound", sort=True):
        features = features_of(compound)
        if len(features) == 0:
            skipped[compound] = "no gene with padj < alpha at any dose"
            continue
        controls = sheet.index[(sheet[ROLE] == "control") & sheet["plate"].isin(wells["plate"])]
        used = wells.index.append(controls)
        groups[compound] = (expression.loc[features, used], doses.loc[used])
    fits = []
    for compound, fit in fit_groups(groups, n_jobs=n_cpus, bmr_sd=config.bmr_sd).items():
        if isinstance(fit, str):
            skipped[compound] = fit
        else:
            fits.append(fit.assign(compound=compound))
    return fits, dict(sorted(skipped.items()))


def _well_doses(sheet: pd.DataFrame) -> pd.Series:
    """Dose per well for the fits: the plate map's for treated wells, 0 for the controls."""
    return pd.to_numeric(sheet["dose"]).where(sheet[ROLE] == "sample", 0.0)


def _skipped_note(result: StepResult, skipped: dict[str, str]) -> None:
    if skipped:
        result.info(f"{len(skipped)} compound(s) not fitted: " + "; ".join(
            f"{c}: {why}" for c, why in list(skipped.items())[:10]))


def dose_response(config: StudyConfig, vst: pd.DataFrame, samples: pd.DataFrame,
                  deg_results: pd.DataFrame, genes: pd.DataFrame, n_cpus: int = 1) -> StepResult:
    """Per compound, concentration-response fits of its responsive genes (padj < alpha at any
    dose) over its wells and its plates' controls (dose 0), with BMD, BMDL, BMDU and hit
    call; curves of each compound's most sensitive genes."""
    result = StepResult()
    expression = to_wide(vst, "vst")
    sheet = sheet_from_samples_table(samples).loc[expression.columns]
    significant = deg_results[deg_results["padj"] < config.alpha]
    responsive = significant.groupby("compound")["gene_id"].unique()
    fits, skipped = _fit_compounds(
        config, expression, sheet,
        lambda c: pd.Index(responsive.get(c, [])).intersection(expression.index), n_cpus)
    _skipped_note(result, skipped)
    spec = TABLES["dose_response"]
    if not fits:
        return result.add("dose_response", spec.empty(), n_compounds_fitted=0, skipped=skipped)
    table = pd.concat([f.rename_axis("gene_id").reset_index() for f in fits],
                      ignore_index=True)
    table["gene_symbol"] = genes.set_index("gene_id")["gene_symbol"] \
        .reindex(table["gene_id"]).to_numpy()
    table = _ordered(table, spec.stored_columns)
    figures = _curve_figures(table, expression, sheet, "gene_id", "gene_symbol", "genes")
    result.files[DOSE_PLOTS] = png_files(figures)
    return result.add(
        "dose_response", table, n_compounds_fitted=len(fits), skipped=skipped,
        n_genes_with_bmd=int(table["bmd"].notna().sum()),
        n_hits=int((table["hitcall"] >= MIN_HITCALL).sum()),
        **{name: Markdown(plots.markdown_image(png, name))
           for name, png in list(figures.items())[:MAX_CURVE_PANELS]})


def pathway_dose_response(config: StudyConfig, sample_scores: pd.DataFrame,
                          samples: pd.DataFrame) -> StepResult:
    """Per compound, concentration-response fits of every pathway (PROGENy) and gene-set
    (Hallmark GSVA) score over its wells and its plates' controls."""
    result = StepResult()
    spec = TABLES["pathway_dose_response"]
    if sample_scores.empty:
        result.info("no sample scores (no PROGENy model or Hallmark sets for the organism)")
        return result.add("pathway_dose_response", spec.empty(), n_compounds_fitted=0)
    keyed = sample_scores.assign(feature=sample_scores["collection"] + SCORE_KEY_SEP
                                 + sample_scores["source"])
    expression = keyed.pivot(index="feature", columns="sample", values="score")
    sheet = sheet_from_samples_table(samples).loc[expression.columns]
    expression = expression.dropna()
    fits, skipped = _fit_compounds(config, expression, sheet, lambda c: expression.index)
    _skipped_note(result, skipped)
    if not fits:
        return result.add("pathway_dose_response", spec.empty(), n_compounds_fitted=0,
                          skipped=skipped)
    table = pd.concat([f.rename_axis("feature").reset_index() for f in fits],
                      ignore_index=True)
    table[["collection", "source"]] = table["feature"].str.split(SCORE_KEY_SEP, n=1,
                                                                 expand=True)
    table = _ordered(table.drop(columns="feature"), spec.stored_columns)
    figures = _curve_figures(table.assign(key=table["collection"] + SCORE_KEY_SEP
                                          + table["source"]),
                             expression, sheet, "key", "source", "scores")
    result.files[PATHWAY_DOSE_PLOTS] = png_files(figures)
    return result.add(
        "pathway_dose_response", table, n_compounds_fitted=len(fits), skipped=skipped,
        n_hits=int((table["hitcall"] >= MIN_HITCALL).sum()),
        **{name: Markdown(plots.markdown_image(png, name))
           for name, png in list(figures.items())[:MAX_CURVE_PANELS]})


def _ordered(table: pd.DataFrame, first: list[str]) -> pd.DataFrame:
    return table[first + [c for c in table.columns if c not in first]]


def _curve_figures(fits: pd.DataFrame, expression: pd.DataFrame, sheet: pd.DataFrame,
                   key: str, label: str, what: str) -> dict[str, bytes]:
    """Per compound with hits, the curves of its most sensitive fits (lowest BMD among those
    with fit_ok): points per well, the fitted curve, the BMD and its interval."""
    figures = {}
    doses = _well_doses(sheet)
    hits = fits[fits["fit_ok"].astype(bool) & (fits["hitcall"] >= MIN_HITCALL)]
    for compound, rows in hits.groupby("compound", sort=True):
        top = rows.nsmallest(CURVES_PER_COMPOUND, "bmd")
        wells = sheet.index[(sheet["compound"] == compound)
                            | ((sheet[ROLE] == "control")
                               & sheet["plate"].isin(sheet.loc[sheet["compound"] == compound,
                                                               "plate"]))]
        points = expression.loc[top[key], wells]
        figures[f"curves_{file_stem(compound)}_{what}"] = plots.dose_response_curves(
            points, doses.loc[wells], top.assign(label=top[label].fillna(top[key]))
            .set_index(key), f"{compound}: most sensitive {what}")
    return figures


def compound_pod(config: StudyConfig, dose_response: pd.DataFrame,
                 pathway_dose_response: pd.DataFrame, well_qc: pd.DataFrame,
                 genes: pd.DataFrame, study_dir: Path) -> StepResult:
    """Per compound, every point of departure with its interval (gene, category and
    pathway-score PODs), flagged above the compound's cytotoxic dose; a summary plot."""
    result = StepResult()
    collections = load_collections(config.organism, study_dir, config.gene_sets,
                                   id_type(genes["gene_id"]))
    categories = category_indices(collections, genes)
    cytotoxic = cytotoxic_doses(well_qc)
    table = compound_pods(dose_response, pathway_dose_response, categories, cytotoxic)
    flagged = sorted(table.loc[table["flags"].str.contains("above_cytotoxic_dose"),
                               "compound"].unique())
    if flagged:
        result.warning(f"{len(flagged)} compound(s) have PODs at or above the dose where their "
                       f"wells were cytotoxic ({', '.join(flagged[:8])}): read those PODs as "
                       "possibly driven by cell death")
    figure = plots.pod_summary(table) if len(table) else None
    result.files[POD_PLOTS] = {"pod_summary.png": figure} if figure else {}
    return result.add(
        "compound_pod", table, n_compounds=int(table["compound"].nunique()),
        collections=", ".join(name for name, _, _ in collections),
        cytotoxic_doses={c: float(d) for c, d in cytotoxic.dropna().items()},
        pods=Markdown(table.head(60).to_markdown(index=False)) if len(table) else "",
        **({"pod_summary": Markdown(plots.markdown_image(figure, "POD summary"))}
           if figure else {}))


def compound_potency(config: StudyConfig, dose_response: pd.DataFrame) -> StepResult:
    """Per compound, the transcriptomic point of departure from its genes' BMDs."""
    table = potency_table(dose_response) if len(dose_response) \
        else TABLES["compound_potency"].empty()
    return StepResult().add(
        "compound_potency", table,
        n_compounds_with_tpod=int(table["tpod"].notna().sum()) if len(table) else 0,
        potency=Markdown(table.sort_values("tpod").head(40).to_markdown(index=False))
        if len(table) else "")


def moa(config: StudyConfig, vst: pd.DataFrame, samples: pd.DataFrame,
        genes: pd.DataFrame) -> StepResult:
    """Consensus signatures (MODZ) of every compound x dose, their replicate correlation and
    TAS, phenotypic activity mAP against the plate's controls and, with a moa (or target)
    column, the consistency mAP of each class."""
    expression = to_wide(vst, "vst")
    sheet = sheet_from_samples_table(samples).loc[expression.columns]
    tested = sheet[sheet[ROLE].isin(("sample", "control"))]
    z = robust_z(expression[tested.index], tested)
    features = feature_genes(expression[tested.index], plates=tested["plate"])
    treated = tested[tested[ROLE] == "sample"]
    consensus = consensus_signatures(z[treated.index], treated[CONDITION], features)
    meta = condition_table(treated).set_index(CONDITION)
    column = moa_column(sheet)
    meta["moa"] = condition_classes(treated).reindex(meta.index).to_numpy()
    long = consensus.signatures.rename_axis("gene_id").reset_index().melt(
        id_vars="gene_id", var_name="contrast", value_name="consensus_z")
    long = long.join(meta[["compound", "dose"]], on="contrast")
    long["gene_symbol"] = genes.set_index("gene_id")["gene_symbol"] \
        .reindex(long["gene_id"]).to_numpy()
    activity = activity_map(z, tested, features, alpha=config.alpha)
    # compound and dose as the condition table types them (the plate map's are text)
    activity = activity.drop(columns=["compound", "dose"]).join(
        meta[["compound", "dose", "moa"]], on="condition").join(consensus.quality,
                                                                on="condition")
    rows = [activity.rename(columns={"condition": "name"}).assign(level="activity")]
    result = StepResult()
    retrieved = activity.loc[activity["retrieved"].fillna(False).astype(bool), "condition"]
    if column and meta["moa"].notna().any():
        consistency = consistency_map(consensus.signatures[retrieved.tolist()],
                                      meta.loc[retrieved], features, alpha=config.alpha)
        rows.append(consistency.rename(columns={"moa": "name"}).assign(
            level="consistency", moa=consistency["moa"]))
    table = pd.concat(rows, ignore_index=True).rename(columns={"n_wells": "n_wells_used"})
    spec = TABLES["moa_retrieval"]
    for name in spec.stored_columns:
        if name not in table.columns:
            table[name] = None
    table = table[spec.stored_columns]
    notes = activity["note"].dropna() if "note" in activity.columns else pd.Series(dtype=str)
    if len(notes):
        result.info(f"{len(notes)} condition(s) without an activity mAP: {notes.iloc[0]}")
    consistent = table[(table["level"] == "consistency") & table["retrieved"].astype(bool)]
    return result.add(
        "compound_signatures", long[TABLES["compound_signatures"].stored_columns],
        n_conditions=consensus.signatures.shape[1], n_features=len(features)).add(
        "moa_retrieval", table, n_active=int(retrieved.size),
        n_conditions=len(activity), moa_column=column or "none",
        consistent_classes=consistent["name"].tolist(),
        activity=Markdown(activity.sort_values("map", ascending=False).head(40)
                          .to_markdown(index=False)))


def compound_similarity(config: StudyConfig, deg_results: pd.DataFrame,
                        compound_activity: pd.DataFrame, compound_signatures: pd.DataFrame,
                        samples: pd.DataFrame) -> StepResult:
    """Similarity of the active conditions' consensus signatures, neighbours with their MoA
    classes, the class their neighbours point to, and clusters (heatmap)."""
    active = compound_activity.loc[compound_activity["active"], "contrast"]
    rows = deg_results[deg_results["contrast"].isin(set(active))]
    spec = TABLES["compound_similarity"]
    if active.nunique() < 2:
        result = StepResult(files={SIMILARITY_PLOTS: {}})
        result.info(f"{active.nunique()} active condition(s): nothing to compare")
        return result.add("compound_similarity", spec.empty(), n_active=int(active.nunique()))
    genes = informative_genes(rows, alpha=config.alpha)
    consensus = compound_signatures[compound_signatures["contrast"].isin(set(active))].pivot(
        index="gene_id", columns="contrast", values="consensus_z")
    consensus = consensus[[c for c in pd.unique(rows["contrast"]) if c in consensus.columns]]
    found = similarity_of(consensus, genes, conditions_meta=conditions(rows))
    table = found.neighbors.join(found.clusters["cluster"], on="contrast")
    sheet = sheet_from_samples_table(samples)
    moa_of = condition_classes(sheet)
    table["moa"] = moa_of.reindex(table["contrast"]).to_numpy()
    table["neighbor_moa"] = moa_of.reindex(table["neighbor_contrast"]).to_numpy()
    hypotheses = moa_enrichment(table, moa_of.reindex(consensus.columns)).set_index("contrast")
    table = table.join(hypotheses[["moa_hypothesis", "moa_hypothesis_pvalue",
                                   "moa_hypothesis_padj"]], on="contrast")
    heatmap = plots.similarity_heatmap(found.similarity, found.order, found.clusters["cluster"])
    result = StepResult(files={SIMILARITY_PLOTS: {"similarity_heatmap.png": heatmap}})
    return result.add(
        "compound_similarity", table[spec.stored_columns],
        n_active=int(active.nunique()), n_genes=len(genes),
        n_clusters=int(found.clusters["cluster"].nunique()), notes=found.notes,
        similarity_heatmap=Markdown(plots.markdown_image(heatmap, "similarity")))

def combinations(config: StudyConfig, raw_counts: pd.DataFrame, samples: pd.DataFrame,
                 size_factors: pd.DataFrame, gene_dispersions: pd.DataFrame,
                 combination_effects: pd.DataFrame, n_cpus: int = 1) -> StepResult:
    """Per combination, its non-additive genes against its plate's null of relabelled
    control and monotherapy wells (splits tested in ``n_cpus`` processes);
    observed-vs-expected scatters and class counts."""
    result = StepResult(files={COMBINATION_PLOTS: {}})
    if combination_effects.empty:
        result.info("no combination wells (compound_2 and dose_2) tested on the plates")
        return result.add("combinations", TABLES["combinations"].empty(), n_combinations=0)
    analysed = size_factors.set_index("sample")["size_factor"]
    sheet = sheet_from_samples_table(samples).loc[analysed.index]
    combos = combination_table(sheet)
    combos = combos[combos["combination"].isin(set(combination_effects["combination"]))]
    n_wells = condition_table(sheet).set_index(CONDITION)["n_wells"]
    dispersions = gene_dispersions.set_index("gene_id")
    counts = to_wide(raw_counts, "count").loc[dispersions.index, analysed.index]
    monotherapies = set(combos["mono_1"]) | set(combos["mono_2"])
    nulls = {}
    for plate in sorted({p for ps in combos["plate"] for p in ps.split(",")}):
        wells = sheet[sheet["plate"] == plate]
        controls = wells.index[wells[ROLE] == "control"].tolist()
        single = wells[(wells[ROLE] == "sample") & ~has_second_agent(wells)]
        monos = [w.index.tolist() for label, w in single.groupby(CONDITION)
                 if label in monotherapies]
        on_plate = combos[combos["plate"].str.split(",").map(lambda ps, p=plate: p in ps)]
        sizes = pseudo_group_sizes(on_plate, n_wells, len(controls))
        nulls[plate] = null_interaction_counts(
            counts, analysed, dispersions["dispersion"], dispersions["base_mean"], controls,
            monos, sizes, alpha=config.alpha, lfc_threshold=config.lfc_threshold,
            seed=NULL_SEED, n_jobs=n_cpus)
        result.info(f"plate {plate}: null of {len(nulls[plate])} relabellings (pseudo "
                    f"AB/A/B of {sizes} wells), 95th percentile "
                    f"{np.quantile(nulls[plate], NULL_QUANTILE):.1f} non-additive genes")
    table = combination_summary(combination_effects, combos, nulls, alpha=config.alpha)
    figures = {f"combination_{file_stem(name)}": plots.combination_scatter(
        combination_effects[combination_effects["combination"] == name], name)
        for name in table["combination"]}
    figures["class_counts"] = plots.combination_class_counts(table)
    result.files[COMBINATION_PLOTS] = png_files(figures)
    shown = ["class_counts", *list(figures)[:MAX_COMBINATION_PANELS]]
    return result.add(
        "combinations", table[TABLES["combinations"].stored_columns],
        n_combinations=len(table), n_nonadditive=int(table["nonadditive"].sum()),
        combinations=Markdown(table[["combination", "n_deg", "n_nonadditive",
                                     "frac_nonadditive", "n_synergistic", "n_antagonistic",
                                     "n_emergent", "null_threshold", "nonadditive"]]
                              .to_markdown(index=False)),
        **{name: Markdown(plots.markdown_image(figures[name], name)) for name in shown})


def pathway_combination_effects(config: StudyConfig, sample_scores: pd.DataFrame,
                                samples: pd.DataFrame,
                                combination_effects: pd.DataFrame) -> StepResult:
    """Additivity of every pathway (PROGENy) and gene-set (Hallmark GSVA) score per tested
    combination."""
    spec = TABLES["pathway_combination_effects"]
    tested = set(combination_effects["combination"])
    if sample_scores.empty or not tested:
        return StepResult().add("pathway_combination_effects", spec.empty(), n_combinations=0)
    keyed = sample_scores.assign(feature=sample_scores["collection"] + SCORE_KEY_SEP
                                 + sample_scores["source"])
    scores = keyed.pivot(index="feature", columns="sample", values="score").dropna()
    sheet = sheet_from_samples_table(samples).loc[scores.columns]
    combos = combination_table(sheet)
    table = pathway_interactions(scores, sheet, combos[combos["combination"].isin(tested)],
                                 config.alpha)
    if table.empty:
        return StepResult().add("pathway_combination_effects", spec.empty(), n_combinations=0)
    table[["collection", "source"]] = table["feature"].str.split(SCORE_KEY_SEP, n=1,
                                                                 expand=True)
    table = table[spec.stored_columns]
    significant = table[table["padj"] < config.alpha]
    return StepResult().add(
        "pathway_combination_effects", table, n_combinations=int(table["combination"].nunique()),
        n_nonadditive=len(significant),
        nonadditive=Markdown(significant.sort_values("pvalue").head(40).to_markdown(index=False))
        if len(significant) else "")
