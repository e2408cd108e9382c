"""FeatureDistributionDisplay: the distribution of VarPro's features (circle, line, plane or torus)."""

import numpy as np

from ._plotting import axes, final_step

__all__ = ["FeatureDistributionDisplay"]


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
        ax = axes(ax, f"{type(self).__name__}.plot")
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
        est, _ = final_step(estimator, caller=f"{cls.__name__} (the features of VarPro)",
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
