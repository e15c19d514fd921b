"""The StyleGAN2 training loop: setup, one minibatch of phases, and tick maintenance.

What the loop is asked to do is a `TrainingConfig`, what it builds and how far it is a `RunState`,
and what a checkpoint holds is whatever `setup` registers with the run's `CheckpointIO` (all in
`training.run_state`; docs/ARCHITECTURE.md has the data flow of one step).

Determinism: every minibatch reseeds the global torch/numpy RNGs from (random_seed, rank, batch_idx),
draws the latents and labels of the whole global batch from a generator seeded by
(random_seed, batch_idx) (each rank takes every num_gpus-th row), and reads real images from an
InfiniteSampler started at cur_nimg. A run resumed from a checkpoint therefore continues exactly as
the uninterrupted run would (bit for bit on CPU), and N ranks see the same samples as one process.

Speed/precision policy (set explicitly from the arguments, not left to library defaults):
`cudnn_benchmark` autotunes convolution algorithms (faster on GPU; the choice is not bitwise
reproducible across runs), `allow_tf32` lets matmuls and convolutions use TF32 on Ampere and newer
(~10x faster fp32 matmul, ~1e-3 relative error; off by default as in NVlabs).
"""

import copy
import json
import os
import time

import numpy as np
import PIL.Image
import torch

import dnnlib
from torch_utils import distributed, misc, snapshot, training_stats
from training import checkpoint as ckpt
from training import network_loader, resume, runtime
from training.loss import make_phases
from training.run_state import AugmentP, CheckpointIO, Group, Layout, RngStates, RunState, SamplerPosition, TrainingConfig

#----------------------------------------------------------------------------

def training_loop(**kwargs):
    """Train until `total_kimg` (kwargs: the fields of `training.run_state.TrainingConfig`).

    Returns 'done', or 'interrupted' after SIGTERM / Ctrl-C (a checkpoint is written first).
    """
    cfg = TrainingConfig(**kwargs)
    run = RunState(device=torch.device(cfg.device if cfg.device is not None else ('cuda' if torch.cuda.is_available() else 'cpu')),
                   checkpoint=CheckpointIO(cfg.rank, cfg.num_gpus))
    failed = True
    try:
        setup(cfg, run)
        while True:
            train_step(cfg, run)
            if cfg.num_gpus == 1 or run.counters.batch_idx % cfg.abort_check_interval == 0:
                run.stop = run.stop or distributed.any_rank(run.signals.signum is not None, run.device)
            done = run.counters.cur_nimg >= cfg.total_kimg * 1000
            tick_due = run.counters.cur_tick == 0 or run.counters.cur_nimg >= run.tick_start_nimg + cfg.kimg_per_tick * 1000
            if done or run.stop or tick_due:
                tick_maintenance(cfg, run, done=done)
            if done or run.stop:
                break
        failed = False
        if run.stop:
            print0(cfg, f'Interrupted by signal {run.signals.signum} at kimg {run.counters.cur_nimg / 1e3:.1f}; checkpoint written to '
                        f'{run.last_checkpoint}. Run the same command with --resume=auto to continue.')
            return 'interrupted'
        print0(cfg, 'Exiting...')
        return 'done'
    finally:
        run.data_iter = None  # normal end: the iterator's workers shut down
        if failed:
            runtime.stop_child_processes()  # an exception may keep the iterator alive; its workers ignore SIGTERM
        for closable in [run.signals, run.stats_jsonl, run.stats_tfevents, run.log]:
            if closable is not None:
                closable.close()

#----------------------------------------------------------------------------

