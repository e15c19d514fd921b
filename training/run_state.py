"""The state of a training run, with one owner: `TrainingConfig` (what the run was asked to do,
fixed), `RunState` (what it has built and how far it is) and `CheckpointIO` (what a checkpoint
holds, and nothing else).

Every stateful component is registered once with the run's `CheckpointIO`, under the key it has in
the checkpoint, and is saved and restored through its own `state_dict()` / `load_state_dict()`;
save and restore are the same loop over the same registry, so they cannot drift apart. Networks are
registered as modules and stored as snapshot records (`torch_utils.snapshot`; the augment pipe's
record carries p as NVlabs pickles do, but p is restored from `augment_p` only, and only when
continuing exactly: a weights-only resume restarts p at augment_p, as NVlabs does); everything
else goes into the snapshot's `extra['training_state']`:

    version        2
    cur_nimg, cur_tick, batch_idx      counters (inline: at the top level)
    num_gpus, batch_size               the layout that wrote the file (inline; a change only warns)
    opt_states     {'G': ..., 'D': ...} optimizer state dicts
    loss_state     [per rank: {'pl_mean': ...}]                  (each rank keeps its own running PL mean, as NVlabs)
    augment_p      the augment pipe's p (float)                  -- with augmentation
    ada_state      [per rank: AdaController num_updates, sign sums since the last adjustment]  -- with --aug=ada
    progressive_state {'lod': [res, alpha]}                      -- with --cfg=progressive
    sampler        {'position': images consumed}
    rng_states     [per rank: torch, CUDA, numpy, python RNG states]

Per-rank parts (`register(..., per_rank=True)`) are gathered from every rank into a list indexed by
rank; each rank restores its own entry (rank 0's when the file was written by fewer ranks).

Adding a stateful component: give it `state_dict()` / `load_state_dict()` returning / taking plain
data (what `torch.load(weights_only=True)` reads) and call `run.checkpoint.register(key, obj)` where
the loop builds it (`per_rank=True` when every rank holds a different value). Nothing else changes.
"""

import dataclasses
import math
import time
import typing

import torch

from torch_utils import snapshot
from torch_utils import misc
from training import checkpoint as ckpt

STATE_VERSION = 2

#----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """The training loop's arguments (train.py writes them to training_options.json)."""
    run_dir:                str   = '.'     # Output directory; rank 0 writes, all ranks must pass the same.
    training_set_kwargs:    dict  = dataclasses.field(default_factory=dict)  # Training set: class_name + constructor kwargs.
    data_loader_kwargs:     dict  = dataclasses.field(default_factory=dict)  # DataLoader kwargs (num_workers, pin_memory, prefetch_factor).
    G_kwargs:               dict  = dataclasses.field(default_factory=dict)  # Generator: class_name + kwargs (resolution, channels, c_dim come from the data).
    D_kwargs:               dict  = dataclasses.field(default_factory=dict)  # Discriminator: class_name + kwargs.
    G_opt_kwargs:           dict  = dataclasses.field(default_factory=dict)  # Generator optimizer: class_name + kwargs (lr, betas, eps).
    D_opt_kwargs:           dict  = dataclasses.field(default_factory=dict)  # Discriminator optimizer: class_name + kwargs.
    augment_kwargs:         dict  = None    # Augmentation pipe: class_name + kwargs; None = no augmentation.
    loss_kwargs:            dict  = dataclasses.field(default_factory=dict)  # Loss: class_name + kwargs (r1_gamma, pl_weight, ...).
    progressive_kwargs:     dict  = None    # Progressive growing schedule: class_name + kwargs; None = disabled.
    metrics:                list  = dataclasses.field(default_factory=list)  # Metric names evaluated on every network snapshot (needs metric_hook).
    metric_hook:            typing.Callable = None  # metrics.metric_main.run_metrics_on_snapshot, passed in by train.py (docs/ARCHITECTURE.md).
    random_seed:            int   = 0       # Seed of weights, latents, noise and data order.
    num_gpus:               int   = 1       # Total number of processes (ranks) over all nodes.
    rank:                   int   = 0       # Rank of this process, in [0, num_gpus).
    device:                 object = None   # torch device of this rank; None = cuda if available, else cpu.
    batch_size:             int   = 4       # Global minibatch, images summed over all ranks.
    batch_gpu:              int   = 4       # Images per rank per forward/backward round (accumulates when < batch_size / num_gpus).
    ema_kimg:               float = 10      # Half-life of the G_ema weights, in kimg.
    ema_rampup:             float = 0.05    # Half-life at most cur_nimg * ema_rampup early on; None = no ramp-up.
    G_reg_interval:         int   = 4       # Minibatches between lazy G regularization; None = every minibatch, with the main loss.
    D_reg_interval:         int   = 16      # Minibatches between lazy D regularization; None = every minibatch, with the main loss.
    augment_p:              float = 0       # Initial (or fixed) augmentation probability.
    ada_target:             float = None    # ADA target of E[sign(D(real))]; None = fixed p.
    ada_interval:           int   = 4       # Minibatches between ADA p adjustments.
    ada_kimg:               float = 500     # ADA speed: p can go from 0 to 1 in this many kimg.
    total_kimg:             float = 25000   # Training length, in kimg of real images shown to D (may be fractional).
    kimg_per_tick:          float = 4       # Progress line, stats and maintenance interval, in kimg.
    image_snapshot_ticks:   int   = 50      # Ticks between fakes*.png grids; None = never.
    network_snapshot_ticks: int   = 50      # Ticks between network snapshots and training checkpoints; None = never.
    checkpoint_keep:        int   = 3       # Keep the newest this many training-state files (None = all).
    image_grid_size:        tuple = None    # (width, height) of the image grids in images; None = NVlabs rule (fills ~7680x4320 px).
    resume:                 str   = None    # training-state path (exact continuation) or network snapshot / NVlabs pickle / URL (weights only).
    resume_data:            bytes = None    # The resume file's bytes when the caller read it already (train.py's resume plan); None = read here.
    cudnn_benchmark:        bool  = True    # torch.backends.cudnn.benchmark (see training_loop's docstring).
    allow_tf32:             bool  = False   # TF32 for matmul and cuDNN convolutions (see training_loop's docstring).
    abort_check_interval:   int   = 4       # Minibatches between cross-rank checks for SIGTERM / Ctrl-C (every one with a single process).

    def __post_init__(self):
        for name in ['total_kimg', 'kimg_per_tick', 'ema_kimg']:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f'training_loop: {name} must be a finite number >= 0, got {value!r}')

