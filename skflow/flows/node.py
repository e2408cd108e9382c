"""Engine of MeanFieldNODERegressor: the mean-field NODE with single-hidden-layer residuals (thesis Ch. I, §II.5).

Shapes: inputs ``X`` (N, d), targets ``Y`` (N, d'), state ``z`` (N, D) with ``D = d + d' + extra``,
particles ``U`` (S, M, D), ``W`` (S, M, D), ``b`` (S, M).

The residual of layer k is the mean-field SHL perceptron (Eq. II.35)::

    F_k(z) = (1/M) sum_i u_{k,i} sigma(w_{k,i} . z + b_{k,i})

and the forward flow over [0, 1] takes S steps of size h = 1/S (Euler: a ResNet with 1/S branch scaling).
Training is the explicit Euler scheme of the Conditional-Wasserstein gradient flow (Def. I.3): each particle
moves with velocity ``-grad R[mu](s_k, theta_{k,i}) = -(S M) dR/dtheta_{k,i}``.
"""

import math

import torch

from ._flow import Flow, euler_forward, euler_sweep, layer_forward_kernel, row_blocks
from ._fused import elementwise_kernels, graph_kernel, product_and_column_sum
from ._ops import ACTIVATIONS, lift, sample_spectral, split_weights, weighted_sum

__all__ = ["MeanFieldSHLFlow", "init_particles"]


def init_particles(S, M, D, feature_init="gaussian", feature_scale=1.0, nu=1.5, generator=None,
                   dtype=torch.float64):
    """FixUp / identity initialisation (§II.5.3): ``u = 0``, ``b ~ U[0, pi]``, ``w`` i.i.d. per layer.

    ``gaussian``: ``w ~ N(0, rho^2 I)``; then with ``sigma = cos``, ``E k^1(x, y) = exp(-rho^2 |x-y|^2 / 2) / 2``.
    ``student``: ``w = rho * t`` with ``t`` a standard multivariate Student-t with ``2 nu`` degrees of freedom
    (density ``~ (1 + |t|^2 / (2 nu))^{-(D/2 + nu)}``); with ``sigma = cos`` the expected kernel is half the
    Matern-``nu`` kernel of length scale ``1 / rho``. Drawn on the CPU with ``generator``.
    """
    kernel = "gaussian" if feature_init == "gaussian" else "matern"
    W = sample_spectral(S * M, D, kernel, 1.0 / feature_scale, nu, generator=generator, dtype=dtype)
    W = W.reshape(S, M, D)
    b = torch.rand(S, M, generator=generator, dtype=dtype) * math.pi
    U = torch.zeros(S, M, D, dtype=dtype)
    return U, W, b


def layer_adjoint(pT, zT, s, ds, W, V, gu, gw, gb, *, propagate=True):
    """The adjoint of one Euler layer: adds the layer's terms to ``gu = g(U^T)`` (D, M), ``gw = g(W^T)`` (D, M)
    and ``gb`` (M,), and returns ``(p_k^T, gu, gw, gb)`` from ``p_{k+1}^T`` (with ``propagate=False``, the
    first layer, ``p_{k+1}^T`` unchanged: ``p_0`` is not needed)."""
    gu = torch.addmm(gu, pT, s)
    Ga, colsum = product_and_column_sum(torch.mm(pT.T, V), ds)
    gw = torch.addmm(gw, zT, Ga)
    return (torch.addmm(pT, W.T, Ga.T) if propagate else pT), gu, gw, gb + colsum


#: the sizes the depth-generic adjoint layer graph leaves symbolic: rows, width and state dimension
layer_adjoint.symbolic_dims = (("D", "rows"), ("D", "rows"), ("rows", "M"), ("rows", "M"), ("M", "D"), ("D", "M"),
                               ("D", "M"), ("D", "M"), ("M",))


