"""QC and result plots as PNG bytes (matplotlib, no display needed)."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

DPI = 90
UP, DOWN, GREY = "#c0392b", "#2471a3", "#b3b3b3"


def markdown_image(png: bytes, name: str) -> str:
    """A PNG as an inline markdown image (Dagster 1.13 metadata has no image type)."""
    return f"![{name}](data:image/png;base64,{base64.b64encode(png).decode()})"


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def pca_plot(scores: pd.DataFrame, explained: pd.Series, groups: pd.Series, title: str) -> bytes:
    """PC1 vs PC2, coloured by a sample annotation, axes labelled with variance explained."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for label in sorted(groups.astype(str).unique()):
        members = groups.astype(str) == label
        ax.scatter(scores.loc[members, "PC1"], scores.loc[members, "PC2"], label=label, s=45)
    for sample, row in scores.iterrows():
        ax.annotate(str(sample), (row["PC1"], row["PC2"]), fontsize=6, alpha=0.7)
    ax.set_xlabel(f"PC1 ({explained['PC1']:.0%} variance)")
    ax.set_ylabel(f"PC2 ({explained.get('PC2', 0):.0%} variance)")
    ax.set_title(title)
    ax.legend(title=groups.name, fontsize=7, title_fontsize=8)
    return _png(fig)


def distance_heatmap(distances: pd.DataFrame) -> bytes:
    """Sample-to-sample distances, samples ordered by hierarchical clustering."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    order = leaves_list(linkage(squareform(distances.to_numpy(), checks=False), "average")) \
        if len(distances) > 2 else np.arange(len(distances))
    ordered = distances.iloc[order, order]
    size = max(4.0, 0.3 * len(ordered) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(ordered.to_numpy(), cmap="Blues_r")
    ax.set_xticks(range(len(ordered)), ordered.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(len(ordered)), ordered.index, fontsize=7)
    fig.colorbar(image, ax=ax, label="Euclidean distance (VST)")
    ax.set_title("Sample distances")
    return _png(fig)


def library_sizes(library_size: pd.Series, flagged: pd.Series) -> bytes:
    """Total counts per sample; flagged outliers in red."""
    fig, ax = plt.subplots(figsize=(max(4.0, 0.3 * len(library_size) + 2), 3.5))
    colours = [UP if flagged.get(s, False) else DOWN for s in library_size.index]
    ax.bar(range(len(library_size)), library_size.to_numpy() / 1e6, color=colours)
    ax.set_xticks(range(len(library_size)), library_size.index, rotation=90, fontsize=7)
    ax.set_ylabel("Total counts (millions)")
    ax.set_title("Library sizes")
    return _png(fig)


ASSIGNMENT_PARTS = {"assigned": ("Assigned", "#27ae60"),
                    "unassigned_ambiguity": ("Ambiguous (2+ genes)", "#f39c12"),
                    "unassigned_no_features": ("No feature", "#8e44ad"),
                    "unassigned_multimapping": ("Multi-mapping", "#c0392b"),
                    "unassigned_not_in_tx2gene": ("Not in tx2gene", "#7f8c8d"),
                    "unassigned_unmapped": ("Unmapped", "#2c3e50"),
                    "unassigned_other": ("Other (secondary, singleton)", "#bdc3c7")}


def fragment_assignment(stats: pd.DataFrame) -> bytes:
    """Per sample, fragments assigned to genes and unassigned by reason (millions,
    stacked), as featureCounts/MultiQC show it; the assigned percentage is written on the
    bar."""
    parts = {c: v for c, v in ASSIGNMENT_PARTS.items() if stats[c].notna().any()}
    values = stats[list(parts)].astype("Float64").fillna(0).astype(float) / 1e6
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.28 * len(stats) + 1.2)))
    left = np.zeros(len(stats))
    for column, (label, colour) in parts.items():
        ax.barh(range(len(stats)), values[column], left=left, label=label, color=colour)
        left += values[column].to_numpy()
    for i, fraction in enumerate(stats["assigned_fraction"]):
        if pd.notna(fraction):
            ax.text(left[i], i, f" {fraction:.0%}", va="center", fontsize=7)
    ax.set_yticks(range(len(stats)), stats.index, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("Fragments (millions)")
    ax.set_title("Fragment assignment (% assigned)")
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def _significant(results: pd.DataFrame, alpha: float) -> np.ndarray:
    return (results["padj"] < alpha).to_numpy()


def ma_plot(results: pd.DataFrame, alpha: float, title: str) -> bytes:
    """Shrunken log2 fold change against mean normalized count; DEGs coloured."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    tested = results[results["base_mean"] > 0]
    lfc = tested["log2_fold_change_shrunk"].fillna(tested["log2_fold_change"])
    sig = _significant(tested, alpha)
    ax.scatter(tested["base_mean"][~sig], lfc[~sig], s=2, c=GREY, rasterized=True)
    ax.scatter(tested["base_mean"][sig], lfc[sig], s=3,
               c=np.where(lfc[sig] > 0, UP, DOWN), rasterized=True)
    ax.set_xscale("log")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlabel("Mean of normalized counts")
    ax.set_ylabel("log2 fold change (shrunken)")
    ax.set_title(f"MA: {title}")
    return _png(fig)


