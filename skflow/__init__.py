"""skflow: scikit-learn estimators trained by the gradient flows of mean-field ResNets and two-layer networks."""

__version__ = "0.2.0.dev0"

from .exceptions import (  # noqa: E402
    CompileFallbackWarning,
    DiagnosticWarning,
    DivergenceWarning,
    DuplicateInputsWarning,
    FitInterruptedWarning,
    IncompatibleWarmStartError,
    InconsistentVersionWarning,
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
    "InconsistentVersionWarning",
    "MeanFieldNODERegressor",
    "RKHSNODEClassifier",
    "SingularKernelWarning",
    "VarProNetClassifier",
    "VarProNetRegressor",
    "VarProSHLRegressor",
    "skops_trusted_types",
]


def skops_trusted_types():
    """Return the names of the types that a skops file of a skflow estimator holds, to pass as ``trusted=``.

    A fitted estimator saved with :func:`skops.io.dump` holds its own class, its engine (``flow_``, a class of
    :mod:`skflow.flows`), NumPy arrays and Python containers (no torch object: tensors are stored as NumPy
    arrays), and, as the case may be, a convergence report or certificate, and for VarProNet the feature
    network's class and the wrapper that rebuilds it (``module(**module_kwargs)``, then its ``state_dict``). This
    list names exactly those types of skflow; anything else that :func:`skops.io.get_untrusted_types` reports
    (e.g. a user's own ``module`` class, or a scikit-learn object of a Pipeline) is for you to check before
    trusting it. VarProNet with a module *instance* cannot be saved with skops (a TypeError says so): use pickle
    or joblib, for trusted files only.

    Returns
    -------
    list of str
        Fully qualified type names, sorted, as :func:`skops.io.load` takes them in ``trusted``.

    Examples
    --------
    >>> import skops.io as sio  # doctest: +SKIP
    >>> data = sio.dumps(model)  # doctest: +SKIP
    >>> unknown = set(sio.get_untrusted_types(data=data)) - set(skflow.skops_trusted_types())  # doctest: +SKIP
    >>> model = sio.loads(data, trusted=skflow.skops_trusted_types())  # doctest: +SKIP
    """
    from ._certificate import ConvergenceCertificate
    from .diagnostics.pl import ConvergenceReport
    from .flows._portable import PortableModule
    from .flows.node import MeanFieldSHLFlow
    from .flows.rkhs import RKHSFlow
    from .flows.varpro import VarProFlow
    from .flows.varpronet import Conv1dFeatures, MLPFeatures, VarProNetFlow

    types = (MeanFieldNODERegressor, RKHSNODEClassifier, VarProSHLRegressor, VarProNetClassifier,
             VarProNetRegressor, MeanFieldSHLFlow, RKHSFlow, VarProFlow, VarProNetFlow, PortableModule,
             MLPFeatures, Conv1dFeatures, ConvergenceReport, ConvergenceCertificate)
    return sorted(f"{t.__module__}.{t.__qualname__}" for t in types)
