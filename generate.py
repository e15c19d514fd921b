"""Generate images from a ganforge snapshot or an NVlabs network pickle.

Examples:

\b
    # Four images with truncation, one PNG per seed.
    python generate.py --network=network-snapshot-001000.pt --seeds=0-3 --trunc=0.7 --outdir=out

\b
    # An official NVlabs pickle (loaded without running its embedded code), class 2 of a conditional model.
    python generate.py --network=cifar10.pkl --seeds=0,5,7 --class=2 --outdir=out

\b
    # One 4x2 grid image, and a latent interpolation video through seeds 0..3 (frames + mp4).
    python generate.py --network=snap.pt --seeds=0-7 --grid=4x2 --outdir=out
    python generate.py --network=snap.pt --seeds=0-3 --interp-frames=30 --outdir=out

\b
    # A StyleGAN3 network with its input translated by (0.3, 1) and rotated by 10 degrees (as NVlabs gen_images.py).
    python generate.py --network=stylegan3-r-afhqv2-512x512.pkl --seeds=2 --translate=0.3,1 --rotate=10 --outdir=out
    # Render the ws saved by projector.py (proj00.png, ...).
    python generate.py --network=snap.pt --projected-w=out/projected_w.npz --outdir=out
"""

import math
import os
import re
import time

import click
import numpy as np
import PIL.Image
import torch

import dnnlib
import dnnlib.cli
import dnnlib.util
import torch_utils.cli
from training import network_loader

#----------------------------------------------------------------------------
# Library functions.

def seed_latents(seeds, z_dim):
    """z for each seed as in the NVlabs scripts: np.random.RandomState(seed).randn(1, z_dim). Returns [len(seeds), z_dim] float64."""
    return np.concatenate([np.random.RandomState(seed).randn(1, z_dim) for seed in seeds])


def class_labels(G, class_idx, n, device):
    """One-hot labels [n, c_dim] for `class_idx`, or an empty [n, 0] tensor for unconditional G."""
    c = torch.zeros([n, G.c_dim], device=device)
    if G.c_dim > 0:
        if class_idx is None:
            raise ValueError(f'the network is conditional (c_dim={G.c_dim}): choose a class with --class')
        if not 0 <= class_idx < G.c_dim:
            raise ValueError(f'class {class_idx} is out of range for this network: use 0..{G.c_dim - 1}')
        c[:, class_idx] = 1
    elif class_idx is not None:
        raise ValueError('the network is unconditional (c_dim=0): --class does not apply')
    return c


def load_generator_for_cli(network, device, class_idx=None):
    """(G_ema, torch.device) for a script's command line: `device` None picks CUDA when available;
    load failures and a --class that does not fit the network become click errors naming the flag."""
    device = torch.device(device if device is not None else 'cuda' if torch.cuda.is_available() else 'cpu')
    try:
        G = network_loader.load_network(network, device=device)['G_ema']
    except (ValueError, OSError) as e:
        raise click.ClickException(f'--network: {e}') from e
    try:
        class_labels(G, class_idx, 1, device)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--class'") from e
    return G, device


def to_uint8(img):
    """[N, C, H, W] float in about [-1, 1] -> [N, H, W, C] uint8 numpy, as the NVlabs scripts quantize."""
    img = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return img.cpu().numpy()


def save_png(array, path):
    """Write an [H, W, C] uint8 array (C = 1 or 3) as PNG atomically."""
    image = PIL.Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array, 'L' if array.shape[2] == 1 else 'RGB')
    with dnnlib.util.atomic_write(path) as f:
        image.save(f, format='PNG')


def make_transform(translate, angle):
    """The 3x3 float64 matrix [[c, s, tx], [-s, c, ty], [0, 0, 1]] of NVlabs gen_images.py for a translation
    (tx, ty) (image units) and a rotation `angle` in degrees, c = cos and s = sin of the angle."""
    rad = angle / 360.0 * np.pi * 2  # the same float64 operations as NVlabs, for the same bits
    s, c = np.sin(rad), np.cos(rad)
    return np.array([[c, s, translate[0]], [-s, c, translate[1]], [0, 0, 1]], dtype=np.float64)


