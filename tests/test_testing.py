"""The finite-difference checkers (minisgd.testing) that every derivative test relies on: they accept exact
derivatives of closed-form functions and reject the mistakes they exist to catch (a wrong scale, one wrong entry,
a transposed factor, a wrong sign), and finite_difference_jacobian reproduces a known Jacobian to its stated error."""
import numpy as np
import pytest

from minisgd.testing import (assert_allclose_relative, check_gradient, check_jacobian_vector, directional_derivative,
                             finite_difference_jacobian, random_unit_directions)

A = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, -0.3], [0.0, -0.3, 3.0]])
B = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 4.0]])


def f(x):  # a smooth function with a known gradient: 1/2 x^T A x + sum sin(x)
    return 0.5 * x @ A @ x + np.sum(np.sin(x))


def grad_f(x):
    return A @ x + np.cos(x)


def g(x):  # R^3 -> R^2, g(x) = B exp(x), Jacobian B diag(exp(x))
    return B @ np.exp(x)


X0 = np.array([0.3, -1.2, 0.7])


def test_an_exact_gradient_passes():
    check_gradient(f, grad_f, X0)


@pytest.mark.parametrize("wrong", [
    lambda x: 2 * grad_f(x),                               # a wrong scale (a missing 1/N)
    lambda x: grad_f(x) + np.array([0.0, 1e-3, 0.0]),      # one wrong entry, small
    lambda x: A.T @ x + np.cos(x) + np.array([0, 0, 0.5]),  # a wrong term
    lambda x: A @ x - np.cos(x),                           # a wrong sign
])
def test_wrong_gradients_fail(wrong):
    with pytest.raises(AssertionError):
        check_gradient(f, wrong, X0)


def test_jacobian_vector_products():
    check_jacobian_vector(g, lambda x, v: B @ (np.exp(x) * v), X0)
    with pytest.raises(AssertionError):
        check_jacobian_vector(g, lambda x, v: B @ v, X0)  # the diag(exp(x)) factor dropped


def test_finite_difference_jacobian_and_directional_derivative():
    J = finite_difference_jacobian(g, X0)
    np.testing.assert_allclose(J, B * np.exp(X0)[None, :], rtol=1e-9, atol=1e-12)  # FD error ~1e-10 at h = 1e-5
    v = random_unit_directions(X0.shape, 1, seed=3)[0]
    assert np.linalg.norm(v) == pytest.approx(1.0, rel=1e-15)
    assert directional_derivative(f, X0, v) == pytest.approx(grad_f(X0) @ v, rel=1e-9)


def test_assert_allclose_relative_names_the_worst_entry():
    expected = np.array([1.0, 100.0, 1e-8])
    assert_allclose_relative(expected * (1 + 1e-12), expected, rtol=1e-10)
    assert_allclose_relative(expected + 1e-9, expected, rtol=1e-10, relative_to="max")  # 1e-9 <= 1e-10 * 100
    with pytest.raises(AssertionError, match="gradient"):
        assert_allclose_relative(expected + np.array([0, 0, 1e-9]), expected, rtol=1e-6, what="gradient")
    with pytest.raises(AssertionError):
        assert_allclose_relative(np.ones(3), np.ones(4), rtol=1)
