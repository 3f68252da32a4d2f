"""Ingest assets: validate a registered study and write its catalog tables."""

from collections.abc import Iterator
from functools import partial

import dagster as dg

from dge_platform.defs.batch import BACKFILL_POLICY, run_per_study, table_out
from dge_platform.defs.partitions import study_partitions
from dge_platform.defs.resources import DgeHomeResource
from dge_platform.home import DgeHome
from dge_platform.problems import StudyInputError
from dge_platform.study_tables import (
    genes_table,
    to_long,
    long_counts_problems,
    samples_table,
    study_row,
)
from dge_platform.validation import hash_files, load_study
from dge_platform.warehouse import Warehouse

GROUP = "ingest"
CODE_VERSION = "ingest-1"

study_inputs = dg.AssetSpec(
    "study_inputs",
    partitions_def=study_partitions,
    group_name=GROUP,
    description="The files of a registered study folder (study.yaml, counts, sample sheet). "
    "The study sensor observes them; their content hash is the data version, so a changed "
    "file marks everything downstream stale.",
)


@dg.multi_asset(
    outs={**{name: table_out(name, CODE_VERSION) for name in ("studies", "samples", "genes", "raw_counts")},
          "cell_counts": dg.AssetOut(
              io_manager_key="h5ad_io", kinds={"h5ad"}, code_version=CODE_VERSION,
              description="Single-cell: the study's cells x genes raw counts (sparse) with "
              "the validated cell metadata and each cell's biological sample, as h5ad in "
              "warehouse/cell_counts/. Other kinds have none.")},
    deps=[study_inputs],
    check_specs=[dg.AssetCheckSpec(
        "raw_counts_complete", asset="raw_counts", blocking=True,
        description="Re-reads the stored tables: every gene x sample pair once, counts "
        "non-negative, samples and genes identical to the samples and genes tables.")],
    partitions_def=study_partitions,
    backfill_policy=BACKFILL_POLICY,
    group_name=GROUP,
    description="Validates the study (every check of 'dge validate'); on any problem the run "
    "fails before writing, naming the study, so the previous tables of every study in the "
    "step stay intact. Single-cell studies: raw_counts and samples hold the cells summed per "
    "biological sample; the cells themselves go to cell_counts (h5ad).",
)
def ingest_study(context: dg.AssetExecutionContext, dge_home: DgeHomeResource):
    home = dge_home.home()
    yield from run_per_study(context, partial(_ingest, context, home),
                             checks_after_write=partial(_stored_counts_check, home))


def _ingest(context: dg.AssetExecutionContext, home: DgeHome,
            study_id: str) -> Iterator[dg.Output]:
    """Validate and load one study and yield its four catalog tables."""
    try:
        study = load_study(home.study_dir(study_id), expected_id=study_id)
    except StudyInputError as err:
        raise dg.Failure(description=str(err), metadata={
            "problems": dg.MetadataValue.json([str(p) for p in err.problems])}) from None
    for warning in study.warnings:
        context.log.warning(f"{study_id}: {warning}")
    files = {str(p.relative_to(study.study_dir)): hash_files(study.study_dir, [p])
             for p in study.files}
    samples = samples_table(study)
    yield dg.Output(study_row(study), "studies", metadata={
        "input_hash": study.input_hash,
        "input_files": dg.MetadataValue.json(files),
        "warnings": dg.MetadataValue.json([str(w) for w in study.warnings]),
    })
    yield dg.Output(samples, "samples", metadata={
        "n_samples": len(samples),
        "preview": dg.MetadataValue.md(samples.head(20).to_markdown(index=False)),
    })
    genes = genes_table(study)
    yield dg.Output(genes, "genes", metadata={
        "n_with_symbol": int(genes["gene_symbol"].notna().sum()),
        "fraction_with_symbol": round(float(genes["gene_symbol"].notna().mean()), 4)})
    if study.cells is not None:
        yield dg.Output(study.cells, "cell_counts", metadata={
            "n_cells": study.cells.n_obs, "n_genes": study.cells.n_vars,
            "nonzero_values": int(study.cells.X.nnz)})
    yield dg.Output(to_long(study.counts, "count"), "raw_counts", metadata={
        "n_genes": study.counts.shape[0], "n_samples": study.counts.shape[1],
        "total_counts": int(study.counts.to_numpy().sum())})


def _stored_counts_check(home: DgeHome, study_id: str) -> Iterator[dg.AssetCheckResult]:
    """raw_counts_complete on the tables as stored (so it runs after the IO manager wrote)."""
    stored = Warehouse(home.warehouse)
    problems = long_counts_problems(stored.read("raw_counts", study_id),
                                    stored.read("samples", study_id)["sample"],
                                    stored.read("genes", study_id)["gene_id"])
    yield dg.AssetCheckResult(check_name="raw_counts_complete", asset_key="raw_counts",
                              passed=not problems,
                              metadata={"problems": dg.MetadataValue.json(problems)})
