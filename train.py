"""Train a StyleGAN2 generator (NVlabs-compatible options, presets, exact resume).

\b
Examples:

\b
# Quick start: the built-in demo data (32x32 shapes) on CPU, about 20 minutes on 2 cores.
python train.py --outdir=runs --data=demo --kimg=40

\b
# One GPU, 256x256 dataset, paper256 preset, ADA, mirrored.
python train.py --outdir=runs --data=datasets/ffhq256.zip --cfg=paper256 --gpus=1 --mirror=1

\b
# Eight GPUs on one machine (spawns 8 processes).
python train.py --outdir=runs --data=datasets/ffhq1024.zip --cfg=stylegan2 --gpus=8 --batch=32 --gamma=10

\b
# Two nodes x 8 GPUs with torchrun (run on each node, --node_rank=0 and 1).
torchrun --nnodes=2 --nproc_per_node=8 --node_rank=0 --master_addr=node0 --master_port=29500 \\
    train.py --outdir=/shared/runs --data=/shared/ffhq1024.zip --cfg=stylegan2 --batch=64 --resume=auto

\b
# SLURM: one task per GPU; ranks come from SLURM_PROCID / SLURM_NTASKS.
srun --nodes=2 --ntasks-per-node=8 --gpus-per-node=8 \\
    python train.py --outdir=/shared/runs --data=/shared/ffhq1024.zip --cfg=stylegan2 --batch=64 --resume=auto

\b
# StyleGAN3 (alias-free), configs stylegan3-t and stylegan3-r; --gamma is required (no preset value).
python train.py --outdir=runs --data=datasets/afhqv2-512x512.zip --cfg=stylegan3-t --gpus=8 --batch=32 --gamma=8.2 --mirror=1

\b
# Resume after a crash or preemption: re-run the same command with --resume=auto
# (continues the newest run in --outdir with the same description), or name a checkpoint.
python train.py --outdir=runs --data=demo --kimg=20 --resume=auto
python train.py --outdir=runs --data=demo --kimg=20 --resume=runs/00000-auto-demo-gpus1-batch8-gamma0.0256/training-state-000012.pt
"""

import json
import os
import re
import sys
import traceback

import click
import torch

import dnnlib
import dnnlib.cli
import torch_utils.cli
from torch_utils import distributed
from training import checkpoint, demo_dataset, resume, run_dir as rundir, runtime, training_loop
from training.loss import LOSS_TYPES
from training.run_state import TrainingConfig

#----------------------------------------------------------------------------
# Presets (NVlabs stylegan2-ada-pytorch numbers). -1 = computed by the 'auto' rules.

CFG_SPECS = {
    'auto':        dict(ref_gpus=-1, kimg=25000,  mb=-1, mbstd=-1, fmaps=-1,  lrate=-1,     gamma=-1,   ema=-1,  ramp=0.05, map=2),
    'stylegan2':   dict(ref_gpus=8,  kimg=25000,  mb=32, mbstd=4,  fmaps=1,   lrate=0.002,  gamma=10,   ema=10,  ramp=None, map=8),
    'paper256':    dict(ref_gpus=8,  kimg=25000,  mb=64, mbstd=8,  fmaps=0.5, lrate=0.0025, gamma=1,    ema=20,  ramp=None, map=8),
    'paper512':    dict(ref_gpus=8,  kimg=25000,  mb=64, mbstd=8,  fmaps=1,   lrate=0.0025, gamma=0.5,  ema=20,  ramp=None, map=8),
    'paper1024':   dict(ref_gpus=8,  kimg=25000,  mb=32, mbstd=4,  fmaps=1,   lrate=0.002,  gamma=2,    ema=10,  ramp=None, map=8),
    'cifar':       dict(ref_gpus=2,  kimg=100000, mb=64, mbstd=32, fmaps=1,   lrate=0.0025, gamma=0.01, ema=500, ramp=0.05, map=2),
    'progressive': dict(ref_gpus=-1, kimg=12000,  mb=-1, mbstd=-1, fmaps=-1,  lrate=-1,     gamma=-1,   ema=-1,  ramp=0.05, map=8),
    # NVlabs stylegan3 train.py: --gamma required (None), ema = batch * 10 / 32 (None), D lr 0.002.
    'stylegan3-t': dict(ref_gpus=8, kimg=25000,  mb=32, mbstd=4,  fmaps=1,   lrate=0.0025, gamma=None, ema=None, ramp=0.05, map=2, dlrate=0.002),
    'stylegan3-r': dict(ref_gpus=8, kimg=25000,  mb=32, mbstd=4,  fmaps=1,   lrate=0.0025, gamma=None, ema=None, ramp=0.05, map=2, dlrate=0.002),
}

