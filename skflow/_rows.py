"""The inputs of a fit in any of their accepted forms: NumPy, ``scipy.sparse`` and torch tensors.

* :class:`SparseRows` -- a CSR matrix kept on the fit's device, which behaves like the dense ``X`` tensor where the
  fit and the engines use it (``shape``, ``dtype``, ``device``, ``new_zeros`` & co, and ``X[rows]`` with a slice
  or an index tensor, which returns the dense rows asked for, built on the device). The engines read ``X`` by
  blocks of rows (a full-batch step's row blocks, a minibatch, a prediction chunk): a sparse fit densifies one
  block at a time, on the device, and its arithmetic is then that of the dense fit on the same numbers (equal
  to round-off, in practice bit for bit).
* :func:`validate_tensor` -- the checks of ``validate_data`` for a torch tensor, on its own device (a CUDA tensor
  is validated and fitted where it is, with no round trip through the host).
* :func:`as_fit_tensor`, :func:`take_rows`, :func:`host_rows`, :func:`peak_abs` -- one helper each for what the
  fit does with its inputs whatever their form.
* :func:`input_namespace_output` -- the outputs of a prediction method in the input's namespace and device under
  ``sklearn.set_config(array_api_dispatch=True)`` (a torch tensor for a torch tensor), NumPy otherwise.

Below the estimators and their shared base; no engine imports it.
"""

import functools
import threading

import numpy as np
import torch
from scipy import sparse
from sklearn import get_config
from sklearn.utils.validation import _check_feature_names, _check_n_features

__all__ = ["SparseRows", "as_fit_tensor", "host_array", "host_rows", "input_namespace_output", "is_sparse",
           "peak_abs", "take_rows", "validate_tensor"]


def is_sparse(A):
    """Whether ``A`` is a ``scipy.sparse`` matrix or array."""
    return sparse.issparse(A)


