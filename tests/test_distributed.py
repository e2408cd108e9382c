"""Data-parallel fits (skflow.distributed): 2 gloo processes on the CPU fit what one process fits on all the rows.

Two worker processes (tests/_distributed_worker.py) join a gloo group on 127.0.0.1, each fits every case on its
shard of the rows (37 and 63 rows), and the results are compared here with a fit on all 100 rows in this
process: equal to 1e-8 relative in float64 (full batch, ``early_stopping=False``). The same two workers then
run the disagreements (``worker.MISMATCHES``: ranks with other n_features, widths, n_outputs, label types,
parameters, warm starts, or no rows), each of which must make both ranks raise the same clear error at once. The
workers start once for all of these (their process group's timeout is 60 s, and the launch is killed after
120 s: no test can hang); one more launch checks the timeout itself (2 s).
"""

import importlib.util
import os
import pickle
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from skflow import _agreement, distributed
from skflow.flows.varpro import VarProFlow

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_distributed_worker.py"
RTOL = 1e-8

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this build",
)


def _load_worker():
    spec = importlib.util.spec_from_file_location("_distributed_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = _load_worker()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path, names, world_size=2, timeout=2 * worker.PG_TIMEOUT_S, **env_vars):
    """Run the worker on ``world_size`` ranks; returns the results of every rank (a list of dicts)."""
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), **env_vars)
    root = str(HERE.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    outs = [tmp_path / f"rank{r}.pkl" for r in range(world_size)]
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(r), str(world_size), str(port), str(outs[r]),
                               *names], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for r in range(world_size)]
    logs, deadline = [], time.monotonic() + timeout
    try:
        for p in procs:
            logs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0].decode(errors="replace"))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail("the data-parallel workers did not finish (a collective hung?)")
    for r, p in enumerate(procs):
        assert p.returncode == 0, f"rank {r} failed:\n{logs[r][-3000:]}"
    results = []
    for path in outs:
        with open(path, "rb") as f:
            results.append(pickle.load(f))
    return results


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    # one launch for the file: the cases, then the disagreements, in the same two processes
    return _launch(tmp_path_factory.mktemp("dp"), list(worker.CASES) + list(worker.MISMATCHES))


def _single(name):
    X, y, X_test, _ = worker.case_data(name)
    est = worker.CASES[name][0]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y, sample_weight=worker.case_weights(name))
    return worker.summary(est, X_test)


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)) if b.size else 0.0


def _varpro_ready():
    return getattr(VarProFlow, "supports_data_parallel", False)


EXACT = [name for name, case in worker.CASES.items() if case[2]]


@pytest.mark.parametrize("name", EXACT)
def test_two_ranks_equal_one_process(ranks, name):
    if name.startswith("varpro") and not _varpro_ready():
        assert "error" in ranks[0][name] and "NotImplementedError" in ranks[0][name]["error"]
        pytest.skip("VarProFlow does not reduce over ranks yet (skflow/flows/varpro.py)")
    for r, res in enumerate(ranks):
        assert "error" not in res[name], f"rank {r}: {res[name].get('error')}"
    ref = _single(name)
    for r, res in enumerate(ranks):
        got = res[name]
        assert got["n_ranks_"] == 2
        assert not got["pickled_handle"]
        for key, value in ref.items():
            if key == "n_ranks_":
                continue
            if key in ("classes_", "predict") and value.dtype.kind not in "fc":
                np.testing.assert_array_equal(got[key], value, err_msg=f"{name} rank {r}: {key}")
                continue
            assert got[key].shape == value.shape, f"{name} rank {r}: {key}"
            assert _rel(got[key], value) <= RTOL, f"{name} rank {r}: {key} differs by {_rel(got[key], value):.3g}"


def test_ranks_agree_exactly(ranks):
    """Every rank ends with the same model, bit for bit, whatever the mode (minibatches, early stopping)."""
    for name in ranks[0]:
        if "error" in ranks[0][name]:
            continue
        for key, value in ranks[0][name].items():
            if key == "seconds":  # a wall time
                continue
            np.testing.assert_array_equal(ranks[1][name][key], value, err_msg=f"{name}: {key}")


def test_classes_are_the_union_of_the_ranks(ranks):
    X, y, _, split = worker.case_data("rkhs_label_subsets")
    assert set(y[:split]) == {"ant", "bee"} and set(y[split:]) == {"bee", "cat"}
    for res in ranks:
        assert list(res["rkhs_label_subsets"]["classes_"]) == ["ant", "bee", "cat"]
        assert res["rkhs_label_subsets"]["proba"].shape[1] == 3


def test_minibatch_and_early_stopping_run(ranks):
    """Per-rank minibatches and per-rank validation rows: a model (not a single process's), the same on each rank."""
    names = [name for name, case in worker.CASES.items() if not case[2] and name != "bad_rank1"]
    assert {"node_minibatch", "node_early_stopping", "rkhs_minibatch"} <= set(names)
    for name in names:
        if name.startswith("varpro") and not _varpro_ready():
            continue
        res = ranks[0][name]
        assert "error" not in res, res.get("error")
        assert np.all(np.isfinite(res["loss_curve_"]))


