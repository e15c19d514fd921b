"""Training StyleGAN3 (--cfg=stylegan3-t / stylegan3-r): train.py presets against NVlabs stylegan3
train.py (written out by hand from shared/reference/nvlabs_stylegan3_facts.md), --gamma required,
tiny CPU runs with a stop and a bit-exact resume, weights-only resume from an NVlabs StyleGAN3 pickle,
and two DDP ranks keeping identical networks (magnitude EMAs included)."""

import json
import os

import pytest
import torch
from click.testing import CliRunner

import dnnlib
import train
from tests import nvlabs_pickle_writer as W
from tests.test_resume import _compare, _final_state
from tests.test_training_loop import tiny_config, tiny_dataset
from torch_utils import distributed
from training import checkpoint, training_loop

pytestmark = pytest.mark.usefixtures('one_thread')

TINY = ['--cbase=128', '--cmax=8', '--map=2', '--batch=4', '--mbstd-group=2', '--workers=0', '--device=cpu',
        '--aug=noaug', '--tick=0.004', '--snap=1']


@pytest.fixture(scope='module')
def data_path(tmp_path_factory):
    return tiny_dataset(str(tmp_path_factory.mktemp('data')))


def _run(args):
    return CliRunner().invoke(train.main, args, catch_exceptions=False)


def _dry_run_options(args):
    result = _run(args + ['--dry-run'])
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index('{'):result.output.index('\n}') + 2])

#----------------------------------------------------------------------------
# Presets.

@pytest.mark.parametrize('cfg', ['stylegan3-t', 'stylegan3-r'])
def test_presets_match_nvlabs_stylegan3(tmp_path, data_path, monkeypatch, cfg):
    monkeypatch.setattr(train.torch.cuda, 'is_available', lambda: True)  # the GPU preset (CUDA faked for the dry run)
    monkeypatch.setattr(train.torch.cuda, 'device_count', lambda: 8)
    o = _dry_run_options([f'--outdir={tmp_path}', f'--data={data_path}', f'--cfg={cfg}', '--device=cuda', '--gpus=8', '--batch=32', '--gamma=8'])
    r = cfg == 'stylegan3-r'
    G = dict(class_name='training.networks_stylegan3.Generator', z_dim=512, w_dim=512, mapping_kwargs=dict(num_layers=2),
             channel_base=65536 if r else 32768, channel_max=1024 if r else 512, magnitude_ema_beta=0.5 ** (32 / 20000),
             num_fp16_res=4, conv_clamp=256)
    if r:
        G.update(conv_kernel=1, use_radial_filters=True)
    assert o['G_kwargs'] == G
    assert o['G_kwargs']['magnitude_ema_beta'] == 0.9988915792636801  # facts file, batch 32
    D = o['D_kwargs']
    assert D['class_name'] == 'training.networks_stylegan2.Discriminator' and (D['channel_base'], D['channel_max']) == (32768, 512)
    assert D['epilogue_kwargs']['mbstd_group_size'] == 4 and D.get('architecture', 'resnet') == 'resnet'
    assert o['G_opt_kwargs']['lr'] == 0.0025 and o['D_opt_kwargs']['lr'] == 0.002
    assert o['G_opt_kwargs']['betas'] == o['D_opt_kwargs']['betas'] == [0, 0.99]
    loss = dict(class_name='training.loss.StyleGAN2Loss', r1_gamma=8, style_mixing_prob=0, pl_weight=0)
    if r:
        loss.update(blur_init_sigma=10, blur_fade_kimg=200)
    assert o['loss_kwargs'] == loss
    assert o['G_reg_interval'] is None and o['D_reg_interval'] == 16
    assert o['ema_kimg'] == 10 and o['ema_rampup'] == 0.05 and o['total_kimg'] == 25000
    assert o['batch_size'] == 32 and o['batch_gpu'] == 4
    assert o['ada_target'] == 0.6

    # Other batch sizes scale the EMA, the magnitude EMA and the blur fade (NVlabs formulas).
    o = _dry_run_options([f'--outdir={tmp_path}', f'--data={data_path}', f'--cfg={cfg}', '--device=cuda', '--gpus=8', '--batch=64', '--gamma=8'])
    assert o['ema_kimg'] == 20 and o['G_kwargs']['magnitude_ema_beta'] == 0.5 ** (64 / 20000)
    assert o['loss_kwargs'].get('blur_fade_kimg', 400) == 400


