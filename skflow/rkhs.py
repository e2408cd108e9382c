"""RKHSNODEClassifier: a NODE whose residuals live in a random-feature RKHS (thesis §II.4)."""

import math
import numbers

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions

from ._arrays import rows_of, seeded_subsample, to_numpy
from ._partial import PartialFitClassifierMixin
from ._rows import SparseRows, host_rows, take_rows
from ._targets import BaseFlowClassifier
from .diagnostics import (
    data_separation,
    exact_kernel_lambda_min,
    feature_kappa,
    gram_lambda_min,
    pl_bound,
)
from .diagnostics.bandwidth import median_length_scale
from .exceptions import DuplicateInputsWarning, SingularKernelWarning, warn
from .flows._ops import lift
from .flows.rkhs import LOSSES, RKHSFlow, init_random_features, random_features

__all__ = ["RKHSNODEClassifier", "median_length_scale"]


class RKHSNODEClassifier(PartialFitClassifierMixin, BaseFlowClassifier):
    """Classifier: a neural ODE whose residuals live in a random-feature RKHS (thesis §II.4, Def. II.4).

    Each input is lifted to ``z(0) = (x, 0_K)`` in ``R^{d+K}`` (``K`` classes) and moved by the Euler scheme of
    the NODE of Eq. II.23 with ``S`` layers,

    .. math:: z_{k+1} = z_k + \\frac{1}{S}\\, \\theta_k\\, \\phi(z_k), \\qquad
              \\phi(z) = \\sqrt{2/M}\\, \\cos(W z + b) \\in \\mathbb{R}^M,

    where the random features ``W`` (rows from the spectral measure of the kernel) and ``b ~ U[0, 2 pi]`` are
    fixed and shared by all layers (Eq. II.33-34), so that ``phi(z) . phi(z') -> k(z, z')`` as ``M -> inf``.
    The logits are ``output_scale * z(1)[d:]`` and ``predict_proba`` is their softmax. Training starts from
    ``theta = 0`` (the identity map, Thm. II.6) and is gradient descent in ``L2([0, 1], F)`` (Thm. II.5):

    .. math:: \\theta_k \\leftarrow \\theta_k - \\tau\\, S\\, \\partial R / \\partial \\theta_k,

    so that the training curve against flow time ``tau * iterations`` does not depend on ``S``.

    Parameters
    ----------
    n_layers : int, default=5
        Depth ``S`` (Euler steps of size ``1/S`` on ``[0, 1]``). The thesis's MNIST runs found 5 layers
        slightly better than deeper ones (§II.7.1); the fit cost is linear in ``S``.
    n_features : int, default=256
        Width ``M`` of the random-feature map. Thm. II.6 asks for ``M >~ N^2`` (up to constants depending on
        the separation ``delta``); see ``required_width_``. A :class:`skflow.SingularKernelWarning` is issued
        when ``M < N`` (singular random-feature kernel matrix) *and* training left the risk above a tenth of
        its initial value; below ``N`` with a successful fit the attributes record it silently
        (``kernel_lambda_min_ = 0``), since warning on every fit with more than ``M`` points would be noise.
        256 by default: a fit's cost is linear in ``M``. With the same epoch search, 512 features cost 1.6x the
        time and scored 0.008 higher in the mean over 18 standardised ``make_classification`` fits (129-385
        rows), within 0.01 on wine, breast cancer, iris and digits (test accuracy, 3 splits each).
    kernel : {'gaussian', 'matern'}, default='gaussian'
        Kernel whose spectral measure the frequencies are drawn from: ``N(0, I / l^2)`` (Gaussian) or a
        multivariate Student-t with ``2 nu`` degrees of freedom scaled by ``1/l`` (Matern ``nu``).
    length_scale : float or 'auto', default='auto'
        Kernel length scale ``l``. ``'auto'``: the median pairwise distance between training inputs, on a
        fixed subsample of at most 1000 of them (see :func:`median_length_scale`). On standardised inputs in
        dimension ``d`` the median distance is about ``sqrt(2 d)``, so ``2 l^2 ~ 4 d``: a kernel four times
        wider (in ``gamma = 1 / (2 l^2)``) than ``SVC(gamma='scale')``; the flow sharpens it by moving the
        inputs, so a wide initial kernel generalises better than a sharper one such as half the median. The
        value used is stored as ``length_scale_``.
    nu : float, default=1.5
        Smoothness of the Matern kernel (unused for the Gaussian one). The theory (Thm. II.6) asks
        ``nu > d/2 + 2``.
    output_scale : float, default=0.3
        Output scale (lifting and scaling, §II.6): logits are ``output_scale * z(1)[d:]``. The P-L constant
        grows like ``output_scale^2`` while the initial risk (``log K`` for cross-entropy) does not change: it
        is the knob of the convergence proof. The flow is stiffer for a large ``output_scale`` (stable time
        steps ``tau ~ 1/output_scale^2``). A large ``output_scale`` is the lazy (kernel) regime, where the
        model stays close to random-feature logistic regression; the default ``0.3`` lets the flow move the
        inputs, which generalises better than the lazy regime.
    loss : {'cross_entropy', 'squared'}, default='squared'
        ``(1/2N) sum |logits - onehot|^2``, the setting of the theory (Thm. II.6), or the cross-entropy of the
        logits (the thesis's experiments, §II.7). The squared loss is the default: its targets are bounded, so
        the flow does not push the logits apart without end once the data are separated, and across datasets
        it scored as well as ``SVC()`` where the cross-entropy fell behind (the README's defaults section).
    alpha : float, default=0.0
        Regularisation strength (scikit-learn's name for it): the objective is the loss plus
        ``(alpha / 2) ||theta||^2_{L2([0,1], F)}``, the squared RKHS norm of the residuals, i.e. weight decay on
        ``theta``; the kernel machine's ridge penalty. ``loss_curve_`` records the loss alone.
    momentum : float in [0, 1), default=0.9
        ``v <- m v + (1 - m) S dR/dtheta``, ``theta <- theta - tau v``. Written as an average so that the
        flow time ``tau * iterations`` keeps its units; ``0`` is plain gradient descent, the explicit Euler
        scheme of the gradient flow.
    lr_decay : float in (0, 1], default=0.1
        Step decay of the time step: ``tau_i = tau * lr_decay ** (i // lr_decay_every)`` (the thesis divides
        the learning rate by 10 once, §II.7).
    lr_decay_every : int or None, default=None
        Iterations between decays; ``None`` keeps ``tau`` constant.
    kernel_subsample : int, default=1000
        The kernel diagnostics (``kernel_lambda_min_``, ``exact_kernel_lambda_min_``, ``pl_bound_``) use at
        most this many training inputs (a fixed subsample drawn with ``RandomState(0)``). The smallest
        eigenvalue of a principal submatrix is at least that of the full matrix, so on a subsample they are
        upper estimates.
    learning_rate : float or 'auto', default=200.0
        Time step ``tau`` of the flow, in the units above (gradient in ``L2([0, 1], F)``), the same for every
        depth ``S`` and width ``M``. Why 200 is stable: at ``theta = 0`` the step changes the logits by
        ``-output_scale^2 tau (K / B) G`` (``K`` the kernel matrix of the batch, ``G`` the loss gradient), and
        ``lambda_max(K) / B <= 1`` (``k <= 1``) while the squared loss has curvature 1; with the averaged
        momentum the linearised step is stable for ``tau < 2 (1 + m) / ((1 - m) output_scale^2)``, i.e. about
        420 at the defaults, whatever the (standardised) data. The cross-entropy's Hessian is at most ``1/2``:
        about twice the step is stable there (e.g. ``learning_rate=500`` with ``loss='cross_entropy'``).
        Every minibatch of an epoch has nearly the same size (``ceil(N / batch_size)`` of them, see
        :func:`skflow._training.epoch_batches`), so no step is taken on a batch smaller than half the others.
        ``'auto'``: half the largest time step whose first explicit steps keep decreasing the risk on the training
        data (a safeguarded line search around the default, on a copy of the model); the value used is
        ``learning_rate_``.
    max_iter : int or 'auto', default='auto'
        Steps (full batch) or epochs (``batch_size`` set). An integer runs that fixed budget (the thesis's
        protocol, §II.7; with ``tol=0`` reaching it is not a convergence failure). ``'auto'`` chooses the
        number of epochs on the data by cross-validation: probe fits on four fifths of the rows run a budget of
        100 epochs and record the risk on the remaining fifth after each, stopping once it has not improved for
        15 epochs (two folds below 1250 rows, one from there); the last epoch of the least mean risk becomes
        ``max_iter_``, and the model is then fitted on every row for ``max_iter_`` epochs. On clean labels the
        flow keeps its budget (the held-out risk keeps falling); on noisy ones it stops early, which is the
        regularisation a kernel machine gets from its ridge (or ``C``). With fewer than 50 rows, with
        ``early_stopping=True``, a warm start, ``partial_fit`` or a data-parallel fit, the budget of 100 is used.
        The search costs at most 0.8x the final fit per fold, about a third of it on noisy data (the probes stop
        past the minimum); see :mod:`skflow._epochs` for the measured choices.
    tol : float, default=0.0
        ``0`` (the default) runs the fixed budget of ``max_iter`` iterations, and reaching it is not a
        convergence failure. A positive ``tol`` stops when the training (or validation) risk has not
        decreased by ``tol`` (relative) for ``n_iter_no_change`` iterations, with a ``ConvergenceWarning`` if
        ``max_iter`` comes first.
    n_iter_no_change : int, default=10
        Number of consecutive iterations without a relative decrease of at least ``tol`` of the monitored
        risk after which training stops.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified by class when the class counts
        allow it), monitor the risk on it instead of the training risk (for the ``tol`` rule), and restore the
        parameters of the best validation accuracy at the end (among equal accuracies, the least validation
        risk), as ``MLPClassifier`` does; ``validation_scores_`` records the accuracies.
    validation_fraction : float, default=0.1
        Fraction of the training data held out as validation set (at least one sample) for
        ``early_stopping``; unused otherwise. The split is seeded by ``random_state``.
    batch_size : int or None, default=128
        An integer: minibatch SGD with momentum, as in the thesis's experiments (§II.7); one iteration is an
        epoch. ``None``: full batch, the gradient descent of Thm. II.5 (one step per iteration: use a larger
        ``max_iter``).
    device : str or torch.device, default='auto'
        Where training runs: 'auto' picks CUDA when available and the CPU otherwise; any torch device
        string ('cpu', 'cuda', 'cuda:1') or ``torch.device`` is accepted. The resolved device is stored in
        ``device_``.
    dtype : {'float64', 'float32'}, default='float64'
        Floating-point type of training. float64 is the default because the diagnostics are small numbers
        (smallest eigenvalues, P-L ratios near convergence); float32 is a speed option, mostly on GPUs. The
        kernel diagnostics are computed in float64 on the CPU in every case.
    random_state : int, RandomState instance or None, default=None
        Seeds a local ``torch.Generator`` on the CPU, which draws the random features and the minibatch
        order, and the validation split. The draws happen on the CPU and are then moved to the device, so a
        seed gives the same model on every device. Pass an int for reproducible fits.
    verbose : int, default=0
        0 is silent; 1 prints the iteration, risk, P-L ratio (and validation risk) and elapsed time every
        100 iterations and at the end; 2 or more prints every 20 iterations.
    compile : bool or 'auto', default='auto'
        Run each step's pass over a block of rows (random features, adjoint, gradient) as one compiled graph, a
        package kept on disk (:mod:`skflow.flows._aot`; README, Performance). ``True`` builds a missing one
        first; ``'auto'`` uses it when it is on disk, and otherwise runs eagerly while a background process
        builds it. Where compiling fails, a :class:`~skflow.exceptions.CompileFallbackWarning` and eager steps.
        Results agree to rounding.
    class_weight : dict, 'balanced' or None, default=None
        Weights of the classes, multiplying the rows' ``sample_weight`` (as in ``SVC`` and
        ``LogisticRegression``): a dict ``{label: weight}`` (classes not in it weigh 1), or ``'balanced'``,
        ``n_samples / (n_classes * np.bincount(y))`` (in a data-parallel fit, with the counts of every rank).
    warm_start : bool, default=False
        When True, ``fit`` continues from the previous fit's coefficients ``theta`` (and momentum) and
        appends to its history; otherwise it starts from ``theta = 0`` with new random features. The data's
        number of features and its classes, and the architecture parameters (``n_layers``, ``n_features``,
        ``kernel``, ``length_scale``, ``nu``, ``output_scale``, ``loss``, ``momentum``) must not change, else
        :class:`skflow.IncompatibleWarmStartError` is raised and the previous model is kept.

    Attributes
    ----------
    learning_rate_ : float
        The time step used (``learning_rate``, or the one measured for ``'auto'``).
    classes_ : ndarray of shape (n_classes,)
        Class labels, in the order of the columns of :meth:`predict_proba`.
    theta_ : ndarray of shape (S, d + K, M)
        Trained residual coefficients; ``F_k(z) = theta_[k] @ phi(z)``.
    random_weights_ : ndarray of shape (M, d + K)
        Frequencies ``W`` of the random features (fixed, shared by all layers).
    random_offset_ : ndarray of shape (M,)
        Offsets ``b`` of the random features.
    length_scale_ : float
        Length scale used (resolved from ``'auto'``).
    data_separation_ : float
        ``delta = min_{i != j} |x_i - x_j|`` on the training inputs (Prop. II.4.4); exact up to 20000 points,
        on a fixed subsample of 20000 above (then an upper estimate). 0 means that two inputs coincide; a
        :class:`skflow.DuplicateInputsWarning` is issued when coinciding inputs carry different labels.
    kernel_lambda_min_ : float
        ``lambda_min(Phi Phi^T)``, ``Phi = phi(z(0))``: the width-``M`` kernel matrix at initialisation (all
        layers see ``z(0) = (x, 0)`` when ``theta = 0``) on at most ``kernel_subsample`` training inputs.
        Exactly 0 when ``M`` is below the number of inputs used (rank-deficient; not round-off).
        All three kernel diagnostics are computed in float64 on the CPU.
    exact_kernel_lambda_min_ : float
        ``lambda_min`` of the closed-form kernel matrix on the same inputs (``M -> inf``; the ``lambda_K`` of
        Eq. II.30 evaluated on the data).
    kappa_ : float
        Estimate of ``kappa = ||phi||_{C^2}`` from the bounds of Lemma II.4.1 (see
        :func:`skflow.diagnostics.feature_kappa`).
    theta_norm_ : float
        ``R = ||theta||_{L2([0,1], F)}`` at the end of training: the radius of the ball explored from
        ``theta = 0``.
    pl_bound_ : float
        ``m = c lambda_K(delta e^{-kappa R}) e^{-2 kappa R} / N`` (Prop. II.4.4, Eq. II.29) with ``R =
        theta_norm_``, ``kappa = kappa_``, ``lambda_K`` estimated by the exact kernel on the (subsampled)
        training inputs contracted by ``e^{-kappa R}`` (:func:`skflow.diagnostics.pl_bound`), and ``c`` the
        loss constant: ``2 output_scale^2`` for the squared loss (``|grad_z l|^2 = 2 output_scale^2 l``); for
        cross-entropy ``c = output_scale^2 ((1 - 1/K) / log K)^2`` and the inequality is the thesis's
        ``||grad R||^2 >= m R^2`` (§II.7, valid while every per-sample loss is below ``log K``), a ``1/t``
        rate rather than a linear one.
    required_width_ : int
        ``N^2``: the width Thm. II.6 asks for up to constants (and a ``delta``-dependent factor).
    n_features_used_ : int
        The width ``M`` used, for comparison with ``required_width_``.
    n_iter_ : int
        Number of iterations run (over all fits with ``warm_start``).
    loss_curve_ : ndarray of shape (n_iter_,)
        Training risk ``R`` (Eq. II.24) at the start of each iteration; with minibatches, the epoch average
        of the minibatch values (as for the other curves).
    flow_time_ : ndarray of shape (n_iter_,)
        Flow time ``t`` (the sum of the time steps taken) of each entry of ``loss_curve_``.
    pl_ratio_curve_ : ndarray of shape (n_iter_,)
        ``||grad R||^2_{L2} / R = S sum_k |dR/dtheta_k|^2 / R``.
    pl_constant_ : float
        Minimum of ``pl_ratio_curve_``.
    history_ : dict of ndarray of shape (n_iter_,)
        Every per-iteration record: 'risk', 'pl_ratio', 'theta_norm' (``||theta||_{L2}``), 'flow_time', and
        'val_risk' with ``early_stopping``.
    stop_reason_ : str
        Why training stopped: 'converged' (the ``tol`` rule), 'max_iter', 'diverged', 'interrupted', 'monitor'
        (the ``monitor`` of :meth:`fit` or a scikit-learn callback asked to stop), or 'no_improvement' (the final
        training risk was not below its start: the best of the final, the lowest-epoch-risk and the starting
        parameters were restored, with a ``DivergenceWarning``).
    best_loss_ : float
        Lowest entry of ``loss_curve_``.
    best_validation_risk_ : float
        Validation risk of the restored parameters; only with ``early_stopping``.
    validation_scores_ : ndarray of shape (n_iter_,)
        Validation accuracy after each iteration; only with ``early_stopping``.
    best_validation_score_ : float
        Validation accuracy of the restored parameters (the best one); only with ``early_stopping``.
    max_iter_ : int
        The iteration budget used: ``max_iter``, or the epochs chosen for ``'auto'``.
    epoch_search_ : dict or None
        The search of ``max_iter='auto'`` (None when none ran): ``'n_folds'``, ``'validation_rows'``,
        ``'mean_score'`` (minus the mean held-out risk after each epoch), the chosen ``'epochs'`` and
        ``'probe_epochs'``, the epochs each probe ran before its patience stopped it.
    device_ : torch.device
        Device the model was trained on (``device`` resolved).
    n_ranks_ : int
        Number of ranks of a data-parallel fit (1 for a single process); see :mod:`skflow.distributed`.
    flow_ : skflow.flows.rkhs.RKHSFlow
        The trained engine.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of str
        Names of the features seen during ``fit``, when ``X`` has string column names.

    Notes
    -----
    The diagnostics are computed after training; one that fails is set to NaN with a
    :class:`skflow.DiagnosticWarning`, and the fitted model is unaffected.

    Divergence: a non-finite training risk, or one above ``1e4`` times the risk at the start of the fit,
    stops training and restores the parameters with the lowest training risk (the lowest validation risk with
    ``early_stopping``), with a :class:`skflow.DivergenceWarning`; ``stop_reason_`` is then 'diverged'.

    References
    ----------
    .. [1] R. Barboni, "Training deep neural networks: mathematical models and convergence results"
       ("Entraînement de réseaux de neurones profonds : modèles mathématiques et résultats de convergence"),
       PhD thesis, Université PSL (École Normale Supérieure), 2025. "The thesis" of these docstrings: the
       equation, theorem and section numbers cited (§II.4, Def. II.4, Thm. II.6, ...) are its.
    .. [2] R. Barboni, G. Peyré, F.-X. Vialard, "Understanding the training of infinitely deep and wide ResNets
       with Conditional Optimal Transport", arXiv:2403.12887, 2024 (Communications on Pure and Applied
       Mathematics, 2025).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skflow import RKHSNODEClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = make_pipeline(StandardScaler(), RKHSNODEClassifier(random_state=0, device="cpu")).fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    """

    _parameter_constraints = {
        **BaseFlowClassifier._parameter_constraints,
        "compile": ["boolean", StrOptions({"auto"})],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "n_layers": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_features": [Interval(numbers.Integral, 1, None, closed="left")],
        "kernel": [StrOptions({"gaussian", "matern"})],
        "length_scale": [Interval(numbers.Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "nu": [Interval(numbers.Real, 0, None, closed="neither")],
        "output_scale": [Interval(numbers.Real, 0, None, closed="neither")],
        "loss": [StrOptions(set(LOSSES))],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "momentum": [Interval(numbers.Real, 0, 1, closed="left")],
        "lr_decay": [Interval(numbers.Real, 0, 1, closed="right")],
        "lr_decay_every": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "kernel_subsample": [Interval(numbers.Integral, 2, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
    }

    #: ``max_iter='auto'``: the epochs of the hold-out fit, among which the best one is chosen
    _auto_max_iter = 100

    _reference_learning_rate = 200.0
    _architecture_params = ("n_layers", "n_features", "kernel", "length_scale", "nu", "output_scale", "loss",
                            "alpha", "momentum")
    #: the data separation is exact up to this many training points, on a fixed subsample above (O(N^2 d))
    _separation_max = 20000
    #: the width warning fires (with M < N) only when the final risk is above this fraction of the initial one
    _stall_ratio = 0.1

    def __init__(
        self,
        n_layers=5,
        n_features=256,
        *,
        kernel="gaussian",
        length_scale="auto",
        nu=1.5,
        output_scale=0.3,
        loss="squared",
        alpha=0.0,
        momentum=0.9,
        lr_decay=0.1,
        lr_decay_every=None,
        kernel_subsample=1000,
        learning_rate=200.0,
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
        compile="auto",
        class_weight=None,
        warm_start=False,
    ):
        self.class_weight = class_weight
        self.n_layers = n_layers
        self.n_features = n_features
        self.kernel = kernel
        self.length_scale = length_scale
        self.nu = nu
        self.output_scale = output_scale
        self.loss = loss
        self.alpha = alpha
        self.momentum = momentum
        self.lr_decay = lr_decay
        self.lr_decay_every = lr_decay_every
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

    # ------------------------------------------------------------------ hooks
    def _learning_rate_at(self, iteration):
        """Step decay: ``tau * lr_decay ** (iteration // lr_decay_every)``."""
        if self.lr_decay_every is None:
            return self.learning_rate_
        return self.learning_rate_ * self.lr_decay ** (iteration // self.lr_decay_every)

    def _make_flow(self, ctx):
        d, K = ctx.X.shape[1], ctx.Y.shape[1]
        X, _, _ = ctx.positive_rows()  # the length scale of the rows the fit sees
        dp = ctx.process_group
        if self.length_scale == "auto" and dp is not None:
            # the median of the pairwise distances needs the pairs across the ranks: the (at most 1000) rows of
            # the seeded subsample of the rule are gathered, so that the length scale is a single process's
            rows = ctx.rows_per_rank if ctx.sample_weight is None else dp.rows_per_rank(X.shape[0])
            self.length_scale_ = median_length_scale(dp.gather_subsample(to_numpy(host_rows(X)), 1000, rows))
        elif self.length_scale == "auto":
            # the rule's seeded subsample of 1000 rows, taken first: a sparse X is densified on those rows only
            self.length_scale_ = median_length_scale(host_rows(X, seeded_subsample(X.shape[0], 1000)))
        else:
            self.length_scale_ = float(self.length_scale)
        D = d + K
        W, b = init_random_features(self.n_features, D, self.kernel, self.length_scale_, self.nu,
                                    generator=ctx.generator, dtype=torch.float64)
        theta = torch.zeros(self.n_layers, D, self.n_features, dtype=torch.float64)
        to = dict(device=self.device_, dtype=self._torch_dtype)
        return RKHSFlow(theta.to(**to), W.to(**to), b.to(**to), d_in=d, output_scale=self.output_scale,
                        loss=self.loss, momentum=self.momentum, weight_decay=self.alpha)

    def _compile_setting(self):
        return self.compile

    def _divergence_hint(self):
        return super()._divergence_hint() + f", or a smaller output_scale (now {self.output_scale:g})"

    def _finalize_fit(self, ctx):
        flow = self.flow_
        # data-parallel: N counts the rows of all the ranks; the data diagnostics use this rank's rows (those of
        # positive weight)
        X, Y, w = ctx.positive_rows()
        N, K = ctx.n_rows, Y.shape[1]
        self.theta_, self.random_weights_ = to_numpy(flow.theta), to_numpy(flow.W)
        self.random_offset_ = to_numpy(flow.b)
        self.n_features_used_ = int(self.n_features)
        self.required_width_ = int(N) ** 2
        self.data_separation_ = self._diagnostic("data_separation_", self._separation, X, Y)
        self._warn_if_width_stalled(N)
        idx = seeded_subsample(X.shape[0], self.kernel_subsample, sort=True)
        Xs, ws = rows_of(idx, X, w)
        Xs, ws = Xs.detach().double().cpu(), None if ws is None else ws.detach().double().cpu()
        W0, b0 = flow.W.detach().cpu().double(), flow.b.detach().cpu().double()
        # at theta = 0 every layer sees the lifted inputs z(0) = (x, 0)
        self.kernel_lambda_min_ = self._diagnostic(
            "kernel_lambda_min_", lambda: gram_lambda_min(random_features(lift(Xs, flow.dim), W0, b0), weights=ws))
        self.exact_kernel_lambda_min_ = self._diagnostic(
            "exact_kernel_lambda_min_", exact_kernel_lambda_min, Xs, self.kernel, self.length_scale_, self.nu, ws)
        self.kappa_ = feature_kappa(W0)
        self.theta_norm_ = flow.theta_norm()
        # Prop. II.4.4 divides by the full N; lambda_K on the subsample is an upper estimate of the full one
        self.pl_bound_ = self._diagnostic(
            "pl_bound_", pl_bound, Xs, self.theta_norm_, self.kappa_, N, self.kernel, self.length_scale_, self.nu,
            loss_factor=self._loss_constant(K), weights=ws)

    def _loss_constant(self, K):
        """``c`` of ``|grad_z l|^2 >= c l`` for the loss composed with the output scale (see ``pl_bound_``)."""
        if self.loss == "squared":
            return 2.0 * self.output_scale**2
        return self.output_scale**2 * ((1.0 - 1.0 / K) / math.log(K)) ** 2

    def _separation(self, X, Y):
        """``delta`` on (a subsample of) the training inputs; warns when coinciding inputs carry different labels."""
        idx = seeded_subsample(X.shape[0], self._separation_max, sort=True)
        Xsep = take_rows(X, idx).detach().double()
        delta = data_separation(Xsep)  # on the device: the O(N^2 d) distance pass is the cost here
        # a sparse X: the duplicates are looked for among the subsample's rows (those of delta), not densified whole
        Xdup, Ydup = (Xsep, Y if idx is None else Y[torch.as_tensor(idx, device=Y.device)]) \
            if isinstance(X, SparseRows) else (X, Y)
        if delta == 0.0 and _conflicting_duplicates(to_numpy(Xdup), to_numpy(Ydup)):
            warn(
                f"{type(self).__name__}: some training inputs coincide but carry different labels (data "
                "separation delta = 0). A NODE is a bijection of its inputs, so it can never separate them and "
                "the P-L bound of Prop. II.4.4 is void; remove or relabel them.",
                DuplicateInputsWarning,
            )
        return delta

    def _warn_if_width_stalled(self, N):
        """Below N features the kernel matrix is singular; warn only when training also stalled (see class doc)."""
        risk = self.loss_curve_
        # a fit stopped early on purpose (max_iter='auto') leaves the risk high by design
        stalled = (risk.size == 0 or not risk[-1] < self._stall_ratio * risk[0]) and self.max_iter != "auto"
        if self.n_features < N and stalled:
            first, last = (risk[0], risk[-1]) if risk.size else (float("nan"), float("nan"))
            warn(
                f"{type(self).__name__}: the training risk only fell from {first:.3g} to {last:.3g}, and "
                f"n_features={self.n_features} is below the number of training samples N={N}: the random-feature "
                "kernel matrix Phi Phi^T is singular (kernel_lambda_min_ = 0) and the convergence guarantee of "
                f"Thm. II.6 (M >~ N^2 = {self.required_width_}, up to constants) does not apply. Increase "
                "n_features (or max_iter).",
                SingularKernelWarning,
            )


def _conflicting_duplicates(X, Y):
    """Whether two identical rows of ``X`` have different rows of ``Y``."""
    _, inverse = np.unique(X, axis=0, return_inverse=True)
    pairs = np.unique(np.column_stack([inverse.ravel(), Y]), axis=0)
    return np.unique(pairs[:, 0]).shape[0] < pairs.shape[0]
