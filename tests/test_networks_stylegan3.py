"""StyleGAN3 networks (training/networks_stylegan3.py) against the NVlabs facts
(shared/reference/nvlabs_stylegan3_facts.md, transcribed below): state_dict keys and shapes of the
256px T and R generators, per-layer sizes, sampling rates, cutoffs, taps and paddings; filters
against float64 evaluations of their formulas; the Fourier-feature input against numpy."""

import numpy as np
import pytest
import scipy.special
import torch

from training import networks_stylegan3 as sg3

pytestmark = pytest.mark.usefixtures('one_thread')

T_KWARGS = dict(z_dim=512, w_dim=512, mapping_kwargs=dict(num_layers=2), channel_base=32768, channel_max=512,
                magnitude_ema_beta=0.9988915792636801, c_dim=0, img_resolution=256, img_channels=3)
R_KWARGS = dict(T_KWARGS, channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True)

# Transcribed from the facts file ("Key/shape listing and per-layer sampling parameters (256x256, batch 32)").
KEYS_T = """
synthesis.input.weight [512,512] param
synthesis.input.transform [3,3] buffer
synthesis.input.freqs [512,2] buffer
synthesis.input.phases [512] buffer
synthesis.input.affine.weight [4,512] param
synthesis.input.affine.bias [4] param
synthesis.L0_36_512.weight [512,512,3,3] param
synthesis.L0_36_512.bias [512] param
synthesis.L0_36_512.magnitude_ema [] buffer
synthesis.L0_36_512.up_filter [12] buffer
synthesis.L0_36_512.down_filter [12] buffer
synthesis.L0_36_512.affine.weight [512,512] param
synthesis.L0_36_512.affine.bias [512] param
synthesis.L1_36_512.weight [512,512,3,3] param
synthesis.L1_36_512.bias [512] param
synthesis.L1_36_512.magnitude_ema [] buffer
synthesis.L1_36_512.up_filter [12] buffer
synthesis.L1_36_512.down_filter [12] buffer
synthesis.L1_36_512.affine.weight [512,512] param
synthesis.L1_36_512.affine.bias [512] param
synthesis.L2_36_512.weight [512,512,3,3] param
synthesis.L2_36_512.bias [512] param
synthesis.L2_36_512.magnitude_ema [] buffer
synthesis.L2_36_512.up_filter [12] buffer
synthesis.L2_36_512.down_filter [12] buffer
synthesis.L2_36_512.affine.weight [512,512] param
synthesis.L2_36_512.affine.bias [512] param
synthesis.L3_52_512.weight [512,512,3,3] param
synthesis.L3_52_512.bias [512] param
synthesis.L3_52_512.magnitude_ema [] buffer
synthesis.L3_52_512.up_filter [24] buffer
synthesis.L3_52_512.down_filter [12] buffer
synthesis.L3_52_512.affine.weight [512,512] param
synthesis.L3_52_512.affine.bias [512] param
synthesis.L4_52_512.weight [512,512,3,3] param
synthesis.L4_52_512.bias [512] param
synthesis.L4_52_512.magnitude_ema [] buffer
synthesis.L4_52_512.up_filter [12] buffer
synthesis.L4_52_512.down_filter [12] buffer
synthesis.L4_52_512.affine.weight [512,512] param
synthesis.L4_52_512.affine.bias [512] param
synthesis.L5_84_512.weight [512,512,3,3] param
synthesis.L5_84_512.bias [512] param
synthesis.L5_84_512.magnitude_ema [] buffer
synthesis.L5_84_512.up_filter [24] buffer
synthesis.L5_84_512.down_filter [12] buffer
synthesis.L5_84_512.affine.weight [512,512] param
synthesis.L5_84_512.affine.bias [512] param
synthesis.L6_84_512.weight [512,512,3,3] param
synthesis.L6_84_512.bias [512] param
synthesis.L6_84_512.magnitude_ema [] buffer
synthesis.L6_84_512.up_filter [12] buffer
synthesis.L6_84_512.down_filter [12] buffer
synthesis.L6_84_512.affine.weight [512,512] param
synthesis.L6_84_512.affine.bias [512] param
synthesis.L7_148_512.weight [512,512,3,3] param
synthesis.L7_148_512.bias [512] param
synthesis.L7_148_512.magnitude_ema [] buffer
synthesis.L7_148_512.up_filter [24] buffer
synthesis.L7_148_512.down_filter [12] buffer
synthesis.L7_148_512.affine.weight [512,512] param
synthesis.L7_148_512.affine.bias [512] param
synthesis.L8_148_512.weight [512,512,3,3] param
synthesis.L8_148_512.bias [512] param
synthesis.L8_148_512.magnitude_ema [] buffer
synthesis.L8_148_512.up_filter [12] buffer
synthesis.L8_148_512.down_filter [12] buffer
synthesis.L8_148_512.affine.weight [512,512] param
synthesis.L8_148_512.affine.bias [512] param
synthesis.L9_148_362.weight [362,512,3,3] param
synthesis.L9_148_362.bias [362] param
synthesis.L9_148_362.magnitude_ema [] buffer
synthesis.L9_148_362.up_filter [12] buffer
synthesis.L9_148_362.down_filter [12] buffer
synthesis.L9_148_362.affine.weight [512,512] param
synthesis.L9_148_362.affine.bias [512] param
synthesis.L10_276_256.weight [256,362,3,3] param
synthesis.L10_276_256.bias [256] param
synthesis.L10_276_256.magnitude_ema [] buffer
synthesis.L10_276_256.up_filter [24] buffer
synthesis.L10_276_256.down_filter [12] buffer
synthesis.L10_276_256.affine.weight [362,512] param
synthesis.L10_276_256.affine.bias [362] param
synthesis.L11_276_181.weight [181,256,3,3] param
synthesis.L11_276_181.bias [181] param
synthesis.L11_276_181.magnitude_ema [] buffer
synthesis.L11_276_181.up_filter [12] buffer
synthesis.L11_276_181.down_filter [12] buffer
synthesis.L11_276_181.affine.weight [256,512] param
synthesis.L11_276_181.affine.bias [256] param
synthesis.L12_276_128.weight [128,181,3,3] param
synthesis.L12_276_128.bias [128] param
synthesis.L12_276_128.magnitude_ema [] buffer
synthesis.L12_276_128.up_filter [12] buffer
synthesis.L12_276_128.down_filter [12] buffer
synthesis.L12_276_128.affine.weight [181,512] param
synthesis.L12_276_128.affine.bias [181] param
synthesis.L13_256_128.weight [128,128,3,3] param
synthesis.L13_256_128.bias [128] param
synthesis.L13_256_128.magnitude_ema [] buffer
synthesis.L13_256_128.up_filter [12] buffer
synthesis.L13_256_128.down_filter [12] buffer
synthesis.L13_256_128.affine.weight [128,512] param
synthesis.L13_256_128.affine.bias [128] param
synthesis.L14_256_3.weight [3,128,1,1] param
synthesis.L14_256_3.bias [3] param
synthesis.L14_256_3.magnitude_ema [] buffer
synthesis.L14_256_3.affine.weight [128,512] param
synthesis.L14_256_3.affine.bias [128] param
mapping.w_avg [512] buffer
mapping.fc0.weight [512,512] param
mapping.fc0.bias [512] param
mapping.fc1.weight [512,512] param
mapping.fc1.bias [512] param
"""

