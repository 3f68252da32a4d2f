"""Study ids: partition keys, folder names and SQL literals."""

from __future__ import annotations

import re

# Lowercase letters, digits, '_' and '-', starting with a letter or digit, at most 63 characters.
STUDY_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


def is_valid_study_id(study_id: str) -> bool:
    """True when ``study_id`` may be used as a partition key and folder name."""
    return re.fullmatch(STUDY_ID_PATTERN, study_id) is not None
