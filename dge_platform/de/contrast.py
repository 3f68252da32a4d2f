"""What the DE engine needs to know of a contrast: no more than these four names.

The engine knows no study.yaml. ``study.config.Contrast`` (the pydantic model of a contrast in
study.yaml) satisfies this protocol, and so does any object with these attributes, such as a
contrast built by a screen for each compound x dose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Contrast(Protocol):
    """``level`` against ``reference`` of the design variable ``factor``, reported as ``name``."""

    @property
    def name(self) -> str: ...

    @property
    def factor(self) -> str: ...

    @property
    def level(self) -> str: ...

    @property
    def reference(self) -> str: ...


@dataclass(frozen=True)
class LinearContrast:
    """A weighted sum of the log means of ``factor``'s levels, reported as ``name``.

    E.g. the interaction of a combination, ``AB - A - B + control``: weights
    ``(("AB", 1), ("A", -1), ("B", -1), ("control", 1))``, which is R DESeq2's
    ``results(contrast = <numeric vector>)`` on the one-factor design, and equals the
    ``A:B`` term of ``~ A + B + A:B`` on the four groups.
    """

    name: str
    factor: str
    weights: tuple[tuple[str, float], ...]
