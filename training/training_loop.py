"""The StyleGAN2 training loop: setup, one minibatch of phases, and tick maintenance.

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
from torch_utils import misc, snapshot, training_stats
from training import checkpoint as ckpt
from training import network_loader
from training.loss import make_phases

#----------------------------------------------------------------------------

def training_loop(
    run_dir                 = '.',      # Output directory; rank 0 writes, all ranks must pass the same.
    training_set_kwargs     = {},       # Training set: class_name + constructor kwargs.
    data_loader_kwargs      = {},       # torch.utils.data.DataLoader kwargs (num_workers, pin_memory, prefetch_factor).
    G_kwargs                = {},       # Generator: class_name + constructor kwargs (resolution, channels, c_dim come from the data).
    D_kwargs                = {},       # Discriminator: class_name + constructor kwargs.
    G_opt_kwargs            = {},       # Generator optimizer: class_name + kwargs (lr, betas, eps).
    D_opt_kwargs            = {},       # Discriminator optimizer: class_name + kwargs.
    augment_kwargs          = None,     # Augmentation pipe: class_name + kwargs; None = no augmentation.
    loss_kwargs             = {},       # Loss: class_name + kwargs (r1_gamma, pl_weight, style_mixing_prob, ...).
    progressive_kwargs      = None,     # Progressive growing schedule: class_name + kwargs; None = disabled.
    metrics                 = [],       # Metric names evaluated on every network snapshot.
    random_seed             = 0,        # Seed of weights, latents, noise and data order.
    num_gpus                = 1,        # Total number of processes (ranks) over all nodes.
    rank                    = 0,        # Rank of this process, in [0, num_gpus).
    device                  = None,     # torch device of this rank; None = cuda if available, else cpu.
    batch_size              = 4,        # Global minibatch, images summed over all ranks.
    batch_gpu               = 4,        # Images per rank per forward/backward round (accumulates when < batch_size / num_gpus).
    ema_kimg                = 10,       # Half-life of the G_ema weights, in kimg.
    ema_rampup              = 0.05,     # Half-life at most cur_nimg * ema_rampup early on; None = no ramp-up.
    G_reg_interval          = 4,        # Minibatches between lazy G regularization (path length); None = every minibatch, with the main loss.
    D_reg_interval          = 16,       # Minibatches between lazy D regularization (R1); None = every minibatch, with the main loss.
    augment_p               = 0,        # Initial (or fixed) augmentation probability.
    ada_target              = None,     # ADA target of E[sign(D(real))]; None = fixed p.
    ada_interval            = 4,        # Minibatches between ADA p adjustments.
    ada_kimg                = 500,      # ADA speed: p can go from 0 to 1 in this many kimg.
    total_kimg              = 25000,    # Training length, in kimg of real images shown to D (may be fractional).
    kimg_per_tick           = 4,        # Progress line, stats and maintenance interval, in kimg.
    image_snapshot_ticks    = 50,       # Ticks between fakesNNNNNN.png grids; None = never.
    network_snapshot_ticks  = 50,       # Ticks between network snapshots and training checkpoints; None = never.
    checkpoint_keep         = 3,        # Keep the newest this many training-state files (None = all).
    image_grid_size         = None,     # (width, height) of the image grids in images; None = NVlabs rule (fills ~7680x4320 px).
    resume                  = None,     # training-state path (exact continuation) or network snapshot / NVlabs pickle (weights only).
    cudnn_benchmark         = True,     # torch.backends.cudnn.benchmark (see module docstring).
    allow_tf32              = False,    # TF32 for matmul and cuDNN convolutions (see module docstring).
    abort_check_interval    = 4,        # Minibatches between cross-rank checks for SIGTERM / Ctrl-C (every one with a single process).
):
    """Train until `total_kimg`; returns 'done', or 'interrupted' after a signal (a checkpoint is written)."""
    c = dnnlib.EasyDict(locals())
    s = dnnlib.EasyDict(start_time=time.time(), stop=False, last_checkpoint=None, log=None, signals=None, stats_jsonl=None, stats_tfevents=None)
    try:
        setup(c, s)
        while True:
            train_step(c, s)
            if c.num_gpus == 1 or s.batch_idx % c.abort_check_interval == 0:
                s.stop = s.stop or _any_rank(s.signals.signum is not None, s.device)
            done = s.cur_nimg >= c.total_kimg * 1000
            if not (done or s.stop or s.cur_tick == 0 or s.cur_nimg >= s.tick_start_nimg + c.kimg_per_tick * 1000):
                continue
            tick_maintenance(c, s, done=done)
            if done or s.stop:
                break
        if s.stop:
            print0(c, f'Interrupted by signal {s.signals.signum} at kimg {s.cur_nimg / 1e3:.1f}; checkpoint written to {s.last_checkpoint}. '
                      f'Run the same command with --resume=auto to continue.')
            return 'interrupted'
        print0(c, 'Exiting...')
        return 'done'
    finally:
        for closable in [s.signals, s.stats_jsonl, s.stats_tfevents, s.log]:
            if closable is not None:
                closable.close()

#----------------------------------------------------------------------------

def setup(c, s):
    """Build data, networks, loss, phases and logs into the state `s`; restore a checkpoint."""
    s.device = torch.device(c.device if c.device is not None else ('cuda' if torch.cuda.is_available() else 'cpu'))
    torch.backends.cudnn.benchmark = c.cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = c.allow_tf32
    torch.backends.cudnn.allow_tf32 = c.allow_tf32
    training_stats.reset()
    training_stats.init_multiprocessing(rank=c.rank, sync_device=s.device if c.num_gpus > 1 else None)
    if c.rank == 0:
        os.makedirs(c.run_dir, exist_ok=True)
    s.log = ckpt.LogTee(os.path.join(c.run_dir, 'log.txt') if c.rank == 0 else None)
    s.signals = ckpt.StopSignals()

    # Resume state (read by every rank: the run dir must be on a shared file system).
    resume_data = ckpt.read_checkpoint(c.resume) if c.resume is not None and _is_ganforge_file(c.resume) else None
    state = (resume_data.get('extra') or {}).get('training_state') if resume_data is not None else None
    s.cur_nimg = state['cur_nimg'] if state else 0
    s.cur_tick = state['cur_tick'] if state else 0
    s.batch_idx = state['batch_idx'] if state else 0

    # Training data: this rank's shard of the global stream, starting where the run left off.
    print0(c, 'Loading training set...')
    s.training_set = dnnlib.util.construct_class_by_name(**c.training_set_kwargs)
    sampler = dnnlib.util.construct_class_by_name(class_name='training.dataset.InfiniteSampler', dataset_size=len(s.training_set),
        rank=c.rank, num_replicas=c.num_gpus, seed=c.random_seed, start_index=s.cur_nimg)
    s.data_iter = iter(torch.utils.data.DataLoader(dataset=s.training_set, sampler=sampler, batch_size=c.batch_size // c.num_gpus,
        worker_init_fn=ckpt.ignore_signals if c.data_loader_kwargs.get('num_workers', 0) > 0 else None, **c.data_loader_kwargs))
    print0(c, f'Num images: {len(s.training_set)}, image shape: {s.training_set.image_shape}, label shape: {s.training_set.label_shape}')

    # Networks: identical initialization on every rank (seeded), then loaded from the resume file.
    torch.manual_seed(c.random_seed)
    common = dict(c_dim=s.training_set.label_dim, img_resolution=s.training_set.resolution, img_channels=s.training_set.num_channels)
    s.G = dnnlib.util.construct_class_by_name(**c.G_kwargs, **common).train().requires_grad_(False).to(s.device)
    s.D = dnnlib.util.construct_class_by_name(**c.D_kwargs, **common).train().requires_grad_(False).to(s.device)
    s.G_ema = copy.deepcopy(s.G).eval()
    s.avg_buffers = [b for name, b in s.G.named_buffers() if name.endswith(('_avg', '_ema')) and b.is_floating_point()]
    s.augment_pipe = s.ada = None
    if c.augment_kwargs is not None and (c.augment_p > 0 or c.ada_target is not None):
        s.augment_pipe = dnnlib.util.construct_class_by_name(**c.augment_kwargs).train().requires_grad_(False).to(s.device)
        s.augment_pipe.p.copy_(torch.as_tensor(c.augment_p))
        if c.ada_target is not None:
            s.ada = dnnlib.util.construct_class_by_name(class_name='training.augment.AdaController', target=c.ada_target,
                interval=c.ada_interval, speed_kimg=c.ada_kimg, batch_size=c.batch_size)
    if c.resume is not None:
        print0(c, f'Resuming from "{c.resume}"' + (' (exact continuation)' if state else ' (weights only)'))
        _load_weights(s, c.resume, resume_data, exact=state is not None)

    # Loss and phases: (name, module, opt, interval); lazy regularization rescales lr and betas.
    s.loss = dnnlib.util.construct_class_by_name(device=s.device, G=s.G, D=s.D, augment_pipe=s.augment_pipe,
                                                  **({'ada_controller': s.ada} if s.ada is not None else {}), **c.loss_kwargs)
    s.progressive = dnnlib.util.construct_class_by_name(**c.progressive_kwargs) if c.progressive_kwargs is not None else None
    s.phases = make_phases('G', s.G, c.G_opt_kwargs, c.G_reg_interval) + make_phases('D', s.D, c.D_opt_kwargs, c.D_reg_interval)
    s.opts = {name: phase.opt for name, phase in zip(['G', 'D'], [p for p in s.phases if p.interval == 1])}
    if state:
        _load_training_state(c, s, state)

    # Image grids: reals once; fakes from fixed latents chosen by the seed.
    s.grid_size, images, labels = setup_snapshot_image_grid(s.training_set, c.image_grid_size, c.random_seed)
    gen = torch.Generator().manual_seed(c.random_seed)
    s.grid_z = torch.randn([labels.shape[0], s.G.z_dim], generator=gen).to(s.device).split(c.batch_gpu)
    s.grid_c = torch.from_numpy(labels).to(s.device).split(c.batch_gpu)
    if c.rank == 0 and s.cur_nimg == 0:
        save_image_grid(images, os.path.join(c.run_dir, 'reals.png'), drange=[0, 255], grid_size=s.grid_size)
        save_image_grid(_generate_grid(s), os.path.join(c.run_dir, 'fakes_init.png'), drange=[-1, 1], grid_size=s.grid_size)

    # Logs: stats.jsonl and TensorBoard (optional), rank 0 only.
    s.stats_collector = training_stats.Collector(regex='.*')
    s.stats_jsonl = s.stats_tfevents = None
    if c.rank == 0:
        s.stats_jsonl = open(os.path.join(c.run_dir, 'stats.jsonl'), 'at')
        try:
            from torch.utils.tensorboard import SummaryWriter
            s.stats_tfevents = SummaryWriter(c.run_dir)
        except ImportError as e:
            print(f'Skipping TensorBoard logging ({e}); install it with "pip install tensorboard".')
    print0(c, f'Training for {c.total_kimg} kimg from kimg {s.cur_nimg / 1e3:.1f}...\n')
    s.tick_start_nimg, s.tick_start_time = s.cur_nimg, time.time()
    s.maintenance_time = s.tick_start_time - s.start_time

#----------------------------------------------------------------------------

def train_step(c, s):
    """One minibatch: every due phase accumulates, averages and applies its gradients; then EMA and ADA."""
    torch.manual_seed(ckpt.step_seed(c.random_seed, c.rank, s.batch_idx))  # noise, style mixing, augmentation
    np.random.seed(ckpt.step_seed(c.random_seed, c.rank, s.batch_idx, 1))
    if s.progressive is not None:
        s.progressive.update(s.cur_nimg, G=s.G, D=s.D, G_ema=s.G_ema, loss=s.loss, opts=s.opts)

    # Fetch reals (this rank's shard); latents and labels of the global batch (this rank's rows).
    real_img, real_c = next(s.data_iter)
    real_img = (real_img.to(s.device).to(torch.float32) / 127.5 - 1).split(c.batch_gpu)
    real_c = real_c.to(s.device).split(c.batch_gpu)
    gen = torch.Generator().manual_seed(ckpt.step_seed(c.random_seed, s.batch_idx, 0xC0FFEE))
    all_z = torch.randn([len(s.phases), c.batch_size, s.G.z_dim], generator=gen)[:, c.rank::c.num_gpus]
    label_idx = torch.randint(len(s.training_set), [len(s.phases), c.batch_size], generator=gen)[:, c.rank::c.num_gpus]
    all_c = torch.from_numpy(np.stack([s.training_set.get_label(i) for i in label_idx.flatten().tolist()]))
    all_c = all_c.reshape(list(label_idx.shape) + [-1])

    for phase, phase_z, phase_c in zip(s.phases, all_z, all_c):
        if s.batch_idx % phase.interval == 0:
            run_phase(c, s, phase, real_img, real_c, phase_z.to(s.device).split(c.batch_gpu), phase_c.to(s.device).split(c.batch_gpu))

    # Average G's running statistics (w_avg, StyleGAN3 magnitude_ema) over ranks, so every rank and G_ema hold the global value.
    if c.num_gpus > 1 and len(s.avg_buffers) > 0:
        flat = torch.cat([b.flatten() for b in s.avg_buffers])
        torch.distributed.all_reduce(flat)
        flat /= c.num_gpus
        for b, v in zip(s.avg_buffers, flat.split([b.numel() for b in s.avg_buffers])):
            b.copy_(v.reshape(b.shape))

    # Update G_ema: half-life ema_kimg, shortened to cur_nimg * ema_rampup early in training.
    ema_nimg = c.ema_kimg * 1000
    if c.ema_rampup is not None:
        ema_nimg = min(ema_nimg, s.cur_nimg * c.ema_rampup)
    ema_beta = 0.5 ** (c.batch_size / max(ema_nimg, 1e-8))
    with torch.no_grad():
        for p_ema, p in zip(s.G_ema.parameters(), s.G.parameters()):
            p_ema.copy_(p.lerp(p_ema, ema_beta))
        for b_ema, b in zip(s.G_ema.buffers(), s.G.buffers()):
            b_ema.copy_(b)

    s.cur_nimg += c.batch_size
    s.batch_idx += 1
    if s.ada is not None:
        s.ada.update(s.augment_pipe)


def run_phase(c, s, phase, real_img, real_c, gen_z, gen_c):
    """Accumulate `phase`'s gradients over rounds of batch_gpu, average them over ranks, step its optimizer."""
    phase.opt.zero_grad(set_to_none=True)
    phase.module.requires_grad_(True)
    for r_img, r_c, g_z, g_c in zip(real_img, real_c, gen_z, gen_c):
        s.loss.accumulate_gradients(phase=phase.name, real_img=r_img, real_c=r_c, gen_z=g_z, gen_c=g_c,
                                    gain=phase.interval, cur_nimg=s.cur_nimg)
    phase.module.requires_grad_(False)

    # One flat all_reduce; non-finite values (after averaging) are counted and replaced.
    params = [p for p in phase.module.parameters() if p.numel() > 0 and p.grad is not None]
    if len(params) > 0:
        flat = torch.cat([p.grad.flatten() for p in params])
        if c.num_gpus > 1:
            torch.distributed.all_reduce(flat)
            flat /= c.num_gpus
        training_stats.report0('Progress/nonfinite_grads', (~torch.isfinite(flat)).sum())
        torch.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad = g.reshape(p.shape)
    phase.opt.step()

