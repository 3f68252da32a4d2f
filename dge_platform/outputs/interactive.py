"""The report's interactive pieces: plotly figures (volcano, MA, enrichment dot plot), the DEG
explorer (one contrast at a time: its volcano and MA plots and a searchable, sortable, paged
table of every tested gene) and the script every report embeds once (plotly.js and the
explorer's vanilla JS).

Nothing is fetched: plotly.js comes from the installed plotly package and the explorer's data
travels in the page, gzipped and base64-encoded, decoded by the browser's own
``DecompressionStream``, so a report opens offline from disk.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from dge_platform.outputs.plots import DOWN, GREY, UP, curve_positions

N_LABELS = 10
"""Genes labelled on the volcano and MA plots: the smallest adjusted p-values."""
TABLE_DIGITS = 4
"""Significant digits of the explorer table's numbers (and of what it shows)."""
TABLE_COLUMNS = {"gene_symbol": "symbol", "gene_id": "gene id", "base_mean": "base mean",
                 "log2_fold_change": "log2FC", "log2_fold_change_shrunk": "log2FC (shrunken)",
                 "pvalue": "p-value", "padj": "padj"}
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
TEMPLATE = "plotly_white"
PLOT_HEIGHT = 460
# The plot area a DEG plot gets in a 1200 px page (half width, minus margins): what label
# placement assumes, as Python cannot know the reader's window. Labels may reach into the
# margins (left, top, right, bottom) but not past them.
PLOT_AREA = (470.0, 340.0)
LABEL_ROOM = (-50.0, -40.0, 500.0, 370.0)
# Where a label may go relative to its point (pixels), nearest first.
LABEL_OFFSETS = [(round(r * math.cos(a)), round(r * math.sin(a))) for r in (30, 55, 80, 110, 140)
                 for a in np.radians([-60, -120, 60, 120, -90, 90, 0, 180, -30, -150, 30, 150])]
ENRICHMENT_METHODS = {"gsea_prerank": ("GSEA prerank", "NES"),
                      "ora_up": ("ORA of up-regulated DEGs", "odds ratio"),
                      "ora_down": ("ORA of down-regulated DEGs", "odds ratio")}
TERM_CHARS = 60
"""Longer term names are cut on the axis (the hover shows the whole name)."""


def genes_tested(rows: pd.DataFrame) -> pd.DataFrame:
    """One contrast's tested genes (padj not null), smallest padj first, then p-value."""
    return rows.dropna(subset=["padj"]).sort_values(["padj", "pvalue"], kind="stable")


def gene_labels(tested: pd.DataFrame) -> pd.Series:
    """Gene symbols, the gene id where a gene has none."""
    symbols = tested["gene_symbol"].astype(object)
    return symbols.where(symbols.notna(), tested["gene_id"]).astype(str)


def _deg_traces(tested: pd.DataFrame, x: np.ndarray, y: np.ndarray, alpha: float,
                hover: str) -> list[go.Scattergl]:
    """Not significant (grey, drawn first), up and down DEGs at ``alpha``, as WebGL traces
    (tens of thousands of points stay responsive).

    A point's ``customdata`` is its gene's row in ``tested``, which is the explorer table's
    row: the page swaps in the row's label, gene id and padj for the hover (``hover`` reads
    them as ``customdata[0..2]``), so the explorer carries each gene's text once.
    """
    significant = (tested["padj"] < alpha).to_numpy()
    lfc = tested["log2_fold_change"].to_numpy(dtype=float)
    groups = (("not significant", ~significant, GREY, 4),
              ("up", significant & (lfc > 0), UP, 5), ("down", significant & (lfc < 0), DOWN, 5))
    return [go.Scattergl(x=x[mask].astype(np.float32), y=y[mask].astype(np.float32),
                         customdata=np.flatnonzero(mask).tolist(), mode="markers",
                         name=f"{name} ({mask.sum():,})",
                         marker={"color": colour, "size": size, "opacity": 0.8},
                         hovertemplate=hover)
            for name, mask, colour, size in groups]