def setup(cfg, run):
    """Build data, networks, loss, phases and logs into `run`, register what a checkpoint holds, restore one."""
    torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = cfg.allow_tf32
    torch.backends.cudnn.allow_tf32 = cfg.allow_tf32
    if cfg.metrics and cfg.metric_hook is None:
        raise ValueError(f'training_loop: metrics {cfg.metrics} need metric_hook (metrics.metric_main.run_metrics_on_snapshot)')
    training_stats.reset()
    training_stats.init_multiprocessing(rank=cfg.rank, sync_device=run.device if cfg.num_gpus > 1 else None)
    if cfg.rank == 0:
        os.makedirs(cfg.run_dir, exist_ok=True)
    run.log = runtime.LogTee(os.path.join(cfg.run_dir, 'log.txt') if cfg.rank == 0 else None)
    stale = ckpt.remove_stale_temporaries(cfg.run_dir) if cfg.rank == 0 else []
    if stale:
        print(f'Removed {len(stale)} temporary file(s) left by a killed writer: {", ".join(stale)}')
    run.signals = runtime.StopSignals()
    io = run.checkpoint
    io.register('counters', run.counters, inline=True)
    io.register('layout', Layout(cfg.batch_size, cfg.num_gpus, lambda text: print0(cfg, text)), inline=True)
    resume_data = _read_resume(cfg)

    # Training data: this rank's shard of the global stream (its iterator starts once the position is restored).
    print0(cfg, 'Loading training set...')
    run.training_set = dnnlib.util.construct_class_by_name(**cfg.training_set_kwargs)
    run.sampler = dnnlib.util.construct_class_by_name(class_name='training.dataset.InfiniteSampler', dataset_size=len(run.training_set),
        rank=cfg.rank, num_replicas=cfg.num_gpus, seed=cfg.random_seed)
    workers = cfg.data_loader_kwargs.get('num_workers', 0)
    run.data_loader = torch.utils.data.DataLoader(dataset=run.training_set, sampler=run.sampler, batch_size=cfg.batch_size // cfg.num_gpus,
        worker_init_fn=runtime.worker_init if workers > 0 else None, **cfg.data_loader_kwargs)
    io.register('sampler', SamplerPosition(run.sampler, run.counters))
    print0(cfg, f'Num images: {len(run.training_set)}, image shape: {run.training_set.image_shape}, label shape: {run.training_set.label_shape}')

    # Networks: identical initialization on every rank (seeded).
    torch.manual_seed(cfg.random_seed)
    common = dict(c_dim=run.training_set.label_dim, img_resolution=run.training_set.resolution, img_channels=run.training_set.num_channels)
    run.G = dnnlib.util.construct_class_by_name(**cfg.G_kwargs, **common).train().requires_grad_(False).to(run.device)
    run.D = dnnlib.util.construct_class_by_name(**cfg.D_kwargs, **common).train().requires_grad_(False).to(run.device)
    run.G_ema = copy.deepcopy(run.G).eval()
    run.avg_buffers = [b for name, b in run.G.named_buffers() if name.endswith(('_avg', '_ema')) and b.is_floating_point()]
    if cfg.augment_kwargs is not None and (cfg.augment_p > 0 or cfg.ada_target is not None):
        run.augment_pipe = dnnlib.util.construct_class_by_name(**cfg.augment_kwargs).train().requires_grad_(False).to(run.device)
        run.augment_pipe.p.copy_(torch.as_tensor(cfg.augment_p))
        io.register('augment_p', AugmentP(run.augment_pipe))
        if cfg.ada_target is not None:
            run.ada = dnnlib.util.construct_class_by_name(class_name='training.augment.AdaController', target=cfg.ada_target,
                interval=cfg.ada_interval, speed_kimg=cfg.ada_kimg, batch_size=cfg.batch_size)
            io.register('ada_state', run.ada, per_rank=True)
    for name in snapshot.NETWORK_KEYS:
        io.register_module(name, getattr(run, name))

    # Loss and phases: (name, module, opt, interval); lazy regularization rescales lr and betas.
    run.loss = dnnlib.util.construct_class_by_name(device=run.device, G=run.G, D=run.D, augment_pipe=run.augment_pipe,
                                                   **({'ada_controller': run.ada} if run.ada is not None else {}), **cfg.loss_kwargs)
    io.register('loss_state', run.loss, per_rank=True)
    if cfg.progressive_kwargs is not None:
        run.progressive = dnnlib.util.construct_class_by_name(**cfg.progressive_kwargs)
        io.register('progressive_state', run.progressive)
    run.phases = make_phases('G', run.G, cfg.G_opt_kwargs, cfg.G_reg_interval) + make_phases('D', run.D, cfg.D_opt_kwargs, cfg.D_reg_interval)
    run.opts = {name: phase.opt for name, phase in zip(['G', 'D'], [p for p in run.phases if p.interval == 1])}
    io.register('opt_states', Group(run.opts))
    io.register('rng_states', RngStates(), per_rank=True)

    # Resume: networks (and, continuing exactly, every registered part).
    if resume_data is not None:
        kind, state = resume.inspect_resume_data(resume_data, cfg.resume)
        print0(cfg, f'Resuming from "{cfg.resume}"' + (' (exact continuation)' if kind == resume.EXACT else ' (weights only)'))
        nets = network_loader.load_network_bytes(resume_data, str(cfg.resume), device=run.device)
        try:
            io.load_modules(nets, require_all=network_loader.probe_format(resume_data) == network_loader.GANFORGE)
        except (KeyError, ValueError) as e:
            raise resume.ResumeError(f'--resume: the networks of {cfg.resume} do not fit this run\'s options '
                                     f'(resolution, --cbase/--cmax/--map, --cond or --cfg): {e}') from e
        if kind == resume.EXACT:
            io.load_state_dict(state, str(cfg.resume))
    with torch.random.fork_rng(devices=[]):  # the iterator draws its workers' base seed; leave the global RNG as restored
        run.data_iter = iter(run.data_loader)

    # Image grids: reals once; fakes from fixed latents chosen by the seed.
    run.grid_size, images, labels = setup_snapshot_image_grid(run.training_set, cfg.image_grid_size, cfg.random_seed)
    gen = torch.Generator().manual_seed(cfg.random_seed)
    run.grid_z = torch.randn([labels.shape[0], run.G.z_dim], generator=gen).to(run.device).split(cfg.batch_gpu)
    run.grid_c = torch.from_numpy(labels).to(run.device).split(cfg.batch_gpu)
    if cfg.rank == 0 and run.counters.cur_nimg == 0:
        save_image_grid(images, os.path.join(cfg.run_dir, 'reals.png'), drange=[0, 255], grid_size=run.grid_size)
        save_image_grid(_generate_grid(run), os.path.join(cfg.run_dir, 'fakes_init.png'), drange=[-1, 1], grid_size=run.grid_size)

    # Logs: stats.jsonl and TensorBoard (optional), rank 0 only.
    run.stats_collector = training_stats.Collector(regex='.*')
    if cfg.rank == 0:
        run.stats_jsonl = open(os.path.join(cfg.run_dir, 'stats.jsonl'), 'at')
        try:
            from torch.utils.tensorboard import SummaryWriter
            run.stats_tfevents = SummaryWriter(cfg.run_dir)
        except ImportError as e:
            print(f'Skipping TensorBoard logging ({e}); install it with "pip install tensorboard".')
    print0(cfg, f'Training for {cfg.total_kimg} kimg from kimg {run.counters.cur_nimg / 1e3:.1f}...\n')
    run.tick_start_nimg, run.tick_start_time = run.counters.cur_nimg, time.time()
    run.maintenance_time = run.tick_start_time - run.start_time


