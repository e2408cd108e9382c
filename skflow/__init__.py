"""skflow: scikit-learn estimators trained by the gradient flows of mean-field ResNets and two-layer networks."""

__version__ = "0.1.0"

from ._base import DivergenceWarning, SingularKernelWarning  # noqa: E402
from .node import MeanFieldNODERegressor  # noqa: E402
from .varpro import VarProSHLRegressor  # noqa: E402
from .rkhs import RKHSNODEClassifier  # noqa: E402

__all__ = [
    "DivergenceWarning",
    "MeanFieldNODERegressor",
    "RKHSNODEClassifier",
    "SingularKernelWarning",
    "VarProSHLRegressor",
]
