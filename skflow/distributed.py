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
  An error in the middle of training on some ranks only (a device running out of memory, Ctrl-C on one
  rank) cannot be agreed on, and leaves the others waiting until the group's timeout (below): size the
  model for the smallest device.
* one data-parallel fit at a time per process: fits run in several threads at once (a threaded joblib
  backend, ...) would interleave their collectives; run them in one thread, or inside :func:`local`.

What must agree, and is checked: the first collective of every data-parallel fit (right after each rank has
validated its own data, before anything else is exchanged) gathers from every rank a short description of
its fit (:func:`fit_signature`), and every rank raises the same ``ValueError``, naming the ranks and what
differs (``"rank 0 has n_features=5, rank 1 has n_features=6"``), when the ranks disagree on:

* the version of skflow, the estimator's class and its parameters (``get_params(deep=False)``: widths,
  solvers, ``random_state``, ``dtype``, ...; arrays, seeded ``RandomState`` objects and user modules by
  their contents), except the ones that may legitimately differ between ranks (:data:`PER_RANK_PARAMS`):
  ``verbose`` (e.g. log on rank 0 only) and ``device``, whose *type* must agree (``'cuda:0'`` on one rank
  and ``'cuda:1'`` on another is fine, ``'cpu'`` and ``'cuda'`` are not);
