"""The catalog's tables: their names, columns and meaning (the SQL contract).

Every table is stored as Parquet partitioned by ``study_id``; the catalog exposes each as a
DuckDB view of the same name. Columns listed here are the guaranteed ones; ``samples``
also carries each study's own sample-sheet columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

# Empty tables keep the catalog's column types, so a view over only empty partitions is typed.
_PANDAS_DTYPES = {"VARCHAR": "string", "DOUBLE": "float64", "BIGINT": "int64",
                  "BOOLEAN": "bool", "TIMESTAMP WITH TIME ZONE": "datetime64[ns, UTC]"}


# Per-sample counting statistics (samples and sample_qc tables); null where the source has none.
STAT_COLUMNS = {
    "count_source": "VARCHAR",
    "total_fragments": "BIGINT",
    "assigned": "BIGINT",
    "unassigned_ambiguity": "BIGINT",
    "unassigned_no_features": "BIGINT",
    "unassigned_multimapping": "BIGINT",
    "multimapping_fragments": "BIGINT",
    "unassigned_unmapped": "BIGINT",
    "unassigned_other": "BIGINT",
    "unassigned_not_in_tx2gene": "BIGINT",
    "assigned_fraction": "DOUBLE",
    "mapping_rate": "DOUBLE",
    "strand_sense_fraction": "DOUBLE",
    "inferred_strandedness": "VARCHAR",
}


# One line per column name, true in every table holding that column; a table whose column
# means something else there says so in its ``column_notes`` (see TableSpec.column_description).
COLUMN_DESCRIPTIONS: dict[str, str] = {
    # identifiers shared across tables
    "study_id": "Study id from study.yaml; per-study tables are partitioned by it.",
    "sample": "Sample id as in the sample sheet (screens: a well of the plate map; single-cell: "
              "a biological sample, its key values joined by '_').",
    "gene_id": "Gene id as in the study's count matrix (e.g. a versioned Ensembl id or a "
               "symbol).",
    "gene_symbol": "Gene symbol: the input's (matrix, GTF, tx2gene), else mapped from the "
                   "Ensembl id with the shipped human annotation; null when unknown.",
    "contrast": "Contrast name from study.yaml (screens: a compound x dose label such as "
                "ETOPOSIDE_10uM, tested against the control wells).",
    "cell_type": "Single-cell: the cell type whose pseudobulks were fitted; null for bulk "
                 "studies and screens.",
    "compound": "Compound as named in the plate map.",
    "dose": "Dose in the plate map's units (dose_unit); control wells have dose 0.",
    "cell_id": "Cell barcode (id) as in the study's cell matrix.",
    "donor": "Donor: the value of the study.yaml donor column.",
    "pseudobulk_sample": "Pseudobulk id: cell type, donor, design variables and batch values "
                         "joined by '|'.",
    "condition": "The pseudobulk's value of the first contrast's factor (e.g. condition).",
    "neighbor_contrast": "Contrast of the neighbouring signature.",
    "combination": "Screens: a combination condition, e.g. A_1uM+B_2uM (agents in alphabetical "
                   "order).",
    # studies
    "title": "Study title from study.yaml (the study id when none is given).",
    "kind": "Study kind: bulk, screen or singlecell.",
    "organism": "Organism as given in study.yaml; it selects the shipped gene set collections.",
    "design": "DESeq2 design formula (screens without one: ~ condition, or ~ plate + condition "
              "when tested wells span plates).",
    "contrasts": "JSON list of the contrasts (name, factor, level, reference); screens without "
                 "any: every compound x dose vs the control.",
    "alpha": "FDR level: padj below it is significant, and independent filtering targets it "
             "(default 0.05).",
    "lfc_threshold": "|log2 fold change| of the Wald test's null hypothesis (DESeq2 "
                     "greaterAbs); 0 (default) tests log2 fold change != 0.",
    "batch": "Sample-sheet column holding the batch: in the design, removed in "
             "batch_corrected (single-cell: Harmony's key); null when none.",
    "n_samples": "Columns of the ingested count matrix (screens: wells; single-cell: "
                 "biological samples), before technical replicates are summed.",
    "counts_file": "study.yaml's counts: path, else what the counts were built from, e.g. "
                   "\"8 BAM files (column 'bam' of samples.csv)\".",
    "input_hash": "First 16 hex digits of a SHA-256 over the input files' names and contents "
                  "(the study's data version).",
    "config": "The validated study.yaml as JSON (screens: with the derived design and "
              "contrasts).",
    "materialized_at": "When ingest wrote this row (UTC).",
    # counts, normalization
    "library_size": "Sum of the sample's raw counts over all genes.",
    "genes_detected": "Genes with a count above zero.",
    "count": "Raw count of the gene in the sample from the input (quantifier estimates "
             "rounded; single-cell: the sample's cells summed).",
    "size_factor": "DESeq2 size factor: median of ratios, or poscounts when fewer than 50 "
                   "genes have no zero count (e.g. sparse screens).",
    "n_technical_replicates": "Libraries summed into the analysed sample (study.yaml "
                              "replicate_of; 1 without technical replicates).",
    "normalized_count": "Raw count divided by the sample's size factor.",
    "vst": "Blind DESeq2 variance-stabilizing transformation of the counts (log2-like "
           "scale; design ignored).",
    "batch_corrected_vst": "VST minus the fitted batch effects (sum-to-zero coded, least "
                           "squares keeping the design's other effects), as limma "
                           "removeBatchEffect.",
    # counting statistics (STAT_COLUMNS)
    "count_source": "Where the counts came from: matrix (counts: file), bam, salmon, kallisto "
                    "or rsem (imported outputs), or fastq (salmon run here).",
    "total_fragments": "BAM: fragments assigned, ambiguous, without feature, unmapped or "
                       "skipped as multi-mappers; quantifiers: reads processed; else null.",
    "assigned": "Fragments counted for a gene (BAM: featureCounts Assigned; quantifiers: "
                "estimated reads of transcripts in tx2gene, rounded).",
    "unassigned_ambiguity": "BAM: fragments overlapping exons of more than one gene "
                            "(featureCounts Unassigned_Ambiguity); else null.",
    "unassigned_no_features": "BAM: aligned fragments overlapping no exon (featureCounts "
                              "Unassigned_NoFeatures); else null.",
    "unassigned_multimapping": "BAM: fragments not counted because a record has NH > 1 "
                               "(multimapping: skip; 0 with count); else null.",
    "multimapping_fragments": "BAM: fragments with NH > 1 among those the other filters keep, "
                              "counted (multimapping: count) or not (skip); else null.",
    "unassigned_unmapped": "Unaligned fragments: BAM, unmapped records (0 when the aligner "
                           "left them out); quantifiers: reads processed minus mapped.",
    "unassigned_other": "BAM: featureCounts Unassigned_Secondary + Unassigned_Singleton, 0 "
                        "here (every alignment and unpaired mate counts); else null.",
    "unassigned_not_in_tx2gene": "Quantifiers: estimated reads of transcripts missing from "
                                 "tx2gene, left out of the counts; else null.",
    "assigned_fraction": "assigned / total_fragments; null without total_fragments.",
    "mapping_rate": "Fraction of fragments aligned: BAM, 1 - unmapped / total (null when it "
                    "holds no unmapped records); quantifiers: mapped / processed.",
    "strand_sense_fraction": "BAM: share of fragments on one stranded gene whose read 1 lies "
                             "on its strand (~1 forward, ~0 reverse, ~0.5 unstranded).",
    "inferred_strandedness": "forward, reverse or unstranded, from strand_sense_fraction "
                             "(BAM; null when undecided) or salmon's library type; else null.",
    # DESeq2
    "base_mean": "Mean of the normalized counts over all samples of the fit (screens: wells "
                 "that passed QC; single-cell: the cell type's pseudobulks).",
    "dispersion_gene_est": "Gene-wise negative binomial dispersion alpha (variance mu + alpha "
                           "mu^2), Cox-Reid-adjusted maximum likelihood.",
    "dispersion_trend": "The dispersion-mean trend at the gene's mean: a0 + a1 / mean "
                        "(DESeq2 parametric fit; the mean dispersion if it fails).",
    "dispersion": "Final dispersion of the tests: the MAP estimate shrunk towards the trend, "
                  "or the gene-wise estimate for dispersion outliers.",
    "dispersion_outlier": "True when the gene-wise estimate lies over 2 SDs of the log "
                          "residuals above the trend; it is then kept unshrunk.",
    "log2_fold_change": "Maximum-likelihood log2 fold change of level vs reference (DESeq2 "
                        "Wald, unshrunken).",
    "lfc_se": "Standard error of log2_fold_change (log2 units).",
    "stat": "Wald statistic: log2_fold_change / lfc_se; with lfc_threshold t > 0, sign(LFC) x "
            "max(|LFC| - t, 0) / lfc_se (greaterAbs).",
    "log2_fold_change_shrunk": "apeGLM-style shrunken log2 fold change: the MAP under an "
                               "adaptive Cauchy prior (scale <= 1), as PyDESeq2's lfc_shrink.",
    "significant": "padj < the study's alpha (false where padj is null); lfc_threshold "
                   "already enters the test.",
    # sample QC
    "pc1": "Score on the first principal component of the VST of the 500 most variable genes "
           "(as DESeq2 plotPCA).",
    "pc2": "Score on the second principal component (as pc1; 0 with a single component).",
    "mean_distance": "Mean Euclidean distance of the sample's VST profile (batch removed "
                     "when the study has one) to the other samples.",
    "outlier": "True when a rule flags the sample: mean_distance robust z > 3.5, library "
               "size < 20% or genes < 50% of the median, low assigned_fraction.",
    "outlier_reason": "The rules that flagged the sample, with their values, joined by '; '; "
                      "'' when not flagged.",
    # screens
    "plate": "Plate id from the plate map.",
    "well": "Well as given in the plate map (e.g. A01).",
    "row": "Plate row letter (A-P), from the well.",
    "column": "Plate column number (from 1), from the well.",
    "well_type": "Well role: sample (treated), control (the vehicle), positive_control, empty "
                 "or other, normalized from the plate map.",
    "total_counts": "Raw counts (UMIs) summed over all genes.",
    "pct_mito": "Percentage (0-100) of counts on genes whose symbol starts with MT-; null "
                "without counts or without annotated MT genes.",
    "control_correlation": "Pearson r of the well's log2(CPM + 1) with its plate controls' "
                           "median profile (a control: the others'), over genes in >= half "
                           "of them.",
    "dose_unit": "Dose unit from the plate map's dose_unit column; null when it has none.",
    "n_wells": "Treated wells of the condition that passed well QC and were tested.",
    "n_deg": "n_up + n_down.",
    "null_threshold": "95th percentile of the DEG counts of its plate's 200 random "
                      "control-vs-control splits (the strictest plate when several).",
    "null_median": "Median DEG count of the same control-vs-control null (the largest over "
                   "its plates).",
    "n_null_splits": "Control-vs-control splits in the null (the fewest over its plates).",
    "active": "True when n_deg exceeds null_threshold.",
    "best_model": "Lowest-AIC model: constant, hill, gnls, poly1, poly2, pow or exp2-exp5 "
                  "(tcplfit2's family, each with a free baseline).",
    "bmd": "Benchmark dose (plate-map units): where the fitted curve departs from its control "
           "level by the BMR; null if constant or not reached.",
    "ec50": "Hill EC50 when the Hill fit beats the constant model by AIC and lies within the "
            "tested doses; else null.",
    "direction": "up, down or none: the sign of top (none when the constant model won).",
    "fit_ok": "A non-constant model won, its lack-of-fit test against the replicate wells "
              "passed (p > 0.1, NTP 2018) and it has a BMD.",
    "bmr": "Benchmark response: bmr_sd (1.349 by default) x the SD of the control wells.",
    "bmdl": "Lower bound of the BMD's 90 % profile-likelihood interval (over the models "
            "within 4 AIC of the chosen one).",
    "bmdu": "Upper bound of the BMD's 90 % profile-likelihood interval (over the models "
            "within 4 AIC of the chosen one).",
    "hitcall": "tcplfit2's continuous hit call in [0, 1]: the probability that the response "
               "is real and beyond the cutoff.",
    "ac50": "Dose of half the fitted maximal response (top), as tcplfit2 defines it.",
    "top": "Signed maximal fitted response relative to the control level (log2 scale), as "
           "tcplfit2 defines it.",
    "params": "The chosen model's parameters (JSON, tcplfit2's names, b0 and er), to redraw "
              "the curve.",
    "lowest_dose": "Lowest nonzero dose the compound was fitted over.",
    "highest_dose": "Highest dose the compound was fitted over.",
    "qc_flags": "';'-joined: bmd_above/below_highest/lowest_dose, bmr/bmdl/bmdu_not_reached, "
                "lack_of_fit, biphasic, control_sd_zero.",
    "tpod": "Transcriptional point of departure (plate-map units): median BMD of the <= 20 "
            "lowest-BMD genes with fit_ok and BMD <= top dose; null below 5.",
    "neighbor_compound": "Compound of the neighbouring condition (never the row's own "
                         "compound).",
    "neighbor_dose": "Dose of the neighbouring condition (plate-map units).",
    # single-cell
    "capture": "Capture (study.yaml capture column, else the biological sample): MAD "
               "thresholds and doublet scores are computed per capture.",
    "doublet_score": "Scrublet doublet score, computed per capture; null when not scored "
                     "(doublets off, capture under 100 cells, cell failing depth or genes).",
    "predicted_doublet": "Scrublet's call at the capture's automatic threshold (or "
                         "qc.doublet_threshold); false when unscored or no threshold found.",
    "cell_type_source": "input (the study's cell_type column) or markers (clusters annotated "
                        "from study.yaml markers).",
    "umap_1": "First UMAP coordinate, on the kNN graph of the Harmony-integrated PCs (plain "
              "PCs when there is nothing to integrate).",
    "umap_2": "Second UMAP coordinate, as umap_1.",
    "n_cells": "QC-passed cells of this cell type and biological sample summed into the "
               "pseudobulk.",
    "kept": "True when the pseudobulk has at least min_cells_per_pseudobulk cells (default "
            "10); only kept pseudobulks are tested.",
    "pct_in_group": "Fraction (0-1, not %) of the cell type's cells in which the gene is "
                    "detected.",
    "pct_other_groups": "Fraction (0-1, not %) of all other cells in which the gene is "
                        "detected.",
    "exploratory": "Always true: per-cell tests serve to name cell types, not for inference "
                   "(use deg_results).",
    # across studies
    "gene_key": "Matching key: upper-case symbol, else the symbol other rows give the "
                "gene_id, else the upper-case gene_id without Ensembl version.",
    "n_studies": "Studies that tested the gene (p-value and fold change present) in at least "
                 "one contrast.",
    "n_contrasts": "Signatures (study x contrast x cell type) that tested the gene.",
    "n_studies_up": "Studies with at least one signature where the gene is significantly up.",
    "n_studies_down": "Studies with at least one signature where the gene is significantly "
                      "down.",
    "fraction_up": "n_up / n_contrasts.",
    "fraction_down": "n_down / n_contrasts.",
    "median_log2_fold_change": "Median log2_fold_change (unshrunken) over the signatures that "
                               "tested the gene.",
    "neighbor_study_id": "Study of the neighbouring signature (may be the row's own study).",
    "neighbor_cell_type": "Cell type of the neighbouring signature; null outside single-cell "
                          "studies.",
    "n_shared_genes": "Genes the correlation is computed over (at least 100).",
    # enrichment
    "collection": "Gene set collection: GO_BP, GO_BP_ensembl, Hallmark or Reactome (shipped, "
                  "human) or a study GMT file, named by its stem.",
    "term": "Gene set name within the collection.",
    "size": "Members of the set among the contrast's tested genes (padj not null); sets with "
            "15-500 are kept.",
    "genes": "Comma-separated ids as in the collection: ORA, the DEGs in the set; GSEA, the "
             "leading-edge genes.",
}

_ANALYSED_SAMPLE = ("Analysed sample: technical replicates summed under their replicate_of id "
                    "(screens: wells that passed QC; single-cell: pseudobulks).")
_NOT_SUMMED = "Always null here (not carried over from samples, which has it per library)."
_CELL_SAMPLE = ("Biological sample of the cell: its donor, design variable and batch values "
                "joined by '_' (as in samples).")


@dataclass(frozen=True)
class TableSpec:
    """A catalog table: name, description and guaranteed columns (name, DuckDB type).

    ``per_study`` tables are partitioned by study; the others (cross-study results) are one
    file computed over every study. ``sort_by``: columns each file is sorted by (nulls last),
    so that filters on them skip row groups through their min/max statistics.
    ``column_notes``: (column, description) for the columns that mean something else in
    this table than :data:`COLUMN_DESCRIPTIONS` says."""

    name: str
    description: str
    columns: tuple[tuple[str, str], ...]
    per_study: bool = True
    sort_by: tuple[str, ...] = ()
    column_notes: tuple[tuple[str, str], ...] = ()

    @property
    def stored_columns(self) -> list[str]:
        """The guaranteed columns a study's file holds (``study_id`` is its partition path)."""
        return [name for name, _ in self.columns if name != "study_id" or not self.per_study]

    def column_description(self, name: str) -> str:
        """One line on what column ``name`` holds in this table: its note in
        ``column_notes``, else the shared :data:`COLUMN_DESCRIPTIONS` text; '' for a column
        the table does not guarantee (a study's own sample-sheet columns, for instance)."""
        if name not in dict(self.columns):
            return ""
        return dict(self.column_notes).get(name) or COLUMN_DESCRIPTIONS.get(name, "")

    @property
    def column_descriptions(self) -> dict[str, str]:
        """Every guaranteed column's :meth:`column_description`, in column order."""
        return {name: self.column_description(name) for name, _ in self.columns}

    def empty(self) -> pd.DataFrame:
        """An empty frame with the stored columns and their types."""
        kinds = dict(self.columns)
        return pd.DataFrame({name: pd.Series(dtype=_PANDAS_DTYPES[kinds[name]])
                             for name in self.stored_columns})


