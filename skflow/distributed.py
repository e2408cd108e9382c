"""Data-parallel fits inside a ``torch.distributed`` process group.

When ``fit`` is called inside an initialised default process group with more than one rank
(``torch.distributed.is_initialized()`` and ``get_world_size() > 1``), every skflow estimator fits
*data-parallel*, with nothing to configure: every rank calls ``est.fit(X_local, y_local)`` on its own rows,
in the same order of calls and with the same parameters (the same ``random_state`` in particular), and every
rank ends with the same model, the one a single process fits on the rows of all the ranks concatenated in
rank order (full batch and ``early_stopping=False``: to round-off). What is exchanged, never the data:

* the sums over rows of the gradients and of the risks, once per step (one all-reduce of one buffer);
* the target scaling of the regressors (maximum, sum and sum of squared deviations of ``y``);
* the class sets of the classifier (every rank encodes with the sorted union of all the ranks' labels);
* the Gram matrix and right-hand side of VarPro's ridge projection;
* a few flags and counts (the number of rows of every rank; whether a rank rejected its data).

Each rank must hold at least one row, and ``predict`` stays local. Fits inside a :func:`local` block are
single-process fits of the rank's own data, as outside a group. The fitted model keeps no reference to
the process group (it pickles as a single-process fit). This module is the only one that calls
``torch.distributed``: the engines reduce through :class:`DataParallel`, which the estimator hands them for
the duration of a fit (``Flow.data_parallel``).

What is a single process's fit, and what is not:

* full batch (``batch_size=None``) with ``early_stopping=False``: the single-process model, to round-off
  (the sums over rows are added in another order); ``learning_rate='auto'`` too (its probe steps reduce like
  the others). Each rank's data are its own, the rows of the single process being those of every rank
  concatenated in rank order.
* ``batch_size``: every rank splits its rows into the same number of minibatches,
  ``ceil(max rows of a rank / batch_size)`` (a rank with fewer rows takes smaller ones), and each step
  descends the mean over the union of the ranks' batches: about ``n_ranks * batch_size`` rows. A model of
  the same flow, but not the single process's (whose batches mix the rows of all ranks).
* ``early_stopping``: every rank holds out ``validation_fraction`` of its own rows; the validation risk is
  the mean over the held-out rows of all the ranks, so every rank stops at the same iteration and restores
  the same parameters; the split is not the single process's.
* every stopping rule and branch of the fit loop depends on all-reduced quantities only, so the ranks never
  take different branches, and they end with the same parameters (bit for bit: they all take the same steps
  from the same reduced gradients).
* diagnostics after training: counts (``N`` in ``required_width_``, ``pl_bound_``, the convergence report)
  are those of all the ranks; the diagnostics computed from the data themselves (kernel eigenvalues on a
  subsample, ``data_separation_``, ``kernel_spectrum_``) use this rank's rows only, and so differ between
  ranks. ``n_ranks_`` records the number of ranks of the fit (1 for a single process).
* ``RKHSNODEClassifier(length_scale='auto')``: the median pairwise distance needs pairs across ranks, so the
  (at most 1000) rows of its seeded subsample are gathered on every rank; pass a float ``length_scale`` for
  a fit that exchanges no rows at all. ``MeanFieldNODERegressor(output_scale='certify')`` is refused (certify
  on one process and pass the scale).
* A rank whose data are rejected (NaN, too few rows for the validation split, ...) makes every rank raise.
  An error in the middle of training on some ranks only (a device running out of memory) cannot be agreed
  on, and leaves the others waiting: size the model for the smallest device.

Preprocessing must be the same map on every rank: a ``StandardScaler`` fitted on each rank's shard would
scale the ranks differently, and the ranks would then fit a model of inputs that do not mean the same thing.
Fit the scaler on global statistics (all-reduce the sums and sums of squares, see
``examples/distributed_fit.py``), or preprocess once before sharding.
"""

import contextlib
import functools
import threading

import numpy as np
import torch

from ._arrays import seeded_subsample

__all__ = ["DataParallel", "consensus", "current", "is_data_parallel", "local"]


def _dist():
    """``torch.distributed`` when this build has it, else None."""
    return torch.distributed if torch.distributed.is_available() else None


_LOCAL = threading.local()


def is_data_parallel():
    """Whether a fit here would be data-parallel: an initialised default process group with more than one rank,
    outside a :func:`local` block."""
    if getattr(_LOCAL, "depth", 0):
        return False
    dist = _dist()
    return dist is not None and dist.is_initialized() and dist.get_world_size() > 1


@contextlib.contextmanager
def local():
    """Fits inside this block are single-process fits on this rank's data, even inside a process group.

    For work that differs between ranks by design: a hyper-parameter search whose candidates are spread over
    the ranks, a reference fit on one rank, ... (a data-parallel fit needs every rank to call ``fit`` alike).
    """
    _LOCAL.depth = getattr(_LOCAL, "depth", 0) + 1
    try:
        yield
    finally:
        _LOCAL.depth -= 1


