"""skflow: scikit-learn estimators trained by the gradient flows of mean-field ResNets and two-layer networks."""

__version__ = "0.2.0.dev0"

from .exceptions import (  # noqa: E402
    CompileFallbackWarning,
    DiagnosticWarning,
    DivergenceWarning,
    DuplicateInputsWarning,
    FitInterruptedWarning,
    IncompatibleWarmStartError,
    SingularKernelWarning,
)
from .node import MeanFieldNODERegressor  # noqa: E402
from .rkhs import RKHSNODEClassifier  # noqa: E402
from .varpro import VarProSHLRegressor  # noqa: E402
from .varpronet import VarProNetClassifier, VarProNetRegressor  # noqa: E402

__all__ = [
    "CompileFallbackWarning",
    "DiagnosticWarning",
    "DivergenceWarning",
    "DuplicateInputsWarning",
    "FitInterruptedWarning",
    "IncompatibleWarmStartError",
    "MeanFieldNODERegressor",
    "RKHSNODEClassifier",
    "SingularKernelWarning",
    "VarProNetClassifier",
    "VarProNetRegressor",
    "VarProSHLRegressor",
]
