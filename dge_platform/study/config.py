"""The study format: ``study.yaml`` parsed into a typed, validated model.

A study is a folder holding ``study.yaml`` and the files it names. Paths in the YAML are
relative to that folder and may not leave it (:func:`study_path`, docs/security.md).
"""

from __future__ import annotations

import difflib
import keyword
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from formulaic import Formula
from formulaic.errors import FormulaicError
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from dge_platform._core.problems import Problem, short_repr
from dge_platform._core.study_ids import STUDY_ID_PATTERN
from dge_platform.study.kinds import KINDS
from dge_platform.study.paths import STUDY_FILE, study_path

# A study.yaml is a few dozen lines; anything this large is not one.
MAX_STUDY_YAML_BYTES = 1 << 20


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
    """The parsed ``study.yaml`` of one study (docs/study-format/)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=STUDY_ID_PATTERN)]
    kind: str
    organism: Label
    title: str | None = None
    counts: Label | None = None
    counts_format: Literal["auto", "matrix", "featurecounts", "star", "h5ad", "nfcore"] = "auto"
    counts_layer: str | None = None
    strandedness: Literal["unstranded", "forward", "reverse"] | None = None
    round_counts: bool = False
    gtf: str | None = None
    multimapping: Literal["count", "skip"] | None = None
    tx2gene: str | None = None
    counts_from_abundance: Literal["no", "lengthScaledTPM"] | None = None
    quantifier: Literal["salmon", "kallisto", "rsem"] | None = None
    transcriptome: str | None = None
    samples: str | None = None
    plate_map: str | None = None
    control: Label | None = None
    bmr_sd: Annotated[float, Field(gt=0, le=5)] = 1.349
    position_effects: Literal["edge", "row_column"] | None = None
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
    tf_network: str | None = None
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
        from dge_platform.study.design import design_variables

        variables = design_variables(self.design)[0] if self.design else []
        return list(dict.fromkeys([v for v in [self.donor, *variables, self.batch] if v]))

    @property
    def sheet_file(self) -> str | None:
        """The sample sheet (for screens: the plate map) as given in study.yaml."""
        return self.plate_map or self.samples

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        # The kinds are declared once (study/kinds.py); worded as pydantic words a Literal.
        if kind not in KINDS:
            names = [repr(k) for k in KINDS]
            raise PydanticCustomError("literal_error", "Input should be {expected}", {
                "expected": f"{', '.join(names[:-1])} or {names[-1]}"})
        return kind

    @field_validator("design")
    @classmethod
    def _is_formula(cls, design: str | None) -> str | None:
        if design is None:
            return None
        if not design.strip().startswith("~"):
            raise ValueError("must be a formula starting with '~', e.g. '~ batch + condition'")
        why = _design_problem(design.strip())
        if why:
            raise ValueError(why)
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
    "literal_error": "use one of the values listed",
}
DEFAULT_FIX = "correct the value (the docs' 'Study format' pages describe every key)"


_DESIGN_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>\*\*|[-+*:()])|"
                           r"(?P<number>[01](?![0-9.]))|(?P<other>\S))")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _design_problem(design: str) -> str | None:
    """Why ``design`` (starting with ``~``) is not a plain formula over sample-sheet columns,
    or None.

    formulaic evaluates each term as Python, so a term such as ``np.savetxt(...)`` would run
    during validation. Only column names (identifiers), ``+ - * ** : ( )``, ``0`` and ``1``
    are accepted, and every name must be a variable of the formula, not one of formulaic's
    functions or modules (``np``, ``C``, ``center``), whose evaluation fails.
    """
    names = set()
    for match in _DESIGN_TOKEN.finditer(design, 1):
        if match["other"]:
            return (f"character {match['other']!r} is not allowed in a design: use sample-sheet "
                    "column names (ASCII letters, digits, '_') joined by +, *, : or -, and 0 "
                    "or 1")
        if match["name"]:
            if keyword.iskeyword(match["name"]):
                return f"{match['name']!r} is a reserved word; rename that column"
            names.add(match["name"])
    try:
        variables = Formula(design).required_variables
    except (FormulaicError, SyntaxError, ValueError, RecursionError) as exc:
        message = (_ANSI.sub("", str(exc)).strip().splitlines() or [type(exc).__name__])[0]
        return f"cannot parse formula {design!r}: {message}"
    reserved = sorted(names - set(variables))
    if reserved:
        return f"{', '.join(map(repr, reserved))}: reserved name(s) in formulas; rename the column"
    return None


def _loc(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as ``contrasts[0].level``; keys that are not plain names
    (empty, spaces, other types) are quoted so the user can find them."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int) and i > 0:  # a list index
            out += f"[{part}]"
            continue
        name = part if isinstance(part, str) and re.fullmatch(r"[\w+.-]+", part) \
            else short_repr(part)
        out += f".{name}" if out else name
    return out


def _problem_from_error(err: dict[str, Any]) -> Problem:
    field = _loc(err["loc"])
    kind = err["type"]
    fix = _FIXES.get(kind, DEFAULT_FIX)
    message = err["msg"]
    if kind == "missing":
        message = "required key is missing"
    elif kind == "extra_forbidden":
        message = "unknown key"
        close = difflib.get_close_matches(str(err["loc"][-1]), StudyConfig.model_fields, n=1)
        fix = f"did you mean '{close[0]}'?" if close and len(err["loc"]) == 1 else fix
    elif kind == "string_pattern_mismatch" and field == "id":
        message = f"invalid study id {short_repr(err['input'])}"
        fix = ("use lowercase letters, digits, '_' and '-' only, starting with a letter or digit,"
               " at most 63 characters (the id becomes a partition key and a folder name)")
    elif kind == "string_pattern_mismatch":
        message = f"invalid value {short_repr(err['input'])}"
        fix = "use letters, digits, '.', '_', '+' and '-' only"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    return Problem(STUDY_FILE, field, message, fix)


class _StudyLoader(yaml.SafeLoader):
    """YAML's safe subset without aliases (``*name``), which let a few lines expand into
    gigabytes ("billion laughs"), and without repeated keys, which YAML silently resolves to
    the last value."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not supported; "
                                              "write the value out", self.peek_event().start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is repeated",
                                                        key_node.start_mark)
            seen.add(key if isinstance(key, str) else None)
        return super().construct_mapping(node, deep)


def read_study_yaml(study_dir: Path) -> tuple[dict[str, Any] | None, list[Problem]]:
    """Read ``study.yaml`` as a mapping, or report why it cannot be read."""
    path, problem = study_path(study_dir, STUDY_FILE, "")
    if problem:
        return None, [problem]
    if not path.is_file():
        return None, [Problem(STUDY_FILE, "", f"not found in {study_dir}",
                              "create study.yaml (see the docs, 'Study format')")]
    size = path.stat().st_size
    if size > MAX_STUDY_YAML_BYTES:
        return None, [Problem(STUDY_FILE, "", f"is {size:,} bytes; a study.yaml is a few lines "
                              f"(limit {MAX_STUDY_YAML_BYTES:,})", "keep only the study's keys "
                              "in it (see the docs, 'Study format')")]
    try:
        # _StudyLoader is a SafeLoader: no Python objects are constructed
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_StudyLoader)  # noqa: S506
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
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
