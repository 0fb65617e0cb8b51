"""The Fréchet distance of fitted Gaussians and the kernel distance (lung_diffusers.evaluation.frechet), on cases
with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from lung_diffusers.evaluation.frechet import feature_statistics, frechet_distance, kernel_distance


def whitened(rows: int, width: int, seed: int = 0) -> np.ndarray:
    """``(rows, width)`` samples whose sample mean is exactly 0 and sample covariance (``N - 1``) exactly I."""
    z = np.random.default_rng(seed).normal(size=(rows, width))
    z -= z.mean(axis=0)
    return z @ np.linalg.inv(np.linalg.cholesky(np.atleast_2d(np.cov(z, rowvar=False)))).T


def test_feature_statistics_are_the_sample_mean_and_unbiased_covariance():
    features = np.array([[1.0, 2.0], [3.0, 2.0], [5.0, 8.0]])
    mean, covariance = feature_statistics(features)
    np.testing.assert_allclose(mean, [3.0, 4.0])
    np.testing.assert_allclose(covariance, np.cov(features, rowvar=False))
    assert feature_statistics(features[:, :1])[1].shape == (1, 1)  # one feature still gives a matrix


def test_identical_sets_are_at_distance_zero():
    features = np.random.default_rng(0).normal(size=(200, 16))
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-8)
    # Fewer images than features: the covariances are singular, and the distance is still ~0.
    few = features[:8]
    assert frechet_distance(few, few) == pytest.approx(0.0, abs=1e-8)


def test_gaussians_with_known_means_and_covariances_give_the_closed_form():
    z = whitened(500, 3)
    mean_a, mean_b = np.array([0.0, 1.0, -2.0]), np.array([3.0, -1.0, 0.5])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    a, b = z * np.sqrt(var_a) + mean_a, z * np.sqrt(var_b) + mean_b
    # Commuting (diagonal) covariances: Tr(Ca + Cb - 2 (Ca Cb)^½) = sum (sqrt(va) - sqrt(vb))².
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-9)  # symmetric
    # Non-commuting: rotate one set; against the trace formula with SciPy's square root of the product.
    rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    c = a @ rotation.T
    cov_b, cov_c = np.diag(var_b), rotation @ np.diag(var_a) @ rotation.T
    from scipy.linalg import sqrtm

    expected = np.sum((rotation @ mean_a - mean_b) ** 2) + np.trace(cov_b + cov_c - 2 * sqrtm(cov_b @ cov_c).real)
    assert frechet_distance(c, b) == pytest.approx(expected, rel=1e-9)
    # One dimension: (m1 - m2)² + (s1 - s2)².
    one = whitened(100, 1)
    assert frechet_distance(one * 2 + 1, one * 5 - 1) == pytest.approx(2**2 + 3**2)


def pytorch_fid_d2(a: np.ndarray, b: np.ndarray) -> float:
    """pytorch-fid's calculate_frechet_distance: SciPy's square root of the covariance product."""
    from scipy.linalg import sqrtm

    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float((mu_a - mu_b) @ (mu_a - mu_b) + np.trace(cov_a + cov_b - 2 * sqrtm(cov_a @ cov_b).real))


@pytest.mark.parametrize("rows", [6, 12, 40, 300])
def test_equals_pytorch_fids_formula_with_more_or_fewer_images_than_features(rows):
    # 16 features: 6 or 12 rows take the singular-value route (rows² <= 16²), 40 and 300 the eigenvalue one;
    # 6 and 12 rows also make both covariances singular.
    rng = np.random.default_rng(rows)
    a = rng.normal(size=(rows, 16)) @ rng.normal(size=(16, 16))
    b = rng.normal(0.5, 1.0, (rows + 3, 16)) @ rng.normal(size=(16, 16))
    assert frechet_distance(a, b) == pytest.approx(pytorch_fid_d2(a, b), rel=1e-7)


def test_bad_feature_sets_get_one_line_errors():
    good = np.zeros((5, 3))
    with pytest.raises(ValueError, match="2-D"):
        frechet_distance(np.zeros(5), good)
    with pytest.raises(ValueError, match="at least 2 rows"):
        frechet_distance(good[:1], good)
    with pytest.raises(ValueError, match="one feature count"):
        frechet_distance(good, np.zeros((5, 4)))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full((5, 3), np.nan), good)
    with pytest.raises(ValueError, match="at least 2 rows"):
        kernel_distance(good, good[:1])
    with pytest.raises(ValueError, match="subset_size"):
        kernel_distance(good, good, subset_size=1)


def test_kernel_distance_is_the_unbiased_mmd_with_a_cubic_kernel():
    x = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])
    y = np.array([[1.0, 1.0], [0.0, 3.0], [2.0, -1.0], [1.0, 2.0]])

    def kernel(u, v):
        return (u @ v / 2 + 1) ** 3

    # subset_size clipped to 3 rows: each round compares all of x with 3 of y's 4 rows.
    def mmd2(xs, ys):
        m = len(xs)
        within = sum(kernel(xs[i], xs[j]) + kernel(ys[i], ys[j]) for i in range(m) for j in range(m) if i != j)
        return within / (m * (m - 1)) - 2 * sum(kernel(u, v) for u in xs for v in ys) / m**2

    every_draw = [mmd2(x, np.delete(y, left_out, axis=0)) for left_out in range(4)]
    mean, std = kernel_distance(x, y, subsets=400, subset_size=10)
    # 400 random draws of which 3 of y's rows: the mean lies near the average over the 4 possible draws.
    assert min(every_draw) <= mean <= max(every_draw)
    assert mean == pytest.approx(np.mean(every_draw), abs=0.1 * np.ptp(every_draw))
    assert 0 < std <= np.ptp(every_draw)
    same_rows = kernel_distance(x, y[:3], subsets=3, subset_size=3)
    assert same_rows[0] == pytest.approx(mmd2(x, y[:3])) and same_rows[1] == pytest.approx(0.0, abs=1e-9)


def test_kernel_distance_is_the_same_with_kernel_matrices_per_subset(monkeypatch):
    from lung_diffusers.evaluation import frechet

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(60, 8)), rng.normal(0.2, 1.0, (50, 8))
    whole = kernel_distance(a, b, subsets=20, subset_size=30)
    monkeypatch.setattr(frechet, "_WHOLE_KERNEL_ROWS", 10)  # sets bigger than this: kernels per subset
    assert kernel_distance(a, b, subsets=20, subset_size=30) == pytest.approx(whole, rel=1e-9)


def test_kernel_distance_of_identical_and_shifted_sets():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 8))
    same = kernel_distance(real, real, subsets=50, subset_size=100)
    other_draw = kernel_distance(real, rng.normal(size=(300, 8)), subsets=50, subset_size=100)
    shifted = kernel_distance(real, real + 0.5, subsets=50, subset_size=100)
    assert abs(same[0]) < 3 * same[1] + 1e-3 and abs(other_draw[0]) < 3 * other_draw[1] + 1e-3  # unbiased: ~0
    assert shifted[0] > 5 * shifted[1] and shifted[0] > 20 * abs(other_draw[0])
    further = kernel_distance(real, real + 1.0, subsets=50, subset_size=100)
    assert further[0] > 5 * shifted[0]  # grows with the shift
    assert kernel_distance(real, real + 0.5, subsets=50, subset_size=100) == shifted  # seeded
    assert kernel_distance(real, real + 0.5, subsets=50, subset_size=100, seed=1) != shifted
