"""Tests for training/augment.py: the ADA pipeline (identity at p=0, every augmentation,
gradients to second order) and the adaptive p controller."""

import numpy as np
import pytest
import torch

from torch_utils import persistence
from torch_utils import training_stats
from training import augment
from training.augment import AdaController, AugmentPipe, augpipe_specs

AUGMENTATIONS = ['xflip', 'rotate90', 'xint', 'scale', 'rotate', 'aniso', 'xfrac', 'brightness', 'contrast',
                 'lumaflip', 'hue', 'saturation', 'imgfilter', 'noise', 'cutout']
GEOMETRIC = ['xflip', 'rotate90', 'xint', 'scale', 'rotate', 'aniso', 'xfrac']


def images(n=8, c=3, res=16, dtype=torch.float32, seed=3):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand([n, c, res, res], generator=g) * 2 - 1).to(dtype)


def smooth_images(n=2, res=32):
    yy, xx = torch.meshgrid(torch.arange(res, dtype=torch.float32), torch.arange(res, dtype=torch.float32), indexing='ij')
    img = torch.stack([torch.sin(xx * 0.2 + yy * 0.1), torch.cos(yy * 0.15), torch.sin(xx * 0.1) * torch.cos(yy * 0.1)])
    return img.unsqueeze(0).repeat([n, 1, 1, 1])


def test_presets_table():
    assert set(augpipe_specs) == {'blit', 'geom', 'color', 'filter', 'noise', 'cutout', 'bg', 'bgc', 'bgcf', 'bgcfn', 'bgcfnc'}
    assert set(augpipe_specs['bgcfnc']) == set(AUGMENTATIONS)
    assert augpipe_specs['bgc'] == {**augpipe_specs['blit'], **augpipe_specs['geom'], **augpipe_specs['color']}
    pipe = AugmentPipe(**augpipe_specs['bgc'])
    assert persistence.class_name_of(pipe) == 'training.augment.AugmentPipe'
    assert pipe.init_kwargs == augpipe_specs['bgc']
    assert 'p' in dict(pipe.named_buffers()) and 'p' in pipe.state_dict()


@pytest.mark.parametrize('preset', sorted(augpipe_specs))
def test_p_zero_is_exact_identity(preset):
    pipe = AugmentPipe(**augpipe_specs[preset])
    pipe.p.zero_()
    x = images()
    assert torch.equal(pipe(x), x)


@pytest.mark.parametrize('name', AUGMENTATIONS)
@pytest.mark.parametrize('channels', [3, 1])
def test_each_augmentation_changes_image(name, channels):
    if channels == 1 and name in ('hue', 'saturation'):
        pytest.skip('hue and saturation act on color only')
    pipe = AugmentPipe(**{name: 1})
    x = images(c=channels)
    y = pipe(x)
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert torch.isfinite(y).all()
    changed = (y - x).flatten(1).abs().amax(dim=1) > 1e-3
    assert changed.any(), f'{name} at p=1 left every image unchanged'


@pytest.mark.parametrize('name', GEOMETRIC)
def test_zero_strength_geometry_is_identity(name):
    strength_off = dict(xint=dict(xint_max=0), scale=dict(scale_std=0), rotate=dict(rotate_max=0),
                        aniso=dict(aniso_std=0), xfrac=dict(xfrac_std=0))
    if name in ('xflip', 'rotate90'):  # no strength knob: the identity draws (i = 0) must pass unchanged
        pipe = AugmentPipe(**{name: 1})
        x = images(n=16)
        y = pipe(x)
        same = [torch.allclose(y[i], x[i], atol=1e-5) for i in range(16)]
        assert any(same) and not all(same)
        return
    pipe = AugmentPipe(**{name: 1}, **strength_off[name])
    x = images()
    torch.testing.assert_close(pipe(x), x, atol=1e-5, rtol=0)


def test_integer_translation_is_a_pixel_shift():
    # Reference: a pure shift by one pixel (percentile 0.75 -> t = 0.5 * xint_max * 16 = 1 pixel).
    # The whole resampler (pad, sym6 upsample, grid_sample, downsample) must reproduce it exactly.
    pipe = AugmentPipe(xint=1, xint_max=0.125)
    x = images(n=2)
    y = pipe(x, debug_percentile=0.75)
    torch.testing.assert_close(y[:, :, 1:, 1:], x[:, :, :-1, :-1], atol=1e-5, rtol=0)


def test_flip_and_rotation_of_smooth_image():
    # Against torch.flip / torch.rot90 on a band-limited image (the sym6 filter is not symmetric,
    # so the resampled result only approximates the exact pixel permutation).
    x = smooth_images()
    y = AugmentPipe(xflip=1)(x, debug_percentile=0.75)            # i = 1: flip
    torch.testing.assert_close(y, x.flip(3), atol=0.03, rtol=0)
    y = AugmentPipe(rotate90=1)(x, debug_percentile=0.3)          # i = 1: 90 degrees
    errs = [float((y - torch.rot90(x, k, dims=(2, 3))).abs().max()) for k in (1, 3)]
    assert min(errs) < 0.03


