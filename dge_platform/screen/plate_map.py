"""Screen plate maps: well roles, conditions (compound x dose) and the default contrasts.

A screen's sample sheet is its plate map, one row per well: ``sample, plate, well, compound,
dose`` (+ optional ``dose_unit``, ``replicate``, ``well_type``, ``viability``: the fraction
of live cells relative to the vehicle, in [0, 1] or in percent, read by well QC's
cytotoxicity rule). Every well gets a role:

* ``control``: the vehicle named by ``control:`` in study.yaml (e.g. DMSO); the reference of
  every test;
* ``sample``: a compound at a dose; tested against the controls;
* ``positive_control``, ``empty``, ``other``: kept in well QC, never tested.

Combination wells name a second agent in ``compound_2`` and ``dose_2`` (in ``dose_unit``,
like ``dose``); their condition is ``A_1uM+B_2uM``, the two agents in alphabetical order
(a plate may list A + B and B + A: they are one treatment), and its compound ``A + B``.
Every combination needs both monotherapies at its doses on the plate: the interaction
(combination - A - B + control) is tested against them. An optional ``moa`` (or
``target``) column gives each compound's mechanism-of-action class, the answer key of the
screen's MoA retrieval.

The rule: a ``well_type`` column, when present, decides the role (values such as ``SA``,
``treated``, ``Sample`` -> sample; ``RC``, ``vehicle``, ``Vehicle_control``, ``negative`` ->
control; ``PC``, ``positive``, ``Positive_control`` -> positive_control; ``EMPTY``,
``blank`` -> empty; anything else -> other). A vehicle-type well is a control only if its
compound is the study's control (a Media well next to DMSO controls is ``other``). Without
``well_type``, wells of the control compound are controls and all others are samples.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from dge_platform._core.problems import Problem
from dge_platform.screen.plate_position import position_covariates
from dge_platform.screen.well_qc import VIABILITY
from dge_platform.study.config import Contrast
from dge_platform.study.design import design_variables
from dge_platform.study.paths import STUDY_FILE

REQUIRED_COLUMNS = ("plate", "well", "compound", "dose")
COMPOUND_2, DOSE_2 = "compound_2", "dose_2"
COMPOUND_1 = "compound_1"
"""Set on annotated combination wells: the first agent (``compound`` becomes ``A + B``)."""
MOA_COLUMNS = ("moa", "target")
"""Columns read as the compounds' mechanism-of-action class, the first present."""
KNOWN_COLUMNS = (*REQUIRED_COLUMNS, "dose_unit", "replicate", "well_type", VIABILITY,
                 COMPOUND_2, DOSE_2, *MOA_COLUMNS)
COMBINATION_SEP = " + "
MIN_CONTROLS_PER_PLATE = 4
ROLE = "role"
CONDITION = "condition"
TESTED_ROLES = ("sample", "control")

_ROLE_WORDS = {
    "sample": {"sample", "sa", "treated", "treatment", "compound", "test"},
    "control": {"control", "rc", "vehicle", "vehicle_control", "negative", "negative_control",
                "neg", "nc", "dmso", "reference", "reference_control"},
    "positive_control": {"positive_control", "positive", "pc", "pos", "poscontrol"},
    "empty": {"empty", "blank", "none"},
}


def well_role(well_type: str | None, compound: str | None, control: str) -> str:
    """The role of one well (see the module docstring for the rule)."""
    is_control_compound = compound is not None and compound.casefold() == control.casefold()
    if well_type is None or pd.isna(well_type):
        return "control" if is_control_compound else "sample"
    word = re.sub(r"[\s\-]+", "_", str(well_type).strip().casefold())
    for role, words in _ROLE_WORDS.items():
        if word in words:
            if role == "control" and not is_control_compound:
                return "other"
            return role
    return "other"


# Longest compound (or unit) part of a condition label; contrast names allow 120 characters.
MAX_LABEL_PART = 60


