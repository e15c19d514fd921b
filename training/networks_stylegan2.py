"""StyleGAN2 generator and discriminator ("Analyzing and Improving the Image Quality of StyleGAN",
Karras et al. 2020, configs E-F), with the constructor kwargs, state_dict names, call signatures and
numerics of the NVlabs PyTorch networks (stylegan3 repo `networks_stylegan2`), so that official
weights load by name and give the same images.

    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3)
    img = G(z, c, truncation_psi=0.7, noise_mode='const')         # [N, 3, 256, 256], about [-1, 1]
    logits = D(img, c)                                              # [N, 1]

Blocks are reachable as `getattr(net, f'b{res}')` and run on their own (SynthesisBlock.forward(x,
img, ws), DiscriminatorBlock.forward(x, img)), which the progressive-growing wrapper builds on.
fp16 blocks (`num_fp16_res`) switch to float32 on CPU; `fp16_dtype='bfloat16'` runs them in bf16.
One addition of ours, off by default: `input_from_w=True` adds an affine function of w to the 4x4
constant (state_dict name `synthesis.b4.const_affine.weight`). With a constant input a small generator
varies colour with z long before shape and position; the CPU demo preset of train.py turns it on.
"""

import numpy as np
import torch

from torch_utils import misc
from torch_utils import persistence
from ops import bias_act
from ops import conv2d_resample
from ops import modconv
from ops import upfirdn2d

#----------------------------------------------------------------------------
# Helpers.

# Default gain of each activation (NVlabs bias_act def_gain): He-init compensation for ReLU-like ones.
_ACT_DEF_GAIN = {
    'linear': 1.0, 'relu': np.sqrt(2), 'lrelu': np.sqrt(2), 'tanh': 1.0, 'sigmoid': 1.0,
    'elu': 1.0, 'selu': 1.0, 'softplus': 1.0, 'swish': np.sqrt(2),
}

_LOWP_DTYPES = {
    'float16': torch.float16, 'fp16': torch.float16, 'half': torch.float16, 'torch.float16': torch.float16,
    'bfloat16': torch.bfloat16, 'bf16': torch.bfloat16, 'torch.bfloat16': torch.bfloat16,
}


def _act_gain(activation):
    if activation not in _ACT_DEF_GAIN:
        raise ValueError(f'Unknown activation {activation!r}: expected one of {", ".join(_ACT_DEF_GAIN)}')
    return _ACT_DEF_GAIN[activation]


def parse_fp16_dtype(value):
    """Map the `fp16_dtype` option ('float16', 'bfloat16', or a torch dtype) to a torch dtype."""
    if isinstance(value, torch.dtype):
        value = str(value)
    if value not in _LOWP_DTYPES:
        raise ValueError(f'fp16_dtype must be "float16" or "bfloat16", got {value!r}')
    return _LOWP_DTYPES[value]


def _check_architecture(architecture):
    if architecture not in ('orig', 'skip', 'resnet'):
        raise ValueError(f'architecture must be "orig", "skip" or "resnet", got {architecture!r}')


