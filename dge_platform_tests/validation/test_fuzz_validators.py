"""Hostile input through ``validate_study`` (what ``dge validate`` runs): every case ends in a
valid study or in problems that each name an existing file of the study (or study.yaml) and
say what to do; never an exception. Each fuzz test records its case counts under "figures".

Regressions: every crash the fuzzing found is a plain case of ``REGRESSIONS`` below, checked
through the validator and through ``dge validate``.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import io
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dge_platform.study.config import StudyConfig
from dge_platform.study.paths import STUDY_FILE
from dge_platform.validation import ValidationReport, validate_study
from dge_platform_tests.conftest import FIXTURES, dge, write_screen, write_study

FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Values that break parsers: missing-value spellings, non-finite and huge numbers, numbers
# in other scripts, quotes, separators, control characters, lookalikes of sample names.
WEIRD_TEXT = ["", " ", "NA", "NaN", "nan", "None", "null", "\\N", "inf", "-inf", "-1", "-0",
              "1.5", "2.0", "1e3", "1e400", "2147483648", "99999999999999999999", "0x10", "True",
              "false", "\uff11\uff12", "\u0663", " 5 ", "5 5", '"5"', "'5'", "\u00a0", "\u00e9",
              "\U0001f4a5", "1,5", "1;5", "-", "+7", "\ufeff", "\x1b[31m", "a\nb", "\t", "s1",
              "S1", "s1 ", "s7", "ctrl", "treat", "DMSO", "dmso", "x" * 300]
cell_text = st.one_of(st.sampled_from(WEIRD_TEXT), st.integers(-5, 2**40).map(str),
                      st.floats().map(repr), st.text(max_size=4))
# Paths that must never reach outside the study folder or crash a reader.
HOSTILE_PATHS = ["/etc/passwd", "../x.tsv", "../../etc/passwd", "~/x.tsv", "~", "a\x00b",
                 "http://host/x.tsv", "file:///etc/passwd", "s3://b/k", ".", "..", "", " ",
                 "*", "**/*", "[", "/etc/*", "../*/*", "x" * 5000, "sub/../counts.tsv",
                 "counts.tsv", "samples.tsv", "study.yaml", "C:\\x.tsv", "\\\\host\\share"]
yaml_value = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(HOSTILE_PATHS + WEIRD_TEXT),
    st.lists(st.text(max_size=8) | st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=6), st.text(max_size=6) | st.integers(), max_size=3))
DESIGNS = ["~ batch + condition", "~ condition", "~condition+batch", "~ batch * condition",
           "~ 0 + condition", "~ condition - 1", "~ condition:batch", "~ (batch + condition)",
           "~ condition | batch", "~ np.log(batch)", "~ C(condition)", "~ condition + np",
           "~ condition + lambda", "~ a b", "~ condition ~ batch", "condition", "~", "~ ((",
           "~ condition + print('x')", "~ " + "(" * 300 + "condition" + ")" * 300,
           "~ " + " + ".join(["condition"] * 200), "~ donor + condition", "~ plate + condition"]
design = st.sampled_from(DESIGNS) | st.text(alphabet="~ +*:-()01abcdnotiz|.,'_", max_size=30)
contrast = st.fixed_dictionaries(
    {}, optional={"name": st.sampled_from(["t", "t_vs_c", "a b", "_x", "x" * 200]) | yaml_value,
                  "factor": st.sampled_from(["condition", "batch", "sample", "nope"]) | yaml_value,
                  "level": st.sampled_from(["treat", "ctrl", "b1", "stim"]) | yaml_value,
                  "reference": st.sampled_from(["ctrl", "treat", "DMSO"]) | yaml_value,
                  "extra": yaml_value})
KEY_VALUES = {
    "design": design, "contrasts": st.lists(contrast, max_size=3) | yaml_value,
    "kind": st.sampled_from(["bulk", "screen", "singlecell", "Bulk", "microarray"]) | yaml_value,
    "id": st.sampled_from(["toy", "../x", "a/b", "A", "x" * 64, "-x", "é", "a\x00"]) | yaml_value,
    "qc": st.dictionaries(st.sampled_from(["nmads", "min_counts", "doublets", "nmad"]),
                          yaml_value, max_size=3) | yaml_value,
    "markers": st.dictionaries(st.text(max_size=4), st.lists(yaml_value, max_size=3),
                               max_size=2) | yaml_value,
}
yaml_key = st.sampled_from([*StudyConfig.model_fields, "desing", "Counts", "", "1", "id "])


def key_value(key: str) -> st.SearchStrategy:
    return KEY_VALUES.get(key, yaml_value)


@dataclass
class Tally:
    """Cases run and how they ended, for the "figures" section."""

    cases: int = 0
    valid: int = 0
    errors: int = 0

    def record(self, record_property: Callable[[str, str], None], what: str) -> None:
        assert self.cases == self.valid + self.errors
        record_property(f"report: fuzz {what}",
                        f"{self.cases} cases, {self.valid} valid, {self.errors} clear errors")


def check_report(report: ValidationReport, folder: Path, tally: Tally) -> None:
    """The property: a valid study, or problems that each name an existing file of the study
    or a glob matching some (study.yaml problems name a key unless study.yaml as a whole is
    unusable), say what is wrong and what to do, and print on one line without terminal
    escapes."""
    tally.cases += 1
    if report.study is not None:
        assert report.problems == []
        tally.valid += 1
        return
    assert report.problems, "an invalid study must come with problems"
    tally.errors += 1
    for problem in report.problems:
        text = str(problem)
        assert problem.file and problem.message and problem.fix, text
        # a glob (several count files) names the files it matches
        assert problem.file == STUDY_FILE or glob.glob(
            os.path.normpath(folder / problem.file)), text
        assert problem.file != STUDY_FILE or problem.field or len(report.problems) == 1, text
        assert "\n" not in text and "\x1b" not in text and "Traceback" not in text, text


def fresh(base: Path) -> Path:
    """The folder for the next case (the previous case's is removed)."""
    folder = base / "case"
    shutil.rmtree(folder, ignore_errors=True)
    return folder


def set_yaml(folder: Path, **changes: object) -> None:
    path = folder / STUDY_FILE
    config = yaml.safe_load(path.read_text())
    config.update(changes)
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))