LAYERS_T = """
L0_36_512 False False False 512 512 [36,36] [36,36] 16 16 2 2 6 6 3 2 2 12 12 [9,8,9,8] False
L1_36_512 False False False 512 512 [36,36] [36,36] 16 16 2 2.82843 6 5.17157 3 2 2 12 12 [9,8,9,8] False
L2_36_512 False False False 512 512 [36,36] [36,36] 16 16 2.82843 4 5.17157 4 3 2 2 12 12 [9,8,9,8] False
L3_52_512 False False True 512 512 [36,36] [52,52] 16 32 4 5.65685 4 10.3431 3 4 2 24 12 [-6,-9,-6,-9] False
L4_52_512 False False True 512 512 [52,52] [52,52] 32 32 5.65685 8 10.3431 8 3 2 2 12 12 [9,8,9,8] False
L5_84_512 False False True 512 512 [52,52] [84,84] 32 64 8 11.3137 8 20.6863 3 4 2 24 12 [-6,-9,-6,-9] False
L6_84_512 False False True 512 512 [84,84] [84,84] 64 64 11.3137 16 20.6863 16 3 2 2 12 12 [9,8,9,8] False
L7_148_512 False False True 512 512 [84,84] [148,148] 64 128 16 22.6274 16 41.3726 3 4 2 24 12 [-6,-9,-6,-9] False
L8_148_512 False False True 512 512 [148,148] [148,148] 128 128 22.6274 32 41.3726 32 3 2 2 12 12 [9,8,9,8] False
L9_148_362 False False True 512 362 [148,148] [148,148] 128 128 32 45.2548 32 18.7452 3 2 2 12 12 [9,8,9,8] False
L10_276_256 False False True 362 256 [148,148] [276,276] 128 256 45.2548 64 18.7452 64 3 4 2 24 12 [-6,-9,-6,-9] False
L11_276_181 False False True 256 181 [276,276] [276,276] 256 256 64 90.5097 64 37.4903 3 2 2 12 12 [9,8,9,8] False
L12_276_128 False True True 181 128 [276,276] [276,276] 256 256 90.5097 128 37.4903 29.5865 3 2 2 12 12 [9,8,9,8] False
L13_256_128 False True True 128 128 [276,276] [256,256] 256 256 128 128 29.5865 29.5865 3 2 2 12 12 [-11,-12,-11,-12] False
L14_256_3 True True True 128 3 [256,256] [256,256] 256 256 128 128 29.5865 29.5865 1 1 1 1 1 [0,0,0,0] False
"""

