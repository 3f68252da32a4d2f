"""Ingest steps: a registered study validated, counted when it comes from reads, and written
as its catalog tables (studies, samples, genes, raw_counts; single-cell: its cells)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pandas as pd

from dge_platform._core.problems import StudyInputError
from dge_platform.counting.fragments import BamError
from dge_platform.counting.libraries import (
    BuiltCounts,
    CountingRun,
    assemble_counts,
    count_libraries,
    declared_source,
    matrix_stats,
)
from dge_platform.counting.libraries import salmon_index as cached_salmon_index
from dge_platform.counting.salmon import SalmonError
from dge_platform.counting.tximport import QuantInputError
from dge_platform.enrichment.annotation import map_symbols
from dge_platform.outputs import plots
from dge_platform.pipelines.step import Check, Markdown, StepFailure, StepResult
from dge_platform.storage.frames import long_counts_problems, to_long
from dge_platform.storage.home import DgeHome
from dge_platform.storage.tables import STAT_COLUMNS
from dge_platform.storage.warehouse import Warehouse
from dge_platform.validation import (
    ValidatedStudy,
    hash_files,
    load_study,
    with_built_counts,
)


def study_row(study: ValidatedStudy, materialized_at: datetime | None = None) -> pd.DataFrame:
    """One row describing the study (settings from study.yaml and its input fingerprint)."""
    cfg = study.config
    return pd.DataFrame([{
        "title": cfg.title or cfg.id,
        "kind": cfg.kind,
        "organism": cfg.organism,
        "design": cfg.design,
        "contrasts": json.dumps([c.model_dump() for c in cfg.contrasts]),
        "alpha": cfg.alpha,
        "lfc_threshold": cfg.lfc_threshold,
        "batch": cfg.batch,
        "n_samples": study.counts.shape[1],
        "n_genes": study.counts.shape[0],
        "counts_file": cfg.counts or study.plan.describe(),
        "input_hash": study.input_hash,
        "config": cfg.model_dump_json(),
        "materialized_at": pd.Timestamp(materialized_at or datetime.now(UTC)),
    }])


def samples_table(study: ValidatedStudy) -> pd.DataFrame:
    """The sample sheet, with library size and detected genes from the counts and the
    counting statistics (:data:`STAT_COLUMNS`; count_source 'matrix' for counts: input)."""
    table = study.samples.reset_index()
    table["library_size"] = study.counts.sum(axis=0).to_numpy()
    table["genes_detected"] = (study.counts > 0).sum(axis=0).to_numpy()
    stats = study.count_stats if study.count_stats is not None \
        else matrix_stats(list(study.samples.index))
    table = table.drop(columns=[c for c in STAT_COLUMNS if c in table.columns])
    return table.join(stats, on="sample")


def genes_table(study: ValidatedStudy) -> pd.DataFrame:
    """Gene ids in matrix order, with symbols: those the input carries, else mapped from
    Ensembl ids with the shipped annotation table."""
    ids = pd.Series(study.counts.index.astype(str))
    known = study.gene_symbols.reindex(study.counts.index) if study.gene_symbols is not None \
        else None
    return pd.DataFrame({"gene_id": ids.to_numpy(),
                         "gene_symbol": map_symbols(ids, known).to_numpy()})


COUNTING_ERRORS = (BamError, SalmonError, QuantInputError, OSError)


def load(home: DgeHome, study_id: str) -> ValidatedStudy:
    """Validate and load one registered study, failing with every problem named."""
    try:
        return load_study(home.study_dir(study_id), expected_id=study_id)
    except StudyInputError as err:
        raise _failure(err) from None


def _failure(err: StudyInputError) -> StepFailure:
    return StepFailure(str(err), {"problems": [str(p) for p in err.problems]})


def salmon_index(home: DgeHome, study_id: str, cpus: int) -> StepResult:
    """The salmon index of a FASTQ study's transcriptome, built once per FASTA (cached)."""
    # Other studies are not validated here: their problems are the ingest step's to report.
    if declared_source(home.study_dir(study_id)) != "fastq":
        return StepResult(materialized={"index": "none (counts do not come from FASTQ)"})
    study = load(home, study_id)
    fasta = study.plan.references["transcriptome"]
    try:
        index, built = cached_salmon_index(fasta, home.counting_cache, threads=cpus)
    except COUNTING_ERRORS as err:
        raise StepFailure(f"{study_id}: {err}") from None
    return StepResult(materialized={"index": index,
                                    "transcriptome": str(fasta.relative_to(study.study_dir)),
                                    "built": built})


