"""Metric formulas against independent references: FID via an eigenvalue formulation in float64,
KID via an explicit unbiased MMD^2 loop, precision/recall via brute-force numpy k-NN, IS via
scipy's relative entropy, PPL's percentile filter and its LPIPS path on a linear generator."""

import numpy as np
import pytest
import scipy.linalg
import scipy.special
import torch

from metrics import frechet_inception_distance as fid_mod
from metrics import inception_score, kernel_inception_distance, metric_utils, perceptual_path_length, precision_recall
from tests import metrics_fixtures as mf
from tests.metrics_fixtures import single_thread  # noqa: F401 (autouse fixture)

#----------------------------------------------------------------------------
# FID.

def _psd_sqrt(a):
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _fid_reference(real, gen):
    # tr((S1 S2)^(1/2)) = tr((S1^(1/2) S2 S1^(1/2))^(1/2)), a symmetric PSD form computed with eigh.
    real, gen = real.astype(np.float32).astype(np.float64), gen.astype(np.float32).astype(np.float64)
    mu1, mu2 = real.mean(0), gen.mean(0)
    s1, s2 = np.cov(real, rowvar=False, bias=True), np.cov(gen, rowvar=False, bias=True)
    r1 = _psd_sqrt(s1)
    covmean_trace = np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)).sum()
    return np.square(mu1 - mu2).sum() + np.trace(s1) + np.trace(s2) - 2 * covmean_trace


def test_fid_matches_reference_full_rank():
    rnd = np.random.RandomState(0)
    real = rnd.normal(size=[400, 12])
    gen = rnd.normal(size=[300, 12]) @ rnd.normal(size=[12, 12]) * 0.5 + 0.3
    assert fid_mod.fid_from_features(real, gen) == pytest.approx(_fid_reference(real, gen), rel=1e-7)


def test_fid_matches_reference_rank_deficient():
    rnd = np.random.RandomState(1)
    real = rnd.normal(size=[10, 24])                         # rank <= 9 covariance
    gen = rnd.normal(size=[8, 3]) @ rnd.normal(size=[3, 24])  # rank <= 3
    assert fid_mod.fid_from_features(real, gen) == pytest.approx(_fid_reference(real, gen), rel=1e-4)


def test_fid_from_stats_matches_scipy_sqrtm_expression():
    rnd = np.random.RandomState(2)
    a, b = rnd.normal(size=[50, 6]), rnd.normal(size=[60, 6]) + 1
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False, bias=True)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False, bias=True)
    expected = np.real(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s2 @ s1)))
    assert fid_mod.fid_from_stats(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)


def test_fid_of_identical_sets_is_zero():
    x = np.random.RandomState(3).normal(size=[200, 16])
    assert abs(fid_mod.fid_from_features(x, x)) < 1e-8


def test_fid_shape_errors():
    with pytest.raises(ValueError, match=r'sigma1 \[3, 4\]'):
        fid_mod.fid_from_stats(np.zeros(3), np.zeros([3, 4]), np.zeros(3), np.zeros([3, 3]))

#----------------------------------------------------------------------------
# KID.

def _kid_reference(real, gen, num_subsets, max_subset_size, seed):
    rng = np.random.RandomState(seed)
    d = real.shape[1]
    m = min(real.shape[0], gen.shape[0], max_subset_size)
    k = lambda u, v: (np.dot(u, v) / d + 1) ** 3
    total = 0.0
    for _ in range(num_subsets):
        x = gen[rng.choice(gen.shape[0], m, replace=False)].astype(np.float64)
        y = real[rng.choice(real.shape[0], m, replace=False)].astype(np.float64)
        kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
        kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
        kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
        total += (kxx + kyy) / (m * (m - 1)) - 2 * kxy / (m * m)
    return total / num_subsets


def test_kid_matches_explicit_unbiased_mmd():
    rnd = np.random.RandomState(4)
    real, gen = rnd.normal(size=[40, 5]), rnd.normal(size=[30, 5]) + 0.5
    got = kernel_inception_distance.kid_from_features(real, gen, num_subsets=3, max_subset_size=20, rng=np.random.RandomState(7))
    assert got == pytest.approx(_kid_reference(real, gen, 3, 20, 7), rel=1e-9)