def volcano_plot(results: pd.DataFrame, alpha: float, lfc_threshold: float, title: str) -> bytes:
    """log2 fold change against -log10 p-value; DEGs coloured by direction."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    tested = results.dropna(subset=["pvalue"])
    y = -np.log10(np.maximum(tested["pvalue"].to_numpy(), 1e-300))
    x = tested["log2_fold_change"].to_numpy()
    sig = _significant(tested, alpha)
    ax.scatter(x[~sig], y[~sig], s=2, c=GREY, rasterized=True)
    ax.scatter(x[sig], y[sig], s=3, c=np.where(x[sig] > 0, UP, DOWN), rasterized=True)
    for edge in (-lfc_threshold, lfc_threshold) if lfc_threshold > 0 else ():
        ax.axvline(edge, color="black", lw=0.6, ls="--")
    ax.set_xlabel("log2 fold change")
    ax.set_ylabel("-log10 p-value")
    ax.set_title(f"Volcano: {title} ({int(sig.sum())} DEGs at padj < {alpha})")
    return _png(fig)


def pvalue_histogram(results: pd.DataFrame, title: str) -> bytes:
    """Histogram of p-values of genes that passed independent filtering."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    kept = results.loc[results["padj"].notna(), "pvalue"]
    ax.hist(kept, bins=40, range=(0, 1), color=DOWN)
    ax.set_xlabel("p-value")
    ax.set_ylabel("genes")
    ax.set_title(f"p-values: {title}")
    return _png(fig)


