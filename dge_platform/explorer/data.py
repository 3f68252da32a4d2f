"""Every query the explorer runs: parameterized SQL on the catalog's read-only connection.

No SQL is ever built from user text: values travel as parameters, and the few identifiers a
user can choose (sort column, filter column, operator) are looked up in fixed tables here.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dge_platform.storage.catalog import CatalogConnection, connect
from dge_platform.storage.home import DgeHome

DEG_COLUMNS = ("gene_symbol", "gene_id", "base_mean", "log2_fold_change",
               "log2_fold_change_shrunk", "lfc_se", "stat", "pvalue", "padj", "significant")
"""The DEG table's columns, in display order: also the only columns a user may sort or
filter on."""
NUMBER_OPS = {"equals": "=", "notEqual": "<>", "lessThan": "<", "lessThanOrEqual": "<=",
              "greaterThan": ">", "greaterThanOrEqual": ">="}
TEXT_OPS = {"contains": ("ilike", "%{}%"), "notContains": ("not ilike", "%{}%"),
            "equals": ("=", "{}"), "notEqual": ("<>", "{}"),
            "startsWith": ("ilike", "{}%"), "endsWith": ("ilike", "%{}")}
TEXT_COLUMNS = {"gene_symbol", "gene_id"}
MAX_PAGE = 1000
"""Rows a table request may ask for at once: a scan larger than this is paged."""


class FilterError(ValueError):
    """A filter the explorer cannot apply; its message says what is wrong and what is valid."""


@dataclass(frozen=True)
class DegFilter:
    """The filters of a contrast's DEG table, as the URL carries them."""

    search: str = ""
    padj_max: float | None = None
    abs_lfc_min: float | None = None
    direction: str = "any"  # any | up | down
    grid: dict = field(default_factory=dict)  # AG Grid's filterModel

    @classmethod
    def from_query(cls, query: dict[str, str]) -> DegFilter:
        """Parse URL query values, raising :class:`FilterError` with what is accepted."""
        def number(key: str, low: float, high: float) -> float | None:
            text = query.get(key, "").strip()
            if not text:
                return None
            try:
                value = float(text)
            except ValueError:
                raise FilterError(f"{key}={text!r} is not a number: give a number from "
                                  f"{low:g} to {high:g}") from None
            if not low <= value <= high:
                raise FilterError(f"{key}={text!r} is out of range: give a number from "
                                  f"{low:g} to {high:g}")
            return value

        direction = query.get("direction", "any") or "any"
        if direction not in ("any", "up", "down"):
            raise FilterError(f"direction={direction!r}: choose any, up or down")
        grid_text = query.get("filter", "")
        try:
            grid = json.loads(grid_text) if grid_text else {}
        except json.JSONDecodeError:
            raise FilterError("filter= is not valid JSON (it is written by the table's column "
                              "filters; clear them to start again)") from None
        if not isinstance(grid, dict):
            raise FilterError("filter= must be a JSON object of column filters")
        return cls(search=query.get("search", "").strip()[:100],
                   padj_max=number("padj", 0, 1), abs_lfc_min=number("lfc", 0, 100),
                   direction=direction, grid=grid)

    def sql(self) -> tuple[str, list]:
        """``AND``-joined conditions and their parameters (empty string: no condition)."""
        parts, params = [], []
        if self.search:
            parts.append("(gene_symbol ilike ? or gene_id ilike ?)")
            params += [f"%{self.search}%"] * 2
        if self.padj_max is not None:
            parts.append("padj <= ?")
            params.append(self.padj_max)
        if self.abs_lfc_min is not None:
            parts.append("abs(log2_fold_change) >= ?")
            params.append(self.abs_lfc_min)
        if self.direction != "any":
            parts.append("log2_fold_change > 0" if self.direction == "up"
                         else "log2_fold_change < 0")
        for column, model in self.grid.items():
            condition, values = _grid_condition(column, model)
            parts.append(condition)
            params += values
        return " and ".join(parts), params