def test_kid_unbiased_for_same_distribution_and_positive_otherwise():
    rnd = np.random.RandomState(5)
    a, b = rnd.normal(size=[1000, 16]), rnd.normal(size=[1000, 16])
    same = kernel_inception_distance.kid_from_features(a, b, num_subsets=20, max_subset_size=200, rng=np.random.RandomState(0))
    diff = kernel_inception_distance.kid_from_features(a, b * 1.5 + 0.5, num_subsets=20, max_subset_size=200, rng=np.random.RandomState(0))
    assert abs(same) < 0.02 * diff
    assert diff > 0.1


def test_kid_needs_two_items():
    with pytest.raises(ValueError, match='at least 2 items'):
        kernel_inception_distance.kid_from_features(np.zeros([1, 3]), np.zeros([5, 3]))

#----------------------------------------------------------------------------
# Precision / recall.

def _pr_reference(real, gen, k):
    real = real.astype(np.float16).astype(np.float64)
    gen = gen.astype(np.float16).astype(np.float64)
    dist = lambda a, b: np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).astype(np.float16)
    out = []
    for manifold, probes in [(real, gen), (gen, real)]:
        radii = np.sort(dist(manifold, manifold).astype(np.float32), axis=1)[:, k].astype(np.float16)  # index 0: the point itself
        inside = (dist(probes, manifold) <= radii[None, :]).any(axis=1)
        out.append(inside.mean())
    return tuple(out)


@pytest.mark.parametrize('k', [1, 3])
def test_pr_matches_brute_force(k):
    rnd = np.random.RandomState(6)
    real = rnd.normal(size=[70, 6]).astype(np.float32)
    gen = (rnd.normal(size=[55, 6]) * 0.7 + 0.4).astype(np.float32)
    precision, recall = precision_recall.pr_from_features(real, gen, nhood_size=k, row_batch_size=17, col_batch_size=13)
    ref_p, ref_r = _pr_reference(real, gen, k)
    assert abs(precision - ref_p) <= 1 / 55 + 1e-9
    assert abs(recall - ref_r) <= 1 / 70 + 1e-9
    assert 0 < precision < 1 and 0 < recall < 1


def test_compute_distances_batches_match_cdist():
    rnd = torch.Generator().manual_seed(0)
    rows, cols = torch.randn([9, 4], generator=rnd), torch.randn([23, 4], generator=rnd)
    got = precision_recall.compute_distances(rows, cols, col_batch_size=5)
    torch.testing.assert_close(got, torch.cdist(rows.double(), cols.double()).float(), rtol=1e-5, atol=1e-5)

#----------------------------------------------------------------------------
# Inception score.

