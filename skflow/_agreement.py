"""What the ranks of a data-parallel fit must agree on (see :mod:`skflow.distributed`): a signature of each rank's
fit (:func:`fit_signature`), compared by :func:`disagreement` into the error message every rank raises.

Values are compared by what they mean, not by their identity (:func:`_fingerprint`): numbers by value, arrays,
tensors, ``RandomState`` objects and modules by their contents, functions and classes by their qualified names.
Nothing here calls ``torch.distributed``.
"""

import hashlib
import numbers
import sys

import numpy as np
import torch
from sklearn.base import is_classifier

__all__ = ["PER_RANK_PARAMS", "disagreement", "fit_signature"]

#: parameters that may differ between the ranks of a data-parallel fit (``device``: its type must agree)
PER_RANK_PARAMS = ("verbose", "device")


def _VERSION():
    return getattr(sys.modules.get(__package__), "__version__", None)


def _qualname(obj):
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    module = getattr(obj, "__module__", None) or type(obj).__module__
    return f"{module}.{name}"


def _digest(array):
    a = np.ascontiguousarray(array)
    h = hashlib.sha1(a.dtype.str.encode() + str(a.shape).encode())
    h.update(a.view(np.uint8).reshape(-1) if a.dtype.kind not in "OUS" else repr(a.tolist()).encode())
    return h.hexdigest()[:12]


def _fingerprint(value, depth=0):
    """A picklable value, equal on two ranks when ``value`` means the same parameter on both (not its identity:
    no memory addresses): numbers by value, arrays / tensors / modules / RandomStates by their contents,
    functions and classes by their qualified names."""
    if depth > 8:
        return ("deep", type(value).__qualname__)
    if value is None:
        return ("None",)
    if isinstance(value, (bool, np.bool_)):
        return ("bool", bool(value))
    if isinstance(value, str):  # np.str_ too
        return ("str", str(value))
    if isinstance(value, bytes):
        return ("bytes", bytes(value))
    if isinstance(value, numbers.Number) and not isinstance(value, (np.ndarray, torch.Tensor)):
        if isinstance(value, numbers.Integral):
            return ("num", int(value))
        if isinstance(value, numbers.Real):
            f = float(value)
            return ("num", "nan" if f != f else f)
        return ("complex", repr(complex(value)))
    if isinstance(value, (list, tuple)):
        return ("seq", tuple(_fingerprint(v, depth + 1) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted(((repr(k), _fingerprint(v, depth + 1)) for k, v in value.items()),
                                     key=lambda kv: kv[0])))
    if isinstance(value, np.ndarray):
        return ("array", value.shape, value.dtype.str, _digest(value))
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), str(value.dtype), _digest(value.detach().cpu().numpy()))
    if isinstance(value, np.random.RandomState):
        state = value.get_state()
        return ("RandomState", _digest(state[1]), int(state[2]), int(state[3]), float(state[4]))
    if isinstance(value, (torch.dtype, torch.device)):
        return (type(value).__name__, str(value))
    if isinstance(value, torch.nn.Module):
        return ("module", _qualname(type(value)), repr(value),
                tuple((k, _fingerprint(t, depth + 1)) for k, t in value.state_dict().items()))
    if hasattr(value, "get_params") and not isinstance(value, type):
        try:
            return ("estimator", _qualname(type(value)), _fingerprint(value.get_params(deep=False), depth + 1))
        except Exception:  # noqa: BLE001 - not an estimator after all
            pass
    if callable(value):
        return ("callable", _qualname(value))
    text = repr(value)
    return ("object", _qualname(type(value)), None if " at 0x" in text else text)


