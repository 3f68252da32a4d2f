"""The activity steps: pathway (PROGENy) and TF activity of every contrast of a study (and
cell type in single-cell studies, compound x dose in screens), from its Wald statistics; and
pathway and gene-set scores of every analysed sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dge_platform._core.problems import Problem, format_problems
from dge_platform.activity.models import collectri_network, progeny_model
from dge_platform.activity.samples import expression_by_symbol, gene_set_scores, pathway_scores
from dge_platform.activity.scores import MIN_TARGETS, activity, gene_statistics, network_overlap
from dge_platform.enrichment.gene_sets import SHIPPED, read_gmt
from dge_platform.outputs import plots
from dge_platform.pipelines.step import Check, Markdown, StepFailure, StepResult, png_files
from dge_platform.readers.networks import read_network
from dge_platform.storage.frames import to_wide
from dge_platform.storage.tables import TABLES
from dge_platform.study.config import StudyConfig
from dge_platform.study.paths import study_path

ACTIVITY_PLOTS = "activity_plots"
MIN_MATCHED = 0.5
"""Below this fraction of a model's genes among the study's, its scores rest on few genes:
the step warns (ids that do not map, another organism's symbols)."""
BY = ["contrast", "cell_type"]


SHIPPED_NETWORK = "CollecTRI (shipped, human)"


def study_network(config: StudyConfig, study_dir: Path) -> tuple[pd.DataFrame | None, str]:
    """The study's TF network and its name: its own file (``tf_network:``), else the shipped
    CollecTRI for a human study, else none."""
    if not config.tf_network:
        network = collectri_network(config.organism)
        return network, SHIPPED_NETWORK if network is not None else "none"
    path, refused = study_path(study_dir, config.tf_network, "tf_network")
    network, problems = read_network(path, config.tf_network) if path else (None, [refused])
    if problems:  # validation reports these first; the file changed since
        raise StepFailure(format_problems(config.id, problems))
    return network, config.tf_network


def contrast_activity(config: StudyConfig, deg_results: pd.DataFrame,
                      study_dir: Path) -> StepResult:
    """``pathway_activity`` (PROGENy, ``mlm``) and ``tf_activity`` (``ulm`` with the study's
    network, else CollecTRI for human) of every contrast, with their checks and heatmaps."""
    result = StepResult()
    network, network_name = study_network(config, study_dir)
    rows = deg_results.assign(cell_type=deg_results["cell_type"].astype(object).fillna(""))
    stats = gene_statistics(rows, BY)
    conditions = _conditions(rows)
    model = progeny_model(config.organism)
    if model is None:
        result.info(f"no PROGENy model for organism '{config.organism}' (human and mouse ship): "
                    "pathway_activity stays empty")
    if network is None:
        result.info(f"no TF network for organism '{config.organism}' (CollecTRI ships for "
                    "human; give one with tf_network:): tf_activity stays empty")
    for name, net, method in (("pathway_activity", model, "mlm"), ("tf_activity", network, "ulm")):
        if net is None:  # nothing to score: the table stays empty, its check says why
            result.checks.append(Check(f"{name}_complete", name, True,
                                       {"skipped": "no model or network for this study"}))
            continue
        n_targets, matched = network_overlap(net, stats.index)
        if not (n_targets >= MIN_TARGETS).any():
            unusable = (f"none of the {len(n_targets)} sources has {MIN_TARGETS} targets among "
                        f"the study's gene symbols ({matched:.0%} of its targets found)")
            if net is network and config.tf_network:
                # The study's own file, unusable for this study: an error, not an empty table.
                raise StepFailure(format_problems(config.id, [Problem(
                    config.tf_network, "column 'target'", unusable.replace(
                        "the ", "the network's ", 1), "name targets by the gene symbols of "
                    "the study's organism (the genes table lists them)")]))
            result.warning(f"{name}: {unusable}; check the organism and the gene ids")
        elif matched < MIN_MATCHED:
            result.warning(f"{name}: only {matched:.0%} of the network's genes are among the "
                           "study's gene symbols; check the organism and the gene ids")
        table = _table(activity(stats, net, method=method, min_targets=MIN_TARGETS),
                       conditions, name)
        figure = plots.activity_heatmap(table, f"{name.replace('_', ' ')}: {config.id}")
        figures = {name: figure}
        if name == "tf_activity" and len(table):  # hundreds of TFs: the top hits readable
            figures["tf_top_hits"] = plots.top_sources(table, f"Top TFs: {config.id}")
        result.files.setdefault(ACTIVITY_PLOTS, {}).update(png_files(figures))
        result.add(name, table, model="PROGENy top 500" if net is model else network_name,
                   matched_fraction=round(matched, 4),
                   sources_scored=int(table["source"].nunique()),
                   sources_too_few_targets=int((n_targets < MIN_TARGETS).sum()),
                   top=Markdown(_top(table).to_markdown(index=False)),
                   heatmap=Markdown(plots.markdown_image(figure, name)))
        result.checks.append(_scored_check(name, table, conditions))
    return result


def _conditions(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per contrast (and cell type): its compound and dose where it has them."""
    return rows.groupby(BY, sort=True).agg(compound=("compound", "first"),
                                           dose=("dose", "first")).reset_index()


def _table(scores: pd.DataFrame, conditions: pd.DataFrame, name: str) -> pd.DataFrame:
    keys = pd.DataFrame(scores["condition"].tolist(), columns=BY, index=scores.index)
    table = pd.concat([keys, scores.drop(columns="condition")], axis=1)
    table = table.merge(conditions, on=BY, how="left")
    table["cell_type"] = table["cell_type"].replace("", None)
    return table[TABLES[name].stored_columns]


def _top(table: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    strongest = table.assign(strength=table["score"].abs()).sort_values("strength",
                                                                         ascending=False)
    return strongest.head(n)[["contrast", "cell_type", "source", "score", "padj"]]


def _scored_check(name: str, table: pd.DataFrame, conditions: pd.DataFrame) -> Check:
    """Every contrast (and cell type) scored, every score finite."""
    scored = set(map(tuple, table[BY].fillna("").to_numpy()))
    missing = [" / ".join(filter(None, key)) for key in map(tuple, conditions[BY].to_numpy())
               if key not in scored]
    infinite = int((~np.isfinite(table["score"].to_numpy(dtype=float))).sum())
    return Check(f"{name}_complete", name, not missing and not infinite,
                 {"unscored_contrasts": missing, "non_finite_scores": infinite})


def sample_scores(config: StudyConfig, vst: pd.DataFrame, genes: pd.DataFrame,
                  pseudobulk_samples: pd.DataFrame | None = None) -> StepResult:
    """PROGENy pathway scores and GSVA Hallmark scores of every analysed sample (single-cell:
    pseudobulk, scored within its cell type, whose pseudobulks share one VST)."""
    result = StepResult()
    named = expression_by_symbol(to_wide(vst, "vst"), genes.set_index("gene_id")["gene_symbol"])
    model = progeny_model(config.organism)
    sets = _hallmark(config.organism)
    if model is None and sets is None:
        result.info(f"no PROGENy model or Hallmark sets for organism '{config.organism}': "
                    "sample_scores stays empty")
        return result
    groups = ({None: list(named.columns)} if pseudobulk_samples is None else
              pseudobulk_samples[pseudobulk_samples["kept"]].groupby("cell_type")
              ["pseudobulk_sample"].agg(list).to_dict())
    set_genes = {g for genes in sets.values() for g in genes} if sets is not None else set()
    tables = []
    for cell_type, samples in groups.items():
        expression = named[[s for s in samples if s in named.columns]]
        if model is not None:
            tables.append(pathway_scores(expression, model).assign(collection="PROGENy",
                                                                     cell_type=cell_type))
        if sets is not None:  # GSVA ranks genes within the matrix: the collection's genes
            in_sets = expression[expression.index.isin(set_genes)]
            tables.append(gene_set_scores(in_sets, sets).assign(collection="Hallmark",
                                                                cell_type=cell_type))
    table = pd.concat(tables, ignore_index=True)[TABLES["sample_scores"].stored_columns]
    return result.add("sample_scores", table, samples=int(table["sample"].nunique()),
                      sources=int(table["source"].nunique()))


def _hallmark(organism: str) -> dict[str, list[str]] | None:
    """The shipped MSigDB Hallmark sets for the organism (human symbols only)."""
    found = [c for c in SHIPPED.get(organism.strip().lower(), []) if c.name == "Hallmark"]
    return read_gmt(found[0].path) if found else None
