r"""The hand-derived math of an MLP: every derivative written out, none taken by autodiff.

Read in this order, each file building on the ones before it:

* :mod:`~minisgd.core.activations`: each activation's value, first and second derivative from one rule.
* :mod:`~minisgd.core.losses`: softmax cross-entropy and half squared error, with gradient, Hessian and its factor.
* :mod:`~minisgd.core.passes`: the forward pass (pre-activations ``z_l``, activations ``a_l``) and the backward pass
  (the deltas ``delta_l = dl/dz_l``).
* :mod:`~minisgd.core.backprop`: the gradient, per-example gradients and their norms, output Jacobians.
* :mod:`~minisgd.core.hvp`: Hessian-vector products by Pearlmutter's R-operator, k directions at once.
* :mod:`~minisgd.core.hessian`: the exact Hessian by blocks, its Gauss-Newton and residual parts, its diagonal.
* :mod:`~minisgd.core.kernels`: the few Numba kernels a benchmark showed worth having, each with a NumPy twin.
* :mod:`~minisgd.core.mlp`: :class:`MLP`, the network as one flat parameter vector with named views per layer.
"""
from .mlp import MLP, Layer

__all__ = ["MLP", "Layer"]
