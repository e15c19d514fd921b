"""Compute quality metrics (FID, KID, precision/recall, IS, PPL, equivariance) of a network snapshot, or of every
snapshot of a training run that has not been evaluated yet, appending NVlabs-style JSONL lines to
`metric-<name>.jsonl` in the run directory."""

import os
import re
import time

import click
import torch

import dnnlib
import dnnlib.cli
from metrics import detectors, metric_main
from torch_utils import distributed, persistence
from training import demo_dataset, network_loader

#----------------------------------------------------------------------------

DEFAULT_DATASET_CLASS = 'training.dataset.ImageFolderDataset'
INCEPTION_CHOICES = {'nvlabs': detectors.INCEPTION, 'pytorch-fid': detectors.PT_INCEPTION}
_SNAPSHOT_RE = re.compile(r'network-snapshot-\d+(\.\d{3})?\.(pt|pkl)')  # training.checkpoint labels


def list_run_snapshots(run_dir):
    """Snapshot files of a run directory, oldest first (temporary files of unfinished writes excluded)."""
    return sorted(os.path.join(run_dir, f) for f in os.listdir(run_dir) if _SNAPSHOT_RE.fullmatch(f))


def file_signature(path):
    """[size, mtime_ns] of a local file (None for a URL or a missing file): a failed snapshot is retried once this changes."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return [st.st_size, st.st_mtime_ns]


def failed_snapshots(run_dir, metric):
    """{snapshot_pkl relative to run_dir: failure entry} from <run_dir>/metric-<name>.jsonl (the latest line per snapshot
    wins, so a later success clears a failure); malformed lines are ignored."""
    latest = {os.path.normpath(entry['snapshot_pkl']): entry for entry in metric_main.metric_entries(run_dir, metric)}
    return {rel: entry for rel, entry in latest.items() if 'failed' in entry}


def plan_jobs(network, metrics):
    """([(snapshot path or URL, [metrics still to compute])], the run dir that receives the JSONL lines (None for a URL),
    [(snapshot path, metric, reason)] skipped because they failed before and the file is unchanged).

    For a run directory, snapshots already in every metric's JSONL are skipped; one recorded as failed is retried
    only when its size or modification time changed (always after an I/O error, recorded without a signature)."""
    if os.path.isdir(network):
        snapshots = list_run_snapshots(network)
        if not snapshots:
            raise click.BadParameter(f'run directory {network} has no network-snapshot-*.pt files', param_hint='--network')
        jobs, skipped = [], []
        done = {metric: metric_main.evaluated_snapshots(network, metric) for metric in metrics}
        failed = {metric: failed_snapshots(network, metric) for metric in metrics}
        for path in snapshots:
            rel = os.path.normpath(os.path.relpath(path, network))
            todo = []
            for metric in metrics:
                fail = failed[metric].get(rel)
                if fail is not None and fail.get('file_signature') is not None and fail['file_signature'] == file_signature(path):
                    skipped.append((path, metric, str(fail['failed'])))
                elif rel not in done[metric] or fail is not None:
                    todo.append(metric)
            if todo:
                jobs.append((path, todo))
        return jobs, network, skipped
    if dnnlib.util.is_url(network):
        return [(network, list(metrics))], None, []
    if not os.path.isfile(network):
        raise click.BadParameter(f'{network}: no such file or directory (expected a snapshot .pt, an NVlabs .pkl, a URL '
                                 f'or a run directory)', param_hint='--network')
    return [(network, list(metrics))], os.path.dirname(os.path.abspath(network)), []


def summary_table(rows, metrics):
    """Text table, one row per snapshot and one column per metric. rows: [(snapshot, {metric: cell text})]."""
    header = ['snapshot'] + list(metrics)
    body = [[os.path.basename(snap)] + [cells.get(metric, '-') for metric in metrics] for snap, cells in rows]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    fmt = lambda r: '  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
    return '\n'.join([fmt(header), fmt(['-' * w for w in widths])] + [fmt(r) for r in body])


def _result_cell(result):
    return '/'.join(f'{v:.4g}' for v in result.results.values())


def concise_detector_error(error, detector_dir):
    """One line for a missing detector: the file, the folder looked in, and the calc_metrics option that fixes it."""
    entries = [e for es in detectors.KNOWN_DETECTORS.values() for e in es if e['file'] in str(error)]
    if not entries:
        return str(error)
    files = ' or '.join(dict.fromkeys(e['file'] for e in entries))
    folder = detector_dir or os.environ.get(detectors.DETECTOR_DIR_ENV)
    if folder:
        return f'detector file {files} not found in {folder}; put it there (official copy: {entries[0]["url"]}) or pass --detector-dir=DIR'
    return (f'detector file {files} could not be downloaded from {entries[0]["url"]}; without internet, put it into a folder DIR '
            f'and pass --detector-dir=DIR')


def dataset_kwargs_for(G, snap, data, mirror, source):
    """Dataset kwargs: --data (ImageFolderDataset) or the snapshot's training_set_kwargs, at G's resolution,
    with labels when G is conditional; --mirror sets xflip (ignored by the '_full' metrics, as NVlabs)."""
    if data is not None:
        kwargs = dnnlib.EasyDict(class_name=DEFAULT_DATASET_CLASS, path=data)
    elif snap.get('training_set_kwargs'):
        kwargs = dnnlib.EasyDict(snap['training_set_kwargs'])
        kwargs.setdefault('class_name', DEFAULT_DATASET_CLASS)
        persistence.lookup_class(DEFAULT_DATASET_CLASS, kind='dataset')  # registers ganforge's datasets (listed in errors)
        try:  # the file names the class: only registered dataset classes, never an arbitrary import
            persistence.lookup_class(kwargs.class_name, kind='dataset')
        except (ValueError, ImportError) as e:
            raise click.BadParameter(f'{source}: training_set_kwargs.class_name: {e}; pass the dataset with --data',
                                     param_hint='--data') from e
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

def run_jobs(args):
    """Worker (one per process, started by torch_utils.distributed.launch_local): evaluate every
    (snapshot, metrics) job; rank 0 writes the JSONL lines."""
    num_gpus, rank = distributed.get_world_size(), distributed.get_rank()
    device = distributed.device()
    if device.type == 'cpu' and num_gpus > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_gpus))  # CPU processes share the cores
    start = time.time()
    rows = [(path, {metric: 'failed earlier' for p, metric, _reason in args.skipped if p == path})
            for path in dict.fromkeys([p for p, _m, _r in args.skipped] + [p for p, _m in args.jobs])]
    cells = dict(rows)
    for i, (path, metrics) in enumerate(args.jobs):
        if rank == 0 and args.verbose:
            eta = ''
            if i > 0:
                eta = f', ETA {dnnlib.util.format_time((time.time() - start) / i * (len(args.jobs) - i))}'
            print(f'[{i + 1}/{len(args.jobs)}] {path}: {", ".join(metrics)}{eta}', flush=True)
        signature = file_signature(path)
        try:
            snap = network_loader.load_network(path, device=device)
        except (ValueError, OSError, EOFError, RuntimeError) as e:  # a damaged, refused or unreadable file: record it, go on
            reason = f'{type(e).__name__}: {e}'
            transient = isinstance(e, OSError)  # e.g. permissions or a network share: retried on every run
            if rank == 0:
                print(f'Skipping {path}: cannot load it ({reason})', flush=True)
                for metric in metrics:
                    cells[path][metric] = 'failed to load'
                    metric_main.report_metric(dict(metric=metric, failed=reason, file_signature=None if transient else signature),
                                              run_dir=args.run_dir, snapshot_pkl=path if args.run_dir else None, verbose=False)
            continue
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
                cells[path][metric] = _result_cell(result)
    if rank == 0 and args.verbose:
        print('\nSummary:\n' + summary_table(rows, args.metrics), flush=True)


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
    if data is not None and not os.path.exists(data) and demo_dataset.is_demo_name(data):
        data = demo_dataset.resolve_data_path(data)  # the names train.py --data accepts; generated on first use
    if data is not None and not os.path.exists(data):
        raise click.BadParameter(f'{data}: no such dataset folder or zip (or one of {", ".join(demo_dataset.DEMO_NAMES)})', param_hint='--data')
    if detector_dir is not None and not os.path.isdir(detector_dir):
        raise click.BadParameter(f'{detector_dir}: not a directory', param_hint='--detector-dir')
    jobs, run_dir, skipped = plan_jobs(network, metrics)
    if verbose:
        for path, metric, reason in skipped:
            print(f'Skipping {path} for {metric}: it failed before and is unchanged ({reason})')
    if not jobs:
        if verbose:
            print(f'Nothing to do: every snapshot in {network} already has {", ".join(metrics)}'
                  + (f' or failed unchanged ({len(skipped)} pair(s); replace the file to retry).' if skipped else '.'))
        return jobs

    args = dnnlib.EasyDict(jobs=jobs, skipped=skipped, metrics=list(metrics), run_dir=run_dir, data=data, mirror=mirror, gpus=gpus,
                           detector_dir=detector_dir, inception=INCEPTION_CHOICES.get(inception, inception), verbose=verbose)
    args.dataset_classes = persistence.registered_classes('dataset')  # pickled by name: spawned processes register them too
    if verbose:
        print(f'Evaluating {len(jobs)} snapshot(s) on {gpus} process(es): {", ".join(metrics)}', flush=True)
    use_cuda = torch.cuda.is_available() and torch.cuda.device_count() >= gpus
    distributed.launch_local(run_jobs, gpus, args=(args,), backend='nccl' if use_cuda else 'gloo')
    failed = []
    if run_dir is not None:
        for path, job_metrics in jobs:
            entry = failed_snapshots(run_dir, job_metrics[0]).get(os.path.normpath(os.path.relpath(path, run_dir)))
            if entry is not None and entry.get('file_signature') in (None, file_signature(path)):
                failed.append((path, entry['failed']))
    if failed:
        raise click.ClickException(f'{len(failed)} of {len(jobs)} snapshot(s) could not be loaded and were skipped '
                                   f'(recorded in the metric JSONL; retried once the file changes), e.g. {failed[0][0]}: {failed[0][1]}')
    return jobs

#----------------------------------------------------------------------------

def _parse_metrics(ctx, param, value):
    items = [m.strip() for m in value.split(',') if m.strip()]
    if not items:
        raise click.BadParameter('expected a comma-separated list of metric names', ctx=ctx, param=param)
    return items


@click.command(context_settings=dnnlib.cli.CONTEXT_SETTINGS)
@click.option('--network', 'network', help='Snapshot .pt, NVlabs .pkl, URL, or run directory', metavar='PATH', required=True)
@click.option('--metrics', help='Comma-separated metrics (see above)', metavar='LIST', default='fid50k_full', show_default=True, callback=_parse_metrics)
@click.option('--data', help='Dataset folder, zip, or demo name as in train.py [default: from the snapshot]', metavar='[ZIP|DIR|demo]')
@click.option('--mirror', help='Include x-flips of the dataset [default: from the snapshot]', type=bool, metavar='BOOL')
@click.option('--gpus', help='Number of processes (GPUs; gloo processes on CPU)', type=click.IntRange(min=1), default=1, show_default=True, metavar='INT')
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
    StyleGAN3:   eqt50k_int eqt50k_frac eqr50k (equivariance PSNRs; quick: eqt<N>k_int eqt<N>k_frac eqr<N>k)
    Demo data:   fid_demo pr_demo cls_demo (offline: a small detector trained on the demo shapes on
                 first use; comparable only among runs on --data=demo, not to any published FID)
    """
    try:
        calc_metrics(network, metrics, data=data, mirror=mirror, gpus=gpus, detector_dir=detector_dir, inception=inception, verbose=verbose)
    except detectors.DetectorNotFoundError as e:
        raise click.ClickException(concise_detector_error(e, detector_dir)) from e
    except (detectors.DetectorChecksumError, detectors.DetectorFormatError) as e:
        raise click.ClickException(f'{e}') from e

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
