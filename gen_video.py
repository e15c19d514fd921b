"""Render a looping latent-interpolation video: a grid of cells, each cycling through its own keyframe seeds.

Behaviour and flags as NVlabs' stylegan3 gen_video.py: the seeds are split over the grid cells
(`--num-keyframes` per cell, seeds reused cyclically), the keyframes' ws are interpolated with scipy's
interp1d (`--kind=cubic` default, or `linear`) over the keyframe sequence repeated before and after
itself, so the last keyframe leads smoothly back to the first and the video loops seamlessly.
Each cell shows `--num-keyframes * --w-frames` frames.

Examples:

\b
    # A 4x2 grid of 4 keyframes per cell (32 seeds), 120 frames between keyframes, 60 fps.
    python gen_video.py --network=ffhq.pkl --seeds=0-31 --grid=4x2 --w-frames=120 --output=lerp.mp4

\b
    # One cell, linear interpolation, and (StyleGAN3 only) a gentle sideways sway and rotation.
    python gen_video.py --network=stylegan3-t-ffhq-1024x1024.pkl --seeds=0-3 --kind=linear \\
        --translate=0.1,0 --rotate=10 --output=sway.mp4

The mp4 needs imageio and imageio-ffmpeg (pip install "ganforge[video]"); without them the frames
are written as PNGs to OUTPUT_frames/ (named after --output) and the script says so.
"""

import math
import os
import time

import click
import numpy as np
import scipy.interpolate
import torch

import dnnlib
import dnnlib.cli
import dnnlib.util
import torch_utils.cli
import generate

#----------------------------------------------------------------------------
# Frame output.

class FrameWriter:
    """Streams uint8 [H, W, C] frames into an mp4 through imageio-ffmpeg (written to a temporary file and
    renamed into place on close), or, without imageio-ffmpeg, into PNGs frame00000.png, ... in
    `<path without extension>_frames/`. Use as a context manager."""

    def __init__(self, path, fps, log=print, **video_kwargs):
        self.path = path
        self.count = 0
        self._writer = None
        try:
            import imageio
            import imageio_ffmpeg  # noqa: F401  (the ffmpeg binary that imageio needs for mp4)
        except ImportError:
            self.frame_dir = os.path.splitext(path)[0] + '_frames'
            os.makedirs(self.frame_dir, exist_ok=True)
            log(f'imageio-ffmpeg is not installed (pip install "ganforge[video]"): writing PNG frames to '
                f'{self.frame_dir}/ instead of {path}')
            return
        self.frame_dir = None
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._tmp = os.path.join(os.path.dirname(os.path.abspath(path)), '.tmp-' + dnnlib.util.unique_id() + '.mp4')
        self._writer = imageio.get_writer(self._tmp, mode='I', fps=fps, codec='libx264', macro_block_size=1, **video_kwargs)

    def append(self, frame):
        if self._writer is None:
            generate.save_png(frame, os.path.join(self.frame_dir, f'frame{self.count:05d}.png'))
        else:
            self._writer.append_data(frame if frame.shape[2] == 3 else np.repeat(frame, 3, axis=2))
        self.count += 1

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._writer is None:
            return
        try:
            self._writer.close()
            if exc_type is None:
                os.replace(self._tmp, self.path)
        finally:
            if os.path.exists(self._tmp):
                os.remove(self._tmp)

    @property
    def written(self):
        """Where the frames went: the mp4 path, or the PNG folder."""
        return self.path if self._writer is not None else self.frame_dir

#----------------------------------------------------------------------------
# Library functions.

def layout_grid(images, cols, rows):
    """uint8 [rows*cols, H, W, C] in row-major order -> one [rows*H, cols*W, C] image."""
    n, H, W, C = images.shape
    assert n == rows * cols
    return images.reshape(rows, cols, H, W, C).transpose(0, 2, 1, 3, 4).reshape(rows * H, cols * W, C)