#----------------------------------------------------------------------------

class CheckpointIO:
    """Registry of the stateful parts of a run (see module docstring)."""

    def __init__(self, rank=0, num_gpus=1):
        self.rank, self.num_gpus = rank, num_gpus
        self.modules = {}    # name -> torch module (or None), stored as snapshot records
        self.parts = {}      # key -> object with state_dict / load_state_dict, stored in training_state
        self.inline = set()  # keys whose dict state sits at the top level of training_state
        self.per_rank = set()  # keys stored as a list with one entry per rank

    def register_module(self, name, module):
        if name not in snapshot.NETWORK_KEYS:
            raise ValueError(f'CheckpointIO: network {name!r} is not one of {snapshot.NETWORK_KEYS}')
        self.modules[name] = module

    def register(self, key, part, inline=False, per_rank=False):
        if key in self.parts:
            raise ValueError(f'CheckpointIO: {key!r} is registered twice')
        if not (callable(getattr(part, 'state_dict', None)) and callable(getattr(part, 'load_state_dict', None))):
            raise TypeError(f'CheckpointIO: {key!r} ({type(part).__name__}) needs state_dict() and load_state_dict()')
        self.parts[key] = part
        if inline:
            self.inline.add(key)
        if per_rank:
            self.per_rank.add(key)

    def state_dict(self):
        """The training_state dict; call on every rank (parts such as the RNG states gather from all ranks)."""
        state = dict(version=STATE_VERSION)
        for key, part in self.parts.items():
            value = part.state_dict()
            if key in self.per_rank:
                value = self._gather(snapshot.to_plain(value, key))
            if key in self.inline:
                state.update(value)
            else:
                state[key] = value
        return state

    def load_state_dict(self, state, name):
        """Restore every registered part from training_state `state` (of file `name`)."""
        if state.get('version') != STATE_VERSION:
            raise ValueError(f'{name}: training state version {state.get("version", 1)!r}, this ganforge reads version {STATE_VERSION}; '
                             f'resume from its network snapshot instead (weights only)')
        for key, part in self.parts.items():
            if key in self.inline:
                part.load_state_dict(state)
            elif key not in state:
                raise ValueError(f'{name}: the checkpoint has no {key!r}: it was written by a run with other options '
                                 f'(e.g. --aug or --cfg); resume from its network snapshot instead')
            elif key in self.per_rank:
                values = state[key]
                part.load_state_dict(values[self.rank] if self.rank < len(values) else values[0])
            else:
                part.load_state_dict(state[key])

    def _gather(self, value):
        """[value of rank 0, rank 1, ...] on every rank (call on every rank)."""
        if self.num_gpus == 1:
            return [value]
        values = [None] * self.num_gpus
        torch.distributed.all_gather_object(values, value)
        return values

    def load_modules(self, nets, require_all):
        """Copy the networks G, D, G_ema of `nets` (network_loader.load_network_bytes result) into the
        registered ones (the augment pipe holds no learned state: its p is a registered part)."""
        for name, module in self.modules.items():
            if module is None or nets.get(name) is None or name == 'augment_pipe':
                continue
            misc.copy_params_and_buffers(nets[name], module, require_all=require_all)

    def snapshot(self, training_state=None, **meta):
        """Snapshot dict of the registered networks (a training checkpoint when `training_state` is given)."""
        extra = dict(training_state=training_state) if training_state is not None else None
        return snapshot.make_snapshot(**{k: self.modules.get(k) for k in snapshot.NETWORK_KEYS}, extra=extra, **meta)