KEYS_R = """
synthesis.input.weight [1024,1024] param
synthesis.input.transform [3,3] buffer
synthesis.input.freqs [1024,2] buffer
synthesis.input.phases [1024] buffer
synthesis.input.affine.weight [4,512] param
synthesis.input.affine.bias [4] param
synthesis.L0_36_1024.weight [1024,1024,1,1] param
synthesis.L0_36_1024.bias [1024] param
synthesis.L0_36_1024.magnitude_ema [] buffer
synthesis.L0_36_1024.up_filter [12] buffer
synthesis.L0_36_1024.down_filter [12,12] buffer
synthesis.L0_36_1024.affine.weight [1024,512] param
synthesis.L0_36_1024.affine.bias [1024] param
synthesis.L1_36_1024.weight [1024,1024,1,1] param
synthesis.L1_36_1024.bias [1024] param
synthesis.L1_36_1024.magnitude_ema [] buffer
synthesis.L1_36_1024.up_filter [12] buffer
synthesis.L1_36_1024.down_filter [12,12] buffer
synthesis.L1_36_1024.affine.weight [1024,512] param
synthesis.L1_36_1024.affine.bias [1024] param
synthesis.L2_36_1024.weight [1024,1024,1,1] param
synthesis.L2_36_1024.bias [1024] param
synthesis.L2_36_1024.magnitude_ema [] buffer
synthesis.L2_36_1024.up_filter [12] buffer
synthesis.L2_36_1024.down_filter [12,12] buffer
synthesis.L2_36_1024.affine.weight [1024,512] param
synthesis.L2_36_1024.affine.bias [1024] param
synthesis.L3_52_1024.weight [1024,1024,1,1] param
synthesis.L3_52_1024.bias [1024] param
synthesis.L3_52_1024.magnitude_ema [] buffer
synthesis.L3_52_1024.up_filter [24] buffer
synthesis.L3_52_1024.down_filter [12,12] buffer
synthesis.L3_52_1024.affine.weight [1024,512] param
synthesis.L3_52_1024.affine.bias [1024] param
synthesis.L4_52_1024.weight [1024,1024,1,1] param
synthesis.L4_52_1024.bias [1024] param
synthesis.L4_52_1024.magnitude_ema [] buffer
synthesis.L4_52_1024.up_filter [12] buffer
synthesis.L4_52_1024.down_filter [12,12] buffer
synthesis.L4_52_1024.affine.weight [1024,512] param
synthesis.L4_52_1024.affine.bias [1024] param
synthesis.L5_84_1024.weight [1024,1024,1,1] param
synthesis.L5_84_1024.bias [1024] param
synthesis.L5_84_1024.magnitude_ema [] buffer
synthesis.L5_84_1024.up_filter [24] buffer
synthesis.L5_84_1024.down_filter [12,12] buffer
synthesis.L5_84_1024.affine.weight [1024,512] param
synthesis.L5_84_1024.affine.bias [1024] param
synthesis.L6_84_1024.weight [1024,1024,1,1] param
synthesis.L6_84_1024.bias [1024] param
synthesis.L6_84_1024.magnitude_ema [] buffer
synthesis.L6_84_1024.up_filter [12] buffer
synthesis.L6_84_1024.down_filter [12,12] buffer
synthesis.L6_84_1024.affine.weight [1024,512] param
synthesis.L6_84_1024.affine.bias [1024] param
synthesis.L7_148_1024.weight [1024,1024,1,1] param
synthesis.L7_148_1024.bias [1024] param
synthesis.L7_148_1024.magnitude_ema [] buffer
synthesis.L7_148_1024.up_filter [24] buffer
synthesis.L7_148_1024.down_filter [12,12] buffer
synthesis.L7_148_1024.affine.weight [1024,512] param
synthesis.L7_148_1024.affine.bias [1024] param
synthesis.L8_148_1024.weight [1024,1024,1,1] param
synthesis.L8_148_1024.bias [1024] param
synthesis.L8_148_1024.magnitude_ema [] buffer
synthesis.L8_148_1024.up_filter [12] buffer
synthesis.L8_148_1024.down_filter [12,12] buffer
synthesis.L8_148_1024.affine.weight [1024,512] param
synthesis.L8_148_1024.affine.bias [1024] param
synthesis.L9_148_724.weight [724,1024,1,1] param
synthesis.L9_148_724.bias [724] param
synthesis.L9_148_724.magnitude_ema [] buffer
synthesis.L9_148_724.up_filter [12] buffer
synthesis.L9_148_724.down_filter [12,12] buffer
synthesis.L9_148_724.affine.weight [1024,512] param
synthesis.L9_148_724.affine.bias [1024] param
synthesis.L10_276_512.weight [512,724,1,1] param
synthesis.L10_276_512.bias [512] param
synthesis.L10_276_512.magnitude_ema [] buffer
synthesis.L10_276_512.up_filter [24] buffer
synthesis.L10_276_512.down_filter [12,12] buffer
synthesis.L10_276_512.affine.weight [724,512] param
synthesis.L10_276_512.affine.bias [724] param
synthesis.L11_276_362.weight [362,512,1,1] param
synthesis.L11_276_362.bias [362] param
synthesis.L11_276_362.magnitude_ema [] buffer
synthesis.L11_276_362.up_filter [12] buffer
synthesis.L11_276_362.down_filter [12,12] buffer
synthesis.L11_276_362.affine.weight [512,512] param
synthesis.L11_276_362.affine.bias [512] param
synthesis.L12_276_256.weight [256,362,1,1] param
synthesis.L12_276_256.bias [256] param
synthesis.L12_276_256.magnitude_ema [] buffer
synthesis.L12_276_256.up_filter [12] buffer
synthesis.L12_276_256.down_filter [12] buffer
synthesis.L12_276_256.affine.weight [362,512] param
synthesis.L12_276_256.affine.bias [362] param
synthesis.L13_256_256.weight [256,256,1,1] param
synthesis.L13_256_256.bias [256] param
synthesis.L13_256_256.magnitude_ema [] buffer
synthesis.L13_256_256.up_filter [12] buffer
synthesis.L13_256_256.down_filter [12] buffer
synthesis.L13_256_256.affine.weight [256,512] param
synthesis.L13_256_256.affine.bias [256] param
synthesis.L14_256_3.weight [3,256,1,1] param
synthesis.L14_256_3.bias [3] param
synthesis.L14_256_3.magnitude_ema [] buffer
synthesis.L14_256_3.affine.weight [256,512] param
synthesis.L14_256_3.affine.bias [256] param
mapping.w_avg [512] buffer
mapping.fc0.weight [512,512] param
mapping.fc0.bias [512] param
mapping.fc1.weight [512,512] param
mapping.fc1.bias [512] param
"""

