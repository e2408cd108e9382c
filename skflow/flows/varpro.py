"""Engine of VarProSHLRegressor: a two-layer network trained by Variable Projection (thesis Ch. III).

Model (Eq. III.1, III.39)::

    F(x) = (1/M) sum_i u_i phi(omega_i, x),    phi(omega, x) = sigma(omega . x_bar)

with ``x_bar = (x, 1)`` for Euclidean features (last coordinate of ``omega`` is the bias) or ``x_bar = x`` and
``|omega| = 1`` for features on the sphere; or the RBF feature map ``phi(omega, x) = k(omega - x)``, on the flat
torus ``k([omega - x])`` with ``[.]`` the projection on ``[-L/2, L/2)^d`` (App. III.B, Eq. III.50, sparse
deconvolution; :class:`RBFKernel`, :class:`Torus`, :class:`TorusVarProFlow`). Risk (Eq. III.43)::

    R(omega, u) = (1/2N) sum_n |F(x_n) - y_n|^2 + lambda (1/M) sum_i f(u_i),

``f(u) = |u|^2/2`` ("biased") or ``|u - 1|^2/2`` ("unbiased"), and the reduced risk (Eq. III.8, III.41)
``L(omega) = (1/lambda) min_u R(omega, u)``.

Pure torch, no scikit-learn. Every function works on the device of its inputs and never syncs with the
host (no ``.item()``), so that the fit loop can run asynchronously on a GPU.
"""

import math
import numbers
from dataclasses import dataclass

import torch

from ..diagnostics.kernels import top_eigenvalues
from ._flow import Flow, row_blocks
from ._fused import activation_with_bias, elementwise_kernels, graph_kernel, outer_product_and_column_sum
from ._ops import ACTIVATIONS, regularizer_centre

__all__ = [
    "DEFAULT_ALPHAS",
    "RBF_KERNELS",
    "RBFKernel",
    "Torus",
    "TorusVarProFlow",
    "VarProFlow",
    "ridge_loo_path",
    "augment",
    "feature_gradient",
    "features",
    "kernel_spectrum",
    "reduced_risk",
    "ridge_projection",
]

#: below this ridge strength the Gram matrix is formed in float64 too: its round-off in float32
#: (~1e-7 ||K||) would otherwise be comparable to lambda and the solve would be meaningless.
_FLOAT64_GRAM_BELOW = 1e-2


def augment(X, domain):
    """``x_bar = (x, 1)`` for Euclidean features (the bias is the last coordinate of omega), ``x`` on the sphere."""
    if domain == "euclidean":
        return torch.cat([X, X.new_ones((X.shape[0], 1))], dim=1)
    return X


# ------------------------------------------------------------------------------------------------ RBF features
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


def _rbf_gradient(W, omega, Z, domain):
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


def _centre(regularization, M, n_out, like):
    """Minimiser ``c`` of the regulariser ``f``: 0 (biased) or the vector of ones (unbiased, the teacher's u)."""
    return torch.full((M, n_out), regularizer_centre(regularization), dtype=like.dtype, device=like.device)


def _solve_primal(G, PtY, N, M, lam, c):
    """``u`` solving ``(G / (N M) + lambda I) u = PtY / N + lambda c`` by Cholesky, in float64 (Eq. III.43):
    the projection from the sums over rows ``G = Phi^T Phi`` and ``PtY = Phi^T Y``."""
    K = G / (N * M)
    K.diagonal().add_(lam)
    L, _ = torch.linalg.cholesky_ex(K)
    return torch.cholesky_solve(PtY / N + lam * c, L)


def _loo_eigen(G, PtY, N, M, lams, c):
    """From the sums ``G = Phi^T Phi`` and ``PtY = Phi^T Y`` over ``N`` rows: the eigenvectors ``V`` of
    ``A^T A`` (``A = Phi / M``), the weights ``w = 1 / (s^2 + mu)`` (n_lams, M), ``B = V^T A^T Y~`` and the
    projection ``u`` (n_lams, M, n_out) for every strength (see :func:`ridge_loo_path`)."""
    AtA = G / (M * M)
    AtYt = PtY / M - c * AtA.sum(1, keepdim=True)  # A^T (Y - A 1 c)
    s2, V = torch.linalg.eigh(AtA)
    B = V.T @ AtYt
    mu = (N / M) * lams.to(G)
    w = 1.0 / (s2.clamp(min=0.0)[None, :] + mu[:, None])
    return V, w, B, c + torch.einsum("km,lm,mo->lko", V, w, B)


