"""StyleGAN2 networks: state_dict keys/shapes and constructor kwargs against the NVlabs listing
(shared/reference/nvlabs_stylegan2_keys.md, sections 1-3, transcribed below), forward shapes from 4px
to 1024px, and layer numerics against float64 computations written out by hand."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dnnlib
from training import networks_stylegan2 as nets


pytestmark = pytest.mark.usefixtures('one_thread')

#----------------------------------------------------------------------------
# Reference tables (section 1-3). 'name*' marks a buffer. Every SynthesisBlock, SynthesisLayer,
# DiscriminatorBlock and Conv2dLayer also has a 'resample_filter*' [4, 4] buffer (added by _with_filters).

def _synth_layer(prefix, out_c, in_c, res, w_dim):
    return {f'{prefix}.weight': [out_c, in_c, 3, 3], f'{prefix}.noise_strength': [], f'{prefix}.bias': [out_c],
            f'{prefix}.noise_const*': [res, res], f'{prefix}.affine.weight': [in_c, w_dim], f'{prefix}.affine.bias': [in_c]}


def _torgb(prefix, in_c, w_dim):
    return {f'{prefix}.weight': [3, in_c, 1, 1], f'{prefix}.bias': [3], f'{prefix}.affine.weight': [in_c, w_dim],
            f'{prefix}.affine.bias': [in_c]}


def _fc(prefix, out_f, in_f):
    return {f'{prefix}.weight': [out_f, in_f], f'{prefix}.bias': [out_f]}


def _conv(prefix, out_c, in_c, k, bias=True, buffer=False):
    s = '*' if buffer else ''
    d = {f'{prefix}.weight{s}': [out_c, in_c, k, k]}
    if bias:
        d[f'{prefix}.bias{s}'] = [out_c]
    return d


SECTION1_G = {
    'synthesis.b4.const': [64, 4, 4],
    **_synth_layer('synthesis.b4.conv1', 64, 64, 4, 512), **_torgb('synthesis.b4.torgb', 64, 512),
    **_synth_layer('synthesis.b8.conv0', 64, 64, 8, 512), **_synth_layer('synthesis.b8.conv1', 64, 64, 8, 512),
    **_torgb('synthesis.b8.torgb', 64, 512),
    **_synth_layer('synthesis.b16.conv0', 64, 64, 16, 512), **_synth_layer('synthesis.b16.conv1', 64, 64, 16, 512),
    **_torgb('synthesis.b16.torgb', 64, 512),
    **_synth_layer('synthesis.b32.conv0', 32, 64, 32, 512), **_synth_layer('synthesis.b32.conv1', 32, 32, 32, 512),
    **_torgb('synthesis.b32.torgb', 32, 512),
    **_synth_layer('synthesis.b64.conv0', 16, 32, 64, 512), **_synth_layer('synthesis.b64.conv1', 16, 16, 64, 512),
    **_torgb('synthesis.b64.torgb', 16, 512),
    'mapping.w_avg*': [512],
    **_fc('mapping.fc0', 128, 512), **{k: v for i in range(1, 7) for k, v in _fc(f'mapping.fc{i}', 128, 128).items()},
    **_fc('mapping.fc7', 512, 128),
}

SECTION1_D = {
    **_conv('b64.fromrgb', 16, 3, 1), **_conv('b64.conv0', 16, 16, 3), **_conv('b64.conv1', 32, 16, 3),
    **_conv('b64.skip', 32, 16, 1, bias=False),
    **_conv('b32.conv0', 32, 32, 3), **_conv('b32.conv1', 64, 32, 3), **_conv('b32.skip', 64, 32, 1, bias=False),
    **_conv('b16.conv0', 64, 64, 3), **_conv('b16.conv1', 64, 64, 3), **_conv('b16.skip', 64, 64, 1, bias=False),
    **_conv('b8.conv0', 64, 64, 3), **_conv('b8.conv1', 64, 64, 3), **_conv('b8.skip', 64, 64, 1, bias=False),
    **_conv('b4.conv', 64, 65, 3), **_fc('b4.fc', 64, 1024), **_fc('b4.out', 1, 64),
}

SECTION2_G = {**SECTION1_G, 'mapping.fc0.weight': [128, 1024], **_fc('mapping.embed', 512, 4)}
SECTION2_D = {**SECTION1_D, **_fc('b4.out', 64, 64), **_fc('mapping.embed', 64, 4),
              **{k: v for i in range(8) for k, v in _fc(f'mapping.fc{i}', 64, 64).items()}}

SECTION3_G = {
    'synthesis.b4.const': [64, 4, 4],
    **_synth_layer('synthesis.b4.conv1', 64, 64, 4, 256), **_torgb('synthesis.b4.torgb', 64, 256),
    **_synth_layer('synthesis.b8.conv0', 64, 64, 8, 256), **_synth_layer('synthesis.b8.conv1', 64, 64, 8, 256),
    **_torgb('synthesis.b8.torgb', 64, 256),
    **_synth_layer('synthesis.b16.conv0', 32, 64, 16, 256), **_synth_layer('synthesis.b16.conv1', 32, 32, 16, 256),
    **_torgb('synthesis.b16.torgb', 32, 256),
    **_synth_layer('synthesis.b32.conv0', 16, 32, 32, 256), **_synth_layer('synthesis.b32.conv1', 16, 16, 32, 256),
    **_torgb('synthesis.b32.torgb', 16, 256),
    'mapping.w_avg*': [256], **_fc('mapping.embed', 256, 4), **_fc('mapping.fc0', 256, 768), **_fc('mapping.fc1', 256, 256),
}

SECTION3_D = {
    **_conv('b32.fromrgb', 16, 3, 1, buffer=True), **_conv('b32.conv0', 16, 16, 3, buffer=True),
    **_conv('b32.conv1', 32, 16, 3), **_conv('b32.skip', 32, 16, 1, bias=False),
    **_conv('b16.conv0', 32, 32, 3), **_conv('b16.conv1', 64, 32, 3), **_conv('b16.skip', 64, 32, 1, bias=False),
    **_conv('b8.conv0', 64, 64, 3), **_conv('b8.conv1', 64, 64, 3), **_conv('b8.skip', 64, 64, 1, bias=False),
    **_fc('mapping.embed', 64, 4), **{k: v for i in range(8) for k, v in _fc(f'mapping.fc{i}', 64, 64).items()},
    **_conv('b4.conv', 64, 65, 3), **_fc('b4.fc', 64, 1024), **_fc('b4.out', 64, 64),
}


def _with_filters(table, module):
    """Add the resample_filter buffers of every module class that has one (left out of the listing)."""
    table = dict(table)
    for name, m in module.named_modules():
        if type(m).__name__ in ('SynthesisBlock', 'SynthesisLayer', 'DiscriminatorBlock', 'Conv2dLayer'):
            table[(name + '.' if name else '') + 'resample_filter*'] = [4, 4]
    return table


def _listing(module):
    buffers = {n for n, _ in module.named_buffers()}
    return {n + ('*' if n in buffers else ''): list(t.shape) for n, t in module.state_dict().items()}


def _sg2_G(c_dim=0):
    return dnnlib.util.construct_class_by_name(class_name='training.networks_stylegan2.Generator',
        z_dim=512, w_dim=512, mapping_kwargs=dnnlib.EasyDict(num_layers=8, layer_features=128), channel_base=1024,
        channel_max=64, num_fp16_res=0, conv_clamp=256, architecture='skip', fused_modconv_default='inference_only',
        c_dim=c_dim, img_resolution=64, img_channels=3)


def _sg2_D(c_dim=0):
    return dnnlib.util.construct_class_by_name(class_name='training.networks_stylegan2.Discriminator',
        block_kwargs=dnnlib.EasyDict(freeze_layers=0), mapping_kwargs=dnnlib.EasyDict(),
        epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=4), channel_base=1024, channel_max=64, architecture='resnet',
        c_dim=c_dim, img_resolution=64, img_channels=3)

#----------------------------------------------------------------------------
# Keys, shapes, kwargs.

def test_section1_unconditional_keys_and_shapes():
    G, D = _sg2_G(), _sg2_D()
    assert _listing(G) == _with_filters(SECTION1_G, G)
    assert _listing(D) == _with_filters(SECTION1_D, D)
    assert sum(p.numel() for p in G.parameters()) == 813000
    assert sum(p.numel() for p in D.parameters()) == 296401
    assert G.num_ws == 10 and G.mapping.num_ws == 10
    # NVlabs registration order: synthesis before mapping in G; D blocks, then the label mapping, then b4.
    keys = list(G.state_dict())
    assert keys[0] == 'synthesis.b4.const' and keys[-1] == 'mapping.fc7.bias'


def test_section2_conditional_keys_and_shapes():
    G, D = _sg2_G(c_dim=4), _sg2_D(c_dim=4)
    assert _listing(G) == _with_filters(SECTION2_G, G)
    assert _listing(D) == _with_filters(SECTION2_D, D)
    keys = [k for k in D.state_dict() if not k.endswith('resample_filter')]
    assert keys.index('b8.skip.weight') < keys.index('mapping.embed.weight') < keys.index('b4.conv.weight')


def test_section3_ada_style_keys_and_shapes():
    G = nets.Generator(z_dim=512, w_dim=256, mapping_kwargs=dict(num_layers=2), channel_base=512, channel_max=64,
                       num_fp16_res=4, conv_clamp=256, c_dim=4, img_resolution=32, img_channels=3)
    D = nets.Discriminator(block_kwargs=dict(freeze_layers=2), mapping_kwargs={}, epilogue_kwargs=dict(mbstd_group_size=2),
                           channel_base=512, channel_max=64, num_fp16_res=4, conv_clamp=256, c_dim=4, img_resolution=32, img_channels=3)
    assert _listing(G) == _with_filters(SECTION3_G, G)
    assert _listing(D) == _with_filters(SECTION3_D, D)
    assert [G.synthesis.b4.use_fp16, G.synthesis.b8.use_fp16, G.synthesis.b16.use_fp16, G.synthesis.b32.use_fp16] == [False, True, True, True]
    assert [D.b32.use_fp16, D.b16.use_fp16, D.b8.use_fp16] == [True, True, True]


def test_recorded_init_kwargs_match_reference():
    G, D = _sg2_G(), _sg2_D(c_dim=4)
    assert G.init_args == () and G.init_kwargs['mapping_kwargs'] == {'num_layers': 8, 'layer_features': 128}
    s = G.synthesis
    assert s.init_kwargs == dict(w_dim=512, img_resolution=64, img_channels=3, channel_base=1024, channel_max=64,
                                 num_fp16_res=0, conv_clamp=256, architecture='skip', fused_modconv_default='inference_only')
    assert s.b4.init_args == (0, 64) and s.b64.init_args == (32, 16)
    assert s.b64.init_kwargs == dict(w_dim=512, resolution=64, img_channels=3, is_last=True, use_fp16=False, conv_clamp=256,
                                     architecture='skip', fused_modconv_default='inference_only')
    assert s.b8.conv0.init_args == (64, 64)
    assert s.b8.conv0.init_kwargs == dict(w_dim=512, resolution=8, up=2, resample_filter=[1, 3, 3, 1], conv_clamp=256, channels_last=False)
    assert s.b32.torgb.init_args == (32, 3) and s.b32.torgb.init_kwargs == dict(w_dim=512, conv_clamp=256, channels_last=False)
    assert s.b4.conv1.affine.init_args == (512, 64) and s.b4.conv1.affine.init_kwargs == dict(bias_init=1)
    assert G.mapping.init_kwargs == dict(z_dim=512, c_dim=0, w_dim=512, num_ws=10, num_layers=8, layer_features=128)
    assert G.mapping.fc7.init_args == (128, 512) and G.mapping.fc7.init_kwargs == dict(activation='lrelu', lr_multiplier=0.01)
    assert D.b64.init_args == (0, 16, 32)
    assert D.b64.init_kwargs == dict(resolution=64, first_layer_idx=0, use_fp16=True, freeze_layers=0, img_channels=3,
                                     architecture='resnet', conv_clamp=256)
    assert D.b16.init_kwargs['first_layer_idx'] == 7 and D.b8.init_kwargs['first_layer_idx'] == 10
    assert D.b64.skip.init_kwargs == dict(kernel_size=1, bias=False, down=2, trainable=True, resample_filter=[1, 3, 3, 1], channels_last=False)
    assert D.b4.init_args == (64,) and D.b4.init_kwargs == dict(cmap_dim=64, resolution=4, mbstd_group_size=4, img_channels=3,
                                                                architecture='resnet', conv_clamp=256)
    assert D.b4.mbstd.init_kwargs == dict(group_size=4, num_channels=1)
    assert D.b4.conv.init_args == (65, 64) and D.b4.conv.init_kwargs == dict(kernel_size=3, activation='lrelu', conv_clamp=256)
    assert D.mapping.init_kwargs == dict(z_dim=0, c_dim=4, w_dim=64, num_ws=None, w_avg_beta=None)
    assert D.mapping.embed.init_args == (4, 64) and D.mapping.embed.init_kwargs == {}

#----------------------------------------------------------------------------
# Forward passes.

def _small_G(**kw):
    args = dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=16, img_channels=3, channel_base=256, channel_max=32,
                mapping_kwargs=dict(num_layers=2))
    args.update(kw)
    return nets.Generator(**args)


@pytest.mark.parametrize('architecture', ['orig', 'skip', 'resnet'])
@pytest.mark.parametrize('resolution', [8, 32])
def test_forward_shapes_small(architecture, resolution):
    G = _small_G(img_resolution=resolution, architecture=architecture).eval()
    D = nets.Discriminator(c_dim=0, img_resolution=resolution, img_channels=3, architecture=architecture,
                           channel_base=256, channel_max=32)
    img = G(torch.randn(4, 32), None)
    assert img.shape == (4, 3, resolution, resolution) and img.dtype == torch.float32
    assert torch.isfinite(img).all()
    out = D(img, None)
    assert out.shape == (4, 1) and torch.isfinite(out).all()
    assert G.synthesis.block_resolutions == [2 ** i for i in range(2, int(np.log2(resolution)) + 1)]


def test_forward_1024_tiny_channels():
    G = nets.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=1024, img_channels=3, channel_base=1024, channel_max=8,
                       mapping_kwargs=dict(num_layers=1)).eval()
    assert G.num_ws == 18 and G.synthesis.block_resolutions[-1] == 1024
    assert G.synthesis.b1024.conv1.weight.shape == (1, 1, 3, 3)
    img = G(torch.randn(1, 8), None, noise_mode='none')
    assert img.shape == (1, 3, 1024, 1024) and torch.isfinite(img).all()
    D = nets.Discriminator(c_dim=0, img_resolution=1024, img_channels=3, channel_base=1024, channel_max=8)
    assert D.block_resolutions == [1024, 512, 256, 128, 64, 32, 16, 8]
    # Run D on 256px blocks only (the 1024px ones are the same code at more pixels).
    x, im = D.b256(torch.randn(2, 4, 256, 256), None)
    assert x.shape == (2, 8, 128, 128) and im is None


def test_fused_and_nonfused_modconv_agree():
    G = _small_G(architecture='resnet').eval()
    with torch.no_grad():
        for layer in [m for m in G.modules() if isinstance(m, nets.SynthesisLayer)]:
            layer.noise_strength.fill_(0.3)
    z = torch.randn(3, 32)
    a = G(z, None, noise_mode='const', fused_modconv=True)
    b = G(z, None, noise_mode='const', fused_modconv=False)
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (a - b).abs().max()
    # 'inference_only': fused in eval mode, not in training mode; both give the same image.
    G2 = _small_G(architecture='resnet', fused_modconv_default='inference_only')
    G2.load_state_dict(G.state_dict())
    c = G2.eval()(z, None, noise_mode='const')
    d = G2.train()(z, None, noise_mode='const')
    assert torch.allclose(c, d, atol=1e-4, rtol=1e-4)


def test_truncation_psi0_gives_w_avg_and_cutoff():
    G = _small_G().eval()
    G.mapping.w_avg.copy_(torch.randn(32))
    z = torch.randn(5, 32)
    ws = G.mapping(z, None, truncation_psi=0)
    assert torch.equal(ws, G.mapping.w_avg.reshape(1, 1, -1).expand(5, G.num_ws, -1))
    full = G.mapping(z, None)
    cut = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2)
    w_avg64, full64 = G.mapping.w_avg.double(), full.double()
    expect = w_avg64 + 0.5 * (full64[:, :2] - w_avg64)
    assert torch.allclose(cut[:, :2].double(), expect, atol=1e-6)
    assert torch.equal(cut[:, 2:], full[:, 2:])


def test_input_from_w_adds_an_affine_of_w_to_the_constant():
    """input_from_w (ours, off by default): b4's input is const + (w0 @ (W / sqrt(w_dim)).T) reshaped to
    [C, 4, 4], w0 being the block's first w; one extra weight, no other key or shape changes."""
    plain, G = _small_G(), _small_G(input_from_w=True)
    extra = set(G.state_dict()) - set(plain.state_dict())
    assert extra == {'synthesis.b4.const_affine.weight'} and set(plain.state_dict()) <= set(G.state_dict())
    assert G.synthesis.b4.const_affine.weight.shape == (32 * 4 * 4, 32)
    assert all(not hasattr(getattr(G.synthesis, f'b{r}'), 'const_affine') for r in (8, 16))  # first block only

    block = G.synthesis.b4
    seen = []
    block.conv1.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().double()))
    ws = torch.randn(3, block.num_conv + block.num_torgb, 32)
    block(None, None, ws, noise_mode='const')
    affine = ws[:, 0].double() @ (block.const_affine.weight.double() / np.sqrt(32)).t()
    expect = block.const.double().unsqueeze(0) + affine.reshape(3, 32, 4, 4)
    assert torch.allclose(seen[0], expect, atol=1e-5)
    assert (seen[0][0] - seen[0][1]).abs().max() > 0.1  # the input differs per sample

    # With the affine weight at zero it is the NVlabs network with the same weights.
    with torch.no_grad():
        block.const_affine.weight.zero_()
    plain.load_state_dict({k: v for k, v in G.state_dict().items() if k not in extra})
    z = torch.randn(2, 32)
    assert torch.equal(G(z, None, noise_mode='const'), plain(z, None, noise_mode='const'))


