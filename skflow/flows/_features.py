"""Feature maps of the VarPro networks: perceptrons, RBF kernels and the flat torus (thesis Ch. III, App. III.B).

``phi(omega, x) = sigma(omega . x_bar)`` with ``x_bar = (x, 1)`` (Euclidean, the last coordinate of ``omega`` is the
bias) or ``x_bar = x`` with ``|omega| = 1`` (the sphere); or the RBF feature map ``phi(omega, x) = k(omega - x)``,
on the flat torus ``k([omega - x])`` with ``[.]`` the projection on ``[-L/2, L/2)^d`` (Eq. III.50).

Pure torch, no engine: :mod:`skflow.flows.varpro` and :mod:`skflow.datasets` both use it.
"""

import math
import numbers
from dataclasses import dataclass

import torch

from ._ops import ACTIVATIONS

__all__ = ["RBF_KERNELS", "RBFKernel", "Torus", "as_domain", "augment", "features", "rbf_features", "rbf_gradient"]


def augment(X, domain):
    """``x_bar = (x, 1)`` for Euclidean features (the bias is the last coordinate of omega), ``x`` on the sphere."""
    if domain == "euclidean":
        return torch.cat([X, X.new_ones((X.shape[0], 1))], dim=1)
    return X


#: radial profiles of :class:`RBFKernel`
RBF_KERNELS = ("laplace", "gaussian")


@dataclass(frozen=True)
class Torus:
    """The flat torus ``R^d / L Z^d`` (``L = period``) as the feature domain of RBF networks (App. III.B).

    A point is stored by its representative in the fundamental domain ``[-L/2, L/2)^d``; :meth:`wrap` is the
    projection ``[.]`` on it. Pass an instance as ``domain`` (the string ``'torus'`` means ``Torus(4.0)``, the
    thesis's ``R^2 / 4 Z^2``).
    """

    period: float = 4.0

    def __post_init__(self):
        if not (isinstance(self.period, numbers.Real) and math.isfinite(self.period) and self.period > 0):
            raise ValueError(f"the torus period must be a positive finite number; got {self.period!r}.")

    def wrap(self, Z):
        """``[Z]``: the representative of ``Z`` modulo ``L Z^d`` in ``[-L/2, L/2)^d`` (elementwise, any shape)."""
        L = float(self.period)
        W = Z - L * torch.floor(Z / L + 0.5)
        return torch.where(W >= 0.5 * L, W - L, W)  # round-off of Z - L * k can land on L/2 itself

    def __str__(self):
        return "torus"


@dataclass(frozen=True)
class RBFKernel:
    """Radial profile ``k`` of the RBF feature map ``phi(omega, x) = k(omega - x)`` (``k([omega - x])`` on a torus).

    With ``z = omega - x`` (projected on the fundamental domain of a :class:`Torus`), ``r = |z|`` (Euclidean
    norm), ``A = amplitude`` and ``h = bandwidth``::

        'laplace':   k(z) = A exp(-r / h)              (the thesis's 8 exp(-|z| / 2), App. III.B)
        'gaussian':  k(z) = A exp(-r^2 / (2 h^2))

    Pass an instance as ``activation`` to :func:`features` and the functions built on it.
    """

    name: str = "laplace"
    bandwidth: float = 2.0
    amplitude: float = 8.0

    def __post_init__(self):
        if self.name not in RBF_KERNELS:
            raise ValueError(f"RBF kernel must be one of {RBF_KERNELS}; got {self.name!r}.")
        if not (math.isfinite(self.bandwidth) and self.bandwidth > 0):
            raise ValueError(f"the RBF bandwidth must be a positive finite number; got {self.bandwidth!r}.")
        if not math.isfinite(self.amplitude):
            raise ValueError(f"the RBF amplitude must be finite; got {self.amplitude!r}.")

    def radial(self, r2):
        """``k`` and the radial factor ``s = k'(r) / r`` from ``r^2``, so that ``grad_z k(z) = s z``.

        Laplace: ``s = -k / (h r)``. ``k`` has a kink at ``z = 0``; there the subgradient ``0`` is used
        (``s = 0`` where ``r = 0``): the minimum-norm element of the (Clarke) subdifferential there, the ball
        of radius ``A/h``.
        Gaussian: ``s = -k / h^2``, smooth.
        """
        h, A = float(self.bandwidth), float(self.amplitude)
        if self.name == "gaussian":
            Phi = torch.exp(r2 * (-0.5 / (h * h))).mul_(A)
            return Phi, Phi * (-1.0 / (h * h))
        r = torch.sqrt(r2)
        Phi = torch.exp(r * (-1.0 / h)).mul_(A)
        S = torch.div(Phi, r).mul_(-1.0 / h)  # inf or nan where r = 0, set to the subgradient 0 below
        S.masked_fill_(r2 == 0, 0.0)
        return Phi, S


