"""Compute quality metrics (FID, KID, precision/recall, IS, PPL) of a network snapshot, or of every
snapshot of a training run that has not been evaluated yet, appending NVlabs-style JSONL lines to
`metric-<name>.jsonl` in the run directory."""

import os
import re
import tempfile
import time

import click
import torch

import dnnlib
from metrics import detectors, metric_main
from training import network_loader

#----------------------------------------------------------------------------

DEFAULT_DATASET_CLASS = 'training.dataset.ImageFolderDataset'
INCEPTION_CHOICES = {'nvlabs': detectors.INCEPTION, 'pytorch-fid': detectors.PT_INCEPTION}
_SNAPSHOT_RE = re.compile(r'network-snapshot-\d+\.(pt|pkl)')


def list_run_snapshots(run_dir):
    """Snapshot files of a run directory, oldest first (temporary files of unfinished writes excluded)."""
    return sorted(os.path.join(run_dir, f) for f in os.listdir(run_dir) if _SNAPSHOT_RE.fullmatch(f))


def plan_jobs(network, metrics):
    """[(snapshot path or URL, [metrics still to compute])] and the run dir that receives the JSONL lines
    (None for a URL). For a run directory, snapshots already in every metric's JSONL are skipped."""
    if os.path.isdir(network):
        snapshots = list_run_snapshots(network)
        if not snapshots:
            raise click.BadParameter(f'run directory {network} has no network-snapshot-*.pt files', param_hint='--network')
        jobs = []
        done = {metric: metric_main.evaluated_snapshots(network, metric) for metric in metrics}
        for path in snapshots:
            rel = os.path.normpath(os.path.relpath(path, network))
            todo = [metric for metric in metrics if rel not in done[metric]]
            if todo:
                jobs.append((path, todo))
        return jobs, network
    if dnnlib.util.is_url(network):
        return [(network, list(metrics))], None
    if not os.path.isfile(network):
        raise click.BadParameter(f'{network}: no such file or directory (expected a snapshot .pt, an NVlabs .pkl, a URL '
                                 f'or a run directory)', param_hint='--network')
    return [(network, list(metrics))], os.path.dirname(os.path.abspath(network))


def dataset_kwargs_for(G, snap, data, mirror, source):
    """Dataset kwargs: --data (ImageFolderDataset) or the snapshot's training_set_kwargs, at G's resolution,
    with labels when G is conditional; --mirror sets xflip (ignored by the '_full' metrics, as NVlabs)."""
    if data is not None:
        kwargs = dnnlib.EasyDict(class_name=DEFAULT_DATASET_CLASS, path=data)
    elif snap.get('training_set_kwargs'):
        kwargs = dnnlib.EasyDict(snap['training_set_kwargs'])
        kwargs.setdefault('class_name', DEFAULT_DATASET_CLASS)
    else:
        raise click.BadParameter(f'{source} records no training set; pass the dataset with --data', param_hint='--data')
    kwargs.resolution = int(G.img_resolution) if hasattr(G, 'img_resolution') else kwargs.get('resolution')
    kwargs.use_labels = (G.c_dim != 0)
    if mirror is not None:
        kwargs.xflip = bool(mirror)
    kwargs.pop('max_size', None)
    return kwargs

def check_dataset(dataset_kwargs, source):
    """Open the dataset once so that a wrong path fails with a message naming --data, not deep in a metric."""
    try:
        dataset = dnnlib.util.construct_class_by_name(**dataset_kwargs)
    except (OSError, ValueError) as e:
        raise click.BadParameter(f'cannot open the dataset {dataset_kwargs.get("path")!r} for {source}: {e}', param_hint='--data') from e
    if len(dataset) == 0:
        raise click.BadParameter(f'the dataset {dataset_kwargs.get("path")!r} for {source} has no images', param_hint='--data')

#----------------------------------------------------------------------------

def run_jobs(rank, args, temp_dir):
    """Worker (one per process): evaluate every (snapshot, metrics) job; rank 0 writes the JSONL lines."""
    num_gpus = args.gpus
    use_cuda = torch.cuda.is_available() and torch.cuda.device_count() >= num_gpus
    device = torch.device('cuda', rank) if use_cuda else torch.device('cpu')
    if use_cuda:
        torch.cuda.set_device(device)
    elif num_gpus > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_gpus))  # CPU processes share the cores
    if num_gpus > 1:
        init_file = os.path.abspath(os.path.join(temp_dir, '.torch_distributed_init'))
        torch.distributed.init_process_group(backend='nccl' if use_cuda else 'gloo', init_method=f'file://{init_file}',
                                             rank=rank, world_size=num_gpus)
    try:
        start = time.time()
        for i, (path, metrics) in enumerate(args.jobs):
            if rank == 0 and args.verbose:
                eta = ''
                if i > 0:
                    eta = f', ETA {dnnlib.util.format_time((time.time() - start) / i * (len(args.jobs) - i))}'
                print(f'[{i + 1}/{len(args.jobs)}] {path}: {", ".join(metrics)}{eta}', flush=True)
            snap = network_loader.load_network(path, device=device)
            G = snap['G_ema']
            dataset_kwargs = dataset_kwargs_for(G, snap, args.data, args.mirror, path)
            check_dataset(dataset_kwargs, path)
            for metric in metrics:
                result = metric_main.calc_metric(metric, G=G, dataset_kwargs=dataset_kwargs, num_gpus=num_gpus, rank=rank,
                                                 device=device, detector_dir=args.detector_dir, verbose=args.verbose and rank == 0,
                                                 inception=args.inception)
                if rank == 0:
                    metric_main.report_metric(result, run_dir=args.run_dir, snapshot_pkl=path if args.run_dir else None,
                                              verbose=args.verbose)
    finally:
        if num_gpus > 1:
            torch.distributed.destroy_process_group()