# --- text tables: a grid of fields, mutated, then rendered with a chosen delimiter,
# line ending, encoding and compression ---

def table_grid(path: Path, sep: str) -> list[list[str]]:
    return [line.split(sep) for line in path.read_text().splitlines()]


@st.composite
def mutated_grid(draw: st.DrawFn, grid: list[list[str]]) -> list[list[str]]:
    rows = [list(r) for r in grid]
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["cell", "cell", "cell", "header", "drop_cell", "add_cell",
                                   "dup_row", "drop_row", "drop_column", "blank", "truncate"]))
        if not rows:
            break
        r = draw(st.integers(0, len(rows) - 1))
        c = draw(st.integers(0, max(len(rows[r]) - 1, 0)))
        if op in ("cell", "header") and rows[r if op == "cell" else 0]:
            target = rows[r] if op == "cell" else rows[0]
            target[min(c, len(target) - 1)] = draw(cell_text)
        elif op == "drop_cell" and rows[r]:
            rows[r].pop()
        elif op == "add_cell":
            rows[r].append(draw(cell_text))
        elif op == "dup_row":
            rows.insert(r, list(rows[r]))
        elif op == "drop_row":
            rows.pop(r)
        elif op == "drop_column":
            rows = [[v for i, v in enumerate(row) if i != c] for row in rows]
        elif op == "blank":
            rows.insert(r, [])
        else:
            rows = rows[:r]
    return rows