def normalize_2nd_moment(x, dim=1, eps=1e-8):
    """Scale `x` to unit mean square along `dim` (pixel norm of the mapping input)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()

#----------------------------------------------------------------------------
# Layers with equalized learning rate: weights stored N(0, 1) / lr_multiplier, scaled at runtime.

@persistence.persistent_class
class FullyConnectedLayer(torch.nn.Module):
    def __init__(self,
        in_features,                # Number of input features.
        out_features,               # Number of output features.
        bias            = True,     # Apply additive bias before the activation?
        activation      = 'linear', # Activation: 'linear', 'relu', 'lrelu', ...
        lr_multiplier   = 1.0,      # Learning rate multiplier (equalized lr).
        bias_init       = 0.0,      # Initial value of the bias.
    ):
        super().__init__()
        _act_gain(activation)
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], np.float32(bias_init))) if bias else None

    def forward(self, x):
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == 'linear' and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        x = x.matmul(w.t())
        return bias_act.bias_act(x, b, act=self.activation)

    def extra_repr(self):
        return f'in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}'


@persistence.persistent_class
class Conv2dLayer(torch.nn.Module):
    def __init__(self,
        in_channels,                    # Number of input channels.
        out_channels,                   # Number of output channels.
        kernel_size,                    # Width and height of the kernel.
        bias            = True,         # Apply additive bias before the activation?
        activation      = 'linear',     # Activation: 'linear', 'relu', 'lrelu', ...
        up              = 1,            # Integer upsampling factor.
        down            = 1,            # Integer downsampling factor.
        resample_filter = [1, 3, 3, 1], # Low-pass filter used when resampling.
        conv_clamp      = None,         # Clamp the output to +-X, None = no clamping.
        channels_last   = False,        # Store the weight in channels_last format?
        trainable       = True,         # False = weight and bias are buffers (frozen layers, Freeze-D).
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))
        self.act_gain = _act_gain(activation)

        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        bias = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias) if bias is not None else None
        else:
            self.register_buffer('weight', weight)
            if bias is not None:
                self.register_buffer('bias', bias)
            else:
                self.bias = None

    def forward(self, x, gain=1):
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        flip_weight = (self.up == 1)  # correlation when not upsampling (faster, same as NVlabs)
        x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), f=self.resample_filter, up=self.up, down=self.down,
                                            padding=self.padding, flip_weight=flip_weight)
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, b, act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self):
        return (f'in_channels={self.in_channels}, out_channels={self.out_channels}, activation={self.activation}, '
                f'up={self.up}, down={self.down}')

#----------------------------------------------------------------------------
# Mapping network: z (and label embedding) -> w, with w_avg tracking and truncation.

@persistence.persistent_class
class MappingNetwork(torch.nn.Module):
    def __init__(self,
        z_dim,                      # Latent (Z) dimensionality, 0 = no latent.
        c_dim,                      # Label (C) dimensionality, 0 = no label.
        w_dim,                      # Intermediate latent (W) dimensionality.
        num_ws,                     # Number of ws to broadcast to, None = return [N, w_dim].
        num_layers      = 8,        # Number of mapping layers.
        embed_features  = None,     # Label embedding size, None = w_dim.
        layer_features  = None,     # Hidden layer size, None = w_dim.
        activation      = 'lrelu',  # Activation of the mapping layers.
        lr_multiplier   = 0.01,     # Learning rate multiplier of the mapping layers.
        w_avg_beta      = 0.998,    # Decay of the running average of W, None = do not track.
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier)
            setattr(self, f'fc{idx}', layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        # Embed, normalize and concatenate the inputs.
        x = None
        if self.z_dim > 0:
            misc.assert_shape(z, [None, self.z_dim], name='z')
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            if c is None:
                raise ValueError(f'c: this network is conditional (c_dim={self.c_dim}); pass a [N, {self.c_dim}] label tensor')
            misc.assert_shape(c, [None, self.c_dim], name='c')
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y

        # Main layers.
        for idx in range(self.num_layers):
            x = getattr(self, f'fc{idx}')(x)

        # Track the moving average of W.
        if update_emas and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        # Broadcast to num_ws.
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])

        # Truncation trick: w' = w_avg + psi * (w - w_avg), optionally only for the first `cutoff` ws.
        if truncation_psi != 1:
            if self.w_avg_beta is None or self.num_ws is None:
                raise ValueError('truncation_psi != 1 needs a mapping network that tracks w_avg (w_avg_beta and num_ws not None)')
            if truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x

    def extra_repr(self):
        return f'z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}'

#----------------------------------------------------------------------------
# Synthesis network.

@persistence.persistent_class
class SynthesisLayer(torch.nn.Module):
    def __init__(self,
        in_channels,                    # Number of input channels.
        out_channels,                   # Number of output channels.
        w_dim,                          # Intermediate latent (W) dimensionality.
        resolution,                     # Output resolution of this layer.
        kernel_size     = 3,            # Convolution kernel size.
        up              = 1,            # Integer upsampling factor.
        use_noise       = True,         # Add per-pixel noise?
        activation      = 'lrelu',      # Activation.
        resample_filter = [1, 3, 3, 1], # Low-pass filter used when upsampling.
        conv_clamp      = None,         # Clamp the output to +-X, None = no clamping.
        channels_last   = False,        # Store the weight in channels_last format?
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = _act_gain(activation)

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        if use_noise:
            self.register_buffer('noise_const', torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, noise_mode='random', fused_modconv=True, gain=1):
        if noise_mode not in ('random', 'const', 'none'):
            raise ValueError(f'noise_mode must be "random", "const" or "none", got {noise_mode!r}')
        in_resolution = self.resolution // self.up
        misc.assert_shape(x, [None, self.in_channels, in_resolution, in_resolution], name=f'SynthesisLayer input ({self.resolution}px)')
        styles = self.affine(w)

        noise = None
        if self.use_noise and noise_mode == 'random':
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
        if self.use_noise and noise_mode == 'const':
            noise = self.noise_const * self.noise_strength

        flip_weight = (self.up == 1)
        x = modconv.modulated_conv2d(x=x, weight=self.weight, styles=styles, noise=noise, up=self.up, padding=self.padding,
                                     resample_filter=self.resample_filter, flip_weight=flip_weight, fused_modconv=fused_modconv)
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self):
        return (f'in_channels={self.in_channels}, out_channels={self.out_channels}, w_dim={self.w_dim}, '
                f'resolution={self.resolution}, up={self.up}, activation={self.activation}')


@persistence.persistent_class
class ToRGBLayer(torch.nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=None, channels_last=False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))

    def forward(self, x, w, fused_modconv=True):
        styles = self.affine(w) * self.weight_gain
        x = modconv.modulated_conv2d(x=x, weight=self.weight, styles=styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)

    def extra_repr(self):
        return f'in_channels={self.in_channels}, out_channels={self.out_channels}, w_dim={self.w_dim}'


@persistence.persistent_class
class SynthesisBlock(torch.nn.Module):
    def __init__(self,
        in_channels,                            # Number of input channels, 0 = first block (const input).
        out_channels,                           # Number of output channels.
        w_dim,                                  # Intermediate latent (W) dimensionality.
        resolution,                             # Resolution of this block.
        img_channels,                           # Number of output color channels.
        is_last,                                # Is this the last block?
        architecture            = 'skip',       # 'orig', 'skip' or 'resnet'.
        resample_filter         = [1, 3, 3, 1], # Low-pass filter used when upsampling.
        conv_clamp              = 256,          # Clamp conv outputs to +-X, None = no clamping.
        use_fp16                = False,        # Run this block in reduced precision on CUDA?
        fp16_channels_last      = False,        # channels_last memory format with reduced precision?
        fused_modconv_default   = True,         # fused_modconv when the caller passes None; 'inference_only' = fused in eval mode only;
                                                # 'ada' = the stylegan2-ada-pytorch rule: eval mode and (float32 block or batch 1).
        fp16_dtype              = 'float16',    # Reduced-precision dtype of use_fp16 blocks: 'float16' or 'bfloat16'.
        input_from_w            = False,        # First block: add an affine function of its w to the learned constant input
                                                # (ganforge, not in NVlabs: lets small generators vary shape and position early).
        **layer_kwargs,                         # Arguments for SynthesisLayer.
    ):
        _check_architecture(architecture)
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.fused_modconv_default = fused_modconv_default
        self.fp16_dtype = parse_fp16_dtype(fp16_dtype)
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0

        self.input_from_w = bool(input_from_w) and in_channels == 0
        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        if self.input_from_w:
            self.const_affine = FullyConnectedLayer(w_dim, out_channels * resolution * resolution, bias=False)
        if in_channels != 0:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                resample_filter=resample_filter, conv_clamp=conv_clamp, channels_last=self.channels_last, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
            conv_clamp=conv_clamp, channels_last=self.channels_last, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == 'skip':
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp, channels_last=self.channels_last)
            self.num_torgb += 1
        if in_channels != 0 and architecture == 'resnet':
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                resample_filter=resample_filter, channels_last=self.channels_last)

    def compute_dtype(self, device, force_fp32=False):
        """Activation dtype of this block on `device` (float32 unless use_fp16 on CUDA and not forced)."""
        if device.type != 'cuda':
            force_fp32 = True
        return self.fp16_dtype if self.use_fp16 and not force_fp32 else torch.float32

    def forward(self, x, img, ws, force_fp32=False, fused_modconv=None, update_emas=False, **layer_kwargs):
        """x: [N, in_channels, res/2, res/2] or None for the first block; img: [N, img_channels, res/2, res/2]
        or None; ws: [N, num_conv + num_torgb, w_dim]. Returns (x [N, out_channels, res, res], img)."""
        _ = update_emas  # no running statistics in the synthesis network
        misc.assert_shape(ws, [None, self.num_conv + self.num_torgb, self.w_dim], name=f'ws of synthesis block b{self.resolution}')
        w_iter = iter(ws.unbind(dim=1))
        dtype = self.compute_dtype(ws.device, force_fp32)
        reduced = dtype != torch.float32
        memory_format = torch.channels_last if self.channels_last and reduced else torch.contiguous_format
        if fused_modconv is None:
            fused_modconv = self.fused_modconv_default
        if fused_modconv == 'inference_only':
            fused_modconv = (not self.training)
        if fused_modconv == 'ada':  # stylegan2-ada-pytorch networks have no default; this is their rule for None
            with misc.suppress_tracer_warnings():
                fused_modconv = (not self.training) and (dtype == torch.float32 or int(ws.shape[0]) == 1)

        # Input.
        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=memory_format)
            x = x.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            if self.input_from_w:  # the block's first w, the one conv1 uses
                x = (x + self.const_affine(ws[:, 0]).reshape(x.shape).to(dtype)).to(memory_format=memory_format)
        else:
            misc.assert_shape(x, [None, self.in_channels, self.resolution // 2, self.resolution // 2], name=f'x input of synthesis block b{self.resolution}')
            x = x.to(dtype=dtype, memory_format=memory_format)

        # Main layers.
        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        elif self.architecture == 'resnet':
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, gain=np.sqrt(0.5), **layer_kwargs)
            x = y.add_(x)
        else:
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)

        # ToRGB: upsample the running image and add this block's contribution.
        if img is not None:
            misc.assert_shape(img, [None, self.img_channels, self.resolution // 2, self.resolution // 2], name=f'img input of synthesis block b{self.resolution}')
            img = upfirdn2d.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == 'skip':
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img.add_(y) if img is not None else y

        assert x.dtype == dtype
        assert img is None or img.dtype == torch.float32
        return x, img

    def extra_repr(self):
        return f'resolution={self.resolution}, architecture={self.architecture}' + (', input_from_w=True' if self.input_from_w else '')


@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    def __init__(self,
        w_dim,                      # Intermediate latent (W) dimensionality.
        img_resolution,             # Output resolution (power of two, >= 4).
        img_channels,               # Number of color channels.
        channel_base    = 32768,    # Channels at resolution r: min(channel_base // r, channel_max).
        channel_max     = 512,      # Maximum number of channels.
        num_fp16_res    = 4,        # Reduced precision for the N highest resolutions (never below 8).
        **block_kwargs,             # Arguments for SynthesisBlock.
    ):
        if not (isinstance(img_resolution, int) and img_resolution >= 4 and img_resolution & (img_resolution - 1) == 0):
            raise ValueError(f'img_resolution must be a power of two >= 4, got {img_resolution!r}')
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [2 ** i for i in range(2, self.img_resolution_log2 + 1)]
        channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels_dict[res // 2] if res > 4 else 0
            out_channels = channels_dict[res]
            use_fp16 = (res >= fp16_resolution)
            is_last = (res == self.img_resolution)
            block = SynthesisBlock(in_channels, out_channels, w_dim=w_dim, resolution=res,
                img_channels=img_channels, is_last=is_last, use_fp16=use_fp16, **block_kwargs)
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f'b{res}', block)

    def split_ws(self, ws):
        """Per-block slices of ws [N, num_ws, w_dim]; consecutive blocks share the torgb/conv0 w."""
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim], name='ws')
        ws = ws.to(torch.float32)
        block_ws, w_idx = [], 0
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            block_ws.append(ws.narrow(1, w_idx, block.num_conv + block.num_torgb))
            w_idx += block.num_conv
        return block_ws

    def forward(self, ws, **block_kwargs):
        x = img = None
        for res, cur_ws in zip(self.block_resolutions, self.split_ws(ws)):
            x, img = getattr(self, f'b{res}')(x, img, cur_ws, **block_kwargs)
        return img

    def extra_repr(self):
        return (f'w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, '
                f'img_channels={self.img_channels}, num_fp16_res={self.num_fp16_res}')


@persistence.persistent_class
class Generator(torch.nn.Module):
    def __init__(self,
        z_dim,                      # Latent (Z) dimensionality.
        c_dim,                      # Label (C) dimensionality, 0 = unconditional.
        w_dim,                      # Intermediate latent (W) dimensionality.
        img_resolution,             # Output resolution.
        img_channels,               # Number of output color channels.
        mapping_kwargs      = {},   # Arguments for MappingNetwork.
        **synthesis_kwargs,         # Arguments for SynthesisNetwork.
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False, **synthesis_kwargs):
        """z: [N, z_dim]; c: [N, c_dim] (or None / empty when c_dim == 0). Returns images [N, img_channels, R, R]."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)