def _grid_condition(column: str, model: object) -> tuple[str, list]:
    """One AG Grid column filter as SQL on a whitelisted column."""
    if column not in DEG_COLUMNS or not isinstance(model, dict):
        raise FilterError(f"cannot filter on {column!r}: filter one of {', '.join(DEG_COLUMNS)}")
    if "conditions" in model and model.get("operator") in ("AND", "OR"):
        pieces = [_grid_condition(column, m) for m in model["conditions"][:2]]
        joiner = f" {model['operator'].lower()} "
        return ("(" + joiner.join(p for p, _ in pieces) + ")",
                [v for _, values in pieces for v in values])
    kind = model.get("type")
    if kind in ("blank", "notBlank"):
        return f"{column} is {'' if kind == 'blank' else 'not '}null", []
    if column in TEXT_COLUMNS:
        if kind not in TEXT_OPS:
            raise FilterError(f"{column}: unknown text filter {kind!r}")
        op, pattern = TEXT_OPS[kind]
        return f"{column} {op} ?", [pattern.format(str(model.get("filter", ""))[:100])]
    if kind == "inRange":
        low, high = _number(model.get("filter")), _number(model.get("filterTo"))
        return f"{column} between ? and ?", [low, high]
    if kind not in NUMBER_OPS:
        raise FilterError(f"{column}: unknown number filter {kind!r}")
    return f"{column} {NUMBER_OPS[kind]} ?", [_number(model.get("filter"))]


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FilterError(f"{value!r} is not a number") from None


def order_by(sort: list[dict] | None) -> str:
    """ORDER BY for AG Grid's sortModel, on whitelisted columns (default: padj)."""
    keys = [f"{s['colId']} {'desc' if s.get('sort') == 'desc' else 'asc'} nulls last"
            for s in (sort or []) if isinstance(s, dict) and s.get("colId") in DEG_COLUMNS]
    return ", ".join(keys or ["padj asc nulls last"]) + ", gene_id"


