"""Problems found in a study's inputs, reported all at once and named by file and field."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a study's inputs.

    Parameters
    ----------
    file
        The file the problem is in, relative to the study folder (e.g. ``study.yaml``).
    field
        The key, column or row concerned (e.g. ``contrasts[0].level``, ``column 'dex'``);
        empty when the problem concerns the whole file.
    message
        What is wrong, with the offending values.
    fix
        What the user should do about it.
    """

    file: str
    field: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        text = f"{where}: {self.message}"
        return f"{text} -> {self.fix}" if self.fix else text


class StudyInputError(Exception):
    """Raised when a study's inputs have problems; carries every problem found."""

    def __init__(self, study_dir: str, problems: list[Problem]):
        self.study_dir = study_dir
        self.problems = list(problems)
        super().__init__(format_problems(study_dir, self.problems))


def format_problems(study_dir: str, problems: list[Problem]) -> str:
    """Render problems as one numbered block, one problem per line."""
    head = f"{len(problems)} problem(s) in study {study_dir}:"
    return "\n".join([head, *(f"  {i}. {p}" for i, p in enumerate(problems, 1))])