def dispersion_plot(dispersions: pd.DataFrame) -> bytes:
    """Gene-wise, fitted (trend) and final dispersions against mean normalized count."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    d = dispersions[dispersions["base_mean"] > 0].sort_values("base_mean")
    ax.scatter(d["base_mean"], d["dispersion_gene_est"], s=2, c="black", label="gene-wise",
               rasterized=True)
    ax.scatter(d["base_mean"], d["dispersion"], s=2, c="#2e86c1", label="final", rasterized=True)
    ax.plot(d["base_mean"], d["dispersion_trend"], c="#e74c3c", lw=1.5, label="trend")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Mean of normalized counts")
    ax.set_ylabel("Dispersion")
    ax.set_title("Dispersion estimates")
    ax.legend(markerscale=4, fontsize=7)
    return _png(fig)


def enrichment_dotplot(table: pd.DataFrame, title: str, n: int = 10) -> bytes:
    """Top terms by adjusted p-value, GSEA (x = NES) and ORA (x = odds ratio) side by side;
    size = set size, colour = -log10 padj (floored at 1e-10: permutation FDRs of 0 only mean
    "below the resolution of the permutations")."""
    panels = [("GSEA prerank", "NES", table[table["method"] == "gsea_prerank"]),
              ("ORA (up / down DEGs)", "odds ratio", table[table["method"] != "gsea_prerank"])]
    fig, axes = plt.subplots(1, 2, figsize=(13, max(3.0, 0.33 * n + 1.4)))
    for ax, (name, xlabel, rows) in zip(axes, panels):
        top = rows.dropna(subset=["padj"]).sort_values(["padj", "pvalue"]).head(n).iloc[::-1]
        if len(top):
            points = ax.scatter(top["score"], range(len(top)),
                                s=20 + 120 * top["size"] / top["size"].max(),
                                c=-np.log10(np.maximum(top["padj"], 1e-10)), cmap="viridis",
                                vmin=0, vmax=10)
            labels = [f"{'up' if m == 'ora_up' else 'down' if m == 'ora_down' else ''} "
                      f"{t[:48]}".strip() for m, t in zip(top["method"], top["term"])]
            ax.set_yticks(range(len(top)), labels, fontsize=7)
            fig.colorbar(points, ax=ax, label="-log10 padj", shrink=0.8)
        ax.set_xlabel(xlabel)
        ax.set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def plate_heatmap(values: pd.Series, title: str, *, cmap: str = "viridis", label: str = "",
                  flagged: pd.Series | None = None) -> bytes:
    """One value per well on the plate grid (8 x 12 or 16 x 24, inferred from the wells);
    wells without a value grey, flagged wells crossed."""
    from dge_platform.screen.well_qc import PLATE_SHAPES, ROW_LETTERS, plate_layout

    rows, cols, plate_format = plate_layout(pd.Series(values.index.astype(str), values.index))
    n_rows, n_cols = PLATE_SHAPES[plate_format]
    grid = np.full((n_rows, n_cols), np.nan)
    grid[rows.to_numpy(), cols.to_numpy()] = pd.to_numeric(values, errors="coerce").to_numpy()
    colours = matplotlib.colormaps[cmap].with_extremes(bad=GREY)
    fig, ax = plt.subplots(figsize=(1.2 + 0.42 * n_cols, 0.8 + 0.42 * n_rows))
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=colours)
    if flagged is not None:
        marked = flagged.reindex(values.index).fillna(False).astype(bool).to_numpy()
        ax.scatter(cols.to_numpy()[marked], rows.to_numpy()[marked], marker="x", c="red",
                   s=40, linewidths=1.5, label="flagged")
        if marked.any():
            ax.legend(loc="upper left", bbox_to_anchor=(1.25, 1.0), fontsize=7)
    ax.set_xticks(range(n_cols), [str(c + 1) for c in range(n_cols)], fontsize=7)
    ax.set_yticks(range(n_rows), list(ROW_LETTERS[:n_rows]), fontsize=7)
    ax.tick_params(top=True, labeltop=True, bottom=False, labelbottom=False)
    fig.colorbar(image, ax=ax, label=label, shrink=0.8)
    ax.set_title(title, fontsize=9)
    return _png(fig)


def similarity_heatmap(similarity: pd.DataFrame, order: list[str],
                       clusters: pd.Series | None = None) -> bytes:
    """Condition x condition correlation of signatures in dendrogram order; a strip of
    cluster colours on the left (labels hidden beyond 150 conditions, where they overlap)."""
    ordered = similarity.loc[order, order]
    n = len(ordered)
    size = min(20.0, max(4.0, 0.14 * n + 2.5))
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(ordered.to_numpy(dtype=float), cmap="RdBu_r", vmin=-1, vmax=1,
                      interpolation="nearest")
    if clusters is not None and n:
        ids = pd.Categorical(clusters.reindex(order).astype(str)).codes
        ax.scatter(np.full(n, -1.2), range(n), c=ids % 20, cmap="tab20", vmin=0, vmax=19,
                   marker="s", s=max(4.0, 600 / max(n, 1)), clip_on=False)
        boundaries = np.flatnonzero(np.diff(ids)) + 0.5
        for edge in boundaries:
            ax.axhline(edge, color="black", lw=0.4)
            ax.axvline(edge, color="black", lw=0.4)
    if n <= 150:
        fontsize = 7 if n <= 40 else 5
        ax.set_xticks(range(n), ordered.columns, rotation=90, fontsize=fontsize)
        ax.set_yticks(range(n), ordered.index, fontsize=fontsize)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlim(-1.8, n - 0.5)
    fig.colorbar(image, ax=ax, label="Pearson r of signatures", shrink=0.6)
    ax.set_title("Compound signature similarity")
    return _png(fig)


def _categorical_colours(n: int) -> list:
    """n distinct colours: tab10, tab20, then tab20b/tab20c, then a hue wheel."""
    if n <= 10:
        return list(matplotlib.colormaps["tab10"].colors[:n])
    palette = list(matplotlib.colormaps["tab20"].colors) + \
        list(matplotlib.colormaps["tab20b"].colors) + list(matplotlib.colormaps["tab20c"].colors)
    if n <= len(palette):
        return palette[:n]
    return [matplotlib.colormaps["hsv"](i / n) for i in range(n)]


CELL_QC_PANELS = (("total_counts", "Total counts", True), ("n_genes", "Genes detected", True),
                  ("pct_mito", "Mitochondrial %", False),
                  ("doublet_score", "Doublet score", False))
MAX_FAILED_POINTS = 3000


def cell_qc_distributions(table: pd.DataFrame, groups: pd.Series) -> bytes:
    """Per group (capture), violins of total counts, genes detected (both log scale),
    mitochondrial % and doublet score over the cells that passed; cells that failed are
    red points (a random subset of at most 3,000 per panel), so the cut-offs show as the
    edge between violin and points. Panels whose metric is all missing say so."""
    labels = groups.reindex(table.index) if isinstance(groups, pd.Series) and \
        table.index.isin(groups.index).all() else pd.Series(np.asarray(groups), table.index)
    labels = labels.astype(object).where(labels.notna(), "nan").astype(str)
    names = sorted(labels.unique())
    passed = table["passed"].astype(bool).to_numpy() if "passed" in table else \
        np.ones(len(table), dtype=bool)
    rng = np.random.default_rng(0)
    failed_rows = np.flatnonzero(~passed)
    if len(failed_rows) > MAX_FAILED_POINTS:
        failed_rows = np.sort(rng.choice(failed_rows, MAX_FAILED_POINTS, replace=False))
    position = {name: i for i, name in enumerate(names)}
    width = min(24.0, max(7.0, 0.45 * len(names) + 3))
    fig, axes = plt.subplots(len(CELL_QC_PANELS), 1, figsize=(width, 2.4 * len(CELL_QC_PANELS)),
                             sharex=True)
    for ax, (column, label, log) in zip(axes, CELL_QC_PANELS):
        values = pd.to_numeric(table[column], errors="coerce") if column in table else \
            pd.Series(np.nan, index=table.index)
        values = values.astype(float)
        if log:
            values = np.log10(values.where(values > 0))
        if values.notna().sum() == 0:
            ax.text(0.5, 0.5, f"{label}: not computed", ha="center", va="center",
                    transform=ax.transAxes, color=GREY)
            ax.set_ylabel(label, fontsize=8)
            continue
        data, where = [], []
        for name in names:
            member = values[(labels == name).to_numpy() & passed].dropna().to_numpy()
            if len(member) >= 2 and np.ptp(member) > 0:
                data.append(member)
                where.append(position[name])
        if data:
            parts = ax.violinplot(data, positions=where, widths=0.8, showmedians=True,
                                  showextrema=False)
            for body in parts["bodies"]:
                body.set_facecolor(DOWN)
                body.set_alpha(0.5)
        failed = values.iloc[failed_rows]
        keep = failed.notna().to_numpy()
        x = labels.iloc[failed_rows].map(position).to_numpy(dtype=float)[keep]
        ax.scatter(x + rng.uniform(-0.25, 0.25, len(x)), failed.to_numpy()[keep], s=3, c=UP,
                   alpha=0.6, rasterized=True, label="failed QC")
        ax.set_ylabel(f"log10 {label.lower()}" if log else label, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1].set_xticks(range(len(names)), names, rotation=90 if len(names) > 6 else 0,
                        fontsize=7)
    n_failed = int((~passed).sum())
    axes[0].set_title(f"Cell QC per {groups.name or 'group'}: {len(table) - n_failed:,} "
                      f"passed (violins), {n_failed:,} failed (red points)", fontsize=9)
    return _png(fig)


def umap_plot(coords: np.ndarray, labels: pd.Series, title: str) -> bytes:
    """2-D embedding coloured by a categorical label, legend on the right (labels also
    written at their centroids beyond 12 categories). Points are rasterized and drawn in
    random order, so no category hides another; point size shrinks with the cell count."""
    coords = np.asarray(coords, dtype=float)[:, :2]
    values = pd.Series(np.asarray(labels.astype(object)), dtype=object)
    values = values.where(values.notna(), "nan").astype(str)
    if isinstance(labels.dtype, pd.CategoricalDtype):
        names = [str(c) for c in labels.cat.categories if str(c) in set(values)]
        names += sorted(set(values) - set(names))
    else:
        names = sorted(values.unique(), key=lambda s: (not s.isdigit(), int(s) if
                                                       s.isdigit() else 0, s))
    colours = _categorical_colours(len(names))
    code = values.map({name: i for i, name in enumerate(names)}).to_numpy()
    order = np.random.default_rng(0).permutation(len(coords))
    size = float(np.clip(30000 / max(len(coords), 1), 0.3, 12))
    fig, ax = plt.subplots(figsize=(7.5 if len(names) <= 20 else 9, 5.5))
    palette = np.array([matplotlib.colors.to_rgba(c) for c in colours]) if names else \
        np.zeros((0, 4))
    if len(coords):
        ax.scatter(coords[order, 0], coords[order, 1], c=palette[code[order]], s=size,
                   linewidths=0, rasterized=True)
    for i, name in enumerate(names):
        ax.scatter([], [], color=colours[i], s=25, label=f"{name} ({int((code == i).sum()):,})")
        if len(names) > 12:
            centre = np.median(coords[code == i], axis=0)
            ax.text(centre[0], centre[1], name, fontsize=7, ha="center", va="center",
                    weight="bold")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    ax.set_title(title, fontsize=10)
    if names:
        ax.legend(title=labels.name, loc="center left", bbox_to_anchor=(1.0, 0.5),
                  fontsize=7, title_fontsize=8, markerscale=1, frameon=False,
                  ncol=1 if len(names) <= 25 else 2)
    return _png(fig)


MAX_ACTIVITY_SOURCES = 40
"""Sources shown in an activity heatmap: the most variable (TF networks have hundreds)."""
MAX_ACTIVITY_COLUMNS = 30
"""Beyond this many conditions, conditions become rows, so their labels stay readable."""


def activity_heatmap(table: pd.DataFrame, title: str) -> bytes:
    """Sources x conditions coloured by activity score (symmetric scale; * where padj < 0.05).
    Conditions are contrasts (``contrast / cell type`` in single-cell studies); in screens
    they are ordered by compound, then dose."""
    frame = table.assign(condition=table["contrast"].where(
        table["cell_type"].isna(), table["contrast"] + " / " + table["cell_type"].fillna("")))
    order = (frame.drop_duplicates("condition")
             .sort_values(["compound", "dose", "condition"], na_position="first")["condition"])
    scores = frame.pivot_table(index="source", columns="condition", values="score")
    scores = scores.reindex(columns=[c for c in order if c in scores.columns])
    significant = frame.pivot_table(index="source", columns="condition", values="padj") \
        .reindex_like(scores) < 0.05
    if len(scores) > MAX_ACTIVITY_SOURCES:
        keep = scores.abs().max(axis=1).sort_values(ascending=False).index[:MAX_ACTIVITY_SOURCES]
        scores, significant = scores.loc[keep], significant.loc[keep]
    if scores.shape[1] > MAX_ACTIVITY_COLUMNS:  # many conditions (screens): one per row
        scores, significant = scores.T, significant.T
    n_rows, n_cols = scores.shape
    fig, ax = plt.subplots(figsize=(min(22.0, 3.5 + 0.3 * n_cols), min(30.0, 1.8 + 0.22 * n_rows)))
    limit = float(np.nanmax(np.abs(scores.to_numpy()))) if scores.size else 1.0
    image = ax.imshow(scores.to_numpy(dtype=float), cmap="RdBu_r", vmin=-limit, vmax=limit,
                      aspect="auto", interpolation="nearest")
    _stars(ax, significant.fillna(False).to_numpy(), np.abs(scores.to_numpy()) / limit)
    ax.set_xticks(range(n_cols), scores.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(n_rows), scores.index, fontsize=7 if n_rows <= 60 else 5)
    fig.colorbar(image, ax=ax, label="activity (t-value)", shrink=0.6)
    ax.set_title(title)
    return _png(fig)


def _stars(ax, marked: np.ndarray, darkness: np.ndarray) -> None:
    """A * on each marked heatmap cell, white where the cell is dark (``darkness`` near 1)."""
    for i, j in zip(*np.nonzero(marked)):
        ax.text(j, i, "*", ha="center", va="center", fontsize=9,
                color="white" if darkness[i, j] > 0.6 else "black")


def pc_association_heatmap(associations: pd.DataFrame, title: str | None = None) -> bytes:
    """Sample variables x leading PCs coloured by -log10 p of their association (ANOVA or
    correlation), the PC's share of variance in its label; * where p < 0.01."""
    labels = {row.component: f"{row.component} ({row.variance_explained:.0%})"
              for row in associations.itertuples()}
    table = associations.assign(component=associations["component"].map(labels))
    logp = table.pivot_table(index="variable", columns="component", values="pvalue")
    logp = -np.log10(logp.clip(lower=1e-300))[[labels[c] for c in dict.fromkeys(
        associations["component"])]]
    fig, ax = plt.subplots(figsize=(2.5 + 0.9 * logp.shape[1], 1.5 + 0.35 * logp.shape[0]))
    top = max(2.0, float(np.nanmax(logp.to_numpy())))
    image = ax.imshow(logp.to_numpy(dtype=float), cmap="Reds", vmin=0, vmax=top, aspect="auto")
    _stars(ax, (logp > 2).to_numpy(), logp.to_numpy() / top)
    ax.set_xticks(range(logp.shape[1]), logp.columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(logp.shape[0]), logp.index, fontsize=8)
    fig.colorbar(image, ax=ax, label="-log10 p", shrink=0.7)
    ax.set_title(title or "Sample variables vs principal components")
    return _png(fig)


