"""Metric registry and reporting: `calc_metric` by name, `report_metric` (NVlabs-style JSONL lines in
`metric-<name>.jsonl`), and `run_metrics_on_snapshot` for the training loop.

Names. Parsed from a scheme so that quick variants need no code:
    fid<N>k[_full]      FID, N thousand generated; _full: all real images (no x-flips), else N thousand reals
    kid<N>k[_full]      KID, 100 subsets of <= 1000; _full: up to 1M reals, else N thousand
    pr<N>k<K>[_full]    precision/recall with K nearest neighbours; _full: up to 200k reals, else N thousand
    is<N>k              Inception Score over 10 splits
    ppl2_wend           PPL in W, endpoints, no crop (50k samples); legacy ppl_zfull ppl_wfull ppl_zend ppl_wend (face crop)
    eqt<N>k_int         EQ-T, PSNR (dB) under integer translation, N thousand samples (StyleGAN3 generators only)
    eqt<N>k_frac        EQ-T_frac, fractional translation
    eqr<N>k             EQ-R, rotation
    fid_demo, pr_demo   FID and precision/recall (k=3) in the feature space of the demo detector (metrics.demo_detector,
                        trained on first use, offline): all reals, 2000 generated. Comparable only among runs on the
                        demo data (--data=demo): they are not FID or precision/recall as published.
    cls_demo            share of 2000 generated images the demo detector recognises with confidence, per shape, and none
The NVlabs names (fid50k_full, kid50k_full, pr50k3_full, is50k, ppl2_wend, fid50k, kid50k, pr50k3) keep
their NVlabs meaning, including that '_full' metrics and IS ignore --mirror and the legacy ones do not.
"""

import json
import os
import re
import time

import torch

import dnnlib
from metrics import detectors, equivariance, frechet_inception_distance, inception_score, kernel_inception_distance, metric_utils
from metrics import demo_detector, perceptual_path_length, precision_recall

#----------------------------------------------------------------------------
# Metric functions: opts -> dict of results.

def _fid(name, n, full):
    def fn(opts):
        if full:
            opts.dataset_kwargs.update(max_size=None, xflip=False)
            return {name: frechet_inception_distance.compute_fid(opts, max_real=None, num_gen=n)}
        opts.dataset_kwargs.update(max_size=None)
        return {name: frechet_inception_distance.compute_fid(opts, max_real=n, num_gen=n)}
    return fn


def _kid(name, n, full):
    def fn(opts):
        if full:
            opts.dataset_kwargs.update(max_size=None, xflip=False)
        else:
            opts.dataset_kwargs.update(max_size=None)
        kid = kernel_inception_distance.compute_kid(opts, max_real=1000000 if full else n, num_gen=n, num_subsets=100, max_subset_size=1000)
        return {name: kid}
    return fn


def _pr(name, n, k, full):
    def fn(opts):
        if full:
            opts.dataset_kwargs.update(max_size=None, xflip=False)
        else:
            opts.dataset_kwargs.update(max_size=None)
        precision, recall = precision_recall.compute_pr(opts, max_real=200000 if full else n, num_gen=n, nhood_size=k,
                                                        row_batch_size=10000, col_batch_size=10000)
        return {f'{name}_precision': precision, f'{name}_recall': recall}
    return fn


def _is(name, n):
    def fn(opts):
        opts.dataset_kwargs.update(max_size=None, xflip=False)
        mean, std = inception_score.compute_is(opts, num_gen=n, num_splits=10)
        return {f'{name}_mean': mean, f'{name}_std': std}
    return fn


def _ppl(name, space, sampling, crop):
    def fn(opts):
        ppl = perceptual_path_length.compute_ppl(opts, num_samples=50000, epsilon=1e-4, space=space, sampling=sampling, crop=crop, batch_size=2)
        return {name: ppl}
    return fn


def _eq(name, n, kind):
    def fn(opts):
        return {name: equivariance.compute_equivariance_metrics(opts, num_samples=n, batch_size=4, kinds=(kind,))}
    return fn


def _demo(name):
    def fn(opts):
        opts.dataset_kwargs.update(max_size=None, xflip=False)
        path = demo_detector.detector_for_metrics(opts)
        if name == 'fid_demo':
            opts.inception = path
            return {name: frechet_inception_distance.compute_fid(opts, max_real=None, num_gen=demo_detector.NUM_GEN)}
        if name == 'pr_demo':
            precision, recall = precision_recall.compute_pr(opts, max_real=None, num_gen=demo_detector.NUM_GEN, nhood_size=3,
                                                            row_batch_size=10000, col_batch_size=10000, detector_name=path)
            return {f'{name}_precision': precision, f'{name}_recall': recall}
        shares = demo_detector.compute_cls(opts, num_gen=demo_detector.NUM_GEN, detector_path=path)
        return {f'{name}_{cls}': share for cls, share in shares.items()}
    return fn


