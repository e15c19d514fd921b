"""Machinery shared by the metrics: options, progress with ETA, feature statistics (float64 running
sums or all features, mergeable across ranks), the dataset-statistics cache, and the loops that feed
dataset and generated images (uint8 NCHW, as NVlabs) through a detector.

Distributed layout. Rank r of W handles dataset items r, r+W, r+2W, ... and generated items with the
same interleaving, so the features gathered by `FeatureStats.append_torch` arrive in global item order
and W processes produce the same set of items (and the same numbers) as one. Latents and labels of
generated item g come from a generator seeded with `stream_seed(seed, g)`, which makes that possible.
"""

import contextlib
import copy
import hashlib
import json
import math
import os
import sys
import time
import zipfile

import numpy as np
import torch

import dnnlib
from metrics import detectors
from torch_utils import distributed

#----------------------------------------------------------------------------

class MetricOptions:
    """Everything a metric function needs besides its own constants.

    Args:
        G:                  generator module (`z_dim`, `c_dim`, `G(z, c, **G_kwargs)` -> NCHW in [-1, 1]).
        G_kwargs:           extra keyword arguments for G's forward (e.g. noise_mode, truncation_psi).
        dataset_kwargs:     kwargs with `class_name` constructing the real-image dataset.
        num_gpus, rank:     process group size and this process's rank.
        device:             torch device of this rank (default cuda:rank, or cpu without CUDA).
        progress:           a ProgressMonitor (only used on rank 0) or None.
        cache:              use the dataset-statistics cache.
        detector_dir:       folder holding detector files (overrides $GANFORGE_DETECTOR_DIR).
        inception:          detector for FID/KID/IS: 'inception-2015-12-05' (NVlabs TorchScript, default),
                            'pt_inception-2015-12-05' (native model on the pytorch-fid weights), or a path/URL.
        seed:               seed of the generated latents/labels (see stream_seed).
        batch_size:         images per detector call per rank.
        batch_gen:          images per generator call (divides batch_size; default 4 on GPU as NVlabs, batch_size on CPU).
        data_loader_kwargs: kwargs for the dataset's torch DataLoader.
    """

    def __init__(self, G=None, G_kwargs={}, dataset_kwargs={}, num_gpus=1, rank=0, device=None, progress=None,
                 cache=True, detector_dir=None, inception=None, seed=0, batch_size=64, batch_gen=None,
                 data_loader_kwargs=None):
        if not 0 <= rank < num_gpus:
            raise ValueError(f'MetricOptions: rank must be in [0, num_gpus), got rank={rank}, num_gpus={num_gpus}')
        if device is None:
            device = torch.device('cuda', rank) if torch.cuda.is_available() else torch.device('cpu')
        self.G                  = G
        self.G_kwargs           = dnnlib.EasyDict(G_kwargs)
        self.dataset_kwargs     = dnnlib.EasyDict(dataset_kwargs)
        self.num_gpus           = num_gpus
        self.rank               = rank
        self.device             = torch.device(device)
        self.progress           = progress.sub() if progress is not None and rank == 0 else ProgressMonitor()
        self.cache              = cache
        self.detector_dir       = detector_dir
        self.inception          = inception or detectors.INCEPTION
        self.seed               = int(seed)
        self.batch_size         = int(batch_size)
        if batch_gen is None:  # NVlabs: 4 per G call (GPU memory); on CPU whole batches are faster
            batch_gen = min(self.batch_size, 4) if self.device.type == 'cuda' else self.batch_size
        self.batch_gen          = int(batch_gen)
        self.data_loader_kwargs = data_loader_kwargs
        if self.batch_size % self.batch_gen != 0:
            raise ValueError(f'MetricOptions: batch_gen ({self.batch_gen}) must divide batch_size ({self.batch_size})')

#----------------------------------------------------------------------------