@st.composite
def encoded_table(draw: st.DrawFn, grid: list[list[str]], sep: str) -> bytes:
    """The grid as file bytes: mostly well-formed, sometimes with another delimiter, line
    ending, BOM, encoding or compression, or replaced by binary garbage."""
    rows = draw(mutated_grid(grid))
    sep = draw(st.sampled_from([sep] * 6 + [",", "\t", ";", " ", "|"]))
    newline = draw(st.sampled_from(["\n"] * 4 + ["\r\n", "\r"]))
    text = newline.join(sep.join(row) for row in rows) + draw(st.sampled_from([newline, ""]))
    bom = draw(st.sampled_from([""] * 5 + ["\ufeff"]))
    encoding = draw(st.sampled_from(["utf-8"] * 8 + ["utf-16", "latin-1"]))
    data = (bom + text).encode(encoding, errors="replace")
    packing = draw(st.sampled_from(["plain"] * 6 + ["gzip", "gzip", "truncated gzip", "bzip2",
                                                    "zip", "garbage", "damaged gzip"]))
    if packing == "gzip":
        data = gzip.compress(data)
    elif packing == "truncated gzip":
        data = gzip.compress(data)[:draw(st.integers(0, 40))]
    elif packing == "damaged gzip":
        raw = bytearray(gzip.compress(data))
        raw[draw(st.integers(10, max(len(raw) - 9, 10))) % len(raw)] ^= 0xFF
        data = bytes(raw)
    elif packing == "bzip2":
        data = bz2.compress(data)
    elif packing == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("counts.tsv", data)
        data = buffer.getvalue()
    elif packing == "garbage":
        data = draw(st.binary(max_size=300))
    return data


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, Path]:
    """Valid studies of each kind to mutate (bulk, screen, single-cell with a cell sheet)."""
    base = tmp_path_factory.mktemp("templates")
    sc = base / "singlecell"
    sc.mkdir()
    rng = np.random.default_rng(0)
    cells = [f"c{i}" for i in range(48)]
    ad.AnnData(X=sp.csr_matrix(rng.poisson(3, (48, 40)).astype(np.float32)),
               obs=pd.DataFrame(index=cells),
               var=pd.DataFrame({"gene_symbol": [f"G{i}" for i in range(40)]},
                                index=[f"ENSG{i:03d}" for i in range(40)])
               ).write_h5ad(sc / "cells.h5ad")
    pd.DataFrame({"cell_id": cells, "donor": np.repeat(["d1", "d2", "d3", "d4"], 12),
                  "condition": np.tile(["ctrl", "stim"], 24),
                  "cell_type": np.tile(["T", "T", "B"], 16)}).to_csv(sc / "cells.tsv", sep="\t",
                                                                     index=False)
    (sc / STUDY_FILE).write_text(yaml.safe_dump({
        "id": "sc", "kind": "singlecell", "organism": "Homo sapiens", "counts": "cells.h5ad",
        "cells": "cells.tsv", "donor": "donor", "cell_type": "cell_type",
        "design": "~ donor + condition", "contrasts": [
            {"name": "stim_vs_ctrl", "factor": "condition", "level": "stim",
             "reference": "ctrl"}]}, sort_keys=False))
    folders = {"bulk": write_study(base / "bulk"), "screen": write_screen(base / "screen"),
               "singlecell": sc}
    for folder in folders.values():
        assert validate_study(folder).study is not None
    return folders


def copy_template(templates: dict[str, Path], kind: str, dest: Path) -> Path:
    shutil.copytree(templates[kind], dest)
    return dest


# --- the fuzz tests ---

COUNT_NAMES = ["counts.tsv", "counts.csv", "counts.txt", "counts.tsv.gz", "counts.csv.gz"]


