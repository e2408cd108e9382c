"""Engine of VarProNetRegressor / VarProNetClassifier: a deep feature network with a VarPro head (thesis §III.6.2).

Model (Eq. III.45, in the mean-field convention of :mod:`skflow.flows.varpro`)::

    F(x) = Phi_theta(x) u / M,

where ``Phi_theta`` is any torch module mapping inputs ``(n, d)`` to features ``(n, M)`` (the "backbone", with
parameters ``theta``) and ``u`` (M, n_outputs) is the linear outer layer. Risk on a batch ``D``::

    R_D(theta, u) = (1/2|D|) sum_{n in D} |F(x_n) - y_n|^2 + lambda (1/M) sum_i f(u_i),

``f(u) = |u|^2/2`` ("biased", Eq. III.45) or ``|u - 1|^2/2`` ("unbiased"). For fixed ``theta`` the outer layer is
a ridge regression on the features, solved exactly (:func:`skflow.flows._ridge.ridge_projection`), and VarPro is
gradient descent on the reduced risk ``L(theta) = (1/lambda) min_u R(theta, u)``. Stochastic VarPro (Eq. III.46)::

    U_bar = argmin_u R_D(theta, u),    u <- m u + (1 - m) U_bar,
    theta <- theta - (M tau / lambda) grad_theta R_D(theta, u),

the gradient taken at fixed ``u`` by autograd through the module (the envelope theorem: ``grad_u R = 0`` at the
projection, so there is no differentiation through the solve). In full batch ``u = U_bar`` exactly. An optional
exponential average of the backbone's velocity (``backbone_momentum``) departs from Eq. III.46 for speed.

Pure torch, no scikit-learn; the feature modules :class:`MLPFeatures` and :class:`Conv1dFeatures` live here too.
"""

import copy

import torch
from torch import nn

from ._flow import Flow
from ._ops import split_weights, weighted_sum
from ._ridge import ridge_projection, risk_parts, root_weighted

__all__ = ["Conv1dFeatures", "MLPFeatures", "VarProNetFlow", "net_reduced_risk"]

#: activations of :class:`MLPFeatures` and :class:`Conv1dFeatures`, by name
_ACTIVATION_MODULES = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}
#: initialisation gains: pre-activations of unit variance at every layer on standardised inputs (tanh: the
#: critical gain 5/3 of ``nn.init.calculate_gain``; the ReLU family: He's sqrt(2))
_GAINS = {"tanh": 5.0 / 3.0, "relu": 2.0**0.5, "gelu": 2.0**0.5, "silu": 2.0**0.5}

_BOUNDED_FEATURES_NOTE = """
    Notes
    -----
    The last activation is ``output_activation``, bounded (``tanh``) by default: with a positively homogeneous
    last layer (ReLU) the ridge penalty of the head can always be lowered by scaling the features up, so the
    reduced risk has no minimiser and VarPro spends its steps inflating the feature scale (the ridge strength
    relative to the tangent kernel, ``regularization_ratio_``, then falls towards 0 and training stalls).

    Initialisation: every layer's weights ``N(0, gain^2 / fan_in)``, with the gain of the activation that follows
    it (``5/3`` for tanh, ``sqrt(2)`` for the ReLU family; :class:`MLPFeatures`' first layer: ``input_gain``), and
    zero biases: the features are of order one on standardised inputs. (PyTorch's default, of variance
    ``1 / (3 fan_in)``, shrinks the activations layer after layer: the tangent kernel ``K = Phi^T Phi / (N M)``
    then has a norm far below one, and a ridge strength of order ``1e-3`` dominates it.)
"""


def _check_activation(name, what):
    if name not in _ACTIVATION_MODULES:
        raise ValueError(f"{what} must be one of {sorted(_ACTIVATION_MODULES)}; got {name!r}.")