class ProgressMonitor:
    """Progress lines 'tag items N/total time T ms/item X ETA Y' every `flush_interval` items."""

    def __init__(self, tag=None, num_items=None, flush_interval=1000, verbose=False, file=None):
        self.tag = tag
        self.num_items = num_items
        self.flush_interval = flush_interval
        self.verbose = verbose
        self.file = file
        self.start_time = time.time()
        self.batch_time = self.start_time
        self.batch_items = 0

    def update(self, cur_items):
        if self.num_items is not None:
            cur_items = min(cur_items, self.num_items)
        done = self.num_items is not None and cur_items >= self.num_items
        if cur_items < self.batch_items + self.flush_interval and not done:
            return
        if done and self.batch_items >= self.num_items:
            return  # final line already printed
        now = time.time()
        total_time = now - self.start_time
        ms_per_item = (now - self.batch_time) / max(cur_items - self.batch_items, 1) * 1e3
        if self.verbose and self.tag is not None:
            total = f'/{self.num_items}' if self.num_items is not None else ''
            eta = ''
            if self.num_items is not None and cur_items > 0:
                eta = f' ETA {dnnlib.util.format_time(total_time / cur_items * (self.num_items - cur_items))}'
            print(f'{self.tag:<19s} items {cur_items}{total:<8s} time {dnnlib.util.format_time(total_time):<9s} '
                  f'ms/item {ms_per_item:.2f}{eta}', file=self.file or sys.stdout, flush=True)
        self.batch_time = now
        self.batch_items = cur_items

    def sub(self, tag=None, num_items=None, flush_interval=1000):
        return ProgressMonitor(tag=tag, num_items=num_items, flush_interval=flush_interval, verbose=self.verbose, file=self.file)

#----------------------------------------------------------------------------
# Detectors, loaded once per process; rank 0 first.

@contextlib.contextmanager
def leader_first(opts):
    """Run the block on rank 0 first (a download, a build) and on the other ranks after it (no-op for one process)."""
    if opts.rank != 0:
        distributed.barrier()
    try:
        yield
    finally:
        if opts.rank == 0:
            distributed.barrier()


def get_feature_detector(name, opts, verbose=False):
    """Load the detector `name` (a known name, URL or path) on opts.device, cached per process by file
    identity; rank 0 goes first so that only one process downloads. Returns (module, identity) where
    identity ({'name', 'sha256'}) keys the statistics cache."""
    with leader_first(opts):
        path = detectors.resolve_detector(name, detector_dir=opts.detector_dir, verbose=verbose and opts.rank == 0)
        module = detectors.get_detector(path, device=opts.device)
    return module, detectors.detector_identity(path)

#----------------------------------------------------------------------------

def _check_npz_sizes(path):
    """Refuse .npz members whose .npy header declares more data than the member holds (numpy would
    allocate the declared size before reading)."""
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith('.npy'):
                continue
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f'{info.filename}: unsupported .npy version {version}')
            if dtype.hasobject or math.prod(shape) * dtype.itemsize > info.file_size:
                raise ValueError(f'{info.filename}: declares {dtype} {list(shape)}, more than its {info.file_size} bytes')


