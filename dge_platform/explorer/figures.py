"""The explorer's plotly figures, built from the frames :mod:`.data` returns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dge_platform.outputs import interactive
from dge_platform.outputs.plots import DOWN, INTERACTION_COLOURS, UP

TEMPLATE = "plotly_white"


def _layout(fig: go.Figure, title: str, height: int = 420, **kwargs) -> go.Figure:
    fig.update_layout(title={"text": title, "x": 0.01, "font": {"size": 15}},
                      template=TEMPLATE, height=height, margin={"l": 60, "r": 20, "t": 50,
                                                                 "b": 50}, **kwargs)
    return fig


def volcano(points: pd.DataFrame, alpha: float, lfc_threshold: float, title: str,
            kind: str = "volcano") -> go.Figure:
    """The report's volcano or MA plot of a contrast (WebGL, DEGs coloured, top genes
    labelled), with each point's ``customdata`` the gene's label, id and padj: the hover reads
    them and a click opens the gene (the report's points index an embedded table instead)."""
    fig = (interactive.volcano_figure(points, alpha, lfc_threshold, title) if kind == "volcano"
           else interactive.ma_figure(points, alpha, title))
    tested = interactive.genes_tested(points)
    genes = np.column_stack([interactive.gene_labels(tested), tested["gene_id"],
                             tested["padj"]])
    for trace in fig.data:
        trace.customdata = genes[list(trace.customdata)] if len(trace.customdata) else []
    return fig


def upset(sets: dict[str, set[str]], max_sets: int = 8, max_bars: int = 15) -> go.Figure:
    """UpSet plot of DEG sets: bars of the largest exclusive intersections, with a dot
    matrix saying which contrasts each bar shares (the largest ``max_sets`` sets)."""
    names = sorted(sets, key=lambda n: -len(sets[n]))[:max_sets]
    membership: dict[frozenset, int] = {}
    for gene in set().union(*(sets[n] for n in names)) if names else set():
        key = frozenset(n for n in names if gene in sets[n])
        membership[key] = membership.get(key, 0) + 1
    bars = sorted(membership.items(), key=lambda kv: (-kv[1], sorted(kv[0])))[:max_bars]
    fig = go.Figure()
    xs = list(range(len(bars)))
    fig.add_trace(go.Bar(x=xs, y=[count for _, count in bars], marker_color="#34495e",
                         text=[count for _, count in bars], textposition="outside",
                         hovertemplate="%{y} genes<extra></extra>", yaxis="y2", showlegend=False))
    for i, (key, _) in enumerate(bars):
        rows = [names.index(n) for n in key]
        fig.add_trace(go.Scatter(x=[i] * len(names), y=list(range(len(names))), mode="markers",
                                 marker={"color": ["#34495e" if r in rows else "#e5e7e9"
                                                   for r in range(len(names))], "size": 11},
                                 hoverinfo="skip", showlegend=False))
        if len(rows) > 1:
            fig.add_trace(go.Scatter(x=[i, i], y=[min(rows), max(rows)], mode="lines",
                                     line={"color": "#34495e", "width": 2}, hoverinfo="skip",
                                     showlegend=False))
    fig.update_layout(
        yaxis={"domain": [0, 0.38], "tickvals": list(range(len(names))),
               "ticktext": [f"{n} ({len(sets[n]):,})" for n in names], "autorange": "reversed"},
        yaxis2={"domain": [0.45, 1], "title": "genes"},
        xaxis={"showticklabels": False, "range": [-0.6, max(len(bars), 1) - 0.4]})
    return _layout(fig, "DEG sets across contrasts (UpSet: exclusive intersections)",
                   height=260 + 26 * len(names))


def pca(qc: pd.DataFrame, samples: pd.DataFrame, colour: str | None) -> go.Figure:
    """Samples on PC1/PC2 of the QC PCA, coloured by a sample-sheet column."""
    frame = qc.merge(samples, on="sample", how="left", suffixes=("", "_sheet"))
    named = len(frame) <= 40  # a plate's wells would bury the points under their names
    fig = go.Figure()
    groups = (frame.groupby(frame[colour].astype(str), sort=True) if colour in frame
              else [("samples", frame)])
    for value, rows in groups:
        fig.add_trace(go.Scatter(
            x=rows["pc1"], y=rows["pc2"], mode="markers+text" if named else "markers",
            name=str(value),
            text=rows["sample"], textposition="top center", textfont={"size": 9},
            marker={"size": 11, "symbol": np.where(rows.get("outlier", False), "x", "circle")},
            hovertemplate="%{text}<extra>" + str(value) + "</extra>"))
    return _layout(fig, f"PCA of the VST{f', coloured by {colour}' if colour else ''}",
                   xaxis_title="PC1", yaxis_title="PC2")


def association_heatmap(design: pd.DataFrame) -> go.Figure:
    """-log10 p of each sample variable against each leading PC (per cell type stacked)."""
    pcs = design[design["component"] != "variance_partition"].copy()
    pcs["column"] = pcs["component"] + pcs["variance_explained"].map(
        lambda v: f" ({v:.0%})" if pd.notna(v) else "")
    if pcs["cell_type"].notna().any():
        pcs["column"] = pcs["cell_type"].fillna("") + " " + pcs["component"]
    grid = pcs.pivot_table(index="variable", columns="column", values="pvalue", sort=False)
    logp = -np.log10(grid.clip(lower=1e-300))
    fig = go.Figure(go.Heatmap(z=logp.to_numpy(), x=list(logp.columns), y=list(logp.index),
                               colorscale="Reds", zmin=0, colorbar={"title": "-log10 p"},
                               hovertemplate="%{y} vs %{x}: -log10 p %{z:.2f}<extra></extra>"))
    return _layout(fig, "Sample variables vs principal components",
                   height=160 + 30 * len(logp.index))


def gene_effects(results: pd.DataFrame, title: str) -> go.Figure:
    """A gene's log2FC +- 1.96 SE in every study, contrast and cell type (filled: DEG)."""
    frame = results.assign(label=results["study_id"] + " / " + results["contrast"]
                           + results["cell_type"].map(lambda c: f" / {c}" if c else ""))
    sig = frame["significant"].fillna(False).astype(bool)
    fig = go.Figure(go.Scatter(
        x=frame["log2_fold_change"], y=frame["label"], mode="markers",
        error_x={"type": "data", "array": 1.96 * frame["lfc_se"].fillna(0), "visible": True,
                 "color": "#7f8c8d"},
        marker={"size": 10, "color": np.where(sig, np.where(frame["log2_fold_change"] > 0,
                                                             UP, DOWN), "white"),
                "line": {"color": "#34495e", "width": 1}},
        customdata=frame[["padj"]].to_numpy(),
        hovertemplate="%{y}<br>log2FC %{x:.3f}<br>padj %{customdata[0]:.3g}<extra></extra>"))
    fig.add_vline(x=0, line_color="#95a5a6", line_width=1)
    return _layout(fig, title, height=140 + 28 * len(frame), xaxis_title="log2 fold change "
                   "(bars: 95% CI; filled: DEG)", yaxis={"autorange": "reversed"})


def counts_by_group(counts: pd.DataFrame, group: str, title: str) -> go.Figure:
    """Normalized counts of one gene in one study, a box per group with every sample (log
    axis of count + 1: groups an order of magnitude apart stay readable)."""
    fig = go.Figure()
    for value, rows in counts.groupby(counts[group].astype(str), sort=True):
        fig.add_trace(go.Box(y=rows["normalized_count"] + 1, name=str(value), boxpoints="all",
                             jitter=0.4, pointpos=0, text=rows["sample"],
                             customdata=rows["normalized_count"],
                             hovertemplate="%{text}: %{customdata:.1f}<extra></extra>"))
    return _layout(fig, title, height=320, showlegend=False, yaxis_type="log",
                   yaxis_title="normalized count + 1", xaxis_title=group)


def plate_heatmap(wells: pd.DataFrame, metric: str) -> go.Figure:
    """One plate's wells (rows x columns) coloured by a QC metric; failed wells marked."""
    grid = wells.pivot_table(index="row", columns="column", values=metric, aggfunc="first")
    text = wells.pivot_table(index="row", columns="column",
                             values="compound", aggfunc="first").reindex_like(grid)
    fig = go.Figure(go.Heatmap(z=grid.to_numpy(dtype=float), x=[str(c) for c in grid.columns],
                               y=list(grid.index), colorscale="Viridis",
                               text=text.to_numpy(), colorbar={"title": metric},
                               hovertemplate="%{y}%{x}: %{text}<br>" + metric +
                               " %{z:.4g}<extra></extra>"))
    failed = wells[~wells["passed"].astype(bool)]
    fig.add_trace(go.Scatter(x=failed["column"].astype(str), y=failed["row"], mode="markers",
                             marker={"symbol": "x", "color": "red", "size": 10},
                             text=failed["reason"], name="failed QC",
                             hovertemplate="%{y}%{x} failed: %{text}<extra></extra>"))
    return _layout(fig, metric.replace("_", " "), height=360,
                   yaxis={"autorange": "reversed"}, legend={"orientation": "h", "y": -0.15})


def by_dose(frame: pd.DataFrame, value: str, group: str | None, title: str,
            y_title: str) -> go.Figure:
    """A value against dose (log axis), one line per group (pathway, gene)."""
    fig = go.Figure()
    for name, rows in (frame.groupby(group, sort=True) if group else [(value, frame)]):
        fig.add_trace(go.Scatter(x=rows["dose"], y=rows[value], mode="lines+markers",
                                 name=str(name)))
    return _layout(fig, title, xaxis={"type": "log", "title": "dose"}, yaxis_title=y_title)


def umap(cells: pd.DataFrame, colour: str) -> go.Figure:
    """Cells on the UMAP coloured by a column (cell type, donor, sample, QC)."""
    fig = go.Figure()
    for value, rows in cells.groupby(cells[colour].astype(str), sort=True):
        fig.add_trace(go.Scattergl(x=rows["umap_1"], y=rows["umap_2"], mode="markers",
                                   name=f"{value} ({len(rows):,})",
                                   marker={"size": 3, "opacity": 0.7}, hoverinfo="name"))
    return _layout(fig, f"UMAP ({len(cells):,} cells shown), coloured by {colour}", height=520,
                   xaxis={"showticklabels": False, "title": "UMAP 1"},
                   yaxis={"showticklabels": False, "title": "UMAP 2"})


INTERACTION_ORDER = ("unchanged", "additive", "emergent", "antagonistic", "synergistic")
"""Classes drawn in this order: the non-additive ones on top."""
NOT_TESTED = "not tested"


def combination_scatter(effects: pd.DataFrame, title: str) -> go.Figure:
    """A combination's genes, observed against expected (additive: agent 1 + agent 2) log2
    fold change, one WebGL trace per interaction class (genes whose interaction was not
    tested in grey; genes without both values left out); the diagonal is additivity. Each
    point's ``customdata``: label, gene id, interaction log2FC, padj (the hover reads them, a
    click opens the gene)."""
    frame = effects.dropna(subset=["observed_log2fc", "expected_log2fc"])
    classes = frame["interaction_class"].astype(object).where(
        frame["interaction_class"].notna(), NOT_TESTED)
    labels = interactive.gene_labels(frame)
    colours = {**INTERACTION_COLOURS, NOT_TESTED: "#ededed"}
    fig = go.Figure()
    for name in (NOT_TESTED, *INTERACTION_ORDER):
        mask = (classes == name).to_numpy()
        if not mask.any():
            continue
        rows = frame[mask]
        fig.add_trace(go.Scattergl(
            x=rows["expected_log2fc"].to_numpy(np.float32),
            y=rows["observed_log2fc"].to_numpy(np.float32), mode="markers",
            name=f"{name} ({mask.sum():,})",
            marker={"color": colours[name], "size": 4 if name in (NOT_TESTED, "unchanged",
                                                                  "additive") else 7,
                    "opacity": 0.85, "line": {"width": 0}},
            customdata=np.column_stack([labels[mask], rows["gene_id"],
                                        _formatted(rows["log2_fold_change"], ".3f"),
                                        _formatted(rows["padj"], ".3g")]),
            hovertemplate=("<b>%{customdata[0]}</b> (%{customdata[1]})<br>"
                           "observed %{y:.3f}, expected %{x:.3f}<br>"
                           "interaction log2FC %{customdata[2]}, padj %{customdata[3]}"
                           "<extra>" + name + "</extra>")))
    values = frame[["expected_log2fc", "observed_log2fc"]].to_numpy(float)
    limit = max(1.0, float(np.abs(values).max()) * 1.05) if len(values) else 1.0
    fig.add_shape(type="line", x0=-limit, y0=-limit, x1=limit, y1=limit, layer="below",
                  line={"color": "#34495e", "width": 1, "dash": "dash"})
    axis = {"range": [-limit, limit], "zeroline": True, "zerolinecolor": "#d5dbe1"}
    return _layout(fig, title, height=620,
                   xaxis={**axis, "title": "expected log2FC (agent 1 + agent 2)"},
                   yaxis={**axis, "title": "observed log2FC (combination)",
                          "scaleanchor": "x", "scaleratio": 1},
                   legend={"orientation": "h", "y": -0.12, "x": 0, "itemsizing": "constant"})


def _formatted(values: pd.Series, spec: str) -> list[str]:
    """Numbers as hover text ("NA" for a missing one: a gene whose interaction was not
    tested has no padj)."""
    return [format(v, spec) if pd.notna(v) else "NA" for v in values]
