"""Shared scikit-learn plumbing for every skflow estimator.

The estimators differ only in their engine (:mod:`skflow.flows`) and in how targets are encoded; everything
else -- validation, device and dtype, seeding, the fit transaction, warm start, memory checks, chunked
prediction and pickling across devices -- lives here, once. The fit loop itself is in :mod:`skflow._training`.

``fit`` is a transaction: the new model is built on a shallow copy of the estimator and committed in one step at
the end, so that whatever is raised before the commit leaves the previous fitted state exactly as it was.

A subclass implements four hooks, each given the fit's :class:`~skflow._context.FitContext` (process group,
device, dtype, seeded generator, the training and held-out tensors, the sample weights), so that everything a
hook reads is in its signature:

``_encode_targets(y, ctx, sample_weight) -> ndarray (n, n_outputs)``
    encode validated targets (regressors: numeric check and optional scaling, with weighted moments;
    classifiers: label encoding).
``_make_flow(ctx) -> Flow``
    build the engine at initialisation on ``ctx.X``, ``ctx.Y`` (already on ``ctx.device`` in ``ctx.dtype``).
    ``ctx.generator`` is a seeded CPU ``torch.Generator``: draw on the CPU, then move to the device, so that a
    seed gives the same model on every device.
``_finalize_fit(ctx)``
    set the estimator-specific fitted attributes from ``self.flow_`` and ``self.history_``, computing each
    diagnostic through :meth:`_diagnostic` so that a failing one never breaks the fit.
``_decode_output(out) -> ndarray``
    map the engine's raw output (float64 NumPy) to predictions.

and lists in ``_architecture_params`` the parameters a warm start cannot change. Two more hooks have defaults:
``_compile_setting()`` (the estimator's ``compile`` parameter where it has one; False) and ``_divergence_hint()``
(the advice of a divergence warning).
"""

import math
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_y, check_consistent_length, check_is_fitted, validate_data

# the device, dtype and memory helpers live in skflow._device; re-exported under the names this module used
from . import _device, _rows, distributed
from ._context import FitContext
from ._device import available_memory, resolve_device, resolve_dtype
from ._device import check_device_string as _check_device_string
from ._device import check_magnitude as _check_magnitude
from ._device import seed_generator as _seed_generator
from ._device import translated_memory_errors as _translated_memory_errors
from ._epochs import EpochSearchMixin
from ._training import TrainConfig, epoch_batches, n_batches, normalise_weights, stable_time_step, train, warn_stop
from ._weights import SampleWeightMixin
from .exceptions import DiagnosticWarning, FitInterruptedWarning, IncompatibleWarmStartError, warn
from .flows._fused import decide_compile

__all__ = ["BaseFlowEstimator", "available_memory", "resolve_device",
           "resolve_dtype"]

#: bytes that the activations of one prediction chunk may take
PREDICT_MEMORY_BUDGET = 256 * 2**20


try:  # scikit-learn >= 1.9: the (experimental) callback protocol, e.g. sklearn.callback.ProgressBar
    from sklearn.callback import CallbackSupportMixin as _CallbackSupport
    from sklearn.callback._callback_support import callback_management_context as _callback_management
except ImportError:  # pragma: no cover - older scikit-learn
    _CallbackSupport = object
    _callback_management = None