def _loo_squares(Phi, Y, V, w, B, M, c):
    """Sum over the rows of ``Phi`` of the squared leave-one-out residuals, for every strength (n_lams,)."""
    A = Phi.double() / M
    Yt = Y.double() - A.sum(1, keepdim=True) * c
    AV = A @ V
    fit = torch.einsum("nm,lm,mo->lno", AV, w, B)  # H Y~ for every strength
    h = w @ (AV * AV).T  # (n_lams, n): diag(H)
    e = (Yt[None] - fit) / (1.0 - h)[..., None]
    return (e * e).sum((1, 2))


def ridge_projection(Phi, Y, lam, regularization="biased", reduce=None):
    """Exact minimiser ``u* = argmin_u R(omega, u)`` for fixed features (thesis Eq. III.8, III.43).

    Primal (``N >= M``)::

        (K + lambda I_M) u = Phi^T Y / N + lambda c,      K = Phi^T Phi / (N M),

    with ``c = 0`` (biased) or ``c = 1`` (unbiased). Dual (``N < M``): writing ``u = c + v``, the push-through
    identity ``(A^T A + lambda)^-1 A^T = A^T (A A^T + lambda)^-1`` gives::

        v = Phi^T (Phi Phi^T / (N M) + lambda I_N)^-1 (Y - Phi c / M) / N,

    an ``N x N`` system instead of ``M x M``. Both are solved by Cholesky (the matrices are SPD for
    ``lambda > 0``) in float64; the Gram product is also formed in float64 when ``lambda`` is small.

    Parameters
    ----------
    Phi : Tensor (N, M)
    Y : Tensor (N, n_outputs)
    lam : float
        Ridge strength ``lambda > 0``.
    regularization : {'biased', 'unbiased'}
    reduce : callable or None
        Data-parallel fits (:meth:`skflow.flows._flow.Flow.sum_rows`): ``reduce(n, *sums) -> (N, *totals)`` sums
        this rank's sums over its ``n`` rows over the ranks. The primal system is then solved, from the Gram
        matrix and right-hand side of all the ranks' rows (the dual one would need the rows themselves).

    Returns
    -------
    Tensor (M, n_outputs), in the dtype of ``Phi``.
    """
    N, M = Phi.shape
    out_dtype = Phi.dtype
    if lam < _FLOAT64_GRAM_BELOW or out_dtype == torch.float64:
        P, Yw = Phi.double(), Y.double()
    else:
        P, Yw = Phi, Y.to(Phi.dtype)
    c = _centre(regularization, M, Y.shape[1], P.to(torch.float64))
    if reduce is not None or N >= M:
        G, PtY = (P.T @ P).double(), (P.T @ Yw).double()
        if reduce is not None:  # data-parallel: the sums of all the ranks' rows
            N, G, PtY = reduce(N, G, PtY)
        u = _solve_primal(G, PtY, N, M, lam, c)
    else:
        G = (P @ P.T).double() / (N * M)
        G.diagonal().add_(lam)
        P64 = P.double()
        Yr = Yw.double() - P64 @ c / M
        L, _ = torch.linalg.cholesky_ex(G)
        a = torch.cholesky_solve(Yr, L)
        u = c + P64.T @ a / N
    return u.to(out_dtype)


#: with ``lam='auto'`` the features move in the time units of this fixed strength (see ``VarProFlow.step``)
AUTO_TIME_UNIT = 1e-3

#: grid of ridge strengths searched by ``lam='auto'`` (log-spaced; the tangent kernel has ``||K||_op = O(1)``)
DEFAULT_ALPHAS = tuple(float(a) for a in torch.logspace(-4, 1, 11, dtype=torch.float64))