def test_input_from_w_survives_a_snapshot_round_trip():
    from torch_utils import snapshot
    G = _small_G(input_from_w=True).eval()
    with torch.no_grad():
        G.synthesis.b4.const_affine.weight.normal_()
    G2 = snapshot.record_to_module(snapshot.module_to_record(G)).eval()
    assert G2.synthesis.b4.input_from_w and 'input_from_w=True' in repr(G2.synthesis.b4)
    z = torch.randn(2, 32)
    assert torch.equal(G(z, None, noise_mode='const'), G2(z, None, noise_mode='const'))


def test_w_avg_update():
    G = _small_G()
    G.mapping.w_avg.copy_(torch.randn(32))
    old = G.mapping.w_avg.clone().double()
    z = torch.randn(6, 32)
    ws = G.mapping(z, None, update_emas=True)
    mean = ws[:, 0].detach().double().mean(dim=0)
    assert torch.allclose(G.mapping.w_avg.double(), mean + 0.998 * (old - mean), atol=1e-6)


def test_noise_modes():
    G = _small_G().eval()
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, nets.SynthesisLayer):
                m.noise_strength.fill_(0.5)
    z = torch.randn(2, 32)
    a, b = G(z, None, noise_mode='const'), G(z, None, noise_mode='const')
    assert torch.equal(a, b)
    r1, r2 = G(z, None, noise_mode='random'), G(z, None, noise_mode='random')
    assert not torch.equal(r1, r2)
    n1, n2 = G(z, None, noise_mode='none'), G(z, None, noise_mode='none')
    assert torch.equal(n1, n2) and not torch.equal(n1, a)
    with pytest.raises(ValueError, match='noise_mode'):
        G(z, None, noise_mode='bogus')


