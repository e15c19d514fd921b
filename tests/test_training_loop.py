"""Training loop: a tiny CPU run writes the documented files, a loadable snapshot and sane stats;
helpers (image grid, checkpoint bookkeeping, EMA formula) against hand-made references."""

import json
import os
import signal

import numpy as np
import PIL.Image
import pytest
import torch

import dnnlib
from torch_utils import snapshot
from training import network_loader
from training import checkpoint, demo_dataset, training_loop

E = dnnlib.EasyDict

#----------------------------------------------------------------------------
# Shared tiny setup (also used by test_resume.py and test_ddp.py).

def tiny_dataset(tmp_dir, num_images=32, resolution=16):
    """A small demo dataset zip (cached per directory)."""
    return demo_dataset.ensure_demo_dataset(resolution=resolution, num_images=num_images,
                                            path=os.path.join(tmp_dir, f'demo{resolution}-{num_images}.zip'), verbose=False)


def tiny_config(run_dir, data_path, **overrides):
    """training_loop kwargs for a 16px net that trains a step in ~0.1 s on one CPU core."""
    c = E(
        run_dir=str(run_dir),
        training_set_kwargs=E(class_name='training.dataset.ImageFolderDataset', path=data_path, use_labels=False, xflip=False),
        data_loader_kwargs=E(num_workers=0),
        G_kwargs=E(class_name='training.networks_stylegan2.Generator', z_dim=32, w_dim=32, mapping_kwargs=E(num_layers=2),
                   channel_base=256, channel_max=32, num_fp16_res=0, conv_clamp=None),
        D_kwargs=E(class_name='training.networks_stylegan2.Discriminator', channel_base=256, channel_max=32, num_fp16_res=0,
                   conv_clamp=None, epilogue_kwargs=E(mbstd_group_size=2)),
        G_opt_kwargs=E(class_name='torch.optim.Adam', lr=0.0025, betas=[0, 0.99], eps=1e-8),
        D_opt_kwargs=E(class_name='torch.optim.Adam', lr=0.0025, betas=[0, 0.99], eps=1e-8),
        augment_kwargs=E(class_name='training.augment.AugmentPipe', xflip=1, rotate90=1, xint=1, brightness=1, contrast=1),
        loss_kwargs=E(class_name='training.loss.StyleGAN2Loss', r1_gamma=1, pl_weight=2, style_mixing_prob=0.9),
        augment_p=0.1, ada_target=0.6, ada_interval=2, ada_kimg=1,
        batch_size=4, batch_gpu=2, G_reg_interval=2, D_reg_interval=4, ema_kimg=0.01, ema_rampup=0.05,
        total_kimg=0.024, kimg_per_tick=0.008, image_snapshot_ticks=1, network_snapshot_ticks=1,
        image_grid_size=(4, 2), device='cpu', cudnn_benchmark=False,
    )
    c.update(overrides)
    return c


@pytest.fixture(scope='module')
def data_path(tmp_path_factory):
    return tiny_dataset(str(tmp_path_factory.mktemp('data')))

#----------------------------------------------------------------------------

def test_tiny_run_writes_documented_files(tmp_path, data_path):
    run_dir = tmp_path / 'run'
    status = training_loop.training_loop(**tiny_config(run_dir, data_path))
    assert status == 'done'
    names = os.listdir(run_dir)
    for name in ['log.txt', 'stats.jsonl', 'reals.png', 'fakes_init.png', 'fakes000000.024.png',
                 'network-snapshot-000000.024.pt', 'training-state-000000.024.pt']:
        assert name in names, f'{name} missing from {sorted(names)}'
    # Fractional ticks (0.008 kimg) end at 4, 12, 20 and 24 images: one snapshot each, none overwritten.
    assert sorted(n for n in names if n.startswith('network-snapshot-')) == [
        f'network-snapshot-000000.{n:03d}.pt' for n in [4, 12, 20, 24]]
    assert any(n.startswith('events.out.tfevents.') for n in names)
    assert not any(n.startswith('.tmp-') for n in names)

    # Grids: reals are 4x2 tiles of 16px RGB images.
    assert PIL.Image.open(run_dir / 'reals.png').size == (4 * 16, 2 * 16)
    assert PIL.Image.open(run_dir / 'fakes000000.024.png').size == (4 * 16, 2 * 16)

    # stats.jsonl: one line per tick, kimg increasing; every minibatch counted its non-finite gradients (none).
    lines = [json.loads(l) for l in open(run_dir / 'stats.jsonl')]
    kimg = [l['Progress/kimg']['mean'] for l in lines]
    assert len(lines) == 4 and all(b > a for a, b in zip(kimg, kimg[1:])), kimg
    assert abs(kimg[-1] - 0.024) < 1e-6
    assert sum(l['Progress/nonfinite_grads']['num'] for l in lines) > 0
    assert all(l['Progress/nonfinite_grads']['mean'] == 0 for l in lines)
    assert 'Loss/G/loss' in lines[-1] and np.isfinite(lines[-1]['Loss/D/loss']['mean'])
    log = open(run_dir / 'log.txt').read()
    assert 'tick 3' in log and 'sec/kimg' in log and 'augment' in log and 'eta' in log

    # The snapshot loads without running code and generates images.
    nets = network_loader.load_network(str(run_dir / 'network-snapshot-000000.024.pt'))
    assert nets['cur_nimg'] == 24
    img = nets['G_ema'](torch.randn([2, 32]), None, noise_mode='const')
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
    state = checkpoint.read_checkpoint(str(run_dir / 'training-state-000000.024.pt'))['extra']['training_state']
    assert state['cur_nimg'] == 24 and state['batch_idx'] == 6 and set(state['opt_states']) == {'G', 'D'}
    assert 'pl_mean' in state['loss_state'][0] and state['ada_state'][0]['num_updates'] == 6