#----------------------------------------------------------------------------

def tick_maintenance(c, s, done):
    """Once per tick: progress line, image grid, snapshot + checkpoint, metrics, stats; all ranks call it."""
    tick_end_time = time.time()
    tick_nimg = max(s.cur_nimg - s.tick_start_nimg, 1)
    total_sec = tick_end_time - s.start_time
    sec_per_kimg = (tick_end_time - s.tick_start_time) / tick_nimg * 1e3
    eta = max(c.total_kimg * 1000 - s.cur_nimg, 0) / 1e3 * sec_per_kimg
    rep = training_stats.report0
    fields = [f"tick {rep('Progress/tick', s.cur_tick):<5d}", f"kimg {rep('Progress/kimg', s.cur_nimg / 1e3):<8.1f}",
              f"time {dnnlib.util.format_time(rep('Timing/total_sec', total_sec)):<12s}",
              f"sec/tick {rep('Timing/sec_per_tick', tick_end_time - s.tick_start_time):<7.1f}",
              f"sec/kimg {rep('Timing/sec_per_kimg', sec_per_kimg):<7.2f}",
              f"maintenance {rep('Timing/maintenance_sec', s.maintenance_time):<6.1f}",
              f"cpumem {rep('Resources/cpu_mem_gb', ckpt.cpu_mem_gb()):<6.2f}",
              f"gpumem {rep('Resources/peak_gpu_mem_gb', ckpt.peak_gpu_mem_gb(s.device)):<6.2f}",
              f"augment {rep('Progress/augment', float(s.augment_pipe.p) if s.augment_pipe is not None else 0):.3f}",
              f"eta {dnnlib.util.format_time(eta)}"]
    rep('Timing/total_hours', total_sec / 3600)
    rep('Timing/total_days', total_sec / (24 * 3600))
    print0(c, ' '.join(fields))

    # Save image snapshot.
    tick_due = lambda ticks: ticks is not None and (done or s.stop or s.cur_tick % ticks == 0)
    if c.rank == 0 and tick_due(c.image_snapshot_ticks):
        save_image_grid(_generate_grid(s), os.path.join(c.run_dir, f'fakes{s.cur_nimg // 1000:06d}.png'), drange=[-1, 1], grid_size=s.grid_size)

    # Save network snapshot and training checkpoint (gathering every rank's RNG state).
    snapshot_path = None
    if tick_due(c.network_snapshot_ticks) or s.stop:
        if c.num_gpus > 1:
            for module in [s.G, s.D, s.G_ema]:
                misc.check_ddp_consistency(module, ignore_regex=r'.*\.[^.]+_(avg|ema)')
        snapshot_path, s.last_checkpoint = save_checkpoint(c, s)

    # Evaluate metrics (by name: training does not import metrics).
    if snapshot_path is not None and len(c.metrics) > 0:
        print0(c, 'Evaluating metrics...')
        results = dnnlib.util.call_func_by_name(func_name='metrics.metric_main.run_metrics_on_snapshot', metrics=c.metrics,
            G_ema=s.G_ema, dataset_kwargs=c.training_set_kwargs, run_dir=c.run_dir, snapshot_path=snapshot_path,
            num_gpus=c.num_gpus, rank=c.rank, device=s.device)
        for result in results if isinstance(results, list) else []:
            for name, value in result.get('results', {}).items():
                rep(f'Metrics/{name}', value)

    # Collect statistics (the one cross-rank sync of the tick) and write logs.
    s.stats_collector.update()
    stats_dict = s.stats_collector.as_dict()
    timestamp = time.time()
    if s.stats_jsonl is not None:
        s.stats_jsonl.write(json.dumps(dict(stats_dict, timestamp=timestamp)) + '\n')
        s.stats_jsonl.flush()
    if s.stats_tfevents is not None:
        for name, value in stats_dict.items():
            s.stats_tfevents.add_scalar(name, value.mean, global_step=int(s.cur_nimg / 1e3), walltime=timestamp - s.start_time)
        s.stats_tfevents.flush()

    s.cur_tick += 1
    s.tick_start_nimg, s.tick_start_time = s.cur_nimg, time.time()
    s.maintenance_time = s.tick_start_time - tick_end_time