def ridge_loo_path(Phi, Y, lams, regularization="biased", reduce=None):
    """Exact leave-one-out error of the ridge projection for every strength in ``lams``, from one eigendecomposition.

    The projection minimises ``(1/2N) |Phi u / M - Y|^2 + (lambda / 2M) |u - c|^2`` (Eq. III.43). With
    ``A = Phi / M``, ``v = u - c`` and ``Y~ = Y - A c`` this is ridge regression of ``Y~`` on ``A`` with strength
    ``mu = N lambda / M``. From ``A^T A = V diag(s^2) V^T`` the hat matrix is
    ``H = (A V) diag(1 / (s^2 + mu)) (A V)^T``, and the leave-one-out residual of row ``n`` is
    ``e_n / (1 - H_nn)``: the error of the projection refitted without row ``n`` (same ``mu``), for every
    ``lambda`` at the cost of one ``M x M`` eigendecomposition, as in scikit-learn's ``RidgeCV``.

    Parameters
    ----------
    Phi : Tensor (N, M)
    Y : Tensor (N, n_outputs)
    lams : Tensor (n_lams,)
        Ridge strengths ``lambda > 0``.
    regularization : {'biased', 'unbiased'}
    reduce : callable or None
        Data-parallel fits, as for :func:`ridge_projection`: ``A^T A`` and ``A^T Y~`` are summed over the ranks
        (the eigendecomposition is then the same on every rank), the leave-one-out residuals of each rank's
        rows are computed locally and their squares summed over the ranks.

    Returns
    -------
    loo : Tensor (n_lams,)
        Mean over rows of the squared leave-one-out residual (summed over outputs), in float64.
    u : Tensor (n_lams, M, n_outputs)
        The exact projection ``u*`` on all rows for each strength, in float64.
    """
    P = Phi.double()
    N, M = P.shape
    c = regularizer_centre(regularization)
    G, PtY = P.T @ P, P.T @ Y.double()
    n_rows = N
    if reduce is not None:  # data-parallel: the eigendecomposition of the sums of all the ranks' rows
        N, G, PtY = reduce(N, G, PtY)
    V, w, B, u = _loo_eigen(G, PtY, N, M, lams, c)
    sq = _loo_squares(P, Y, V, w, B, M, c)
    if reduce is not None:
        _, sq = reduce(n_rows, sq)
    return sq / N, u


def select_ridge(Phi, Y, lams, regularization="biased", reduce=None):
    """The strength of ``lams`` with the smallest leave-one-out error, and its projection (0-dim, (M, n_out)).

    Stays on the device (no host synchronisation). ``reduce``: see :func:`ridge_loo_path`.
    """
    loo, u = ridge_loo_path(Phi, Y, lams, regularization, reduce)
    best = torch.argmin(loo)
    return lams.to(loo)[best], u[best]


def _risk_parts(Phi, Y, u, lam, regularization, n_total=None):
    """Data fit ``(1/2N) |F - Y|^2`` and regulariser ``lambda (1/M) sum f(u_i)`` of Eq. III.43, and the residual.

    ``n_total`` replaces ``N`` in the data fit (1: the sum over the rows, as a data-parallel fit reduces it)."""
    N, M = Phi.shape
    r = Phi @ u / M - Y
    datafit = 0.5 * (r * r).sum() / (N if n_total is None else n_total)
    penalty = lam * 0.5 * ((u - regularizer_centre(regularization)) ** 2).sum() / M
    return datafit, penalty, r


def reduced_risk(omega, X, Y, lam, regularization="biased", activation="relu", domain="euclidean"):
    """Reduced risk ``L(omega) = (1/lambda) min_u R(omega, u)`` (Eq. III.41) by exact projection.

    Returns
    -------
    L : 0-dim Tensor
    u_star : Tensor (M, n_outputs)
    datafit : 0-dim Tensor
        ``(1/2N) |F - Y|^2`` at ``u_star`` (the MSE / 2).
    """
    Phi, _, _ = features(omega, X, activation, domain)
    u = ridge_projection(Phi, Y, lam, regularization)
    datafit, penalty, _ = _risk_parts(Phi, Y, u, lam, regularization)
    return (datafit + penalty) / lam, u, datafit


def feature_gradient(omega, u, X, Y, lam, regularization="biased", activation="relu", domain="euclidean",
                     reduce=None):
    """``grad_omega (1/lambda) R(omega, u)`` at fixed ``u``, in closed form.

    At ``u = u*(omega)`` this is ``grad_omega L`` by the envelope theorem (Eq. III.10): the derivative of
    ``u*`` does not enter since ``grad_u R = 0`` there, so there is no differentiation through the solve.
    With ``r_n = F(x_n) - y_n``::

        grad_{omega_i} R = (1 / (N M)) sum_n (r_n . u_i) sigma'(omega_i . x_bar_n) x_bar_n.

    On the sphere the Euclidean gradient is projected on the tangent space at ``omega_i``. For RBF features
    (an :class:`RBFKernel` as ``activation``) ``sigma' x_bar_n`` becomes ``grad_omega k(z_ni) = s_ni z_ni``
    (:func:`rbf_features`); on a torus it is the gradient of the periodic function, in the coordinates of
    ``R^d``. The Laplace kernel's kink at ``z = 0`` contributes the subgradient 0. ``reduce``: data-parallel
    fits, as for :func:`ridge_projection`: the sums over rows of the gradient and of the data fit are reduced
    over the ranks (one collective).

    Returns
    -------
    grad : Tensor (M, dim)
    parts : tuple (datafit, penalty, Phi, r)
    """
    Phi, dPhi, Xbar = features(omega, X, activation, domain)
    n_total = None if reduce is None else 1  # data-parallel: sums over this rank's rows, reduced below
    datafit, penalty, r = _risk_parts(Phi, Y, u, lam, regularization, n_total)
    N, M = Phi.shape
    n_total = N if reduce is None else 1
    if isinstance(activation, RBFKernel):
        G = _rbf_gradient((r @ u.T) * dPhi, omega, Xbar, as_domain(domain)) / (n_total * M * lam)
    else:
        G = ((r @ u.T) * dPhi).T @ Xbar / (n_total * M * lam)
    if reduce is not None:
        N, G, datafit = reduce(N, G, datafit)
        G, datafit = G / N, datafit / N
    if isinstance(activation, RBFKernel):
        return G, (datafit, penalty, Phi, r)
    if domain == "sphere":
        G = G - (G * omega).sum(dim=1, keepdim=True) * omega
    return G, (datafit, penalty, Phi, r)


