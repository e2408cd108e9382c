"""Tests specific to skflow.RKHSNODEClassifier (the contract shared by every estimator: test_common.py)."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_blobs, make_classification
from sklearn.preprocessing import StandardScaler

from skflow import RKHSNODEClassifier
from skflow.diagnostics import gaussian_kernel, lambda_min
from skflow.exceptions import DuplicateInputsWarning, SingularKernelWarning
from skflow.rkhs import median_length_scale


@pytest.fixture(scope="module")
def blobs(classification_data):
    """The 150 training points of the shared classification set (3 classes, 4 features)."""
    X, y, _, _ = classification_data
    return X, y


def test_string_labels_round_trip(blobs, quiet_fit):
    X, y = blobs
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    m = quiet_fit(RKHSNODEClassifier(max_iter=20, random_state=0, device="cpu"), X, names)
    assert list(m.classes_) == ["setosa", "versicolor", "virginica"]
    pred = m.predict(X)
    assert pred.dtype == names.dtype and set(pred) <= set(names)
    assert np.mean(pred == names) > 0.8
    P = m.predict_proba(X)
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(m.classes_[P.argmax(1)], pred)
    np.testing.assert_allclose(np.exp(m.predict_log_proba(X)), P, rtol=1e-10)


def test_binary_decision_function_and_proba(quiet_fit):
    X, y = make_classification(n_samples=120, n_features=5, random_state=0)
    labels = np.where(y == 1, "yes", "no")
    m = quiet_fit(RKHSNODEClassifier(max_iter=20, random_state=0, device="cpu"), X, labels)
    s = m.decision_function(X)
    assert s.shape == (120,)
    np.testing.assert_array_equal(m.predict(X), m.classes_[(s > 0).astype(int)])
    P = m.predict_proba(X)
    assert P.shape == (120, 2)
    # softmax of two logits is the logistic function of their difference
    np.testing.assert_allclose(P[:, 1], 1.0 / (1.0 + np.exp(-s)), rtol=1e-10)


def test_fitted_attributes(blobs, quiet_fit):
    X, y = blobs
    S, M = 3, 200
    m = quiet_fit(RKHSNODEClassifier(n_layers=S, n_features=M, max_iter=15, tol=0, random_state=0, device="cpu"),
                  X, y)
    D = X.shape[1] + 3
    assert m.theta_.shape == (S, D, M)
    assert m.random_weights_.shape == (M, D) and m.random_offset_.shape == (M,)
    assert m.n_iter_ == 15
    for name in ("loss_curve_", "flow_time_", "pl_ratio_curve_"):
        assert getattr(m, name).shape == (15,)
    assert m.pl_constant_ == pytest.approx(m.pl_ratio_curve_.min())
    assert m.loss_curve_[0] > m.loss_curve_[-1]
    assert m.length_scale_ == pytest.approx(median_length_scale(X))
    from scipy.spatial.distance import pdist

    assert m.data_separation_ == pytest.approx(pdist(X).min(), rel=1e-10)
    exact = lambda_min(gaussian_kernel(X, length_scale=m.length_scale_))
    assert m.exact_kernel_lambda_min_ == pytest.approx(max(exact, 0.0), rel=1e-8, abs=1e-12)
    assert m.kernel_lambda_min_ > 0  # M = 200 >= N = 150: Phi Phi^T can be (and is) non-singular
    assert m.required_width_ == X.shape[0] ** 2 and m.n_features_used_ == M
    assert m.theta_norm_ == pytest.approx(np.sqrt((m.theta_ ** 2).sum() / S))
    assert m.pl_bound_ >= 0 and np.isfinite(m.pl_bound_)
    # the model is the Euler scheme with the stored parameters
    z = np.c_[X, np.zeros((len(X), 3))]
    for k in range(S):
        phi = np.sqrt(2.0 / M) * np.cos(z @ m.random_weights_.T + m.random_offset_)
        z = z + phi @ m.theta_[k].T / S
    np.testing.assert_allclose(m.decision_function(X), m.output_scale * z[:, X.shape[1]:], rtol=1e-9, atol=1e-12)


def test_random_feature_lambda_min_approaches_exact(quiet_fit):
    rng = np.random.RandomState(0)
    X, y = 2.0 * rng.randn(30, 3), np.arange(30) % 2
    lam = {}
    for M in (60, 6000):
        m = quiet_fit(RKHSNODEClassifier(n_features=M, n_layers=1, max_iter=1, length_scale=0.5, random_state=0,
                                         device="cpu"), X, y)
        assert m.exact_kernel_lambda_min_ > 0.05
        lam[M] = abs(m.kernel_lambda_min_ - m.exact_kernel_lambda_min_)
    assert lam[6000] < lam[60]


def test_warnings_duplicates_and_width(blobs):
    X, y = blobs
    Xd = np.vstack([X, X[:1]])
    other = next(c for c in np.unique(y) if c != y[0])
    with pytest.warns(DuplicateInputsWarning, match="different labels"):
        m = RKHSNODEClassifier(n_features=300, max_iter=2, tol=0, random_state=0, device="cpu").fit(
            Xd, np.r_[y, other])
    assert m.data_separation_ == 0.0
    # a duplicate with the same label breaks nothing: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", DuplicateInputsWarning)
        m = RKHSNODEClassifier(n_features=300, max_iter=2, tol=0, random_state=0, device="cpu").fit(
            Xd, np.r_[y, y[:1]])
    assert m.data_separation_ == 0.0
    with pytest.warns(SingularKernelWarning, match="below the number of training samples"):
        m = RKHSNODEClassifier(n_features=50, max_iter=2, tol=0, random_state=0, device="cpu").fit(X, y)
    assert m.kernel_lambda_min_ == 0.0
    # an ordinary small fit with M >= N is quiet
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RKHSNODEClassifier(n_features=200, max_iter=2, tol=0, random_state=0, device="cpu").fit(X, y)


def test_step_decay_schedule_and_flow_time(blobs, quiet_fit):
    X, y = blobs
    m = RKHSNODEClassifier(learning_rate=100.0, lr_decay=0.5, lr_decay_every=4, max_iter=10, tol=0,
                           batch_size=None, random_state=0, device="cpu")
    quiet_fit(m, X, y)
    taus = 100.0 * 0.5 ** (np.arange(10) // 4)
    np.testing.assert_allclose(m.flow_time_, np.r_[0.0, np.cumsum(taus)[:-1]])


def test_squared_loss_and_matern_train(quiet_fit):
    X, y = make_blobs(n_samples=90, centers=3, n_features=3, random_state=2)
    X = StandardScaler().fit_transform(X)
    for kw in (dict(loss="squared", output_scale=1.0, learning_rate=1.0, batch_size=None, momentum=0.5),
               dict(kernel="matern", nu=2.5)):
        m = quiet_fit(RKHSNODEClassifier(max_iter=30, random_state=0, device="cpu", **kw), X, y)
        assert m.loss_curve_[-1] < 0.5 * m.loss_curve_[0]
        assert m.score(X, y) > 0.9


def test_digits_subset_trains_to_small_risk(quiet_fit):
    """The cross-entropy model (the thesis's loss and step) interpolates a 500-point digits subset: CE risk falls by
    orders of magnitude."""
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X[:500])
    y = y[:500]
    m = quiet_fit(RKHSNODEClassifier(max_iter=150, loss="cross_entropy", learning_rate=500.0, random_state=0,
                                     device="cpu"), X, y)
    assert m.score(X, y) == 1.0
    assert m.loss_curve_[-1] < 1e-2 * m.loss_curve_[0]
    # the P-L ratio stays away from 0 along training (observed linear-ish rate)
    assert m.pl_constant_ > 0


def _noisy_classification(flip, n=600, seed=0):
    """Three well-separated blobs (the clean labels are learnable to 100 %), a share ``flip`` of the labels
    replaced by uniform noise."""
    from sklearn.datasets import make_blobs
    from sklearn.preprocessing import StandardScaler

    X, y = make_blobs(n_samples=n, centers=3, n_features=8, cluster_std=3.0, random_state=seed)
    rng = np.random.RandomState(seed)
    y = np.where(rng.rand(n) < flip, rng.randint(0, 3, n), y)
    return StandardScaler().fit_transform(X), y


def test_max_iter_auto_stops_early_on_noisy_labels_and_keeps_its_budget_on_clean_ones():
    """max_iter='auto' chooses the epochs by the accuracy on a held-out fifth, then fits every row for that many:
    with half the labels replaced by noise the best epoch comes early; on clean labels the accuracy stays at
    its best and the flow keeps its budget (the last epoch of the best accuracy)."""
    X, y = _noisy_classification(0.5)
    noisy = RKHSNODEClassifier(max_iter="auto", random_state=0, device="cpu").fit(X, y)
    assert noisy.get_params()["max_iter"] == "auto"
    assert noisy.n_iter_ == noisy.max_iter_ < RKHSNODEClassifier._auto_max_iter // 2
    X, y = _noisy_classification(0.0)
    clean = RKHSNODEClassifier(max_iter="auto", random_state=0, device="cpu").fit(X, y)
    assert clean.max_iter_ == RKHSNODEClassifier._auto_max_iter
    # the noisy probes stopped past their minimum (patience); a clean one ran the whole budget
    assert max(noisy.epoch_search_["probe_epochs"]) < RKHSNODEClassifier._auto_max_iter
    assert max(clean.epoch_search_["probe_epochs"]) == RKHSNODEClassifier._auto_max_iter


def test_max_iter_auto_runs_the_budget_when_too_few_rows_are_held_out():
    X, y = _noisy_classification(0.0, n=120)
    clf = RKHSNODEClassifier(max_iter="auto", random_state=0, device="cpu").fit(X, y)
    assert clf.max_iter_ == clf.n_iter_ == RKHSNODEClassifier._auto_max_iter


def test_early_stopping_restores_the_best_validation_accuracy():
    X, y = _noisy_classification(0.3, n=400)
    clf = RKHSNODEClassifier(max_iter=30, early_stopping=True, validation_fraction=0.25, random_state=0,
                             device="cpu").fit(X, y)
    assert clf.validation_scores_.shape == (clf.n_iter_,)
    assert clf.best_validation_score_ == pytest.approx(clf.validation_scores_.max())


def test_max_iter_auto_chooses_the_epochs_by_cross_validation():
    """With fewer than 1250 rows two folds are probed; the chosen budget is the last epoch of the least mean
    held-out risk, and the final fit runs that many epochs on every row."""
    import warnings

    from sklearn.datasets import make_classification

    from skflow._epochs import PATIENCE, PROBE_SYNC_EVERY, n_search_folds

    X, y = make_classification(200, 6, n_informative=4, n_classes=3, flip_y=0.2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = RKHSNODEClassifier(n_layers=2, n_features=64, random_state=0, device="cpu").fit(X, y)
    search = model.epoch_search_
    assert search["n_folds"] == n_search_folds(200) == 2 and search["validation_rows"] == 80
    assert model.max_iter_ == search["epochs"] == model.n_iter_
    mean = search["mean_score"]
    assert mean.shape == (max(search["probe_epochs"]),) and mean.shape[0] <= RKHSNODEClassifier._auto_max_iter
    assert mean[model.max_iter_ - 1] == mean.max() and np.all(mean[model.max_iter_:] < mean.max())
    # noisy labels: the probes stop once the held-out risk has passed its minimum, well before the budget
    assert max(search["probe_epochs"]) < RKHSNODEClassifier._auto_max_iter
    assert max(search["probe_epochs"]) <= model.max_iter_ + 2 * (PATIENCE + PROBE_SYNC_EVERY)
    assert n_search_folds(40) == 0 and n_search_folds(2000) == 1 and n_search_folds(600) == 2


def test_cross_validated_epochs_continues_a_curve_that_stopped_early():
    """A fold whose probe stopped (its patience ran out) counts at its last score at the later epochs of the
    others, so the mean curve runs to the longest fold and the choice is not truncated to the shortest."""
    from skflow._epochs import cross_validated_epochs

    y = np.repeat([0, 1], 50)
    curves = iter([np.array([0.0, 1.0, 2.0, 1.5]), np.array([0.0, 1.0, 2.0, 3.0, 4.0, 3.0])])
    epochs, record = cross_validated_epochs(lambda tr, va: next(curves), y, 2, seed=0)
    assert record["probe_epochs"] == [4, 6] and record["n_folds"] == 2
    np.testing.assert_allclose(record["mean_score"], [0.0, 1.0, 2.0, 2.25, 2.75, 2.25])
    assert epochs == 5
    # a fold that could not be fitted is left out
    curves = iter([None, np.array([1.0, 3.0, 2.0])])
    epochs, record = cross_validated_epochs(lambda tr, va: next(curves), y, 2, seed=0)
    assert epochs == 2 and record["n_folds"] == 1
