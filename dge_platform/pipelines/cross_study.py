"""Cross-study steps: computed over every study's DEG results, read through the catalog."""

from __future__ import annotations

import pandas as pd

from dge_platform.cross_study.meta_analysis import contrast_similarity as similarity_of
from dge_platform.cross_study.meta_analysis import gene_recurrence as recurrence_of
from dge_platform.pipelines.step import Markdown, StepResult
from dge_platform.storage.catalog import connect
from dge_platform.storage.home import DgeHome
from dge_platform.storage.tables import TABLES

COLUMNS = ("study_id, contrast, cell_type, gene_id, gene_symbol, base_mean, log2_fold_change, "
           "stat, pvalue, padj, significant")


def all_results(home: DgeHome) -> pd.DataFrame:
    """Every study's DEG results (only the columns the cross-study tables need)."""
    con = connect(home)
    try:
        return con.sql(f"select {COLUMNS} from deg_results").df()
    finally:
        con.close()


def gene_recurrence(results: pd.DataFrame) -> StepResult:
    """Per gene, in how many studies and contrasts it is a DEG, and in which direction."""
    table = recurrence_of(results)
    return StepResult().add(
        "gene_recurrence", table[TABLES["gene_recurrence"].stored_columns], n_genes=len(table),
        n_studies=int(results["study_id"].nunique()),
        top=Markdown(table.head(20).to_markdown(index=False)))


def contrast_similarity(results: pd.DataFrame) -> StepResult:
    """Pairwise similarity of every two contrasts' signatures across studies."""
    table = similarity_of(results)
    return StepResult().add("contrast_similarity",
                            table[TABLES["contrast_similarity"].stored_columns],
                            n_pairs=len(table))