def kernel_spectrum(omega, X, activation="relu", domain="euclidean", k=10):
    """Top eigenvalues of the tangent kernel ``K = Phi^T Phi / (N M)`` (descending, Eq. III.24).

    Uses whichever of ``Phi^T Phi`` (M x M) and ``Phi Phi^T`` (N x N) is smaller: they share their nonzero
    eigenvalues.
    """
    Phi, _, _ = features(omega, X, activation, domain)
    return top_eigenvalues(Phi, k)


def _gradient_graph(activation, euclidean, solver):
    """The sums of :meth:`VarProFlow._gradient_blocks` over a block of rows as one function of tensors, for
    ``torch.compile`` (perceptron features): ``(sum |r|^2, sum_n Ga_ni x_bar_n (M, dim)[, Phi^T r][, |Phi|^2])``
    with ``r = Phi u / M - y`` and ``Ga = (r u^T) * sigma'``; ``uc`` is ``u / M``."""
    act = ACTIVATIONS[activation]

    def gradient_sums(X, Y, omega, u, uc):
        if euclidean:  # x_bar = (x, 1): the last coordinate of omega is the bias
            Phi, dPhi = act(torch.addmm(omega[:, -1], X, omega[:, :-1].T))
        else:
            Phi, dPhi = act(torch.mm(X, omega.T))
        r = torch.mm(Phi, uc) - Y
        Ga = torch.mm(r, u.T) * dPhi
        G = torch.mm(X.T, Ga).T
        if euclidean:
            G = torch.cat([G, Ga.sum(0)[:, None]], 1)
        out = ((r * r).sum(), G)
        if solver != "varpro":
            out = out + (torch.mm(Phi.T, r),)
        if solver == "two-timescale":
            out = out + ((Phi * Phi).sum(),)
        return out

    return gradient_sums