def _box_cost(box: tuple[float, float, float, float], placed: list[tuple],
              points: np.ndarray) -> float:
    """How badly a label box sits: its overlap with placed boxes (pixels squared), plus a
    penalty per labelled point it covers and a prohibitive one for leaving ``LABEL_ROOM``."""
    left, top, right, bottom = box
    area = sum(max(0.0, min(right, b[2]) - max(left, b[0]))
               * max(0.0, min(bottom, b[3]) - max(top, b[1])) for b in placed)
    covered = ((points[:, 0] > left) & (points[:, 0] < right)
               & (points[:, 1] > top) & (points[:, 1] < bottom)).sum()
    outside = (left < LABEL_ROOM[0] or top < LABEL_ROOM[1] or right > LABEL_ROOM[2]
               or bottom > LABEL_ROOM[3])
    return area + 100.0 * covered + 1e6 * outside


def _label_offsets(px: np.ndarray, py: np.ndarray, texts: list[str]) -> list[tuple[int, int]]:
    """Arrow offsets (pixels) that keep label boxes apart, greedily, most significant first.

    Plotly has no label repelling: each label takes the nearest of ``LABEL_OFFSETS`` whose
    box costs least (``_box_cost``). ``px``, ``py``: the points in pixels of ``PLOT_AREA``
    (y down).
    """
    points = np.column_stack([px, py])
    placed: list[tuple[float, float, float, float]] = []
    offsets = []
    for x, y, text in zip(px, py, texts):
        half_w, half_h = 3.6 * len(text) + 3, 8.0  # an 11 px font's box
        boxes = [(x + dx - half_w, y + dy - half_h, x + dx + half_w, y + dy + half_h)
                 for dx, dy in LABEL_OFFSETS]
        best = min(range(len(boxes)), key=lambda k: _box_cost(boxes[k], placed, points))
        offsets.append(LABEL_OFFSETS[best])
        placed.append(boxes[best])
    return offsets


def _top_gene_annotations(tested: pd.DataFrame, x: np.ndarray, y: np.ndarray, *,
                          log_x: bool = False) -> list[dict]:
    """Labels with arrows on the ``N_LABELS`` genes of smallest padj (``tested`` is sorted);
    ``log_x``: the x axis is logarithmic, so positions are given in log10 units."""
    n = min(N_LABELS, len(tested))
    if n == 0:
        return []
    ax = np.log10(x) if log_x else np.asarray(x, dtype=float)
    ay = np.asarray(y, dtype=float)

    def pixels(values: np.ndarray, top: np.ndarray, extent: float) -> np.ndarray:
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        return (top - low) / ((high - low) or 1.0) * extent

    px = pixels(ax, ax[:n], PLOT_AREA[0])
    py = PLOT_AREA[1] - pixels(ay, ay[:n], PLOT_AREA[1])
    texts = list(gene_labels(tested.iloc[:n]))
    return [{"x": float(ax[i]), "y": float(ay[i]), "text": texts[i], "ax": dx, "ay": dy,
             "showarrow": True, "arrowhead": 0, "arrowwidth": 1, "arrowcolor": "#555",
             "font": {"size": 11}, "bgcolor": "rgba(255,255,255,0.75)"}
            for i, (dx, dy) in enumerate(_label_offsets(px, py, texts))]


def _deg_layout(title: str, xaxis: dict, yaxis: dict) -> dict:
    # A vertical mode bar on the right: across the top it covers long titles.
    return {"title": {"text": title, "font": {"size": 14}}, "template": TEMPLATE,
            "height": PLOT_HEIGHT, "margin": {"l": 60, "r": 40, "t": 50, "b": 50},
            "modebar": {"orientation": "v"},
            "xaxis": xaxis, "yaxis": yaxis, "hovermode": "closest",
            "legend": {"orientation": "h", "y": -0.14, "x": 0}, "uirevision": title}