def test_is_matches_relative_entropy():
    rnd = np.random.RandomState(8)
    probs = rnd.dirichlet(np.full(7, 0.3), size=103).astype(np.float64)
    scores = []
    for i in range(10):
        part = probs[i * 103 // 10:(i + 1) * 103 // 10]
        marginal = part.mean(axis=0)
        scores.append(np.exp(np.mean([scipy.special.rel_entr(p, marginal).sum() for p in part])))
    mean, std = inception_score.is_from_probs(probs, num_splits=10)
    assert mean == pytest.approx(np.mean(scores), rel=1e-10)
    assert std == pytest.approx(np.std(scores), rel=1e-8)


def test_is_of_confident_uniform_classifier_equals_num_classes():
    probs = np.full([40, 4], 1e-30)
    probs[np.arange(40), np.arange(40) % 4] = 1
    mean, std = inception_score.is_from_probs(probs, num_splits=10)
    assert mean == pytest.approx(4, rel=1e-6) and std < 1e-6

#----------------------------------------------------------------------------
# PPL.

def test_ppl_percentile_filter():
    dist = np.random.RandomState(9).exponential(size=1000)
    s = np.sort(dist)
    lo, hi = s[int(np.floor(0.01 * 999))], s[int(np.ceil(0.99 * 999))]
    expected = s[(s >= lo) & (s <= hi)].mean()
    assert perceptual_path_length.ppl_from_distances(dist) == pytest.approx(expected, rel=1e-12)
    # float32 distances (what compute_ppl passes): the mean is taken in float32, as NVlabs does.
    d32 = dist.astype(np.float32) * np.float32(1e3)
    s32 = np.sort(d32)
    keep = (d32 >= s32[int(np.floor(0.01 * 999))]) & (d32 <= s32[int(np.ceil(0.99 * 999))])
    assert perceptual_path_length.ppl_from_distances(d32) == float(d32[keep].mean(dtype=np.float32))
    assert perceptual_path_length.ppl_from_distances(np.arange(1, 200)) == pytest.approx(100)  # integers accepted


def test_ppl_distance_on_linear_generator():
    # Linear synthesis (img = A w) and linear LPIPS features (f = P pool(img / 255)): for W-space endpoint
    # sampling the scaled distance is |P pool(A (w1 - w0)) * 255/2 / 255|^2, independent of epsilon.
    G = mf.TinyGenerator(z_dim=6, w_dim=5, img_resolution=8, linear=True).eval()
    vgg = mf.TinyVGG(seed=3)
    c = torch.zeros([4, 0])
    gen = torch.Generator().manual_seed(123)
    got = perceptual_path_length.ppl_batch_distances(G, vgg, c, gen, epsilon=1e-2, space='w', sampling='end')

    gen = torch.Generator().manual_seed(123)
    torch.rand([4], generator=gen)
    z0, z1 = torch.randn([8, 6], generator=gen).double().chunk(2)
    W = G.mapping.fc.weight.double()
    b = G.mapping.fc.bias.double()
    w0, w1 = torch.nn.functional.leaky_relu(z0 @ W.T + b, 0.2), torch.nn.functional.leaky_relu(z1 @ W.T + b, 0.2)
    img_delta = ((w1 - w0) @ G.synthesis.fc.weight.double().T).reshape([4, 3, 8, 8]) * (255 / 2)
    feat_delta = torch.nn.functional.adaptive_avg_pool2d(img_delta / 255, [4, 4]).flatten(1) @ vgg.proj.double()
    torch.testing.assert_close(got.double(), feat_delta.square().sum(1), rtol=2e-3, atol=1e-6)


def test_ppl_rejects_bad_space():
    with pytest.raises(ValueError, match='space must be'):
        perceptual_path_length.ppl_batch_distances(mf.TinyGenerator(), mf.TinyVGG(), torch.zeros([1, 0]), torch.Generator(), 1e-4, space='x')

#----------------------------------------------------------------------------
# FeatureStats.

def test_feature_stats_mean_cov_truncation_and_merge():
    rnd = np.random.RandomState(10)
    x = rnd.normal(size=[50, 5]).astype(np.float32)
    stats = metric_utils.FeatureStats(capture_all=True, capture_mean_cov=True, max_items=37)
    for chunk in np.array_split(x, 6):
        stats.append(chunk)
    assert stats.is_full() and stats.num_items == 37
    np.testing.assert_array_equal(stats.get_all(), x[:37])
    mean, cov = stats.get_mean_cov()
    np.testing.assert_allclose(mean, x[:37].astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x[:37].astype(np.float64), rowvar=False, bias=True), rtol=1e-9, atol=1e-12)

    a, b = metric_utils.FeatureStats(capture_mean_cov=True), metric_utils.FeatureStats(capture_mean_cov=True)
    a.append(x[:20]); b.append(x[20:])
    a.merge(b)
    np.testing.assert_allclose(a.get_mean_cov()[1], np.cov(x.astype(np.float64), rowvar=False, bias=True), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match=r'dimension 4, expected 5'):
        a.append(np.zeros([2, 4]))


def test_feature_stats_save_load_roundtrip_and_corruption(tmp_path):
    x = np.random.RandomState(11).normal(size=[20, 3]).astype(np.float32)
    stats = metric_utils.FeatureStats(capture_all=True, capture_mean_cov=True)
    stats.append(x)
    path = str(tmp_path / 's.npz')
    stats.save(path, meta=dict(key=1))
    loaded = metric_utils.FeatureStats.load(path, expected_meta=dict(key=1))
    np.testing.assert_array_equal(loaded.get_all(), x)
    np.testing.assert_array_equal(loaded.get_mean_cov()[1], stats.get_mean_cov()[1])
    with pytest.raises(ValueError, match='different options'):
        metric_utils.FeatureStats.load(path, expected_meta=dict(key=2))
    with open(path, 'r+b') as f:
        f.truncate(100)
    with pytest.raises(ValueError, match='unreadable'):
        metric_utils.FeatureStats.load(path)

#----------------------------------------------------------------------------