class SparseRows:
    """A CSR matrix on a torch device, read by rows as a dense tensor is.

    ``X[a:b]`` (a slice of step 1) and ``X[idx]`` (an integer index tensor or array, e.g. a minibatch) return the
    dense rows, built on the device from the nonzeros of those rows only; ``X[a:b].T`` is then what an engine
    multiplies. ``new_zeros``, ``new_empty``, ``new_ones``, ``new_full`` and ``new_tensor`` allocate like
    ``X`` (its dtype and device). Nothing ever holds more than the rows asked for densely.

    Parameters
    ----------
    crow : Tensor of shape (n_rows + 1,)
        Row pointers (int64, on the device).
    col : Tensor of shape (nnz,)
        Column indices (int64, on the device).
    values : Tensor of shape (nnz,)
        The nonzeros, in the fit's dtype, on the device.
    shape : tuple of int
        ``(n_rows, n_columns)``.
    """

    ndim = 2

    def __init__(self, crow, col, values, shape):
        self.crow, self.col, self.values = crow, col, values
        self.shape = torch.Size((int(shape[0]), int(shape[1])))
        self._host_crow = crow.cpu().numpy()  # slices of rows know their nonzeros without a device sync
        counts = crow[1:] - crow[:-1]
        self._row_of = torch.repeat_interleave(torch.arange(self.shape[0], device=crow.device), counts,
                                               output_size=int(self._host_crow[-1]))

    @classmethod
    def from_scipy(cls, A, dtype, device):
        """A ``SparseRows`` of the scipy matrix ``A`` (any format), its values cast to ``dtype``, on ``device``."""
        A = sparse.csr_matrix(A, copy=True)
        A.sum_duplicates()  # canonical: one entry per position, columns sorted (toarray's sums)
        device = torch.device(device)
        crow = torch.as_tensor(A.indptr.astype(np.int64)).to(device)
        col = torch.as_tensor(A.indices.astype(np.int64)).to(device)
        values = torch.as_tensor(np.asarray(A.data, dtype=np.float64), dtype=dtype).to(device)
        return cls(crow, col, values, A.shape)

    # ------------------------------------------------------------------ what a dense tensor exposes
    @property
    def dtype(self):
        return self.values.dtype

    @property
    def device(self):
        return self.values.device

    @property
    def nnz(self):
        return int(self._host_crow[-1])

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        return f"SparseRows(shape={tuple(self.shape)}, nnz={self.nnz}, dtype={self.dtype}, device={self.device})"

    def new_zeros(self, *args, **kwargs):
        return self.values.new_zeros(*args, **kwargs)

    def new_empty(self, *args, **kwargs):
        return self.values.new_empty(*args, **kwargs)

    def new_ones(self, *args, **kwargs):
        return self.values.new_ones(*args, **kwargs)

    def new_full(self, *args, **kwargs):
        return self.values.new_full(*args, **kwargs)

    def new_tensor(self, *args, **kwargs):
        return self.values.new_tensor(*args, **kwargs)

    def to(self, device=None, dtype=None):
        """A copy on ``device`` with values of ``dtype`` (either may be None: unchanged)."""
        device = self.device if device is None else torch.device(device)
        dtype = self.dtype if dtype is None else dtype
        return SparseRows(self.crow.to(device), self.col.to(device), self.values.to(device=device, dtype=dtype),
                          self.shape)

    # ------------------------------------------------------------------ rows
    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step != 1:
                return self[torch.arange(start, stop, step, device=self.device)]
            return self._block(start, max(start, stop))
        if isinstance(key, tuple):
            raise TypeError("SparseRows is indexed by rows only (a slice or an index tensor).")
        return self._gather(key)

    def _block(self, start, stop):
        """Dense rows ``start:stop`` (consecutive: their nonzeros are one contiguous range)."""
        p0, p1 = int(self._host_crow[start]), int(self._host_crow[stop])
        out = self.values.new_zeros((stop - start, self.shape[1]))
        out[self._row_of[p0:p1] - start, self.col[p0:p1]] = self.values[p0:p1]
        return out

    def _gather(self, idx):
        """Dense rows ``idx`` (any order, repeats allowed), gathered on the device."""
        idx = torch.as_tensor(idx, device=self.device)
        if idx.dtype == torch.bool:
            idx = torch.nonzero(idx).flatten()
        idx = idx.to(torch.int64).reshape(-1)
        idx = torch.where(idx < 0, idx + self.shape[0], idx)
        starts = self.crow[idx]
        counts = self.crow[idx + 1] - starts
        total = int(counts.sum())  # one sync: the size of the gathered nonzeros
        out = self.values.new_zeros((idx.shape[0], self.shape[1]))
        if total:
            local = torch.repeat_interleave(torch.arange(idx.shape[0], device=self.device), counts,
                                            output_size=total)
            first = torch.cumsum(counts, 0) - counts  # where each row's nonzeros start in the gathered range
            pos = starts[local] + torch.arange(total, device=self.device) - first[local]
            out[local, self.col[pos]] = self.values[pos]
        return out

    def dense(self):
        """All the rows as one dense tensor (only for a bounded number of rows: see :func:`take_rows`)."""
        return self._block(0, self.shape[0])

    def to_scipy(self):
        """The matrix as a ``scipy.sparse.csr_matrix`` on the host, in float64."""
        return sparse.csr_matrix((self.values.detach().cpu().double().numpy(), self.col.cpu().numpy(),
                                  self._host_crow), shape=tuple(self.shape))


# ---------------------------------------------------------------------------------------------- fit-side helpers


def as_fit_tensor(A, dtype, device, dense=False):
    """``A`` (NumPy, scipy.sparse or a torch tensor) as the fit's tensor on ``device`` in ``dtype``.

    A sparse matrix becomes a :class:`SparseRows` (``dense=True``: its dense tensor, built on the device); a torch
    tensor is moved (no copy when it is already there in that dtype); anything else goes through NumPy.
    """
    if is_sparse(A):
        rows = SparseRows.from_scipy(A, dtype, device)
        return rows.dense() if dense else rows
    if isinstance(A, SparseRows):
        rows = A.to(device, dtype)
        return rows.dense() if dense else rows
    if isinstance(A, torch.Tensor):
        return A.detach().to(device=device, dtype=dtype)
    return torch.as_tensor(np.ascontiguousarray(A), dtype=dtype).to(device)


def take_rows(X, idx):
    """The rows ``idx`` (None: all of them) of the fit's tensor ``X`` (dense or :class:`SparseRows`), dense, on
    ``X``'s device: a diagnostic's subsample. With ``idx=None`` a sparse ``X`` is densified whole, so callers pass
    None only when the rows are already within the subsample's bound."""
    if idx is None:
        return X.dense() if isinstance(X, SparseRows) else X
    return X[torch.as_tensor(idx, device=X.device)]