LAYERS_R = """
L0_36_1024 False False False 1024 1024 [36,36] [36,36] 16 16 2 2 6 6 1 2 2 12 12 [11,10,11,10] True
L1_36_1024 False False False 1024 1024 [36,36] [36,36] 16 16 2 2.82843 6 5.17157 1 2 2 12 12 [11,10,11,10] True
L2_36_1024 False False False 1024 1024 [36,36] [36,36] 16 16 2.82843 4 5.17157 4 1 2 2 12 12 [11,10,11,10] True
L3_52_1024 False False True 1024 1024 [36,36] [52,52] 16 32 4 5.65685 4 10.3431 1 4 2 24 12 [-2,-5,-2,-5] True
L4_52_1024 False False True 1024 1024 [52,52] [52,52] 32 32 5.65685 8 10.3431 8 1 2 2 12 12 [11,10,11,10] True
L5_84_1024 False False True 1024 1024 [52,52] [84,84] 32 64 8 11.3137 8 20.6863 1 4 2 24 12 [-2,-5,-2,-5] True
L6_84_1024 False False True 1024 1024 [84,84] [84,84] 64 64 11.3137 16 20.6863 16 1 2 2 12 12 [11,10,11,10] True
L7_148_1024 False False True 1024 1024 [84,84] [148,148] 64 128 16 22.6274 16 41.3726 1 4 2 24 12 [-2,-5,-2,-5] True
L8_148_1024 False False True 1024 1024 [148,148] [148,148] 128 128 22.6274 32 41.3726 32 1 2 2 12 12 [11,10,11,10] True
L9_148_724 False False True 1024 724 [148,148] [148,148] 128 128 32 45.2548 32 18.7452 1 2 2 12 12 [11,10,11,10] True
L10_276_512 False False True 724 512 [148,148] [276,276] 128 256 45.2548 64 18.7452 64 1 4 2 24 12 [-2,-5,-2,-5] True
L11_276_362 False False True 512 362 [276,276] [276,276] 256 256 64 90.5097 64 37.4903 1 2 2 12 12 [11,10,11,10] True
L12_276_256 False True True 362 256 [276,276] [276,276] 256 256 90.5097 128 37.4903 29.5865 1 2 2 12 12 [11,10,11,10] False
L13_256_256 False True True 256 256 [276,276] [256,256] 256 256 128 128 29.5865 29.5865 1 2 2 12 12 [-9,-10,-9,-10] False
L14_256_3 True True True 256 3 [256,256] [256,256] 256 256 128 128 29.5865 29.5865 1 1 1 1 1 [0,0,0,0] False
"""

