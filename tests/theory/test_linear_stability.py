"""minisgd.theory.linear_stability against independent computations: brute-force enumeration over every batch (and every
sequence of batches), GD iterated by hand on the quadratic model, the dense Hessian's eigh, and the 1-D formula.

Tolerances: the closed forms and the enumerations add the same O(1) numbers in different orders, so they agree to
rounding (1e-12 absolute on entries of size O(1)); iterated products over t steps stay within 1e-12 relative.
"""
from itertools import combinations, product

import numpy as np
import pytest

from minisgd import MLP, HessianTooLargeError
from minisgd.theory import linear_stability as st


def random_psd_hessians(rng, N, P, rank=2):
    """``(N, P, P)`` PSD per-example Hessians ``J_n^T J_n`` (as MSE Gauss-Newton terms are), of scale O(1)."""
    J = rng.standard_normal((N, rank, P)) / np.sqrt(P)
    return np.einsum("nki,nkj->nij", J, J)


def mlp_hessians(sizes, activation, N, seed):
    """Per-example Hessians of a small MLP with MSE at a random point (indefinite: residual terms included)."""
    rng = np.random.default_rng(seed)
    net = MLP(sizes, activation=activation, loss="mse")
    theta = net.init(seed=seed) + 0.1 * rng.standard_normal(net.num_params)
    X, y = rng.standard_normal((N, sizes[0])), rng.standard_normal((N, sizes[-1]))
    return st.per_example_hessians(net, theta, X, y), net, theta, X, y


def batches(N, B, replacement):
    """Every batch, equally likely: all B-subsets, or all ordered B-tuples with replacement."""
    return list(product(range(N), repeat=B)) if replacement else list(combinations(range(N), B))


def enumerated_operator(Hs, eta, B, replacement):
    """E[(I - eta H_B) kron (I - eta H_B)] as the plain average over every batch."""
    P = Hs.shape[1]
    total = np.zeros((P * P, P * P))
    all_b = batches(Hs.shape[0], B, replacement)
    for b in all_b:
        A = np.eye(P) - eta * Hs[list(b)].mean(axis=0)
        total += np.kron(A, A)
    return total / len(all_b)


OPERATOR_CASES = [  # (N, B, P, replacement)
    (8, 1, 3, False), (8, 3, 4, False), (10, 5, 2, False), (12, 4, 3, False), (12, 11, 3, False),
    (8, 2, 3, True), (8, 3, 2, True), (9, 1, 4, True),
]


