"""The SQL contract's column descriptions: every guaranteed column of every catalog table has
one, and per-table notes only name columns their table holds."""

from __future__ import annotations

import pytest

from dge_platform.storage.tables import COLUMN_DESCRIPTIONS, STAT_COLUMNS, TABLES, TableSpec

MAX_LENGTH = 160


@pytest.mark.parametrize("spec", TABLES.values(), ids=list(TABLES))
def test_every_column_has_a_one_line_description(spec: TableSpec):
    for name, _ in spec.columns:
        text = spec.column_description(name)
        assert text.strip(), f"{spec.name}.{name} has no description: add it to " \
            "COLUMN_DESCRIPTIONS (or the table's column_notes where it means something else)"
        assert "\n" not in text and len(text) <= MAX_LENGTH, f"{spec.name}.{name}: {text!r}"
    assert list(spec.column_descriptions) == [name for name, _ in spec.columns]


@pytest.mark.parametrize("spec", TABLES.values(), ids=list(TABLES))
def test_notes_name_only_columns_of_their_table(spec: TableSpec):
    noted = [name for name, _ in spec.column_notes]
    columns = {name for name, _ in spec.columns}
    assert set(noted) <= columns, f"{spec.name}: notes on absent columns {set(noted) - columns}"
    assert len(noted) == len(set(noted)), f"{spec.name}: a column is noted twice"
    for name, text in spec.column_notes:
        assert text != COLUMN_DESCRIPTIONS.get(name), \
            f"{spec.name}.{name}: the note repeats the shared description"


def test_every_shared_description_is_used():
    used = {name for spec in TABLES.values() for name, _ in spec.columns
            if name not in dict(spec.column_notes)}
    assert set(COLUMN_DESCRIPTIONS) <= used, \
        f"shared descriptions no table uses: {sorted(set(COLUMN_DESCRIPTIONS) - used)}"


def test_counting_statistics_are_described():
    for name in STAT_COLUMNS:
        assert TABLES["samples"].column_description(name)


def test_a_note_overrides_the_shared_description():
    deg, markers = TABLES["deg_results"], TABLES["marker_genes"]
    assert markers.column_description("pvalue") != deg.column_description("pvalue")
    assert deg.column_description("stat") == COLUMN_DESCRIPTIONS["stat"]
    assert TABLES["sample_qc"].column_description("inferred_strandedness") != \
        TABLES["samples"].column_description("inferred_strandedness")


def test_columns_a_table_does_not_guarantee_have_no_description():
    # e.g. a study's own sample-sheet columns in samples, or another table's column
    assert TABLES["samples"].column_description("condition") == ""
    assert TABLES["genes"].column_description("padj") == ""
