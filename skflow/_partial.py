"""``partial_fit`` for the minibatch estimators (streaming and out-of-core training), as in ``MLPClassifier``.

Each call runs one epoch of the estimator's minibatch steps over the rows it is given (one step with
``batch_size=None``), continuing the model of the previous call or of ``fit``; the first call builds the model
(``classes=`` then names every label of the stream, for a classifier). The fit loop is the estimator's own
(:meth:`skflow._base.BaseFlowEstimator._partial_fit`): the same steps, history, safeguards and transaction.
"""

__all__ = ["PartialFitClassifierMixin", "PartialFitRegressorMixin"]


class PartialFitClassifierMixin:
    """``partial_fit(X, y, classes=None, sample_weight=None)`` for a classifier."""

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Run one epoch of minibatch steps on ``(X, y)``, continuing the model (the first call builds it).

        As ``MLPClassifier.partial_fit``: no early stopping and no ``max_iter`` / ``tol`` rule; ``n_iter_`` and the
        history grow by one iteration per call; the time step of ``learning_rate='auto'`` is measured on the first
        call's rows. ``class_weight='balanced'`` is refused (it needs the counts of all the data).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The rows of this chunk of the stream.
        y : array-like of shape (n_samples,)
            Their labels, all in ``classes``.
        classes : array-like of shape (n_classes,), default=None
            Every label of the stream: required on the first call, ignored (if equal) on later ones.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows (see ``fit``).

        Returns
        -------
        self : object
            The estimator, trained one more epoch.
        """
        return self._partial_fit(X, y, sample_weight, classes)


class PartialFitRegressorMixin:
    """``partial_fit(X, y, sample_weight=None)`` for a regressor."""

    def partial_fit(self, X, y, sample_weight=None):
        """Run one epoch of minibatch steps on ``(X, y)``, continuing the model (the first call builds it).

        As ``MLPRegressor.partial_fit``: no early stopping and no ``max_iter`` / ``tol`` rule; ``n_iter_`` and the
        history grow by one iteration per call. Targets are standardised with the moments of the first call's rows
        (the units of the stream are fixed then); the time step of ``learning_rate='auto'`` is measured on them
        too.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The rows of this chunk of the stream.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Their targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows (see ``fit``).

        Returns
        -------
        self : object
            The estimator, trained one more epoch.
        """
        return self._partial_fit(X, y, sample_weight)
