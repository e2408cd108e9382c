"""MeanFieldNODERegressor: an infinitely deep and wide ResNet trained by its Conditional-Wasserstein flow."""

import copy
import numbers

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._arrays import rows_of, seeded_subsample, to_numpy
from ._base import BaseFlowEstimator
from ._certificate import node_certificate
from ._context import FitContext
from ._device import seed_generator
from ._rows import SparseRows, as_fit_tensor, host_rows
from ._targets import BaseFlowRegressor
from .diagnostics import conditional_wasserstein, convergence_report, kernel_lambda_min, lambda_min
from .diagnostics.bandwidth import (
    DEFAULT_LENGTH_GRID,
    kernel_from_sq_distances,
    median_length_scale,
    select_length_scale,
)
from .exceptions import warn
from .flows._ops import ACTIVATIONS, lift
from .flows.node import MeanFieldSHLFlow, init_particles

__all__ = ["MeanFieldNODERegressor"]


class MeanFieldNODERegressor(BaseFlowRegressor):
    """Mean-field Neural ODE regressor with single-hidden-layer residuals.

    The model is the NODE ``dz/ds = F_{mu(.|s)}(z)`` on ``[0, 1]``, discretised in ``S`` layers, whose residual
    at layer ``k`` is the mean-field perceptron ``F_k(z) = (1/M) sum_i u_{k,i} sigma(w_{k,i} . z + b_{k,i})``
    (thesis Eq. II.35). Inputs are lifted to ``z(0) = (x, 0)`` and the prediction is
    ``output_scale * z(1)[d:]`` (lifting and scaling, §II.6). Training is the explicit Euler scheme of the
    gradient flow of the risk for the conditional optimal-transport metric (Def. I.3): every particle moves
    with velocity ``-grad R[mu](s_k, theta_{k,i})``, computed with the adjoint (Eq. 55).

    Parameters
    ----------
    n_layers : int, default=8
        Depth ``S``: number of layers (time steps of the NODE, ``h = 1/S``).
    width : int, default=128
        Width ``M``: particles (hidden units) per layer. Risk curves against flow time do not depend on ``M``
        (the mean-field limit), so the default is the smallest width at which test scores stopped changing
        across datasets; a fit costs ``O(N M S)`` per step.
    activation : {'cos', 'tanh', 'silu', 'gelu', 'relu'}, default='cos'
        ``sigma``. 'cos' is the worked example of Cor. II.5.1 (its kernel is Gaussian or Matern). 'relu' is
        outside the theory (Rem. II.5.1) and warns.
    feature_init : {'gaussian', 'student'}, default='gaussian'
        Law of the inner weights at initialisation: ``N(0, rho^2 I)``, or ``rho`` times a multivariate
        Student-t with ``2 nu`` degrees of freedom (heavy tails, a Matern kernel).
    feature_scale : float or 'auto', default=0.25
        ``rho``. With ``sigma = cos`` the initial kernel is ``exp(-rho^2 |x - y|^2 / 2) / 2``, a Gaussian of
        length scale ``1 / rho`` (Cor. II.5.1). On standardised inputs ``0.25`` gives a smooth kernel (length
        scale 4), which generalises better on smooth targets than the sharper kernels of larger ``rho``.
        ``'auto'``: chosen before a single step by the exact leave-one-out error of kernel ridge regression with
        the closed-form limit kernel (Gaussian or Matern, by ``feature_init``), over length scales ``1 / rho``
        from ``2^-1.5`` to ``2^1.5`` times the median pairwise distance and a grid of ridge strengths, on at most
        1000 training rows (:func:`skflow.diagnostics.bandwidth.select_length_scale`; ``../SPEC.md`` §5). The
        value used is ``feature_scale_`` and the search ``bandwidth_search_``.
    nu : float, default=1.5
        Smoothness of the Matern kernel of ``feature_init='student'``.
    output_scale : float or 'certify', default=4.0
        Output scale of the lifting-and-scaling construction (§II.6): predictions are
        ``output_scale * z(1)[d:]``. 'certify' picks, at ``fit``, the smallest ``2^k`` (``k = 0..40``) for
        which the sufficient local P-L condition ``R(mu_0) < m r^2 / 4`` of Thm. II.7 (Eq. II.10) holds on the
        training data and the initialisation (see :func:`skflow.inspection.certify`), and raises ``ValueError``
        if none does; a float ``learning_rate`` is then replaced by ``min(lr, 16 lr / output_scale_^2)``. The P-L
        ratio at initialisation grows as ``output_scale^2``
        (Prop. II.6.1; see ``examples/node_lifting_scaling.py``); the flow is stiffer too, so for
        ``output_scale >= 4`` the ``learning_rate`` should shrink roughly as ``1 / output_scale^2``
        (``0.1 * 16 / output_scale^2``). For a smaller ``output_scale`` the particles travel further and the
        P-L ratio grows along the run, so that rule over-shoots: keep ``learning_rate <= 0.1`` there.
    solver : {'euler', 'midpoint', 'rk4'}, default='euler'
        Integrator of the forward flow. Euler is exactly a ResNet with ``1/S`` branch scaling.
    extra_dims : int, default=0
        Extra zero coordinates in the lifted state (``D = d + d' + extra_dims``).
    train_features : bool, default=True
        False freezes ``w`` and ``b``: residuals in a fixed random-feature space.
    scale_targets : bool, default=True
        Standardise ``y`` (per output) before training; predictions are mapped back. The risk, its curve
        and the diagnostics refer to the standardised targets. Inputs are not scaled: put a
        ``StandardScaler`` in front.
    kernel_subsample : int, default=1000
        The kernel diagnostics use at most this many training points (the first ones after a seeded
        shuffle). ``lambda_min`` of a principal submatrix is at least that of the full matrix.
    learning_rate : float or 'auto', default=0.1
        Time step ``tau`` of the flow, in mean-field units: particles move by ``tau`` times their velocity,
        so ``tau`` need not be retuned when ``M`` or ``S`` change. Flow time is ``tau * iteration``. A float
        is in the units of the ``cos`` flow: for another activation the step taken is ``learning_rate`` times
        ``activation_step_factor_``, the square root of the ratio of the initial kernel's scale under ``cos`` to
        its scale under the activation (``max(E sigma^2, E sigma'^2)`` over the initial pre-activations), so that
        the default is stable for every activation (``silu`` / ``gelu``, whose values grow with the bias
        ``b ~ U[0, pi]``, take a step about 2.6x smaller).
        ``'auto'``: half the largest time step whose first explicit steps keep decreasing the risk on the training
        data (a safeguarded line search around the default, on a copy of the model); the value used is
        ``learning_rate_``.
    max_iter : int, default=2000
        Maximum number of iterations: steps of the flow in full batch, epochs (passes over the training
        data) with ``batch_size`` set. Reaching it before the ``tol`` rule triggers gives a
        ``ConvergenceWarning``.
    tol : float, default=1e-4
        Relative decrease of the monitored risk (the training risk, or the validation risk with
        ``early_stopping``) below which an iteration counts as "no change". ``tol=0`` disables the rule.
    n_iter_no_change : int, default=50
        Training stops after this many consecutive iterations without a relative decrease of at least
        ``tol`` of the monitored risk.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the training data, stop once its risk has not improved for
        ``n_iter_no_change`` iterations and restore the parameters with the best validation risk. The flow
        drives the *training* risk to zero (that is the theorem, Thm. II.7), so on noisy targets it
        eventually fits the noise; early stopping ends the run before it does. Set False to follow the
        training flow for ``max_iter`` steps (the convergence experiments do).
    validation_fraction : float, default=0.2
        Fraction of the training data held out as validation set (at least one sample) for
        ``early_stopping``; unused otherwise. The split is seeded by ``random_state``. A fifth: a smaller
        hold-out makes the stopping point noisy on small data sets.
    batch_size : int or None, default=None
        None is the full-batch gradient flow (the explicit Euler scheme of the theory); an integer runs
        minibatch steps over shuffled batches of that size, one epoch per iteration.
    device : str or torch.device, default='auto'
        Where training runs: 'auto' picks CUDA when available and the CPU otherwise; any torch device
        string ('cpu', 'cuda', 'cuda:1') or ``torch.device`` is accepted. The resolved device is stored in
        ``device_``.
    dtype : {'float64', 'float32'}, default='float64'
        Floating-point type of training. float64 is the default because the diagnostics are small numbers
        (smallest eigenvalues, P-L ratios near convergence); float32 is a speed option, mostly on GPUs. The
        kernel diagnostics are computed in float64 on the CPU in every case.
    random_state : int, RandomState instance or None, default=None
        Seeds a local ``torch.Generator`` on the CPU, which draws the initial particles and the minibatch
        order, and the validation split. The draws happen on the CPU and are then moved to the device, so a
        seed gives the same model on every device. Pass an int for reproducible fits.
    verbose : int, default=0
        0 is silent; 1 prints the iteration, risk, P-L ratio (and validation risk) and elapsed time every
        100 iterations and at the end; 2 or more prints every 20 iterations.
    compile : bool or 'auto', default='auto'
        Run each step's pass over a block of rows as one compiled graph, a package kept on disk
        (:mod:`skflow.flows._aot`; README, Performance). ``True`` builds a missing one first (20-40 s, once).
        ``'auto'`` runs compiled when the package is on disk, else eagerly while a background process builds it,
        switching to it when it lands (a fit beyond :data:`~skflow.flows._fused.AUTO_COMPILE_WORK` builds it
        first). No compiler: eager, with a :class:`~skflow.exceptions.CompileFallbackWarning`. Same results to
        float rounding.
    warm_start : bool, default=False
        When True, ``fit`` continues the flow from the previous fit's particles and appends to its history
        (the target scaling of the first fit is kept); otherwise it starts from a fresh initialisation. The
        data's number of features and of outputs, and the architecture parameters (``n_layers``, ``width``,
        ``extra_dims``, ``activation``, ``solver``, ``output_scale``, ``train_features``) must not change,
        else :class:`skflow.IncompatibleWarmStartError` is raised and the previous model is kept.

    Attributes
    ----------
    output_scale_ : float
        The output scale used (``output_scale``, or the certified one).
    certificate_ : skflow.inspection.ConvergenceCertificate or None
        With ``output_scale='certify'``, the certificate computed before training (also in
        ``convergence_report_['certificate']``); None otherwise.
    learning_rate_ : float
        The time step used (``learning_rate`` times ``activation_step_factor_``, or the one measured for
        ``'auto'``).
    activation_step_factor_ : float
        The factor of a float ``learning_rate`` for the activation (1 for ``cos``; see ``learning_rate``).
    feature_scale_ : float
        The ``rho`` used (``feature_scale``, or the one chosen for ``'auto'``).
    bandwidth_search_ : dict or None
        For ``feature_scale='auto'``: the candidate ``feature_scales``, their ``loo_errors`` (one row per
        candidate, one column per ridge strength), the chosen ``feature_scale`` and ``ridge_alpha``; else None.
    n_iter_ : int
        Number of iterations run (over all fits with ``warm_start``).
    loss_curve_ : ndarray (n_iter_,)
        Training risk ``R(mu_t) = (1/2N) sum |y_hat - y|^2`` at the start of each iteration.
    flow_time_ : ndarray (n_iter_,)
        Flow time ``t`` of each entry of ``loss_curve_``.
    pl_ratio_curve_ : ndarray (n_iter_,)
        ``||grad R[mu_t]||^2_{L2(mu_t)} / R(mu_t)``.
    pl_constant_ : float
        Minimum of ``pl_ratio_curve_``: along the trajectory, ``R(t) <= R(0) exp(-m t)``.
    history_ : dict of ndarray (n_iter_,)
        Every per-iteration record: 'risk', 'pl_ratio', 'cot_displacement', 'flow_time', and 'val_risk'
        with ``early_stopping``.
    stop_reason_ : str
        Why training stopped: 'converged' (the ``tol`` rule), 'max_iter', 'diverged', 'interrupted', 'monitor'
        (the ``monitor`` of :meth:`fit` or a scikit-learn callback asked to stop), or 'no_improvement': the final
        training risk (on every training row) was not below its starting value, so the best of the final, the
        lowest-epoch-risk and the starting parameters were restored, with a
        :class:`~skflow.exceptions.DivergenceWarning` naming the fix.
    best_loss_ : float
        Lowest entry of ``loss_curve_``.
    best_validation_risk_ : float
        Lowest validation risk; only with ``early_stopping``.
    kernel_lambda_min_ : float
        ``lambda_0 = (1/S) sum_k lambda_min(K1_k)`` at initialisation (Thm. II.7), on the
        ``kernel_n_samples_`` points. Exactly 0 when ``M`` is
        below the number of points, by construction and without a warning (``convergence_report_['kernel_note']``
        says so) (``K1_k = Phi_k Phi_k^T / M`` has rank ``<= M``, Eq. II.38). The matrices
        themselves are returned by :meth:`feature_kernel_matrices`.
    layer_kernel_lambda_min_ : ndarray (n_layers,)
        ``lambda_min(K1_k)`` of each layer at initialisation; ``kernel_lambda_min_`` is their mean.
    kernel_n_samples_ : int
        Number of training points the kernel diagnostics were computed on: ``min(N, kernel_subsample)``
        (``N`` without the validation set), a fixed subsample that depends on ``N`` only.
    exact_kernel_lambda_min_ : float
        The same for the infinite-width kernel (``M -> infinity``, closed form of Cor. II.5.1; cos activation
        only, NaN else).
    cot_distance_ : float
        ``W2_COT`` (Def. I.2) between the final and the initial particles: exact up to 2048 particles per
        layer, estimated on a seeded subsample of 2048 particles per layer above (see ``cot_method_``).
    cot_method_ : str
        How ``cot_distance_`` was computed: 'exact' or 'subsample(k)' (``k`` particles per layer).
    cot_displacement_curve_ : ndarray (n_iter_,)
        RMS particle displacement from the initialisation, an upper bound of ``W2_COT(mu_t, mu_0)``.
    convergence_report_ : skflow.diagnostics.ConvergenceReport
        A dict, see :func:`skflow.diagnostics.convergence_report`; its 'cot_method' entry is ``cot_method_``.
        With ``output_scale='certify'`` it also holds 'certificate', 'predicted_rate' and 'rate_at_least_predicted'.
        ``print`` shows it as a short table.
    U_, W_ : ndarray (S, M, D)
        Trained particles: outer weights ``u_{k,i}`` and inner weights ``w_{k,i}``.
    b_ : ndarray (S, M)
        Trained biases ``b_{k,i}``.
    W_init_ : ndarray (S, M, D)
        Inner weights at initialisation (the initial outer weights are 0).
    b_init_ : ndarray (S, M)
        Biases at initialisation.
    y_mean_, y_scale_ : ndarray (n_outputs,)
        Target scaling (zeros and ones when ``scale_targets=False``).
    device_ : torch.device
        Device the model was trained on (``device`` resolved).
    n_ranks_ : int
        Number of ranks of a data-parallel fit (1 for a single process); see :mod:`skflow.distributed`.
    flow_ : skflow.flows.node.MeanFieldSHLFlow
        The trained engine.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of str
        Names of the features seen during ``fit``, when ``X`` has string column names.

    Notes
    -----
    The diagnostics are computed after training; one that fails is set to NaN (``cot_method_``: 'failed')
    with a :class:`skflow.DiagnosticWarning`, and the fitted model is unaffected.

    Divergence: a non-finite training risk, or one above ``1e4`` times the risk at the start of the fit,
    stops training and restores the parameters with the lowest training risk (the lowest validation risk with
    ``early_stopping``), with a :class:`skflow.DivergenceWarning`; ``stop_reason_`` is then 'diverged'.

    References
    ----------
    .. [1] R. Barboni, "Training deep neural networks: mathematical models and convergence results"
       ("Entraînement de réseaux de neurones profonds : modèles mathématiques et résultats de convergence"),
       PhD thesis, Université PSL (École Normale Supérieure), 2025. "The thesis" of these docstrings: the
       equation, theorem and section numbers cited (Eq. II.35, Thm. II.7, Prop. II.6.1, ...) are its.
    .. [2] R. Barboni, G. Peyré, F.-X. Vialard, "Understanding the training of infinitely deep and wide ResNets
       with Conditional Optimal Transport", arXiv:2403.12887, 2024 (Communications on Pure and Applied
       Mathematics, 2025).

    Examples
    --------
    >>> from sklearn.datasets import make_friedman1
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn.pipeline import make_pipeline
    >>> from skflow import MeanFieldNODERegressor
    >>> X, y = make_friedman1(n_samples=200, noise=0.5, random_state=0)
    >>> model = make_pipeline(StandardScaler(), MeanFieldNODERegressor(max_iter=50, random_state=0))
    >>> model.fit(X, y).score(X, y) > 0.5
    True
    """

    _parameter_constraints = {
        **BaseFlowEstimator._parameter_constraints,
        "compile": ["boolean", StrOptions({"auto"})],
        "n_layers": [Interval(numbers.Integral, 1, None, closed="left")],
        "width": [Interval(numbers.Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "feature_init": [StrOptions({"gaussian", "student"})],
        "feature_scale": [Interval(numbers.Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "nu": [Interval(numbers.Real, 0, None, closed="neither")],
        "output_scale": [Interval(numbers.Real, 0, None, closed="neither"), StrOptions({"certify"})],
        "solver": [StrOptions({"euler", "midpoint", "rk4"})],
        "extra_dims": [Interval(numbers.Integral, 0, None, closed="left")],
        "train_features": ["boolean"],
        "scale_targets": ["boolean"],
        "kernel_subsample": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    _architecture_params = ("n_layers", "width", "extra_dims", "activation", "solver", "output_scale",
                            "train_features")
    #: the exact W2_COT (O(M^2) memory, O(M^3) time per layer) above this width is estimated on a subsample
    _cot_max_particles = 2048

    def __init__(
        self,
        n_layers=8,
        width=128,
        *,
        activation="cos",
        feature_init="gaussian",
        feature_scale=0.25,
        nu=1.5,
        output_scale=4.0,
        solver="euler",
        extra_dims=0,
        train_features=True,
        scale_targets=True,
        kernel_subsample=1000,
        learning_rate=0.1,
        max_iter=2000,
        tol=1e-4,
        n_iter_no_change=50,
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
        self.n_layers = n_layers
        self.width = width
        self.activation = activation
        self.feature_init = feature_init
        self.feature_scale = feature_scale
        self.nu = nu
        self.output_scale = output_scale
        self.solver = solver
        self.extra_dims = extra_dims
        self.train_features = train_features
        self.scale_targets = scale_targets
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
    @property
    def _sparse_rows_ok(self):
        """The Euler engine reads ``X`` by blocks of rows; the midpoint and RK4 integrators differentiate through
        the whole batch (a sparse ``X`` is then densified on the device, as their states are dense anyway)."""
        return self.solver == "euler"

    def _make_flow(self, ctx):
        if self.activation == "relu":
            warn(
                "activation='relu' is outside the theory (thesis Rem. II.5.1): the gradient flow need not be "
                "unique and the convergence diagnostics carry no guarantee. Prefer 'cos', 'tanh' or 'silu'.",
                UserWarning,
            )
        d, dout = ctx.X.shape[1], ctx.Y.shape[1]
        D = d + dout + self.extra_dims
        X, Y, _ = ctx.positive_rows()  # the limit kernel's choices see the rows the fit sees
        self.feature_scale_ = self._resolve_feature_scale(X, Y, ctx)
        U, W, b = self._initial_particles(D, ctx.generator)
        self._certify(X, Y, W, b, ctx)
        to = dict(device=self.device_, dtype=self._torch_dtype)
        return MeanFieldSHLFlow(
            U.to(**to), W.to(**to), b.to(**to), d, dout,
            activation=self.activation, output_scale=self.output_scale_, solver=self.solver,
            train_features=self.train_features,
        )

    #: ``feature_scale='auto'``: the leave-one-out search uses at most this many training rows
    _bandwidth_rows = 1000

    def _resolve_feature_scale(self, X, Y, ctx):
        """``feature_scale_``: the given ``rho``, or for ``'auto'`` the one of least exact leave-one-out error of
        kernel ridge with the closed-form limit kernel (``../SPEC.md`` §5), over length scales ``1 / rho`` that are
        multiples :data:`~skflow.diagnostics.bandwidth.DEFAULT_LENGTH_GRID` of the median pairwise distance; the
        search is recorded in ``bandwidth_search_``."""
        self.bandwidth_search_ = None
        if self.feature_scale != "auto":
            return float(self.feature_scale)

        dp = ctx.process_group
        # a single process: the seeded subsample of the search's rules (median_length_scale and select_length_scale
        # draw the same 1000 rows), taken first, so that only those rows of a sparse X are densified and only
        # those of a device X go to the host
        idx = seeded_subsample(X.shape[0], self._bandwidth_rows) if dp is None else None
        Xc, Yc = host_rows(X, idx), Y.detach().double().cpu()
        if idx is not None:
            Yc = Yc[torch.as_tensor(idx)]
        if dp is not None:  # the rows of the seeded subsample of every rank, as one process would draw them
            both = dp.gather_subsample(to_numpy(torch.cat([Xc, Yc], dim=1)), self._bandwidth_rows,
                                       dp.rows_per_rank(Xc.shape[0]) if ctx.sample_weight is not None
                                       else ctx.rows_per_rank)
            Xc, Yc = torch.as_tensor(both[:, : X.shape[1]]), torch.as_tensor(both[:, X.shape[1]:])
        median = median_length_scale(to_numpy(Xc))
        scales = [median * f for f in DEFAULT_LENGTH_GRID]
        kind = "gaussian" if self.feature_init == "gaussian" else "matern"
        ls, alpha, table = select_length_scale(
            Xc, Yc, lambda D2, scale: kernel_from_sq_distances(D2, scale, kind, self.nu, amplitude=0.5), scales,
            max_samples=self._bandwidth_rows)
        self.bandwidth_search_ = {"feature_scales": 1.0 / np.asarray(scales), "loo_errors": table,
                                  "feature_scale": 1.0 / ls, "ridge_alpha": alpha}
        return 1.0 / ls

    def _certify(self, X, Y, W, b, ctx):
        """``output_scale_`` and, for ``output_scale='certify'``, ``certificate_`` (Thm. II.7, Prop. II.6.1).

        The certificate is computed on the training data and the initial particles the flow starts from.
        """
        self.certificate_ = None
        if self.output_scale != "certify":
            self.output_scale_ = float(self.output_scale)
            return
        if ctx.process_group is not None:
            raise ValueError(
                "output_scale='certify' is not available in a data-parallel fit: the certificate needs the kernel "
                "matrix of the training rows. Certify on one process (skflow.inspection.certify) on a subsample "
                "and pass the certified output scale as a float.")
        # a sparse X of more rows than the kernel subsample stays sparse (the certificate reads it by rows)
        sparse_rows = isinstance(X, SparseRows) and X.shape[0] > self.kernel_subsample
        Xc = X.to("cpu", torch.float64) if sparse_rows else host_rows(X)
        Yc = Y.detach().double().cpu()
        self.certificate_ = node_certificate(Xc, Yc, W, b, output_scale="certify", **self._certificate_parameters())
        self.output_scale_ = self.certificate_["output_scale"]

    # ------------------------------------------------------------------ the initialisation, for the certificate
    def _initial_particles(self, D, generator):
        """The initial particles ``(U = 0, W, b)`` of a lifted dimension ``D``, drawn with ``generator`` in float64
        on the CPU whatever the dtype (so that a seed gives the same initialisation in float32)."""
        return init_particles(self.n_layers, self.width, D, self.feature_init, self.feature_scale_, self.nu,
                              generator=generator, dtype=torch.float64)

    def _certificate_parameters(self):
        """The parameters of :func:`skflow._certificate.node_certificate` that this estimator fixes."""
        return dict(activation=self.activation, feature_init=self.feature_init, feature_scale=self.feature_scale_,
                    nu=self.nu, train_features=self.train_features, kernel_subsample=self.kernel_subsample)

    def _initial_state(self, X, y):
        """The hook of :func:`skflow.inspection.certify`: what ``fit(X, y)`` would start from.

        The inputs and targets as ``fit`` validates and scales them (float64 tensors on the CPU), the initial
        particles it draws with this ``random_state`` (exactly those of ``fit`` for an int ``random_state`` and
        ``early_stopping=False``) and the parameters of the certificate: the keyword arguments of
        :func:`skflow._certificate.node_certificate`. Neither ``self`` nor its ``random_state`` is changed.
        """
        work = clone(self).set_params(warm_start=False)
        Xv, yv = work._validate_fit_data(X, y)
        Y = torch.as_tensor(work._prepare_targets(yv, FitContext()), dtype=torch.float64)
        Xt = as_fit_tensor(Xv, torch.float64, "cpu", dense=True)
        D = Xt.shape[1] + Y.shape[1] + self.extra_dims
        work.feature_scale_ = work._resolve_feature_scale(Xt, Y, FitContext())
        _, W, b = work._initial_particles(D, seed_generator(copy.deepcopy(self.random_state)))
        return dict(X=Xt, Y=Y, W=W, b=b, output_scale=self.output_scale, **work._certificate_parameters())

    @property
    def _reference_learning_rate(self):
        """Centre of the 'auto' search: 0.1, times ``min(1, 16 / output_scale_^2)`` for a certified scale."""
        if self.output_scale == "certify" and hasattr(self, "output_scale_"):
            return 0.1 * min(1.0, 16.0 / self.output_scale_**2)
        return 0.1

    def _resolve_learning_rate(self, flow, ctx):
        """As the base class; a float ``learning_rate`` is in the units of the ``cos`` flow: it is multiplied by
        :meth:`_activation_step_factor` (1 for ``cos``), and with ``output_scale='certify'`` it becomes
        ``min(lr, 16 lr / output_scale_^2)``: the flow stiffens like ``output_scale^2`` (Prop. II.6.1)."""
        lr = super()._resolve_learning_rate(flow, ctx)
        if self.learning_rate != "auto":
            self.activation_step_factor_ = self._activation_step_factor(flow, ctx.X, ctx.sample_weight)
            lr *= self.activation_step_factor_
        if self.output_scale == "certify" and self.learning_rate != "auto":
            lr = min(lr, lr * 16.0 / self.output_scale_**2)
        return lr

    #: rows of the training data on which the activation's step factor is measured (a fixed subsample)
    _step_factor_rows = 1000

    def _activation_step_factor(self, flow, X, sample_weight=None):
        """``sqrt(kappa_cos / kappa_sigma)`` at initialisation, with ``kappa = max(E sigma(a)^2, E sigma'(a)^2)`` over
        the pre-activations ``a = w . z(0) + b`` of every particle on (a fixed subsample of) the training rows.

        The stiffness of the flow at initialisation is that of its tangent kernel, whose scale is ``E sigma^2``
        (the ``u``-directions) and ``E sigma'^2`` (the features' directions): at most 1/2 for ``cos``, but about
        7 times that for ``silu`` / ``gelu`` / ``relu``, which grow with ``b ~ U[0, pi]``. The step is divided by
        the square root of that ratio: the full ratio was more cautious than needed (measured on diabetes and
        friedman1, 3 splits: ``silu`` and ``gelu`` diverge at the ``cos`` step, converge without a warning at 0.35
        of it, and reach ``max_iter`` at the full ratio, 0.15 of it), and the square root keeps a margin of
        about 2.5 below the diverging step. It is exactly 1 for ``cos``.
        """
        if self.activation == "cos":
            return 1.0
        idx = seeded_subsample(X.shape[0], self._step_factor_rows)
        take = None if idx is None else torch.as_tensor(idx, device=X.device)
        Xs = (X if take is None else X[take]).detach().double()
        # with sample weights, the means over rows are weighted means
        w = None if sample_weight is None else (sample_weight if take is None else sample_weight[take]).double()
        Z = lift(Xs, flow.dim)
        with torch.no_grad():
            A = torch.einsum("nd,kmd->knm", Z, flow.W.detach().double()) + flow.b.detach().double()[:, None, :]

            def mean(T):
                return T.mean() if w is None else (T.mean(dim=(0, 2)) * w).sum() / w.sum()

            def kappa(name):
                v, dv = ACTIVATIONS[name](A.clone())
                return max(float(mean(v * v)), float(mean(dv * dv)))

            mine = kappa(self.activation)
            return float(np.sqrt(kappa("cos") / mine)) if mine > 0 and np.isfinite(mine) else 1.0

    def _divergence_hint(self):
        hint = f" (now {self.learning_rate_:g}; learning_rate='auto' measures a stable one)"
        return hint + f", or a smaller output_scale (now {getattr(self, 'output_scale_', self.output_scale)})"

    def _compile_setting(self):
        return self.compile

    def _finalize_fit(self, ctx):
        flow = self.flow_
        X, _, w = ctx.positive_rows()
        self.U_, self.W_, self.b_ = to_numpy(flow.U), to_numpy(flow.W), to_numpy(flow.b)
        self.W_init_, self.b_init_ = to_numpy(flow.W0), to_numpy(flow.b0)
        self.cot_displacement_curve_ = self.history_.get("cot_displacement", np.zeros(0))
        self.cot_distance_, self.cot_method_ = self._diagnostic(
            "cot_distance_", conditional_wasserstein, flow.particles(), flow.initial_particles(),
            max_particles=self._cot_max_particles, return_method=True, default=(float("nan"), "failed"))
        Xs, ws = self._kernel_inputs(X, w)
        self.kernel_n_samples_ = Xs.shape[0]
        self.layer_kernel_lambda_min_ = self._diagnostic(
            "kernel_lambda_min_", self._layer_lambda_min, flow, Xs, ws, default=np.full(self.n_layers, np.nan))
        self.kernel_lambda_min_ = float(self.layer_kernel_lambda_min_.mean())
        self.exact_kernel_lambda_min_ = float("nan")
        if self.activation == "cos":
            # at initialisation u = 0, so the flow is the identity and every layer sees z(0) = (x, 0)
            self.exact_kernel_lambda_min_ = self._diagnostic(
                "exact_kernel_lambda_min_", kernel_lambda_min, lift(Xs, flow.dim), self.feature_init,
                self.feature_scale_, self.nu, ws)
        self.convergence_report_ = convergence_report(
            self.loss_curve_, self.flow_time_, self.pl_ratio_curve_, self.kernel_lambda_min_,
            n_samples=ctx.n_rows, output_scale=self.output_scale_,
            distance=self.cot_distance_,
            displacement_curve=self.cot_displacement_curve_,
            predicted_rate=None if self.certificate_ is None else self.certificate_["predicted_rate"],
        )
        if self.certificate_ is not None:
            self.convergence_report_["certificate"] = self.certificate_
        self.convergence_report_["cot_method"] = self.cot_method_
        if self.width < self.kernel_n_samples_:
            self.convergence_report_["kernel_note"] = (
                f"width M={self.width} is below the {self.kernel_n_samples_} points of the kernel diagnostic, so "
                "the finite-width kernel K1 = Phi Phi^T / M is singular by construction (rank <= M): "
                "kernel_lambda_min_ is 0 and the linear rate of Thm. II.7 is not guaranteed from the kernel alone "
                "(the fit may still converge; pl_constant_ measures it). Use width >= N, or kernel_subsample <= "
                "width, for a positive lambda_0; exact_kernel_lambda_min_ is the infinite-width value.")

    def feature_kernel_matrices(self, X, initial=True):
        """Finite-width kernel matrices ``K1_k = Phi_k Phi_k^T / M`` of every layer on the inputs ``X`` (Eq. II.38).

        ``Phi_k = sigma(z(s_k) W_k^T + b_k)`` on the states the inputs reach at layer ``k``. At initialisation
        (``initial=True``) ``u = 0``, so every layer sees the lifted inputs ``z(0) = (x, 0)`` and the average of
        the ``K1_k`` tends to the closed-form kernel :func:`skflow.diagnostics.shl_limit_kernel` as ``M`` grows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs, scaled as for :meth:`fit`.
        initial : bool, default=True
            The particles at initialisation (True) or after training (False).

        Returns
        -------
        ndarray of shape (n_layers, n_samples, n_samples)
            In float64.
        """
        check_is_fitted(self, "flow_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        with torch.no_grad():
            Ks = self.flow_.to("cpu", torch.float64).feature_kernels(torch.as_tensor(X), initial=initial)
        return to_numpy(Ks)

    def _kernel_inputs(self, X, w=None):
        """The (at most ``kernel_subsample``) training inputs of the kernel diagnostics and their weights (or None),
        in float64 on the CPU."""
        Xs, ws = rows_of(seeded_subsample(X.shape[0], self.kernel_subsample), X, w)
        return Xs.detach().double().cpu(), None if ws is None else ws.detach().double().cpu()

    def _layer_lambda_min(self, flow, Xs, ws=None):
        """``lambda_min(K1_k)`` of every layer at initialisation, exactly 0 when ``M`` is below the points."""
        if self.width < Xs.shape[0]:
            # rank(Phi Phi^T / M) <= M < n: lambda_min is exactly 0, not round-off (Eq. II.38). This is the
            # usual case (M < N) and not a fault: convergence_report_['kernel_note'] explains it, no warning
            return np.zeros(self.n_layers)
        with torch.no_grad():
            Ks = flow.to("cpu", torch.float64).feature_kernels(Xs, initial=True)
        return np.array([lambda_min(K, ws) for K in Ks])
