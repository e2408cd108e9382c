"""Engine of RKHSNODEClassifier: a NODE with residuals in a random-feature RKHS (thesis §II.4).

Shapes: inputs ``X`` (N, d), encoded targets ``Y`` (N, K), state ``z`` (N, D) with ``D = d + K``,
random frequencies ``W`` (M, D), offsets ``b`` (M,), trained coefficients ``theta`` (S, D, M).

The feature map is fixed and shared by all layers (Eq. II.33-34)::

    phi(z) = sqrt(2/M) cos(W z + b)  in R^M,   so that  phi(z) . phi(z') -> k(z, z')  as M -> inf,

the residual of layer k is ``F_k(z) = theta_k phi(z)`` (Eq. II.18, II.20) and the forward flow is the Euler
scheme of Eq. II.23 with ``h = 1/S``::

    z_{k+1} = z_k + (1/S) theta_k phi(z_k),   z_0 = (x, 0_K),   logits = output_scale * z_S[d:].

Training is gradient descent in ``L2([0, 1], F)`` (Thm. II.5). With the metric
``||theta||^2_{L2} = (1/S) sum_k |theta_k|_F^2`` the gradient of the risk is ``S dR/dtheta_k`` (Eq. II.26), so an
explicit step with time step ``tau`` is ``theta_k <- theta_k - tau S dR/dtheta_k`` and training curves plotted
against flow time ``tau * iterations`` do not depend on ``S``.

Pure torch, no scikit-learn import.
"""

import math

import torch

from ._flow import Flow, euler_forward, euler_sweep, layer_forward_kernel, row_blocks
from ._fused import elementwise_kernels, graph_kernel
from ._ops import lift, sample_spectral, split_weights

__all__ = ["LOSSES", "RKHSFlow", "init_random_features", "random_features"]

LOSSES = ("cross_entropy", "squared")


def init_random_features(M, D, kernel="gaussian", length_scale=1.0, nu=1.5, generator=None,
                         dtype=torch.float64):
    """Frequencies ``W`` (M, D) from the kernel's spectral measure and offsets ``b ~ U[0, 2 pi]`` (M,).

    Drawn on the CPU with ``generator`` (:func:`skflow.flows._ops.sample_spectral`), so that a seed gives the same
    features on every device. With these, ``E[phi(x) . phi(y)] = k(x, y)`` (Eq. II.34).
    """
    W = sample_spectral(M, D, kernel, length_scale, nu, generator=generator, dtype=dtype)
    b = torch.rand(M, generator=generator, dtype=dtype) * (2.0 * math.pi)
    return W, b


def random_features(Z, W, b):
    """``phi(z) = sqrt(2/M) cos(W z + b)`` for every row of ``Z``: shape (N, M) (Eq. II.33)."""
    M = W.shape[0]
    return math.sqrt(2.0 / M) * torch.cos(torch.addmm(b, Z, W.T))


def loss_and_grad(loss, logits, Y, n, weighted=False):
    """Risk and its gradient with respect to the logits, both summed over the rows and divided by ``n``.

    ``loss``: 'squared' (``|logits - Y|^2 / 2``) or the cross-entropy of ``softmax(logits)`` against ``Y``.
    ``weighted``: ``Y`` carries the rows' weights as its last column, and each row's loss (and its gradient) is
    multiplied by its weight.
    """
    Y, w = split_weights(Y, weighted)
    if loss == "squared":
        r = logits - Y
        rw = r if w is None else r * w[:, None]
        return 0.5 * (rw * r).sum() / n, rw / n
    logp = torch.log_softmax(logits, dim=1)
    Yw = Y if w is None else Y * w[:, None]
    R = -(Yw * logp).sum() / n
    # d/dlogits of -sum_j Y_j log softmax_j = softmax * sum_j Y_j - Y (= softmax - Y for one-hot rows).
    # Once the data are fitted, wrong-class probabilities underflow towards subnormal numbers, which make
    # every later matmul of the adjoint pass tens of times slower on CPUs; probabilities below
    # sqrt(smallest normal) (1e-154 in float64) are set to 0 -- a change far below round-off of the rest.
    P = torch.exp(logp)
    P = torch.where(P < math.sqrt(torch.finfo(P.dtype).tiny), torch.zeros_like(P), P)
    return R, (P * Yw.sum(1, keepdim=True) - Yw) / n


