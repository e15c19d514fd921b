"""generate.py end to end on CPU: files written, pixels equal to a direct G evaluation with the NVlabs seed
convention, reproducible seeds, grid and interpolation outputs, and click errors naming the flag."""

import os

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import generate
from tests import nvlabs_pickle_writer as W
from torch_utils import snapshot
from training import networks_stylegan2 as nets


pytestmark = pytest.mark.usefixtures('one_thread')


def _G(c_dim=0):
    G = nets.Generator(z_dim=12, c_dim=c_dim, w_dim=16, img_resolution=16, img_channels=3, channel_base=128, channel_max=16,
                       mapping_kwargs=dict(num_layers=2))
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn(16))
        for m in G.modules():
            if isinstance(m, nets.SynthesisLayer):
                m.noise_strength.fill_(0.2)
    return G.eval()


@pytest.fixture(scope='module')
def snap(tmp_path_factory):
    G = _G()
    path = tmp_path_factory.mktemp('snap') / 'network-snapshot-000000.pt'
    snapshot.save_snapshot(path, G=None, D=None, G_ema=G)
    return str(path), G


@pytest.fixture(scope='module')
def cond_snap(tmp_path_factory):
    G = _G(c_dim=3)
    path = tmp_path_factory.mktemp('snap') / 'cond.pt'
    snapshot.save_snapshot(path, G=None, D=None, G_ema=G)
    return str(path), G


def _run(*args):
    return CliRunner().invoke(generate.cli, list(args), catch_exceptions=False)


