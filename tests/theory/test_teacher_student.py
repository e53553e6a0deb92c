"""The teacher-student problem: its noise floor and label distribution are the documented ones, its draws seeded."""
import math

import numpy as np
import pytest

from minisgd.data import estimate_mean
from minisgd.theory.teacher_student import make_teacher_student

Z = 4.0  # standard errors allowed: a correct estimate lands within 4 SE with probability > 0.9999


def test_teacher_student_regression_noise_is_known():
    ds = make_teacher_student(d=6, hidden=(10,), K=2, noise_std=0.3, n_train=500, seed=0)
    pop = ds.population
    assert (ds.input_dim, ds.output_dim, ds.y_train.shape) == (6, 2, (500, 2))
    X, y = pop.sample(100_000, 1)
    resid = y - pop.outputs(X)
    # Var of a sample variance of N(0, s^2) draws: 2 s^4 / (n - 1).
    se = math.sqrt(2 * 0.3**4 / (resid.size - 1))
    assert abs(resid.var() - 0.09) <= Z * se
    assert pop.bayes_risk().value == pytest.approx(2 * 0.09 / 2)
    # The teacher is the MLP with the documented sizes, and its mse at the teacher is the noise floor.
    est = estimate_mean(pop, lambda X, y: pop.net.per_example_losses(pop.theta, X, y), 100_000, rng=2)
    assert abs(est.value - 0.09) <= Z * est.stderr


def test_teacher_student_classification_labels_follow_softmax():
    ds = make_teacher_student(d=4, hidden=(8,), K=3, task="classification", output_scale=3.0, seed=1)
    pop = ds.population
    assert ds.num_classes == 3 and ds.y_train.dtype == np.int64
    # Given x, 1{y = k} - p_k(x) has mean 0; so does it times any function of x (here p_k(x) itself), which
    # checks that labels follow each input's own softmax, not just the average class frequencies.
    X, y = pop.sample(200_000, 4)
    P = pop.probabilities(X)  # (n, 3)
    onehot = np.eye(3)[y]
    for values in (onehot - P, (onehot - P) * P):
        mean = values.mean(axis=0)
        se = values.std(axis=0, ddof=1) / math.sqrt(len(values))
        assert np.all(np.abs(mean) <= Z * se), mean / se
    assert np.bincount(y, minlength=3).min() > 20_000  # output_scale 3: all classes present, not degenerate
    risk = pop.bayes_risk(n=50_000, rng=0)  # expected entropy of softmax(z): below log K, above 0
    assert 0 < risk.value < math.log(3) and risk.stderr < 0.01


def test_teacher_student_draws_are_seeded():
    a, b, c = make_teacher_student(seed=3), make_teacher_student(seed=3), make_teacher_student(seed=4)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.X_train, c.X_train)
    # a larger training set leaves the teacher and the test set alone (independent seed streams)
    d = make_teacher_student(seed=3, n_train=2 * a.num_train)
    np.testing.assert_array_equal(a.population.theta, d.population.theta)
    np.testing.assert_array_equal(a.X_test, d.X_test)