def test_conditional_generator_and_projection_discriminator():
    G = _small_G(c_dim=3).eval()
    z = torch.randn(2, 32).repeat(2, 1)
    c = F.one_hot(torch.tensor([0, 0, 2, 2]), 3).float()
    img = G(z, c, noise_mode='const')
    assert not torch.allclose(img[0], img[2])
    with pytest.raises(ValueError, match='conditional'):
        G(z, None)
    with pytest.raises(ValueError, match=r'c: expected shape \[\*, 3\]'):
        G(z, torch.zeros(4, 5))

    D = nets.Discriminator(c_dim=3, img_resolution=16, img_channels=3, channel_base=256, channel_max=32,
                           epilogue_kwargs=dict(mbstd_group_size=2))
    logits = D(img, c)
    assert logits.shape == (4, 1)
    # Projection: <out(h), cmap> / sqrt(cmap_dim), computed from D's parts in float64.
    x = None
    im = img
    for res in D.block_resolutions:
        x, im = getattr(D, f'b{res}')(x, im)
    h = D.b4.out(D.b4.fc(D.b4.conv(D.b4.mbstd(x)).flatten(1))).double()
    cmap = D.mapping(None, c).double()
    expect = (h * cmap).sum(dim=1, keepdim=True) / np.sqrt(D.b4.cmap_dim)
    assert torch.allclose(logits.double(), expect, atol=1e-5)