# 'auto' on CPU: small networks and batch so that the quick start shows shapes within minutes
# (fills only unset --batch/--cbase/--cmax/--tick/--snap/--aug/--w-input). w_input: G's 4x4 input depends
# on w (networks_stylegan2 input_from_w); without it these small generators vary colour but not shape
# for 80 kimg and more on the demo data (README, Quick start). aug: ADA's pipeline costs ~30 % per kimg
# on CPU even at p = 0, and a run of tens of kimg does not overfit the 2000 demo images.
# --cfg=stylegan3-t/r on CPU use the same values except w_input (StyleGAN3's input depends on w already;
# R doubles G's cbase/cmax as always).
CPU_AUTO = dict(batch=8, cbase=1024, cmax=32, tick=1, snap=1, grid=(16, 8), aug='noaug', w_input=True)

# NVlabs transfer learning (--resume from network weights): ADA reacts faster and the EMA has no ramp-up.
# A --resume=auto continuation inherits these from the run it continues, so they are not compared.
TRANSFER_OPTIONS = dict(ada_kimg=100, ema_rampup=None)
BLUR_OPTION = 'loss_kwargs.blur_init_sigma'  # NVlabs: no D-input blur when fine-tuning (stylegan3-r); dotted = nested option

# Options that may change between the runs of one --resume=auto chain.
RESUME_IGNORE_KEYS = tuple(TRANSFER_OPTIONS) + (BLUR_OPTION, 'run_dir', 'resume', 'total_kimg', 'data_loader_kwargs', 'metrics', 'kimg_per_tick', 'image_snapshot_ticks',
                      'network_snapshot_ticks', 'checkpoint_keep', 'cudnn_benchmark', 'allow_tf32', 'device')

#----------------------------------------------------------------------------

