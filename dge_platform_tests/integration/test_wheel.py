"""The built wheel, installed in a fresh virtual environment, validates and runs a bundled
study: the package carries everything it reads (gene sets, annotation) inside itself.

The fresh environment gets only the wheel; its dependencies come from the test environment's
site-packages through a path entry (no download), which does not carry the editable install
of the source tree: ``dge_platform`` can only be imported from the wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from dge_platform_tests.conftest import BUNDLED, REPO


def _run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                            timeout=600, **kwargs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_wheel_in_a_fresh_venv_runs_the_bundled_bulk_study(tmp_path):
    source = tmp_path / "source"  # a clean copy: no build/ or egg-info of the checkout
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "site", "*.egg-info", "__pycache__", "warehouse",
        "dagster_home", "catalog.duckdb*", ".hypothesis", ".pytest_cache"))
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", tmp_path / "dist", source)
    wheel, = (tmp_path / "dist").glob("dge_platform-*.whl")

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
         "-q", wheel)
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
                .stdout.strip())
    (site / "test_env_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")

    where = _run(python, "-c", "import dge_platform.enrichment.gene_sets as g; "
                 "print(g.__file__); print(g.GENESETS_DIR)", cwd=tmp_path).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in where), where
    assert len(list(Path(where[1]).glob("*.gmt.gz"))) == 4

    home = tmp_path / "home"
    shutil.copytree(BUNDLED / "airway", home / "studies" / "airway")
    env = {**os.environ, "DGE_HOME": str(home)}
    env.pop("DGE_WAREHOUSE", None)
    dge = env_dir / "bin" / "dge"
    validated = _run(dge, "validate", home / "studies" / "airway", cwd=tmp_path, env=env)
    assert "OK: study 'airway' (bulk)" in validated.stdout
    ran = _run(dge, "run", "airway", cwd=tmp_path, env=env)
    assert "dex_trt_vs_untrt" in ran.stdout and "airway: ok" in ran.stdout
    report = home / "warehouse" / "reports" / "study_id=airway" / "report.html"
    assert "Hallmark" in report.read_text()  # shipped gene sets found through the wheel
