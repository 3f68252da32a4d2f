"""The catalog's tables: their names, columns and meaning (the SQL contract).

Every table is stored as Parquet partitioned by ``study_id``; the catalog exposes each as a
DuckDB view of the same name. Columns listed here are the guaranteed ones; ``samples``
also carries each study's own sample-sheet columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dge_platform.library_counts import STAT_COLUMNS

# Empty tables keep the catalog's column types, so a view over only empty partitions is typed.
_PANDAS_DTYPES = {"VARCHAR": "string", "DOUBLE": "float64", "BIGINT": "int64",
                  "BOOLEAN": "bool", "TIMESTAMP WITH TIME ZONE": "datetime64[ns, UTC]"}


@dataclass(frozen=True)
class TableSpec:
    """A catalog table: name, description and guaranteed columns (name, DuckDB type).

    ``per_study`` tables are partitioned by study; the others (cross-study results) are one
    file computed over every study. ``sort_by``: columns each file is sorted by (nulls last),
    so that filters on them skip row groups through their min/max statistics."""

    name: str
    description: str
    columns: tuple[tuple[str, str], ...]
    per_study: bool = True
    sort_by: tuple[str, ...] = ()

    @property
    def stored_columns(self) -> list[str]:
        """The guaranteed columns a study's file holds (``study_id`` is its partition path)."""
        return [name for name, _ in self.columns if name != "study_id" or not self.per_study]

    def empty(self) -> pd.DataFrame:
        """An empty frame with the stored columns and their types."""
        kinds = dict(self.columns)
        return pd.DataFrame({name: pd.Series(dtype=_PANDAS_DTYPES[kinds[name]])
                             for name in self.stored_columns})


