"""The convergence certificate of an estimator before training: :func:`certify` (thesis Thm. II.3, II.7).

The mathematics live in :mod:`skflow._certificate`, below the estimators; this module asks the estimator for the
data and the initialisation its ``fit`` would start from, through one hook, and hands them to
:func:`skflow._certificate.node_certificate`.

The hook: ``estimator._initial_state(X, y)`` returns the keyword arguments of :func:`node_certificate` (the
training data as the estimator would train on them, its exact initial particles, and its parameters). An
estimator without it cannot be certified (:class:`TypeError`); :class:`skflow.MeanFieldNODERegressor` has it.
"""

from sklearn.base import clone
from sklearn.pipeline import Pipeline

from .._certificate import CERTIFY_GRID, ConvergenceCertificate, node_certificate

__all__ = ["CERTIFY_GRID", "ConvergenceCertificate", "certify"]


def _unwrap(estimator, X, y):
    """The final estimator and its ``_initial_state`` hook, and ``X`` transformed by the previous steps of a
    Pipeline (``fit_transform`` on clones); :class:`TypeError` for an estimator without the hook."""
    final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    hook = getattr(final, "_initial_state", None)
    if not callable(hook):
        name = type(final).__name__
        inside = f" (the last step of {type(estimator).__name__})" if final is not estimator else ""
        raise TypeError(f"certify covers MeanFieldNODERegressor only, got {name}{inside}: it has no initialisation "
                        "to certify (the sufficient P-L condition of Thm. II.7 is a property of the mean-field NODE).")
    if final is not estimator and len(estimator.steps) > 1:
        X = clone(Pipeline(estimator.steps[:-1])).fit_transform(X, y)
    return final, hook, X


def certify(estimator, X, y):
    """Certificate of the sufficient local P-L condition before training (thesis Thm. II.3, II.7, Prop. II.6.1).

    Parameters
    ----------
    estimator : MeanFieldNODERegressor or Pipeline
        Fitted or not; a Pipeline whose last step is one (``X`` goes through the previous steps' ``fit_transform``).
        Its parameters fix the initialisation: with an int ``random_state`` the certificate is computed on the
        exact initial particles of ``fit`` (with ``early_stopping=False``; with early stopping ``fit`` certifies
        its training split). ``output_scale='certify'`` picks the smallest certified scale of :data:`CERTIFY_GRID`.
    X : array-like of shape (n_samples, n_features)
        The training inputs.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Standardised as the estimator would (``scale_targets``).

    Returns
    -------
    ConvergenceCertificate
        ``lambda_0`` (Eq. II.39), ``initial_risk``, ``pl_constant_init`` (Eq. II.41), ``radius``, ``condition_holds``
        (Eq. II.10), ``predicted_rate`` and ``reason``; see :func:`skflow._certificate.node_certificate`.

    Raises
    ------
    TypeError
        When the estimator (or the last step of the Pipeline) is not a :class:`skflow.MeanFieldNODERegressor`:
        certify asks it for its initialisation through its ``_initial_state(X, y)`` hook.
    """
    _, initial_state, X = _unwrap(estimator, X, y)
    return node_certificate(**initial_state(X, y))
