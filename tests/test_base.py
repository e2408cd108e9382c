"""The shared estimator base (skflow._base, skflow._training) beyond the common contract of test_common.py."""

import warnings

import pytest
import torch

from skflow import MeanFieldNODERegressor
from skflow._base import resolve_device, resolve_dtype


def test_resolve_device_and_dtype():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_dtype("float64") == torch.float64 and resolve_dtype("float32") == torch.float32
    if not torch.cuda.is_available():
        with pytest.raises((ValueError, RuntimeError), match="(?i)cuda"):
            resolve_device("cuda")


def test_early_stop_inside_a_sync_block_keeps_history_and_parameters_consistent(regression_data):
    X, y, _, _ = regression_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = MeanFieldNODERegressor(n_layers=3, width=32, max_iter=60, early_stopping=True, validation_fraction=0.2,
                                   n_iter_no_change=10, device="cpu", random_state=0).fit(X, y)
    # the tol rule fires inside a block of 20 synchronised records: every complete iteration of the block is
    # kept, so that history_, n_iter_ and the restored (best validation) parameters agree
    assert m.stop_reason_ == "converged" and m.n_iter_ < 60
    val = m.history_["val_risk"]
    assert val.shape == (m.n_iter_,)
    assert m.best_validation_risk_ == pytest.approx(val.min())
