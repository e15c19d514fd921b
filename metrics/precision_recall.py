"""Improved precision and recall from "Improved Precision and Recall Metric for Assessing Generative
Models" (Kynkaanniemi et al. 2019), as NVlabs computes it: VGG16 features in float16, k-NN radii
(k = nhood_size, excluding the point itself), and pairwise distances in row x column batches whose
columns are split across ranks.

Precision: fraction of generated samples inside the real manifold (some real sample's k-NN ball);
recall: fraction of real samples inside the generated manifold.
"""

import numpy as np
import torch

from metrics import detectors, metric_utils

#----------------------------------------------------------------------------

def _cdist(rows, cols):
    """Euclidean distances [R, C] in the features' dtype. CPU torch has no float16 cdist: there the
    distances are computed in float32 from the float16 features and rounded to float16."""
    if rows.dtype == torch.float16 and rows.device.type == 'cpu':
        return torch.cdist(rows.to(torch.float32).unsqueeze(0), cols.to(torch.float32).unsqueeze(0))[0].to(torch.float16)
    return torch.cdist(rows.unsqueeze(0), cols.unsqueeze(0))[0]


def compute_distances(row_features, col_features, num_gpus=1, rank=0, col_batch_size=10000):
    """Distances [R, C] between rows and all columns; columns are processed in batches split across
    ranks and broadcast to rank 0, which gets the full matrix (other ranks get None). All ranks call."""
    if not 0 <= rank < num_gpus:
        raise ValueError(f'compute_distances: rank {rank} not in [0, {num_gpus})')
    num_cols = col_features.shape[0]
    num_batches = ((num_cols - 1) // col_batch_size // num_gpus + 1) * num_gpus
    col_batches = torch.nn.functional.pad(col_features, [0, 0, 0, -num_cols % num_batches]).chunk(num_batches)  # equal sizes
    dist_batches = []
    for col_batch in col_batches[rank::num_gpus]:
        dist_batch = _cdist(row_features, col_batch)
        for src in range(num_gpus):
            dist_broadcast = dist_batch.clone()
            if num_gpus > 1:
                torch.distributed.broadcast(dist_broadcast, src=src)
            dist_batches.append(dist_broadcast.cpu() if rank == 0 else None)
    return torch.cat(dist_batches, dim=1)[:, :num_cols] if rank == 0 else None


def pr_from_features(real, gen, nhood_size=3, row_batch_size=10000, col_batch_size=10000, num_gpus=1, rank=0, device='cpu'):
    """(precision, recall) of gen [M, F] against real [N, F] features (numpy or torch; used in float16).

    With num_gpus > 1 every rank calls with the same features; rank 0 gets the values, others NaN.
    """
    real = torch.as_tensor(np.asarray(real) if not isinstance(real, torch.Tensor) else real).to(torch.float16).to(device)
    gen = torch.as_tensor(np.asarray(gen) if not isinstance(gen, torch.Tensor) else gen).to(torch.float16).to(device)
    if real.ndim != 2 or gen.ndim != 2 or real.shape[1] != gen.shape[1]:
        raise ValueError(f'pr_from_features: got real {list(real.shape)} and gen {list(gen.shape)}; expected [N, F] and [M, F]')
    if min(real.shape[0], gen.shape[0]) <= nhood_size:
        raise ValueError(f'pr_from_features: need more than nhood_size={nhood_size} items per set, '
                         f'got {real.shape[0]} real and {gen.shape[0]} generated')
    results = dict()
    for name, manifold, probes in [('precision', real, gen), ('recall', gen, real)]:
        kth = []
        for manifold_batch in manifold.split(row_batch_size):
            dist = compute_distances(manifold_batch, manifold, num_gpus=num_gpus, rank=rank, col_batch_size=col_batch_size)
            kth.append(dist.to(torch.float32).kthvalue(nhood_size + 1).values.to(torch.float16) if rank == 0 else None)
        kth = torch.cat(kth) if rank == 0 else None
        pred = []
        for probes_batch in probes.split(row_batch_size):
            dist = compute_distances(probes_batch, manifold, num_gpus=num_gpus, rank=rank, col_batch_size=col_batch_size)
            pred.append((dist <= kth).any(dim=1) if rank == 0 else None)
        results[name] = float(torch.cat(pred).to(torch.float32).mean()) if rank == 0 else float('nan')
    return results['precision'], results['recall']

#----------------------------------------------------------------------------

def compute_pr(opts, max_real, num_gen, nhood_size, row_batch_size, col_batch_size, detector_name=detectors.VGG16):
    """Precision and recall of opts.G against the dataset on the features of `detector_name` (VGG16 as NVlabs;
    the demo detector for pr_demo)."""
    detector_kwargs = dict(return_features=True)
    real_features = metric_utils.compute_feature_stats_for_dataset(
        opts=opts, detector_name=detector_name, detector_kwargs=detector_kwargs,
        capture_all=True, max_items=max_real).get_all_torch()
    gen_features = metric_utils.compute_feature_stats_for_generator(
        opts=opts, detector_name=detector_name, detector_kwargs=detector_kwargs,
        capture_all=True, max_items=num_gen).get_all_torch()
    return pr_from_features(real_features, gen_features, nhood_size=nhood_size, row_batch_size=row_batch_size,
                            col_batch_size=col_batch_size, num_gpus=opts.num_gpus, rank=opts.rank, device=opts.device)

#----------------------------------------------------------------------------