def keyframe_seeds(seeds, grid_dims, num_keyframes=None, shuffle_seed=None):
    """Seeds per cell and keyframe as NVlabs: [rows, cols, num_keyframes] int64, seeds reused cyclically,
    optionally shuffled by np.random.RandomState(shuffle_seed)."""
    cols, rows = grid_dims
    if num_keyframes is None:
        if len(seeds) % (cols * rows) != 0:
            raise ValueError(f'{len(seeds)} seeds do not divide evenly over a {cols}x{rows} grid: give a multiple of '
                             f'{cols * rows} seeds or set --num-keyframes')
        num_keyframes = len(seeds) // (cols * rows)
    all_seeds = np.array([seeds[i % len(seeds)] for i in range(num_keyframes * rows * cols)], dtype=np.int64)
    if shuffle_seed is not None:
        np.random.RandomState(shuffle_seed).shuffle(all_seeds)
    return all_seeds.reshape(rows, cols, num_keyframes)


def keyframe_interpolator(ws, kind='cubic', wraps=2):
    """interp1d over keyframe ws [K, num_ws, w_dim] (float32 numpy) at t = 0..K-1, the sequence repeated
    `wraps` times on either side, so that f(t + K) == f(t) up to spline rounding (exactly for linear)."""
    K = ws.shape[0]
    x = np.arange(-K * wraps, K * (wraps + 1))
    y = np.tile(ws, [wraps * 2 + 1, 1, 1])
    return scipy.interpolate.interp1d(x, y, kind=kind, axis=0)


def transform_at(frame_idx, num_frames, translate, rotate):
    """Animation of a StyleGAN3 input transform: a sinusoidal sway of amplitude `translate` (tx, ty) and
    `rotate` degrees over the whole video, so that it loops like the latents."""
    phase = math.sin(2 * math.pi * frame_idx / num_frames)
    return generate.make_transform((translate[0] * phase, translate[1] * phase), rotate * phase)


def gen_interp_video(G, output, seeds, shuffle_seed=None, w_frames=120, kind='cubic', grid_dims=(1, 1),
                     num_keyframes=None, wraps=2, truncation_psi=1.0, class_idx=None, noise_mode='const',
                     translate=None, rotate=0.0, fps=60, device=None, batch=1, verbose=True, **video_kwargs):
    """Write the grid interpolation video to `output` (or PNG frames, see FrameWriter); returns the
    number of frames (num_keyframes * w_frames) and where they went.

    translate (tx, ty) / rotate (degrees): StyleGAN3 only, see transform_at(); G.synthesis.input.transform
    is restored afterwards.
    """
    log = print if verbose else (lambda *a, **k: None)
    device = torch.device(device if device is not None else ('cuda' if torch.cuda.is_available() else 'cpu'))
    if kind not in ('linear', 'cubic'):
        raise ValueError(f'kind must be linear or cubic, got {kind!r}')
    animate = translate is not None or rotate != 0
    if animate and not generate.has_input_transform(G):
        raise ValueError('translate/rotate animation needs a StyleGAN3 network (G.synthesis.input.transform); this one has none')
    translate = translate if translate is not None else (0.0, 0.0)
    cols, rows = grid_dims
    cell_seeds = keyframe_seeds(seeds, grid_dims, num_keyframes, shuffle_seed)
    num_keyframes = cell_seeds.shape[2]
    ws = generate.seeds_to_ws(G, cell_seeds.reshape(-1).tolist(), truncation_psi, None, class_idx, device, batch)
    ws = ws.cpu().numpy().reshape(rows * cols, num_keyframes, *ws.shape[1:])
    interps = [keyframe_interpolator(ws[i], kind=kind, wraps=wraps) for i in range(rows * cols)]

    num_frames = num_keyframes * w_frames
    log(f'Rendering {num_frames} frames of a {cols}x{rows} grid, {num_keyframes} keyframes per cell ({kind})')
    start = time.time()
    saved_transform = G.synthesis.input.transform.clone() if animate else None
    try:
        with FrameWriter(output, fps=fps, log=log, **video_kwargs) as writer:
            for frame_idx in range(num_frames):
                if animate:
                    m = np.linalg.inv(transform_at(frame_idx, num_frames, translate, rotate))
                    G.synthesis.input.transform.copy_(torch.from_numpy(m))
                w = torch.from_numpy(np.stack([f(frame_idx / w_frames) for f in interps])).to(device=device, dtype=torch.float32)
                writer.append(layout_grid(generate.synthesize(G, w, noise_mode, batch), cols, rows))
                if (frame_idx + 1) % 60 == 0 or frame_idx + 1 == num_frames:
                    log(f'Frame {frame_idx + 1}/{num_frames} ({dnnlib.util.format_time(time.time() - start)})')
    finally:
        if animate:
            G.synthesis.input.transform.copy_(saved_transform)
    log(f'Wrote {writer.count} frames to {writer.written}')
    return writer.count, writer.written

