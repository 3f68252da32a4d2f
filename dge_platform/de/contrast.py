"""What the DE engine needs to know of a contrast: no more than these four names.

The engine knows no study.yaml. ``study.config.Contrast`` (the pydantic model of a contrast in
study.yaml) satisfies this protocol, and so does any object with these attributes, such as a
contrast built by a screen for each compound x dose.
"""

from __future__ import annotations

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