def volcano_figure(rows: pd.DataFrame, alpha: float, lfc_threshold: float,
                   title: str) -> go.Figure:
    """log2 fold change against -log10 p-value of one contrast's tested genes, DEGs coloured
    by direction, the top genes labelled; dashed lines at +-``lfc_threshold`` (when set) and
    at the largest p-value of a DEG (the Benjamini-Hochberg cut-off)."""
    tested = genes_tested(rows)
    x = tested["log2_fold_change"].to_numpy(dtype=float)
    y = -np.log10(np.maximum(tested["pvalue"].to_numpy(dtype=float), 1e-300))
    hover = ("<b>%{customdata[0]}</b><br>%{customdata[1]}<br>log2FC %{x:.3f}<br>"
             "padj %{customdata[2]:.4g}<extra></extra>")
    significant = (tested["padj"] < alpha).to_numpy()
    fig = go.Figure(_deg_traces(tested, x, y, alpha, hover), _deg_layout(
        f"Volcano: {title} ({int(significant.sum()):,} DEGs at padj < {alpha})",
        {"title": {"text": "log2 fold change"}, "zeroline": True},
        {"title": {"text": "-log10 p-value"}}))
    for edge in (-lfc_threshold, lfc_threshold) if lfc_threshold > 0 else ():
        fig.add_vline(edge, line={"dash": "dash", "width": 1, "color": "#555"})
    if significant.any():
        fig.add_hline(float(y[significant].min()), line={"dash": "dot", "width": 1,
                                                         "color": "#555"})
    fig.update_layout(annotations=_top_gene_annotations(tested, x, y))
    return fig


def ma_figure(rows: pd.DataFrame, alpha: float, title: str) -> go.Figure:
    """Shrunken log2 fold change (the unshrunken one where none) against the mean of
    normalized counts of one contrast's tested genes, DEGs coloured, the top genes
    labelled."""
    tested = genes_tested(rows)
    x = tested["base_mean"].to_numpy(dtype=float)
    y = tested["log2_fold_change_shrunk"].fillna(tested["log2_fold_change"]).to_numpy(float)
    hover = ("<b>%{customdata[0]}</b><br>%{customdata[1]}<br>base mean %{x:.4g}<br>"
             "log2FC (shrunken) %{y:.3f}<br>padj %{customdata[2]:.4g}<extra></extra>")
    fig = go.Figure(_deg_traces(tested, x, y, alpha, hover), _deg_layout(
        f"MA: {title}", {"title": {"text": "mean of normalized counts"}, "type": "log"},
        {"title": {"text": "log2 fold change (shrunken)"}, "zeroline": True}))
    fig.update_layout(annotations=_top_gene_annotations(tested, x, y, log_x=True))
    return fig


def enrichment_figure(terms: pd.DataFrame, title: str) -> go.Figure:
    """The top terms of one contrast as dot plots, one panel per method (GSEA prerank: NES;
    ORA: odds ratio), most significant on top: term names on the axis, size = set size,
    colour = -log10 padj (floored at 1e-10: a permutation FDR of 0 only means "below the
    permutations' resolution"); the hover adds the term id, collection and genes.

    Parameters
    ----------
    terms
        Rows of the enrichment table with ``term_id`` and ``term_name`` (the report's
        ``top_terms``).
    title
        The figure title.
    """
    panels = [(method, terms[terms["method"] == method]) for method in ENRICHMENT_METHODS
              if (terms["method"] == method).any()]
    # Pixels: 24 per term; between panels, room for an axis title and the next panel's title.
    heights = [len(rows) * 24 + 20 for _, rows in panels]
    gap = 110
    total = sum(heights) + gap * (len(panels) - 1) + 130
    fig = make_subplots(rows=len(panels), cols=1, row_heights=heights,
                        vertical_spacing=gap / total if len(panels) > 1 else 0,
                        subplot_titles=[ENRICHMENT_METHODS[m][0] for m, _ in panels])
    largest = float(terms["size"].max()) if len(terms) else 1.0
    for row, (method, rows) in enumerate(panels, 1):
        rows = rows.sort_values(["padj", "pvalue"]).iloc[::-1]
        names = rows["term_name"].astype(str)
        genes = rows["genes"].fillna("").astype(str).map(
            lambda g: ", ".join(g.split(",")[:10]) + (" ..." if g.count(",") >= 10 else ""))
        fig.add_trace(go.Scatter(
            x=rows["score"], y=list(range(len(rows))), mode="markers", showlegend=False,
            marker={"size": 8 + 16 * np.sqrt(rows["size"] / largest),
                    "color": -np.log10(np.maximum(rows["padj"], 1e-10)),
                    "coloraxis": "coloraxis", "line": {"width": 0.5, "color": "#333"}},
            customdata=np.column_stack([names, rows["term_id"].fillna(""), rows["collection"],
                                        rows["size"], rows["padj"], genes]),
            hovertemplate=("<b>%{customdata[0]}</b><br>%{customdata[1]} (%{customdata[2]})"
                           "<br>" + ENRICHMENT_METHODS[method][1] + " %{x:.3g}, size "
                           "%{customdata[3]}, padj %{customdata[4]:.3g}<br>"
                           "%{customdata[5]}<extra></extra>")), row=row, col=1)
        fig.update_yaxes(row=row, col=1, tickvals=list(range(len(rows))), automargin=True,
                         ticktext=[n if len(n) <= TERM_CHARS else n[:TERM_CHARS - 1] + "…"
                                   for n in names], range=[-0.7, len(rows) - 0.3])
        fig.update_xaxes(row=row, col=1, title={"text": ENRICHMENT_METHODS[method][1]})
    fig.update_layout(title={"text": title, "font": {"size": 14}}, template=TEMPLATE,
                      height=total, margin={"l": 10, "r": 10, "t": 80, "b": 50},
                      coloraxis={"colorscale": "Viridis", "cmin": 0, "cmax": 10,
                                 "colorbar": {"title": {"text": "-log10 padj"}, "len": 0.6}})
    return fig