LAYER_COLUMNS = ('torgb crit fp16 in_ch out_ch in_size out_size in_sr out_sr in_cutoff out_cutoff in_hw out_hw k up down '
                 'up_taps down_taps padding down_radial').split()


def _parse_keys(text):
    rows = []
    for line in text.strip().splitlines():
        key, shape, kind = line.split()
        rows.append((key, [int(v) for v in shape.strip('[]').split(',') if v], kind))
    return rows


def _parse_layers(text):
    rows = {}
    for line in text.strip().splitlines():
        name, *cells = line.split()
        rows[name] = dict(zip(LAYER_COLUMNS, [eval(c, {}) for c in cells]))  # literals only (True, 36, [9,8,9,8])
    return rows


@pytest.fixture(scope='module', params=['T', 'R'])
def config(request):
    kwargs = T_KWARGS if request.param == 'T' else R_KWARGS
    torch.manual_seed(0)
    G = sg3.Generator(**kwargs)
    keys = _parse_keys(KEYS_T if request.param == 'T' else KEYS_R)
    layers = _parse_layers(LAYERS_T if request.param == 'T' else LAYERS_R)
    return G, keys, layers


def test_state_dict_keys_and_shapes_match_nvlabs(config):
    G, keys, _ = config
    buffers = dict(G.named_buffers())
    got = [(k, list(v.shape), 'buffer' if k in buffers else 'param') for k, v in G.state_dict().items()]
    assert got == keys  # names, order, shapes and kinds
    assert all(v.dtype == torch.float32 for v in G.state_dict().values())
    assert G.num_ws == G.mapping.num_ws == G.synthesis.num_ws == 16


