"""Shared scikit-learn plumbing for every skflow estimator.

The estimators differ only in their engine (``skflow.flows``) and in how targets are encoded; everything
else -- validation, device and dtype, seeding, the fit loop with its history, early stopping, divergence
handling, verbose progress, warm start, chunked prediction and pickling across devices -- lives here, once.

A subclass implements four hooks:

``_encode_targets(y) -> ndarray (n, n_outputs)``
    validate and encode the targets (regressors: numeric check and optional scaling; classifiers:
    label encoding). Called with ``y`` already validated by ``validate_data``; must not set attributes
    other than those describing the target encoding.
``_make_flow(X, Y, generator) -> Flow``
    build the engine at initialisation on the given tensors (already on ``device_`` with ``dtype``).
    ``generator`` is a seeded CPU ``torch.Generator``: draw on the CPU, then move to the device, so that
    a seed gives the same model on every device.
``_finalize_fit(X, Y)``
    set the estimator-specific fitted attributes from ``self.flow_`` and ``self.history_``.
``_decode_output(out) -> ndarray``
    map the engine's raw output (float64 NumPy) to predictions.
"""

import math
import numbers
import sys
import time
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .flows._flow import Flow

__all__ = ["BaseFlowEstimator", "DivergenceWarning", "resolve_device", "resolve_dtype"]


class SingularKernelWarning(UserWarning):
    """A finite-width kernel diagnostic is singular (width below the number of points): its lambda_min is 0."""


class DivergenceWarning(ConvergenceWarning):
    """The training risk became non-finite; the last parameters with a finite risk were restored."""


def resolve_device(device):
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; anything else is passed to ``torch.device``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available; use device='auto' or 'cpu'.")
    return dev


def resolve_dtype(dtype):
    return {"float64": torch.float64, "float32": torch.float32}[dtype]


def _seed_generator(random_state):
    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    return gen