_FIXED = {
    'ppl2_wend': ('w', 'end', False),
    'ppl_zfull': ('z', 'full', True),
    'ppl_wfull': ('w', 'full', True),
    'ppl_zend':  ('z', 'end', True),
    'ppl_wend':  ('w', 'end', True),
}

_PATTERNS = [
    (re.compile(r'fid([1-9]\d*)k(_full)?'),          lambda m, n: _fid(m, int(n[0]) * 1000, n[1] is not None)),
    (re.compile(r'kid([1-9]\d*)k(_full)?'),          lambda m, n: _kid(m, int(n[0]) * 1000, n[1] is not None)),
    (re.compile(r'pr([1-9]\d*)k([1-9]\d*)(_full)?'), lambda m, n: _pr(m, int(n[0]) * 1000, int(n[1]), n[2] is not None)),
    (re.compile(r'is([1-9]\d*)k'),                   lambda m, n: _is(m, int(n[0]) * 1000)),
    (re.compile(r'eqt([1-9]\d*)k_(int|frac)'),       lambda m, n: _eq(m, int(n[0]) * 1000, n[1])),
    (re.compile(r'eqr([1-9]\d*)k'),                  lambda m, n: _eq(m, int(n[0]) * 1000, 'rot')),
]

RECOMMENDED = ['fid50k_full', 'kid50k_full', 'pr50k3_full', 'ppl2_wend', 'is50k', 'eqt50k_int', 'eqt50k_frac', 'eqr50k']
LEGACY = ['fid50k', 'kid50k', 'pr50k3', 'ppl_zfull', 'ppl_wfull', 'ppl_zend', 'ppl_wend']
DEMO = ['fid_demo', 'pr_demo', 'cls_demo']
QUICK = ['fid10k_full', 'fid5k_full', 'fid2k_full', 'fid1k_full', 'kid10k_full', 'kid1k_full', 'pr10k3_full', 'pr1k3_full', 'is10k', 'is1k',
         'eqt1k_int', 'eqt1k_frac', 'eqr1k']


def _metric_fn(metric):
    if not isinstance(metric, str):
        return None
    if metric in _FIXED:
        return _ppl(metric, *_FIXED[metric])
    if metric in DEMO:
        return _demo(metric)
    for pattern, make in _PATTERNS:
        m = pattern.fullmatch(metric)
        if m:
            return make(metric, m.groups())
    return None


def is_valid_metric(metric):
    return _metric_fn(metric) is not None


def required_detectors(metric):
    """Names of the detectors `metric` loads (train.py resolves them at start-up, before training). The demo
    metrics build their own detector on first use; the equivariance metrics need none."""
    if metric in DEMO or is_equivariance_metric(metric):
        return []
    if metric.startswith(('pr', 'ppl')):
        return [detectors.VGG16]
    return [detectors.INCEPTION]


def is_equivariance_metric(metric):
    """True for eqt<N>k_int, eqt<N>k_frac and eqr<N>k, which need a StyleGAN3 generator."""
    return re.fullmatch(r'eqt([1-9]\d*)k_(int|frac)|eqr([1-9]\d*)k', metric) is not None


def list_valid_metrics():
    """Named metrics (recommended, legacy, quick variants, offline demo metrics); the scheme accepts other counts too."""
    return RECOMMENDED + LEGACY + QUICK + DEMO


def describe_valid_metrics():
    return (f'{", ".join(list_valid_metrics())} (or any fid<N>k[_full], kid<N>k[_full], pr<N>k<K>[_full], is<N>k, eqt<N>k_int, eqt<N>k_frac, eqr<N>k)')

#----------------------------------------------------------------------------