def _read_resume(cfg):
    """The resume file's bytes (None without --resume): given by the caller, else read on rank 0 and broadcast."""
    if cfg.resume is None:
        return None
    if cfg.resume_data is not None:
        return cfg.resume_data
    data, error = None, None
    if cfg.rank == 0:
        try:
            data = resume.read_resume_file(cfg.resume)
        except resume.ResumeError as e:
            error = str(e)
    data, error = distributed.broadcast_object((data, error))
    if error is not None:
        raise resume.ResumeError(error)
    return data

#----------------------------------------------------------------------------

def train_step(cfg, run):
    """One minibatch: every due phase accumulates, averages and applies its gradients; then EMA and ADA."""
    n = run.counters
    torch.manual_seed(ckpt.step_seed(cfg.random_seed, cfg.rank, n.batch_idx))  # noise, style mixing, augmentation
    np.random.seed(ckpt.step_seed(cfg.random_seed, cfg.rank, n.batch_idx, 1))
    if run.progressive is not None:
        run.progressive.update(n.cur_nimg, G=run.G, D=run.D, G_ema=run.G_ema, loss=run.loss, opts=run.opts)

    # Fetch reals (this rank's shard); latents and labels of the global batch (this rank's rows).
    real_img, real_c = next(run.data_iter)
    real_img = (real_img.to(run.device).to(torch.float32) / 127.5 - 1).split(cfg.batch_gpu)
    real_c = real_c.to(run.device).split(cfg.batch_gpu)
    gen = torch.Generator().manual_seed(ckpt.step_seed(cfg.random_seed, n.batch_idx, 0xC0FFEE))
    all_z = torch.randn([len(run.phases), cfg.batch_size, run.G.z_dim], generator=gen)[:, cfg.rank::cfg.num_gpus]
    label_idx = torch.randint(len(run.training_set), [len(run.phases), cfg.batch_size], generator=gen)[:, cfg.rank::cfg.num_gpus]
    all_c = torch.from_numpy(np.stack([run.training_set.get_label(i) for i in label_idx.flatten().tolist()]))
    all_c = all_c.reshape(list(label_idx.shape) + [-1])

    for phase, phase_z, phase_c in zip(run.phases, all_z, all_c):
        if n.batch_idx % phase.interval == 0:
            run_phase(cfg, run, phase, real_img, real_c, phase_z.to(run.device).split(cfg.batch_gpu), phase_c.to(run.device).split(cfg.batch_gpu))

    # Average G's running statistics (w_avg, StyleGAN3 magnitude_ema) over ranks, so every rank and G_ema hold the global value.
    if cfg.num_gpus > 1 and len(run.avg_buffers) > 0:
        flat = torch.cat([b.flatten() for b in run.avg_buffers])
        torch.distributed.all_reduce(flat)
        flat /= cfg.num_gpus
        for b, v in zip(run.avg_buffers, flat.split([b.numel() for b in run.avg_buffers])):
            b.copy_(v.reshape(b.shape))

    # Update G_ema: half-life ema_kimg, shortened to cur_nimg * ema_rampup early in training.
    ema_nimg = cfg.ema_kimg * 1000
    if cfg.ema_rampup is not None:
        ema_nimg = min(ema_nimg, n.cur_nimg * cfg.ema_rampup)
    ema_beta = 0.5 ** (cfg.batch_size / max(ema_nimg, 1e-8))
    with torch.no_grad():
        for p_ema, p in zip(run.G_ema.parameters(), run.G.parameters()):
            p_ema.copy_(p.lerp(p_ema, ema_beta))
        for b_ema, b in zip(run.G_ema.buffers(), run.G.buffers()):
            b_ema.copy_(b)

    n.cur_nimg += cfg.batch_size
    n.batch_idx += 1
    if run.ada is not None:
        run.ada.update(run.augment_pipe)


