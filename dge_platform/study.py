"""The study format: ``study.yaml`` parsed into a typed, validated model.

A study is a folder holding ``study.yaml`` and the files it names. Paths in the YAML are
relative to that folder and may not leave it.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from dge_platform.problems import Problem

STUDY_FILE = "study.yaml"
STUDY_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


def _as_text(value: Any) -> Any:
    """YAML reads ``level: 1`` as an int and ``level: yes`` as a bool; levels are labels."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(value)
    return value


Label = Annotated[str, BeforeValidator(_as_text), Field(min_length=1)]


class Contrast(BaseModel):
    """One comparison: ``level`` versus ``reference`` of the design factor ``factor``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$", max_length=120)]
    factor: Label
    level: Label
    reference: Label

    @field_validator("reference")
    @classmethod
    def _differs_from_level(cls, reference: str, info: Any) -> str:
        if reference == info.data.get("level"):
            raise ValueError("reference must differ from level")
        return reference


class CellQcSettings(BaseModel):
    """Single-cell QC thresholds (``qc:`` in study.yaml). Cells are judged per capture by
    median absolute deviations (MADs); absolute limits apply in addition when given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nmads: Annotated[float, Field(gt=0)] = 5.0
    mito_nmads: Annotated[float, Field(gt=0)] = 3.0
    min_counts: Annotated[int, Field(ge=0)] | None = None
    max_counts: Annotated[int, Field(gt=0)] | None = None
    min_genes: Annotated[int, Field(ge=0)] | None = None
    max_genes: Annotated[int, Field(gt=0)] | None = None
    max_pct_mito: Annotated[float, Field(gt=0, le=100)] | None = None
    doublets: bool = True
    doublet_threshold: Annotated[float, Field(gt=0, lt=1)] | None = None


class StudyConfig(BaseModel):
    """The parsed ``study.yaml`` of one study (see README, "Study format")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=STUDY_ID_PATTERN)]
    kind: Literal["bulk", "singlecell", "screen"]
    organism: Label
    title: str | None = None
    counts: Label
    counts_format: Literal["auto", "matrix", "featurecounts", "star", "h5ad"] = "auto"
    counts_layer: str | None = None
    strandedness: Literal["unstranded", "forward", "reverse"] | None = None
    round_counts: bool = False
    samples: str | None = None
    plate_map: str | None = None
    control: Label | None = None
    design: Label | None = None
    contrasts: list[Contrast] = []
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    lfc_threshold: Annotated[float, Field(ge=0)] = 0.0
    batch: str | None = None
    replicate_of: str | None = None
    cells: str | None = None
    donor: str | None = None
    cell_type: str | None = None
    capture: str | None = None
    markers: dict[Label, Annotated[list[Label], Field(min_length=1)]] = {}
    qc: CellQcSettings = CellQcSettings()
    min_cells_per_pseudobulk: Annotated[int, Field(ge=1)] = 10
    clustering_resolution: Annotated[float, Field(gt=0)] = 1.0
    gene_sets: list[str] = []
    gsea_permutations: Annotated[int, Field(ge=100, le=100_000)] = 1000
    enrichment_min_lfc: Annotated[float, Field(ge=0)] | None = None

    @property
    def deg_min_lfc(self) -> float:
        """|shrunken log2FC| a DEG must exceed to enter ORA (default: ``lfc_threshold``)."""
        return self.lfc_threshold if self.enrichment_min_lfc is None else self.enrichment_min_lfc

    @property
    def pseudobulk_keys(self) -> list[str]:
        """Single-cell: the cell metadata columns defining a biological sample (donor, the
        design's variables, the batch); pseudobulks sum cells per sample and cell type."""
        from dge_platform.design import design_variables

        variables = design_variables(self.design)[0] if self.design else []
        return list(dict.fromkeys([v for v in [self.donor, *variables, self.batch] if v]))

    @property
    def sheet_file(self) -> str | None:
        """The sample sheet (for screens: the plate map) as given in study.yaml."""
        return self.plate_map or self.samples

    @field_validator("design")
    @classmethod
    def _is_formula(cls, design: str | None) -> str | None:
        if design is None:
            return None
        if not design.strip().startswith("~"):
            raise ValueError("must be a formula starting with '~', e.g. '~ batch + condition'")
        return design.strip()

    @field_validator("contrasts")
    @classmethod
    def _unique_names(cls, contrasts: list[Contrast]) -> list[Contrast]:
        names = [c.name for c in contrasts]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"contrast names must be unique; repeated: {', '.join(dups)}")
        return contrasts


_FIXES = {
    "missing": "add this key",
    "extra_forbidden": "remove it or correct its spelling",
    "string_pattern_mismatch": "",
    "literal_error": "",
}


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problem_from_error(err: dict[str, Any]) -> Problem:
    field = _loc(err["loc"])
    kind = err["type"]
    fix = _FIXES.get(kind, "")
    message = err["msg"]
    if kind == "missing":
        message = "required key is missing"
    elif kind == "extra_forbidden":
        message = "unknown key"
        close = difflib.get_close_matches(str(err["loc"][-1]), StudyConfig.model_fields, n=1)
        fix = f"did you mean '{close[0]}'?" if close and len(err["loc"]) == 1 else fix
    elif kind == "string_pattern_mismatch" and field == "id":
        message = f"invalid study id {err['input']!r}"
        fix = ("use lowercase letters, digits, '_' and '-' only, starting with a letter or digit"
               " (the id becomes a partition key and a folder name)")
    elif kind == "string_pattern_mismatch":
        message = f"invalid value {err['input']!r}"
        fix = "use letters, digits, '.', '_', '+' and '-' only"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    return Problem(STUDY_FILE, field, message, fix)


def read_study_yaml(study_dir: Path) -> tuple[dict[str, Any] | None, list[Problem]]:
    """Read ``study.yaml`` as a mapping, or report why it cannot be read."""
    path = study_dir / STUDY_FILE
    if not path.is_file():
        return None, [Problem(STUDY_FILE, "", f"not found in {study_dir}",
                              "create study.yaml (see README, 'Study format')")]
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        return None, [Problem(STUDY_FILE, where, f"not valid YAML: {exc}".split("\n")[0],
                              "fix the YAML syntax (indentation, colons, quotes)")]
    if not isinstance(raw, dict):
        return None, [Problem(STUDY_FILE, "", "must be a mapping of keys to values",
                              "write 'key: value' lines (id, kind, organism, counts, ...)")]
    return raw, []


def parse_study_config(raw: dict[str, Any]) -> tuple[StudyConfig | None, list[Problem]]:
    """Validate a raw ``study.yaml`` mapping; return the model or every problem found."""
    try:
        return StudyConfig.model_validate(raw), []
    except ValidationError as exc:
        return None, [_problem_from_error(e) for e in exc.errors()]


def resolve_inside(study_dir: Path, relative: str) -> Path | None:
    """Resolve ``relative`` against the study folder; None if it would leave the folder.

    Symlinks are resolved first, so a link pointing outside the folder is refused too.
    """
    if Path(relative).is_absolute():
        return None
    root = study_dir.resolve()
    target = (root / relative).resolve()
    return target if target == root or root in target.parents else None


def is_valid_study_id(study_id: str) -> bool:
    """True when ``study_id`` may be used as a partition key and folder name."""
    return re.fullmatch(STUDY_ID_PATTERN, study_id) is not None
