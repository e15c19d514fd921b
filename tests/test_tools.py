"""projector.py, style_mixing.py, gen_video.py and generate.py --projected-w on tiny CPU networks: the
projector recovers a known w through a test-made stand-in VGG16 loaded like the real one, mixed images
equal a direct synthesis of the composed ws, grid videos loop and lay out their cells as NVlabs, with
and without imageio; bad inputs give one-line errors naming the flag."""

import math
import os
import sys
import types
import warnings

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import gen_video
import generate
import projector
import style_mixing
from metrics import detectors
from torch_utils import snapshot
from training import networks_stylegan2 as nets

pytestmark = pytest.mark.usefixtures('one_thread')

#----------------------------------------------------------------------------
# Tiny networks.

def _sg2(c_dim=0, noise_strength=0.0, res=16):
    G = nets.Generator(z_dim=12, c_dim=c_dim, w_dim=16, img_resolution=res, img_channels=3, channel_base=128, channel_max=16,
                       mapping_kwargs=dict(num_layers=2))
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn(16))
        for m in G.modules():
            if isinstance(m, nets.SynthesisLayer):
                m.noise_strength.fill_(noise_strength)
    return G.eval().requires_grad_(False)


class _SG3Input(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer('transform', torch.eye(3))


class _SG3Synthesis(torch.nn.Module):
    """Stand-in for a StyleGAN3 synthesis network: one w per layer, no noise buffers, and an
    input.transform whose translation/rotation entries change the image."""

    def __init__(self, w_dim, num_ws, res, channels):
        super().__init__()
        self.w_dim, self.num_ws, self.img_resolution, self.img_channels = w_dim, num_ws, res, channels
        self.input = _SG3Input()
        self.weight = torch.nn.Parameter(torch.randn([num_ws, w_dim, channels * res * res]))

    def forward(self, ws, noise_mode='random'):
        assert noise_mode in ('random', 'const', 'none')
        x = torch.einsum('nlw,lwp->np', ws.to(torch.float32), self.weight) / math.sqrt(self.w_dim * self.num_ws)
        img = torch.tanh(x).reshape(ws.shape[0], self.img_channels, self.img_resolution, self.img_resolution)
        return img + self.input.transform[0, 2] + self.input.transform[0, 1]


class _SG3(torch.nn.Module):
    def __init__(self, z_dim=12, w_dim=16, num_ws=5, res=8, channels=3):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.img_resolution, self.img_channels = z_dim, 0, w_dim, num_ws, res, channels
        self.mapping = nets.MappingNetwork(z_dim=z_dim, c_dim=0, w_dim=w_dim, num_ws=num_ws, num_layers=2)
        self.synthesis = _SG3Synthesis(w_dim, num_ws, res, channels)
        with torch.no_grad():
            self.mapping.w_avg.copy_(torch.randn(w_dim))
        self.eval().requires_grad_(False)


def _quantize(img):
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()


def _w_of(G, seed, psi=1.0):
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    return G.mapping(z, torch.zeros([1, G.c_dim]), truncation_psi=psi)


@pytest.fixture(scope='module')
def snap(tmp_path_factory):
    torch.manual_seed(0)  # module-scoped: set up before the per-test seed fixture
    G = _sg2(noise_strength=0.2)
    path = tmp_path_factory.mktemp('snap') / 'network-snapshot-000000.pt'
    snapshot.save_snapshot(path, G=None, D=None, G_ema=G)
    return str(path), G

#----------------------------------------------------------------------------
# Stand-in VGG16: ordinary conv/relu/pool/normalize ops only, saved as TorchScript vgg16.pt.

class StandInVGG(torch.nn.Module):
    """[N, 3, H, W] in [0, 255] -> LPIPS-style features: two conv/relu stages, each unit-normalised over
    channels per pixel and scaled by 1/sqrt(pixels), flattened and concatenated."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.register_buffer('w1', torch.randn([16, 3, 3, 3], generator=g) / 3)
        self.register_buffer('w2', torch.randn([16, 16, 3, 3], generator=g) / 12)

    def forward(self, img: torch.Tensor, resize_images: bool = True, return_features: bool = False, return_lpips: bool = False) -> torch.Tensor:
        x = img.to(torch.float32) / 127.5 - 1
        f1 = F.relu(F.conv2d(x, self.w1, padding=1))
        f2 = F.relu(F.conv2d(F.avg_pool2d(f1, 2), self.w2, padding=1))
        feats = []
        for f in (x, f1, f2):
            f = f / (f.square().sum(dim=1, keepdim=True) + 1e-20).sqrt() / float(f.shape[2] * f.shape[3]) ** 0.5
            feats.append(f.flatten(1))
        return torch.cat(feats, dim=1)


@pytest.fixture(scope='module')
def vgg_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp('detectors')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        torch.jit.save(torch.jit.script(StandInVGG()), str(folder / 'vgg16.pt'))
    return str(folder)

#----------------------------------------------------------------------------
# Fake imageio (the venv has none): records the frames, writes a stub file on close.

@pytest.fixture
def fake_imageio(monkeypatch):
    record = dict(frames=[], kwargs=None)

    class Writer:
        def __init__(self, path, **kwargs):
            self.path = path
            record['kwargs'] = kwargs

        def append_data(self, frame):
            record['frames'].append(np.array(frame))

        def close(self):
            with open(self.path, 'wb') as f:
                f.write(b'mp4')

    monkeypatch.setitem(sys.modules, 'imageio', types.SimpleNamespace(get_writer=Writer))
    monkeypatch.setitem(sys.modules, 'imageio_ffmpeg', types.SimpleNamespace())
    return record


@pytest.fixture
def no_imageio(monkeypatch):
    monkeypatch.setitem(sys.modules, 'imageio', None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, 'imageio_ffmpeg', None)


def _invoke(cli, *args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _one_line_error(res, flag):
    assert res.exit_code != 0
    lines = [l for l in res.output.splitlines() if l.startswith('Error')]
    assert len(lines) == 1 and flag in lines[0], res.output
    return lines[0]

#----------------------------------------------------------------------------
# Projector.

def test_projector_recovers_known_w(vgg_dir):
    # noise_strength 0: the target's noise cannot be recovered, so the image then depends on w alone
    # (the noise buffers are still optimised and regularised).
    G = _sg2(noise_strength=0.0)
    buffers = [b.clone() for b in G.buffers()]
    vgg = detectors.get_detector('vgg16', detector_dir=vgg_dir)
    w_true = _w_of(G, seed=5)
    target = _quantize(G.synthesis(w_true, noise_mode='const'))[0]
    start_img = _quantize(G.synthesis(G.mapping.w_avg.reshape(1, 1, -1).repeat(1, G.num_ws, 1), noise_mode='const'))[0]
    torch.manual_seed(303)
    w_steps, dists, G_proj = projector.project(G, target, vgg, num_steps=150, device='cpu', log_every=0)
    assert w_steps.shape == (150, G.num_ws, G.w_dim)
    assert torch.equal(w_steps[:, 0], w_steps[:, -1])  # one w broadcast to all layers
    proj = _quantize(G_proj.synthesis(w_steps[-1:], noise_mode='const'))[0]
    err, err0 = np.abs(proj.astype(np.float64) - target).mean(), np.abs(start_img.astype(np.float64) - target).mean()
    w_err = float((w_steps[-1, 0] - w_true[0, 0]).norm() / w_true[0, 0].norm())
    print(f'dist {dists[0]:.4f} -> {dists[-1]:.4f}; mean |pixel error| {err0:.2f} -> {err:.2f} of 255; |w - w_true| / |w_true| = {w_err:.3f}')
    # Measured (CPU): dist 2.12 -> 0.047, pixel error 70.0 -> 1.7 (max 9), w error 0.057.
    assert dists[-1] < 0.05 * dists[0]
    assert err < 0.05 * err0 and err < 3
    assert w_err < 0.1
    assert all(torch.equal(a, b) for a, b in zip(G.buffers(), buffers))  # the caller's G is untouched


def test_projector_noise_regularization_matches_float64_reference():
    torch.manual_seed(1)
    bufs = [torch.randn(16, 16), torch.randn(8, 8)]
    ref = 0.0
    for b in bufs:
        n = b.double().numpy()
        while True:
            ref += np.mean(n * np.roll(n, 1, axis=1)) ** 2 + np.mean(n * np.roll(n, 1, axis=0)) ** 2
            if n.shape[0] <= 8:
                break
            n = n.reshape(n.shape[0] // 2, 2, n.shape[1] // 2, 2).mean(axis=(1, 3))
    assert float(projector._noise_regularization(bufs)) == pytest.approx(ref, rel=1e-5)


def test_projector_stylegan3_has_no_noise_and_recovers(vgg_dir):
    G = _SG3()
    vgg = detectors.get_detector('vgg16', detector_dir=vgg_dir)
    target = _quantize(G.synthesis(_w_of(G, seed=3), noise_mode='const'))[0]
    w_steps, dists, _ = projector.project(G, target, vgg, num_steps=200, w_avg_samples=2000, device='cpu', log_every=0)
    assert w_steps.shape == (200, 5, 16) and dists[-1] < 0.1 * dists[0]


def test_projector_cli_outputs_resize_note_and_generate_projected_w(snap, vgg_dir, tmp_path, no_imageio):
    path, G = snap
    PIL.Image.fromarray(np.random.RandomState(0).randint(0, 256, [20, 30, 3], dtype=np.uint8)).save(tmp_path / 'wide.png')
    PIL.Image.fromarray(np.random.RandomState(1).randint(0, 256, [16, 16, 3], dtype=np.uint8)).save(tmp_path / 'ok.png')
    res = _invoke(projector.cli, f'--network={path}', f'--target={tmp_path}/wide.png', f'--target={tmp_path}/ok.png',
                  '--num-steps=12', '--save-video', f'--detector-dir={vgg_dir}', f'--outdir={tmp_path}/p', '--device=cpu')
    assert res.exit_code == 0, res.output
    assert 'wide.png is 30x20; center-cropped to 20x20 and resized' in res.output
    assert 'ok.png is' not in res.output
    assert 'step   12/12: dist' in res.output and 'imageio-ffmpeg is not installed' in res.output
    for sub, src in [('00-wide', 'wide.png'), ('01-ok', 'ok.png')]:
        out = tmp_path / 'p' / sub
        assert sorted(os.listdir(out)) == ['proj.png', 'proj_frames', 'projected_w.npz', 'target.png']
        assert len(os.listdir(out / 'proj_frames')) == 12
        assert np.asarray(PIL.Image.open(out / 'proj_frames' / 'frame00000.png')).shape == (16, 32, 3)
        with np.load(out / 'projected_w.npz') as data:
            assert data.files == ['w'] and data['w'].shape == (1, G.num_ws, G.w_dim) and data['w'].dtype == np.float32
            w = torch.from_numpy(data['w'])
    # Resized as NVlabs: center crop (5, 0, 25, 20), Lanczos to 16x16.
    expected = np.asarray(PIL.Image.open(tmp_path / 'wide.png').crop((5, 0, 25, 20)).resize((16, 16), PIL.Image.LANCZOS))
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / 'p' / '00-wide' / 'target.png')), expected)
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / 'p' / '01-ok' / 'target.png')),
                          np.asarray(PIL.Image.open(tmp_path / 'ok.png')))

    # generate.py renders the saved w with the network's own noise.
    res = _invoke(generate.cli, f'--network={path}', f'--projected-w={tmp_path}/p/01-ok/projected_w.npz', f'--outdir={tmp_path}/g')
    assert res.exit_code == 0, res.output
    assert os.listdir(tmp_path / 'g') == ['proj00.png']
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / 'g' / 'proj00.png')), _quantize(G.synthesis(w, noise_mode='const'))[0])


def test_projector_and_generate_bad_inputs(snap, vgg_dir, tmp_path):
    path, G = snap
    (tmp_path / 'junk.png').write_bytes(b'not an image')
    res = _invoke(projector.cli, f'--network={path}', f'--target={tmp_path}/junk.png', f'--outdir={tmp_path}/o', f'--detector-dir={vgg_dir}')
    _one_line_error(res, '--target')
    PIL.Image.new('RGB', (16, 16)).save(tmp_path / 't.png')
    res = _invoke(projector.cli, f'--network={path}', f'--target={tmp_path}/t.png', f'--outdir={tmp_path}/o', '--class=1', f'--detector-dir={vgg_dir}')
    assert 'unconditional' in _one_line_error(res, '--class')
    res = _invoke(projector.cli, f'--network={path}', f'--target={tmp_path}/t.png', f'--outdir={tmp_path}/o', f'--detector-dir={tmp_path}')
    assert 'vgg16.pt' in _one_line_error(res, 'VGG16')

    np.savez(tmp_path / 'bad.npz', w=np.zeros([1, G.num_ws + 1, G.w_dim], dtype=np.float32))
    res = _invoke(generate.cli, f'--network={path}', f'--projected-w={tmp_path}/bad.npz', f'--outdir={tmp_path}/g')
    assert f'[N, {G.num_ws}, {G.w_dim}]' in _one_line_error(res, '--projected-w')
    np.savez(tmp_path / 'nokey.npz', x=np.zeros(3))
    res = _invoke(generate.cli, f'--network={path}', f'--projected-w={tmp_path}/nokey.npz', f'--outdir={tmp_path}/g')
    assert 'no array "w"' in _one_line_error(res, '--projected-w')
    np.save(tmp_path / 'single.npy', np.zeros([1, G.num_ws, G.w_dim], dtype=np.float32))
    res = _invoke(generate.cli, f'--network={path}', f'--projected-w={tmp_path}/single.npy', f'--outdir={tmp_path}/g')
    assert 'single .npy array' in _one_line_error(res, '--projected-w')
    res = _invoke(generate.cli, f'--network={path}', f'--projected-w={tmp_path}/junk.png', f'--outdir={tmp_path}/g')
    assert 'not a readable .npz' in _one_line_error(res, '--projected-w')
    res = _invoke(generate.cli, f'--network={path}', f'--projected-w={tmp_path}/nokey.npz', '--trunc=0.5', f'--outdir={tmp_path}/g')
    assert '--trunc' in _one_line_error(res, '--projected-w')
    res = _invoke(generate.cli, f'--network={path}', f'--projected-w={tmp_path}/bad.npz', '--seeds=1', f'--outdir={tmp_path}/g')
    _one_line_error(res, '--projected-w')
    res = _invoke(generate.cli, f'--network={path}', f'--outdir={tmp_path}/g')
    _one_line_error(res, '--seeds')

#----------------------------------------------------------------------------
# Style mixing.

def test_style_mixing_cli_matches_composed_w(snap, tmp_path):
    path, G = snap
    res = _invoke(style_mixing.cli, f'--network={path}', '--rows=3,1', '--cols=2,9,1', '--styles=1-3', '--trunc=0.7', f'--outdir={tmp_path}')
    assert res.exit_code == 0, res.output
    names = {f'{r}-{c}.png' for r in (3, 1) for c in (2, 9, 1)} | {f'{s}-{s}.png' for s in (1, 2, 3, 9)} | {'grid.png'}
    assert set(os.listdir(tmp_path)) == names
    load = lambda name: np.asarray(PIL.Image.open(tmp_path / name))
    for r in (3, 1):
        for c in (2, 9, 1):
            w = _w_of(G, r, 0.7)
            w[:, 1:4] = _w_of(G, c, 0.7)[:, 1:4]
            assert np.array_equal(load(f'{r}-{c}.png'), _quantize(G.synthesis(w, noise_mode='const'))[0]), (r, c)
    grid = load('grid.png')
    assert grid.shape == (3 * 16, 4 * 16, 3)
    assert not grid[:16, :16].any()                                        # black corner
    assert np.array_equal(grid[:16, 32:48], load('9-9.png'))                 # column seeds on top
    assert np.array_equal(grid[32:48, :16], load('1-1.png'))                 # row seeds on the left
    assert np.array_equal(grid[16:32, 16:32], load('3-2.png'))
    assert np.array_equal(grid[32:48, 48:64], load('1-1.png'))               # mixing a seed with itself


def test_style_mixing_stylegan3_and_errors(snap, tmp_path):
    G = _SG3()
    images = style_mixing.style_mix(G, [0], [1], [3, 4], device='cpu')
    w = _w_of(G, 0)
    w[:, 3:5] = _w_of(G, 1)[:, 3:5]
    assert np.array_equal(images[(0, 1)], _quantize(G.synthesis(w))[0])
    with pytest.raises(ValueError, match='out of range: this network has 5 ws'):
        style_mixing.style_mix(G, [0], [1], [5])

    path, G2 = snap
    res = _invoke(style_mixing.cli, f'--network={path}', '--rows=0', '--cols=1', f'--styles=0-{G2.num_ws}', f'--outdir={tmp_path}')
    _one_line_error(res, '--styles')
    res = _invoke(style_mixing.cli, f'--network={path}', '--rows=0;1', '--cols=1', f'--outdir={tmp_path}')
    _one_line_error(res, '--rows')
    res = _invoke(style_mixing.cli, f'--network={path}', '--rows=0', '--cols=1', '--class=0', f'--outdir={tmp_path}')
    _one_line_error(res, '--class')

#----------------------------------------------------------------------------
# Grid videos.

def test_gen_video_frames_loop_and_grid_with_imageio(snap, tmp_path, fake_imageio):
    path, G = snap
    res = _invoke(gen_video.cli, f'--network={path}', '--seeds=0-11', '--grid=3x2', '--w-frames=4', '--kind=linear',
                  f'--output={tmp_path}/v/lerp.mp4', '--fps=30')
    assert res.exit_code == 0, res.output
    assert os.listdir(tmp_path / 'v') == ['lerp.mp4']  # renamed into place, no temporary left
    frames = fake_imageio['frames']
    assert fake_imageio['kwargs']['fps'] == 30 and fake_imageio['kwargs']['codec'] == 'libx264'
    K = 2  # 12 seeds over 6 cells
    assert len(frames) == K * 4 and frames[0].shape == (2 * 16, 3 * 16, 3)
    # Cell (row y, col x) holds seeds (y*3 + x)*K + k (NVlabs order); keyframes land on frames k*w_frames
    # (interp1d reproduces a keyframe w only to an ulp, hence one gray level).
    ws = {s: _w_of(G, s) for s in range(12)}
    for k in range(K):
        for y in range(2):
            for x in range(3):
                cell = frames[k * 4][y * 16:(y + 1) * 16, x * 16:(x + 1) * 16].astype(int)
                assert np.abs(cell - _quantize(G.synthesis(ws[(y * 3 + x) * K + k], noise_mode='const'))[0]).max() <= 1
    # Loop closure: the last frame is 3/4 of the way from the last keyframe back to the first.
    w_last = torch.lerp(ws[K - 1], ws[0], 3 / 4)
    assert np.abs(frames[-1][:16, :16].astype(int) - _quantize(G.synthesis(w_last, noise_mode='const'))[0]).max() <= 1


def test_gen_video_png_frames_without_imageio(snap, tmp_path, no_imageio):
    path, G = snap
    res = _invoke(gen_video.cli, f'--network={path}', '--seeds=4,5,6', '--w-frames=3', f'--output={tmp_path}/c.mp4')
    assert res.exit_code == 0, res.output
    assert 'imageio-ffmpeg is not installed' in res.output
    assert not (tmp_path / 'c.mp4').exists()
    names = sorted(os.listdir(tmp_path / 'c_frames'))
    assert names == [f'frame{i:05d}.png' for i in range(9)]
    for k, seed in enumerate((4, 5, 6)):
        frame = np.asarray(PIL.Image.open(tmp_path / 'c_frames' / f'frame{3 * k:05d}.png')).astype(int)
        assert np.abs(frame - _quantize(G.synthesis(_w_of(G, seed), noise_mode='const'))[0]).max() <= 1


def test_keyframe_interpolation_wraps():
    ws = np.random.RandomState(0).randn(4, 3, 5).astype(np.float32)
    for kind in ('linear', 'cubic'):
        f = gen_video.keyframe_interpolator(ws, kind=kind)
        for k in range(4):
            np.testing.assert_allclose(f(k), ws[k], rtol=0, atol=1e-6)
        np.testing.assert_allclose(f(4.0), ws[0], rtol=0, atol=1e-6)     # loop closure
        # Periodic across the seam: exactly for linear; the cubic spline over 5 copies differs by ~4e-3.
        np.testing.assert_allclose(f(3.5), f(-0.5), rtol=0, atol=1e-5 if kind == 'linear' else 1e-2)
    np.testing.assert_allclose(gen_video.keyframe_interpolator(ws, kind='linear')(3.25), 0.75 * ws[3] + 0.25 * ws[0], atol=1e-6)
    assert gen_video.keyframe_seeds([1, 2, 3], (2, 1), num_keyframes=2).tolist() == [[[1, 2], [3, 1]]]
    shuffled = gen_video.keyframe_seeds(list(range(8)), (2, 2), shuffle_seed=1).reshape(-1)
    expected = np.arange(8)
    np.random.RandomState(1).shuffle(expected)
    assert shuffled.tolist() == expected.tolist()


def test_gen_video_stylegan3_animation(tmp_path, no_imageio):
    G = _SG3(res=8)
    count, where = gen_video.gen_interp_video(G, str(tmp_path / 'a.mp4'), [0, 1], w_frames=4, translate=(0.5, 0), rotate=30,
                                              device='cpu', verbose=False)
    assert count == 8 and torch.equal(G.synthesis.input.transform, torch.eye(3))  # restored
    frame = lambda i: np.asarray(PIL.Image.open(os.path.join(where, f'frame{i:05d}.png'))).astype(int)
    # Frame 2 of 8: sin(2*pi*2/8) = 1, full sway; the inverse transform's entries enter the stand-in's image.
    m = np.linalg.inv(generate.make_transform((0.5, 0), 30))
    w = torch.from_numpy(gen_video.keyframe_interpolator(np.stack([_w_of(G, 0)[0].numpy(), _w_of(G, 1)[0].numpy()]))(0.5)).float()
    expected = _quantize(G.synthesis(w[None]) + float(m[0, 2] + m[0, 1]))[0]
    assert np.abs(frame(2) - expected).max() <= 1
    assert np.abs(frame(0) - _quantize(G.synthesis(_w_of(G, 0)))[0]).max() <= 1  # no sway at the loop start


def test_gen_video_cli_stylegan3(snap, tmp_path, monkeypatch, no_imageio):
    path, _ = snap
    monkeypatch.setattr(generate.network_loader, 'load_network', lambda *a, **k: dict(G_ema=_SG3()))
    res = _invoke(gen_video.cli, f'--network={path}', '--seeds=0-3', '--grid=2x1', '--w-frames=2', '--translate=0.1,-0.1',
                  '--rotate=5', f'--output={tmp_path}/s.mp4')
    assert res.exit_code == 0, res.output
    assert len(os.listdir(tmp_path / 's_frames')) == 4


def test_gen_video_bad_inputs(snap, tmp_path, monkeypatch):
    path, _ = snap
    out = f'--output={tmp_path}/x.mp4'
    _one_line_error(_invoke(gen_video.cli, f'--network={path}', '--seeds=0-a', out), '--seeds')
    assert 'multiple of 4' in _one_line_error(_invoke(gen_video.cli, f'--network={path}', '--seeds=0-5', '--grid=2x2', out), '--seeds')
    assert 'unconditional' in _one_line_error(_invoke(gen_video.cli, f'--network={path}', '--seeds=0-1', '--class=1', out), '--class')
    assert 'StyleGAN3' in _one_line_error(_invoke(gen_video.cli, f'--network={path}', '--seeds=0-1', '--translate=0.1,0', out), '--translate')
    assert 'StyleGAN3' in _one_line_error(_invoke(gen_video.cli, f'--network={path}', '--seeds=0-1', '--rotate=5', out), '--rotate')
    _one_line_error(_invoke(gen_video.cli, f'--network={path}', '--seeds=0-1', '--translate=0.1', out), '--translate')
    _one_line_error(_invoke(gen_video.cli, f'--network={path}', '--seeds=0-1', '--grid=2by2', out), '--grid')
    assert not os.listdir(tmp_path)


def test_gen_video_real_mp4(snap, tmp_path):
    imageio = pytest.importorskip('imageio')
    pytest.importorskip('imageio_ffmpeg')
    path, _ = snap
    res = _invoke(gen_video.cli, f'--network={path}', '--seeds=0-3', '--grid=2x1', '--w-frames=5', f'--output={tmp_path}/r.mp4')
    assert res.exit_code == 0, res.output
    with imageio.get_reader(str(tmp_path / 'r.mp4')) as reader:
        frames = [f for f in reader]
    assert len(frames) == 10 and frames[0].shape == (16, 32, 3)


@pytest.mark.parametrize('module', [projector, style_mixing, gen_video, generate])
def test_help(module):
    for flag in ('-h', '--help'):
        res = CliRunner().invoke(module.cli, [flag], catch_exceptions=False)
        assert res.exit_code == 0 and 'Usage:' in res.output and '--network' in res.output