CURVE_COLOURS = ["#c0392b", "#2e86c1", "#27ae60", "#8e44ad", "#d35400", "#16a085"]


def dose_curve_figure(points: pd.DataFrame, fits: pd.DataFrame, title: str,
                      y_title: str) -> go.Figure:
    """Concentration-response curves: each well's value (controls a third of a decade left
    of the lowest dose), the fitted model, and the BMD as a diamond on the curve with its
    BMDL-BMDU interval as a horizontal bar.

    Parameters
    ----------
    points
        key, dose (controls 0 or null), value: one row per feature and well.
    fits
        key, label, best_model, params (JSON), bmd, bmdl, bmdu, hitcall: one row per curve.
    """
    from dge_platform.screen.concentration_response import model_response

    fig = go.Figure()
    positions, _, grid = curve_positions(points["dose"].fillna(0.0).astype(float))
    x_of = pd.Series(positions, index=points.index)
    for colour, fit in zip(CURVE_COLOURS * (len(fits) // len(CURVE_COLOURS) + 1),
                           fits.itertuples()):
        rows = points[points["key"] == fit.key]
        x = x_of.loc[rows.index]
        name = str(fit.label)
        fig.add_trace(go.Scatter(x=x, y=rows["value"], mode="markers", name=name,
                                 legendgroup=name, marker={"color": colour, "size": 6,
                                                           "opacity": 0.55},
                                 hovertemplate=name + ": %{y:.2f} at %{x:.3g}<extra></extra>"))
        params = json.loads(fit.params)
        fig.add_trace(go.Scatter(x=grid, y=model_response(fit.best_model, params, grid),
                                 mode="lines", line={"color": colour}, legendgroup=name,
                                 showlegend=False, hoverinfo="skip"))
        if np.isfinite(fit.bmd):
            at = float(model_response(fit.best_model, params, np.array([fit.bmd]))[0])
            low = fit.bmd - fit.bmdl if np.isfinite(fit.bmdl) else 0.0
            high = fit.bmdu - fit.bmd if np.isfinite(fit.bmdu) else 0.0
            fig.add_trace(go.Scatter(
                x=[fit.bmd], y=[at], mode="markers", legendgroup=name, showlegend=False,
                marker={"color": colour, "size": 11, "symbol": "diamond",
                        "line": {"color": "black", "width": 1}},
                error_x={"type": "data", "symmetric": False, "array": [high],
                         "arrayminus": [low], "color": colour, "thickness": 2, "width": 6},
                hovertemplate=(f"{name}: BMD %{{x:.3g}} (BMDL {fit.bmdl:.3g}, BMDU "
                               f"{fit.bmdu:.3g}), {fit.best_model}, hit call "
                               f"{fit.hitcall:.2f}<extra></extra>")))
    fig.update_layout(title={"text": title, "x": 0.01, "font": {"size": 15}}, template=TEMPLATE,
                      height=PLOT_HEIGHT, xaxis={"type": "log", "title": "dose"},
                      yaxis_title=y_title, margin={"l": 60, "r": 20, "t": 50, "b": 50})
    return fig


def figure_html(fig: go.Figure) -> str:
    """A figure as a div that plots itself (plotly.js comes once, from ``page_scripts``)."""
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, config=PLOTLY_CONFIG,
                       default_height=f"{fig.layout.height or PLOT_HEIGHT}px")


