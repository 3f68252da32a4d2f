"""Plain helpers (functions, constants) shared by several test modules; fixtures are in
conftest.py. Test modules import these from here, never from each other."""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import signal
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import false_discovery_control

from dge_platform.counting.salmon import SalmonError, salmon_executable
from dge_platform.storage.catalog import connect, query
from dge_platform.storage.tables import STAT_COLUMNS
from dge_platform.validation import validate_study

# --- Bulk DE: planted truth and signature overlap (test_bulk_de, test_deseq_engine, ...)

def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def simulate(n_genes=2000, n_per_group=4, de_fraction=0.1, seed=7):
    """Negative-binomial counts with a DESeq2-like dispersion trend and planted fold changes."""
    rng = np.random.default_rng(seed)
    mean = np.exp(rng.uniform(np.log(20), np.log(5000), n_genes))
    dispersion = 0.01 + 1.5 / mean
    lfc = np.zeros(n_genes)
    de = rng.choice(n_genes, int(de_fraction * n_genes), replace=False)
    lfc[de] = rng.choice([-1, 1], len(de)) * rng.uniform(0.8, 2.5, len(de))
    groups = np.array(["ctrl"] * n_per_group + ["treat"] * n_per_group)
    sizes = rng.uniform(0.7, 1.4, len(groups))
    mu = mean[:, None] * sizes[None, :] * np.where(groups == "treat", 2 ** lfc[:, None], 1)
    r = 1 / dispersion[:, None]
    counts = rng.negative_binomial(r, r / (r + mu))
    samples = [f"s{i}" for i in range(len(groups))]
    frame = pd.DataFrame({"sample": samples, "condition": groups}).set_index("sample")
    return (pd.DataFrame(counts, index=[f"g{i}" for i in range(n_genes)], columns=samples),
            frame, set(f"g{i}" for i in de))



# --- Study validation (test_validation, test_enrichment)

def problems_of(folder) -> list[str]:
    report = validate_study(folder)
    assert report.study is None, "expected the study to be rejected"
    return [str(p) for p in report.problems]


def edit_yaml(folder, **changes):
    path = folder / "study.yaml"
    config = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))



# --- Salmon (test_salmon_quant, test_library_counts)

def require_salmon() -> str:
    """Salmon's path; skip without it, or fail under CI."""
    try:
        return salmon_executable()
    except SalmonError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (.ci/run should have installed it)", pytrace=False)
        pytest.skip(str(exc))



# --- dagster-webserver processes (test_webserver, test_network_binding)

STARTUP_TIMEOUT = 90.0


