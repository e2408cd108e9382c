"""The Displays of skflow.inspection, drawn on the Agg backend: what they draw, from estimators and Pipelines."""

import sys
import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_friedman1
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skflow import MeanFieldNODERegressor, RKHSNODEClassifier, VarProSHLRegressor
from skflow.datasets import make_teacher_student, teacher_density
from skflow.diagnostics import shl_limit_kernel
from skflow.inspection import ConvergenceDisplay, FeatureDistributionDisplay, KernelSpectrumDisplay

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _quiet_fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


@pytest.fixture(scope="module")
def friedman():
    X, y = make_friedman1(n_samples=80, noise=0.5, random_state=0)
    return X, y


@pytest.fixture(scope="module")
def node_pipe(friedman):
    est = MeanFieldNODERegressor(n_layers=2, width=16, max_iter=20, device="cpu", random_state=0)
    return _quiet_fit(make_pipeline(StandardScaler(), est), *friedman)


@pytest.fixture(scope="module")
def node(friedman):
    X = StandardScaler().fit_transform(friedman[0])
    est = MeanFieldNODERegressor(n_layers=2, width=16, max_iter=20, early_stopping=False, device="cpu",
                                 random_state=0)
    return _quiet_fit(est, X, friedman[1]), X


@pytest.fixture(scope="module")
def teacher_fit():
    X, y = make_teacher_student(200, teacher_width=200, random_state=0)
    est = VarProSHLRegressor(width=64, feature_domain="sphere", regularization="unbiased", alpha=1e-3,
                             max_iter=20, store_features_every=5, early_stopping=False, device="cpu",
                             random_state=0)
    return _quiet_fit(est, X, y)


