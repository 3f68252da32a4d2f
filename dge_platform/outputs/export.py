"""DEG tables as biologists share them: one Excel sheet per contrast, or one long CSV/Parquet.

Pure functions over a study's ``deg_results`` rows and its ``studies`` row (no Dagster, no
CLI): :func:`export_table` (the long table), :func:`deg_export_tables` (one table per
contrast, or per contrast x cell type for single-cell studies, under Excel-safe unique sheet
names), :func:`about_sections` (the "about" sheet: study settings, one row per sheet with its
DEG counts, a column legend), :func:`build_export` (all of it) and :func:`write_export`.

Rows are sorted by ``padj`` (untested genes last), then by ``|log2_fold_change|``
(largest first), then ``gene_id``. Columns read gene_symbol, gene_id, base_mean,
log2_fold_change, log2_fold_change_shrunk, lfc_se, stat, pvalue, padj, significant, then the
screen columns compound and dose. ``compound``, ``dose`` and ``cell_type`` are dropped when
the study has no value in them (bulk studies have none; only screens have compound and dose,
only single-cell studies cell types).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FORMATS = ("xlsx", "csv", "parquet")

ABOUT_SHEET = "about"
SHEET_NAME_MAX = 31  # Excel's limit
EXCEL_MAX_ROWS = 1_048_576
_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
_RESERVED_SHEET_NAMES = {"history"}  # Excel reserves it

KEY_COLUMNS = ("contrast", "cell_type")
GENE_COLUMNS = ("gene_symbol", "gene_id", "base_mean", "log2_fold_change",
                "log2_fold_change_shrunk", "lfc_se", "stat", "pvalue", "padj", "significant")
OPTIONAL_COLUMNS = ("compound", "dose", "cell_type")  # dropped when all-null for the study

COLUMN_LEGEND: dict[str, str] = {
    "contrast": "The comparison (study.yaml contrast name): log2 fold changes are its level "
                "versus its reference (see the comparison column of the sheets table).",
    "cell_type": "Single-cell studies: the cell type whose pseudobulks (counts of its cells "
                 "summed per donor x condition) were tested with DESeq2.",
    "gene_symbol": "Gene symbol, from the input or mapped from Ensembl gene ids; empty when "
                   "unknown.",
    "gene_id": "Gene identifier as in the count matrix.",
    "base_mean": "Mean of the size-factor-normalized counts over all samples of the fit "
                 "(DESeq2 baseMean): the gene's expression level.",
    "log2_fold_change": "log2 fold change, level versus reference (DESeq2 maximum-likelihood "
                        "estimate): 1 = twice as high in the level, -1 = half. Noisy for "
                        "lowly expressed genes.",
    "log2_fold_change_shrunk": "The same fold change shrunk towards 0 (apeGLM-style Cauchy "
                               "prior): unreliable large estimates of lowly expressed or "
                               "variable genes shrink. Best for ranking genes by effect size "
                               "and for plots; significance comes from pvalue/padj.",
    "lfc_se": "Standard error of log2_fold_change.",
    "stat": "Wald statistic of the test; its sign is the direction of change.",
    "pvalue": "Wald test p-value (null hypothesis: |log2 fold change| <= the study's "
              "lfc_threshold, 0 by default). Not corrected for testing many genes.",
    "padj": "Benjamini-Hochberg adjusted p-value (false discovery rate) over the genes of this "
            "contrast (and cell type). Empty when DESeq2 did not test the gene: low counts "
            "(independent filtering), a count outlier (Cook's distance) or all counts zero.",
    "significant": "padj < alpha (the study's FDR cut-off, see above). DEGs up: significant "
                   "with log2_fold_change > 0; down: < 0.",
    "compound": "Screens: the compound of the condition tested against the vehicle control.",
    "dose": "Screens: the compound's dose (in the plate map's unit).",
}


@dataclass(frozen=True)
class DegSheet:
    """One exported table: its sheet name, what it holds and the rows (key columns dropped)."""

    name: str
    contrast: str
    cell_type: str | None
    table: pd.DataFrame


@dataclass
class DegExport:
    """Everything :func:`write_export` writes for one study."""

    study_id: str
    contrast: str | None
    long: pd.DataFrame                 # csv / parquet: all exported rows, key columns first
    sheets: list[DegSheet]             # xlsx: one per contrast (x cell type)
    about: dict[str, pd.DataFrame] = field(default_factory=dict)  # xlsx "about" sections

    @property
    def n_up(self) -> int:
        return int(_up(self.long).sum())

    @property
    def n_down(self) -> int:
        return int(_down(self.long).sum())


def platform_version() -> str:
    try:
        return metadata.version("dge-platform")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a plain checkout
        return "unknown"


def study_contrasts(study: Mapping[str, Any]) -> list[dict]:
    """The study's contrasts (name, factor, level, reference) from its ``studies`` row."""
    raw = study.get("contrasts")
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        return []
    try:
        items = json.loads(raw) if isinstance(raw, str) else list(raw)
    except ValueError:
        return []
    return [c for c in items if isinstance(c, dict) and "name" in c]


