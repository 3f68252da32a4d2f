"""One validation run: the study's values, what has been read so far, every problem and
warning found, and the reads the kinds share (count matrix, sample sheet, gene sets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from dge_platform._core.problems import Problem
from dge_platform.counting.libraries import BuiltCounts, CountPlan
from dge_platform.enrichment.gene_sets import GmtError, read_gmt
from dge_platform.readers.count_checks import check_counts
from dge_platform.readers.counts import TEXT_ERRORS, detect_format, read_counts
from dge_platform.readers.networks import read_network
from dge_platform.readers.sample_sheet import read_sample_sheet
from dge_platform.study.config import StudyConfig
from dge_platform.study.paths import STUDY_FILE, study_path


class Checker:
    """Runs each check whose inputs are available, accumulating problems and warnings; the
    kind modules (``bulk``, ``screen``, ``singlecell``) run their checks on it."""

    def __init__(self, study_dir: Path, values: dict[str, Any], problems: list[Problem],
                 invalid: set[str]):
        self.dir = study_dir
        self.v = values
        self.invalid = invalid  # keys already reported, so not reported again as missing
        # The keys that validated, for readers (unvalidated keys are absent or defaults).
        self.config = StudyConfig.model_construct(**values)
        self.problems = list(problems)
        self.warnings: list[Problem] = []
        self.counts: pd.DataFrame | None = None
        self.counts_file = str(values.get("counts") or "")
        self.gene_symbols: pd.Series | None = None
        self.obs: pd.DataFrame | None = None
        self.sheet: pd.DataFrame | None = None
        self.sheet_key = "plate_map" if values.get("plate_map") else "samples"
        self.sheet_file = str(values.get(self.sheet_key) or self.counts_file)
        self.derived: dict[str, Any] | None = None  # config values the kind derives
        self.cells = None
        self.plan: CountPlan | None = None
        self.built: BuiltCounts | None = None

    def read_counts(self, *, allow_empty_samples: bool = False) -> None:
        if not self.v.get("counts"):
            return
        parsed, problems = read_counts(self.config, self.dir)
        self.problems += problems
        if parsed is None:
            return
        self.gene_symbols, self.obs = parsed.gene_symbols, parsed.obs
        checked, problems = check_counts(parsed.counts, self.counts_file,
                                         round_counts=self.v["round_counts"],
                                         allow_empty_samples=allow_empty_samples)
        self.problems += problems
        self.counts = checked

    def read_sheet(self, *, required: bool) -> None:
        """The sample sheet (or plate map); a missing one is reported when ``required`` (a
        screen's missing plate map is reported by ``kind_problems``) unless an h5ad's
        ``obs`` serves."""
        key = self.sheet_key
        rel = self.v.get(key)
        if rel is None:
            if self.obs is not None:
                self.sheet = self.obs.astype("string").astype(object).where(self.obs.notna())
                self.sheet.index.name = "sample"
            elif required and key not in self.invalid and not self.counts_are_h5ad():
                self.problems.append(Problem(STUDY_FILE, "samples", "required key is missing",
                                             "name the sample sheet (CSV/TSV with a 'sample' "
                                             "column)"))
            return
        path = self.study_file(rel, key, f"file {rel!r} not found",
                               "check the path; it is relative to the study folder")
        if path is None:
            return
        if path.stat().st_size == 0:
            self.problems.append(Problem(rel, "", "file is empty", "supply the sample sheet"))
            return
        self.sheet, problems = read_sample_sheet(path, rel)
        self.problems += problems

    def counts_are_h5ad(self) -> bool:
        """Whether the counts are an h5ad, whose ``obs`` can stand in for the sample sheet."""
        return (bool(self.v.get("counts"))
                and detect_format(self.config, self.config.counts) == "h5ad")

    def study_file(self, rel: str, key: str, missing: str, fix: str) -> Path | None:
        """The file study.yaml names under ``key``, or None with the problem recorded: a path
        the study rules refuse, or no such file (``missing``, ``fix``)."""
        path, problem = study_path(self.dir, rel, key)
        if problem:
            self.problems.append(problem)
            return None
        if not path.is_file():
            self.problems.append(Problem(STUDY_FILE, key, missing, fix))
            return None
        return path

    def read_gene_sets(self) -> None:
        for i, rel in enumerate(self.v.get("gene_sets") or []):
            path = self.study_file(rel, f"gene_sets[{i}]", f"{rel!r} not found",
                                   "give a GMT file inside the study folder")
            if path is None:
                continue
            try:
                read_gmt(path)
            except (GmtError, OSError, *TEXT_ERRORS) as exc:
                self.problems.append(Problem(rel, "", f"not a usable GMT file: {exc}",
                                             "one gene set per line: name<TAB>description<TAB>"
                                             "gene<TAB>gene..."))

    def read_network(self) -> None:
        """The study's own TF network (``tf_network:``), if it names one."""
        rel = self.v.get("tf_network")
        if not rel:
            return
        path = self.study_file(rel, "tf_network", f"{rel!r} not found",
                               "give the network file's path inside the study folder "
                               "(TSV/CSV: source, target, weight)")
        if path is not None:
            self.problems += read_network(path, rel)[1]

    def match_samples(self) -> None:
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