def _legend_labels(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_convergence_display_from_estimator(node):
    est, _ = node
    disp = ConvergenceDisplay.from_estimator(est)
    t, R = est.flow_time_, est.loss_curve_
    np.testing.assert_allclose(disp.line_.get_xdata(), t)
    np.testing.assert_allclose(disp.line_.get_ydata(), R)
    r0 = est.convergence_report_.get("initial_risk", R[0])
    np.testing.assert_allclose(disp.bound_line_.get_ydata(), r0 * np.exp(-est.pl_constant_ * t))
    assert disp.val_line_ is None  # no early stopping: no validation curve
    np.testing.assert_allclose(disp.pl_line_.get_ydata(), est.pl_ratio_curve_)
    assert disp.ax_.get_xlabel() == "flow time t" and disp.ax_.get_ylabel() == "risk"
    assert disp.ax_.get_yscale() == "log"
    assert disp.pl_ax_.get_ylabel().startswith("P-L ratio")
    labels = _legend_labels(disp.ax_)
    assert "training risk R(t)" in labels and any(lab.startswith("P-L bound") for lab in labels)
    assert disp.figure_ is disp.ax_.figure


def test_convergence_display_pipeline_validation_and_ax(node_pipe):
    fig, ax = plt.subplots()
    disp = ConvergenceDisplay.from_estimator(node_pipe, ax=ax, show_pl_ratio=False, log_scale=False)
    est = node_pipe[-1]
    assert disp.ax_ is ax and disp.figure_ is fig
    np.testing.assert_allclose(disp.val_line_.get_ydata(), est.history_["val_risk"])
    assert disp.pl_ax_ is None and disp.pl_line_ is None
    assert ax.get_yscale() == "linear" and "validation risk" in _legend_labels(ax)


def test_convergence_display_constructor():
    t = np.linspace(0, 2, 21)
    disp = ConvergenceDisplay(t, 3 * np.exp(-t), np.full(21, 1.5), 0.5, estimator_name="toy").plot()
    np.testing.assert_allclose(disp.bound_line_.get_ydata(), 3 * np.exp(-0.5 * t))
    assert disp.ax_.get_title() == "toy"


def test_kernel_spectrum_display_node_per_layer(node):
    est, X = node
    disp = KernelSpectrumDisplay.from_estimator(est, X, max_samples=12)
    assert len(disp.lines_) == est.n_layers and disp.closed_form_line_ is not None
    assert len(disp.lambda_min_markers_) == est.n_layers + 1
    assert len(disp.ax_.get_lines()) == 2 * (est.n_layers + 1)  # the spectra and their lambda_min markers
    Xs = X[np.sort(np.random.RandomState(0).choice(len(X), 12, replace=False))]
    closed = np.linalg.eigvalsh(shl_limit_kernel(Xs, est.feature_init, est.feature_scale, est.nu))
    np.testing.assert_allclose(disp.closed_form_line_.get_ydata(), closed[::-1], rtol=1e-10)
    assert disp.lambda_min_[-1] == pytest.approx(closed[0])
    np.testing.assert_allclose(disp.lambda_min_markers_[-1].get_ydata(), [closed[0]])
    labels = _legend_labels(disp.ax_)
    assert labels[:2] == ["layer 0 (M = 16)", "layer 1 (M = 16)"]
    assert "closed form (M = inf)" in labels and "lambda_min" in labels
    assert disp.ax_.get_xlabel() == "eigenvalue index" and disp.ax_.get_yscale() == "log"


def test_kernel_spectrum_display_pipeline_transforms_X(node_pipe, friedman):
    X = friedman[0]
    _, ax = plt.subplots()
    disp = KernelSpectrumDisplay.from_estimator(node_pipe, X, max_samples=10, ax=ax)
    assert disp.ax_ is ax
    Xs = node_pipe[0].transform(X)[np.sort(np.random.RandomState(0).choice(len(X), 10, replace=False))]
    K = node_pipe[-1].feature_kernel_matrices(Xs)[0]
    np.testing.assert_allclose(disp.spectra[0], np.linalg.eigvalsh(K)[::-1], atol=1e-12)


def test_kernel_spectrum_display_rkhs():
    X, y = make_classification(60, 4, n_informative=3, n_redundant=0, random_state=0)
    pipe = _quiet_fit(make_pipeline(StandardScaler(), RKHSNODEClassifier(n_features=32, max_iter=5, device="cpu",
                                                                         random_state=0)), X, y)
    disp = KernelSpectrumDisplay.from_estimator(pipe, X)
    assert len(disp.lines_) == 1 and disp.spectra[0].shape == (60,)
    # trace(Phi Phi^T) = (2/M) sum cos^2 is close to n, the closed form's trace (k(x, x) = 1)
    assert disp.spectra[0].sum() == pytest.approx(disp.closed_form.sum(), rel=0.3)
    assert disp.lambda_min_[0] < disp.lambda_min_[-1]  # M = 32 < 60 points: the finite-width kernel is singular


def test_kernel_spectrum_display_rejects_varpro(teacher_fit):
    with pytest.raises(TypeError, match="NODE"):
        KernelSpectrumDisplay.from_estimator(teacher_fit, np.zeros((3, 2)))


def test_feature_distribution_display_circle_with_teacher(teacher_fit):
    disp = FeatureDistributionDisplay.from_estimator(teacher_fit, reference=lambda t: teacher_density(t, 100.0),
                                                     reference_label="teacher", bins=24)
    angles = np.arctan2(teacher_fit.features_[:, 1], teacher_fit.features_[:, 0])
    np.testing.assert_allclose(disp.angles_, angles)
    dens, edges = np.histogram(angles, bins=24, range=(-np.pi, np.pi), density=True)
    np.testing.assert_allclose(disp.line_.get_ydata(), dens)
    grid = disp.reference_line_.get_xdata()
    np.testing.assert_allclose(disp.reference_line_.get_ydata(), teacher_density(grid, 100.0))
    assert disp.initial_line_ is not None  # feature_history_[0]
    assert _legend_labels(disp.ax_) == ["initial features", "features (M = 64)", "teacher"]
    assert disp.ax_.get_xlabel().startswith("angle")


def test_feature_distribution_display_grid_reference(teacher_fit):
    n = 64
    ref = np.full(n, 1 / (2 * np.pi))  # uniform density on the solver's cell centres
    disp = FeatureDistributionDisplay.from_estimator(teacher_fit, reference=ref, show_initial=False)
    np.testing.assert_allclose(disp.reference_line_.get_xdata(), -np.pi + (np.arange(n) + 0.5) * 2 * np.pi / n)
    assert disp.initial_line_ is None


def test_feature_distribution_display_euclidean_pipeline(friedman):
    pipe = _quiet_fit(make_pipeline(StandardScaler(), VarProSHLRegressor(width=24, max_iter=5, device="cpu",
                                                                         random_state=0)), *friedman)
    _, ax = plt.subplots()
    disp = FeatureDistributionDisplay.from_estimator(pipe, ax=ax)
    assert disp.ax_ is ax and disp.angles_ is None
    np.testing.assert_allclose(disp.line_.get_xdata(), pipe[-1].features_[:, 0])
    np.testing.assert_allclose(disp.line_.get_ydata(), pipe[-1].features_[:, 1])
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("w_0", "w_1")
    with pytest.raises(ValueError, match="circle"):
        FeatureDistributionDisplay.from_estimator(pipe, reference=np.ones(8))


def test_feature_distribution_display_rejects_node(node):
    with pytest.raises(TypeError, match="VarPro"):
        FeatureDistributionDisplay.from_estimator(node[0])


def test_unfitted_estimator_raises():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        ConvergenceDisplay.from_estimator(MeanFieldNODERegressor())


@pytest.mark.parametrize("make", [
    lambda: ConvergenceDisplay(np.arange(3.0), np.ones(3), None, 0.1),
    lambda: KernelSpectrumDisplay([np.ones(3)]),
    lambda: FeatureDistributionDisplay(np.ones((4, 2)), True),
])
def test_missing_matplotlib_error(monkeypatch, make):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"requires matplotlib: pip install 'skflow\[examples\]'"):
        make().plot()