class FeatureStats:
    """Feature statistics of a set of images: all features (capture_all) and/or float64 running sums
    for the mean and covariance (capture_mean_cov), capped at `max_items`.

    `append_torch(x, num_gpus, rank)` gathers the rows of all ranks (interleaved, rank-major within
    a row index, as NVlabs) so that every rank sees every item in global order. Statistics with only
    running sums can instead be accumulated per rank and merged with `all_reduce` (float64 sums).
    """

    def __init__(self, capture_all=False, capture_mean_cov=False, max_items=None):
        self.capture_all = bool(capture_all)
        self.capture_mean_cov = bool(capture_mean_cov)
        self.max_items = max_items
        self.num_items = 0
        self.num_features = None
        self.all_features = None
        self.raw_mean = None
        self.raw_cov = None

    def set_num_features(self, num_features):
        if self.num_features is not None:
            if num_features != self.num_features:
                raise ValueError(f'FeatureStats: got features of dimension {num_features}, expected {self.num_features}')
        else:
            self.num_features = int(num_features)
            self.all_features = []
            self.raw_mean = np.zeros([num_features], dtype=np.float64)
            self.raw_cov = np.zeros([num_features, num_features], dtype=np.float64)

    def is_full(self):
        return (self.max_items is not None) and (self.num_items >= self.max_items)

    def append(self, x):
        """Add features x [N, F] (converted to float32 as NVlabs; sums in float64)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f'FeatureStats.append: features must be [N, F], got shape {list(x.shape)}')
        if (self.max_items is not None) and (self.num_items + x.shape[0] > self.max_items):
            if self.num_items >= self.max_items:
                return
            x = x[:self.max_items - self.num_items]
        self.set_num_features(x.shape[1])
        self.num_items += x.shape[0]
        if self.capture_all:
            self.all_features.append(x)
        if self.capture_mean_cov:
            x64 = x.astype(np.float64)
            self.raw_mean += x64.sum(axis=0)
            self.raw_cov += x64.T @ x64

    def append_torch(self, x, num_gpus=1, rank=0):
        """Add features x [N, F] of every rank (all ranks must pass the same N), interleaved so that
        row i of rank r becomes item i * num_gpus + r of this step."""
        if not (isinstance(x, torch.Tensor) and x.ndim == 2):
            raise ValueError(f'FeatureStats.append_torch: expected a 2-D tensor, got {type(x).__name__} '
                             f'of shape {list(getattr(x, "shape", []))}')
        if not 0 <= rank < num_gpus:
            raise ValueError(f'FeatureStats.append_torch: rank {rank} not in [0, {num_gpus})')
        if num_gpus > 1:
            ys = []
            for src in range(num_gpus):
                y = x.clone()
                torch.distributed.broadcast(y, src=src)
                ys.append(y)
            x = torch.stack(ys, dim=1).flatten(0, 1)  # interleave samples
        self.append(x.detach().cpu().numpy())

    def merge(self, other):
        """Add another FeatureStats' items (same capture modes) to this one, respecting max_items for sums."""
        if (other.capture_all, other.capture_mean_cov) != (self.capture_all, self.capture_mean_cov):
            raise ValueError('FeatureStats.merge: capture modes differ')
        if other.num_items == 0:
            return
        self.set_num_features(other.num_features)
        if self.capture_all:
            for x in other.all_features:
                self.append(x)
            return
        self.num_items += other.num_items
        self.raw_mean += other.raw_mean
        self.raw_cov += other.raw_cov

    def all_reduce(self, num_gpus, device):
        """Sum the float64 running sums and item counts of all ranks (running-sum statistics only)."""
        if num_gpus == 1:
            return
        if self.capture_all:
            raise ValueError('FeatureStats.all_reduce: capture_all statistics are gathered with append_torch, not reduced')
        if self.num_features is None:
            raise ValueError('FeatureStats.all_reduce: no features appended on this rank')
        n = torch.as_tensor([self.num_items], dtype=torch.float64, device=device)
        mean = torch.from_numpy(self.raw_mean).to(device)
        cov = torch.from_numpy(self.raw_cov).to(device)
        for t in (n, mean, cov):
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        self.num_items = int(round(float(n.cpu())))
        self.raw_mean = mean.cpu().numpy()
        self.raw_cov = cov.cpu().numpy()

    def get_all(self):
        if not self.capture_all:
            raise ValueError('FeatureStats.get_all: statistics were not collected with capture_all=True')
        if not self.all_features:
            return np.zeros([0, self.num_features or 0], dtype=np.float32)
        return np.concatenate(self.all_features, axis=0)

    def get_all_torch(self):
        return torch.from_numpy(self.get_all())

    def get_mean_cov(self):
        """(mean [F], covariance [F, F]) in float64, the biased (1/N) estimate as NVlabs."""
        if not self.capture_mean_cov:
            raise ValueError('FeatureStats.get_mean_cov: statistics were not collected with capture_mean_cov=True')
        if self.num_items == 0:
            raise ValueError('FeatureStats.get_mean_cov: no items')
        mean = self.raw_mean / self.num_items
        cov = self.raw_cov / self.num_items
        cov = cov - np.outer(mean, mean)
        return mean, cov

    def save(self, path, meta=None):
        """Write to `path` (.npz, no pickles) atomically; `meta` (JSON-able) is stored for verification."""
        header = dict(capture_all=self.capture_all, capture_mean_cov=self.capture_mean_cov, max_items=self.max_items,
                      num_items=self.num_items, num_features=self.num_features, meta=meta)
        arrays = dict(header=np.frombuffer(json.dumps(header, sort_keys=True).encode('utf-8'), dtype=np.uint8))
        if self.num_features is not None:
            if self.capture_all:
                arrays['all_features'] = self.get_all()
            if self.capture_mean_cov:
                arrays['raw_mean'] = self.raw_mean
                arrays['raw_cov'] = self.raw_cov
        with dnnlib.util.atomic_write(path) as f:
            np.savez(f, **arrays)

    @staticmethod
    def load(path, expected_meta=None):
        """Read a file written by `save`; ValueError if it is malformed or its meta differs from `expected_meta`.

        Every header field is type-checked and every array's dtype and shape checked against the header
        before anything is allocated from it, so a crafted file is reported, never a crash.
        """
        try:
            _check_npz_sizes(path)
            with np.load(path, allow_pickle=False) as data:
                raw = data['header']
                arrays = {k: data[k] for k in data.files if k in ('all_features', 'raw_mean', 'raw_cov')}
            if raw.dtype != np.uint8 or raw.ndim != 1:
                raise ValueError(f'malformed header (expected a uint8 vector, got {raw.dtype} {list(raw.shape)})')
            header = json.loads(bytes(raw).decode('utf-8'))
        except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as e:  # JSON/Unicode errors are ValueErrors
            raise ValueError(f'{path}: unreadable feature statistics ({type(e).__name__}: {e})') from e
        def is_count(v, positive=False):
            return isinstance(v, int) and not isinstance(v, bool) and v >= (1 if positive else 0)
        if not isinstance(header, dict):
            raise ValueError(f'{path}: malformed header (a JSON {type(header).__name__}, expected an object)')
        if expected_meta is not None and header.get('meta') != json.loads(json.dumps(expected_meta, sort_keys=True)):
            raise ValueError(f'{path}: statistics were computed with different options')
        checks = dict(capture_all=lambda v: isinstance(v, bool), capture_mean_cov=lambda v: isinstance(v, bool),
                      max_items=lambda v: v is None or is_count(v), num_items=is_count,
                      num_features=lambda v: v is None or is_count(v, positive=True))
        for field, ok in checks.items():
            if field not in header or not ok(header[field]):
                raise ValueError(f'{path}: malformed header field {field}: {header.get(field, "<missing>")!r}')
        n, f = header['num_items'], header['num_features']
        if header['max_items'] is not None and n > header['max_items']:
            raise ValueError(f'{path}: malformed header: num_items {n} exceeds max_items {header["max_items"]}')
        obj = FeatureStats(capture_all=header['capture_all'], capture_mean_cov=header['capture_mean_cov'], max_items=header['max_items'])
        if f is None:
            if n != 0 or arrays:
                raise ValueError(f'{path}: malformed header: {n} items but no num_features')
            return obj
        expected = dict()
        if obj.capture_all:
            expected['all_features'] = ((n, f), np.float32)
        if obj.capture_mean_cov:
            expected.update(raw_mean=((f,), np.float64), raw_cov=((f, f), np.float64))
        for key, (shape, dtype) in expected.items():
            a = arrays.get(key)
            if a is None or a.shape != shape or a.dtype != dtype:
                got = 'missing' if a is None else f'{a.dtype} {list(a.shape)}'
                raise ValueError(f'{path}: {key} {got}, expected {np.dtype(dtype).name} {list(shape)}')
            if not np.all(np.isfinite(a)):
                raise ValueError(f'{path}: non-finite values in {key}')
        obj.num_features, obj.num_items = f, n
        obj.all_features = [arrays['all_features']] if obj.capture_all else []
        obj.raw_mean = arrays['raw_mean'] if obj.capture_mean_cov else None
        obj.raw_cov = arrays['raw_cov'] if obj.capture_mean_cov else None
        return obj

