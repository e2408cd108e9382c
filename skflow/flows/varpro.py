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

import torch

from ..diagnostics.kernels import top_eigenvalues
from ._features import RBF_KERNELS, RBFKernel, Torus, as_domain, augment, features, rbf_features, rbf_gradient
from ._flow import Flow, row_blocks
from ._fused import activation_with_bias, elementwise_kernels, outer_product_and_column_sum
from ._ops import ACTIVATIONS, regularizer_centre, split_weights, weighted_sum
from ._ridge import (
    DEFAULT_ALPHAS,
    FLOAT64_GRAM_BELOW,
    loo_eigen,
    loo_squares,
    ridge_loo_path,
    ridge_projection,
    risk_parts,
    root_weighted,
    select_ridge,
    solve_primal,
)

# the feature maps (:mod:`skflow.flows._features`) and the ridge solves (:mod:`skflow.flows._ridge`) are
# re-exported here, where the functional API of VarPro has always been
__all__ = [
    "AUTO_TIME_UNIT",
    "DEFAULT_ALPHAS",
    "RBF_KERNELS",
    "RBFKernel",
    "Torus",
    "TorusVarProFlow",
    "VarProFlow",
    "augment",
    "feature_gradient",
    "features",
    "gradient_block",
    "kernel_spectrum",
    "rbf_features",
    "reduced_risk",
    "ridge_loo_path",
    "ridge_projection",
    "select_ridge",
]

#: with ``lam='auto'`` the features move in the time units of this fixed strength (see ``VarProFlow.step``)
AUTO_TIME_UNIT = 1e-3


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
    datafit, penalty, _ = risk_parts(Phi, Y, u, lam, regularization)
    return (datafit + penalty) / lam, u, datafit


