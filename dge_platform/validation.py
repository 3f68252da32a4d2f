"""Validate a study folder completely before any asset runs, collecting every problem."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import TypeAdapter

from dge_platform.cell_checks import (
    PER_CELL_WARNING,
    SAMPLE,
    cell_count_problems,
    cell_metadata_problems,
    marker_problems,
    cell_samples,
    donor_problems,
    sample_sheet,
)
from dge_platform.cell_readers import read_cells
from dge_platform.count_checks import check_counts
from dge_platform.count_readers import TEXT_ERRORS, detect_format, read_counts
from dge_platform.file_memo import file_digest
from dge_platform.gene_sets import GmtError, read_gmt
from dge_platform.library_counts import (
    SOURCE_COLUMNS,
    SOURCE_KEYS,
    BuiltCounts,
    CountPlan,
    assemble_counts,
    plan_counts,
    sheet_source,
    source_files,
)
from dge_platform.design import design_variables, is_numeric, rank_problems, study_design_frame
from dge_platform.plate_map import (
    ROLE,
    TESTED_ROLES,
    annotate_plate_map,
    normalize_columns,
    plate_map_problems,
    screen_contrasts,
    screen_design,
    single_well_conditions,
)
from dge_platform.problems import Problem, StudyInputError, short_repr
from dge_platform.pseudobulk import sum_counts
from dge_platform.replicates import collapse_sheet, technical_replicate_problems
from dge_platform.sample_sheet import read_sample_sheet
from dge_platform.study import (
    STUDY_FILE,
    StudyConfig,
    is_valid_study_id,
    parse_study_config,
    read_study_yaml,
    study_path,
)

MIN_REPLICATES = 2


@dataclass
class ValidatedStudy:
    """A study whose inputs passed every check.

    Attributes
    ----------
    config
        The parsed study.yaml.
    study_dir
        The study folder.
    counts
        Raw integer counts, genes x samples, columns in sample-sheet order. Single-cell:
        the cells' counts summed per biological sample. None while counts from BAM or
        FASTQ files are not built yet (``plan``; see :func:`with_built_counts`).
    samples
        Sample sheet (text values), indexed by sample, same order as ``counts``.
        Single-cell: one row per biological sample (donor x design variables x batch).
    gene_symbols
        Gene symbol by gene id where the input carries them, else None.
    files
        Every input file, study.yaml first.
    warnings
        Non-fatal observations to show the user.
    cells
        Single-cell: the cells x genes raw counts (sparse AnnData) with cell metadata and
        each cell's biological ``sample`` in ``obs``; else None.
    plan
        How counts are built from the sample sheet's ``bam``/``quant``/``fastq_1`` files;
        None for ``counts:`` input.
    count_stats
        Per-sample counting statistics (``library_counts.STAT_COLUMNS``) once counts are
        built from sequencing outputs, else None.
    """

    config: StudyConfig
    study_dir: Path
    counts: pd.DataFrame | None
    samples: pd.DataFrame
    gene_symbols: pd.Series | None
    files: list[Path]
    warnings: list[Problem] = field(default_factory=list)
    cells: Any = None
    plan: CountPlan | None = None
    count_stats: pd.DataFrame | None = None

    @property
    def input_hash(self) -> str:
        """Content hash of every input file (the study's data version)."""
        return hash_files(self.study_dir, self.files)


@dataclass
class ValidationReport:
    """What ``validate_study`` found: the study if valid, else every problem."""

    study: ValidatedStudy | None
    problems: list[Problem]
    warnings: list[Problem]


def hash_files(study_dir: Path, files: list[Path]) -> str:
    """SHA-256 over file names (relative to the study) and the files' SHA-256 digests, which
    are memoised per process while a file is unchanged: the sensor re-checks studies with
    multi-gigabyte BAMs every few seconds."""
    digest = hashlib.sha256()
    root = study_dir.resolve()
    for path in files:
        digest.update(str(path.resolve().relative_to(root)).encode() + b"\0")
        digest.update(file_digest(path).encode() + b"\n")
    return digest.hexdigest()[:16]


def load_study(study_dir: Path, expected_id: str | None = None) -> ValidatedStudy:
    """Validate a study and return it, or raise :class:`StudyInputError` with every problem."""
    report = validate_study(study_dir, expected_id)
    if report.study is None:
        raise StudyInputError(str(study_dir), report.problems)
    return report.study


def validate_study(study_dir: Path, expected_id: str | None = None) -> ValidationReport:
    """Check a study folder: study.yaml, count matrix, sample sheet, design and contrasts.

    Checks run as far as the inputs allow, so one call reports every problem at once.
    ``expected_id`` is the id a registered study must carry (its folder name).
    """
    study_dir = Path(study_dir)
    if expected_id is not None:
        problems = registered_folder_problems(study_dir, expected_id)
        if problems:
            return ValidationReport(None, problems, [])
    raw, problems = read_study_yaml(study_dir)
    if raw is None:
        return ValidationReport(None, problems, [])
    config, problems = parse_study_config(raw)
    problems += kind_problems(raw)
    if expected_id is not None and raw.get("id") != expected_id:
        problems.append(Problem(STUDY_FILE, "id", f"id {short_repr(raw.get('id'))} differs from "
                                f"the study's folder name {expected_id!r}", "register the "
                                "study with 'dge add', which files it under its id"))
    values = dict(config) if config else _valid_fields(raw, problems)
    checker = _Checker(study_dir, values, problems, _problem_keys(problems))
    checker.run()
    if checker.problems or config is None:
        return ValidationReport(None, checker.problems, checker.warnings)
    if checker.screen_design is not None:
        config = config.model_copy(update=checker.screen_design)
    study = ValidatedStudy(config, study_dir, checker.counts, checker.sheet,
                           checker.gene_symbols, checker.files, checker.warnings, checker.cells,
                           checker.plan)
    if checker.built is not None:  # quantifier outputs: imported during validation
        try:
            study = with_built_counts(study, checker.built)
        except StudyInputError as err:
            return ValidationReport(None, err.problems, checker.warnings)
    return ValidationReport(study, [], study.warnings)


def with_built_counts(study: ValidatedStudy, built: BuiltCounts) -> ValidatedStudy:
    """The study with counts built from its sequencing outputs: estimated counts rounded
    (as ``DESeqDataSetFromTximport`` does), the count checks applied, statistics and notes
    attached.

    Raises
    ------
    StudyInputError
        When the built counts fail a check (e.g. a sample with no assigned fragment), or
        the reads lie on the other strand than ``strandedness`` says.
    """
    where = study.plan.describe()
    counts, problems = check_counts(built.counts, where, round_counts=built.estimated)
    problems = built.problems + problems
    if problems:
        raise StudyInputError(str(study.study_dir), problems)
    counts = counts[list(study.samples.index)]
    symbols = built.gene_symbols if study.gene_symbols is None else study.gene_symbols
    notes = [Problem(study.plan.sheet_file, f"column '{SOURCE_COLUMNS[study.plan.source][0]}'",
                     note) for note in built.notes]
    return replace(study, counts=counts, gene_symbols=symbols, count_stats=built.stats,
                   warnings=[*study.warnings, *notes])


def registered_folder_problems(study_dir: Path, folder_name: str) -> list[Problem]:
    """A registered study's folder must be named by a valid id and be a real folder of the
    data root: a symbolic link would let its files live anywhere."""
    if not is_valid_study_id(folder_name):
        return [Problem(STUDY_FILE, "id", f"the study's folder name {folder_name!r} is not a "
                        "valid study id", "rename the folder to the study's id (lowercase "
                        "letters, digits, '_' and '-'), or register it with 'dge add'")]
    if study_dir.is_symlink():
        return [Problem(STUDY_FILE, "", f"the study folder {folder_name!r} is a symbolic link; "
                        "registered studies must be folders inside the data root",
                        "register the study with 'dge add', which copies its files")]
    return []


def kind_problems(raw: dict[str, Any]) -> list[Problem]:
    """Keys required or refused by the study's kind: screens need ``control`` and a plate
    map and derive their design and contrasts; other kinds need ``design`` and
    ``contrasts``."""
    def missing(key: str, fix: str = "add this key") -> Problem:
        return Problem(STUDY_FILE, key, "required key is missing", fix)

    if raw.get("kind") == "screen":
        problems = [] if raw.get("control") is not None else [missing(
            "control", "name the vehicle of the control wells, e.g. control: DMSO")]
        if raw.get("counts") is None:
            problems.append(missing("counts", "name the wells' count matrix"))
        if raw.get("plate_map") is None and raw.get("samples") is None:
            problems.append(missing("plate_map", "name the plate map (CSV/TSV with sample, "
                                    "plate, well, compound, dose)"))
        elif raw.get("plate_map") is not None and raw.get("samples") is not None:
            problems.append(Problem(STUDY_FILE, "samples", "a screen takes plate_map or "
                                    "samples, not both", "keep plate_map"))
        return problems
    problems = [missing(key) for key in ("design", "contrasts") if raw.get(key) is None]
    if raw.get("kind") == "singlecell" and raw.get("counts") is None:
        problems.append(missing("counts", "name the cells' count matrix (h5ad or 10x)"))
    if raw.get("kind") != "bulk":
        problems += [Problem(STUDY_FILE, key, f"only used by kind: bulk, whose counts may come "
                             f"from sequencing outputs (this study is "
                             f"{short_repr(raw.get('kind'))})", "remove it")
                     for key in SOURCE_KEYS if raw.get(key) is not None]
    if raw.get("kind") == "singlecell" and raw.get("donor") is None:
        problems.append(missing("donor", "name the cell metadata column identifying each "
                                f"cell's donor (biological replicate): {PER_CELL_WARNING}"))
    if raw.get("kind") != "singlecell":
        problems += [Problem(STUDY_FILE, key, f"only used by kind: singlecell (this study is "
                             f"{short_repr(raw.get('kind'))})", "remove it")
                     for key in SINGLECELL_KEYS if raw.get(key) is not None]
    if raw.get("contrasts") == []:
        problems.append(Problem(STUDY_FILE, "contrasts", "no contrast listed",
                                "list at least one comparison"))
    problems += [Problem(STUDY_FILE, key, f"only used by kind: screen (this study is "
                         f"{short_repr(raw.get('kind'))})", "remove it")
                 for key in ("plate_map", "control") if raw.get(key) is not None]
    return problems


SINGLECELL_KEYS = ("cells", "donor", "cell_type", "capture", "markers", "qc",
                   "min_cells_per_pseudobulk", "clustering_resolution")


def _problem_keys(problems: list[Problem]) -> set[str]:
    """The top-level study.yaml keys that problems concern."""
    return {p.field.split(".")[0].split("[")[0] for p in problems if p.file == STUDY_FILE}


def _valid_fields(raw: dict[str, Any], problems: list[Problem]) -> dict[str, Any]:
    """The keys of a study.yaml that validated, so later checks can still run on them."""
    bad = _problem_keys(problems)
    values: dict[str, Any] = {}
    for name, info in StudyConfig.model_fields.items():
        if name in raw and name not in bad:
            kind = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
            adapter = TypeAdapter(kind)
            values[name] = adapter.validate_python(raw[name])
        elif not info.is_required():
            values[name] = info.default
    return values


class _Checker:
    """Runs each check whose inputs are available, accumulating problems and warnings."""

    def __init__(self, study_dir: Path, values: dict[str, Any], problems: list[Problem],
                 invalid: set[str]):
        self.dir = study_dir
        self.v = values
        self.invalid = invalid  # keys already reported, so not reported again as missing
        # The keys that validated, for readers (unvalidated keys are absent or defaults).
        self.config = StudyConfig.model_construct(**values)
        self.problems = list(problems)
        self.warnings: list[Problem] = []
        self.files: list[Path] = [study_dir / STUDY_FILE]
        self.counts: pd.DataFrame | None = None
        self.counts_file = str(values.get("counts") or "")
        self.gene_symbols: pd.Series | None = None
        self.obs: pd.DataFrame | None = None
        self.sheet: pd.DataFrame | None = None
        self.sheet_key = "plate_map" if values.get("plate_map") else "samples"
        self.sheet_file = str(values.get(self.sheet_key) or self.counts_file)
        self.screen_design: dict[str, Any] | None = None
        self.cells = None
        self.plan: CountPlan | None = None
        self.built: BuiltCounts | None = None

    def run(self) -> None:
        if self.v.get("kind") == "singlecell":
            self._read_cells()
            self._read_gene_sets()
            if self.sheet is not None:
                self._check_design(self.sheet, self.v.get("design"),
                                   self.v.get("contrasts") or [], self.v.get("batch"),
                                   min_replicates=1, donor=self.v.get("donor"))
            return
        self._read_counts()
        self._read_sheet()
        if self.v.get("kind") == "bulk":
            self._plan_counts()
        self._read_gene_sets()
        if self.counts is not None and self.sheet is not None:
            self._match_samples()
        if self.sheet is not None and self.v.get("kind") == "screen":
            self._check_plate_map()
        elif self.sheet is not None:
            self._check_design(self.sheet, self.v.get("design"), self.v.get("contrasts") or [],
                               self.v.get("batch"))

    def _read_counts(self) -> None:
        if not self.v.get("counts"):
            return
        parsed, problems = read_counts(self.config, self.dir)
        self.problems += problems
        if parsed is None:
            return
        self.files += parsed.files
        self.gene_symbols, self.obs = parsed.gene_symbols, parsed.obs
        checked, problems = check_counts(parsed.counts, self.counts_file,
                                         round_counts=self.v["round_counts"],
                                         allow_empty_samples=self.v.get("kind") == "screen")
        self.problems += problems
        self.counts = checked

    def _plan_counts(self) -> None:
        """Bulk: with ``counts:`` any sequencing-output column is unused; without it the
        sample sheet must name each sample's BAM, quantifier output or FASTQ files."""
        source = sheet_source(list(self.sheet.columns)) if self.sheet is not None else None
        if self.v.get("counts") or "counts" in self.invalid:
            if source not in (None, "ambiguous"):
                self.warnings.append(Problem(self.sheet_file, f"column "
                                             f"'{SOURCE_COLUMNS[source][0]}'", "not used: the "
                                             "counts come from 'counts:' in study.yaml",
                                             "remove 'counts:' to count from these files"))
            self.problems += [Problem(STUDY_FILE, key, "only used when counts come from the "
                                      "sample sheet's bam, quant or fastq_1 column (this study "
                                      "gives counts:)", "remove it")
                              for key in SOURCE_KEYS if self.v.get(key) is not None]
            return
        if self.sheet is None:
            return
        if source is None:
            self.problems.append(Problem(STUDY_FILE, "counts", "required key is missing",
                                         "name the count matrix, or give each sample's BAM, "
                                         "quantifier output or FASTQ files in a bam, quant or "
                                         "fastq_1 column of the sample sheet"))
            return
        plan, problems = plan_counts(self.dir, self.v, self.sheet, self.sheet_file)
        self.problems += problems
        self.files += source_files(self.dir, self.v, self.sheet)
        if plan is None:
            return
        self.plan = plan
        if plan.source == "quant":
            self.built = assemble_counts(plan)
            self.counts = self.built.counts  # for the sample match; checked when built

    def _read_cells(self) -> None:
        """Single-cell: read the cells, check counts and metadata, derive the biological
        samples (donor x design variables x batch) and their summed counts."""
        if not self.v.get("counts"):
            return
        config = self.config
        cells, files, problems = read_cells(config, self.dir)
        self.files += files
        self.problems += problems
        if cells is None:
            return
        self.problems += cell_count_problems(cells, self.counts_file,
                                             round_counts=self.v["round_counts"])
        dropped = cells.uns.pop("cells_without_metadata", 0)
        if dropped:
            self.warnings.append(Problem(str(config.cells), "", f"{dropped} cell(s) of "
                                         f"{self.counts_file} have no row and are left out",
                                         "add rows for them if they should be analysed"))
        if not config.donor or self.problems:
            return
        self.sheet_file = config.cells or self.counts_file
        variables = design_variables(config.design)[0] if config.design else []
        problems = cell_metadata_problems(cells.obs, config, self.sheet_file, variables)
        problems += marker_problems(cells, config)
        self.problems += problems
        if problems:
            return
        if self.v["round_counts"]:
            cells.X.data = cells.X.data.round()
        keys = config.pseudobulk_keys
        samples = cell_samples(cells.obs, keys)
        if SAMPLE in cells.obs.columns and SAMPLE not in keys and SAMPLE != config.capture:
            cells.obs = cells.obs.rename(columns={SAMPLE: f"input_{SAMPLE}"})
        cells.obs[SAMPLE] = samples
        self.sheet = sample_sheet(cells.obs, samples, keys)
        self.counts = sum_counts(cells, samples)
        self.cells = cells
        if "gene_symbol" in cells.var.columns:
            self.gene_symbols = cells.var["gene_symbol"].astype("string")
        self.problems += donor_problems(self.sheet, config, self.sheet_file)

    def _read_sheet(self) -> None:
        key = self.sheet_key
        rel = self.v.get(key)
        if rel is None:
            if self.obs is not None:
                self.sheet = self.obs.astype("string").astype(object).where(self.obs.notna())
                self.sheet.index.name = "sample"
            # screens: kind_problems reports a missing plate map; an h5ad's obs may serve
            elif (self.v.get("kind") not in ("singlecell", "screen") and key not in self.invalid
                  and not self._counts_are_h5ad()):
                self.problems.append(Problem(STUDY_FILE, "samples", "required key is missing",
                                             "name the sample sheet (CSV/TSV with a 'sample' "
                                             "column)"))
            return
        path, problem = study_path(self.dir, rel, key)
        if problem:
            self.problems.append(problem)
            return
        if not path.is_file():
            self.problems.append(Problem(STUDY_FILE, key, f"file {rel!r} not found",
                                         "check the path; it is relative to the study folder"))
            return
        if path.stat().st_size == 0:
            self.problems.append(Problem(rel, "", "file is empty", "supply the sample sheet"))
            return
        self.files.append(path)
        self.sheet, problems = read_sample_sheet(path, rel)
        self.problems += problems

    def _counts_are_h5ad(self) -> bool:
        """Whether the counts are an h5ad, whose ``obs`` can stand in for the sample sheet."""
        return bool(self.v.get("counts")) and detect_format(self.config, self.config.counts) == "h5ad"

    def _read_gene_sets(self) -> None:
        for i, rel in enumerate(self.v.get("gene_sets") or []):
            path, problem = study_path(self.dir, rel, f"gene_sets[{i}]")
            if problem:
                self.problems.append(problem)
                continue
            if not path.is_file():
                self.problems.append(Problem(STUDY_FILE, f"gene_sets[{i}]", f"{rel!r} not found",
                                             "give a GMT file inside the study folder"))
                continue
            try:
                read_gmt(path)
            except (GmtError, OSError, *TEXT_ERRORS) as exc:
                self.problems.append(Problem(rel, "", f"not a usable GMT file: {exc}",
                                             "one gene set per line: name<TAB>description<TAB>"
                                             "gene<TAB>gene..."))
                continue
            self.files.append(path)

    def _match_samples(self) -> None:
        in_matrix, in_sheet = list(self.counts.columns), list(self.sheet.index)
        only_matrix = [s for s in in_matrix if s not in set(in_sheet)]
        only_sheet = [s for s in in_sheet if s not in set(in_matrix)]
        if only_matrix:
            self.problems.append(Problem(self.sheet_file, "column 'sample'", f"{len(only_matrix)}"
                                         f" sample(s) of {self.counts_file} missing from the "
                                         f"sheet: {', '.join(only_matrix[:5])}", "add a row for "
                                         "each, or drop those columns from the matrix"))
        if only_sheet:
            self.problems.append(Problem(self.sheet_file, "column 'sample'", f"{len(only_sheet)}"
                                         f" sample(s) not in {self.counts_file}: "
                                         f"{', '.join(only_sheet[:5])}", "fix the names to match "
                                         "the matrix columns, or remove those rows"))
        if not (only_matrix or only_sheet):
            self.counts = self.counts[in_sheet]

    def _check_plate_map(self) -> None:
        control = self.v.get("control")
        if control is None:
            return
        library_size = self.counts.sum(axis=0) if self.counts is not None else None
        self.sheet = normalize_columns(self.sheet)
        problems = plate_map_problems(self.sheet, self.sheet_file, control, library_size)
        self.problems += problems
        if problems:
            return
        self.sheet = annotate_plate_map(self.sheet, control)
        tested = self.sheet[self.sheet[ROLE].isin(TESTED_ROLES)]
        if not (tested[ROLE] == "sample").any():
            self.problems.append(Problem(self.sheet_file, "column 'compound'", "no treated "
                                         "well: every tested well is a control", "list the "
                                         "compound wells in the plate map"))
            return
        design = self.v.get("design") or screen_design(self.sheet)
        derived = {"design": design,
                   "contrasts": self.v.get("contrasts") or screen_contrasts(self.sheet, control),
                   # plate is a factor (labels may look numeric) and the batch to correct
                   "batch": self.v.get("batch") or ("plate" if "plate" in design else None)}
        self.screen_design = derived
        single = single_well_conditions(self.sheet)
        if single:
            self.warnings.append(Problem(self.sheet_file, "column 'compound'", f"{len(single)} "
                                         f"compound x dose condition(s) have a single well "
                                         f"({', '.join(single[:4])}{' ...' if len(single) > 4 else ''}); "
                                         "they are tested with the plate's shared dispersion "
                                         "but replicate agreement cannot be checked",
                                         "add replicate wells for reliable calls"))
        self._check_design(tested, design, derived["contrasts"], derived["batch"],
                           min_replicates=1)

    def _check_design(self, sheet: pd.DataFrame, design: str | None, contrasts: list,
                      batch: str | None, min_replicates: int = MIN_REPLICATES,
                      donor: str | None = None) -> None:
        """Design columns, contrasts, replicates and rank; screens pass their tested wells
        and derived design, contrasts and batch; single-cell studies their donor column
        (a factor) and samples (donors are counted separately)."""
        if design is None:
            return
        variables, problems = design_variables(design)
        self.problems += problems
        file = self.sheet_file
        absent = [v for v in variables if v not in sheet.columns]
        for var in absent:
            self.problems.append(Problem(file, f"column '{var}'", f"used in design "
                                         f"{design!r} but missing; columns: "
                                         f"{', '.join(sheet.columns)}", "add the column or fix "
                                         "the design"))
        present = [v for v in variables if v in sheet.columns]
        factors = {c.factor for c in contrasts} | {batch, donor}
        for var in present:
            if sheet[var].isna().any():
                samples = ", ".join(sheet.index[sheet[var].isna()][:5])
                self.problems.append(Problem(file, f"column '{var}'", f"empty for sample(s) "
                                             f"{samples}", "fill in every design value"))
            elif (var not in factors and is_numeric(sheet[var])
                  and not np.isfinite(pd.to_numeric(sheet[var])).all()):
                self.problems.append(Problem(file, f"column '{var}'", "holds an infinite value, "
                                             "so it cannot be a continuous covariate",
                                             "give finite numbers, or text labels if it names "
                                             "groups"))
        if batch and batch not in sheet.columns:
            self.problems.append(Problem(STUDY_FILE, "batch", f"column '{batch}' not in {file}",
                                         "name a sample-sheet column"))
        self._check_contrasts(contrasts, design, variables, present, sheet)
        if self.problems:
            return
        if self.v.get("replicate_of"):
            self.problems += technical_replicate_problems(sheet, self.v["replicate_of"],
                                                          variables, file)
            if self.problems:
                return
            sheet = collapse_sheet(sheet, self.v["replicate_of"])
        self._check_replicates(contrasts, sheet, min_replicates)
        frame = study_design_frame(sheet, design, contrasts, batch, donor)
        self.problems += rank_problems(design, frame)
        self._warn(variables, frame, {c.factor for c in contrasts} | {batch, donor}, batch)

    def _check_contrasts(self, contrasts: list, design: str, variables: list[str],
                         present: list[str], sheet: pd.DataFrame) -> None:
        for i, c in enumerate(contrasts):
            key = f"contrasts[{i}]"
            if c.factor not in variables:
                self.problems.append(Problem(STUDY_FILE, f"{key}.factor", f"'{c.factor}' is not "
                                             f"in the design {design!r}",
                                             "contrast a factor of the design"))
                continue
            if c.factor not in present:
                continue
            levels = sorted(sheet[c.factor].dropna().unique())
            for part in ("level", "reference"):
                value = getattr(c, part)
                if value not in levels:
                    self.problems.append(Problem(STUDY_FILE, f"{key}.{part}", f"level {value!r}"
                                                 f" not found in column '{c.factor}' of "
                                                 f"{self.sheet_file} (levels: "
                                                 f"{', '.join(levels)})", "use one of the levels "
                                                 "present (values are case-sensitive)"))

    def _check_replicates(self, contrasts: list, sheet: pd.DataFrame,
                          min_replicates: int) -> None:
        note = " after summing technical replicates" if self.v.get("replicate_of") else ""
        for i, c in enumerate(contrasts):
            for part in ("level", "reference"):
                value = getattr(c, part)
                n = int((sheet[c.factor] == value).sum())
                if n < min_replicates:
                    self.problems.append(Problem(
                        STUDY_FILE, f"contrasts[{i}].{part}", f"group '{c.factor}={value}' of "
                        f"contrast '{c.name}' has {n} biological replicate(s){note}; at least "
                        f"{min_replicates} are needed to estimate variability",
                        "add biological replicates (technical replicates do not count) or drop "
                        "this contrast"))

    def _warn(self, variables: list[str], frame: pd.DataFrame, categorical: set,
              batch: str | None) -> None:
        sheet = self.sheet
        if batch and batch in sheet.columns and batch not in variables:
            self.warnings.append(Problem(STUDY_FILE, "batch", f"batch column '{batch}' is not in "
                                         "the design, so testing ignores it", f"add '{batch}' to "
                                         "the design (e.g. '~ " + batch + " + condition')"))
        for var in frame.columns:
            if var in categorical or not is_numeric(sheet[var]):
                continue
            values = pd.to_numeric(sheet[var])
            if (values % 1 == 0).all() and values.nunique() <= len(values) / 2:
                self.warnings.append(Problem(self.sheet_file, f"column '{var}'", "is numeric, so "
                                             "the design treats it as a continuous covariate",
                                             "if it labels groups (donor, batch), use text labels "
                                             "such as d1, d2"))