def _label_part(text: str) -> str:
    """Text reduced to the characters of contrast names, starting with a letter or digit
    (micro signs become ``u``) and short enough for a contrast name."""
    text = re.sub(r"[^A-Za-z0-9_.+-]+", "-", re.sub("[\u00b5\u03bc]", "u", text))
    return text.lstrip("_.+-")[:MAX_LABEL_PART].rstrip("-")


def condition_label(compound: str, dose: float, unit: str | None) -> str:
    """A contrast-safe label of one compound x dose, e.g. ``ETOPOSIDE_10uM``."""
    return f"{_label_part(compound) or 'compound'}_{dose:g}{_label_part(unit or '')}"


def combination_label(compound: str, dose: float, compound_2: str, dose_2: float,
                      unit: str | None) -> str:
    """The condition label of a combination well, e.g. ``A_1uM+B_2uM`` (agents in the order
    given; :func:`annotate_plate_map` orders them alphabetically first)."""
    return f"{condition_label(compound, dose, unit)}+{condition_label(compound_2, dose_2, unit)}"


def has_second_agent(sheet: pd.DataFrame) -> pd.Series:
    """Whether each well names a second agent (a non-empty ``compound_2``)."""
    if COMPOUND_2 not in sheet.columns:
        return pd.Series(False, sheet.index)
    names = sheet[COMPOUND_2]
    return names.notna() & (names.astype(str).str.strip() != "")


def moa_column(sheet: pd.DataFrame) -> str | None:
    """The plate map's MoA class column (``moa``, else ``target``), or None."""
    return next((c for c in MOA_COLUMNS if c in sheet.columns), None)


def condition_classes(sheet: pd.DataFrame) -> pd.Series:
    """The MoA class of each single-agent condition of an annotated plate map (its
    compound's ``moa`` or ``target``), indexed by condition; empty cells and combinations
    (no class of their own) are left out, and so is every condition without the column."""
    column = moa_column(sheet)
    if column is None:
        return pd.Series(dtype=object, name="moa")
    single = sheet[(sheet[ROLE] == "sample") & ~has_second_agent(sheet)]
    classes = single.groupby(CONDITION)[column].first()
    classes = classes[classes.notna() & (classes.astype(str).str.strip() != "")]
    return classes.astype(object).rename("moa")


def normalize_columns(sheet: pd.DataFrame) -> pd.DataFrame:
    """Plate-map columns named in another case (``Plate``, ``DOSE``) under their standard
    names, unless the standard name is already taken or two columns claim it."""
    folded = pd.Series([c.casefold() for c in sheet.columns])
    renames = {c: c.casefold() for c in sheet.columns
               if c.casefold() in KNOWN_COLUMNS and c != c.casefold()
               and c.casefold() not in sheet.columns and (folded == c.casefold()).sum() == 1}
    return sheet.rename(columns=renames)


def _roles(sheet: pd.DataFrame, control: str) -> pd.Series:
    types = sheet["well_type"] if "well_type" in sheet.columns else pd.Series(None, sheet.index)
    return pd.Series([well_role(t, c, control) for t, c in zip(types, sheet["compound"])],
                     index=sheet.index)


POSITION_TERMS = {"edge": ("position_edge",),
                  "row_column": ("position_row", "position_column")}
"""The design terms ``position_effects:`` adds, columns that ``annotate_plate_map`` derives
from the well names (edge: outer ring or inner; row letter; column ``c01``...)."""


