"""The explorer's Dash app: one page container routed by the URL, the callbacks that make
pages interactive, and three plain HTTP answers (downloads, not-found pages, bad requests).

Direct requests for a page that names something absent (a study, contrast, gene...) get an
HTTP 404 page listing what exists; inside the app the same message replaces the page. No
callback lets an exception through: the user sees what went wrong, never a traceback.
"""

from __future__ import annotations

import html as html_text
import io
import json
import logging
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlencode

import dash
import flask
import pandas as pd
from dash import Input, Output, State, dcc, html

from dge_platform.explorer import pages
from dge_platform.explorer.data import DegFilter, ExplorerData, FilterError
from dge_platform.storage.home import DgeHome

ASSETS = Path(__file__).parent / "assets"
DOWNLOAD_ROWS = {"csv": 2_000_000, "xlsx": 1_000_000}
"""Rows a download may hold (Excel's sheet ends at 1,048,576)."""
INTERNAL = ("/_dash-", "/_reload-hash", "/_favicon", "/assets/", "/download")
log = logging.getLogger(__name__)


def _query(search: str | None) -> dict[str, str]:
    """A URL query as one value per key (the last one given)."""
    return {k: v[-1] for k, v in parse_qs((search or "").lstrip("?")).items()}


def render(data: ExplorerData, pathname: str | None, search: str | None) -> list:
    """The page of a URL, or a message saying what is wrong with it."""
    found = pages.route(pathname or "/")
    if found is None:
        return pages.not_found_body(pages.NotFound(f"page '{pathname}'", [], "page"))
    page, values = found
    try:
        return page(data, _query(search), **values)
    except pages.NotFound as error:
        return pages.not_found_body(error)
    except FilterError as error:
        return [html.H1("Cannot apply this filter"),
                html.P(str(error), className="warn", id="filter-error"),
                html.P(dcc.Link("Open the page without filters", href=pathname or "/"))]
    except Exception:  # the user sees a message; the log keeps the details
        log.exception("explorer: %s%s failed", pathname, search or "")
        return [html.H1("Something went wrong"),
                html.P("This page could not be built; the server log has the details.",
                       className="warn")]


def _not_found_html(error: pages.NotFound) -> str:
    items = "".join(f"<li><a href='{html_text.escape(href)}'>{html_text.escape(label)}</a></li>"
                    for label, href in error.available[:pages.LIST_LIMIT])
    listing = f"<p>{error.kind.capitalize()}s that exist:</p><ul>{items}</ul>" if items else ""
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Not found</title>"
            "<link rel='stylesheet' href='/assets/style.css'></head><body><main>"
            f"<h1>Not found</h1><p id='not-found'>There is no {html_text.escape(error.what)}."
            f"</p>{listing}<p><a href='/'>All studies</a></p></main></body></html>")


def create_app(data: ExplorerData) -> dash.Dash:
    """The explorer over a catalog (read-only)."""
    app = dash.Dash(__name__, assets_folder=str(ASSETS), title="dge explore",
                    update_title=None, suppress_callback_exceptions=True, serve_locally=True)
    app.layout = html.Div([
        dcc.Location(id="url", refresh="callback-nav"),
        html.Header([dcc.Link("dge explore", href="/", className="brand"),
                     dcc.Link("Studies", href="/"), dcc.Link("Filter genes", href="/filter")]),
        dcc.Loading(html.Main(id="page"), delay_show=400, type="dot"),
        dcc.Store(id="grid-sync")])
    _register_callbacks(app, data)
    _register_http(app.server, data)
    return app