def test_gamma_is_required(tmp_path, data_path):
    for cfg in ['stylegan3-t', 'stylegan3-r']:
        result = CliRunner().invoke(train.main, [f'--outdir={tmp_path}', f'--data={data_path}', f'--cfg={cfg}', '--device=cpu', '-n'])
        assert result.exit_code != 0 and '--gamma' in result.output and f'--cfg={cfg}' in result.output, result.output
    assert os.listdir(tmp_path) == []


def test_cpu_preset_uses_small_networks(tmp_path, data_path):
    o = _dry_run_options([f'--outdir={tmp_path}', f'--data={data_path}', '--cfg=stylegan3-r', '--device=cpu', '--gamma=0.05'])
    cpu = train.CPU_AUTO
    assert (o['batch_size'], o['batch_gpu'], o['kimg_per_tick']) == (cpu['batch'], cpu['batch'], cpu['tick'])
    assert (o['G_kwargs']['channel_base'], o['G_kwargs']['channel_max']) == (2 * cpu['cbase'], 2 * cpu['cmax'])
    assert (o['D_kwargs']['channel_base'], o['D_kwargs']['channel_max']) == (cpu['cbase'], cpu['cmax'])
    assert o['ema_kimg'] == cpu['batch'] * 10 / 32 and o['loss_kwargs']['blur_fade_kimg'] == cpu['batch'] * 200 / 32

#----------------------------------------------------------------------------
# Tiny runs with a stop and an exact resume.

def _sg3_config(run_dir, data_path, cfg, **overrides):
    c = tiny_config(run_dir, data_path, image_snapshot_ticks=None, network_snapshot_ticks=100, kimg_per_tick=0.008,
                    G_reg_interval=None, **overrides)
    c.G_kwargs = dnnlib.EasyDict(class_name='training.networks_stylegan3.Generator', z_dim=16, w_dim=16, mapping_kwargs=dict(num_layers=2),
                                 channel_base=128, channel_max=8, num_layers=5, num_critical=1, margin_size=2, num_fp16_res=4,
                                 conv_clamp=256, magnitude_ema_beta=0.5 ** (4 / 20000))
    c.loss_kwargs = dnnlib.EasyDict(class_name='training.loss.StyleGAN2Loss', r1_gamma=1, pl_weight=0, style_mixing_prob=0)
    if cfg == 'r':
        c.G_kwargs.update(conv_kernel=1, channel_base=256, channel_max=16, use_radial_filters=True)
        c.loss_kwargs.update(blur_init_sigma=10, blur_fade_kimg=0.02)  # the blur fades out during the run
    return c


@pytest.mark.parametrize('cfg', ['t', 'r'])
def test_tiny_run_stop_and_exact_resume(tmp_path, data_path, cfg):
    total = 0.024  # 6 minibatches of 4; D regularization every 4, ADA every 2: the stop at 3 is mid-interval
    training_loop.training_loop(**_sg3_config(tmp_path / 'full', data_path, cfg, total_kimg=total))
    full = _final_state(tmp_path / 'full')
    assert full['extra']['training_state']['batch_idx'] == 6

    run_dir = tmp_path / 'split'
    training_loop.training_loop(**_sg3_config(run_dir, data_path, cfg, total_kimg=0.012))
    first = checkpoint.find_latest_checkpoint(str(run_dir))
    first_data = checkpoint.read_checkpoint(first)
    assert first_data['extra']['training_state']['batch_idx'] == 3
    training_loop.training_loop(**_sg3_config(run_dir, data_path, cfg, total_kimg=total, resume=first))
    _compare(full, _final_state(run_dir))

    # Training moved the magnitude EMAs and w_avg (and G_ema holds G's buffers).
    sd = full['G']['state_dict']
    mags = [v for k, v in sd.items() if k.endswith('magnitude_ema')]
    assert len(mags) == 6 and all(float(m) != 1 for m in mags)
    for k, v in sd.items():
        if k.endswith(('magnitude_ema', 'w_avg')):
            assert torch.equal(full['G_ema']['state_dict'][k], v)