#----------------------------------------------------------------------------
# Dataset statistics cache.

def dataset_identity(dataset_kwargs):
    """What identifies the dataset's content: its path with size and modification time (for a folder:
    a hash over every file's relative path, size and mtime)."""
    path = dataset_kwargs.get('path')
    if path is None:
        return dict(path=None)
    path = os.path.abspath(os.fspath(path))
    if os.path.isfile(path):
        st = os.stat(path)
        return dict(path=path, size=st.st_size, mtime_ns=st.st_mtime_ns)
    if os.path.isdir(path):
        h = hashlib.md5()
        count = 0
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for fname in sorted(files):
                st = os.stat(os.path.join(root, fname))
                h.update(f'{os.path.relpath(os.path.join(root, fname), path)}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode('utf-8'))
                count += 1
        return dict(path=path, num_files=count, files_md5=h.hexdigest())
    return dict(path=path, missing=True)


def _jsonable(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=repr))


def dataset_stats_cache_file(dataset_name, detector_identity, key):
    """Cache path for the statistics described by `key` (a JSON-able dict)."""
    md5 = hashlib.md5(json.dumps(key, sort_keys=True).encode('utf-8')).hexdigest()
    safe_name = ''.join(ch if ch.isalnum() or ch in '-_.' else '_' for ch in str(dataset_name))
    tag = f'{safe_name}-{detector_identity["name"]}-{md5}'
    return dnnlib.util.make_cache_dir_path('gan-metrics', tag + '.npz')