def _significant(frame: pd.DataFrame) -> pd.Series:
    return frame["significant"].fillna(False).astype(bool)


def _up(frame: pd.DataFrame) -> pd.Series:
    return _significant(frame) & (frame["log2_fold_change"] > 0)


def _down(frame: pd.DataFrame) -> pd.Series:
    return _significant(frame) & (frame["log2_fold_change"] < 0)


def _contrast_order(results: pd.DataFrame, study: Mapping[str, Any]) -> list[str]:
    """Contrasts in study.yaml order, then any others in first-seen order."""
    present = list(pd.unique(results["contrast"].astype(str)))
    configured = [c["name"] for c in study_contrasts(study) if c["name"] in set(present)]
    return configured + [c for c in present if c not in set(configured)]


def export_table(results: pd.DataFrame, study: Mapping[str, Any],
                 contrast: str | None = None) -> pd.DataFrame:
    """The study's deg_results as one long table: contrast (and cell_type) first, then the gene
    columns; contrasts in study.yaml order, cell types alphabetically, then genes by padj
    (untested last), |log2_fold_change| (largest first) and gene_id.

    ``contrast`` keeps only that contrast (KeyError if the results do not hold it).
    ``compound``/``dose``/``cell_type`` are dropped when all null in ``results``.
    """
    frame = results.drop(columns=["study_id"], errors="ignore").copy()
    missing = [c for c in ("contrast", *GENE_COLUMNS) if c not in frame.columns]
    if missing:
        raise ValueError(f"deg_results rows lack column(s): {', '.join(missing)}")
    frame = frame.drop(columns=[c for c in OPTIONAL_COLUMNS
                                if c in frame.columns and frame[c].isna().all()])
    frame["contrast"] = frame["contrast"].astype(str)
    if contrast is not None:
        if contrast not in set(frame["contrast"]):
            raise KeyError(contrast)
        frame = frame[frame["contrast"] == contrast]
    order = {name: i for i, name in enumerate(_contrast_order(frame, study))}
    sort = pd.DataFrame({
        "contrast": frame["contrast"].map(order),
        "cell_type": (frame["cell_type"].astype(str) if "cell_type" in frame.columns
                      else pd.Series("", index=frame.index)),
        "untested": frame["padj"].isna(),
        "padj": frame["padj"],
        "abs_lfc": -frame["log2_fold_change"].abs(),
        "gene_id": frame["gene_id"].astype(str),
    }, index=frame.index)
    # NaN |LFC| (genes with all-zero counts) sorts last within equal padj.
    ordered = sort.sort_values(list(sort.columns), kind="mergesort", na_position="last").index
    frame = frame.loc[ordered]
    keys = [c for c in KEY_COLUMNS if c in frame.columns]
    tail = [c for c in ("compound", "dose") if c in frame.columns]
    rest = [c for c in frame.columns if c not in {*keys, *GENE_COLUMNS, *tail}]
    return frame[[*keys, *GENE_COLUMNS, *tail, *rest]].reset_index(drop=True)


def _clean_sheet_name(name: str) -> str:
    name = _SHEET_FORBIDDEN.sub("_", str(name)).strip().strip("'").strip()
    return name or "sheet"


def unique_sheet_names(names: list[str], reserved: tuple[str, ...] = (ABOUT_SHEET,)) -> list[str]:
    """Excel-safe sheet names, in order: at most 31 characters, none of ``[]:*?/\\``, not
    starting or ending with an apostrophe, unique ignoring case (as Excel compares them) and
    distinct from ``reserved``; collisions get ``~2``, ``~3``, ... ."""
    taken = {r.lower() for r in reserved} | _RESERVED_SHEET_NAMES
    out = []
    for raw in names:
        base = _clean_sheet_name(raw)
        candidate = base[:SHEET_NAME_MAX].rstrip("'")
        n = 1
        while candidate.lower() in taken:
            n += 1
            suffix = f"~{n}"
            candidate = base[:SHEET_NAME_MAX - len(suffix)].rstrip("'") + suffix
        taken.add(candidate.lower())
        out.append(candidate)
    return out


