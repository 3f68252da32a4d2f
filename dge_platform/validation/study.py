"""The study.yaml-level checks: the registered folder and id, the keys the study's kind
requires or refuses (from ``study.kinds.KINDS``), and the keys that validated."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import TypeAdapter

from dge_platform._core.problems import Problem, short_repr
from dge_platform._core.study_ids import is_valid_study_id
from dge_platform.study.config import StudyConfig
from dge_platform.study.kinds import KINDS
from dge_platform.study.paths import STUDY_FILE


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


def id_problems(raw: dict[str, Any], expected_id: str | None) -> list[Problem]:
    """A registered study's id must be its folder's name (``expected_id``)."""
    if expected_id is None or raw.get("id") == expected_id:
        return []
    return [Problem(STUDY_FILE, "id", f"id {short_repr(raw.get('id'))} differs from "
                    f"the study's folder name {expected_id!r}", "register the "
                    "study with 'dge add', which files it under its id")]


def kind_problems(raw: dict[str, Any]) -> list[Problem]:
    """Keys required or refused by the study's kind (``study.kinds.KINDS``): each key the
    kind requires that is missing, each key another kind owns. A kind owning ``plate_map``
    (a screen) takes a plate map or a sample sheet, not both, and derives its contrasts; a
    kind requiring ``contrasts`` must list one. An unknown kind (reported by the config
    check) requires nothing and refuses every kind's own keys."""
    kind = raw.get("kind")
    spec = KINDS.get(kind) if isinstance(kind, str) else None
    required = dict(spec.required) if spec else {}
    problems = [Problem(STUDY_FILE, key, "required key is missing", fix)
                for key, fix in required.items() if raw.get(key) is None]
    problems += [Problem(STUDY_FILE, key, f"only used by kind: {other.name}{other.own_keys_note} "
                         f"(this study is {short_repr(kind)})", "remove it")
                 for other in KINDS.values() if other is not spec
                 for key in other.own_keys if raw.get(key) is not None]
    if spec is not None and "plate_map" in spec.own_keys:
        if raw.get("plate_map") is None and raw.get("samples") is None:
            problems.append(Problem(STUDY_FILE, "plate_map", "required key is missing",
                                    "name the plate map (CSV/TSV with sample, plate, well, "
                                    "compound, dose)"))
        elif raw.get("plate_map") is not None and raw.get("samples") is not None:
            problems.append(Problem(STUDY_FILE, "samples", "a screen takes plate_map or "
                                    "samples, not both", "keep plate_map"))
    if raw.get("contrasts") == [] and (spec is None or "contrasts" in required):
        problems.append(Problem(STUDY_FILE, "contrasts", "no contrast listed",
                                "list at least one comparison"))
    return problems


def problem_keys(problems: list[Problem]) -> set[str]:
    """The top-level study.yaml keys that problems concern."""
    return {p.field.split(".")[0].split("[")[0] for p in problems if p.file == STUDY_FILE}


def valid_fields(raw: dict[str, Any], problems: list[Problem]) -> dict[str, Any]:
    """The keys of a study.yaml that validated, so later checks can still run on them."""
    bad = problem_keys(problems)
    values: dict[str, Any] = {}
    for name, info in StudyConfig.model_fields.items():
        if name in raw and name not in bad:
            kind = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
            adapter = TypeAdapter(kind)
            values[name] = adapter.validate_python(raw[name])
        elif not info.is_required():
            values[name] = info.default
    return values
