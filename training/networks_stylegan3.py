"""StyleGAN3 generator ("Alias-Free Generative Adversarial Networks", Karras et al. 2021), configs T and R,
with the constructor kwargs, state_dict names, buffers and call signatures of the NVlabs networks
(stylegan3 repo `networks_stylegan3`), so that official pickles load by name.

    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3)            # StyleGAN3-T
    G = Generator(..., channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True)  # -R
    img = G(z, c, truncation_psi=0.7)                           # [N, 3, 256, 256], about [-1, 1]
    G.synthesis.input.transform.copy_(torch.linalg.inv(m))      # translate / rotate the input (3x3)

Every signal is a band-limited continuous one sampled on a grid with a margin: the input is a set of
Fourier features, and each layer is a modulated convolution followed by the filtered leaky ReLU
(upsample by `lrelu_upsampling` past the layer's sampling rate, lowpass, lrelu, lowpass, downsample;
`ops.filtered_lrelu`). The cutoff, stopband and sampling rate of each layer follow the paper's
schedule (Sec. 3.2, Appendix F): geometric from `first_cutoff` to half the output resolution over
`num_layers - num_critical` layers, the last `num_critical` layers critically sampled.

fp16 layers (`num_fp16_res`) switch to float32 on CPU. The modulated convolution normalizes the
styles by their mean square over the whole batch (as NVlabs does); demodulation cancels that scale up
to its 1e-8 epsilon and rounding, so an image depends on its batch only at the float-rounding level.
"""

import numpy as np
import scipy.signal
import scipy.special
import torch

from torch_utils import misc
from torch_utils import persistence
from ops import bias_act
from ops import filtered_lrelu

#----------------------------------------------------------------------------
# Filter design.

def design_lowpass_filter(numtaps, cutoff, width, fs, radial=False):
    """Kaiser-windowed lowpass FIR filter: float32 `[numtaps]` (separable) or `[numtaps, numtaps]` (radial);
    None for `numtaps == 1` (identity).

    cutoff: -6 dB frequency; width: transition band width (twice the half-width); fs: sampling rate.
    The separable filter is `scipy.signal.firwin`'s windowed sinc. The radial one is the 2-D
    analog: the jinc `J1(2 pi cutoff r) / (pi r)` (ideal disc lowpass), times the separable
    Kaiser window of the same attenuation, normalized to unit DC gain.
    """
    if not (isinstance(numtaps, (int, np.integer)) and numtaps >= 1):
        raise ValueError(f'design_lowpass_filter: numtaps must be a positive integer, got {numtaps!r}')
    if numtaps == 1:
        return None
    if not radial:
        f = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
        return torch.as_tensor(f, dtype=torch.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    with np.errstate(invalid='ignore', divide='ignore'):
        f = np.where(r == 0, cutoff, scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r))
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    w = scipy.signal.windows.kaiser(numtaps, beta)
    f = f * np.outer(w, w)
    f = f / np.sum(f)
    return torch.as_tensor(f, dtype=torch.float32)

#----------------------------------------------------------------------------
# Modulated convolution (StyleGAN3 variant: pre-normalized weights and styles, optional input gain).

def modulated_conv2d(x, w, s, demodulate=True, padding=0, input_gain=None):
    """x: [N, I, H, W]; w: [O, I, k, k]; s: [N, I] styles; input_gain: [] or [I] (divides out the
    input magnitude). One grouped convolution over the batch; returns [N, O, H', W'] in x.dtype."""
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = w.shape
    misc.assert_shape(x, [batch_size, in_channels, None, None], name='x')
    misc.assert_shape(s, [batch_size, in_channels], name='styles')

    # Normalize both to unit mean square first (keeps fp16 in range; demodulation undoes the scale).
    if demodulate:
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()

    # Per-sample weights [N, O, I, k, k]: modulate, demodulate, apply the input gain.
    w = w.unsqueeze(0) * s.unsqueeze(1).unsqueeze(3).unsqueeze(4)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
        w = w * dcoefs.unsqueeze(2).unsqueeze(3).unsqueeze(4)
    if input_gain is not None:
        input_gain = input_gain.expand(batch_size, in_channels)
        w = w * input_gain.unsqueeze(1).unsqueeze(3).unsqueeze(4)

    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = torch.nn.functional.conv2d(x, w.to(x.dtype), padding=padding, groups=batch_size)
    return x.reshape(batch_size, -1, *x.shape[2:])

