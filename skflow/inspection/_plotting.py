"""What the Displays of :mod:`skflow.inspection` share: matplotlib imported lazily, the estimator behind a
Pipeline (with a clear error for one a Display does not support), seeded subsamples and spectra."""

import textwrap

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_array, check_is_fitted

__all__ = ["ALL_ESTIMATORS", "axes", "describe", "final_step", "pyplot", "spectrum", "subsample", "wrap_text"]


def pyplot(caller):
    """Import ``matplotlib.pyplot`` lazily, with an installation hint when matplotlib is missing."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            f"{caller} requires matplotlib: pip install 'skflow[examples]' (or pip install matplotlib)."
        ) from exc
    return plt


def axes(ax, caller):
    """The axes to draw on: ``ax``, or those of a new figure."""
    plt = pyplot(caller)
    if ax is None:
        _, ax = plt.subplots()
    return ax


#: the estimators each Display reads, by class name (for the error of an unsupported one)
ALL_ESTIMATORS = ("MeanFieldNODERegressor", "RKHSNODEClassifier", "VarProSHLRegressor", "VarProNetRegressor",
                   "VarProNetClassifier")


def describe(estimator):
    """``'Ridge'``, or ``'a Pipeline ending with Ridge'``."""
    if isinstance(estimator, Pipeline):
        return f"a Pipeline ending with {type(estimator[-1]).__name__}"
    return type(estimator).__name__


def final_step(estimator, X=None, *, caller=None, supports=None, supported=ALL_ESTIMATORS):
    """The fitted last step of a Pipeline (or the estimator itself), and ``X`` through the preceding steps.

    The (last step) estimator must be an instance of one of the ``supported`` skflow classes (by name) for which
    ``supports(est)`` holds: a clear TypeError naming it and the supported estimators otherwise, before anything
    is transformed or checked for fitting."""
    from ..node import MeanFieldNODERegressor
    from ..rkhs import RKHSNODEClassifier
    from ..varpro import VarProSHLRegressor
    from ..varpronet import VarProNetClassifier, VarProNetRegressor

    known = {cls.__name__: cls for cls in (MeanFieldNODERegressor, RKHSNODEClassifier, VarProSHLRegressor,
                                           VarProNetRegressor, VarProNetClassifier)}
    final = estimator[-1] if isinstance(estimator, Pipeline) and len(estimator) else estimator
    classes = tuple(known[name] for name in supported)
    ok = isinstance(final, classes) and (supports is None or supports(final))
    if not ok:
        raise TypeError(
            f"{caller or 'this Display'} supports the skflow estimators {', '.join(supported)} (fitted), or a "
            f"Pipeline ending with one; got {describe(estimator)}."
        )
    if isinstance(estimator, Pipeline):
        head, estimator = estimator[:-1], estimator[-1]
        check_is_fitted(estimator)
        if X is not None and len(head):
            X = head.transform(X)
    check_is_fitted(estimator)
    return estimator, X


def subsample(X, max_samples):
    """At most ``max_samples`` rows of ``X``, chosen with ``RandomState(0)`` and kept in order."""
    X = check_array(X, dtype=np.float64)
    if max_samples is None or X.shape[0] <= max_samples:
        return X
    idx = np.sort(np.random.RandomState(0).choice(X.shape[0], int(max_samples), replace=False))
    return X[idx]


def spectrum(K):
    """Eigenvalues of a symmetric matrix in decreasing order, in float64."""
    K = np.asarray(K, dtype=np.float64)
    return np.linalg.eigvalsh(0.5 * (K + K.T))[::-1]


def wrap_text(text, width=60):
    """``text`` broken into lines of about ``width`` characters (a legend entry)."""
    return "\n".join(textwrap.wrap(text, width))