#----------------------------------------------------------------------------
# Small parts.

@dataclasses.dataclass
class Counters:
    """How far the run is: images shown to D, ticks and minibatches done."""
    cur_nimg: int = 0
    cur_tick: int = 0
    batch_idx: int = 0

    def state_dict(self):
        return dataclasses.asdict(self)

    def load_state_dict(self, state):
        for field in dataclasses.fields(self):
            setattr(self, field.name, int(state[field.name]))


class Layout:
    """Batch and rank count that wrote a checkpoint; a different one continues validly, not identically."""

    def __init__(self, batch_size, num_gpus, say):
        self.batch_size, self.num_gpus, self.say = batch_size, num_gpus, say

    def state_dict(self):
        return dict(batch_size=self.batch_size, num_gpus=self.num_gpus)

    def load_state_dict(self, state):
        if (state['batch_size'], state['num_gpus']) != (self.batch_size, self.num_gpus):
            self.say(f"Warning: checkpoint was written with batch {state['batch_size']} on {state['num_gpus']} ranks, now "
                     f"batch {self.batch_size} on {self.num_gpus}: the continuation is valid but not identical to an uninterrupted run.")


class Group:
    """Several parts saved as one dict, e.g. the optimizers {'G': opt, 'D': opt}."""

    def __init__(self, parts):
        self.parts = dict(parts)

    def state_dict(self):
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state):
        for name, part in self.parts.items():
            part.load_state_dict(state[name])


class AugmentP:
    """The augment pipe's probability p (a 0-d buffer), saved as a float."""

    def __init__(self, augment_pipe):
        self.augment_pipe = augment_pipe

    def state_dict(self):
        return float(self.augment_pipe.p)

    def load_state_dict(self, state):
        self.augment_pipe.p.copy_(torch.as_tensor(state))


class SamplerPosition:
    """The data stream's position: the sampler restarts at the images consumed (== counters.cur_nimg)."""

    def __init__(self, sampler, counters):
        self.sampler, self.counters = sampler, counters

    def state_dict(self):
        return dict(position=self.counters.cur_nimg)

    def load_state_dict(self, state):
        self.sampler.start_index = int(state['position'])


class RngStates:
    """This process's RNG states (torch, CUDA, numpy, python); register per rank."""

    def state_dict(self):
        return ckpt.get_rng_state()

    def load_state_dict(self, state):
        ckpt.set_rng_state(state)

#----------------------------------------------------------------------------

@dataclasses.dataclass
class RunState:
    """What the training loop has built and how far it is (one per process)."""
    device:         torch.device
    checkpoint:     CheckpointIO
    counters:       Counters = dataclasses.field(default_factory=Counters)
    # Data.
    training_set:   object = None
    sampler:        object = None
    data_loader:    object = None
    data_iter:      object = None           # started after the checkpoint has placed the sampler
    # Networks, augmentation, loss, optimization.
    G:              torch.nn.Module = None
    D:              torch.nn.Module = None
    G_ema:          torch.nn.Module = None
    augment_pipe:   torch.nn.Module = None
    ada:            object = None           # training.augment.AdaController or None
    loss:           object = None
    progressive:    object = None           # training.progressive.ProgressiveSchedule or None
    phases:         list = dataclasses.field(default_factory=list)
    opts:           dict = dataclasses.field(default_factory=dict)
    avg_buffers:    list = dataclasses.field(default_factory=list)
    # Image grid.
    grid_size:      tuple = None
    grid_z:         tuple = ()
    grid_c:         tuple = ()
    # Run-time (not saved).
    signals:        object = None
    log:            object = None
    stats_collector: object = None
    stats_jsonl:    object = None
    stats_tfevents: object = None
    start_time:     float = dataclasses.field(default_factory=time.time)
    tick_start_nimg: int = 0
    tick_start_time: float = 0.0
    maintenance_time: float = 0.0
    stop:           bool = False
    last_checkpoint: str = None