def deg_sheets(results: pd.DataFrame, study: Mapping[str, Any],
               contrast: str | None = None) -> list[DegSheet]:
    """One sheet per contrast; single-cell studies one per contrast x cell type (named by
    the cell type alone when one contrast is exported, else ``<contrast> <cell type>``).
    Each table is sorted as :func:`export_table` and drops the columns the sheet is keyed by."""
    long = export_table(results, study, contrast)
    has_cell_type = "cell_type" in long.columns
    keys = ["contrast", "cell_type"] if has_cell_type else ["contrast"]
    groups = []
    for key, rows in long.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        cell_type = None if not has_cell_type or pd.isna(key[1]) else str(key[1])
        groups.append((str(key[0]), cell_type, rows.drop(columns=keys).reset_index(drop=True)))
    single_contrast = len({g[0] for g in groups}) == 1
    labels = [c if t is None else (t if single_contrast else f"{c} {t}") for c, t, _ in groups]
    names = unique_sheet_names(labels)
    return [DegSheet(name, c, t, table) for name, (c, t, table) in zip(names, groups)]


def deg_export_tables(results: pd.DataFrame, study: Mapping[str, Any],
                      contrast: str | None = None) -> dict[str, pd.DataFrame]:
    """``{sheet name: table}`` for every contrast (x cell type), in sheet order (the "about"
    sheet, see :func:`about_sections`, comes before them in the workbook)."""
    return {s.name: s.table for s in deg_sheets(results, study, contrast)}


def _fmt(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, pd.Timestamp):
        return value.isoformat(timespec="seconds")
    return value


def about_sections(sheets: list[DegSheet], study: Mapping[str, Any], *,
                   exported_at: datetime | None = None,
                   version: str | None = None) -> dict[str, pd.DataFrame]:
    """The "about" sheet's three tables: ``study`` (field, value: id, title, design, alpha,
    lfc_threshold, export time, platform version, ...), ``sheets`` (one row per sheet: what
    it holds, genes, tested, DEGs up/down) and ``columns`` (legend of the exported columns)."""
    exported_at = exported_at or datetime.now(UTC)
    settings = [
        ("study_id", study.get("study_id")),
        ("title", study.get("title")),
        ("kind", study.get("kind")),
        ("organism", study.get("organism")),
        ("design", study.get("design")),
        ("alpha", study.get("alpha")),
        ("lfc_threshold", study.get("lfc_threshold")),
        ("batch", study.get("batch")),
        ("study_ingested_at", study.get("materialized_at")),
        ("exported_at", pd.Timestamp(exported_at).isoformat(timespec="seconds")),
        ("platform_version", f"dge-platform {version or platform_version()}"),
        ("method", "DESeq2 Wald tests per contrast, BH-adjusted; see the dge-platform docs"),
    ]
    about_study = pd.DataFrame([(k, _fmt(v)) for k, v in settings], columns=["field", "value"])

    comparisons = {c["name"]: f"{c.get('factor')}: {c.get('level')} vs {c.get('reference')}"
                   for c in study_contrasts(study)}
    has_cell_type = any(s.cell_type is not None for s in sheets)
    rows = []
    for s in sheets:
        row = {"sheet": s.name, "contrast": s.contrast,
               "comparison": comparisons.get(s.contrast, "")}
        if has_cell_type:
            row["cell_type"] = s.cell_type or ""
        for col in ("compound", "dose"):
            if col in s.table.columns:
                values = s.table[col].dropna().unique()
                row[col] = values[0] if len(values) == 1 else ""
        row.update({"genes": len(s.table), "tested": int(s.table["padj"].notna().sum()),
                    "degs_up": int(_up(s.table).sum()), "degs_down": int(_down(s.table).sum())})
        rows.append(row)
    about_sheets = pd.DataFrame(rows)

    exported_columns = list(dict.fromkeys(
        [*KEY_COLUMNS, *(c for s in sheets for c in s.table.columns)]))
    if not has_cell_type:
        exported_columns.remove("cell_type")
    legend = pd.DataFrame([(c, COLUMN_LEGEND.get(c, "")) for c in exported_columns],
                          columns=["column", "meaning"])
    return {"study": about_study, "sheets": about_sheets, "columns": legend}


