"""Every warning and error class skflow raises, one class per meaning.

* :class:`DivergenceWarning` -- the fit diverged and was stopped; the parameters with the lowest risk were
  restored.
* :class:`FitInterruptedWarning` -- the fit was interrupted (Ctrl-C); the model trained so far was kept.
* :class:`SingularKernelWarning` -- a finite-width kernel matrix is singular (fewer features than points), so a
  convergence guarantee that needs its smallest eigenvalue does not apply.
* :class:`DuplicateInputsWarning` -- training inputs coincide while carrying different labels.
* :class:`DiagnosticWarning` -- a diagnostic could not be computed (or only a cheaper estimate of it); the
  fitted model is unaffected.
* :class:`CompileFallbackWarning` -- ``torch.compile`` could not build the fused kernels; the eager ones are
  used (same results, slower steps).
* :class:`IncompatibleWarmStartError` -- ``warm_start=True`` with data or parameters the previous model cannot
  continue from.
* :class:`InconsistentVersionWarning` -- an estimator is unpickled with another skflow version than the one
  that pickled it.

scikit-learn's :class:`~sklearn.exceptions.ConvergenceWarning` (``max_iter`` reached before the stopping rule
triggered) and :class:`~sklearn.exceptions.NotFittedError` are used as they are.

Every warning is raised through :func:`warn`, which attributes it to the user's line (see there).
"""

import os
import sys
import warnings

import joblib
import sklearn
from sklearn.exceptions import ConvergenceWarning

__all__ = [
    "CompileFallbackWarning",
    "DiagnosticWarning",
    "DivergenceWarning",
    "DuplicateInputsWarning",
    "FitInterruptedWarning",
    "IncompatibleWarmStartError",
    "InconsistentVersionWarning",
    "SingularKernelWarning",
]


class DivergenceWarning(ConvergenceWarning):
    """The training risk became non-finite or grew far above its starting value.

    Training stopped and the parameters with the lowest training risk seen were restored; the message says
    which parameter to change (usually a smaller ``learning_rate``).
    """


class FitInterruptedWarning(UserWarning):
    """The fit was interrupted (KeyboardInterrupt); the usable model trained so far was committed."""


class SingularKernelWarning(UserWarning):
    """A finite-width kernel matrix is singular: its width is below the number of points it is evaluated on.

    Its smallest eigenvalue is then exactly 0, and the linear-convergence guarantees that are stated in terms of
    it do not apply (training may still fit well).
    """


class DuplicateInputsWarning(UserWarning):
    """Two training inputs coincide but carry different labels.

    A NODE is a bijection of its (lifted) inputs, so no such model can separate them.
    """


class DiagnosticWarning(UserWarning):
    """A convergence diagnostic failed or was too expensive, and was replaced by NaN or a named estimate.

    The fitted model is not affected.
    """


class CompileFallbackWarning(UserWarning):
    """``torch.compile`` could not build or run a fused kernel (no C++ compiler, no Inductor support...).

    The engine uses the eager kernels for the rest of the process: the results are the same up to float
    rounding, the steps slower. ``compile=False`` skips the attempt.
    """


class IncompatibleWarmStartError(ValueError):
    """``warm_start=True`` but the data or an architecture parameter differ from those of the previous fit."""


class InconsistentVersionWarning(UserWarning):
    """An estimator is unpickled with another skflow version than the one that pickled it.

    As scikit-learn's :class:`~sklearn.exceptions.InconsistentVersionWarning`: the fitted attributes of one
    version may not be what another version expects, so predictions may be wrong or fail. Re-fit the estimator
    with the installed version, or load it with the version that saved it.

    Parameters
    ----------
    estimator_name : str
        The estimator's class name.
    current_version : str
        The installed skflow version.
    original_version : str
        The skflow version that pickled the estimator (``'unknown'`` for a pickle without one).
    """

    def __init__(self, *, estimator_name, current_version, original_version):
        self.estimator_name = estimator_name
        self.current_version = current_version
        self.original_version = original_version

    def __str__(self):
        return (
            f"Trying to unpickle estimator {self.estimator_name} from skflow version {self.original_version} when "
            f"using version {self.current_version}. This might lead to breaking code or invalid results. Use at "
            "your own risk."
        )


# the packages whose frames a warning skips: skflow's own, and the scikit-learn / joblib plumbing (Pipeline,
# GridSearchCV, cross_validate, joblib.Parallel) between the user's call and skflow's
_PACKAGE_DIRS = tuple(
    os.path.dirname(os.path.abspath(path)) + os.sep for path in (__file__, sklearn.__file__, joblib.__file__)
)


def _find_stack_level():
    """Return the ``stacklevel`` of ``warnings.warn`` called from :func:`warn` that names the user's frame.

    Counts the frames from :func:`warn`'s caller up to the first frame whose file lies outside skflow,
    scikit-learn and joblib (as pandas' ``find_stack_level`` does for pandas).

    Returns
    -------
    int
        The stack level, as :func:`warnings.warn` counts it from :func:`warn`.
    """
    frame = sys._getframe(1)  # warn's frame
    level = 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIRS):
        frame = frame.f_back
        level += 1
    return level


def warn(message, category=UserWarning):
    """Issue a warning attributed to the first caller outside skflow, scikit-learn and joblib.

    Warnings are raised at varying depths under ``fit``; a fixed ``stacklevel`` would name a line of skflow.
    This walks the stack instead, so that the warning's ``filename`` and ``lineno`` are those of the user's
    call: ``est.fit(X, y)``, and also ``Pipeline.fit``, ``GridSearchCV.fit`` (``n_jobs=1``) or
    ``cross_validate`` called on a skflow estimator, since scikit-learn's and joblib's frames are skipped too.
    In a joblib worker (``n_jobs > 1``) the warning names the first frame outside these packages there.

    Parameters
    ----------
    message : str
        The warning message.
    category : type of Warning, default=UserWarning
        The warning class.
    """
    warnings.warn(message, category, stacklevel=_find_stack_level())
