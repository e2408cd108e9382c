"""scikit-learn style Displays of fitted flows: convergence, kernel spectrum, feature distribution.

Each Display holds the arrays it draws; ``plot(ax=None, ...)`` draws them and sets ``figure_``, ``ax_`` and the
artists, and the classmethod ``from_estimator`` reads the fitted attributes of an estimator (or of the last
step of a :class:`~sklearn.pipeline.Pipeline`) and calls ``plot``. matplotlib is imported only inside ``plot``.
:class:`ConvergenceDisplay` lives here, :class:`KernelSpectrumDisplay` in ``_kernel_display.py`` and
:class:`FeatureDistributionDisplay` in ``_feature_display.py``.
"""

import numpy as np

from ._feature_display import FeatureDistributionDisplay
from ._kernel_display import KernelSpectrumDisplay
from ._plotting import axes, final_step, wrap_text

__all__ = ["ConvergenceDisplay", "FeatureDistributionDisplay", "KernelSpectrumDisplay"]


def _bound_caveat(est):
    """Why the P-L bound ``R(0) exp(-m t)`` does not apply to a fit, or None where the theory gives it.

    The bound is a property of the gradient flow: it holds for full-batch steps without momentum (the explicit
    Euler scheme of the flow, at a stable time step). Minibatch steps follow another trajectory (their ratio is
    measured on the minibatches), and momentum averages past gradients: for these the training risk can lie well
    above the "bound" (issue 19 reports 3.5 times above it for an RKHS fit with minibatches and momentum 0.9)."""
    reasons = []
    n_batches = getattr(est, "n_batches_", None)  # minibatches per iteration of the fit
    minibatch = n_batches > 1 if n_batches is not None else getattr(est, "batch_size", None) is not None
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
        ax = axes(ax, f"{type(self).__name__}.plot")
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
            caveat, = ax.plot([], [], ls="", label=wrap_text(self.bound_caveat_))
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
        est, _ = final_step(estimator, caller=cls.__name__)
        report = getattr(est, "convergence_report_", None) or {}
        disp = cls(est.flow_time_, est.loss_curve_, est.pl_ratio_curve_, est.pl_constant_,
                   val_risk=est.history_.get("val_risk"), initial_risk=report.get("initial_risk"),
                   estimator_name=type(est).__name__, bound_caveat=_bound_caveat(est))
        return disp.plot(ax=ax, show_pl_ratio=show_pl_ratio, log_scale=log_scale, **kwargs)