def test_per_layer_sampling_parameters_match_nvlabs(config):
    G, _, layers = config
    assert G.synthesis.layer_names == list(layers)
    for name, ref in layers.items():
        layer = getattr(G.synthesis, name)
        got = dict(torgb=layer.is_torgb, crit=layer.is_critically_sampled, fp16=layer.use_fp16, in_ch=layer.in_channels,
                   out_ch=layer.out_channels, in_size=list(layer.in_size), out_size=list(layer.out_size), in_sr=layer.in_sampling_rate,
                   out_sr=layer.out_sampling_rate, k=layer.conv_kernel, up=layer.up_factor, down=layer.down_factor,
                   up_taps=layer.up_taps, down_taps=layer.down_taps, padding=layer.padding, down_radial=layer.down_radial)
        for col, value in got.items():
            assert value == ref[col], f'{name}.{col}: got {value}, facts {ref[col]}'
        for col, value in dict(in_cutoff=layer.in_cutoff, out_cutoff=layer.out_cutoff, in_hw=layer.in_half_width,
                               out_hw=layer.out_half_width).items():
            assert value == pytest.approx(ref[col], abs=6e-5), f'{name}.{col}: got {value}, facts {ref[col]}'
        # Buffers agree with the taps and the radial flag (ToRGB has none).
        if layer.is_torgb:
            assert layer.up_filter is None and layer.down_filter is None
        else:
            assert list(layer.up_filter.shape) == [ref['up_taps']]
            assert list(layer.down_filter.shape) == [ref['down_taps']] * (2 if ref['down_radial'] else 1)


def test_paddings_give_the_output_size(config):
    # Independent of the padding formula: the upsampled, padded, twice-filtered signal has out_size samples.
    G, _, layers = config
    for name in layers:
        layer = getattr(G.synthesis, name)
        for axis in (0, 1):
            n = (int(layer.in_size[axis]) + layer.conv_kernel - 1) * layer.up_factor  # after 'full' conv and zero insertion
            n += layer.padding[2 * axis] + layer.padding[2 * axis + 1]
            n = n - layer.up_taps + 1 - layer.down_taps + 1
            assert (n - 1) // layer.down_factor + 1 == layer.out_size[axis]

#----------------------------------------------------------------------------
# Filters against their formulas in float64 (numpy only; no scipy.signal).

def _kaiser_window64(numtaps, width, fs):
    # Kaiser's empirical formulas: attenuation A from the transition width, then beta(A).
    delta = width / (fs / 2)
    a = 2.285 * (numtaps - 1) * np.pi * delta + 7.95
    beta = 0.1102 * (a - 8.7) if a > 50 else (0.5842 * (a - 21) ** 0.4 + 0.07886 * (a - 21) if a > 21 else 0.0)
    n = np.arange(numtaps)
    return np.i0(beta * np.sqrt(1 - (2 * n / (numtaps - 1) - 1) ** 2)) / np.i0(beta)


