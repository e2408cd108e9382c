"""Compiled kernels of the engines: whole-block graphs and fused elementwise kernels, built by ``torch.compile``.

A step of every engine is a few matrix products per layer and, between them, elementwise work on
``N x M`` pre-activations: the bias, the activation and its derivative. Run eagerly, each of these is a
separate pass over memory and a separate Python call. Training steps therefore run each block of rows as one
graph (:func:`graph_kernel`: the engine's forward and adjoint pass with its layers unrolled) compiled by
TorchInductor, which folds the biases into the products, evaluates ``sigma'`` where the adjoint sweep consumes
it (from the stored pre-activation, in the same loop as the product with the adjoint) and leaves one Python
call per block. Predictions use the smaller fused kernels (:func:`value_with_bias`, one loop for
``sigma(a + b)``).

Compilation costs seconds, so the estimators' ``compile`` parameter decides per fit: ``True`` builds what is
missing before the first step; ``'auto'`` (the default) runs each kernel compiled where it is already built and
eagerly otherwise, never waiting for a build. The training graphs are compiled ahead of time into packages on
disk (:mod:`skflow.flows._aot`: one build per machine and depth, loaded by any process in milliseconds),
built in a background *process* when an ``'auto'`` fit finds none; the fit switches to the package as soon as it
lands. The elementwise kernels of predictions are built by ``torch.compile`` in the process (``compile=True``).
Wherever compilation cannot run (no C++ compiler, an unsupported platform, a torch build without Inductor) the
engines take their eager path, with one :class:`skflow.exceptions.CompileFallbackWarning` per fit (the first
kernel that fails warns; the others a fit builds fall back silently, see :func:`decide_compile`): the results are
the same up to float rounding, only slower.
"""

import threading
import types

import torch

from ..exceptions import CompileFallbackWarning, warn
from ._aot import AOTGraph, pending_builds, set_background_builds, wait_for_builds
from ._ops import ACTIVATIONS, ACTIVATIONS_INPLACE

