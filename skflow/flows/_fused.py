"""Compiled kernels of the engines: whole-block graphs and fused elementwise kernels, built by ``torch.compile``.

A step of every engine is a few matrix products per layer and, between them, elementwise work on
``N x M`` pre-activations: the bias, the activation and its derivative. Run eagerly, each of these is a
separate pass over memory and a separate Python call. Training steps therefore run each block of rows as one
graph (:func:`graph_kernel`: the engine's forward and adjoint pass with its layers unrolled) compiled by
TorchInductor, which folds the biases into the products, evaluates ``sigma'`` where the adjoint sweep consumes
it (from the stored pre-activation, in the same loop as the product with the adjoint) and leaves one Python
call per block. Predictions use the smaller fused kernels (:func:`value_with_bias`, one loop for
``sigma(a + b)``).

Compilation costs seconds (a C++ or Triton build the first time in a process, partly cached on disk after), so
it is opt-in per fit (the estimators' ``compile`` parameter): ``'auto'`` compiles when the fit's elementwise
work is large enough to repay it, or when its kernels have already been compiled in this process. Wherever
``torch.compile`` cannot run (no C++ compiler, an unsupported platform, a torch build without Inductor) the
engines take their eager path, with one :class:`skflow.exceptions.CompileFallbackWarning` per fit (the first
kernel that fails warns; the others a fit builds fall back silently, see :func:`decide_compile`): the results are
the same up to float rounding, only slower.
"""

import copy
import threading
import types

import torch

from ..exceptions import CompileFallbackWarning, warn
from ._ops import ACTIVATIONS, ACTIVATIONS_INPLACE

__all__ = ["AUTO_COMPILE_WORK", "FusedKernel", "activation_with_bias", "build_in_background", "decide_compile",
           "elementwise_kernels", "graph_kernel", "outer_product_and_column_sum", "pending_builds",
           "product_and_column_sum", "set_background_builds", "value_with_bias", "wait_for_builds"]

#: ``compile='auto'`` compiles a fit whose elementwise work (entries of the ``N x M`` pre-activations computed
#: over the whole fit, at most ``max_iter`` steps) reaches this: about a minute of eager elementwise time on one
#: CPU core, against 3-30 s to build the graphs of a model shape the first time in a process.
AUTO_COMPILE_WORK = 3e10


#: the fallback warnings of the fit running in this thread: ``decide_compile`` (called once at the start of every
#: fit) opens a new fit, and a fit warns at most once however many of its kernels fail to compile
_FALLBACK = threading.local()


def _new_fit():
    _FALLBACK.fit = getattr(_FALLBACK, "fit", 0) + 1


def _warn_fallback(message):
    """One CompileFallbackWarning per fit (per thread): the first failing kernel of a fit warns, the others not; a
    background build (:func:`build_in_background`) never warns (its failure only keeps later fits eager)."""
    if getattr(_FALLBACK, "silent", False):
        return
    fit = getattr(_FALLBACK, "fit", 0)
    if getattr(_FALLBACK, "warned", None) == fit:
        return
    _FALLBACK.warned = fit
    warn(message, CompileFallbackWarning)


class FusedKernel:
    """An elementwise function with an eager definition, compiled on first use when asked to.

    ``kernel(*args, compiled=True)`` runs the compiled version (built by ``torch.compile(fn, dynamic=True)``
    the first time) and ``compiled=False`` the eager one. A failure to compile or to run the compiled code
    falls back to the eager function for good, with a :class:`CompileFallbackWarning`.
    """

    def __init__(self, fn, name, options=None):
        self.fn = fn
        self.name = name
        self.options = options  # TorchInductor options; dropped (and the build retried) if a build with them fails
        self._compiled = None
        self._failed = False
        self._built = set()  # (device type, dtype) pairs already compiled in this process

    def is_built(self, device, dtype):
        return (torch.device(device).type, dtype) in self._built

    def __call__(self, *args, compiled=False, fallback=True):
        """Run the kernel on tensors ``args``; ``fallback=False``: return None instead of running the eager
        definition when the compiled kernel cannot be built (the caller then takes its own eager path)."""
        # the compiled kernels serve the engines' no-grad steps; a call that autograd must record runs eagerly
        # (compiling both grad modes would double the builds, and every rebuild counts towards Dynamo's limit)
        if compiled and not self._failed and not any(a.requires_grad for a in args):
            try:
                return self._run_compiled(args)
            except Exception as exc:  # noqa: BLE001 - any compiler failure: fall back, results unchanged
                self._failed = True
                _warn_fallback(
                    f"torch.compile could not build the fused kernel {self.name!r} "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
                    "using the eager kernels instead: same results, slower steps (this fit warns once, whatever "
                    "number of its kernels fall back). Pass compile=False to skip the attempt.")
        if compiled and not fallback:
            return None
        return self.fn(*args)

    def _run_compiled(self, args):
        args = [a.contiguous() for a in args]
        try:
            if self._compiled is None:
                self._compiled = torch.compile(self.fn, dynamic=True, fullgraph=True, options=self.options)
            with torch.no_grad():
                out = self._compiled(*args)
        except Exception:  # noqa: BLE001 - e.g. no C++ wrapper on this platform: retry with the defaults
            if not self.options:
                raise
            self.options, self._compiled = None, None
            torch._dynamo.reset_code(self.fn.__code__)
            return self._run_compiled(args)
        self._built.add((args[0].device.type, args[0].dtype))
        return out