def _expected(G, seed, psi, class_idx=None):
    """The NVlabs convention written out: z = RandomState(seed).randn(1, z_dim), one-hot c, uint8 quantization."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    c = torch.zeros(1, G.c_dim)
    if class_idx is not None:
        c[0, class_idx] = 1
    img = G(z, c, truncation_psi=psi, noise_mode='const')
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()


def test_seeds_written_and_match_direct_evaluation(snap, tmp_path):
    path, G = snap
    res = _run(f'--network={path}', '--seeds=0-2,7', '--trunc=0.7', f'--outdir={tmp_path}/a', '--batch=3', '--device=cpu')
    assert res.exit_code == 0, res.output
    assert 'Generated 4/4' in res.output
    assert sorted(os.listdir(tmp_path / 'a')) == ['seed0000.png', 'seed0001.png', 'seed0002.png', 'seed0007.png']
    for seed in (0, 1, 2, 7):
        got = np.asarray(PIL.Image.open(tmp_path / 'a' / f'seed{seed:04d}.png'))
        assert got.shape == (16, 16, 3)
        # fused batch-3 vs single-image evaluation may differ in the last float bit, i.e. by one gray level.
        assert np.abs(got.astype(int) - _expected(G, seed, 0.7).astype(int)).max() <= 1

    res = _run(f'--network={path}', '--seeds=7,0', '--trunc=0.7', f'--outdir={tmp_path}/b', '--batch=1')
    assert res.exit_code == 0, res.output
    for name in ('seed0000.png', 'seed0007.png'):
        assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / 'b' / name)), _expected(G, int(name[4:8]), 0.7))
    # Same seed, same image whatever the batch and order.
    a = np.asarray(PIL.Image.open(tmp_path / 'a' / 'seed0007.png')).astype(int)
    b = np.asarray(PIL.Image.open(tmp_path / 'b' / 'seed0007.png')).astype(int)
    assert np.abs(a - b).max() <= 1


def test_default_batch_is_bit_exact_single_image_evaluation(snap, tmp_path):
    # NVlabs gen_images evaluates one seed per forward pass; batching changes the last float bit (mapping
    # matmuls, grouped convolutions), so the default does the same and matches it pixel for pixel.
    path, G = snap
    res = _run(f'--network={path}', '--seeds=0-4', '--trunc=0.7', f'--outdir={tmp_path}', '--device=cpu')
    assert res.exit_code == 0, res.output
    for seed in range(5):
        assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / f'seed{seed:04d}.png')), _expected(G, seed, 0.7))


def test_conditional_class_and_nvlabs_pickle(cond_snap, tmp_path):
    path, G = cond_snap
    res = _run(f'--network={path}', '--seeds=3', '--class=2', f'--outdir={tmp_path}/c', '--batch=1')
    assert res.exit_code == 0, res.output
    from_snapshot = np.asarray(PIL.Image.open(tmp_path / 'c' / 'seed0003.png'))
    assert np.array_equal(from_snapshot, _expected(G, 3, 1.0, class_idx=2))

    # The same weights as an NVlabs pickle give the same image.
    pkl = tmp_path / 'net.pkl'
    pkl.write_bytes(W.network_pickle_bytes(None, None, G, '# module source\n'))
    res = _run(f'--network={pkl}', '--seeds=3', '--class=2', f'--outdir={tmp_path}/p', '--batch=1')
    assert res.exit_code == 0, res.output
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / 'p' / 'seed0003.png')), from_snapshot)


def test_grid(snap, tmp_path):
    path, G = snap
    res = _run(f'--network={path}', '--seeds=0-5', '--grid=3x2', f'--outdir={tmp_path}', '--batch=1')
    assert res.exit_code == 0, res.output
    grid = np.asarray(PIL.Image.open(tmp_path / 'grid.png'))
    assert grid.shape == (32, 48, 3)
    assert np.array_equal(grid[16:32, 32:48], _expected(G, 5, 1.0))  # row 1, column 2 = seed 5
    res = _run(f'--network={path}', '--seeds=0-4', '--grid=3x2', f'--outdir={tmp_path}')
    assert res.exit_code == 2 and '--grid' in res.output and 'needs exactly 6 seeds' in res.output


def test_interpolation_frames_and_video(snap, tmp_path):
    path, G = snap
    res = _run(f'--network={path}', '--seeds=0,1', '--interp-frames=2', f'--outdir={tmp_path}', '--batch=2')
    assert res.exit_code == 0, res.output
    frames = sorted(os.listdir(tmp_path / 'frames'))
    assert frames == ['frame00000.png', 'frame00001.png', 'frame00002.png']
    first = np.asarray(PIL.Image.open(tmp_path / 'frames' / 'frame00000.png')).astype(int)
    last = np.asarray(PIL.Image.open(tmp_path / 'frames' / 'frame00002.png')).astype(int)
    assert np.abs(first - _expected(G, 0, 1.0)).max() <= 1 and np.abs(last - _expected(G, 1, 1.0)).max() <= 1
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        assert 'frames only' in res.output
    else:
        assert (tmp_path / 'interp.mp4').stat().st_size > 0


def test_errors_name_the_flag(snap, cond_snap, tmp_path):
    path, _ = snap
    res = _run(f'--network={tmp_path}/missing.pt', '--seeds=0', f'--outdir={tmp_path}')
    assert res.exit_code == 2 and '--network' in res.output and 'no such file' in res.output
    res = _run(f'--network={path}', '--seeds=3-1', f'--outdir={tmp_path}')
    assert res.exit_code == 2 and '--seeds' in res.output and 'below start' in res.output
    res = _run(f'--network={path}', '--seeds=a-b', f'--outdir={tmp_path}')
    assert res.exit_code == 2 and '--seeds' in res.output
    res = _run(f'--network={path}', '--seeds=0', '--class=1', f'--outdir={tmp_path}')
    assert res.exit_code == 2 and '--class' in res.output and 'unconditional' in res.output
    res = _run(f'--network={cond_snap[0]}', '--seeds=0', f'--outdir={tmp_path}')
    assert res.exit_code == 2 and '--class' in res.output and 'conditional' in res.output
    res = _run(f'--network={cond_snap[0]}', '--seeds=0', '--class=3', f'--outdir={tmp_path}')
    assert res.exit_code == 2 and '--class' in res.output and 'out of range' in res.output
    res = _run(f'--network={path}', '--seeds=0', '--noise-mode=loud', f'--outdir={tmp_path}')
    assert res.exit_code == 2 and '--noise-mode' in res.output
    res = _run(f'--network={path}', '--seeds=0', '--trunc-cutoff=99', f'--outdir={tmp_path}')
    assert res.exit_code == 2 and '--trunc-cutoff' in res.output
    junk = tmp_path / 'junk.pt'
    junk.write_bytes(b'not a network')
    res = _run(f'--network={junk}', '--seeds=0', f'--outdir={tmp_path}')
    assert res.exit_code == 1 and '--network' in res.output and 'not a ganforge snapshot' in res.output
    assert not any(name.endswith('.png') for name in os.listdir(tmp_path))


@pytest.mark.parametrize('flag, value, text', [
    ('--trunc', 'nan', "'nan' is not a finite number"),
    ('--trunc', 'inf', "'inf' is not a finite number"),
    ('--seeds', '-5', 'seed -5 is out of range: seeds must be in [0, 4294967295]'),
    ('--seeds', '4294967296', 'seed 4294967296 is out of range'),
    ('--seeds', '0-4294967295', 'at most 1000000 per run'),
    ('--device', 'meta', "'meta' is not a supported device; use one of cpu, cuda, cuda:N"),
    ('--device', 'cpu:0', 'not a supported device'),
])
def test_bad_values_are_one_line_naming_the_flag(snap, tmp_path, flag, value, text):
    args = {'--network': snap[0], '--seeds': '0', '--outdir': str(tmp_path / 'out'), flag: value}
    res = CliRunner().invoke(generate.cli, [f'{k}={v}' for k, v in args.items()])
    assert res.exit_code == 2 and res.exception is not None and not isinstance(res.exception, (ValueError, RuntimeError))
    last = res.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: Invalid value for '{flag}'") and text in last, res.output
    assert not (tmp_path / 'out').exists()


def test_outdir_that_is_a_file_is_refused(snap, tmp_path):
    (tmp_path / 'f').write_text('keep')
    for outdir in (tmp_path / 'f', tmp_path / 'f' / 'sub'):
        res = CliRunner().invoke(generate.cli, [f'--network={snap[0]}', '--seeds=0', f'--outdir={outdir}'])
        assert res.exit_code == 2 and "'--outdir'" in res.output and 'an existing file, not a folder' in res.output
    assert (tmp_path / 'f').read_text() == 'keep'


def test_cuda_device_without_cuda_is_refused(snap, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    res = CliRunner().invoke(generate.cli, [f'--network={snap[0]}', '--seeds=0', f'--outdir={tmp_path}', '--device=cuda:1'])
    assert res.exit_code == 2 and 'cuda:1: CUDA is not available on this machine; use --device=cpu' in res.output


def test_generate_images_function(snap, tmp_path):
    _, G = snap
    written = generate.generate_images(G, [4], str(tmp_path), truncation_psi=0.5, batch=1, verbose=False)
    assert written == [str(tmp_path / 'seed0004.png')]
    assert np.array_equal(np.asarray(PIL.Image.open(written[0])), _expected(G, 4, 0.5))
    with pytest.raises(ValueError, match='unconditional'):
        generate.generate_images(G, [0], str(tmp_path), class_idx=1, verbose=False)