TABLES: dict[str, TableSpec] = {spec.name: spec for spec in [
    TableSpec("studies", "One row per study: its study.yaml settings and input fingerprint.", (
        ("study_id", "VARCHAR"), ("title", "VARCHAR"), ("kind", "VARCHAR"),
        ("organism", "VARCHAR"), ("design", "VARCHAR"), ("contrasts", "VARCHAR"),
        ("alpha", "DOUBLE"), ("lfc_threshold", "DOUBLE"), ("batch", "VARCHAR"),
        ("n_samples", "BIGINT"), ("n_genes", "BIGINT"), ("counts_file", "VARCHAR"),
        ("input_hash", "VARCHAR"), ("config", "VARCHAR"),
        ("materialized_at", "TIMESTAMP WITH TIME ZONE"))),
    TableSpec("samples", "One row per sample as given in the sample sheet (text values), "
              "plus the study's own columns, library size, genes detected and, when counts "
              "were built from BAM, quantifier or FASTQ files, how each sample's fragments "
              "were assigned (null for counts: input, count_source 'matrix').", (
                  ("study_id", "VARCHAR"), ("sample", "VARCHAR"),
                  ("library_size", "BIGINT"), ("genes_detected", "BIGINT"),
                  *STAT_COLUMNS.items())),
    TableSpec("genes", "Genes of each study's count matrix, with symbols where the input "
              "carries them.", (
                  ("study_id", "VARCHAR"), ("gene_id", "VARCHAR"), ("gene_symbol", "VARCHAR"))),
    TableSpec("raw_counts", "Raw counts in long form, one row per gene and sample, as read "
              "from the study's input (before technical replicates are summed).", (
                  ("study_id", "VARCHAR"), ("gene_id", "VARCHAR"), ("sample", "VARCHAR"),
                  ("count", "BIGINT"))),
    TableSpec("size_factors", "Per analysed sample (technical replicates summed): DESeq2 "
              "median-of-ratios size factor, library size, genes detected.", (
                  ("study_id", "VARCHAR"), ("sample", "VARCHAR"), ("size_factor", "DOUBLE"),
                  ("library_size", "BIGINT"), ("genes_detected", "BIGINT"),
                  ("n_technical_replicates", "BIGINT"))),
    TableSpec("normalized_counts", "Counts divided by size factors (long form).", (
        ("study_id", "VARCHAR"), ("gene_id", "VARCHAR"), ("sample", "VARCHAR"),
        ("normalized_count", "DOUBLE"))),
    TableSpec("vst", "Blind variance-stabilized expression (DESeq2 VST, log2-like scale).", (
        ("study_id", "VARCHAR"), ("gene_id", "VARCHAR"), ("sample", "VARCHAR"),
        ("vst", "DOUBLE"))),
    TableSpec("batch_corrected", "VST with the study's batch effect removed (limma "
              "removeBatchEffect, design effects preserved): for plots and export, never for "
              "testing.", (
                  ("study_id", "VARCHAR"), ("gene_id", "VARCHAR"), ("sample", "VARCHAR"),
                  ("batch_corrected_vst", "DOUBLE"))),
    TableSpec("gene_dispersions", "DESeq2 dispersion estimates per gene (single-cell: per "
              "cell type).", (
        ("study_id", "VARCHAR"), ("gene_id", "VARCHAR"), ("base_mean", "DOUBLE"),
        ("dispersion_gene_est", "DOUBLE"), ("dispersion_trend", "DOUBLE"),
        ("dispersion", "DOUBLE"), ("dispersion_outlier", "BOOLEAN"), ("cell_type", "VARCHAR"))),
    TableSpec("deg_results", "Differential expression: one row per contrast and gene "
              "(single-cell: per contrast, cell type and gene, tested on pseudobulks). padj "
              "is null where DESeq2 filtered the gene (independent filtering, Cook's "
              "outliers, all-zero counts).", (
                  ("study_id", "VARCHAR"), ("contrast", "VARCHAR"), ("gene_id", "VARCHAR"),
                  ("gene_symbol", "VARCHAR"), ("base_mean", "DOUBLE"),
                  ("log2_fold_change", "DOUBLE"), ("lfc_se", "DOUBLE"), ("stat", "DOUBLE"),
                  ("pvalue", "DOUBLE"), ("padj", "DOUBLE"),
                  ("log2_fold_change_shrunk", "DOUBLE"), ("significant", "BOOLEAN"),
                  ("compound", "VARCHAR"), ("dose", "DOUBLE"), ("cell_type", "VARCHAR")),
              # Gene lookups across studies are the common query; a study's top genes per
              # contrast reads one file either way.
              sort_by=("gene_symbol", "gene_id", "contrast", "cell_type")),
    TableSpec("sample_qc", "Per analysed sample (technical replicates summed): library "
              "size, fragments assigned and unassigned by reason, mapping rate (from BAM, "
              "quantifier or FASTQ input; null for counts: input), PCA scores, mean distance "
              "to the other samples, and likely-outlier flags with the reason.", (
                  ("study_id", "VARCHAR"), ("sample", "VARCHAR"), ("library_size", "BIGINT"),
                  *STAT_COLUMNS.items(), ("pc1", "DOUBLE"),
                  ("pc2", "DOUBLE"), ("mean_distance", "DOUBLE"), ("outlier", "BOOLEAN"),
                  ("outlier_reason", "VARCHAR"))),
    TableSpec("well_qc", "Screens: one row per well with depth, genes detected, "
              "mitochondrial fraction, correlation to the plate's control profile, pass/fail "
              "and the reason. Failed wells are left out of testing.", (
                  ("study_id", "VARCHAR"), ("sample", "VARCHAR"), ("plate", "VARCHAR"),
                  ("well", "VARCHAR"), ("row", "VARCHAR"), ("column", "BIGINT"),
                  ("well_type", "VARCHAR"), ("compound", "VARCHAR"), ("dose", "DOUBLE"),
                  ("total_counts", "BIGINT"), ("genes_detected", "BIGINT"),
                  ("pct_mito", "DOUBLE"), ("control_correlation", "DOUBLE"),
                  ("passed", "BOOLEAN"), ("reason", "VARCHAR"))),
    TableSpec("compound_activity", "Screens: per compound x dose, DEG counts (padj < alpha) "
              "against the 95th percentile of its plate's control-vs-control null; active "
              "when above.", (
                  ("study_id", "VARCHAR"), ("contrast", "VARCHAR"), ("compound", "VARCHAR"),
                  ("dose", "DOUBLE"), ("dose_unit", "VARCHAR"), ("plate", "VARCHAR"),
                  ("n_wells", "BIGINT"), ("n_up", "BIGINT"), ("n_down", "BIGINT"),
                  ("n_deg", "BIGINT"), ("null_threshold", "DOUBLE"), ("null_median", "DOUBLE"),
                  ("n_null_splits", "BIGINT"), ("active", "BOOLEAN"))),
    TableSpec("dose_response", "Screens: per compound and responsive gene, the best "
              "dose-response model (AIC), benchmark dose, EC50 and fit quality.", (
                  ("study_id", "VARCHAR"), ("compound", "VARCHAR"), ("gene_id", "VARCHAR"),
                  ("gene_symbol", "VARCHAR"), ("best_model", "VARCHAR"), ("bmd", "DOUBLE"),
                  ("ec50", "DOUBLE"), ("direction", "VARCHAR"), ("fit_ok", "BOOLEAN"))),
    TableSpec("compound_potency", "Screens: per compound, the transcriptional point of "
              "departure (median BMD of its most sensitive genes).", (
                  ("study_id", "VARCHAR"), ("compound", "VARCHAR"), ("tpod", "DOUBLE"))),
    TableSpec("compound_similarity", "Screens: per active compound x dose, its nearest "
              "conditions of other compounds by signature correlation (MoA hypotheses), with "
              "its cluster.", (
                  ("study_id", "VARCHAR"), ("contrast", "VARCHAR"), ("compound", "VARCHAR"),
                  ("dose", "DOUBLE"), ("cluster", "BIGINT"), ("rank", "BIGINT"),
                  ("neighbor_contrast", "VARCHAR"), ("neighbor_compound", "VARCHAR"),
                  ("neighbor_dose", "DOUBLE"), ("correlation", "DOUBLE"))),
    TableSpec("cell_qc", "Single-cell: one row per cell with its counts, genes detected, "
              "mitochondrial percentage, scrublet doublet score, pass/fail and the reasons "
              "(per-capture MAD outliers, absolute limits, doublets).", (
                  ("study_id", "VARCHAR"), ("cell_id", "VARCHAR"), ("sample", "VARCHAR"),
                  ("donor", "VARCHAR"), ("capture", "VARCHAR"), ("total_counts", "BIGINT"),
                  ("n_genes", "BIGINT"), ("pct_mito", "DOUBLE"), ("doublet_score", "DOUBLE"),
                  ("predicted_doublet", "BOOLEAN"), ("passed", "BOOLEAN"),
                  ("reason", "VARCHAR"))),
    TableSpec("cell_types", "Single-cell: one row per QC-passed cell with its Leiden cluster "
              "(on the Harmony-integrated embedding), cell type (given in the input, or from "
              "study.yaml markers) and UMAP coordinates.", (
                  ("study_id", "VARCHAR"), ("cell_id", "VARCHAR"), ("sample", "VARCHAR"),
                  ("cluster", "VARCHAR"), ("cell_type", "VARCHAR"),
                  ("cell_type_source", "VARCHAR"), ("umap_1", "DOUBLE"),
                  ("umap_2", "DOUBLE"))),
    TableSpec("pseudobulk_samples", "Single-cell: one row per cell type x biological sample "
              "(donor x condition): cells summed, and whether the pseudobulk was kept for "
              "testing (dropped below min_cells_per_pseudobulk, with the reason).", (
                  ("study_id", "VARCHAR"), ("pseudobulk_sample", "VARCHAR"),
                  ("cell_type", "VARCHAR"), ("donor", "VARCHAR"), ("condition", "VARCHAR"),
                  ("sample", "VARCHAR"), ("n_cells", "BIGINT"), ("total_counts", "BIGINT"),
                  ("kept", "BOOLEAN"), ("reason", "VARCHAR"))),
    TableSpec("pseudobulk_counts", "Single-cell: raw counts of QC-passed cells summed per kept "
              "pseudobulk sample and gene (long form).", (
                  ("study_id", "VARCHAR"), ("pseudobulk_sample", "VARCHAR"),
                  ("cell_type", "VARCHAR"), ("donor", "VARCHAR"), ("condition", "VARCHAR"),
                  ("gene_id", "VARCHAR"), ("count", "BIGINT"))),
    TableSpec("marker_genes", "Single-cell, EXPLORATORY: per cell type, top genes of a per-cell "
              "Wilcoxon test against all other cells. Cells are not independent replicates, "
              "so these p-values are far too small for inference; use deg_results "
              "(pseudobulk DESeq2) for that.", (
                  ("study_id", "VARCHAR"), ("cell_type", "VARCHAR"), ("rank", "BIGINT"),
                  ("gene_id", "VARCHAR"), ("gene_symbol", "VARCHAR"), ("score", "DOUBLE"),
                  ("log2_fold_change", "DOUBLE"), ("pvalue", "DOUBLE"), ("padj", "DOUBLE"),
                  ("pct_in_group", "DOUBLE"), ("pct_other_groups", "DOUBLE"),
                  ("method", "VARCHAR"), ("exploratory", "BOOLEAN"))),
    TableSpec("gene_recurrence", "Across studies: per gene (matched on upper-case symbol, else "
              "the Ensembl id without version), in how many studies and contrasts it was "
              "tested and significantly up or down (each study's alpha), with its median "
              "log2 fold change.", (
                  ("gene_key", "VARCHAR"), ("gene_symbol", "VARCHAR"), ("n_studies", "BIGINT"),
                  ("n_contrasts", "BIGINT"), ("n_up", "BIGINT"), ("n_down", "BIGINT"),
                  ("n_studies_up", "BIGINT"), ("n_studies_down", "BIGINT"),
                  ("fraction_up", "DOUBLE"), ("fraction_down", "DOUBLE"),
                  ("median_log2_fold_change", "DOUBLE")), per_study=False),
    TableSpec("contrast_similarity", "Across studies: per signature (study, contrast, cell "
              "type), its nearest signatures by Pearson r of Wald statistics over the "
              "well-expressed genes both tested (at least 100).", (
                  ("study_id", "VARCHAR"), ("contrast", "VARCHAR"), ("cell_type", "VARCHAR"),
                  ("rank", "BIGINT"), ("neighbor_study_id", "VARCHAR"),
                  ("neighbor_contrast", "VARCHAR"), ("neighbor_cell_type", "VARCHAR"),
                  ("correlation", "DOUBLE"), ("n_shared_genes", "BIGINT")), per_study=False),
    TableSpec("enrichment", "Per contrast (and cell type where present), collection and term: "
              "over-representation of up- and down-regulated DEGs (hypergeometric against the "
              "tested genes; score = odds ratio, genes = overlap) and GSEA prerank on the Wald "
              "statistic (score = NES, genes = leading edge).", (
                  ("study_id", "VARCHAR"), ("contrast", "VARCHAR"), ("cell_type", "VARCHAR"),
                  ("collection", "VARCHAR"), ("term", "VARCHAR"), ("method", "VARCHAR"),
                  ("size", "BIGINT"), ("score", "DOUBLE"), ("pvalue", "DOUBLE"),
                  ("padj", "DOUBLE"), ("genes", "VARCHAR"))),
]}
