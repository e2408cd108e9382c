"""scikit-learn style Displays of fitted flows: convergence, kernel spectrum, feature distribution.

Each Display holds the arrays it draws; ``plot(ax=None, ...)`` draws them and sets ``figure_``, ``ax_`` and the
artists, and the classmethod ``from_estimator`` reads the fitted attributes of an estimator (or of the last
step of a :class:`~sklearn.pipeline.Pipeline`) and calls ``plot``. matplotlib is imported only inside ``plot``.
"""

import numpy as np
import torch
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_array, check_is_fitted

__all__ = ["ConvergenceDisplay", "FeatureDistributionDisplay", "KernelSpectrumDisplay"]


def _pyplot(caller):
    """Import ``matplotlib.pyplot`` lazily, with an installation hint when matplotlib is missing."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            f"{caller} requires matplotlib: pip install 'skflow[examples]' (or pip install matplotlib)."
        ) from exc
    return plt


def _axes(ax, caller):
    """The axes to draw on: ``ax``, or those of a new figure."""
    plt = _pyplot(caller)
    if ax is None:
        _, ax = plt.subplots()
    return ax


#: the estimators each Display reads, by class name (for the error of an unsupported one)
_ALL_ESTIMATORS = ("MeanFieldNODERegressor", "RKHSNODEClassifier", "VarProSHLRegressor", "VarProNetRegressor",
                   "VarProNetClassifier")


def _describe(estimator):
    """``'Ridge'``, or ``'a Pipeline ending with Ridge'``."""
    if isinstance(estimator, Pipeline):
        return f"a Pipeline ending with {type(estimator[-1]).__name__}"
    return type(estimator).__name__


def _final_step(estimator, X=None, *, caller=None, supports=None, supported=_ALL_ESTIMATORS):
    """The fitted last step of a Pipeline (or the estimator itself), and ``X`` through the preceding steps.

    The (last step) estimator must be an instance of one of the ``supported`` skflow classes (by name) for which
    ``supports(est)`` holds: a clear TypeError naming it and the supported estimators otherwise, before anything
    is transformed or checked for fitting."""
    import skflow

    final = estimator[-1] if isinstance(estimator, Pipeline) and len(estimator) else estimator
    classes = tuple(getattr(skflow, name) for name in supported)
    ok = isinstance(final, classes) and (supports is None or supports(final))
    if not ok:
        raise TypeError(
            f"{caller or 'this Display'} supports the skflow estimators {', '.join(supported)} (fitted), or a "
            f"Pipeline ending with one; got {_describe(estimator)}."
        )
    if isinstance(estimator, Pipeline):
        head, estimator = estimator[:-1], estimator[-1]
        check_is_fitted(estimator)
        if X is not None and len(head):
            X = head.transform(X)
    check_is_fitted(estimator)
    return estimator, X


def _subsample(X, max_samples):
    """At most ``max_samples`` rows of ``X``, chosen with ``RandomState(0)`` and kept in order."""
    X = check_array(X, dtype=np.float64)
    if max_samples is None or X.shape[0] <= max_samples:
        return X
    idx = np.sort(np.random.RandomState(0).choice(X.shape[0], int(max_samples), replace=False))
    return X[idx]


def _spectrum(K):
    """Eigenvalues of a symmetric matrix in decreasing order, in float64."""
    K = np.asarray(K, dtype=np.float64)
    return np.linalg.eigvalsh(0.5 * (K + K.T))[::-1]


def _bound_caveat(est):
    """Why the P-L bound ``R(0) exp(-m t)`` does not apply to a fit, or None where the theory gives it.

    The bound is a property of the gradient flow: it holds for full-batch steps without momentum (the explicit
    Euler scheme of the flow, at a stable time step). Minibatch steps follow another trajectory (their ratio is
    measured on the minibatches), and momentum averages past gradients: for these the training risk can lie above
    the "bound" (3.5 times above it, measured on an RKHS fit with minibatches and momentum 0.9)."""
    reasons = []
    n_rows = getattr(est, "_n_train_rows", None)
    try:
        minibatch = est._uses_minibatches(n_rows) if n_rows is not None else est.batch_size is not None
    except Exception:  # noqa: BLE001 - an estimator without the base's bookkeeping: judge by its parameter
        minibatch = getattr(est, "batch_size", None) is not None
    if minibatch:
        reasons.append(f"minibatch steps (batch_size={est.batch_size})")
    for name in ("momentum", "backbone_momentum"):
        value = getattr(est, name, 0) or 0
        if isinstance(value, (int, float)) and value > 0:
            reasons.append(f"{name}={value:g}")
    if not reasons:
        return None
    return ("no P-L bound: the bound R(0) exp(-m t) holds for the full-batch gradient flow without momentum, "
            "and this fit ran " + " and ".join(reasons))


class ConvergenceDisplay:
    """Training (and validation) risk against flow time, with the P-L bound and the P-L ratio.

    The Polyak-Lojasiewicz inequality ``|grad R|^2 >= m R`` along the trajectory gives
    ``R(t) <= R(0) exp(-m t)``; the Display draws the risk, that bound for the reported constant ``m``, and
    the ratio ``|grad R|^2 / R`` whose minimum is ``m`` on a second axis. Build it with
    :meth:`from_estimator`; the constructor only stores the arrays.

    Parameters
    ----------
    flow_time : array-like of shape (n_iter,)
        Flow time at the start of each iteration.
    risk : array-like of shape (n_iter,)
        Training risk at those times.
    pl_ratio : array-like of shape (n_iter,) or None
        P-L ratio along the trajectory; None draws no ratio axis.
    pl_constant : float
        The P-L constant ``m`` of the bound.
    val_risk : array-like of shape (n_iter,), default=None
        Validation risk, drawn when given.
    initial_risk : float, default=None
        ``R(0)`` of the bound; ``risk[0]`` when None.
    estimator_name : str, default=None
        Shown in the title.
    bound_caveat : str, default=None
        Why the P-L bound does not apply to this trajectory (the theory gives it for the full-batch gradient
        flow without momentum); when given, the bound and the P-L constant are not drawn and the caveat is
        shown in the legend instead. :meth:`from_estimator` sets it for minibatch fits and fits with momentum.

    Attributes
    ----------
    line_ : matplotlib Line2D
        The training risk.
    val_line_ : matplotlib Line2D or None
        The validation risk.
    bound_line_ : matplotlib Line2D or None
        The bound ``R(0) exp(-m t)``; None where it does not apply (``bound_caveat``) or without iterations.
    bound_caveat_ : str or None
        The caveat shown instead of the bound (see ``bound_caveat``); also "no iterations" when the history is
        empty (a fit interrupted in its first step, ``n_iter_ = 0``).
    pl_ax_ : matplotlib Axes or None
        Twin axes of the P-L ratio.
    pl_line_ : matplotlib Line2D or None
        The P-L ratio.
    ax_ : matplotlib Axes
        Axes of the risk.
    figure_ : matplotlib Figure
        Figure of ``ax_``.

    Examples
    --------
    >>> import numpy as np
    >>> from skflow.inspection import ConvergenceDisplay
    >>> t = np.linspace(0, 1, 11)
    >>> disp = ConvergenceDisplay(t, np.exp(-2 * t), np.full(11, 2.0), 2.0)
    >>> disp.plot()  # doctest: +SKIP
    """

    def __init__(self, flow_time, risk, pl_ratio, pl_constant, *, val_risk=None, initial_risk=None,
                 estimator_name=None, bound_caveat=None):
        self.flow_time = np.asarray(flow_time, dtype=np.float64).reshape(-1)
        self.risk = np.asarray(risk, dtype=np.float64).reshape(-1)
        self.pl_ratio = None if pl_ratio is None else np.asarray(pl_ratio, dtype=np.float64).reshape(-1)
        self.pl_constant = float(pl_constant)
        self.val_risk = None if val_risk is None else np.asarray(val_risk, dtype=np.float64).reshape(-1)
        self.initial_risk = initial_risk
        self.estimator_name = estimator_name
        self.bound_caveat = bound_caveat

    @property
    def bound(self):
        """``R(0) exp(-m t)`` at ``flow_time`` (empty without iterations)."""
        if self.initial_risk is None and not self.risk.size:
            return np.zeros(0)
        r0 = self.risk[0] if self.initial_risk is None else float(self.initial_risk)
        return r0 * np.exp(-self.pl_constant * self.flow_time)

    def plot(self, ax=None, *, show_pl_ratio=True, log_scale=True, risk_kw=None, bound_kw=None, pl_kw=None):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw the risk; a new figure when None.
        show_pl_ratio : bool, default=True
            Draw the P-L ratio on a twin axis (when the ratio is known).
        log_scale : bool, default=True
            Logarithmic risk axis.
        risk_kw, bound_kw, pl_kw : dict, default=None
            Keyword arguments of the risk, bound and P-L ratio lines.

        Returns
        -------
        self : ConvergenceDisplay
            The display, with its artists set.
        """
        ax = _axes(ax, f"{type(self).__name__}.plot")
        n = min(self.flow_time.size, self.risk.size)
        t = self.flow_time[:n]
        self.line_, = ax.plot(t, self.risk[:n], **{"lw": 2, "label": "training risk R(t)", **(risk_kw or {})})
        self.val_line_ = None
        if self.val_risk is not None:
            m = min(self.flow_time.size, self.val_risk.size)
            self.val_line_, = ax.plot(self.flow_time[:m], self.val_risk[:m], lw=1, alpha=0.8,
                                      label="validation risk")
        self.bound_caveat_ = self.bound_caveat
        if self.bound_caveat_ is None and n == 0:
            self.bound_caveat_ = "no iterations (n_iter_ = 0): nothing to bound"
        elif self.bound_caveat_ is None and not np.isfinite(self.pl_constant):
            self.bound_caveat_ = "no P-L bound: the P-L ratio was not finite along the trajectory"
        self.bound_line_ = None
        if self.bound_caveat_ is None:
            self.bound_line_, = ax.plot(t, self.bound[:n], **{
                "color": "k", "ls": "--", "label": f"P-L bound R(0) exp(-m t), m = {self.pl_constant:.3g}",
                **(bound_kw or {})})
        if log_scale and n and np.any(self.risk[:n] > 0):
            ax.set_yscale("log")
        ax.set_xlabel("flow time t")
        ax.set_ylabel("risk")
        if self.estimator_name:
            ax.set_title(self.estimator_name)
        self.pl_ax_ = self.pl_line_ = None
        if show_pl_ratio and self.pl_ratio is not None and self.pl_ratio.size and self.flow_time.size:
            self._plot_pl_ratio(ax, pl_kw)
        handles = ax.get_lines() + ([] if self.pl_ax_ is None else self.pl_ax_.get_lines())
        if self.bound_caveat_ is not None:  # an empty entry of the legend carries the caveat
            caveat, = ax.plot([], [], ls="", label=_wrap(self.bound_caveat_))
            handles.append(caveat)
        ax.legend(handles=handles, fontsize=8)
        self.ax_, self.figure_ = ax, ax.figure
        return self

    def _plot_pl_ratio(self, ax, pl_kw):
        """The P-L ratio and the constant ``m`` on a twin axis of ``ax``."""
        self.pl_ax_ = ax.twinx()
        n = min(self.pl_ratio.size, self.flow_time.size)
        label = "P-L ratio |grad R|^2 / R" + ("" if self.bound_caveat_ is None else " (of the steps taken)")
        self.pl_line_, = self.pl_ax_.plot(self.flow_time[:n], self.pl_ratio[:n],
                                          **{"color": "C2", "alpha": 0.7, "label": label, **(pl_kw or {})})
        if self.bound_caveat_ is None and np.isfinite(self.pl_constant):
            self.pl_ax_.axhline(self.pl_constant, color="C2", ls=":", lw=1, label="P-L constant m")
        self.pl_ax_.set_ylabel("P-L ratio |grad R|^2 / R")

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, show_pl_ratio=True, log_scale=True, **kwargs):
        """Read the convergence diagnostics of a fitted estimator (or Pipeline) and draw them.

        Parameters
        ----------
        estimator : fitted skflow estimator or Pipeline ending with one
            Needs ``flow_time_``, ``loss_curve_``, ``pl_ratio_curve_``, ``pl_constant_``, ``history_``.
        ax : matplotlib Axes, default=None
            Where to draw.
        show_pl_ratio, log_scale : bool, default=True
            See :meth:`plot`.
        **kwargs
            ``risk_kw``, ``bound_kw``, ``pl_kw`` of :meth:`plot`.

        Returns
        -------
        display : ConvergenceDisplay
            The display, drawn.
        """
        est, _ = _final_step(estimator, caller=cls.__name__)
        report = getattr(est, "convergence_report_", None) or {}
        disp = cls(est.flow_time_, est.loss_curve_, est.pl_ratio_curve_, est.pl_constant_,
                   val_risk=est.history_.get("val_risk"), initial_risk=report.get("initial_risk"),
                   estimator_name=type(est).__name__, bound_caveat=_bound_caveat(est))
        return disp.plot(ax=ax, show_pl_ratio=show_pl_ratio, log_scale=log_scale, **kwargs)