#----------------------------------------------------------------------------
# Discriminator.

@persistence.persistent_class
class DiscriminatorBlock(torch.nn.Module):
    def __init__(self,
        in_channels,                        # Number of input channels, 0 = first block (fromrgb input).
        tmp_channels,                       # Number of intermediate channels.
        out_channels,                       # Number of output channels.
        resolution,                         # Resolution of this block.
        img_channels,                       # Number of input color channels.
        first_layer_idx,                    # Index of the first layer (for freeze_layers).
        architecture        = 'resnet',     # 'orig', 'skip' or 'resnet'.
        activation          = 'lrelu',      # Activation.
        resample_filter     = [1, 3, 3, 1], # Low-pass filter used when downsampling.
        conv_clamp          = None,         # Clamp conv outputs to +-X, None = no clamping.
        use_fp16            = False,        # Run this block in reduced precision on CUDA?
        fp16_channels_last  = False,        # channels_last memory format with reduced precision?
        freeze_layers       = 0,            # Freeze-D: number of leading layers whose weights are buffers.
        fp16_dtype          = 'float16',    # Reduced-precision dtype of use_fp16 blocks: 'float16' or 'bfloat16'.
    ):
        if in_channels not in (0, tmp_channels):
            raise ValueError(f'DiscriminatorBlock: in_channels must be 0 or tmp_channels ({tmp_channels}), got {in_channels}')
        _check_architecture(architecture)
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.fp16_dtype = parse_fp16_dtype(fp16_dtype)
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))

        # Layers are numbered across the whole D; those below freeze_layers are not trainable.
        self.num_layers = 0
        def next_trainable():
            trainable = (self.first_layer_idx + self.num_layers >= freeze_layers)
            self.num_layers += 1
            return trainable

        if in_channels == 0 or architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, activation=activation,
                trainable=next_trainable(), conv_clamp=conv_clamp, channels_last=self.channels_last)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation=activation,
            trainable=next_trainable(), conv_clamp=conv_clamp, channels_last=self.channels_last)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, activation=activation, down=2,
            trainable=next_trainable(), resample_filter=resample_filter, conv_clamp=conv_clamp, channels_last=self.channels_last)
        if architecture == 'resnet':
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                trainable=next_trainable(), resample_filter=resample_filter, channels_last=self.channels_last)

    def compute_dtype(self, device, force_fp32=False):
        """Activation dtype of this block on `device` (float32 unless use_fp16 on CUDA and not forced)."""
        if device.type != 'cuda':
            force_fp32 = True
        return self.fp16_dtype if self.use_fp16 and not force_fp32 else torch.float32

    def forward(self, x, img, force_fp32=False):
        """x: [N, in_channels, res, res] or None; img: [N, img_channels, res, res] (used by the first block and
        by 'skip'). Returns (x [N, out_channels, res/2, res/2], img downsampled for 'skip' else None)."""
        dtype = self.compute_dtype((x if x is not None else img).device, force_fp32)
        reduced = dtype != torch.float32
        memory_format = torch.channels_last if self.channels_last and reduced else torch.contiguous_format

        # Input.
        if x is not None:
            misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution], name=f'x input of discriminator block b{self.resolution}')
            x = x.to(dtype=dtype, memory_format=memory_format)

        # FromRGB.
        if self.in_channels == 0 or self.architecture == 'skip':
            misc.assert_shape(img, [None, self.img_channels, self.resolution, self.resolution], name=f'img input of discriminator block b{self.resolution}')
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = upfirdn2d.downsample2d(img, self.resample_filter) if self.architecture == 'skip' else None

        # Main layers.
        if self.architecture == 'resnet':
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=np.sqrt(0.5))
            x = y.add_(x)
        else:
            x = self.conv0(x)
            x = self.conv1(x)

        assert x.dtype == dtype
        return x, img

    def extra_repr(self):
        return f'resolution={self.resolution}, architecture={self.architecture}'


