"""Problems found in a study's inputs, reported all at once and named by file and field."""

from __future__ import annotations

import re
import reprlib
from dataclasses import dataclass
from typing import Any

# C0/C1 control characters and bidirectional overrides.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``, ``\\u202e``): values
    quoted from hostile files must neither break the one-line-per-problem output nor send
    escape sequences to the user's terminal."""
    return _CONTROL.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


_SHORT = reprlib.Repr()
_SHORT.maxstring = 80


def short_repr(value: Any) -> str:
    """``repr`` cut short, for quoting input values that may be huge or deeply nested."""
    return _SHORT.repr(value)


EXAMPLES = 3
"""Offending values quoted in one problem message."""


def examples(items: list[str]) -> str:
    """The first :data:`EXAMPLES` items, each cut short, and how many more there are."""
    shown = ", ".join(short_repr(str(i))[1:-1] for i in items[:EXAMPLES])
    return shown + (f" (+{len(items) - EXAMPLES} more)" if len(items) > EXAMPLES else "")


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
        return printable(f"{text} -> {self.fix}" if self.fix else text)


class StudyInputError(Exception):
    """Raised when a study's inputs have problems; carries every problem found."""

    def __init__(self, study_dir: str, problems: list[Problem]):
        self.study_dir = study_dir
        self.problems = list(problems)
        super().__init__(format_problems(study_dir, self.problems))


def format_problems(study_dir: str, problems: list[Problem]) -> str:
    """Render problems as one numbered block, one problem per line."""
    head = printable(f"{len(problems)} problem(s) in study {study_dir}:")
    return "\n".join([head, *(f"  {i}. {p}" for i, p in enumerate(problems, 1))])
