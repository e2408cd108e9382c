"""VarProSHLRegressor: a two-layer network trained by Variable Projection (thesis Ch. III)."""

import numbers

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _base
from ._arrays import rows_of, seeded_subsample, to_numpy
from ._base import BaseFlowEstimator
from ._partial import PartialFitRegressorMixin
from ._targets import BaseFlowRegressor
from .flows._ops import ACTIVATIONS, regularizer_centre
from .flows.varpro import (
    DEFAULT_ALPHAS,
    RBF_KERNELS,
    RBFKernel,
    Torus,
    TorusVarProFlow,
    VarProFlow,
    kernel_spectrum,
    reduced_risk,
)

__all__ = ["VarProSHLRegressor"]


class VarProSHLRegressor(PartialFitRegressorMixin, BaseFlowRegressor):
    """Single-hidden-layer network trained by Variable Projection (VarPro), thesis Ch. III.

    The model is the mean-field two-layer network (Eq. III.1)

    .. math:: F(x) = \\frac{1}{M} \\sum_{i=1}^M u_i\\, \\sigma(\\omega_i \\cdot \\bar x),

    with ``x_bar = (x, 1)`` (``feature_domain='euclidean'``: the last coordinate of ``omega_i`` is a bias) or
    ``x_bar = x`` and ``|omega_i| = 1`` (``'sphere'``, Eq. III.39). With ``feature_map='rbf'`` it is the
    radial-basis-function network (thesis App. III.B, Eq. III.50)

    .. math:: F(x) = \\frac{1}{M} \\sum_{i=1}^M u_i\\, k([\\omega_i - x]),

    a sparse deconvolution: ``[.]`` is the projection on the fundamental domain ``[-L/2, L/2)^d`` of the torus
    ``R^d / L Z^d`` (``feature_domain='torus'``, ``L = torus_period``) or the identity
    (``'euclidean'``), and ``k`` the kernel ``rbf_kernel``. For fixed features the outer weights are
    a ridge regression, solved exactly; VarPro is gradient descent on the reduced risk (Eq. III.8, III.41)

    .. math:: L_\\lambda(\\omega) = \\frac{1}{\\lambda} \\min_u \\frac{1}{2N} \\sum_n |F(x_n) - y_n|^2
              + \\frac{\\lambda}{M} \\sum_i f(u_i),

    with ``f(u) = |u|^2 / 2`` (``'biased'``) or ``|u - 1|^2 / 2`` (``'unbiased'``: its minimiser is the teacher
    of §III.3), i.e. ``omega_i <- omega_i - M tau grad_{omega_i} L`` (Eq. III.42), the gradient taken by the
    envelope theorem at the exact projection ``u*``.

    Parameters
    ----------
    width : int, default=128
        Number of features ``M``.
    activation : {'relu', 'tanh', 'cos', 'silu', 'gelu'}, default='relu'
        The activation ``sigma``. ReLU is the thesis's setting (the teacher-student problem of §III.6.1).
        Unused with ``feature_map='rbf'``.
    feature_map : {'perceptron', 'rbf'}, default='perceptron'
        ``'perceptron'``: ``phi(omega, x) = sigma(omega . x_bar)`` (Eq. III.1). ``'rbf'``: the radial basis
        function ``phi(omega, x) = k([omega - x])`` with ``omega`` a centre in the input space (App. III.B).
    feature_domain : {'euclidean', 'sphere', 'torus'}, default='euclidean'
        ``'sphere'``: features on the unit sphere of ``R^d``, no bias; the step is projected (tangent step,
        then renormalise); perceptron features only. ``'torus'``: RBF centres on the flat torus
        ``R^d / L Z^d``, the thesis's setting of App. III.B (``feature_map='rbf'`` only); the features are
        initialised uniformly on the fundamental domain ``[-L/2, L/2)^d`` and, after every step, wrapped back
        into it (the model is periodic in ``omega``); the inputs are not restricted: ``[omega - x]`` projects
        the difference. With ``feature_map='rbf'`` and ``'euclidean'`` the centres are in ``R^d``, no
        projection.
    torus_period : float, default=4.0
        Period ``L`` of the torus (the thesis's ``R^2 / 4 Z^2``). Used with ``feature_domain='torus'`` only.
    rbf_kernel : {'laplace', 'gaussian'}, default='laplace'
        Kernel ``k`` of the RBF features, with ``r = |[omega - x]|`` (Euclidean norm) and
        ``h = rbf_bandwidth``: ``'laplace'``: ``k = 8 exp(-r / h)`` (with ``h = 2`` the thesis's
        ``8 exp(-|x| / 2)``); ``'gaussian'``: ``k = 8 exp(-r^2 / (2 h^2))``. The amplitude 8 is the thesis's
        normalisation. The Laplace kernel is not differentiable at ``r = 0``: there the feature gradient uses
        the subgradient 0 (a centre exactly on a data point gets no pull from it). Used with
        ``feature_map='rbf'`` only.
    rbf_bandwidth : float, default=2.0
        Length scale ``h`` of ``rbf_kernel`` (see there). Used with ``feature_map='rbf'`` only.
    alpha : float or 'auto', default='auto'
        Ridge strength ``lambda`` of the outer weights (scikit-learn's name for it, as in ``Ridge``).
        ``lambda << ||K||_op`` (see ``regularization_ratio_``) is the ultra-fast
        diffusion regime with a linear rate, ``lambda >~ ||K||_op`` the slow algebraic regime (§III.6.1).
        ``'auto'`` chooses ``lambda`` from ``alphas`` by exact leave-one-out error, from one eigendecomposition
        of the projection's Gram matrix (as ``RidgeCV`` does), at every projection: the strength follows the
        features as they move. The theory's flow is the gradient flow of the reduced risk ``L_lambda`` at a
        fixed ``lambda``; with ``'auto'`` each step is a step of that flow at the ``lambda`` chosen for the
        current features (a piecewise-fixed ``lambda``, recorded in ``alpha_path_``), so the monotonicity of
        ``L_lambda`` holds between changes of ``lambda`` only. A float keeps ``lambda`` fixed (the theory's
        setting; use it for the convergence experiments). The value used last is ``alpha_``. The leave-one-out
        error is that of the projection at the current features; it does not see that the features were
        themselves fitted to the same rows, and ``lambda`` also sets the features' time scale ``M tau / lambda``,
        so on noisy targets a fixed, larger ``alpha`` chosen by cross-validation of the whole fit can generalise
        better.
    alphas : array-like of float or None, default=None
        The grid searched by ``alpha='auto'``; ``None`` is 11 values log-spaced from ``1e-4`` to ``10``
        (``||K||_op`` is of order one on standardised data). Unused for a float ``alpha``.
    regularization : {'biased', 'unbiased'}, default='biased'
        Regulariser ``f`` of the outer weights (see above). The unbiased one only makes sense when the
        targets are in the units of a teacher with unit outer weights, see ``scale_targets``. For several
        outputs it pulls every output weight towards 1.
    solver : {'varpro', 'two-timescale', 'gd'}, default='varpro'
        ``'varpro'``: exact projection of ``u`` at every step, then the feature step (Eq. III.42); with
        ``batch_size`` set, stochastic VarPro (Eq. III.46). ``'two-timescale'``: one projection at the start,
        then simultaneous steps ``u <- u - (eta/lambda) grad_u R`` with ``eta = lambda M`` (divided by
        ``trace(K) + lambda >= ||K + lambda||_op`` when that exceeds 1, so that the u-step stays stable as the
        features, hence ``K``, grow)
        and the feature step ``omega <- omega - (M tau / lambda) grad_omega R`` (Eq. III.44). ``'gd'``: plain
        joint gradient descent from ``u = argmin f``, both layers with time step ``M tau / lambda``.
    projection_momentum : float in [0, 1), default=0.9
        ``m`` of stochastic VarPro (Eq. III.46): ``u <- m u + (1 - m) U_bar`` with ``U_bar`` the projection
        on the minibatch. Unused in full batch.
    feature_scale : float, default=1.0
        Initial features: ``omega_i = feature_scale * (w_i / sqrt(d), b_i)`` with ``w_i, b_i`` standard
        normal (Euclidean), i.e. pre-activations of standard deviation about ``feature_scale`` on
        standardised inputs; uniform on the sphere for ``'sphere'`` (unused). RBF centres in ``R^d``:
        ``omega_i = feature_scale * g_i`` with ``g_i`` standard normal (where standardised inputs are);
        on the torus they are uniform on the fundamental domain (unused).
    scale_targets : {'auto'} or bool, default='auto'
        Standardise ``y`` (per output: subtract the mean, divide by the standard deviation) before fitting.
        ``'auto'`` standardises for the biased regulariser with Euclidean features (perceptron or RBF) and
        leaves ``y`` as it is otherwise (so the torus deconvolution is fitted in the teacher's units). For
        the unbiased one, scaling ``y`` by ``s`` scales the optimal outer weights by ``s``, so
        ``f_u(u) = |u - 1|^2/2`` would pull towards a teacher with outer weights ``1/s`` instead of 1, and
        centring would add a constant that a teacher network does not have. Sphere features have no bias and
        cannot represent the constant that centring removes. The inputs ``X`` are never scaled: put a
        ``StandardScaler`` in front.
    store_features_every : int or None, default=None
        Keep a snapshot of the features every this many steps in ``feature_history_``.
    n_spectrum : int, default=10
        Number of top eigenvalues of the tangent kernel kept in ``kernel_spectrum_``.
    kernel_subsample : int, default=4096
        The kernel diagnostics use at most this many training points (a seeded subsample).
    learning_rate : float or 'auto', default=1e-2
        Time step ``tau`` of the feature flow (Eq. III.42); flow time is ``tau * n_iter_``.
        ``'auto'``: half the largest time step whose first explicit steps keep decreasing the risk on the training
        data (a safeguarded line search around the default, on a copy of the model); the value used is
        ``learning_rate_``.
    max_iter : int, default=500
        Maximum number of iterations: steps (full batch) or epochs (``batch_size`` set). Reaching it before
        the ``tol`` rule triggers gives a ``ConvergenceWarning``.
    tol : float, default=1e-4
        Stop when the data fit (or, with ``early_stopping``, the validation data fit) has not decreased by
        ``tol`` (relative) for ``n_iter_no_change`` iterations. ``tol=0`` disables the rule.
    n_iter_no_change : int, default=10
        Number of consecutive iterations without a relative decrease of at least ``tol`` of the monitored
        risk after which training stops.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the training data, monitor the data fit on it instead of the
        training one, and restore the parameters with the best validation value at the end.
    validation_fraction : float, default=0.2
        Fraction of the training data held out as validation set (at least one sample) for
        ``early_stopping``; unused otherwise. The split is seeded by ``random_state``.
    batch_size : int or None, default=None
        ``None``: full-batch VarPro, the explicit Euler scheme of the gradient flow. An integer: stochastic
        VarPro (Eq. III.46) for ``solver='varpro'``, minibatch steps for the other solvers. The outer
        weights are then only approximately optimal for each minibatch and the feature step ``M tau / lambda``
        amplifies the mismatch: use a smaller ``learning_rate`` (about ``alpha``) than in full batch.
    device : str or torch.device, default='auto'
        Where training runs: 'auto' picks CUDA when available and the CPU otherwise; any torch device
        string ('cpu', 'cuda', 'cuda:1') or ``torch.device`` is accepted. The resolved device is stored in
        ``device_``.
    dtype : {'float64', 'float32'}, default='float64'
        Floating-point type of training. float64 is the default because the diagnostics are small numbers
        (kernel eigenvalues, P-L ratios near convergence); float32 is a speed option, mostly on GPUs. The
        ridge solves are done in float64 in every case (and the Gram matrix too when ``alpha < 1e-2``).
    random_state : int, RandomState instance or None, default=None
        Seeds a local ``torch.Generator`` on the CPU, which draws the initial features and the minibatch
        order, and the validation split. The draws happen on the CPU and are then moved to the device, so a
        seed gives the same model on every device. Pass an int for reproducible fits.
    verbose : int, default=0
        0 is silent; 1 prints the iteration, risk, P-L ratio (and validation risk) and elapsed time every
        100 iterations and at the end; 2 or more prints every 20 iterations.
    compile : bool or 'auto', default='auto'
        Perceptron features: run each step's feature gradient over a block of rows as one compiled graph, a
        package kept on disk (:mod:`skflow.flows._aot`). ``True`` builds a missing one first; ``'auto'`` uses it
        when it is on disk and otherwise builds it in a background process while the fit runs eagerly. Without a
        working compiler the eager engine runs (a :class:`~skflow.exceptions.CompileFallbackWarning` says so).
        Same model either way, to float rounding.
    warm_start : bool, default=False
        When True, ``fit`` continues from the previous fit's features and outer weights and appends to its
        history (the target scaling of the first fit is kept); otherwise it starts from a fresh
        initialisation. The data's number of features and of outputs, and the architecture parameters
        (``width``, ``feature_map``, ``feature_domain``, ``alpha``, ``regularization``, ``solver``,
        ``projection_momentum``; ``activation`` for perceptron features; ``rbf_kernel``, ``rbf_bandwidth``
        for RBF features and ``torus_period`` on the torus) must not change, else
        :class:`skflow.IncompatibleWarmStartError` is raised and the previous model is kept.

    Attributes
    ----------
    learning_rate_ : float
        The time step used (``learning_rate``, or the one measured for ``'auto'``).
    features_ : ndarray of shape (M, d + 1) or (M, d)
        The features ``omega_i``; for Euclidean perceptron features the last column is the bias. RBF
        features are the centres (M, d); on the torus their representatives in ``[-L/2, L/2)^d``.
    outer_weights_ : ndarray of shape (M, n_outputs)
        Outer weights ``u_i``, such that ``(predict(X) - y_mean_) / y_scale_ == (1/M) sigma(X_bar @
        features_.T) @ outer_weights_`` (``(1/M) Phi @ outer_weights_`` with ``Phi[n, i] = k([features_[i] -
        x_n])`` for RBF features), in the standardised scale of the targets (see ``scale_targets``). For
        full-batch VarPro they are the exact projection at the final features. One row per hidden unit, not per
        input feature: it is not named ``coef_``, so that scikit-learn's feature selectors (``RFE``,
        ``SelectFromModel``), which read ``coef_`` as a per-feature importance, refuse the estimator instead of
        ranking the inputs by hidden-unit weights.
    y_mean_, y_scale_ : ndarray of shape (n_outputs,)
        Target scaling (zeros and ones when the targets are not scaled).
    alpha_ : float
        The ridge strength of the final model (``alpha`` itself when it is a float).
    alpha_path_ : ndarray of shape (n_iter_,)
        The ridge strength used at each iteration (chosen by leave-one-out for ``alpha='auto'``).
    n_iter_ : int
        Number of iterations run (over all fits with ``warm_start``).
    n_ranks_ : int
        Number of ranks of a data-parallel fit (1 for a single process); see :mod:`skflow.distributed`.
    loss_curve_ : ndarray
        Data-fit part ``(1/2N) sum |F - y|^2`` (MSE / 2, standardised targets) at each iteration.
    reduced_risk_curve_ : ndarray
        ``R(omega, u) / lambda``: the reduced risk ``L(omega)`` for full-batch VarPro; an upper bound of it
        for the other solvers (``u`` is not the minimiser there); minibatch averages with ``batch_size``.
    pl_ratio_curve_ : ndarray
        ``||grad L||^2_{L2(mu)} / L`` (squared speed of the particle flow over the reduced risk).
    kernel_spectrum_ : ndarray of shape (n_spectrum,)
        Top eigenvalues of the tangent kernel ``K = Phi^T Phi / (N M)`` (Eq. III.24) at the final features, on
        at most ``kernel_subsample`` training points (in a data-parallel fit, of this rank's rows).
    regularization_ratio_ : float
        ``lambda / ||K||_op`` (``alpha / kernel_spectrum_[0]``), which places the fit in the regimes of
        §III.6.1.
    feature_history_ : ndarray of shape (n_snapshots, M, dim)
        Present when ``store_features_every`` is set; the initial features come first.
    flow_time_ : ndarray of shape (n_iter_,)
        Flow time ``t`` (the sum of the time steps taken) of each entry of ``loss_curve_``.
    pl_constant_ : float
        Minimum of ``pl_ratio_curve_``.
    history_ : dict of ndarray of shape (n_iter_,)
        Every per-iteration record: 'risk' (the data fit), 'reduced_risk', 'pl_ratio', 'flow_time', and
        'val_risk' with ``early_stopping``.
    stop_reason_ : str
        Why training stopped: 'converged' (the ``tol`` rule), 'max_iter', 'diverged', 'interrupted', 'monitor'
        (the ``monitor`` of :meth:`fit` or a scikit-learn callback asked to stop), or 'no_improvement' (the final
        training risk was not below its start: the best of the final, the lowest-epoch-risk and the starting
        parameters were restored, with a ``DivergenceWarning``).
    best_loss_ : float
        Lowest entry of ``loss_curve_``.
    best_validation_risk_ : float
        Lowest validation data fit; only with ``early_stopping``.
    device_ : torch.device
        Device the model was trained on (``device`` resolved).
    flow_ : skflow.flows.varpro.VarProFlow
        The trained engine.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of str
        Names of the features seen during ``fit``, when ``X`` has string column names.

    Notes
    -----
    The diagnostics are computed after training; one that fails is set to NaN with a
    :class:`skflow.DiagnosticWarning`, and the fitted model is unaffected.

    Divergence: a non-finite training data fit, or one above ``1e4`` times the data fit at the start of the
    fit, stops training and restores the parameters with the lowest training data fit (the lowest validation
    data fit with ``early_stopping``), with a :class:`skflow.DivergenceWarning`; ``stop_reason_`` is then
    'diverged'.

    References
    ----------
    .. [1] R. Barboni, "Training deep neural networks: mathematical models and convergence results"
       ("Entraînement de réseaux de neurones profonds : modèles mathématiques et résultats de convergence"),
       PhD thesis, Université PSL (École Normale Supérieure), 2025. "The thesis" of these docstrings: the
       equation, theorem and section numbers cited (Ch. III, Eq. III.24, App. III.B, ...) are its.
    .. [2] R. Barboni, G. Peyré, F.-X. Vialard, "Ultra-fast feature learning for the training of two-layer
       neural networks in the two-timescale regime", arXiv:2504.18208, 2025.

    Examples
    --------
    >>> from sklearn.datasets import make_friedman1
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skflow import VarProSHLRegressor
    >>> X, y = make_friedman1(n_samples=300, noise=0.5, random_state=0)
    >>> model = make_pipeline(StandardScaler(), VarProSHLRegressor(random_state=0)).fit(X, y)
    >>> model.score(X, y) > 0.9
    True
    """

    _parameter_constraints = {
        **BaseFlowEstimator._parameter_constraints,
        "compile": ["boolean", StrOptions({"auto"})],
        "width": [Interval(numbers.Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "feature_map": [StrOptions({"perceptron", "rbf"})],
        "feature_domain": [StrOptions({"euclidean", "sphere", "torus"})],
        "torus_period": [Interval(numbers.Real, 0, None, closed="neither")],
        "rbf_kernel": [StrOptions(set(RBF_KERNELS))],
        "rbf_bandwidth": [Interval(numbers.Real, 0, None, closed="neither")],
        "alpha": [Interval(numbers.Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "alphas": ["array-like", None],
        "regularization": [StrOptions({"biased", "unbiased"})],
        "solver": [StrOptions({"varpro", "two-timescale", "gd"})],
        "projection_momentum": [Interval(numbers.Real, 0, 1, closed="left")],
        "feature_scale": [Interval(numbers.Real, 0, None, closed="neither")],
        "scale_targets": [StrOptions({"auto"}), "boolean"],
        "store_features_every": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "n_spectrum": [Interval(numbers.Integral, 1, None, closed="left")],
        "kernel_subsample": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    _reference_learning_rate = 1e-2
    _architecture_params = ("width", "activation", "feature_map", "feature_domain", "torus_period", "rbf_kernel",
                            "rbf_bandwidth", "alpha", "regularization", "solver", "projection_momentum")

    def __init__(
        self,
        width=128,
        *,
        activation="relu",
        feature_map="perceptron",
        feature_domain="euclidean",
        torus_period=4.0,
        rbf_kernel="laplace",
        rbf_bandwidth=2.0,
        alpha="auto",
        alphas=None,
        regularization="biased",
        solver="varpro",
        projection_momentum=0.9,
        feature_scale=1.0,
        scale_targets="auto",
        store_features_every=None,
        n_spectrum=10,
        kernel_subsample=4096,
        learning_rate=1e-2,
        max_iter=500,
        tol=1e-4,
        n_iter_no_change=10,
        early_stopping=True,
        validation_fraction=0.2,
        batch_size=None,
        device="auto",
        dtype="float64",
        random_state=None,
        verbose=0,
        compile="auto",
        warm_start=False,
    ):
        self.width = width
        self.activation = activation
        self.feature_map = feature_map
        self.feature_domain = feature_domain
        self.torus_period = torus_period
        self.rbf_kernel = rbf_kernel
        self.rbf_bandwidth = rbf_bandwidth
        self.alpha = alpha
        self.alphas = alphas
        self.regularization = regularization
        self.solver = solver
        self.projection_momentum = projection_momentum
        self.feature_scale = feature_scale
        self.scale_targets = scale_targets
        self.store_features_every = store_features_every
        self.n_spectrum = n_spectrum
        self.kernel_subsample = kernel_subsample
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.compile = compile

    # ------------------------------------------------------------------ validation
    def _validate_params(self):
        super()._validate_params()
        if self.feature_domain == "torus" and self.feature_map != "rbf":
            raise ValueError("feature_domain='torus' holds RBF centres: it needs feature_map='rbf'; got "
                             f"feature_map={self.feature_map!r}.")
        if self.feature_map == "rbf" and self.feature_domain == "sphere":
            raise ValueError("feature_map='rbf' places the centres in the input space: use feature_domain="
                             "'euclidean' or 'torus', not 'sphere'.")

    @property
    def _architecture(self):
        """The architecture parameters that shape this model (unused ones may change between warm fits)."""
        unused = {"torus_period", "rbf_kernel", "rbf_bandwidth"} if self.feature_map == "perceptron" else {"activation"}
        if self.feature_domain != "torus":
            unused.add("torus_period")
        return {name: getattr(self, name) for name in self._architecture_params if name not in unused}

    def _feature_args(self):
        """``(activation, domain)`` of the engine's feature functions: a string or an ``RBFKernel``, and a string
        or a ``Torus``."""
        if self.feature_map == "perceptron":
            return self.activation, self.feature_domain
        kernel = RBFKernel(self.rbf_kernel, float(self.rbf_bandwidth))
        domain = Torus(float(self.torus_period)) if self.feature_domain == "torus" else self.feature_domain
        return kernel, domain

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # a model periodic in x (the torus deconvolution of App. III.B) cannot fit a generic regression
        # target such as scikit-learn's check data (a linear trend over more than a period)
        tags.regressor_tags.poor_score = self.feature_domain == "torus"
        return tags

    # ------------------------------------------------------------------ hooks
    @property
    def _sparse_rows_ok(self):
        """Perceptron features read ``X`` by blocks of rows; RBF features (and ``alpha='auto'`` with
        ``solver='gd'``, whose strength is chosen once on the whole batch) compute on the whole batch, and a sparse
        ``X`` is then densified on the device."""
        return self.feature_map == "perceptron" and not (self.alpha == "auto" and self.solver == "gd")

    def _scales_targets(self):
        if self.scale_targets == "auto":
            # sphere features have no bias, so the model cannot represent the constant that centring removes;
            # the torus deconvolution (App. III.B) is fitted in the teacher's units
            return self.regularization == "biased" and self.feature_domain == "euclidean"
        return bool(self.scale_targets)

    def _init_features(self, d, generator):
        M = self.width
        if self.feature_domain == "torus":
            # uniform on the fundamental domain [-L/2, L/2)^d (the uniform law on the torus, as the thesis's
            # uniform initialisation on S^1)
            L = float(self.torus_period)
            return L * (torch.rand(M, d, generator=generator, dtype=torch.float64) - 0.5)
        if self.feature_map == "rbf":
            # centres where standardised inputs are
            return self.feature_scale * torch.randn(M, d, generator=generator, dtype=torch.float64)
        G = torch.randn(M, d + (self.feature_domain == "euclidean"), generator=generator, dtype=torch.float64)
        if self.feature_domain == "sphere":
            # uniform on the sphere (the thesis's S^1 initialisation, omega_i ~ U(S^1))
            return G / G.norm(dim=1, keepdim=True).clamp(min=1e-300)
        # w ~ N(0, I/d), b ~ N(0, 1): pre-activations of unit variance on standardised inputs, and the
        # kinks of ReLU spread over the data
        G[:, :d] /= np.sqrt(max(d, 1))
        return self.feature_scale * G

    def _alpha_grid(self):
        if self.alphas is None:
            return DEFAULT_ALPHAS
        grid = np.asarray(self.alphas, dtype=np.float64).ravel()
        if grid.size == 0 or not np.all(np.isfinite(grid) & (grid > 0)):
            raise ValueError(f"alphas must be a non-empty array of positive ridge strengths; got {self.alphas!r}.")
        return tuple(grid)

    def _compile_setting(self):
        return self.compile

    def _make_flow(self, ctx):
        X, Y, generator = ctx.X, ctx.Y, ctx.generator
        d = X.shape[1]
        if self.feature_domain == "sphere" and d < 2:
            raise ValueError(
                f"feature_domain='sphere' needs at least 2 features (the sphere of R^{d} is two points); "
                "use feature_domain='euclidean'."
            )
        omega = self._init_features(d, generator).to(device=self.device_, dtype=self._torch_dtype)
        u = torch.full((self.width, Y.shape[1]), regularizer_centre(self.regularization), dtype=self._torch_dtype,
                       device=self.device_)
        activation, domain = self._feature_args()
        engine = TorusVarProFlow if self.feature_domain == "torus" else VarProFlow
        return engine(
            omega, u, lam=self.alpha, alphas=self._alpha_grid(), regularization=self.regularization,
            activation=activation,
            domain=domain, solver=self.solver, momentum=self.projection_momentum,
            stochastic=self._uses_minibatches(ctx), store_every=self.store_features_every,
        )

    def _finalize_fit(self, ctx):
        flow = self.flow_
        X, _, w = ctx.positive_rows()
        self.features_, self.outer_weights_ = to_numpy(flow.omega), to_numpy(flow.u)
        self.reduced_risk_curve_ = self.history_.get("reduced_risk", np.zeros(0))
        self.alpha_ = float(flow.lam)
        self.alpha_path_ = self.history_.get("alpha", np.zeros(0))
        Xs, ws = rows_of(seeded_subsample(X.shape[0], self.kernel_subsample), X, w)
        self.kernel_spectrum_ = self._diagnostic(
            "kernel_spectrum_", lambda: to_numpy(kernel_spectrum(flow.omega, Xs, flow.activation, flow.domain,
                                                                   k=self.n_spectrum, weights=ws)),
            default=np.full(1, np.nan))
        k_op = float(self.kernel_spectrum_[0]) if self.kernel_spectrum_.size else 0.0
        self.regularization_ratio_ = self.alpha_ / k_op if k_op > 0 else float("inf")
        if self.store_features_every:
            self.feature_history_ = np.stack([to_numpy(s) for s in flow.feature_snapshots()])

    # ------------------------------------------------------------------ predict
    def _predict_chunk(self):
        """Rows per prediction chunk within the budget of the base (``skflow._base.PREDICT_MEMORY_BUDGET``), from
        the width: perceptron features run over row blocks of their own (the base's estimate); RBF features form
        four ``(rows, M)`` matrices at once (the squared distances and a temporary, the kernel values and their
        radial factor), and on a torus the ``d`` projected differences ``(d, rows, M)`` and the two temporaries of
        their wrapping too (measured peaks: ``4 M`` and ``(d + 6) M`` entries per row)."""
        flow = self.flow_
        if flow.row_blocked:
            return super()._predict_chunk()
        M, dim = flow.omega.shape
        per_row = flow.itemsize * ((4 + (dim + 2 if isinstance(flow, TorusVarProFlow) else 0)) * M + dim
                                   + flow.u.shape[1])
        per_row = max(per_row, flow.bytes_per_row(training=False))
        return max(1, _base.PREDICT_MEMORY_BUDGET // per_row)

    # ------------------------------------------------------------------ public API
    def reduced_risk(self, X, y):
        """Reduced risk ``L(features_)`` (Eq. III.41) of new data, with the exact projection on it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The targets, on the scale of those given to ``fit``.

        Returns
        -------
        float
            The reduced risk, in the units of ``reduced_risk_curve_`` (standardised targets).
        """
        check_is_fitted(self, "flow_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        Y = np.asarray(y, dtype=np.float64).reshape(X.shape[0], -1)
        Y = (Y - self.y_mean_) / self.y_scale_
        Xt = torch.as_tensor(X, dtype=torch.float64)
        Yt = torch.as_tensor(Y, dtype=torch.float64)
        omega = torch.as_tensor(self.features_)
        with torch.no_grad():
            L, _, _ = reduced_risk(omega, Xt, Yt, self.alpha_, self.regularization, self.flow_.activation,
                                   self.flow_.domain)
        return float(L)
