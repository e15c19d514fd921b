"""The built-in demo dataset: procedurally generated colored shapes on textured backgrounds.

`--data=demo` (32px), `demo16`, `demo32` or `demo64` trains on it without downloading anything.
Each image shows one shape (circle, square or triangle: the class label 0, 1, 2) with a vivid
shaded fill and a dark outline on a textured gradient background; dnnlib.demo_shapes draws them
(seed 0 here; the demo detector of metrics.demo_detector is trained on other seeds).
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

import PIL.Image

import dnnlib
from dnnlib.demo_shapes import render_demo_images

#----------------------------------------------------------------------------

VERSION = 1
DEFAULT_NUM_IMAGES = 2000
DEFAULT_SEED = 0
DEMO_NAMES = ('demo', 'demo16', 'demo32', 'demo64')
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
    images, labels = render_demo_images(num_images, resolution, seed=DEFAULT_SEED)
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