def test_color_matrix_against_reference():
    # Brightness alone at a fixed percentile adds erfinv(2 * 0.8 - 1) * std to every channel.
    x = images(n=2)
    y = AugmentPipe(brightness=1, brightness_std=0.2)(x, debug_percentile=0.8)
    b = float(torch.erfinv(torch.tensor(0.6))) * 0.2
    torch.testing.assert_close(y, x + b, atol=1e-6, rtol=0)
    # Saturation 0 (percentile -> 2^(-inf)) would grey out; use contrast: scaling about 0.
    y = AugmentPipe(contrast=1, contrast_std=0.5)(x, debug_percentile=0.9)
    c = 2 ** (float(torch.erfinv(torch.tensor(0.8))) * 0.5)
    torch.testing.assert_close(y, x * c, atol=1e-6, rtol=0)
    # Luma flip: Householder reflection x - 2 (x . v) v with v = (1,1,1)/sqrt(3).
    y = AugmentPipe(lumaflip=1)(x, debug_percentile=0.9)
    ref = x - 2 * x.mean(dim=1, keepdim=True)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=0)


def test_imgfilter_bank_reconstructs():
    bank = augment._imgfilter_bank()
    assert bank.shape == (4, 43)
    impulse = np.zeros(43)
    impulse[21] = 1
    np.testing.assert_allclose(bank.sum(axis=0), impulse, atol=1e-12)
    np.testing.assert_allclose(bank, bank[:, ::-1], atol=1e-12)  # zero-phase bands


def test_rgba_and_grayscale():
    pipe = AugmentPipe(**augpipe_specs['bgcfnc'])
    x = images(c=4)
    y = pipe(x)
    assert y.shape == x.shape
    pipe_color = AugmentPipe(**augpipe_specs['color'])
    y = pipe_color(x)
    assert torch.equal(y[:, 3], x[:, 3])  # alpha untouched by color transforms
    assert pipe(images(c=1)).shape == (8, 1, 16, 16)


def test_debug_percentile_and_dtypes():
    pipe = AugmentPipe(**augpipe_specs['bgcfnc'])
    for pct in [0.1, 0.5, 0.9]:
        y = pipe(images(n=2), debug_percentile=pct)
        assert torch.isfinite(y).all()
    y = pipe(images(n=2, dtype=torch.float64))
    assert y.dtype == torch.float64


@pytest.mark.parametrize('name', AUGMENTATIONS)
def test_gradients_first_and_second_order(name):
    # R1 through the pipe: d/dw |d/dx <w, aug(x)^2>|^2 needs double backward through every op.
    pipe = AugmentPipe(**{name: 1})
    x = images(n=4).requires_grad_(True)
    w = torch.randn([3, 16, 16], requires_grad=True)
    torch.manual_seed(11)
    out = (pipe(x).square() * w).sum()
    gx, = torch.autograd.grad(out, x, create_graph=True)
    assert torch.isfinite(gx).all() and float(gx.detach().abs().sum()) > 0
    gx.square().sum().backward()
    assert torch.isfinite(w.grad).all() and float(w.grad.abs().sum()) > 0


