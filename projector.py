"""Project target images into the W space of a StyleGAN2 or StyleGAN3 generator.

The method of NVlabs' projector.py: start at w_avg (mean of 10000 mapped z), optimise one w
(broadcast to all layers) with Adam to minimise the LPIPS distance between VGG16 features of the
target and of the synthesized image (both at most 256x256), with a W noise ramp, a learning-rate
ramp (up over the first 5%, cosine down over the last 25%) and, for StyleGAN2, optimised noise
buffers held to unit variance and penalised for spatial autocorrelation at every scale. StyleGAN3
networks have no noise buffers; only w is optimised there.

Outputs (as NVlabs): projected_w.npz (key 'w', [1, num_ws, w_dim]), target.png (the target as
projected: center-cropped and resized to the network's resolution), proj.png (the projection), and
with --save-video proj.mp4 (target | projection at every step; PNG frames to proj_frames/ without
imageio-ffmpeg). With several --target images each gets its own folder OUTDIR/NN-NAME/ (NN = position
on the command line) and is projected from the same --seed, as if run alone.

proj.png uses the optimised noise buffers; `generate.py --projected-w` renders w alone with the
network's own noise, so StyleGAN2 images may differ slightly in fine detail (as with NVlabs).

Examples:

\b
    python projector.py --network=ffhq.pkl --target=face.png --outdir=out --save-video
    python generate.py --network=ffhq.pkl --projected-w=out/projected_w.npz --outdir=out

\b
    # Several targets, offline VGG16 (vgg16.pt or vgg16.pkl from NVlabs in ./detectors).
    python projector.py --network=snap.pt --target=a.png --target=b.png --detector-dir=detectors --outdir=out
"""

import copy
import os
import time

import click
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

import dnnlib
import dnnlib.cli
import dnnlib.util
import torch_utils.cli
import gen_video
import generate
from metrics import detectors

#----------------------------------------------------------------------------
# Library functions.

def load_target(path, resolution, channels, log=print):
    """uint8 [resolution, resolution, channels] target image: converted to RGB (or L), center-cropped to a
    square and resized with Lanczos as NVlabs' projector does; a note is printed when it had to be."""
    image = PIL.Image.open(path).convert('L' if channels == 1 else 'RGB')
    w, h = image.size
    if (w, h) != (resolution, resolution):
        s = min(w, h)
        image = image.crop(((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2))
        image = image.resize((resolution, resolution), PIL.Image.LANCZOS)
        log(f'Note: {path} is {w}x{h}; center-cropped to {s}x{s} and resized to the network\'s {resolution}x{resolution}')
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, np.newaxis] if array.ndim == 2 else array


def _vgg_input(img):
    """Float [N, C, H, W] in [0, 255] -> 3-channel, at most 256x256 (area downsampling), for the VGG16."""
    if img.shape[1] == 1:
        img = img.repeat([1, 3, 1, 1])
    if img.shape[2] > 256:
        img = F.interpolate(img, size=(256, 256), mode='area')
    return img


def _noise_regularization(noise_bufs):
    """Sum over buffers and scales (halved down to 8x8) of the squared mean autocorrelation with a
    one-pixel shift along x and along y."""
    reg = 0.0
    for buf in noise_bufs:
        noise = buf[None, None, :, :]
        while True:
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=3)).mean() ** 2
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=2)).mean() ** 2
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return reg