class VarProFlow(Flow):
    """Particles ``omega`` (M, dim) and outer weights ``u`` (M, n_outputs) of a SHL, and its training flows.

    Parameters
    ----------
    omega : Tensor (M, dim)
    u : Tensor (M, n_outputs)
    lam : float or 'auto'
        Ridge strength ``lambda``. ``'auto'``: chosen at every projection from ``alphas`` by exact leave-one-out
        (:func:`ridge_loo_path`); the current value is ``lam`` (a 0-dim tensor) and is recorded as ``alpha``.
    alphas : sequence of float
        The grid searched by ``lam='auto'``.
    regularization : {'biased', 'unbiased'}
    activation : str or RBFKernel
        Key of :data:`skflow.flows._ops.ACTIVATIONS`, or an :class:`RBFKernel` for the RBF feature map
        ``k(omega - x)`` (App. III.B).
    domain : {'euclidean', 'sphere'}
        A torus (``'torus'`` or a :class:`Torus`, RBF features only) needs :class:`TorusVarProFlow`, which keeps
        the features in the fundamental domain.
    solver : {'varpro', 'two-timescale', 'gd'}
        ``varpro``: exact projection then feature step (Eq. III.42); with ``stochastic=True`` the projection
        is on the minibatch and averaged with momentum (Eq. III.46). ``two-timescale``: one projection at the
        start, then simultaneous steps (Eq. III.44) with ``u <- u - (eta/lambda) grad_u R``, ``eta = lambda M``
        (the thesis's choice). ``gd``: the same with ``eta = M tau``, i.e. one timescale for both layers.
    momentum : float
        ``m`` of Eq. III.46.
    stochastic : bool
        Whether the steps receive minibatches (stochastic VarPro).
    store_every : int or None
        Keep a copy of ``omega`` every this many steps (on the device, no host sync).
    """

    _tensor_fields = ("omega", "u", "alphas")
    _param_fields = ("omega", "u")
    supports_data_parallel = True

    @property
    def _reduce(self):
        """The ``reduce`` hook of the module's functions in a data-parallel fit (:meth:`Flow.sum_rows`), else None."""
        return None if self.data_parallel is None else self.sum_rows

    def __init__(self, omega, u, *, lam, regularization="biased", activation="relu", domain="euclidean",
                 solver="varpro", momentum=0.9, stochastic=False, store_every=None, alphas=DEFAULT_ALPHAS):
        self.omega = omega
        self.u = u
        self.auto = isinstance(lam, str)
        self.validation = None
        self.alphas = torch.as_tensor(alphas, dtype=torch.float64, device=omega.device)
        self.lam = self.alphas[len(self.alphas) // 2].clone() if self.auto else float(lam)
        self.regularization = regularization
        domain = as_domain(domain)
        if isinstance(domain, Torus) and not isinstance(self, TorusVarProFlow):
            raise ValueError("features on a torus need TorusVarProFlow, which wraps them after every step.")
        if isinstance(activation, RBFKernel) and domain == "sphere":
            raise ValueError("RBF features live in Euclidean space or on a torus, not on the sphere.")
        self.activation = activation
        self.domain = domain
        self.solver = solver
        self.momentum = float(momentum)
        self.stochastic = bool(stochastic)
        self.store_every = store_every
        self.snapshots = []
        self.n_steps = 0
        self._u_ready = False  # stochastic VarPro: the first minibatch projection initialises u

    def to(self, device=None, dtype=None):
        new = super().to(device, dtype)
        kwargs = {"device": device} if dtype is None else {"device": device, "dtype": dtype}
        new.snapshots = [t.detach().to(**kwargs).clone() for t in self.snapshots]
        if self.auto:
            new.lam = self.lam.detach().to(device=device).clone()
        return new

    @property
    def width(self):
        return self.omega.shape[0]

    def bytes_per_row(self, training=True):
        """A step holds ``Phi``, ``sigma'`` and a product (N x M), and a ``N x N`` Gram row in the dual solve."""
        M, dim = self.omega.shape
        n_out = self.u.shape[1]
        if training:
            return self.itemsize * (4 * M + 2 * dim + 2 * n_out) + 8 * (M + n_out)
        return self.itemsize * (2 * M + dim + n_out)

    def feature_snapshots(self):
        """The stored copies of ``omega`` (the initial features first), as a list of tensors."""
        return list(self.snapshots)

    def start(self, X, Y, validation=None):
        """Before the first step: store the initial features, and project once for the two-timescale solver
        (as in the thesis's comparison, §III.6.1). A warm start continues where the previous fit ended."""
        self.validation = validation if self.auto else None
        if self.n_steps > 0:
            return
        if self.store_every and not self.snapshots:
            self.snapshots.append(self.omega.detach().clone())
        if self.solver == "two-timescale":
            self.project(X, Y)
        elif self.auto and self.solver == "gd":  # one strength for the whole run, chosen at the initial features
            self.lam = select_ridge(features(self.omega, X, self.activation, self.domain)[0], Y, self.alphas,
                                    self.regularization, self._reduce)[0]

    def finish(self, X, Y, n_steps):
        """After the last step of full-batch VarPro ``u`` is the projection at the previous features:
        re-project, so that the model is ``u*(omega)`` at the final features exactly (VarPro's model)."""
        if self.solver == "varpro" and not self.stochastic and self.n_steps > 0:
            self.project(X, Y)
        self.validation = None  # the fitted model keeps no data

    # ------------------------------------------------------------------ blocked sums (perceptron features)
    @property
    def row_blocked(self):
        """Perceptron features run over blocks of rows: Gram matrices, right-hand sides, gradients and risks are
        sums over rows, accumulated block by block (RBF features are computed on the whole batch)."""
        return isinstance(self.activation, str)

    @property
    def activations(self):
        return (self.activation,) if self.row_blocked else ()

    def elementwise_per_row(self):
        return 2 * self.width if self.row_blocked else 0

    #: one layer and few products per block: larger blocks than the NODE's pay (measured 512 KiB best)
    block_matrix_bytes = 512 * 2**10

    def block_width(self):
        return self.width if self.row_blocked else None

    def _graph(self):
        euclid = self.domain == "euclidean"
        return graph_kernel(("varpro_gradient", self.activation, euclid, self.solver),
                            lambda: _gradient_graph(self.activation, euclid, self.solver))

    def compile_kernels(self):
        """The whole-block gradient graph and the features' kernel (Gram sums, predictions); perceptron
        features only (RBF features run eagerly)."""
        if not self.row_blocked:
            return []
        return [self._graph(), *elementwise_kernels(self.activation, value=False, derivative=True)]

    def _blocks(self, X):
        return row_blocks(X.shape[0], self.block_rows(X.device, n=X.shape[0]))

    def _block_features(self, X):
        """``(Phi, sigma')`` on a block: one product and one fused pass (bias, activation, derivative)."""
        if self.domain == "euclidean":  # x_bar = (x, 1): the last coordinate of omega is the bias
            return activation_with_bias(self.activation, X @ self.omega[:, :-1].T, self.omega[:, -1], self.compiled)
        return ACTIVATIONS[self.activation](X @ self.omega.T)

    def _gram(self, X, Y):
        """``(N, Phi^T Phi, Phi^T Y, kept)``: the sums over the rows (of every rank in a data-parallel fit), in
        float64, and the features ``(Phi, sigma')`` when the batch is a single block (reused by the step)."""
        M, n_out = self.width, Y.shape[1]
        wide = self.auto or X.dtype == torch.float64 or self.lam < _FLOAT64_GRAM_BELOW
        G = X.new_zeros((M, M), dtype=torch.float64)
        PtY = X.new_zeros((M, n_out), dtype=torch.float64)
        blocks = self._blocks(X)
        kept = None
        for rows in blocks:
            Phi, dPhi = self._block_features(X[rows])
            P, Yb = (Phi.double(), Y[rows].double()) if wide else (Phi, Y[rows].to(Phi.dtype))
            G += (P.T @ P).double()
            PtY += (P.T @ Yb).double()
            if len(blocks) == 1:
                kept = (Phi, dPhi)
        return (*self.sum_rows(X.shape[0], G, PtY), kept)

    def _project_blocks(self, X, Y):
        """``(u*, kept)``: the exact projection from the summed Gram matrix (see :meth:`_projection`)."""
        N, G, PtY, kept = self._gram(X, Y)
        M = self.width
        c = regularizer_centre(self.regularization)
        if not self.auto:
            return _solve_primal(G, PtY, N, M, self.lam, c).to(X.dtype), kept
        V, w, B, path = _loo_eigen(G, PtY, N, M, self.alphas, c)
        if self.validation is None:  # exact leave-one-out, a second pass over the rows
            Xs, Ys = X, Y
            err = sum(_loo_squares(kept[0] if kept is not None else self._block_features(Xs[rows])[0], Ys[rows],
                                   V, w, B, M, c) for rows in self._blocks(Xs))
        else:  # held-out rows: seen neither by the projection nor by the features
            Xs, Ys = self.validation
            err = sum(((torch.einsum("nm,lmo->lno", self._block_features(Xs[rows])[0].double(), path) / M
                        - Ys[rows].double()[None]) ** 2).sum((1, 2)) for rows in self._blocks(Xs))
        _, err = self.sum_rows(Xs.shape[0], err)
        best = torch.argmin(err)
        self.lam = self.alphas.to(err)[best]
        return path[best].to(X.dtype), kept

    def _gradient_blocks(self, X, Y, kept=None):
        """Sums over the rows (of every rank) for the step at fixed ``u``: the feature gradient of
        ``R / lambda`` (Eq. III.10, closed form), the data fit, and for the solvers that step ``u`` too,
        ``Phi^T r`` and ``trace(Phi^T Phi)``. Returns them divided by ``N`` (``G`` by ``N M lambda``)."""
        M = self.width
        euclid = self.domain == "euclidean"
        G = torch.zeros_like(self.omega)
        datafit = X.new_zeros(())
        PtR = torch.zeros_like(self.u)
        trace = X.new_zeros(())
        sums = None
        if self.compiled:  # one compiled graph per block (features recomputed there, fused into the products)
            uc = self.u / M
            sums = self._graph().sums(self._blocks(X), lambda rows: (X[rows], Y[rows], self.omega, self.u, uc))
        if sums is not None:
            datafit, G, *rest = sums
            PtR = rest[0] if self.solver != "varpro" else PtR
            trace = rest[1] if self.solver == "two-timescale" else trace
        else:
            for rows in self._blocks(X):
                Phi, dPhi = kept if kept is not None else self._block_features(X[rows])
                Xb = X[rows]
                r = torch.addmm(Y[rows], Phi, self.u, beta=-1.0, alpha=1.0 / M)  # F - y
                datafit += (r * r).sum()
                Ga, colsum = outer_product_and_column_sum(r, self.u, dPhi, self.compiled)
                if euclid:
                    G[:, :-1] += (Xb.T @ Ga).T
                    G[:, -1] += colsum
                else:
                    G += (Xb.T @ Ga).T
                if self.solver != "varpro":
                    PtR += Phi.T @ r
                    if self.solver == "two-timescale":
                        trace += (Phi * Phi).sum()
        N, G, datafit, PtR, trace = self.sum_rows(X.shape[0], G, datafit, PtR, trace)
        G = G / (N * M * self.lam)
        if self.domain == "sphere":
            G = G - (G * self.omega).sum(dim=1, keepdim=True) * self.omega
        return G, 0.5 * datafit / N, PtR / N, trace / N

    # ------------------------------------------------------------------ protocol
    def forward(self, X):
        if self.row_blocked:
            return torch.cat([self._block_features(X[rows])[0] @ self.u / self.width for rows in self._blocks(X)])
        Phi, _, _ = features(self.omega, X, self.activation, self.domain)
        return Phi @ self.u / self.width

    def risk(self, X, Y):
        """Data-fit part ``(1/2N) |F - Y|^2`` (what the base monitors for early stopping); data-parallel, the mean
        over the rows of every rank."""
        r = self.forward(X) - Y
        if self.data_parallel is not None:
            return self.reduce_rows(X.shape[0], 0.5 * (r * r).sum())[0]
        return 0.5 * (r * r).sum() / X.shape[0]

    def project(self, X, Y):
        """Set ``u`` to the exact projection ``u*(omega)`` on ``(X, Y)``, in place."""
        if self.row_blocked:
            self.u.copy_(self._project_blocks(X, Y)[0])
        else:
            self.u.copy_(self._projection(features(self.omega, X, self.activation, self.domain)[0], Y))
        self._u_ready = True

    def _projection(self, Phi, Y):
        """``u*`` at the fixed ``lam``, or, for ``lam='auto'``, at the strength with the least leave-one-out error
        (which becomes ``lam``)."""
        if not self.auto:
            return ridge_projection(Phi, Y, self.lam, self.regularization, self._reduce)
        if self.validation is None:
            self.lam, u = select_ridge(Phi, Y, self.alphas, self.regularization, self._reduce)
            return u.to(Phi.dtype)
        # held-out rows: they have been seen neither by the projection nor by the features
        _, path = ridge_loo_path(Phi, Y, self.alphas, self.regularization, self._reduce)
        Xv, Yv = self.validation
        Phi_v = features(self.omega, Xv, self.activation, self.domain)[0].double()
        err = ((torch.einsum("nm,lmo->lno", Phi_v, path) / self.width - Yv.double()[None]) ** 2).sum((1, 2))
        if self.data_parallel is not None:  # the held-out rows of every rank
            _, err = self.sum_rows(Xv.shape[0], err)
        best = torch.argmin(err)
        self.lam = self.alphas.to(err)[best]
        return path[best].to(Phi.dtype)

    def step(self, X, Y, lr):
        """One step of the chosen solver with time step ``tau = lr``; returns 0-dim tensors before the step.

        ``risk`` is the data fit (MSE/2), ``reduced_risk`` is ``R(omega, u)/lambda`` (the reduced risk
        ``L(omega)`` exactly for full-batch VarPro, an upper bound of it for the other solvers), and
        ``pl_ratio`` is ``||grad L||^2_{L2(mu)} / L`` with
        ``||grad L||^2_{L2(mu)} = (1/M) sum_i |M grad_{omega_i} L|^2``, the squared speed of the particle flow.
        """
        M = self.width
        c = regularizer_centre(self.regularization)
        kept = None  # the features of a single-block batch, computed once for the projection and the gradient
        if self.solver == "varpro":
            if self.row_blocked:
                u_bar, kept = self._project_blocks(X, Y)
            else:
                u_bar = self._projection(features(self.omega, X, self.activation, self.domain)[0], Y)
            if self.stochastic and self._u_ready:
                # Eq. III.46: average the minibatch projections, which fluctuate with the sampling
                self.u.mul_(self.momentum).add_(u_bar, alpha=1.0 - self.momentum)
            else:
                self.u.copy_(u_bar)
            self._u_ready = True
        if self.row_blocked:
            G, datafit, PtR, trace = self._gradient_blocks(X, Y, kept)
            penalty = self.lam * 0.5 * ((self.u - c) ** 2).sum() / M
        else:
            G, (datafit, penalty, Phi, r) = feature_gradient(
                self.omega, self.u, X, Y, self.lam, self.regularization, self.activation, self.domain, self._reduce)
            if self.solver != "varpro":
                # the sums over rows of Phi^T r and trace(Phi^T Phi) (over every rank's rows in a data-parallel fit)
                n_rows, PtR, trace = self.sum_rows(X.shape[0], Phi.T @ r, (Phi * Phi).sum())
                PtR, trace = PtR / n_rows, trace / n_rows
        L = (datafit + penalty) / self.lam
        velocity = M * G  # Eq. III.42: omega_i <- omega_i - M tau grad_{omega_i} L
        if self.auto:
            # Eq. III.42 is in the time of L = R / lambda: a re-chosen lambda would rescale the step. With 'auto'
            # the features keep the time of R / AUTO_TIME_UNIT, so that only the projection follows lambda
            velocity = velocity * (self.lam / AUTO_TIME_UNIT)
        speed2 = (velocity * velocity).sum() / M
        if self.solver != "varpro":
            grad_u = PtR / M + self.lam * (self.u - c) / M
            if self.solver == "two-timescale":
                # Eq. III.44 with eta = lambda M: a unit step on the Hessian (K + lambda) / M of u -> R/lambda
                # when ||K|| <= 1 (the thesis's regime). The features move and K with them, so bound the step
                # by trace(K) + lambda >= ||K + lambda||_op at every step (on the device, no host sync).
                scale = M / torch.clamp(trace / M + self.lam, min=1.0)
                self.u.sub_(grad_u * scale)
            else:  # gd: a single timescale, the features' step M tau / lambda for u too
                self.u.sub_(grad_u * (M * lr / self.lam))  # lam is a 0-dim tensor with alpha='auto'
        self.omega.sub_(velocity, alpha=lr)
        if self.domain == "sphere":
            # projected step on the sphere (Eq. III.39): renormalise after the tangent step
            self.omega.div_(self.omega.norm(dim=1, keepdim=True))
        self.n_steps += 1
        if self.store_every and self.n_steps % self.store_every == 0:
            self.snapshots.append(self.omega.detach().clone())
        alpha = torch.as_tensor(self.lam, dtype=datafit.dtype, device=datafit.device)
        return {"risk": datafit, "reduced_risk": L, "pl_ratio": speed2 / L, "alpha": alpha}


class TorusVarProFlow(VarProFlow):
    """:class:`VarProFlow` of an RBF network on the flat torus ``R^d / L Z^d`` (thesis App. III.B, Eq. III.50).

    The model ``F(x) = (1/M) sum_i u_i k([omega_i - x])`` only depends on the features modulo ``L Z^d``, so the
    flow is VarPro's (same solvers, same time step ``omega <- omega - M tau grad L``), followed after every step
    by the projection of the features on the fundamental domain ``[-L/2, L/2)^d`` (also of the stored
    snapshots): ``omega`` always holds the representatives. The construction wraps the initial features too.

    Parameters
    ----------
    omega, u, **kwargs
        As for :class:`VarProFlow`.
    activation : RBFKernel, default=RBFKernel()
        The kernel (the thesis's Laplace kernel ``8 exp(-|z| / 2)`` by default).
    domain : Torus or 'torus', default=Torus(4.0)
    """

    def __init__(self, omega, u, *, activation=None, domain="torus", **kwargs):
        activation = RBFKernel() if activation is None else activation
        if not isinstance(activation, RBFKernel):
            raise ValueError(f"features on a torus are RBF features: activation must be an RBFKernel; got "
                             f"{activation!r}.")
        domain = as_domain(domain)
        if not isinstance(domain, Torus):
            raise ValueError(f"TorusVarProFlow needs a Torus domain; got {domain!r}.")
        super().__init__(domain.wrap(omega), u, activation=activation, domain=domain, **kwargs)

    def bytes_per_row(self, training=True):
        """VarPro's, plus the ``d`` projected differences ``[omega_i - x_n]`` (and one temporary) per row."""
        M, dim = self.omega.shape
        extra = self.itemsize * (dim + 1) * M
        return super().bytes_per_row(training) + (extra if training else self.itemsize * 2 * M)

    def step(self, X, Y, lr):
        """One step of :meth:`VarProFlow.step`, then the features (and a snapshot just stored) are wrapped."""
        out = super().step(X, Y, lr)
        self.omega.copy_(self.domain.wrap(self.omega))
        if self.store_every and self.snapshots and self.n_steps % self.store_every == 0:
            self.snapshots[-1].copy_(self.domain.wrap(self.snapshots[-1]))
        return out
