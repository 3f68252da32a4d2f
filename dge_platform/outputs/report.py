"""A self-contained HTML report per study: design, QC, DEG summary, the DEG explorer
(interactive volcano and MA plots, a table of every tested gene), enrichment, plots.

One file that opens offline: PNGs are inline, plotly.js and the explorer's script are
embedded once (``interactive.page_scripts``)."""

from __future__ import annotations

import base64
import html
import re
from datetime import UTC, datetime

import pandas as pd

from dge_platform.bulk.diagnostics import design_warnings
from dge_platform.outputs.interactive import (
    deg_explorer,
    enrichment_figure,
    figure_html,
    page_scripts,
)
from dge_platform.screen.plate_position import EDGE_ALPHA
from dge_platform.singlecell.pseudobulk import pseudobulk_summary
from dge_platform.singlecell.qc import failed_by_reason
from dge_platform.storage.tables import STAT_COLUMNS

STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#222;
max-width:1200px}
h1{font-size:1.5em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:right}th{background:#f4f6f7}
td:first-child,th:first-child{text-align:left}.plots img{max-width:48%;margin:.3em}
.note{background:#fef9e7;border-left:4px solid #f1c40f;padding:.5em 1em}.flag{color:#c0392b}
.warn{background:#fdedec;border-left:4px solid #c0392b;padding:.5em 1em}
.toc{background:#f4f6f7;padding:.5em 1em;display:inline-block}.toc ol{margin:.3em 0}
"""


def deg_summary(results: pd.DataFrame, alpha: float, by: tuple[str, ...] = ("contrast",)
                ) -> pd.DataFrame:
    """Per contrast (or per ``by`` columns, e.g. contrast and cell type): genes tested (padj
    not null), DEGs up and down at ``alpha``."""
    rows = []
    for key, table in results.groupby(list(by), sort=False):
        sig = table["padj"] < alpha
        rows.append({**dict(zip(by, key)), "genes": len(table),
                     "tested": int(table["padj"].notna().sum()),
                     "up": int((sig & (table["log2_fold_change"] > 0)).sum()),
                     "down": int((sig & (table["log2_fold_change"] < 0)).sum())})
    return pd.DataFrame(rows, columns=[*by, "genes", "tested", "up", "down"])


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, float_format=lambda v: f"{v:.4g}", na_rep="")


def top_terms(enrichment: pd.DataFrame, contrast: str, cell_type: str | None = None,
              n: int = 10) -> pd.DataFrame:
    """The ``n`` terms with the smallest adjusted p-value per method in one contrast (and
    cell type), the term split into ``term_id`` (GO terms: the GO id, else empty) and
    ``term_name`` (GO terms: the name, spaces restored; else the term)."""
    rows = enrichment[enrichment["contrast"] == contrast]
    if cell_type is not None:
        rows = rows[rows["cell_type"] == cell_type]
    top = rows.dropna(subset=["padj"]).sort_values(["padj", "pvalue"]) \
        .groupby("method", sort=True).head(n)
    go_terms = top["term"].astype(str).str.extract(r"^(GO:\d+)_(.+)$")
    return top.assign(term_id=go_terms[0],
                      term_name=go_terms[1].str.replace("_", " ").fillna(top["term"]))[
        ["method", "collection", "term_id", "term_name", "size", "score", "pvalue", "padj",
         "genes"]]


def _pvalue_histograms(plots: dict[str, bytes], contrasts: list[str]) -> list[str]:
    """The p-value histogram of each contrast (``pvalues_<contrast>``), when drawn."""
    shown = [_img(plots[f"pvalues_{c}"], f"pvalues_{c}") for c in contrasts
             if f"pvalues_{c}" in plots]
    return ["<h3>P-value histograms</h3>", "<div class='plots'>" + "".join(shown) + "</div>"] \
        if shown else []


def _enrichment_section(enrichment: pd.DataFrame,
                        groups: list[tuple[str, str | None]]) -> list[str]:
    """Per contrast (and cell type): the top terms as a dot plot and as a table."""
    if enrichment.empty:
        return ["<h2>Enrichment</h2>", "<p>No enrichment results (no gene set collection for "
                "this organism; add gene_sets: to study.yaml).</p>"]
    parts = ["<h2>Enrichment</h2>", "<p class='note'>Per contrast, the 10 terms of smallest "
             "padj of each method: GSEA prerank on the Wald statistic (NES) and ORA of the up- "
             "and down-regulated DEGs (odds ratio). Table enrichment holds every term.</p>"]
    for contrast, cell_type in groups:
        name = contrast if cell_type is None else f"{contrast}: {cell_type}"
        terms = top_terms(enrichment, contrast, cell_type)
        parts.append(f"<h3>{html.escape(name)}</h3>")
        parts += [figure_html(enrichment_figure(terms, f"Top terms: {name}")), _table(
            terms.drop(columns=["pvalue", "genes"]).rename(
                columns={"term_id": "id", "term_name": "term"}))] if len(terms) \
            else ["<p>No enrichment results.</p>"]
    return parts


def _design_section(plots: dict[str, bytes], design: pd.DataFrame | None) -> list[str]:
    """The PC-association heatmap and a warning per variable outside the design that drives
    a leading PC."""
    if design is None or design.empty:
        return []
    warnings = design_warnings(design)
    shares = design[design["component"] == "variance_partition"]
    per_group = "; ".join(
        (f"{html.escape(str(cell_type))}: " if isinstance(cell_type, str) else "")
        + ", ".join(f"{html.escape(str(row.variable))} {row.statistic:.0%}"
                    for row in rows.itertuples())
        for cell_type, rows in shares.groupby("cell_type", dropna=False, sort=False))
    return ["<h2>Design diagnostics</h2>",
            *(f"<p class='warn'>Warning: {html.escape(w)}</p>" for w in warnings),
            "<p class='note'>The heatmap: -log10 p of each sample variable's association with "
            "the leading principal components of the VST (ANOVA for factors, correlation for "
            "numbers; * p &lt; 0.01). Median share of each gene's variance: "
            + per_group + ".</p>",
            "<div class='plots'>" + "".join(_img(png, name) for name, png in plots.items()
                                            if name.startswith("pc_associations")) + "</div>"]


def _activity_section(plots: dict[str, bytes]) -> list[str]:
    """The activity heatmaps (pathways, TFs x contrasts), when the study has them."""
    shown = [_img(png, name) for name, png in plots.items()
             if name in ("pathway_activity", "tf_activity", "tf_top_hits")]
    if not shown:
        return []
    return ["<h2>Pathway and TF activity</h2>",
            "<p class='note'>PROGENy pathway activity (multivariate linear model on each "
            "contrast's Wald statistics) and TF activity (univariate linear model on the "
            "network's signed targets); red: activated, blue: repressed, * padj &lt; 0.05. "
            "Tables pathway_activity and tf_activity hold every score.</p>",
            "<div class='plots'>" + "".join(shown) + "</div>"]


def _with_contents(body: str) -> tuple[str, str]:
    """The body with an id on every h2, and a table of contents linking to them."""
    entries: list[tuple[str, str]] = []

    def anchor(match: re.Match) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", match[1].split("(")[0].lower()).strip("-")
        if any(slug == taken for taken, _ in entries):
            slug = f"{slug}-{len(entries)}"
        entries.append((slug, match[1]))
        return f"<h2 id='{slug}'>{match[1]}</h2>"

    body = re.sub(r"<h2>(.*?)</h2>", anchor, body)
    return body, ("<nav class='toc'><b>Contents</b><ol>" + "".join(
        f"<li><a href='#{slug}'>{text}</a></li>" for slug, text in entries) + "</ol></nav>")


def _page(title: str, heading: str, body: list[str]) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text, contents = _with_contents("\n".join(body))
    return "\n".join([f"<!doctype html><html><head><meta charset='utf-8'><title>"
                      f"{html.escape(title)}</title><style>{STYLE}</style>{page_scripts()}"
                      f"</head><body><h1>{html.escape(heading)}</h1>", contents, text,
                      f"<p><small>dge-platform, {stamp}</small></p></body></html>"])


def build_screen_report(*, study: dict, well_qc: pd.DataFrame, activity: pd.DataFrame,
                        potency: pd.DataFrame, similarity: pd.DataFrame,
                        results: pd.DataFrame, plots: dict[str, bytes],
                        max_conditions: int = 20, design: pd.DataFrame | None = None,
                        pods: pd.DataFrame | None = None,
                        position_effects: pd.DataFrame | None = None,
                        moa: pd.DataFrame | None = None,
                        combinations: pd.DataFrame | None = None) -> str:
    """Render a screen's report: well QC with plate heatmaps, activity calls against the
    control null, potency, MoA neighbours and the DEG explorer of the conditions that are
    active or have DEGs.

    Parameters
    ----------
    study
        Study settings: id, title, organism, design, control, alpha, lfc_threshold.
    well_qc, activity, potency, similarity
        The screen's tables of the same names.
    results
        DEG results of every condition.
    plots
        PNG bytes by name: plate heatmaps (``plate_*``), ``similarity_heatmap``, dose-response
        curves (``curves_*``), ``pod_summary``.
    max_conditions
        Conditions in the DEG explorer, active ones first, then by DEGs (each embeds its
        tested genes: the cap keeps the file small).
    design
        The screen's design_diagnostics.
    pods, position_effects, moa, combinations
        The screen's compound_pod, plate_position_effects, moa_retrieval and combinations.
    """
    failed = well_qc[~well_qc["passed"].astype(bool)]
    roles = well_qc.groupby("well_type")["passed"].agg(wells="size", passed="sum").reset_index()
    active = activity[activity["active"].astype(bool)]
    explored = activity[activity["active"].astype(bool) | (activity["n_deg"] > 0)] \
        .sort_values(["active", "n_deg"], ascending=False)
    body = [
        "<h2>Design</h2>",
        _table(pd.DataFrame([{k: study.get(k) for k in
                              ("id", "organism", "control", "design", "alpha",
                               "lfc_threshold")}])),
        "<p class='note'>One shared DESeq2 fit of every control and compound well that passed "
        "well QC; each compound x dose is tested against the control wells (plate in the "
        "design when the screen spans plates).</p>",
        "<h2>Well QC</h2>", _table(roles),
        (f"<p class='flag'>{len(failed)} well(s) failed QC and were not tested.</p>"
         + _table(failed[["plate", "well", "well_type", "compound", "total_counts",
                          "genes_detected", "reason"]])) if len(failed)
        else "<p>Every well passed QC.</p>",
        "<div class='plots'>" + "".join(_img(png, name) for name, png in plots.items()
                                        if name.startswith("plate_")) + "</div>",
        f"<h2>Activity ({len(active)} of {len(activity)} conditions active)</h2>",
        "<p class='note'>Active: more DEGs (padj &lt; alpha) than the 95th percentile of the "
        "plate's null of random control-vs-control splits.</p>",
        _table(activity.sort_values(["active", "n_deg"], ascending=False)),
    ]
    body += _position_section(position_effects, plots)
    body += _potency_section(potency, pods, well_qc, plots)
    body += _moa_section(moa, similarity, plots)
    body += _combination_section(combinations, plots)
    body += _design_section(plots, design) + _activity_section(plots)
    shown = explored["contrast"].head(max_conditions)
    body += [f"<h2>Differential expression ({len(explored)} of {len(activity)} conditions "
             "active or with DEGs)</h2>",
             "<p class='note'>Each condition against the control wells, padj &lt; "
             f"{study['alpha']}. Conditions neither active nor with a DEG are left out (table "
             "deg_results holds every condition)"
             + (f"; so are the {len(explored) - len(shown)} beyond the first {max_conditions}"
                if len(explored) > len(shown) else "") + ".</p>",
             deg_explorer({c: results[results["contrast"] == c] for c in shown},
                          alpha=study["alpha"], lfc_threshold=study["lfc_threshold"],
                          label="Condition")]
    return _page(f"{study['id']} - screen report", study["title"], body)


def _moa_section(moa: pd.DataFrame | None, similarity: pd.DataFrame,
                 plots: dict[str, bytes]) -> list[str]:
    """Retrieval (activity and consistency mAP, TAS) and the nearest other compounds."""
    body = ["<h2>Mechanism of action</h2>"]
    if moa is not None and len(moa):
        activity = moa[moa["level"] == "activity"]
        consistency = moa[moa["level"] == "consistency"]
        retrieved = activity["retrieved"].astype(bool)
        body += [
            f"<p>{int(retrieved.sum())} of {len(activity)} conditions are phenotypically "
            "active: their wells are retrieved before the plate's control wells (mean "
            "average precision, permutation p, BH).</p>",
            "<p class='note'>map: mean average precision of a condition's wells (cosine "
            "similarity of robust z-scores over the 1,000 most variable genes); tas: CMap's "
            "transcriptional activity score, sqrt(signature strength x replicate correlation "
            "/ genes).</p>",
            _table(activity.sort_values("map", ascending=False).drop(columns=["level"])
                   .head(40))]
        if len(consistency):
            body += ["<h3>Consistency of MoA classes</h3>",
                     "<p class='note'>Are conditions of one class (the plate map's moa column) "
                     "retrieved before those of other classes? Only phenotypically active "
                     "conditions are compared.</p>",
                     _table(consistency[["name", "n_profiles", "map", "pvalue", "padj",
                                         "retrieved"]].rename(columns={"name": "moa"}))]
    body += ["<h3>Nearest conditions of other compounds</h3>",
             _table(similarity) if len(similarity) else "<p>Fewer than two active conditions: "
             "nothing to compare.</p>",
             "<div class='plots'>" + "".join(_img(png, name) for name, png in plots.items()
                                             if name == "similarity_heatmap") + "</div>"]
    return body


def _combination_section(combinations: pd.DataFrame | None,
                         plots: dict[str, bytes]) -> list[str]:
    """Non-additivity of each combination, its classes and observed-vs-expected plots."""
    if combinations is None or combinations.empty:
        return []
    called = combinations["nonadditive"].astype(bool)
    return [f"<h2>Combinations ({int(called.sum())} of {len(combinations)} non-additive)</h2>",
            "<p class='note'>Interaction of each combination: AB - A - B + control on the "
            "shared fit (Wald, BH). Non-additive: more genes with interaction padj &lt; alpha "
            "than the 95th percentile of the plate's null of relabelled control and "
            "monotherapy wells. Classes: synergistic (beyond the sum of the agents), "
            "antagonistic (short of it), emergent (changed only by the combination).</p>",
            _table(combinations[["combination", "n_wells", "n_deg", "n_nonadditive",
                                 "frac_nonadditive", "n_synergistic", "n_antagonistic",
                                 "n_emergent", "n_additive", "null_threshold", "pvalue",
                                 "nonadditive"]]),
            "<div class='plots'>" + "".join(_img(png, name) for name, png in plots.items()
                                            if name == "class_counts") + "</div>",
            "<p class='note'>Observed against expected (additive) log2 fold changes; the "
            "diagonal is additivity.</p>",
            "<div class='plots'>" + "".join(_img(png, name) for name, png in plots.items()
                                            if name.startswith("combination_")) + "</div>"]


def _position_section(effects: pd.DataFrame | None, plots: dict[str, bytes]) -> list[str]:
    """Plate-position effects of the control wells, with the edge warnings."""
    if effects is None or effects.empty:
        return []
    edge = effects[(effects["position"] == "edge") & (effects["pvalue"] < EDGE_ALPHA)]
    warning = (f"<p class='flag'>Edge wells differ from inner wells (p &lt; {EDGE_ALPHA}) on "
               f"plate(s) {html.escape(', '.join(sorted(edge['plate'].unique())))}: consider "
               "<code>position_effects: edge</code> in study.yaml.</p>") if len(edge) else ""
    return ["<h2>Plate position effects (control wells)</h2>", warning,
            "<p class='note'>Association of the control wells' first principal components and "
            "depth with row, column (ANOVA) and edge (outer ring vs inner wells).</p>",
            "<div class='plots'>" + "".join(_img(png, name) for name, png in plots.items()
                                            if name == "position_effects") + "</div>",
            _table(effects.sort_values("pvalue").head(30))]


def _potency_section(potency: pd.DataFrame, pods: pd.DataFrame | None, well_qc: pd.DataFrame,
                     plots: dict[str, bytes]) -> list[str]:
    """Points of departure with intervals, cytotoxic wells, and the curves they rest on."""
    body = ["<h2>Potency and points of departure</h2>",
            "<p class='note'>Concentration-response fits (tcplfit2's models, t-distributed "
            "errors, AIC) give each gene and pathway score a BMD at 1.349 control SDs with its "
            "90 % profile-likelihood interval (BMDL-BMDU) and a hit call. PODs: the tPOD (median "
            "BMD of the 20 most sensitive genes), the 5th percentile and the mode of the gene "
            "BMDs, the lowest gene-set category (NTP 2018 rules) and the lowest pathway-score "
            "BMD; lower and upper: the same statistic of the BMDLs and BMDUs.</p>"]
    cytotoxic = well_qc[well_qc["cytotoxic"].astype(bool)]
    if len(cytotoxic):
        body.append(f"<p class='flag'>{len(cytotoxic)} well(s) of "
                    f"{cytotoxic['compound'].nunique()} compound(s) were cytotoxic (depth or "
                    "genes collapsed at the top doses, or low viability) and left out of the "
                    "fits; PODs at or above a compound's cytotoxic dose are flagged "
                    "<code>above_cytotoxic_dose</code>.</p>")
    if pods is not None and len(pods):
        body.append("<div class='plots'>" + "".join(
            _img(png, name) for name, png in plots.items() if name == "pod_summary")
            + "</div>")
        body.append(_table(pods))
    body.append("<h3>tPOD summary</h3>")
    body.append(_table(potency) if len(potency) else "<p>No compound had dose-response "
                "fits.</p>")
    curves = {name: png for name, png in plots.items() if name.startswith("curves_")}
    if curves:
        body.append("<h3>Dose-response curves of the most sensitive genes and scores</h3>")
        body.append("<div class='plots'>" + "".join(_img(png, name)
                                                    for name, png in curves.items()) + "</div>")
    return body


def build_report(*, study: dict, samples: pd.DataFrame, sample_qc: pd.DataFrame,
                 results: pd.DataFrame, enrichment: pd.DataFrame, plots: dict[str, bytes],
                 design: pd.DataFrame | None = None) -> str:
    """Render the report as one HTML string with every plot embedded.

    Parameters
    ----------
    study
        Study settings: id, title, kind, organism, design, batch, alpha, lfc_threshold.
    samples
        The sample sheet table.
    sample_qc
        Per-sample QC with outlier flags and reasons.
    results
        DEG results of every contrast.
    enrichment
        Enrichment results (may be empty).
    plots
        PNG bytes by name: ``qc_*`` plots and ``pvalues_<contrast>`` p-value histograms (and
        the design and activity heatmaps).
    design
        The study's design_diagnostics.
    """
    alpha = study["alpha"]
    esc = html.escape
    flagged = sample_qc[sample_qc["outlier"]]
    contrasts = list(results["contrast"].unique())
    parts = [
        "<h2>Design</h2>",
        _table(pd.DataFrame([{k: study.get(k) for k in
                              ("id", "kind", "organism", "design", "batch", "alpha",
                               "lfc_threshold")}])),
        "<p class='note'>Tests model the batch as a design covariate. The batch-corrected "
        "matrix (limma removeBatchEffect on the VST) is for visualization and export only.</p>",
        _table(samples.drop(columns=[c for c in STAT_COLUMNS if c in samples.columns])),
        *_counting_section(samples),
        "<h2>Quality control</h2>",
        ("<p class='flag'>Possible outlier samples: " + "; ".join(
            f"<b>{esc(str(s))}</b>: {esc(r)}" for s, r in flagged["outlier_reason"].items())
         + "</p>") if len(flagged) else "<p>No sample flagged as a likely outlier.</p>",
        _table(sample_qc.reset_index().drop(columns=[
            c for c in STAT_COLUMNS if c in sample_qc and c not in _counting_columns(samples)])),
        "<div class='plots'>" + "".join(_img(png, name) for name, png in plots.items()
                                        if name.startswith("qc_")) + "</div>",
        f"<h2>Differential expression (padj &lt; {alpha})</h2>",
        _table(deg_summary(results, alpha)),
        deg_explorer({c: results[results["contrast"] == c] for c in contrasts}, alpha=alpha,
                     lfc_threshold=study["lfc_threshold"]),
        *_pvalue_histograms(plots, contrasts),
        *_enrichment_section(enrichment, [(c, None) for c in contrasts]),
    ]
    return _page(f"{study['id']} - DGE report", study["title"],
                 parts + _design_section(plots, design) + _activity_section(plots))


def _counting_columns(samples: pd.DataFrame) -> list[str]:
    """The counting statistics worth showing: none when every sample's counts came from a
    count matrix, else those with a value for some sample."""
    if "count_source" not in samples or (samples["count_source"] == "matrix").all():
        return []
    return [c for c in STAT_COLUMNS if samples[c].notna().any()]


def _counting_section(samples: pd.DataFrame) -> list[str]:
    """How each sample's fragments were assigned, when counts were built from BAM,
    quantifier or FASTQ files (the qc_fragment_assignment plot shows the same)."""
    columns = _counting_columns(samples)
    if not columns:
        return []
    stats = samples.set_index("sample")[columns]
    source = html.escape(str(stats["count_source"].iloc[0]))
    return ["<h2>Counting</h2>", f"<p>Counts built from {source} input: fragments per sample "
            "by outcome (featureCounts' categories; only assigned fragments are counted).</p>",
            _table(stats.reset_index())]


def build_singlecell_report(*, study: dict, cell_qc: pd.DataFrame,
                            pseudobulks: pd.DataFrame, results: pd.DataFrame,
                            enrichment: pd.DataFrame, markers: pd.DataFrame,
                            plots: dict[str, bytes], untested: dict[str, str],
                            design: pd.DataFrame | None = None) -> str:
    """Render a single-cell study's report: cell QC, embeddings, pseudobulks, the design
    diagnostics per cell type, DEGs and enrichment per cell type, and the exploratory markers.

    Parameters
    ----------
    study
        Study settings: id, title, organism, design, donor, batch, alpha, lfc_threshold.
    cell_qc, pseudobulks, results, enrichment, markers
        The study's cell_qc, pseudobulk_samples, deg_results, enrichment and marker_genes.
    plots
        PNG bytes by name: ``cell_qc``, ``umap_*`` (and the design and activity heatmaps).
    untested
        Cell type x contrast pairs left untested, with the reason.
    design
        The study's design_diagnostics (per cell type).
    """
    esc = html.escape
    alpha = study["alpha"]
    failed = failed_by_reason(cell_qc).reset_index()
    per_type = pseudobulk_summary(pseudobulks)
    body = [
        "<h2>Design</h2>",
        _table(pd.DataFrame([{k: study.get(k) for k in
                              ("id", "organism", "design", "donor", "batch", "alpha")}])),
        "<p class='note'>Differential expression is tested per cell type on pseudobulks (raw "
        "counts of QC-passed cells summed per donor x condition) with DESeq2: donors are the "
        "replicates. Per-cell tests (markers below) are exploratory only.</p>",
        f"<h2>Cell QC ({int(cell_qc['passed'].sum()):,} of {len(cell_qc):,} cells passed)</h2>",
        _table(failed) if len(failed) else "<p>Every cell passed QC.</p>",
        "<div class='plots'>" + "".join(_img(png, name) for name, png in plots.items()
                                        if name == "cell_qc") + "</div>",
        "<h2>Embedding (UMAP before and after integration)</h2>",
        "<div class='plots'>" + "".join(_img(png, name) for name, png in plots.items()
                                        if name.startswith("umap_")) + "</div>",
        "<h2>Pseudobulks per cell type</h2>", _table(per_type),
    ]
    dropped = pseudobulks[~pseudobulks["kept"].astype(bool)]
    if len(dropped):
        body += ["<p class='flag'>Dropped pseudobulks:</p>",
                 _table(dropped[["pseudobulk_sample", "n_cells", "reason"]])]
    if untested:
        body += ["<p class='flag'>Not tested: " + "; ".join(
            f"<b>{esc(k)}</b>: {esc(v)}" for k, v in untested.items()) + "</p>"]
    body += _design_section(plots, design)
    body += [f"<h2>Differential expression (padj &lt; {alpha})</h2>",
             _table(deg_summary(results, alpha, by=("contrast", "cell_type")))]
    groups = dict(list(results.groupby(["contrast", "cell_type"], sort=True)))
    body += [deg_explorer({f"{contrast}: {cell_type}": rows
                           for (contrast, cell_type), rows in groups.items()},
                          alpha=alpha, lfc_threshold=study["lfc_threshold"],
                          label="Contrast and cell type"),
             *_enrichment_section(enrichment, list(groups))]
    top = markers[markers["rank"] <= 10].groupby("cell_type")["gene_symbol"].agg(
        lambda s: ", ".join(s.astype(str))).reset_index(name="top markers")
    body += ["<h2>Marker genes (exploratory)</h2>",
             "<p class='note'>Per-cell Wilcoxon of each cell type against all other cells: "
             "cells are not independent replicates, so these p-values are not valid for "
             "inference.</p>", _table(top)]
    return _page(f"{study['id']} - single-cell report", study["title"],
                 body + _activity_section(plots))