def test_fuzz_count_matrices(templates, tmp_path, record_property):
    grid = table_grid(templates["bulk"] / "counts.tsv", "\t")
    tally = Tally()

    @settings(FUZZ, max_examples=250)
    @given(name=st.sampled_from(COUNT_NAMES), data=st.data(),
           fmt=st.sampled_from(["auto"] * 6 + ["matrix", "featurecounts", "star", "h5ad"]),
           strandedness=st.sampled_from([None, "unstranded", "reverse"]),
           featurecounts=st.sampled_from([False] * 4 + [True]))
    def run(name: str, data: st.DataObject, fmt: str, strandedness: str | None,
            featurecounts: bool) -> None:
        folder = copy_template(templates, "bulk", fresh(tmp_path))
        sep = "," if ".csv" in name else "\t"
        (folder / "counts.tsv").unlink()
        table = data.draw(encoded_table(grid, sep))
        # featureCounts output starts with its command line; auto-detection reads it
        (folder / name).write_bytes(b"# Program:featureCounts v2\n" * featurecounts + table)
        set_yaml(folder, counts=name, round_counts=data.draw(st.booleans()),
                 counts_format=fmt, strandedness=strandedness)
        check_report(validate_study(folder), folder, tally)

    run()
    assert tally.valid and tally.errors
    tally.record(record_property, "count matrices")


def test_fuzz_sample_sheets(templates, tmp_path, record_property):
    grid = table_grid(templates["bulk"] / "samples.tsv", "\t")
    tally = Tally()

    @settings(FUZZ, max_examples=200)
    @given(name=st.sampled_from(["samples.tsv", "samples.csv", "samples.txt.gz"]),
           design=st.sampled_from(DESIGNS[:8]), replicate_of=st.sampled_from(
               [None, "batch", "sample", "nope"]), data=st.data())
    def run(name: str, design: str, replicate_of: str | None, data: st.DataObject) -> None:
        folder = copy_template(templates, "bulk", fresh(tmp_path))
        sep = "," if ".csv" in name else "\t"
        (folder / "samples.tsv").unlink()
        (folder / name).write_bytes(data.draw(encoded_table(grid, sep)))
        set_yaml(folder, samples=name, design=design, replicate_of=replicate_of)
        check_report(validate_study(folder), folder, tally)

    run()
    assert tally.valid and tally.errors
    tally.record(record_property, "sample sheets")


YAML_BREAKERS = st.sampled_from(["\t", ":", "[", "{", "- ", "&a ", "*a", "%", "\x00",
                                 "!!python/object/apply:os.system ['true']"])


@st.composite
def yaml_text(draw: st.DrawFn, config: dict) -> bytes:
    """study.yaml bytes: the config with keys replaced, removed or added (wrong types, hostile
    paths, bad designs and contrasts), or broken YAML."""
    config = dict(config)
    for key in draw(st.lists(yaml_key, max_size=4, unique=True)):
        if draw(st.integers(0, 4)) == 0:
            config.pop(key, None)
        else:
            config[key] = draw(key_value(key))
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    damage = draw(st.sampled_from(["none"] * 8 + ["insert", "truncate", "text", "binary",
                                                  "alias", "repeat"]))
    if damage == "insert":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(YAML_BREAKERS | st.text(max_size=3)) + text[at:]
    elif damage == "truncate":
        text = text[:draw(st.integers(0, len(text)))]
    elif damage == "text":
        text = draw(st.text(max_size=60))
    elif damage == "alias":
        text += "x: &a [1, 2]\ny: *a\n"
    elif damage == "repeat":
        text += "id: toy\n"
    if damage == "binary":
        return draw(st.binary(max_size=200))
    return text.encode()


def test_fuzz_study_yaml(templates, tmp_path, record_property):
    tally = Tally()

    @settings(FUZZ, max_examples=350)
    @given(kind=st.sampled_from(["bulk", "bulk", "screen", "singlecell"]), data=st.data())
    def run(kind: str, data: st.DataObject) -> None:
        folder = copy_template(templates, kind, fresh(tmp_path))
        config = yaml.safe_load((folder / STUDY_FILE).read_text())
        (folder / STUDY_FILE).write_bytes(data.draw(yaml_text(config)))
        check_report(validate_study(folder), folder, tally)

    run()
    assert tally.valid and tally.errors
    tally.record(record_property, "study.yaml")


