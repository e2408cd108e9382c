"""Engine of VarProSHLRegressor: a two-layer network trained by Variable Projection (thesis Ch. III).

Model (Eq. III.1, III.39)::

    F(x) = (1/M) sum_i u_i phi(omega_i, x),    phi(omega, x) = sigma(omega . x_bar)

with ``x_bar = (x, 1)`` for Euclidean features (last coordinate of ``omega`` is the bias) or ``x_bar = x`` and
``|omega| = 1`` for features on the sphere. Risk (Eq. III.43)::

    R(omega, u) = (1/2N) sum_n |F(x_n) - y_n|^2 + lambda (1/M) sum_i f(u_i),

``f(u) = |u|^2/2`` ("biased") or ``|u - 1|^2/2`` ("unbiased"), and the reduced risk (Eq. III.8, III.41)
``L(omega) = (1/lambda) min_u R(omega, u)``.

Pure torch, no scikit-learn. Every function works on the device of its inputs and never syncs with the
host (no ``.item()``), so that the fit loop can run asynchronously on a GPU.
"""

import torch

from ..diagnostics.kernels import top_eigenvalues
from ._flow import Flow
from ._ops import ACTIVATIONS, regularizer_centre

__all__ = [
    "DEFAULT_ALPHAS",
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


def features(omega, X, activation="relu", domain="euclidean"):
    """Feature matrix ``Phi[n, i] = sigma(omega_i . x_bar_n)`` and ``sigma'`` at the same pre-activations.

    Returns
    -------
    Phi, dPhi : Tensor (N, M)
    Xbar : Tensor (N, d + 1) or (N, d)
    """
    Xbar = augment(X, domain)
    A = Xbar @ omega.T
    Phi, dPhi = ACTIVATIONS[activation](A)
    return Phi, dPhi, Xbar


def _centre(regularization, M, n_out, like):
    """Minimiser ``c`` of the regulariser ``f``: 0 (biased) or the vector of ones (unbiased, the teacher's u)."""
    return torch.full((M, n_out), regularizer_centre(regularization), dtype=like.dtype, device=like.device)


def ridge_projection(Phi, Y, lam, regularization="biased"):
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
    if N >= M:
        G = (P.T @ P).double() / (N * M)
        rhs = (P.T @ Yw).double() / N + lam * c
        G.diagonal().add_(lam)
        L, _ = torch.linalg.cholesky_ex(G)
        u = torch.cholesky_solve(rhs, L)
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


def ridge_loo_path(Phi, Y, lams, regularization="biased"):
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

    Returns
    -------
    loo : Tensor (n_lams,)
        Mean over rows of the squared leave-one-out residual (summed over outputs), in float64.
    u : Tensor (n_lams, M, n_outputs)
        The exact projection ``u*`` on all rows for each strength, in float64.
    """
    P = Phi.double()
    N, M = P.shape
    A = P / M
    c = regularizer_centre(regularization)
    Yt = Y.double() - A.sum(1, keepdim=True) * c
    s2, V = torch.linalg.eigh(A.T @ A)
    AV = A @ V  # (N, M)
    B = AV.T @ Yt  # (M, n_out)
    mu = (N / M) * lams.to(P)
    w = 1.0 / (s2.clamp(min=0.0)[None, :] + mu[:, None])  # (n_lams, M)
    fit = torch.einsum("nm,lm,mo->lno", AV, w, B)  # H Y~ for every strength
    h = w @ (AV * AV).T  # (n_lams, N): diag(H)
    e = (Yt[None] - fit) / (1.0 - h)[..., None]
    u = c + torch.einsum("km,lm,mo->lko", V, w, B)
    return (e * e).sum((1, 2)) / N, u


def select_ridge(Phi, Y, lams, regularization="biased"):
    """The strength of ``lams`` with the smallest leave-one-out error, and its projection (0-dim, (M, n_out)).

    Stays on the device (no host synchronisation).
    """
    loo, u = ridge_loo_path(Phi, Y, lams, regularization)
    best = torch.argmin(loo)
    return lams.to(loo)[best], u[best]


def _risk_parts(Phi, Y, u, lam, regularization):
    """Data fit ``(1/2N) |F - Y|^2`` and regulariser ``lambda (1/M) sum f(u_i)`` of Eq. III.43, and the residual."""
    N, M = Phi.shape
    r = Phi @ u / M - Y
    datafit = 0.5 * (r * r).sum() / N
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


def feature_gradient(omega, u, X, Y, lam, regularization="biased", activation="relu", domain="euclidean"):
    """``grad_omega (1/lambda) R(omega, u)`` at fixed ``u``, in closed form.

    At ``u = u*(omega)`` this is ``grad_omega L`` by the envelope theorem (Eq. III.10): the derivative of
    ``u*`` does not enter since ``grad_u R = 0`` there, so there is no differentiation through the solve.
    With ``r_n = F(x_n) - y_n``::

        grad_{omega_i} R = (1 / (N M)) sum_n (r_n . u_i) sigma'(omega_i . x_bar_n) x_bar_n.

    On the sphere the Euclidean gradient is projected on the tangent space at ``omega_i``.

    Returns
    -------
    grad : Tensor (M, dim)
    parts : tuple (datafit, penalty, Phi, r)
    """
    Phi, dPhi, Xbar = features(omega, X, activation, domain)
    datafit, penalty, r = _risk_parts(Phi, Y, u, lam, regularization)
    N, M = Phi.shape
    G = ((r @ u.T) * dPhi).T @ Xbar / (N * M * lam)
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
    activation : str
        Key of :data:`skflow.flows._ops.ACTIVATIONS`.
    domain : {'euclidean', 'sphere'}
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

    def __init__(self, omega, u, *, lam, regularization="biased", activation="relu", domain="euclidean",
                 solver="varpro", momentum=0.9, stochastic=False, store_every=None, alphas=DEFAULT_ALPHAS):
        self.omega = omega
        self.u = u
        self.auto = isinstance(lam, str)
        self.validation = None
        self.alphas = torch.as_tensor(alphas, dtype=torch.float64, device=omega.device)
        self.lam = self.alphas[len(self.alphas) // 2].clone() if self.auto else float(lam)
        self.regularization = regularization
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
                                    self.regularization)[0]

    def finish(self, X, Y, n_steps):
        """After the last step of full-batch VarPro ``u`` is the projection at the previous features:
        re-project, so that the model is ``u*(omega)`` at the final features exactly (VarPro's model)."""
        if self.solver == "varpro" and not self.stochastic and self.n_steps > 0:
            self.project(X, Y)
        self.validation = None  # the fitted model keeps no data

    # ------------------------------------------------------------------ protocol
    def forward(self, X):
        Phi, _, _ = features(self.omega, X, self.activation, self.domain)
        return Phi @ self.u / self.width

    def risk(self, X, Y):
        """Data-fit part ``(1/2N) |F - Y|^2`` (what the base monitors for early stopping)."""
        r = self.forward(X) - Y
        return 0.5 * (r * r).sum() / X.shape[0]

    def project(self, X, Y):
        """Set ``u`` to the exact projection ``u*(omega)`` on ``(X, Y)``, in place."""
        Phi, _, _ = features(self.omega, X, self.activation, self.domain)
        self.u.copy_(self._projection(Phi, Y))
        self._u_ready = True

    def _projection(self, Phi, Y):
        """``u*`` at the fixed ``lam``, or, for ``lam='auto'``, at the strength with the least leave-one-out error
        (which becomes ``lam``)."""
        if not self.auto:
            return ridge_projection(Phi, Y, self.lam, self.regularization)
        if self.validation is None:
            self.lam, u = select_ridge(Phi, Y, self.alphas, self.regularization)
            return u.to(Phi.dtype)
        # held-out rows: they have been seen neither by the projection nor by the features
        _, path = ridge_loo_path(Phi, Y, self.alphas, self.regularization)
        Xv, Yv = self.validation
        Phi_v = features(self.omega, Xv, self.activation, self.domain)[0].double()
        err = ((torch.einsum("nm,lmo->lno", Phi_v, path) / self.width - Yv.double()[None]) ** 2).sum((1, 2))
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
        if self.solver == "varpro":
            Phi, _, _ = features(self.omega, X, self.activation, self.domain)
            u_bar = self._projection(Phi, Y)
            if self.stochastic and self._u_ready:
                # Eq. III.46: average the minibatch projections, which fluctuate with the sampling
                self.u.mul_(self.momentum).add_(u_bar, alpha=1.0 - self.momentum)
            else:
                self.u.copy_(u_bar)
            self._u_ready = True
        G, (datafit, penalty, Phi, r) = feature_gradient(
            self.omega, self.u, X, Y, self.lam, self.regularization, self.activation, self.domain)
        L = (datafit + penalty) / self.lam
        velocity = M * G  # Eq. III.42: omega_i <- omega_i - M tau grad_{omega_i} L
        if self.auto:
            # Eq. III.42 is in the time of L = R / lambda: a re-chosen lambda would rescale the step. With 'auto'
            # the features keep the time of R / AUTO_TIME_UNIT, so that only the projection follows lambda
            velocity = velocity * (self.lam / AUTO_TIME_UNIT)
        speed2 = (velocity * velocity).sum() / M
        if self.solver != "varpro":
            c = regularizer_centre(self.regularization)
            grad_u = Phi.T @ r / (X.shape[0] * M) + self.lam * (self.u - c) / M
            if self.solver == "two-timescale":
                # Eq. III.44 with eta = lambda M: a unit step on the Hessian (K + lambda) / M of u -> R/lambda
                # when ||K|| <= 1 (the thesis's regime). The features move and K with them, so bound the step
                # by trace(K) + lambda >= ||K + lambda||_op at every step (on the device, no host sync).
                trace = (Phi * Phi).sum() / (X.shape[0] * M)
                scale = M / torch.clamp(trace + self.lam, min=1.0)
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
