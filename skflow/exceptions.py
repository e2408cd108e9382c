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

scikit-learn's :class:`~sklearn.exceptions.ConvergenceWarning` (``max_iter`` reached before the stopping rule
triggered) and :class:`~sklearn.exceptions.NotFittedError` are used as they are.
"""

from sklearn.exceptions import ConvergenceWarning

__all__ = [
    "CompileFallbackWarning",
    "DiagnosticWarning",
    "DivergenceWarning",
    "DuplicateInputsWarning",
    "FitInterruptedWarning",
    "IncompatibleWarmStartError",
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
