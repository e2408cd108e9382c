"""Tests for the teacher-student data, the energy distance and the ultra-fast diffusion solver."""

import numpy as np
import pytest
from scipy import integrate, stats

from skflow.datasets import make_teacher_student, sample_teacher_angles, teacher_density
from skflow.diagnostics import energy_distance
from skflow.diffusion import ultrafast_diffusion_s1


def test_teacher_density_normalised():
    for gamma in (0.0, 10.0, 100.0, 1000.0):
        total, _ = integrate.quad(lambda t: teacher_density(t, gamma), -np.pi, np.pi, points=[0, 0.4 * np.pi],
                                  limit=200)
        assert total == pytest.approx(1.0, rel=1e-6)


def test_teacher_angles_follow_density():
    theta = sample_teacher_angles(20000, gamma=100, random_state=0)
    grid = np.linspace(-np.pi, np.pi, 4001)
    cdf = np.concatenate([[0], np.cumsum(0.5 * (teacher_density(grid[1:]) + teacher_density(grid[:-1]))
                                          * np.diff(grid))])
    res = stats.kstest(theta, lambda t: np.interp(t, grid, cdf))
    assert res.pvalue > 1e-3
    # mass near the first mode, against the integral of the density (the modes carry weights 2/3 and 1/3)
    near0 = np.mean(np.abs(theta) < 0.2 * np.pi)
    expected, _ = integrate.quad(teacher_density, -0.2 * np.pi, 0.2 * np.pi, points=[0.0], limit=200)
    assert near0 == pytest.approx(expected, abs=0.02)
    assert 0.5 < expected < 2 / 3


def test_make_teacher_student_shapes_and_signal():
    X, y, T = make_teacher_student(500, teacher_width=300, gamma=10, return_teacher=True, random_state=1)
    assert X.shape == (500, 2) and y.shape == (500,) and T.shape == (300, 2)
    np.testing.assert_allclose(np.linalg.norm(T, axis=1), 1.0)
    np.testing.assert_allclose(y, np.maximum(X @ T.T, 0).mean(axis=1))
    X2, y2 = make_teacher_student(500, teacher_width=300, gamma=10, random_state=1)
    np.testing.assert_array_equal(X, X2)
    _, y3 = make_teacher_student(500, teacher_width=300, gamma=10, noise=0.1, random_state=1)
    assert np.std(y3 - y2) > 0.05
    with pytest.raises(ValueError):
        make_teacher_student(10, gamma=-1)


def test_energy_distance_properties():
    rng = np.random.RandomState(0)
    a, b = rng.randn(200, 2), rng.randn(300, 2) + [1.0, 0.0]
    assert energy_distance(a, a) == pytest.approx(0.0, abs=1e-7)
    d = energy_distance(a, b)
    assert d > 0.3 and d == pytest.approx(energy_distance(b, a), rel=1e-12)
    # 1-D closed form: for two Diracs at x and y, MMD^2 = 2 |x - y|
    assert energy_distance([0.0], [3.0]) == pytest.approx(np.sqrt(6.0))
    # weights: a weighted cloud equals the cloud with repeated points
    w = np.array([1, 2, 3])
    pts = np.array([[0.0], [1.0], [2.0]])
    rep = np.repeat(pts, w, axis=0)
    assert energy_distance(pts, b[:, :1], weights_a=w) == pytest.approx(energy_distance(rep, b[:, :1]), rel=1e-10)
    with pytest.raises(ValueError):
        energy_distance(a, b[:, :1])
    with pytest.raises(ValueError):
        energy_distance(a, b, weights_a=-np.ones(200))


def test_diffusion_conserves_mass_and_converges_to_target():
    times = [0.0, 1.0, 30.0]
    theta, dens = ultrafast_diffusion_s1(lambda t: teacher_density(t, 10.0), times, n_grid=128)
    h = theta[1] - theta[0]
    np.testing.assert_allclose(dens.sum(axis=1) * h, 1.0, rtol=1e-6)
    np.testing.assert_allclose(dens[0], 1 / (2 * np.pi))
    target = teacher_density(theta, 10.0)
    target /= target.sum() * h
    err = [np.abs(d - target).sum() * h for d in dens]
    assert err[2] < err[1] < err[0] and err[2] < 0.05 * err[0]


def test_diffusion_uniform_target_is_stationary():
    theta, dens = ultrafast_diffusion_s1(lambda t: np.ones_like(t), [0.0, 5.0], n_grid=64)
    np.testing.assert_allclose(dens[1], 1 / (2 * np.pi), rtol=1e-8)


def test_diffusion_bad_input():
    with pytest.raises(ValueError):
        ultrafast_diffusion_s1(np.zeros(16), [1.0], n_grid=16)
    with pytest.raises(ValueError):
        ultrafast_diffusion_s1(np.ones(16), [2.0, 1.0], n_grid=16)


def test_diffusion_f_scale_rescales_time():
    """``f_scale`` multiplies the velocity: f_scale = 1/2 at time 2t is f_scale = 1 at time t."""
    target = lambda t: teacher_density(t, 10.0)  # noqa: E731
    _, a = ultrafast_diffusion_s1(target, [0.5], n_grid=64)
    _, b = ultrafast_diffusion_s1(target, [1.0], n_grid=64, f_scale=0.5)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