def _wrap(text, width=60):
    """``text`` broken into lines of about ``width`` characters (a legend entry)."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


class KernelSpectrumDisplay:
    """Eigenvalues of the kernel matrix at initialisation: finite width against the closed form.

    Each spectrum is drawn in decreasing order against the eigenvalue index on a log axis, and its smallest
    eigenvalue ``lambda_min`` is marked. Eigenvalues below the round-off of the eigensolver, ``n eps lambda_max``
    (``n`` the size of the matrix, ``eps`` the float64 machine epsilon), are not data: the line stops there, and
    they are drawn as grey crosses at their value (or at the floor of the axis) inside a shaded band labelled
    "below round-off" (a finite-width kernel of ``M`` features has rank at most ``M``: its last ``n - M``
    eigenvalues are zero up to round-off, and may even be negative). A ``lambda_min`` below round-off is marked
    by a hollow triangle at the round-off level.

    Parameters
    ----------
    spectra : list of array-like of shape (n_samples,)
        Finite-width spectra (one per layer for the NODE), each in decreasing order.
    closed_form : array-like of shape (n_samples,) or None
        Spectrum of the closed-form (infinite-width) kernel.
    labels : list of str, default=None
        Legend labels of ``spectra``.
    estimator_name : str, default=None
        Shown in the title.

    Attributes
    ----------
    lines_ : list of matplotlib Line2D
        The finite-width spectra.
    closed_form_line_ : matplotlib Line2D or None
        The closed-form spectrum.
    lambda_min_markers_ : list of matplotlib Line2D
        ``lambda_min`` of each spectrum (finite widths first, the closed form last).
    lambda_min_ : ndarray
        The smallest eigenvalues, in the same order.
    roundoff_ : ndarray
        The round-off level ``n eps lambda_max`` of each spectrum, in the same order.
    below_roundoff_ : ndarray of int
        How many eigenvalues of each spectrum lie below its round-off level.
    lambda_min_below_roundoff_ : ndarray of bool
        Whether each ``lambda_min_`` is below round-off (then it is noise: 0 to the solver's accuracy).
    roundoff_markers_ : matplotlib PathCollection or None
        The crosses of the eigenvalues below round-off (None when there is none).
    roundoff_span_ : matplotlib Polygon or None
        The shaded band "below round-off" (None when no eigenvalue is below round-off).
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure
    """

    def __init__(self, spectra, closed_form=None, *, labels=None, estimator_name=None):
        self.spectra = [np.asarray(s, dtype=np.float64) for s in spectra]
        self.closed_form = None if closed_form is None else np.asarray(closed_form, dtype=np.float64)
        self.labels = labels if labels is not None else [f"finite width {k}" for k in range(len(self.spectra))]
        self.estimator_name = estimator_name

    def plot(self, ax=None, *, floor=1e-16, line_kw=None):
        """Draw the spectra and mark their ``lambda_min``.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        floor : float, default=1e-16
            Relative floor of the log axis: eigenvalues below ``floor`` times the largest (zero or negative ones
            below round-off) are drawn at it.
        line_kw : dict, default=None
            Keyword arguments of the finite-width lines.

        Returns
        -------
        self : KernelSpectrumDisplay
            The display, with its artists set.
        """
        ax = _axes(ax, f"{type(self).__name__}.plot")
        all_s = self.spectra + ([] if self.closed_form is None else [self.closed_form])
        top = max((s.max() for s in all_s if s.size), default=1.0)
        low = floor * top if top > 0 else floor
        eps = np.finfo(np.float64).eps
        self.roundoff_ = np.array([s.size * eps * np.abs(s).max() if s.size else 0.0 for s in all_s])
        below = [s < r for s, r in zip(all_s, self.roundoff_)]
        self.below_roundoff_ = np.array([int(b.sum()) for b in below], dtype=int)

        def data(s, b):  # the eigenvalues above round-off; the line stops where round-off begins
            return np.where(b, np.nan, np.maximum(s, low))

        self.lines_ = [ax.plot(np.arange(1, s.size + 1), data(s, b), **{"lw": 1, "alpha": 0.8, "label": lab,
                                                                         **(line_kw or {})})[0]
                       for s, b, lab in zip(self.spectra, below, self.labels)]
        self.closed_form_line_ = None
        if self.closed_form is not None:
            self.closed_form_line_, = ax.plot(np.arange(1, self.closed_form.size + 1),
                                              data(self.closed_form, below[-1]), "k--", lw=2,
                                              label="closed form (M = inf)")
        self._mark_roundoff(ax, all_s, below, low)
        self._mark_lambda_min(ax, all_s, low)
        ax.set_yscale("log")
        ax.set_xlabel("eigenvalue index")
        ax.set_ylabel("eigenvalue of the kernel matrix at initialisation")
        ax.set_title("kernel spectrum" + (f" ({self.estimator_name})" if self.estimator_name else ""))
        ax.legend(fontsize=7)
        self.ax_, self.figure_ = ax, ax.figure
        return self

    def _mark_roundoff(self, ax, spectra, below, low):
        """The eigenvalues below round-off: grey crosses in a shaded band up to the highest round-off level."""
        self.roundoff_markers_ = self.roundoff_span_ = None
        if not any(b.any() for b in below):
            return
        level = max(float(r) for r, b in zip(self.roundoff_, below) if b.any())
        self.roundoff_span_ = ax.axhspan(low, max(level, low), color="0.85", alpha=0.5, lw=0,
                                         label="below round-off (n eps lambda_max)")
        xs = np.concatenate([np.flatnonzero(b) + 1 for b in below])
        ys = np.concatenate([np.maximum(s[b], low) for s, b in zip(spectra, below)])
        self.roundoff_markers_ = ax.scatter(xs, ys, marker="x", s=12, color="0.45", lw=0.8,
                                            label="eigenvalues below round-off")

    def _mark_lambda_min(self, ax, spectra, low):
        """One marker at ``(n, lambda_min)`` per spectrum (hollow, at the round-off level, when lambda_min is
        below round-off); the legend names only the first."""
        self.lambda_min_ = np.array([s[-1] if s.size else np.nan for s in spectra])
        self.lambda_min_below_roundoff_ = np.array([bool(s.size) and s[-1] < r
                                                    for s, r in zip(spectra, self.roundoff_)], dtype=bool)
        lines = self.lines_ + ([self.closed_form_line_] if self.closed_form_line_ is not None else [])
        self.lambda_min_markers_ = []
        for k, (s, line, noise, r) in enumerate(zip(spectra, lines, self.lambda_min_below_roundoff_,
                                                    self.roundoff_)):
            label = "lambda_min" if k == 0 else "_nolegend_"
            if not s.size:
                marker, = ax.plot([], [], "v", ms=8, color=line.get_color(), label=label)
            elif noise:
                marker, = ax.plot([s.size], [max(r, low)], "v", ms=8, mfc="none", color=line.get_color(),
                                  label=label)
            else:
                marker, = ax.plot([s.size], [max(s[-1], low)], "v", ms=8, color=line.get_color(), label=label)
            self.lambda_min_markers_.append(marker)

    @classmethod
    def from_estimator(cls, estimator, X, *, max_samples=None, ax=None, **kwargs):
        """Kernel spectra of a fitted NODE at initialisation on ``X``.

        :class:`~skflow.MeanFieldNODERegressor`: the layer kernels ``K1_k`` of ``feature_kernel_matrices``
        against :func:`skflow.diagnostics.shl_limit_kernel` (closed form for ``activation='cos'``, else not
        drawn). :class:`~skflow.RKHSNODEClassifier`: the random-feature kernel ``Phi Phi^T`` on the lifted
        inputs against :func:`skflow.diagnostics.kernel_matrix`.

        Parameters
        ----------
        estimator : fitted estimator or Pipeline ending with one
            A fitted :class:`~skflow.MeanFieldNODERegressor` or :class:`~skflow.RKHSNODEClassifier`.
        X : array-like of shape (n_samples, n_features)
            Raw inputs; a Pipeline's preceding steps transform them.
        max_samples : int, default=None
            Rows used (seeded subsample); the estimator's ``kernel_subsample`` (or 1000) when None.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        display : KernelSpectrumDisplay
            The display, drawn.
        """
        est, X = _final_step(estimator, X, caller=f"{cls.__name__} (the kernels of a NODE at initialisation)",
                             supported=("MeanFieldNODERegressor", "RKHSNODEClassifier"))
        if max_samples is None:
            max_samples = getattr(est, "kernel_subsample", None) or 1000
        X = _subsample(X, max_samples)
        if hasattr(est, "feature_kernel_matrices"):
            disp = cls._node(est, X)
        elif hasattr(est, "random_weights_"):
            disp = cls._rkhs(est, X)
        else:
            raise TypeError(f"{cls.__name__} needs a NODE estimator with kernels at initialisation "
                            f"(MeanFieldNODERegressor, RKHSNODEClassifier); got {type(est).__name__}.")
        return disp.plot(ax=ax, **kwargs)

    @classmethod
    def _node(cls, est, X):
        from ..diagnostics import shl_limit_kernel

        spectra = [_spectrum(K) for K in est.feature_kernel_matrices(X, initial=True)]
        closed = None
        if getattr(est, "activation", "cos") == "cos":
            closed = _spectrum(shl_limit_kernel(X, est.feature_init, est.feature_scale, est.nu))
        labels = [f"layer {k} (M = {est.width})" for k in range(len(spectra))]
        return cls(spectra, closed, labels=labels, estimator_name=type(est).__name__)

    @classmethod
    def _rkhs(cls, est, X):
        from ..diagnostics import kernel_matrix
        from ..flows.rkhs import random_features

        W, b = est.random_weights_, est.random_offset_
        Z = np.c_[X, np.zeros((X.shape[0], W.shape[1] - X.shape[1]))]
        with torch.no_grad():
            Phi = random_features(torch.as_tensor(Z), torch.as_tensor(W, dtype=torch.float64),
                                  torch.as_tensor(b, dtype=torch.float64)).numpy()
        closed = _spectrum(kernel_matrix(X, est.kernel, est.length_scale_, est.nu))
        return cls([_spectrum(Phi @ Phi.T)], closed, labels=[f"random features (M = {W.shape[0]})"],
                   estimator_name=type(est).__name__)


class FeatureDistributionDisplay:
    """The distribution of VarPro's features: a density on the circle, or the first two coordinates.

    With features on the circle (``feature_domain='sphere'``, two inputs) the angles ``atan2(w_1, w_0)`` are
    binned into a density w.r.t. ``d theta`` and drawn against a reference density (a teacher, or the
    ultra-fast diffusion solution); one-dimensional features (e.g. ``feature_domain='torus'`` on one input) are
    binned into a density of ``w_0``; otherwise the first two coordinates of the features are scattered. On a
    torus (``period``) the coordinates are drawn modulo the period, in ``[-L/2, L/2)``.

    Parameters
    ----------
    features : array-like of shape (M, dim)
        The features (rows ``omega_i``).
    on_circle : bool
        Whether the features lie on the unit circle of ``R^2``.
    initial_features : array-like of shape (M, dim), default=None
        The features at initialisation, drawn for comparison.
    reference : tuple (theta, density), default=None
        A reference density on the grid ``theta`` (circle only).
    reference_label : str, default='reference density'
        Legend label of the reference density.
    estimator_name : str, default=None
        Name shown in the title.
    period : float, default=None
        The period ``L`` of a torus the features live on (``torus_period`` of the estimator), or None.

    Attributes
    ----------
    line_ : matplotlib Line2D
        The binned feature density (circle, one dimension) or the scatter of the features.
    initial_line_ : matplotlib Line2D or None
        The same for the initial features.
    reference_line_ : matplotlib Line2D or None
        The reference density.
    angles_ : ndarray or None
        The feature angles (circle only).
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure
    """

    def __init__(self, features, on_circle, *, initial_features=None, reference=None,
                 reference_label="reference density", estimator_name=None, period=None):
        self.features = _as_rows(features)
        self.on_circle = bool(on_circle)
        self.initial_features = None if initial_features is None else _as_rows(initial_features)
        self.reference = reference
        self.reference_label = reference_label
        self.estimator_name = estimator_name
        self.period = None if period is None else float(period)

    @staticmethod
    def angle_density(features, bins=36):
        """Histogram density (w.r.t. ``d theta``) of the angles of ``features``.

        Parameters
        ----------
        features : array-like of shape (M, 2)
            Points of the plane; their angles ``atan2(w_1, w_0)`` are binned.
        bins : int, default=36
            Number of bins on ``[-pi, pi]``.

        Returns
        -------
        centres : ndarray of shape (bins,)
            The bin centres.
        density : ndarray of shape (bins,)
            The density in each bin.
        """
        theta = np.arctan2(features[:, 1], features[:, 0])
        density, edges = np.histogram(theta, bins=bins, range=(-np.pi, np.pi), density=True)
        return 0.5 * (edges[1:] + edges[:-1]), density

    def plot(self, ax=None, *, bins=36, line_kw=None):
        """Draw the distribution.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        bins : int, default=36
            Number of angle bins on the circle.
        line_kw : dict, default=None
            Keyword arguments of the features' line.

        Returns
        -------
        self : FeatureDistributionDisplay
            The display, with its artists set.
        """
        ax = _axes(ax, f"{type(self).__name__}.plot")
        self.initial_line_ = self.reference_line_ = self.angles_ = None
        if self.on_circle:
            self._plot_circle(ax, bins, line_kw or {})
        elif self.features.shape[1] == 1:
            self._plot_line(ax, bins, line_kw or {})
        else:
            self._plot_plane(ax, line_kw or {})
        if self.estimator_name:
            ax.set_title(f"features of {self.estimator_name}")
        ax.legend(fontsize=8)
        self.ax_, self.figure_ = ax, ax.figure
        return self

    def _plot_circle(self, ax, bins, line_kw):
        self.angles_ = np.arctan2(self.features[:, 1], self.features[:, 0])
        centres, dens = self.angle_density(self.features, bins)
        if self.initial_features is not None:
            c0, d0 = self.angle_density(self.initial_features, bins)
            self.initial_line_, = ax.plot(c0, d0, drawstyle="steps-mid", color="0.6", label="initial features")
        self.line_, = ax.plot(centres, dens, **{"drawstyle": "steps-mid", "lw": 2, "color": "C0",
                                               "label": f"features (M = {len(self.features)})", **line_kw})
        if self.reference is not None:
            grid, ref = (np.asarray(a, dtype=np.float64) for a in self.reference)
            self.reference_line_, = ax.plot(grid, ref, "k--", lw=1.5, label=self.reference_label)
        ax.set_xlim(-np.pi, np.pi)
        ax.set_xlabel("angle theta = atan2(w_1, w_0)")
        ax.set_ylabel("density (d theta)")

    def _wrapped(self, W):
        """``W`` modulo the period, in ``[-L/2, L/2)`` (unchanged off a torus)."""
        if self.period is None:
            return W
        L = self.period
        W = W - L * np.floor(W / L + 0.5)
        return np.where(W >= 0.5 * L, W - L, W)

    def _plot_line(self, ax, bins, line_kw):
        """One-dimensional features: a histogram density of ``w_0`` (on ``[-L/2, L/2)`` on a torus)."""
        w = self._wrapped(self.features[:, 0])
        w0 = None if self.initial_features is None else self._wrapped(self.initial_features[:, 0])
        if self.period is not None:
            span = (-0.5 * self.period, 0.5 * self.period)
        else:
            both = w if w0 is None else np.concatenate([w, w0])
            lo, hi = (float(both.min()), float(both.max())) if both.size else (-1.0, 1.0)
            span = (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)

        def density(v):
            dens, edges = np.histogram(v, bins=bins, range=span, density=v.size > 0)
            return 0.5 * (edges[1:] + edges[:-1]), dens

        if w0 is not None:
            self.initial_line_, = ax.plot(*density(w0), drawstyle="steps-mid", color="0.6", label="initial features")
        self.line_, = ax.plot(*density(w), **{"drawstyle": "steps-mid", "lw": 2, "color": "C0",
                                              "label": f"features (M = {len(self.features)})", **line_kw})
        ax.set_xlim(*span)
        ax.set_xlabel("w_0" + ("" if self.period is None else f" (modulo {self.period:g})"))
        ax.set_ylabel("density (d w_0)")

    def _plot_plane(self, ax, line_kw):
        W = self._wrapped(self.features)
        if self.initial_features is not None:
            W0 = self._wrapped(self.initial_features)
            self.initial_line_, = ax.plot(W0[:, 0], W0[:, 1], ".", color="0.6", ms=4, label="initial features")
        self.line_, = ax.plot(W[:, 0], W[:, 1], **{"ls": "", "marker": ".", "ms": 5, "color": "C0",
                                                   "label": f"features (M = {len(self.features)})", **line_kw})
        if self.period is not None:
            ax.set_xlim(-0.5 * self.period, 0.5 * self.period)
            ax.set_ylim(-0.5 * self.period, 0.5 * self.period)
        ax.set_xlabel("w_0")
        ax.set_ylabel("w_1")

    @classmethod
    def from_estimator(cls, estimator, *, reference=None, reference_label=None, show_initial=True, ax=None,
                       **kwargs):
        """Draw the features of a fitted :class:`~skflow.VarProSHLRegressor` (or a Pipeline ending with one).

        Parameters
        ----------
        estimator : fitted VarProSHLRegressor or Pipeline
            The estimator, or a Pipeline ending with it.
        reference : callable, array-like of shape (n_grid,) or tuple (theta, density), default=None
            Reference density on the circle: a function of the angle (e.g.
            ``lambda t: teacher_density(t, gamma)``), its values on the cell centres
            ``-pi + (j + 1/2) 2 pi / n_grid`` of :func:`skflow.diffusion.ultrafast_diffusion_s1`, or a pair
            ``(theta, density)`` such as ``(theta, densities[-1])`` of that solver.
        reference_label : str, default=None
            Legend label; 'reference density' when None.
        show_initial : bool, default=True
            Also draw ``feature_history_[0]`` when the estimator stored it.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        display : FeatureDistributionDisplay
            The display, drawn.
        """
        est, _ = _final_step(estimator, caller=f"{cls.__name__} (the features of VarPro)",
                             supported=("VarProSHLRegressor",))
        if not hasattr(est, "features_"):
            raise TypeError(f"{cls.__name__} needs a VarPro estimator (features_); got {type(est).__name__}.")
        features = _as_rows(est.features_)
        domain = getattr(est, "feature_domain", "euclidean")
        on_circle = domain == "sphere" and features.shape[1] == 2
        history = getattr(est, "feature_history_", None) if show_initial else None
        initial = history[0] if history is not None and len(history) else None
        if reference is not None and not on_circle:
            raise ValueError("a reference density needs features on the circle (feature_domain='sphere', d=2).")
        period = getattr(est, "torus_period", None) if domain == "torus" else None
        disp = cls(features, on_circle, initial_features=initial, reference=_reference_on_grid(reference),
                   reference_label=reference_label or "reference density", estimator_name=type(est).__name__,
                   period=period)
        return disp.plot(ax=ax, **kwargs)


def _as_rows(features):
    """Features as a float64 array of shape (M, dim): a 1-D array is M one-dimensional features."""
    F = np.asarray(features, dtype=np.float64)
    return F.reshape(-1, 1) if F.ndim == 1 else F


def _reference_on_grid(reference, n_grid=512):
    """``(theta, density)`` from a callable, an array on the cell centres, or a pair; None stays None."""
    if reference is None:
        return None
    if callable(reference):
        theta = np.linspace(-np.pi, np.pi, n_grid)
        return theta, np.asarray(reference(theta), dtype=np.float64)
    if isinstance(reference, tuple) and len(reference) == 2:
        return tuple(np.asarray(a, dtype=np.float64).reshape(-1) for a in reference)
    density = np.asarray(reference, dtype=np.float64).reshape(-1)
    h = 2 * np.pi / density.size
    return -np.pi + (np.arange(density.size) + 0.5) * h, density
