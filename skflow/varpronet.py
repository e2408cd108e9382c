"""VarProNetRegressor and VarProNetClassifier: a deep feature network with an exact ridge head (thesis §III.6.2)."""

import copy
import inspect
import numbers

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from sklearn.utils._param_validation import Interval, StrOptions

from . import _device
from ._arrays import rows_of, seeded_subsample, to_numpy
from ._base import BaseFlowEstimator
from ._partial import PartialFitClassifierMixin, PartialFitRegressorMixin
from ._targets import BaseFlowClassifier, BaseFlowRegressor
from ._user_modules import PROBE_ROWS, SeededSteps, check_module, torch_state
from .diagnostics.kernels import top_eigenvalues
from .flows._ops import regularizer_centre
from .flows.varpronet import Conv1dFeatures, MLPFeatures, VarProNetFlow

__all__ = ["Conv1dFeatures", "MLPFeatures", "VarProNetClassifier", "VarProNetRegressor"]

#: the tangent-kernel diagnostics use at most this many training rows (a seeded subsample) and eigenvalues
_SPECTRUM_ROWS, _N_SPECTRUM = 4096, 10

_COMMON_PARAMS_DOC = """
    module : type or callable, default=MLPFeatures
        The feature network ``Phi_theta``: a ``torch.nn.Module`` subclass or any callable returning a module,
        called as ``module(**module_kwargs)``, with ``n_features_in=n_features_in_`` added when its signature has
        a parameter of that name (the input width is then known to the module; :class:`MLPFeatures` and
        :class:`Conv1dFeatures` take it). The module maps a float tensor ``(n, n_features_in_)`` to features
        ``(n, M)`` (``M`` is read from a probe forward pass; end convolutional networks with ``nn.Flatten()``).
        It is built at every cold ``fit`` on the CPU under a seed drawn from ``random_state`` and with torch's
        default dtype set to ``dtype``, so its initialisation is reproducible and independent of
        ``torch.get_default_dtype()``, then moved to ``device`` and ``dtype``. torch's generators and default
        dtype are process-wide: they are set under a process-wide lock and restored after, so that a fit leaves
        them as they were and fits in threads give the models of the same fits run one after the other. Before
        the first step the module is run on the first batch (at most 1024 rows), in eval and train mode: an
        output that is not a finite ``(n, M)`` tensor of the fit's dtype on its device raises a ValueError or
        TypeError naming the module, and nothing is fitted. A module *instance* is also accepted: it is deep-
        copied and trained from its current weights (``random_state`` then seeds the minibatch order only, and
        ``module_kwargs`` must be empty). The module runs in ``train()`` mode during the steps and in ``eval()``
        mode for predictions and validation; its buffers (e.g. BatchNorm statistics) are not restored by early
        stopping. Random layers (dropout) draw, at each step, from torch's generators seeded from
        ``random_state`` and the step's index, under the same lock, and restored after the step.
    module_kwargs : dict or None, default=None
        Keyword arguments of ``module`` (e.g. ``{'hidden_layer_sizes': (64, 64)}`` for :class:`MLPFeatures`).
    alpha : float, default=1e-2
        Ridge strength ``lambda`` of the outer layer (scikit-learn's name, as in ``Ridge``), in the mean-field
        units of Eq. III.45: ``lambda (1/M) sum_i f(u_i)`` against a tangent kernel ``K = Phi^T Phi / (N M)`` of
        norm about the mean squared feature (see ``regularization_ratio_``). It also sets the time scale of the
        backbone, whose step is ``M tau / lambda``: change ``learning_rate`` with it. The default ``1e-2`` (with
        ``tau = 8e-4``) was chosen against ``1e-3`` (``tau = 8e-5``), ``3e-2`` and ``1e-1`` (same ``tau / alpha``),
        with ``max_iter='auto'``: from 129 to 385 rows (3- and 5-class ``make_classification`` data, 18 splits,
        against ``SVC()``) it is 1.5 points of accuracy above ``1e-3`` on average and 1 point at worst, with a 6%%
        lower log-loss, and 0.03 of R^2 above it on regression; on iris, wine, breast cancer and digits it is
        within 0.005 of the former defaults (``1e-3`` with early stopping).
    regularization : {'biased', 'unbiased'}, default='biased'
        Regulariser ``f`` of the outer weights: ``|u|^2 / 2`` (Eq. III.45) or ``|u - 1|^2 / 2``.
    projection_momentum : float in [0, 1), default=0.9
        ``m`` of stochastic VarPro (Eq. III.46): ``u <- m u + (1 - m) U_bar`` with ``U_bar`` the exact projection on
        the minibatch; it averages the minibatch heads. Unused in full batch, where ``u = U_bar`` exactly.
    backbone_momentum : float in [0, 1), default=0.9
        ``beta`` of an exponential average of the backbone's velocity: ``v <- beta v + (1 - beta) M grad_theta L``,
        ``theta <- theta - tau v`` (a steady gradient gives the step of Eq. III.46; the average damps the minibatch
        noise and the oscillations across steep directions, and allows about ten times larger steps). ``0`` is
        Eq. III.46 exactly; the default departs from it, for speed: the averaged steps reach a better test score
        in the same number of epochs (the measurements: README, "A VarPro head on your own network"). The
        velocity is kept across warm starts and is not restored by early stopping.
    learning_rate : float or 'auto', default=%(lr)s
        Time step ``tau`` of the backbone: ``theta <- theta - (M tau / lambda) grad_theta R(theta, u)``
        (Eq. III.46), i.e. gradient descent on the reduced risk ``L = R / lambda`` with the mean-field factor
        ``M``: an SGD step of ``M tau / lambda`` on the MSE/2 in the usual units (a head ``u / M``), about 10
        with the defaults (``M = 128``). Keep ``tau / alpha`` about fixed when changing ``alpha``, and scale
        ``tau`` like ``1 / M`` for much wider features. The defaults (``alpha=1e-2``, ``tau=8e-4``, minibatches
        of 128) sit inside a range of equally good steps (README, measured at the same ``tau / alpha``); twice
        larger steps start to be unstable, and a smaller ``alpha`` is less stable at the same ``tau / alpha``.
        ``'auto'``: half the largest time step whose first steps keep decreasing the reduced risk (a line
        search on a copy of the model, on one minibatch); the value used is ``learning_rate_``.
    max_iter : int or 'auto', default=%(max_iter)s
        Maximum number of iterations: epochs (passes over the data) with ``batch_size``, steps in full batch.
        ``'auto'`` chooses the number of epochs on the data by cross-validation (as ``RKHSNODEClassifier``, see
        :mod:`skflow._epochs`): probe fits on four fifths of the rows run up to 100 epochs and record the data
        fit on the remaining fifth after each, stopping once it has not improved for 15 epochs (two folds below
        1250 rows, one from there); the last epoch of the least mean held-out risk becomes ``max_iter_``, and the
        model is then fitted on every row for ``max_iter_`` epochs. Early stopping without losing rows to the
        model. With fewer than 50 rows, with ``early_stopping=True``, a warm start, ``partial_fit`` or a
        data-parallel fit, the budget of 100 is used. The search costs at most 0.8x the final fit per fold.
    tol : float, default=0.0
        ``0`` (the default) runs the budget of ``max_iter`` iterations, and reaching it is not a convergence
        failure. A positive ``tol`` stops when the monitored data fit (the validation one with
        ``early_stopping``) has not decreased by ``tol`` (relative) for ``n_iter_no_change`` iterations, with a
        ``ConvergenceWarning`` if ``max_iter`` comes first.
    n_iter_no_change : int, default=10
        Consecutive iterations without a relative decrease of at least ``tol`` after which training stops.
    early_stopping : bool, default=%(early_stopping)s
        Hold out ``validation_fraction`` of the training rows (stratified by class for the classifier), monitor
        the data fit on them and keep the parameters (network and head) with the best value. The held-out rows
        are lost to the model: on a few hundred rows a hold-out of a tenth is too small to choose well (against
        ``SVC()`` on 129-385 rows it scored 1 point of accuracy below ``max_iter='auto'`` on average and 1.5
        points at worst, with a 7%% higher log-loss).
    validation_fraction : float, default=0.1
        Fraction of the training rows held out for ``early_stopping`` (at least one); unused otherwise.
    batch_size : int or None, default=%(batch_size)s
        Rows per step of stochastic VarPro (Eq. III.46); ``None`` is full batch (the exact projection on all rows
        at every step: the explicit Euler scheme of the gradient flow of the reduced risk).
    device : str or torch.device, default='auto'
        Where training runs ('auto': CUDA when available); the resolved device is ``device_``.
    dtype : {'float64', 'float32'}, default='float64'
        Floating-point type of the network and of training. The ridge solves are in float64 in every case (the
        Gram matrix too when ``alpha < 1e-2``). float32 is about twice as fast on CPUs.
    random_state : int, RandomState instance or None, default=None
        Seeds the module's initialisation, the minibatch order and the validation split.
    verbose : int, default=0
        0 is silent; 1 prints the iteration, data fit and elapsed time every 100 iterations and at the end, 2
        or more every 20 iterations.
    warm_start : bool, default=False
        Continue from the previous fit's network and head (appending to the history). The data's number of
        features and of outputs / classes, ``module``, ``module_kwargs``, ``alpha``, ``regularization`` and
        ``projection_momentum`` must not change (:class:`skflow.IncompatibleWarmStartError` otherwise)."""