def _significant_digits(values: pd.Series) -> list[float | None]:
    """Numbers rounded to ``TABLE_DIGITS`` significant digits (JSON writes their shortest
    form, e.g. 1.234e-45), missing and infinite values as null."""
    return [float(f"{v:.{TABLE_DIGITS}g}") if math.isfinite(v) else None
            for v in values.astype(float)]


def table_data(tested: pd.DataFrame) -> dict:
    """The explorer table of one contrast as columns: ``keys`` and ``labels`` of the columns
    present (of ``TABLE_COLUMNS``), and ``columns``, one list of values per key (numbers to
    ``TABLE_DIGITS`` significant digits, ids and symbols as text)."""
    keys = [k for k in TABLE_COLUMNS if k in tested and tested[k].notna().any()]
    columns = [tested[k].astype(object).where(tested[k].notna(), None).tolist()
               if k in ("gene_id", "gene_symbol") else _significant_digits(tested[k])
               for k in keys]
    return {"keys": keys, "labels": [TABLE_COLUMNS[k] for k in keys], "columns": columns}


def _packed(payload: dict) -> str:
    """JSON, gzipped (fixed mtime: the same data gives the same bytes), base64: what the
    page decodes with ``DecompressionStream('gzip')``."""
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    return base64.b64encode(gzip.compress(data, compresslevel=9, mtime=0)).decode()


def deg_explorer(panels: dict[str, pd.DataFrame], *, alpha: float, lfc_threshold: float,
                 label: str = "Contrast") -> str:
    """The DEG explorer: a selector over ``panels`` (shown when there are several), the
    selected panel's volcano and MA plots and its table of tested genes.

    Parameters
    ----------
    panels
        DEG results by the name shown in the selector (a contrast; a contrast and cell type;
        a screen condition), each one contrast's rows of deg_results.
    alpha, lfc_threshold
        The study's: DEGs are padj < ``alpha``; ``lfc_threshold`` draws the volcano's edges.
    label
        What a panel is, for the selector.

    Returns
    -------
    str
        HTML: the explorer's elements and its data (one packed payload per panel, decoded
        when first selected); ``page_scripts`` makes it work.
    """
    if not panels:
        return "<p>No contrast was tested.</p>"
    packed = []
    for name, rows in panels.items():
        tested = genes_tested(rows)
        packed.append(_packed({
            "volcano": json.loads(pio.to_json(volcano_figure(tested, alpha, lfc_threshold,
                                                             name))),
            "ma": json.loads(pio.to_json(ma_figure(tested, alpha, name))),
            "table": table_data(tested)}))
    data = json.dumps({"alpha": alpha, "panels": packed}).replace("</", "<\\/")
    options = "".join(f"<option value='{i}'>{html.escape(name)}</option>"
                      for i, name in enumerate(panels))
    chooser = (f"<label class='deg-choice'>{html.escape(label)}: <select>{options}</select>"
               f" <small>({len(panels)})</small></label>" if len(panels) > 1
               else f"<p class='deg-choice'>{html.escape(label)}: "
                    f"<b>{html.escape(next(iter(panels)))}</b></p>")
    return (
        "<div class='deg-explorer'>" + chooser
        + "<p class='note'>The tested genes (padj not null; table deg_results also holds those "
        "left out by independent filtering). Hover a point for its gene, click it to find the "
        f"gene in the table; the {N_LABELS} genes of smallest padj are labelled. Dotted line: "
        "the largest p-value of a DEG"
        + (f"; dashed lines: log2FC = &plusmn;{lfc_threshold}" if lfc_threshold > 0 else "")
        + ". The table: search a symbol or id, click a column to sort.</p>"
        "<p class='deg-status'>Loading the plots and the table...</p>"
        "<div class='deg-plots'><div class='deg-plot deg-volcano'></div>"
        "<div class='deg-plot deg-ma'></div></div>"
        "<div class='deg-table'><input type='search' placeholder='Search a gene symbol or id'"
        " aria-label='Search a gene symbol or id'> <span class='deg-count'></span>"
        "<table><thead></thead><tbody></tbody></table><div class='deg-pager'>"
        "<button type='button' data-step='-1'>&lsaquo; Previous</button> <span></span> "
        "<button type='button' data-step='1'>Next &rsaquo;</button></div></div>"
        f"<script type='application/json' class='deg-data'>{data}</script></div>")