def test_fp16_blocks_run_fp32_on_cpu_and_bf16_option():
    G16 = _small_G(num_fp16_res=2).eval()
    G32 = _small_G(num_fp16_res=0).eval()
    G32.load_state_dict(G16.state_dict())
    z = torch.randn(2, 32)
    assert torch.equal(G16(z, None, noise_mode='const'), G32(z, None, noise_mode='const'))
    Gb = _small_G(num_fp16_res=2, fp16_dtype='bfloat16')
    assert Gb.synthesis.b16.compute_dtype(torch.device('cuda')) == torch.bfloat16
    assert Gb.synthesis.b16.compute_dtype(torch.device('cpu')) == torch.float32
    assert Gb.synthesis.b16.compute_dtype(torch.device('cuda'), force_fp32=True) == torch.float32
    assert Gb.synthesis.b4.compute_dtype(torch.device('cuda')) == torch.float32
    assert G16.synthesis.b16.compute_dtype(torch.device('cuda')) == torch.float16
    with pytest.raises(ValueError, match='fp16_dtype'):
        _small_G(fp16_dtype='int8')


@pytest.mark.cuda
@pytest.mark.parametrize('fp16_dtype,tol', [('float16', 0.05), ('bfloat16', 0.15)])
def test_reduced_precision_on_cuda_close_to_fp32(fp16_dtype, tol):
    G = _small_G(num_fp16_res=2, fp16_dtype=fp16_dtype, img_resolution=32).eval().cuda()
    D = nets.Discriminator(c_dim=0, img_resolution=32, img_channels=3, channel_base=256, channel_max=32,
                           num_fp16_res=2, block_kwargs=dict(fp16_dtype=fp16_dtype)).cuda()
    z = torch.randn(4, 32, device='cuda')
    lo = G(z, None, noise_mode='const')
    hi = G(z, None, noise_mode='const', force_fp32=True)
    assert lo.dtype == torch.float32 and torch.isfinite(lo).all()
    assert (lo - hi).abs().max() < tol * hi.abs().max()
    d_lo, d_hi = D(hi, None), D(hi, None, force_fp32=True)
    assert d_lo.dtype == torch.float32 and torch.isfinite(d_lo).all()
    assert (d_lo - d_hi).abs().max() < tol * (1 + d_hi.abs().max())

