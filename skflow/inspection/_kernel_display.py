"""KernelSpectrumDisplay: the kernel spectrum of a NODE at initialisation, finite width against closed form."""

import numpy as np
import torch

from ._plotting import axes, final_step, spectrum, subsample

__all__ = ["KernelSpectrumDisplay"]


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
        ax = axes(ax, f"{type(self).__name__}.plot")
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
        est, X = final_step(estimator, X, caller=f"{cls.__name__} (the kernels of a NODE at initialisation)",
                             supported=("MeanFieldNODERegressor", "RKHSNODEClassifier"))
        if max_samples is None:
            max_samples = getattr(est, "kernel_subsample", None) or 1000
        X = subsample(X, max_samples)
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

        spectra = [spectrum(K) for K in est.feature_kernel_matrices(X, initial=True)]
        closed = None
        if getattr(est, "activation", "cos") == "cos":
            closed = spectrum(shl_limit_kernel(X, est.feature_init, est.feature_scale, est.nu))
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
        closed = spectrum(kernel_matrix(X, est.kernel, est.length_scale_, est.nu))
        return cls([spectrum(Phi @ Phi.T)], closed, labels=[f"random features (M = {W.shape[0]})"],
                   estimator_name=type(est).__name__)