_COMMON_ATTRIBUTES_DOC = """
    module_ : torch.nn.Module
        The trained feature network (in eval mode, on ``device_``; a pickled estimator loads it on the CPU when
        no GPU is present).
    outer_weights_ : ndarray of shape (M, n_outputs)
        Outer weights ``u``: the raw output is ``module_(X) @ outer_weights_ / M``. In full batch they are the
        exact projection at the final network. One row per feature of the network, not per input feature: it is
        not named ``coef_``, which scikit-learn's feature selectors (``RFE``, ``SelectFromModel``) read as a
        per-input importance.
    width_ : int
        Number of features ``M``.
    alpha_ : float
        The ridge strength used.
    learning_rate_ : float
        The time step used.
    kernel_spectrum_ : ndarray of shape (10,)
        Top eigenvalues of the tangent kernel ``K = Phi^T Phi / (N M)`` of the final features on at most 4096
        training rows (a seeded subsample).
    regularization_ratio_ : float
        ``alpha_ / kernel_spectrum_[0]``: far below one, the head interpolates; about one or more, it is shrunk.
    reduced_risk_curve_ : ndarray of shape (n_iter_,)
        ``R(theta, u) / lambda`` per iteration (minibatch averages with ``batch_size``): the reduced risk
        ``L(theta)`` exactly in full batch.
    loss_curve_ : ndarray of shape (n_iter_,)
        Data fit ``(1/2N) sum |F - y|^2`` per iteration (epoch averages over the minibatches).
    pl_ratio_curve_ : ndarray of shape (n_iter_,)
        ``M |grad_theta L|^2 / L``: the instantaneous exponential rate of decrease of the reduced risk in flow
        time.
    max_iter_ : int
        The iteration budget used: ``max_iter``, or the epochs chosen for ``'auto'``.
    epoch_search_ : dict or None
        The search of ``max_iter='auto'`` (None when none ran): ``'n_folds'``, ``'validation_rows'``,
        ``'mean_score'`` (minus the mean held-out data fit after each epoch) and ``'epochs'``.
    history_, flow_time_, pl_constant_, best_loss_, best_validation_risk_, n_iter_, stop_reason_, device_
        As for every skflow estimator (see :class:`skflow.VarProSHLRegressor`).
    flow_ : skflow.flows.varpronet.VarProNetFlow
        The trained engine.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        When ``X`` has string column names."""