#----------------------------------------------------------------------------

@persistence.persistent_class
class FullyConnectedLayer(torch.nn.Module):
    def __init__(self,
        in_features,                # Number of input features.
        out_features,               # Number of output features.
        activation      = 'linear', # Activation: 'linear', 'lrelu', ...
        bias            = True,     # Apply additive bias before the activation?
        lr_multiplier   = 1,        # Learning rate multiplier (equalized lr).
        weight_init     = 1,        # Initial standard deviation of the weight.
        bias_init       = 0,        # Initial value of the bias: scalar or [out_features].
    ):
        super().__init__()
        if activation not in bias_act.activation_funcs:
            raise ValueError(f'FullyConnectedLayer: unknown activation {activation!r}')
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) * (weight_init / lr_multiplier))
        bias_init = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features])
        self.bias = torch.nn.Parameter(torch.from_numpy(bias_init / lr_multiplier)) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == 'linear' and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act.bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self):
        return f'in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}'


@persistence.persistent_class
class MappingNetwork(torch.nn.Module):
    def __init__(self,
        z_dim,                      # Input latent (Z) dimensionality.
        c_dim,                      # Conditioning label (C) dimensionality, 0 = no label.
        w_dim,                      # Intermediate latent (W) dimensionality.
        num_ws,                     # Number of intermediate latents to output.
        num_layers      = 2,        # Number of mapping layers.
        lr_multiplier   = 0.01,     # Learning rate multiplier for the mapping layers.
        w_avg_beta      = 0.998,    # Decay for tracking the moving average of W during training.
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        # Label embedding (as wide as W) and the mapping layers.
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, w_dim)
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        for idx in range(num_layers):
            setattr(self, f'fc{idx}', FullyConnectedLayer(features[idx], features[idx + 1], activation='lrelu', lr_multiplier=lr_multiplier))
        self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        misc.assert_shape(z, [None, self.z_dim], name='z')
        if truncation_cutoff is None:
            truncation_cutoff = self.num_ws

        # Pixel-normalize z and the embedded label, then concatenate.
        x = z.to(torch.float32)
        x = x * (x.square().mean(1, keepdim=True) + 1e-8).rsqrt()
        if self.c_dim > 0:
            if c is None:
                raise ValueError(f'c: this network is conditional (c_dim={self.c_dim}); pass a [N, {self.c_dim}] label tensor')
            misc.assert_shape(c, [z.shape[0], self.c_dim], name='c')
            y = self.embed(c.to(torch.float32))
            y = y * (y.square().mean(1, keepdim=True) + 1e-8).rsqrt()
            x = torch.cat([x, y], dim=1)

        for idx in range(self.num_layers):
            x = getattr(self, f'fc{idx}')(x)

        if update_emas:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        # Broadcast, then truncate the first `truncation_cutoff` ws towards w_avg.
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x

    def extra_repr(self):
        return f'z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class SynthesisInput(torch.nn.Module):
    """Fourier features: `channels` sinusoids of random direction and frequency (radius <= bandwidth),
    sampled on a `size` grid covering `size / sampling_rate` units, rotated and translated per sample
    by an affine of w and by the user `transform`, then mixed by a learned `[channels, channels]` matrix."""

    def __init__(self,
        w_dim,          # Intermediate latent (W) dimensionality.
        channels,       # Number of output channels.
        size,           # Output spatial size: int or [width, height].
        sampling_rate,  # Output sampling rate.
        bandwidth,      # Output bandwidth.
    ):
        super().__init__()
        self.w_dim = w_dim
        self.channels = channels
        self.size = np.broadcast_to(np.asarray(size), [2])
        self.sampling_rate = sampling_rate
        self.bandwidth = bandwidth

        # Frequencies: random directions, radii with density ~ exp(-r^2) falloff, scaled to the bandwidth.
        freqs = torch.randn([self.channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs /= radii * radii.square().exp().pow(0.25)
        freqs *= bandwidth
        phases = torch.rand([self.channels]) - 0.5

        self.weight = torch.nn.Parameter(torch.randn([self.channels, self.channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer('transform', torch.eye(3, 3))  # user-specified inverse transform wrt. the output image
        self.register_buffer('freqs', freqs)
        self.register_buffer('phases', phases)

    def forward(self, w):
        transforms = self.transform.unsqueeze(0)   # [1, 3, 3]
        freqs = self.freqs.unsqueeze(0)             # [1, C, 2]
        phases = self.phases.unsqueeze(0)           # [1, C]

        # Per-sample rotation (t[0], t[1]: cos/sin up to scale) and translation (t[2], t[3]) from w.
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        m_r = torch.eye(3, device=w.device).unsqueeze(0).repeat([w.shape[0], 1, 1])
        m_r[:, 0, 0] = t[:, 0]
        m_r[:, 0, 1] = -t[:, 1]
        m_r[:, 1, 0] = t[:, 1]
        m_r[:, 1, 1] = t[:, 0]
        m_t = torch.eye(3, device=w.device).unsqueeze(0).repeat([w.shape[0], 1, 1])
        m_t[:, 0, 2] = -t[:, 2]
        m_t[:, 1, 2] = -t[:, 3]
        transforms = m_r @ m_t @ transforms

        # Transform the frequencies and phases.
        phases = phases + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]

        # Fade out frequencies that the transform pushed past the bandwidth (towards Nyquist).
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)

        # Sample the sinusoids on the pixel-center grid.
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * self.size[0] / self.sampling_rate
        theta[1, 1] = 0.5 * self.size[1] / self.sampling_rate
        grids = torch.nn.functional.affine_grid(theta.unsqueeze(0), [1, 1, self.size[1], self.size[0]], align_corners=False)
        x = (grids.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)  # [N, H, W, C]
        x = x + phases.unsqueeze(1).unsqueeze(2)
        x = torch.sin(x * (np.pi * 2))
        x = x * amplitudes.unsqueeze(1).unsqueeze(2)

        # Learned channel mixing (equalized lr).
        weight = self.weight / np.sqrt(self.channels)
        x = x @ weight.t()

        x = x.permute(0, 3, 1, 2)  # [N, C, H, W]
        misc.assert_shape(x, [w.shape[0], self.channels, int(self.size[1]), int(self.size[0])], name='SynthesisInput output')
        return x

    def extra_repr(self):
        return (f'w_dim={self.w_dim}, channels={self.channels}, size={list(self.size)}, '
                f'sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}')


@persistence.persistent_class
class SynthesisLayer(torch.nn.Module):
    def __init__(self,
        w_dim,                          # Intermediate latent (W) dimensionality.
        is_torgb,                       # Is this the final ToRGB layer?
        is_critically_sampled,          # Does this layer use critical sampling?
        use_fp16,                       # Does this layer use FP16 (on CUDA)?
        in_channels,                    # Number of input channels.
        out_channels,                   # Number of output channels.
        in_size,                        # Input spatial size: int or [width, height].
        out_size,                       # Output spatial size: int or [width, height].
        in_sampling_rate,               # Input sampling rate (s).
        out_sampling_rate,              # Output sampling rate (s).
        in_cutoff,                      # Input cutoff frequency (f_c).
        out_cutoff,                     # Output cutoff frequency (f_c).
        in_half_width,                  # Input transition band half-width (f_h).
        out_half_width,                 # Output transition band half-width (f_h).
        conv_kernel         = 3,        # Convolution kernel size (ignored for ToRGB).
        filter_size         = 6,        # Lowpass filter taps per input/output pixel when up/downsampling.
        lrelu_upsampling    = 2,        # Relative sampling rate of the leaky ReLU (ignored for ToRGB).
        use_radial_filters  = False,    # Radially symmetric downsampling filter (ignored when critically sampled)?
        conv_clamp          = 256,      # Clamp the output to [-X, +X], None = disable clamping.
        magnitude_ema_beta  = 0.999,    # Decay rate for the moving average of the input magnitude.
    ):
        super().__init__()
        self.w_dim = w_dim
        self.is_torgb = is_torgb
        self.is_critically_sampled = is_critically_sampled
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = np.broadcast_to(np.asarray(in_size), [2])
        self.out_size = np.broadcast_to(np.asarray(out_size), [2])
        self.in_sampling_rate = in_sampling_rate
        self.out_sampling_rate = out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff = in_cutoff
        self.out_cutoff = out_cutoff
        self.in_half_width = in_half_width
        self.out_half_width = out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta

        # Learned parameters and the input magnitude EMA.
        self.affine = FullyConnectedLayer(self.w_dim, self.in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([self.out_channels, self.in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = torch.nn.Parameter(torch.zeros([self.out_channels]))
        self.register_buffer('magnitude_ema', torch.ones([]))

        # Upsampling filter: input rate -> temporary (lrelu) rate, lowpass at the input cutoff.
        self.up_factor = int(np.rint(self.tmp_sampling_rate / self.in_sampling_rate))
        if self.in_sampling_rate * self.up_factor != self.tmp_sampling_rate:
            raise ValueError(f'SynthesisLayer: sampling rates {in_sampling_rate} -> {self.tmp_sampling_rate} are not an integer upsampling')
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not self.is_torgb else 1
        self.register_buffer('up_filter', design_lowpass_filter(
            numtaps=self.up_taps, cutoff=self.in_cutoff, width=self.in_half_width * 2, fs=self.tmp_sampling_rate))

        # Downsampling filter: temporary rate -> output rate, lowpass at the output cutoff.
        self.down_factor = int(np.rint(self.tmp_sampling_rate / self.out_sampling_rate))
        if self.out_sampling_rate * self.down_factor != self.tmp_sampling_rate:
            raise ValueError(f'SynthesisLayer: sampling rates {self.tmp_sampling_rate} -> {out_sampling_rate} are not an integer downsampling')
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not self.is_torgb else 1
        self.down_radial = use_radial_filters and not self.is_critically_sampled
        self.register_buffer('down_filter', design_lowpass_filter(
            numtaps=self.down_taps, cutoff=self.out_cutoff, width=self.out_half_width * 2, fs=self.tmp_sampling_rate,
            radial=self.down_radial))

        # Padding of the upsampled image so that the output is exactly out_size after the two filters;
        # the extra pixel of an odd total goes after (before for the up_factor offset).
        pad_total = (self.out_size - 1) * self.down_factor + 1              # Output pixels at the temporary rate.
        pad_total -= (self.in_size + self.conv_kernel - 1) * self.up_factor  # Input pixels after the conv (full), upsampled.
        pad_total += self.up_taps + self.down_taps - 2                       # Taps consumed by the two filters.
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = [int(pad_lo[0]), int(pad_hi[0]), int(pad_lo[1]), int(pad_hi[1])]

    def compute_dtype(self, device, force_fp32=False):
        """float16 only for use_fp16 layers on CUDA (and not forced to float32)."""
        return torch.float16 if (self.use_fp16 and not force_fp32 and device.type == 'cuda') else torch.float32

    def forward(self, x, w, noise_mode='random', force_fp32=False, update_emas=False):
        if noise_mode not in ('random', 'const', 'none'):
            raise ValueError(f'noise_mode must be "random", "const" or "none", got {noise_mode!r}')  # no noise in StyleGAN3
        misc.assert_shape(x, [None, self.in_channels, int(self.in_size[1]), int(self.in_size[0])], name=f'input of {self._name()}')
        misc.assert_shape(w, [x.shape[0], self.w_dim], name=f'w of {self._name()}')

        # Track the input magnitude; its inverse square root normalizes the input (in the weights).
        if update_emas:
            magnitude_cur = x.detach().to(torch.float32).square().mean()
            self.magnitude_ema.copy_(magnitude_cur.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()

        # Affine styles; ToRGB has no demodulation, so it gets the equalized-lr gain instead.
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / np.sqrt(self.in_channels * (self.conv_kernel ** 2)))

        # Modulated convolution ('full': the filters below crop the margin).
        dtype = self.compute_dtype(x.device, force_fp32)
        x = modulated_conv2d(x=x.to(dtype), w=self.weight, s=styles, padding=self.conv_kernel - 1,
                             demodulate=(not self.is_torgb), input_gain=input_gain)

        # Bias, upsample, lowpass, leaky ReLU, lowpass, downsample (ToRGB: bias and clamp only).
        gain = 1 if self.is_torgb else np.sqrt(2)
        slope = 1 if self.is_torgb else 0.2
        x = filtered_lrelu.filtered_lrelu(x=x, fu=self.up_filter, fd=self.down_filter, b=self.bias.to(x.dtype),
            up=self.up_factor, down=self.down_factor, padding=self.padding, gain=gain, slope=slope, clamp=self.conv_clamp)

        misc.assert_shape(x, [None, self.out_channels, int(self.out_size[1]), int(self.out_size[0])], name=f'output of {self._name()}')
        assert x.dtype == dtype
        return x

    def _name(self):
        return f'SynthesisLayer {self.out_size[0]}px/{self.out_channels}ch'

    def extra_repr(self):
        return '\n'.join([
            f'w_dim={self.w_dim:d}, is_torgb={self.is_torgb}, is_critically_sampled={self.is_critically_sampled}, use_fp16={self.use_fp16},',
            f'in_sampling_rate={self.in_sampling_rate:g}, out_sampling_rate={self.out_sampling_rate:g},',
            f'in_cutoff={self.in_cutoff:g}, out_cutoff={self.out_cutoff:g},',
            f'in_half_width={self.in_half_width:g}, out_half_width={self.out_half_width:g},',
            f'in_size={list(self.in_size)}, out_size={list(self.out_size)},',
            f'in_channels={self.in_channels:d}, out_channels={self.out_channels:d}'])

#----------------------------------------------------------------------------

def layer_schedule(img_resolution, img_channels, channel_base=32768, channel_max=512, num_layers=14, num_critical=2,
                   first_cutoff=2, first_stopband=2**2.1, last_stopband_rel=2**0.3, margin_size=10):
    """Per-layer float64 arrays (index 0 = the input, num_layers = ToRGB): cutoffs, stopbands,
    sampling_rates, half_widths, sizes and channels (the paper's Appendix F schedule)."""
    last_cutoff = img_resolution / 2  # f_{c,N}
    last_stopband = last_cutoff * last_stopband_rel  # f_{t,N}
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents  # f_c[i]
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents  # f_t[i]
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))  # s[i]
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs  # f_h[i]
    sizes = sampling_rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    return dict(cutoffs=cutoffs, stopbands=stopbands, sampling_rates=sampling_rates, half_widths=half_widths,
                sizes=sizes, channels=channels)


@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    def __init__(self,
        w_dim,                          # Intermediate latent (W) dimensionality.
        img_resolution,                 # Output image resolution.
        img_channels,                   # Number of color channels.
        channel_base        = 32768,    # Overall multiplier for the number of channels.
        channel_max         = 512,      # Maximum number of channels in any layer.
        num_layers          = 14,       # Total number of layers, excluding Fourier features and ToRGB.
        num_critical        = 2,        # Number of critically sampled layers at the end.
        first_cutoff        = 2,        # Cutoff frequency of the first layer (f_{c,0}).
        first_stopband      = 2**2.1,   # Minimum stopband of the first layer (f_{t,0}).
        last_stopband_rel   = 2**0.3,   # Minimum stopband of the last layer, relative to its cutoff.
        margin_size         = 10,       # Number of additional pixels outside the image.
        output_scale        = 0.25,     # Scale factor for the output image.
        num_fp16_res        = 4,        # Use FP16 for the N highest resolutions.
        **layer_kwargs,                 # Arguments for SynthesisLayer.
    ):
        super().__init__()
        self.w_dim = w_dim
        self.num_ws = num_layers + 2
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_layers = num_layers
        self.num_critical = num_critical
        self.margin_size = margin_size
        self.output_scale = output_scale
        self.num_fp16_res = num_fp16_res

        sched = layer_schedule(img_resolution, img_channels, channel_base=channel_base, channel_max=channel_max,
            num_layers=num_layers, num_critical=num_critical, first_cutoff=first_cutoff, first_stopband=first_stopband,
            last_stopband_rel=last_stopband_rel, margin_size=margin_size)
        cutoffs, sampling_rates, half_widths = sched['cutoffs'], sched['sampling_rates'], sched['half_widths']
        sizes, channels = sched['sizes'], sched['channels']

        self.input = SynthesisInput(w_dim=self.w_dim, channels=int(channels[0]), size=int(sizes[0]),
                                    sampling_rate=sampling_rates[0], bandwidth=cutoffs[0])
        self.layer_names = []
        for idx in range(self.num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim=self.w_dim, is_torgb=(idx == self.num_layers),
                is_critically_sampled=(idx >= self.num_layers - self.num_critical),
                use_fp16=bool(sampling_rates[idx] * (2 ** self.num_fp16_res) > self.img_resolution),
                in_channels=int(channels[prev]), out_channels=int(channels[idx]),
                in_size=int(sizes[prev]), out_size=int(sizes[idx]),
                in_sampling_rate=int(sampling_rates[prev]), out_sampling_rate=int(sampling_rates[idx]),
                in_cutoff=cutoffs[prev], out_cutoff=cutoffs[idx],
                in_half_width=half_widths[prev], out_half_width=half_widths[idx],
                **layer_kwargs)
            name = f'L{idx}_{layer.out_size[0]}_{layer.out_channels}'
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(self, ws, **layer_kwargs):
        """ws: [N, num_ws, w_dim]; layer_kwargs: noise_mode (ignored), force_fp32, update_emas.
        Returns float32 images [N, img_channels, img_resolution, img_resolution]."""
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim], name='ws')
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w, **layer_kwargs)
        if self.output_scale != 1:
            x = x * self.output_scale
        misc.assert_shape(x, [None, self.img_channels, self.img_resolution, self.img_resolution], name='synthesis output')
        return x.to(torch.float32)

    def extra_repr(self):
        return '\n'.join([
            f'w_dim={self.w_dim:d}, num_ws={self.num_ws:d},',
            f'img_resolution={self.img_resolution:d}, img_channels={self.img_channels:d},',
            f'num_layers={self.num_layers:d}, num_critical={self.num_critical:d},',
            f'margin_size={self.margin_size:d}, num_fp16_res={self.num_fp16_res:d}'])


@persistence.persistent_class
class Generator(torch.nn.Module):
    def __init__(self,
        z_dim,                      # Input latent (Z) dimensionality.
        c_dim,                      # Conditioning label (C) dimensionality.
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
        """z: [N, z_dim]; c: [N, c_dim] (or None when c_dim == 0). Returns images [N, img_channels, R, R]."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)

#----------------------------------------------------------------------------