def test_invalid_data_on_one_rank_fails_every_rank(ranks):
    """A rank whose data are rejected makes every rank raise (no rank hangs in a collective); the group stays
    usable (the workers fit the case last, and exit cleanly)."""
    results = ranks
    assert results[1]["bad_rank1"]["error"].startswith("ValueError: Input X contains NaN")
    # the other rank raises an error of the same type, which quotes the failed rank's
    assert results[0]["bad_rank1"]["error"].startswith("ValueError: data-parallel fit: another rank failed")
    assert "rank 1 raised ValueError: Input X contains NaN" in results[0]["bad_rank1"]["error"]


#: disagreement -> what every rank's error must say
DISAGREEMENTS = {
    "mismatch_n_features": "rank 0 has n_features=4, rank 1 has n_features=3",
    "mismatch_weights": "rank 0 has sample_weight given, rank 1 has no sample_weight",
    "mismatch_width": "the parameter width differs: rank 0 has width=12, rank 1 has width=16",
    "mismatch_rkhs_width": "the parameter n_features differs: rank 0 has n_features=24, rank 1 has n_features=32",
    "mismatch_n_outputs": "rank 0 has n_outputs=1 (1-D y), rank 1 has n_outputs=2 (2-D y)",
    "mismatch_y_ndim": "rank 0 has n_outputs=1 (1-D y), rank 1 has n_outputs=1 (2-D y)",
    "mismatch_labels": "rank 0 has labels of type int64 (numbers), rank 1 has labels of type <U3 (strings)",
    "mismatch_random_state": "rank 0 has random_state=0, rank 1 has random_state=1",
    "mismatch_estimator": "rank 0 has a MeanFieldNODERegressor, rank 1 has a VarProSHLRegressor",
    "mismatch_warm_start": "rank 0 has a warm start from iteration 12 (parameters digest ",
    "mismatch_warm_parameters": "rank 0 has a warm start from iteration 12 (parameters digest ",
    "mismatch_dtype": "the parameter dtype differs: rank 0 has dtype='float64', rank 1 has dtype='float32'",
    "mismatch_feature_names": "the feature names of X differ: rank 0 has feature names ['a', 'b', 'c', 'd'], "
                              "rank 1 has X without feature names",
}


def test_every_disagreement_is_tested():
    assert set(DISAGREEMENTS) == {name for name in worker.MISMATCHES if name.startswith("mismatch_")}


@pytest.mark.parametrize("name", list(DISAGREEMENTS))
def test_ranks_that_disagree_raise_the_same_error(ranks, name):
    """Ranks that disagree (before this check: a gloo abort, a hang, or a silent string model) all raise the same
    ValueError, which names the ranks and what differs, at once (no collective waits for its timeout)."""
    errors = [res[name].get("error") for res in ranks]
    assert errors[0] is not None, f"{name}: rank 0 fitted"
    if errors[0].startswith("ModuleNotFoundError"):
        pytest.skip(errors[0])
    assert errors[0] == errors[1], f"{name}: the ranks raise different errors:\n{errors[0]}\n{errors[1]}"
    assert errors[0].startswith("ValueError: ") and "ranks of this data-parallel fit disagree" in errors[0]
    assert DISAGREEMENTS[name] in errors[0], errors[0]
    for res in ranks:
        assert res[name]["seconds"] < 0.5 * worker.PG_TIMEOUT_S


def test_random_state_none_is_refused(ranks):
    for res in ranks:
        assert res["random_state_none"]["type"] == "ValueError"
        assert "random_state=None in a data-parallel fit" in res["random_state_none"]["error"]


def test_a_rank_without_rows_fails_every_rank(ranks):
    """0 rows on rank 1: rank 1 raises scikit-learn's error, rank 0 a ValueError that quotes it (no hang)."""
    assert ranks[1]["empty_rank1"]["error"].startswith("ValueError: Found array with 0 sample(s)")
    assert ranks[0]["empty_rank1"]["type"] == "ValueError"
    assert "rank 1 raised ValueError: Found array with 0 sample(s)" in ranks[0]["empty_rank1"]["error"]


def test_a_rank_with_one_row(ranks):
    """One row on rank 1 fits (full batch and minibatches, the same model on both ranks: see
    test_ranks_agree_exactly); with early stopping it cannot hold out a row, and every rank raises."""
    for name in ("one_row_rank1", "one_row_rank1_minibatch"):
        for res in ranks:
            assert "error" not in res[name], res[name].get("error")
            assert np.all(np.isfinite(res[name]["predict"]))
    X, y = np.concatenate([worker._regression_shard(0)[0], worker._regression_shard(1)[0][:1]]), \
        np.concatenate([worker._regression_shard(0)[1], worker._regression_shard(1)[1][:1]])
    single = worker._node().fit(X, y)  # full batch: the single process's model on the 38 rows
    assert _rel(ranks[0]["one_row_rank1"]["predict"], single.predict(worker.regression_data()[2])) <= RTOL
    name = "one_row_rank1_early_stopping"
    assert ranks[1][name]["error"].startswith("ValueError: early_stopping needs at least 2 samples")
    assert "rank 1 raised ValueError: early_stopping needs at least 2 samples" in ranks[0][name]["error"]