PLATE_VALUES = {
    "dose": ["", "-1", "inf", "nan", "1e400", "1e300", "ten", "0", "1,5", "1e-300", "10"],
    "compound": ["DMSO", "dmso", "", "cpd A", "cpd-A", "cpdA", "_x", ".", "\u00b5", "x" * 200],
    "well_type": ["control", "RC", "vehicle", "sample", "??", "", "positive", "empty"],
    "dose_unit": ["uM", "\u00b5M", "%", "nM/ml", "", "\u03bcM"],
    "plate": ["P1", "P2", "", "1", "P 1"], "well": ["A01", "A1", "", "Z99"],
}


@st.composite
def plate_map_edits(draw: st.DrawFn, columns: list[str], n_rows: int) -> list[tuple]:
    edits = []
    for _ in range(draw(st.integers(0, 4))):
        column = draw(st.sampled_from(columns))
        value = draw(st.sampled_from(PLATE_VALUES.get(column, ["x"])) | cell_text)
        edits.append(("cell", draw(st.integers(0, n_rows - 1)), column, value))
    for _ in range(draw(st.integers(0, 1))):
        column = draw(st.sampled_from(columns))
        edits.append(("rename", column, draw(st.sampled_from(
            [column.upper(), column.title(), "sample", "", column + " "]))))
    return edits


def test_fuzz_screens(templates, tmp_path, record_property):
    plate_map = pd.read_csv(templates["screen"] / "plate_map.tsv", sep="\t", dtype=str,
                            keep_default_na=False)
    tally = Tally()

    @settings(FUZZ, max_examples=200)
    @given(edits=plate_map_edits(list(plate_map.columns), len(plate_map)),
           control=st.sampled_from(["DMSO", "dmso", "Water"]) | yaml_value,
           keys=st.dictionaries(st.sampled_from(["design", "contrasts", "batch", "samples",
                                                 "plate_map", "counts", "replicate_of"]),
                                st.sampled_from(["plate_map.tsv", "counts/*.tsv", "plate",
                                                 "~ condition", "/etc/*"]) | yaml_value,
                                max_size=2))
    def run(edits: list[tuple], control: object, keys: dict) -> None:
        folder = copy_template(templates, "screen", fresh(tmp_path))
        table = plate_map.copy()
        for edit in edits:
            if edit[0] == "cell" and edit[2] in table.columns:
                table.loc[edit[1], edit[2]] = edit[3]
            elif edit[0] == "rename":
                table = table.rename(columns={edit[1]: edit[2]})
        table.to_csv(folder / "plate_map.tsv", sep="\t", index=False)
        set_yaml(folder, control=control, **keys)
        check_report(validate_study(folder), folder, tally)

    run()
    assert tally.valid and tally.errors
    tally.record(record_property, "screens (plate maps, screen keys)")


def test_fuzz_singlecell(templates, tmp_path, record_property):
    grid = table_grid(templates["singlecell"] / "cells.tsv", "\t")
    tally = Tally()
    sc_keys = st.sampled_from(["donor", "cell_type", "capture", "batch", "markers", "qc",
                               "min_cells_per_pseudobulk", "clustering_resolution", "counts",
                               "counts_layer", "counts_format", "cells", "samples", "design"])
    column = st.sampled_from(["donor", "condition", "cell_type", "cell_id", "sample", "nope"])

    @settings(FUZZ, max_examples=120)
    @given(keys=st.dictionaries(sc_keys, column | yaml_value, max_size=3), data=st.data())
    def run(keys: dict, data: st.DataObject) -> None:
        folder = copy_template(templates, "singlecell", fresh(tmp_path))
        (folder / "cells.tsv").write_bytes(data.draw(encoded_table(grid, "\t")))
        if "markers" in keys or "qc" in keys:
            keys.update({k: data.draw(KEY_VALUES[k]) for k in ("markers", "qc") if k in keys})
        set_yaml(folder, **keys)
        check_report(validate_study(folder), folder, tally)

    run()
    assert tally.valid and tally.errors
    tally.record(record_property, "single-cell (cell sheets, single-cell keys)")