@pytest.mark.parametrize('numtaps,cutoff,half_width,fs', [(12, 2, 6, 32), (24, 4, 4, 64), (12, 90.50967, 37.4903, 512), (12, 128, 29.5865, 512)])
def test_separable_filter_is_windowed_sinc(numtaps, cutoff, half_width, fs):
    f = sg3.design_lowpass_filter(numtaps, cutoff, half_width * 2, fs)
    t = np.arange(numtaps) - (numtaps - 1) / 2
    ref = np.sinc(2 * cutoff / fs * t) * _kaiser_window64(numtaps, half_width * 2, fs)
    ref /= ref.sum()  # unit DC gain
    assert f.dtype == torch.float32 and f.shape == (numtaps,)
    np.testing.assert_allclose(f.numpy(), ref, rtol=0, atol=2e-7)


@pytest.mark.parametrize('numtaps,cutoff,half_width,fs', [(12, 2, 6, 32), (12, 5.65685, 10.3431, 64), (12, 64, 37.4903, 512)])
def test_radial_filter_is_windowed_jinc(numtaps, cutoff, half_width, fs):
    f = sg3.design_lowpass_filter(numtaps, cutoff, half_width * 2, fs, radial=True)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    ref = np.empty([numtaps, numtaps])
    for i in range(numtaps):
        for j in range(numtaps):
            r = np.hypot(x[i], x[j])
            ref[i, j] = 2 * cutoff * scipy.special.j1(2 * np.pi * cutoff * r) / (2 * r)  # Fourier transform of a disc
    w = _kaiser_window64(numtaps, half_width * 2, fs)
    ref *= w[:, None] * w[None, :]
    ref /= ref.sum()
    assert f.dtype == torch.float32 and f.shape == (numtaps, numtaps)
    np.testing.assert_allclose(f.numpy(), ref, rtol=0, atol=2e-7)
    np.testing.assert_array_equal(f.numpy(), f.numpy().T)  # radially symmetric: transposes, flips
    np.testing.assert_array_equal(f.numpy(), f.numpy()[::-1, ::-1])


def test_identity_filter_and_bad_taps():
    assert sg3.design_lowpass_filter(1, 2, 4, 16) is None
    with pytest.raises(ValueError, match='numtaps'):
        sg3.design_lowpass_filter(0, 2, 4, 16)

#----------------------------------------------------------------------------
# Forward behaviour (small networks).

def _small_G(**kwargs):
    torch.manual_seed(1)
    kw = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=128, channel_max=8, num_layers=4,
              num_critical=1, margin_size=2, num_fp16_res=4)
    kw.update(kwargs)
    return sg3.Generator(**kw)


def test_input_fourier_features_against_numpy():
    G = _small_G()
    inp = G.synthesis.input
    with torch.no_grad():
        inp.affine.weight.normal_()  # non-trivial rotation and translation from w
        angle = 0.3
        inp.transform.copy_(torch.tensor([[np.cos(angle), np.sin(angle), 0.25], [-np.sin(angle), np.cos(angle), -0.5], [0, 0, 1]]))
        w = torch.randn(2, 8)
        x = inp(w).double().numpy()
        t = inp.affine(w).double().numpy()
    freqs, phases = inp.freqs.double().numpy(), inp.phases.double().numpy()
    transform, weight = inp.transform.double().numpy(), inp.weight.detach().double().numpy()
    size, sr, bw, C = int(inp.size[0]), inp.sampling_rate, inp.bandwidth, inp.channels
    coords = (np.arange(size) + 0.5) / size * 2 - 1  # pixel centres in [-1, 1] ...
    coords = coords * 0.5 * size / sr                # ... scaled to size / sampling_rate units
    for n in range(2):
        c, s = t[n, :2] / np.hypot(*t[n, :2])
        rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        tra = np.array([[1, 0, -t[n, 2] / np.hypot(*t[n, :2])], [0, 1, -t[n, 3] / np.hypot(*t[n, :2])], [0, 0, 1]])
        m = rot @ tra @ transform
        f = freqs @ m[:2, :2]
        p = phases + freqs @ m[:2, 2]
        amp = np.clip(1 - (np.linalg.norm(f, axis=1) - bw) / (sr / 2 - bw), 0, 1)
        gx, gy = np.meshgrid(coords, coords)  # [H, W]
        feat = np.sin(2 * np.pi * (gx[..., None] * f[:, 0] + gy[..., None] * f[:, 1] + p)) * amp  # [H, W, C]
        ref = (feat @ (weight / np.sqrt(C)).T).transpose(2, 0, 1)
        np.testing.assert_allclose(x[n], ref, rtol=0, atol=2e-5)