def _accepts_n_features_in(factory):
    """Whether ``factory``'s signature has a parameter named ``n_features_in``."""
    try:
        return "n_features_in" in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return False


class _VarProNetMixin:
    """What the regressor and the classifier share: the module, the engine and the fitted attributes."""

    # the user's module consumes X: a torch.nn.Module is written for dense tensors (torch.sparse inputs work
    # with few layers), so a sparse X is refused with a TypeError that says so
    _accepts_sparse = False
    _sparse_refusal = "its first layer is the user's torch module, which consumes X as a dense tensor."

    _parameter_constraints = {
        **BaseFlowEstimator._parameter_constraints,
        "module": [callable],
        "module_kwargs": [dict, None],
        "alpha": [Interval(numbers.Real, 0, None, closed="neither")],
        "regularization": [StrOptions({"biased", "unbiased"})],
        "projection_momentum": [Interval(numbers.Real, 0, 1, closed="left")],
        "backbone_momentum": [Interval(numbers.Real, 0, 1, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
    }
    _architecture_params = ("module", "module_kwargs", "alpha", "regularization", "projection_momentum")

    def _build_module(self, d, generator):
        """``(module, seed)``: the feature module, initialised under a CPU seed drawn from ``generator`` (see
        ``module``), in the estimator's dtype, on the CPU, with torch's global state left as it was (see
        :func:`skflow._user_modules.torch_state`)."""
        kwargs = self._module_call_kwargs(d)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        if isinstance(self.module, torch.nn.Module):
            if kwargs:
                raise ValueError("module_kwargs must be empty when module is a torch.nn.Module instance (it is "
                                 "used as it is); pass the module's class to have it built with module_kwargs.")
            return copy.deepcopy(self.module), seed
        with torch_state(seed, self._torch_dtype, build=True):
            module = self.module(**kwargs)
        if not isinstance(module, torch.nn.Module):
            raise ValueError(f"module must build a torch.nn.Module; {self.module!r} returned "
                             f"{type(module).__name__}.")
        return module, seed

    def _module_call_kwargs(self, d):
        """The keyword arguments ``module`` is called with for ``d`` input features."""
        kwargs = dict(self.module_kwargs or {})
        if not isinstance(self.module, torch.nn.Module) and "n_features_in" not in kwargs \
                and _accepts_n_features_in(self.module):
            kwargs["n_features_in"] = d
        return kwargs

    def _make_flow(self, ctx):
        X, Y = ctx.X, ctx.Y
        N, d = X.shape
        module, seed = self._build_module(d, ctx.generator)
        module = module.to(device=self.device_, dtype=self._torch_dtype)
        # validated on the first batch before anything is trained (a bad module raises: nothing is committed)
        rows = min(N, self.batch_size or N, PROBE_ROWS)
        M, draws_random = check_module(module, X[:rows], self._torch_dtype, self.device_, seed)
        module.eval()
        u = torch.full((M, Y.shape[1]), regularizer_centre(self.regularization), dtype=self._torch_dtype,
                       device=self.device_)
        flow = VarProNetFlow(module, u, lam=self.alpha, regularization=self.regularization,
                             momentum=self.projection_momentum, backbone_momentum=self.backbone_momentum,
                             stochastic=self.batch_size is not None and self.batch_size < N, n_inputs=d)
        if draws_random:  # dropout & co: every step draws from its own seed, torch's generators are left alone
            flow.step_scope = SeededSteps(int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator)),
                                           self._torch_dtype)
        return flow

    def _resolve_learning_rate(self, flow, ctx):
        # the base calls this hook after flow.start and before the first step: where a warm-started engine (built
        # by an earlier fit) learns this fit's batch mode and backbone momentum. (A warm start with
        # learning_rate='auto' skips the hook and keeps the previous fit's settings with its time step.)
        flow.stochastic = self._uses_minibatches(ctx)
        flow.backbone_momentum = float(self.backbone_momentum)
        return super()._resolve_learning_rate(flow, ctx)

    def _outputs(self, X):
        """Raw outputs of the engine on a training tensor, by chunks."""
        chunk = self._predict_chunk()
        return torch.cat([self.flow_.forward(X[i:i + chunk]) for i in range(0, X.shape[0], chunk)])

    def _finalize_fit(self, ctx):
        flow = self.flow_
        X, _, w = ctx.positive_rows()
        flow.module.eval()
        self.module_ = flow.module
        self.outer_weights_ = to_numpy(flow.u)
        self.width_ = int(flow.width)
        self.alpha_ = float(flow.lam)
        self.reduced_risk_curve_ = self.history_.get("reduced_risk", np.zeros(0))
        Xs, ws = rows_of(seeded_subsample(X.shape[0], _SPECTRUM_ROWS), X, w)
        self.kernel_spectrum_ = self._diagnostic(
            "kernel_spectrum_", lambda: to_numpy(top_eigenvalues(flow.features(Xs), _N_SPECTRUM, ws)),
            default=np.full(1, np.nan))
        k_op = float(self.kernel_spectrum_[0]) if self.kernel_spectrum_.size else 0.0
        self.regularization_ratio_ = self.alpha_ / k_op if k_op > 0 else float("inf")

    # ------------------------------------------------------------------ pickling: module_ is flow_.module
    def __getstate__(self):
        """As the base's, with ``module_`` stored once, as ``flow_.module``; skops stores a module built from
        ``module`` (a class or callable) as that call and its ``state_dict`` (a module instance: a TypeError)."""
        state = super().__getstate__()  # flow_ is moved to the CPU there (a copy)
        if "flow_" in state and "module_" in state:
            state["module_"] = None  # bound to flow_.module again by __setstate__
            if not isinstance(self.module, torch.nn.Module) and "n_features_in_" in state:
                _device.set_module_recipe(state["flow_"].module, self.module,
                                          self._module_call_kwargs(state["n_features_in_"]),
                                          self.flow_.parameters()[0].dtype)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)  # flow_ is moved to device_ there
        if "flow_" in self.__dict__ and "module_" in self.__dict__:
            self.module_ = self.flow_.module