def adjoint_block(X, Y, W, b, UTc, R, gUT, gWT, gb, *, activation, d_in, d_out, scale, n_total, weighted=False,
                  layer_graphs=None):
    """Forward and adjoint pass of the Euler NODE on a block of rows: the one definition of a training step's
    sums, run eagerly and compiled (:meth:`~skflow.flows._flow.Flow.sweep_blocks`).

    Returns the risk ``R`` (0-dim) and the transposed gradients ``gUT`` (S, D, M) (before the factor ``h/M``),
    ``gWT`` (S, D, M), ``gb`` (S, M) given, plus the block's terms, each row's loss divided by ``n_total``.
    ``UTc`` is ``(h/M) U_k^T = U_k^T / (S M)`` for every layer (S, D, M): the step size travels in a tensor, so
    that a compiled graph does not specialise on the width (its width and state dimension are symbolic, see
    ``symbolic_dims``); ``scale`` is the output scale.
    ``weighted``: ``Y`` carries the rows' weights as its last column, and each row's loss is multiplied by its
    weight (the weighted empirical risk, ``../SPEC.md`` §5). ``layer_graphs``: the compiled
    :func:`~skflow.flows._flow.layer_forward` and :func:`layer_adjoint` (functions of tensors) to run layer by
    layer, the depth a loop outside the graphs (the depth-generic tier, :meth:`MeanFieldSHLFlow.layer_kernels`);
    by default the eager sweep, shared with predictions.

    States are kept transposed, ``z^T`` (D, n), so that every product has the layout BLAS runs fastest; the
    scalings ``h/M`` go on the small (M, D) side of each product, the bias on the activation's pass.
    """
    S, D = W.shape[0], W.shape[2]
    zT = X.new_zeros((D, X.shape[0]))
    zT[:d_in] = X.T
    if layer_graphs is None:
        zT, states, acts = euler_sweep(zT, [(W[k], b[k], UTc[k], 1.0) for k in range(S)], activation, keep=True)
    else:
        states, acts = [], []
        for k in range(S):
            states.append(zT)
            zT, s, ds = layer_graphs[0](zT, W[k], b[k], UTc[k])
            acts.append((s, ds))
    out = slice(d_in, d_in + d_out)
    Y, w = split_weights(Y, weighted)
    r = scale * zT[out].T - Y
    rw = r if w is None else r * w[:, None]
    R = R + 0.5 * (rw * r).sum() / n_total
    pT = torch.zeros_like(zT)
    pT[out] = (scale / n_total) * rw.T
    gU, gW, gB = [None] * S, [None] * S, [None] * S
    for k in range(S - 1, -1, -1):
        s, ds = acts[k]
        if layer_graphs is None:
            pT, gU[k], gW[k], gB[k] = layer_adjoint(pT, states[k], s, ds, W[k], UTc[k], gUT[k], gWT[k], gb[k],
                                                    propagate=k > 0)
        else:
            pT, gU[k], gW[k], gB[k] = layer_graphs[1](pT, states[k], s, ds, W[k], UTc[k], gUT[k], gWT[k], gb[k])
    return R, torch.stack(gU), torch.stack(gW), torch.stack(gB)


#: the sizes a compiled :func:`adjoint_block` leaves symbolic: the rows, the width ``M`` and the state dimension
#: ``D`` (one package serves every width and every number of extra dimensions of a depth and data shape)
adjoint_block.symbolic_dims = (("rows",), ("rows",), (None, "M", "D"), (None, "M"), (None, "D", "M"), (),
                               (None, "D", "M"), (None, "D", "M"), (None, "M"))