#----------------------------------------------------------------------------
# Layer numerics against hand-written float64 computations.

def _lrelu(x):
    return torch.where(x >= 0, x, 0.2 * x)


def test_fully_connected_and_mapping_match_float64():
    fc = nets.FullyConnectedLayer(6, 5, activation='lrelu', lr_multiplier=0.01, bias_init=0.5)
    x = torch.randn(4, 6)
    W, b = fc.weight.double(), fc.bias.double()
    expect = _lrelu(x.double() @ (W * 0.01 / np.sqrt(6)).t() + b * 0.01) * np.sqrt(2)
    assert torch.allclose(fc(x).double(), expect, atol=1e-6)

    M = nets.MappingNetwork(z_dim=6, c_dim=2, w_dim=4, num_ws=3, num_layers=2, embed_features=3, layer_features=5)
    z, c = torch.randn(4, 6), torch.randn(4, 2)
    zz = z.double() / (z.double().square().mean(1, keepdim=True) + 1e-8).sqrt()
    e = c.double() @ (M.embed.weight.double() / np.sqrt(2)).t() + M.embed.bias.double()
    e = e / (e.square().mean(1, keepdim=True) + 1e-8).sqrt()
    h = torch.cat([zz, e], dim=1)
    for layer in (M.fc0, M.fc1):
        h = _lrelu(h @ (layer.weight.double() * 0.01 / np.sqrt(layer.in_features)).t() + layer.bias.double() * 0.01) * np.sqrt(2)
    out = M(z, c)
    assert out.shape == (4, 3, 4)
    assert torch.allclose(out.double(), h.unsqueeze(1).expand(-1, 3, -1), atol=1e-5)