_DEFAULTS = dict(lr="8e-4", max_iter="'auto'", early_stopping="False", batch_size="128")


class VarProNetRegressor(PartialFitRegressorMixin, _VarProNetMixin, BaseFlowRegressor):
    __doc__ = """Regression by a deep feature network with an exact ridge head, trained by stochastic VarPro
    (thesis §III.6.2, Eq. III.45-III.46).

    The model is ``F(x) = Phi_theta(x) u / M`` with ``Phi_theta`` the feature network ``module`` (``M`` features)
    and ``u`` the outer layer. On every minibatch the outer layer is solved exactly (ridge regression on the
    features, :func:`skflow.flows.varpro.ridge_projection`) and averaged into ``u`` with momentum; the network then
    takes a gradient step on the risk at that ``u`` (the envelope theorem: the gradient of the reduced risk
    needs no differentiation through the solve).

    Parameters
    ----------""" + _COMMON_PARAMS_DOC % _DEFAULTS + """
    scale_targets : {'auto'} or bool, default='auto'
        Standardise ``y`` per output before fitting (``'auto'``: for the biased regulariser); predictions are
        mapped back.

    Attributes
    ----------""" + _COMMON_ATTRIBUTES_DOC + """
    y_mean_, y_scale_ : ndarray of shape (n_outputs,)
        Target scaling (zeros and ones when the targets are not scaled).

    See Also
    --------
    VarProNetClassifier : the same model on one-hot targets.
    VarProSHLRegressor : the two-layer mean-field network of the theory (thesis Ch. III).

    References
    ----------
    .. [1] R. Barboni, "Training deep neural networks: mathematical models and convergence results"
       ("Entraînement de réseaux de neurones profonds : modèles mathématiques et résultats de convergence"),
       PhD thesis, Université PSL (École Normale Supérieure), 2025. "The thesis" of these docstrings: its
       Ch. III states Variable Projection for the two-layer network that this estimator applies to a backbone.
    .. [2] R. Barboni, G. Peyré, F.-X. Vialard, "Ultra-fast feature learning for the training of two-layer
       neural networks in the two-timescale regime", arXiv:2504.18208, 2025.

    Examples
    --------
    >>> from sklearn.datasets import make_friedman1
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skflow import VarProNetRegressor
    >>> X, y = make_friedman1(n_samples=300, noise=0.5, random_state=0)
    >>> X = StandardScaler().fit_transform(X)
    >>> model = VarProNetRegressor(module_kwargs={"hidden_layer_sizes": (64, 64)}, max_iter=30,
    ...                            random_state=0, device="cpu").fit(X, y)
    >>> model.score(X, y) > 0.8
    True
    """

    _parameter_constraints = {
        **_VarProNetMixin._parameter_constraints,
        "scale_targets": [StrOptions({"auto"}), "boolean"],
    }
    _reference_learning_rate = 8e-4

    def __init__(
        self,
        module=MLPFeatures,
        module_kwargs=None,
        *,
        alpha=1e-2,
        regularization="biased",
        projection_momentum=0.9,
        backbone_momentum=0.9,
        learning_rate=8e-4,
        max_iter="auto",
        tol=0.0,
        n_iter_no_change=10,
        early_stopping=False,
        validation_fraction=0.1,
        batch_size=128,
        device="auto",
        dtype="float64",
        random_state=None,
        verbose=0,
        warm_start=False,
        scale_targets="auto",
    ):
        self.module = module
        self.module_kwargs = module_kwargs
        self.alpha = alpha
        self.regularization = regularization
        self.projection_momentum = projection_momentum
        self.backbone_momentum = backbone_momentum
        self.scale_targets = scale_targets
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

    def _scales_targets(self):
        if self.scale_targets == "auto":
            return self.regularization == "biased"
        return bool(self.scale_targets)