def annotate_plate_map(sheet: pd.DataFrame, control: str,
                       position_effects: str | None = None) -> pd.DataFrame:
    """Add ``role`` and ``condition`` (compound x dose label; the control's name for
    control wells; empty for wells that are not tested) to a validated plate map; wells
    other than treated ones may leave ``dose`` empty (it becomes 0). With
    ``position_effects`` (``edge`` or ``row_column``), also the columns of
    :data:`POSITION_TERMS`, from the well names."""
    sheet = sheet.copy()
    if position_effects:
        positions = position_covariates(sheet)
        for term in POSITION_TERMS[position_effects]:
            sheet[term] = positions[term.removeprefix("position_")]
    sheet[ROLE] = _roles(sheet, control)
    sheet["dose"] = sheet["dose"].where(sheet["dose"].notna() | (sheet[ROLE] == "sample"), "0")
    # empty unit cells are missing values (pd.NA), which have no truth value
    units = (sheet["dose_unit"].fillna("") if "dose_unit" in sheet.columns
             else pd.Series("", sheet.index))
    doses = pd.to_numeric(sheet["dose"])
    labels = [condition_label(c, d, u) if r == "sample" else (control if r == "control" else None)
              for c, d, u, r in zip(sheet["compound"], doses, units, sheet[ROLE])]
    sheet[CONDITION] = labels
    combined = has_second_agent(sheet) & (sheet[ROLE] == "sample")
    if combined.any():
        sheet = _annotate_combinations(sheet, combined, units)
    return sheet


def _annotate_combinations(sheet: pd.DataFrame, combined: pd.Series,
                           units: pd.Series) -> pd.DataFrame:
    """Combination wells: agents in alphabetical order (``compound_1``/``dose``,
    ``compound_2``/``dose_2``), compound ``A + B`` and condition ``A_a+B_b``."""
    sheet[COMPOUND_1] = None
    for well in sheet.index[combined]:
        first = (str(sheet.at[well, "compound"]).strip(), float(sheet.at[well, "dose"]))
        second = (str(sheet.at[well, COMPOUND_2]).strip(), float(sheet.at[well, DOSE_2]))
        (a, dose_a), (b, dose_b) = sorted([first, second], key=lambda x: (x[0].casefold(), x))
        sheet.loc[well, [COMPOUND_1, "compound", "dose", COMPOUND_2, DOSE_2, CONDITION]] = [
            a, f"{a}{COMBINATION_SEP}{b}", f"{dose_a:.15g}", b, f"{dose_b:.15g}",
            combination_label(a, dose_a, b, dose_b, units[well])]
    return sheet


