"""What a pipeline step returns: tables, files, metadata and checks as plain values.

A step is one study's computation of one asset, a plain function testable on frames. It never
touches Dagster; ``defs/`` turns a ``StepResult`` into outputs, asset checks, materialization
metadata and warehouse files (``defs/batch.py``), and a ``StepFailure`` into a failed step.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from dge_platform.storage.warehouse import StoragePath


@dataclass(frozen=True)
class Markdown:
    """Metadata shown as Markdown (tables, embedded plots)."""

    text: str


@dataclass(frozen=True)
class Check:
    """One asset check's outcome: ``output`` names the checked output of the step."""

    name: str
    output: str
    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)


class StepFailure(Exception):
    """A study that cannot be processed, with the text a user reads (and what to do)."""

    def __init__(self, description: str, metadata: dict[str, Any] | None = None):
        super().__init__(description)
        self.description = description
        self.metadata = metadata or {}


MetadataValue = str | int | float | bool | Markdown | os.PathLike | StoragePath | dict | list | None
"""Plain metadata: text and numbers, ``Markdown``, a path (local or S3, shown as a path), and
dicts or lists (shown as JSON)."""


@dataclass
class StepResult:
    """One study's result of a step.

    Attributes
    ----------
    outputs
        Output name -> table (a frame) or cell-level data (AnnData). An output a step leaves
        out is written as an empty table with the table's columns.
    metadata
        Output name -> its metadata. For a step without outputs (its asset writes no table),
        ``materialized`` holds the asset's metadata instead.
    checks
        Asset check outcomes.
    files
        Warehouse folder -> ``{file name: bytes}``: the study's complete set of files there
        (older files in the folder are removed).
    messages
        ``(level, text)`` for the run's log: ``info`` or ``warning``.
    """

    outputs: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, dict[str, MetadataValue]] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)
    messages: list[tuple[str, str]] = field(default_factory=list)
    materialized: dict[str, MetadataValue] | None = None

    def add(self, name: str, value: Any, **metadata: MetadataValue) -> StepResult:
        """Add an output and its metadata."""
        self.outputs[name] = value
        self.metadata[name] = metadata
        return self

    def info(self, text: str) -> None:
        self.messages.append(("info", text))

    def warning(self, text: str) -> None:
        self.messages.append(("warning", text))


def png_files(figures: dict[str, bytes]) -> dict[str, bytes]:
    """Figures by name as ``<name>.png`` files."""
    return {f"{name}.png": png for name, png in figures.items()}


def file_stem(name: str) -> str:
    """A plot file stem from a label (contrast, cell type, compound): spaces, '+', '/' and
    other characters outside letters, digits, '_', '.' and '-' replaced by '_'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
