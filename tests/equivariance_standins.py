"""Small stand-ins for StyleGAN3 generators (the NVlabs interface: G.mapping, G.synthesis with a settable
[3, 3] G.synthesis.input.transform, img_resolution) whose equivariance is known by construction."""

import numpy as np
import torch


class StandInInput(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer('transform', torch.eye(3))


class StandInSynthesis(torch.nn.Module):
    """Renders, per channel, sum_k a_k cos(2 pi f_k . q + phi_k) (float64, returned as float32) with f_k
    [K, 2] in cycles per image and q = transform @ (pixel centre in image units, 1), so the image is
    exactly g(transform p) for a band-limited g: equivariant by construction. `follows_transform=False`
    renders g(p) whatever the transform. Phases and amplitudes come from w (ws[:, 0])."""

    def __init__(self, img_resolution, freqs, img_channels=3, follows_transform=True):
        super().__init__()
        self.input = StandInInput()
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.follows_transform = follows_transform
        self.register_buffer('freqs', torch.as_tensor(freqs, dtype=torch.float64))
        self.calls = []

    def forward(self, ws, noise_mode='random', force_fp32=False):
        self.calls.append(dict(noise_mode=noise_mode, force_fp32=force_fp32, transform=self.input.transform.clone()))
        N, K, R = ws.shape[0], self.freqs.shape[0], self.img_resolution
        w = ws[:, 0].to(torch.float64)
        p = (torch.arange(R, dtype=torch.float64) + 0.5) / R - 0.5
        py, px = torch.meshgrid(p, p, indexing='ij')
        M = self.input.transform.to(torch.float64) if self.follows_transform else torch.eye(3, dtype=torch.float64)
        qx = M[0, 0] * px + M[0, 1] * py + M[0, 2]
        qy = M[1, 0] * px + M[1, 1] * py + M[1, 2]
        arg = 2 * np.pi * (self.freqs[:, 0, None, None] * qx + self.freqs[:, 1, None, None] * qy)  # [K, R, R]
        img = torch.zeros([N, self.img_channels, R, R], dtype=torch.float64)
        for c in range(self.img_channels):
            phase = w[:, :K] + c  # [N, K]
            amp = 0.5 / np.sqrt(K) * torch.tanh(w[:, K:2 * K]).abs() + 0.1
            img[:, c] = (amp[:, :, None, None] * torch.cos(arg[None] + phase[:, :, None, None])).sum(1)
        return img.to(torch.float32)


class StandInMapping(torch.nn.Module):
    def __init__(self, num_ws):
        super().__init__()
        self.num_ws = num_ws

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        return z.to(torch.float32)[:, None, :].repeat(1, self.num_ws, 1) * truncation_psi  # float32 as the real ones


class StandInGenerator(torch.nn.Module):
    """G with z_dim = w_dim = 2K (K frequencies), one w, unconditional."""

    def __init__(self, img_resolution=32, freqs=((2, 1), (-3, 5), (6, 2), (1, -7), (8, 3)), follows_transform=True):
        super().__init__()
        self.z_dim = self.w_dim = 2 * len(freqs)
        self.c_dim = 0
        self.num_ws = 1
        self.img_resolution = img_resolution
        self.img_channels = 3
        self.mapping = StandInMapping(self.num_ws)
        self.synthesis = StandInSynthesis(img_resolution, freqs, follows_transform=follows_transform)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, **synthesis_kwargs):
        return self.synthesis(self.mapping(z, c, truncation_psi, truncation_cutoff), **synthesis_kwargs)