def _data_loader_kwargs(opts):
    if opts.data_loader_kwargs is not None:
        return dict(opts.data_loader_kwargs)
    if opts.device.type == 'cuda':
        return dict(pin_memory=True, num_workers=3, prefetch_factor=2)
    return dict(num_workers=0)


def compute_feature_stats_for_dataset(opts, detector_name, detector_kwargs, batch_size=None, max_items=None, **stats_kwargs):
    """Features of the real images (first `max_items` of the dataset, all when None), cached on disk.

    The cache key covers the dataset's identity and kwargs (except use_labels), the detector file's
    sha256 and call kwargs, max_items and the capture mode. A cache file that is unreadable or was written for other options
    is recomputed, never trusted.
    """
    batch_size = batch_size or opts.batch_size
    dataset = dnnlib.util.construct_class_by_name(**opts.dataset_kwargs)
    detector, det_id = get_feature_detector(detector_name, opts, verbose=opts.progress.verbose)

    # Look up the cache (rank 0 decides, all ranks agree).
    cache_file = None
    if opts.cache:
        image_kwargs = {k: v for k, v in opts.dataset_kwargs.items() if k != 'use_labels'}  # labels do not change image features
        key = _jsonable(dict(dataset=dataset_identity(opts.dataset_kwargs), dataset_kwargs=image_kwargs,
                             dataset_len=len(dataset), detector=det_id, detector_kwargs=detector_kwargs,
                             max_items=max_items, stats_kwargs=stats_kwargs))
        cache_file = dataset_stats_cache_file(dataset.name, det_id, key)
        stats = None
        if opts.rank == 0 and os.path.isfile(cache_file):
            try:
                stats = FeatureStats.load(cache_file, expected_meta=key)
            except ValueError as e:
                print(f'Ignoring dataset statistics cache {cache_file}: {e}. Recomputing.', file=sys.stderr)
        if distributed.broadcast_flag(stats is not None, opts.device):
            return stats if stats is not None else FeatureStats.load(cache_file, expected_meta=key)

    # Each rank takes items rank, rank + W, ...; the wrap-around duplicates of the last round are dropped.
    num_items = len(dataset) if max_items is None else min(len(dataset), max_items)
    if num_items == 0:
        raise ValueError(f'Dataset {dataset.name} ({opts.dataset_kwargs.get("path")}) has no images')
    stats = FeatureStats(max_items=num_items, **stats_kwargs)
    W, r = opts.num_gpus, opts.rank
    item_subset = [(i * W + r) % num_items for i in range((num_items - 1) // W + 1)]
    progress = opts.progress.sub(tag='dataset features', num_items=num_items)
    loader = torch.utils.data.DataLoader(dataset=dataset, sampler=item_subset, batch_size=batch_size, **_data_loader_kwargs(opts))
    gather = stats.capture_all or W == 1
    pos = 0
    for images, _labels in loader:
        if images.shape[1] == 1:
            images = images.repeat([1, 3, 1, 1])
        features = detector(images.to(opts.device), **detector_kwargs)
        if gather:
            stats.append_torch(features, num_gpus=W, rank=r)
        else:
            stats.set_num_features(features.shape[1])  # also on a rank whose items are all duplicates
            global_idx = (np.arange(pos, pos + len(images)) * W + r)
            stats.append(features[torch.from_numpy(global_idx < num_items).to(features.device)].detach().cpu().numpy())
        pos += len(images)
        progress.update(pos * W)
    if not gather:
        stats.all_reduce(W, opts.device)
    progress.update(num_items)

    # Save to cache (atomic).
    if cache_file is not None and opts.rank == 0:
        stats.save(cache_file, meta=key)
    distributed.barrier()
    return stats

#----------------------------------------------------------------------------
# Generated images.

def stream_seed(seed, index, purpose=0):
    """32-bit seed of random stream `index` (torch's CPU generator uses only the low 32 bits of a seed):
    distinct for distinct (index, purpose) under one metric seed, and shifted by `seed`."""
    return (int(index) + int(purpose) * 2**30 + int(seed) * 0x9E3779B1) % 2**32


def item_latents(indices, z_dim, seed=0):
    """Latent z [len(indices), z_dim] for global generated-item indices: item g draws from a torch CPU
    generator seeded with stream_seed(seed, g), whatever rank or batch produces it."""
    gen = torch.Generator()
    z = torch.empty([len(indices), z_dim])
    for i, g in enumerate(indices):
        gen.manual_seed(stream_seed(seed, g))
        z[i] = torch.randn([z_dim], generator=gen)
    return z


def item_label_indices(indices, dataset_len, seed=0):
    """Dataset item whose label conditions generated item g (NVlabs: a uniformly random dataset label)."""
    gen = torch.Generator()
    out = []
    for g in indices:
        gen.manual_seed(stream_seed(seed, g, purpose=1))
        out.append(int(torch.randint(dataset_len, [1], generator=gen)))
    return out


class LabelSource:
    """Labels for generated items: zeros for unconditional G, otherwise labels of random dataset items."""

    def __init__(self, opts):
        self.c_dim = int(opts.G.c_dim)
        self.device = opts.device
        self.seed = opts.seed
        self.dataset = None
        if self.c_dim > 0:
            self.dataset = dnnlib.util.construct_class_by_name(**opts.dataset_kwargs)
            if len(self.dataset) == 0:
                raise ValueError('Conditional generator: the dataset has no items to draw labels from')

    def __call__(self, indices):
        if self.c_dim == 0:
            return torch.zeros([len(indices), 0], device=self.device)
        idx = item_label_indices(indices, len(self.dataset), self.seed)
        c = np.stack([self.dataset.get_label(i) for i in idx]).astype(np.float32)
        if c.shape[1] != self.c_dim:
            raise ValueError(f'Dataset labels have dimension {c.shape[1]} but G.c_dim is {self.c_dim}; '
                             f'use the dataset the network was trained on (with use_labels=True)')
        return torch.from_numpy(c).to(self.device)


def generate_images(G, z, c, G_kwargs):
    """G(z, c) -> uint8 NCHW with 3 channels, quantized as NVlabs (x * 127.5 + 128, clamp, truncate)."""
    img = G(z=z, c=c, **G_kwargs)
    img = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    if img.shape[1] == 1:
        img = img.repeat([1, 3, 1, 1])
    return img


def compute_feature_stats_for_generator(opts, detector_name, detector_kwargs, batch_size=None, batch_gen=None, max_items=None, **stats_kwargs):
    """Features of `max_items` generated images (latents and labels per global item index, see
    `item_latents`); gathered (capture_all) or summed per rank and all-reduced (mean/cov only)."""
    if max_items is None or max_items < 1:
        raise ValueError(f'compute_feature_stats_for_generator: max_items must be a positive count, got {max_items}')
    batch_size = batch_size or opts.batch_size
    batch_gen = batch_gen or opts.batch_gen
    if batch_size % batch_gen != 0:
        raise ValueError(f'batch_gen ({batch_gen}) must divide batch_size ({batch_size})')
    G = copy.deepcopy(opts.G).eval().requires_grad_(False).to(opts.device)
    labels = LabelSource(opts)
    detector, _ = get_feature_detector(detector_name, opts, verbose=opts.progress.verbose)

    stats = FeatureStats(max_items=max_items, **stats_kwargs)
    W, r = opts.num_gpus, opts.rank
    gather = stats.capture_all or W == 1
    progress = opts.progress.sub(tag='generator features', num_items=max_items)
    num_steps = (max_items - 1) // (batch_size * W) + 1
    with torch.no_grad():
        for step in range(num_steps):
            idx = [(step * batch_size + j) * W + r for j in range(batch_size)]
            images = []
            for k in range(0, batch_size, batch_gen):
                sub = idx[k:k + batch_gen]
                z = item_latents(sub, G.z_dim, opts.seed).to(opts.device)
                images.append(generate_images(G, z, labels(sub), opts.G_kwargs))
            features = detector(torch.cat(images), **detector_kwargs)
            if gather:
                stats.append_torch(features, num_gpus=W, rank=r)
            else:
                stats.set_num_features(features.shape[1])
                valid = torch.as_tensor([g < max_items for g in idx], device=features.device)
                stats.append(features[valid].detach().cpu().numpy())
            progress.update((step + 1) * batch_size * W)
    if not gather:
        stats.all_reduce(W, opts.device)
    progress.update(max_items)
    return stats

#----------------------------------------------------------------------------