def has_input_transform(G):
    """True for StyleGAN3 generators, whose synthesis input takes a user transform (G.synthesis.input.transform)."""
    return isinstance(getattr(getattr(getattr(G, 'synthesis', None), 'input', None), 'transform', None), torch.Tensor)


@torch.no_grad()
def set_input_transform(G, translate=None, rotate=None):
    """Set G.synthesis.input.transform to the inverse of make_transform(translate, rotate) (float64 inverse,
    then the buffer's dtype), as NVlabs gen_images.py does for every StyleGAN3 network (identity by default).
    A StyleGAN2 network has no input transform: translate/rotate then raise ValueError."""
    if not has_input_transform(G):
        if translate is not None or rotate is not None:
            raise ValueError('--translate/--rotate need a StyleGAN3 network (G.synthesis.input.transform); this one has no input transform')
        return
    m = np.linalg.inv(make_transform(translate if translate is not None else (0, 0), rotate if rotate is not None else 0))
    G.synthesis.input.transform.copy_(torch.from_numpy(m))


@torch.no_grad()
def synthesize(G, ws, noise_mode, batch):
    """Run G.synthesis on ws [N, num_ws, w_dim] in batches; returns uint8 images [N, H, W, C]."""
    out = []
    for i in range(0, ws.shape[0], batch):
        out.append(to_uint8(G.synthesis(ws[i:i + batch], noise_mode=noise_mode)))
    return np.concatenate(out)