def top_sources(table: pd.DataFrame, title: str, n: int = 10, max_panels: int = 6) -> bytes:
    """Per contrast (the first ``max_panels``), the ``n`` sources with the largest |score| as
    horizontal bars (red: activated, blue: repressed), strongest on top."""
    frame = table.assign(condition=table["contrast"].where(
        table["cell_type"].isna(), table["contrast"] + " / " + table["cell_type"].fillna("")))
    conditions = list(dict.fromkeys(frame["condition"]))[:max_panels]
    fig, axes = plt.subplots(1, max(1, len(conditions)), squeeze=False,
                             figsize=(3.2 * max(1, len(conditions)), 0.9 + 0.28 * n))
    for ax, condition in zip(axes[0], conditions):
        rows = frame[frame["condition"] == condition]
        top = rows.loc[rows["score"].abs().sort_values(ascending=False).index[:n]][::-1]
        ax.barh(top["source"], top["score"],
                color=np.where(top["score"] > 0, "#c0392b", "#2e86c1"))
        ax.axvline(0, color="black", lw=0.5)
        ax.set_title(condition, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("activity (t-value)", fontsize=7)
    fig.suptitle(title)
    return _png(fig)


def curve_positions(doses: pd.Series) -> tuple[np.ndarray, float, np.ndarray]:
    """Plotting positions on a log axis: controls (dose 0) a third of a decade left of the
    lowest dose; and a dense grid for fitted curves across the tested doses."""
    tested = doses[doses > 0]
    left = float(tested.min()) / 3
    grid = np.geomspace(left, float(tested.max()), 200)
    return np.where(doses > 0, doses, left), left, grid


def dose_response_curves(points: pd.DataFrame, doses: pd.Series, fits: pd.DataFrame,
                         title: str) -> bytes:
    """One panel per fit: each well's value (controls at the left), the fitted model, the BMD
    (dashed) and its BMDL-BMDU interval (shaded).

    ``points``: fits x wells; ``doses``: per well (controls 0); ``fits``: indexed like
    ``points``, with label, best_model, params (JSON), bmd, bmdl, bmdu, hitcall.
    """
    import json

    from dge_platform.screen.concentration_response import model_response

    x, left, grid = curve_positions(doses.loc[points.columns].astype(float))
    n = len(fits)
    ncols = min(3, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.8 * nrows), squeeze=False)
    for ax, (key, fit) in zip(axes.ravel(), fits.iterrows()):
        ax.scatter(x, points.loc[key].to_numpy(float), s=12, c=np.where(x == left, GREY, UP),
                   alpha=0.8, zorder=3)
        curve = model_response(fit["best_model"], json.loads(fit["params"]), grid)
        ax.plot(grid, curve, color="black", lw=1.2)
        if np.isfinite(fit["bmd"]):
            low = fit["bmdl"] if np.isfinite(fit["bmdl"]) else grid[0]
            high = fit["bmdu"] if np.isfinite(fit["bmdu"]) else grid[-1]
            ax.axvspan(low, high, color=DOWN, alpha=0.15, lw=0)
            ax.axvline(fit["bmd"], color=DOWN, ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_title(f"{fit['label']} ({fit['best_model']}, hit {fit['hitcall']:.2f})",
                     fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle(f"{title}: BMD (dashed) and BMDL-BMDU (shaded); controls at the left",
                 fontsize=9)
    return _png(fig)


def pod_summary(pods: pd.DataFrame) -> bytes:
    """Each compound's points of departure with their intervals on a log dose axis, one
    marker per POD type; compounds ordered by their lowest POD."""
    types = list(dict.fromkeys(pods["pod_type"]))
    colours = dict(zip(types, _categorical_colours(len(types))))
    order = pods.groupby("compound")["pod"].min().sort_values().index.tolist()
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.32 * len(order) * max(1, len(types)) / 3))
    offsets = np.linspace(-0.3, 0.3, len(types)) if len(types) > 1 else np.zeros(1)
    for offset, pod_type in zip(offsets, types):
        rows = pods[pods["pod_type"] == pod_type]
        y = np.array([order.index(c) for c in rows["compound"]]) + offset
        low = np.where(rows["pod_lower"].notna(), rows["pod"] - rows["pod_lower"], 0)
        high = np.where(rows["pod_upper"].notna(), rows["pod_upper"] - rows["pod"], 0)
        ax.errorbar(rows["pod"], y, xerr=[low, high], fmt="o", ms=4, lw=1,
                    color=colours[pod_type], label=pod_type)
    ax.set_xscale("log")
    ax.set_yticks(range(len(order)), order, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("point of departure (dose), with its interval")
    ax.legend(fontsize=7, loc="best")
    ax.set_title("Points of departure by compound")
    return _png(fig)


def position_effects_heatmap(table: pd.DataFrame) -> bytes:
    """-log10 p of each plate's position tests: rows plate x variable, columns row, column,
    edge; cells with p < 0.01 starred."""
    grid = table.pivot_table(index=["plate", "variable"], columns="position", values="pvalue",
                             aggfunc="min")
    grid = grid.reindex(columns=[c for c in ("row", "column", "edge") if c in grid.columns])
    values = -np.log10(grid.to_numpy(float).clip(1e-300))
    fig, ax = plt.subplots(figsize=(4.2, 1.0 + 0.3 * len(grid)))
    image = ax.imshow(values, cmap="Reds", vmin=0, vmax=max(4.0, np.nanmax(values)),
                      aspect="auto")
    _stars(ax, grid.to_numpy(float) < 0.01, values / max(4.0, np.nanmax(values)))
    ax.set_xticks(range(grid.shape[1]), grid.columns, fontsize=8)
    ax.set_yticks(range(len(grid)), [f"{p} {v}" for p, v in grid.index], fontsize=7)
    fig.colorbar(image, ax=ax, label="-log10 p", shrink=0.8)
    ax.set_title("Plate position effects (control wells; * p < 0.01)", fontsize=9)
    return _png(fig)


INTERACTION_COLOURS = {"synergistic": "#d62728", "antagonistic": "#1f77b4",
                       "emergent": "#9467bd", "additive": "#7f7f7f", "unchanged": "#d9d9d9"}


def combination_scatter(effects: pd.DataFrame, title: str) -> bytes:
    """Observed against expected (additive) log2 fold change of one combination's genes,
    coloured by class; the diagonal is additivity."""
    fig, ax = plt.subplots(figsize=(5.2, 5))
    for name, colour in reversed(INTERACTION_COLOURS.items()):
        rows = effects[effects["interaction_class"] == name]
        if len(rows):
            ax.scatter(rows["expected_log2fc"], rows["observed_log2fc"], s=5 if name in (
                "additive", "unchanged") else 10, color=colour, lw=0, alpha=0.8,
                label=f"{name} ({len(rows)})", rasterized=True)
    finite = effects[["expected_log2fc", "observed_log2fc"]].to_numpy(float)
    finite = finite[np.isfinite(finite).all(axis=1)]
    limit = float(np.percentile(np.abs(finite), 99.9)) * 1.1 if len(finite) else 1.0
    limit = max(limit, 1.0)
    ax.plot([-limit, limit], [-limit, limit], color="black", lw=0.8, ls="--")
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_xlabel("expected log2 fold change (agent 1 + agent 2)")
    ax.set_ylabel("observed log2 fold change (combination)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, markerscale=2, loc="upper left")
    return _png(fig)


def combination_class_counts(summary: pd.DataFrame) -> bytes:
    """Genes per class of each combination (stacked bars, additive and unchanged left out),
    non-additive combinations marked with a star."""
    classes = ["synergistic", "antagonistic", "emergent"]
    fig, ax = plt.subplots(figsize=(8, 1.4 + 0.3 * len(summary)))
    y = np.arange(len(summary))
    left = np.zeros(len(summary))
    for name in classes:
        values = summary[f"n_{name}"].to_numpy(float)
        ax.barh(y, values, left=left, color=INTERACTION_COLOURS[name], label=name)
        left += values
    labels = [f"{c} *" if flag else c for c, flag in
              zip(summary["combination"], summary["nonadditive"])]
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("genes with interaction padj < alpha")
    ax.set_title("Non-additive genes per combination (* above the null)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return _png(fig)
