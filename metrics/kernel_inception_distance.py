"""Kernel Inception Distance (KID) from "Demystifying MMD GANs" (Binkowski et al. 2018): the unbiased
MMD^2 estimate with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets,
with the subset sampling (np.random choice without replacement, generated subset first) of NVlabs and of
the original implementation."""

import numpy as np

from metrics import metric_utils

#----------------------------------------------------------------------------

def kid_from_features(real, gen, num_subsets=100, max_subset_size=1000, rng=None):
    """KID between real [N, d] and gen [M, d] features.

    Each of `num_subsets` rounds draws m = min(N, M, max_subset_size) rows of each set without
    replacement and adds the unbiased MMD^2 of the two subsets; the result is their mean.
    `rng` is a np.random.RandomState (default: the global np.random state, as NVlabs).
    """
    real = np.asarray(real)
    gen = np.asarray(gen)
    if real.ndim != 2 or gen.ndim != 2 or real.shape[1] != gen.shape[1]:
        raise ValueError(f'kid_from_features: got real {list(real.shape)} and gen {list(gen.shape)}; expected [N, d] and [M, d]')
    rng = np.random if rng is None else rng
    n = real.shape[1]
    m = min(min(real.shape[0], gen.shape[0]), max_subset_size)
    if m < 2:
        raise ValueError(f'kid_from_features: need at least 2 items per set, got {real.shape[0]} real and {gen.shape[0]} generated')
    t = 0
    for _subset_idx in range(num_subsets):
        x = gen[rng.choice(gen.shape[0], m, replace=False)]
        y = real[rng.choice(real.shape[0], m, replace=False)]
        a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
        b = (x @ y.T / n + 1) ** 3
        t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(t / num_subsets / m)

#----------------------------------------------------------------------------

def compute_kid(opts, max_real, num_gen, num_subsets, max_subset_size):
    """KID of opts.G against the dataset; features gathered on every rank, rank 0 computes (others NaN)."""
    detector_kwargs = dict(return_features=True)
    real_features = metric_utils.compute_feature_stats_for_dataset(
        opts=opts, detector_name=opts.inception, detector_kwargs=detector_kwargs,
        capture_all=True, max_items=max_real).get_all()
    gen_features = metric_utils.compute_feature_stats_for_generator(
        opts=opts, detector_name=opts.inception, detector_kwargs=detector_kwargs,
        capture_all=True, max_items=num_gen).get_all()
    if opts.rank != 0:
        return float('nan')
    return kid_from_features(real_features, gen_features, num_subsets=num_subsets, max_subset_size=max_subset_size,
                             rng=np.random.RandomState(opts.seed))

#----------------------------------------------------------------------------