* the number of input features (columns of ``X``) and their names (a DataFrame's columns, or none); for
  the regressors the number of outputs (columns of ``y``, and whether ``y`` is 1-D); for the classifiers
  the type of the labels (numbers on every rank or strings on every rank: the class sets themselves may
  differ, the union is taken);
* whether the fit continues a fitted model (``warm_start``), from which iteration and which parameters
  (the model of an earlier data-parallel fit, the same on every rank).

``random_state=None`` is refused in a data-parallel fit (every rank would draw another initialisation):
pass the same int on every rank. A rank whose data are rejected by validation (NaN, no rows, ...) makes
every rank raise: that rank its own error, the others an error of the same type that quotes it.

Timeouts. skflow opens no process group of its own: it uses the default group that you initialise, and
every collective of a fit waits at most that group's timeout, ``init_process_group(..., timeout=...)``
(PyTorch's defaults: 30 minutes for gloo; 10 for NCCL, whose watchdog then aborts the process). A collective
that times out, or whose peer left the group, raises a ``RuntimeError`` that says so (with the backend's
message). The checks above need every rank to reach ``fit``: a rank that never calls it, dies, or fails in
the middle of training leaves the others waiting until that timeout, so pass one that suits your job:
:data:`DEFAULT_TIMEOUT` (10 minutes) is what ``examples/distributed_fit.py`` passes; the tests use seconds.

Preprocessing must be the same map on every rank: a ``StandardScaler`` fitted on each rank's shard would
scale the ranks differently, and the ranks would then fit a model of inputs that do not mean the same thing.
Fit the scaler on global statistics (all-reduce the sums and sums of squares, see
``examples/distributed_fit.py``), or preprocess once before sharding.
"""

import contextlib
import datetime
import functools
import threading

import numpy as np
import torch

from ._agreement import PER_RANK_PARAMS, disagreement, fit_signature
from ._arrays import seeded_subsample

__all__ = ["DEFAULT_TIMEOUT", "PER_RANK_PARAMS", "DataParallel", "consensus", "current", "disagreement",
           "fit_signature", "is_data_parallel", "local"]

#: a sensible ``timeout`` for the process groups of data-parallel fits (``init_process_group(timeout=...)``):
#: long enough for the slowest step of a large model, short enough that a lost rank does not hold a job for
#: PyTorch's default 30 minutes (gloo)
DEFAULT_TIMEOUT = datetime.timedelta(minutes=10)


def _dist():
    """``torch.distributed`` when this build has it, else None."""
    return torch.distributed if torch.distributed.is_available() else None


_LOCAL = threading.local()


def is_data_parallel():
    """Whether a fit here would be data-parallel: an initialised default process group with more than one rank,
    outside a :func:`local` block.

    Returns
    -------
    bool
        True when a fit here would be data-parallel.
    """
    if getattr(_LOCAL, "depth", 0):
        return False
    dist = _dist()
    return dist is not None and dist.is_initialized() and dist.get_world_size() > 1


@contextlib.contextmanager
def local():
    """Fits inside this block are single-process fits on this rank's data, even inside a process group.

    For work that differs between ranks by design: a hyper-parameter search whose candidates are spread over
    the ranks, a reference fit on one rank, ... (a data-parallel fit needs every rank to call ``fit`` alike).

    Yields
    ------
    None
        The block runs with data-parallel fits turned off in this thread.
    """
    _LOCAL.depth = getattr(_LOCAL, "depth", 0) + 1
    try:
        yield
    finally:
        _LOCAL.depth -= 1


def current():
    """The :class:`DataParallel` handle of the default process group, or None (no group, or a single rank).

    Returns
    -------
    DataParallel or None
        The handle when :func:`is_data_parallel`, else None.
    """
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
        with self._explained():
            torch.distributed.all_reduce(flat, op=op)
        out, start = [], 0
        for t in tensors:
            out.append(flat[start:start + t.numel()].view(t.shape).to(device=t.device, dtype=t.dtype))
            start += t.numel()
        return tuple(out)

    def all_reduce_sum(self, *tensors):
        """The elementwise sums over the ranks of ``tensors``, in one collective (one flattened buffer).

        Parameters
        ----------
        *tensors : torch.Tensor
            The tensors of this rank (any shapes, devices and dtypes).

        Returns
        -------
        tuple of torch.Tensor
            The reduced tensors, with the shapes, devices and dtypes of ``tensors``.
        """
        return self._all_reduce(tensors, torch.distributed.ReduceOp.SUM)

    def all_reduce_max(self, *tensors):
        """The elementwise maxima over the ranks of ``tensors``, in one collective.

        Parameters
        ----------
        *tensors : torch.Tensor
            The tensors of this rank (any shapes, devices and dtypes).

        Returns
        -------
        tuple of torch.Tensor
            The reduced tensors, with the shapes, devices and dtypes of ``tensors``.
        """
        return self._all_reduce(tensors, torch.distributed.ReduceOp.MAX)

    def all_gather_object(self, obj):
        """The list, in rank order, of the picklable ``obj`` of every rank.

        Parameters
        ----------
        obj : object
            This rank's object (picklable).

        Returns
        -------
        list
            Every rank's ``obj``, in rank order.
        """
        out = [None] * self.world_size
        with self._explained():
            torch.distributed.all_gather_object(out, obj)
        return out

    @contextlib.contextmanager
    def _explained(self):
        """A collective that fails (it waited longer than the group's timeout, or a rank left the group) raises
        a ``RuntimeError`` that says what it means, with the backend's message."""
        try:
            yield
        except RuntimeError as exc:
            text = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else type(exc).__name__
            timed_out = "timed out" in text.lower() or "timeout" in text.lower()
            what = ("waited longer than the process group's timeout (init_process_group(timeout=...))"
                    if timed_out else "failed")
            raise RuntimeError(
                f"data-parallel fit (rank {self.rank} of {self.world_size}): a collective {what}: another rank did "
                "not join it (it failed or was interrupted during the fit, never called fit, fits something else, "
                f"or left the group); the process group may be unusable now. The backend said: {text}") from exc

    def rows_per_rank(self, n_local):
        """The number of rows of every rank.

        Parameters
        ----------
        n_local : int
            This rank's number of rows.

        Returns
        -------
        tuple of int
            Every rank's number of rows, in rank order.
        """
        return tuple(int(n) for n in self.all_gather_object(int(n_local)))

    def any(self, flag):
        """Whether ``flag`` is true on at least one rank.

        Parameters
        ----------
        flag : bool
            This rank's flag.

        Returns
        -------
        bool
            True when some rank's ``flag`` is true.
        """
        (out,) = self.all_reduce_max(torch.tensor([1.0 if flag else 0.0], dtype=torch.float64))
        return bool(out[0] > 0)

    def gather_subsample(self, A, max_samples, rows_per_rank, seed=0, sort=False):
        """The rows ``seeded_subsample(N, max_samples)`` of the concatenation, in rank order, of every rank's
        ``A`` (NumPy, ``N`` rows in all), as one NumPy array on every rank, in the order a single process takes
        them: what a subsampled statistic needs to be that of a single process. At most ``max_samples`` rows
        travel (all of them when ``N <= max_samples``).

        Parameters
        ----------
        A : array-like of shape (n_local, ...)
            This rank's rows.
        max_samples : int or None
            The size of the subsample, as :func:`skflow._arrays.seeded_subsample` takes it.
        rows_per_rank : sequence of int
            Every rank's number of rows (:meth:`rows_per_rank`).
        seed : int, default=0
            The seed of the subsample.
        sort : bool, default=False
            Return the subsampled rows in their order in the concatenation.

        Returns
        -------
        ndarray of shape (n_subsample, ...)
            The subsampled rows, the same on every rank.
        """
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


class _Block:
    """What a :func:`consensus` block yields: :meth:`agree` records this rank's :func:`fit_signature`, which the
    ranks compare at the end of the block (in the same collective as their errors)."""

    def __init__(self, dp):
        self.dp = dp
        self.signature = None

    def agree(self, estimator, X, y, warm=False, weighted=False):
        """Have the ranks check, at the end of the block, that they agree on the fit (see :func:`fit_signature`);
        a single process (``dp=None``): nothing to check."""
        if self.dp is not None:
            self.signature = fit_signature(estimator, X, y, warm, weighted)


#: the types of error that the ranks which did not fail raise as the failed rank did (others: RuntimeError)
_MIRRORED = (ValueError, TypeError, NotImplementedError, MemoryError)


def _failure(exc):
    kind = next((t.__name__ for t in _MIRRORED if isinstance(exc, t)), "RuntimeError")
    text = f"{type(exc).__name__}: {exc}"
    return ("error", kind, text if len(text) <= 600 else text[:600] + " ...")


@contextlib.contextmanager
def consensus(dp):
    """Run a block that may fail on some ranks only (input validation, memory checks), and fail on every rank.

    At the end of the block the ranks exchange (one small ``all_gather_object``) whether they raised, and what
    they agree on (:meth:`_Block.agree`, see :func:`fit_signature`): the ranks that raised re-raise their error,
    the others raise an error of the same type (``ValueError``, ``TypeError``, ``NotImplementedError``,
    ``MemoryError``; else ``RuntimeError``) that quotes it, so that no rank goes on to a collective that the
    failed ones will never join (which would hang the group). When no rank raised but they disagree, every
    rank raises the same ``ValueError``. Inside the block every collective must come before anything that can
    raise on some ranks only. ``dp=None`` (a single process): the block runs as it is.

    Parameters
    ----------
    dp : DataParallel or None
        The process group's handle (:func:`current`); None for a single process.

    Yields
    ------
    _Block
        Its ``agree(estimator, X, y, warm=False)`` records what the ranks must agree on.
    """
    block = _Block(dp)
    if dp is None:
        yield block
        return
    try:
        yield block
    except Exception as exc:
        try:
            dp.all_gather_object(_failure(exc))
        except Exception:  # noqa: BLE001 - the group itself failed (a timeout, a lost rank): this rank's error
            pass
        raise
    outcomes = dp.all_gather_object(("ok", block.signature))
    failed = [(r, o) for r, o in enumerate(outcomes) if o[0] == "error"]
    if failed:
        kind = next((t for t in _MIRRORED if t.__name__ == failed[0][1][1]), RuntimeError)
        quoted = "; ".join(f"rank {r} raised {o[2].rstrip('. ')}" for r, o in failed)
        raise kind(f"data-parallel fit: another rank failed, so every rank raises (this is rank {dp.rank} of "
                   f"{dp.world_size}): {quoted}. Fix that rank's data or parameters: every rank must be given valid "
                   "data (at least one row).")
    signatures = [o[1] for o in outcomes]
    if any(sig is not None for sig in signatures):
        problem = disagreement(signatures)
        if problem:
            raise ValueError(problem)
