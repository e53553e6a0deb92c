"""The summaries' arithmetic and text (minisgd.experiments.report) against hand-computed values."""
import math

import numpy as np
import pytest

from minisgd.experiments.report import epoch_means, fmt, markdown_table, mean_std, pm, where


def test_mean_std_is_the_sample_std_of_the_finite_values():
    m, s = mean_std([1.0, 2.0, 4.0, None, float("nan"), float("inf")])
    assert m == pytest.approx(7 / 3) and s == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2
                                                                         + (4 - 7 / 3) ** 2) / 2))
    assert mean_std([5.0]) == (5.0, 0.0)
    assert all(math.isnan(v) for v in mean_std([]))


def test_pm_formats_mean_and_std():
    assert pm([0.9801, 0.9805], 100) == "98.03 ± 0.03"
    assert pm([1e-3, 3e-3], digits=2, significant=True) == "0.002 ± 0.0014"
    assert pm([float("nan")]) == "n/a"


def test_markdown_table_and_fmt():
    rows = [{"B": 32, "acc": 0.98123, "note": None}, {"B": 64, "acc": float("nan"), "note": "x"}]
    assert markdown_table(rows) == ("| B | acc | note |\n|---|---|---|\n| 32 | 0.981 | n/a |\n| 64 | n/a | x |")
    assert markdown_table(rows, columns=["acc"]).splitlines()[0] == "| acc |"
    assert markdown_table([]) == "(no rows)"
    assert fmt(np.int64(3)) == "3" and fmt(12345.678) == "1.23e+04" and fmt("a") == "a"


def test_where_and_epoch_means():
    records = [{"point": {"seed": s, "B": B}} for s in (0, 1) for B in (32, 64)]
    assert where(records, B=64) == [records[1], records[3]]
    assert where(records, B=64, seed=1) == [records[3]]
    history = {"loss": [1.0, 3.0, 2.0, 2.0, 5.0], "epoch": [0, 0, 1, 1, 2]}
    np.testing.assert_allclose(epoch_means(history), [2.0, 2.0, 5.0])
