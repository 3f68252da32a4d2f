"""A self-contained HTML report per study: design, QC, DEG summary, top genes, plots."""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime

import pandas as pd

from dge_platform.bulk.diagnostics import design_warnings
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


def top_genes(results: pd.DataFrame, contrast: str, n: int = 20) -> pd.DataFrame:
    """The ``n`` genes with the smallest adjusted p-value in one contrast."""
    table = results[results["contrast"] == contrast].dropna(subset=["padj"])
    cols = ["gene_id", "gene_symbol", "base_mean", "log2_fold_change",
            "log2_fold_change_shrunk", "pvalue", "padj"]
    return table.nsmallest(n, "padj")[[c for c in cols if c in table.columns]]


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, float_format=lambda v: f"{v:.4g}", na_rep="")


def top_terms(enrichment: pd.DataFrame, contrast: str, n: int = 10) -> pd.DataFrame:
    """The ``n`` terms with the smallest adjusted p-value per method in one contrast (pass
    one cell type's rows for single-cell studies)."""
    table = enrichment[enrichment["contrast"] == contrast].dropna(subset=["padj"])
    top = table.sort_values("padj").groupby("method", sort=True).head(n)
    return top[["method", "collection", "term", "size", "score", "padj"]]


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


def _page(title: str, body: list[str]) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([f"<!doctype html><html><head><meta charset='utf-8'><title>"
                      f"{html.escape(title)}</title><style>{STYLE}</style></head><body>", *body,
                      f"<p><small>dge-platform, {stamp}</small></p></body></html>"])


def build_screen_report(*, study: dict, well_qc: pd.DataFrame, activity: pd.DataFrame,
                        potency: pd.DataFrame, similarity: pd.DataFrame,
                        results: pd.DataFrame, plots: dict[str, bytes],
                        max_conditions: int = 20, design: pd.DataFrame | None = None) -> str:
    """Render a screen's report: well QC with plate heatmaps, activity calls against the
    control null, potency, MoA neighbours and the top genes of the most active conditions.

    Parameters
    ----------
    study
        Study settings: id, title, organism, design, control, alpha, lfc_threshold.
    well_qc, activity, potency, similarity
        The screen's tables of the same names.
    results
        DEG results of every condition.
    plots
        PNG bytes by name: plate heatmaps (``plate_*``) and ``similarity_heatmap``.
    max_conditions
        Active conditions whose top genes are listed, most DEGs first.
    """
    esc = html.escape
    failed = well_qc[~well_qc["passed"].astype(bool)]
    roles = well_qc.groupby("well_type")["passed"].agg(wells="size", passed="sum").reset_index()
    active = activity[activity["active"].astype(bool)].sort_values("n_deg", ascending=False)
    body = [
        f"<h1>{esc(study['title'])}</h1>", "<h2>Design</h2>",
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
        "<h2>Potency (tPOD: median BMD of the 20 most sensitive genes)</h2>",
        _table(potency) if len(potency) else "<p>No compound had dose-response fits.</p>",
        "<h2>Compound similarity (nearest conditions of other compounds)</h2>",
        _table(similarity) if len(similarity) else "<p>Fewer than two active conditions: "
        "nothing to compare.</p>",
        "<div class='plots'>" + "".join(_img(png, name) for name, png in plots.items()
                                        if name == "similarity_heatmap") + "</div>",
    ]
    body += _design_section(plots, design) + _activity_section(plots)
    for contrast in active["contrast"].head(max_conditions):
        body += [f"<h3>{esc(contrast)}</h3>", _table(top_genes(results, contrast))]
    return _page(f"{study['id']} - screen report", body)


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
        PNG bytes by name: ``qc_*`` plots and ``<kind>_<contrast>`` per-contrast plots.
    """
    alpha = study["alpha"]
    esc = html.escape
    flagged = sample_qc[sample_qc["outlier"]]
    parts = [
        f"<h1>{esc(study['title'])}</h1>",
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
        _table(sample_qc.reset_index()),
        "<div class='plots'>" + "".join(_img(png, name) for name, png in plots.items()
                                        if name.startswith("qc_")) + "</div>",
        f"<h2>Differential expression (padj &lt; {alpha})</h2>",
        _table(deg_summary(results, alpha)),
    ]
    for contrast in results["contrast"].unique():
        terms = top_terms(enrichment, contrast)
        parts += [f"<h3>{esc(contrast)}</h3>", _table(top_genes(results, contrast)),
                  "<h4>Top enriched terms</h4>",
                  _table(terms) if len(terms) else "<p>No enrichment results (no gene set "
                  "collection for this organism; add gene_sets: to study.yaml).</p>",
                  "<div class='plots'>" + "".join(
                      _img(png, name) for name, png in plots.items()
                      if name.endswith(f"_{contrast}") and not name.startswith("qc_")) + "</div>"]
    return _page(f"{study['id']} - DGE report",
                 parts + _design_section(plots, design) + _activity_section(plots))


def _counting_section(samples: pd.DataFrame) -> list[str]:
    """How each sample's fragments were assigned, when counts were built from BAM,
    quantifier or FASTQ files (the qc_fragment_assignment plot shows the same)."""
    if "count_source" not in samples or (samples["count_source"] == "matrix").all():
        return []
    stats = samples.set_index("sample")[list(STAT_COLUMNS)].dropna(axis=1, how="all")
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
        Study settings: id, title, organism, design, donor, batch, alpha.
    cell_qc, pseudobulks, results, enrichment, markers
        The study's cell_qc, pseudobulk_samples, deg_results, enrichment and marker_genes.
    plots
        PNG bytes by name: ``cell_qc``, ``umap_*`` and ``volcano_<contrast>_<cell type>``.
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
        f"<h1>{esc(study['title'])}</h1>", "<h2>Design</h2>",
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
    for (contrast, cell_type), rows in results.groupby(["contrast", "cell_type"], sort=True):
        terms = top_terms(enrichment[enrichment["cell_type"] == cell_type], contrast)
        body += [f"<h3>{esc(contrast)}: {esc(cell_type)}</h3>", _table(top_genes(rows, contrast)),
                 "<h4>Top enriched terms</h4>",
                 _table(terms) if len(terms) else "<p>No enrichment results.</p>",
                 "<div class='plots'>" + "".join(
                     _img(png, name) for name, png in plots.items()
                     if name == f"volcano_{contrast}_{cell_type}") + "</div>"]
    top = markers[markers["rank"] <= 10].groupby("cell_type")["gene_symbol"].agg(
        lambda s: ", ".join(s.astype(str))).reset_index(name="top markers")
    body += ["<h2>Marker genes (exploratory)</h2>",
             "<p class='note'>Per-cell Wilcoxon of each cell type against all other cells: "
             "cells are not independent replicates, so these p-values are not valid for "
             "inference.</p>", _table(top)]
    return _page(f"{study['id']} - single-cell report", body + _activity_section(plots))
