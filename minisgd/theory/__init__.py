"""Closed forms that the exact computations are checked against.

* :mod:`~minisgd.theory.noise`: minibatch gradient noise with and without replacement, the noise scale, the
  second-order prediction of one step's expected loss, exact enumeration of every batch.
* :mod:`~minisgd.theory.linear_stability`: GD's threshold 2/lambda_max and SGD's exact mean-square threshold
  (Wu et al. 2018's second-moment operator).
* :mod:`~minisgd.theory.temperature`: the SDE temperature eta/B (1 - B/N)/(1 - mu) and the times it sets.
* :mod:`~minisgd.theory.reparametrize`: function-preserving rescalings of ReLU networks (Dinh et al. 2017).
"""