def _stop(proc: subprocess.Popen) -> None:
    """End the webserver and its code-server child (same process group)."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure no child of the group lingers.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return



# --- Warehouse and catalog (test_catalog, test_s3_warehouse)

def counts_frame(n: int, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"gene_id": [f"g{i}" for i in range(n)], "sample": "s1",
                         "count": range(offset, offset + n)})


def run_on(surface: str, home, sql: str) -> pd.DataFrame:
    """``sql`` through ``query`` (``dge sql``) or the notebook connection (``connect``)."""
    if surface == "query":
        return query(home, sql)
    with connect(home) as con:
        return con.sql(sql).df()


# Refused through both surfaces, whatever the warehouse ({wh}: its location; {tmp}: a local
# folder outside it holding outside.parquet). DuckDB itself would run the first two: its file
# confinement lets the warehouse be written too, so the statement check stops them.
REFUSED_BY_CONNECTION = [
    ("COPY raw_counts TO '{wh}/raw_counts/study_id=s1/data.parquet' (FORMAT parquet)",
     "COPY statements are not allowed"),
    ("EXPORT DATABASE '{wh}/dump'", "EXPORT statements are not allowed"),
    ("COPY (select 1) TO '{tmp}/x.csv'", "COPY statements are not allowed"),
    ("ATTACH '{tmp}/other.duckdb' AS other", "ATTACH statements are not allowed"),
    ("INSTALL httpfs", "LOAD statements are not allowed"),
    ("LOAD httpfs", "LOAD statements are not allowed"),
    ("select * from read_parquet('{tmp}/outside.parquet')", "refused: Permission Error"),
    ("select * from read_csv('/etc/passwd')", "refused: Permission Error"),
]


# --- Reports (test_interactive_report, test_report_browser)

def report_frames(n_genes: int = 400, contrasts: tuple[str, ...] = ("treated_vs_control",
                                                                    "high_vs_control"),
                  seed: int = 0) -> dict[str, pd.DataFrame]:
    """The tables ``build_report`` takes, small: deg_results of each contrast (about a tenth
    of the genes untested, padj null; a few genes without a symbol; 40 genes planted up or
    down), samples and sample_qc of a counts-matrix study (counting statistics null), and a
    few enrichment terms (GO, Hallmark) per contrast."""
    rng = np.random.default_rng(seed)
    genes = [f"ENSG{i:011d}" for i in range(n_genes)]
    symbols = [None if i % 97 == 5 else f"GENE{i}" for i in range(n_genes)]
    results = []
    for contrast in contrasts:
        lfc = rng.normal(0, 0.4, n_genes)
        lfc[:40] = rng.choice([-1, 1], 40) * rng.uniform(1.5, 4, 40)
        pvalue = np.where(np.arange(n_genes) < 40, 10.0 ** -rng.uniform(4, 30, n_genes),
                          rng.uniform(0, 1, n_genes))
        tested = rng.uniform(0, 1, n_genes) > 0.1
        padj = np.full(n_genes, np.nan)
        padj[tested] = false_discovery_control(pvalue[tested])
        results.append(pd.DataFrame({
            "contrast": contrast, "gene_id": genes, "gene_symbol": symbols,
            "base_mean": np.exp(rng.uniform(1, 9, n_genes)), "log2_fold_change": lfc,
            "lfc_se": 0.3, "stat": lfc / 0.3, "pvalue": pvalue, "padj": padj,
            "log2_fold_change_shrunk": lfc * 0.8, "significant": padj < 0.05,
            "compound": None, "dose": np.nan, "cell_type": None}))
    samples = [f"s{i}" for i in range(1, 7)]
    stats = pd.DataFrame({c: pd.array([None] * 6, dtype="string" if kind == "VARCHAR" else
                                      "Int64" if kind == "BIGINT" else "Float64")
                          for c, kind in STAT_COLUMNS.items()}).assign(count_source="matrix")
    sheet = pd.DataFrame({"sample": samples, "condition": ["control", "treated"] * 3,
                          "library_size": rng.integers(1_000_000, 2_000_000, 6)})
    sample_qc = pd.concat([sheet[["sample", "library_size"]], stats], axis=1).assign(
        pc1=rng.normal(size=6), pc2=rng.normal(size=6), mean_distance=20.0, outlier=False,
        outlier_reason="").set_index("sample")
    terms = ["GO:0006955_immune_response", "GO:0045087_innate_immune_response",
             "HALLMARK_INTERFERON_ALPHA_RESPONSE"]
    enrichment = pd.DataFrame([
        {"contrast": contrast, "cell_type": None, "collection": "GO_BP" if t[:3] == "GO:"
         else "Hallmark", "term": t, "method": method, "size": 20 + 10 * k,
         "score": (k + 1) * (-1 if method == "gsea_prerank" and k == 1 else 1),
         "pvalue": 1e-4 * (k + 1),
         "padj": 1e-3 * (k + 1), "genes": ",".join(symbols[10:25])}
        for contrast in contrasts for method in ("gsea_prerank", "ora_up", "ora_down")
        for k, t in enumerate(terms)])
    return {"results": pd.concat(results, ignore_index=True),
            "samples": pd.concat([sheet, stats], axis=1), "sample_qc": sample_qc,
            "enrichment": enrichment}


REPORT_STUDY = {"id": "toy", "title": "Toy study", "kind": "bulk", "organism": "Homo sapiens",
                "design": "~ condition", "batch": None, "alpha": 0.05, "lfc_threshold": 0.0}


def explorer_panels(page: str) -> list[dict]:
    """The DEG explorer's panels of a report, decoded as the page decodes them (base64,
    gzip, JSON): each with ``volcano``, ``ma`` (plotly figures) and ``table``."""
    data = re.search(r"<script type='application/json' class='deg-data'>(.*?)</script>",
                     page, re.S)
    assert data, "the report has no DEG explorer"
    return [json.loads(gzip.decompress(base64.b64decode(packed)))
            for packed in json.loads(data[1])["panels"]]
