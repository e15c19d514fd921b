"""DDP on CPU: two gloo processes keep identical parameters, match one process with the same global
batch, and sanitize + count non-finite gradients injected on one rank."""

import json
import os

import pytest
import torch

from torch_utils import distributed
from training import checkpoint, training_loop
from training.loss import StyleGAN2Loss
from tests.test_training_loop import tiny_config, tiny_dataset

pytestmark = pytest.mark.slow


class RecordingLoss(StyleGAN2Loss):
    """StyleGAN2Loss that remembers its networks (so the test can dump every rank's parameters) and can
    poison one D gradient element with inf on one rank at the first minibatch."""
    last = None

    def __init__(self, *args, inject_rank=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.inject_rank = inject_rank
        self.injected = False
        RecordingLoss.last = self

    def accumulate_gradients(self, phase, **kwargs):
        super().accumulate_gradients(phase, **kwargs)
        if phase == 'Dmain' and not self.injected and distributed.get_rank() == self.inject_rank:
            next(p for p in self.D.parameters() if p.grad is not None).grad.view(-1)[0] = float('inf')
            self.injected = True


def _ddp_config(run_dir, data_path, **overrides):
    # Everything random that is drawn per rank (noise inputs, style mixing, PL noise, augmentation) is off,
    # so that two ranks and one process compute the same function of the same samples.
    c = tiny_config(run_dir, data_path, total_kimg=0.012, kimg_per_tick=0.004, image_snapshot_ticks=None, network_snapshot_ticks=100,
                    augment_kwargs=None, ada_target=None, augment_p=0, G_reg_interval=None, D_reg_interval=2, batch_gpu=2)
    c.G_kwargs = dict(c.G_kwargs, use_noise=False)
    # Plain SGD: parameter differences are lr x gradient differences (Adam would amplify float noise in tiny gradients).
    c.G_opt_kwargs = c.D_opt_kwargs = dict(class_name='torch.optim.SGD', lr=0.01)
    c.loss_kwargs = dict(class_name='tests.test_ddp.RecordingLoss', r1_gamma=1, pl_weight=0, style_mixing_prob=0)
    c.update(overrides)
    return c


def _worker(c):
    """Body of each spawned rank: train, then dump this rank's parameters."""
    rank = distributed.get_rank()
    training_loop.training_loop(**dict(c, rank=rank, num_gpus=distributed.get_world_size()))
    loss = RecordingLoss.last
    torch.save({'G': loss.G.state_dict(), 'D': loss.D.state_dict()}, os.path.join(c['run_dir'], f'rank{rank}.pt'))


@pytest.fixture(scope='module')
def data_path(tmp_path_factory):
    return tiny_dataset(str(tmp_path_factory.mktemp('data')))


def test_two_ranks_match_single_process(tmp_path, data_path):
    ddp_dir, single_dir = tmp_path / 'ddp', tmp_path / 'single'
    distributed.launch_local(_worker, 2, args=(_ddp_config(ddp_dir, data_path),), backend='gloo')
    r0, r1 = [torch.load(ddp_dir / f'rank{r}.pt', weights_only=True) for r in range(2)]
    for net in ['G', 'D']:
        for name in r0[net]:
            assert torch.equal(r0[net][name], r1[net][name]), f'{net}.{name} differs between ranks'

    # One process with the same global batch (4 = 2 ranks x 2) sees the same samples in the same minibatch-std groups.
    training_loop.training_loop(**_ddp_config(single_dir, data_path, batch_gpu=4))
    single = checkpoint.read_checkpoint(checkpoint.find_latest_checkpoint(str(single_dir)))
    for net in ['G', 'D']:
        for name, value in single[net]['state_dict'].items():
            assert torch.allclose(r0[net][name], value, rtol=1e-5, atol=1e-6), \
                f'{net}.{name}: 2 ranks vs 1 process max diff {(r0[net][name] - value).abs().max().item()}'
    stats = [json.loads(l) for l in open(ddp_dir / 'stats.jsonl')]
    assert sum(l['Progress/nonfinite_grads']['num'] * l['Progress/nonfinite_grads']['mean'] for l in stats) == 0


def test_nonfinite_gradients_are_sanitized_and_counted(tmp_path, data_path):
    run_dir = tmp_path / 'nan'
    c = _ddp_config(run_dir, data_path, total_kimg=0.008)
    c.loss_kwargs = dict(c.loss_kwargs, inject_rank=1)
    distributed.launch_local(_worker, 2, args=(c,), backend='gloo')
    r0, r1 = [torch.load(run_dir / f'rank{r}.pt', weights_only=True) for r in range(2)]
    for net in ['G', 'D']:
        for name in r0[net]:
            assert torch.isfinite(r0[net][name]).all(), f'{net}.{name} not finite'
            assert torch.equal(r0[net][name], r1[net][name]), f'{net}.{name} differs between ranks'
    stats = [json.loads(l) for l in open(run_dir / 'stats.jsonl')]
    count = sum(l['Progress/nonfinite_grads']['num'] * l['Progress/nonfinite_grads']['mean'] for l in stats)
    assert count == 1, f'expected the one injected inf to be counted, got {count}'