def feature_gradient(omega, u, X, Y, lam, regularization="biased", activation="relu", domain="euclidean",
                     reduce=None, weighted=False):
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
    over the ranks (one collective). ``weighted``: ``Y`` carries the rows' weights as its last column
    (:func:`root_weighted`; ``Phi`` and ``r`` are then returned scaled by ``sqrt(w)``).

    Returns
    -------
    grad : Tensor (M, dim)
    parts : tuple (datafit, penalty, Phi, r)
    """
    Phi, dPhi, Xbar = features(omega, X, activation, domain)
    Y, Phi, dPhi = root_weighted(Y, weighted, Phi, dPhi)
    n_total = None if reduce is None else 1  # data-parallel: sums over this rank's rows, reduced below
    datafit, penalty, r = risk_parts(Phi, Y, u, lam, regularization, n_total)
    N, M = Phi.shape
    n_total = N if reduce is None else 1
    if isinstance(activation, RBFKernel):
        G = rbf_gradient((r @ u.T) * dPhi, omega, Xbar, as_domain(domain)) / (n_total * M * lam)
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


def kernel_spectrum(omega, X, activation="relu", domain="euclidean", k=10, weights=None):
    """Top eigenvalues of the tangent kernel ``K = Phi^T Phi / (N M)`` (descending, Eq. III.24).

    Uses whichever of ``Phi^T Phi`` (M x M) and ``Phi Phi^T`` (N x N) is smaller: they share their nonzero
    eigenvalues.
    """
    Phi, _, _ = features(omega, X, activation, domain)
    return top_eigenvalues(Phi, k, weights)


def block_features(X, omega, activation, euclidean, compiled=False):
    """``(Phi, sigma')`` of perceptron features on a block of rows: one product and one fused pass (bias,
    activation, derivative; the compiled kernel when ``compiled``)."""
    if euclidean:  # x_bar = (x, 1): the last coordinate of omega is the bias
        return activation_with_bias(activation, X @ omega[:, :-1].T, omega[:, -1], compiled)
    return ACTIVATIONS[activation](X @ omega.T)


def gradient_block(X, Y, omega, u, uc, G, datafit, PtR, trace, *, activation, euclidean, solver, Phi=None,
                   dPhi=None, weighted=False):
    """The sums over a block of rows of a VarPro step at fixed ``u`` (perceptron features): the one definition,
    run eagerly and compiled (:meth:`~skflow.flows._flow.Flow.sweep_blocks`).

    Returns ``G`` (M, dim), ``datafit``, ``PtR`` (M, n_out) and ``trace`` given, plus the block's
    ``sum_n Ga_ni x_bar_n``, ``sum |r|^2`` and, for the solvers that step ``u`` too, ``Phi^T r`` (not 'varpro') and
    ``|Phi|^2`` ('two-timescale'), with ``r = Phi u / M - y`` and ``Ga = (r u^T) * sigma'``. ``uc`` is ``u / M``
    (the width travels in a tensor: a compiled graph leaves the width and the input dimension symbolic, see
    ``symbolic_dims``). ``Phi, dPhi``: the block's features, when already computed (else computed here). ``weighted``:
    ``Y`` carries the rows' weights as its last column (:func:`root_weighted`).
    """
    if Phi is None:
        Phi, dPhi = block_features(X, omega, activation, euclidean)
    Y, Phi, dPhi = root_weighted(Y, weighted, Phi, dPhi)
    r = torch.addmm(Y, Phi, uc, beta=-1.0)  # F - y
    datafit = datafit + (r * r).sum()
    Ga, colsum = outer_product_and_column_sum(r, u, dPhi)
    Gb = (X.T @ Ga).T
    G = G + (torch.cat([Gb, colsum[:, None]], 1) if euclidean else Gb)
    if solver != "varpro":
        PtR = PtR + Phi.T @ r
        if solver == "two-timescale":
            trace = trace + (Phi * Phi).sum()
    return G, datafit, PtR, trace


#: the sizes a compiled :func:`gradient_block` leaves symbolic: the rows, the width ``M`` and the input dimension
#: (one package serves every width and data set of an activation, domain and solver)
gradient_block.symbolic_dims = (("rows", "d"), ("rows",), ("M", "dim"), ("M",), ("M",), ("M", "dim"), (), ("M",), ())


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
            self.lam = select_ridge(*self._root_weighted_rows(features(self.omega, X, self.activation, self.domain)[0],
                                                              Y), self.alphas, self.regularization, self._reduce)[0]

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

    def _block_constants(self):
        """The graph key and the constants of :func:`gradient_block` (all that a compiled graph specialises on)."""
        euclid = self.domain == "euclidean"
        key = ("varpro_gradient", self.activation, euclid, self.solver) + (
            ("weighted",) if self.weighted else ())
        return key, dict(activation=self.activation, euclidean=euclid, solver=self.solver,
                         weighted=self.weighted)

    def _graph(self):
        return self.block_kernel(gradient_block, *self._block_constants(), means=False)

    def compile_kernels(self):
        """The whole-block gradient graph and the features' kernel (Gram sums, predictions); perceptron
        features only (RBF features run eagerly)."""
        if not self.row_blocked:
            return []
        return [self._graph(), *elementwise_kernels(self.activation, value=False, derivative=True)]

    def _blocks(self, X):
        return row_blocks(X.shape[0], self.block_rows(X.device, n=X.shape[0]))

    def _block_features(self, X):
        """``(Phi, sigma')`` on a block (:func:`block_features`)."""
        return block_features(X, self.omega, self.activation, self.domain == "euclidean", self.compiled)

    def _gram(self, X, Y):
        """``(N, Phi^T Phi, Phi^T Y, kept)``: the sums over the rows (of every rank in a data-parallel fit), in
        float64, and the features ``(Phi, sigma')`` when the batch is a single block (reused by the step)."""
        M, n_out = self.width, Y.shape[1] - self.weighted
        wide = self.auto or X.dtype == torch.float64 or self.lam < FLOAT64_GRAM_BELOW
        G = X.new_zeros((M, M), dtype=torch.float64)
        PtY = X.new_zeros((M, n_out), dtype=torch.float64)
        blocks = self._blocks(X)
        kept = None
        for rows in blocks:
            Phi, dPhi = self._block_features(X[rows])
            Yb, P = root_weighted(Y[rows], self.weighted, Phi)
            P, Yb = (P.double(), Yb.double()) if wide else (P, Yb.to(Phi.dtype))
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
            return solve_primal(G, PtY, N, M, self.lam, c).to(X.dtype), kept
        V, w, B, path = loo_eigen(G, PtY, N, M, self.alphas, c)
        if self.validation is None:  # exact leave-one-out, a second pass over the rows
            Xs, Ys = X, Y
            err = sum(loo_squares(*self._root_weighted_rows(
                kept[0] if kept is not None else self._block_features(Xs[rows])[0], Ys[rows]), V, w, B, M, c)
                for rows in self._blocks(Xs))
        else:  # held-out rows: seen neither by the projection nor by the features
            Xs, Ys = self.validation
            err = sum(self._path_squares(self._block_features(Xs[rows])[0], Ys[rows], path)
                      for rows in self._blocks(Xs))
        _, err = self.sum_rows(Xs.shape[0], err)
        best = torch.argmin(err)
        self.lam = self.alphas.to(err)[best]
        return path[best].to(X.dtype), kept

    def _root_weighted_rows(self, Phi, Y):
        """``(Phi, Y)`` of a batch with the rows' weights folded in (:func:`root_weighted`)."""
        Y, Phi = root_weighted(Y, self.weighted, Phi)
        return Phi, Y

    def _path_squares(self, Phi, Y, path):
        """Sum over held-out rows of the (weighted) squared errors of every projection of ``path`` (n_lams,)."""
        Phi, Y = self._root_weighted_rows(Phi, Y)
        return ((torch.einsum("nm,lmo->lno", Phi.double(), path) / self.width - Y.double()[None]) ** 2).sum((1, 2))

    def _gradient_blocks(self, X, Y, kept=None):
        """Sums over the rows (of every rank) for the step at fixed ``u``: the feature gradient of
        ``R / lambda`` (Eq. III.10, closed form), the data fit, and for the solvers that step ``u`` too,
        ``Phi^T r`` and ``trace(Phi^T Phi)``. Returns them divided by ``N`` (``G`` by ``N M lambda``)."""
        M = self.width
        totals = (torch.zeros_like(self.omega), X.new_zeros(()), torch.zeros_like(self.u), X.new_zeros(()))
        uc = self.u / M
        G, datafit, PtR, trace = self.sweep_blocks(
            gradient_block, *self._block_constants(), X.shape[0], self._blocks(X),
            lambda rows, _: (X[rows], Y[rows], self.omega, self.u, uc), totals, means=False,
            reuse=None if kept is None else dict(Phi=kept[0], dPhi=kept[1]))
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
        over the rows of every rank; with sample weights, the weighted mean."""
        Y, w = split_weights(Y, self.weighted)
        r = self.forward(X) - Y
        return self.reduce_rows(X.shape[0], 0.5 * weighted_sum(r * r, w))[0]

    def project(self, X, Y):
        """Set ``u`` to the exact projection ``u*(omega)`` on ``(X, Y)``, in place."""
        if self.row_blocked:
            self.u.copy_(self._project_blocks(X, Y)[0])
        else:
            self.u.copy_(self._projection(features(self.omega, X, self.activation, self.domain)[0], Y))
        self._u_ready = True

    def _projection(self, Phi, Y):
        """``u*`` at the fixed ``lam``, or, for ``lam='auto'``, at the strength with the least leave-one-out error
        (which becomes ``lam``); with sample weights, of the weighted risk."""
        Phi, Y = self._root_weighted_rows(Phi, Y)
        if not self.auto:
            return ridge_projection(Phi, Y, self.lam, self.regularization, self._reduce)
        if self.validation is None:
            self.lam, u = select_ridge(Phi, Y, self.alphas, self.regularization, self._reduce)
            return u.to(Phi.dtype)
        # held-out rows: they have been seen neither by the projection nor by the features
        _, path = ridge_loo_path(Phi, Y, self.alphas, self.regularization, self._reduce)
        Xv, Yv = self.validation
        err = self._path_squares(features(self.omega, Xv, self.activation, self.domain)[0], Yv, path)
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
                self.omega, self.u, X, Y, self.lam, self.regularization, self.activation, self.domain, self._reduce,
                self.weighted)
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
