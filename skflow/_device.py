"""Device, dtype and memory helpers of the estimators: where a fit runs, in which precision, and what fits in memory.

Below the estimators and their shared base (:mod:`skflow._base` re-exports these names); no engine imports it.
"""

import contextlib
import math
import os
import sys

import numpy as np
import sklearn
import torch
from sklearn.exceptions import InconsistentVersionWarning as SklearnInconsistentVersionWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import InvalidParameterError

from ._rows import peak_abs
from .exceptions import InconsistentVersionWarning, warn
from .flows._flow import Flow
from .flows._portable import (
    PortableModule,
    dtype_from_name,
    dtype_name,
    portable,
    restored,
    set_module_recipe,
)

__all__ = ["PortableModule", "available_memory", "check_device_string", "check_magnitude", "check_step_memory",
           "check_versions", "dtype_from_name", "dtype_name", "forward_in_chunks", "portable", "resolve_device",
           "resolve_dtype", "restore_device", "restored", "seed_generator", "set_module_recipe", "stamp_versions",
           "state_on_cpu", "translated_memory_errors"]


def resolve_device(device):
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; anything else is passed to ``torch.device``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available; use device='auto' or 'cpu'.")
    return dev


def resolve_dtype(dtype):
    """'float64' / 'float32' -> the torch dtype."""
    return {"float64": torch.float64, "float32": torch.float32}[dtype]


def available_memory(device):
    """Bytes that can still be allocated on ``device`` (CUDA: free device memory; CPU: MemAvailable), or None."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


@contextlib.contextmanager
def translated_memory_errors(name, what):
    """Turn an allocator failure (CPU or CUDA) into a MemoryError that names the remedies."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        text = str(exc)
        if not isinstance(exc, MemoryError) and "allocate" not in text and "out of memory" not in text.lower():
            raise
        first = text.strip().splitlines()[-1][:200] if text.strip() else type(exc).__name__
        raise MemoryError(
            f"{name}: not enough memory to {what} ({first}). Use a smaller width / n_features / n_layers, a "
            "batch_size, or dtype='float32'."
        ) from exc


def seed_generator(random_state):
    """A CPU ``torch.Generator`` seeded from ``random_state`` (None, an int or a NumPy RandomState, as scikit-learn's
    ``check_random_state`` takes it): initialisations drawn with it are the same on every device."""
    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    return gen


def check_device_string(device):
    """An InvalidParameterError for a device string torch cannot parse."""
    if isinstance(device, torch.device) or device == "auto":
        return
    try:
        torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InvalidParameterError(
            f"The 'device' parameter must be 'auto', a device string such as 'cpu', 'cuda' or 'cuda:1', or a "
            f"torch.device; got {device!r} ({exc})."
        ) from None


def check_magnitude(A, dtype, what, remedy="Standardise it (e.g. sklearn.preprocessing.StandardScaler)"):
    """A clear error when the squares of ``A``'s entries would overflow the training dtype (``A``: NumPy,
    scipy.sparse or a torch tensor, checked on its device)."""
    peak = peak_abs(A)
    limit = math.sqrt(torch.finfo(dtype).max) / max(1.0, math.sqrt(A.shape[1] if A.ndim > 1 else 1))
    if peak > limit:
        raise ValueError(
            f"{what} has entries as large as {peak:.3g}: their squares overflow {dtype} (limit about {limit:.3g}). "
            f"{remedy}" + (" or use dtype='float64'." if dtype != torch.float64 else ".")
        )


def check_step_memory(name, flow, rows, device, have):
    """A MemoryError naming the remedies, before anything is allocated, when a training step of ``flow`` over
    ``rows`` rows needs more than the ``have`` bytes available on ``device`` (None: unknown, no check)."""
    if flow.row_blocked:  # the step runs over blocks of rows: its workspace is bounded whatever N
        rows = min(int(rows), flow.block_rows(device))
    need = flow.bytes_per_row(training=True) * int(rows)
    if have is not None and need > have:
        raise MemoryError(
            f"{name}: a training step needs about {need / 2**30:.2f} GiB of activations "
            f"({rows} rows x {flow.bytes_per_row(training=True)} bytes) but only {have / 2**30:.2f} GiB are "
            f"available on {device}. Use a batch_size (e.g. "
            f"batch_size={max(1, int(rows * have / need / 2))}), a smaller width / number of features, or "
            "dtype='float32'."
        )


def state_on_cpu(state):
    """A copy of an estimator's pickled ``state`` (a dict) with its engines on the CPU and its other torch
    objects (tensors, dtypes, devices, modules) made portable (:func:`skflow.flows._portable.portable`)."""
    state = dict(state)
    for k, v in state.items():
        state[k] = v.to("cpu") if isinstance(v, Flow) else portable(v)
    return state


def _skflow_version():
    # read from the loaded package (importing skflow here would be an import cycle)
    return getattr(sys.modules.get(__package__), "__version__", "unknown")


def stamp_versions(state):
    """``state`` with the skflow and scikit-learn versions that pickle it (``_skflow_version``,
    ``_sklearn_version``), for :func:`check_versions` to compare at loading."""
    return {**state, "_skflow_version": _skflow_version(), "_sklearn_version": sklearn.__version__}


def check_versions(state, name):
    """``state`` without the versions of :func:`stamp_versions`, after warning when they differ from those
    installed: skflow's :class:`~skflow.exceptions.InconsistentVersionWarning`, scikit-learn's for
    scikit-learn (a state without them: from before the versions were stamped, ``'unknown'``)."""
    state = dict(state)
    original, current = state.pop("_skflow_version", "unknown"), _skflow_version()
    if original != current:
        warn(InconsistentVersionWarning(estimator_name=name, current_version=current, original_version=original),
             InconsistentVersionWarning)
    original = state.pop("_sklearn_version", None)
    if original is not None and original != sklearn.__version__:
        warn(SklearnInconsistentVersionWarning(estimator_name=name, current_sklearn_version=sklearn.__version__,
                                               original_sklearn_version=original), SklearnInconsistentVersionWarning)
    return state


def restore_device(estimator):
    """After unpickling: the estimator's torch objects rebuilt (:func:`skflow.flows._portable.restored`, on the
    CPU), ``device_`` back (the CPU for a model trained on a GPU this machine lacks), and the estimator's engines
    moved there."""
    for k, v in list(estimator.__dict__.items()):
        if not isinstance(v, Flow):
            estimator.__dict__[k] = restored(v)
    dev = getattr(estimator, "device_", None)
    if dev is None:
        return
    if torch.device(dev).type == "cuda" and not torch.cuda.is_available():
        estimator.device_ = torch.device("cpu")  # trained on a GPU, loaded on a machine without one
    else:
        estimator.device_ = torch.device(dev)
    for k, v in list(estimator.__dict__.items()):
        if isinstance(v, Flow) and estimator.device_.type != "cpu":
            setattr(estimator, k, v.to(estimator.device_))


def forward_in_chunks(flow, X, chunk, to_tensor, name, n_outputs):
    """The raw output of ``flow`` on the rows of ``X`` (NumPy), ``chunk`` rows at a time (``to_tensor`` moves a
    chunk to the device): float64 NumPy of shape (n, n_outputs), with allocator failures named as memory errors."""
    outs = []
    with torch.no_grad(), translated_memory_errors(name, "predict"):
        for start in range(0, X.shape[0], chunk):
            outs.append(flow.forward(to_tensor(X[start:start + chunk])).double().cpu().numpy())
    return np.concatenate(outs, axis=0) if outs else np.zeros((0, n_outputs))