def _show(value):
    """A short display of a parameter's value for the error message."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return f"{type(value).__name__} of shape {tuple(value.shape)} (digest {_fingerprint(value)[-1]})"
    if isinstance(value, np.random.RandomState):
        return f"RandomState (state digest {_fingerprint(value)[1]})"
    if isinstance(value, torch.nn.Module):
        digest = hashlib.sha1(repr(_fingerprint(value)).encode()).hexdigest()[:12]
        return f"{type(value).__name__} module (digest of its structure and weights {digest})"
    if isinstance(value, type) or callable(value) and hasattr(value, "__qualname__"):
        return _qualname(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _label_kind(y):
    y = np.asarray(y)
    if y.dtype.kind in "biuf":
        return "numbers"
    if y.dtype.kind in "US":
        return "strings"
    kinds = {"strings" if isinstance(v, str) else "numbers" if isinstance(v, numbers.Number) else type(v).__name__
             for v in y.ravel()}
    return "mixed " + "/".join(sorted(kinds)) if len(kinds) > 1 else (kinds.pop() if kinds else "numbers")


def fit_signature(estimator, X, y, warm=False, weighted=False):
    """What the ranks of a data-parallel fit must agree on, from this rank's estimator and validated data.

    A list of ``(key, what, fingerprint, shown)``: ``fingerprint`` is compared between the ranks, ``shown`` is
    how the error message quotes this rank's value (``"n_features=5"``). See the module docstring for the list;
    :data:`PER_RANK_PARAMS` are not compared (``device`` by its type only).

    Parameters
    ----------
    estimator : skflow estimator
        This rank's estimator.
    X : ndarray of shape (n_samples, n_features)
        This rank's validated inputs.
    y : ndarray
        This rank's validated targets.
    warm : bool, default=False
        Whether the fit continues a previous one (its parameters' digest is then compared too).
    weighted : bool, default=False
        Whether this rank's fit has sample weights (every rank must pass them, or none: the weighted fit
        all-reduces the weights' totals).

    Returns
    -------
    list of tuple
        ``(key, what, fingerprint, shown)`` per item compared.
    """
    cls = type(estimator)
    name = cls.__name__
    out = [("estimator", "the estimator", _qualname(cls), f"a {name}"),
           ("version", "the version of skflow", _VERSION(), f"skflow {_VERSION()}")]
    params = estimator.get_params(deep=False)
    if "random_state" in params and params["random_state"] is None:
        raise ValueError(f"{name}: random_state=None in a data-parallel fit would draw another initialisation on "
                         "every rank (and the ranks would not end with the same model); pass the same int "
                         "random_state on every rank.")
    n_iter = getattr(estimator, "n_iter_", None) if warm else None
    fitted = None
    if warm:  # the model it continues: the same on every rank (e.g. not fitted on each rank's own rows alone)
        try:
            fitted = _fingerprint(list(estimator.flow_.parameters()))
        except Exception:  # noqa: BLE001 - an engine without parameters(): its iteration count only
            fitted = None
    digest = hashlib.sha1(repr(fitted).encode()).hexdigest()[:12]
    out.append(("warm", "the model the fit starts from (warm_start)", (bool(warm), n_iter, fitted),
                f"a warm start from iteration {n_iter} (parameters digest {digest})" if warm else "a fit from scratch"))
    out.append(("weights", "whether sample_weight is given", bool(weighted),
                "sample_weight given" if weighted else "no sample_weight"))
    for key in sorted(params):
        if key in PER_RANK_PARAMS:
            continue
        try:
            fp = _fingerprint(params[key])
        except Exception:  # noqa: BLE001 - a value that cannot be inspected: compared by its type only
            fp = ("uninspectable", _qualname(type(params[key])))
        out.append((f"param:{key}", f"the parameter {key}", fp, f"{key}={_show(params[key])}"))
    if "device" in params:
        device = params["device"]
        if device is None or device == "auto":  # as the estimators resolve it
            device = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
        out.append(("device", "the device type", device.type, f"device={str(device)!r}"))
    n_features = int(X.shape[1]) if getattr(X, "ndim", 0) == 2 else None
    out.append(("n_features", "the number of input features (columns of X)", n_features, f"n_features={n_features}"))
    names = getattr(estimator, "feature_names_in_", None)  # set by the validation of X (a DataFrame's columns)
    names = None if names is None else tuple(str(n) for n in names)
    out.append(("feature_names", "the feature names of X", names,
                "X without feature names" if names is None else f"feature names {_show(list(names))}"))
    y = np.asarray(y) if not isinstance(y, np.ndarray) else y
    if is_classifier(estimator):
        kind = _label_kind(y)
        out.append(("labels", "the type of the labels", kind, f"labels of type {y.dtype} ({kind})"))
    else:
        n_out = 1 if y.ndim == 1 else int(y.shape[1])
        out.append(("n_outputs", "the number of outputs (columns of y)", (y.ndim, n_out),
                    f"n_outputs={n_out}" + (" (1-D y)" if y.ndim == 1 else " (2-D y)")))
    return out


def _ranks(ranks):
    ranks = list(ranks)
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    if len(ranks) > 6:
        return f"ranks {', '.join(map(str, ranks[:5]))}, ... ({len(ranks)} ranks)"
    return f"ranks {', '.join(map(str, ranks))}"


_HINTS = {
    "labels": " (the classes must be of one type, numbers on every rank or strings on every rank: one process "
              "given these labels together in one array raises 'Unknown label type')",
    "param:random_state": " (every rank must draw the same initialisation)",
}


def disagreement(signatures):
    """The error message (the same on every rank) that says where the :func:`fit_signature` of the ranks (in
    rank order) differ, or None when they agree.

    Parameters
    ----------
    signatures : sequence of list or None
        Every rank's :func:`fit_signature`, in rank order.

    Returns
    -------
    str or None
        The message, or None when the ranks agree.
    """
    keys, what = [], {}
    for sig in signatures:
        for key, description, _, _ in sig or ():
            if key not in what:
                keys.append(key)
                what[key] = description
    tables = [{key: (fp, shown) for key, _, fp, shown in sig or ()} for sig in signatures]
    problems = []
    for key in keys:
        groups = []  # [(fingerprint, shown, [ranks])], in order of first appearance
        for rank, table in enumerate(tables):
            fp, shown = table.get(key, (("absent",), f"no {key.split(':')[-1]}"))
            for group in groups:
                if group[0] == fp:
                    group[2].append(rank)
                    break
            else:
                groups.append((fp, shown, [rank]))
        if len(groups) > 1:
            shown = ", ".join(f"{_ranks(r)} {'has' if len(r) == 1 else 'have'} {s}" for _, s, r in groups[:4])
            more = f", and {len(groups) - 4} other values" if len(groups) > 4 else ""
            verb = "differ" if key == "feature_names" else "differs"
            problems.append(f"{what[key]} {verb}: {shown}{more}{_HINTS.get(key, '')}")
        if key == "estimator" and len(groups) > 1:
            break  # different estimators: their parameters differ of course
    if not problems:
        return None
    first = next((t["estimator"][1][2:] for t in tables if "estimator" in t), "data-parallel fit")
    return (f"{first}: the {len(signatures)} ranks of this data-parallel fit disagree, so every rank raises: "
            + "; ".join(problems) + ". Every rank must call fit alike: the same estimator with the same parameters, "
            "on data with the same number of features and outputs (labels of one type).")