BULK_H5AD = {"id": "toy", "kind": "bulk", "organism": "Homo sapiens", "counts": "cells.h5ad",
             "samples": "cells.tsv", "design": "~ condition", "contrasts": [
                 {"name": "s", "factor": "condition", "level": "stim", "reference": "ctrl"}]}


def test_fuzz_damaged_binary_inputs(templates, tmp_path, record_property):
    """Byte-level damage to an h5ad (cells, and as bulk counts) and a 10x .h5: h5py and
    anndata raise all kinds of errors, and damaged sparse indices crashed the interpreter."""
    h5ad = (templates["singlecell"] / "cells.h5ad").read_bytes()
    tenx = (FIXTURES / "tenx" / "3.0.0" /
            "filtered_feature_bc_matrix.h5").read_bytes()
    tally = Tally()

    @settings(FUZZ, max_examples=60)
    @given(which=st.sampled_from(["cells.h5ad", "bulk h5ad", "x.h5"]),
           flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                          min_size=1, max_size=40), cut=st.none() | st.floats(0, 1))
    def run(which: str, flips: list, cut: float | None) -> None:
        folder = copy_template(templates, "singlecell", fresh(tmp_path))
        raw = bytearray(tenx if which == "x.h5" else h5ad)
        for where, byte in flips:
            raw[int(where * len(raw))] = byte
        name = "x.h5" if which == "x.h5" else "cells.h5ad"
        (folder / name).write_bytes(bytes(raw[:int(cut * len(raw))] if cut else raw))
        if which == "bulk h5ad":
            (folder / STUDY_FILE).write_text(yaml.safe_dump(BULK_H5AD))
        else:
            set_yaml(folder, counts=name)
        check_report(validate_study(folder), folder, tally)

    run()
    assert tally.errors
    tally.record(record_property, "damaged h5ad / 10x h5")


# --- regressions: each crash (or silent acceptance) the fuzzing found ---

def _bulk(tmp: Path, **config: object) -> Path:
    return write_study(tmp / "toy", config=config)