@pytest.mark.parametrize('fused', [True, False])
def test_synthesis_layer_matches_float64(fused):
    layer = nets.SynthesisLayer(4, 3, w_dim=5, resolution=6, conv_clamp=0.7)
    with torch.no_grad():
        layer.noise_strength.fill_(0.25)
        layer.bias.copy_(torch.randn(3))
    x, w = torch.randn(2, 4, 6, 6), torch.randn(2, 5)
    got = layer(x, w, noise_mode='const', fused_modconv=fused, gain=1.5)

    styles = w.double() @ (layer.affine.weight.double() / np.sqrt(5)).t() + layer.affine.bias.double()
    outs = []
    for n in range(2):
        wn = layer.weight.double() * styles[n].reshape(1, -1, 1, 1)
        wn = wn / (wn.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        outs.append(F.conv2d(x[n:n + 1].double(), wn, padding=1))
    y = torch.cat(outs) + layer.noise_const.double() * 0.25
    y = _lrelu(y + layer.bias.double().reshape(1, -1, 1, 1)) * (np.sqrt(2) * 1.5)
    y = y.clamp(-0.7 * 1.5, 0.7 * 1.5)
    assert torch.allclose(got.double(), y, atol=1e-5)


def test_minibatch_std_matches_numpy_groups():
    layer = nets.MinibatchStdLayer(group_size=2, num_channels=2)
    x = torch.randn(6, 4, 3, 3)
    got = layer(x).numpy()
    assert got.shape == (6, 6, 3, 3)
    xn = x.double().numpy()
    n = 6 // 2
    for j in range(n):  # group j holds samples j, j+n, ...
        members = xn[j::n]
        for f in range(2):
            std = np.sqrt(members[:, 2 * f:2 * f + 2].var(axis=0) + 1e-8).mean()
            assert np.allclose(got[j::n, 4 + f], std, atol=1e-6)
    assert np.array_equal(got[:, :4], x.numpy())
    # group_size larger than the batch: one group of N.
    assert nets.MinibatchStdLayer(group_size=4)(torch.randn(2, 3, 2, 2)).shape == (2, 4, 2, 2)
    with pytest.raises(ValueError, match='not divisible by the group size'):
        nets.MinibatchStdLayer(group_size=4)(torch.randn(6, 3, 2, 2))


def test_bad_inputs_name_the_tensor():
    G = _small_G()
    with pytest.raises(ValueError, match=r'z: expected shape \[\*, 32\], got \[2, 16\]'):
        G(torch.randn(2, 16), None)
    with pytest.raises(ValueError, match='ws: expected shape'):
        G.synthesis(torch.randn(2, 3, 32))
    with pytest.raises(ValueError, match='architecture'):
        _small_G(architecture='fancy')
    with pytest.raises(ValueError, match='power of two'):
        _small_G(img_resolution=48)
    with pytest.raises(ValueError, match='>= 8'):
        nets.Discriminator(c_dim=0, img_resolution=4, img_channels=3)
    assert _small_G(img_resolution=4)(torch.randn(1, 32), None).shape == (1, 3, 4, 4)
    D = nets.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=256, channel_max=32)
    with pytest.raises(ValueError, match=r'img: expected shape \[\*, 3, 16, 16\]'):
        D(torch.randn(2, 3, 8, 8), None)