def test_ema_follows_nvlabs_formula(tmp_path, data_path):
    # One minibatch with ramp-up: beta = 0.5 ** (batch / max(min(ema_nimg, cur_nimg * rampup), 1e-8)) with cur_nimg = 0
    # gives beta = 0, so G_ema equals G after the first step; without ramp-up, beta = 0.5 ** (4 / 10).
    for rampup, beta in [(0.05, 0.0), (None, 0.5 ** (4 / 10))]:
        c = tiny_config(tmp_path / f'run{rampup}', data_path, total_kimg=0.004, ema_rampup=rampup, augment_kwargs=None,
                        image_snapshot_ticks=None, network_snapshot_ticks=1, ada_target=None)
        training_loop.training_loop(**c)
        data = checkpoint.read_checkpoint(checkpoint.find_latest_checkpoint(str(tmp_path / f'run{rampup}')))
        torch.manual_seed(c.random_seed if 'random_seed' in c else 0)
        init = dnnlib.util.construct_class_by_name(**c.G_kwargs, c_dim=0, img_resolution=16, img_channels=3).state_dict()
        G, G_ema = data['G']['state_dict'], data['G_ema']['state_dict']
        key = 'synthesis.b16.conv1.weight'
        expected = G[key] + (init[key] - G[key]) * beta  # p.lerp(p_ema, beta) with p_ema = initial weights
        assert torch.allclose(G_ema[key], expected, atol=1e-6)
        assert not torch.equal(G[key], init[key])


def test_image_grid_layout(tmp_path):
    # NVlabs layout: image (gy, gx) occupies rows gy*H.., cols gx*W..; drange maps to 0..255.
    img = np.zeros([6, 3, 2, 2], dtype=np.float32)
    for i in range(6):
        img[i] = i / 5 * 2 - 1
    path = str(tmp_path / 'g.png')
    training_loop.save_image_grid(img, path, drange=[-1, 1], grid_size=(3, 2))
    out = np.asarray(PIL.Image.open(path))
    assert out.shape == (4, 6, 3)
    for i in range(6):
        gy, gx = divmod(i, 3)
        assert (out[gy * 2:(gy + 1) * 2, gx * 2:(gx + 1) * 2] == round(i / 5 * 255)).all()


