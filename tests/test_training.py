"""The fit loop's pieces (skflow._training): minibatches at any row count, the end-of-fit check against the
start, the 'auto' time step on the fit's own batches, and progress lines."""

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from skflow import RKHSNODEClassifier
from skflow._training import TrainConfig, epoch_batches, n_batches, run_epoch, train, warn_stop
from skflow.exceptions import DivergenceWarning
from skflow.flows._flow import Flow


@pytest.mark.parametrize("batch", [1, 7, 128])
@pytest.mark.parametrize("extra", [-1, 0, 1])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_epoch_batches_are_a_permutation_in_near_equal_parts(k, extra, batch):
    n = k * batch + extra
    if n < 1:
        pytest.skip("no rows")
    parts, shares = epoch_batches(n, batch, torch.Generator().manual_seed(0), "cpu")
    sizes = [p.numel() for p in parts]
    assert len(parts) == n_batches(n, batch) == math.ceil(n / batch)
    assert max(sizes) - min(sizes) <= 1 and max(sizes) <= batch
    # no batch is a remainder: every one has at least half the rows of a full one
    assert min(sizes) >= batch // 2
    assert sorted(torch.cat(parts).tolist()) == list(range(n))
    np.testing.assert_allclose(shares, np.array(sizes) / n)


class _Quadratic(Flow):
    """R(p) = |p|^2 / 2 on every row, a step p <- p - lr * p: stable for lr < 2, growing 2.25x per step at 2.5."""

    _tensor_fields = _param_fields = ("p",)

    def __init__(self):
        self.p = torch.ones(3, dtype=torch.float64)

    def risk(self, X, Y):
        return 0.5 * (self.p ** 2).sum() + 0.0 * X.sum()

    def step(self, X, Y, lr):
        r = self.risk(X, Y)
        self.p.sub_(lr * self.p)
        return {"risk": r, "pl_ratio": torch.tensor(2.0, dtype=torch.float64)}

    def forward(self, X):
        return X[:, :1] * 0

    def bytes_per_row(self, training=True):
        return 8


def _train(flow, lr, max_iter, batch_size=None, n=10):
    X, Y = torch.zeros(n, 2, dtype=torch.float64), torch.zeros(n, 1, dtype=torch.float64)
    cfg = TrainConfig(max_iter=max_iter, tol=0.0, n_iter_no_change=5, batch_size=batch_size,
                      learning_rate_at=lambda i: lr, sync_every=2)
    return cfg, train(flow, (X, Y, None, None), cfg, torch.Generator().manual_seed(0))


def test_a_fit_that_ends_above_its_start_restores_the_best_parameters_and_warns():
    flow = _Quadratic()
    cfg, result = _train(flow, 2.5, 5)  # 2.25^5 = 58x the start: below the divergence factor, never below start
    assert result.stop_reason == "no_improvement"
    assert result.extra["final_risk"] > result.extra["initial_risk"]
    torch.testing.assert_close(flow.p, torch.ones(3, dtype=torch.float64))  # the start was the best candidate
    assert result.extra["restored_risk"] == pytest.approx(result.extra["initial_risk"])
    with pytest.warns(DivergenceWarning, match="not below its starting value.*smaller learning_rate"):
        warn_stop(result, "Quadratic", cfg)


def test_a_fit_that_improves_keeps_its_stop_reason():
    flow = _Quadratic()
    _, result = _train(flow, 0.5, 4)
    assert result.stop_reason == "max_iter"
    assert result.extra["final_risk"] < result.extra["initial_risk"]
    assert float(flow.p[0]) == pytest.approx(0.5 ** 4)


def test_minibatch_epoch_record_is_the_share_weighted_mean():
    flow = _Quadratic()
    X, Y = torch.zeros(7, 2, dtype=torch.float64), torch.zeros(7, 1, dtype=torch.float64)
    rec = run_epoch(flow, X, Y, 0.5, 3, torch.Generator().manual_seed(0))  # 3 batches of 3, 2, 2 rows
    # risks before each of the three steps: 1.5, 0.375, 0.09375, weighted 3/7, 2/7, 2/7
    assert float(rec["risk"]) == pytest.approx((3 * 1.5 + 2 * 0.375 + 2 * 0.09375) / 7)


def _classification(n_train, n_classes, seed):
    X, y = make_classification(n_samples=n_train + 300, n_features=10, n_informative=6, n_classes=n_classes,
                               random_state=seed)
    Xtr, Xte, ytr, yte = train_test_split(X, y, train_size=n_train, random_state=seed, stratify=y)
    scaler = StandardScaler().fit(Xtr)
    return scaler.transform(Xtr), scaler.transform(Xte), ytr, yte