def layer_adjoint(pT, cos, msin, W, V, g, *, propagate=True):
    """The adjoint of one layer: ``(p_k^T, g + p_{k+1}^T cos(a_k))`` from ``p_{k+1}^T`` (D, n), with ``V`` the
    layer's ``hc theta_k`` (D, M) and ``W`` the shared features (M, D); ``propagate=False`` (the first layer)
    returns ``p_{k+1}^T`` unchanged (``p_0`` is not needed). A depth-generic graph (:meth:`RKHSFlow.layer_kernels`)."""
    g = torch.addmm(g, pT, cos)
    if not propagate:
        return pT, g
    q = torch.mm(pT.T, V).mul_(msin)
    return torch.addmm(pT, W.T, q.T), g


#: the sizes the depth-generic adjoint layer graph leaves symbolic: rows, number of features, state dimension
layer_adjoint.symbolic_dims = (("D", "rows"), ("rows", "M"), ("rows", "M"), ("M", "D"), ("D", "M"), ("D", "M"))


def adjoint_block(X, Y, W, b, theta_c, R, grad, *, loss, d_in, scale, n_total, weighted=False, layer_graphs=None):
    """Forward and adjoint pass of the RKHS NODE on a block of rows: the one definition of a training step's sums,
    run eagerly and compiled (:meth:`~skflow.flows._flow.Flow.sweep_blocks`).

    Returns the risk ``R`` (0-dim) and ``grad`` (S, D, M) given, plus the block's terms *before the factor*
    ``hc = h sqrt(2/M)``, each row's loss divided by ``n_total``. ``theta_c`` is ``hc theta`` (S, D, M): the step
    size travels in a tensor, so that a compiled graph does not specialise on the width (its width and state
    dimension are symbolic, see ``symbolic_dims``); the output ``scale`` is a constant. States are
    transposed (D, n); ``cos(a_k)`` and ``sin(a_k)`` come from one fused pass in the forward sweep and are kept for
    the adjoint. ``weighted``: ``Y`` carries the rows' weights as its last column (see :func:`loss_and_grad`).
    ``layer_graphs``: the compiled :func:`~skflow.flows._flow.layer_forward` and :func:`layer_adjoint` to run
    layer by layer (the depth-generic tier, :meth:`RKHSFlow.layer_kernels`); by default the eager sweep, shared
    with predictions.
    """
    S, D = theta_c.shape[0], theta_c.shape[1]
    zT = X.new_zeros((D, X.shape[0]))
    zT[:d_in] = X.T
    if layer_graphs is None:
        zT, _, acts = euler_sweep(zT, [(W, b, theta_c[k], 1.0) for k in range(S)], "cos", keep=True)
    else:
        acts = []
        for k in range(S):
            zT, cos, msin = layer_graphs[0](zT, W, b, theta_c[k])
            acts.append((cos, msin))
    Rb, G = loss_and_grad(loss, scale * zT[d_in:].T, Y, n_total, weighted)
    R = R + Rb
    pT = torch.zeros_like(zT)
    pT[d_in:] = scale * G.T
    g = [None] * S
    for k in range(S - 1, -1, -1):
        cos, msin = acts[k]
        if layer_graphs is None:
            pT, g[k] = layer_adjoint(pT, cos, msin, W, theta_c[k], grad[k], propagate=k > 0)
        else:
            pT, g[k] = layer_graphs[1](pT, cos, msin, W, theta_c[k], grad[k])
    return R, torch.stack(g)


#: the sizes a compiled :func:`adjoint_block` leaves symbolic: the rows, the number of features ``M`` and the state
#: dimension ``D`` (one package serves every width of a depth, data shape and loss)
adjoint_block.symbolic_dims = (("rows",), ("rows",), ("M", "D"), ("M",), (None, "D", "M"), (), (None, "D", "M"))