def project(G, target, vgg16, *, num_steps=1000, w_avg_samples=10000, initial_learning_rate=0.1,
            initial_noise_factor=0.05, lr_rampdown_length=0.25, lr_rampup_length=0.05, noise_ramp_length=0.75,
            regularize_noise_weight=1e5, class_idx=None, device=None, log=print, log_every=10):
    """Optimise w for one target.

    Args:
        G:       generator (StyleGAN2 or StyleGAN3); not modified (the noise buffers are optimised on a copy).
        target:  uint8 [H, W, C] at G's resolution (see load_target).
        vgg16:   NVlabs-style VGG16 detector: vgg16(img_0_255, resize_images=False, return_lpips=True).
        class_idx: class for a conditional G (w_avg then comes from z with that label).
    Returns:
        (w_steps, dists, G_proj): ws [num_steps, num_ws, w_dim] after each step, the LPIPS distance at
        each step (list of floats), and the copy of G holding the optimised noise buffers.
    """
    device = torch.device(device if device is not None else ('cuda' if torch.cuda.is_available() else 'cpu'))
    G = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    if target.shape != (G.img_resolution, G.img_resolution, G.img_channels):
        raise ValueError(f'target has shape {target.shape}, expected {(G.img_resolution, G.img_resolution, G.img_channels)}')

    # w_avg and w_std from w_avg_samples mapped z (one w per sample), NVlabs' RandomState(123).
    log(f'Computing W midpoint and stddev using {w_avg_samples} samples...')
    z_samples = torch.from_numpy(np.random.RandomState(123).randn(w_avg_samples, G.z_dim)).to(device=device, dtype=torch.float32)
    c_samples = generate.class_labels(G, class_idx, w_avg_samples, device)
    with torch.no_grad():
        w_samples = torch.cat([G.mapping(z_samples[i:i + 1000], c_samples[i:i + 1000])[:, :1, :]
                               for i in range(0, w_avg_samples, 1000)])
    w_samples = w_samples.cpu().numpy().astype(np.float32)            # [N, 1, C]
    w_avg = np.mean(w_samples, axis=0, keepdims=True)                 # [1, 1, C]
    w_std = (np.sum((w_samples - w_avg) ** 2) / w_avg_samples) ** 0.5

    # StyleGAN2 noise buffers (StyleGAN3 has none).
    noise_bufs = [buf for name, buf in G.synthesis.named_buffers() if 'noise_const' in name]

    target_images = torch.from_numpy(np.array(target)).permute(2, 0, 1).unsqueeze(0).to(device=device, dtype=torch.float32)
    target_features = vgg16(_vgg_input(target_images), resize_images=False, return_lpips=True)

    w_opt = torch.tensor(w_avg, dtype=torch.float32, device=device, requires_grad=True)
    w_out = torch.zeros([num_steps] + list(w_opt.shape[1:]), dtype=torch.float32, device=device)
    optimizer = torch.optim.Adam([w_opt] + noise_bufs, betas=(0.9, 0.999), lr=initial_learning_rate)
    for buf in noise_bufs:
        buf[:] = torch.randn_like(buf)
        buf.requires_grad = True

    dists = []
    start = time.time()
    for step in range(num_steps):
        t = step / num_steps
        w_noise_scale = w_std * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2
        lr_ramp = min(1.0, (1.0 - t) / lr_rampdown_length)
        lr_ramp = 0.5 - 0.5 * np.cos(lr_ramp * np.pi)
        lr_ramp = lr_ramp * min(1.0, t / lr_rampup_length)
        for group in optimizer.param_groups:
            group['lr'] = initial_learning_rate * lr_ramp

        ws = (w_opt + torch.randn_like(w_opt) * w_noise_scale).repeat([1, G.num_ws, 1])
        synth_images = (G.synthesis(ws, noise_mode='const') + 1) * (255 / 2)
        synth_features = vgg16(_vgg_input(synth_images), resize_images=False, return_lpips=True)
        dist = (target_features - synth_features).square().sum()
        reg_loss = _noise_regularization(noise_bufs)
        loss = dist + reg_loss * regularize_noise_weight

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        dists.append(float(dist.detach()))
        if log_every and ((step + 1) % log_every == 0 or step == 0 or step + 1 == num_steps):
            log(f'step {step + 1:>4d}/{num_steps}: dist {dists[-1]:<4.4f} loss {float(loss.detach()):<5.4f} '
                f'({dnnlib.util.format_time(time.time() - start)})')
        w_out[step] = w_opt.detach()[0]

        # Keep the noise buffers at zero mean, unit variance.
        with torch.no_grad():
            for buf in noise_bufs:
                buf -= buf.mean()
                buf *= buf.square().mean().rsqrt()

    for buf in noise_bufs:
        buf.requires_grad = False
    return w_out.repeat([1, G.num_ws, 1]), dists, G


def save_projected_w(w, path):
    """Write projected_w.npz with key 'w' = float32 [1, num_ws, w_dim] (NVlabs format), atomically."""
    with dnnlib.util.atomic_write(path) as f:
        np.savez(f, w=w.unsqueeze(0).cpu().numpy().astype(np.float32))