_ACTIVITY_COLUMNS = (
    ("study_id", "VARCHAR"), ("contrast", "VARCHAR"), ("cell_type", "VARCHAR"),
    ("compound", "VARCHAR"), ("dose", "DOUBLE"), ("source", "VARCHAR"), ("score", "DOUBLE"),
    ("pvalue", "DOUBLE"), ("padj", "DOUBLE"), ("n_targets", "BIGINT"), ("method", "VARCHAR"))
"""Columns of the per-contrast activity tables (pathways and TFs)."""
_ACTIVITY_NOTES = (
    ("score", "t-value of the source's coefficient when the contrast's Wald "
              "statistics are regressed on its target weights (> 0: its targets move as it "
              "activates them)."),
    ("pvalue", "Two-sided p-value of that t-value."),
    ("padj", "Benjamini-Hochberg over the sources of the contrast (and cell type)."),
    ("n_targets", "Targets of the source among the study's genes (sources with fewer than 5 "
                  "are not scored)."),
    ("method", "mlm (multivariate linear model, all sources at once) or ulm (univariate, one "
               "source at a time), as decoupler runs them."),
    ("compound", "Screens: the contrast's compound (null for other studies)."),
    ("dose", "Screens: the contrast's dose (null for other studies)."),
)



_CONCENTRATION_RESPONSE = (
    ("best_model", "VARCHAR"), ("fit_ok", "BOOLEAN"), ("direction", "VARCHAR"),
    ("bmr", "DOUBLE"), ("bmd", "DOUBLE"), ("bmdl", "DOUBLE"), ("bmdu", "DOUBLE"),
    ("hitcall", "DOUBLE"), ("ac50", "DOUBLE"), ("top", "DOUBLE"), ("ec50", "DOUBLE"),
    ("params", "VARCHAR"), ("lowest_dose", "DOUBLE"), ("highest_dose", "DOUBLE"),
    ("qc_flags", "VARCHAR"))