def as_domain(domain):
    """``'euclidean'`` and ``'sphere'`` as they are, ``'torus'`` as ``Torus(4.0)``, a :class:`Torus` as it is."""
    if isinstance(domain, Torus):
        return domain
    if domain == "torus":
        return Torus()
    if domain in ("euclidean", "sphere"):
        return domain
    raise ValueError(f"domain must be 'euclidean', 'sphere', 'torus' or a Torus; got {domain!r}.")


def rbf_features(omega, X, kernel, domain="euclidean"):
    """RBF feature matrix ``Phi[n, i] = k(z_ni)``, ``z_ni = omega_i - x_n`` (``[omega_i - x_n]`` on a torus).

    Parameters
    ----------
    omega : Tensor (M, d)
        Centres (on a torus: any representatives; only their class modulo ``L Z^d`` matters).
    X : Tensor (N, d)
    kernel : RBFKernel
    domain : {'euclidean'} or Torus

    Returns
    -------
    Phi : Tensor (N, M)
    S : Tensor (N, M)
        Radial factor: ``grad_{omega_i} phi(omega_i, x_n) = S[n, i] z_ni`` (see :meth:`RBFKernel.radial`).
    Z : Tensor (d, N, M) or (N, d)
        On a torus the projected differences ``z_ni`` (coordinate first). In Euclidean space ``X`` itself:
        ``z_ni = omega_i - x_n`` is not formed, ``|z|^2`` comes from ``|omega|^2 + |x|^2 - 2 x . omega``.

    The projection is discontinuous on the cut locus (a coordinate of ``omega_i - x_n`` at ``L/2`` modulo
    ``L``), where ``k([.])`` is continuous but has a ridge; there the gradient is that of the representative
    in ``[-L/2, L/2)^d`` (a set of measure zero).
    """
    domain = as_domain(domain)
    if domain == "sphere":
        raise ValueError("RBF features live in Euclidean space or on a torus, not on the sphere.")
    if isinstance(domain, Torus):
        L = float(domain.period)
        Z = omega.new_empty((X.shape[1], X.shape[0], omega.shape[0]))
        for j in range(X.shape[1]):
            # [t] = t - L round(t / L): in [-L/2, L/2] (a tie at L/2 is the cut locus: |[t]| is the same)
            t = torch.sub(omega[:, j][None, :], X[:, j][:, None], out=Z[j])
            t.sub_(torch.round(t * (1.0 / L)).mul_(L))
        r2 = Z[0] * Z[0]
        for j in range(1, Z.shape[0]):
            r2.addcmul_(Z[j], Z[j])
    else:
        Z = X
        r2 = ((X * X).sum(1, keepdim=True) + (omega * omega).sum(1)[None, :] - 2.0 * (X @ omega.T)).clamp_(min=0.0)
    Phi, S = kernel.radial(r2)
    return Phi, S, Z


def rbf_gradient(W, omega, Z, domain):
    """``G_i = sum_n W[n, i] z_ni`` (the chain rule through ``grad_omega phi = S z``, with ``W`` holding ``S``)."""
    if isinstance(domain, Torus):
        return (Z * W).sum(1).T  # (d, M) -> (M, d); faster than the equivalent einsum on the CPU
    return omega * W.sum(0)[:, None] - W.T @ Z


def features(omega, X, activation="relu", domain="euclidean"):
    """Feature matrix ``Phi[n, i] = sigma(omega_i . x_bar_n)`` and ``sigma'`` at the same pre-activations.

    With an :class:`RBFKernel` as ``activation`` the RBF feature map ``phi(omega, x) = k(omega - x)`` (on a
    :class:`Torus` domain ``k([omega - x])``, Eq. III.50) instead: see :func:`rbf_features` for the outputs.
    A torus domain needs RBF features.

    Returns
    -------
    Phi, dPhi : Tensor (N, M)
    Xbar : Tensor (N, d + 1) or (N, d)
    """
    if isinstance(activation, RBFKernel):
        return rbf_features(omega, X, activation, domain)
    if isinstance(domain, Torus) or domain == "torus":
        raise ValueError("features on a torus are RBF features: pass an RBFKernel as activation.")
    Xbar = augment(X, domain)
    A = Xbar @ omega.T
    Phi, dPhi = ACTIVATIONS[activation](A)
    return Phi, dPhi, Xbar
