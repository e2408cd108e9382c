"""Target plumbing of the two kinds of estimators, on top of :class:`skflow._base.BaseFlowEstimator`.

* :class:`BaseFlowClassifier` -- labels, one-hot targets, the validation accuracy of early stopping, and the
  prediction API (``decision_function``, ``predict_proba``, ``predict``) from the model's per-class outputs;
* :class:`BaseFlowRegressor` -- numeric targets, their standardisation (as ``StandardScaler`` does), multi-output.
"""

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from . import distributed
from ._base import BaseFlowEstimator
from ._rows import input_namespace_output
from .flows._ops import split_weights, weighted_sum

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

    def _class_weights(self, y):
        """Per-row weights from the classifier's ``class_weight`` parameter (None: none); 'balanced' counts the
        classes of every rank in a data-parallel fit."""
        if self.class_weight is None:
            return None
        if self.class_weight == "balanced" and self._partial_call:
            raise ValueError("class_weight='balanced' needs the class counts of all the data, which partial_fit "
                             "never sees; pass class_weight as a dict of weights (or sample_weight) instead.")
        dp = distributed.current()
        if self.class_weight == "balanced" and dp is not None:
            labels = [np.asarray(v) for v in dp.all_gather_object(np.asarray(y))]
            classes, counts = np.unique(np.concatenate(labels), return_counts=True)
            per_class = counts.sum() / (classes.shape[0] * counts)
            return per_class[np.searchsorted(classes, y)]
        if isinstance(self.class_weight, dict):
            unknown = set(self.class_weight) - set(np.unique(y).tolist())
            if unknown and dp is None:
                raise ValueError(f"class_weight names labels not in y: {sorted(unknown, key=str)!r}; the labels "
                                 f"are {np.unique(y).tolist()!r}.")
            return np.array([float(self.class_weight.get(label, 1.0)) for label in y.tolist()])
        return compute_sample_weight(self.class_weight, y)

    def _partial_classes_of(self, y):
        """``partial_fit``: the classes of the stream (``classes=`` of the first call, then ``classes_``)."""
        given = self.__dict__.get("_partial_classes")
        if hasattr(self, "classes_") and (given is None or np.array_equal(np.unique(given), self.classes_)):
            classes = self.classes_
        elif hasattr(self, "classes_"):
            raise ValueError(f"classes={list(given)!r} differs from the classes of the first partial_fit call "
                             f"{list(self.classes_)!r}.")
        elif given is None:
            raise ValueError(f"{type(self).__name__}.partial_fit needs classes= (every label of the stream) on its "
                             "first call.")
        else:
            classes = np.unique(np.asarray(given))
        unknown = np.setdiff1d(np.unique(y), classes)
        if unknown.size:
            raise ValueError(f"y contains labels not in classes: {unknown.tolist()!r}; the classes are "
                             f"{classes.tolist()!r}.")
        return classes, np.searchsorted(classes, y)

    def _encode_targets(self, y, ctx, sample_weight=None):
        dp = ctx.process_group
        if self._partial_call:
            classes, encoded = self._partial_classes_of(y)
        elif dp is None:
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
        labels, w = split_weights(Y, flow.weighted)  # with sample weights, the weighted accuracy
        correct = weighted_sum((F.argmax(dim=1) == labels.argmax(dim=1)).to(X.dtype), w)
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

    def _encode_targets(self, y, ctx, sample_weight=None):
        Y = np.asarray(y, dtype=np.float64)
        Y2 = Y[:, None] if Y.ndim == 1 else Y
        continued = (self.warm_start or self._partial_call) and hasattr(self, "y_mean_")
        if continued and self.y_mean_.shape[0] == Y2.shape[1]:
            # a warm start keeps the units of the first fit, partial_fit those of its first call
            mean, scale = self.y_mean_, self.y_scale_
        elif self._scales_targets():
            if ctx.process_group is not None:
                mean, scale, n = self._global_target_moments(Y2, ctx.process_group, sample_weight)
            else:
                # moments of Y / max|Y|: they cannot overflow, whatever the magnitude of y; with sample weights,
                # the weighted moments (as StandardScaler(...).fit(y, sample_weight=w))
                w = np.ones(Y2.shape[0]) if sample_weight is None else sample_weight
                peak = np.max(np.abs(Y2[w > 0]), axis=0) if np.any(w > 0) else np.ones(Y2.shape[1])
                peak = np.where((peak > 0) & np.isfinite(peak), peak, 1.0)
                Z = Y2 / peak
                if sample_weight is None:
                    mean, scale = Z.mean(axis=0) * peak, Z.std(axis=0) * peak
                else:
                    mean = np.average(Z, axis=0, weights=w)
                    scale = np.sqrt(np.average((Z - mean) ** 2, axis=0, weights=w)) * peak
                    mean = mean * peak
                n = int(np.count_nonzero(w))
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

    @staticmethod
    def _global_target_moments(Y2, dp, sample_weight=None):
        """Data-parallel: the (weighted) mean and standard deviation of the targets of all the ranks (as a single
        process computes them, to round-off), from the all-reduced peak, sums and sums of squared deviations per
        output, and the number of weighted rows of all the ranks."""
        w = np.ones(Y2.shape[0]) if sample_weight is None else sample_weight
        kept = Y2[w > 0]
        (peak,) = dp.all_reduce_max(torch.as_tensor(np.max(np.abs(kept), axis=0) if kept.shape[0]
                                                    else np.zeros(Y2.shape[1])))
        peak = peak.numpy()
        peak = np.where((peak > 0) & np.isfinite(peak), peak, 1.0)
        Z = Y2 / peak
        total, weight, count = dp.all_reduce_sum(
            torch.as_tensor((Z * w[:, None]).sum(axis=0)), torch.tensor([float(w.sum())], dtype=torch.float64),
            torch.tensor([float(np.count_nonzero(w))], dtype=torch.float64))
        mean = total.numpy() / weight.item()
        (sq,) = dp.all_reduce_sum(torch.as_tensor((((Z - mean) ** 2) * w[:, None]).sum(axis=0)))
        return mean * peak, np.sqrt(sq.numpy() / weight.item()) * peak, int(round(count.item()))

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