def build_config(opts, num_gpus, dry_run=False):
    """Turn the command-line options into the training_loop kwargs `c` and a run description."""
    device = opts.device if opts.device != 'auto' else ('cuda' if torch.cuda.is_available() else 'cpu')
    if device == 'cuda' and not torch.cuda.is_available():
        raise click.BadParameter('no CUDA GPU is available; use --device=cpu', param_hint='--device')
    if device == 'cuda' and num_gpus > torch.cuda.device_count() and distributed.detect_env().launcher == 'single':
        raise click.BadParameter(f'{num_gpus} processes requested but only {torch.cuda.device_count()} GPUs are visible', param_hint='--gpus')

    # Dataset: resolution, channels and labels come from the data.
    c = dnnlib.EasyDict(device=device)
    c.training_set_kwargs, dataset_name, resolution = _dataset_kwargs(opts, dry_run)
    workers = opts.workers if opts.workers is not None else min(3, max((os.cpu_count() or 2) - 1, 1))
    c.data_loader_kwargs = dnnlib.EasyDict(pin_memory=(device == 'cuda'), num_workers=workers)
    if workers > 0:
        c.data_loader_kwargs.prefetch_factor = 2

    # Preset: fills only the values the command line leaves unset.
    spec = dnnlib.EasyDict(CFG_SPECS[opts.cfg])
    cpu_auto = opts.cfg in ('auto', 'progressive') and device == 'cpu'
    stylegan3 = opts.cfg.startswith('stylegan3')
    if stylegan3 and spec.gamma is None and opts.gamma is None:
        raise click.BadParameter(f'is required with --cfg={opts.cfg} (R1 weight; NVlabs has no default for StyleGAN3)', param_hint='--gamma')
    if stylegan3 and device == 'cpu':
        cpu_auto = True
        spec.update(ref_gpus=num_gpus, mb=CPU_AUTO['batch'] * num_gpus)
    if spec.ref_gpus < 0:
        spec.ref_gpus = num_gpus
        spec.mb = max(min(num_gpus * min(4096 // resolution, 32), 64), num_gpus) if not cpu_auto else CPU_AUTO['batch'] * num_gpus
        spec.mbstd = min(spec.mb // num_gpus, 4)
        spec.fmaps = 1 if resolution >= 512 else 0.5
        spec.lrate = 0.002 if resolution >= 1024 else 0.0025
        spec.gamma = 0.0002 * (resolution ** 2) / spec.mb
        spec.ema = spec.mb * 10 / 32
    pick = lambda value, default: default if value is None else value
    c.batch_size = pick(opts.batch, spec.mb)
    c.batch_gpu = pick(opts.batch_gpu, max(c.batch_size // num_gpus, 1) if opts.batch is not None else max(spec.mb // spec.ref_gpus, 1))
    mbstd = pick(opts.mbstd_group, min(spec.mbstd, c.batch_gpu) if opts.batch_gpu is None else spec.mbstd)
    cbase = pick(opts.cbase, CPU_AUTO['cbase'] if cpu_auto else int(spec.fmaps * 32768))
    cmax = pick(opts.cmax, CPU_AUTO['cmax'] if cpu_auto else 512)
    fp16 = dict(num_fp16_res=0, conv_clamp=None) if opts.fp32 else dict(num_fp16_res=4, conv_clamp=256)
    c.G_kwargs = dnnlib.EasyDict(class_name='training.networks_stylegan2.Generator', z_dim=512, w_dim=512,
        mapping_kwargs=dnnlib.EasyDict(num_layers=pick(opts.map, spec.map)), channel_base=cbase, channel_max=cmax, **fp16)
    if stylegan3 and opts.w_input:
        raise click.BadParameter(f'is for StyleGAN2 generators; the input of --cfg={opts.cfg} depends on w already', param_hint='--w-input')
    if pick(opts.w_input, cpu_auto and not stylegan3 and CPU_AUTO['w_input']):
        c.G_kwargs.input_from_w = True  # only when on: the other presets' options stay NVlabs' own
    c.D_kwargs = dnnlib.EasyDict(class_name='training.networks_stylegan2.Discriminator', channel_base=cbase, channel_max=cmax,
        block_kwargs=dnnlib.EasyDict(), mapping_kwargs=dnnlib.EasyDict(), epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=mbstd), **fp16)
    c.G_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', lr=pick(opts.glr, spec.lrate), betas=[0, 0.99], eps=1e-8)
    c.D_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', lr=pick(opts.dlr, spec.get('dlrate', spec.lrate)), betas=[0, 0.99], eps=1e-8)
    c.loss_kwargs = dnnlib.EasyDict(class_name='training.loss.StyleGAN2Loss', r1_gamma=pick(opts.gamma, spec.gamma),
                                    style_mixing_prob=0.9, pl_weight=2)
    if opts.loss != 'logistic':
        c.loss_kwargs.loss_type = opts.loss
    if opts.cfg == 'cifar':
        c.loss_kwargs.update(pl_weight=0, style_mixing_prob=0)
        c.D_kwargs.architecture = 'orig'
    c.G_reg_interval, c.D_reg_interval = 4, 16
    if stylegan3:  # NVlabs: alias-free G, StyleGAN2 D; no style mixing, path length or lazy G regularization
        c.G_kwargs.class_name = 'training.networks_stylegan3.Generator'
        c.G_kwargs.magnitude_ema_beta = 0.5 ** (c.batch_size / (20 * 1e3))
        c.loss_kwargs.update(style_mixing_prob=0, pl_weight=0)
        c.G_reg_interval = None
        if opts.cfg == 'stylegan3-r':  # 1x1 convolutions, twice the channels (G only), radial filters, D-input blur
            c.G_kwargs.update(conv_kernel=1, channel_base=cbase * 2, channel_max=cmax * 2, use_radial_filters=True)
            c.loss_kwargs.update(blur_init_sigma=10, blur_fade_kimg=c.batch_size * 200 / 32)
    c.total_kimg = pick(opts.kimg, spec.kimg)
    c.ema_kimg = pick(opts.ema, spec.ema if spec.ema is not None else c.batch_size * 10 / 32)
    c.ema_rampup = spec.ramp
    c.kimg_per_tick = pick(opts.tick, CPU_AUTO['tick'] if cpu_auto else 4)
    c.image_snapshot_ticks = c.network_snapshot_ticks = pick(opts.snap, CPU_AUTO['snap'] if cpu_auto else 50)
    c.image_grid_size = CPU_AUTO['grid'] if cpu_auto else None
    c.random_seed = opts.seed
    c.num_gpus = num_gpus
    c.cudnn_benchmark = not opts.nobench
    c.allow_tf32 = opts.allow_tf32
    c.progressive_kwargs = None
    if opts.cfg == 'progressive':  # ProGAN schedule: 4x4 first, 600 kimg fade-in + 600 kimg stabilization per resolution
        c.G_kwargs.class_name = 'training.progressive.ProgressiveGenerator'
        c.D_kwargs.class_name = 'training.progressive.ProgressiveDiscriminator'
        c.progressive_kwargs = dnnlib.EasyDict(class_name='training.progressive.ProgressiveSchedule', resolution=resolution, start_res=4,
            stabilize_kimg=600, fade_kimg=600, G_reg_interval=c.G_reg_interval, D_reg_interval=c.D_reg_interval)

    # Augmentation.
    aug = pick(opts.aug, CPU_AUTO['aug'] if cpu_auto else 'ada')
    c.augment_kwargs, c.augment_p, c.ada_target = None, 0, None
    if aug != 'noaug':
        c.augment_kwargs = dnnlib.EasyDict(class_name='training.augment.AugmentPipe', **_augpipe_specs()[opts.augpipe])
        if aug == 'ada':
            c.ada_target = pick(opts.target, 0.6)
        else:
            c.augment_p = pick(opts.p, 0.2)
    if opts.p is not None and aug != 'fixed':
        raise click.BadParameter('can only be given with --aug=fixed', param_hint='--p')
    if opts.target is not None and aug != 'ada':
        raise click.BadParameter('can only be given with --aug=ada', param_hint='--target')

    c.metrics = _parse_metrics(opts.metrics, check_detectors=not dry_run, stylegan3=stylegan3)

    # Sanity checks that name the flag.
    if c.batch_size % num_gpus != 0:
        raise click.BadParameter(f'--batch={c.batch_size} must be a multiple of --gpus={num_gpus}', param_hint='--batch')
    if c.batch_size % (num_gpus * c.batch_gpu) != 0:
        raise click.BadParameter(f'--batch={c.batch_size} must be a multiple of --gpus × --batch-gpu = {num_gpus} × {c.batch_gpu}', param_hint='--batch-gpu')
    if c.batch_gpu < mbstd:
        raise click.BadParameter(f'--batch-gpu={c.batch_gpu} is smaller than the minibatch-std group size {mbstd} (--mbstd-group)', param_hint='--batch-gpu')

    desc = f'{opts.cfg}-{dataset_name}-gpus{num_gpus}-batch{c.batch_size}-gamma{c.loss_kwargs.r1_gamma:g}'
    if opts.loss != 'logistic':
        desc += f'-{opts.loss}'
    if opts.desc:
        desc += f'-{opts.desc}'
    return c, re.sub(r'[^0-9A-Za-z_.+-]', '_', desc)


def _dataset_kwargs(opts, dry_run):
    """ImageFolderDataset kwargs, its name and resolution; a demo name maps to its generated zip."""
    from training.dataset import DatasetError, ImageFolderDataset
    data = opts.data
    if demo_dataset.is_demo_name(data) and not os.path.exists(data):
        if dry_run and not os.path.isfile(demo_dataset.default_path(demo_dataset.demo_resolution(data))):
            kwargs = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=data, use_labels=opts.cond, xflip=opts.mirror)
            return kwargs, 'demo', demo_dataset.demo_resolution(data)  # dry run: do not generate it
        data = demo_dataset.resolve_data_path(data)
    if not os.path.exists(data):
        raise click.BadParameter(f'dataset not found: {data} (a folder, a .zip made by dataset_tool.py, or "demo")', param_hint='--data')
    try:
        ds = ImageFolderDataset(path=data, use_labels=opts.cond, xflip=opts.mirror)
        if opts.cond and not ds.has_labels:
            raise click.BadParameter(f'--cond=1 requires labels, but {data} has no dataset.json labels', param_hint='--cond')
        kwargs = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=os.path.abspath(data), use_labels=opts.cond,
                                 max_size=len(ds) // (2 if opts.mirror else 1), xflip=opts.mirror, resolution=ds.resolution)
        name = 'demo' if demo_dataset.is_demo_name(opts.data) else ds.name
        return kwargs, name, ds.resolution
    except (DatasetError, OSError, ValueError) as e:
        raise click.BadParameter(str(e), param_hint='--data') from e


def _augpipe_specs():
    from training.augment import augpipe_specs
    return augpipe_specs


def _parse_metrics(text, check_detectors, stylegan3):
    """Metric names; unknown names, equivariance metrics without a StyleGAN3 config and (unless a dry run)
    missing detectors fail here, before training."""
    names = [] if text is None or text.strip().lower() == 'none' else [m.strip() for m in text.split(',') if m.strip()]
    if names:
        try:
            from metrics import detectors, metric_main
        except ImportError as e:
            raise click.BadParameter(f'the metrics package cannot be imported ({e}); use --metrics=none', param_hint='--metrics') from e
        bad = [m for m in names if not metric_main.is_valid_metric(m)]
        if bad:
            raise click.BadParameter(f'unknown metric {bad[0]!r}; valid: {", ".join(metric_main.list_valid_metrics()[:12])}, ... or none', param_hint='--metrics')
        equivariance = [m for m in names if metric_main.is_equivariance_metric(m)]
        if equivariance and not stylegan3:
            raise click.BadParameter(f'{equivariance[0]} measures the equivariance of StyleGAN3 generators; '
                                     f'use --cfg=stylegan3-t or --cfg=stylegan3-r', param_hint='--metrics')
        for name in names if check_detectors else []:
            for detector in metric_main.required_detectors(name):
                try:
                    detectors.resolve_detector(detector)
                except (detectors.DetectorNotFoundError, OSError, ValueError) as e:
                    raise click.BadParameter(f'{name} needs detector {detector!r}: {e}', param_hint='--metrics') from e
    return names


def _metric_hook():
    """The training loop's metric hook (docs/ARCHITECTURE.md: the scripts layer wires metrics into training)."""
    from metrics import metric_main
    return metric_main.run_metrics_on_snapshot

#----------------------------------------------------------------------------
# Run directory, resume plan and launch.

def transfer_options(c):
    """What a weights-only resume sets (NVlabs transfer learning): faster ADA, no EMA ramp-up, no D-input blur."""
    options = dict(TRANSFER_OPTIONS)
    if 'blur_init_sigma' in c.loss_kwargs:
        options[BLUR_OPTION] = 0
    return options


def make_plan(c, desc, opts):
    """The resume plan (rank 0; reads, creates nothing); ResumeError names --resume."""
    options = json.loads(json.dumps(c))
    return resume.plan_run(opts.outdir, desc, options, resume=opts.resume, run_dir=opts.run_dir, ignore_keys=RESUME_IGNORE_KEYS,
                           inherit_keys=tuple(TRANSFER_OPTIONS) + (BLUR_OPTION,), weights_options=transfer_options(c))


def apply_plan(c, plan, opts):
    """Options set by a weights-only resume (NVlabs transfer learning), or inherited from the run --resume=auto continues."""
    if opts.resume == 'auto' and plan.resume is not None:
        for key in TRANSFER_OPTIONS:
            c.pop(key, None)
    for key, value in plan.inherited.items():
        resume.set_option(c, key, value)


def claim_run_dir(plan, opts, desc):
    """Rank 0: the run dir, created or reused, locked for the life of the run, cleaned of stale temporaries."""
    if plan.run_dir is None:
        plan.run_dir = rundir.claim_new_run_dir(opts.outdir, desc)
    os.makedirs(plan.run_dir, exist_ok=True)
    lock = rundir.RunDirLock(plan.run_dir)
    try:
        if plan.resume is None and checkpoint.list_checkpoints(plan.run_dir):
            raise rundir.RunDirError(f'--run-dir {plan.run_dir} holds checkpoints of an earlier run; pass --resume=auto to continue it '
                                     f'or choose another --run-dir')
    except BaseException:
        lock.release()
        raise
    return lock


def print_summary(c, run_dir, plan, launcher):
    dev = 'CPU' if c.device == 'cpu' else 'GPU'
    print(f'\nTraining options:\n{json.dumps(c, indent=2)}\n')
    print(f'Output directory:    {run_dir}')
    print(f'Resume from:         {plan.resume or "(fresh start)"}' + (f' ({plan.kind})' if plan.kind else ''))
    print(f'Number of {dev}s:      {c.num_gpus} ({launcher})')
    print(f'Batch size:          {c.batch_size} images ({c.batch_gpu} per {dev} per round)')
    print(f'Training duration:   {c.total_kimg} kimg')
    print(f'Dataset path:        {c.training_set_kwargs.path}')
    print(f'Dataset resolution:  {c.training_set_kwargs.get("resolution", "?")}')
    print(f'Networks:            channel_base {c.G_kwargs.channel_base}, channel_max {c.G_kwargs.channel_max}, '
          f'mapping {c.G_kwargs.mapping_kwargs.num_layers} layers\n', flush=True)


def train_worker(c, resume_data):
    """Body of every rank (inside the process group when there is more than one)."""
    rank = distributed.get_rank()
    device = torch.device('cuda', distributed.get_local_rank()) if c.device == 'cuda' else torch.device('cpu')
    hook = _metric_hook() if c.metrics else None
    with distributed.peer_failure_guard():
        return training_loop.training_loop(**dict(c, rank=rank, device=device, resume_data=resume_data, metric_hook=hook))


def launch(c, desc, opts, env, held):
    """Plan on rank 0, share the plan, train: one process, `--gpus=N` local processes, or one rank of torchrun/SLURM.
    The run dir's lock and the log tee go into `held` (released by the caller, after any error line)."""
    backend = 'nccl' if c.device == 'cuda' else 'gloo'
    TrainingConfig(**c)  # the loop's own checks, before anything is written
    if env.launcher != 'single':
        distributed.init(backend=backend)
    plan, error = None, None
    if env.rank == 0:
        try:
            plan = make_plan(c, desc, opts)
            if plan.note:
                print(plan.note)
            if not plan.complete:
                held.lock = claim_run_dir(plan, opts, desc)
        except (resume.ResumeError, rundir.RunDirError) as e:
            error = e
    plan, error = distributed.broadcast_object((plan, error))  # every rank agrees, or every rank stops
    if error is not None:
        raise error
    if plan.complete:
        distributed.print0(f'{plan.run_dir} is complete: it reached --kimg={c.total_kimg} ({plan.cur_nimg / 1000:g} kimg done). '
                           f'Nothing to do; raise --kimg to train further.')
        return 'complete'
    apply_plan(c, plan, opts)
    c.run_dir, c.resume = plan.run_dir, plan.resume
    if env.rank == 0:
        held.log = runtime.LogTee(os.path.join(plan.run_dir, 'log.txt'))
        checkpoint.write_json(os.path.join(plan.run_dir, 'training_options.json'), dict(c))
        launcher = (f'{env.launcher}, {env.world_size} ranks' if env.launcher != 'single' else
                    'local processes' if c.num_gpus > 1 else 'single process')
        print_summary(c, plan.run_dir, plan, launcher)
    if env.launcher != 'single' or c.num_gpus == 1:
        return train_worker(c, plan.data)
    print(f'Launching {c.num_gpus} processes ({backend})...', flush=True)
    distributed.launch_local(train_worker, c.num_gpus, args=(c, plan.data), backend=backend)
    return 'done'


def run_or_exit(c, desc, opts, env):
    """launch(), ending the process with status 1 and one line naming the cause (also in log.txt) when anything fails."""
    held = dnnlib.EasyDict(lock=None, log=None)
    try:
        return launch(c, desc, opts, env, held)
    except BaseException as e:  # every failure, also a second Ctrl-C, ends with one clear line
        if isinstance(e, resume.ResumeError) and held.log is None:  # found before the run started: a usage error
            raise click.BadParameter(str(e).removeprefix('--resume: '), param_hint='--resume') from e
        if isinstance(e, (click.ClickException, click.exceptions.Exit)):
            raise
        runtime.stop_child_processes()
        if not isinstance(e, KeyboardInterrupt):
            traceback.print_exc()
        where = c.get('run_dir') or opts.outdir
        message = 'interrupted (Ctrl-C)' if isinstance(e, KeyboardInterrupt) else runtime.describe_failure(e, where)
        print(f'train.py: error: {message}', file=sys.stderr, flush=True)
        sys.exit(1)
    finally:
        if held.log is not None:
            held.log.close()
        if held.lock is not None:
            held.lock.release()
        if env.launcher != 'single':
            distributed.shutdown()

#----------------------------------------------------------------------------

@click.command(help=__doc__, context_settings=dnnlib.cli.CONTEXT_SETTINGS)
@click.option('--outdir',       help='Where to make the run dir', metavar='DIR', type=dnnlib.cli.OutputDir(), required=True)
@click.option('--data',         help='Training data: folder, zip, or demo', metavar='[ZIP|DIR|demo]', required=True)
@click.option('--cfg',          help='Base configuration', type=click.Choice(list(CFG_SPECS)), default='auto', show_default=True)
@click.option('--gpus',         help='Processes: local GPUs (or CPU processes with --device=cpu); default: torchrun/SLURM world size, else 1', metavar='INT', type=click.IntRange(min=1))
@click.option('--device',       help='Device', type=torch_utils.cli.Device(extra=['auto'], allow_index=False), default='auto', show_default=True)
@click.option('--batch',        help='Total batch size [default: preset]', metavar='INT', type=click.IntRange(min=1))
@click.option('--batch-gpu',    help='Batch per process per round [default: batch/gpus]', metavar='INT', type=click.IntRange(min=1))
@click.option('--gamma',        help='R1 regularization weight [default: preset]', metavar='FLOAT', type=dnnlib.cli.FiniteFloat(min=0))
@click.option('--mirror',       help='Enable dataset x-flips', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--cond',         help='Train conditional model', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--aug',          help='Augmentation mode [default: ada, CPU auto: noaug]', type=click.Choice(['noaug', 'ada', 'fixed']))
@click.option('--p',            help='Probability for --aug=fixed [default: 0.2]', metavar='FLOAT', type=dnnlib.cli.FiniteFloat(min=0, max=1))
@click.option('--target',       help='ADA target value for --aug=ada [default: 0.6]', metavar='FLOAT', type=dnnlib.cli.FiniteFloat(min=0, max=1, min_open=True, max_open=True))
@click.option('--augpipe',      help='Augmentation pipeline', type=click.Choice(['blit', 'geom', 'color', 'filter', 'noise', 'cutout', 'bg', 'bgc', 'bgcf', 'bgcfn', 'bgcfnc']), default='bgc', show_default=True)
@click.option('--kimg',         help='Total training duration [default: preset]', metavar='KIMG', type=dnnlib.cli.FiniteFloat(min=0, min_open=True))
@click.option('--tick',         help='How often to print progress [default: 4, CPU auto: 1]', metavar='KIMG', type=dnnlib.cli.FiniteFloat(min=0, min_open=True))
@click.option('--snap',         help='How often to save snapshots [default: 50, CPU auto: 1]', metavar='TICKS', type=click.IntRange(min=1))
@click.option('--metrics',      help='Quality metrics, comma-separated, or none (offline on the demo data: fid_demo,pr_demo,cls_demo)', metavar='[NAME|A,B,C|none]', default='none', show_default=True)
@click.option('--resume',       help='Resume: auto (newest checkpoint of this run), or a checkpoint / snapshot / NVlabs pickle', metavar='[auto|PATH|URL]')
@click.option('--run-dir',      help='Use exactly this run dir instead of a new NNNNN-desc one under --outdir', metavar='DIR', type=dnnlib.cli.OutputDir())
@click.option('--seed',         help='Random seed', metavar='INT', type=click.IntRange(min=0, max=dnnlib.cli.MAX_SEED), default=0, show_default=True)
@click.option('--workers',      help='DataLoader worker processes [default: 3, at most CPU cores - 1]', metavar='INT', type=click.IntRange(min=0))
@click.option('--fp32',         help='Disable mixed precision', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--nobench',      help='Disable cuDNN benchmarking', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--allow-tf32',   help='Allow TF32 for matmul and convolutions', metavar='BOOL', type=bool, default=False, show_default=True)
@click.option('--cbase',        help='Capacity multiplier [default: preset]', metavar='INT', type=click.IntRange(min=1))
@click.option('--cmax',         help='Max. feature maps [default: preset]', metavar='INT', type=click.IntRange(min=1))
@click.option('--map',          help='Mapping network depth [default: preset]', metavar='INT', type=click.IntRange(min=1))
@click.option('--w-input',      help="G's 4x4 input = constant + affine(w), not in NVlabs [default: off, CPU auto: on]", metavar='BOOL', type=bool)
@click.option('--mbstd-group',  help='Minibatch std group size [default: preset]', metavar='INT', type=click.IntRange(min=1))
@click.option('--glr',          help='G learning rate [default: preset]', metavar='FLOAT', type=dnnlib.cli.FiniteFloat(min=0, min_open=True))
@click.option('--dlr',          help='D learning rate [default: preset]', metavar='FLOAT', type=dnnlib.cli.FiniteFloat(min=0, min_open=True))
@click.option('--ema',          help='G_ema half-life [default: preset]', metavar='KIMG', type=dnnlib.cli.FiniteFloat(min=0))
@click.option('--desc',         help='String to include in the run dir name', metavar='STR')
@click.option('--loss',         help='GAN loss: logistic (StyleGAN2, NVlabs), r3gan (relativistic, R1+R2), wgan-gp (with drift term), hinge', type=click.Choice(list(LOSS_TYPES)), default='logistic', show_default=True)
@click.option('-n', '--dry-run', help='Print the options and exit without writing anything', is_flag=True)
def main(**kwargs):
    opts = dnnlib.EasyDict(kwargs)
    env = distributed.detect_env()
    num_gpus = opts.gpus or 1
    if env.launcher != 'single':
        if opts.gpus is not None and opts.gpus != env.world_size:
            raise click.BadParameter(f'{env.launcher} started {env.world_size} processes but --gpus={opts.gpus}; omit --gpus', param_hint='--gpus')
        num_gpus = env.world_size
    c, desc = build_config(opts, num_gpus, dry_run=opts.dry_run)
    if opts.dry_run:
        if env.rank == 0:
            try:
                plan = make_plan(c, desc, opts)
            except resume.ResumeError as e:
                raise click.BadParameter(str(e).removeprefix('--resume: '), param_hint='--resume') from e
            if plan.note:
                print(plan.note)
            apply_plan(c, plan, opts)
            print_summary(c, plan.run_dir or rundir.next_run_dir(opts.outdir, desc), plan, env.launcher)
            print('Dry run; exiting.')
        return
    run_or_exit(c, desc, opts, env)

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()
