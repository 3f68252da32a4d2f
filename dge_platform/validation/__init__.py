"""Validation: a study folder to a ``ValidatedStudy``, every problem at once.

Layer 6: imports the kind packages' readers and checks and every layer below.

``validator`` runs the study.yaml checks (``study``), then the checks of the study's kind
(``bulk``, ``screen``, ``singlecell``; shared reads in ``checker``, the design checks in
``design``); ``inputs`` lists a study's input files for validation and the registry alike.
"""

from dge_platform.validation.inputs import FILE_KEYS, hash_files, input_files
from dge_platform.validation.study import kind_problems, registered_folder_problems
from dge_platform.validation.validator import (
    CHECKS,
    KindValidation,
    ValidatedStudy,
    ValidationReport,
    load_study,
    study_summary,
    validate_study,
    with_built_counts,
)

__all__ = [
    "CHECKS",
    "FILE_KEYS",
    "KindValidation",
    "ValidatedStudy",
    "ValidationReport",
    "hash_files",
    "input_files",
    "kind_problems",
    "load_study",
    "registered_folder_problems",
    "study_summary",
    "validate_study",
    "with_built_counts",
]
