"""The study kinds, declared once: what each kind's study.yaml holds and how it is analysed.

A kind is data here. The layers above read these specs instead of testing the kind's name:
validation takes the keys a kind requires and owns from ``KindSpec``; ``defs/`` builds one
asset graph per kind, with its own partitions; the runner and the CLI take their labels and
summaries from the spec. What a kind computes lives in its own package (``bulk/``,
``screen/``, ``singlecell/``) and its own pipeline and asset modules; the architecture page
of the docs lists every step of adding a kind, and ``test_kinds.py`` adds a toy one.
"""

from __future__ import annotations

from dataclasses import dataclass

PER_CELL_WARNING = ("cells of one donor are not independent replicates, so per-cell p-values "
                    "would reflect the number of cells rather than biological variation; "
                    "differential expression is tested on pseudobulks per donor")
"""Why single-cell studies must name their donors (also used by the single-cell checks)."""

COUNTING_KEYS = ("gtf", "tx2gene", "transcriptome", "counts_from_abundance", "multimapping",
                 "quantifier")
"""study.yaml keys that only mean something when counts come from a sample-sheet column
(BAM, quantifier or FASTQ files): bulk studies only."""
SINGLECELL_KEYS = ("cells", "donor", "cell_type", "capture", "markers", "qc",
                   "min_cells_per_pseudobulk", "clustering_resolution")
SCREEN_KEYS = ("plate_map", "control", "bmr_sd", "position_effects")


@dataclass(frozen=True)
class KindSpec:
    """One study kind.

    Parameters
    ----------
    name
        The ``kind:`` value in study.yaml; also the asset key prefix and group of its graph.
    title
        What the kind is, for people (CLI, UI, docs).
    partitions
        Name of the kind's dynamic partitions in Dagster (one partition per study).
    required
        study.yaml keys the kind requires, each with the fix a missing one gets.
    own_keys
        study.yaml keys only this kind may set; another kind's study setting one is refused.
    own_keys_note
        Added to the refusal of an own key in another kind's study.
    counts_from_reads
        Whether the kind's counts may be built from the sample sheet's BAM, quantifier or
        FASTQ files (its study.yaml then names the references, ``COUNTING_KEYS``).
    lists_contrasts
        Whether ``dge run`` lists the DEG counts of every contrast; a screen's hundreds of
        compound x dose conditions are summarized by their activity calls instead.
    """

    name: str
    title: str
    partitions: str
    required: tuple[tuple[str, str], ...]
    own_keys: tuple[str, ...] = ()
    own_keys_note: str = ""
    counts_from_reads: bool = False
    lists_contrasts: bool = True


_DESIGN = (("design", "add this key"), ("contrasts", "add this key"))

KINDS: dict[str, KindSpec] = {spec.name: spec for spec in (
    KindSpec(
        name="bulk", title="bulk RNA-seq", partitions="bulk_studies", required=_DESIGN,
        own_keys=COUNTING_KEYS, own_keys_note=", whose counts may come from sequencing outputs",
        counts_from_reads=True),
    KindSpec(
        name="singlecell", title="single-cell RNA-seq", partitions="singlecell_studies",
        required=(*_DESIGN, ("counts", "name the cells' count matrix (h5ad or 10x)"),
                  ("donor", "name the cell metadata column identifying each cell's donor "
                            f"(biological replicate): {PER_CELL_WARNING}")),
        own_keys=SINGLECELL_KEYS),
    KindSpec(
        name="screen", title="compound screen (DRUG-seq, MAC-seq)", partitions="screens",
        required=(("control", "name the vehicle of the control wells, e.g. control: DMSO"),
                  ("counts", "name the wells' count matrix")),
        own_keys=SCREEN_KEYS, lists_contrasts=False),
)}
"""Every kind, by its ``kind:`` value."""