class VarProNetClassifier(PartialFitClassifierMixin, _VarProNetMixin, BaseFlowClassifier):
    __doc__ = """Classification by a deep feature network with an exact ridge head on one-hot targets, trained by
    stochastic VarPro (thesis §III.6.2, Eq. III.45-III.46).

    The squared loss on one-hot targets ``y in {0, 1}^K`` (Eq. III.45) makes the outer layer a ridge regression,
    solved exactly on every minibatch and averaged with momentum; the network ``module`` then takes a gradient
    step on the risk at that head (Eq. III.46). ``predict`` is the class of the largest output.

    Parameters
    ----------""" + _COMMON_PARAMS_DOC % _DEFAULTS + """
    class_weight : dict, 'balanced' or None, default=None
        Weights of the classes, multiplying the rows' ``sample_weight`` (as in ``SVC`` and
        ``LogisticRegression``): a dict ``{label: weight}`` (classes not in it weigh 1), or ``'balanced'``,
        ``n_samples / (n_classes * np.bincount(y))`` (in a data-parallel fit, with the counts of every rank).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)""" + _COMMON_ATTRIBUTES_DOC + """
    temperature_ : float
        ``predict_proba`` is the softmax of the outputs divided by ``temperature_``, fitted by maximum likelihood
        (log-loss, a one-dimensional convex problem, bounded to ``[1e-3, 1e3]``) on held-out outputs: with
        ``max_iter='auto'``, the probes' outputs on their held-out fold after the epoch chosen, pooled over the
        folds (cross-validated); with ``early_stopping``, the held-out rows; otherwise the training rows (then
        often overconfident). The squared loss gives outputs near the one-hot codes, whose plain softmax would be
        almost uniform.

    See Also
    --------
    VarProNetRegressor : the same model for regression.

    References
    ----------
    .. [1] R. Barboni, "Training deep neural networks: mathematical models and convergence results"
       ("Entraînement de réseaux de neurones profonds : modèles mathématiques et résultats de convergence"),
       PhD thesis, Université PSL (École Normale Supérieure), 2025. "The thesis" of these docstrings: its
       Ch. III states Variable Projection for the two-layer network that this estimator applies to a backbone.
    .. [2] R. Barboni, G. Peyré, F.-X. Vialard, "Ultra-fast feature learning for the training of two-layer
       neural networks in the two-timescale regime", arXiv:2504.18208, 2025.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skflow import VarProNetClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> clf = VarProNetClassifier(module_kwargs={"hidden_layer_sizes": (32,)}, batch_size=None, max_iter=50,
    ...                           random_state=0, device="cpu").fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    """

    #: early stopping restores the least validation risk, not the best accuracy: the ridge head's validation
    #: risk is the finer signal on the small hold-outs of this estimator (on 3- and 5-class problems of 129-385
    #: rows, the accuracy rule scored 1 point lower on average, 10 points on the worst split)
    _validation_score = None
    _reference_learning_rate = 8e-4
    _parameter_constraints = {
        **_VarProNetMixin._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(
        self,
        module=MLPFeatures,
        module_kwargs=None,
        *,
        alpha=1e-2,
        regularization="biased",
        projection_momentum=0.9,
        backbone_momentum=0.9,
        learning_rate=8e-4,
        max_iter="auto",
        tol=0.0,
        n_iter_no_change=10,
        early_stopping=False,
        validation_fraction=0.1,
        batch_size=128,
        device="auto",
        dtype="float64",
        random_state=None,
        verbose=0,
        warm_start=False,
        class_weight=None,
    ):
        self.class_weight = class_weight
        self.module = module
        self.module_kwargs = module_kwargs
        self.alpha = alpha
        self.regularization = regularization
        self.projection_momentum = projection_momentum
        self.backbone_momentum = backbone_momentum
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

    # ------------------------------------------------------------------ hooks
    def _proba_scores(self, F):
        return F / self.temperature_

    def _fit_auto(self, X, y, sample_weight=None):
        # max_iter='auto': the probes of the epoch search record their held-out outputs after every epoch (a list
        # shared with them, see _train_config), which calibrate the temperature at the chosen epoch
        self._cv_outputs = []
        try:
            return super()._fit_auto(X, y, sample_weight)
        finally:
            self.__dict__.pop("_cv_outputs", None)

    def _train_config(self, ctx):
        cfg = super()._train_config(ctx)
        record = self.__dict__.get("_cv_outputs")
        if self._search_fit and record is not None and ctx.X_val is not None:
            outputs, latest = [], []
            record.append((ctx.Y_val.argmax(1), ctx.val_weight, outputs))

            def val_score(flow, Xv, Yv):
                # the held-out risk of early stopping and the outputs it comes from, one forward pass; the score
                # -risk orders the candidates as the risk alone does
                risk, F = flow.risk_and_outputs(Xv, Yv)
                latest[:] = [F]
                return -risk, risk

            def hook(iteration, row):
                outputs.append(latest[0])  # the outputs of this iteration's validation
                return False

            cfg.val_score, cfg.iteration_hook = val_score, hook
        return cfg

    def _finalize_fit(self, ctx):
        super()._finalize_fit(ctx)
        # the held-out rows calibrate predict_proba: those of the epoch search's folds (max_iter='auto'), or of
        # early stopping, else the training rows; with their weights
        F, labels, w = self._cross_validated_outputs()
        if F is None:
            X, Y, w = ((ctx.X, ctx.Y, ctx.sample_weight) if ctx.X_val is None
                       else (ctx.X_val, ctx.Y_val, ctx.val_weight))
            F, labels = self._outputs(X), Y.argmax(1)
        self.temperature_ = self._diagnostic("temperature_", _fit_temperature, to_numpy(F),
                                             to_numpy(labels).astype(np.int64), None if w is None else to_numpy(w),
                                             default=1.0)

    def _cross_validated_outputs(self):
        """``(F, labels, weights)`` of the probes of the epoch search (``max_iter='auto'``) on their held-out rows,
        after the epoch chosen, pooled over the folds; ``(None, None, None)`` when no search ran."""
        record, epochs = self.__dict__.get("_cv_outputs"), self.__dict__.get("_resolved_max_iter")
        folds = [(F[min(epochs, len(F)) - 1], labels, w) for labels, w, F in record or () if F] if epochs else []
        if not folds:
            return None, None, None
        weights = None if any(w is None for _, _, w in folds) else torch.cat([w for _, _, w in folds])
        return torch.cat([F for F, _, _ in folds]), torch.cat([lab for _, lab, _ in folds]), weights


def _fit_temperature(F, labels, weights=None, bounds=(1e-3, 1e3)):
    """The temperature ``T`` minimising the (weighted) log-loss of ``softmax(F / T)`` against ``labels`` (convex in
    ``1/T``)."""
    if F.shape[0] == 0:
        return 1.0

    def nll(log_beta):
        Z = F * np.exp(log_beta)
        Z = Z - Z.max(axis=1, keepdims=True)
        return float(np.average(np.log(np.exp(Z).sum(axis=1)) - Z[np.arange(Z.shape[0]), labels], weights=weights))

    res = minimize_scalar(nll, bounds=(-np.log(bounds[1]), -np.log(bounds[0])), method="bounded")
    return float(np.exp(-res.x))