@persistence.persistent_class
class MinibatchStdLayer(torch.nn.Module):
    def __init__(self, group_size, num_channels=1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x):
        """Append num_channels feature maps holding the stddev over groups of min(group_size, N) samples."""
        N, C, H, W = x.shape
        G = min(int(self.group_size), N) if self.group_size is not None else N
        if N % G != 0:
            raise ValueError(f'Minibatch stddev: batch size {N} is not divisible by the group size {G} '
                             f'(mbstd_group_size={self.group_size}); use a batch size that is a multiple of it')
        F = self.num_channels
        c = C // F
        y = x.reshape(G, -1, F, c, H, W)    # [GnFcHW] sample i belongs to group i % n
        y = y - y.mean(dim=0)               # subtract the group mean
        y = y.square().mean(dim=0)          # [nFcHW] variance over the group
        y = (y + 1e-8).sqrt()               # stddev
        y = y.mean(dim=[2, 3, 4])           # [nF] average over channels and pixels
        y = y.reshape(-1, F, 1, 1)          # [nF11]
        y = y.repeat(G, 1, H, W)            # [NFHW]
        return torch.cat([x, y], dim=1)

    def extra_repr(self):
        return f'group_size={self.group_size}, num_channels={self.num_channels}'


@persistence.persistent_class
class DiscriminatorEpilogue(torch.nn.Module):
    def __init__(self,
        in_channels,                    # Number of input channels.
        cmap_dim,                       # Dimensionality of the mapped label, 0 = unconditional.
        resolution,                     # Resolution of this block (4).
        img_channels,                   # Number of input color channels.
        architecture        = 'resnet', # 'orig', 'skip' or 'resnet'.
        mbstd_group_size    = 4,        # Minibatch stddev group size, None = whole minibatch.
        mbstd_num_channels  = 1,        # Minibatch stddev features, 0 = disable.
        activation          = 'lrelu',  # Activation.
        conv_clamp          = None,     # Clamp conv outputs to +-X, None = no clamping.
    ):
        _check_architecture(architecture)
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture

        if architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(group_size=mbstd_group_size, num_channels=mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * (resolution ** 2), in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x, img, cmap, force_fp32=False):
        _ = force_fp32  # the epilogue always runs in float32
        misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution], name='x input of the discriminator epilogue')
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == 'skip':
            misc.assert_shape(img, [None, self.img_channels, self.resolution, self.resolution], name='img input of the discriminator epilogue')
            img = img.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            x = x + self.fromrgb(img)

        # Main layers.
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)

        # Projection conditioning: <out, cmap> / sqrt(cmap_dim).
        if self.cmap_dim > 0:
            misc.assert_shape(cmap, [None, self.cmap_dim], name='cmap')
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        return x

    def extra_repr(self):
        return f'resolution={self.resolution}, architecture={self.architecture}'


