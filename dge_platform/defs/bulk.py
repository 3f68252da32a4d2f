"""The bulk RNA-seq graph: counting from reads, ingest, DESeq2, batch correction, sample QC,
enrichment and the report, each asset a call of its step in ``pipelines/``."""

import dagster as dg

from dge_platform.defs import shared
from dge_platform.defs.batch import HEAVY_STEP, cpu_budget
from dge_platform.defs.steps import for_each_study, kind_ins, run_step, study_asset, table_asset
from dge_platform.pipelines import bulk as bulk_steps
from dge_platform.pipelines import ingest as ingest_steps
from dge_platform.pipelines import report

KIND = "bulk"
CODE_VERSION = "bulk-1"


@study_asset(
    kind=KIND, deps=[dg.AssetKey([KIND, "study_inputs"])], kinds={"salmon"},
    code_version=shared.INGEST_VERSION,
    description="Studies counted from FASTQ files: the salmon index of the study's "
    "transcriptome (study.yaml 'transcriptome:'), cached under DGE_HOME/cache/counting/"
    "salmon_index/ by FASTA content, k-mer size and salmon version, so it is built once and "
    "rebuilt only when the FASTA changes (studies sharing a FASTA share it). Other studies: "
    "nothing to do.")
def salmon_index(context: dg.AssetExecutionContext):
    home, cpus = context.resources.dge_home.home(), context.resources.deseq.cpus()
    yield from for_each_study(
        context, lambda study_id: ingest_steps.salmon_index(home, study_id, cpus))


@study_asset(
    kind=KIND, deps=[dg.AssetKey([KIND, "study_inputs"]), salmon_index], kinds={"bam", "fastq"},
    code_version=shared.INGEST_VERSION, **HEAVY_STEP,
    description="Studies counted from their sample sheet's BAM or FASTQ files: each "
    "sample's fragment counts (BAM + GTF, union overlap) or salmon quantification, run in "
    "parallel (DGE_N_CPUS processes; salmon one sample at a time with that many threads). "
    "Results are cached under DGE_HOME/cache/counting/ by the sample's file contents, the "
    "reference and the settings, so a sample whose inputs did not change is not counted "
    "again. Metadata: per-sample fragment assignment (table and plot). Other studies: "
    "nothing to do (quantifier outputs are imported at ingest).")
def library_counts(context: dg.AssetExecutionContext):
    home, cpus = context.resources.dge_home.home(), context.resources.deseq.cpus()
    with cpu_budget(cpus):
        yield from for_each_study(context, lambda study_id: ingest_steps.library_counts(
            home, study_id, cpus, context.log.info))


@table_asset("sample_qc", kind=KIND, code_version=CODE_VERSION,
             ins=kind_ins(KIND, "vst", "size_factors", "deg_results", "gene_dispersions",
                          "samples", "studies"),
             note="Also writes the QC plots (PNG) to warehouse/qc_plots/study_id=<id>/.")
def sample_qc(context: dg.AssetExecutionContext, **tables):
    yield from run_step(context, bulk_steps.sample_qc, **tables)


ASSETS = [
    shared.study_inputs(KIND), salmon_index, library_counts,
    shared.ingest_study(KIND, deps=["library_counts"]),
    shared.deseq2(KIND, bulk_steps.deseq2, ("raw_counts", "samples", "genes"),
                  "One fit of the study's full design, technical replicates summed first."),
    shared.batch_corrected(KIND), sample_qc, shared.enrichment(KIND),
    shared.contrast_activity(KIND), shared.sample_scores(KIND), shared.design_diagnostics(KIND),
    shared.study_report(KIND, report.bulk_report,
                        ("deg_results", "enrichment", "sample_qc", "samples",
                         "design_diagnostics"),
                        "Design, QC, DEG summary and top genes per contrast, enrichment, every "
                        "plot."),
]
"""The bulk graph, from the study's files to its report."""
