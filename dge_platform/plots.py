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
    from dge_platform.well_qc import PLATE_SHAPES, ROW_LETTERS, plate_layout

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
