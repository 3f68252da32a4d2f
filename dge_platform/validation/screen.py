"""Screens: the wells' count matrix and the plate map, from which the design, contrasts and
batch are derived unless study.yaml gives them."""

from __future__ import annotations

import pandas as pd

from dge_platform._core.problems import Problem
from dge_platform.screen.plate_map import (
    ROLE,
    TESTED_ROLES,
    annotate_plate_map,
    normalize_columns,
    plate_map_problems,
    screen_contrasts,
    screen_design,
    single_well_conditions,
    with_position_terms,
)
from dge_platform.study.config import StudyConfig
from dge_platform.validation.checker import Checker
from dge_platform.validation.design import check_design


def summary(config: StudyConfig, samples: pd.DataFrame, cells) -> list[str]:
    """What ``dge validate`` says of a valid screen beyond its size: wells by role, plates."""
    roles = samples["role"].value_counts()
    return [f"wells by role: {', '.join(f'{r} {n}' for r, n in roles.items())}; plates: "
            f"{samples['plate'].nunique()}; control: {config.control} (only sample and "
            "control wells are tested)"]


def check(c: Checker) -> None:
    """Read and check a screen: counts (a well may be empty), plate map, gene sets, design."""
    c.read_counts(allow_empty_samples=True)
    c.read_sheet(required=False)  # kind_problems reports a missing plate map
    c.read_gene_sets()
    c.read_network()
    if c.counts is not None and c.sheet is not None:
        c.match_samples()
    if c.sheet is not None:
        check_plate_map(c)


def check_plate_map(c: Checker) -> None:
    """The plate map's wells and roles, then the design of the tested wells (derived
    unless given; single wells allowed)."""
    control = c.v.get("control")
    if control is None:
        return
    library_size = c.counts.sum(axis=0) if c.counts is not None else None
    c.sheet = normalize_columns(c.sheet)
    problems = plate_map_problems(c.sheet, c.sheet_file, control, library_size)
    c.problems += problems
    if problems:
        return
    position = c.v.get("position_effects")
    c.sheet = annotate_plate_map(c.sheet, control, position)
    tested = c.sheet[c.sheet[ROLE].isin(TESTED_ROLES)]
    if not (tested[ROLE] == "sample").any():
        c.problems.append(Problem(c.sheet_file, "column 'compound'", "no treated "
                                  "well: every tested well is a control", "list the "
                                  "compound wells in the plate map"))
        return
    design = (with_position_terms(c.v["design"], position) if c.v.get("design")
              else screen_design(c.sheet, position))
    derived = {"design": design,
               "contrasts": c.v.get("contrasts") or screen_contrasts(c.sheet, control),
               # plate is a factor (labels may look numeric) and the batch to correct
               "batch": c.v.get("batch") or ("plate" if "plate" in design else None)}
    c.derived = derived
    single = single_well_conditions(c.sheet)
    if single:
        c.warnings.append(Problem(c.sheet_file, "column 'compound'", f"{len(single)} "
                                  f"compound x dose condition(s) have a single well "
                                  f"({', '.join(single[:4])}{' ...' if len(single) > 4 else ''}); "
                                  "they are tested with the plate's shared dispersion "
                                  "but replicate agreement cannot be checked",
                                  "add replicate wells for reliable calls"))
    check_design(c, tested, design, derived["contrasts"], derived["batch"], min_replicates=1)