def run_phase(cfg, run, phase, real_img, real_c, gen_z, gen_c):
    """Accumulate `phase`'s gradients over rounds of batch_gpu, average them over ranks, step its optimizer."""
    phase.opt.zero_grad(set_to_none=True)
    phase.module.requires_grad_(True)
    for r_img, r_c, g_z, g_c in zip(real_img, real_c, gen_z, gen_c):
        run.loss.accumulate_gradients(phase=phase.name, real_img=r_img, real_c=r_c, gen_z=g_z, gen_c=g_c,
                                      gain=phase.interval, cur_nimg=run.counters.cur_nimg)
    phase.module.requires_grad_(False)

    # One flat all_reduce; non-finite values (after averaging) are counted and replaced.
    params = [p for p in phase.module.parameters() if p.numel() > 0 and p.grad is not None]
    if len(params) > 0:
        flat = torch.cat([p.grad.flatten() for p in params])
        if cfg.num_gpus > 1:
            torch.distributed.all_reduce(flat)
            flat /= cfg.num_gpus
        training_stats.report0('Progress/nonfinite_grads', (~torch.isfinite(flat)).sum())
        torch.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad = g.reshape(p.shape)
    phase.opt.step()

#----------------------------------------------------------------------------

def tick_maintenance(cfg, run, done):
    """Once per tick: progress line, image grid, snapshot + checkpoint, metrics, stats; all ranks call it."""
    n = run.counters
    tick = n.cur_tick
    n.cur_tick += 1  # this tick is complete: a checkpoint written below continues with the next one
    tick_end_time = time.time()
    tick_nimg = max(n.cur_nimg - run.tick_start_nimg, 1)
    total_sec = tick_end_time - run.start_time
    sec_per_kimg = (tick_end_time - run.tick_start_time) / tick_nimg * 1e3
    eta = max(cfg.total_kimg * 1000 - n.cur_nimg, 0) / 1e3 * sec_per_kimg
    rep = training_stats.report0
    fields = [f"tick {rep('Progress/tick', tick):<5d}", f"kimg {rep('Progress/kimg', n.cur_nimg / 1e3):<8.1f}",
              f"time {dnnlib.util.format_time(rep('Timing/total_sec', total_sec)):<12s}",
              f"sec/tick {rep('Timing/sec_per_tick', tick_end_time - run.tick_start_time):<7.1f}",
              f"sec/kimg {rep('Timing/sec_per_kimg', sec_per_kimg):<7.2f}",
              f"maintenance {rep('Timing/maintenance_sec', run.maintenance_time):<6.1f}",
              f"cpumem {rep('Resources/cpu_mem_gb', runtime.cpu_mem_gb()):<6.2f}",
              f"gpumem {rep('Resources/peak_gpu_mem_gb', runtime.peak_gpu_mem_gb(run.device)):<6.2f}",
              f"augment {rep('Progress/augment', float(run.augment_pipe.p) if run.augment_pipe is not None else 0):.3f}",
              f"eta {dnnlib.util.format_time(eta)}"]
    rep('Timing/total_hours', total_sec / 3600)
    rep('Timing/total_days', total_sec / (24 * 3600))
    print0(cfg, ' '.join(fields))

    # Save image snapshot.
    label = ckpt.kimg_label(n.cur_nimg, cfg.kimg_per_tick)
    tick_due = lambda ticks: ticks is not None and (done or run.stop or tick % ticks == 0)
    if cfg.rank == 0 and tick_due(cfg.image_snapshot_ticks):
        save_image_grid(_generate_grid(run), os.path.join(cfg.run_dir, ckpt.fakes_name(label)), drange=[-1, 1], grid_size=run.grid_size)

    # Save network snapshot and training checkpoint.
    snapshot_path = None
    if tick_due(cfg.network_snapshot_ticks) or run.stop:
        if cfg.num_gpus > 1:
            for module in [run.G, run.D, run.G_ema]:
                misc.check_ddp_consistency(module, ignore_regex=r'.*\.[^.]+_(avg|ema)')
        snapshot_path, run.last_checkpoint = save_checkpoint(cfg, run, label)

    # Evaluate metrics through the hook train.py passes in (training does not import metrics).
    if snapshot_path is not None and len(cfg.metrics) > 0:
        print0(cfg, 'Evaluating metrics...')
        results = cfg.metric_hook(metrics=cfg.metrics, G_ema=run.G_ema, dataset_kwargs=cfg.training_set_kwargs, run_dir=cfg.run_dir,
                                  snapshot_path=snapshot_path, num_gpus=cfg.num_gpus, rank=cfg.rank, device=run.device)
        for result in results:
            for name, value in result.get('results', {}).items():
                rep(f'Metrics/{name}', value)

    # Collect statistics (the one cross-rank sync of the tick) and write logs.
    run.stats_collector.update()
    stats_dict = run.stats_collector.as_dict()
    timestamp = time.time()
    if run.stats_jsonl is not None:
        run.stats_jsonl.write(json.dumps(dict(stats_dict, timestamp=timestamp)) + '\n')
        run.stats_jsonl.flush()
    if run.stats_tfevents is not None:
        for name, value in stats_dict.items():
            run.stats_tfevents.add_scalar(name, value.mean, global_step=int(n.cur_nimg / 1e3), walltime=timestamp - run.start_time)
        run.stats_tfevents.flush()

    run.tick_start_nimg, run.tick_start_time = n.cur_nimg, time.time()
    run.maintenance_time = run.tick_start_time - tick_end_time


