"""
=====================================================================
Data-parallel fit over several processes (torch.distributed)
=====================================================================

Inside an initialised ``torch.distributed`` process group with more than one rank, every skflow estimator fits
data-parallel: each rank calls ``fit`` on its own rows, the sums over rows of the gradients (and the target
moments, the class sets, VarPro's Gram matrices) are all-reduced, and every rank ends with the model a single
process fits on all the rows (full batch, ``early_stopping=False``; to round-off). Nothing to configure:
the estimator sees the process group. ``predict`` stays local. See :mod:`skflow.distributed`.

This script fits a :class:`skflow.MeanFieldNODERegressor` on the diabetes data set (bundled with
scikit-learn) sharded over the ranks:

1. every rank takes its shard of the training rows (here by ``np.array_split``: uneven shards are fine; in
   a real job each rank would read its own files and never see the others' rows);
2. **preprocessing**: the inputs must be scaled by the *same* map on every rank. A ``StandardScaler`` fitted
   on each shard would compute a different mean and variance on every rank, so the ranks would feed the model
   inputs that do not mean the same thing, and the fit would be neither the single-process fit nor even a
   sound model. Here the scaler is fitted on global statistics: the rows, sums and sums of squared
   deviations of every rank are all-reduced (:func:`global_scaler`); preprocessing the whole data set once,
   before sharding, works as well. The targets need nothing: the regressors standardise ``y`` with
   all-reduced moments themselves;
3. every rank fits; rank 0 prints the test score and compares with a fit of one process on all the training
   rows (made after the process group is closed: inside the group the fit would be data-parallel).

Launch on 2 processes with ``torchrun --nproc_per_node=2 examples/distributed_fit.py`` (NCCL and one GPU per
rank when CUDA is available, gloo on the CPU otherwise). Run with plain ``python``, the script spawns 2
local gloo processes itself.

Run: ``python examples/distributed_fit.py [--quick] [--nproc N]`` or
``torchrun --nproc_per_node=2 examples/distributed_fit.py [--quick]``
"""

# %%
import argparse
import os
import socket
import time
import warnings

import numpy as np
import torch
import torch.distributed as dist
from sklearn.datasets import load_diabetes
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from skflow import MeanFieldNODERegressor, distributed


# %%
# A scaler fitted on the rows of every rank
# -----------------------------------------
def global_scaler(X_local, device="cpu"):
    """A fitted ``StandardScaler`` whose mean and variance are those of the rows of all the ranks.

    Two all-reduces: the row count and the sums (the mean), then the sums of squared deviations from that
    mean (the variance, in two passes as the scaler computes it). The same on every rank.
    """
    X = torch.as_tensor(X_local, dtype=torch.float64, device=device)
    stats = torch.cat([X.sum(0), X.new_tensor([X.shape[0]])])
    dist.all_reduce(stats)
    n, mean = stats[-1], stats[:-1] / stats[-1]
    sq = ((X - mean) ** 2).sum(0)
    dist.all_reduce(sq)
    var = (sq / n).cpu().numpy()
    scaler = StandardScaler()
    scaler.mean_, scaler.var_ = mean.cpu().numpy(), var
    scaler.scale_ = np.where(var > 0, np.sqrt(var), 1.0)
    scaler.n_features_in_, scaler.n_samples_seen_ = X.shape[1], int(n.item())
    return scaler


def make_estimator(quick):
    return MeanFieldNODERegressor(
        n_layers=4, width=64, max_iter=30 if quick else 60, early_stopping=False, tol=0.0,
        learning_rate=0.02, random_state=0, compile=False,
    )


def load_split():
    """The same train/test split on every rank (a seeded split of the bundled data set)."""
    X, y = load_diabetes(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0)


# %%
# One rank's work
# ---------------
def run(quick=False):
    rank, world = dist.get_rank(), dist.get_world_size()
    device = "cpu"
    if dist.get_backend() == "nccl":  # one GPU per rank; the estimator follows the current device
        device = f"cuda:{torch.cuda.current_device()}"
    X_train, X_test, y_train, y_test = load_split()
    shard = np.array_split(np.arange(X_train.shape[0]), world)[rank]
    X_local, y_local = X_train[shard], y_train[shard]  # in a real job: this rank's files only

    scaler = global_scaler(X_local, device)  # NOT StandardScaler().fit(X_local): that differs between ranks
    est = make_estimator(quick).set_params(device=device)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(scaler.transform(X_local), y_local)
    elapsed = time.perf_counter() - t0
    pred = est.predict(scaler.transform(X_test))  # local: no communication
    print(f"[rank {rank}/{world}] {X_local.shape[0]} training rows, fit in {elapsed:.1f}s, "
          f"test R^2 {r2_score(y_test, pred):.4f}", flush=True)
    return est, pred, scaler


def compare_with_one_process(pred, quick):
    """Rank 0, after the group is closed: the fit of one process on all the training rows."""
    X_train, X_test, y_train, y_test = load_split()
    scaler = StandardScaler().fit(X_train)
    single = make_estimator(quick).set_params(device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single.fit(scaler.transform(X_train), y_train)
    ref = single.predict(scaler.transform(X_test))
    print(f"one process on all {X_train.shape[0]} rows: test R^2 {r2_score(y_test, ref):.4f}", flush=True)
    if pred is None:
        return float("nan")
    rel = np.max(np.abs(pred - ref)) / np.max(np.abs(ref))
    print(f"largest relative difference of the predictions of the data-parallel fit from it: {rel:.1e}", flush=True)
    return rel


def worker(rank, world, port, quick):
    """Entry point of a process spawned by this script (no torchrun): a gloo group on 127.0.0.1."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=distributed.DEFAULT_TIMEOUT)  # a lost rank raises after 10 min, not 30
    try:
        _, pred, _ = run(quick)
    finally:
        dist.destroy_process_group()
    if rank == 0:
        rel = compare_with_one_process(pred, quick)
        assert rel < 1e-6, rel


def main(quick=False, nproc=2):
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # launched by torchrun
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend, timeout=distributed.DEFAULT_TIMEOUT)
        try:
            _, pred, _ = run(quick)
        finally:
            dist.destroy_process_group()
        if int(os.environ["RANK"]) == 0:
            compare_with_one_process(pred.astype(np.float64), quick)
        return
    if not (dist.is_available() and dist.is_gloo_available()):  # a torch built without distributed support
        print("torch.distributed with gloo is not available here: one process only.", flush=True)
        X_train, X_test, y_train, y_test = load_split()
        compare_with_one_process(None, quick)
        return
    # plain `python`: spawn the ranks here, each a gloo process on this machine
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(worker, args=(nproc, port, quick), nprocs=nproc, join=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Data-parallel fit over several processes.")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 30 iterations")
    parser.add_argument("--nproc", type=int, default=2, help="processes to spawn without torchrun (default 2)")
    args = parser.parse_args()
    main(quick=args.quick, nproc=args.nproc)