class BaseFlowEstimator(EpochSearchMixin, SampleWeightMixin, _CallbackSupport, BaseEstimator):
    """Base class: the fit loop of an explicit gradient flow, with its history and safeguards.

    Common parameters (every subclass lists them in its own ``__init__``):

    learning_rate : float
        The flow's time step ``tau`` (in the units of the estimator's flow, see its docstring).
    max_iter : int
        Maximum number of iterations. One iteration is one step of the flow with ``batch_size=None``
        and one epoch (a pass over the data) otherwise.
    tol : float
        Relative tolerance: training stops when the monitored risk has not decreased by at least
        ``tol * best_risk`` for ``n_iter_no_change`` consecutive iterations. ``tol=0`` disables it.
    n_iter_no_change : int
        See ``tol``.
    early_stopping : bool
        Hold out ``validation_fraction`` of the training data, monitor the risk on it instead of the
        training risk, and restore the parameters with the best validation risk at the end.
    validation_fraction : float
    batch_size : int or None
        ``None`` is full batch, i.e. the explicit Euler scheme of the gradient flow of the theory.
    device : {'auto', 'cpu', 'cuda', ...}
        'auto' picks CUDA when present. The resolved device is stored as ``device_``.
    dtype : {'float64', 'float32'}
        float64 by default (the diagnostics are small numbers); float32 is a speed option.
    random_state : int, RandomState or None
        Seeds a local ``torch.Generator`` (on the CPU), so a seed gives the same model on every device.
    verbose : int
        0 is silent; 1 prints iteration, risk, P-L ratio (and validation risk) and elapsed time every
        100 iterations and at the end; 2 or more prints every 20 iterations (each host synchronisation).
    warm_start : bool
        Continue from the previous fit's parameters, appending to the history.

    Data-parallel fits: inside an initialised ``torch.distributed`` process group with more than one rank,
    ``fit`` is data-parallel with nothing to set: every rank calls ``fit`` on its own rows and all the ranks
    end with the model one process would fit on all the rows (full batch, no early stopping); ``n_ranks_``
    records the number of ranks. The inputs must be preprocessed alike on every rank (a scaler fitted on
    global statistics, not per shard). See :mod:`skflow.distributed`.
    """

    _parameter_constraints = {
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "device": [str, torch.device],
        "dtype": [StrOptions({"float64", "float32"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
    }

    #: parameters a warm start cannot change (the shape of the model)
    _architecture_params = ()
    #: history is brought to the host every this many iterations (no host sync in the hot loop).
    _sync_every = 20
    #: whether the train/validation split is stratified (classifiers)
    _stratify = False

    # ------------------------------------------------------------------ hooks
    def _encode_targets(self, y, ctx, sample_weight=None):  # pragma: no cover - interface
        raise NotImplementedError

    def _make_flow(self, ctx):  # pragma: no cover - interface
        raise NotImplementedError

    def _finalize_fit(self, ctx):  # pragma: no cover - interface
        raise NotImplementedError

    def _compile_setting(self):
        """The fit's ``compile`` request (True, False or 'auto'): estimators with a ``compile`` parameter return it."""
        return False

    def _decode_output(self, out):  # pragma: no cover - interface
        raise NotImplementedError

    #: the time step ``learning_rate='auto'`` starts its search from (each estimator's usual default)
    _reference_learning_rate = 0.1

    def _learning_rate_at(self, iteration):
        """Time step at a given iteration; subclasses may add a schedule."""
        return self.learning_rate_

    #: ``learning_rate='auto'`` with minibatches: the probe steps through at most this many of the fit's batches
    _auto_probe_batches = 8
    #: ... and takes at least this many steps per probed time step (momentum needs ``~1 / (1 - m)`` steps to
    #: reach its full step: a probe of 3 steps would pass time steps that diverge later)
    _auto_probe_steps = 24

    def _resolve_learning_rate(self, flow, ctx):
        """``learning_rate_``: the given float, or, for 'auto', half the largest stable step found on the data.

        Full batch: the step is probed on the training rows. Minibatches: on the first batches of an epoch cut
        as the fit cuts them (:func:`skflow._training.epoch_batches`, near-equal sizes, seeded apart from the
        fit's generator), stepping through them as the fit does, momentum included.
        """
        if self.learning_rate != "auto":
            return float(self.learning_rate)
        X, Y = ctx.X, ctx.engine_targets
        n = X.shape[0]
        if self.batch_size is not None and n_batches(n, self.batch_size) > 1:
            parts, _ = epoch_batches(n, self.batch_size, torch.Generator().manual_seed(0), X.device)
            parts = parts[: self._auto_probe_batches]
            batches = [(X[idx], normalise_weights(Y[idx]) if flow.weighted else Y[idx]) for idx in parts]
            cycles = max(3, math.ceil(self._auto_probe_steps / len(batches)))
            return stable_time_step(flow, X, Y, self._reference_learning_rate, n_steps=cycles, batches=batches)
        return stable_time_step(flow, X, Y, self._reference_learning_rate)

    def _uses_minibatches(self, ctx):
        """Whether the fit of ``ctx`` runs minibatch steps (always in ``partial_fit``); in a data-parallel fit,
        whether any rank does (all the ranks then take the same number of minibatch steps, see
        :func:`skflow._training.n_batches`)."""
        if self._partial_call:  # the chunks of partial_fit are the minibatches of a stream
            return True
        return n_batches(ctx.X.shape[0], self.batch_size, ctx.rows_per_rank) > 1

    def _divergence_hint(self):
        """Extra advice for the divergence warning (an estimator whose stiffness has another lever adds it)."""
        return f" (now {self.learning_rate_:g}; learning_rate='auto' measures a stable one)"

    # ------------------------------------------------------------------ validation
    def _validate_params(self):
        super()._validate_params()
        _check_device_string(self.device)

    #: whether ``X`` may be a ``scipy.sparse`` matrix (validated to CSR; the fit reads it by rows, see
    #: :mod:`skflow._rows`); an estimator whose first layer cannot read sparse rows sets False
    _accepts_sparse = True
    #: why not, when ``_accepts_sparse`` is False (the TypeError a sparse ``X`` raises says it)
    _sparse_refusal = ""

    @property
    def _sparse_rows_ok(self):
        """Whether the engine of this configuration reads ``X`` only by blocks of rows (a sparse ``X`` then stays
        sparse on the device, one block densified at a time); False: a sparse ``X`` is densified on the device."""
        return True

    def _validate_fit_data(self, X, y):
        """Validate X, y and return (X, y): X float64 NumPy, CSR (sparse input) or a torch tensor (left on its
        device); y on the host. Subclasses may extend (e.g. multi_output)."""
        self._refuse_sparse(X)
        y = _rows.host_array(y)
        # a later partial_fit call checks the inputs against the model's (scikit-learn's message), not resets them
        reset = not (self._partial_call and hasattr(self, "flow_"))
        if isinstance(X, torch.Tensor):
            X = _rows.validate_tensor(self, X, reset=reset)
            y = _check_y(y, multi_output=True)
            check_consistent_length(X, y)
            return X, y
        return validate_data(self, X, y, multi_output=True, dtype=np.float64, y_numeric=False, reset=reset,
                             accept_sparse="csr" if self._accepts_sparse else False)

    def _refuse_sparse(self, X):
        if not self._accepts_sparse and _rows.is_sparse(X):
            raise TypeError(f"{type(self).__name__} does not accept sparse data: {self._sparse_refusal} Densify X "
                            "(X.toarray()), or put a dense-output step before it.")

    def _validate_predict_data(self, X):
        """Validate the inputs of a prediction as :meth:`_validate_fit_data` does (without resetting)."""
        self._refuse_sparse(X)
        if isinstance(X, torch.Tensor):
            return _rows.validate_tensor(self, X, reset=False)
        return validate_data(self, X, reset=False, dtype=np.float64,
                             accept_sparse="csr" if self._accepts_sparse else False)

    def _check_numeric_targets(self, y):
        """Regressors: reject non-numeric targets with an error that names the problem."""
        y = np.asarray(y)
        if y.dtype.kind in "USO":
            try:
                y.astype(np.float64)
            except (TypeError, ValueError):
                example = next(iter(y.ravel()), None)
                raise ValueError(
                    f"{type(self).__name__} is a regressor and y must be numeric; got non-numeric values "
                    f"such as {example!r}. For class labels use a classifier (e.g. skflow.RKHSNODEClassifier)."
                ) from None

    def _to_tensor(self, A, dtype=None, dense=False):
        """``A`` on ``device_`` in ``dtype`` (by default the fitted engine's, else the ``dtype`` parameter's), by
        :func:`skflow._rows.as_fit_tensor`: a sparse ``A`` as a :class:`~skflow._rows.SparseRows`, or densified on
        the device with ``dense`` (or when the engine cannot read it by rows)."""
        if dtype is None:
            flow = self.__dict__.get("flow_")
            dtype = flow.parameters()[0].dtype if flow is not None else self._torch_dtype
        return _rows.as_fit_tensor(A, dtype, self.device_, dense=dense or not self._sparse_rows_ok)

    @property
    def _torch_dtype(self):
        return resolve_dtype(self.dtype)

    #: set on the private copy that a subclass fits to search a setting (e.g. the epochs of ``max_iter='auto'``)
    _search_fit = False

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, sample_weight=None, monitor=None):
        """Fit the model by running the gradient flow from its initialisation (or, with ``warm_start``, on).

        The fit is a transaction: if anything is raised before it completes (bad input, an unusable device,
        an incompatible warm start, too little memory), the estimator keeps its previous fitted state exactly.
        Ctrl-C during training keeps the model trained so far, with its exact history.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The training inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The targets: class labels for a classifier, values for a regressor.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the rows (not all zero). The flow is then the gradient flow of the weighted
            empirical measure (``../SPEC.md`` §5): every mean over rows (the risk and its gradient, the target
            moments, the ridge projection and its leave-one-out path, the validation risk, the P-L ratio) becomes
            the weighted mean, so that integer weights give the model fitted on rows repeated that many times
            (full batch) and a weight of 0 drops its row. A minibatch step uses the batch's weighted risk,
            normalised by the batch's weight. None gives every row weight 1.
        monitor : callable or None, default=None
            Called after every iteration as ``monitor(i, estimator, record)`` (scikit-learn's precedent:
            ``GradientBoostingRegressor.fit(..., monitor=...)``): ``i`` the iteration (from 0), ``estimator``
            the model being fitted (a private copy, committed when the fit ends: its ``flow_`` is the engine
            being trained, at the parameters of iteration ``i``, so that ``estimator.predict`` scores the
            current model; the other fitted attributes are not set yet), ``record`` the iteration's
            history row (a dict of floats: ``'risk'``, ``'pl_ratio'``, ``'val_risk'``, ...). If it returns
            True, training stops there with ``stop_reason_ = 'monitor'`` and the fit completes as usual.
            A monitor brings each record to the host as it is made (one synchronisation per iteration).
            Callbacks of scikit-learn's protocol (``set_callbacks``, scikit-learn >= 1.9) see one task per
            iteration, and one that asks to stop stops the fit the same way.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._validate_params()
        if monitor is not None and not callable(monitor):
            raise TypeError(f"monitor must be a callable or None; got {type(monitor).__name__}.")

        def run(work):
            if _callback_management is not None:
                with _callback_management(work):
                    work._fit_auto(X, y, sample_weight)
            else:  # pragma: no cover - older scikit-learn
                work._fit_auto(X, y, sample_weight)

        return self._transaction(run, _monitor=monitor)

    def _shallow_copy(self, keep=None):
        """A new estimator sharing this one's attribute values (those ``keep(name)`` accepts); not ``copy.copy``,
        whose ``__getstate__`` would take the fitted engines through host NumPy arrays at every fit (a fit changes
        no shared value in place: a warm start trains ``flow_.to(...)``, a copy)."""
        work = type(self).__new__(type(self))
        work.__dict__.update(self.__dict__ if keep is None else {k: v for k, v in self.__dict__.items() if keep(k)})
        return work

    def _transaction(self, run, **call):
        """``run(work)`` on a shallow copy of the estimator that carries the call's private settings ``call``, then
        the copy's state committed in one step (whatever ``run`` raises leaves ``self`` exactly as it was)."""
        work = self._shallow_copy()
        work.__dict__.update(call)
        try:
            run(work)
        finally:
            for key in (*call, "_iteration_ctx"):
                work.__dict__.pop(key, None)
        self.__dict__.clear()
        self.__dict__.update(work.__dict__)
        return self

    def _fit(self, X, y, sample_weight=None):
        warm = (self.warm_start or self._partial_call) and hasattr(self, "flow_")
        previous = self._model_signature(getattr(self, "_fitted_architecture", {})) if warm else None
        if not warm:
            self._clear_fitted()
        # data-parallel in a process group of several ranks (skflow.distributed): a check that may fail on some ranks
        # only ends in a `consensus`, so that all the ranks raise together; the first also checks that the ranks
        # agree (dimensions, label type, parameters, weights, ...) before anything else is exchanged
        dp = distributed.current()
        ctx = FitContext(process_group=dp, warm=warm)
        self.n_ranks_ = 1 if dp is None else dp.world_size
        with distributed.consensus(dp) as ranks:
            X, y = self._validate_fit_data(X, y)
            weights = self._validate_sample_weight(sample_weight, X, y)
            ranks.agree(self, X, y, warm, weights is not None)
        with distributed.consensus(dp):
            # its collectives (classes, target moments) come before its checks
            Y = self._prepare_targets(y, ctx, weights)
            ctx.dtype = self._torch_dtype
            _check_magnitude(X, ctx.dtype, "X")
            self._n_targets = Y.shape[1]
            if warm:
                self._check_warm_start(previous)
            self._fitted_architecture = self._architecture
            self.device_ = ctx.device = resolve_device(self.device)
            ctx.generator = _seed_generator(self.random_state)
            if self._partial_call and warm:  # a later partial_fit call: the next epoch's shuffle, not the first's
                ctx.generator.manual_seed(int(torch.randint(2**62, (1,), generator=ctx.generator)) + self.n_iter_)
            if weights is not None:  # the weights ride with the rows as Y's last column (Flow.weighted)
                Y = np.column_stack([Y, weights])
            parts = [None if A is None else self._to_tensor(A, ctx.dtype) for A in self._split(X, Y, y)]
        ctx.rows_per_rank = None if dp is None else dp.rows_per_rank(parts[0].shape[0])
        if weights is not None:
            parts[1], parts[3] = (None if P is None else self._mean_one_weights(P, dp) for P in (parts[1], parts[3]))
            ctx.Y, ctx.sample_weight = parts[1][:, :-1], parts[1][:, -1]
            if parts[3] is not None:
                ctx.Y_val, ctx.val_weight = parts[3][:, :-1], parts[3][:, -1]
        else:
            ctx.Y, ctx.Y_val = parts[1], parts[3]
        ctx.X, ctx.X_val = parts[0], parts[2]
        with distributed.consensus(dp):
            with _translated_memory_errors(type(self).__name__, "build the model"):
                if warm:
                    flow = self.flow_.to(self.device_, ctx.dtype)
                    history, start_iter = dict(self.history_), self.n_iter_
                else:
                    flow = self._make_flow(ctx)  # its collectives come before its checks
                    history, start_iter = None, 0
            self._check_memory(flow, ctx.X.shape[0] if self.batch_size is None else self.batch_size)
            if dp is not None and not flow.supports_data_parallel:
                raise NotImplementedError(f"{type(self).__name__}: its engine {type(flow).__name__} cannot fit "
                                          "data-parallel yet; fit outside the process group (on one process).")
        work = flow.elementwise_per_row() * ctx.n_rows * self._iteration_budget()
        flow.compiled = decide_compile(self._compile_setting(), work, flow.compile_kernels(), self.device_, ctx.dtype)
        flow.data_parallel = dp  # the engine all-reduces its sums over rows until the fit ends
        flow.weighted = weights is not None
        data = tuple(parts)  # what the engine trains on: Y with its weight column when weighted (Flow.weighted)
        try:
            flow.start(data[0], data[1], None if data[2] is None else (data[2], data[3]))
            if not (warm and self.learning_rate == "auto" and hasattr(self, "learning_rate_")):
                self.learning_rate_ = self._resolve_learning_rate(flow, ctx)
            callback_ctx = None
            if getattr(self, "_skl_callbacks", None) and not self._search_fit:
                callback_ctx = self._iteration_ctx = self._init_callback_context(
                    max_subtasks=self._iteration_budget())
                callback_ctx.call_on_fit_task_begin(estimator=self, X=ctx.X, y=ctx.Y)
            cfg = self._train_config(ctx)
            self.flow_ = flow  # what a monitor scores (on this private copy; committed only when the fit ends)
            with _translated_memory_errors(type(self).__name__, "train"):
                result = train(flow, data, cfg, ctx.generator, history, start_iter)
            if callback_ctx is not None:
                callback_ctx.call_on_fit_task_end(estimator=self, X=ctx.X, y=ctx.Y)
            flow.finish(data[0], data[1], result.n_iter)
            self.flow_ = flow
            self._set_history(result)
            self.n_batches_ = int(result.n_batches)
            self.n_train_samples_ = ctx.n_rows
            if not self._search_fit:  # a fit that only searches a setting: no warnings, no diagnostics
                if not (self._partial_call and result.stop_reason == "max_iter"):  # an epoch per call, by design
                    warn_stop(result, type(self).__name__, cfg, self._divergence_hint())
                self._finalize_fit(ctx)
        finally:
            flow.data_parallel = None  # the fitted model keeps no handle on the process group
            flow.weighted = False  # nor its weights: predictions and later fits take plain targets
        if getattr(self, "_diagnostics_interrupted", False):
            warn(f"{type(self).__name__}: interrupted while computing the diagnostics; the fitted model "
                 "is kept and the diagnostics not computed are NaN.", FitInterruptedWarning)
        return self

    def _prepare_targets(self, y, ctx, sample_weight=None):
        Y = np.asarray(self._encode_targets(y, ctx, sample_weight), dtype=np.float64)
        if Y.ndim == 1:
            Y = Y[:, None]
        if not np.all(np.isfinite(Y)):
            raise ValueError("Input y contains NaN or infinity (or values that overflow once scaled).")
        _check_magnitude(Y, self._torch_dtype, "y (as trained on, after any scaling)",
                         "Rescale y, or let the estimator standardise it (scale_targets=True where offered)")
        return Y

    def _train_config(self, ctx):
        return TrainConfig(
            max_iter=self._iteration_budget(), tol=self.tol, n_iter_no_change=self.n_iter_no_change,
            batch_size=self.batch_size, learning_rate_at=self._learning_rate_at, sync_every=self._sync_every,
            # data-parallel: every rank trains alike, rank 0 alone prints the progress
            verbose=self.verbose if ctx.rank == 0 else 0,
            name=type(self).__name__, rows_per_rank=ctx.rows_per_rank,
            val_score=self._validation_score if self._holds_out else None,
            iteration_hook=self._iteration_hook(), hook_needs_rows=getattr(self, "_monitor", None) is not None,
            check_improvement=not self._partial_call,
        )

    def _iteration_hook(self):
        """The fit's ``monitor`` and scikit-learn callbacks, as one ``(iteration, row) -> stop`` callable, or None."""
        if self._search_fit:  # a private search fit is not the user's fit
            return None
        monitor, callbacks = getattr(self, "_monitor", None), getattr(self, "_skl_callbacks", None)
        if monitor is None and not callbacks:
            return None
        ctx = getattr(self, "_iteration_ctx", None)

        def hook(iteration, row):
            stop = False
            if ctx is not None:
                task = ctx.subcontext(task_name="iteration")
                task.call_on_fit_task_begin(estimator=self)
                stop = bool(task.call_on_fit_task_end(estimator=self, metadata=row))
            if monitor is not None:
                stop = bool(monitor(iteration, self, row)) or stop
            return stop

        return hook

    #: early stopping restores the parameters of the best validation score (None: the least validation risk)
    _validation_score = None

    def _clear_fitted(self):
        """Forget every fitted attribute (a cold fit starts from nothing)."""
        for key in list(vars(self)):
            if key.endswith("_") and not key.startswith("__"):
                delattr(self, key)
        self.__dict__.pop("_diagnostics_interrupted", None)

    def _model_signature(self, architecture):
        """What a warm start must keep: input width, outputs / classes and the architecture parameters."""
        sig = {"n_features_in_": self.n_features_in_, "n_outputs": self._n_targets}
        if hasattr(self, "classes_"):
            sig["classes_"] = list(self.classes_)
        sig.update(architecture)
        return sig

    @property
    def _architecture(self):
        return {name: getattr(self, name) for name in self._architecture_params}

    def _check_warm_start(self, previous):
        current = self._model_signature(self._architecture)
        changed = [f"{k}: {previous[k]!r} -> {current.get(k)!r}" for k in previous if previous[k] != current.get(k)]
        if changed:
            raise IncompatibleWarmStartError(
                f"{type(self).__name__}: warm_start=True cannot continue the previous fit, because "
                + "; ".join(changed) + ". Set warm_start=False to fit a new model."
            )

    def _check_memory(self, flow, rows):
        """A MemoryError, before anything is allocated, when a training step cannot fit in memory."""
        _device.check_step_memory(type(self).__name__, flow, rows, self.device_, available_memory(self.device_))

    def _split(self, X, Y, y):
        fold = self.__dict__.get("_search_fold")  # a probe of an epoch search: its rows are given
        if fold is not None:
            return _rows.take(X, fold[0]), Y[fold[0]], _rows.take(X, fold[1]), Y[fold[1]]
        if not self._holds_out:
            return X, Y, None, None
        stratify = y if self._stratify else None
        n_val = max(1, int(round(self.validation_fraction * X.shape[0])))
        if X.shape[0] - n_val < 1:
            raise ValueError(
                f"early_stopping needs at least 2 samples; got n_samples = {X.shape[0]} with "
                f"validation_fraction={self.validation_fraction}."
            )
        seed = check_random_state(self.random_state).randint(2**31 - 1)
        rows = np.arange(X.shape[0])  # the split of the rows' indices: the same for NumPy, sparse and tensor X
        try:
            tr, val = train_test_split(rows, test_size=n_val, random_state=seed, stratify=stratify)
        except ValueError:  # too few members in a class to stratify
            tr, val = train_test_split(rows, test_size=n_val, random_state=seed)
        return _rows.take(X, tr), Y[tr], _rows.take(X, val), Y[val]

    def _set_history(self, result):
        n_done = result.n_iter
        self.history_ = dict(result.history)
        # flow time at the start of iteration i: the sum of the time steps taken before it
        lrs = np.array([self._learning_rate_at(i) for i in range(n_done)], dtype=np.float64)
        self.history_["flow_time"] = np.concatenate([[0.0], np.cumsum(lrs * result.n_batches)[:-1]])[:n_done]
        self.n_iter_ = n_done
        self.stop_reason_ = result.stop_reason
        if self._holds_out and n_done:
            self.best_validation_risk_ = result.best_validation_risk
            if "val_score" in self.history_:
                self.validation_scores_ = self.history_["val_score"]
                self.best_validation_score_ = result.best_validation_score
        self.loss_curve_ = self.history_.get("risk", np.zeros(0))
        self.flow_time_ = self.history_["flow_time"]
        self.pl_ratio_curve_ = self.history_.get("pl_ratio", np.zeros(0))
        finite_pl = self.pl_ratio_curve_[np.isfinite(self.pl_ratio_curve_)]
        self.pl_constant_ = float(finite_pl.min()) if finite_pl.size else float("nan")
        self.best_loss_ = float(np.min(self.loss_curve_)) if n_done else float("nan")

    def _diagnostic(self, name, fn, *args, default=float("nan"), **kwargs):
        """Run one diagnostic; a failure gives ``default`` with a DiagnosticWarning, never a broken fit."""
        if getattr(self, "_diagnostics_interrupted", False):
            return default
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            self._diagnostics_interrupted = True
            return default
        except Exception as exc:  # noqa: BLE001 - any failure of a diagnostic must leave the fit standing
            warn(f"{type(self).__name__}: the diagnostic {name} could not be computed "
                 f"({type(exc).__name__}: {exc}); it is set to {default!r}.", DiagnosticWarning)
            return default

    # ------------------------------------------------------------------ predict
    def _predict_chunk(self):
        """Rows per prediction chunk, from a memory budget on the activations of one chunk."""
        return max(1, PREDICT_MEMORY_BUDGET // max(1, self.flow_.bytes_per_row(training=False)))

    def _raw_output(self, X):
        check_is_fitted(self, "flow_")
        X = self._validate_predict_data(X)
        out = _device.forward_in_chunks(self.flow_, X, self._predict_chunk(), lambda A: self._to_tensor(A, dense=True),
                                        type(self).__name__, self._n_targets)
        if not np.all(np.isfinite(out)):
            warn(f"{type(self).__name__}: some outputs are not finite (numerical overflow): the inputs are "
                 "far outside the range seen in training. Standardise X as for fit.", RuntimeWarning)
        return out

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        """The state pickle, joblib and skops store: the engines on the CPU, no torch object (tensors as NumPy
        arrays, dtypes and devices by name; see :mod:`skflow.flows._portable`), and the skflow and scikit-learn
        versions (``_skflow_version``, ``_sklearn_version``)."""
        return _device.stamp_versions(_device.state_on_cpu(super().__getstate__()))

    def __setstate__(self, state):
        """Restore a pickled state: an :class:`~skflow.exceptions.InconsistentVersionWarning` when it was pickled
        by another skflow version, the torch objects rebuilt and the engines moved to ``device_`` (the CPU when
        it was a GPU this machine lacks)."""
        super().__setstate__(_device.check_versions(state, type(self).__name__))
        _device.restore_device(self)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.input_tags.sparse = self._accepts_sparse
        return tags
