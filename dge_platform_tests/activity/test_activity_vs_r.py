"""Activity against R: the shipped PROGENy model reproduces the progeny package's own unit
test, and the platform's mlm / ulm (decoupler) equal R decoupleR's run_mlm / run_ulm on the
same Wald statistics (fixtures: ``fixtures/r_activity``, README there)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dge_platform.activity.models import progeny_model
from dge_platform.activity.scores import activity
from dge_platform_tests.conftest import FIXTURES

R_ACTIVITY = FIXTURES / "r_activity"


@pytest.mark.parametrize("organism, prefix", [("Homo sapiens", "human"),
                                              ("Mus musculus", "mouse")])
def test_shipped_progeny_model_reproduces_the_package_test(organism, prefix):
    """progeny(expr, scale=TRUE, organism, top=10): expression x top-10 weights, each
    pathway z-scored over samples (sd with n - 1)."""
    expr = pd.read_csv(R_ACTIVITY / f"progeny_{prefix}_input.csv", index_col=0)
    expected = pd.read_csv(R_ACTIVITY / f"progeny_{prefix}_def_expected.csv", index_col=0)
    weights = progeny_model(organism, top=10).pivot(index="target", columns="source",
                                                    values="weight").fillna(0.0)
    genes = [g for g in expr.index if g in weights.index]
    scores = expr.loc[genes].T @ weights.loc[genes]
    scores = (scores - scores.mean()) / scores.std(ddof=1)
    pd.testing.assert_frame_equal(scores[expected.columns], expected, rtol=1e-8, atol=1e-8,
                                  check_names=False)


@pytest.mark.parametrize("method", ["mlm", "ulm"])
def test_activity_equals_r_decoupler(method):
    stats = pd.read_csv(R_ACTIVITY / "stats_input.csv.gz", index_col=0)
    ours = activity(stats, progeny_model("Homo sapiens"), method=method)
    r = pd.read_csv(R_ACTIVITY / f"{method}_progeny.csv.gz")
    both = ours.merge(r, left_on=["condition", "source"], right_on=["condition", "source"],
                      suffixes=("", "_r"))
    assert len(both) == len(r) == 14 * stats.shape[1]
    assert np.corrcoef(both["score"], both["score_r"])[0, 1] >= 0.99
    strong = both[both["score_r"].abs() > 2]
    assert (np.sign(strong["score"]) == np.sign(strong["score_r"])).all()
    # Both are the same least-squares t-values: equal to rounding.
    np.testing.assert_allclose(both["score"], both["score_r"], rtol=1e-6, atol=1e-8)
    finite = both["p_value"] > 1e-300  # R's p of 0 is an underflow (t = 82)
    np.testing.assert_allclose(both.loc[finite, "pvalue"], both.loc[finite, "p_value"],
                               rtol=1e-5, atol=1e-12)