def test_freeze_layers_store_buffers():
    D = nets.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=256, channel_max=32,
                           block_kwargs=dict(freeze_layers=3))
    buffers = {n for n, _ in D.named_buffers()}
    params = {n for n, _ in D.named_parameters()}
    assert {'b16.fromrgb.weight', 'b16.fromrgb.bias', 'b16.conv0.weight', 'b16.conv1.weight'} <= buffers
    assert 'b16.skip.weight' in params and 'b8.conv0.weight' in params


def test_blocks_run_standalone_for_progressive_growing():
    G = _small_G().eval()
    ws = G.mapping(torch.randn(2, 32), None)
    x = img = None
    for res, cur_ws in zip(G.synthesis.block_resolutions, G.synthesis.split_ws(ws)):
        x, img = getattr(G.synthesis, f'b{res}')(x, img, cur_ws, noise_mode='const')
    assert torch.equal(img, G.synthesis(ws, noise_mode='const'))


def test_torgb_and_conv2d_layer_match_float64():
    rgb = nets.ToRGBLayer(4, 3, w_dim=5, conv_clamp=0.3)
    with torch.no_grad():
        rgb.bias.copy_(torch.randn(3))
    x, w = torch.randn(2, 4, 5, 5), torch.randn(2, 5)
    styles = (w.double() @ (rgb.affine.weight.double() / np.sqrt(5)).t() + rgb.affine.bias.double()) / np.sqrt(4)
    expect = torch.einsum('oi,ni,nihw->nohw', rgb.weight.double()[:, :, 0, 0], styles, x.double())
    expect = (expect + rgb.bias.double().reshape(1, -1, 1, 1)).clamp(-0.3, 0.3)
    for fused in (True, False):
        assert torch.allclose(rgb(x, w, fused_modconv=fused).double(), expect, atol=1e-5)

    conv = nets.Conv2dLayer(3, 2, kernel_size=3, activation='lrelu', conv_clamp=0.5)
    with torch.no_grad():
        conv.bias.copy_(torch.randn(2))
    x = torch.randn(2, 3, 6, 6)
    y = F.conv2d(x.double(), conv.weight.double() / np.sqrt(3 * 9), padding=1) + conv.bias.double().reshape(1, -1, 1, 1)
    y = (_lrelu(y) * np.sqrt(2) * np.sqrt(0.5)).clamp(-0.5 * np.sqrt(0.5), 0.5 * np.sqrt(0.5))
    assert torch.allclose(conv(x, gain=np.sqrt(0.5)).double(), y, atol=1e-5)