def test_checkpoint_listing_pruning_and_rng(tmp_path):
    run_dir = str(tmp_path)
    for label in ['000000', '000004', '000012', '000008', '000004.500']:
        torch.save({'extra': {'training_state': {'k': label}}}, os.path.join(run_dir, f'training-state-{label}.pt'))
    open(os.path.join(run_dir, '.tmp-training-state-000016.pt.abc'), 'wb').write(b'partial')
    paths = checkpoint.list_checkpoints(run_dir)
    assert [os.path.basename(p) for p in paths] == [f'training-state-{k}.pt' for k in ['000000', '000004', '000004.500', '000008', '000012']]
    checkpoint.prune_checkpoints(run_dir, keep=2)
    assert checkpoint.remove_stale_temporaries(run_dir) == ['.tmp-training-state-000016.pt.abc']
    assert sorted(os.listdir(run_dir)) == ['training-state-000008.pt', 'training-state-000012.pt']

    # Labels: NVlabs whole kimg with whole-kimg ticks; the images past it with fractional ticks.
    assert checkpoint.kimg_label(4032, 4) == '000004' and checkpoint.kimg_label(4500, 0.5) == '000004.500'
    assert checkpoint.kimg_label(5000, 0.5) == '000005' and checkpoint.kimg_label(24, 0.008) == '000000.024'

    # A damaged newest file is skipped with a warning.
    open(os.path.join(run_dir, 'training-state-000020.pt'), 'wb').write(b'PK\x03\x04truncated')
    with pytest.warns(UserWarning, match='training-state-000020.pt'):
        assert checkpoint.find_latest_checkpoint(run_dir).endswith('training-state-000012.pt')
    with pytest.raises(snapshot.SnapshotCorruptError, match='training-state-000020.pt: corrupt or truncated'):
        checkpoint.read_checkpoint(os.path.join(run_dir, 'training-state-000020.pt'))

    # RNG states round-trip through weights_only torch.save.
    state = checkpoint.get_rng_state()
    a = (torch.rand(3), np.random.rand(3), __import__('random').random())
    torch.save(state, os.path.join(run_dir, 'rng.pt'))
    checkpoint.set_rng_state(torch.load(os.path.join(run_dir, 'rng.pt'), weights_only=True))
    b = (torch.rand(3), np.random.rand(3), __import__('random').random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_run_dir_naming_and_claiming(tmp_path):
    from training import run_dir as rundir
    outdir = str(tmp_path)
    assert rundir.next_run_dir(outdir, 'x').endswith('00000-x')
    os.makedirs(os.path.join(outdir, '00000-x'))
    os.makedirs(os.path.join(outdir, '00003-y'))
    assert rundir.next_run_dir(outdir, 'x').endswith('00004-x')
    claimed = [rundir.claim_new_run_dir(outdir, 'z') for _ in range(2)]
    assert [os.path.basename(p) for p in claimed] == ['00004-z', '00005-z'] and all(os.path.isdir(p) for p in claimed)
    assert checkpoint.step_seed(1, 2, 3) == checkpoint.step_seed(1, 2, 3) != checkpoint.step_seed(1, 3, 2)


def test_progressive_growing_run(tmp_path, data_path):
    # 4x4 for 1 minibatch, fade 8x8 over 1, stabilize 1, fade 16x16 ...: the schedule reaches 16px within the run.
    c = tiny_config(tmp_path / 'prog', data_path, total_kimg=0.02, kimg_per_tick=0.02, image_snapshot_ticks=1, augment_kwargs=None,
                    ada_target=None, progressive_kwargs=E(class_name='training.progressive.ProgressiveSchedule', resolution=16,
                    start_res=4, stabilize_kimg=0.004, fade_kimg=0.004, G_reg_interval=2, D_reg_interval=4))
    c.G_kwargs = E(c.G_kwargs, class_name='training.progressive.ProgressiveGenerator')
    c.D_kwargs = E(c.D_kwargs, class_name='training.progressive.ProgressiveDiscriminator')
    assert training_loop.training_loop(**c) == 'done'
    data = checkpoint.read_checkpoint(checkpoint.find_latest_checkpoint(str(tmp_path / 'prog')))
    # The last minibatch started at 16 images: 4px 0-4, fade 8px 4-8, 8px 8-12, fade 16px 12-16 -> 16px, alpha 1.
    assert data['extra']['training_state']['progressive_state']['lod'] == [16, 1.0]
    nets = network_loader.load_network(str(tmp_path / 'prog' / 'network-snapshot-000000.020.pt'))
    assert nets['G_ema'](torch.randn([1, 32]), None).shape == (1, 3, 16, 16)


class SigtermLoss(__import__('training.loss', fromlist=['StyleGAN2Loss']).StyleGAN2Loss):
    """Sends SIGTERM to its own process at the third minibatch (a SLURM preemption)."""

    def accumulate_gradients(self, phase, **kwargs):
        super().accumulate_gradients(phase, **kwargs)
        if phase == 'Dmain' and kwargs['cur_nimg'] == 8:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_writes_checkpoint_and_exits(tmp_path, data_path):
    before = signal.getsignal(signal.SIGTERM)
    c = tiny_config(tmp_path / 'term', data_path, total_kimg=1, image_snapshot_ticks=None, network_snapshot_ticks=None,
                    augment_kwargs=None, ada_target=None, batch_gpu=4)
    c.loss_kwargs = E(c.loss_kwargs, class_name='tests.test_training_loop.SigtermLoss')
    assert training_loop.training_loop(**c) == 'interrupted'
    state = checkpoint.read_checkpoint(checkpoint.find_latest_checkpoint(str(tmp_path / 'term')))['extra']['training_state']
    assert state['batch_idx'] == 3  # stopped right after the minibatch that got the signal
    assert 'Interrupted by signal' in open(tmp_path / 'term' / 'log.txt').read()
    assert signal.getsignal(signal.SIGTERM) == before  # handlers restored


def test_conditional_grid_and_run(tmp_path, data_path):
    # NVlabs grid with labels: one class per row, rows cycling through the sorted classes.
    from training.dataset import ImageFolderDataset
    ds = ImageFolderDataset(data_path, use_labels=True)
    (gw, gh), images, labels = training_loop.setup_snapshot_image_grid(ds, grid_size=(4, 6))
    assert (gw, gh) == (4, 6) and images.shape == (24, 3, 16, 16) and labels.shape == (24, 3)
    rows = labels.argmax(axis=1).reshape(6, 4)
    assert (rows == rows[:, :1]).all() and list(rows[:, 0]) == [0, 1, 2, 0, 1, 2]

    # A conditional run trains and its G_ema takes labels.
    c = tiny_config(tmp_path / 'cond', data_path, total_kimg=0.004, augment_kwargs=None, ada_target=None, image_snapshot_ticks=None)
    c.training_set_kwargs = dict(c.training_set_kwargs, use_labels=True)
    assert training_loop.training_loop(**c) == 'done'
    G = network_loader.load_network(str(tmp_path / 'cond' / 'network-snapshot-000000.004.pt'))['G_ema']
    assert G.c_dim == 3 and G(torch.randn([2, 32]), torch.eye(3)[:2]).shape == (2, 3, 16, 16)


def test_weights_only_resume_restarts_augment_p(tmp_path, data_path):
    # NVlabs: --resume=<network pickle> copies G, D, G_ema and restarts p at augment_p; an exact
    # continuation (training-state file) keeps the p the run had reached.
    src = tmp_path / 'src'
    assert training_loop.training_loop(**tiny_config(src, data_path, total_kimg=0.008)) == 'done'
    snap = sorted(f for f in os.listdir(src) if f.startswith('network-snapshot-'))[-1]
    state = sorted(f for f in os.listdir(src) if f.startswith('training-state-'))[-1]
    reached_p = float(network_loader.load_network(str(src / snap))['augment_pipe'].p)
    assert reached_p != 0.1  # ada_kimg=1 moves p every ada_interval minibatches

    captured = {}
    def capture(run):
        captured['p'] = float(run.augment_pipe.p)
        captured['G'] = {k: v.clone() for k, v in run.G.state_dict().items()}
    original_setup = training_loop.setup
    try:
        training_loop.setup = lambda cfg, run: (original_setup(cfg, run), capture(run))[0]
        for resume, expect_p in [(src / snap, 0.1), (src / state, reached_p)]:
            cfg = tiny_config(tmp_path / resume.name, data_path, resume=str(resume), total_kimg=0.0)
            training_loop.training_loop(**cfg)
            assert captured['p'] == pytest.approx(expect_p), resume.name
            G_src = network_loader.load_network(str(resume))['G']
            for k, v in G_src.state_dict().items():
                assert torch.equal(captured['G'][k], v), k
    finally:
        training_loop.setup = original_setup


def test_metric_hook_runs_on_every_snapshot(tmp_path, data_path):
    # training does not import metrics: the caller passes the hook (train.py: metric_main.run_metrics_on_snapshot).
    calls = []
    def hook(metrics, G_ema, snapshot_path, **kwargs):
        calls.append((list(metrics), os.path.basename(snapshot_path), kwargs['rank']))
        return [{'results': {'fake_metric': float(len(calls))}}]
    c = tiny_config(tmp_path / 'm', data_path, total_kimg=0.008, augment_kwargs=None, ada_target=None, image_snapshot_ticks=None)
    assert training_loop.training_loop(**c, metrics=['fid1k_full'], metric_hook=hook) == 'done'
    assert calls == [(['fid1k_full'], 'network-snapshot-000000.004.pt', 0), (['fid1k_full'], 'network-snapshot-000000.008.pt', 0)]
    lines = [json.loads(l) for l in open(tmp_path / 'm' / 'stats.jsonl')]
    assert [l['Metrics/fake_metric']['mean'] for l in lines] == [1.0, 2.0]
    with pytest.raises(ValueError, match='metric_hook'):
        training_loop.training_loop(**tiny_config(tmp_path / 'n', data_path), metrics=['fid1k_full'])