def test_warm_start_of_a_data_parallel_model(ranks):
    """A warm start from the model of an earlier data-parallel fit agrees (and continues it: 24 iterations)."""
    for res in ranks:
        assert "error" not in res["warm_start_agrees"], res["warm_start_agrees"].get("error")
        assert int(res["warm_start_agrees"]["n_iter_"]) == 24


def test_per_rank_parameters_and_the_group_after_the_errors(ranks):
    """``verbose`` may differ between ranks; after all the errors above the group still fits the model of the
    ``node`` case, on both ranks."""
    for name in ("verbose_differs", "node_after_mismatches"):
        for r, res in enumerate(ranks):
            assert "error" not in res[name], f"{name} rank {r}: {res[name].get('error')}"
            np.testing.assert_array_equal(res[name]["predict"], ranks[0]["node"]["predict"], err_msg=name)
            np.testing.assert_array_equal(res[name]["W_"], ranks[0]["node"]["W_"], err_msg=name)


def test_a_rank_that_never_fits_times_out(tmp_path):
    """Rank 1 stays in the group but never calls fit: rank 0's fit raises a clear RuntimeError after the
    process group's timeout (2 s here), in its first collective, instead of waiting forever."""
    results = _launch(tmp_path, ["rank1_never_fits"], timeout=60, SKFLOW_TEST_PG_TIMEOUT_S="2")
    assert results[1]["rank1_never_fits"] == {"skipped": True}
    res = results[0]["rank1_never_fits"]
    assert res["type"] == "RuntimeError" and "another rank did not join it" in res["error"], res
    assert res["seconds"] < 2 + 5


def _sig(**fields):
    return [(key, f"the {key}", fp, f"{key}={fp}") for key, fp in fields.items()]


def test_disagreement_message_groups_the_ranks():
    sigs = [_sig(estimator="a.B", n_features=5), _sig(estimator="a.B", n_features=6),
            _sig(estimator="a.B", n_features=5)]
    msg = distributed.disagreement(sigs)
    assert "the 3 ranks" in msg and "ranks 0, 2 have n_features=5, rank 1 has n_features=6" in msg
    assert distributed.disagreement([_sig(estimator="a.B", n_features=5)] * 2) is None
    # a field only some ranks have is a difference too
    msg = distributed.disagreement([_sig(estimator="a.B", n_outputs=1), _sig(estimator="a.B")])
    assert "rank 0 has n_outputs=1, rank 1 has no n_outputs" in msg


def test_fingerprints_compare_meaning_not_identity():
    fp = _agreement._fingerprint
    assert fp(1) == fp(1.0) == fp(np.float64(1.0)) and fp(1) != fp(2) and fp(float("nan")) == fp(float("nan"))
    assert fp(np.arange(3)) == fp(np.arange(3)) and fp(np.arange(3)) != fp(np.arange(1, 4))
    assert fp(np.random.RandomState(0)) == fp(np.random.RandomState(0)) != fp(np.random.RandomState(1))
    assert fp(lambda x: x) == fp(lambda x: x)  # no memory address in it
    torch.manual_seed(0)
    a = torch.nn.Linear(3, 2)
    b = torch.nn.Linear(3, 2)
    assert fp(a) == fp(pickle.loads(pickle.dumps(a))) and fp(a) != fp(b)
    assert fp({"k": [1, 2]}) == fp({"k": (1, 2.0)})
    assert fp(np.str_("relu")) == fp("relu") and fp(np.True_) == fp(True) != fp(1) and fp(None) != fp("None")


def test_fit_signature_skips_per_rank_parameters():
    X, y, _, _ = worker.case_data("node")
    sig = distributed.fit_signature(worker.CASES["node"][0](), X, y)
    keys = [key for key, *_ in sig]
    assert "param:verbose" not in keys and "param:device" not in keys and "device" in keys
    assert {"estimator", "warm", "param:width", "param:random_state", "n_features", "n_outputs"} <= set(keys)
    sig_v = distributed.fit_signature(worker._node(verbose=2), X, y)
    assert distributed.disagreement([sig, sig_v]) is None
    # the device's index may differ between ranks (one GPU each), not its type
    sig_0 = distributed.fit_signature(worker._node(device="cpu:0"), X, y)
    assert distributed.disagreement([sig, sig_0]) is None
    cuda = [(k, w, "cuda", "device='cuda:1'") if k == "device" else (k, w, fp, sh) for k, w, fp, sh in sig]
    assert "rank 0 has device='cpu', rank 1 has device='cuda:1'" in distributed.disagreement([sig, cuda])
    assert isinstance(distributed.DEFAULT_TIMEOUT, type(worker.datetime.timedelta()))


def test_single_process_is_not_data_parallel():
    assert distributed.current() is None
    with distributed.consensus(None):
        pass
    X, y, X_test, _ = worker.case_data("node")
    est = worker.CASES["node"][0]().fit(X, y)
    assert est.n_ranks_ == 1 and est.flow_.data_parallel is None