class ExplorerData:
    """The catalog, read-only, for one app process. One DuckDB connection, reopened when the
    catalog changes (a run refreshed it); a lock, as the web server answers from threads."""

    def __init__(self, home: DgeHome):
        self.home = home
        self._lock = threading.Lock()
        self._con: CatalogConnection | None = None
        self._stamp: float | None = None
        self._cache: dict[tuple, pd.DataFrame] = {}

    def _connection(self) -> CatalogConnection:
        stamp = _mtime(self.home.catalog)
        if self._con is None or stamp != self._stamp:
            if self._con is not None:
                self._con.close()
            self._con, self._stamp, self._cache = connect(self.home), stamp, {}
        return self._con

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
            self._con = None

    def frame(self, sql: str, params: list | tuple = ()) -> pd.DataFrame:
        """Run one parameterized SELECT."""
        with self._lock:
            return self._connection().execute(sql, list(params)).df()

    def cached(self, key: tuple, sql: str, params: list | tuple = ()) -> pd.DataFrame:
        """:meth:`frame`, kept until the catalog changes (whole-warehouse summaries)."""
        with self._lock:
            con = self._connection()
            if key not in self._cache:
                self._cache[key] = con.execute(sql, list(params)).df()
            return self._cache[key]

    def tables(self) -> set[str]:
        return set(self.cached(("tables",), "select table_name from information_schema.tables"
                               )["table_name"])

    # --- studies

    def studies(self) -> pd.DataFrame:
        """One row per study: kind, title, samples, contrasts, DEGs, last run."""
        studies = self.frame("select study_id, kind, title, organism, n_samples, "
                             "materialized_at from studies order by study_id")
        degs = self.cached(("deg_counts",), "select study_id, count(distinct contrast) as "
                           "contrasts, count(*) filter (where significant) as degs "
                           "from deg_results group by study_id")
        table = studies.merge(degs, on="study_id", how="left")
        return table.fillna({"contrasts": 0, "degs": 0})

    def study(self, study_id: str) -> dict | None:
        rows = self.frame("select * from studies where study_id = ?", [study_id])
        if rows.empty:
            return None
        row = rows.iloc[0].to_dict()
        row["config"] = json.loads(row["config"]) if row.get("config") else {}
        return row

    def all_contrasts(self) -> pd.DataFrame:
        """Every study's contrasts (and cell types), for the multi-contrast filter's lists:
        one scan of deg_results, cached until the catalog changes."""
        return self.cached(("all_contrasts",), "select distinct study_id, contrast, "
                           "cell_type::varchar as cell_type from deg_results "
                           "order by study_id, contrast, cell_type")

    def warm(self) -> None:
        """Compute the whole-warehouse summaries now (the explorer's start-up)."""
        self.studies()
        self.all_contrasts()

    def study_ids(self) -> list[str]:
        return self.frame("select study_id from studies order by 1")["study_id"].tolist()

    def contrasts(self, study_id: str, alpha_lfc: tuple[float, float] | None = None
                  ) -> pd.DataFrame:
        """Per contrast (and cell type): genes, tested, DEGs up and down (the study's calls)."""
        return self.frame(
            "select contrast, cell_type::varchar as cell_type, any_value(compound) as compound, "
            "any_value(dose) as dose, count(*) as genes, count(padj) as tested, "
            "count(*) filter (where significant and log2_fold_change > 0) as up, "
            "count(*) filter (where significant and log2_fold_change < 0) as down "
            "from deg_results where study_id = ? group by contrast, cell_type "
            "order by contrast, cell_type", [study_id])

    def per_sample(self, table: str, study_id: str) -> pd.DataFrame:
        """A per-sample table of the study (``samples``, ``sample_qc``), columns without a
        value dropped (a matrix input has no counting statistics); empty if absent."""
        if table not in ("samples", "sample_qc") or table not in self.tables():
            return pd.DataFrame()
        rows = self.frame(f"select * exclude (study_id) from {table} where study_id = ? "
                          "order by sample", [study_id])
        return rows.dropna(axis=1, how="all")

    def design_diagnostics(self, study_id: str) -> pd.DataFrame:
        if "design_diagnostics" not in self.tables():
            return pd.DataFrame()
        return self.frame("select * from design_diagnostics where study_id = ? "
                          "order by cell_type, component, variable", [study_id])

    def deg_sets(self, study_id: str) -> dict[str, set[str]]:
        """The significant genes of each contrast (x cell type), for the UpSet plot."""
        rows = self.frame("select contrast || coalesce(' / ' || cell_type::varchar, '') as label, "
                          "gene_id from deg_results where study_id = ? and significant",
                          [study_id])
        return {name: set(genes) for name, genes in rows.groupby("label")["gene_id"]}

    # --- one contrast

    def has_contrast(self, study_id: str, contrast: str, cell_type: str | None) -> bool:
        rows = self.frame("select 1 from deg_results where study_id = ? and contrast = ? "
                          "and (cell_type = ? or (? is null and cell_type is null)) limit 1",
                          [study_id, contrast, cell_type, cell_type])
        return not rows.empty

    def _where(self, study_id: str, contrast: str, cell_type: str | None,
               filters: DegFilter) -> tuple[str, list]:
        where = ("study_id = ? and contrast = ? and "
                 "(cell_type = ? or (? is null and cell_type is null))")
        params: list = [study_id, contrast, cell_type, cell_type]
        extra, extra_params = filters.sql()
        if extra:
            where += " and " + extra
        return where, params + extra_params

    def deg_page(self, study_id: str, contrast: str, cell_type: str | None, filters: DegFilter,
                 sort: list[dict] | None, start: int, end: int) -> tuple[pd.DataFrame, int]:
        """Rows ``start``..``end`` of the filtered, sorted DEG table, and the filtered count."""
        where, params = self._where(study_id, contrast, cell_type, filters)
        start = max(0, int(start))
        limit = max(1, min(MAX_PAGE, int(end) - start))
        rows = self.frame(f"select {', '.join(DEG_COLUMNS)} from deg_results where {where} "
                          f"order by {order_by(sort)} limit ? offset ?", [*params, limit, start])
        total = int(self.frame(f"select count(*) as n from deg_results where {where}",
                               params)["n"].iloc[0])
        return rows, total

    def deg_rows(self, study_id: str, contrast: str, cell_type: str | None, filters: DegFilter,
                 sort: list[dict] | None, limit: int) -> pd.DataFrame:
        """The filtered, sorted DEG table (downloads), at most ``limit`` rows."""
        where, params = self._where(study_id, contrast, cell_type, filters)
        return self.frame(f"select {', '.join(DEG_COLUMNS)} from deg_results where {where} "
                          f"order by {order_by(sort)} limit ?", [*params, limit])

    def volcano(self, study_id: str, contrast: str, cell_type: str | None) -> pd.DataFrame:
        """Every tested gene of a contrast: symbol, id, base mean, log2FCs, p-values."""
        return self.frame(
            "select gene_id, gene_symbol, base_mean, log2_fold_change, "
            "log2_fold_change_shrunk, pvalue, padj "
            "from deg_results where study_id = ? and contrast = ? and "
            "(cell_type = ? or (? is null and cell_type is null)) and padj is not null",
            [study_id, contrast, cell_type, cell_type])

    def enrichment(self, study_id: str, contrast: str, cell_type: str | None,
                   n: int = 30) -> pd.DataFrame:
        return self.frame(
            "select method, collection, term, size, score, padj from enrichment "
            "where study_id = ? and contrast = ? and "
            "(cell_type = ? or (? is null and cell_type is null)) "
            "order by padj nulls last, term limit ?", [study_id, contrast, cell_type, cell_type, n])

    def activity(self, table: str, study_id: str, contrast: str, cell_type: str | None,
                 n: int = 30) -> pd.DataFrame:
        if table not in ("pathway_activity", "tf_activity") or table not in self.tables():
            return pd.DataFrame()
        return self.frame(
            f"select source, score, pvalue, padj, n_targets from {table} "
            "where study_id = ? and contrast = ? and "
            "(cell_type = ? or (? is null and cell_type is null)) "
            "order by abs(score) desc limit ?", [study_id, contrast, cell_type, cell_type, n])

    # --- genes

    def resolve_gene(self, gene: str) -> pd.DataFrame:
        """The (gene_id, gene_symbol) pairs a symbol or Ensembl id names (symbols matched
        case-insensitively when the exact case is absent)."""
        exact = self.frame("select distinct gene_id, gene_symbol from genes "
                           "where gene_symbol = ? or gene_id = ?", [gene, gene])
        if exact.empty:
            exact = self.frame("select distinct gene_id, gene_symbol from genes "
                               "where upper(gene_symbol) = upper(?) or upper(gene_id) = upper(?)",
                               [gene, gene])
        return exact

    def gene_results(self, gene_ids: list[str], symbols: list[str]) -> pd.DataFrame:
        """The gene in every study, contrast and cell type. Selected by symbol as well as id
        when it has one: deg_results is sorted by symbol, so its row groups are skipped."""
        by_symbol = (f"gene_symbol in ({', '.join('?' * len(symbols))}) and "
                     if symbols else "")
        return self.frame(
            "select study_id, contrast, cell_type::varchar as cell_type, compound, dose, "
            "gene_id, gene_symbol, base_mean, log2_fold_change, lfc_se, padj, significant "
            f"from deg_results where {by_symbol}gene_id in (select unnest(?)) "
            "order by study_id, contrast, cell_type", [*symbols, gene_ids])

    def gene_counts(self, gene_ids: list[str]) -> pd.DataFrame:
        """Normalized counts of the gene in every sample, with the sample sheet's columns."""
        counts = self.frame("select study_id, gene_id, sample, normalized_count "
                            "from normalized_counts where gene_id in (select unnest(?))",
                            [gene_ids])
        if counts.empty:
            return counts
        sheets = self.frame("select * from samples where study_id in (select unnest(?))",
                            [sorted(counts["study_id"].unique())])
        return counts.merge(sheets, on=["study_id", "sample"], how="left")

    def recurrence(self, gene_ids: list[str], symbols: list[str]) -> pd.DataFrame:
        if "gene_recurrence" not in self.tables():
            return pd.DataFrame()
        return self.frame("select * from gene_recurrence where gene_key in (select unnest(?)) "
                          "or gene_symbol in (select unnest(?))", [gene_ids, symbols])

    # --- screens

    def plates(self, study_id: str) -> list[str]:
        if "well_qc" not in self.tables():
            return []
        return self.frame("select distinct plate from well_qc where study_id = ? order by 1",
                          [study_id])["plate"].astype(str).tolist()

    def wells(self, study_id: str, plate: str) -> pd.DataFrame:
        return self.frame("select * from well_qc where study_id = ? and plate = ? "
                          "order by row, \"column\"", [study_id, plate])

    def compounds(self, study_id: str) -> list[str]:
        if "compound_activity" not in self.tables():
            return []
        return self.frame("select distinct compound from compound_activity "
                          "where study_id = ? order by 1", [study_id])["compound"].tolist()

    def compound_activity(self, study_id: str, compound: str) -> pd.DataFrame:
        return self.frame("select * from compound_activity where study_id = ? and compound = ? "
                          "order by dose", [study_id, compound])

    def compound_pathways(self, study_id: str, compound: str) -> pd.DataFrame:
        if "pathway_activity" not in self.tables():
            return pd.DataFrame()
        return self.frame("select source, dose, score, padj from pathway_activity "
                          "where study_id = ? and compound = ? order by source, dose",
                          [study_id, compound])

    def dose_response(self, study_id: str, compound: str, n: int = 6,
                      table: str = "dose_response") -> pd.DataFrame:
        """The compound's most sensitive fits (smallest BMD among those with fit_ok) of genes
        (``dose_response``) or pathway and gene-set scores (``pathway_dose_response``)."""
        if table not in self.tables():
            return pd.DataFrame()
        return self.frame(f"select * from {table} where study_id = ? and compound = ? "
                          "and fit_ok and bmd is not null order by bmd, hitcall desc limit ?",
                          [study_id, compound, n])

    def dose_expression(self, study_id: str, compound: str, gene_ids: list[str],
                        control: str | None) -> pd.DataFrame:
        """VST of genes in the compound's wells and the controls: key (gene id), dose (null
        for controls) and value, one row per gene and well."""
        return self.frame(
            "select v.gene_id as key, v.sample, v.vst as value, "
            "case when s.compound = ? then try_cast(s.dose as double) end as dose from vst v "
            "join samples s on s.study_id = v.study_id and s.sample = v.sample "
            "where v.study_id = ? and v.gene_id in (select unnest(?)) "
            "and (s.compound = ? or s.compound = ?)",
            [compound, study_id, gene_ids, compound, control])

    def dose_scores(self, study_id: str, compound: str, keys: list[str],
                    control: str | None) -> pd.DataFrame:
        """Pathway and gene-set scores (``collection::source``) in the compound's wells and
        the controls, shaped as :meth:`dose_expression`."""
        return self.frame(
            "select c.collection || '::' || c.source as key, c.sample, c.score as value, "
            "case when s.compound = ? then try_cast(s.dose as double) end as dose "
            "from sample_scores c join samples s on s.study_id = c.study_id "
            "and s.sample = c.sample where c.study_id = ? "
            "and c.collection || '::' || c.source in (select unnest(?)) "
            "and (s.compound = ? or s.compound = ?)",
            [compound, study_id, keys, compound, control])

    def pods(self, study_id: str, compound: str) -> pd.DataFrame:
        if "compound_pod" not in self.tables():
            return pd.DataFrame()
        return self.frame("select pod_type, pod, pod_lower, pod_upper, n_genes, detail, flags "
                          "from compound_pod where study_id = ? and compound = ? "
                          "order by pod", [study_id, compound])

    def potency(self, study_id: str, compound: str) -> pd.DataFrame:
        if "compound_potency" not in self.tables():
            return pd.DataFrame()
        return self.frame("select * from compound_potency where study_id = ? and compound = ?",
                          [study_id, compound])

    def columns(self, table: str) -> set[str]:
        """The columns of a catalog table (empty if absent): a warehouse written before a
        column existed has none of it."""
        return set(self.cached(("columns", table), "select column_name from "
                               "information_schema.columns where table_name = ?",
                               [table])["column_name"])

    def neighbours(self, study_id: str, compound: str) -> pd.DataFrame:
        """The compound's conditions' nearest conditions of other compounds, with the
        neighbour's MoA class and the condition's MoA hypothesis when the screen has them."""
        present = self.columns("compound_similarity")
        if not present:
            return pd.DataFrame()
        moa = [c for c in ("moa", "neighbor_moa", "moa_hypothesis", "moa_hypothesis_padj")
               if c in present]
        return self.frame("select contrast, rank, neighbor_contrast, neighbor_compound, "
                          f"neighbor_dose, correlation{''.join(', ' + c for c in moa)} "
                          "from compound_similarity where study_id = ? and compound = ? "
                          "order by dose, contrast, rank", [study_id, compound])

    def retrieval(self, study_id: str, level: str, compound: str | None = None
                  ) -> pd.DataFrame:
        """``moa_retrieval`` rows of a level: ``activity`` (per condition; of one compound
        when given) or ``consistency`` (per MoA class)."""
        if "moa_retrieval" not in self.tables():
            return pd.DataFrame()
        # dose as a number: a screen's run may have written it as text
        return self.frame("select * exclude (study_id, level, dose) replace "
                          "(try_cast(signature_strength as bigint) as signature_strength), "
                          "try_cast(dose as double) as dose from moa_retrieval "
                          "where study_id = ? and level = ? and (? is null or compound = ?) "
                          "order by try_cast(dose as double) nulls last, name",
                          [study_id, level, compound, compound])

    # --- combinations

    def combinations(self, study_id: str, compound: str | None = None) -> pd.DataFrame:
        """The screen's combinations (one row each, table ``combinations``); with
        ``compound``, those holding it as an agent or named by it (``A + B``)."""
        if "combinations" not in self.tables():
            return pd.DataFrame()
        return self.frame("select * exclude (study_id) from combinations where study_id = ? "
                          "and (? is null or compound_1 = ? or compound_2 = ? or "
                          "compound_1 || ' + ' || compound_2 = ?) order by combination",
                          [study_id, compound, compound, compound, compound])

    def combination_names(self, study_id: str) -> list[str]:
        if "combinations" not in self.tables():
            return []
        return self.frame("select combination from combinations where study_id = ? "
                          "order by 1", [study_id])["combination"].tolist()

    def combination_effects(self, study_id: str, combination: str) -> pd.DataFrame:
        """Every gene of a combination: interaction, observed, expected and single-agent
        log2 fold changes and the gene's class (smallest interaction padj first)."""
        return self.frame("select * exclude (study_id, combination) from combination_effects "
                          "where study_id = ? and combination = ? "
                          "order by padj nulls last, gene_id", [study_id, combination])

    def pathway_combination_effects(self, study_id: str, combination: str) -> pd.DataFrame:
        if "pathway_combination_effects" not in self.tables():
            return pd.DataFrame()
        return self.frame("select * exclude (study_id, combination) from "
                          "pathway_combination_effects where study_id = ? and combination = ? "
                          "order by padj nulls last, collection, source",
                          [study_id, combination])

    # --- single-cell

    def umap(self, study_id: str, limit: int = 20_000) -> pd.DataFrame:
        """Up to ``limit`` cells (a fixed-seed sample) with UMAP, type, donor, QC."""
        if "cell_types" not in self.tables():
            return pd.DataFrame()
        return self.frame(
            "select t.cell_id, t.umap_1, t.umap_2, t.cell_type, t.cluster, q.donor, "
            "q.sample, q.passed from cell_types t left join cell_qc q on "
            "q.study_id = t.study_id and q.cell_id = t.cell_id where t.study_id = ? "
            f"using sample reservoir({int(limit)} rows) repeatable (7)", [study_id])

    def pseudobulks(self, study_id: str) -> pd.DataFrame:
        if "pseudobulk_samples" not in self.tables():
            return pd.DataFrame()
        return self.frame("select cell_type, pseudobulk_sample, donor, condition, n_cells, "
                          "kept, reason from pseudobulk_samples where study_id = ? "
                          "order by cell_type, pseudobulk_sample", [study_id])

    # --- across studies

    def multi_filter(self, conditions: list[tuple[str, str, str, str | None]], alpha: float,
                     lfc: float, limit: int = 5000) -> pd.DataFrame:
        """Genes (by symbol) meeting every condition: (state, study, contrast, cell type)
        with state ``up``, ``down`` or ``unchanged`` (measured, not a DEG)."""
        states = {"up": "padj < ? and log2_fold_change >= ?",
                  "down": "padj < ? and log2_fold_change <= -?",
                  "unchanged": "not coalesce(padj < ? and abs(log2_fold_change) >= ?, false)"}
        # The chosen contrasts' rows once (their studies' files only), then the sets on them.
        studies = sorted({c[1] for c in conditions})
        one = ("(study_id = ? and contrast = ? and "
               "(cell_type = ? or (? is null and cell_type is null)))")
        picked = (f"select gene_symbol, study_id, contrast, cell_type::varchar as cell_type, "
                  f"log2_fold_change, padj from deg_results where study_id in "
                  f"({', '.join('?' * len(studies))}) and gene_symbol is not null and ("
                  + " or ".join(one for _ in conditions) + ")")
        picked_params = [*studies, *(v for _, s, c, t in conditions for v in (s, c, t, t))]
        sets = " intersect ".join(f"select gene_symbol from picked where {one} and {states[state]}"
                                  for state, *_ in conditions)
        set_params = [v for _, s, c, t in conditions for v in (s, c, t, t, alpha, lfc)]
        return self.frame(
            f"with picked as ({picked}), hits as ({sets} limit ?) select * from picked "
            "where gene_symbol in (select gene_symbol from hits) "
            "order by gene_symbol, study_id, contrast, cell_type",
            [*picked_params, *set_params, limit])


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