#----------------------------------------------------------------------------
# Command line.

@click.command(help=__doc__, context_settings=dnnlib.cli.CONTEXT_SETTINGS)
@click.option('--network', 'network', help='Network snapshot (.pt) or NVlabs pickle (.pkl): path or URL', metavar='PATH|URL', required=True)
@click.option('--seeds', type=dnnlib.cli.SeedList(), help='Keyframe seeds, e.g. 0-31', metavar='LIST', required=True)
@click.option('--shuffle-seed', type=int, default=None, help='Shuffle the keyframe seeds with this seed', metavar='INT')
@click.option('--grid', callback=generate._parse_grid, default='1x1', show_default=True, help='Grid of cells, columns x rows', metavar='WxH')
@click.option('--num-keyframes', type=click.IntRange(min=1), default=None,
              help='Keyframes per cell  [default: number of seeds / cells]', metavar='INT')
@click.option('--w-frames', type=click.IntRange(min=1), default=120, show_default=True, help='Frames between two keyframes', metavar='INT')
@click.option('--kind', type=click.Choice(['cubic', 'linear']), default='cubic', show_default=True, help='Interpolation between keyframes')
@click.option('--trunc', 'truncation_psi', type=dnnlib.cli.FiniteFloat(), default=1.0, show_default=True, help='Truncation psi')
@click.option('--class', 'class_idx', type=click.IntRange(min=0), default=None, help='Class label (conditional networks)')
@click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const', show_default=True, help='Noise inputs')
@click.option('--translate', callback=generate._parse_vec2, default=None, metavar='X,Y',
              help='StyleGAN3 only: sway the input by up to (X, Y) over the loop')
@click.option('--rotate', type=dnnlib.cli.FiniteFloat(), default=0.0, metavar='DEG', help='StyleGAN3 only: sway the rotation by up to DEG degrees over the loop')
@click.option('--fps', type=click.IntRange(min=1), default=60, show_default=True, help='Frames per second of the mp4')
@click.option('--output', type=click.Path(dir_okay=False), required=True, help='Output mp4', metavar='FILE')
@click.option('--device', type=torch_utils.cli.Device(), default=None, help='Torch device  [default: cuda if available, else cpu]')
@click.option('--batch', type=click.IntRange(min=1), default=1, show_default=True, help='Cells per forward pass')
def cli(network, seeds, shuffle_seed, grid, num_keyframes, w_frames, kind, truncation_psi, class_idx, noise_mode,
        translate, rotate, fps, output, device, batch):
    if not dnnlib.util.is_url(network) and not os.path.isfile(network):
        raise click.BadParameter(f'no such file: {network}', param_hint="'--network'")
    try:
        keyframe_seeds(seeds, grid, num_keyframes)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--seeds'") from e
    G, device = generate.load_generator_for_cli(network, device, class_idx)
    if (translate is not None or rotate != 0) and not generate.has_input_transform(G):
        raise click.BadParameter('translate/rotate animation needs a StyleGAN3 network; this is a StyleGAN2 network',
                                 param_hint="'--translate' / '--rotate'")
    print(f'Network: {network} ({G.img_resolution}x{G.img_resolution}, {G.img_channels} channels, c_dim={G.c_dim})')
    gen_interp_video(G, output, seeds, shuffle_seed=shuffle_seed, w_frames=w_frames, kind=kind, grid_dims=grid,
                     num_keyframes=num_keyframes, truncation_psi=truncation_psi, class_idx=class_idx, noise_mode=noise_mode,
                     translate=translate, rotate=rotate, fps=fps, device=device, batch=batch, bitrate='12M')


def main():
    cli()  # pylint: disable=no-value-for-parameter


if __name__ == '__main__':
    main()