EXPLORER_CSS = """
.deg-plots{display:flex;gap:1em}.deg-plot{flex:1 1 0;min-width:0;height:460px}
.deg-choice select{font-size:1em;max-width:40em}.deg-status{color:#777}
.deg-table input{font-size:1em;padding:.3em;width:22em;margin:.5em 0}
.deg-table th button{all:unset;cursor:pointer;font-weight:bold}
.deg-table th[aria-sort=ascending] button::after{content:" \\25B2"}
.deg-table th[aria-sort=descending] button::after{content:" \\25BC"}
.deg-table .text{text-align:left}.deg-table td.sig{color:#c0392b;font-weight:bold}
.deg-pager button{margin:0 .4em}
"""

EXPLORER_JS = """
(() => {
  const PAGE = 50;
  const CONFIG = PLOTLY_CONFIG;

  // Base64 of gzipped JSON -> object, with the browser's own gzip (nothing to load).
  async function unpack(b64) {
    const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
    return JSON.parse(await new Response(stream).text());
  }

  // A DEG plot's points carry their table row; the hover reads the row's label (symbol,
  // else id), id and padj. Done once per panel: customdata then holds the fields.
  function withHoverFields(fig, table) {
    const column = key => table.columns[table.keys.indexOf(key)] || [];
    const [symbol, id, padj] = ['gene_symbol', 'gene_id', 'padj'].map(column);
    fig.data.forEach(trace => {
      trace.customdata = trace.customdata.map(i => [symbol[i] ?? id[i], id[i], padj[i]]);
    });
    return fig;
  }

  // Numbers arrive rounded to the shown precision; String() writes their shortest form.
  const shown = v => (v === null || v === undefined) ? '' : String(v);

  class DegTable {
    constructor(root, alpha) {
      this.alpha = alpha;
      this.search = root.querySelector('input');
      this.count = root.querySelector('.deg-count');
      this.head = root.querySelector('thead');
      this.body = root.querySelector('tbody');
      this.pageText = root.querySelector('.deg-pager span');
      this.search.addEventListener('input', () => { this.page = 0; this.render(); });
      root.querySelectorAll('.deg-pager button').forEach(b => b.addEventListener('click',
        () => { this.page += Number(b.dataset.step); this.render(); }));
    }

    show(table) {
      this.table = table;
      this.textKeys = table.keys.filter(k => k === 'gene_id' || k === 'gene_symbol');
      this.text = this.textKeys.map(k => table.columns[table.keys.indexOf(k)]);
      // Rows come sorted by padj: that is the initial order.
      this.order = table.columns[0].map((_, i) => i);
      this.sortKey = 'padj';
      this.ascending = true;
      this.page = 0;
      this.head.replaceChildren(this.headerRow());
      this.render();
    }

    headerRow() {
      const row = document.createElement('tr');
      this.table.keys.forEach((key, i) => {
        const th = document.createElement('th');
        const button = document.createElement('button');
        button.type = 'button';
        button.textContent = this.table.labels[i];
        button.addEventListener('click', () => this.sortBy(key));
        th.dataset.key = key;
        if (this.textKeys.includes(key)) th.className = 'text';
        th.append(button);
        row.append(th);
      });
      return row;
    }

    sortBy(key) {
      this.ascending = key === this.sortKey ? !this.ascending : true;
      this.sortKey = key;
      const values = this.table.columns[this.table.keys.indexOf(key)];
      const sign = this.ascending ? 1 : -1;
      this.order.sort((a, b) => {  // missing values last in either direction
        const x = values[a], y = values[b];
        if (x === null || y === null) return (x === null) - (y === null);
        return sign * (typeof x === 'string' ? x.localeCompare(y) : x - y);
      });
      this.page = 0;
      this.render();
    }

    matching() {
      const query = this.search.value.trim().toLowerCase();
      if (!query) return this.order;
      return this.order.filter(i => this.text.some(
        column => column[i] !== null && column[i].toLowerCase().includes(query)));
    }

    render() {
      this.head.querySelectorAll('th').forEach(th => {
        if (th.dataset.key === this.sortKey) {
          th.setAttribute('aria-sort', this.ascending ? 'ascending' : 'descending');
        } else {
          th.removeAttribute('aria-sort');
        }
      });
      const rows = this.matching();
      const pages = Math.max(1, Math.ceil(rows.length / PAGE));
      this.page = Math.min(Math.max(this.page, 0), pages - 1);
      const first = this.page * PAGE;
      this.body.replaceChildren(...rows.slice(first, first + PAGE).map(i => {
        const tr = document.createElement('tr');
        this.table.columns.forEach((column, j) => {
          const td = document.createElement('td');
          td.textContent = shown(column[i]);
          if (this.textKeys.includes(this.table.keys[j])) td.className = 'text';
          if (this.table.keys[j] === 'padj' && column[i] !== null && column[i] < this.alpha) {
            td.className = 'sig';
          }
          tr.append(td);
        });
        return tr;
      }));
      const total = this.order.length.toLocaleString();
      this.count.textContent = rows.length === this.order.length
        ? `${total} tested genes` : `${rows.length.toLocaleString()} of ${total} tested genes`;
      this.pageText.textContent = rows.length
        ? `rows ${first + 1}-${Math.min(first + PAGE, rows.length)}, page ${this.page + 1}`
          + ` of ${pages}` : 'no gene matches';
    }
  }

  async function explore(root) {
    const spec = JSON.parse(root.querySelector('.deg-data').textContent);
    const select = root.querySelector('select');
    const status = root.querySelector('.deg-status');
    const plots = [root.querySelector('.deg-volcano'), root.querySelector('.deg-ma')];
    const table = new DegTable(root.querySelector('.deg-table'), spec.alpha);
    const panels = new Map();
    let latest = 0;
    async function show(index) {
      const request = ++latest;
      if (!panels.has(index)) {
        panels.set(index, unpack(spec.panels[index]).then(panel => {
          [panel.volcano, panel.ma].forEach(fig => withHoverFields(fig, panel.table));
          return panel;
        }));
      }
      const panel = await panels.get(index);
      if (request !== latest) return;  // a later choice won
      await Promise.all([panel.volcano, panel.ma].map(
        (fig, i) => Plotly.react(plots[i], fig.data, fig.layout, CONFIG)));
      table.show(panel.table);
    }
    await show(0);
    status.remove();
    if (select) select.addEventListener('change', () => show(Number(select.value)));
    // Clicking a point looks its gene up in the table.
    plots.forEach(plot => plot.on('plotly_click', event => {
      table.search.value = event.points[0].customdata[1];
      table.search.dispatchEvent(new Event('input'));
    }));
  }

  document.addEventListener('DOMContentLoaded', () => {
    document.querySelectorAll('.deg-explorer').forEach(root => explore(root).catch(error => {
      root.querySelector('.deg-status').textContent = `The explorer failed: ${error}`;
      console.error(error);
    }));
  });
})();
"""


def page_scripts() -> str:
    """plotly.js (from the installed plotly package, ~4.8 MB) and the explorer's script and
    style: what the report's head embeds, once."""
    return (f"<script>{get_plotlyjs()}</script>"
            f"<script>{EXPLORER_JS.replace('PLOTLY_CONFIG', json.dumps(PLOTLY_CONFIG))}</script>"
            f"<style>{EXPLORER_CSS}</style>")