def library_counts(home: DgeHome, study_id: str, cpus: int,
                   log: Callable[[str], None]) -> StepResult:
    """Each sample of a BAM or FASTQ study counted (or taken from the cache)."""
    if declared_source(home.study_dir(study_id)) not in ("bam", "fastq"):
        return StepResult(materialized={"source": "nothing to count per sample (counts: "
                                        "matrix or quantifier outputs, read at ingest)"})
    study = load(home, study_id)
    run, built = count_study(home, study_id, study, cpus, log)
    stats = built.stats
    return StepResult(materialized={
        "source": study.plan.describe(),
        "counted": run.counted,
        "reused": run.reused,
        "seconds": {s: round(t, 1) for s, t in run.seconds.items()},
        # Lineage: each sample's result is the cache entry of this key (inputs' contents,
        # reference, settings), under DGE_HOME/cache/counting/.
        "cache_keys": run.keys,
        "fragment_assignment_table": Markdown(
            stats.reset_index().dropna(axis=1, how="all").to_markdown(index=False)),
        "fragment_assignment": Markdown(plots.markdown_image(
            plots.fragment_assignment(stats), "fragment_assignment")),
    })


def count_study(home: DgeHome, study_id: str, study: ValidatedStudy, cpus: int,
                log: Callable[[str], None]) -> tuple[CountingRun, BuiltCounts]:
    """Count (or reuse) every sample of a BAM/FASTQ study and assemble its counts."""
    try:
        run = count_libraries(study.plan, home.counting_cache, workers=cpus, log=log)
        return run, assemble_counts(study.plan, home.counting_cache, run.keys)
    except COUNTING_ERRORS as err:
        text = str(err).replace(f"{study.study_dir}/", "")
        if isinstance(err, BamError):  # salmon's and tximport's errors carry their own fix
            text += " -> replace the file with a complete copy (dge add) and run again"
        raise StepFailure(f"{study_id}: {text}") from None


def ingest(home: DgeHome, study_id: str, cpus: int, log: Callable[[str], None]) -> StepResult:
    """Validate and load one study into its catalog tables (and, single-cell, its cells);
    BAM/FASTQ studies take their per-sample results from the counting cache (counting any
    sample it lacks)."""
    study = load(home, study_id)
    if study.counts is None:
        try:
            study = with_built_counts(study, count_study(home, study_id, study, cpus, log)[1])
        except StudyInputError as err:
            raise _failure(err) from None
    result = StepResult()
    for warning in study.warnings:
        result.warning(str(warning))
    files = {str(p.relative_to(study.study_dir)): hash_files(study.study_dir, [p])
             for p in study.files}
    samples = samples_table(study)
    genes = genes_table(study)
    result.add("studies", study_row(study), input_hash=study.input_hash, input_files=files,
               warnings=[str(w) for w in study.warnings])
    result.add("samples", samples, n_samples=len(samples),
               preview=Markdown(samples.head(20).to_markdown(index=False)))
    result.add("genes", genes, n_with_symbol=int(genes["gene_symbol"].notna().sum()),
               fraction_with_symbol=round(float(genes["gene_symbol"].notna().mean()), 4))
    if study.cells is not None:
        result.add("cell_counts", study.cells, n_cells=study.cells.n_obs,
                   n_genes=study.cells.n_vars, nonzero_values=int(study.cells.X.nnz))
    return result.add("raw_counts", to_long(study.counts, "count"),
                      n_genes=study.counts.shape[0], n_samples=study.counts.shape[1],
                      total_counts=int(study.counts.to_numpy().sum()))


def stored_counts_check(home: DgeHome, study_id: str) -> Check:
    """raw_counts_complete on the tables as stored (so it runs after they were written)."""
    stored = Warehouse(home.warehouse)
    problems = long_counts_problems(stored.read("raw_counts", study_id),
                                    stored.read("samples", study_id)["sample"],
                                    stored.read("genes", study_id)["gene_id"])
    return Check("raw_counts_complete", "raw_counts", not problems, {"problems": problems})
