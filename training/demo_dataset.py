"""The built-in demo dataset: procedurally generated colored shapes on textured backgrounds.

`--data=demo` (32px), `demo16`, `demo32` or `demo64` trains on it without downloading anything.
Each image shows one shape (circle, square or triangle: the class label 0, 1, 2) with a vivid
shaded fill and a dark outline, at a random position, size and rotation, on a two-color gradient
background overlaid with a faint texture (stripes, checkerboard or dots) and a little pixel noise.
The structure is easy to recognize, so a GAN's progress is visible in minutes on a CPU.

The images are a pure function of (seed, resolution, num_images): the same call writes the same
bytes on every machine. They are written once, on first use, to
`<cache dir>/datasets/demo-<res>-v1.zip` (`-n<N>` added for a non-default image count) in the
NVlabs layout (uncompressed PNGs plus `dataset.json` with the class labels), so the zip also works
with `--cond=True` and with NVlabs tools. The zip is written to a temporary file and renamed into
place; ranks that generate it concurrently all write identical bytes and the last rename wins.
"""

import io
import json
import os
import re
import time
import zipfile

import numpy as np
import PIL.Image

import dnnlib

#----------------------------------------------------------------------------

VERSION = 1
DEFAULT_NUM_IMAGES = 2000
DEFAULT_SEED = 0
DEMO_NAMES = ('demo', 'demo16', 'demo32', 'demo64')
CLASS_NAMES = ('circle', 'square', 'triangle')
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamp: byte-identical zips

#----------------------------------------------------------------------------

def is_demo_name(data):
    """True for 'demo', 'demo16', 'demo32', 'demo64'."""
    return isinstance(data, str) and data in DEMO_NAMES


def demo_resolution(name):
    """Resolution of a demo dataset name ('demo' = 32)."""
    if not is_demo_name(name):
        raise ValueError(f'Unknown demo dataset {name!r}; expected one of {", ".join(DEMO_NAMES)}')
    m = re.fullmatch(r'demo(\d+)', name)
    return int(m.group(1)) if m else 32


def resolve_data_path(data):
    """Map a demo dataset name to its generated zip (generating it on first use); return anything else unchanged.

    An existing file or folder with the same name as a demo dataset takes precedence.
    """
    if is_demo_name(data) and not os.path.exists(data):
        return ensure_demo_dataset(resolution=demo_resolution(data))
    return data


def default_path(resolution=32, num_images=DEFAULT_NUM_IMAGES):
    suffix = '' if num_images == DEFAULT_NUM_IMAGES else f'-n{num_images}'
    return dnnlib.util.make_cache_dir_path('datasets', f'demo-{resolution}{suffix}-v{VERSION}.zip')


def ensure_demo_dataset(resolution=32, num_images=DEFAULT_NUM_IMAGES, path=None, verbose=True):
    """Return the path of the demo dataset zip, generating it first if it does not exist.

    Args:
        resolution: image size in pixels, a power of two in [8, 256].
        num_images: number of images.
        path:       where to write the zip; None = the ganforge cache dir (see default_path()).
        verbose:    print one line when generating.
    Returns:
        The zip's path.
    """
    if resolution < 8 or resolution > 256 or resolution & (resolution - 1):
        raise ValueError(f'Demo dataset resolution must be a power of two in [8, 256], got {resolution}')
    if num_images < 1:
        raise ValueError(f'Demo dataset num_images must be >= 1, got {num_images}')
    if path is None:
        path = default_path(resolution, num_images)
    if os.path.isfile(path):
        return path
    t0 = time.time()
    if verbose:
        print(f'Generating demo dataset ({num_images} images, {resolution}x{resolution}) into {path} ...', flush=True)
    images, labels = render_demo_images(num_images, resolution)
    write_dataset_zip(path, images, labels)
    if verbose:
        print(f'Generated demo dataset in {time.time() - t0:.1f}s', flush=True)
    return path


def write_dataset_zip(path, images, labels=None):
    """Atomically write uint8 images [N, H, W, C] (+ int labels [N]) as a deterministic NVlabs-layout zip."""
    names = [f'{i // 1000:05d}/img{i:08d}.png' for i in range(len(images))]
    with dnnlib.util.atomic_write(path) as f, zipfile.ZipFile(f, mode='w', compression=zipfile.ZIP_STORED) as zf:
        for name, img in zip(names, images):
            buf = io.BytesIO()
            PIL.Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img).save(buf, format='png', compress_level=0, optimize=False)
            _writestr(zf, name, buf.getvalue())
        meta = {'labels': [[n, int(l)] for n, l in zip(names, labels)] if labels is not None else None}
        _writestr(zf, 'dataset.json', json.dumps(meta).encode('utf-8'))


def _writestr(zf, name, data):
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)

#----------------------------------------------------------------------------

