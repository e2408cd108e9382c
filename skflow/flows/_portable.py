"""Pickled states without torch objects, for pickle, joblib and skops (:mod:`skops.io`).

A pickled estimator or engine holds no torch object: tensors are NumPy arrays with their dtype's name, dtypes
and devices are names, in small tagged dicts (:func:`portable`), rebuilt by :func:`restored`. skops, which loads
only NumPy arrays, containers and the types a user trusts, can then store and load them; pickle and joblib store
the same state. A ``torch.nn.Module`` is wrapped in a :class:`PortableModule`.
"""

import weakref

import numpy as np
import torch

__all__ = ["PortableModule", "dtype_from_name", "dtype_name", "portable", "restored", "set_module_recipe"]

_TENSOR, _DTYPE, _DEVICE = "__skflow_tensor__", "__skflow_dtype__", "__skflow_device__"
_NUMPY_DTYPES = {torch.bfloat16: torch.float32}  # dtypes without a NumPy twin: stored in a wider one


def dtype_name(dtype):
    """``torch.float64`` -> ``'float64'``."""
    return str(dtype).removeprefix("torch.")


def dtype_from_name(name):
    """``'float64'`` -> ``torch.float64`` (a clear error for a name that is not a torch dtype)."""
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"{name!r} is not the name of a torch dtype.")
    return dtype


def portable(value):
    """``value`` with its torch objects replaced by pickle- and skops-friendly stand-ins.

    A tensor becomes ``{'__skflow_tensor__': ndarray, 'dtype': name}`` (detached, on the CPU), a ``torch.dtype``
    ``{'__skflow_dtype__': name}``, a ``torch.device`` ``{'__skflow_device__': 'cuda:0'}``, a ``torch.nn.Module``
    a :class:`PortableModule`; plain lists, tuples and dicts are walked. Anything else is returned as it is.
    """
    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.dtype in _NUMPY_DTYPES:
            t = t.to(_NUMPY_DTYPES[t.dtype])
        out = {_TENSOR: t.cpu().numpy().copy(), "dtype": dtype_name(value.dtype)}
        if value.requires_grad:
            out["requires_grad"] = True
        return out
    if isinstance(value, torch.dtype):
        return {_DTYPE: dtype_name(value)}
    if isinstance(value, torch.device):
        return {_DEVICE: str(value)}
    if isinstance(value, torch.nn.Module):
        return PortableModule(value)
    return _mapped(value, portable)


def _mapped(value, f):
    """A plain list, tuple or dict with ``f`` applied to its items: ``value`` itself when no item changes (a
    parameter such as ``module_kwargs`` keeps its identity through ``copy.copy`` of an estimator)."""
    if type(value) in (list, tuple):
        items = [f(v) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else type(value)(items)
    if type(value) is dict:
        items = {k: f(v) for k, v in value.items()}
        return value if all(items[k] is v for k, v in value.items()) else items
    return value


def restored(value, device=None):
    """The inverse of :func:`portable`: tensors rebuilt on ``device`` (None: the CPU); a state pickled before
    :func:`portable` existed (torch objects as they are) is accepted too, its tensors and modules moved to
    ``device`` when one is given (left where they are otherwise: a user's module is not moved)."""
    if type(value) is dict:
        if _TENSOR in value:
            t = torch.as_tensor(np.array(value[_TENSOR]), device=device or "cpu").to(dtype_from_name(value["dtype"]))
            return t.requires_grad_() if value.get("requires_grad", False) else t
        if _DTYPE in value and len(value) == 1:
            return dtype_from_name(value[_DTYPE])
        if _DEVICE in value and len(value) == 1:
            return torch.device(value[_DEVICE])
        return _mapped(value, lambda v: restored(v, device))
    if type(value) in (list, tuple):
        return _mapped(value, lambda v: restored(v, device))
    if isinstance(value, PortableModule):
        value = value.module
    if device is not None and isinstance(value, (torch.Tensor, torch.nn.Module)):
        return value.to(device)
    return value


#: module -> (builder, kwargs, dtype): how skops may build a module again (see :func:`set_module_recipe`)
_MODULE_RECIPES = weakref.WeakKeyDictionary()


def set_module_recipe(module, builder, kwargs, dtype):
    """Let skops store ``module`` as ``builder(**kwargs)`` (built in ``dtype``) plus its ``state_dict``.

    Set by an estimator, in its ``__getstate__``, for the modules it built itself from a class or callable;
    pickle and joblib store the module itself and do not use it.
    """
    _MODULE_RECIPES[module] = (builder, dict(kwargs), dtype_name(dtype))


def _same(obj):
    return obj


class PortableModule:
    """A ``torch.nn.Module`` in a pickled state (see :func:`portable`).

    pickle, joblib and :mod:`copy` store the module itself (``__reduce_ex__``): their files are those of a bare
    module. skops, which calls ``__reduce__`` and ``__getstate__`` instead, stores the recipe registered by
    :func:`set_module_recipe` (the class or callable, its keyword arguments and the dtype) and the module's
    ``state_dict`` as NumPy arrays; loading builds the module again (under a fixed seed, torch's global state
    left as it was) and loads that state. A module without a recipe (a module *instance* given by the user, or
    one held outside an estimator) cannot be stored by skops: ``__getstate__`` raises a TypeError that says so.
    """

    def __init__(self, module):
        self.module = module

    def __reduce_ex__(self, protocol):
        return (_same, (self.module,))

    def __getstate__(self):
        recipe = _MODULE_RECIPES.get(self.module)
        if recipe is None:
            raise TypeError(
                f"skops cannot store the torch.nn.Module {type(self.module).__name__}: it was given as an instance "
                "(skops could only rebuild a module from its class or a callable and module_kwargs, and loading "
                "arbitrary torch objects would not be safe). Save the estimator with pickle or joblib (trusted "
                "files only), or save the weights with torch.save(estimator.module_.state_dict(), path)."
            )
        builder, kwargs, dtype = recipe
        state_dict = {k: portable(v) for k, v in self.module.state_dict().items()}
        return {"builder": builder, "kwargs": kwargs, "dtype": dtype, "state_dict": state_dict,
                "training": bool(self.module.training)}

    def __setstate__(self, state):
        from .._user_modules import torch_state

        with torch_state(0, dtype_from_name(state["dtype"]), build=True):
            module = state["builder"](**state["kwargs"])
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"{state['builder']!r} did not build a torch.nn.Module (got {type(module).__name__}).")
        module.load_state_dict({k: restored(v) for k, v in state["state_dict"].items()})
        module.train(state["training"])
        self.module = module