def save_checkpoint(c, s):
    """Write network-snapshot-KIMG.pt and training-state-KIMG.pt (rank 0), keep the last few; all ranks call it."""
    rng_states = [ckpt.get_rng_state()]
    if c.num_gpus > 1:
        rng_states = [None] * c.num_gpus
        torch.distributed.all_gather_object(rng_states, ckpt.get_rng_state())
    if c.rank != 0:
        return None, None
    kimg = s.cur_nimg // 1000
    common = dict(G=s.G, D=s.D, G_ema=s.G_ema, augment_pipe=s.augment_pipe, training_set_kwargs=dict(c.training_set_kwargs), cur_nimg=s.cur_nimg)
    snapshot_path = os.path.join(c.run_dir, ckpt.SNAPSHOT_FMT.format(kimg=kimg))
    snapshot.save_snapshot(snapshot_path, **common)
    state = dict(cur_nimg=s.cur_nimg, cur_tick=s.cur_tick + 1, batch_idx=s.batch_idx, sampler_position=s.cur_nimg,
                 num_gpus=c.num_gpus, batch_size=c.batch_size, random_seed=c.random_seed, rng_states=rng_states,
                 opt_states={name: opt.state_dict() for name, opt in s.opts.items()},
                 loss_state=s.loss.state_dict() if hasattr(s.loss, 'state_dict') else {},
                 augment_p=float(s.augment_pipe.p) if s.augment_pipe is not None else None,
                 ada_state=s.ada.state_dict() if s.ada is not None else None,
                 progressive_state=s.progressive.state_dict() if hasattr(s.progressive, 'state_dict') else None)
    checkpoint_path = os.path.join(c.run_dir, ckpt.CHECKPOINT_FMT.format(kimg=kimg))
    snapshot.save_snapshot(checkpoint_path, **common, extra=dict(training_state=state))
    ckpt.prune_checkpoints(c.run_dir, c.checkpoint_keep)
    return snapshot_path, checkpoint_path

