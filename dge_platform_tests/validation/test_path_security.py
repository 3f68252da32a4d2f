"""Nothing a study supplies reaches outside the data root (docs/security.md).

Study ids (study.yaml, registered folder names, ``dge add``, ``dge run``) must match the id
pattern; a path in study.yaml is relative to the study folder and, after symbolic links are
resolved, must stay inside it. Every attempt is a problem naming study.yaml and the key.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from dge_platform._core.study_ids import is_valid_study_id
from dge_platform.registry import add_study, fingerprint
from dge_platform.study.paths import STUDY_FILE
from dge_platform.validation import input_files, validate_study
from dge_platform_tests.conftest import BUNDLED, FIXTURES, dge, write_screen, write_study

TENX = FIXTURES / "tenx" / "3.0.0" / "filtered_feature_bc_matrix"
OUTSIDE = "leads outside the study folder"


def problems_of(folder: Path, **kwargs: object) -> list[str]:
    report = validate_study(folder, **kwargs)
    assert report.study is None, "expected the study to be refused"
    return [str(p) for p in report.problems]


def set_yaml(folder: Path, **changes: object) -> None:
    config = yaml.safe_load((folder / STUDY_FILE).read_text())
    config.update(changes)
    (folder / STUDY_FILE).write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder next to the study (outside it) holding copies of valid inputs."""
    folder = tmp_path / "outside"
    write_study(folder)
    return folder