@pytest.mark.parametrize("n_classes", [3, 5])
def test_default_classifier_quality_does_not_depend_on_the_remainder_of_the_batch_size(n_classes):
    """At N = k * batch_size + 1 (a last batch of one row, before) the default fit is as good as at
    k * batch_size: its loss falls (it rose 300-10000x before), it warns of nothing, and it scores within 0.05
    of SVC()."""
    accs = {}
    X257, Xte, y257, yte = _classification(257, n_classes, seed=n_classes)
    for n in (256, 257):  # the same rows but one
        Xtr, ytr = X257[:n], y257[:n]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            clf = RKHSNODEClassifier(random_state=0, device="cpu").fit(Xtr, ytr)
        assert clf.loss_curve_[-1] < 0.5 * clf.loss_curve_[0]
        assert clf.stop_reason_ == "max_iter"
        accs[n] = clf.score(Xte, yte)
        assert accs[n] >= SVC().fit(Xtr, ytr).score(Xte, yte) - 0.05
    assert abs(accs[256] - accs[257]) <= 0.05


def test_auto_learning_rate_is_stable_for_the_minibatches_with_momentum():
    """learning_rate='auto' with minibatches and momentum 0.9 probes the fit's own near-equal batches long enough
    for the momentum to build up: the step it measures trains without diverging."""
    Xtr, Xte, ytr, yte = _classification(129, 3, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = RKHSNODEClassifier(learning_rate="auto", batch_size=64, max_iter=30, random_state=0,
                                 device="cpu").fit(Xtr, ytr)
    assert clf.stop_reason_ == "max_iter"
    assert np.all(np.isfinite(clf.loss_curve_)) and clf.loss_curve_[-1] < clf.loss_curve_[0]


def test_verbose_minibatch_fit_prints_a_line_per_epoch_and_its_stop_reason(capsys):
    Xtr, _, ytr, _ = _classification(129, 3, seed=2)
    RKHSNODEClassifier(max_iter=4, batch_size=50, verbose=1, random_state=0, device="cpu").fit(Xtr, ytr)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[RKHSNODEClassifier]")]
    assert len(lines) == 4 + 1  # one per epoch, and the final line
    assert "stop reason 'max_iter'" in lines[-1]


def _friedman(n=120):
    from sklearn.datasets import make_friedman1

    return make_friedman1(n_samples=n, random_state=0)


def test_monitor_sees_every_iteration_and_can_stop_the_fit():
    from skflow import MeanFieldNODERegressor

    X, y = _friedman()
    seen = []

    def monitor(i, estimator, record):
        seen.append((i, record["risk"], estimator.n_features_in_))
        return i == 9

    m = MeanFieldNODERegressor(max_iter=50, early_stopping=False, random_state=0, device="cpu").fit(
        X, y, monitor=monitor)
    assert m.stop_reason_ == "monitor" and m.n_iter_ == 10
    assert [s[0] for s in seen] == list(range(10)) and all(s[2] == 10 for s in seen)
    np.testing.assert_allclose([s[1] for s in seen], m.loss_curve_)  # the records are the history
    with pytest.raises(TypeError, match="monitor must be a callable"):
        MeanFieldNODERegressor().fit(X, y, monitor=3)


def test_a_scikit_learn_callback_sees_one_task_per_iteration_and_can_stop_the_fit():
    pytest.importorskip("sklearn.callback")
    from skflow import RKHSNODEClassifier

    class StopAfter:
        def __init__(self, n):
            self.n, self.begun, self.ended, self.torn_down = n, 0, 0, False

        def setup(self, estimator, context):
            pass

        def on_fit_task_begin(self, estimator, context):
            self.begun += 1

        def on_fit_task_end(self, estimator, context):
            self.ended += 1
            return self.ended > self.n  # the root task ends after the iterations

        def teardown(self, estimator, context):
            self.torn_down = True

    Xtr, _, ytr, _ = _classification(129, 3, seed=2)
    cb = StopAfter(4)
    clf = RKHSNODEClassifier(max_iter=30, random_state=0, device="cpu").set_callbacks(cb)
    clf.fit(Xtr, ytr)
    assert clf.stop_reason_ == "monitor"
    assert clf.n_iter_ == 5 and cb.torn_down
    assert cb.begun == cb.ended == 1 + 5  # the root task and five iterations
    assert not hasattr(clf, "_callback_fit_ctx")


def test_a_monitor_scores_the_model_being_trained():
    """``estimator.flow_`` in a monitor is the live engine: ``predict`` there gives the current model's outputs,
    and the estimator passed to ``fit`` is untouched until the fit ends."""
    import numpy as np
    from sklearn.datasets import make_regression

    from skflow import VarProSHLRegressor

    X, y = make_regression(80, 4, noise=1.0, random_state=0)
    scores = []
    model = VarProSHLRegressor(width=32, max_iter=6, early_stopping=False, random_state=0, device="cpu")

    def monitor(i, est, record):
        assert not hasattr(model, "flow_")  # the user's estimator is committed only at the end
        scores.append(est.score(X, y))

    model.fit(X, y, monitor=monitor)
    assert len(scores) == model.n_iter_ == 6
    assert np.isfinite(scores).all() and scores[-1] > scores[0]