def current():
    """The :class:`DataParallel` handle of the default process group, or None (no group, or a single rank)."""
    return DataParallel() if is_data_parallel() else None


class DataParallel:
    """The collectives a data-parallel fit needs, on the default process group.

    It holds no process-group object (only the rank, the number of ranks and the backend's name), so that
    an engine that carries it can be copied and pickled. Every method is a collective: all the ranks must
    call it, in the same order, with tensors of the same shapes.

    Tensors travel on the device the backend needs: CUDA for NCCL (the current CUDA device), the CPU for
    gloo and MPI; with a mixed backend (e.g. ``'cpu:gloo,cuda:nccl'``) each tensor stays where it is. The
    results come back on the device and in the dtype of the inputs.
    """

    def __init__(self):
        dist = torch.distributed
        self.rank = int(dist.get_rank())
        self.world_size = int(dist.get_world_size())
        self.backend = str(dist.get_backend())

    def __repr__(self):
        return f"DataParallel(rank={self.rank}, world_size={self.world_size}, backend={self.backend!r})"

    def _device(self, like):
        if "," in self.backend or ":" in self.backend:  # a backend per device type: keep the tensor's
            return like.device
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def _all_reduce(self, tensors, op):
        if not tensors:
            return ()
        dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
        device = self._device(tensors[0])
        flat = torch.cat([t.detach().reshape(-1).to(device=device, dtype=dtype) for t in tensors])
        torch.distributed.all_reduce(flat, op=op)
        out, start = [], 0
        for t in tensors:
            out.append(flat[start:start + t.numel()].view(t.shape).to(device=t.device, dtype=t.dtype))
            start += t.numel()
        return tuple(out)

    def all_reduce_sum(self, *tensors):
        """The elementwise sums over the ranks of ``tensors``, in one collective (one flattened buffer)."""
        return self._all_reduce(tensors, torch.distributed.ReduceOp.SUM)

    def all_reduce_max(self, *tensors):
        """The elementwise maxima over the ranks of ``tensors``, in one collective."""
        return self._all_reduce(tensors, torch.distributed.ReduceOp.MAX)

    def all_gather_object(self, obj):
        """The list, in rank order, of the picklable ``obj`` of every rank."""
        out = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def rows_per_rank(self, n_local):
        """The number of rows of every rank (a tuple of ints, in rank order)."""
        return tuple(int(n) for n in self.all_gather_object(int(n_local)))

    def any(self, flag):
        """Whether ``flag`` is true on at least one rank."""
        (out,) = self.all_reduce_max(torch.tensor([1.0 if flag else 0.0], dtype=torch.float64))
        return bool(out[0] > 0)

    def gather_subsample(self, A, max_samples, rows_per_rank, seed=0, sort=False):
        """The rows ``seeded_subsample(N, max_samples)`` of the concatenation, in rank order, of every rank's
        ``A`` (NumPy, ``N`` rows in all), as one NumPy array on every rank, in the order a single process takes
        them: what a subsampled statistic needs to be that of a single process. At most ``max_samples`` rows
        travel (all of them when ``N <= max_samples``)."""
        A = np.asarray(A)
        N = int(sum(rows_per_rank))
        offset = int(sum(rows_per_rank[: self.rank]))
        idx = seeded_subsample(N, max_samples, seed=seed, sort=sort)
        idx = np.arange(N) if idx is None else np.asarray(idx)
        mine = np.flatnonzero((idx >= offset) & (idx < offset + A.shape[0]))
        parts = self.all_gather_object((mine, A[idx[mine] - offset]))
        out = np.empty((idx.shape[0],) + A.shape[1:], dtype=np.result_type(*[p[1] for p in parts]))
        for positions, rows in parts:
            out[positions] = rows
        return out


@contextlib.contextmanager
def consensus(dp):
    """Run a block that may fail on some ranks only (input validation, memory checks), and fail on every rank.

    At the end of the block the ranks agree (one small all-reduce) whether any of them raised: the ones that
    did re-raise their error, the others raise a ``RuntimeError`` that says so, so that no rank goes on to a
    collective that the failed ones will never join (which would hang the group). Inside the block every
    collective must come before anything that can raise on some ranks only. ``dp=None`` (a single process):
    the block runs as it is.
    """
    if dp is None:
        yield
        return
    try:
        yield
    except Exception:
        dp.any(True)
        raise
    if dp.any(False):
        raise RuntimeError(f"data-parallel fit: another rank failed (this is rank {dp.rank} of {dp.world_size}); "
                           "see its error. Every rank must be given valid data of at least one row.")