TABLES: dict[str, TableSpec] = {spec.name: spec for spec in [
    TableSpec("studies", "One row per study: its study.yaml settings and input fingerprint.", (
        ("study_id", "VARCHAR"), ("title", "VARCHAR"), ("kind", "VARCHAR"),
        ("organism", "VARCHAR"), ("design", "VARCHAR"), ("contrasts", "VARCHAR"),
        ("alpha", "DOUBLE"), ("lfc_threshold", "DOUBLE"), ("batch", "VARCHAR"),
        ("n_samples", "BIGINT"), ("n_genes", "BIGINT"), ("counts_file", "VARCHAR"),
        ("input_hash", "VARCHAR"), ("config", "VARCHAR"),
        ("materialized_at", "TIMESTAMP WITH TIME ZONE")),
              column_notes=(("n_genes", "Genes (rows) of the ingested count matrix."),)),
    TableSpec("samples", "One row per sample as given in the sample sheet (text values), "
              "plus the study's own columns, library size, genes detected and, when counts "
              "were built from BAM, quantifier or FASTQ files, how each sample's fragments "
              "were assigned (null for counts: input, count_source 'matrix').", (
                  ("study_id", "VARCHAR"), ("sample", "VARCHAR"),
                  ("library_size", "BIGINT"), ("genes_detected", "BIGINT"),
                  *STAT_COLUMNS.items())),
    TableSpec("genes", "Genes of each study's count matrix, with symbols: the input's, else "
              "mapped from Ensembl ids with the shipped annotation.", (
                  ("study_id", "VARCHAR"), ("gene_id", "VARCHAR"), ("gene_symbol", "VARCHAR"))),
    TableSpec("raw_counts", "Raw counts in long form, one row per gene and sample, as read "
              "from the study's input (before technical replicates are summed).", (
                  ("study_id", "VARCHAR"), ("gene_id", "VARCHAR"), ("sample", "VARCHAR"),
                  ("count", "BIGINT"))),
    TableSpec("size_factors", "Per analysed sample (technical replicates summed): DESeq2 "
              "median-of-ratios size factor, library size, genes detected.", (
                  ("study_id", "VARCHAR"), ("sample", "VARCHAR"), ("size_factor", "DOUBLE"),
                  ("library_size", "BIGINT"), ("genes_detected", "BIGINT"),
                  ("n_technical_replicates", "BIGINT")),
              column_notes=(("sample", _ANALYSED_SAMPLE),)),
    TableSpec("normalized_counts", "Counts divided by size factors (long form).", (
        ("study_id", "VARCHAR"), ("gene_id", "VARCHAR"), ("sample", "VARCHAR"),
        ("normalized_count", "DOUBLE")),
              column_notes=(("sample", _ANALYSED_SAMPLE),)),
    TableSpec("vst", "Blind variance-stabilized expression (DESeq2 VST, log2-like scale).", (
        ("study_id", "VARCHAR"), ("gene_id", "VARCHAR"), ("sample", "VARCHAR"),
        ("vst", "DOUBLE")),
              column_notes=(("sample", _ANALYSED_SAMPLE),)),
    TableSpec("batch_corrected", "VST with the study's batch effect removed (limma "
              "removeBatchEffect, design effects preserved): for plots and export, never for "
              "testing.", (
                  ("study_id", "VARCHAR"), ("gene_id", "VARCHAR"), ("sample", "VARCHAR"),
                  ("batch_corrected_vst", "DOUBLE")),
              column_notes=(("sample", _ANALYSED_SAMPLE),)),
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
              sort_by=("gene_symbol", "gene_id", "contrast", "cell_type"),
              column_notes=(
                  ("pvalue", "Two-sided Wald p-value (of |LFC| > lfc_threshold when set); "
                             "null for all-zero genes and Cook's outliers."),
                  ("padj", "Benjamini-Hochberg adjusted p-value; null where DESeq2 removed the "
                           "gene (independent filtering, Cook's outliers, all-zero counts)."),
                  ("compound", "Screens: the contrast's compound; null for other kinds."),
                  ("dose", "Screens: the contrast's dose in plate-map units; null for other "
                           "kinds."))),
    TableSpec("sample_qc", "Per analysed sample (technical replicates summed): library "
              "size, fragments assigned and unassigned by reason, mapping rate (from BAM, "
              "quantifier or FASTQ input; null for counts: input), PCA scores, mean distance "
              "to the other samples, and likely-outlier flags with the reason.", (
                  ("study_id", "VARCHAR"), ("sample", "VARCHAR"), ("library_size", "BIGINT"),
                  *STAT_COLUMNS.items(), ("pc1", "DOUBLE"),
                  ("pc2", "DOUBLE"), ("mean_distance", "DOUBLE"), ("outlier", "BOOLEAN"),
                  ("outlier_reason", "VARCHAR")),
              column_notes=(("sample", _ANALYSED_SAMPLE),
                            ("strand_sense_fraction", _NOT_SUMMED),
                            ("inferred_strandedness", _NOT_SUMMED))),
    TableSpec("well_qc", "Screens: one row per well with depth, genes detected, "
              "mitochondrial fraction, correlation to the plate's control profile, httrpl's "
              "count metrics with per-plate fences, cytotoxicity, pass/fail and the reason. "
              "Failed wells are left out of testing.", (
                  ("study_id", "VARCHAR"), ("sample", "VARCHAR"), ("plate", "VARCHAR"),
                  ("well", "VARCHAR"), ("row", "VARCHAR"), ("column", "BIGINT"),
                  ("well_type", "VARCHAR"), ("compound", "VARCHAR"), ("dose", "DOUBLE"),
                  ("total_counts", "BIGINT"), ("genes_detected", "BIGINT"),
                  ("pct_mito", "DOUBLE"), ("control_correlation", "DOUBLE"),
                  ("passed", "BOOLEAN"), ("reason", "VARCHAR"), ("n_cov5", "BIGINT"),
                  ("n_sig80", "DOUBLE"), ("top10_prop", "DOUBLE"), ("gini", "DOUBLE"),
                  ("cytotoxic", "BOOLEAN")),
              column_notes=(
                  ("passed", "True when no QC rule flagged the well; failed and empty wells are "
                             "left out of testing."),
                  ("reason", "Why the well failed (low depth, few genes, high mito, unlike "
                             "controls, empty, beyond a plate fence, cytotoxic), '; '-joined."),
                  ("n_cov5", "Genes with at least 5 counts in the well (httrpl)."),
                  ("n_sig80", "Fewest genes holding 80 % of the well's counts (httrpl); null "
                              "for a well without counts."),
                  ("top10_prop", "Fraction of the well's counts in its 10 most-counted genes "
                                 "(httrpl)."),
                  ("gini", "Gini coefficient of the well's gene counts, zeros included "
                           "(httrpl, reldist::gini)."),
                  ("cytotoxic", "Depth or genes collapsed at the compound's top doses, or "
                                "viability < 50 %: not tested, reason 'cytotoxic'."))),
    TableSpec("compound_activity", "Screens: per compound x dose, DEG counts (padj < alpha) "
              "against the 95th percentile of its plate's control-vs-control null; active "
              "when above.", (
                  ("study_id", "VARCHAR"), ("contrast", "VARCHAR"), ("compound", "VARCHAR"),
                  ("dose", "DOUBLE"), ("dose_unit", "VARCHAR"), ("plate", "VARCHAR"),
                  ("n_wells", "BIGINT"), ("n_up", "BIGINT"), ("n_down", "BIGINT"),
                  ("n_deg", "BIGINT"), ("null_threshold", "DOUBLE"), ("null_median", "DOUBLE"),
                  ("n_null_splits", "BIGINT"), ("active", "BOOLEAN")),
              column_notes=(
                  ("plate", "Plate(s) of the condition's treated wells, comma-joined when it "
                            "spans plates."),
                  ("n_up", "Genes with padj < alpha and log2_fold_change > 0 in this "
                           "contrast."),
                  ("n_down", "Genes with padj < alpha and log2_fold_change < 0 in this "
                             "contrast."))),
    TableSpec("dose_response", "Screens: per compound and responsive gene, the "
              "concentration-response fit (tcplfit2's models with t-distributed errors, chosen "
              "by AIC): benchmark dose with its 90 % profile-likelihood interval, continuous "
              "hit call, AC50, top and fit quality.", (
                  ("study_id", "VARCHAR"), ("compound", "VARCHAR"), ("gene_id", "VARCHAR"),
                  ("gene_symbol", "VARCHAR"), *_CONCENTRATION_RESPONSE),
              column_notes=(
                  ("gene_id", "Gene with padj < alpha at some dose of the compound, fitted on "
                              "its wells and its plates' controls."),)),
    TableSpec("pathway_dose_response", "Screens: per compound and pathway or gene-set score "
              "(sample_scores: PROGENy, Hallmark GSVA), the same concentration-response fit as "
              "dose_response.", (
                  ("study_id", "VARCHAR"), ("compound", "VARCHAR"), ("collection", "VARCHAR"),
                  ("source", "VARCHAR"), *_CONCENTRATION_RESPONSE),
              column_notes=(
                  ("collection", "PROGENy (pathway scores) or Hallmark (GSVA), as in "
                                 "sample_scores."),
                  ("source", "The pathway or gene set whose per-well score is fitted."))),
    TableSpec("compound_potency", "Screens: per compound, the transcriptional point of "
              "departure (median BMD of its most sensitive genes).", (
                  ("study_id", "VARCHAR"), ("compound", "VARCHAR"), ("tpod", "DOUBLE"))),
    TableSpec("compound_pod", "Screens: per compound, its points of departure with "
              "intervals: gene tPOD, 5th percentile and mode of the gene BMDs, the lowest "
              "gene-set category per collection, and the lowest pathway-score BMD.", (
                  ("study_id", "VARCHAR"), ("compound", "VARCHAR"), ("pod_type", "VARCHAR"),
                  ("pod", "DOUBLE"), ("pod_lower", "DOUBLE"), ("pod_upper", "DOUBLE"),
                  ("n_genes", "BIGINT"), ("detail", "VARCHAR"), ("flags", "VARCHAR")),
              column_notes=(
                  ("pod_type", "gene_tpod (median of the 20 lowest gene BMDs), gene_p5, "
                               "gene_burst (BMD density mode), category (per collection), "
                               "pathway_score."),
                  ("pod", "The point of departure, in the plate map's dose unit."),
                  ("pod_lower", "The same statistic over the genes' BMDLs (the score's own "
                                "BMDL for pathway_score)."),
                  ("pod_upper", "The same statistic over the genes' BMDUs (the score's own "
                                "BMDU for pathway_score)."),
                  ("n_genes", "Qualifying genes the POD is computed from (null for "
                              "pathway_score)."),
                  ("detail", "Which genes, gene set (collection: set, k of n genes) or "
                             "score."),
                  ("flags", "above_cytotoxic_dose when the POD is at or above the lowest "
                            "dose at which the compound's wells were cytotoxic; else ''.")),
              sort_by=("compound", "pod_type")),
    TableSpec("plate_position_effects", "Screens: per plate, whether the control wells' "
              "expression (first PCs) and depth depend on the row, the column or the edge of "
              "the plate.", (
                  ("study_id", "VARCHAR"), ("plate", "VARCHAR"), ("variable", "VARCHAR"),
                  ("position", "VARCHAR"), ("statistic", "DOUBLE"), ("df", "BIGINT"),
                  ("df_resid", "BIGINT"), ("pvalue", "DOUBLE"), ("effect", "DOUBLE"),
                  ("n_wells", "BIGINT")),
              column_notes=(
                  ("variable", "PC1, PC2, ... of the plate's control wells' log CPM (500 "
                               "most variable of the more expressed half of the genes), or "
                               "log10_depth."),
                  ("position", "row, column (ANOVA over rows or columns) or edge (outer ring "
                               "vs inner wells)."),
                  ("statistic", "ANOVA F statistic (for edge, two groups: the square of the "
                                "t statistic)."),
                  ("pvalue", "p-value of that F test."),
                  ("df", "Degrees of freedom of the position term."),
                  ("df_resid", "Residual degrees of freedom."),
                  ("effect", "eta squared (row, column) or the edge-minus-inner mean "
                             "difference (edge; a PC's sign is arbitrary)."),
                  ("n_wells", "Control wells tested on the plate."))),
    TableSpec("compound_similarity", "Screens: per active compound x dose, its nearest "
              "conditions of other compounds by signature correlation (MoA hypotheses), with "
              "its cluster.", (
                  ("study_id", "VARCHAR"), ("contrast", "VARCHAR"), ("compound", "VARCHAR"),
                  ("dose", "DOUBLE"), ("cluster", "BIGINT"), ("rank", "BIGINT"),
                  ("neighbor_contrast", "VARCHAR"), ("neighbor_compound", "VARCHAR"),
                  ("neighbor_dose", "DOUBLE"), ("correlation", "DOUBLE"), ("moa", "VARCHAR"),
                  ("neighbor_moa", "VARCHAR"), ("moa_hypothesis", "VARCHAR"),
                  ("moa_hypothesis_pvalue", "DOUBLE"), ("moa_hypothesis_padj", "DOUBLE")),
              column_notes=(
                  ("cluster", "Average-linkage cluster (1 - r, cut at 0.7) of the condition "
                              "among the screen's active ones, numbered in dendrogram order."),
                  ("rank", "1 = the most correlated condition of another compound; up to 5 "
                           "per condition."),
                  ("neighbor_contrast", "A condition (compound x dose) of another compound "
                                        "among the nearest to this one."),
                  ("correlation", "Pearson r of the two conditions' consensus signatures "
                                  "(compound_signatures) over the informative genes (padj < "
                                  "alpha in an active condition)."),
                  ("moa", "The condition's class (plate map moa or target column); null when "
                          "not annotated."),
                  ("neighbor_moa", "The neighbour's class."),
                  ("moa_hypothesis", "The class most enriched among the condition's "
                                     "annotated neighbours (hypergeometric over the annotated "
                                     "active conditions of other compounds)."),
                  ("moa_hypothesis_pvalue", "Hypergeometric upper-tail p of that class."),
                  ("moa_hypothesis_padj", "BH-adjusted across conditions."))),
    TableSpec("compound_signatures", "Screens: per compound x dose and gene, the consensus "
              "signature of its replicate wells (CMap's MODZ of robust z-scores against the "
              "plate's control wells).", (
                  ("study_id", "VARCHAR"), ("contrast", "VARCHAR"), ("compound", "VARCHAR"),
                  ("dose", "DOUBLE"), ("gene_id", "VARCHAR"), ("gene_symbol", "VARCHAR"),
                  ("consensus_z", "DOUBLE")),
              column_notes=(
                  ("consensus_z", "MODZ: the wells' robust z-scores (vs the plate's controls) "
                                  "weighted by their mean Spearman r with the other "
                                  "replicates."),),
              sort_by=("contrast", "gene_id")),
    TableSpec("moa_retrieval", "Screens: can a condition's wells be told from the controls "
              "(level activity, per compound x dose), and are compounds of one MoA class "
              "retrieved before others (level consistency, per class)? Mean average precision "
              "(copairs) with permutation p-values, and CMap's replicate correlation and "
              "transcriptional activity score.", (
                  ("study_id", "VARCHAR"), ("level", "VARCHAR"), ("name", "VARCHAR"),
                  ("compound", "VARCHAR"), ("dose", "DOUBLE"), ("moa", "VARCHAR"),
                  ("n_profiles", "BIGINT"), ("replicate_correlation", "DOUBLE"),
                  ("signature_strength", "BIGINT"), ("tas", "DOUBLE"), ("map", "DOUBLE"),
                  ("pvalue", "DOUBLE"), ("padj", "DOUBLE"), ("retrieved", "BOOLEAN")),
              column_notes=(
                  ("level", "activity (a condition's wells against its plate's controls) or "
                            "consistency (an MoA class's conditions against other classes')."),
                  ("name", "The condition (contrast) for activity, the MoA class for "
                           "consistency."),
                  ("compound", "The condition's compound (null for consistency rows)."),
                  ("dose", "The condition's dose (null for consistency rows)."),
                  ("moa", "The compound's class from the plate map's moa (or target) column; "
                          "null when not annotated."),
                  ("n_profiles", "Wells (activity) or conditions of the class (consistency) "
                                 "used as queries."),
                  ("replicate_correlation", "75th percentile of the pairwise Spearman "
                                            "correlations of the condition's wells over the "
                                            "feature genes (CMap cc_q75); null for one well."),
                  ("signature_strength", "Feature genes with |consensus z| >= 2 (CMap "
                                         "ss_ngene)."),
                  ("tas", "Transcriptional activity score: sqrt(signature_strength x "
                          "max(replicate_correlation, 0) / number of feature genes)."),
                  ("map", "Mean average precision of the queries (copairs; cosine similarity "
                          "over the 1,000 most variable genes' robust z-scores)."),
                  ("pvalue", "Exact permutation p-value of map (relabelled wells or classes; "
                             "copairs' own null does not hold level on screens)."),
                  ("padj", "BH-adjusted pvalue within the level."),
                  ("retrieved", "padj < alpha: phenotypically active (activity) or "
                                "consistent (consistency)."))),
    TableSpec("combination_effects", "Screens: per combination and gene, the interaction "
              "(combination - A - B + control on the shared fit, DESeq2 Wald), the observed, "
              "expected additive and single-agent log2 fold changes, and the gene's class.", (
                  ("study_id", "VARCHAR"), ("combination", "VARCHAR"), ("gene_id", "VARCHAR"),
                  ("gene_symbol", "VARCHAR"), ("base_mean", "DOUBLE"),
                  ("log2_fold_change", "DOUBLE"), ("lfc_se", "DOUBLE"), ("stat", "DOUBLE"),
                  ("pvalue", "DOUBLE"), ("padj", "DOUBLE"), ("observed_log2fc", "DOUBLE"),
                  ("observed_padj", "DOUBLE"), ("expected_log2fc", "DOUBLE"),
                  ("agent_1_log2fc", "DOUBLE"), ("agent_1_padj", "DOUBLE"),
                  ("agent_2_log2fc", "DOUBLE"), ("agent_2_padj", "DOUBLE"),
                  ("interaction_class", "VARCHAR")),
              column_notes=(
                  ("log2_fold_change", "Interaction log2 fold change: observed_log2fc - "
                                       "expected_log2fc."),
                  ("lfc_se", "Standard error of the interaction log2 fold change."),
                  ("stat", "Wald statistic of the interaction."),
                  ("pvalue", "Wald p-value of the interaction (against lfc_threshold)."),
                  ("padj", "BH-adjusted interaction p-value within the combination, after "
                           "independent filtering."),
                  ("observed_log2fc", "The combination's log2 fold change vs the control."),
                  ("observed_padj", "padj of the combination vs the control."),
                  ("expected_log2fc", "Additive expectation: agent_1_log2fc + "
                                      "agent_2_log2fc."),
                  ("agent_1_log2fc", "The first agent alone at its dose in the combination, "
                                     "vs the control."),
                  ("agent_1_padj", "padj of the first agent alone."),
                  ("agent_2_log2fc", "The second agent alone at its dose, vs the control."),
                  ("agent_2_padj", "padj of the second agent alone."),
                  ("interaction_class", "synergistic, antagonistic, emergent, additive or "
                                        "unchanged (see the docs, 'Compound screens'); null "
                                        "when the interaction was not tested.")),
              sort_by=("combination", "gene_id")),
    TableSpec("combinations", "Screens: per combination, its non-additivity (genes with "
              "interaction padj < alpha) against its plate's null of relabelled control and "
              "monotherapy wells, and its genes per class.", (
                  ("study_id", "VARCHAR"), ("combination", "VARCHAR"),
                  ("compound_1", "VARCHAR"), ("dose_1", "DOUBLE"), ("compound_2", "VARCHAR"),
                  ("dose_2", "DOUBLE"), ("dose_unit", "VARCHAR"), ("mono_1", "VARCHAR"),
                  ("mono_2", "VARCHAR"), ("plate", "VARCHAR"), ("n_wells", "BIGINT"),
                  ("n_deg", "BIGINT"), ("n_nonadditive", "BIGINT"),
                  ("frac_nonadditive", "DOUBLE"), ("n_synergistic", "BIGINT"),
                  ("n_antagonistic", "BIGINT"), ("n_emergent", "BIGINT"),
                  ("n_additive", "BIGINT"), ("null_threshold", "DOUBLE"),
                  ("null_median", "DOUBLE"), ("n_null_splits", "BIGINT"), ("pvalue", "DOUBLE"),
                  ("nonadditive", "BOOLEAN")),
              column_notes=(
                  ("compound_1", "First agent (alphabetical)."),
                  ("dose_1", "First agent's dose in the combination."),
                  ("compound_2", "Second agent."),
                  ("dose_2", "Second agent's dose in the combination."),
                  ("mono_1", "The first agent's monotherapy condition at that dose."),
                  ("mono_2", "The second agent's monotherapy condition at that dose."),
                  ("plate", "Plate(s) of the combination's wells, comma-joined."),
                  ("n_wells", "The combination's analysed wells."),
                  ("n_deg", "Genes with padj < alpha for the combination vs the control."),
                  ("n_nonadditive", "Genes with interaction padj < alpha."),
                  ("frac_nonadditive", "Fraction of the combination's DEGs whose interaction "
                                       "has padj < alpha (null without DEGs)."),
                  ("null_threshold", "95th percentile of the plate's null counts of "
                                     "non-additive genes."),
                  ("null_median", "Median of those null counts."),
                  ("n_null_splits", "Null relabellings of the plate's wells."),
                  ("pvalue", "Empirical p-value: (1 + null counts >= n_nonadditive) / (1 + "
                             "n_null_splits)."),
                  ("n_synergistic", "Genes of class synergistic in combination_effects."),
                  ("n_antagonistic", "Genes of class antagonistic in combination_effects."),
                  ("n_emergent", "Genes of class emergent in combination_effects."),
                  ("n_additive", "Genes of class additive in combination_effects."),
                  ("nonadditive", "n_nonadditive above null_threshold."))),
    TableSpec("pathway_combination_effects", "Screens: per combination and per-well score "
              "(PROGENy pathways, Hallmark GSVA), the interaction of the group means with a "
              "pooled-variance t-test, and the score's class.", (
                  ("study_id", "VARCHAR"), ("combination", "VARCHAR"),
                  ("collection", "VARCHAR"), ("source", "VARCHAR"), ("observed", "DOUBLE"),
                  ("expected", "DOUBLE"), ("interaction", "DOUBLE"), ("stat", "DOUBLE"),
                  ("pvalue", "DOUBLE"), ("padj", "DOUBLE"), ("interaction_class", "VARCHAR")),
              column_notes=(
                  ("collection", "PROGENy or Hallmark, as in sample_scores."),
                  ("source", "The pathway or gene set."),
                  ("observed", "Mean score of the combination's wells minus the controls'."),
                  ("expected", "Sum of the two agents' differences to the controls."),
                  ("interaction", "observed - expected: AB - A - B + control of the group "
                                  "means."),
                  ("stat", "t statistic of the interaction (pooled variance of the four "
                           "groups, df = wells - 4)."),
                  ("pvalue", "Two-sided p-value of that t."),
                  ("padj", "BH-adjusted within the combination."),
                  ("interaction_class", "As in combination_effects, from the score's t-tests."))),
    TableSpec("cell_qc", "Single-cell: one row per cell with its counts, genes detected, "
              "mitochondrial percentage, scrublet doublet score, pass/fail and the reasons "
              "(per-capture MAD outliers, absolute limits, doublets).", (
                  ("study_id", "VARCHAR"), ("cell_id", "VARCHAR"), ("sample", "VARCHAR"),
                  ("donor", "VARCHAR"), ("capture", "VARCHAR"), ("total_counts", "BIGINT"),
                  ("n_genes", "BIGINT"), ("pct_mito", "DOUBLE"), ("doublet_score", "DOUBLE"),
                  ("predicted_doublet", "BOOLEAN"), ("passed", "BOOLEAN"),
                  ("reason", "VARCHAR")),
              column_notes=(
                  ("sample", _CELL_SAMPLE),
                  ("n_genes", "Genes with a count above zero in the cell."),
                  ("passed", "True when the cell failed no QC rule; only these cells are "
                             "embedded, annotated and summed into pseudobulks."),
                  ("reason", "Failed rules joined by ';' (no_counts, low/high_counts, "
                             "low/high_genes, high_mito, doublet); '' when passed."))),
    TableSpec("cell_types", "Single-cell: one row per QC-passed cell with its Leiden cluster "
              "(on the Harmony-integrated embedding), cell type (given in the input, or from "
              "study.yaml markers) and UMAP coordinates.", (
                  ("study_id", "VARCHAR"), ("cell_id", "VARCHAR"), ("sample", "VARCHAR"),
                  ("cluster", "VARCHAR"), ("cell_type", "VARCHAR"),
                  ("cell_type_source", "VARCHAR"), ("umap_1", "DOUBLE"),
                  ("umap_2", "DOUBLE")),
              column_notes=(
                  ("sample", _CELL_SAMPLE),
                  ("cluster", "Leiden cluster ('0', '1', ...) on the kNN graph of the PCs after "
                              "Harmony integration over the batch (else the donor)."),
                  ("cell_type", "The input's cell_type column, else the cluster's "
                                "best-scoring study.yaml marker set ('unassigned' if none "
                                "scores > 0)."))),
    TableSpec("pseudobulk_samples", "Single-cell: one row per cell type x biological sample "
              "(donor x condition): cells summed, and whether the pseudobulk was kept for "
              "testing (dropped below min_cells_per_pseudobulk, with the reason).", (
                  ("study_id", "VARCHAR"), ("pseudobulk_sample", "VARCHAR"),
                  ("cell_type", "VARCHAR"), ("donor", "VARCHAR"), ("condition", "VARCHAR"),
                  ("sample", "VARCHAR"), ("n_cells", "BIGINT"), ("total_counts", "BIGINT"),
                  ("kept", "BOOLEAN"), ("reason", "VARCHAR")),
              column_notes=(
                  ("cell_type", "Cell type of the pseudobulk's cells."),
                  ("sample", "Biological sample of the pseudobulk: its donor, design variable "
                             "and batch values joined by '_' (as in samples)."),
                  ("reason", "Why the pseudobulk was dropped (fewer cells than "
                             "min_cells_per_pseudobulk); '' when kept."))),
    TableSpec("pseudobulk_counts", "Single-cell: raw counts of QC-passed cells summed per kept "
              "pseudobulk sample and gene (long form).", (
                  ("study_id", "VARCHAR"), ("pseudobulk_sample", "VARCHAR"),
                  ("cell_type", "VARCHAR"), ("donor", "VARCHAR"), ("condition", "VARCHAR"),
                  ("gene_id", "VARCHAR"), ("count", "BIGINT")),
              column_notes=(
                  ("cell_type", "Cell type of the pseudobulk's cells."),
                  ("count", "Raw counts of the gene summed over the pseudobulk's QC-passed "
                            "cells."))),
    TableSpec("marker_genes", "Single-cell, EXPLORATORY: per cell type, top genes of a per-cell "
              "Wilcoxon test against all other cells. Cells are not independent replicates, "
              "so these p-values are far too small for inference; use deg_results "
              "(pseudobulk DESeq2) for that.", (
                  ("study_id", "VARCHAR"), ("cell_type", "VARCHAR"), ("rank", "BIGINT"),
                  ("gene_id", "VARCHAR"), ("gene_symbol", "VARCHAR"), ("score", "DOUBLE"),
                  ("log2_fold_change", "DOUBLE"), ("pvalue", "DOUBLE"), ("padj", "DOUBLE"),
                  ("pct_in_group", "DOUBLE"), ("pct_other_groups", "DOUBLE"),
                  ("method", "VARCHAR"), ("exploratory", "BOOLEAN")),
              column_notes=(
                  ("cell_type", "Cell type whose cells are tested against all other cells."),
                  ("rank", "1 = highest Wilcoxon z-score (most up in the cell type); the top "
                           "100 genes per cell type."),
                  ("gene_symbol", "Gene symbol of the cell matrix's genes; null when the input "
                                  "has none."),
                  ("score", "Wilcoxon rank-sum z-score of the cell type's cells vs all other "
                            "cells, on log-normalized expression."),
                  ("log2_fold_change", "log2 ratio of mean expression (expm1 of log-normalized "
                                       "values) in the cell type vs all other cells."),
                  ("pvalue", "Per-cell Wilcoxon p-value: cells are not independent "
                             "replicates, so it is far too small; exploratory only."),
                  ("padj", "Benjamini-Hochberg over all genes of the cell type's test; "
                           "exploratory only, as pvalue."),
                  ("method", "Always wilcoxon_per_cell."))),
    TableSpec("gene_recurrence", "Across studies: per gene (matched on upper-case symbol, else "
              "the Ensembl id without version), in how many studies and contrasts it was "
              "tested and significantly up or down (each study's alpha), with its median "
              "log2 fold change.", (
                  ("gene_key", "VARCHAR"), ("gene_symbol", "VARCHAR"), ("n_studies", "BIGINT"),
                  ("n_contrasts", "BIGINT"), ("n_up", "BIGINT"), ("n_down", "BIGINT"),
                  ("n_studies_up", "BIGINT"), ("n_studies_down", "BIGINT"),
                  ("fraction_up", "DOUBLE"), ("fraction_down", "DOUBLE"),
                  ("median_log2_fold_change", "DOUBLE")), per_study=False,
              column_notes=(
                  ("gene_symbol", "Most frequent original spelling of the key's symbol across "
                                  "the catalog (the key itself when no row has one)."),
                  ("n_up", "Signatures where the gene is significant (padj < the study's "
                           "alpha) with log2_fold_change > 0."),
                  ("n_down", "Signatures where the gene is significant (padj < the study's "
                             "alpha) with log2_fold_change < 0."))),
    TableSpec("contrast_similarity", "Across studies: per signature (study, contrast, cell "
              "type), its nearest signatures by Pearson r of Wald statistics over the "
              "well-expressed genes both tested (at least 100).", (
                  ("study_id", "VARCHAR"), ("contrast", "VARCHAR"), ("cell_type", "VARCHAR"),
                  ("rank", "BIGINT"), ("neighbor_study_id", "VARCHAR"),
                  ("neighbor_contrast", "VARCHAR"), ("neighbor_cell_type", "VARCHAR"),
                  ("correlation", "DOUBLE"), ("n_shared_genes", "BIGINT")), per_study=False,
              column_notes=(
                  ("study_id", "Study of the signature whose neighbours are listed."),
                  ("rank", "1 = the most correlated signature; up to 10 per signature."),
                  ("correlation", "Pearson r of the two signatures' Wald statistics over the "
                                  "genes both tested with base_mean >= 10 (by gene_key)."))),
    TableSpec("enrichment", "Per contrast (and cell type where present), collection and term: "
              "over-representation of up- and down-regulated DEGs (hypergeometric against the "
              "tested genes; score = odds ratio, genes = overlap) and GSEA prerank on the Wald "
              "statistic (score = NES, genes = leading edge).", (
                  ("study_id", "VARCHAR"), ("contrast", "VARCHAR"), ("cell_type", "VARCHAR"),
                  ("collection", "VARCHAR"), ("term", "VARCHAR"), ("method", "VARCHAR"),
                  ("size", "BIGINT"), ("score", "DOUBLE"), ("pvalue", "DOUBLE"),
                  ("padj", "DOUBLE"), ("genes", "VARCHAR")),
              column_notes=(
                  ("method", "ora_up / ora_down (DEGs: padj < alpha, shrunken log2FC beyond "
                             "enrichment_min_lfc) or gsea_prerank (on the Wald statistic)."),
                  ("score", "ORA: odds ratio of DEGs in vs out of the set (0.5 added to each "
                            "cell if one is 0); GSEA: normalized enrichment score (NES)."),
                  ("pvalue", "ORA: hypergeometric P(overlap >= observed); GSEA: gene-set "
                             "permutation p-value against the null of the same sign."),
                  ("padj", "ORA: Benjamini-Hochberg over the collection's terms (per contrast "
                           "and direction); GSEA: FDR q-value."))),
    TableSpec("pathway_activity", "Per contrast (and cell type where present): each "
              "PROGENy pathway's activity, from the contrast's Wald statistics by decoupler's "
              "multivariate linear model over the pathway footprints (top 500 genes each; human "
              "and mouse).", _ACTIVITY_COLUMNS,
              column_notes=(*_ACTIVITY_NOTES,
                            ("source", "PROGENy pathway (14: Androgen, EGFR, Estrogen, Hypoxia, "
                                       "JAK-STAT, MAPK, NFkB, p53, PI3K, TGFb, TNFa, Trail, "
                                       "VEGF, WNT).")),
              sort_by=("contrast", "cell_type", "source")),
    TableSpec("tf_activity", "Per contrast (and cell type where present): each transcription "
              "factor's activity, from the contrast's Wald statistics by decoupler's univariate "
              "linear model over its signed targets.", _ACTIVITY_COLUMNS,
              column_notes=(*_ACTIVITY_NOTES,
                            ("source", "Transcription factor (gene symbol) of the network.")),
              sort_by=("contrast", "cell_type", "source")),
    TableSpec("sample_scores", "Per analysed sample (well; single-cell: pseudobulk): PROGENy "
              "pathway scores on the sample's scaled expression, and GSVA scores of the shipped "
              "Hallmark gene sets, for plotting, testing and fitting against dose.", (
                  ("study_id", "VARCHAR"), ("sample", "VARCHAR"), ("cell_type", "VARCHAR"),
                  ("collection", "VARCHAR"), ("source", "VARCHAR"), ("score", "DOUBLE")),
              column_notes=(
                  ("collection", "PROGENy (pathway scores, multivariate linear model on the "
                                 "sample's VST z-scored per gene) or Hallmark (GSVA)."),
                  ("source", "The pathway (PROGENy) or gene set (Hallmark) scored."),
                  ("score", "PROGENy: t-value of the pathway's coefficient; GSVA: enrichment "
                            "score in [-1, 1] (difference of the maximum deviations)."),
                  ("sample", "Analysed sample, well or pseudobulk the score belongs to.")),
              sort_by=("source", "sample")),
    TableSpec("design_diagnostics", "Per study (single-cell: per cell type, over its "
              "pseudobulks): each leading principal component of the VST "
              "tested against every sample variable (ANOVA for factors, correlation for "
              "numbers), and each variable's median share of the genes' variance (variance "
              "partition). A variable outside the design that explains PC1 or PC2 (p < 0.01) "
              "is warned about.", (
                  ("study_id", "VARCHAR"), ("cell_type", "VARCHAR"), ("component", "VARCHAR"),
                  ("variance_explained", "DOUBLE"), ("variable", "VARCHAR"),
                  ("in_design", "BOOLEAN"), ("test", "VARCHAR"), ("statistic", "DOUBLE"),
                  ("pvalue", "DOUBLE")),
              column_notes=(
                  ("cell_type", "Single-cell: the cell type whose pseudobulks are diagnosed "
                                "(their variables: the sample's, n_cells, log10_counts); null "
                                "in bulk studies and screens."),
                  ("component", "PC1..PC5 (top 500 variable genes of the VST), or "
                                "variance_partition."),
                  ("variance_explained", "Fraction of the variance the PC explains (null for "
                                         "variance_partition rows)."),
                  ("variable", "Sample-sheet column, or residual (variance partition)."),
                  ("in_design", "Whether the design (or batch) includes the variable, or a "
                                "variable that determines it (compound, given condition)."),
                  ("test", "anova (factor), correlation (number) or median_variance_share."),
                  ("statistic", "ANOVA F, Pearson r, or the median over genes of the variable's "
                                "share of variance (omega squared)."),
                  ("pvalue", "The test's p-value (null for variance shares).")),
              sort_by=("cell_type", "component", "variable")),
]}