def host_rows(X, idx=None):
    """:func:`take_rows` in float64 on the CPU."""
    return take_rows(X, idx).detach().double().cpu()


def take(A, idx):
    """The rows ``idx`` (a NumPy index array) of ``A``: NumPy, scipy.sparse (kept sparse, as CSR) or a tensor."""
    if isinstance(A, torch.Tensor):
        return A[torch.as_tensor(idx, device=A.device)]
    if is_sparse(A):
        return sparse.csr_matrix(A)[idx]
    return A[idx]


def peak_abs(A):
    """``max |A|`` (0.0 for no entries) of NumPy, scipy.sparse (its stored entries) or a torch tensor (on its
    device, one sync)."""
    if is_sparse(A):
        data = A.data if A.format in ("csr", "csc", "coo") else A.tocsr().data
        return float(np.max(np.abs(data))) if np.size(data) else 0.0
    if isinstance(A, torch.Tensor):
        return float(A.detach().abs().max()) if A.numel() else 0.0
    A = np.asarray(A)
    return float(np.max(np.abs(A))) if A.size else 0.0


def host_array(a):
    """A torch tensor (any device) as a NumPy array; anything else unchanged."""
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return a


# ---------------------------------------------------------------------------------------------- torch inputs


def validate_tensor(estimator, X, reset):
    """``validate_data``'s checks of ``X`` for a torch tensor, on its own device: 2-D, at least one row and one
    column, numeric, finite; ``n_features_in_`` set (``reset``) or checked. Returns ``X`` unchanged (the fit
    casts it to its dtype on its device)."""
    name = type(estimator).__name__
    if X.layout != torch.strided:
        raise TypeError(f"{name}: torch sparse tensors (layout {X.layout}) are not supported; pass a "
                        "scipy.sparse matrix (CSR or CSC) or a dense tensor.")
    if X.ndim != 2:
        raise ValueError(f"Expected 2D array, got {X.ndim}D tensor of shape {tuple(X.shape)} instead. Reshape "
                         "your data with X.reshape(-1, 1) for a single feature or X.reshape(1, -1) for a single "
                         "sample.")
    if X.is_complex():
        raise ValueError("Complex data not supported.")
    if X.shape[0] < 1:
        raise ValueError(f"Found array with 0 sample(s) (shape={tuple(X.shape)}) while a minimum of 1 is "
                         f"required by {name}.")
    if X.shape[1] < 1:
        raise ValueError(f"Found array with 0 feature(s) (shape={tuple(X.shape)}) while a minimum of 1 is "
                         f"required by {name}.")
    if X.is_floating_point() and not bool(torch.isfinite(X).all()):
        what = "NaN" if bool(torch.isnan(X).any()) else "infinity or a value too large for its dtype"
        raise ValueError(f"Input X contains {what}.")
    _check_feature_names(estimator, X, reset=reset)
    _check_n_features(estimator, X, reset=reset)
    return X


# ---------------------------------------------------------------------------------------------- outputs

_depth = threading.local()


def _dispatching():
    return bool(get_config().get("array_api_dispatch", False))


def to_input_namespace(X, out):
    """``out`` (NumPy) as a tensor on ``X``'s device when ``X`` is a torch tensor and scikit-learn's
    ``array_api_dispatch`` is on; otherwise (and for non-numeric outputs such as string labels) unchanged."""
    if (isinstance(X, torch.Tensor) and isinstance(out, np.ndarray) and out.dtype.kind in "biuf"
            and _dispatching()):
        return torch.as_tensor(out).to(X.device)
    return out


def input_namespace_output(method):
    """Decorate a prediction method ``method(self, X, ...)`` so that its output follows :func:`to_input_namespace`.

    Only the outermost call converts (``predict_proba`` calling ``predict_log_proba`` computes in NumPy)."""

    @functools.wraps(method)
    def wrapper(self, X, *args, **kwargs):
        depth = getattr(_depth, "value", 0)
        _depth.value = depth + 1
        try:
            out = method(self, X, *args, **kwargs)
        finally:
            _depth.value = depth
        return to_input_namespace(X, out) if depth == 0 else out

    return wrapper