def _with(tmp: Path, name: str, data: bytes | str, *, append: bool = False,
          **config: object) -> Path:
    """A toy study with one file replaced by (or extended with) ``data``."""
    folder = write_study(tmp / "toy", config=config)
    with (folder / name).open("ab" if append else "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
    return folder


def _screen(tmp: Path, edit: Callable[[pd.DataFrame], pd.DataFrame] = lambda t: t,
            **config: object) -> Path:
    folder = write_screen(tmp / "screen", config=config or None)
    table = pd.read_csv(folder / "plate_map.tsv", sep="\t", dtype=str, keep_default_na=False)
    edit(table).to_csv(folder / "plate_map.tsv", sep="\t", index=False)
    return folder


def _sparse_damage(tmp: Path) -> Path:
    import h5py

    folder = tmp / "sc"
    folder.mkdir()
    rng = np.random.default_rng(0)
    obs = pd.DataFrame({"donor": np.repeat(["d1", "d2", "d3", "d4"], 10),
                        "condition": np.tile(["ctrl", "stim"], 20), "cell_type": "T"},
                       index=[f"c{i}" for i in range(40)])
    ad.AnnData(X=sp.csr_matrix(rng.poisson(2, (40, 30)).astype(np.float32)),
               obs=obs).write_h5ad(folder / "cells.h5ad")
    with h5py.File(folder / "cells.h5ad", "r+") as fh:
        fh["X/indices"][5] = 10**6  # out of range: scipy read past the array (segfault)
    (folder / STUDY_FILE).write_text(yaml.safe_dump({
        "id": "sc", "kind": "singlecell", "organism": "Homo sapiens", "counts": "cells.h5ad",
        "donor": "donor", "cell_type": "cell_type", "design": "~ donor + condition",
        "contrasts": [{"name": "s", "factor": "condition", "level": "stim",
                       "reference": "ctrl"}]}))
    return folder


def _laughs(tmp: Path) -> Path:
    folder = write_study(tmp / "toy", config={"control": "DMSO"})
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    with (folder / STUDY_FILE).open("a") as fh:
        fh.write("laughs:\n" + "".join(f"  {line}\n" for line in lines) + "kind2: *a8\n")
    return folder


REGRESSIONS: dict[str, tuple[Callable[[Path], Path], str]] = {
    # crashes
    "NUL byte in a path (ValueError)": (
        lambda t: _bulk(t, samples="samples\x00.tsv"), "samples: path 'samples\\x00.tsv' "
                                                       "contains a NUL byte"),
    "absolute counts glob (ValueError in relative_to)": (
        lambda t: _bulk(t, counts="/etc/*.conf"), "counts: pattern '/etc/*.conf' leads outside"),
    "over-long file name (OSError ENAMETOOLONG)": (
        lambda t: _bulk(t, gene_sets=["g" * 5000]), "cannot be accessed (File name too long)"),
    "damaged gzip gene set (EOFError)": (
        lambda t: _with(t, "sets.gmt", gzip.compress(b"S\td\tg1\tg2\n")[:20],
                        gene_sets=["sets.gmt"]), "sets.gmt: not a usable GMT file"),
    "STAR file with an empty gene id (TypeError: bad operand for ~)": (
        lambda t: _with(t, "s1.ReadsPerGene.out.tab", "N_unmapped\t1\t1\t1\n\t5\t5\t5\n",
                        counts="*ReadsPerGene.out.tab", strandedness="reverse"),
        "1 row(s) with an empty or NA gene id"),
    "study.yaml named as the counts (a problem without a key)": (
        lambda t: _bulk(t, counts="study.yaml"), "counts: path 'study.yaml' is study.yaml "
                                                 "itself"),
    "design with '|' (ValueError: Must pass 2-d input)": (
        lambda t: _bulk(t, design="~ condition | batch"), "character '|' is not allowed"),
    "design calling a function (FactorEvaluationError)": (
        lambda t: _bulk(t, design="~ np.log(batch) + condition"), "character '.' is not allowed"),
    "design naming a formulaic function (ValueError)": (
        lambda t: _bulk(t, design="~ condition + C"), "'C': reserved name(s) in formulas"),
    "design naming a Python keyword (FactorEvaluationError)": (
        lambda t: _bulk(t, design="~ condition + lambda"), "'lambda' is a reserved word"),
    "plate map with DOSE and Dose (ValueError: duplicate labels)": (
        lambda t: _screen(t, lambda m: m.rename(columns={"dose": "DOSE"}).assign(
            Dose=m["dose"])), "plate_map.tsv: column 'dose': missing from the plate map"),
    "dose unit with a micro sign (pydantic ValidationError)": (
        lambda t: _screen(t, lambda m: m.assign(dose_unit="\u00b5M")), ""),
    "compound label not starting with a letter (pydantic ValidationError)": (
        lambda t: _screen(t, lambda m: m.assign(compound=m["compound"].replace(
            "cpdA", "_cpdA"))), ""),
    "damaged sparse indices in an h5ad (segmentation fault)": (
        _sparse_damage, "cells.h5ad: damaged sparse matrix: indices must be < 30"),
    "damaged h5ad (RuntimeError from h5py)": (
        lambda t: _with(t, "counts.h5ad", b"\x89HDF\r\n\x1a\n" + bytes(200),
                        counts="counts.h5ad", samples=None), "counts.h5ad: not a readable h5ad"),
    "YAML aliases expanding to gigabytes (MemoryError)": (
        _laughs, "not valid YAML: aliases (*name) are not supported"),
    # accepted silently before
    "count above int64 (silently wrapped)": (
        lambda t: _with(t, "counts.tsv", "gene_id\ts1\ts2\ts3\ts4\ts5\ts6\n" + "".join(
            f"g{i}\t99999999999999999999\t5\t5\t5\t5\t5\n" for i in range(12))),
        "counts.tsv: values: counts above 2,147,483,647"),
    "boolean count column (read as 1/0)": (
        lambda t: _with(t, "counts.tsv", "gene_id\ts1\ts2\ts3\ts4\ts5\ts6\n" + "".join(
            f"g{i}\tTrue\t5\t5\t5\t5\t5\n" for i in range(12))),
        "counts.tsv: column 's1': non-numeric value 'True'"),
    "empty gene id (became gene 'nan')": (
        lambda t: _with(t, "counts.tsv", "gene_id\ts1\ts2\ts3\ts4\ts5\ts6\n" + "".join(
            f"{'' if i == 3 else f'g{i}'}\t5\t6\t7\t8\t9\t{i + 1}\n" for i in range(12))),
        "counts.tsv: gene id column: 1 row(s) with an empty or NA gene id"),
    "repeated sheet column (renamed sample.1 by pandas)": (
        lambda t: _with(t, "samples.tsv", "sample\tcondition\tcondition\ns1\tctrl\tctrl\n"),
        "samples.tsv: header: duplicate column name(s): condition"),
    "surplus field in a sheet row (became the index)": (
        lambda t: _with(t, "samples.tsv", "sample\tcondition\tbatch\ns1\tctrl\tb1\tx\n"),
        "samples.tsv: cannot be parsed"),
    "empty dose unit cell (TypeError: boolean value of NA)": (
        lambda t: _screen(t, lambda m: m.assign(dose_unit=m["dose_unit"].where(
            m["compound"] != "cpdA", ""))), ""),
    "infinite covariate (reported as 'not full rank')": (
        lambda t: _with(t, "samples.tsv", "sample\tcondition\tbatch\tage\n" + "".join(
            f"s{i}\t{'ctrl' if i < 4 else 'treat'}\tb{i % 2}\t{'inf' if i == 3 else i}\n"
            for i in range(1, 7)), design="~ age + condition", batch=None),
        "samples.tsv: column 'age': holds an infinite value"),
    "infinite dose": (
        lambda t: _screen(t, lambda m: m.assign(dose=m["dose"].replace("10.0", "inf"))),
        "plate_map.tsv: column 'dose': infinite for well(s)"),
    "compounds pooled under one condition label": (
        lambda t: _screen(t, lambda m: m.assign(compound=m["compound"].replace(
            {"cpdA": "cpd A", "cpdB": "cpd-A"}))), "would become condition 'cpd-A_1uM'"),
    "repeated study.yaml key (last one won)": (
        lambda t: _with(t, STUDY_FILE, "id: other\n", append=True), "key 'id' is repeated"),
    "design that runs code (np.savetxt wrote a file)": (
        lambda t: _bulk(t, design=f"~ condition + np.savetxt('{t}/pwned', np.ones(1))"),
        "character '.' is not allowed"),
}


@pytest.mark.parametrize("name", list(REGRESSIONS))
def test_regression(tmp_path, name):
    build, expected = REGRESSIONS[name]
    folder = build(tmp_path)
    report = validate_study(folder)
    check_report(report, folder, Tally())
    found = "\n".join(str(p) for p in report.problems)
    if expected:
        assert expected in found, found
    else:  # these studies are valid: the crash was in a valid input
        assert report.study is not None, found
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("name", [n for n, (_, expected) in REGRESSIONS.items() if expected])
def test_dge_validate_exits_cleanly(tmp_path, name):
    """``dge validate`` on the regression cases: exit code 1, every problem printed, no
    traceback (``dge`` here lets exceptions propagate, so a crash fails the test)."""
    folder = REGRESSIONS[name][0](tmp_path)
    result = dge("validate", str(folder))
    assert result.exit_code == 1, result.output
    assert "problem(s) in study" in result.output and "Traceback" not in result.output
    assert REGRESSIONS[name][1] in result.output
