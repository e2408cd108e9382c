"""scipy.sparse inputs: CSR / CSC matrices and sparse arrays, read by rows on the fit's device (skflow._rows).

A sparse fit is the dense fit on the same numbers: the engines read X by blocks of rows, and each block is densified
on the device from its nonzeros only, so the arithmetic is the dense fit's (equal to round-off, in practice bit for
bit). VarProNet's first layer is the user's module: it refuses sparse X with a TypeError that says so.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils import get_tags

from skflow import (
    MeanFieldNODERegressor,
    RKHSNODEClassifier,
    VarProNetClassifier,
    VarProNetRegressor,
    VarProSHLRegressor,
)
from skflow._rows import SparseRows
from skflow.flows import _flow

FORMATS = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "csr_array": sp.csr_array}


def _data(n=150, d=8, seed=0, zero_below=1.0):
    """Inputs with about 70 % zeros (those below ``zero_below`` in magnitude), a regression target and two
    classes."""
    rng = np.random.RandomState(seed)
    X = rng.randn(n, d)
    X[np.abs(X) < zero_below] = 0.0
    y = X @ rng.randn(d) + 0.1 * rng.randn(n)
    return X, y, (y > np.median(y)).astype(int)


_SMALL = {
    "node": lambda **kw: MeanFieldNODERegressor(**{**dict(n_layers=2, width=16, max_iter=20), **kw}),
    "rkhs": lambda **kw: RKHSNODEClassifier(**{**dict(n_layers=2, n_features=32, max_iter=8), **kw}),
    "varpro": lambda **kw: VarProSHLRegressor(**{**dict(width=16, max_iter=15), **kw}),
}


def _fit(name, X, yr, yc, **kw):
    est = _SMALL[name](device="cpu", random_state=0, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, yc if name == "rkhs" else yr)


def _out(est, X):
    return est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("name", list(_SMALL))
@pytest.mark.parametrize("mode", ["full-batch", "minibatch"])
def test_sparse_fit_equals_dense_fit(name, fmt, mode):
    X, yr, yc = _data()
    kw = dict(batch_size=None) if mode == "full-batch" else dict(batch_size=32)
    if name == "varpro" and mode == "minibatch":  # stochastic VarPro needs a smaller step than full batch
        kw["learning_rate"] = 1e-3
    dense = _fit(name, X, yr, yc, **kw)
    Xs = FORMATS[fmt](X)
    fitted = _fit(name, Xs, yr, yc, **kw)
    np.testing.assert_allclose(fitted.loss_curve_, dense.loss_curve_, rtol=1e-10, atol=1e-12)
    expected = _out(dense, X)
    np.testing.assert_allclose(_out(fitted, Xs), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(_out(fitted, X), expected, rtol=1e-10, atol=1e-10)  # and dense in after sparse
    np.testing.assert_allclose(_out(dense, Xs), expected, rtol=1e-10, atol=1e-10)
    assert fitted.score(Xs, yc if name == "rkhs" else yr) == pytest.approx(
        dense.score(X, yc if name == "rkhs" else yr), abs=1e-10)


@pytest.mark.parametrize("name, kw", [
    ("node", dict(solver="midpoint")),          # the whole batch through autograd: densified on the device
    ("node", dict(feature_scale="auto")),       # the bandwidth search on the seeded subsample
    ("node", dict(output_scale="certify", width=128, kernel_subsample=60, early_stopping=False)),
    ("rkhs", dict(length_scale="auto", loss="squared")),
    ("varpro", dict(feature_map="rbf")),        # RBF features: the whole batch, densified on the device
    ("varpro", dict(alpha="auto")),             # the leave-one-out strength, by blocks
    ("varpro", dict(alpha="auto", solver="gd")),
    ("varpro", dict(solver="two-timescale", dtype="float32")),
])
def test_sparse_fit_equals_dense_fit_in_other_configurations(name, kw):
    X, yr, yc = _data(zero_below=0.5)  # 40 % zeros: no two rows alike (the certificate needs lambda_0 > 0)
    dense = _fit(name, X, yr, yc, **kw)
    fitted = _fit(name, sp.csr_matrix(X), yr, yc, **kw)
    tol = 1e-5 if kw.get("dtype") == "float32" else 1e-10
    np.testing.assert_allclose(_out(fitted, sp.csr_matrix(X)), _out(dense, X), rtol=tol, atol=tol)


def test_a_sparse_fit_densifies_one_block_at_a_time(monkeypatch):
    """With a small step workspace (blocks of a few rows) and small diagnostic subsamples, no dense tensor of more
    rows than a block or a subsample (at most 1000 rows: the length-scale rules) is built from the sparse rows."""
    X, yr, yc = _data(n=1500)
    monkeypatch.setitem(_flow.STEP_WORKSPACE_BYTES, "cpu", 64 * 1024)
    monkeypatch.setattr(RKHSNODEClassifier, "_separation_max", 50)
    built = []
    block, gather = SparseRows._block, SparseRows._gather

    def spy_block(self, start, stop):
        built.append(stop - start)
        return block(self, start, stop)

    def spy_gather(self, idx):
        out = gather(self, idx)
        built.append(out.shape[0])
        return out

    monkeypatch.setattr(SparseRows, "_block", spy_block)
    monkeypatch.setattr(SparseRows, "_gather", spy_gather)
    for name in _SMALL:
        for kw in (dict(batch_size=None), dict(batch_size=64, learning_rate=1e-3 if name == "varpro" else 0.1)):
            built.clear()
            est = _fit(name, sp.csr_matrix(X), yr, yc, kernel_subsample=50, **kw)
            assert built and max(built) <= 1000, (name, kw, max(built))  # of 1200 or 1500 training rows
            _out(est, sp.csr_matrix(X))


def test_column_transformer_with_one_hot_encoder_fits():
    pd = pytest.importorskip("pandas")
    rng = np.random.RandomState(0)
    n = 120
    frame = pd.DataFrame({"colour": rng.choice(["red", "green", "blue", "black"], n),
                          "size": rng.choice(["S", "M", "L"], n), "x": rng.randn(n)})
    y = (frame["colour"] == "red") * 2.0 + frame["x"] + 0.1 * rng.randn(n)
    pre = ColumnTransformer([("cat", OneHotEncoder(sparse_output=True), ["colour", "size"]),
                             ("num", StandardScaler(), ["x"])], sparse_threshold=1.0)
    assert sp.issparse(clone(pre).fit_transform(frame))
    for est, target in [(_SMALL["node"](device="cpu", random_state=0), y),
                        (_SMALL["rkhs"](device="cpu", random_state=0), (y > y.median()).astype(int)),
                        (_SMALL["varpro"](device="cpu", random_state=0), y)]:
        pipe = make_pipeline(clone(pre), est)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe.fit(frame, target)
        assert pipe.predict(frame).shape == (n,)
        assert np.isfinite(pipe.score(frame, target))
        dense = make_pipeline(clone(pre).set_params(sparse_threshold=0.0), clone(est))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dense.fit(frame, target)
        np.testing.assert_allclose(_out(pipe, frame), _out(dense, frame), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("bad, match", [(np.nan, "NaN"), (np.inf, "infinity")])
@pytest.mark.parametrize("name", list(_SMALL))
def test_non_finite_sparse_input_raises(name, bad, match):
    X, yr, yc = _data()
    X[3, 2] = bad
    est = _SMALL[name](device="cpu")
    with pytest.raises(ValueError, match=match):
        est.fit(sp.csr_matrix(X), yc if name == "rkhs" else yr)
    assert not hasattr(est, "flow_")
    fitted = _fit(name, np.nan_to_num(X, nan=0.0, posinf=0.0), yr, yc)
    with pytest.raises(ValueError, match=match):
        fitted.predict(sp.csc_matrix(X))


@pytest.mark.parametrize("cls", [VarProNetRegressor, VarProNetClassifier])
def test_varpronet_refuses_sparse_input_clearly(cls):
    X, yr, yc = _data()
    est = cls(max_iter=2, device="cpu")
    with pytest.raises(TypeError, match="sparse.*module"):
        est.fit(sp.csr_matrix(X), yc if cls is VarProNetClassifier else yr)
    assert not get_tags(est).input_tags.sparse


@pytest.mark.parametrize("name", list(_SMALL))
def test_tags_declare_sparse_support(name):
    assert get_tags(_SMALL[name]()).input_tags.sparse


def test_sparse_rows_reads_rows_as_the_dense_matrix():
    rng = np.random.RandomState(1)
    A = sp.random(37, 11, density=0.2, random_state=rng, format="coo")
    A = sp.coo_matrix((np.r_[A.data, 1.5], (np.r_[A.row, 4], np.r_[A.col, 3])), shape=A.shape)  # a duplicate
    dense = A.toarray()
    dense[5] = 0.0  # an empty row too
    A = sp.csr_matrix(dense) + sp.csr_matrix(A.toarray() - dense)  # same entries, not canonical
    R = SparseRows.from_scipy(A, torch.float64, "cpu")
    ref = torch.as_tensor(A.toarray())
    assert R.shape == (37, 11) and R.dtype == torch.float64 and R.device.type == "cpu" and len(R) == 37
    for key in (slice(0, 37), slice(3, 9), slice(10, 10), slice(30, None), slice(None, None, 3)):
        torch.testing.assert_close(R[key], ref[key], rtol=0, atol=0)
    for idx in ([5, 0, 5, 36], np.array([2, 7]), torch.tensor([-1, 4]), torch.tensor([], dtype=torch.int64)):
        torch.testing.assert_close(R[idx], ref[torch.as_tensor(idx, dtype=torch.int64)], rtol=0, atol=0)
    torch.testing.assert_close(R.dense(), ref, rtol=0, atol=0)
    np.testing.assert_array_equal(R.to_scipy().toarray(), A.toarray())
    assert R.new_zeros((2, 3)).dtype == torch.float64
    assert R.to(dtype=torch.float32)[0:2].dtype == torch.float32