@pytest.mark.parametrize("N, B, P, replacement", OPERATOR_CASES)
def test_operator_equals_enumeration_random_psd(N, B, P, replacement, rng):
    Hs = random_psd_hessians(rng, N, P)
    eta = 0.7
    np.testing.assert_allclose(st.sgd_operator(Hs, eta, B, replacement), enumerated_operator(Hs, eta, B, replacement),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("sizes, activation, N, B, replacement", [
    ([2, 2, 1], "tanh", 8, 3, False), ([2, 2, 1], "relu", 10, 4, False), ([1, 2, 2, 1], "tanh", 9, 2, False),
    ([2, 2, 1], "tanh", 8, 2, True), ([1, 2, 2, 1], "relu", 8, 2, True),
])
def test_operator_equals_enumeration_mlp(sizes, activation, N, B, replacement):
    Hs, net, theta, X, y = mlp_hessians(sizes, activation, N, seed=3)
    np.testing.assert_allclose(Hs.mean(axis=0), net.hessian(theta, X, y), rtol=0, atol=1e-12)
    scale = 1.0 / np.abs(Hs).max()  # entries of T of order one, so atol 1e-12 means what it says
    np.testing.assert_allclose(st.sgd_operator(Hs, scale, B, replacement),
                               enumerated_operator(Hs, scale, B, replacement), rtol=0, atol=1e-12)


@pytest.mark.parametrize("N, B, steps, replacement", [(5, 2, 3, False), (6, 3, 2, False), (4, 2, 3, True),
                                                      (4, 1, 4, True)])
def test_second_moment_equals_enumeration_over_batch_sequences(N, B, steps, replacement, rng):
    P = 3
    Hs = random_psd_hessians(rng, N, P)
    eta = 1.3
    x0 = rng.standard_normal(P)
    one_step = [np.eye(P) - eta * Hs[list(b)].mean(axis=0) for b in batches(N, B, replacement)]
    moment = np.zeros((P, P))
    for sequence in product(one_step, repeat=steps):
        x = x0
        for A in sequence:
            x = A @ x
        moment += np.outer(x, x)
    moment /= len(one_step) ** steps
    predicted = st.second_moment_after(Hs, eta, B, np.outer(x0, x0), steps, replacement)
    np.testing.assert_allclose(predicted, moment, rtol=1e-12, atol=1e-12 * np.abs(moment).max())
    np.testing.assert_allclose(np.trace(predicted), np.sum(moment.diagonal()), rtol=1e-12)


def test_batch_variance_factor():
    assert st.batch_variance_factor(10, 4, replacement=True) == pytest.approx(1 / 4, rel=1e-15)
    assert st.batch_variance_factor(10, 4, replacement=False) == pytest.approx(6 / 36, rel=1e-15)
    assert st.batch_variance_factor(10, 10, replacement=False) == 0.0
    assert st.batch_variance_factor(10, 1, replacement=False) == pytest.approx(1.0, rel=1e-15)


# ---- the exact mean-square threshold -------------------------------------------------------------------------------

@pytest.mark.parametrize("N, P, B, replacement", [(6, 2, 1, False), (8, 3, 2, False), (8, 4, 5, True),
                                                  (12, 3, 4, False), (7, 3, 3, True)])
def test_threshold_is_where_the_radius_crosses_one(N, P, B, replacement, rng):
    Hs = random_psd_hessians(rng, N, P)
    eta = st.sgd_threshold(Hs, B, replacement)
    below, above = st.sgd_radius(Hs, eta * (1 - 1e-6), B, replacement), st.sgd_radius(Hs, eta * (1 + 1e-6), B,
                                                                                          replacement)
    assert below < 1 < above
    assert st.sgd_radius(Hs, eta, B, replacement) == pytest.approx(1.0, abs=1e-10)
    # the radius is the largest eigenvalue (positive maps attain it on the PSD cone), not a negative one
    T = st.sgd_operator(Hs, eta * 1.3, B, replacement)
    w = np.linalg.eigvalsh(T)
    assert w[-1] >= abs(w[0])


def test_threshold_grows_with_the_batch_and_is_gds_at_full_batch(rng):
    N, P = 10, 3
    Hs = random_psd_hessians(rng, N, P)
    etas = [st.sgd_threshold(Hs, B) for B in (1, 2, 5, 9, 10)]
    assert np.all(np.diff(etas) > 0)
    assert etas[-1] == pytest.approx(st.gd_threshold(Hs.mean(axis=0)), rel=1e-12)
    # with replacement even B = N leaves noise: below GD's threshold
    assert st.sgd_threshold(Hs, N, replacement=True) < etas[-1]


def test_threshold_keeps_flat_directions_out(rng):
    """Per-example Hessians sharing a null direction (as an MLP's at an interpolating minimum can)."""
    Hs = random_psd_hessians(rng, 8, 3)
    Hs = np.pad(Hs, ((0, 0), (0, 1), (0, 1)))  # a fourth, flat direction
    eta = st.sgd_threshold(Hs, 2)
    assert eta == pytest.approx(st.sgd_threshold(Hs[:, :3, :3], 2), rel=1e-12)
    assert st.sgd_radius(Hs, eta * (1 - 1e-6), 2) == pytest.approx(1.0, abs=1e-5)  # the flat direction: factor 1
    assert st.sgd_radius(Hs, eta * (1 + 1e-6), 2) > 1


def test_curved_subspace_is_exact_when_the_examples_share_the_flat_directions(rng):
    P, k = 5, 3
    Q, _ = np.linalg.qr(rng.standard_normal((P, P)))
    small = random_psd_hessians(rng, 8, k)
    Hs = np.einsum("ia,nab,jb->nij", Q[:, :k], small, Q[:, :k])  # (8, 5, 5): curved only in span Q[:, :3]
    Hc, U = st.curved_subspace(Hs)
    assert Hc.shape == (8, k, k) and U.shape == (P, k)
    eta = st.sgd_threshold(Hs, 2)
    assert st.sgd_threshold(Hc, 2) == pytest.approx(eta, rel=1e-10)
    for r in (0.5, 0.9, 1.1, 2.0):
        # the flat directions contribute the factor 1 (and the cross terms |1 - eta lambda_i| <= sqrt(rho_c))
        assert st.sgd_radius(Hs, r * eta, 2) == pytest.approx(max(st.sgd_radius(Hc, r * eta, 2), 1.0), rel=1e-10)
    leaky = Hs + 1e-3 * np.eye(P)[None] * (np.arange(8) % 2 * 2 - 1)[:, None, None]  # mean unchanged, H_i not
    with pytest.raises(ValueError, match="do not vanish on the flat directions"):
        st.curved_subspace(leaky)


def test_wu_condition_is_exact_in_one_dimension(rng):
    N = 9
    h = rng.uniform(0.0, 2.0, N)
    Hs = h[:, None, None]
    ab = st.sharpness_nonuniformity(Hs)
    assert ab.a == pytest.approx(h.mean(), rel=1e-14) and ab.s == pytest.approx(h.std(), rel=1e-12)
    for B in (1, 3, 8):
        for replacement in (False, True):
            for eta in (0.3, 0.8, 1.1, 1.6):
                assert st.wu_condition(ab.a, ab.s, eta, B, N, replacement) == pytest.approx(
                    st.sgd_radius(Hs, eta, B, replacement), rel=1e-12)
            # and the threshold solves (1 - eta a)^2 + eta^2 c s^2 = 1: eta = 2 a / (a^2 + c s^2)
            c = st.batch_variance_factor(N, B, replacement)
            assert st.sgd_threshold(Hs, B, replacement) == pytest.approx(2 * ab.a / (ab.a ** 2 + c * ab.s ** 2),
                                                                        rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_necessary_and_sufficient_conditions_in_several_dimensions(seed):
    """At the exact threshold: a <= 2 / eta (necessary) holds, the sufficient condition is >= 1 (it cannot say
    'stable' beyond the threshold)."""
    rng = np.random.default_rng(seed)
    Hs = random_psd_hessians(rng, 8, 3)
    for B in (1, 2, 6):
        eta = st.sgd_threshold(Hs, B)
        assert st.sharpness_nonuniformity(Hs).a <= 2 / eta * (1 + 1e-12)
        assert st.sufficient_condition(Hs, eta, B) >= 1 - 1e-12
        assert st.sufficient_condition(Hs, eta * 0.5, B) < st.sufficient_condition(Hs, eta, B)


def test_wu_conditions_are_not_exact_in_several_dimensions():
    """P > 1: at the exact threshold Wu et al.'s (a, s) expression is neither 1 nor on one side of it, and the
    non-uniformity bound s <= 1 / (eta sqrt(c_B)) can fail at a stable step (so it is not necessary)."""
    values, s_terms = [], []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        Hs = random_psd_hessians(rng, 8, 3)
        ab = st.sharpness_nonuniformity(Hs)
        eta = st.sgd_threshold(Hs, 1)
        values.append(st.wu_condition(ab.a, ab.s, eta, 1, 8))
        s_terms.append(eta ** 2 * st.batch_variance_factor(8, 1, False) * ab.s ** 2)
    assert max(abs(v - 1) for v in values) > 0.05
    assert max(s_terms) > 1


# ---- GD -------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("P", [2, 5, 20])
def test_gd_on_the_quadratic_converges_below_and_diverges_above_the_threshold(P, rng):
    Q, _ = np.linalg.qr(rng.standard_normal((P, P)))
    lambdas = np.sort(rng.uniform(0.1, 3.0, P))[::-1]
    H = (Q * lambdas) @ Q.T
    eta_star = st.gd_threshold(H)
    assert eta_star == pytest.approx(2 / lambdas[0], rel=1e-12)
    x0 = rng.standard_normal(P)
    steps = 3000
    below = np.linalg.norm(st.gd_on_quadratic(H, x0, 0.99 * eta_star, steps), axis=1)
    above = np.linalg.norm(st.gd_on_quadratic(H, x0, 1.01 * eta_star, steps), axis=1)
    assert below[-1] < 1e-6 * below[0]
    assert above[-1] > 10 * above[0]
    # above: the top direction dominates, growing by |1 - eta lambda_max| per step
    assert st.growth_rate(above, last=100) == pytest.approx(abs(1 - 1.01 * eta_star * lambdas[0]), rel=1e-8)
    # every eigen-direction is multiplied by (1 - eta lambda_i) each step, exactly
    xs = st.gd_on_quadratic(H, x0, 0.99 * eta_star, 50)
    coords = xs @ Q  # (51, P): coordinates in the eigenbasis
    np.testing.assert_allclose(coords[50], (1 - 0.99 * eta_star * lambdas) ** 50 * coords[0], rtol=1e-9,
                               atol=1e-14)
    lam, factors = st.gd_factors(H, 0.99 * eta_star)
    np.testing.assert_allclose(lam, lambdas, rtol=1e-12)
    assert factors.max() < 1 and st.gd_factors(H, 1.01 * eta_star)[1].max() > 1


def test_top_direction_growth_rate_below_the_threshold(rng):
    P = 6
    Q, _ = np.linalg.qr(rng.standard_normal((P, P)))
    lambdas = np.linspace(2.0, 0.5, P)
    H = (Q * lambdas) @ Q.T
    eta = 0.99 * st.gd_threshold(H)
    norms = np.linalg.norm(st.gd_on_quadratic(H, Q[:, 0], eta, 200), axis=1)
    assert st.growth_rate(norms) == pytest.approx(abs(1 - eta * lambdas[0]), rel=1e-8)


@pytest.mark.parametrize("sizes, activation", [([3, 4, 1], "tanh"), ([2, 3, 3, 2], "relu")])
def test_gd_threshold_of_net(sizes, activation):
    _, net, theta, X, y = mlp_hessians(sizes, activation, 20, seed=1)
    H = net.hessian(theta, X, y)
    w, V = np.linalg.eigh(H)
    if w[-1] <= 0:
        pytest.skip("no positive curvature at this point")
    for method in ("exact", "lanczos"):
        t = st.gd_threshold_of_net(net, theta, X, y, method=method)
        assert t.lambda_max == pytest.approx(w[-1], rel=1e-8)
        assert t.eta_star == pytest.approx(2 / w[-1], rel=1e-8)
        assert abs(t.vector @ V[:, -1]) == pytest.approx(1.0, abs=1e-6)


# ---- bad input --------------------------------------------------------------------------------------------------

def test_bad_input(rng):
    Hs = random_psd_hessians(rng, 6, 3)
    bad = Hs.copy()
    bad[0, 0, 1] += 0.1
    with pytest.raises(ValueError, match="not symmetric"):
        st.sgd_operator(bad, 0.1, 2)
    with pytest.raises(ValueError, match="not symmetric"):
        st.gd_threshold(np.array([[1.0, 2.0], [0.0, 1.0]]))
    for eta in (0.0, -0.1, np.nan):
        with pytest.raises(ValueError, match="eta must be a finite number > 0"):
            st.sgd_radius(Hs, eta, 2)
        with pytest.raises(ValueError, match="eta must be a finite number > 0"):
            st.gd_on_quadratic(Hs[0], np.ones(3), eta, 3)
    with pytest.raises(ValueError, match="B must be an integer in 1 .. N = 6"):
        st.sgd_operator(Hs, 0.1, 7)
    with pytest.raises(ValueError, match="B must be an integer in 1 .. N = 6"):
        st.sgd_threshold(Hs, 0)
    with pytest.raises(ValueError, match="negative eigenvalue"):
        st.sgd_threshold(-Hs, 2)
    with pytest.raises(ValueError, match="no positive curvature"):
        st.gd_threshold(-Hs[0])
    big = np.zeros((2, 200, 200))
    with pytest.raises(HessianTooLargeError, match=r"P = 200 .* 40000 x 40000 .*GiB.*smaller model"):
        st.sgd_operator(big, 0.1, 1)
    with pytest.raises(HessianTooLargeError, match="over the limit of 0.00 GiB"):
        st.sgd_radius(Hs, 0.1, 2, max_memory=1000)
