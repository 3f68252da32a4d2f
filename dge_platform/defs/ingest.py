"""Ingest assets: validate a registered study and write its catalog tables."""

from collections.abc import Iterator
from functools import partial

import dagster as dg

from dge_platform import plots
from dge_platform.defs.batch import (
    BACKFILL_POLICY,
    HEAVY_STEP,
    StudyEvent,
    cpu_budget,
    run_per_study,
    table_out,
)
from dge_platform.defs.partitions import study_partitions
from dge_platform.defs.resources import DeseqResource, DgeHomeResource
from dge_platform.fragment_counting import BamError
from dge_platform.home import DgeHome
from dge_platform.library_counts import (
    BuiltCounts,
    assemble_counts,
    count_libraries,
    declared_source,
    salmon_index as cached_salmon_index,
)
from dge_platform.problems import StudyInputError
from dge_platform.quant_import import QuantInputError
from dge_platform.salmon_quant import SalmonError
from dge_platform.study_tables import (
    genes_table,
    to_long,
    long_counts_problems,
    samples_table,
    study_row,
)
from dge_platform.validation import ValidatedStudy, hash_files, load_study, with_built_counts
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

COUNTING_ERRORS = (BamError, SalmonError, QuantInputError, OSError)


@dg.asset(
    partitions_def=study_partitions,
    backfill_policy=BACKFILL_POLICY,
    group_name=GROUP,
    deps=[study_inputs],
    kinds={"salmon"},
    code_version=CODE_VERSION,
    description="Studies counted from FASTQ files: the salmon index of the study's "
    "transcriptome (study.yaml 'transcriptome:'), cached under DGE_HOME/cache/counting/"
    "salmon_index/ by FASTA content, k-mer size and salmon version, so it is built once and "
    "rebuilt only when the FASTA changes (studies sharing a FASTA share it). Other studies: "
    "nothing to do.",
)
def salmon_index(context: dg.AssetExecutionContext, dge_home: DgeHomeResource,
                 deseq: DeseqResource):
    home = dge_home.home()
    yield from run_per_study(context, partial(_salmon_index, home, deseq.cpus()))


def _salmon_index(home: DgeHome, cpus: int, study_id: str) -> Iterator[StudyEvent]:
    # Other studies are not validated here: their problems are ingest_study's to report.
    if declared_source(home.study_dir(study_id)) != "fastq":
        yield dg.MaterializeResult(metadata={"index": "none (counts do not come from FASTQ)"})
        return
    study = _load(home, study_id)
    fasta = study.plan.references["transcriptome"]
    try:
        index, built = cached_salmon_index(fasta, home.counting_cache, threads=cpus)
    except COUNTING_ERRORS as err:
        raise dg.Failure(description=f"{study_id}: {err}") from None
    yield dg.MaterializeResult(metadata={"index": dg.MetadataValue.path(str(index)),
                                         "transcriptome": str(fasta.relative_to(study.study_dir)),
                                         "built": built})


@dg.asset(
    partitions_def=study_partitions,
    backfill_policy=BACKFILL_POLICY,
    group_name=GROUP,
    deps=[study_inputs, salmon_index],
    kinds={"bam", "fastq"},
    code_version=CODE_VERSION,
    **HEAVY_STEP,
    description="Studies counted from their sample sheet's BAM or FASTQ files: each "
    "sample's fragment counts (BAM + GTF, union overlap) or salmon quantification, run in "
    "parallel (DGE_N_CPUS processes; salmon one sample at a time with that many threads). "
    "Results are cached under DGE_HOME/cache/counting/ by the sample's file contents, the "
    "reference and the settings, so a sample whose inputs did not change is not counted "
    "again. Metadata: per-sample fragment assignment (table and plot). Other studies: "
    "nothing to do (quantifier outputs are imported at ingest).",
)
def library_counts(context: dg.AssetExecutionContext, dge_home: DgeHomeResource,
                   deseq: DeseqResource):
    home = dge_home.home()
    with cpu_budget(deseq.cpus()):
        yield from run_per_study(context, partial(_library_counts, context, home, deseq.cpus()))


