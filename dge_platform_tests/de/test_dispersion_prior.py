"""The dispersion prior with 1-3 residual degrees of freedom, where DESeq2's
``estimateDispersionsPriorVar`` simulates: R's random stream replayed draw for draw, the
prior variance on R's own residuals, and the engine on the Kang 2018 pseudobulks (2 donors
x 2 conditions, ``~ donor + condition``: 1 residual df).

R references: ``fixtures/r_deseq2/make_r_prior_var.R`` (DESeq2 1.38.3, R 4.2.2).
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pandas as pd
import pytest

import dge_platform.de.engine as engine
from dge_platform.de.dispersion import (
    _EXP_Q,
    RRandomStream,
    _exp_rand_length,
    _exp_rand_value,
    simulated_prior_variance,
)
from dge_platform.study.config import Contrast
from dge_platform_tests._helpers import jaccard
from dge_platform_tests.conftest import FIXTURES

R_DESEQ2 = FIXTURES / "r_deseq2"
MONOCYTES = ["CD14+ Monocytes", "FCGR3A+ Monocytes"]


@pytest.fixture(scope="module")
def r_prior() -> pd.Series:
    return pd.read_csv(R_DESEQ2 / "pseudobulk_kang_r_prior_var.csv", index_col="cell_type",
                       float_precision="round_trip")["disp_prior_var"]


@pytest.fixture(scope="module")
def r_dispersions() -> pd.DataFrame:
    return pd.read_csv(R_DESEQ2 / "pseudobulk_kang_r_dispersions.csv.gz",
                       float_precision="round_trip")


def test_r_random_stream_replays_set_seed():
    """set.seed(2); rchisq(1e4, 1); rnorm(1e4, 0, sqrt(.5)); rchisq(1e4, 2); rchisq(1e4, 3);
    runif(5): the same draws, and the same number of uniforms consumed (the trailing runif)."""
    stream = RRandomStream(2)
    ours = {"rchisq_1": stream.rchisq(10_000, 1),
            "rnorm_sd_sqrt_half": stream.rnorm(10_000, 0.0, math.sqrt(0.5)),
            "rchisq_2": stream.rchisq(10_000, 2), "rchisq_3": stream.rchisq(10_000, 3),
            "runif": stream.runif(5)}
    draws = pd.read_csv(R_DESEQ2 / "r_rng_draws.csv", float_precision="round_trip")
    for name, rows in draws.groupby("stream"):
        np.testing.assert_allclose(ours[name][rows["index"] - 1], rows["value"], rtol=1e-12,
                                   err_msg=name)
    np.testing.assert_array_equal(ours["runif"], draws.loc[draws["stream"] == "runif", "value"])
    assert RRandomStream(2).rnorm(3, 0.0, 0.0).tolist() == [0.0] * 3  # sd 0 draws nothing


def _exp_rand_r(u: list[float]) -> tuple[float, int]:
    """sexp.c's exp_rand() on the uniforms ``u``, line by line: (value, uniforms read)."""
    q = _EXP_Q
    a, used = 0.0, 1
    x = u[0]
    while True:
        x += x
        if x > 1.0:
            break
        a += q[0]
    x -= 1.0
    if x <= q[0]:
        return a + x, used
    i = 0
    umin = u[used]
    used += 1
    while True:
        ustar = u[used]
        used += 1
        umin = min(umin, ustar)
        i += 1
        if not x > q[i]:
            return a + umin * q[0], used


def test_exp_rand_matches_r_line_by_line():
    rng = np.random.default_rng(0)
    firsts = np.r_[rng.random(2000), 0.5, 0.25, 2.0 ** -32, 0.5 * 2.328306437080797e-10,
                   (1 + _EXP_Q[:15]) / 2, np.nextafter((1 + _EXP_Q[:15]) / 2, 1)]
    u = np.concatenate([np.column_stack([firsts, rng.random((len(firsts), 19))]).ravel(),
                        np.zeros(20)])
    at = np.arange(len(firsts)) * 20
    value, length = _exp_rand_value(u, at), _exp_rand_length(u[at])
    for k, start in enumerate(at):
        expected, used = _exp_rand_r(list(u[start:start + 20]))
        assert (value[k], length[k]) == (expected, used), firsts[k]


@pytest.mark.parametrize("cell_type", ["B cells", "CD14+ Monocytes", "CD4 T cells",
                                       "CD8 T cells", "FCGR3A+ Monocytes"])
def test_prior_variance_on_r_residuals_is_rs(cell_type, r_prior, r_dispersions):
    """The simulation on R's residuals gives R's dispPriorVar exactly (same fine-grid point):
    with any other random stream the argmin of the noisy KL curve lands anywhere from 0.25
    to 0.9 on CD14+ monocytes."""
    rows = r_dispersions[(r_dispersions["cell_type"] == cell_type)
                         & (r_dispersions["disp_gene_est"] >= 1e-6)]
    residuals = np.log(rows["disp_gene_est"]) - np.log(rows["disp_fit"])
    start = time.perf_counter()
    ours = simulated_prior_variance(residuals.to_numpy(), df=1)
    elapsed = time.perf_counter() - start
    assert ours == pytest.approx(r_prior[cell_type], abs=1e-12)
    assert elapsed < 5  # about 0.3 s