def _own_code(name, body, **namespace):
    """A function ``fused(a, b)`` returning ``body`` with its own code object: Dynamo caches compiled graphs,
    and counts rebuilds against its limit, per code object, so every kernel must have one of its own."""
    source = f"def fused_{name}(a, b):\n    return {body}\n"
    exec(compile(source, f"<skflow fused kernel {name}>", "exec"), namespace)  # noqa: S102 - fixed source
    return namespace[f"fused_{name}"]


def _own_copy(fn, name):
    """``fn`` with a copy of its code object of its own (same globals, defaults and closure)."""
    code = fn.__code__.replace(co_name=f"{fn.__name__}_{name}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


_GRAPHS = {}


def graph_kernel(key, make):
    """The :class:`FusedKernel` of a whole computation (e.g. an engine's forward and adjoint pass over a block of
    rows), built once per ``key`` by ``make()`` (a function of tensors only) with a code object of its own.

    Whole-graph kernels let TorchInductor fuse across the matrix products: it folds biases into the products,
    evaluates each elementwise function where its result is consumed (``sigma'`` in the backward sweep, from the
    stored pre-activation, instead of writing it in the forward one) and runs the step without a Python call
    per operation. Everything a graph specialises on (the depth it unrolls, the activation, slice bounds,
    constants such as an output scale) must be in ``key``: each key then has its own cache of compiled graphs,
    which only dtype and device can grow.
    """
    kernel = _GRAPHS.get(key)
    if kernel is None:
        name = "_".join(str(k) for k in key)
        # a C++ wrapper around the graph's kernels: without it every product costs a Python call (10-15 % of a
        # small NODE step), at the price of a longer first build (20-30 s instead of 5, cached on disk after)
        kernel = _GRAPHS[key] = FusedKernel(_own_copy(make(), name), name, options={"cpp_wrapper": True})
    return kernel


def _with_bias(name):
    return _own_code(f"{name}_and_derivative", "act(a + b)", act=ACTIVATIONS[name])


def _value(name):
    return _own_code(name, "act(a + b)[0]", act=ACTIVATIONS[name])


def _scale_rows_sum(P, ds):
    G = P * ds
    return G, G.sum(0)


def _outer_rows_sum(r, u, ds):
    G = (r @ u.T) * ds
    return G, G.sum(0)


_DERIVATIVE = {name: FusedKernel(_with_bias(name), f"{name}_and_derivative") for name in ACTIVATIONS}
_VALUE = {name: FusedKernel(_value(name), name) for name in ACTIVATIONS}
_PRODUCT_SUM = FusedKernel(_scale_rows_sum, "product_and_column_sum")
_OUTER_SUM = FusedKernel(_outer_rows_sum, "outer_product_and_column_sum")


def elementwise_kernels(name, value=True, derivative=False):
    """The :class:`FusedKernel` objects of activation ``name`` a step uses: ``sigma(a + b)`` alone (``value``)
    and with its derivative (``derivative``), for an engine's :meth:`compile_kernels`."""
    return ([_VALUE[name]] if value else []) + ([_DERIVATIVE[name]] if derivative else [])


def activation_with_bias(name, a, b, compiled=False):
    """``(sigma(a + b), sigma'(a + b))`` for pre-activations ``a`` (N, M) and a bias ``b`` (M,).

    Eager, ``a`` is overwritten (it must be a temporary, e.g. the output of a matrix product).
    """
    if compiled:
        return _DERIVATIVE[name](a, b, compiled=True)
    return ACTIVATIONS[name](a.add_(b))


def value_with_bias(name, a, b, compiled=False):
    """``sigma(a + b)``; eager, ``a`` is overwritten."""
    if compiled:
        return _VALUE[name](a, b, compiled=True)
    return ACTIVATIONS_INPLACE[name](a.add_(b))


def product_and_column_sum(P, ds, compiled=False):
    """``G = P * ds`` and its column sums ``G.sum(0)`` (the adjoint's pre-activation gradient and the bias
    gradient) in one pass when compiled; eager, ``P`` is overwritten by ``G``."""
    if compiled:
        return _PRODUCT_SUM(P, ds, compiled=True)
    G = P.mul_(ds)
    return G, G.sum(0)


def outer_product_and_column_sum(r, u, ds, compiled=False):
    """``G = (r u^T) * ds`` and ``G.sum(0)`` for residuals ``r`` (n, o), outer weights ``u`` (M, o) and
    ``ds`` (n, M): VarPro's feature-gradient weights, one pass over ``n x M`` when compiled."""
    if compiled:
        return _OUTER_SUM(r, u, ds, compiled=True)
    G = torch.mm(r, u.T).mul_(ds)
    return G, G.sum(0)


def decide_compile(option, work, kernels, device, dtype):
    """Resolve the estimators' ``compile`` parameter into a bool for one fit.

    ``option``: True, False or ``'auto'``. ``work``: the entries of the ``N x M`` pre-activations the fit
    computes at most. ``kernels``: the :class:`FusedKernel` objects a step of the engine runs, or activation
    names (their elementwise kernels). ``'auto'`` is True when every kernel the fit needs is already built for
    this device and dtype (free), or when ``work >= AUTO_COMPILE_WORK``, and never after any kernel failed to
    compile (in this process: a compiler that failed once is not tried again by ``'auto'``).

    Every fit calls it once, before its first step: it also opens the fit's one
    :class:`~skflow.exceptions.CompileFallbackWarning` (the fallbacks of a fit, in its thread, warn once).
    """
    _new_fit()
    if option != "auto":
        return bool(option)
    kernels = _kernel_objects(kernels)
    registry = [*_DERIVATIVE.values(), *_VALUE.values(), _PRODUCT_SUM, _OUTER_SUM, *_GRAPHS.values()]
    if not kernels or any(k._failed for k in kernels + registry):  # nothing to compile, or a compiler that failed
        return False
    if all(k.is_built(device, dtype) for k in kernels):
        return True
    return work >= AUTO_COMPILE_WORK


# ---------------------------------------------------------------------------------------------- background builds
#: ``compile='auto'``: whether a fit that runs eagerly because its kernels are not built yet builds them in a
#: background thread, for the next fits of the same model shape in this process (see :func:`build_in_background`).
#: Off by default: on a 2-core CPU the build (Python-heavy tracing, holding the GIL) slowed the eager fits running
#: beside it up to 28 times (the demo's diabetes NODE fit: 0.32 s alone, 9.1 s beside the build of the friedman1
#: NODE's kernels); where the fits run on a GPU, or cores are many, turn it on with :func:`set_background_builds`.
_BACKGROUND = {"enabled": False}
_BUILDS = {}  # key -> the thread building it
_BUILDS_LOCK = threading.Lock()


def set_background_builds(enabled):
    """Turn the background builds of ``compile='auto'`` on or off (off by default); returns the previous setting."""
    previous = _BACKGROUND["enabled"]
    _BACKGROUND["enabled"] = bool(enabled)
    return previous


def _kernel_objects(kernels):
    return [k for k in kernels if not isinstance(k, str)] + [
        k for n in kernels if isinstance(n, str) for k in (_DERIVATIVE[n], _VALUE[n], _PRODUCT_SUM, _OUTER_SUM)]


def build_in_background(flow, X, Y, device, dtype):
    """Build the compiled kernels of ``flow``'s steps and predictions in a daemon thread, while the fit that asked
    runs eagerly: the next fits of the same model shape (and device, dtype) in this process find them built, and
    ``compile='auto'`` then runs them compiled without waiting (the first fit never waits for a compiler).

    The thread takes one step of time 0 and one forward pass on a copy of the engine (``X``, ``Y``: a few rows
    of the fit), so that every kernel is traced on the shapes the fit uses, with the number of rows symbolic.
    The compiled code also lands in TorchInductor's on-disk cache (``TORCHINDUCTOR_CACHE_DIR``, by default
    ``/tmp/torchinductor_<user>``), so that another process builds the same kernels from it in a few seconds.
    Nothing is started when background builds are off (:func:`set_background_builds`), when every kernel is
    built, when one of them failed to compile, or when the same kernels are being built already. A failed
    background build is silent; it leaves later fits eager, as a failed compile does. Returns the thread or None.
    """
    if not _BACKGROUND["enabled"]:
        return None
    kernels = _kernel_objects(flow.compile_kernels())
    registry = [*_DERIVATIVE.values(), *_VALUE.values(), _PRODUCT_SUM, _OUTER_SUM, *_GRAPHS.values()]
    if not kernels or any(k._failed for k in kernels + registry) or all(k.is_built(device, dtype) for k in kernels):
        return None
    key = (tuple(sorted(id(k) for k in kernels)), torch.device(device).type, dtype)
    with _BUILDS_LOCK:
        running = _BUILDS.get(key)
        if running is not None and running.is_alive():
            return None
        probe = copy.deepcopy(flow)
        probe.compiled, probe.data_parallel = True, None
        Xs, Ys = X.detach().clone(), Y.detach().clone()
        thread = threading.Thread(target=_build, args=(probe, Xs, Ys), name="skflow-compile", daemon=True)
        _BUILDS[key] = thread
    thread.start()
    return thread


def _build(probe, X, Y):
    _FALLBACK.silent = True
    try:
        with torch.no_grad():
            probe.step(X, Y, 0.0)
            probe.forward(X)
    except BaseException:  # noqa: BLE001, S110 - a background build must never disturb the process
        pass


def pending_builds():
    """The background builds still running (threads)."""
    with _BUILDS_LOCK:
        return [t for t in _BUILDS.values() if t.is_alive()]


def wait_for_builds(timeout=None):
    """Wait for the running background builds to end (at most ``timeout`` seconds each); returns how many still
    run."""
    for thread in pending_builds():
        thread.join(timeout)
    return len(pending_builds())
