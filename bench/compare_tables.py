"""Compare every catalog table of two warehouses, study by study: are they identical?

Used to show that a refactor changes no number: materialize the bundled studies with the old
code into one warehouse and with the new code into another, then

    python bench/compare_tables.py OLD_WAREHOUSE NEW_WAREHOUSE

prints, per table and study, ``identical`` or what differs (rows, columns, values), and
exits 1 if anything differs. Rows are compared in a canonical order (sorted on every
column), floats exactly (``NaN`` equal to ``NaN``). A table a study has only in one
warehouse is listed; an empty table on the other side counts as absent (the old single
graph wrote empty tables for studies of other kinds). ``studies.materialized_at`` records
when a run wrote the row and is not compared.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq


def study_tables(root: Path) -> dict[tuple[str, str], Path]:
    """``(table, study_id) -> file`` of every non-empty per-study table (cross-study tables
    have study ``''``)."""
    found = {}
    for path in sorted(root.glob("*/**/*.parquet")):
        table = path.relative_to(root).parts[0]
        part = next((p for p in path.parts if p.startswith("study_id=")), "study_id=")
        if pq.ParquetFile(path).metadata.num_rows:
            found[(table, part.removeprefix("study_id="))] = path
    return found


NOT_COMPARED = {"materialized_at"}
"""Columns that record when, not what."""


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[sorted(frame.columns)]
    return frame.sort_values(list(frame.columns), na_position="last",
                             key=lambda c: c.astype(str)).reset_index(drop=True)


def difference(old: Path, new: Path) -> str | None:
    """None when the files hold the same rows, else what differs."""
    a, b = (pd.read_parquet(p).drop(columns=list(NOT_COMPARED), errors="ignore")
            for p in (old, new))
    if set(a.columns) != set(b.columns):
        return f"columns differ: {sorted(set(a.columns) ^ set(b.columns))}"
    if len(a) != len(b):
        return f"{len(a)} rows before, {len(b)} after"
    a, b = canonical(a), canonical(b)
    for column in a.columns:
        left, right = a[column], b[column]
        same = (left == right) | (left.isna() & right.isna())
        if not same.all():
            return f"column {column}: {int((~same).sum())} values differ"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    args = parser.parse_args(argv)
    old, new = study_tables(args.old), study_tables(args.new)
    differ = 0
    for key in sorted(old.keys() | new.keys()):
        table, study = key
        label = f"{table:22s} {study or '(cross-study)'}"
        if key not in new or key not in old:
            print(f"{label}  only {'before' if key in old else 'after'}")
            differ += 1
            continue
        why = difference(old[key], new[key])
        print(f"{label}  {why or 'identical'}")
        differ += why is not None
    print(f"\n{len(old.keys() & new.keys()) - differ} of {len(old.keys() | new.keys())} "
          f"study tables identical")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
