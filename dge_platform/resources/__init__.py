"""Reference data shipped in the package: gene set collections and gene annotation.

Provenance and licences are in this folder's README.md. Files are found through
``importlib.resources`` so that an installed wheel reads them as a source checkout does.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def resource_path(*parts: str) -> Path:
    """The path of a shipped file (the package is installed unzipped, as pip installs it)."""
    return Path(str(files(__name__).joinpath(*parts)))