def test_gradgradcheck_geometric():
    pipe = AugmentPipe(rotate=1, xfrac=1)
    x = images(n=1, res=8, dtype=torch.float64).requires_grad_(True)

    def f(inp):
        torch.manual_seed(2)
        return pipe(inp)
    assert not torch.equal(f(x), x)
    assert torch.autograd.gradcheck(f, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(f, (x,), fast_mode=True)


def test_bad_input():
    pipe = AugmentPipe(xflip=1)
    with pytest.raises(ValueError, match='batch, channels, height, width'):
        pipe(torch.zeros([3, 16, 16]))
    with pytest.raises(ValueError, match='got 2'):
        pipe(torch.zeros([1, 2, 16, 16]))
    with pytest.raises(ValueError, match='imgfilter_bands'):
        AugmentPipe(imgfilter=1, imgfilter_bands=[1, 1])

#----------------------------------------------------------------------------
# Adaptive p.

def test_controller_speed_and_direction():
    pipe = AugmentPipe(xflip=1)
    pipe.p.zero_()
    ada = AdaController(target=0.6, interval=4, speed_kimg=1, batch_size=8)
    step = 8 * 4 / 1000
    assert ada.step_size == pytest.approx(step)
    expected = 0.0
    # Signs above the target: p rises by `step` every 4 updates, and not in between.
    for i in range(12):
        ada.accumulate(torch.tensor([1.0, 2.0, -1.0, 3.0, 1.0, 0.5]))  # mean sign 2/3 > target
        ada.update(pipe)
        if (i + 1) % 4 == 0:
            expected += step
        assert float(pipe.p) == pytest.approx(expected, abs=1e-7)
    # Below the target: p falls back at the same speed, and clamps at 0.
    for i in range(16):
        ada.accumulate(torch.tensor([-1.0, 1.0]))
        ada.update(pipe)
        if (i + 1) % 4 == 0:
            expected = max(expected - step, 0)
        assert float(pipe.p) == pytest.approx(expected, abs=1e-7)
    assert float(pipe.p) == 0


def test_controller_clamps_at_one_and_does_not_report():
    pipe = AugmentPipe(xflip=1)
    pipe.p.fill_(0.99)
    ada = AdaController(target=0.6, interval=1, speed_kimg=0.1, batch_size=10)
    col = training_stats.Collector(regex='Progress/augment')
    ada.accumulate(torch.ones([10]))
    ada.update(pipe)
    assert float(pipe.p) == 1.0
    # NVlabs reports 'Progress/augment' once per tick from the training loop (end-of-tick p), not per update.
    col.update()
    assert col.num('Progress/augment') == 0
    ada.update(pipe)  # nothing accumulated: p stays
    assert float(pipe.p) == 1.0


def test_controller_state_round_trip():
    pipe_a, pipe_b = AugmentPipe(xflip=1), AugmentPipe(xflip=1)
    pipe_a.p.zero_()
    ada = AdaController(target=0.6, interval=4, speed_kimg=1, batch_size=8)
    for _ in range(6):
        ada.accumulate(torch.ones([8]))
        ada.update(pipe_a)
    restored = AdaController(target=0.6, interval=4, speed_kimg=1, batch_size=8)
    restored.load_state_dict(ada.state_dict())
    pipe_b.load_state_dict(pipe_a.state_dict())
    for _ in range(6):
        for a, p in [(ada, pipe_a), (restored, pipe_b)]:
            a.accumulate(torch.tensor([1.0, -1.0, 1.0]))
            a.update(p)
        assert float(pipe_a.p) == float(pipe_b.p)
    assert float(pipe_a.p) == pytest.approx(0.032)  # up at update 4 and 8, down at 12
    with pytest.raises(KeyError, match='num_updates'):
        restored.load_state_dict({'sums': torch.zeros(2)})
    with pytest.raises(ValueError, match='batch_size'):
        AdaController(target=0.6)


def test_presets_match_nvlabs_table():
    # NVlabs train.py --augpipe table, written out by hand.
    blit = dict(xflip=1, rotate90=1, xint=1)
    geom = dict(scale=1, rotate=1, aniso=1, xfrac=1)
    color = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
    expected = {'blit': blit, 'geom': geom, 'color': color, 'filter': dict(imgfilter=1), 'noise': dict(noise=1),
                'cutout': dict(cutout=1), 'bg': {**blit, **geom}, 'bgc': {**blit, **geom, **color},
                'bgcf': {**blit, **geom, **color, 'imgfilter': 1}, 'bgcfn': {**blit, **geom, **color, 'imgfilter': 1, 'noise': 1},
                'bgcfnc': {**blit, **geom, **color, 'imgfilter': 1, 'noise': 1, 'cutout': 1}}
    assert augpipe_specs == expected
    # NVlabs constructor defaults (ranges and strengths).
    pipe = AugmentPipe()
    defaults = dict(xint_max=0.125, scale_std=0.2, rotate_max=1, aniso_std=0.2, xfrac_std=0.125, brightness_std=0.2, contrast_std=0.5,
                    hue_max=1, saturation_std=1, imgfilter_bands=[1, 1, 1, 1], imgfilter_std=1, noise_std=0.1, cutout_size=0.5)
    assert {k: getattr(pipe, k) for k in defaults} == defaults
    assert float(pipe.p) == 1


def test_imgfilter_bank_frequency_responses():
    # Zero-phase responses of the 4 bands: with L, H the responses of H(z)H(1/z)/2 and H(-z)H(-1/z)/2,
    # band 0 = L(4w) L(2w) L(w), band 1 = H(4w) L(2w) L(w), band 2 = H(2w) L(w), band 3 = H(w) (octave bands).
    lo = np.asarray(augment.WAVELETS['sym2'])
    hi = lo * (-1.0) ** np.arange(4)
    lo2, hi2 = np.convolve(lo, lo[::-1]) / 2, np.convolve(hi, hi[::-1]) / 2
    w = np.linspace(0, np.pi, 17)
    resp = lambda taps, w: (taps[None, :] * np.cos(w[:, None] * (np.arange(taps.size) - (taps.size - 1) / 2))).sum(1)
    L, H = (lambda k: resp(lo2, k * w)), (lambda k: resp(hi2, k * w))
    expected = [L(4) * L(2) * L(1), H(4) * L(2) * L(1), H(2) * L(1), H(1)]
    bank = augment._imgfilter_bank()
    for band in range(4):
        np.testing.assert_allclose(resp(bank[band], w), expected[band], atol=1e-12)
    np.testing.assert_allclose(AugmentPipe().Hz_fbank.numpy(), bank, atol=1e-7)