@persistence.persistent_class
class Discriminator(torch.nn.Module):
    def __init__(self,
        c_dim,                          # Label (C) dimensionality, 0 = unconditional.
        img_resolution,                 # Input resolution.
        img_channels,                   # Number of input color channels.
        architecture        = 'resnet', # 'orig', 'skip' or 'resnet'.
        channel_base        = 32768,    # Channels at resolution r: min(channel_base // r, channel_max).
        channel_max         = 512,      # Maximum number of channels.
        num_fp16_res        = 4,        # Reduced precision for the N highest resolutions (never below 8).
        conv_clamp          = 256,      # Clamp conv outputs to +-X, None = no clamping.
        cmap_dim            = None,     # Dimensionality of the mapped label, None = channels at 4x4.
        block_kwargs        = {},       # Arguments for DiscriminatorBlock.
        mapping_kwargs      = {},       # Arguments for MappingNetwork (label embedding).
        epilogue_kwargs     = {},       # Arguments for DiscriminatorEpilogue.
    ):
        if not (isinstance(img_resolution, int) and img_resolution >= 8 and img_resolution & (img_resolution - 1) == 0):
            raise ValueError(f'Discriminator: img_resolution must be a power of two >= 8, got {img_resolution!r}')
        super().__init__()
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(self.img_resolution_log2, 2, -1)]
        channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        if cmap_dim is None:
            cmap_dim = channels_dict[4]
        if c_dim == 0:
            cmap_dim = 0

        common_kwargs = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        cur_layer_idx = 0
        for res in self.block_resolutions:
            in_channels = channels_dict[res] if res < img_resolution else 0
            tmp_channels = channels_dict[res]
            out_channels = channels_dict[res // 2]
            use_fp16 = (res >= fp16_resolution)
            block = DiscriminatorBlock(in_channels, tmp_channels, out_channels, resolution=res,
                first_layer_idx=cur_layer_idx, use_fp16=use_fp16, **block_kwargs, **common_kwargs)
            setattr(self, f'b{res}', block)
            cur_layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(channels_dict[4], cmap_dim=cmap_dim, resolution=4, **epilogue_kwargs, **common_kwargs)

    def forward(self, img, c, update_emas=False, **block_kwargs):
        """img: [N, img_channels, R, R]; c: [N, c_dim] (ignored when c_dim == 0). Returns logits [N, 1]."""
        _ = update_emas  # no running statistics in D
        misc.assert_shape(img, [None, self.img_channels, self.img_resolution, self.img_resolution], name='img')
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f'b{res}')(x, img, **block_kwargs)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)

    def extra_repr(self):
        return f'c_dim={self.c_dim}, img_resolution={self.img_resolution}, img_channels={self.img_channels}'

#----------------------------------------------------------------------------