def _register_callbacks(app: dash.Dash, data: ExplorerData) -> None:
    @app.callback(Output("page", "children"), Input("url", "pathname"), Input("url", "search"))
    def show(pathname, search):
        return render(data, pathname, search)

    @app.callback(Output("url", "href", allow_duplicate=True),
                  Input("gene-go", "n_clicks"), Input("gene-search", "n_submit"),
                  State("gene-search", "value"), prevent_initial_call=True)
    def find_gene(_clicks, _submit, gene):
        return pages.path("genes", gene.strip()) if gene and gene.strip() else dash.no_update

    @app.callback(Output("url", "href", allow_duplicate=True),
                  Input("volcano", "clickData"), Input("ma", "clickData"),
                  prevent_initial_call=True)
    def open_gene(volcano, ma):
        clicked = volcano if dash.ctx.triggered_id == "volcano" else ma
        if not clicked or not clicked.get("points"):
            return dash.no_update
        return pages.path("genes", clicked["points"][0]["customdata"][1])

    @app.callback(Output("url", "href", allow_duplicate=True),
                  Input("combination-scatter", "clickData"), prevent_initial_call=True)
    def open_combination_gene(clicked):
        if not clicked or not clicked.get("points"):
            return dash.no_update
        return pages.path("genes", clicked["points"][0]["customdata"][1])

    @app.callback(Output("deg-grid", "getRowsResponse"), Output("deg-count", "children"),
                  Input("deg-grid", "getRowsRequest"), State("deg-key", "data"),
                  State("url", "search"))
    def deg_rows(request, key, search):
        if not request or not key:
            return dash.no_update, dash.no_update
        try:
            query = _query(search)
            query["filter"] = json.dumps(request.get("filterModel") or {})
            filters = DegFilter.from_query(query)
            rows, total = data.deg_page(key["study_id"], key["contrast"], key["cell_type"],
                                        filters, request.get("sortModel"),
                                        request.get("startRow", 0), request.get("endRow", 100))
        except FilterError as error:
            return {"rowData": [], "rowCount": 0}, html.Span(str(error), className="warn")
        records = rows.astype(object).where(rows.notna(), None).to_dict("records")
        return {"rowData": records, "rowCount": total}, f"{total:,} genes match"

    # The grid's sort and column filters go into the address bar (shareable) without a
    # re-render, and the download links follow the view.
    app.clientside_callback(
        dash.ClientsideFunction("explore", "syncGrid"), Output("grid-sync", "data"),
        Output("download-csv", "href"), Output("download-xlsx", "href"),
        Input("deg-grid", "getRowsRequest"), State("deg-key", "data"))
    app.clientside_callback(
        dash.ClientsideFunction("explore", "applyFilters"),
        Output("url", "search", allow_duplicate=True),
        Input("f-apply", "n_clicks"), Input("f-clear", "n_clicks"),
        Input("f-search", "n_submit"), Input("f-padj", "n_submit"), Input("f-lfc", "n_submit"),
        State("f-search", "value"), State("f-padj", "value"), State("f-lfc", "value"),
        State("f-direction", "value"), prevent_initial_call=True)

    for dropdown in ("pca-colour", "umap-colour"):
        @app.callback(Output("url", "search", allow_duplicate=True),
                      Input(dropdown, "value"), State("url", "search"),
                      prevent_initial_call=True)
        def recolour(value, search):
            query = _query(search)
            if value is None or query.get("colour") == value:
                return dash.no_update
            return "?" + urlencode({**query, "colour": value})

    @app.callback(Output("url", "search", allow_duplicate=True),
                  Input("filter-go", "n_clicks"),
                  *[State(f"filter-{s}", "value") for s in pages.STATES],
                  State("filter-alpha", "value"), State("filter-lfc", "value"),
                  prevent_initial_call=True)
    def multi_filter(_clicks, *values):
        *chosen, alpha, lfc = values
        query = {s: ",".join(v or []) for s, v in zip(pages.STATES, chosen) if v}
        return "?" + urlencode({**query, "alpha": alpha or "", "lfc": lfc or ""})


def _register_http(server: flask.Flask, data: ExplorerData) -> None:
    @server.errorhandler(dash.exceptions.DependencyException)
    def unknown_script(_error):
        """A request for a script Dash does not ship (``/_dash-component-suites/../x``)."""
        return flask.Response("Not found\n", 404, mimetype="text/plain")

    @server.before_request
    def not_found():
        """A page URL naming something absent: HTTP 404 with what exists."""
        request = flask.request
        if request.method != "GET" or request.path.startswith(INTERNAL):
            return None
        found = pages.route(request.path)
        if found is None:
            return _not_found_html(pages.NotFound(f"page '{request.path}'", [], "page")), 404
        page, values = found
        try:
            pages.check_exists(data, page, values, _query(request.query_string.decode()))
        except pages.NotFound as error:
            return _not_found_html(error), 404
        return None

    @server.route("/download")
    def download():
        """The DEG table of a contrast as the view filters it: CSV or Excel."""
        query = _query(flask.request.query_string.decode())
        fmt = query.get("format", "csv")
        if fmt not in DOWNLOAD_ROWS:
            return flask.Response("format must be csv or xlsx\n", 400, mimetype="text/plain")
        study_id, contrast = query.get("study", ""), query.get("contrast", "")
        cell_type = query.get("cell_type") or None
        try:
            pages.check_exists(data, pages.contrast_page,
                               {"study_id": study_id, "contrast": contrast},
                               {"cell_type": cell_type or ""})
            filters = DegFilter.from_query(query)
            sort = pages.parse_sort(query)
        except pages.NotFound as error:
            return flask.Response(f"There is no {error.what}.\n", 404, mimetype="text/plain")
        except FilterError as error:
            return flask.Response(f"{error}\n", 400, mimetype="text/plain")
        rows = data.deg_rows(study_id, contrast, cell_type, filters, sort, DOWNLOAD_ROWS[fmt])
        name = "_".join(filter(None, (study_id, contrast, cell_type)))
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        if fmt == "csv":
            body, mimetype = rows.to_csv(index=False), "text/csv"
        else:
            buffer = io.BytesIO()
            with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
                rows.to_excel(writer, index=False, sheet_name="deg_results")
            body = buffer.getvalue()
            mimetype = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        return flask.Response(body, mimetype=mimetype, headers={
            "Content-Disposition": f"attachment; filename={name}.{fmt}"})


def serve(home: DgeHome, host: str, port: int) -> None:
    """Serve the explorer until interrupted (Flask's threaded server: a local, read-only
    tool for one team; put it behind a proxy with authentication to share it wider)."""
    data = ExplorerData(home)
    # The studies page and the filter's lists scan deg_results (seconds at 200 M rows), cached
    # until the catalog changes: compute them now, not on the first visit.
    threading.Thread(target=data.warm, daemon=True, name="warm-up").start()
    create_app(data).run(host=host, port=port, debug=False)