__all__ = ["AUTO_COMPILE_WORK", "FusedKernel", "GraphKernel", "activation_with_bias", "decide_compile",
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

    def runs_compiled(self, compiled, tensor):
        """Whether a call with ``compiled`` (True, False or ``'auto'``: only what is already built) on tensors like
        ``tensor`` runs the compiled kernel."""
        if self._failed or not compiled:
            return False
        return compiled is True or self.is_built(tensor.device, tensor.dtype)

    def __call__(self, *args, compiled=False, fallback=True):
        """Run the kernel on tensors ``args``; ``fallback=False``: return None instead of running the eager
        definition when the compiled kernel cannot be built (the caller then takes its own eager path).
        ``compiled='auto'`` runs the compiled kernel only where it is built already (never waits for a build)."""
        # the compiled kernels serve the engines' no-grad steps; a call that autograd must record runs eagerly
        # (compiling both grad modes would double the builds, and every rebuild counts towards Dynamo's limit)
        if self.runs_compiled(compiled, args[0]) and not any(a.requires_grad for a in args):
            try:
                return self._run_compiled(args)
            except Exception as exc:  # noqa: BLE001 - any compiler failure: fall back, results unchanged
                self._fail(exc)
        if compiled and not fallback:
            return None
        return self.fn(*args)

    def _fail(self, exc):
        self._failed = True
        _warn_fallback(
            f"torch.compile could not build the fused kernel {self.name!r} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
            "using the eager kernels instead: same results, slower steps (this fit warns once, whatever "
            "number of its kernels fall back). Pass compile=False to skip the attempt.")

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


class GraphKernel(FusedKernel):
    """The compiled graph of an engine's block function (:func:`graph_kernel`), compiled ahead of time into an
    on-disk package (:class:`~skflow.flows._aot.AOTGraph`): ``compiled=True`` builds it in this process when no
    package is on disk yet; ``compiled='auto'`` runs it only when the package is on disk, and otherwise asks for
    it to be built in a background process and returns None (the caller runs its eager sweep). A block of fewer
    than two rows always runs eagerly (the packages' number of rows is symbolic from 2 rows on)."""

    def __init__(self, fn, name, block, constants):
        super().__init__(fn, name)
        self.aot = AOTGraph(block, constants)

    def is_built(self, device, dtype):
        return self.aot.is_loaded(device, dtype)

    def ready(self, args):
        """Whether the package of ``args`` is loaded or on disk (looked for at most every ``POLL_SECONDS``): a
        ``compiled='auto'`` call would run it. Never asks for a build."""
        return (not self._failed and self.aot.accepts(args) and not any(a.requires_grad for a in args)
                and self.aot.runner(args, wait=False) is not None)

    def __call__(self, *args, compiled=False, fallback=True, also=None):
        """Run the graph on ``args`` (see the class documentation); ``also``: a function giving pairs
        ``(GraphKernel, args)`` whose packages a background build makes after this one's
        (:meth:`~skflow.flows._aot.AOTGraph.request`; called only when a build is asked for)."""
        runner = None
        if compiled and not self._failed and self.aot.accepts(args) and not any(a.requires_grad for a in args):
            runner = self.aot.runner(args, wait=compiled is True)
            if runner is None and compiled is True:
                try:
                    runner = self.aot.build(args)
                except Exception as exc:  # noqa: BLE001 - no compiler, an unsupported graph: the eager sweep
                    self._fail(exc)
            elif runner is None:
                self.aot.request(args, lambda: [(k.aot, a) for k, a in (also() if also else ()) if not k._failed])
        if runner is not None:
            try:
                return tuple(runner(*[a.contiguous() for a in args]))
            except Exception as exc:  # noqa: BLE001 - a package that cannot run here: the eager sweep
                self._fail(exc)
        if compiled and not fallback:
            return None
        return self.fn(*args)


_GRAPHS = {}


def graph_kernel(key, make, block, constants):
    """The :class:`GraphKernel` of a whole computation (e.g. an engine's forward and adjoint pass over a block of
    rows), built once per ``key``: ``make()`` gives its eager definition (a function of tensors only, with a
    code object of its own), ``block(*tensors, **constants)`` the same function for the compiled package.

    Whole-graph kernels let TorchInductor fuse across the matrix products: it folds biases into the products,
    evaluates each elementwise function where its result is consumed (``sigma'`` in the backward sweep, from the
    stored pre-activation, instead of writing it in the forward one) and runs the step without a Python call
    per operation. Everything a graph specialises on (the depth it unrolls, the activation, slice bounds,
    constants such as an output scale) must be in ``key``, and in ``constants``; the shapes of the arguments
    other than the rows, the dtype and the device key the packages on disk.
    """
    kernel = _GRAPHS.get(key)
    if kernel is None:
        name = "_".join(str(k) for k in key)
        kernel = _GRAPHS[key] = GraphKernel(_own_copy(make(), name), name, block, constants)
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
    if _DERIVATIVE[name].runs_compiled(compiled, a):
        return _DERIVATIVE[name](a, b, compiled=True)
    return ACTIVATIONS[name](a.add_(b))


def value_with_bias(name, a, b, compiled=False):
    """``sigma(a + b)``; eager, ``a`` is overwritten."""
    if _VALUE[name].runs_compiled(compiled, a):
        return _VALUE[name](a, b, compiled=True)
    return ACTIVATIONS_INPLACE[name](a.add_(b))


def product_and_column_sum(P, ds, compiled=False):
    """``G = P * ds`` and its column sums ``G.sum(0)`` (the adjoint's pre-activation gradient and the bias
    gradient) in one pass when compiled; eager, ``P`` is overwritten by ``G``."""
    if _PRODUCT_SUM.runs_compiled(compiled, P):
        return _PRODUCT_SUM(P, ds, compiled=True)
    G = P.mul_(ds)
    return G, G.sum(0)


def outer_product_and_column_sum(r, u, ds, compiled=False):
    """``G = (r u^T) * ds`` and ``G.sum(0)`` for residuals ``r`` (n, o), outer weights ``u`` (M, o) and
    ``ds`` (n, M): VarPro's feature-gradient weights, one pass over ``n x M`` when compiled."""
    if _OUTER_SUM.runs_compiled(compiled, r):
        return _OUTER_SUM(r, u, ds, compiled=True)
    G = torch.mm(r, u.T).mul_(ds)
    return G, G.sum(0)


def decide_compile(option, work, kernels, device, dtype):
    """Resolve the estimators' ``compile`` parameter for one fit: True, False, or ``'auto'``.

    ``option``: True, False or ``'auto'``. ``work``: the entries of the ``N x M`` pre-activations the fit
    computes at most. ``kernels``: the :class:`FusedKernel` objects a step of the engine runs, or activation
    names (their elementwise kernels). For ``option='auto'``: True (build what is missing, in this process) when
    ``work >= AUTO_COMPILE_WORK``; else ``'auto'``: every kernel runs compiled where it is already built (a
    graph whose package is on disk, see :mod:`skflow.flows._aot`) and eagerly otherwise, never waiting for a build;
    False when there is nothing to compile or after any kernel failed to compile (in this process: a compiler
    that failed once is not tried again by ``'auto'``).

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
    return True if work >= AUTO_COMPILE_WORK else "auto"


def _kernel_objects(kernels):
    return [k for k in kernels if not isinstance(k, str)] + [
        k for n in kernels if isinstance(n, str) for k in (_DERIVATIVE[n], _VALUE[n], _PRODUCT_SUM, _OUTER_SUM)]