def run_projection(G, target_path, outdir, vgg16, *, num_steps=1000, seed=303, save_video=False, class_idx=None,
                   device=None, verbose=True):
    """Project one target file and write projected_w.npz, target.png, proj.png (and proj.mp4) to outdir.
    Returns (w_steps, dists)."""
    log = print if verbose else (lambda *a, **k: None)
    os.makedirs(outdir, exist_ok=True)
    target = load_target(target_path, G.img_resolution, G.img_channels, log=log)
    np.random.seed(seed)
    torch.manual_seed(seed)
    log(f'Projecting {target_path} ({num_steps} steps)')
    w_steps, dists, G_proj = project(G, target, vgg16, num_steps=num_steps, class_idx=class_idx, device=device,
                                     log=log, log_every=10 if verbose else 0)

    if save_video:
        with gen_video.FrameWriter(os.path.join(outdir, 'proj.mp4'), fps=10, log=log, bitrate='16M') as writer:
            for i in range(0, num_steps, 16):
                for img in generate.synthesize(G_proj, w_steps[i:i + 16], 'const', 16):
                    writer.append(np.concatenate([target, img], axis=1))
        log(f'Wrote {writer.written}')
    generate.save_png(target, os.path.join(outdir, 'target.png'))
    generate.save_png(generate.synthesize(G_proj, w_steps[-1:], 'const', 1)[0], os.path.join(outdir, 'proj.png'))
    save_projected_w(w_steps[-1], os.path.join(outdir, 'projected_w.npz'))
    log(f'Wrote {outdir}/projected_w.npz, target.png, proj.png (final distance {dists[-1]:.4f})')
    return w_steps, dists

#----------------------------------------------------------------------------
# Command line.

@click.command(help=__doc__, context_settings=dnnlib.cli.CONTEXT_SETTINGS)
@click.option('--network', 'network', help='Network snapshot (.pt) or NVlabs pickle (.pkl): path or URL', metavar='PATH|URL', required=True)
@click.option('--target', 'targets', multiple=True, required=True, type=click.Path(exists=True, dir_okay=False),
              help='Target image file (repeat for several)', metavar='FILE')
@click.option('--num-steps', type=click.IntRange(min=1), default=1000, show_default=True, help='Optimisation steps')
@click.option('--seed', type=int, default=303, show_default=True, help='Random seed')
@click.option('--save-video', type=bool, default=False, is_flag=False, flag_value=True, show_default=True,
              help='Write proj.mp4 of the optimisation', metavar='BOOL')
@click.option('--class', 'class_idx', type=click.IntRange(min=0), default=None, help='Class label (conditional networks)')
@click.option('--detector-dir', type=click.Path(file_okay=False), default=None, metavar='DIR',
              help=f'Folder with vgg16.pt or vgg16.pkl (no download)  [default: ${detectors.DETECTOR_DIR_ENV} or download]')
@click.option('--outdir', type=dnnlib.cli.OutputDir(), required=True, help='Output directory', metavar='DIR')
@click.option('--device', type=torch_utils.cli.Device(), default=None, help='Torch device  [default: cuda if available, else cpu]')
def cli(network, targets, num_steps, seed, save_video, class_idx, detector_dir, outdir, device):
    if not dnnlib.util.is_url(network) and not os.path.isfile(network):
        raise click.BadParameter(f'no such file: {network}', param_hint="'--network'")
    for path in targets:
        try:
            with PIL.Image.open(path) as image:
                image.verify()
        except (OSError, SyntaxError) as e:
            raise click.BadParameter(f'{path} is not a readable image ({e})', param_hint="'--target'") from e
    G, device = generate.load_generator_for_cli(network, device, class_idx)
    try:
        vgg16 = detectors.get_detector(detectors.VGG16, device=device, detector_dir=detector_dir, verbose=True)
    except (OSError, ValueError) as e:
        raise click.ClickException(f'VGG16: {e}') from e

    print(f'Network: {network} ({G.img_resolution}x{G.img_resolution}, num_ws={G.num_ws}, '
          f'{"StyleGAN3" if generate.has_input_transform(G) else "StyleGAN2"}), device={device}')
    for i, path in enumerate(targets):
        sub = outdir if len(targets) == 1 else os.path.join(outdir, f'{i:02d}-{os.path.splitext(os.path.basename(path))[0]}')
        run_projection(G, path, sub, vgg16, num_steps=num_steps, seed=seed, save_video=save_video, class_idx=class_idx, device=device)
    print(f'Done: {len(targets)} target(s) in {outdir}')


def main():
    cli()  # pylint: disable=no-value-for-parameter


if __name__ == '__main__':
    main()