def _library_counts(context: dg.AssetExecutionContext, home: DgeHome, cpus: int,
                    study_id: str) -> Iterator[StudyEvent]:
    if declared_source(home.study_dir(study_id)) not in ("bam", "fastq"):
        yield dg.MaterializeResult(metadata={"source": "nothing to count per sample (counts: "
                                             "matrix or quantifier outputs, read at ingest)"})
        return
    study = _load(home, study_id)
    run, built = _count(home, study_id, study, cpus, context.log.info)
    stats = built.stats
    yield dg.MaterializeResult(metadata={
        "source": study.plan.describe(),
        "counted": dg.MetadataValue.json(run.counted),
        "reused": dg.MetadataValue.json(run.reused),
        "seconds": dg.MetadataValue.json({s: round(t, 1) for s, t in run.seconds.items()}),
        # Lineage: each sample's result is the cache entry of this key (inputs' contents,
        # reference, settings), under DGE_HOME/cache/counting/.
        "cache_keys": dg.MetadataValue.json(run.keys),
        "fragment_assignment_table": dg.MetadataValue.md(
            stats.reset_index().dropna(axis=1, how="all").to_markdown(index=False)),
        "fragment_assignment": dg.MetadataValue.md(plots.markdown_image(
            plots.fragment_assignment(stats), "fragment_assignment")),
    })


def _count(home: DgeHome, study_id: str, study: ValidatedStudy, cpus: int, log):
    """Count (or reuse) every sample of a BAM/FASTQ study and assemble its counts."""
    try:
        run = count_libraries(study.plan, home.counting_cache, workers=cpus, log=log)
        return run, assemble_counts(study.plan, home.counting_cache, run.keys)
    except COUNTING_ERRORS as err:
        text = str(err).replace(f"{study.study_dir}/", "")
        if isinstance(err, BamError):  # salmon's and tximport's errors carry their own fix
            text += " -> replace the file with a complete copy (dge add) and run again"
        raise dg.Failure(description=f"{study_id}: {text}") from None


def _load(home: DgeHome, study_id: str) -> ValidatedStudy:
    """Validate and load one study, failing the step with every problem named."""
    try:
        return load_study(home.study_dir(study_id), expected_id=study_id)
    except StudyInputError as err:
        raise _failure(err) from None


def _failure(err: StudyInputError) -> dg.Failure:
    return dg.Failure(description=str(err), metadata={
        "problems": dg.MetadataValue.json([str(p) for p in err.problems])})


@dg.multi_asset(
    outs={**{name: table_out(name, CODE_VERSION) for name in ("studies", "samples", "genes", "raw_counts")},
          "cell_counts": dg.AssetOut(
              io_manager_key="h5ad_io", kinds={"h5ad"}, code_version=CODE_VERSION,
              description="Single-cell: the study's cells x genes raw counts (sparse) with "
              "the validated cell metadata and each cell's biological sample, as h5ad in "
              "warehouse/cell_counts/. Other kinds have none.")},
    deps=[study_inputs, library_counts],
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
def ingest_study(context: dg.AssetExecutionContext, dge_home: DgeHomeResource,
                 deseq: DeseqResource):
    home = dge_home.home()
    yield from run_per_study(context, partial(_ingest, context, home, deseq.cpus()),
                             checks_after_write=partial(_stored_counts_check, home))


def _ingest(context: dg.AssetExecutionContext, home: DgeHome, cpus: int,
            study_id: str) -> Iterator[dg.Output]:
    """Validate and load one study and yield its four catalog tables; BAM/FASTQ studies
    take their per-sample results from library_counts (counting any sample it lacks)."""
    study = _load(home, study_id)
    if study.counts is None:
        study = _with_counts(study, _count(home, study_id, study, cpus, context.log.info)[1])
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


def _with_counts(study: ValidatedStudy, built: BuiltCounts) -> ValidatedStudy:
    try:
        return with_built_counts(study, built)
    except StudyInputError as err:
        raise _failure(err) from None


def _stored_counts_check(home: DgeHome, study_id: str) -> Iterator[dg.AssetCheckResult]:
    """raw_counts_complete on the tables as stored (so it runs after the IO manager wrote)."""
    stored = Warehouse(home.warehouse)
    problems = long_counts_problems(stored.read("raw_counts", study_id),
                                    stored.read("samples", study_id)["sample"],
                                    stored.read("genes", study_id)["gene_id"])
    yield dg.AssetCheckResult(check_name="raw_counts_complete", asset_key="raw_counts",
                              passed=not problems,
                              metadata={"problems": dg.MetadataValue.json(problems)})
