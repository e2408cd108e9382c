"""Sample and class weights of a fit (``../shared/SPEC.md`` §5), mixed into :class:`skflow._base.BaseFlowEstimator`.

The weights are validated here and ride with the rows as the last column of the encoded targets (see
:attr:`skflow.flows._flow.Flow.weighted`), normalised to mean 1 over the rows of every rank.
"""

import numpy as np
from sklearn.utils.validation import _check_sample_weight

from . import distributed
from ._training import normalise_weights

__all__ = ["SampleWeightMixin"]


class SampleWeightMixin:
    """Validation and normalisation of ``sample_weight`` (and of a classifier's ``class_weight``)."""

    def _validate_sample_weight(self, sample_weight, X, y):
        """The fit's weights as float64 (n,), or None for equal weights; a clear error for a bad weight vector.

        The class weights of a classifier (:meth:`_class_weights`) multiply them."""
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        class_w = self._class_weights(y)
        if class_w is not None:
            sample_weight = class_w if sample_weight is None else sample_weight * class_w
        if sample_weight is None:
            return None
        if not np.all(np.isfinite(sample_weight)):
            raise ValueError("sample_weight contains NaN or infinity.")
        if X.shape[0] and not np.any(sample_weight > 0) and distributed.current() is None:
            raise ValueError("sample_weight is zero for every sample: at least one sample must have a positive "
                             "weight.")
        return sample_weight

    def _class_weights(self, y):
        """Per-row weights from ``class_weight`` (classifiers), or None."""
        return None

    @staticmethod
    def _mean_one_weights(Y, dp):
        """``Y`` with its weight column rescaled to mean 1 over the rows of every rank (see :attr:`Flow.weighted`)."""
        if dp is None:
            return normalise_weights(Y)
        total, count = dp.all_reduce_sum(Y[:, -1].sum().reshape(1), Y.new_tensor([float(Y.shape[0])]))
        if not float(total[0]) > 0:
            raise ValueError("sample_weight is zero for every sample of every rank: at least one sample must have "
                             "a positive weight.")
        return normalise_weights(Y, count[0], total[0])

