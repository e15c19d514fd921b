"""Frechet Inception Distance (FID) from "GANs trained by a two time-scale update rule converge to a
local Nash equilibrium" (Heusel et al. 2017), computed as NVlabs and TTUR do: float64 mean and biased
covariance of 2048-D Inception pool features, and the real part of scipy's matrix square root."""

import time
import warnings

import numpy as np
import scipy.linalg

import dnnlib.util
from metrics import metric_utils

#----------------------------------------------------------------------------

def fid_from_stats(mu1, sigma1, mu2, sigma2, log=None):
    """FID = |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)) in float64.

    The square root is scipy.linalg.sqrtm of the product (generated first, as NVlabs), of which only the
    real part enters the trace; singular (rank-deficient) covariances are accepted as they are.
    `log` (e.g. print) receives a line before and after the square root, which takes seconds to a minute at F=2048.
    """
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    if mu1.ndim != 1 or mu1.shape != mu2.shape or sigma1.shape != (mu1.size, mu1.size) or sigma2.shape != sigma1.shape:
        raise ValueError(f'fid_from_stats: got mu1 {list(mu1.shape)}, sigma1 {list(sigma1.shape)}, mu2 {list(mu2.shape)}, '
                         f'sigma2 {list(sigma2.shape)}; expected [F], [F, F], [F], [F, F]')
    m = np.square(mu1 - mu2).sum()
    if log is not None:
        log(f'FID: matrix square root of the {mu1.size}x{mu1.size} covariance product...')
    start = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', scipy.linalg.LinAlgWarning)  # singular products are expected (NVlabs: disp=False)
        s = scipy.linalg.sqrtm(np.dot(sigma2, sigma1))
    if log is not None:
        log(f'FID: matrix square root done in {dnnlib.util.format_time(time.time() - start)}')
    return float(np.real(m + np.trace(sigma2 + sigma1 - s * 2)))


def mean_cov(features):
    """Float64 mean [F] and biased covariance [F, F] of features [N, F] (float32 first, as FeatureStats)."""
    stats = metric_utils.FeatureStats(capture_mean_cov=True)
    stats.append(features)
    return stats.get_mean_cov()


def fid_from_features(real, gen):
    """FID between feature sets real [N, F] and gen [M, F]."""
    mu_real, sigma_real = mean_cov(real)
    mu_gen, sigma_gen = mean_cov(gen)
    return fid_from_stats(mu_real, sigma_real, mu_gen, sigma_gen)

#----------------------------------------------------------------------------

def compute_fid(opts, max_real, num_gen):
    """FID of opts.G against the dataset: `max_real` real images (None: all), `num_gen` generated.
    Float64 sums are merged across ranks; rank 0 returns the value, other ranks NaN."""
    detector_kwargs = dict(return_features=True)  # raw features before the softmax layer
    mu_real, sigma_real = metric_utils.compute_feature_stats_for_dataset(
        opts=opts, detector_name=opts.inception, detector_kwargs=detector_kwargs,
        capture_mean_cov=True, max_items=max_real).get_mean_cov()
    mu_gen, sigma_gen = metric_utils.compute_feature_stats_for_generator(
        opts=opts, detector_name=opts.inception, detector_kwargs=detector_kwargs,
        capture_mean_cov=True, max_items=num_gen).get_mean_cov()
    if opts.rank != 0:
        return float('nan')
    log = None
    if opts.progress is not None and opts.progress.verbose:
        log = lambda line: print(line, file=opts.progress.file, flush=True)
    return fid_from_stats(mu_real, sigma_real, mu_gen, sigma_gen, log=log)

#----------------------------------------------------------------------------