def _hsv_to_rgb(h, s, v):
    """HSV -> RGB for scalars in [0, 1]; returns [3] in [0, 1]."""
    i = int(np.floor(h * 6)) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _draw_params(num_images, seed):
    """All random parameters; image i draws from its own RandomState([seed, i]), so it does not depend on num_images."""
    keys = ('label', 'bg0', 'bg1', 'bg_angle', 'tex_kind', 'tex_freq', 'tex_angle', 'tex_amp', 'fg', 'size', 'cx', 'cy', 'rot', 'noise_seed')
    rows = {k: [] for k in keys}
    for i in range(num_images):
        rnd = np.random.RandomState([seed, i])
        bg_hue = rnd.uniform(0, 1)
        size = rnd.uniform(0.2, 0.32)                              # circumradius, fraction of the image
        margin = (0.45 - size) * 0.8                               # keeps the shape inside the image
        values = dict(
            label=rnd.randint(len(CLASS_NAMES)),
            bg0=_hsv_to_rgb(bg_hue, rnd.uniform(0.2, 0.6), rnd.uniform(0.25, 0.55)),
            bg1=_hsv_to_rgb((bg_hue + rnd.uniform(-0.15, 0.15)) % 1, rnd.uniform(0.2, 0.6), rnd.uniform(0.5, 0.85)),
            bg_angle=rnd.uniform(0, 2 * np.pi),
            tex_kind=rnd.randint(3),                                # 0 stripes, 1 checkerboard, 2 dots
            tex_freq=rnd.uniform(3, 7),                             # periods per image
            tex_angle=rnd.uniform(0, np.pi),
            tex_amp=rnd.uniform(0.06, 0.14),
            fg=_hsv_to_rgb((bg_hue + rnd.uniform(0.3, 0.7)) % 1, rnd.uniform(0.7, 1.0), rnd.uniform(0.85, 1.0)),  # far from the background hue
            size=size,
            cx=rnd.uniform(0.5 - margin, 0.5 + margin),
            cy=rnd.uniform(0.5 - margin, 0.5 + margin),
            rot=rnd.uniform(0, 2 * np.pi),
            noise_seed=rnd.randint(1 << 31),
        )
        for k in keys:
            rows[k].append(values[k])
    p = dnnlib.EasyDict({k: np.array(v) for k, v in rows.items()})
    for k in ('bg0', 'bg1', 'fg'):
        p[k] = p[k].astype(np.float32)
    return p


def _shape_distance(label, dx, dy, size, rot):
    """Signed distance-like field (< 0 inside) of each image's shape, for arrays [B, S, S]."""
    c, s = np.cos(rot), np.sin(rot)
    x = dx * c + dy * s
    y = -dx * s + dy * c
    circle = np.sqrt(dx * dx + dy * dy) - size
    square = np.maximum(np.abs(x), np.abs(y)) - size * 0.78
    tri = np.max(np.stack([x * np.cos(a) + y * np.sin(a) for a in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3)]), axis=0) - size * 0.55
    return np.where(label == 0, circle, np.where(label == 1, square, tri))


def _render_batch(p, idx, resolution):
    """Render images `idx` (an index array) as float [B, H, W, 3] in [0, 1]."""
    ss = 4 if resolution <= 16 else 2  # supersampling for anti-aliased edges
    S = resolution * ss
    t = ((np.arange(S) + 0.5) / S).astype(np.float32)
    u = t[np.newaxis, np.newaxis, :]   # x, [1, 1, S]
    v = t[np.newaxis, :, np.newaxis]   # y, [1, S, 1]
    col = lambda a: a[idx][:, np.newaxis, np.newaxis].astype(np.float32)

    # Background: gradient between two colors plus a faint texture.
    ang = col(p.bg_angle)
    g = ((u - 0.5) * np.cos(ang) + (v - 0.5) * np.sin(ang)) / np.sqrt(2) + 0.5
    bg = p.bg0[idx][:, None, None, :] + (p.bg1[idx] - p.bg0[idx])[:, None, None, :] * g[..., None]
    f, ta, kind = col(p.tex_freq), col(p.tex_angle), col(p.tex_kind)
    su, sv = u * np.cos(ta) + v * np.sin(ta), -u * np.sin(ta) + v * np.cos(ta)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * f * su)
    checker = (np.floor(f * su) + np.floor(f * sv)) % 2
    fu, fv = f * su - np.floor(f * su) - 0.5, f * sv - np.floor(f * sv) - 0.5
    dots = (fu * fu + fv * fv < 0.09).astype(np.float32)
    tex = np.where(kind == 0, stripes, np.where(kind == 1, checker, dots))
    img = bg + (col(p.tex_amp) * (tex - 0.5))[..., None]

    # Shape: shaded fill (lit from the top left) with a dark outline.
    dx, dy = u - col(p.cx), v - col(p.cy)
    size = col(p.size)
    d = _shape_distance(col(p.label), dx, dy, size, col(p.rot))
    shade = 1.0 - 0.35 * np.clip((dx + dy) / (2 * size) + 0.5, 0, 1)
    fill = p.fg[idx][:, None, None, :] * shade[..., None]
    outline = fill * 0.25
    w = 0.035
    img = np.where((d < 0)[..., None], fill, np.where((d < w)[..., None], outline, img))

    # Box-downsample to the output resolution.
    B = len(idx)
    return img.reshape(B, resolution, ss, resolution, ss, 3).mean(axis=(2, 4))


def render_demo_images(num_images=DEFAULT_NUM_IMAGES, resolution=32, seed=DEFAULT_SEED):
    """Render the demo images: uint8 [N, H, W, 3] and int64 class labels [N] (0 circle, 1 square, 2 triangle)."""
    p = _draw_params(num_images, seed)
    out = np.empty([num_images, resolution, resolution, 3], dtype=np.uint8)
    batch = max(1, (1 << 21) // (resolution * resolution * 16))
    for start in range(0, num_images, batch):
        idx = np.arange(start, min(start + batch, num_images))
        img = _render_batch(p, idx, resolution) * 255
        for k, i in enumerate(idx):  # per-image noise stream: independent of the batch size
            img[k] += np.random.RandomState(p.noise_seed[i]).uniform(-4, 4, size=img[k].shape)
        out[idx] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out, p.label.astype(np.int64)

#----------------------------------------------------------------------------
