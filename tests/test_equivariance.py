"""Equivariance metrics (EQ-T, EQ-T_frac, EQ-R): the image operators against float64 references (np.roll,
a direct evaluation of the Lanczos formula, analytic shifted and rotated sinusoids, np.rot90, a direct
circular convolution for the filter), the pooled PSNR against a hand computation and a numpy recomputation,
analytic generators (exactly equivariant: PSNR +inf for integer shifts; ignoring the transform: low), the
registry, the StyleGAN2 refusal, and two gloo processes giving the numbers of one."""

import os
import tempfile

import numpy as np
import pytest
import torch

from metrics import equivariance as eq
from metrics import metric_main, metric_utils
from tests.equivariance_standins import StandInGenerator
from training import networks_stylegan2

pytestmark = pytest.mark.usefixtures('one_thread')


def _pixel_coords(H, W):
    """Pixel centres in image units, origin at the centre: (x [H, W], y [H, W]) float64."""
    px = (torch.arange(W, dtype=torch.float64) + 0.5) / W - 0.5
    py = (torch.arange(H, dtype=torch.float64) + 0.5) / H - 0.5
    gy, gx = torch.meshgrid(py, px, indexing='ij')
    return gx, gy


def _bandlimited(shape, cutoff, seed):
    """Random float64 images with no frequency at or above `cutoff` cycles/pixel on either axis."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    fy = torch.fft.fftfreq(shape[2], dtype=torch.float64).abs()[:, None]
    fx = torch.fft.fftfreq(shape[3], dtype=torch.float64).abs()[None, :]
    return torch.fft.ifft2(torch.fft.fft2(x) * ((fy < cutoff) & (fx < cutoff))).real

#----------------------------------------------------------------------------
# Integer translation.

@pytest.mark.parametrize('dx, dy', [(3, -2), (-5, 0), (0, 4), (0, 0), (11, 1), (12, 0), (-2, -8)])
def test_translate_integer_is_roll_on_valid_region(dx, dy):
    N, C, H, W = 2, 3, 8, 12
    x = torch.randn([N, C, H, W], dtype=torch.float64)
    y, mask = eq.translate_integer(x, dx / W, dy / H)
    expected_mask = np.zeros([H, W])
    if abs(dx) < W and abs(dy) < H:
        expected_mask[max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = 1
    np.testing.assert_array_equal(mask.numpy(), np.broadcast_to(expected_mask, [N, C, H, W]))
    rolled = np.roll(x.numpy(), shift=(dy, dx), axis=(2, 3))
    np.testing.assert_array_equal(y.numpy() * expected_mask, rolled * expected_mask)
    assert y.dtype == torch.float64 and mask.dtype == torch.float64

#----------------------------------------------------------------------------
# Fractional translation.

def _lanczos_translate_reference(x, sx, sy, a=3):
    """y[p] = sum_q L(p - s - q) x[q] / sum_q L(p - s - q), L(u) = sinc(u) sinc(u / a) on |u| < a, per axis in
    numpy float64 loops over the 2a taps q = p - floor(s) - d, d = -(a-1) .. a (NVlabs' window: for a whole
    shift the zero-weight tap d = a is in it, d = -a is not); NaN where a tap falls outside x."""
    def axis(v, s):
        n = v.shape[-1]
        out = np.full(v.shape, np.nan)
        for p in range(n):
            q = p - int(np.floor(s)) - np.arange(-(a - 1), a + 1)
            u = p - s - q
            w = np.where(np.abs(u) < a, np.sinc(u) * np.sinc(u / a), 0.0)
            if q.min() >= 0 and q.max() < n:
                out[..., p] = (v[..., q] * w).sum(-1) / w.sum()
        return out
    y = axis(x, sx)
    return np.swapaxes(axis(np.swapaxes(y, -1, -2), sy), -1, -2)


@pytest.mark.parametrize('sx, sy', [(1.37, -2.6), (-0.25, 0.5), (4.0, -3.0), (0.0, 0.9), (-20.5, 0.1)])
def test_translate_fractional_matches_direct_formula(sx, sy):
    N, C, H, W = 1, 2, 10, 14
    x = torch.randn([N, C, H, W], dtype=torch.float64)
    y, mask = eq.translate_fractional(x, sx / W, sy / H)
    ref = _lanczos_translate_reference(x.numpy(), sx, sy)
    valid = ~np.isnan(ref)
    np.testing.assert_array_equal(mask.numpy() == 1, valid)  # the mask is exactly where every tap is inside x
    np.testing.assert_allclose(y.numpy()[valid], ref[valid], rtol=0, atol=1e-12)


def test_translate_fractional_by_whole_pixels_is_roll():
    x = torch.randn([2, 3, 16, 16], dtype=torch.float64)
    y, mask = eq.translate_fractional(x, 3 / 16, -5 / 16)
    m = mask.numpy()
    # A shift by +s loses s + a leading pixels; by -s, s + a - 1 trailing ones (a = 3).
    assert m.sum() == 2 * 3 * (16 - 3 - 3) * (16 - 5 - 2)
    np.testing.assert_allclose(y.numpy() * m, np.roll(x.numpy(), (-5, 3), axis=(2, 3)) * m, rtol=0, atol=1e-15)


@pytest.mark.parametrize('freq', [0.05, 0.1])
def test_translate_fractional_of_sinusoid_is_shifted_sinusoid(freq):
    H, W = 8, 40
    j = torch.arange(W, dtype=torch.float64)
    x = torch.cos(2 * np.pi * freq * j + 0.3).expand(1, 1, H, W).clone()
    shift = 2.37
    y, mask = eq.translate_fractional(x, shift / W, 0.0)
    expected = torch.cos(2 * np.pi * freq * (j - shift) + 0.3).expand(1, 1, H, W)
    assert mask.sum() > 0
    assert ((y - expected).abs() * mask).max() < 1e-2      # Lanczos-3 passband error at <= 0.1 cycles/pixel
    assert ((x - expected).abs() * mask).max() > 0.5       # while the shift itself is large

#----------------------------------------------------------------------------
# Band-limited filter, rotation and pseudo-rotation.

def _direct_filter_reference(lin, a, radius, up, grid_radius):
    """The bandlimit_filter definition with explicit circular convolution sums in numpy float64."""
    n = 2 * grid_radius * up - 1
    pos = (np.arange(n) - n // 2) / up  # centred; periodic with period n / up
    yi, xi = np.meshgrid(pos, pos, indexing='ij')
    xo, yo = lin[0, 0] * xi + lin[0, 1] * yi, lin[1, 0] * xi + lin[1, 1] * yi
    lw = lambda v: np.where(np.abs(v) < a, np.sinc(v / a), 0.0)  # noqa: E731
    fi, fo = np.sinc(xi) * np.sinc(yi), np.sinc(xo) * np.sinc(yo)
    wi, wo = lw(xi) * lw(yi), lw(xo) * lw(yo)
    half = radius * up - 1
    out = np.zeros([2 * half + 1, 2 * half + 1])
    for r in range(-half, half + 1):
        for c in range(-half, half + 1):
            # (u * v)[d] = sum_q u[q] v[d - q] on the periodic grid: v shifted by d.
            vs = [np.roll(v, (r, c), axis=(0, 1)) for v in (fo, wo)]
            out[r + half, c + half] = (fi * vs[0]).sum() * (wi * vs[1]).sum()
    for py in range(up):
        for px in range(up):
            out[py::up, px::up] /= out[py::up, px::up].sum() * up * up
    return out


@pytest.mark.parametrize('angle, up', [(0.3, 1), (-1.1, 2), (np.pi / 2, 2), (2.5, 1)])
def test_bandlimit_filter_matches_direct_circular_convolution(angle, up):
    mat = eq.rotation_matrix(angle)
    got = eq.bandlimit_filter(mat, a=2, radius=3, up=up, grid_radius=8)
    ref = _direct_filter_reference(mat.numpy()[:2, :2], a=2, radius=3, up=up, grid_radius=8)
    assert got.shape == ref.shape == (2 * 3 * up - 1,) * 2
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-12)


def test_bandlimit_filter_phases_sum_to_one_and_are_point_symmetric():
    f = eq.bandlimit_filter(eq.rotation_matrix(0.7))  # the EQ-R filter: a = 3, radius 6, 4x upsampling
    assert f.shape == (47, 47) and f.dtype == torch.float64
    for py in range(4):
        for px in range(4):
            assert float(f[py::4, px::4].sum()) == pytest.approx(1 / 16, abs=1e-14)
    np.testing.assert_allclose(f.numpy(), f.flip([0, 1]).numpy(), rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match='radius'):
        eq.bandlimit_filter(eq.rotation_matrix(0.0), a=4, radius=3)


@pytest.mark.parametrize('k', [1, 2, 3, 0])
def test_rotate_by_quarter_turns_is_rot90_for_bandlimited_images(k):
    x = _bandlimited([1, 2, 24, 24], cutoff=0.2, seed=k)
    y, mask = eq.rotate(x, k * np.pi / 2)
    ref = torch.rot90(x, k, dims=(2, 3))  # rotation_matrix(pi/2) sends content to out(x, y) = in(-y, x)
    m = mask[0, 0]
    assert m.sum() == 12 * 12 and m[6:18, 6:18].all()  # 2 * 23 + 1 upsampled pixels = 6 pixels of border
    assert ((y - ref).abs() * mask).max() < 1e-4


@pytest.mark.parametrize('k, angle', [((2, 1), 0.4), ((4, -3), -2.2), ((1, 5), 1.0)])
def test_rotate_of_sinusoid_is_rotated_sinusoid(k, angle):
    R = 32
    gx, gy = _pixel_coords(R, R)
    pattern = lambda u, v: torch.cos(2 * np.pi * (k[0] * u + k[1] * v) + 0.7)  # noqa: E731  (cycles per image)
    y, mask = eq.rotate(pattern(gx, gy)[None, None], angle)
    c, s = np.cos(angle), np.sin(angle)
    expected = pattern(c * gx - s * gy, s * gx + c * gy)  # out(p) = in(mat^-1 p), mat^-1 = [[c, -s], [s, c]]
    assert mask.sum() > 300
    assert ((y[0, 0] - expected).abs() * mask[0, 0]).max() < 1.5e-2


def test_pseudo_rotation_is_identity_on_the_pixel_grid_and_keeps_inband_content():
    x = torch.randn([1, 2, 20, 20], dtype=torch.float64)
    for angle in (0.0, np.pi / 2, -np.pi):  # the pixel grid maps onto itself: the filter is a unit impulse
        y, mask = eq.pseudo_rotate(x, angle)
        assert mask[0, 0].sum() == 10 * 10 and mask[0, 0, 5:15, 5:15].all()
        np.testing.assert_allclose((y * mask).numpy(), (x * mask).numpy(), rtol=0, atol=1e-12)
    xb = _bandlimited([1, 2, 20, 20], cutoff=0.15, seed=3)
    y, mask = eq.pseudo_rotate(xb, 0.6)
    assert ((y - xb).abs() * mask).max() < 5e-3 * xb.abs().max()
    y, mask = eq.pseudo_rotate(x, 0.6)  # white noise loses its corners of the spectrum
    assert ((y - x).abs() * mask).max() > 0.1

#----------------------------------------------------------------------------
# PSNR and the metric.

def test_psnr_from_sums_hand_computed():
    # MSE 0.01 with peak-to-peak 2: 20 log10(2) + 20 = 26.0206 dB.
    assert eq.psnr_from_sums(0.04, 4) == pytest.approx(26.020599913279625, abs=1e-12)
    assert eq.psnr_from_sums(8.0, 2) == pytest.approx(0.0, abs=1e-12)  # MSE 4 = peak^2
    assert eq.psnr_from_sums(0.0, 10) == float('inf')
    with pytest.raises(ValueError, match='no valid pixels'):
        eq.psnr_from_sums(0.0, 0)


def test_draw_transforms_ranges():
    gen = torch.Generator()
    draws = []
    for b in range(200):
        gen.manual_seed(metric_utils.stream_seed(0, b, purpose=3))
        draws.append(eq.draw_transforms(gen, img_resolution=32))
    t_int = np.array([d['int'] for d in draws])
    t_frac = np.array([d['frac'] for d in draws])
    angles = np.array([d['rot'] for d in draws])
    np.testing.assert_array_equal(t_int * 32, np.round(t_int * 32))  # whole pixels
    assert np.abs(t_int).max() <= 0.125 and np.abs(t_frac).max() <= 0.125 and np.abs(t_frac).max() > 0.1
    assert np.abs(angles).max() <= np.pi and np.abs(angles).max() > 2.5  # +-180 degrees (rotate_max = 1 half-turn)


def test_exactly_equivariant_generator_reaches_infinite_psnr_and_ignoring_one_scores_low():
    opts = lambda G: metric_utils.MetricOptions(G=G, device='cpu')  # noqa: E731
    good = eq.compute_equivariance_metrics(opts(StandInGenerator()), num_samples=16, kinds=('int', 'frac', 'rot'))
    bad = eq.compute_equivariance_metrics(opts(StandInGenerator(follows_transform=False)), num_samples=16, kinds=('int', 'frac', 'rot'))
    assert good[0] == float('inf')            # integer translation is exact: zero error
    assert good[1] > 45 and good[2] > 35      # band-limited resampling: limited by the Lanczos-3 filters
    assert all(b < 15 for b in bad)           # moving by up to 4 pixels / 180 degrees changes these images a lot
    assert all(g > b + 25 for g, b in zip(good, bad))


def test_metric_pools_squared_errors_like_a_numpy_recomputation():
    """EQ-T of a generator that ignores the transform: the error is the image against its own integer shift,
    recomputed in numpy from the same latents and draws, pooled as sum(err) / sum(mask)."""
    G = StandInGenerator(img_resolution=16, follows_transform=False)
    opts = metric_utils.MetricOptions(G=G, device='cpu', seed=5)
    got = eq.compute_equivariance_metrics(opts, num_samples=10, batch_size=4, kinds=('int',))  # 3 batches, 12 samples
    err = cnt = 0.0
    gen = torch.Generator()
    for b in range(3):
        gen.manual_seed(metric_utils.stream_seed(5, b, purpose=3))
        tx, ty = eq.draw_transforms(gen, 16)['int']
        z = metric_utils.item_latents([b * 4 + j for j in range(4)], G.z_dim, seed=5)
        img = G.synthesis(G.mapping(z, None)).numpy().astype(np.float64)
        dx, dy = int(round(tx * 16)), int(round(ty * 16))
        ref = np.roll(img, (dy, dx), axis=(2, 3))
        valid = np.zeros([16, 16])
        valid[max(dy, 0):16 + min(dy, 0), max(dx, 0):16 + min(dx, 0)] = 1
        err += (((ref - img) ** 2) * valid).sum()
        cnt += valid.sum() * 4 * 3
    assert got == pytest.approx(20 * np.log10(2) - 10 * np.log10(err / cnt), abs=1e-6)  # squares in float32, as NVlabs


def test_metric_renders_with_identity_then_inverse_transforms():
    G = StandInGenerator(img_resolution=16)
    gen = torch.Generator().manual_seed(0)
    draws = eq.draw_transforms(gen, 16)
    ws = G.mapping(torch.randn([2, G.z_dim]), None)
    eq.batch_sums(G, ws, draws, ('int', 'frac', 'rot'))
    calls = G.synthesis.calls
    assert [c['noise_mode'] for c in calls] == ['const'] * 4 and all(c['force_fp32'] for c in calls)
    np.testing.assert_array_equal(calls[0]['transform'].numpy(), np.eye(3))
    for call, key in ((calls[1], 'int'), (calls[2], 'frac')):
        expected = np.eye(3)
        expected[:2, 2] = -np.array(draws[key])
        np.testing.assert_allclose(call['transform'].numpy(), expected, rtol=0, atol=1e-7)
    a = draws['rot']
    np.testing.assert_allclose(calls[3]['transform'].numpy(),
                               [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]], rtol=0, atol=1e-7)


def test_registry_and_stylegan2_refusal():
    for name in ['eqt50k_int', 'eqt50k_frac', 'eqr50k', 'eqt1k_int', 'eqt1k_frac', 'eqr1k', 'eqt2k_int', 'eqr10k']:
        assert metric_main.is_valid_metric(name), name
    for name in ['eqt50k', 'eqr50k_int', 'eqt0k_int', 'eqt50k_rot', 'eqr', 'eqt1k_frac_full']:
        assert not metric_main.is_valid_metric(name), name
    assert {'eqt50k_int', 'eqt50k_frac', 'eqr50k', 'eqt1k_int'} <= set(metric_main.list_valid_metrics())

    result = metric_main.calc_metric('eqt1k_int', G=StandInGenerator(img_resolution=16), device='cpu')
    assert sorted(result.results) == ['eqt1k_int'] and result.results.eqt1k_int == float('inf')

    G2 = networks_stylegan2.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3, channel_base=64, channel_max=8,
                                      mapping_kwargs=dict(num_layers=1))
    with pytest.raises(ValueError, match='need a StyleGAN3 generator'):
        metric_main.calc_metric('eqr1k', G=G2, device='cpu')


def test_metric_passes_through_the_registry_with_nvlabs_parameters(monkeypatch):
    seen = []
    monkeypatch.setattr(eq, 'compute_equivariance_metrics', lambda opts, **kw: seen.append(kw) or 42.0)
    for name, n, kind in [('eqt50k_int', 50000, 'int'), ('eqt50k_frac', 50000, 'frac'), ('eqr50k', 50000, 'rot'), ('eqr3k', 3000, 'rot')]:
        assert metric_main.calc_metric(name, G=StandInGenerator(), device='cpu').results[name] == 42.0
        assert seen[-1] == dict(num_samples=n, batch_size=4, kinds=(kind,))

#----------------------------------------------------------------------------
# Distributed: 2 gloo processes == 1 process.

def _eq_all(num_gpus, rank):
    opts = metric_utils.MetricOptions(G=StandInGenerator(img_resolution=16), device='cpu', num_gpus=num_gpus, rank=rank)
    return eq.compute_equivariance_metrics(opts, num_samples=12, batch_size=4, kinds=('int', 'frac', 'rot'))  # 3 batches


def _dist_worker(rank, num_gpus, init_file, out_file):
    torch.set_num_threads(1)
    torch.distributed.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=num_gpus)
    try:
        np.save(f'{out_file}.{rank}.npy', np.array(_eq_all(num_gpus, rank)))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_match_one():
    single = np.array(_eq_all(1, 0))
    with tempfile.TemporaryDirectory() as tmp:
        out_file = os.path.join(tmp, 'out')
        torch.multiprocessing.spawn(_dist_worker, args=(2, os.path.join(tmp, 'init'), out_file), nprocs=2)
        for rank in range(2):
            np.testing.assert_array_equal(np.load(f'{out_file}.{rank}.npy'), single)  # bit for bit, on every rank
    assert single[0] == np.inf and np.isfinite(single[1:]).all()