def build_export(results: pd.DataFrame, study: Mapping[str, Any], contrast: str | None = None,
                 *, exported_at: datetime | None = None,
                 version: str | None = None) -> DegExport:
    """The whole export of one study (optionally one contrast)."""
    sheets = deg_sheets(results, study, contrast)
    return DegExport(study_id=str(study.get("study_id")), contrast=contrast,
                     long=export_table(results, study, contrast), sheets=sheets,
                     about=about_sections(sheets, study, exported_at=exported_at,
                                          version=version))


def default_output_name(study_id: str, fmt: str, contrast: str | None = None) -> str:
    """``<study>_deg_results[_<contrast>].<ext>``."""
    suffix = f"_{re.sub(r'[^A-Za-z0-9_.+-]', '_', contrast)}" if contrast else ""
    return f"{study_id}_deg_results{suffix}.{fmt}"


def _column_widths(frame: pd.DataFrame) -> list[float]:
    """Autofit-ish widths: the longest header or value (sampled), within 8-60 characters."""
    widths = []
    sample = frame.head(5000)
    for col in frame.columns:
        values = sample[col]
        if pd.api.types.is_bool_dtype(values):
            longest = 5
        elif pd.api.types.is_float_dtype(values):
            longest = 11  # Excel's General format shows about 11 characters
        else:
            longest = int(values.dropna().astype(str).str.len().max()) if values.notna().any() \
                else 0
        widths.append(min(max(len(str(col)), longest, 6) + 2, 60))
    return widths


def _set_widths(ws, widths: list[float], start_col: int = 1, *, keep_wider: bool = False):
    from openpyxl.utils import get_column_letter

    for i, width in enumerate(widths):
        dim = ws.column_dimensions[get_column_letter(start_col + i)]
        if keep_wider and dim.width and dim.width > width:
            continue
        dim.width = width


def _write_xlsx(export: DegExport, path: Path) -> None:
    from openpyxl.styles import Alignment, Font

    bold = Font(bold=True)
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        row = 0
        titles = {"study": "Study", "sheets": "Sheets (one per contrast"
                  + (" x cell type)" if any(s.cell_type for s in export.sheets) else ")"),
                  "columns": "Columns"}
        widths: list[list[float]] = []
        title_rows = []
        for frame in export.about.values():
            title_rows.append(row + 1)
            frame.to_excel(writer, sheet_name=ABOUT_SHEET, startrow=row + 1, index=False)
            widths.append(_column_widths(frame))
            row += len(frame) + 3
        ws = writer.sheets[ABOUT_SHEET]
        for r, key in zip(title_rows, export.about):
            ws.cell(row=r, column=1, value=titles.get(key, key)).font = bold
        # A column's width serves every section; the legend's long text column is wrapped.
        merged = [max(w[i] for w in widths if i < len(w)) for i in range(max(map(len, widths)))]
        _set_widths(ws, [min(w, 40) for w in merged])
        if "columns" in export.about:  # wrap the legend's meanings in a 70-wide column B
            ws.column_dimensions["B"].width = max(ws.column_dimensions["B"].width or 0, 70)
            first = title_rows[list(export.about).index("columns")] + 2
            for r in range(first, first + len(export.about["columns"])):
                ws.cell(row=r, column=2).alignment = Alignment(wrap_text=True, vertical="top")
        for sheet in export.sheets:
            if len(sheet.table) >= EXCEL_MAX_ROWS:
                raise ValueError(f"sheet {sheet.name!r} has {len(sheet.table):,} rows, more "
                                 "than Excel allows; export csv or parquet instead")
            sheet.table.to_excel(writer, sheet_name=sheet.name, index=False, freeze_panes=(1, 0))
            ws = writer.sheets[sheet.name]
            ws.auto_filter.ref = ws.dimensions
            _set_widths(ws, _column_widths(sheet.table))


def write_export(export: DegExport, fmt: str, path: str | os.PathLike) -> Path:
    """Write ``export`` as xlsx (an "about" sheet, then one sheet per contrast [x cell type]),
    csv or parquet (the long table). The file appears complete or not at all."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        if fmt == "xlsx":
            _write_xlsx(export, tmp)
        elif fmt == "csv":
            export.long.to_csv(tmp, index=False)
        else:
            export.long.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