def plate_map_problems(sheet: pd.DataFrame, file: str, control: str,
                       library_size: pd.Series | None = None) -> list[Problem]:
    """Problems of a screen's plate map: required columns, numeric non-negative doses
    (positive for treated wells), a compound for every well, a valid ``viability`` column
    when there is one, the control present, and at least four usable control wells on every
    plate (wells with counts)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in sheet.columns]
    if missing:
        return [Problem(file, f"column '{c}'", "missing from the plate map; found columns: "
                        f"{', '.join(sheet.columns)}", "add it (plate maps need sample, plate, "
                        "well, compound, dose)") for c in missing]
    problems = []
    for column in ("plate", "well", "compound"):
        empty = sheet.index[sheet[column].isna()].tolist()
        if empty:
            problems.append(Problem(file, f"column '{column}'", f"empty for well(s) "
                                    f"{', '.join(empty[:5])}", f"fill in '{column}' for every "
                                    "well"))
    if problems:
        return problems
    undosed = sheet.index[sheet["dose"].isna() & (_roles(sheet, control) == "sample")].tolist()
    if undosed:
        problems.append(Problem(file, "column 'dose'", f"empty for treated well(s) "
                                f"{', '.join(undosed[:5])}", "give every compound well its "
                                "dose (controls may stay empty or 0)"))
    doses = pd.to_numeric(sheet["dose"], errors="coerce")
    bad = sheet.index[sheet["dose"].notna() & doses.isna()].tolist()
    if bad:
        values = sheet.loc[bad[:3], "dose"].tolist()
        problems.append(Problem(file, "column 'dose'", f"not numeric for {len(bad)} well(s), "
                                f"e.g. {', '.join(f'{s}={v!r}' for s, v in zip(bad, values))}",
                                "give doses as plain numbers and put the unit in 'dose_unit'"))
    negative = sheet.index[doses < 0].tolist()
    if negative:
        problems.append(Problem(file, "column 'dose'", f"negative for well(s) "
                                f"{', '.join(negative[:5])}", "doses must be >= 0"))
    infinite = sheet.index[doses == float("inf")].tolist()
    if infinite:
        problems.append(Problem(file, "column 'dose'", f"infinite for well(s) "
                                f"{', '.join(infinite[:5])}", "give every dose as a finite "
                                "number"))
    zero = sheet.index[(doses == 0) & (_roles(sheet, control) == "sample")].tolist()
    if zero:
        problems.append(Problem(file, "column 'dose'", f"0 for treated well(s) "
                                f"{', '.join(zero[:5])}{_more(zero)}: doses of treated wells "
                                "must be > 0", "give the compound's dose; a well without "
                                f"compound is a vehicle control: name its compound {control!r}"
                                " (or mark its well_type empty or other)"))
    if VIABILITY in sheet.columns:
        problems += viability_problems(sheet[VIABILITY], file)
    if COMPOUND_2 in sheet.columns or DOSE_2 in sheet.columns:
        problems += second_agent_problems(sheet, file, control)
    if moa_column(sheet):
        problems += moa_problems(sheet, file, control)
    if problems:
        return problems
    annotated = annotate_plate_map(sheet, control)
    problems += missing_monotherapy_problems(annotated, file)
    if not (annotated[ROLE] == "control").any():
        return [_no_control_problem(annotated, file, control)]
    problems += _label_clashes(annotated, file, control)
    usable = annotated[ROLE] == "control"
    if library_size is not None:
        usable &= library_size.reindex(annotated.index).fillna(0).gt(0)
    for plate, n in plates_short_of_controls(usable, annotated["plate"]).items():
        problems.append(Problem(file, "column 'plate'", f"plate {plate!r} has {n} usable "
                                f"control well(s) ({control}); at least "
                                f"{MIN_CONTROLS_PER_PLATE} are needed to estimate the "
                                "plate's baseline and its null distribution",
                                "add control wells to that plate, or leave the plate out "
                                "of the screen"))
    duplicated = annotated[["plate", "well"]].duplicated()
    if duplicated.any():
        first = annotated.loc[duplicated, ["plate", "well"]].iloc[0]
        problems.append(Problem(file, "column 'well'", f"well {first['well']} of plate "
                                f"{first['plate']} is listed more than once", "list each well "
                                "of a plate once"))
    return problems


def _more(items: list) -> str:
    return f" (+{len(items) - 5} more)" if len(items) > 5 else ""


def viability_problems(values: pd.Series, file: str) -> list[Problem]:
    """Problems of a plate map's ``viability`` column (empty cells allowed): values that are
    not numbers, negative, or out of range. The scale is the whole column's: percent when
    its maximum is above 1 (values must then be <= 100), else a fraction (<= 1 by
    construction)."""
    field = f"column '{VIABILITY}'"
    given = values.notna() & (values.astype(str).str.strip() != "")
    numbers = pd.to_numeric(values.where(given), errors="coerce")
    problems = []
    is_text = (given & numbers.isna()).to_numpy()
    text = values.index[is_text].tolist()
    if text:
        shown = ", ".join(f"{s}={v!r}" for s, v in zip(text[:5], values[is_text][:5]))
        problems.append(Problem(file, field, f"not numeric for {len(text)} well(s): {shown}"
                                f"{_more(text)}", "give viability as a number, a fraction "
                                "of the vehicle in [0, 1] or a percent in [0, 100]; leave "
                                "unmeasured wells empty"))
    numeric = numbers[numbers.notna()]
    negative = numeric.index[numeric < 0].tolist()
    if negative:
        problems.append(Problem(file, field, f"negative for well(s) {', '.join(negative[:5])}"
                                f"{_more(negative)}", "viability is a fraction in [0, 1] or "
                                "a percent in [0, 100]; fix those values"))
    percent = bool(numeric[np.isfinite(numeric)].max() > 1) if len(numeric) else False
    # +inf is out of range on either scale
    bad = numeric.index[(numeric > 100) if percent else np.isposinf(numeric)].tolist()
    if bad:
        what = ("above 100 for well(s) {} (the column is read as percent because its maximum "
                "is above 1)" if percent else "infinite for well(s) {}")
        problems.append(Problem(file, field, what.format(f"{', '.join(bad[:5])}{_more(bad)}"),
                                "give viability as a percent in [0, 100] (or every value as "
                                "a fraction in [0, 1])"))
    return problems


def second_agent_problems(sheet: pd.DataFrame, file: str, control: str) -> list[Problem]:
    """Problems of the combination columns: ``dose_2`` without ``compound_2`` or the
    reverse, a ``dose_2`` that is not a positive number, a second agent on a well that is
    not treated, or the same compound twice."""
    named = has_second_agent(sheet)
    raw = sheet[DOSE_2] if DOSE_2 in sheet.columns else pd.Series(None, sheet.index)
    dosed = raw.notna() & (raw.astype(str).str.strip() != "")
    doses = pd.to_numeric(raw.where(dosed), errors="coerce")
    problems = []
    orphan = sheet.index[dosed & ~named].tolist()
    if orphan:
        problems.append(Problem(file, f"column '{DOSE_2}'", f"given for well(s) "
                                f"{', '.join(orphan[:5])}{_more(orphan)} without a "
                                f"'{COMPOUND_2}'", f"name the second agent in '{COMPOUND_2}', "
                                f"or leave '{DOSE_2}' empty for single-agent wells"))
    undosed = sheet.index[named & ~dosed].tolist()
    if undosed:
        problems.append(Problem(file, f"column '{DOSE_2}'", f"empty for combination well(s) "
                                f"{', '.join(undosed[:5])}{_more(undosed)}", "give the second "
                                "agent's dose (in the same unit as 'dose')"))
    bad = sheet.index[named & dosed & ~(doses > 0)].tolist()
    if bad:
        problems.append(Problem(file, f"column '{DOSE_2}'", f"not a positive number for "
                                f"well(s) {', '.join(bad[:5])}{_more(bad)} (e.g. "
                                f"{raw[bad[0]]!r})", "give doses as plain positive numbers"))
    roles = _roles(sheet, control)
    untreated = sheet.index[named & (roles != "sample")].tolist()
    if untreated:
        problems.append(Problem(file, f"column '{COMPOUND_2}'", f"set on well(s) "
                                f"{', '.join(untreated[:5])}{_more(untreated)} that are not "
                                f"treated wells (controls, empty or other)", "a combination "
                                "well names its first agent in 'compound'; a control well has "
                                "no second agent"))
    same = sheet.index[named & (sheet[COMPOUND_2].astype(str).str.strip().str.casefold()
                                == sheet["compound"].astype(str).str.strip().str.casefold())]
    if len(same):
        problems.append(Problem(file, f"column '{COMPOUND_2}'", f"the same compound as "
                                f"'compound' in well(s) {', '.join(same[:5])}", "a higher "
                                "dose of one compound is a single-agent well: give the total "
                                "dose in 'dose'"))
    return problems


def missing_monotherapy_problems(annotated: pd.DataFrame, file: str) -> list[Problem]:
    """Combinations whose monotherapies (each agent alone at the combination's dose) are not
    on the plate: additivity cannot be assessed without them."""
    if COMPOUND_1 not in annotated.columns:
        return []
    treated = annotated[(annotated[ROLE] == "sample")]
    single = treated[~has_second_agent(treated)]
    present = set(zip(single["compound"], pd.to_numeric(single["dose"])))
    combos = treated[has_second_agent(treated)].drop_duplicates(CONDITION)
    problems = []
    for _, row in combos.iterrows():
        missing = [f"{agent} at {dose:g}" for agent, dose in
                   ((row[COMPOUND_1], float(row["dose"])), (row[COMPOUND_2], float(row[DOSE_2])))
                   if (agent, dose) not in present]
        if missing:
            problems.append(Problem(file, f"column '{COMPOUND_2}'", f"combination "
                                    f"{row[CONDITION]!r} has no monotherapy well(s) of "
                                    f"{' and '.join(missing)} on the plate map: its "
                                    "additivity cannot be assessed", "add wells of each agent "
                                    "alone at the combination's doses (or drop the "
                                    "combination)"))
    return problems


def moa_problems(sheet: pd.DataFrame, file: str, control: str) -> list[Problem]:
    """Problems of the MoA column: a compound with two classes, or one class only (no
    retrieval can be measured)."""
    column = moa_column(sheet)
    treated = sheet[(_roles(sheet, control) == "sample") & ~has_second_agent(sheet)]
    values = treated[column].where(treated[column].notna(), None)
    given = values.dropna().astype(str).str.strip()
    given = given[given != ""]
    field = f"column '{column}'"
    classes = treated.loc[given.index, "compound"].groupby(given.to_numpy()).nunique()
    problems = []
    per_compound = given.groupby(treated.loc[given.index, "compound"]).nunique()
    mixed = per_compound.index[per_compound > 1].tolist()
    if mixed:
        problems.append(Problem(file, field, f"compound(s) {', '.join(map(str, mixed[:5]))} "
                                "have more than one class", "give each compound one class "
                                "on every one of its wells"))
    if len(given) and len(classes) < 2:
        problems.append(Problem(file, field, f"one class only ({given.iloc[0]!r}): "
                                "retrieving compounds of the same class needs at least two "
                                "classes", f"annotate compounds of other classes too, or drop "
                                f"the '{column}' column"))
    return problems


def _no_control_problem(annotated: pd.DataFrame, file: str, control: str) -> Problem:
    """Why no well is a control: the vehicle is absent, or ``well_type`` marks none of its
    wells as a vehicle control."""
    compounds = sorted(annotated["compound"].unique())
    if control.casefold() in {c.casefold() for c in compounds}:
        return Problem(file, "column 'well_type'", f"no well of compound {control!r} has a "
                       "control well type", "mark the vehicle wells as control (or RC, "
                       "vehicle, negative), or drop the well_type column")
    return Problem(STUDY_FILE, "control", f"no well of {file} has compound {control!r} "
                   f"(compounds: {', '.join(compounds[:8])} ...)", "name the vehicle used on "
                   "the plates (case-insensitive), e.g. control: DMSO")


def _label_clashes(annotated: pd.DataFrame, file: str, control: str) -> list[Problem]:
    """Different compounds or doses whose wells would share one condition label (e.g.
    'cpd A' and 'cpd-A', or doses equal to 6 digits), or whose label is the control's: their
    wells would be pooled."""
    treated = annotated[annotated[ROLE] == "sample"]
    second = (pd.to_numeric(treated[DOSE_2]) if DOSE_2 in treated.columns
              else pd.Series(np.nan, treated.index))
    pairs = pd.DataFrame({"compound": treated["compound"], "dose": pd.to_numeric(
        treated["dose"]), "dose_2": second, "label": treated[CONDITION]}).drop_duplicates(
        ["compound", "dose", "dose_2"])
    problems = []
    for label, group in pairs.groupby("label"):
        if len(group) > 1 or label == control:
            shown = ", ".join(f"{c!r} at dose {d:.10g}" for c, d in
                              zip(group["compound"][:3], group["dose"][:3]))
            also = ", the control's name" if label == control else ""
            problems.append(Problem(file, "column 'compound'", f"{shown} would become condition "
                                    f"{label!r}{also}, pooling different treatments",
                                    "make compound names differ in letters or digits (and "
                                    "doses by more than 6 significant digits)"))
    return problems


def screen_design(sheet: pd.DataFrame, position_effects: str | None = None) -> str:
    """``~ condition``, or ``~ plate + condition`` when the tested wells span plates; with
    ``position_effects``, its terms (:data:`POSITION_TERMS`) before ``condition``."""
    tested = sheet[sheet[ROLE].isin(TESTED_ROLES)]
    terms = ["plate"] if tested["plate"].nunique() > 1 else []
    return "~ " + " + ".join([*terms, *POSITION_TERMS.get(position_effects or "", ()),
                              "condition"])


def with_position_terms(design: str, position_effects: str | None) -> str:
    """A study's own design with the ``position_effects`` terms it lacks added first."""
    present = set(design_variables(design)[0])
    missing = [t for t in POSITION_TERMS.get(position_effects or "", ()) if t not in present]
    return "~ " + " + ".join([*missing, design.strip().removeprefix("~").strip()]) \
        if missing else design


def screen_contrasts(sheet: pd.DataFrame, control: str) -> list[Contrast]:
    """Every compound x dose against the control wells, in plate-map order of first use."""
    conditions = sheet.loc[sheet[ROLE] == "sample", CONDITION]
    return [Contrast(name=label, factor=CONDITION, level=label, reference=control)
            for label in pd.unique(conditions)]


def condition_table(sheet: pd.DataFrame) -> pd.DataFrame:
    """One row per tested compound x dose: condition, compound, dose, dose_unit, n_wells."""
    treated = sheet[sheet[ROLE] == "sample"]
    unit = treated["dose_unit"] if "dose_unit" in treated.columns else None
    table = pd.DataFrame({
        CONDITION: treated[CONDITION], "compound": treated["compound"],
        "dose": pd.to_numeric(treated["dose"]).astype(float),
        "dose_unit": unit if unit is not None else pd.Series(None, treated.index, dtype=object)})
    counts = treated.groupby(CONDITION).size()
    table = table.drop_duplicates(CONDITION).set_index(CONDITION)
    table["n_wells"] = counts.reindex(table.index).to_numpy()
    return table.reset_index()


def single_well_conditions(sheet: pd.DataFrame) -> list[str]:
    """Conditions with one well: testable in a shared fit (dispersion is borrowed from the
    whole plate) but with little power, and no check of replicate agreement."""
    counts = sheet.loc[sheet[ROLE] == "sample", CONDITION].value_counts()
    return sorted(counts.index[counts < 2])



def plates_short_of_controls(usable_controls: pd.Series, plates: pd.Series) -> dict[str, int]:
    """Plates with fewer than ``MIN_CONTROLS_PER_PLATE`` usable control wells, and how many
    they have."""
    per_plate = usable_controls.groupby(plates).sum()
    return {plate: int(n) for plate, n in per_plate.items() if n < MIN_CONTROLS_PER_PLATE}


def analysis_wells(sheet: pd.DataFrame, passed: pd.Series, control: str,
                   file: str) -> tuple[list[str], dict[str, str], list[Problem]]:
    """The wells a screen's fit uses: controls and treated wells that passed well QC.

    Returns the wells, the conditions left untested with the reason (every well failed QC),
    and problems: a plate left with fewer than four usable controls cannot be analysed.
    """
    usable = sheet[ROLE].isin(TESTED_ROLES) & passed.reindex(sheet.index).fillna(False)
    short = plates_short_of_controls(usable & (sheet[ROLE] == "control"), sheet["plate"])
    problems = [Problem(file, "column 'plate'", f"plate {plate!r} has {n} control well(s) "
                        f"({control}) that passed well QC; at least {MIN_CONTROLS_PER_PLATE} "
                        "are needed", "see the well_qc table for why wells failed; re-run the "
                        "plate or leave it out of the screen") for plate, n in short.items()]
    treated = sheet[sheet[ROLE] == "sample"]
    kept = usable.loc[treated.index].groupby(treated[CONDITION]).sum()
    untested = {c: "every well failed well QC" for c, n in kept.items() if n == 0}
    return sheet.index[usable].tolist(), untested, problems


def condition_plates(sheet: pd.DataFrame) -> pd.Series:
    """Plate(s) of each tested condition, comma-joined when a condition spans plates."""
    treated = sheet[sheet[ROLE] == "sample"]
    return treated.groupby(CONDITION)["plate"].agg(lambda p: ",".join(sorted(set(p))))
