"""The demo shapes: procedurally generated coloured shapes on textured backgrounds (numpy only).

Each image shows one shape (circle, square or triangle: the class label 0, 1, 2) with a vivid shaded
fill and a dark outline, at a random position, size and rotation, on a two-colour gradient background
overlaid with a faint texture (stripes, checkerboard or dots) and a little pixel noise. Image i of a
seed draws its parameters from its own random stream, so the images are a pure function of
(seed, resolution, index): the same bytes on every machine.

Two layers use them, which is why they live here, below both: training.demo_dataset writes them as the
`--data=demo` dataset (seed 0), and metrics.demo_detector renders its own training and held-out images
from other seeds, with the drawing parameters as regression targets, to build the demo detector.
"""

import numpy as np

from .util import EasyDict

#----------------------------------------------------------------------------

CLASS_NAMES = ('circle', 'square', 'triangle')
TEXTURE_NAMES = ('stripes', 'checkerboard', 'dots')

#----------------------------------------------------------------------------

def _hsv_to_rgb(h, s, v):
    """HSV -> RGB for scalars in [0, 1]; returns [3] in [0, 1]."""
    i = int(np.floor(h * 6)) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def draw_params(num_images, seed):
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
            tex_kind=rnd.randint(len(TEXTURE_NAMES)),
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
    p = EasyDict({k: np.array(v) for k, v in rows.items()})
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


def render_params(p, idx, resolution):
    """Render images `idx` (an index array) of the parameters `p` as float [B, H, W, 3] in [0, 1], without pixel noise."""
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


def render_images(p, resolution):
    """Render every image of the parameters `p` (from draw_params) with its pixel noise: uint8 [N, H, W, 3]."""
    num_images = len(p.label)
    out = np.empty([num_images, resolution, resolution, 3], dtype=np.uint8)
    batch = max(1, (1 << 21) // (resolution * resolution * 16))
    for start in range(0, num_images, batch):
        idx = np.arange(start, min(start + batch, num_images))
        img = render_params(p, idx, resolution) * 255
        for k, i in enumerate(idx):  # per-image noise stream: independent of the batch size
            img[k] += np.random.RandomState(p.noise_seed[i]).uniform(-4, 4, size=img[k].shape)
        out[idx] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out


def render_demo_images(num_images, resolution=32, seed=0):
    """The first `num_images` images of `seed`: uint8 [N, H, W, 3] and int64 class labels [N] (0 circle, 1 square, 2 triangle)."""
    p = draw_params(num_images, seed)
    return render_images(p, resolution), p.label.astype(np.int64)

#----------------------------------------------------------------------------
