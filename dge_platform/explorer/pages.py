"""The explorer's pages: each a function of the data, the URL's path values and its query.

A page returns Dash components, or raises :class:`NotFound` (what was asked, and what exists)
or :class:`~.data.FilterError` (a filter it cannot apply, and what it accepts). URLs are
stable and carry every filter, so a link reproduces the view.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlencode

import dash_ag_grid as dag
import pandas as pd
from dash import dcc, html

from dge_platform.explorer import figures
from dge_platform.explorer.data import DEG_COLUMNS, DegFilter, ExplorerData, FilterError
from dge_platform.outputs import interactive

LIST_LIMIT = 40
"""Items a not-found page lists (with a count of the rest)."""
STATES = ("up", "down", "unchanged")


@dataclass
class NotFound(Exception):
    """What the URL names does not exist: ``what`` it was, and links to what does."""

    what: str
    available: list[tuple[str, str]]  # (label, href)
    kind: str = "page"


def path(*parts: str) -> str:
    """A URL path from its parts, each quoted (a contrast may hold any character)."""
    return "/" + "/".join(quote(str(p), safe="") for p in parts)


def link(label: object, href: str) -> dcc.Link:
    return dcc.Link(str(label), href=href)


SMALL_TABLE = 15
"""Rows up to which a table is plain HTML; longer ones are AG Grid (Dash renders one
component per HTML cell, slow for a plate's 384 wells)."""


def table(frame: pd.DataFrame, links: dict[str, Callable[[pd.Series], str]] | None = None,
          table_id: str | None = None, height: int = 420,
          grid: bool = False) -> html.Table | dag.AgGrid:
    """A table; ``links`` turns a column's cells into links (row -> href) inside the app.
    Long tables (or any, with ``grid``) are AG Grid: sortable, filterable, paged in the
    browser."""
    links = links or {}
    if len(frame) <= SMALL_TABLE and not grid:
        return _html_table(frame, links, table_id)
    rows = frame.astype(object).where(frame.notna(), None)
    for column, href in links.items():
        rows[f"{column}__href"] = [href(row) if row[column] is not None else None
                                   for _, row in rows.iterrows()]
    columns = []
    for column in frame.columns:
        spec = {"field": column, "headerName": column.replace("_", " ")}
        if pd.api.types.is_float_dtype(frame[column]):
            spec.update(type="numericColumn", filter="agNumberColumnFilter",
                        valueFormatter={"function": "params.value == null ? '' : "
                                        "d3.format('.4~g')(params.value)"})
        elif pd.api.types.is_integer_dtype(frame[column]):
            spec.update(type="numericColumn", filter="agNumberColumnFilter")
        if column in links:
            spec["cellRenderer"] = "Link"
        columns.append(spec)
    kwargs = {"id": table_id} if table_id else {}
    return dag.AgGrid(
        rowData=rows.to_dict("records"), columnDefs=columns, columnSize="autoSize",
        defaultColDef={"sortable": True, "filter": True, "resizable": True},
        dashGridOptions={"pagination": len(frame) > 200, "paginationPageSize": 100},
        style={"height": f"{height}px"}, className="ag-theme-alpine", **kwargs)


def _html_table(frame: pd.DataFrame, links: dict[str, Callable[[pd.Series], str]],
                table_id: str | None) -> html.Table:
    def cell(row: pd.Series, column: str):
        value = row[column]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if value is None or value is pd.NA or (isinstance(value, float) and value != value):
            text = ""
        elif isinstance(value, float):
            text = f"{value:.4g}"
        else:
            text = str(value)
        href = links[column](row) if column in links and text else None
        content = link(text, href) if href else text
        return html.Td(content, className="num" if number else None)

    head = html.Thead(html.Tr([html.Th(c.replace("_", " ")) for c in frame.columns]))
    body = html.Tbody([html.Tr([cell(row, c) for c in frame.columns])
                       for _, row in frame.iterrows()])
    return html.Table([head, body], className="data", **({"id": table_id} if table_id else {}))


def section(title: str, *children, anchor: str | None = None) -> html.Section:
    return html.Section([html.H2(title, id=anchor or re.sub(r"\W+", "-", title.lower())),
                         *children])


def graph(figure, graph_id: str) -> dcc.Graph:
    return dcc.Graph(id=graph_id, figure=figure, config={"displaylogo": False,
                                                         "toImageButtonOptions": {"scale": 2}})


def _one(query: dict[str, str], key: str) -> str | None:
    value = query.get(key)
    return value if value else None


# --- /

def home(data: ExplorerData, query: dict[str, str]) -> list:
    studies = data.studies()
    shown = studies.assign(last_run=studies["materialized_at"].astype(str).str[:16])[
        ["study_id", "kind", "title", "n_samples", "contrasts", "degs", "last_run"]]
    shown = shown.rename(columns={"n_samples": "samples", "degs": "DEGs"})
    return [
        html.H1("Studies"),
        html.P(f"{len(studies)} studies in the warehouse. Open a study, follow a gene across "
               "every study, or find genes by their behaviour in several contrasts."),
        html.Div([dcc.Input(id="gene-search", placeholder="gene symbol or Ensembl id, e.g. "
                            "FKBP5", debounce=True, className="wide"),
                  html.Button("Find gene", id="gene-go"),
                  link("Multi-contrast filter", "/filter")], className="controls"),
        table(shown, {"study_id": lambda r: path("studies", r["study_id"])},
              table_id="studies-table"),
    ]


# --- /studies/<id>

def _study(data: ExplorerData, study_id: str) -> dict:
    study = data.study(study_id)
    if study is None:
        raise NotFound(f"study '{study_id}'", [(s, path("studies", s)) for s in data.study_ids()],
                       "study")
    return study


def contrast_href(study_id: str, contrast: str, cell_type: str | None) -> str:
    href = path("studies", study_id, "contrasts", contrast)
    return href + (f"?{urlencode({'cell_type': cell_type})}" if cell_type else "")


def study_page(data: ExplorerData, query: dict[str, str], study_id: str) -> list:
    study = _study(data, study_id)
    kind = study["kind"]
    contrasts = data.contrasts(study_id)
    facts = pd.DataFrame([{"kind": kind, "organism": study["organism"],
                           "design": study["design"], "batch": study.get("batch"),
                           "samples": study["n_samples"], "genes": study["n_genes"],
                           "alpha": study["alpha"],
                           "last run": str(study["materialized_at"])[:16]}])
    shown = contrasts.drop(columns=[c for c in ("compound", "dose", "cell_type")
                                    if contrasts[c].isna().all()])
    body = [html.H1(study["title"] or study_id), html.P(study_id, className="muted"),
            table(facts),
            section("Contrasts", html.P("DEGs are the study's calls (padj < alpha and "
                                        "|log2FC| above its threshold)."),
                    table(shown, {"contrast": lambda r: contrast_href(
                        study_id, r["contrast"], r.get("cell_type"))},
                          table_id="contrasts-table"))]
    sets = data.deg_sets(study_id)
    if len(sets) > 1:
        body.append(section("Overlap of DEG sets", graph(figures.upset(sets), "upset")))
    if kind == "screen":
        body += _screen_links(data, study_id)
    if kind == "singlecell":
        body += _singlecell_sections(data, study_id, query)
    else:
        body += _qc_sections(data, study_id, query)
    design = data.design_diagnostics(study_id)
    if not design.empty:
        shares = design[design["component"] == "variance_partition"]
        body.append(section("Design diagnostics", graph(figures.association_heatmap(design),
                                                        "pc-associations"),
                            html.P("Median share of each gene's variance per variable:"),
                            table(shares[["cell_type", "variable", "in_design", "statistic"]]
                                  .dropna(axis=1, how="all")
                                  .rename(columns={"statistic": "share"}))))
    body.append(section("Samples", table(data.per_sample("samples", study_id),
                                         table_id="samples-table")))
    return body


def _qc_sections(data: ExplorerData, study_id: str, query: dict[str, str]) -> list:
    qc = data.per_sample("sample_qc", study_id)
    if qc.empty or "pc1" not in qc:
        return []
    samples = data.per_sample("samples", study_id)
    variables = [c for c in samples.columns if c != "sample"
                 and 1 < samples[c].astype(str).nunique() <= max(2, len(samples) - 1)]
    colour = query.get("colour") if query.get("colour") in variables else (
        variables[0] if variables else None)
    if query.get("colour") and query["colour"] not in variables:
        raise FilterError(f"colour={query['colour']!r} is not a sample variable of "
                          f"{study_id}: choose one of {', '.join(variables)}")
    outliers = qc[[c for c in ("sample", "library_size", "mean_distance", "outlier",
                               "outlier_reason") if c in qc]]
    return [section("Quality control",
                    html.Div([html.Label("Colour by "),
                              dcc.Dropdown(id="pca-colour", options=variables, value=colour,
                                           clearable=False, className="narrow")],
                             className="controls"),
                    graph(figures.pca(qc, samples, colour), "pca"),
                    html.P("Mean distance of each sample to the others (VST); outliers are "
                           "flagged by QC."),
                    table(outliers, table_id="outliers"))]


def _screen_links(data: ExplorerData, study_id: str) -> list:
    plates = data.plates(study_id)
    compounds = data.compounds(study_id)
    body = [section("Plates", html.Ul([html.Li(link(p, path("studies", study_id, "plates", p)))
                                       for p in plates])),
            section("Compounds", html.Ul([html.Li(link(c, path("studies", study_id,
                                                               "compounds", c)))
                                          for c in compounds], className="columns"))]
    combinations = data.combinations(study_id)
    if not combinations.empty:
        called = int(combinations["nonadditive"].fillna(False).astype(bool).sum())
        body.append(section(
            "Combinations",
            html.P(f"{called} of {len(combinations)} combinations non-additive: more genes "
                   "with an interaction (AB - A - B + control, padj < alpha) than the 95th "
                   "percentile of the plate's null of relabelled control and monotherapy "
                   "wells.", id="combinations-summary"),
            table(combinations[COMBINATION_COLUMNS].rename(columns=COMBINATION_HEADERS),
                  {"combination": lambda r: combination_href(study_id, r["combination"])},
                  table_id="combinations-table")))
    consistency = data.retrieval(study_id, "consistency")
    activity = data.retrieval(study_id, "activity")
    if not consistency.empty or not activity.empty:
        retrieved = int(activity["retrieved"].fillna(False).astype(bool).sum()) \
            if not activity.empty else 0
        shown = consistency.rename(columns={"name": "moa_class", "n_profiles": "conditions"})
        shown = shown[[c for c in ("moa_class", "conditions", "map", "pvalue", "padj",
                                   "retrieved") if c in shown]]
        body.append(section(
            "Mechanism of action",
            html.P(f"Activity: {retrieved} of {len(activity)} conditions retrieved against "
                   "their plate's controls (mean average precision, permutation p; per "
                   "compound on its page). Consistency: are each MoA class's conditions "
                   "retrieved before the other classes'?", id="moa-summary"),
            table(shown, table_id="moa-consistency") if not shown.empty
            else html.P("No MoA class has enough annotated conditions to test."
                        if not activity.empty and activity["moa"].notna().any() else
                        "The plate map names no MoA class (a moa or target column): no "
                        "consistency to test.")))
    return body


def _singlecell_sections(data: ExplorerData, study_id: str, query: dict[str, str]) -> list:
    cells = data.umap(study_id)
    sections = []
    if not cells.empty:
        options = [c for c in ("cell_type", "donor", "sample", "cluster", "passed")
                   if c in cells and cells[c].notna().any()]
        colour = query.get("colour", "cell_type")
        if colour not in options:
            raise FilterError(f"colour={colour!r}: choose one of {', '.join(options)}")
        sections.append(section(
            "Cells", html.Div([html.Label("Colour by "),
                               dcc.Dropdown(id="umap-colour", options=options, value=colour,
                                            clearable=False, className="narrow")],
                              className="controls"),
            graph(figures.umap(cells, colour), "umap")))
    pseudobulks = data.pseudobulks(study_id)
    if not pseudobulks.empty:
        sections.append(section("Pseudobulks", html.P("Raw counts of QC-passed cells summed "
                                                      "per cell type and sample: the units "
                                                      "DESeq2 tests."), table(pseudobulks)))
    return sections


# --- /studies/<id>/contrasts/<contrast>

DEG_HEADERS = {"gene_symbol": "symbol", "gene_id": "gene id", "base_mean": "base mean",
               "log2_fold_change": "log2FC", "log2_fold_change_shrunk": "log2FC (shrunk)",
               "lfc_se": "lfcSE", "stat": "stat", "pvalue": "p", "padj": "padj",
               "significant": "DEG"}


def deg_grid(filters: DegFilter, sort: list[dict]) -> dag.AgGrid:
    """The DEG table: AG Grid's infinite row model, pages fetched from the server."""
    number = {"filter": "agNumberColumnFilter",
              "valueFormatter": {"function": "params.value == null ? '' : "
                                 "d3.format('.4~g')(params.value)"}}
    columns = []
    for column in DEG_COLUMNS:
        spec = {"field": column, "headerName": DEG_HEADERS[column]}
        if column in ("gene_symbol", "gene_id"):
            spec.update(filter="agTextColumnFilter", minWidth=140)
        elif column == "significant":
            spec["filter"] = False
        else:
            spec.update(number)
        if column == "gene_symbol":
            spec["cellRenderer"] = "GeneLink"
        sorted_as = next((s.get("sort") for s in sort if s.get("colId") == column), None)
        if sorted_as:
            spec["sort"] = sorted_as
        columns.append(spec)
    return dag.AgGrid(
        id="deg-grid", rowModelType="infinite", columnDefs=columns,
        defaultColDef={"sortable": True, "resizable": True, "flex": 1, "minWidth": 90,
                       "filterParams": {"buttons": ["apply", "reset"], "closeOnApply": True,
                                        "maxNumConditions": 2}},
        dashGridOptions={"pagination": True, "paginationPageSize": 50,
                         "cacheBlockSize": 50, "maxBlocksInCache": 40,
                         "paginationPageSizeSelector": [50, 100, 500]},
        filterModel=filters.grid, style={"height": "560px"}, className="ag-theme-alpine")


def _contrast(data: ExplorerData, study_id: str, contrast: str, cell_type: str | None) -> dict:
    study = _study(data, study_id)
    if not data.has_contrast(study_id, contrast, cell_type):
        contrasts = data.contrasts(study_id)
        raise NotFound(f"contrast '{contrast}'" + (f" (cell type '{cell_type}')"
                                                    if cell_type else "") + f" in {study_id}",
                       [(" / ".join(filter(None, (r.contrast, r.cell_type))),
                         contrast_href(study_id, r.contrast, r.cell_type))
                        for r in contrasts.itertuples()], "contrast")
    return study


def contrast_page(data: ExplorerData, query: dict[str, str], study_id: str,
                  contrast: str) -> list:
    cell_type = _one(query, "cell_type")
    study = _contrast(data, study_id, contrast, cell_type)
    filters = DegFilter.from_query(query)
    sort = parse_sort(query)
    points = data.volcano(study_id, contrast, cell_type)
    title = " / ".join(filter(None, (contrast, cell_type)))
    counts = data.contrasts(study_id)
    row = counts[(counts["contrast"] == contrast)
                 & ((counts["cell_type"] == cell_type) if cell_type
                    else counts["cell_type"].isna())].iloc[0]
    enrichment = data.enrichment(study_id, contrast, cell_type)
    body = [html.P(link(f"← {study['title'] or study_id}", path("studies", study_id))),
            html.H1(title),
            html.P(f"{int(row['tested']):,} genes tested; {int(row['up']):,} up and "
                   f"{int(row['down']):,} down (the study's DEG calls). Click a point to open "
                   "the gene.", id="contrast-summary"),
            html.Div([graph(figures.volcano(points, study["alpha"], study["lfc_threshold"],
                                            title), "volcano"),
                      graph(figures.volcano(points, study["alpha"], study["lfc_threshold"],
                                            title, kind="ma"), "ma")],
                     className="two"),
            dcc.Store(id="deg-key", data={"study_id": study_id, "contrast": contrast,
                                          "cell_type": cell_type}),
            section("Genes", _filter_controls(filters),
                    html.Div(id="deg-count", className="muted"),
                    deg_grid(filters, sort),
                    html.Div([html.A("Download CSV", id="download-csv", href="#"),
                              html.A("Download Excel", id="download-xlsx", href="#")],
                             className="controls"))]
    if not enrichment.empty:
        body.append(section("Enrichment", html.P("The 30 terms of smallest padj over the "
                                                 "methods (ORA of up and down genes, GSEA)."),
                            table(readable_terms(enrichment), table_id="enrichment-table")))
    for name, title in (("pathway_activity", "Pathway activity (PROGENy)"),
                        ("tf_activity", "TF activity")):
        scores = data.activity(name, study_id, contrast, cell_type)
        if not scores.empty:
            body.append(section(title, table(scores, table_id=f"{name}-table")))
    return body


def readable_terms(enrichment: pd.DataFrame) -> pd.DataFrame:
    """GO terms as their name, the id in its own column ("GO:0006950_response_to_stress" ->
    "response to stress", "GO:0006950")."""
    parts = enrichment["term"].str.extract(r"^(?P<id>GO:\d+)_(?P<name>.*)$")
    named = enrichment.assign(term=parts["name"].str.replace("_", " ").fillna(enrichment["term"]),
                              term_id=parts["id"])
    columns = ["method", "collection", "term", "term_id", "size", "score", "padj"]
    return named[columns].dropna(axis=1, how="all")


def _filter_controls(filters: DegFilter) -> html.Div:
    def number(value: float | None) -> str:
        return "" if value is None else f"{value:g}"

    return html.Div([
        dcc.Input(id="f-search", value=filters.search, placeholder="symbol or id contains"),
        html.Label("padj ≤"), dcc.Input(id="f-padj", value=number(filters.padj_max),
                                         placeholder="e.g. 0.05", className="short"),
        html.Label("|log2FC| ≥"), dcc.Input(id="f-lfc", value=number(filters.abs_lfc_min),
                                             placeholder="e.g. 1", className="short"),
        dcc.Dropdown(id="f-direction", options=["any", "up", "down"], value=filters.direction,
                     clearable=False, className="narrow"),
        html.Button("Apply", id="f-apply"), html.Button("Clear", id="f-clear")],
        className="controls")


def parse_sort(query: dict[str, str]) -> list[dict]:
    text = query.get("sort", "")
    if not text:
        return []
    column, _, direction = text.partition(":")
    if column not in DEG_COLUMNS or direction not in ("", "asc", "desc"):
        raise FilterError(f"sort={text!r}: give <column>:asc or <column>:desc with a column "
                          f"of {', '.join(DEG_COLUMNS)}")
    return [{"colId": column, "sort": direction or "asc"}]


# --- /genes/<gene>

def _gene(data: ExplorerData, gene: str) -> pd.DataFrame:
    ids = data.resolve_gene(gene)
    if ids.empty:
        raise NotFound(f"gene '{gene}' in any study", [("search genes from the studies page",
                                                          "/")], "page")
    return ids


def gene_page(data: ExplorerData, query: dict[str, str], gene: str) -> list:
    ids = _gene(data, gene)
    gene_ids = sorted(ids["gene_id"].unique())
    symbols = sorted(ids["gene_symbol"].dropna().unique())
    results = data.gene_results(gene_ids, symbols)
    name = symbols[0] if symbols else gene_ids[0]
    body = [html.H1(name), html.P(", ".join(gene_ids), className="muted")]
    if results.empty:
        return [*body, html.P("The gene is in the studies' annotation but no contrast tested "
                              "it.")]
    shown = results.assign(DEG=results["significant"].fillna(False))[
        ["study_id", "contrast", "cell_type", "log2_fold_change", "lfc_se", "padj", "DEG"]]
    shown = shown.dropna(axis=1, how="all")
    body += [html.P(f"Tested in {results['study_id'].nunique()} studies, {len(results)} "
                    f"contrasts; a DEG in {int(results['significant'].fillna(False).sum())}.",
                    id="gene-summary"),
             graph(figures.gene_effects(results, f"{name}: log2 fold change"), "gene-effects"),
             table(shown, {"study_id": lambda r: path("studies", r["study_id"]),
                           "contrast": lambda r: contrast_href(r["study_id"], r["contrast"],
                                                               r.get("cell_type"))},
                   table_id="gene-results")]
    recurrence = data.recurrence(gene_ids, symbols)
    if not recurrence.empty:
        body.append(section("Where it recurs", html.P("Across the warehouse's studies "
                                                      "(table gene_recurrence)."),
                            table(recurrence.drop(columns=["gene_key"]))))
    body.append(section("Normalized counts", *_count_plots(data, gene_ids, results, name)))
    return body


def _count_plots(data: ExplorerData, gene_ids: list[str], results: pd.DataFrame,
                 name: str) -> list:
    counts = data.gene_counts(gene_ids)
    plots = []
    for study_id, rows in counts.groupby("study_id", sort=True):
        group = _group_column(data, study_id, rows)
        if group is None:
            continue
        plots.append(graph(figures.counts_by_group(rows, group, f"{name} in {study_id}"),
                           f"counts-{study_id}"))
    return plots or [html.P("No normalized counts for this gene.")]


def _group_column(data: ExplorerData, study_id: str, rows: pd.DataFrame) -> str | None:
    """The factor of the study's first contrast, if the sample sheet has it."""
    study = data.study(study_id)
    contrasts = json.loads(study["contrasts"]) if study and study.get("contrasts") else []
    for candidate in [c.get("factor") for c in contrasts] + ["condition", "compound"]:
        if candidate in rows and rows[candidate].notna().any():
            return candidate
    return None


# --- /studies/<id>/plates/<plate>, /studies/<id>/compounds/<compound>

QC_METRICS = ("total_counts", "genes_detected", "pct_mito", "control_correlation")


def _plate(data: ExplorerData, study_id: str, plate: str) -> dict:
    study = _study(data, study_id)
    plates = data.plates(study_id)
    if plate not in plates:
        raise NotFound(f"plate '{plate}' in {study_id}",
                       [(p, path("studies", study_id, "plates", p)) for p in plates], "plate")
    return study


def plate_page(data: ExplorerData, query: dict[str, str], study_id: str, plate: str) -> list:
    study = _plate(data, study_id, plate)
    wells = data.wells(study_id, plate)
    metrics = [m for m in QC_METRICS if m in wells and wells[m].notna().any()]
    controls = wells[wells["well_type"].astype(str).str.lower().isin(["control", "dmso",
                                                                      "negative"])
                     | (wells["compound"] == study["config"].get("control"))]
    flagged = controls[~controls["passed"].astype(bool)]
    return [html.P(link(f"← {study['title'] or study_id}", path("studies", study_id))),
            html.H1(f"Plate {plate}"),
            html.P(f"{len(wells)} wells, {int((~wells['passed'].astype(bool)).sum())} failed "
                   f"QC; {len(controls)} control wells, {len(flagged)} flagged.",
                   id="plate-summary"),
            html.Div([graph(figures.plate_heatmap(wells, m), f"plate-{m}") for m in metrics],
                     className="two"),
            section("Control wells flagged", table(flagged[["well", "compound", "total_counts",
                                                            "genes_detected", "reason"]])
                    if len(flagged) else html.P("No control well failed QC."))]


def _compound(data: ExplorerData, study_id: str, compound: str) -> dict:
    study = _study(data, study_id)
    compounds = data.compounds(study_id)
    if compound not in compounds:
        raise NotFound(f"compound '{compound}' in {study_id}",
                       [(c, path("studies", study_id, "compounds", c)) for c in compounds],
                       "compound")
    return study


def compound_page(data: ExplorerData, query: dict[str, str], study_id: str,
                  compound: str) -> list:
    study = _compound(data, study_id, compound)
    activity = data.compound_activity(study_id, compound)
    body = [html.P(link(f"← {study['title'] or study_id}", path("studies", study_id))),
            html.H1(compound),
            graph(figures.by_dose(activity.assign(DEGs=activity["n_deg"]), "DEGs", None,
                                  "DEGs per dose", "DEGs"), "compound-degs"),
            table(activity[["contrast", "dose", "dose_unit", "n_wells", "n_up", "n_down",
                            "n_deg", "null_threshold", "active"]],
                  {"contrast": lambda r: contrast_href(study_id, r["contrast"], None)},
                  table_id="compound-activity")]
    pathways = data.compound_pathways(study_id, compound)
    if not pathways.empty:
        body.append(section("Pathway activity by dose",
                            graph(figures.by_dose(pathways, "score", "source",
                                                  "PROGENy pathway activity (t)", "score"),
                                  "compound-pathways")))
    body += _dose_sections(data, study, study_id, compound)
    body += _moa_sections(data, study_id, compound)
    return body


def _moa_sections(data: ExplorerData, study_id: str, compound: str) -> list:
    """The compound's activity retrieval per dose, its nearest conditions with their MoA
    classes, and the combinations it is part of."""
    body = []
    activity = data.retrieval(study_id, "activity", compound)
    if not activity.empty:
        classes = sorted(activity["moa"].dropna().unique())
        shown = activity.rename(columns={"name": "contrast", "n_profiles": "wells"})[
            ["contrast", "dose", "wells", "replicate_correlation", "signature_strength", "tas",
             "map", "pvalue", "padj", "retrieved"]]
        body.append(section(
            "Phenotypic activity (retrieval against controls)",
            html.P(("MoA class: " + ", ".join(classes) + ". " if classes else "")
                   + "Per dose: can its wells be told from the plate's controls? Mean average "
                   "precision (map) with its permutation p; replicate correlation (CMap "
                   "cc_q75) and transcriptional activity score (tas).",
                   id="retrieval-summary"),
            table(shown, {"contrast": lambda r: contrast_href(study_id, r["contrast"], None)},
                  table_id="compound-retrieval")))
    neighbours = data.neighbours(study_id, compound)
    if not neighbours.empty:
        neighbours = neighbours.dropna(axis=1, how="all")
        compounds = set(data.compounds(study_id))
        note = ("Neighbour MoA: the nearest condition's class; MoA hypothesis: the class "
                "most enriched among the condition's annotated neighbours (padj: BH over "
                "the conditions)." if "moa_hypothesis" in neighbours else "")
        body.append(section("Nearest compounds", html.P(
            "Conditions of other compounds whose consensus signatures correlate best with "
            "each of this compound's. " + note), table(
            neighbours,
            {"contrast": lambda r: contrast_href(study_id, r["contrast"], None),
             "neighbor_contrast": lambda r: contrast_href(study_id, r["neighbor_contrast"],
                                                          None),
             "neighbor_compound": lambda r: path("studies", study_id, "compounds",
                                                 r["neighbor_compound"])
             if r["neighbor_compound"] in compounds else None},
            table_id="compound-neighbours")))
    combinations = data.combinations(study_id, compound)
    if not combinations.empty:
        body.append(section("Combinations", table(
            combinations[COMBINATION_COLUMNS].rename(columns=COMBINATION_HEADERS),
            {"combination": lambda r: combination_href(study_id, r["combination"])},
            table_id="compound-combinations")))
    return body


_FIT_COLUMNS = ["best_model", "bmd", "bmdl", "bmdu", "hitcall", "ac50", "top", "direction",
                "qc_flags"]


def _dose_sections(data: ExplorerData, study: dict, study_id: str, compound: str) -> list:
    """Points of departure, then the curves of the most sensitive genes and scores with
    their BMD intervals."""
    body = []
    pods = data.pods(study_id, compound)
    if not pods.empty:
        body.append(section("Points of departure (with intervals)", table(pods,
                                                                        table_id="pods")))
    control = study["config"].get("control")
    genes = data.dose_response(study_id, compound)
    if not genes.empty:
        points = data.dose_expression(study_id, compound, genes["gene_id"].tolist(), control)
        fits = genes.assign(key=genes["gene_id"],
                            label=genes["gene_symbol"].astype(object).fillna(genes["gene_id"]))
        body.append(section("Dose response: most sensitive genes", graph(
            interactive.dose_curve_figure(points, fits, "Most sensitive genes (diamond: BMD, "
                                          "bar: BMDL-BMDU; left: controls)", "VST"),
            "dose-curves"), table(genes[["gene_symbol", "gene_id", *_FIT_COLUMNS]],
                                  table_id="dose-fits")))
    scores = data.dose_response(study_id, compound, table="pathway_dose_response")
    if not scores.empty:
        keys = (scores["collection"] + "::" + scores["source"]).tolist()
        points = data.dose_scores(study_id, compound, keys, control)
        fits = scores.assign(key=keys, label=scores["source"])
        body.append(section("Dose response: most sensitive pathway and gene-set scores", graph(
            interactive.dose_curve_figure(points, fits, "Most sensitive scores (diamond: BMD, "
                                          "bar: BMDL-BMDU; left: controls)", "score"),
            "pathway-curves"), table(scores[["collection", "source", *_FIT_COLUMNS]],
                                     table_id="pathway-fits")))
    potency = data.potency(study_id, compound)
    if not potency.empty:
        body.append(section("tPOD summary", table(potency.drop(columns=["study_id"]))))
    return body


# --- /studies/<id>/combinations/<combination>

COMBINATION_COLUMNS = ["combination", "compound_1", "dose_1", "compound_2", "dose_2",
                       "dose_unit", "n_wells", "n_deg", "n_nonadditive", "n_synergistic",
                       "n_antagonistic", "n_emergent", "null_threshold", "pvalue",
                       "nonadditive"]
"""The columns of ``combinations`` the lists show (study page, compound page)."""
COMBINATION_HEADERS = {"n_wells": "wells", "n_deg": "DEGs", "n_nonadditive": "non_additive",
                       "n_synergistic": "synergistic", "n_antagonistic": "antagonistic",
                       "n_emergent": "emergent", "null_threshold": "null_95th",
                       "pvalue": "empirical_p", "nonadditive": "non-additive call"}
NONADDITIVE = ("synergistic", "antagonistic", "emergent")
CLASS_NOTES = {
    "synergistic": "the combination beyond the sum of the agents' effects",
    "antagonistic": "the combination short of that sum",
    "emergent": "changed only by the combination, by neither agent alone",
    "additive": "changed, and as the sum predicts",
    "unchanged": "changed by neither the agents nor the combination"}
_EFFECT_COLUMNS = {"gene_symbol": "gene_symbol", "gene_id": "gene_id",
                   "interaction_class": "class", "log2_fold_change": "interaction_log2fc",
                   "lfc_se": "lfc_se", "padj": "padj", "observed_log2fc": "observed_log2fc",
                   "expected_log2fc": "expected_log2fc", "agent_1_log2fc": "agent_1_log2fc",
                   "agent_2_log2fc": "agent_2_log2fc", "base_mean": "base_mean"}


def combination_href(study_id: str, combination: str) -> str:
    return path("studies", study_id, "combinations", combination)


def _combination(data: ExplorerData, study_id: str, combination: str) -> dict:
    study = _study(data, study_id)
    names = data.combination_names(study_id)
    if combination not in names:
        raise NotFound(f"combination '{combination}' in {study_id}",
                       [(c, combination_href(study_id, c)) for c in names], "combination")
    return study


def combination_page(data: ExplorerData, query: dict[str, str], study_id: str,
                     combination: str) -> list:
    study = _combination(data, study_id, combination)
    summary = data.combinations(study_id)
    row = summary[summary["combination"] == combination].iloc[0]
    effects = data.combination_effects(study_id, combination)
    calls = data.contrasts(study_id)
    compounds = set(data.compounds(study_id))
    unit = row["dose_unit"] or ""
    called = bool(row["nonadditive"])
    body = [html.P(link(f"← {study['title'] or study_id}", path("studies", study_id))),
            html.H1(combination),
            html.P(f"{row['compound_1']} {row['dose_1']:g} {unit} + {row['compound_2']} "
                   f"{row['dose_2']:g} {unit} on plate {row['plate']}, {row['n_wells']} wells",
                   className="muted"),
            html.P([html.Strong("Non-additive" if called else "Additive (within the null)"),
                    ": ", _nonadditive_text(row, study["alpha"])], id="combination-summary")]
    counts = (effects["interaction_class"].value_counts()
              .reindex([*NONADDITIVE, "additive", "unchanged"], fill_value=0))
    classes = pd.DataFrame({"class": counts.index, "genes": counts.to_numpy(),
                            "meaning": [CLASS_NOTES[c] for c in counts.index]})
    plotted = effects.dropna(subset=["observed_log2fc", "expected_log2fc"])
    contrasts = set(calls["contrast"])
    body.append(html.Div([
        graph(figures.combination_scatter(effects, "Observed vs expected log2FC"),
              "combination-scatter"),
        html.Div([
            html.H3("Agents"),
            table(_agents(calls, row), {
                "compound": lambda r: path("studies", study_id, "compounds", r["compound"])
                if r["compound"] in compounds else None,
                "condition": lambda r: contrast_href(study_id, r["condition"], None)
                if r["condition"] in contrasts else None}, table_id="combination-agents"),
            html.H3("Genes per class"), table(classes, table_id="combination-classes"),
            html.P(f"{len(plotted):,} of {len(effects):,} genes plotted (both log2 fold "
                   "changes estimated); the dashed diagonal is additivity (observed = "
                   "agent 1 + agent 2). Interaction: AB - A - B + control on the shared fit "
                   "(DESeq2 Wald, BH within the combination); a class other than additive or "
                   "unchanged needs interaction padj < alpha. Click a point to open the "
                   "gene.", className="muted")])],
        className="two"))
    nonadditive = effects[effects["interaction_class"].isin(NONADDITIVE)]
    shown = nonadditive[[c for c in _EFFECT_COLUMNS if c in nonadditive]] \
        .rename(columns=_EFFECT_COLUMNS).dropna(axis=1, how="all")
    gene = {"gene_id": lambda r: path("genes", r["gene_id"])}
    if "gene_symbol" in shown:
        gene["gene_symbol"] = lambda r: path("genes", r["gene_symbol"])
    body.append(section(
        "Non-additive genes",
        html.P(f"{len(shown):,} genes synergistic, antagonistic or emergent, smallest "
               "interaction padj first; sort or filter any column.", id="nonadditive-count"),
        table(shown, gene, table_id="nonadditive-genes", grid=True) if len(shown)
        else html.P("No gene's interaction reached padj < alpha.")))
    pathways = data.pathway_combination_effects(study_id, combination)
    if not pathways.empty:
        body.append(section(
            "Pathways and gene sets",
            html.P("Per-well scores (PROGENy, Hallmark GSVA): observed and expected "
                   "differences to the controls, their interaction (t-test, BH within the "
                   "combination) and class."),
            table(pathways, table_id="combination-pathways")))
    return body


def _nonadditive_text(row: pd.Series, alpha: float | None) -> str:
    """The call's numbers: non-additive genes against the plate's null, the empirical p."""
    cut = f"padj < {alpha:g}" if alpha is not None and pd.notna(alpha) else "padj < alpha"
    fraction = (f" ({row['frac_nonadditive']:.0%} of its {row['n_deg']:,} DEGs)"
                if pd.notna(row["frac_nonadditive"]) else f" (of {row['n_deg']:,} DEGs)")
    if pd.isna(row["null_threshold"]) or pd.isna(row["pvalue"]):
        null = "no null of relabelled wells on its plate"
    else:
        null = (f"the plate's null of {row['n_null_splits']:,} relabellings of control and "
                f"monotherapy wells: 95th percentile {row['null_threshold']:g}, median "
                f"{row['null_median']:g}; empirical p = {row['pvalue']:.3g}")
    return f"{row['n_nonadditive']:,} genes with an interaction ({cut}){fraction}; {null}."


def _agents(contrasts: pd.DataFrame, row: pd.Series) -> pd.DataFrame:
    """The two agents and the combination: dose, condition and its DEG calls (``contrasts``:
    the study's, as :meth:`~.data.ExplorerData.contrasts` counts them)."""
    calls = contrasts.set_index("contrast")
    unit = f" {row['dose_unit']}" if row["dose_unit"] else ""
    rows = [("agent 1", row["compound_1"], f"{row['dose_1']:g}{unit}", row["mono_1"]),
            ("agent 2", row["compound_2"], f"{row['dose_2']:g}{unit}", row["mono_2"]),
            ("combination", f"{row['compound_1']} + {row['compound_2']}",
             f"{row['dose_1']:g} + {row['dose_2']:g}{unit}", row["combination"])]
    frame = pd.DataFrame(rows, columns=["role", "compound", "dose", "condition"])
    frame["DEGs up/down"] = [f"{int(calls.loc[c, 'up'])} / {int(calls.loc[c, 'down'])}"
                             if c in calls.index else None for c in frame["condition"]]
    return frame


# --- /filter

def condition_value(study_id: str, contrast: str, cell_type: str | None) -> str:
    return "|".join([study_id, contrast, cell_type or ""])


def parse_condition(value: str) -> tuple[str, str, str | None]:
    parts = value.split("|")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise FilterError(f"{value!r} is not a contrast: write study|contrast|cell type "
                          "(cell type empty for bulk studies and screens)")
    return parts[0], parts[1], parts[2] or None


def filter_page(data: ExplorerData, query: dict[str, str]) -> list:
    options = [{"label": " / ".join(filter(None, (r.study_id, r.contrast, r.cell_type))),
                "value": condition_value(r.study_id, r.contrast, r.cell_type)}
               for r in data.all_contrasts().itertuples()]
    valid = {o["value"] for o in options}
    chosen = {state: [v for v in query.get(state, "").split(",") if v] for state in STATES}
    for values in chosen.values():
        for value in values:
            parse_condition(value)
            if value not in valid:
                raise FilterError(f"{value!r} is not a contrast of the warehouse: pick one "
                                  "from the lists")
    alpha = _fraction(query, "alpha", 0.05)
    lfc = _fraction(query, "lfc", 1.0, high=100)
    controls = html.Div([
        *[html.Div([html.Label(f"{state} in"),
                    dcc.Dropdown(id=f"filter-{state}", options=options, value=chosen[state],
                                 multi=True, className="wide")]) for state in STATES],
        html.Div([html.Label("padj <"), dcc.Input(id="filter-alpha", value=f"{alpha:g}",
                                                   className="short"),
                  html.Label("|log2FC| ≥"), dcc.Input(id="filter-lfc", value=f"{lfc:g}",
                                                       className="short"),
                  html.Button("Find genes", id="filter-go")], className="controls")])
    body = [html.H1("Genes by their behaviour in several contrasts"),
            html.P("Up: padj < the cut-off and log2FC ≥ the threshold; down: the same, "
                   "negative; unchanged: tested and not called either way."), controls]
    conditions = [(state, *parse_condition(v)) for state in STATES for v in chosen[state]]
    if not conditions:
        return body
    hits = data.multi_filter(conditions, alpha, lfc)
    genes = hits["gene_symbol"].nunique()
    body.append(html.P(f"{genes} genes", id="filter-count"))
    if genes:
        wide = hits.assign(contrast=[" / ".join(filter(None, (r.study_id, r.contrast,
                                                             r.cell_type)))
                                     for r in hits.itertuples()]) \
            .pivot_table(index="gene_symbol", columns="contrast", values="log2_fold_change",
                         aggfunc="first").reset_index()
        body.append(table(wide, {"gene_symbol": lambda r: path("genes", r["gene_symbol"])},
                          table_id="filter-results"))
    return body


def _fraction(query: dict[str, str], key: str, default: float, high: float = 1.0) -> float:
    text = query.get(key, "")
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise FilterError(f"{key}={text!r} is not a number") from None
    if not 0 <= value <= high:
        raise FilterError(f"{key}={text!r}: give a number from 0 to {high:g}")
    return value


# --- routing

ROUTES: list[tuple[re.Pattern, Callable[..., list]]] = [
    (re.compile(r"^/$"), home),
    (re.compile(r"^/studies/(?P<study_id>[^/]+)$"), study_page),
    (re.compile(r"^/studies/(?P<study_id>[^/]+)/contrasts/(?P<contrast>[^/]+)$"), contrast_page),
    (re.compile(r"^/studies/(?P<study_id>[^/]+)/plates/(?P<plate>[^/]+)$"), plate_page),
    (re.compile(r"^/studies/(?P<study_id>[^/]+)/compounds/(?P<compound>[^/]+)$"), compound_page),
    (re.compile(r"^/studies/(?P<study_id>[^/]+)/combinations/(?P<combination>[^/]+)$"),
     combination_page),
    (re.compile(r"^/genes/(?P<gene>[^/]+)$"), gene_page),
    (re.compile(r"^/filter$"), filter_page),
]


def check_exists(data: ExplorerData, page: Callable[..., list], values: dict[str, str],
                 query: dict[str, str]) -> None:
    """Raise :class:`NotFound` if what a URL names does not exist (cheap: no page built)."""
    if page is contrast_page:
        _contrast(data, values["study_id"], values["contrast"], _one(query, "cell_type"))
    elif page is plate_page:
        _plate(data, values["study_id"], values["plate"])
    elif page is compound_page:
        _compound(data, values["study_id"], values["compound"])
    elif page is combination_page:
        _combination(data, values["study_id"], values["combination"])
    elif page is study_page:
        _study(data, values["study_id"])
    elif page is gene_page:
        _gene(data, values["gene"])


def route(pathname: str) -> tuple[Callable[..., list], dict[str, str]] | None:
    """The page of a path and its (unquoted) values; None for no page."""
    for pattern, page in ROUTES:
        match = pattern.match(pathname or "/")
        if match:
            return page, {k: unquote(v) for k, v in match.groupdict().items()}
    return None


def not_found_body(error: NotFound) -> list:
    shown = error.available[:LIST_LIMIT]
    rest = len(error.available) - len(shown)
    return [html.H1("Not found"), html.P(f"There is no {error.what}.", id="not-found"),
            html.P(f"{error.kind.capitalize()}s that exist:" if shown else ""),
            html.Ul([html.Li(link(label, href)) for label, href in shown]),
            html.P(f"and {rest} more" if rest > 0 else ""), html.P(link("All studies", "/"))]