class MeanFieldSHLFlow(Flow):
    """Engine of :class:`skflow.MeanFieldNODERegressor`.

    Parameters
    ----------
    U, W : Tensor (S, M, D)
    b : Tensor (S, M)
    d_in, d_out : int
        Input and output dimensions (``D >= d_in + d_out``).
    activation : str
        Key of :data:`ACTIVATIONS`.
    output_scale : float
        Predictions are ``output_scale * z(1)[d_in:d_in + d_out]`` (lifting and scaling, §II.6).
    solver : {'euler', 'midpoint', 'rk4'}
        Integrator of the forward flow. Each layer's residual ``F_k`` is evaluated inside its own layer
        only: the parameter measure is piecewise constant in depth.
    train_features : bool
        False freezes ``W`` and ``b`` (random-feature residuals).
    """

    _tensor_fields = ("U", "W", "b", "U0", "W0", "b0")

    def __init__(self, U, W, b, d_in, d_out, activation="cos", output_scale=1.0, solver="euler",
                 train_features=True):
        self.U, self.W, self.b = U, W, b
        self.U0, self.W0, self.b0 = U.clone(), W.clone(), b.clone()
        self.d_in, self.d_out = int(d_in), int(d_out)
        self.activation = activation
        self.output_scale = float(output_scale)
        self.solver = solver
        self.train_features = bool(train_features)

    @property
    def _param_fields(self):
        return ("U", "W", "b") if self.train_features else ("U",)

    @property
    def n_layers(self):
        return self.U.shape[0]

    def bytes_per_row(self, training=True):
        """Training keeps ``sigma(a_k)``, ``sigma'(a_k)`` (N x M) and ``z_k`` (N x D) for every layer; a forward
        pass holds one layer's pre-activations and activations (and the RK4 stages) at a time."""
        S, M, D = self.U.shape
        if training:
            return self.itemsize * (S * (2 * M + D) + 2 * M + 4 * D)
        return self.itemsize * (3 * M + 6 * D)

    @property
    def width(self):
        return self.U.shape[1]

    row_blocked = True
    supports_data_parallel = True

    @property
    def activations(self):
        return (self.activation,)

    def _block_constants(self):
        """The graph key and the constants of :func:`adjoint_block` (all that a compiled graph specialises on)."""
        key = ("node_adjoint", self.activation, self.n_layers, self.d_in, self.d_out, self.output_scale) + (
            ("weighted",) if self.weighted else ())
        return key, dict(activation=self.activation, d_in=self.d_in, d_out=self.d_out, scale=self.output_scale,
                         weighted=self.weighted)

    def _graph(self):
        return self.block_kernel(adjoint_block, *self._block_constants())

    def layer_kernels(self, block_args):
        """The depth-generic tier: the compiled :func:`~skflow.flows._flow.layer_forward` and
        :func:`layer_adjoint`, with example arguments shaped like the layers of the block ``block_args`` (rows,
        width and state dimension symbolic: one pair of packages per activation, dtype and device runs every
        model shape)."""
        X, _, W, b, UTc = block_args
        n, (M, D) = X.shape[0], W.shape[1:]
        fwd = layer_forward_kernel(self.activation)
        bwd = graph_kernel(("node_layer_adjoint",), lambda: lambda *t: layer_adjoint(*t), layer_adjoint, {})
        zT, A = X.new_empty((D, n)), X.new_empty((n, M))
        return [(fwd, (zT, W[0], b[0], UTc[0])),
                (bwd, (zT, zT, A, A, W[0], UTc[0], UTc[0], UTc[0], b[0]))]

    def block_width(self):
        return self.width

    def compile_kernels(self):
        """The whole-block adjoint graph for training steps and the activation kernel of predictions (Euler;
        the other integrators run eagerly)."""
        return [self._graph(), *elementwise_kernels(self.activation)] if self.solver == "euler" else []

    def elementwise_per_row(self):
        return self.n_layers * self.width

    @property
    def dim(self):
        return self.U.shape[2]

    # ------------------------------------------------------------------ forward
    def residual(self, k, z, U=None, W=None, b=None):
        """``F_k(z) = (1/M) sigma(z W_k^T + b_k) U_k`` (Eq. II.35), shape (N, D)."""
        U = self.U if U is None else U
        W = self.W if W is None else W
        b = self.b if b is None else b
        s, _ = ACTIVATIONS[self.activation](torch.addmm(b[k], z, W[k].T))
        return s @ U[k] / U.shape[1]

    def _layer(self, k, z, h, U, W, b):
        F = lambda x: self.residual(k, x, U, W, b)  # noqa: E731
        if self.solver == "euler":
            return z + h * F(z)
        if self.solver == "midpoint":
            return z + h * F(z + 0.5 * h * F(z))
        k1 = F(z)
        k2 = F(z + 0.5 * h * k1)
        k3 = F(z + 0.5 * h * k2)
        k4 = F(z + h * k3)
        return z + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

    def trajectory(self, X, U=None, W=None, b=None):
        """States ``z(s_k)`` at the start of every layer and at ``s = 1``: list of S + 1 tensors (N, D)."""
        U = self.U if U is None else U
        W = self.W if W is None else W
        b = self.b if b is None else b
        z = lift(X, self.dim)
        S = U.shape[0]
        zs = [z]
        for k in range(S):
            z = self._layer(k, z, 1.0 / S, U, W, b)
            zs.append(z)
        return zs

    def forward(self, X, U=None, W=None, b=None):
        if self.solver != "euler" or U is not None or W is not None or b is not None:
            z = self.trajectory(X, U, W, b)[-1]
            return self.output_scale * z[:, self.d_in:self.d_in + self.d_out]
        S, M, D = self.U.shape
        UTc = self.scaled_outer_weights()
        layers = [(self.W[k], self.b[k], UTc[k], 1.0) for k in range(S)]
        rows = self.block_rows(X.device, training=False, n=X.shape[0])
        z = euler_forward(X, D, layers, self.activation, rows, self.compiled)
        return self.output_scale * z[:, self.d_in:self.d_in + self.d_out]

    def risk(self, X, Y, U=None, W=None, b=None):
        """``R = (1/N) sum_n |y_hat_n - y_n|^2 / 2`` (unregularised, as in the theory); in a data-parallel fit
        the mean over the rows of every rank; with sample weights, the weighted mean."""
        Y, w = split_weights(Y, self.weighted)
        r = self.forward(X, U, W, b) - Y
        return self.reduce_rows(X.shape[0], 0.5 * weighted_sum(r * r, w))[0]

    # ------------------------------------------------------------------ gradients
    def gradients(self, X, Y):
        """Return ``(R, dR/dU, dR/dW, dR/db)`` at the current particles.

        Euler: the discrete adjoint written out (Eq. 55 discretised), no autograd. The adjoint
        ``p_k = dR/dz_k`` runs backward with ``p_k = p_{k+1} + (h/M) [(p_{k+1} U_k^T) * sigma'(a_k)] W_k``, and
        ``dR/dU_k = (h/M) sigma(a_k)^T p_{k+1}``, ``dR/dW_k = (h/M) [(p_{k+1} U_k^T) * sigma'(a_k)]^T z_k``.
        The rows are processed in blocks that fit :meth:`block_rows` and the sums over rows accumulated, so
        that the memory of a step does not grow with ``N``. Midpoint / RK4: autograd through the integrator.
        """
        if self.solver != "euler":
            return self._autograd_gradients(X, Y)
        S, M, D = self.U.shape
        UTc = self.scaled_outer_weights()
        blocks = row_blocks(X.shape[0], self.block_rows(X.device, n=X.shape[0]))
        # the gradients transposed: the products of the adjoint write (D, M) blocks
        totals = (self.U.new_zeros(()), self.U.new_zeros((S, D, M)), self.W.new_zeros((S, D, M)),
                  self.b.new_zeros((S, M)))
        R, gUT, gWT, gb = self.sweep_blocks(adjoint_block, *self._block_constants(), X.shape[0], blocks,
                                            lambda rows, _: (X[rows], Y[rows], self.W, self.b, UTc), totals)
        gU = gUT.transpose(1, 2).mul(1.0 / (S * M))
        return R, gU.contiguous(), gWT.transpose(1, 2).contiguous(), gb

    def scaled_outer_weights(self):
        """``(h/M) U_k^T`` for every layer, (S, D, M): the outer weights of the Euler sweep with the step size
        ``h/M = 1/(S M)`` on the small side of each product (the training blocks and predictions share it, so
        that the risk a step records is that of the model's predictions)."""
        S, M, _ = self.U.shape
        return (self.U.transpose(1, 2) * (1.0 / (S * M))).contiguous()

    def _autograd_gradients(self, X, Y):
        U = self.U.detach().requires_grad_(True)
        W = self.W.detach().requires_grad_(True)
        b = self.b.detach().requires_grad_(True)
        with torch.enable_grad():
            if self.data_parallel is None:
                R = self.risk(X, Y, U, W, b)
            else:  # differentiate this rank's sum over rows, then reduce (the all-reduce is not differentiable)
                Yt, w = split_weights(Y, self.weighted)
                r = self.forward(X, U, W, b) - Yt
                R = 0.5 * weighted_sum(r * r, w)
            gU, gW, gb = torch.autograd.grad(R, (U, W, b))
        if self.data_parallel is not None:
            return self.reduce_rows(X.shape[0], R.detach(), gU, gW, gb)
        return R.detach(), gU, gW, gb

    def velocity(self, X, Y):
        """Particle velocity ``-grad R[mu](s_k, theta_{k,i}) = -(S M) dR/dtheta_{k,i}``: (vU, vW, vb)."""
        _, gU, gW, gb = self.gradients(X, Y)
        c = -float(self.n_layers * self.width)
        return c * gU, c * gW, c * gb

    # ------------------------------------------------------------------ training step
    def step(self, X, Y, lr):
        """One explicit Euler step of the Conditional-Wasserstein gradient flow with time step ``lr``.

        ``theta <- theta - tau (S M) dR/dtheta``; records the P-L ratio
        ``||grad R[mu]||^2_{L2(mu)} / R = S M sum |dR/dtheta|^2 / R`` and the root-mean-square particle
        displacement from the initialisation (an upper bound of ``W2_COT(mu_t, mu_0)``).
        """
        with torch.no_grad():
            R, gU, gW, gb = self.gradients(X, Y)
            SM = float(self.n_layers * self.width)
            sq = (gU * gU).sum()
            if self.train_features:
                sq = sq + (gW * gW).sum() + (gb * gb).sum()
            pl = SM * sq / R
            disp = self.displacement()
            self.U.sub_(gU, alpha=lr * SM)
            if self.train_features:
                self.W.sub_(gW, alpha=lr * SM)
                self.b.sub_(gb, alpha=lr * SM)
        return {"risk": R, "pl_ratio": pl, "cot_displacement": disp}

    def displacement(self):
        """``sqrt((1/S) sum_k (1/M) sum_i |theta_{k,i} - theta^0_{k,i}|^2)``: bound on ``W2_COT(mu, mu_0)``."""
        sq = ((self.U - self.U0) ** 2).sum() + ((self.W - self.W0) ** 2).sum() + ((self.b - self.b0) ** 2).sum()
        return torch.sqrt(sq / (self.n_layers * self.width))

    def particles(self):
        """Particles as one tensor (S, M, 2D + 1): ``(u, w, b)`` concatenated."""
        return torch.cat([self.U, self.W, self.b[..., None]], dim=-1)

    def initial_particles(self):
        return torch.cat([self.U0, self.W0, self.b0[..., None]], dim=-1)

    # ------------------------------------------------------------------ kernel diagnostics
    def feature_kernels(self, X, initial=False):
        """Kernel matrices ``K1_k = Phi_k Phi_k^T / M`` on the states ``z(s_k)`` (Eq. II.38): (S, N, N)."""
        U, W, b = (self.U0, self.W0, self.b0) if initial else (self.U, self.W, self.b)
        zs = self.trajectory(X, U, W, b)
        act = ACTIVATIONS[self.activation]
        Ks = []
        for k in range(self.n_layers):
            Phi, _ = act(torch.addmm(b[k], zs[k], W[k].T))
            Ks.append(Phi @ Phi.T / self.width)
        return torch.stack(Ks)