def _stack(layers, activations, input_gain=None):
    """``nn.Sequential`` of each layer followed by its activation, initialised as described in
    :class:`MLPFeatures` (``input_gain``: the first layer's gain instead of its activation's)."""
    parts = []
    for k, (layer, name) in enumerate(zip(layers, activations)):
        fan_in = layer.weight[0].numel()
        gain = _GAINS[name] if k > 0 or input_gain is None else float(input_gain)
        nn.init.normal_(layer.weight, std=gain / fan_in**0.5)
        nn.init.zeros_(layer.bias)
        parts += [layer, _ACTIVATION_MODULES[name]()]
    return parts


class MLPFeatures(nn.Module):
    # __doc__ assigned, not a bare string: a docstring built by concatenation would be an expression, not __doc__
    __doc__ = """Fully connected feature network ``x -> sigma_L(W_L ... sigma(W_1 x + b_1) ... + b_L)``.

    The default backbone of :class:`skflow.VarProNetRegressor` and :class:`skflow.VarProNetClassifier`.

    Parameters
    ----------
    n_features_in : int
        Input width ``d``.
    hidden_layer_sizes : tuple of int, default=(128, 128)
        Widths of the layers; the last one is the number of features ``M`` seen by the VarPro head.
    activation : {'tanh', 'relu', 'gelu', 'silu'}, default='tanh'
        Activation of every layer but the last.
    output_activation : {'tanh', 'relu', 'gelu', 'silu'}, default='tanh'
        Activation of the last layer (the features).
    input_gain : float, default=0.6
        Gain of the first layer's initialisation, weights ``N(0, input_gain^2 / n_features_in)``: the standard
        deviation of its pre-activations on standardised inputs, an inverse length scale of the initial features
        in input space (as ``gamma`` for a gaussian kernel). ``0.6`` keeps the first tanh layer near its linear
        range: the initial features vary smoothly with the input, and training adds the detail that the data
        support. On 129-385 standardised rows (``make_classification`` with 3 and 5 classes, ``make_friedman1``
        and a warped ``make_regression``, 36 splits, against ``SVC()`` / ``SVR()`` with ``max_iter='auto'``),
        the activation's gain ``5/3`` scored 2.7 points of accuracy and 0.04 of R^2 lower on average, with
        splits 0.06 (accuracy) and 0.09 (R^2) below the kernel baseline, against 0.01 and 0.035 at ``0.6``, and
        an 8% higher log-loss; ``0.5`` and ``0.75`` were within 0.005 of ``0.6`` on average, ``0.33`` lost a
        split by 0.075. Every later layer has its activation's gain.
    """ + _BOUNDED_FEATURES_NOTE

    def __init__(self, n_features_in, hidden_layer_sizes=(128, 128), activation="tanh", output_activation="tanh",
                 input_gain=0.6):
        super().__init__()
        _check_activation(activation, "activation")
        _check_activation(output_activation, "output_activation")
        if not float(input_gain) > 0:
            raise ValueError(f"input_gain must be a positive float; got {input_gain!r}.")
        sizes = [int(n_features_in), *(int(h) for h in hidden_layer_sizes)]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"hidden_layer_sizes must be a non-empty tuple of positive ints; got "
                             f"{hidden_layer_sizes!r}.")
        layers = [nn.Linear(a, b) for a, b in zip(sizes, sizes[1:])]
        acts = [activation] * (len(layers) - 1) + [output_activation]
        self.net = nn.Sequential(*_stack(layers, acts, input_gain))

    def forward(self, X):
        """Features of the rows of ``X``.

        Parameters
        ----------
        X : tensor of shape (n, n_features_in)
            The inputs.

        Returns
        -------
        tensor of shape (n, M)
            The features.
        """
        return self.net(X)