def calc_metric(metric, G=None, dataset_kwargs={}, num_gpus=1, rank=0, device=None, detector_dir=None, progress=None, verbose=False, **opts_kwargs):
    """Compute one metric on every rank (all ranks must call); the values are broadcast from rank 0.

    Args:
        metric:          a name accepted by is_valid_metric().
        G:               generator (z_dim, c_dim, forward(z, c) -> [-1, 1] NCHW; mapping/synthesis for PPL).
        dataset_kwargs:  kwargs with class_name for the real dataset (not modified).
        num_gpus, rank:  process group size and rank (torch.distributed initialized when num_gpus > 1).
        device:          this rank's device (default cuda:rank, or cpu).
        detector_dir:    folder with detector files (else $GANFORGE_DETECTOR_DIR, else download).
        progress:        a metric_utils.ProgressMonitor, or None (verbose=True prints progress with ETA).
        opts_kwargs:     more metric_utils.MetricOptions arguments (G_kwargs, cache, inception, seed, batch_size, ...).

    Returns EasyDict(results=EasyDict(name=value, ...), metric, total_time, total_time_str, num_gpus).
    """
    fn = _metric_fn(metric)
    if fn is None:
        raise ValueError(f'Unknown metric {metric!r}; valid metrics: {describe_valid_metrics()}')
    if progress is None and verbose:
        progress = metric_utils.ProgressMonitor(verbose=True)
    opts = metric_utils.MetricOptions(G=G, dataset_kwargs=dict(dataset_kwargs), num_gpus=num_gpus, rank=rank, device=device,
                                      detector_dir=detector_dir, progress=progress, **opts_kwargs)

    start_time = time.time()
    results = fn(opts)
    total_time = time.time() - start_time

    # Broadcast results.
    for key, value in list(results.items()):
        if opts.num_gpus > 1:
            value = torch.as_tensor(value, dtype=torch.float64, device=opts.device)
            torch.distributed.broadcast(tensor=value, src=0)
            value = float(value.cpu())
        results[key] = value

    return dnnlib.EasyDict(
        results         = dnnlib.EasyDict(results),
        metric          = metric,
        total_time      = total_time,
        total_time_str  = dnnlib.util.format_time(total_time),
        num_gpus        = opts.num_gpus,
    )

#----------------------------------------------------------------------------

def metric_jsonl_path(run_dir, metric):
    return os.path.join(run_dir, f'metric-{metric}.jsonl')


def report_metric(result_dict, run_dir=None, snapshot_pkl=None, verbose=True):
    """Print the result as one JSON line and append it to <run_dir>/metric-<name>.jsonl (NVlabs keys:
    results, metric, total_time, total_time_str, num_gpus, snapshot_pkl relative to run_dir, timestamp).
    The file is rewritten atomically, so a crash never leaves a partial line."""
    metric = result_dict['metric']
    if not is_valid_metric(metric):
        raise ValueError(f'report_metric: unknown metric {metric!r}')
    if run_dir is not None and snapshot_pkl is not None:
        snapshot_pkl = os.path.relpath(snapshot_pkl, run_dir)
    jsonl_line = json.dumps(dict(result_dict, snapshot_pkl=snapshot_pkl, timestamp=time.time()))
    if verbose:
        print(jsonl_line)
    if run_dir is not None and os.path.isdir(run_dir):
        path = metric_jsonl_path(run_dir, metric)
        old = b''
        if os.path.isfile(path):
            with open(path, 'rb') as f:
                old = f.read()
            if old and not old.endswith(b'\n'):
                old += b'\n'
        with dnnlib.util.atomic_write(path) as f:
            f.write(old + jsonl_line.encode('utf-8') + b'\n')
    return jsonl_line


def metric_entries(run_dir, metric):
    """The well-formed lines of <run_dir>/metric-<name>.jsonl for `metric` (dicts with a string snapshot_pkl),
    in file order; malformed lines are ignored."""
    path = metric_jsonl_path(run_dir, metric)
    if not os.path.isfile(path):
        return []
    entries = []
    with open(path, 'rt', encoding='utf-8') as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and entry.get('metric') == metric and isinstance(entry.get('snapshot_pkl'), str) \
                    and entry['snapshot_pkl']:
                entries.append(entry)
    return entries


def evaluated_snapshots(run_dir, metric):
    """snapshot_pkl values (relative to run_dir) with a result in <run_dir>/metric-<name>.jsonl; failure lines
    (calc_metrics records snapshots that cannot be loaded with a 'failed' reason) are ignored."""
    return {os.path.normpath(entry['snapshot_pkl']) for entry in metric_entries(run_dir, metric) if 'failed' not in entry}


def run_metrics_on_snapshot(metrics, G_ema, dataset_kwargs, run_dir, snapshot_path, num_gpus=1, rank=0, device=None, detector_dir=None, verbose=False, **opts_kwargs):
    """Training-loop hook: compute every metric in `metrics` for G_ema (all ranks call) and, on rank 0,
    append the results to the run's metric-<name>.jsonl. Returns the result dicts."""
    results = []
    for metric in metrics:
        result = calc_metric(metric, G=G_ema, dataset_kwargs=dataset_kwargs, num_gpus=num_gpus, rank=rank, device=device,
                             detector_dir=detector_dir, verbose=verbose and rank == 0, **opts_kwargs)
        if rank == 0:
            report_metric(result, run_dir=run_dir, snapshot_pkl=snapshot_path, verbose=verbose)
        results.append(result)
    return results

#----------------------------------------------------------------------------