def test_cli_run_and_weights_only_resume_from_nvlabs_stylegan3_pickle(tmp_path, data_path, monkeypatch):
    # NVlabs transfer settings for --resume=<pickle>: ada_kimg=100, ema_rampup=None, blur_init_sigma=0.
    args = [f'--data={data_path}', '--cfg=stylegan3-r', '--gamma=0.5', '--kimg=0.004'] + TINY
    o = _dry_run_options([f'--outdir={tmp_path}/x'] + args)
    common = dict(c_dim=0, img_resolution=16, img_channels=3)
    torch.manual_seed(123)  # not the run's seed: its fixed buffers (Fourier frequencies) differ from a fresh G's
    G = dnnlib.util.construct_class_by_name(**o['G_kwargs'], **common).eval()
    D = dnnlib.util.construct_class_by_name(**o['D_kwargs'], **common).eval()
    marker = tmp_path / 'MARKER'
    pkl = tmp_path / 'stylegan3-r-demo-16x16.pkl'
    pkl.write_bytes(W.network_pickle_bytes(G, D, G, W.stylegan3_module_src(marker), D_module_src=W.hostile_module_src(marker)))

    o = _dry_run_options([f'--outdir={tmp_path}/x', f'--resume={pkl}'] + args)
    assert o['ada_kimg'] == 100 and o['ema_rampup'] is None and o['loss_kwargs']['blur_init_sigma'] == 0

    out = tmp_path / 'out'
    result = _run([f'--outdir={out}', f'--resume={pkl}'] + args)
    assert result.exit_code == 0 and '(weights only)' in result.output, result.output
    assert not marker.exists()
    run_dir = out / os.listdir(out)[0]
    snap = checkpoint.read_checkpoint(str(run_dir / 'network-snapshot-000000.004.pt'))  # fractional ticks: suffixed names
    assert snap['G_ema']['class_name'] == 'training.networks_stylegan3.Generator'
    for key in ['synthesis.input.freqs', 'synthesis.input.phases', 'synthesis.L0_36_16.down_filter']:
        assert torch.equal(snap['G']['state_dict'][key], G.state_dict()[key]), key

    # The fine-tuned run continues under --resume=auto with the transfer settings it started with (blur 0 is nested
    # in loss_kwargs, the command's preset says 10): not a mismatch, and the continuation keeps blur 0.
    longer = [a if not a.startswith('--kimg=') else '--kimg=0.008' for a in args]
    result = _run([f'--outdir={out}', '--resume=auto'] + longer)
    assert result.exit_code == 0 and '(exact continuation)' in result.output, result.output
    assert os.listdir(out) == [run_dir.name]
    options = json.loads((run_dir / 'training_options.json').read_text())
    assert options['loss_kwargs']['blur_init_sigma'] == 0 and options['ada_kimg'] == 100 and options['total_kimg'] == 0.008

#----------------------------------------------------------------------------

def _sg3_ddp_config(run_dir, data_path, **overrides):
    from tests.test_ddp import _ddp_config
    c = _ddp_config(run_dir, data_path, **overrides)
    c.G_kwargs = _sg3_config(run_dir, data_path, 't').G_kwargs
    return c


@pytest.mark.slow
def test_ddp_ranks_keep_identical_stylegan3_networks(tmp_path, data_path):
    from tests.test_ddp import _worker
    ddp_dir = tmp_path / 'ddp'
    distributed.launch_local(_worker, 2, args=(_sg3_ddp_config(ddp_dir, data_path),), backend='gloo')
    r0, r1 = [torch.load(ddp_dir / f'rank{r}.pt', weights_only=True) for r in range(2)]
    for net in ['G', 'D']:
        for name in r0[net]:
            assert torch.equal(r0[net][name], r1[net][name]), f'{net}.{name} differs between ranks'
    mags = [k for k in r0['G'] if k.endswith('magnitude_ema')]
    assert len(mags) == 6 and all(float(r0['G'][k]) != 1 for k in mags)  # moved, and averaged over the ranks