#----------------------------------------------------------------------------

def _is_ganforge_file(path):
    """True for local ganforge .pt files (snapshots, checkpoints); NVlabs pickles and URLs go through load_network."""
    if dnnlib.util.is_url(path, allow_file_urls=True):
        return False
    with open(path, 'rb') as f:
        return f.read(2) == b'PK'  # torch.save zip container


def _load_weights(s, path, data, exact):
    """Copy G, D, G_ema from a snapshot, checkpoint or NVlabs pickle; the augment pipe's p only when
    continuing exactly (a weights-only resume restarts p at augment_p, as NVlabs does)."""
    nets = network_loader.load_network(path, device=s.device)
    for name in ['G', 'D', 'G_ema']:
        if nets.get(name) is not None:
            misc.copy_params_and_buffers(nets[name], s[name], require_all=data is not None)
    if exact and s.augment_pipe is not None and nets.get('augment_pipe') is not None:
        misc.copy_params_and_buffers(nets['augment_pipe'], s.augment_pipe)


def _load_training_state(c, s, state):
    """Restore optimizers, loss state, ADA, progressive schedule and this rank's RNG state."""
    if state['batch_size'] != c.batch_size or state['num_gpus'] != c.num_gpus:
        print0(c, f"Warning: checkpoint was written with batch {state['batch_size']} on {state['num_gpus']} ranks, now "
                  f"batch {c.batch_size} on {c.num_gpus}: the continuation is valid but not identical to an uninterrupted run.")
    for name, opt in s.opts.items():
        opt.load_state_dict(state['opt_states'][name])
    if hasattr(s.loss, 'load_state_dict') and state.get('loss_state'):
        s.loss.load_state_dict(state['loss_state'])
    if s.augment_pipe is not None and state.get('augment_p') is not None:
        s.augment_pipe.p.copy_(torch.as_tensor(state['augment_p']))
    if s.ada is not None and state.get('ada_state') is not None:
        s.ada.load_state_dict(state['ada_state'])
    if s.progressive is not None and state.get('progressive_state') is not None:
        s.progressive.load_state_dict(state['progressive_state'])
    if c.rank < len(state['rng_states']):
        ckpt.set_rng_state(state['rng_states'][c.rank])


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
def _generate_grid(s):
    return torch.cat([s.G_ema(z=z, c=c, noise_mode='const').cpu() for z, c in zip(s.grid_z, s.grid_c)]).numpy()


def _any_rank(flag, device):
    """True if `flag` is set on any rank (an all_reduce; call on every rank)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return bool(flag)
    t = torch.tensor([int(flag)], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def print0(c, *args):
    if c.rank == 0:
        print(*args, flush=True)
