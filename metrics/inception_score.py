"""Inception Score (IS) from "Improved techniques for training GANs" (Salimans et al. 2016), as NVlabs
and the original implementation: softmax of the Inception logits without the output bias, exp of the
mean KL(p(y|x) || p(y)) within each of 10 consecutive splits, mean and std over the splits."""

import numpy as np

from metrics import metric_utils

#----------------------------------------------------------------------------

def is_from_probs(probs, num_splits=10):
    """(mean, std) of the Inception Score of class probabilities [N, K] over `num_splits` splits
    (split i is rows [i N / s, (i + 1) N / s), integer division as NVlabs)."""
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f'is_from_probs: probs must be [N, K], got {list(probs.shape)}')
    num = probs.shape[0]
    if num < num_splits:
        raise ValueError(f'is_from_probs: need at least num_splits={num_splits} items, got {num}')
    scores = []
    for i in range(num_splits):
        part = probs[i * num // num_splits: (i + 1) * num // num_splits]
        kl = part * (np.log(part) - np.log(np.mean(part, axis=0, keepdims=True)))
        kl = np.mean(np.sum(kl, axis=1))
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))

#----------------------------------------------------------------------------

def compute_is(opts, num_gen, num_splits):
    """IS of `num_gen` images of opts.G; rank 0 returns (mean, std), other ranks NaNs."""
    detector_kwargs = dict(no_output_bias=True)  # the original leaves out the softmax layer's bias
    gen_probs = metric_utils.compute_feature_stats_for_generator(
        opts=opts, detector_name=opts.inception, detector_kwargs=detector_kwargs,
        capture_all=True, max_items=num_gen).get_all()
    if opts.rank != 0:
        return float('nan'), float('nan')
    return is_from_probs(gen_probs, num_splits=num_splits)

#----------------------------------------------------------------------------
