"""Perceptual Path Length (PPL) from "A Style-Based Generator Architecture for Generative Adversarial
Networks" (Karras et al. 2019), as NVlabs computes it: pairs of latents at t and t + epsilon on the
path between two random latents (W: lerp, Z: slerp; 'end' sampling: t = 0), randomized noise buffers,
squared LPIPS distance (VGG16 detector, return_lpips=True) divided by epsilon^2, and the mean of the
values between the 1st and 99th percentiles.

Randomness: the latents, t and noise of global batch b come from a generator seeded with
metric_utils.stream_seed(seed, b, purpose=2), so any number of ranks produce the same distances.
"""

import copy

import numpy as np
import torch

from metrics import detectors, metric_utils

#----------------------------------------------------------------------------

def slerp(a, b, t):
    """Spherical interpolation between the directions of a and b [N, D] at t [N, 1]; unit-length result."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    d = (a * b).sum(dim=-1, keepdim=True)
    p = t * torch.acos(d)
    c = b - d * a
    c = c / c.norm(dim=-1, keepdim=True)
    d = a * torch.cos(p) + c * torch.sin(p)
    return d / d.norm(dim=-1, keepdim=True)


def ppl_from_distances(dist):
    """Mean of the distances within [1st percentile ('lower'), 99th percentile ('higher')].

    Computed in the distances' own float dtype: compute_ppl passes float32, whose mean NVlabs takes in
    float32 too (numpy's pairwise sum), so the value matches theirs to the last bit rather than to ~1e-7.
    """
    dist = np.asarray(dist)
    dist = (dist if np.issubdtype(dist.dtype, np.floating) else dist.astype(np.float64)).reshape(-1)
    if dist.size == 0:
        raise ValueError('ppl_from_distances: no distances')
    lo = np.percentile(dist, 1, method='lower')
    hi = np.percentile(dist, 99, method='higher')
    return float(np.extract(np.logical_and(dist >= lo, dist <= hi), dist).mean())


def _center_crop_faces(img):
    # NVlabs' face crop: rows 3/8..7/8, columns 2/8..6/8.
    if img.shape[2] != img.shape[3]:
        raise ValueError(f'PPL crop needs square images, got {list(img.shape)}')
    c = img.shape[2] // 8
    return img[:, :, c * 3: c * 7, c * 2: c * 6]


@torch.no_grad()
def ppl_batch_distances(G, vgg16, c, gen, epsilon, space='w', sampling='end', crop=False, G_kwargs={}):
    """Scaled squared LPIPS distances [N] for one batch with labels c [N, c_dim]; randomness from `gen`."""
    if space not in ('z', 'w') or sampling not in ('full', 'end'):
        raise ValueError(f'PPL: space must be "z" or "w" and sampling "full" or "end", got {space!r}, {sampling!r}')
    n, device = c.shape[0], c.device
    t = torch.rand([n], generator=gen) * (1 if sampling == 'full' else 0)
    z0, z1 = torch.randn([n * 2, G.z_dim], generator=gen).chunk(2)
    t, z0, z1 = t.to(device), z0.to(device), z1.to(device)

    # Interpolate in W or Z.
    if space == 'w':
        w0, w1 = G.mapping(z=torch.cat([z0, z1]), c=torch.cat([c, c])).chunk(2)
        wt0 = w0.lerp(w1, t.unsqueeze(1).unsqueeze(2))
        wt1 = w0.lerp(w1, t.unsqueeze(1).unsqueeze(2) + epsilon)
    else:
        zt0 = slerp(z0, z1, t.unsqueeze(1))
        zt1 = slerp(z0, z1, t.unsqueeze(1) + epsilon)
        wt0, wt1 = G.mapping(z=torch.cat([zt0, zt1]), c=torch.cat([c, c])).chunk(2)

    # Randomize noise buffers; both images of a pair share them.
    for name, buf in G.named_buffers():
        if name.endswith('.noise_const'):
            buf.copy_(torch.randn(buf.shape, generator=gen).to(buf.device, buf.dtype))

    img = G.synthesis(ws=torch.cat([wt0, wt1]), noise_mode='const', force_fp32=True, **G_kwargs)
    if crop:
        img = _center_crop_faces(img)
    factor = G.img_resolution // 256  # downsample to 256x256 by box filter
    if factor > 1:
        img = img.reshape([-1, img.shape[1], img.shape[2] // factor, factor, img.shape[3] // factor, factor]).mean([3, 5])
    img = (img + 1) * (255 / 2)  # [-1, 1] -> [0, 255], not quantized
    if G.img_channels == 1:
        img = img.repeat([1, 3, 1, 1])

    lpips_t0, lpips_t1 = vgg16(img, resize_images=False, return_lpips=True).chunk(2)
    return (lpips_t0 - lpips_t1).square().sum(1) / epsilon ** 2


def compute_ppl(opts, num_samples, epsilon, space, sampling, crop, batch_size):
    """PPL of opts.G over `num_samples` pairs; rank 0 returns the value, other ranks NaN."""
    vgg16, _ = metric_utils.get_feature_detector(detectors.VGG16, opts, verbose=opts.progress.verbose)
    G = copy.deepcopy(opts.G).eval().requires_grad_(False).to(opts.device)
    labels = metric_utils.LabelSource(opts)
    W, r = opts.num_gpus, opts.rank
    dist = []
    progress = opts.progress.sub(tag='ppl sampling', num_items=num_samples)
    gen = torch.Generator()
    for step, batch_start in enumerate(range(0, num_samples, batch_size * W)):
        progress.update(batch_start)
        b = step * W + r  # global batch index
        gen.manual_seed(metric_utils.stream_seed(opts.seed, b, purpose=2))
        c = labels([b * batch_size + j for j in range(batch_size)])
        x = ppl_batch_distances(G, vgg16, c, gen, epsilon=epsilon, space=space, sampling=sampling, crop=crop, G_kwargs=opts.G_kwargs)
        for src in range(W):
            y = x.clone()
            if W > 1:
                torch.distributed.broadcast(y, src=src)
            dist.append(y)
    progress.update(num_samples)
    if opts.rank != 0:
        return float('nan')
    return ppl_from_distances(torch.cat(dist)[:num_samples].cpu().numpy())

#----------------------------------------------------------------------------
