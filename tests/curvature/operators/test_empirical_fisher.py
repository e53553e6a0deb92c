"""The empirical Fisher operator against the per-example gradients' second moment."""
import numpy as np
import pytest

from minisgd.curvature.operators import EmpiricalFisher, Fisher

from .conftest import check_against_dense


def test_empirical_fisher_is_the_second_moment_of_per_example_gradients(small):
    net, theta, X, y = small
    EF = EmpiricalFisher(net, theta, X, y)
    G = net.per_example_grads(theta, X, y) - net.l2 * theta  # (N, P), the data term's gradients
    ref = G.T @ G / X.shape[0] + net.l2 * np.eye(net.num_params)
    dense = EF.to_dense()
    np.testing.assert_allclose(dense, ref, rtol=0, atol=1e-12 * abs(ref).max())
    check_against_dense(EF, dense, "EmpiricalFisher")


def test_it_is_not_the_fisher(small):
    """The labels are the data's, not the model's: the two differ (by O(1) of the Fisher here, at a random point)."""
    net, theta, X, y = small
    EF, F = EmpiricalFisher(net, theta, X, y).to_dense(), Fisher(net, theta, X).to_dense()
    assert np.linalg.norm(EF - F) > 0.1 * np.linalg.norm(F)


def test_it_needs_the_labels(small):
    net, theta, X, y = small
    with pytest.raises(TypeError):
        EmpiricalFisher(net, theta, X)