def calc_metrics(network, metrics, data=None, mirror=None, gpus=1, detector_dir=None, inception='nvlabs', verbose=True):
    """Evaluate `metrics` on a snapshot / URL / every unevaluated snapshot of a run dir (see main()).
    Returns the list of (snapshot, metrics) jobs that were run."""
    for metric in metrics:
        if not metric_main.is_valid_metric(metric):
            raise click.BadParameter(f'unknown metric {metric!r}; valid: {metric_main.describe_valid_metrics()}', param_hint='--metrics')
    if gpus < 1:
        raise click.BadParameter(f'must be at least 1, got {gpus}', param_hint='--gpus')
    if torch.cuda.is_available() and gpus > torch.cuda.device_count():
        raise click.BadParameter(f'{gpus} requested but only {torch.cuda.device_count()} CUDA device(s) visible', param_hint='--gpus')
    if data is not None and not os.path.exists(data):
        raise click.BadParameter(f'{data}: no such dataset folder or zip', param_hint='--data')
    if detector_dir is not None and not os.path.isdir(detector_dir):
        raise click.BadParameter(f'{detector_dir}: not a directory', param_hint='--detector-dir')
    jobs, run_dir = plan_jobs(network, metrics)
    if not jobs:
        if verbose:
            print(f'Nothing to do: every snapshot in {network} already has {", ".join(metrics)}.')
        return jobs

    args = dnnlib.EasyDict(jobs=jobs, run_dir=run_dir, data=data, mirror=mirror, gpus=gpus, detector_dir=detector_dir,
                           inception=INCEPTION_CHOICES.get(inception, inception), verbose=verbose)
    if verbose:
        print(f'Evaluating {len(jobs)} snapshot(s) on {gpus} process(es): {", ".join(metrics)}', flush=True)
    with tempfile.TemporaryDirectory() as temp_dir:
        if gpus == 1:
            run_jobs(0, args, temp_dir)
        else:
            torch.multiprocessing.spawn(fn=run_jobs, args=(args, temp_dir), nprocs=gpus)
    return jobs

#----------------------------------------------------------------------------

def _parse_metrics(ctx, param, value):
    items = [m.strip() for m in value.split(',') if m.strip()]
    if not items:
        raise click.BadParameter('expected a comma-separated list of metric names', ctx=ctx, param=param)
    return items


@click.command(context_settings=dict(help_option_names=['-h', '--help']))
@click.option('--network', 'network', help='Snapshot .pt, NVlabs .pkl, URL, or run directory', metavar='PATH', required=True)
@click.option('--metrics', help='Comma-separated metrics (see above)', metavar='LIST', default='fid50k_full', show_default=True, callback=_parse_metrics)
@click.option('--data', help='Dataset folder or zip [default: from the snapshot]', metavar='PATH')
@click.option('--mirror', help='Include x-flips of the dataset [default: from the snapshot]', type=bool, metavar='BOOL')
@click.option('--gpus', help='Number of processes (GPUs; gloo processes on CPU)', type=int, default=1, show_default=True, metavar='INT')
@click.option('--detector-dir', help=f'Folder with detector files (offline use) [default: ${detectors.DETECTOR_DIR_ENV}]', metavar='DIR')
@click.option('--inception', help='Inception detector for FID/KID/IS', type=click.Choice(sorted(INCEPTION_CHOICES)), default='nvlabs', show_default=True)
@click.option('--verbose/--quiet', help='Print progress', default=True, show_default=True)
def main(network, metrics, data, mirror, gpus, detector_dir, inception, verbose):
    """Calculate quality metrics for snapshots.

    \b
    # FID of one snapshot against the dataset it was trained on:
    python calc_metrics.py --metrics=fid50k_full --network=runs/00000-demo/network-snapshot-000400.pt
    \b
    # Every snapshot of a run not evaluated yet (rerun to resume), on 4 GPUs:
    python calc_metrics.py --metrics=fid50k_full,kid50k_full --network=runs/00000-demo --gpus=4
    \b
    # Offline cluster: detector files (inception-2015-12-05.pt, vgg16.pt) in a folder:
    python calc_metrics.py --metrics=pr50k3_full --network=... --detector-dir=/shared/detectors
    \b
    # Demo data, no download: every snapshot of a quick-start run:
    python calc_metrics.py --metrics=fid_demo,pr_demo,cls_demo --network=runs/00000-auto-demo-gpus1-batch8-gamma0.0256

    \b
    Recommended: fid50k_full kid50k_full pr50k3_full ppl2_wend is50k
    Legacy:      fid50k kid50k pr50k3 ppl_zfull ppl_wfull ppl_zend ppl_wend
    Quick:       fid<N>k[_full] kid<N>k[_full] pr<N>k<K>[_full] is<N>k, e.g. fid10k_full
    Demo data:   fid_demo pr_demo cls_demo (offline: a small detector trained on the demo shapes on
                 first use; comparable only among runs on --data=demo, not to any published FID)
    """
    try:
        calc_metrics(network, metrics, data=data, mirror=mirror, gpus=gpus, detector_dir=detector_dir, inception=inception, verbose=verbose)
    except (detectors.DetectorNotFoundError, detectors.DetectorChecksumError, detectors.DetectorFormatError) as e:
        raise click.ClickException(f'{e}') from e

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