class BaseFlowEstimator(BaseEstimator):
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
    """

    _parameter_constraints = {
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
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

    #: rows per chunk in predict; bounded so that activations (chunk x width) stay small.
    _predict_chunk = 8192
    #: history is brought to the host every this many iterations (no host sync in the hot loop).
    _sync_every = 20
    #: whether the train/validation split is stratified (classifiers)
    _stratify = False

    # ------------------------------------------------------------------ hooks
    def _encode_targets(self, y):  # pragma: no cover - interface
        raise NotImplementedError

    def _make_flow(self, X, Y, generator):  # pragma: no cover - interface
        raise NotImplementedError

    def _finalize_fit(self, X, Y):  # pragma: no cover - interface
        raise NotImplementedError

    def _decode_output(self, out):  # pragma: no cover - interface
        raise NotImplementedError

    def _learning_rate_at(self, iteration):
        """Time step at a given iteration; subclasses may add a schedule."""
        return self.learning_rate

    # ------------------------------------------------------------------ validation
    def _validate_fit_data(self, X, y):
        """Validate X, y and return (X float64, y). Subclasses may extend (e.g. multi_output)."""
        return validate_data(self, X, y, multi_output=True, dtype=np.float64, y_numeric=False)

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

    def _to_tensor(self, A):
        return torch.as_tensor(np.ascontiguousarray(A), dtype=self._torch_dtype).to(self.device_)

    @property
    def _torch_dtype(self):
        return resolve_dtype(self.dtype)

    # ------------------------------------------------------------------ fit
    def fit(self, X, y):
        """Fit the model by running the gradient flow from its initialisation.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self
        """
        self._validate_params()
        # everything that can fail on bad input happens first; if it fails, the estimator is left exactly as
        # it was (validate_data sets n_features_in_, target encoding sets e.g. classes_)
        saved = dict(self.__dict__)
        try:
            X, y = self._validate_fit_data(X, y)
            Y = np.asarray(self._encode_targets(y), dtype=np.float64)
            if Y.ndim == 1:
                Y = Y[:, None]
            if not np.all(np.isfinite(Y)):
                raise ValueError("Input y contains NaN or infinity.")
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise
        device = resolve_device(self.device)
        warm = self.warm_start and hasattr(self, "flow_")
        if warm and getattr(self, "_n_targets", None) != Y.shape[1]:
            raise ValueError(
                f"warm_start=True but y has {Y.shape[1]} outputs, the previous fit had {self._n_targets}."
            )
        self.device_ = device
        self._n_targets = Y.shape[1]

        generator = _seed_generator(self.random_state)
        X_tr, Y_tr, X_val, Y_val = self._split(X, Y, y)
        Xt, Yt = self._to_tensor(X_tr), self._to_tensor(Y_tr)
        if X_val is not None:
            Xv, Yv = self._to_tensor(X_val), self._to_tensor(Y_val)
        else:
            Xv = Yv = None

        if warm:
            self.flow_ = self.flow_.to(device, self._torch_dtype)
            history = {k: list(v) for k, v in self.history_.items()}
            start_iter = self.n_iter_
        else:
            self.flow_ = self._make_flow(Xt, Yt, generator)
            history = {}
            start_iter = 0
        self._train_loop(Xt, Yt, Xv, Yv, generator, history, start_iter)
        self._finalize_fit(Xt, Yt)
        return self

    def _split(self, X, Y, y):
        if not self.early_stopping:
            return X, Y, None, None
        stratify = y if self._stratify else None
        n_val = max(1, int(round(self.validation_fraction * X.shape[0])))
        if X.shape[0] - n_val < 1:
            raise ValueError(
                f"early_stopping needs at least 2 samples; got n_samples = {X.shape[0]} with "
                f"validation_fraction={self.validation_fraction}."
            )
        try:
            X_tr, X_val, Y_tr, Y_val = train_test_split(
                X, Y, test_size=n_val, random_state=check_random_state(self.random_state).randint(2**31 - 1),
                stratify=stratify,
            )
        except ValueError:  # too few members in a class to stratify
            X_tr, X_val, Y_tr, Y_val = train_test_split(
                X, Y, test_size=n_val, random_state=check_random_state(self.random_state).randint(2**31 - 1)
            )
        return X_tr, Y_tr, X_val, Y_val

    def _train_loop(self, X, Y, Xv, Yv, generator, history, start_iter):
        flow = self.flow_
        params = flow.parameters()
        n = X.shape[0]
        batch = n if self.batch_size is None else min(self.batch_size, n)
        n_batches = math.ceil(n / batch)
        # buffers that let us restore, without a host sync per step, the last parameters with a finite
        # risk (divergence) and the parameters with the best validation risk (early stopping)
        prev = [p.detach().clone() for p in params]
        last_finite = [p.detach().clone() for p in params]
        use_val = Xv is not None
        if use_val:
            best_params = [p.detach().clone() for p in params]
            best_val = torch.tensor(float("inf"), dtype=X.dtype, device=X.device)

        pending = []  # per-iteration dicts of device tensors not yet brought to the host
        host = {k: list(v) for k, v in history.items()}
        best_monitor, no_improve = math.inf, 0
        if host.get("val_risk" if use_val else "risk"):
            best_monitor = float(np.nanmin(host["val_risk" if use_val else "risk"]))
        stop_reason = "max_iter"
        t0 = time.perf_counter()
        # the history reaches the host every _sync_every iterations; log every 5th sync, or each with verbose>=2
        log_every = (self._sync_every if self.verbose >= 2 else 5 * self._sync_every) if self.verbose else 0
        it = start_iter

        def flush():
            """Bring pending history to the host; returns the reason to stop, or None."""
            nonlocal best_monitor, no_improve
            if not pending:
                return None
            keys = pending[0].keys()
            stacked = {k: torch.stack([p[k] for p in pending]).double().cpu().numpy() for k in keys}
            count = len(pending)
            pending.clear()
            for j in range(count):
                row = {k: float(stacked[k][j]) for k in keys}
                if not math.isfinite(row["risk"]):
                    return "diverged"
                for k, v in row.items():
                    host.setdefault(k, []).append(v)
                monitor = row["val_risk"] if use_val else row["risk"]
                if self.tol > 0:
                    if monitor > best_monitor - self.tol * abs(best_monitor):
                        no_improve += 1
                    else:
                        no_improve = 0
                if monitor < best_monitor:
                    best_monitor = monitor
                if self.tol > 0 and no_improve >= self.n_iter_no_change:
                    return "converged"
            return None

        try:
            for it in range(start_iter, start_iter + self.max_iter):
                lr = float(self._learning_rate_at(it))
                if batch < n:
                    perm = torch.randperm(n, generator=generator).to(X.device)
                records = []
                for j in range(n_batches):
                    if batch < n:
                        idx = perm[j * batch:(j + 1) * batch]
                        Xb, Yb = X[idx], Y[idx]
                    else:
                        Xb, Yb = X, Y
                    for p, q in zip(params, prev):
                        q.copy_(p)
                    out = flow.step(Xb, Yb, lr)
                    ok = torch.isfinite(out["risk"])
                    for q, s in zip(prev, last_finite):
                        torch.where(ok, q, s, out=s)
                    records.append(out)
                if len(records) == 1:
                    rec = dict(records[0])
                else:  # epoch averages, weighted by batch size
                    w = torch.tensor([min(batch, n - j * batch) / n for j in range(n_batches)],
                                     dtype=X.dtype, device=X.device)
                    rec = {k: (torch.stack([r[k] for r in records]) * w).sum() for k in records[0]}
                if use_val:
                    val = flow.risk(Xv, Yv)
                    better = val < best_val
                    best_val = torch.where(better, val, best_val)
                    for p, b in zip(params, best_params):
                        torch.where(better, p, b, out=b)
                    rec["val_risk"] = val
                pending.append(rec)
                if (it + 1 - start_iter) % self._sync_every == 0 or it == start_iter + self.max_iter - 1:
                    reason = flush()
                    if log_every and reason is None and (it + 1 - start_iter) % log_every == 0:
                        self._log(host, t0)
                    if reason is not None:
                        stop_reason = reason
                        break
        except KeyboardInterrupt:
            stop_reason = "interrupted"
            pending.clear()

        n_done = len(host.get("risk", []))
        if stop_reason in ("diverged", "interrupted"):
            for p, s in zip(params, last_finite):
                p.copy_(s)
        if stop_reason == "diverged":
            warnings.warn(
                f"{type(self).__name__}: the training risk became non-finite (NaN or inf) at iteration "
                f"{n_done}; training stopped and the last parameters with a finite risk were restored. "
                f"The flow is too stiff for this time step: use a smaller learning_rate "
                f"(now {self.learning_rate:g}){self._divergence_hint()}, or standardise the inputs.",
                DivergenceWarning,
            )
        elif stop_reason == "interrupted":
            warnings.warn(
                f"{type(self).__name__}: fit interrupted after {n_done} iterations; the model holds the last "
                "parameters with a finite risk and is usable.",
                UserWarning,
            )
        elif stop_reason == "max_iter" and self.tol > 0:
            warnings.warn(
                f"{type(self).__name__}: max_iter={self.max_iter} reached before the risk stopped "
                "decreasing; increase max_iter for a closer approximation of the gradient flow.",
                ConvergenceWarning,
            )
        if use_val and n_done > 0:
            for p, b in zip(params, best_params):
                p.copy_(b)
            self.best_validation_risk_ = float(best_val)
        if log_every:
            self._log(host, t0, final=True)

        self.history_ = {k: np.asarray(v, dtype=np.float64) for k, v in host.items()}
        # flow time at the start of iteration i: the sum of the time steps taken before it
        lrs = np.array([self._learning_rate_at(i) for i in range(n_done)], dtype=np.float64)
        self.history_["flow_time"] = np.concatenate([[0.0], np.cumsum(lrs * n_batches)[:-1]])[:n_done]
        self.n_iter_ = n_done
        self.stop_reason_ = stop_reason
        self.loss_curve_ = self.history_.get("risk", np.zeros(0))
        self.flow_time_ = self.history_["flow_time"]
        self.pl_ratio_curve_ = self.history_.get("pl_ratio", np.zeros(0))
        finite_pl = self.pl_ratio_curve_[np.isfinite(self.pl_ratio_curve_)]
        self.pl_constant_ = float(finite_pl.min()) if finite_pl.size else float("nan")
        self.best_loss_ = float(np.min(self.loss_curve_)) if n_done else float("nan")

    def _divergence_hint(self):
        """Extra advice for the divergence warning; the stiffness grows like ``output_scale ** 2``."""
        if hasattr(self, "output_scale"):
            return f", or a smaller output_scale (now {self.output_scale:g})"
        return ""

    def _log(self, host, t0, final=False):
        risks = host.get("risk", [])
        if not risks:
            return
        i = len(risks)
        msg = f"[{type(self).__name__}] iter {i:6d}  risk {risks[-1]:.4e}"
        if "pl_ratio" in host:
            msg += f"  P-L ratio {host['pl_ratio'][-1]:.3e}"
        if "val_risk" in host:
            msg += f"  val risk {host['val_risk'][-1]:.4e}"
        msg += f"  {time.perf_counter() - t0:7.1f}s"
        if final:
            msg += "  (done)"
        print(msg, file=sys.stdout, flush=True)

    # ------------------------------------------------------------------ predict
    def _raw_output(self, X):
        check_is_fitted(self, "flow_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        outs = []
        with torch.no_grad():
            for start in range(0, X.shape[0], self._predict_chunk):
                chunk = self._to_tensor(X[start:start + self._predict_chunk])
                outs.append(self.flow_.forward(chunk).double().cpu().numpy())
        if not outs:
            return np.zeros((0, self._n_targets))
        return np.concatenate(outs, axis=0)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state)
        for k, v in state.items():
            if isinstance(v, Flow):
                state[k] = v.to("cpu")
            elif isinstance(v, torch.Tensor):
                state[k] = v.detach().cpu()
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        dev = getattr(self, "device_", None)
        if dev is None:
            return
        if torch.device(dev).type == "cuda" and not torch.cuda.is_available():
            # trained on a GPU, loaded on a machine without one
            self.device_ = torch.device("cpu")
        else:
            self.device_ = torch.device(dev)
        for k, v in list(self.__dict__.items()):
            if isinstance(v, Flow):
                setattr(self, k, v.to(self.device_))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


class BaseFlowRegressor(RegressorMixin, BaseFlowEstimator):
    """Regression plumbing shared by the regressors: numeric targets, target standardisation, multi-output.

    ``y`` is standardised per output (``y_mean_``, ``y_scale_``) when :meth:`_scales_targets` says so; the
    risk and the diagnostics refer to the standardised targets and :meth:`predict` maps back.
    """

    def _scales_targets(self):
        return bool(self.scale_targets)

    def _validate_fit_data(self, X, y):
        X, y = super()._validate_fit_data(X, y)
        self._check_numeric_targets(y)
        return X, y

    def _encode_targets(self, y):
        Y = np.asarray(y, dtype=np.float64)
        Y2 = Y[:, None] if Y.ndim == 1 else Y
        if self.warm_start and hasattr(self, "y_mean_") and self.y_mean_.shape[0] == Y2.shape[1]:
            mean, scale = self.y_mean_, self.y_scale_  # a warm start keeps the units of the first fit
        elif self._scales_targets():
            mean = Y2.mean(axis=0)
            scale = Y2.std(axis=0)
            # constant targets: keep them centred but unscaled rather than divide by ~0
            scale = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(mean)), scale, 1.0)
        else:
            mean, scale = np.zeros(Y2.shape[1]), np.ones(Y2.shape[1])
        self._y_ndim = Y.ndim
        self.y_mean_, self.y_scale_ = mean, scale
        return (Y2 - mean) / scale

    def _decode_output(self, out):
        pred = out * self.y_scale_ + self.y_mean_
        return pred[:, 0] if self._y_ndim == 1 else pred

    def predict(self, X):
        """Predict targets, on the scale of the ``y`` given to ``fit``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        return self._decode_output(self._raw_output(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
