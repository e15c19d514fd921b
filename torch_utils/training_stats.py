"""Training statistics: report scalars from anywhere on the device without host syncs, and
collect them once per tick, averaged across ranks.

    training_stats.report('Loss/G/loss', loss)      # any shape; accumulated on loss's device
    ...
    collector = training_stats.Collector(regex='.*')
    collector.update()                              # one sync per tick (all ranks must call it)
    collector['Loss/G/loss']                        # mean over everything reported since the last update

Each statistic is accumulated as the moments [count, sum, sum of squares] in float64 on the device
of the reported value. `Collector.update()` gathers the moments of every statistic that any
Collector matches, sums them across ranks with a single all_reduce, and resets the accumulators.
"""

import re

import numpy as np
import torch

_num_moments = 3            # [num_scalars, sum_of_scalars, sum_of_squares]
_counter_dtype = torch.float64  # accumulation dtype of the moments

_rank = 0
_sync_device = None         # device of the all_reduce (None = single process, no reduction)
_sync_called = False
_counters = dict()          # name -> device -> tensor [_num_moments]
_cumulative = dict()        # name -> tensor [_num_moments] on CPU, since the beginning
_known_names = set()

#----------------------------------------------------------------------------

def init_multiprocessing(rank, sync_device):
    """Enable cross-rank averaging. Call once per process before the first `Collector.update()`.

    Args:
        rank:        this process's rank.
        sync_device: device for the all_reduce ('cuda' for NCCL, CPU device for gloo), or None
                     for a single process.
    """
    global _rank, _sync_device
    if _sync_called:
        raise RuntimeError('training_stats.init_multiprocessing() must be called before the first Collector.update()')
    _rank = rank
    _sync_device = torch.device(sync_device) if sync_device is not None else None


def report(name, value):
    """Accumulate `value` (tensor of any shape, or number) under `name`; returns `value` unchanged.

    Non-finite elements are counted like the others (they make the mean non-finite), so that a
    diverging run is visible in the stats rather than hidden.
    """
    if name not in _counters:
        _counters[name] = dict()
    elems = value if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=_counter_dtype)  # Python floats stay exact
    if elems.numel() == 0:
        return value
    elems = elems.detach().flatten().to(_counter_dtype)
    moments = torch.stack([
        torch.ones_like(elems).sum(),
        elems.sum(),
        elems.square().sum(),
    ])
    device = moments.device
    if device not in _counters[name]:
        _counters[name][device] = torch.zeros_like(moments)
    _counters[name][device].add_(moments)
    return value


def report0(name, value):
    """Like `report`, but only rank 0 contributes (for values that are identical on every rank)."""
    report(name, value if _rank == 0 else [])
    return value


def reset():
    """Forget everything (for tests and for a fresh run in the same process)."""
    global _sync_called, _rank, _sync_device
    _counters.clear()
    _cumulative.clear()
    _known_names.clear()
    _sync_called = False
    _rank = 0
    _sync_device = None

#----------------------------------------------------------------------------

class Collector:
    """Collects the statistics whose names match `regex`.

    `update()` must be called by every rank at the same time (it synchronizes). After it, `mean`,
    `std` and `num` return the values accumulated between the two latest updates; with
    `keep_previous=True` a statistic that received nothing keeps its previous value.
    """

    def __init__(self, regex='.*', keep_previous=True):
        self._regex = re.compile(regex)
        self._keep_previous = keep_previous
        self._cumulative = dict()
        self._moments = dict()
        self.update()
        self._moments.clear()

    def names(self):
        """Names of the statistics that match the regex (reported on any rank of this process so far)."""
        return [name for name in sorted(_known_names | set(_counters)) if self._regex.fullmatch(name)]

    def update(self):
        """Synchronize across ranks and compute the deltas since the previous update."""
        if not self._keep_previous:
            self._moments.clear()
        for name, cumulative in _sync(self.names()):
            if name not in self._cumulative:
                self._cumulative[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
            delta = cumulative - self._cumulative[name]
            self._cumulative[name].copy_(cumulative)
            if float(delta[0]) != 0:
                self._moments[name] = delta

    def _get_delta(self, name):
        if not self._regex.fullmatch(name):
            raise KeyError(f'{name!r} does not match the collector regex {self._regex.pattern!r}')
        return self._moments.get(name, torch.zeros([_num_moments], dtype=_counter_dtype))

    def num(self, name):
        """Number of scalars reported for `name` in the last interval."""
        return int(self._get_delta(name)[0])

    def mean(self, name):
        """Mean of the scalars reported for `name` (NaN if none)."""
        delta = self._get_delta(name)
        if int(delta[0]) == 0:
            return float('nan')
        return float(delta[1] / delta[0])

    def std(self, name):
        """Standard deviation of the scalars reported for `name` (NaN if none)."""
        delta = self._get_delta(name)
        if int(delta[0]) == 0 or not np.isfinite(float(delta[1])):
            return float('nan')
        if int(delta[0]) == 1:
            return 0.0
        mean = float(delta[1] / delta[0])
        raw_var = float(delta[2] / delta[0])
        return float(np.sqrt(max(raw_var - np.square(mean), 0)))

    def as_dict(self):
        """{name: EasyDict(num, mean, std)} for every statistic with data in the last interval."""
        from dnnlib import EasyDict
        stats = EasyDict()
        for name in self.names():
            if name in self._moments:
                stats[name] = EasyDict(num=self.num(name), mean=self.mean(name), std=self.std(name))
        return stats

    def __getitem__(self, name):
        return self.mean(name)

#----------------------------------------------------------------------------

def _sync(names):
    """Reduce the accumulated moments of `names` across devices and ranks; returns [(name, cumulative)]."""
    global _sync_called
    if len(names) == 0:
        return []
    _sync_called = True

    # Every rank must reduce the same list in the same order: sort, and ranks that never reported a
    # name contribute zeros (names are made known to all ranks by the reduction of the name list).
    if _sync_device is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        all_names = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(all_names, sorted(names))
        names = sorted(set(n for lst in all_names for n in lst))

    deltas = []
    device = _sync_device if _sync_device is not None else torch.device('cpu')
    for name in names:
        delta = torch.zeros([_num_moments], dtype=_counter_dtype, device=device)
        for counter in _counters.get(name, {}).values():
            delta.add_(counter.to(device))
            counter.zero_()
        deltas.append(delta)
    deltas = torch.stack(deltas)

    if _sync_device is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(deltas)

    deltas = deltas.cpu()
    for idx, name in enumerate(names):
        _known_names.add(name)
        if name not in _cumulative:
            _cumulative[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
        _cumulative[name].add_(deltas[idx])
    return [(name, _cumulative[name]) for name in names]
