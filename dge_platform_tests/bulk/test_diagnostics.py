"""Design diagnostics on simulated studies with planted truth: variance shares recovered, and
an undeclared batch found on the leading PC."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dge_platform.bulk.diagnostics import (
    informative_variables,
    pc_associations,
    variance_partition,
)


def _study(shares: dict[str, float], n_genes: int = 2000, seed: int = 0):
    """24 samples, condition (2 levels) x batch (3 levels) balanced, and a numeric age; every
    gene's variance is split as ``shares`` (the rest residual)."""
    rng = np.random.default_rng(seed)
    sheet = pd.DataFrame({
        "condition": np.repeat(["ctrl", "treat"], 12),
        "batch": np.tile(np.repeat(["b1", "b2", "b3"], 4), 2),
        "age": rng.uniform(20, 70, 24).round(1).astype(str),
        "sample": [f"s{i}" for i in range(24)]}, index=[f"s{i}" for i in range(24)])
    effects = {}
    for variable in ("condition", "batch"):
        codes = pd.Categorical(sheet[variable]).codes
        centred = pd.get_dummies(codes).to_numpy(float)
        centred -= centred.mean(axis=0)
        effects[variable] = centred
    age = pd.to_numeric(sheet["age"]).to_numpy()
    effects["age"] = ((age - age.mean()) / age.std())[:, None]
    y = np.zeros((n_genes, 24))
    for variable, share in shares.items():
        signal = effects[variable] @ rng.normal(size=(effects[variable].shape[1], n_genes))
        signal /= signal.std(axis=0, keepdims=True)
        y += (np.sqrt(share) * signal).T
    noise = rng.normal(size=(n_genes, 24))
    y += np.sqrt(1 - sum(shares.values())) * noise
    return pd.DataFrame(y + 8, index=[f"g{i}" for i in range(n_genes)],
                        columns=sheet.index), sheet


def test_variance_partition_recovers_planted_shares():
    planted = {"condition": 0.3, "batch": 0.2, "age": 0.1}
    expression, sheet = _study(planted)
    shares = variance_partition(expression, sheet, ["condition", "batch", "age"]).median()
    for variable, share in planted.items():
        assert abs(shares[variable] - share) < 0.05, (variable, shares[variable])
    assert abs(shares["residual"] - 0.4) < 0.05


def test_an_undeclared_batch_is_found_on_the_leading_pc():
    expression, sheet = _study({"batch": 0.6, "condition": 0.05})
    variables = informative_variables(sheet, list(sheet.columns))
    assert variables == ["condition", "batch", "age"]  # sample ids say nothing
    table = pc_associations(expression, sheet, variables)
    pc1 = table[table["component"] == "PC1"].set_index("variable")
    assert pc1.loc["batch", "test"] == "anova" and pc1.loc["batch", "pvalue"] < 1e-6
    assert pc1.loc["age", "test"] == "correlation" and pc1.loc["age", "pvalue"] > 0.01
    assert table["variance_explained"].between(0, 1).all()


def test_a_variable_determined_by_a_design_variable_is_covered():
    """A screen's compound and dose follow from its condition: the design covers them; a
    plate that cuts across conditions it does not."""
    from dge_platform.bulk.diagnostics import covered_by, separable

    sheet = pd.DataFrame({"condition": ["A_1", "A_1", "A_10", "A_10", "DMSO", "DMSO"],
                          "compound": ["A", "A", "A", "A", "DMSO", "DMSO"],
                          "dose": ["1", "1", "10", "10", "0", "0"],
                          "plate": ["p1", "p2", "p1", "p2", "p1", "p2"]})
    assert covered_by(sheet, "compound", ["condition"])
    assert covered_by(sheet, "dose", ["condition"])
    assert not covered_by(sheet, "plate", ["condition"])
    # compound and dose add no column the condition lacks: left out of the variance fit.
    assert separable(sheet, ["condition", "compound", "dose", "plate"]) == ["condition", "plate"]