class RKHSFlow(Flow):
    """Engine of :class:`skflow.RKHSNODEClassifier`.

    Parameters
    ----------
    theta : Tensor (S, D, M)
        Residual coefficients; ``theta = 0`` (the identity map) is the initialisation of Thm. II.6.
    W : Tensor (M, D)
    b : Tensor (M,)
        Fixed random features (never trained).
    d_in : int
        Input dimension ``d``; the outputs are the last ``D - d`` coordinates.
    output_scale : float
        Logits are ``output_scale * z(1)[d:]``.
    loss : {'cross_entropy', 'squared'}
        ``R = -(1/N) sum_n sum_j Y_nj log softmax(logits_n)_j`` or ``R = (1/2N) sum_n |logits_n - Y_n|^2``.
    weight_decay : float
        ``a >= 0``: the objective is ``R + (a/2) ||theta||^2_{L2}`` (the RKHS norm of the residuals, the
        regularisation of a kernel machine); its gradient in ``L2`` adds ``a theta_k`` to ``S dR/dtheta_k``.
    momentum : float in [0, 1)
        Momentum ``m`` of the step, written as an exponential average of the gradient:
        ``v <- m v + (1 - m) S dR/dtheta``, ``theta <- theta - tau v``. The ``1 - m`` keeps the time units of
        the gradient flow (in the limit ``tau -> 0`` the trajectory against ``tau * iterations`` is the same for
        every ``m``), so ``flow_time_`` keeps its meaning; ``m = 0`` is plain gradient descent.
    """

    _tensor_fields = ("theta", "W", "b", "velocity")
    _param_fields = ("theta",)

    def __init__(self, theta, W, b, d_in, output_scale=1.0, loss="cross_entropy", momentum=0.0, weight_decay=0.0):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.theta, self.W, self.b = theta, W, b
        self.velocity = torch.zeros_like(theta)
        self.d_in = int(d_in)
        self.output_scale = float(output_scale)
        self.loss = loss
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)

    @property
    def n_layers(self):
        return self.theta.shape[0]

    @property
    def dim(self):
        return self.theta.shape[1]

    @property
    def n_features(self):
        return self.theta.shape[2]

    activations = ("cos",)

    def _block_constants(self):
        """The graph key and the constants of :func:`adjoint_block` (all that a compiled graph specialises on)."""
        key = ("rkhs_adjoint", self.n_layers, self.d_in, self.loss, self.output_scale) + (
            ("weighted",) if self.weighted else ())
        return key, dict(loss=self.loss, d_in=self.d_in, scale=self.output_scale, weighted=self.weighted)

    def step_size(self, theta=None):
        """``hc = h sqrt(2/M)``: the factor of every layer's residual ``hc theta_k cos(W z + b)``."""
        S, _, M = (self.theta if theta is None else theta).shape
        return math.sqrt(2.0 / M) / S

    def _graph(self):
        return self.block_kernel(adjoint_block, *self._block_constants())

    def layer_kernels(self, block_args):
        """The depth-generic tier: the compiled :func:`~skflow.flows._flow.layer_forward` (cos) and
        :func:`layer_adjoint`, with example arguments shaped like the layers of the block ``block_args`` (rows,
        features and state dimension symbolic: one pair of packages per dtype and device runs every depth)."""
        X, _, W, b, theta_c = block_args
        n, (M, D) = X.shape[0], W.shape
        bwd = graph_kernel(("rkhs_layer_adjoint",), lambda: lambda *t: layer_adjoint(*t), layer_adjoint, {})
        zT, A = X.new_empty((D, n)), X.new_empty((n, M))
        return [(layer_forward_kernel("cos"), (zT, W, b, theta_c[0])), (bwd, (zT, A, A, W, theta_c[0], theta_c[0]))]

    def block_width(self):
        return self.n_features

    def compile_kernels(self):
        """The whole-block adjoint graph for training steps, the elementwise kernels for predictions."""
        return [self._graph(), *elementwise_kernels("cos")]

    row_blocked = True
    supports_data_parallel = True

    def elementwise_per_row(self):
        return self.n_layers * self.n_features

    def bytes_per_row(self, training=True):
        """Training keeps the pre-activations (N x M) of every layer and a few N x M temporaries; a forward
        pass holds one layer's features at a time."""
        S, D, M = self.theta.shape
        if training:
            return self.itemsize * (S * (M + D) + 3 * M + 4 * D)
        return self.itemsize * (2 * M + 3 * D)

    # ------------------------------------------------------------------ forward
    def features(self, Z):
        """``phi(Z)`` (N, M), Eq. II.33."""
        return random_features(Z, self.W, self.b)

    def trajectory(self, X, theta=None):
        """States ``z(s_k)``, ``k = 0..S``: list of S + 1 tensors (N, D) (the Euler scheme of Eq. II.23, the sweep
        of :func:`~skflow.flows._flow.euler_sweep`)."""
        theta = self.theta if theta is None else theta
        S, D, M = theta.shape
        theta_c = self.step_size(theta) * theta
        layers = [(self.W, self.b, theta_c[k], 1.0) for k in range(S)]
        zT, states, _ = euler_sweep(lift(X, D).T, layers, "cos", keep=True)
        return [z.T for z in states] + [zT.T]

    def forward(self, X, theta=None):
        """Logits ``output_scale * z(1)[d:]``, shape (N, K), over blocks of :meth:`block_rows` rows."""
        theta = self.theta if theta is None else theta
        S, D, M = theta.shape
        theta_c = self.step_size(theta) * theta
        layers = [(self.W, self.b, theta_c[k], 1.0) for k in range(S)]
        rows = self.block_rows(X.device, training=False, n=X.shape[0])
        z = euler_forward(X, D, layers, "cos", rows, self.compiled)
        return self.output_scale * z[:, self.d_in:]

    def _loss_and_grad(self, logits, Y, n=None):
        """Risk and its gradient with respect to the logits (both summed over the rows and divided by ``n``,
        the rows of the whole batch; by default those of ``logits``): :func:`loss_and_grad`."""
        return loss_and_grad(self.loss, logits, Y, logits.shape[0] if n is None else n, self.weighted)

    def risk(self, X, Y, theta=None):
        """The training objective ``R`` (Eq. II.24) at the current (or given) ``theta``; in a data-parallel fit
        the mean over the rows of every rank."""
        return self.output_risk(self.forward(X, theta), Y)

    def output_risk(self, F, Y):
        """The risk of outputs ``F = forward(X)`` already computed (what :meth:`risk` returns from them)."""
        return self.reduce_rows(F.shape[0], self._loss_and_grad(F, Y, 1)[0])[0]

    # ------------------------------------------------------------------ gradients
    def gradients(self, X, Y):
        """``(R, dR/dtheta)`` by the discrete adjoint of the Euler scheme (Eq. II.25 discretised).

        With ``a_k = W z_k + b``, ``phi_k = sqrt(2/M) cos(a_k)`` and ``p_k = dR/dz_k`` (rows per sample)::

            p_S      = (0, output_scale dR/dlogits)
            dR/dtheta_k = h p_{k+1}^T phi_k                                  (D, M)
            p_k      = p_{k+1} - h sqrt(2/M) [(p_{k+1} theta_k) * sin(a_k)] W

        i.e. ``S dR/dtheta_k = (1/N) sum_n p_n(s_k) (x) phi(z_n(s_k))`` up to the ``1/N`` already in ``p``: the
        velocity field of Eq. II.26 in parameter coordinates. The rows are processed in blocks of
        :meth:`block_rows` and the sums accumulated, so that a step's memory does not grow with ``N``.
        """
        blocks = row_blocks(X.shape[0], self.block_rows(X.device, n=X.shape[0]))
        hc = self.step_size()
        theta_c = hc * self.theta
        R, grad = self.sweep_blocks(adjoint_block, *self._block_constants(), X.shape[0], blocks,
                                    lambda rows, _: (X[rows], Y[rows], self.W, self.b, theta_c),
                                    (self.theta.new_zeros(()), torch.zeros_like(self.theta)))
        return R, grad.mul_(hc)

    def autograd_gradients(self, X, Y):
        """``(R, dR/dtheta)`` by torch.autograd through :meth:`risk` (reference for the explicit adjoint)."""
        theta = self.theta.detach().requires_grad_(True)
        with torch.enable_grad():
            R = self.risk(X, Y, theta)
            (g,) = torch.autograd.grad(R, theta)
        return R.detach(), g

    # ------------------------------------------------------------------ training step
    def step(self, X, Y, lr):
        """One explicit step of the gradient flow in ``L2([0, 1], F)`` with time step ``lr`` (Thm. II.5).

        ``theta_k <- theta_k - tau S dR/dtheta_k`` (through the momentum average when ``momentum > 0``).
        Returns, as 0-dim device tensors, the risk before the update, the P-L ratio
        ``||grad R||^2_{L2} / R = S sum_k |dR/dtheta_k|^2 / R`` (Eq. II.28 over R) and
        ``theta_norm = ||theta||_{L2} = sqrt((1/S) sum_k |theta_k|^2)`` (the ``R`` of Prop. II.4.4; ``theta_0 = 0``).
        """
        with torch.no_grad():
            R, g = self.gradients(X, Y)
            S = float(self.n_layers)
            if self.weight_decay > 0:  # d/dtheta_k of (a/2)(1/S) sum_k |theta_k|^2
                g = g + (self.weight_decay / S) * self.theta
            pl = S * (g * g).sum() / R
            norm = torch.sqrt((self.theta * self.theta).sum() / S)
            if self.momentum > 0:
                self.velocity.mul_(self.momentum).add_(g, alpha=(1.0 - self.momentum) * S)
                self.theta.sub_(self.velocity, alpha=lr)
            else:
                self.theta.sub_(g, alpha=lr * S)
        return {"risk": R, "pl_ratio": pl, "theta_norm": norm}

    def theta_norm(self):
        """``||theta||_{L2([0,1], F)} = sqrt((1/S) sum_k |theta_k|_F^2)`` (float)."""
        return float(torch.sqrt((self.theta * self.theta).sum() / self.n_layers))
