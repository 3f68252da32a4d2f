"""Read a sample sheet: one row per sample, column ``sample`` naming the count columns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dge_platform._core.problems import Problem
from dge_platform.readers.counts import (
    TEXT_ERRORS,
    check_delimiter,
    delimiter_for,
    first_line,
    header_duplicates,
    not_text_problem,
    open_text,
)

SAMPLE_COLUMN = "sample"


def read_text_table(path: Path, rel: str) -> tuple[pd.DataFrame | None, list[Problem]]:
    """Read a CSV/TSV metadata table with every value as text.

    Surrounding whitespace is stripped, empty cells become missing values and column names
    must be unique and non-empty (except the first: R's row names). The header is read as a
    row, so pandas can neither rename repeated names (``a.1``) nor turn a surplus first field
    into an index.
    """
    sep = delimiter_for(path)
    try:
        problem = check_delimiter(rel, sep, first_line(path))
        if problem:
            return None, [problem]
        with open_text(path) as fh:
            rows = pd.read_csv(fh, sep=sep, header=None, dtype=str, keep_default_na=False)
    except TEXT_ERRORS as exc:
        return None, [not_text_problem(rel, exc)]
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        return None, [Problem(rel, "", f"cannot be parsed: {str(exc).strip()}",
                              "write one header row and one row per entry, each with the "
                              "header's number of fields")]
    names = [str(c).strip() if pd.notna(c) else "" for c in rows.iloc[0]]
    unnamed = [str(i + 1) for i, name in enumerate(names) if not name and i > 0]
    if unnamed:
        return None, [Problem(rel, "header", f"column(s) {', '.join(unnamed[:5])} have no name",
                              "name every column (only the first may be unnamed, as R's "
                              "write.csv leaves it)")]
    dups = header_duplicates(names)
    if dups:
        return None, [Problem(rel, "header", f"duplicate column name(s): {', '.join(dups)}",
                              "give every column a unique name")]
    table = rows.iloc[1:].reset_index(drop=True)
    table.columns = names
    table = table.apply(lambda col: col.str.strip()).replace("", pd.NA)
    if table.empty:
        return None, [Problem(rel, "", "has no data rows", "add one row per entry")]
    return table, []


def read_sample_sheet(path: Path, rel: str) -> tuple[pd.DataFrame | None, list[Problem]]:
    """Read a CSV/TSV sample sheet as text, indexed by ``sample``.

    Every value stays a string (as written); the design decides which columns are numeric.
    """
    sheet, problems = read_text_table(path, rel)
    if sheet is None:
        return None, problems
    if SAMPLE_COLUMN not in sheet.columns and sheet.columns[0] == "":
        # R's write.csv(colData) leaves the row-name column without a header: those are the
        # sample names.
        sheet = sheet.rename(columns={sheet.columns[0]: SAMPLE_COLUMN})
    if SAMPLE_COLUMN not in sheet.columns:
        return None, [Problem(rel, f"column '{SAMPLE_COLUMN}'", "missing; found columns: "
                              f"{', '.join(sheet.columns)}", "name the column holding the "
                              "count matrix's sample names 'sample'")]
    problems = []
    if sheet[SAMPLE_COLUMN].isna().any():
        rows = [str(i + 2) for i in sheet.index[sheet[SAMPLE_COLUMN].isna()]]
        problems.append(Problem(rel, f"column '{SAMPLE_COLUMN}'", f"empty sample name on "
                                f"line(s) {', '.join(rows)}", "name every sample"))
    dup = sheet[SAMPLE_COLUMN][sheet[SAMPLE_COLUMN].duplicated()].dropna().unique().tolist()
    if dup:
        problems.append(Problem(rel, f"column '{SAMPLE_COLUMN}'", f"duplicate sample name(s): "
                                f"{', '.join(dup)}", "list each sample once; for technical "
                                "replicates use distinct names and a replicate_of column"))
    if problems:
        return None, problems
    return sheet.set_index(SAMPLE_COLUMN), []