def singlecell_study(folder: Path, counts: str = "cells.h5ad") -> Path:
    """A small valid single-cell study: an h5ad (or a 10x folder) and a cell sheet."""
    folder.mkdir(parents=True)
    if counts == "cells.h5ad":
        cells = [f"c{i}" for i in range(40)]
        ad.AnnData(X=sp.csr_matrix(np.random.default_rng(0).poisson(3, (40, 30))
                                   .astype(np.float32)), obs=pd.DataFrame(index=cells)
                   ).write_h5ad(folder / counts)
    else:
        shutil.copytree(TENX, folder / counts)
        cells = pd.read_csv(TENX / "barcodes.tsv.gz", header=None)[0].tolist()
    pd.DataFrame({"cell_id": cells, "donor": [f"d{i % 4}" for i in range(len(cells))],
                  "condition": [("ctrl", "stim")[(i // 4) % 2] for i in range(len(cells))],
                  "cell_type": "T"}).to_csv(folder / "cells.tsv", sep="\t", index=False)
    (folder / STUDY_FILE).write_text(yaml.safe_dump({
        "id": "sc", "kind": "singlecell", "organism": "Homo sapiens", "counts": counts,
        "cells": "cells.tsv", "donor": "donor", "cell_type": "cell_type",
        "design": "~ donor + condition", "contrasts": [
            {"name": "s", "factor": "condition", "level": "stim", "reference": "ctrl"}]}))
    return folder


# --- study ids ---

BAD_IDS = ["../x", "a/b", ".", "..", "x\n", "A", "x" * 64, "", "-x", "_x", "\u00e9", "a\x00b",
           "a b", "x.y", "~", "/abs"]


@pytest.mark.parametrize("bad_id", BAD_IDS)
def test_study_yaml_id_must_match_the_pattern(tmp_path, bad_id):
    folder = write_study(tmp_path / "toy", config={"id": bad_id})
    assert not is_valid_study_id(bad_id)
    assert any(p.startswith("study.yaml: id: invalid study id") for p in problems_of(folder))


@pytest.mark.parametrize("good_id", ["x" * 63, "0", "a-b_c", "airway"])
def test_ids_at_the_edge_of_the_pattern_are_valid(good_id):
    assert is_valid_study_id(good_id)


def test_registered_folder_name_must_be_a_valid_id(tmp_path):
    folder = write_study(tmp_path / "My Study")
    assert problems_of(folder, expected_id="My Study")[0].startswith(
        "study.yaml: id: the study's folder name 'My Study' is not a valid study id")


def test_registered_folder_that_is_a_symlink_is_refused(home, outside):
    os.symlink(outside, home.studies / "toy")
    found = problems_of(home.studies / "toy", expected_id="toy")
    assert found == ["study.yaml: the study folder 'toy' is a symbolic link; registered studies "
                     "must be folders inside the data root -> register the study with 'dge "
                     "add', which copies its files"]


@pytest.mark.parametrize("bad_id", ["../escape", "a/b", "/tmp/x"])
def test_dge_add_refuses_bad_ids_and_writes_nothing(home, tmp_path, bad_id):
    source = write_study(tmp_path / "incoming", config={"id": bad_id})
    result = dge("add", str(source))
    assert result.exit_code == 1 and "invalid study id" in result.output
    assert "Traceback" not in result.output
    assert list(home.studies.iterdir()) == [] and not (home.root / "escape").exists()


@pytest.mark.parametrize("bad_id", ["../x", "x/y", "toy\n", ".", "TOY"])
def test_dge_run_refuses_ids_that_are_not_registered_studies(home, tmp_path, bad_id):
    add_study(home, write_study(tmp_path / "toy"))
    result = dge("run", bad_id)
    assert result.exit_code == 1 and "no registered study" in result.output
    assert "Traceback" not in result.output


# --- paths written in study.yaml ---

PATH_VECTORS = {
    "/etc/passwd": "leads outside the study folder (absolute path)",
    "../outside/counts.tsv": "leads outside the study folder ('..')",
    "../../etc/passwd": "leads outside the study folder ('..')",
    "sub/../../outside/counts.tsv": "leads outside the study folder ('..')",
    "~/counts.tsv": "starts with '~' (home folders are not expanded)",
    "~root/.ssh/id_rsa": "starts with '~' (home folders are not expanded)",
    "http://example.org/counts.tsv": "is a URL; only files inside the study folder are read",
    "file:///etc/passwd": "is a URL; only files inside the study folder are read",
    "counts\x00.tsv": "contains a NUL byte",
}


def _study_with(kind: str, key: str, value: str, tmp_path: Path) -> Path:
    if kind == "screen":
        folder = write_screen(tmp_path / "study")
    elif kind == "singlecell":
        folder = singlecell_study(tmp_path / "study")
    else:
        folder = write_study(tmp_path / "study")
    set_yaml(folder, **{key: [value] if key == "gene_sets" else value})
    return folder


@pytest.mark.parametrize("kind,key,field", [
    ("bulk", "counts", "counts"), ("bulk", "samples", "samples"),
    ("bulk", "gene_sets", "gene_sets[0]"), ("screen", "plate_map", "plate_map"),
    ("screen", "counts", "counts"), ("singlecell", "cells", "cells"),
    ("singlecell", "counts", "counts")])
@pytest.mark.parametrize("vector", list(PATH_VECTORS))
def test_paths_in_study_yaml_stay_inside_the_study(tmp_path, outside, kind, key, field, vector):
    folder = _study_with(kind, key, vector, tmp_path)
    found = problems_of(folder)
    assert any(p.startswith(f"study.yaml: {field}: ") and PATH_VECTORS[vector] in p
               for p in found), found
    assert not [f for f in input_files(folder) if folder.resolve() not in f.resolve().parents]


def test_glob_patterns_follow_the_same_rules(tmp_path, outside):
    folder = write_screen(tmp_path / "screen")
    for pattern, why in (("/etc/*", "(absolute path)"), ("../*/*.tsv", "('..')"),
                         ("counts/../../*/*.tsv", "('..')")):
        set_yaml(folder, counts=pattern)
        assert f"study.yaml: counts: pattern {pattern!r} leads outside the study folder {why}" \
            in problems_of(folder)[0]


def test_dotdot_that_stays_inside_is_allowed(tmp_path):
    folder = write_study(tmp_path / "toy", config={"counts": "sub/../counts.tsv"})
    assert validate_study(folder).problems == []


# --- symbolic links inside study folders ---

@pytest.mark.parametrize("name,key", [("counts.tsv", "counts"), ("samples.tsv", "samples"),
                                      ("sets.gmt", "gene_sets[0]")])
def test_file_symlink_pointing_outside_is_refused(tmp_path, outside, name, key):
    folder = write_study(tmp_path / "toy", config={"gene_sets": ["sets.gmt"]})
    target = outside / ("counts.tsv" if name == "sets.gmt" else name)
    (folder / name).unlink(missing_ok=True)
    os.symlink(target, folder / name)
    assert any(p.startswith(f"study.yaml: {key}: path '{name}' {OUTSIDE} through a symbolic "
                            "link") for p in problems_of(folder))


def test_study_yaml_symlinked_outside_is_refused(tmp_path, outside, home):
    folder = write_study(tmp_path / "toy")
    (folder / STUDY_FILE).unlink()
    os.symlink(outside / STUDY_FILE, folder / STUDY_FILE)
    assert problems_of(folder) == [f"study.yaml: path 'study.yaml' {OUTSIDE} through a symbolic "
                                   "link -> name a file inside the study folder by its path "
                                   "relative to the folder; copy shared files in (symbolic "
                                   "links must stay inside the folder)"]
    assert input_files(folder) == [] and fingerprint(folder)
    result = dge("add", str(folder))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert list(home.studies.iterdir()) == []


@pytest.mark.parametrize("counts", ["sub/counts.tsv", "sub/*.tsv"])
def test_directory_symlink_pointing_outside_is_refused(tmp_path, outside, counts):
    folder = write_study(tmp_path / "toy", config={"counts": counts})
    os.symlink(outside, folder / "sub")
    found = problems_of(folder)
    assert any(p.startswith("study.yaml: counts: ") and OUTSIDE in p for p in found), found
    assert all(folder.resolve() in f.resolve().parents or f.name == STUDY_FILE
               for f in input_files(folder))


def test_10x_folder_member_symlinked_outside_is_refused(tmp_path, outside):
    folder = singlecell_study(tmp_path / "sc", counts="mtx")
    assert validate_study(folder).problems == []
    (folder / "mtx" / "barcodes.tsv.gz").unlink()
    os.symlink(TENX / "barcodes.tsv.gz", folder / "mtx" / "barcodes.tsv.gz")
    assert problems_of(folder)[0].startswith(
        f"study.yaml: counts: path 'mtx/barcodes.tsv.gz' {OUTSIDE} through a symbolic link")


def test_symlink_loop_is_a_problem_not_a_crash(tmp_path):
    folder = write_study(tmp_path / "toy")
    (folder / "samples.tsv").unlink()
    os.symlink("samples.tsv", folder / "samples.tsv")
    assert "study.yaml: samples: path 'samples.tsv' cannot be resolved (symbolic link loop)" \
        in problems_of(folder)[0]


def test_symlink_inside_the_study_is_allowed_and_registered_as_a_file(tmp_path, home):
    folder = write_study(tmp_path / "toy")
    (folder / "data").mkdir()
    (folder / "counts.tsv").rename(folder / "data" / "counts.tsv")
    os.symlink("data/counts.tsv", folder / "counts.tsv")
    assert validate_study(folder).problems == []
    add_study(home, folder)
    registered = home.study_dir("toy")
    copied = registered / "counts.tsv"
    assert copied.is_file() and not copied.is_symlink()
    assert validate_study(registered, expected_id="toy").problems == []


def test_dge_add_refuses_a_study_linking_outside(tmp_path, outside, home):
    folder = write_study(tmp_path / "toy")
    (folder / "samples.tsv").unlink()
    os.symlink(outside / "samples.tsv", folder / "samples.tsv")
    result = dge("add", str(folder))
    assert result.exit_code == 1 and OUTSIDE in result.output
    assert "Traceback" not in result.output and list(home.studies.iterdir()) == []


# --- the sensor's fingerprint sees exactly the validated files ---

def test_fingerprint_survives_hostile_paths_and_lists_only_inside_files(tmp_path, outside):
    folder = write_study(tmp_path / "toy")
    for value in [*PATH_VECTORS, "x" * 5000, "/etc/*", "../*/*"]:
        set_yaml(folder, counts=value, samples=value, gene_sets=[value])
        assert input_files(folder) == [folder / STUDY_FILE]
        assert fingerprint(folder)


@pytest.mark.parametrize("make", ["bulk", "screen", "singlecell h5ad", "singlecell 10x",
                                  "pasilla", "macseq_pmmsq033"])
def test_fingerprint_equals_the_input_hash_recorded_at_ingest(tmp_path, make):
    """The sensor and ``dge status`` compare the two: before, studies with a ``cells:`` sheet
    or a 10x folder never matched, so they always showed "inputs changed"."""
    if make in ("pasilla", "macseq_pmmsq033"):
        folder = shutil.copytree(BUNDLED / make, tmp_path / make)
    elif make.startswith("singlecell"):
        folder = singlecell_study(tmp_path / "sc", "mtx" if "10x" in make else "cells.h5ad")
    else:
        folder = (write_screen if make == "screen" else write_study)(tmp_path / "s")
    study = validate_study(folder).study
    assert study is not None
    assert input_files(folder) == study.files
    assert fingerprint(folder) == study.input_hash


@pytest.mark.parametrize("name", sorted(p.name for p in BUNDLED.iterdir() if p.is_dir()))
def test_bundled_study_files_are_inside_their_folders(name):
    folder = BUNDLED / name
    files = input_files(folder)
    assert len(files) >= 2 and files[0] == folder / STUDY_FILE
    assert all(folder.resolve() in f.resolve().parents and not f.is_symlink() for f in files)


@pytest.mark.parametrize("study_id", ["../x", "a/b", "", "A", "x\x00"])
def test_data_root_refuses_study_ids_that_name_paths(home, study_id):
    with pytest.raises(ValueError, match="invalid study id"):
        home.study_dir(study_id)


def test_dge_run_skips_stray_folders_that_are_not_study_ids(home):
    (home.studies / "Not A Study").mkdir()
    result = dge("run")
    assert result.exit_code == 0, result.output
    assert "skipping folders" in result.output and "'Not A Study'" in result.output
    assert "no studies registered" in result.output


def test_add_removes_staging_copies_of_killed_adds(home, tmp_path):
    from dge_platform.storage.warehouse import STALE_TEMP_SECONDS

    old = home.studies / ".incoming-toy-deadbeef"
    fresh = home.studies / ".retired-toy-cafecafe"  # another add may still be using it
    for folder in (old, fresh):
        (folder / "sub").mkdir(parents=True)
    stamp = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(old, (stamp, stamp))
    add_study(home, write_study(tmp_path / "toy"))
    assert not old.exists() and fresh.exists()
    assert (home.studies / "toy" / "study.yaml").exists()