def save_checkpoint(cfg, run, label):
    """Write network-snapshot-<label>.pt and training-state-<label>.pt (rank 0), keep the last few; all ranks call it."""
    state = run.checkpoint.state_dict()  # on every rank: per-rank parts are gathered
    if cfg.rank != 0:
        return None, None
    meta = dict(training_set_kwargs=dict(cfg.training_set_kwargs), cur_nimg=run.counters.cur_nimg)
    snapshot_path = os.path.join(cfg.run_dir, ckpt.snapshot_name(label))
    checkpoint_path = os.path.join(cfg.run_dir, ckpt.checkpoint_name(label))
    for path, data in [(snapshot_path, run.checkpoint.snapshot(**meta)), (checkpoint_path, run.checkpoint.snapshot(state, **meta))]:
        with runtime.naming_disk_full(path), dnnlib.util.atomic_write(path) as f:
            torch.save(data, f)
    ckpt.prune_checkpoints(cfg.run_dir, cfg.checkpoint_keep)
    return snapshot_path, checkpoint_path

#----------------------------------------------------------------------------

def setup_snapshot_image_grid(training_set, grid_size=None, random_seed=0):
    """NVlabs grid: ~7680x4320 px of shuffled reals (one class per row when labeled). Returns (gw, gh), images, labels."""
    rnd = np.random.RandomState(random_seed)
    gw, gh = grid_size if grid_size is not None else (
        np.clip(7680 // training_set.image_shape[2], 7, 32), np.clip(4320 // training_set.image_shape[1], 4, 32))
    if not training_set.has_labels:
        all_indices = list(range(len(training_set)))
        rnd.shuffle(all_indices)
        grid_indices = [all_indices[i % len(all_indices)] for i in range(gw * gh)]
    else:
        label_groups = dict()
        for idx in range(len(training_set)):
            label_groups.setdefault(tuple(training_set.get_details(idx).raw_label.flat[::-1]), []).append(idx)
        label_order = sorted(label_groups.keys())
        for label in label_order:
            rnd.shuffle(label_groups[label])
        grid_indices = []
        for y in range(gh):
            indices = label_groups[label_order[y % len(label_order)]]
            grid_indices += [indices[x % len(indices)] for x in range(gw)]
            label_groups[label_order[y % len(label_order)]] = [indices[(i + gw) % len(indices)] for i in range(len(indices))]
    images, labels = zip(*[training_set[i] for i in grid_indices])
    return (int(gw), int(gh)), np.stack(images), np.stack(labels)


def save_image_grid(img, fname, drange, grid_size):
    """Write images [N, C, H, W] with values in `drange` as a gh x gw PNG grid (atomic)."""
    lo, hi = drange
    img = np.asarray(img, dtype=np.float32)
    img = np.rint((img - lo) * (255 / (hi - lo))).clip(0, 255).astype(np.uint8)
    gw, gh = grid_size
    _n, C, H, W = img.shape
    img = img.reshape(gh, gw, C, H, W).transpose(0, 3, 1, 4, 2).reshape(gh * H, gw * W, C)
    with dnnlib.util.atomic_write(fname) as f:
        PIL.Image.fromarray(img[:, :, 0] if C == 1 else img, 'L' if C == 1 else 'RGB').save(f, format='png')


@torch.no_grad()
def _generate_grid(run):
    return torch.cat([run.G_ema(z=z, c=c, noise_mode='const').cpu() for z, c in zip(run.grid_z, run.grid_c)]).numpy()


def print0(cfg, *args):
    if cfg.rank == 0:
        print(*args, flush=True)
