"""Convergence diagnostics of the gradient flows, as pure functions of tensors and arrays.

The quantities the theory's guarantees are stated in, one module per topic:

* :mod:`~skflow.diagnostics.kernels` -- closed-form and finite-width kernel matrices, their smallest
  eigenvalues, squared distances and the data separation ``delta``;
* :mod:`~skflow.diagnostics.pl` -- the convergence report (P-L constant against the observed rate) and the
  P-L bound of Prop. II.4.4;
* :mod:`~skflow.diagnostics.transport` -- the conditional Wasserstein distance ``W2_COT`` (Def. I.2);
* :mod:`~skflow.diagnostics.mmd` -- the energy distance between particle clouds (Eq. III.49).

No module here imports an engine or an estimator.
"""

from .kernels import (
    data_separation,
    exact_kernel_lambda_min,
    gaussian_kernel,
    gram_lambda_min,
    kernel_lambda_min,
    kernel_matrix,
    lambda_min,
    matern_kernel,
    shl_limit_kernel,
    squared_distances,
    top_eigenvalues,
)
from .mmd import energy_distance
from .pl import ConvergenceReport, convergence_report, feature_kappa, pl_bound
from .torus import TorusEnergyDistance, torus_distance, torus_embedding, torus_energy_distance
from .transport import conditional_wasserstein

__all__ = [
    "TorusEnergyDistance",
    "torus_distance",
    "torus_embedding",
    "torus_energy_distance",
    "ConvergenceReport",
    "conditional_wasserstein",
    "convergence_report",
    "data_separation",
    "energy_distance",
    "exact_kernel_lambda_min",
    "feature_kappa",
    "gaussian_kernel",
    "gram_lambda_min",
    "kernel_lambda_min",
    "kernel_matrix",
    "lambda_min",
    "matern_kernel",
    "pl_bound",
    "shl_limit_kernel",
    "squared_distances",
    "top_eigenvalues",
]