class Conv1dFeatures(nn.Module):
    __doc__ = """Small 1-D convolutional feature network for sequences given as rows of ``n_features_in`` values.

    For e.g. MNIST-1D (40 values): the rows are reshaped to one channel inside the module.

    ``n_layers`` convolutions of ``channels`` channels, kernel ``kernel_size``, stride 2 and padding
    ``(kernel_size - 1) // 2`` (each halves the length), each followed by its activation, then flattened:
    ``M = channels * L_out`` features (``L_out = 5`` for 40 inputs and three layers).

    Parameters
    ----------
    n_features_in : int
        Sequence length.
    channels : int, default=32
        Channels of every convolution.
    kernel_size : int, default=5
        Kernel size of every convolution.
    n_layers : int, default=3
        Number of convolutions.
    activation : {'relu', 'tanh', 'gelu', 'silu'}, default='relu'
        Activation of every convolution but the last.
    output_activation : {'tanh', 'relu', 'gelu', 'silu'}, default='tanh'
        Activation of the last convolution (the features).
    """ + _BOUNDED_FEATURES_NOTE

    def __init__(self, n_features_in, channels=32, kernel_size=5, n_layers=3, activation="relu",
                 output_activation="tanh"):
        super().__init__()
        _check_activation(activation, "activation")
        _check_activation(output_activation, "output_activation")
        if int(n_layers) < 1:
            raise ValueError(f"n_layers must be a positive int; got {n_layers!r}.")
        self.n_features_in = int(n_features_in)
        layers = [nn.Conv1d(1 if k == 0 else channels, channels, kernel_size, stride=2,
                            padding=(kernel_size - 1) // 2) for k in range(int(n_layers))]
        acts = [activation] * (len(layers) - 1) + [output_activation]
        self.net = nn.Sequential(*_stack(layers, acts), nn.Flatten())

    def forward(self, X):
        """Features of the rows of ``X``, each reshaped to a one-channel sequence.

        Parameters
        ----------
        X : tensor of shape (n, n_features_in)
            The inputs.

        Returns
        -------
        tensor of shape (n, M)
            The features.
        """
        return self.net(X.reshape(X.shape[0], 1, self.n_features_in))


def module_features(module, X):
    """``Phi = module(X)`` checked to be a 2-D tensor with one row per input row."""
    Phi = module(X)
    if not isinstance(Phi, torch.Tensor) or Phi.ndim != 2 or Phi.shape[0] != X.shape[0]:
        shape = tuple(Phi.shape) if isinstance(Phi, torch.Tensor) else type(Phi).__name__
        raise ValueError(f"the feature module {type(module).__name__} must map inputs of shape (n, d) to a tensor "
                         f"of features (n, M); got {shape} for inputs of shape {tuple(X.shape)}. End it with "
                         "nn.Flatten() for convolutional features.")
    return Phi


def net_reduced_risk(module, X, Y, lam, regularization="biased"):
    """Reduced risk ``L(theta) = (1/lambda) min_u R(theta, u)`` of a feature module on ``(X, Y)``, by the exact
    projection; differentiable in the module's parameters (autograd runs through the solve, so its gradient is
    the one of the envelope theorem up to round-off: a reference for tests).

    Returns
    -------
    L : 0-dim Tensor
    u : Tensor (M, n_outputs)
    """
    Phi = module_features(module, X)
    u = ridge_projection(Phi, Y, lam, regularization)
    datafit, penalty, _ = risk_parts(Phi, Y, u, lam, regularization)
    return (datafit + penalty) / lam, u


class VarProNetFlow(Flow):
    """A feature module ``Phi_theta`` and outer weights ``u`` (M, n_outputs), trained by (stochastic) VarPro.

    Parameters
    ----------
    module : torch.nn.Module
        Maps ``(n, d)`` inputs to ``(n, M)`` features. It runs in ``train()`` mode during the steps and in
        ``eval()`` mode for :meth:`forward` and :meth:`risk`. Its buffers (e.g. BatchNorm statistics) are not
        among :meth:`parameters`: the fit loop does not restore them.
    u : Tensor (M, n_outputs)
    lam : float
        Ridge strength ``lambda > 0``.
    regularization : {'biased', 'unbiased'}
    momentum : float
        ``m`` of Eq. III.46 (stochastic steps only): the momentum of the outer weights.
    backbone_momentum : float
        ``beta`` of an exponential average of the backbone's velocity, ``v <- beta v + (1 - beta) M grad_theta L``,
        ``theta <- theta - tau v`` (the momentum of :class:`skflow.flows.rkhs.RKHSFlow`: the step of a steady
        gradient is unchanged). ``0`` is Eq. III.46 exactly. The velocity is not among :meth:`parameters`.
    stochastic : bool
        Whether the steps receive minibatches: the projection on each is averaged into ``u`` with momentum.
    n_inputs : int or None
        Input width ``d``, for the memory estimate of :meth:`bytes_per_row` (known from :meth:`start` otherwise).
    """

    _tensor_fields = ("u",)

    def __init__(self, module, u, *, lam, regularization="biased", momentum=0.9, stochastic=False, n_inputs=None,
                 backbone_momentum=0.0):
        self.module = module
        self.u = u
        self.lam = float(lam)
        self.regularization = regularization
        self.momentum = float(momentum)
        self.stochastic = bool(stochastic)
        self.backbone_momentum = float(backbone_momentum)
        self.velocity = None  # per parameter, allocated at the first step with backbone_momentum > 0
        self.n_steps = 0
        self._u_ready = False  # stochastic VarPro: the first minibatch projection initialises u
        self._n_inputs = n_inputs  # input width for the memory probe (start() sets it too)
        self._row_bytes = None
        #: None, or ``step_scope(n_steps, device)``: a context manager each step runs in (the estimators give a
        #: module that draws random numbers its own seeded generator state per step, see skflow._user_modules)
        self.step_scope = None

    @property
    def width(self):
        """Number of features ``M``."""
        return self.u.shape[0]

    def parameters(self):
        """The module's parameters (detached views sharing their storage) and ``u``: updated in place only."""
        return [p.detach() for p in self.module.parameters()] + [self.u]

    @property
    def itemsize(self):
        return self.u.element_size()

    def to(self, device=None, dtype=None):
        new = super().to(device, dtype)
        kwargs = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        new.module = copy.deepcopy(self.module).to(**kwargs)
        if self.velocity is not None:
            new.velocity = [v.detach().to(**kwargs).clone() for v in self.velocity]
        new._row_bytes = None
        return new

    # ------------------------------------------------------------------ memory
    def _activation_counts(self):
        """Entries of every submodule's output for one input row (a probe forward in eval mode)."""
        counts = []

        def hook(_module, _inputs, output):
            if isinstance(output, torch.Tensor):
                counts.append(output[:1].numel())

        handles = [m.register_forward_hook(hook) for m in self.module.modules()]
        was_training = self.module.training
        try:
            self.module.eval()
            p = next(iter(self.module.parameters()), self.u)
            probe = torch.zeros((2, self._n_inputs), dtype=p.dtype, device=p.device)
            with torch.no_grad():
                self.module(probe)
        finally:
            for h in handles:
                h.remove()
            self.module.train(was_training)
        return counts

    def bytes_per_row(self, training=True):
        """Training: every submodule's output kept for the backward pass and its gradient (twice the sum of the
        activations of one row), the features and their product with ``u``; predicting: the largest
        activation twice (one layer's input and output live at a time). From a probe forward when the input width
        is known (``n_inputs`` or :meth:`start`), else from ``M`` alone."""
        M, n_out = self.u.shape
        counts = None
        if self._n_inputs is not None:
            if self._row_bytes is None:
                try:
                    self._row_bytes = self._activation_counts()
                except Exception:  # noqa: BLE001 - a module the probe cannot run: fall back on M
                    self._row_bytes = []
            counts = self._row_bytes
        if training:
            acts = 2 * sum(counts) if counts else 8 * M
            return self.itemsize * (acts + 3 * M + 2 * n_out) + 8 * (M + n_out)
        peak = max(counts) if counts else 2 * M
        return self.itemsize * (2 * peak + M + n_out)

    # ------------------------------------------------------------------ protocol
    def start(self, X, Y, validation=None):
        """Record the input width (for :meth:`bytes_per_row`); nothing else: the first step projects."""
        self._n_inputs = X.shape[1]

    def finish(self, X, Y, n_steps):
        """Full batch: the last step's ``u`` is the projection at the previous parameters; re-project, so that the
        model is ``u*(theta)`` at the final parameters exactly (as :class:`skflow.flows.varpro.VarProFlow`)."""
        if not self.stochastic and self.n_steps > 0:
            self.project(X, Y)

    def features(self, X):
        """``Phi_theta(X)`` in eval mode, without a graph."""
        self.module.eval()
        with torch.no_grad():
            return module_features(self.module, X)

    def forward(self, X):
        return self.features(X) @ self.u / self.width

    def risk(self, X, Y):
        """Data-fit part ``(1/2N) |F - Y|^2`` (what the base monitors for early stopping); with sample weights, the
        weighted mean."""
        return self.risk_and_outputs(X, Y)[0]

    def risk_and_outputs(self, X, Y):
        """``(risk, F)``: :meth:`risk` and the outputs ``F`` it was computed from, from one forward pass."""
        Y, w = split_weights(Y, self.weighted)
        with torch.no_grad():
            F = self.forward(X)
            r = F - Y
            return self.reduce_rows(X.shape[0], 0.5 * weighted_sum(r * r, w))[0], F

    def project(self, X, Y):
        """Set ``u`` to the exact projection ``u*(theta)`` on ``(X, Y)``, in place."""
        with torch.no_grad():
            Yw, Phi = root_weighted(Y, self.weighted, self.features(X))
            self.u.copy_(ridge_projection(Phi, Yw, self.lam, self.regularization))
        self._u_ready = True

    def step(self, X, Y, lr):
        """One VarPro step (Eq. III.46) with time step ``tau = lr``; returns 0-dim tensors before the step.

        ``risk`` is the data fit (MSE/2) at the projected ``u``, ``reduced_risk`` is ``R(theta, u) / lambda`` (the
        reduced risk ``L(theta)`` exactly in full batch) and ``pl_ratio`` is ``M |grad_theta L|^2 / L``: the
        parameters move with velocity ``-M grad_theta L``, so that ``dL/dt = -M |grad_theta L|^2`` and the ratio is
        the instantaneous exponential rate of decrease of ``L`` in flow time (as for the particles of
        :class:`skflow.flows.varpro.VarProFlow`).
        """
        scope = getattr(self, "step_scope", None)
        if scope is not None:
            with scope(self.n_steps, X.device):
                return self._step(X, Y, lr)
        return self._step(X, Y, lr)

    def _step(self, X, Y, lr):
        M = self.width
        params = [p for p in self.module.parameters() if p.requires_grad]
        self.module.train()
        with torch.enable_grad():
            # with sample weights, the rows and targets times sqrt(w): the weighted risk is their plain risk
            Y, Phi = root_weighted(Y, self.weighted, module_features(self.module, X))
            with torch.no_grad():
                u_bar = ridge_projection(Phi.detach(), Y, self.lam, self.regularization)
                if self.stochastic and self._u_ready:
                    # Eq. III.46: average the minibatch projections, which fluctuate with the sampling
                    self.u.mul_(self.momentum).add_(u_bar, alpha=1.0 - self.momentum)
                else:
                    self.u.copy_(u_bar)
                self._u_ready = True
            datafit, penalty, _ = risk_parts(Phi, Y, self.u, self.lam, self.regularization)
            grads = torch.autograd.grad(datafit, params, allow_unused=True) if params else ()
        beta = self.backbone_momentum
        if beta > 0 and self.velocity is None:
            self.velocity = [torch.zeros_like(p) for p in params]
        with torch.no_grad():
            speed2 = datafit.new_zeros(())
            for i, (p, g) in enumerate(zip(params, grads)):
                if g is None:
                    continue
                speed2 += (g * g).sum()
                if beta > 0:  # v <- beta v + (1 - beta) M grad L, theta <- theta - tau v
                    v = self.velocity[i]
                    v.mul_(beta).add_(g, alpha=(1.0 - beta) * M / self.lam)
                    p.sub_(v, alpha=lr)
                else:
                    p.sub_(g, alpha=M * lr / self.lam)  # theta <- theta - (M tau / lambda) grad_theta R
            L = (datafit.detach() + penalty) / self.lam
            speed2 = speed2 * (M / self.lam**2)  # M |grad_theta L|^2, grad L = grad R / lambda
        self.n_steps += 1
        return {"risk": datafit.detach(), "reduced_risk": L, "pl_ratio": speed2 / L}