@pytest.mark.parametrize("cell_type", ["B cells", "CD14+ Monocytes", "CD4 T cells",
                                       "CD8 T cells", "FCGR3A+ Monocytes"])
def test_genewise_dispersions_are_rs(cell_type, r_dispersions):
    """With 1 residual df the likelihood is flat: R's line search stops well short of its
    optimum on many genes and grid-refits those it gives up on, and the prior variance
    turns on those stopping points. The engine's estimates are R's: the same genes above
    1e-6 (those entering the prior), to 1e-4 (R's IRLS means differ in the last digits)."""
    counts = pd.read_csv(R_DESEQ2 / "pseudobulk_kang_counts.tsv.gz", sep="\t", index_col=0)
    samples = pd.read_csv(R_DESEQ2 / "pseudobulk_kang_samples.tsv", sep="\t",
                          dtype={"donor": str})
    cd = samples[samples["cell_type"] == cell_type].set_index("pseudobulk_sample")
    donors = sorted(cd["donor"].unique())
    design = engine.GroupBlockDesign((cd["condition"] == "stim").to_numpy(int),
                                     ("ctrl", "stim"),
                                     (cd[["donor"]].to_numpy() == donors[1:]).astype(float))
    counts = counts[cd.index]
    counts = counts[(counts > 0).any(axis=1)]
    values = counts.to_numpy(np.int64)
    sf = engine.size_factors(values, engine.size_factor_method(values))
    ours, _ = engine.genewise_dispersions(values, sf, design, max_disp=10.0)
    r = r_dispersions[r_dispersions["cell_type"] == cell_type].set_index("gene_id")
    theirs = r.loc[counts.index, "disp_gene_est"].to_numpy()
    above = theirs >= 1e-6
    np.testing.assert_array_equal(ours >= 1e-6, above)
    np.testing.assert_allclose(ours[above], theirs[above], rtol=1e-4)


def _fit_kang(cell_type: str):
    counts = pd.read_csv(R_DESEQ2 / "pseudobulk_kang_counts.tsv.gz", sep="\t", index_col=0)
    samples = pd.read_csv(R_DESEQ2 / "pseudobulk_kang_samples.tsv", sep="\t",
                          dtype={"donor": str})
    cd = samples[samples["cell_type"] == cell_type].set_index("pseudobulk_sample")
    groups = pd.Series(pd.Categorical(cd["condition"], categories=["ctrl", "stim"]),
                       index=cd.index)
    donors = sorted(cd["donor"].unique())
    block = pd.DataFrame({d: (cd["donor"] == d).astype(float) for d in donors[1:]},
                         index=cd.index)
    contrast = Contrast(name="stim_vs_ctrl", factor="condition", level="stim",
                        reference="ctrl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = engine.fit_group_design(counts[cd.index], groups, block, [contrast],
                                      shrink=False)
    r = pd.read_csv(R_DESEQ2 / "pseudobulk_kang_r_results.csv.gz")
    merged = fit.results.merge(r[r["cell_type"] == cell_type], on="gene_id",
                               suffixes=("", "_r"))
    return (set(merged.loc[merged["padj"] < 0.05, "gene_id"]),
            set(merged.loc[merged["padj_r"] < 0.05, "gene_id"]))


@pytest.fixture
def record_prior(monkeypatch):
    seen = []

    def recording(residuals, df):
        out = prior(residuals, df)
        seen.append(out[1])
        return out

    prior = engine.dispersion_prior
    monkeypatch.setattr(engine, "dispersion_prior", recording)
    return seen


@pytest.mark.parametrize("cell_type", MONOCYTES)
def test_engine_downstream_of_r_genewise_dispersions_matches_r(cell_type, r_prior,
                                                               r_dispersions, record_prior,
                                                               monkeypatch):
    """Given R's gene-wise dispersions, the engine's trend, simulated prior, MAP dispersions
    and Wald tests reproduce R's prior variance and its DEG set."""
    r_genewise = r_dispersions.loc[r_dispersions["cell_type"] == cell_type, "disp_gene_est"]
    genewise = engine.genewise_dispersions

    def r_first(counts, *args, **kwargs):
        ours, mu = genewise(counts, *args, **kwargs)
        return (r_genewise.to_numpy() if len(record_prior) == 0 else ours), mu

    monkeypatch.setattr(engine, "genewise_dispersions", r_first)
    ours, theirs = _fit_kang(cell_type)
    assert record_prior[0] == pytest.approx(r_prior[cell_type], rel=0.15)
    assert len(theirs) >= 100 and jaccard(ours, theirs) >= 0.95


@pytest.mark.parametrize("cell_type", MONOCYTES)
def test_engine_prior_variance_and_degs_match_r(cell_type, r_prior, record_prior):
    ours, theirs = _fit_kang(cell_type)
    assert record_prior[0] == pytest.approx(r_prior[cell_type], rel=0.15)
    assert jaccard(ours, theirs) >= 0.9