@pytest.mark.parametrize('default,training,reduced,batch,expect', [
    ('inference_only', False, True, 2, True), ('inference_only', True, False, 2, False),
    ('ada', False, False, 2, True), ('ada', False, True, 2, False), ('ada', False, True, 1, True),
    ('ada', True, False, 1, False), (True, True, True, 2, True), (False, False, False, 2, False),
])
def test_fused_modconv_default_rules(monkeypatch, default, training, reduced, batch, expect):
    # NVlabs: stylegan3-repo blocks use fused_modconv_default (True / False / 'inference_only' = eval mode);
    # stylegan2-ada blocks fuse in eval mode only for float32 blocks or a batch of one ('ada').
    block = nets.SynthesisBlock(4, 4, w_dim=8, resolution=8, img_channels=3, is_last=True, use_fp16=True,
                                fused_modconv_default=default).train(training)
    if reduced:  # a reduced-precision block, as on CUDA (bfloat16 also runs on CPU)
        monkeypatch.setattr(block, 'compute_dtype', lambda device, force_fp32=False: torch.bfloat16)
    seen = []
    real = nets.modconv.modulated_conv2d
    monkeypatch.setattr(nets.modconv, 'modulated_conv2d', lambda *a, **k: seen.append(k['fused_modconv']) or real(*a, **k))
    block(torch.randn(batch, 4, 4, 4), torch.randn(batch, 3, 4, 4), torch.randn(batch, 3, 8), noise_mode='const')
    assert seen == [expect] * 3
    # An explicit fused_modconv overrides the default.
    seen.clear()
    block(torch.randn(batch, 4, 4, 4), None, torch.randn(batch, 3, 8), fused_modconv=(not expect), noise_mode='const')
    assert seen == [not expect] * 3


def _zero_stuff(x, up):
    n, c, h, w = x.shape
    y = x.new_zeros([n, c, h * up, w * up])
    y[:, :, ::up, ::up] = x
    return y


def _fir(x, f2d, pad, gain=1.0):
    """Zero-pad [x0, x1, y0, y1] and convolve (true convolution) each channel with the 2-D filter."""
    x = F.pad(x, pad)
    k = (f2d * gain).flip([0, 1])[None, None].repeat(x.shape[1], 1, 1, 1)
    return F.conv2d(x, k, groups=x.shape[1])


def test_resampling_layers_match_float64():
    # NVlabs: up=2 layers run a true convolution (flip_weight=False) on the zero-stuffed, [1,3,3,1]-filtered
    # (gain 4) image, padded by kernel_size // 2 plus (fw + up - 1) // 2 before / (fw - up) // 2 after;
    # down=2 layers pad by k // 2 plus (fw - down + 1) // 2 / (fw - down) // 2, filter, then correlate with stride 2.
    f = torch.tensor([1., 3, 3, 1], dtype=torch.float64)
    f = torch.outer(f, f) / 64

    layer = nets.SynthesisLayer(3, 2, w_dim=4, resolution=8, up=2, conv_clamp=None)
    with torch.no_grad():
        layer.noise_strength.fill_(0.5)
        layer.bias.copy_(torch.randn(2))
    x, w = torch.randn(2, 3, 4, 4), torch.randn(2, 4)
    styles = w.double() @ (layer.affine.weight.double() / 2).t() + layer.affine.bias.double()
    up = _fir(_zero_stuff(x.double(), 2), f, [3, 2, 3, 2], gain=4)
    outs = []
    for n in range(2):
        wn = layer.weight.double() * styles[n].reshape(1, -1, 1, 1)
        wn = wn / (wn.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        outs.append(F.conv2d(up[n:n + 1], wn.flip([2, 3])))
    y = torch.cat(outs) + layer.noise_const.double() * 0.5
    y = _lrelu(y + layer.bias.double().reshape(1, -1, 1, 1)) * np.sqrt(2)
    for fused in (True, False):
        assert torch.allclose(layer(x, w, noise_mode='const', fused_modconv=fused).double(), y, atol=1e-5)

    conv = nets.Conv2dLayer(3, 2, kernel_size=3, activation='lrelu', down=2)
    with torch.no_grad():
        conv.bias.copy_(torch.randn(2))
    x = torch.randn(2, 3, 8, 8)
    h = F.conv2d(_fir(x.double(), f, [2, 2, 2, 2]), conv.weight.double() / np.sqrt(27), stride=2)
    expect = _lrelu(h + conv.bias.double().reshape(1, -1, 1, 1)) * np.sqrt(2)
    assert torch.allclose(conv(x).double(), expect, atol=1e-5)

    skip_d = nets.Conv2dLayer(3, 2, kernel_size=1, bias=False, down=2)
    expect = F.conv2d(_fir(x.double(), f, [1, 1, 1, 1])[:, :, ::2, ::2], skip_d.weight.double() / np.sqrt(3))
    assert torch.allclose(skip_d(x, gain=np.sqrt(0.5)).double(), expect * np.sqrt(0.5), atol=1e-5)

    skip_g = nets.Conv2dLayer(3, 2, kernel_size=1, bias=False, up=2)
    x = torch.randn(2, 3, 4, 4)
    expect = _fir(_zero_stuff(F.conv2d(x.double(), skip_g.weight.double() / np.sqrt(3)), 2), f, [2, 1, 2, 1], gain=4)
    assert torch.allclose(skip_g(x).double(), expect, atol=1e-5)