@torch.no_grad()
def seeds_to_ws(G, seeds, truncation_psi, truncation_cutoff, class_idx, device, batch):
    """Mapping-network outputs ws [len(seeds), num_ws, w_dim] for the seeds' z (and the class label)."""
    z_all = torch.from_numpy(seed_latents(seeds, G.z_dim)).to(device=device, dtype=torch.float32)
    c_all = class_labels(G, class_idx, len(seeds), device)
    ws = [G.mapping(z_all[i:i + batch], c_all[i:i + batch], truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
          for i in range(0, len(seeds), batch)]
    return torch.cat(ws)


def generate_images(network, seeds, outdir, truncation_psi=1.0, truncation_cutoff=None, class_idx=None,
                    noise_mode='const', device=None, batch=1, grid=None, interp_frames=0, translate=None, rotate=None, verbose=True):
    """Generate images and write them under `outdir`.

    Args:
        network:           path or URL of a ganforge snapshot / NVlabs pickle, or a loaded Generator.
        seeds:             list of ints; z for seed s is np.random.RandomState(s).randn(1, z_dim).
        outdir:            output directory (created).
        truncation_psi:    truncation psi (1 = none).
        truncation_cutoff: apply truncation to the first N ws only (None = all).
        class_idx:         class for a conditional network (required there, refused otherwise).
        noise_mode:        'const', 'random' or 'none'.
        device:            torch device (default: cuda if available, else cpu).
        batch:             images per forward pass. 1 (default) evaluates each seed alone, as the NVlabs
                           scripts do; larger batches are faster but may differ in the last float bit.
        grid:              (cols, rows): write one grid.png with the seeds in row-major order instead of
                           one file per seed; needs exactly cols*rows seeds.
        interp_frames:     > 0: write a latent (W) interpolation through the seeds, that many frames per
                           pair of consecutive seeds, as frames/frame%05d.png and interp.mp4 (mp4 only when
                           imageio-ffmpeg is installed).
        translate:         (x, y) translation of a StyleGAN3 network's input, in image units (None = (0, 0)).
        rotate:            rotation of a StyleGAN3 network's input in degrees (None = 0). Both as NVlabs
                           gen_images.py, which sets G.synthesis.input.transform (also of a Generator passed
                           in) for every StyleGAN3 network; either one given for a StyleGAN2 network raises ValueError.
    Returns:
        List of written file paths.
    """
    log = print if verbose else (lambda *a, **k: None)
    device = torch.device(device if device is not None else ('cuda' if torch.cuda.is_available() else 'cpu'))
    if noise_mode not in ('const', 'random', 'none'):
        raise ValueError(f'noise_mode must be const, random or none, got {noise_mode!r}')
    if batch < 1:
        raise ValueError(f'batch must be >= 1, got {batch}')
    if grid is not None and grid[0] * grid[1] != len(seeds):
        raise ValueError(f'a {grid[0]}x{grid[1]} grid needs exactly {grid[0] * grid[1]} seeds, got {len(seeds)}')
    if interp_frames and len(seeds) < 2:
        raise ValueError('interpolation needs at least two seeds')

    if isinstance(network, torch.nn.Module):
        G = network.eval().requires_grad_(False).to(device)
    else:
        log(f'Loading network from "{network}"...')
        G = network_loader.load_network(network, device=device)['G_ema']
    set_input_transform(G, translate, rotate)
    os.makedirs(outdir, exist_ok=True)
    ws = seeds_to_ws(G, seeds, truncation_psi, truncation_cutoff, class_idx, device, batch)
    written = []
    start = time.time()

    # Latent interpolation video.
    if interp_frames:
        t = torch.arange(interp_frames, device=device, dtype=torch.float32) / interp_frames
        path_ws = [torch.lerp(ws[i].unsqueeze(0), ws[i + 1].unsqueeze(0), t.reshape(-1, 1, 1)) for i in range(len(seeds) - 1)]
        path_ws = torch.cat(path_ws + [ws[-1:]])
        frame_dir = os.path.join(outdir, 'frames')
        os.makedirs(frame_dir, exist_ok=True)
        frames = []
        for i in range(0, path_ws.shape[0], batch):
            for img in synthesize(G, path_ws[i:i + batch], noise_mode, batch):
                path = os.path.join(frame_dir, f'frame{len(frames):05d}.png')
                save_png(img, path)
                frames.append(img)
                written.append(path)
            log(f'Frame {len(frames)}/{path_ws.shape[0]} ({dnnlib.util.format_time(time.time() - start)})')
        video = _write_mp4(frames, os.path.join(outdir, 'interp.mp4'), log)
        if video is not None:
            written.append(video)
        return written

    # Grid image.
    if grid is not None:
        cols, rows = grid
        images = synthesize(G, ws, noise_mode, batch)
        H, W, C = images.shape[1:]
        canvas = images.reshape(rows, cols, H, W, C).transpose(0, 2, 1, 3, 4).reshape(rows * H, cols * W, C)
        path = os.path.join(outdir, 'grid.png')
        save_png(canvas, path)
        log(f'Wrote {path} ({cols}x{rows} images of {W}x{H})')
        return [path]

    # One image per seed.
    for i in range(0, len(seeds), batch):
        images = synthesize(G, ws[i:i + batch], noise_mode, batch)
        for seed, img in zip(seeds[i:i + batch], images):
            path = os.path.join(outdir, f'seed{seed:04d}.png')
            save_png(img, path)
            written.append(path)
        log(f'Generated {min(i + batch, len(seeds))}/{len(seeds)} images ({dnnlib.util.format_time(time.time() - start)})')
    return written


def _write_mp4(frames, path, log):
    try:
        import imageio
        import imageio_ffmpeg  # noqa: F401  (the ffmpeg binary imageio needs for mp4)
    except ImportError:
        log('imageio-ffmpeg is not installed: wrote frames only (pip install imageio imageio-ffmpeg for interp.mp4)')
        return None
    tmp = os.path.join(os.path.dirname(path), '.tmp-' + dnnlib.util.unique_id() + '.mp4')
    try:
        with imageio.get_writer(tmp, fps=30, codec='libx264', quality=8, macro_block_size=1) as writer:
            for frame in frames:
                writer.append_data(frame if frame.shape[2] == 3 else np.repeat(frame, 3, axis=2))
        os.replace(tmp, path)  # atomic
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    log(f'Wrote {path}')
    return path


def load_projected_w(path, G):
    """ws [N, num_ws, w_dim] float32 from a projector.py / NVlabs projected_w.npz (key 'w'), checked against G."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f'{path}: not a readable .npz file ({e})') from e
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f'{path}: a single .npy array, expected a projector.py projected_w.npz holding "w"')
    with data:
        if 'w' not in data.files:
            raise ValueError(f'{path}: no array "w" (keys: {", ".join(data.files) or "none"}); expected a projector.py projected_w.npz')
        ws = data['w']
    if ws.ndim != 3 or ws.shape[1:] != (G.num_ws, G.w_dim):
        raise ValueError(f'{path}: w has shape {list(ws.shape)}, this network needs [N, {G.num_ws}, {G.w_dim}] (num_ws, w_dim)')
    return torch.from_numpy(ws.astype(np.float32))


def generate_from_projected_w(G, path, outdir, noise_mode='const', device=None, verbose=True):
    """Render each w of a projected_w.npz as proj00.png, proj01.png, ... (NVlabs names). Returns the paths."""
    log = print if verbose else (lambda *a, **k: None)
    device = torch.device(device if device is not None else ('cuda' if torch.cuda.is_available() else 'cpu'))
    ws = load_projected_w(path, G).to(device)
    os.makedirs(outdir, exist_ok=True)
    written = []
    for idx, img in enumerate(synthesize(G, ws, noise_mode, 1)):
        written.append(os.path.join(outdir, f'proj{idx:02d}.png'))
        save_png(img, written[-1])
    log(f'Generated {len(written)} image(s) from {path}')
    return written

#----------------------------------------------------------------------------
# Command line.

def _parse_vec2(ctx, param, value):
    if value is None:
        return None
    parts = value.split(',')
    try:
        vec = tuple(float(p) for p in parts)
    except ValueError:
        vec = ()
    if len(vec) != 2 or not all(math.isfinite(v) for v in vec):
        raise click.BadParameter(f'expected two finite numbers X,Y such as 0.3,1, got {value!r}', ctx=ctx, param=param)
    return vec


def _parse_grid(ctx, param, value):
    if value is None:
        return None
    m = re.fullmatch(r'(\d+)x(\d+)', value)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise click.BadParameter(f'expected WxH such as 4x2, got {value!r}', ctx=ctx, param=param)
    return int(m.group(1)), int(m.group(2))


@click.command(help=__doc__, context_settings=dnnlib.cli.CONTEXT_SETTINGS)
@click.option('--network', 'network', help='Network snapshot (.pt) or NVlabs pickle (.pkl): path or URL', metavar='PATH|URL', required=True)
@click.option('--seeds', type=dnnlib.cli.SeedList(), help='Seeds, e.g. 0-3,7 (required unless --projected-w)', metavar='LIST')
@click.option('--projected-w', type=click.Path(exists=True, dir_okay=False), default=None, metavar='FILE',
              help='Render the ws of a projector.py projected_w.npz instead of seeds (proj00.png, ...)')
@click.option('--trunc', 'truncation_psi', type=dnnlib.cli.FiniteFloat(), default=1.0, show_default=True, help='Truncation psi')
@click.option('--trunc-cutoff', 'truncation_cutoff', type=click.IntRange(min=0), default=None, help='Truncate only the first N ws')
@click.option('--class', 'class_idx', type=click.IntRange(min=0), default=None, help='Class label (conditional networks)')
@click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const', show_default=True, help='Noise inputs')
@click.option('--outdir', type=dnnlib.cli.OutputDir(), required=True, help='Output directory', metavar='DIR')
@click.option('--device', type=torch_utils.cli.Device(), default=None, help='Torch device  [default: cuda if available, else cpu]')
@click.option('--batch', type=click.IntRange(min=1), default=1, show_default=True,
              help='Images per forward pass (1 = bit-for-bit as NVlabs gen_images; more is faster)')
@click.option('--grid', callback=_parse_grid, default=None, help='Write one WxH grid image (needs W*H seeds)', metavar='WxH')
@click.option('--interp-frames', type=click.IntRange(min=0), default=0, show_default=True,
              help='Interpolate in W through the seeds with N frames per step (frames + mp4)', metavar='N')
@click.option('--translate', callback=_parse_vec2, default=None, metavar='X,Y',
              help='Translate the input of a StyleGAN3 network, in image units  [default: 0,0]')
@click.option('--rotate', type=dnnlib.cli.FiniteFloat(), default=None, metavar='DEG', help='Rotate the input of a StyleGAN3 network, in degrees  [default: 0]')
def cli(network, seeds, projected_w, truncation_psi, truncation_cutoff, class_idx, noise_mode, outdir, device, batch, grid, interp_frames,
        translate, rotate):
    if not dnnlib.util.is_url(network) and not os.path.isfile(network):
        raise click.BadParameter(f'no such file: {network}', param_hint="'--network'")
    if (seeds is None) == (projected_w is None):
        raise click.UsageError('give either --seeds or --projected-w (exactly one)')
    if projected_w is not None and (grid is not None or interp_frames or class_idx is not None or truncation_psi != 1
                                    or truncation_cutoff is not None):
        raise click.UsageError('--projected-w renders the saved ws as they are, one image each: '
                               '--grid, --interp-frames, --class, --trunc and --trunc-cutoff do not apply')
    if grid is not None and grid[0] * grid[1] != len(seeds):
        raise click.BadParameter(f'a {grid[0]}x{grid[1]} grid needs exactly {grid[0] * grid[1]} seeds, got {len(seeds)}',
                                 param_hint="'--grid'")
    if grid is not None and interp_frames:
        raise click.UsageError('--grid and --interp-frames are exclusive')
    if interp_frames and len(seeds) < 2:
        raise click.BadParameter('interpolation needs at least two seeds', param_hint="'--seeds'")
    device = torch.device(device if device is not None else 'cuda' if torch.cuda.is_available() else 'cpu')
    try:
        G = network_loader.load_network(network, device=device)['G_ema']
    except (ValueError, OSError) as e:
        raise click.ClickException(f'--network: {e}') from e
    if projected_w is not None:
        try:
            written = generate_from_projected_w(G, projected_w, outdir, noise_mode=noise_mode, device=device)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="'--projected-w'") from e
        print(f'Done: {len(written)} file(s) in {outdir}')
        return
    if G.c_dim > 0 and class_idx is None:
        raise click.BadParameter(f'the network is conditional (c_dim={G.c_dim}): choose a class 0..{G.c_dim - 1}', param_hint="'--class'")
    if G.c_dim == 0 and class_idx is not None:
        raise click.BadParameter('the network is unconditional: remove --class', param_hint="'--class'")
    if class_idx is not None and class_idx >= G.c_dim:
        raise click.BadParameter(f'class {class_idx} is out of range: this network has classes 0..{G.c_dim - 1}', param_hint="'--class'")
    if (translate is not None or rotate is not None) and not has_input_transform(G):
        flag = '--translate' if translate is not None else '--rotate'
        raise click.BadParameter('needs a StyleGAN3 network (G.synthesis.input.transform); this network has no input transform',
                                 param_hint=f"'{flag}'")
    if truncation_cutoff is not None and truncation_cutoff > G.num_ws:
        raise click.BadParameter(f'{truncation_cutoff} exceeds the number of ws ({G.num_ws})', param_hint="'--trunc-cutoff'")

    print(f'Network: {network} ({G.img_resolution}x{G.img_resolution}, {G.img_channels} channels, c_dim={G.c_dim})')
    print(f'Seeds: {len(seeds)}, truncation psi={truncation_psi}, cutoff={truncation_cutoff}, noise={noise_mode}, device={device}')
    written = generate_images(G, seeds, outdir, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                              class_idx=class_idx, noise_mode=noise_mode, device=device, batch=batch,
                              grid=grid, interp_frames=interp_frames, translate=translate, rotate=rotate)
    print(f'Done: {len(written)} file(s) in {outdir}')


def main():
    cli()  # pylint: disable=no-value-for-parameter


if __name__ == '__main__':
    main()
