"""Target plumbing of the two kinds of estimators, on top of :class:`skflow._base.BaseFlowEstimator`.

* :class:`BaseFlowClassifier` -- labels, one-hot targets, the validation accuracy of early stopping, and the
  prediction API (``decision_function``, ``predict_proba``, ``predict``) from the model's per-class outputs;
* :class:`BaseFlowRegressor` -- numeric targets, their standardisation (as ``StandardScaler`` does), multi-output.
"""

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from ._base import BaseFlowEstimator
from ._rows import input_namespace_output

__all__ = ["BaseFlowClassifier", "BaseFlowRegressor"]

class BaseFlowClassifier(ClassifierMixin, BaseFlowEstimator):
    """Classification plumbing shared by the classifiers: labels, one-hot targets, and the prediction API
    from the model's per-class outputs (``_raw_output``).

    ``classes_`` is the sorted set of labels (in a data-parallel fit, the union of every rank's); the engine
    fits one-hot codes of them. :meth:`_proba_scores` maps the outputs to the scores whose softmax is
    :meth:`predict_proba` (the outputs themselves by default).
    """

    _stratify = True

    def _validate_fit_data(self, X, y):
        X, y = super()._validate_fit_data(X, y)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        return X, y

    def _encode_targets(self, y):
        dp = getattr(self, "_data_parallel", None)
        if dp is None:
            classes, encoded = np.unique(y, return_inverse=True)
        else:
            # data-parallel: the sorted union of every rank's labels, so that all the ranks encode alike
            classes = np.unique(np.concatenate([np.asarray(c) for c in dp.all_gather_object(np.unique(y))]))
            encoded = np.searchsorted(classes, y)
        if classes.shape[0] < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in the data; got only one class: "
                f"{classes[0]!r}."
            )
        self.classes_ = classes
        Y = np.zeros((y.shape[0], classes.shape[0]), dtype=np.float64)
        Y[np.arange(y.shape[0]), encoded] = 1.0
        return Y

    def _decode_output(self, out):
        return out

    def _validation_score(self, flow, X, Y):
        """Early stopping: ``(accuracy, risk)`` on the held-out rows, from one forward pass where the engine can
        score given outputs (``output_risk``). The parameters of the best accuracy are restored (as
        ``MLPClassifier`` monitors it), among equal accuracies those of the least validation risk."""
        F = flow.forward(X)
        correct = (F.argmax(dim=1) == Y.argmax(dim=1)).to(X.dtype).sum()
        risk = flow.output_risk(F, Y) if hasattr(flow, "output_risk") else flow.risk(X, Y)
        return flow.reduce_rows(X.shape[0], correct)[0], risk

    def _proba_scores(self, F):
        """The scores whose softmax is :meth:`predict_proba`, from the outputs ``F`` (n_samples, n_classes)."""
        return F

    @input_namespace_output
    def decision_function(self, X):
        """The model's per-class outputs (see the class documentation).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input samples.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_classes)
            For two classes ``F_1 - F_0`` (positive for ``classes_[1]``), else the outputs of every class.
            Under ``sklearn.set_config(array_api_dispatch=True)`` a torch ``X`` gives a tensor on its device.
        """
        F = self._raw_output(X)
        return F[:, 1] - F[:, 0] if F.shape[1] == 2 else F

    @input_namespace_output
    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, computed stably.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input samples.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            The log-probabilities, columns in the order of ``classes_``.
            Under ``sklearn.set_config(array_api_dispatch=True)`` a torch ``X`` gives a tensor on its device.
        """
        Z = self._proba_scores(self._raw_output(X))
        Z = Z - Z.max(axis=1, keepdims=True)
        return Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))

    @input_namespace_output
    def predict_proba(self, X):
        """Softmax of the scores (see the class documentation); rows sum to one.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input samples.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            The probabilities, columns in the order of ``classes_``.
            Under ``sklearn.set_config(array_api_dispatch=True)`` a torch ``X`` gives a tensor on its device.
        """
        P = np.exp(self.predict_log_proba(X))
        return P / P.sum(axis=1, keepdims=True)  # renormalise the last ulp away

    @input_namespace_output
    def predict(self, X):
        """Class with the largest output.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input samples.

        Returns
        -------
        ndarray of shape (n_samples,)
            The predicted class labels.
            Under ``sklearn.set_config(array_api_dispatch=True)`` a torch ``X`` gives a tensor of labels on its
            device when the labels are numbers (string labels stay a NumPy array).
        """
        F = self._raw_output(X)  # checks is-fitted before classes_ is touched
        return self.classes_[np.argmax(F, axis=1)]


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
            if getattr(self, "_data_parallel", None) is not None:
                mean, scale, n = self._global_target_moments(Y2, with_count=True)
            else:
                # moments of Y / max|Y|: they cannot overflow, whatever the magnitude of y
                peak = np.max(np.abs(Y2), axis=0) if Y2.shape[0] else np.ones(Y2.shape[1])
                peak = np.where((peak > 0) & np.isfinite(peak), peak, 1.0)
                mean = (Y2 / peak).mean(axis=0) * peak
                scale = (Y2 / peak).std(axis=0) * peak
                n = Y2.shape[0]
            # StandardScaler's rule (sklearn.preprocessing._data._is_constant_feature): a target is constant when
            # its variance is zero up to the round-off of the two-pass algorithm, var <= n eps var + (n eps mean)^2
            # (Chan, Golub & LeVeque); only then is it kept centred but unscaled. Any other scale, however small
            # (y of std 1e-14), is divided out. Evaluated relative to max(|mean|, scale): no under- or overflow.
            eps = np.finfo(np.float64).eps
            ref = np.maximum(np.abs(mean), scale)
            ref = np.where((ref > 0) & np.isfinite(ref), ref, 1.0)
            var, mu = (scale / ref) ** 2, np.abs(mean) / ref
            constant = (scale == 0) | (var <= n * eps * var + (n * eps * mu) ** 2)
            scale = np.where(constant, 1.0, scale)
        else:
            mean, scale = np.zeros(Y2.shape[1]), np.ones(Y2.shape[1])
        self._y_ndim = Y.ndim
        self.y_mean_, self.y_scale_ = mean, scale
        return (Y2 - mean) / scale

    def _global_target_moments(self, Y2, with_count=False):
        """Data-parallel: the mean and standard deviation of the targets of all the ranks (as a single process
        computes them, to round-off), from the all-reduced peak, sum and sum of squared deviations per output;
        with ``with_count``, the number of rows of all the ranks too."""
        dp = self._data_parallel
        (peak,) = dp.all_reduce_max(torch.as_tensor(np.max(np.abs(Y2), axis=0) if Y2.shape[0]
                                                    else np.zeros(Y2.shape[1])))
        peak = peak.numpy()
        peak = np.where((peak > 0) & np.isfinite(peak), peak, 1.0)
        Z = Y2 / peak
        total, count = dp.all_reduce_sum(torch.as_tensor(Z.sum(axis=0)),
                                         torch.tensor([float(Z.shape[0])], dtype=torch.float64))
        mean = total.numpy() / count.item()
        (sq,) = dp.all_reduce_sum(torch.as_tensor(((Z - mean) ** 2).sum(axis=0)))
        moments = (mean * peak, np.sqrt(sq.numpy() / count.item()) * peak)
        return (*moments, int(round(count.item()))) if with_count else moments

    def _decode_output(self, out):
        pred = out * self.y_scale_ + self.y_mean_
        return pred[:, 0] if self._y_ndim == 1 else pred

    @input_namespace_output
    def predict(self, X):
        """Predict targets, on the scale of the ``y`` given to ``fit``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input samples.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The predicted targets.
            Under ``sklearn.set_config(array_api_dispatch=True)`` a torch ``X`` gives a tensor on its device.
        """
        return self._decode_output(self._raw_output(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