def test_forward_float32_on_cpu_truncation_and_emas():
    G = _small_G()
    assert any(getattr(G.synthesis, n).use_fp16 for n in G.synthesis.layer_names)  # fp16 layers run in fp32 on CPU
    z = torch.randn(3, 8)
    img = G(z, None)
    assert img.shape == (3, 3, 16, 16) and img.dtype == torch.float32 and torch.isfinite(img).all()
    # Truncation with psi=0 gives the image of w_avg for every z.
    with torch.no_grad():
        G.mapping.w_avg.normal_()
    a = G(z, None, truncation_psi=0)
    ws = G.mapping.w_avg.reshape(1, 1, -1).repeat(3, G.num_ws, 1)
    assert torch.equal(a, G.synthesis(ws))
    # update_emas moves w_avg and every magnitude_ema towards the batch statistics.
    L0 = getattr(G.synthesis, G.synthesis.layer_names[0])
    x0 = G.synthesis.input(G.mapping(z, None)[:, 0])
    w_avg, mag = G.mapping.w_avg.clone(), L0.magnitude_ema.clone()
    G(z, None, update_emas=True)
    beta = L0.magnitude_ema_beta
    assert torch.allclose(L0.magnitude_ema, x0.detach().square().mean() * (1 - beta) + mag * beta, rtol=1e-5)
    assert torch.allclose(G.mapping.w_avg, G.mapping(z, None)[:, 0].mean(0) * (1 - 0.998) + w_avg * 0.998, rtol=1e-5, atol=1e-6)


def test_conditional_generator_needs_labels():
    G = _small_G(c_dim=4)
    assert 'mapping.embed.weight' in G.state_dict()
    img = G(torch.randn(2, 8), torch.eye(4)[:2])
    assert img.shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match='conditional'):
        G(torch.randn(2, 8), None)


def test_gradients_reach_every_parameter():
    G = _small_G(conv_kernel=1, use_radial_filters=True, channel_base=256, channel_max=16)
    G.requires_grad_(True)
    G(torch.randn(2, 8), None).square().sum().backward()
    missing = [n for n, p in G.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    # The input affine starts at weight 0; its gradient still flows. Nothing may be disconnected.
    assert missing == []


def test_fp16_layers_compute_in_float16_when_enabled(monkeypatch):
    # On CUDA, use_fp16 layers run in float16; emulate that on CPU and compare with the float32 default.
    G = _small_G().eval()
    z = torch.randn(2, 8)
    ref = G(z, None)
    assert all(getattr(G.synthesis, n).use_fp16 for n in G.synthesis.layer_names)
    seen = []
    monkeypatch.setattr(sg3.SynthesisLayer, 'compute_dtype',
                        lambda self, device, force_fp32=False: seen.append(1) or (torch.float32 if force_fp32 else torch.float16))
    out = G(z, None)
    assert len(seen) == len(G.synthesis.layer_names) and out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0, atol=2e-3)  # float16 rounding of activations of magnitude ~0.15
    assert not torch.equal(out, ref)
    assert torch.equal(G(z, None, force_fp32=True), ref)
