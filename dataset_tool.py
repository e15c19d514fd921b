"""Convert a folder or archive of images into a ganforge / NVlabs dataset (zip or folder of uncompressed PNGs)."""

import bz2
import codecs
import gzip
import io
import json
import lzma
import os
import pickle
import re
import shutil
import sys
import tarfile
import tempfile
import time
import warnings
import zipfile
import zlib

import click
import numpy as np
import PIL.Image

import dnnlib
import dnnlib.cli
from training.dataset import IMAGE_EXTENSIONS, LABELS_FNAME, png_header_size

#----------------------------------------------------------------------------

RESIZE_FILTERS = {'box': PIL.Image.BOX, 'lanczos': PIL.Image.LANCZOS}
TRANSFORMS = ('center-crop', 'center-crop-wide')
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamp: the same source gives the same zip bytes


class DatasetToolError(Exception):
    """Bad source, destination or option; the message names the file or the flag."""

#----------------------------------------------------------------------------
# Sources: a sorted list of (relative name, bytes reader) plus the labels of dataset.json.

def _is_listed(name):
    """True for image files that are not hidden and not macOS resource forks."""
    parts = name.split('/')
    if any(p.startswith('.') or p == '__MACOSX' for p in parts):
        return False
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _strip_common_dir(names):
    """The single top-level folder shared by every name ('' if none), e.g. 'mydata/' for a tarred folder."""
    tops = {n.split('/', 1)[0] + '/' if '/' in n else '' for n in names}
    return tops.pop() if len(tops) == 1 else ''


class _Source:
    """A folder, zip or tar archive of images, listed in sorted order of relative path."""

    def __init__(self, path):
        self.path = path
        self._zip = self._tar = None
        self._tmp = None
        if os.path.isdir(path):
            self.kind = 'folder'
            names = []
            for root, dirs, files in os.walk(path):
                dirs[:] = [d for d in dirs if not d.startswith('.')]
                names += [os.path.relpath(os.path.join(root, f), path).replace('\\', '/') for f in files]
            self._members = {n: n for n in names}
        elif os.path.isfile(path) and zipfile.is_zipfile(path):
            self.kind = 'zip'
            self._zip = zipfile.ZipFile(path)
            self._members = {n: n for n in self._zip.namelist() if not n.endswith('/')}
        elif os.path.isfile(path) and _is_tarfile(path):
            self.kind = 'tar'
            try:
                self._tar = self._open_tar(path)
                self._members = {}
                for m in self._tar.getmembers():
                    if m.isfile():
                        self._members[re.sub(r'^(\./)+', '', m.name)] = m
            except (EOFError, OSError, zlib.error, lzma.LZMAError, tarfile.TarError) as e:
                self.close()
                raise DatasetToolError(f'--source: {path}: truncated or damaged archive ({type(e).__name__}: {e})') from e
        elif not os.path.exists(path):
            raise DatasetToolError(f'--source: {path} does not exist')
        elif os.path.isfile(path) and path.lower().endswith('.zip'):
            raise DatasetToolError(f'--source: {path}: truncated or damaged zip archive (no zip directory at its end)')
        else:
            raise DatasetToolError(f'--source: {path} is not a folder, a .zip or a tar archive (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz)')

        prefix = _strip_common_dir(list(self._members)) if self.kind != 'folder' else ''
        self._members = {n[len(prefix):]: m for n, m in self._members.items()}
        self._arrays = None
        if self.kind == 'tar' and all(f'data_batch_{b}' in self._members for b in range(1, 6)):
            self._load_cifar10()
            return
        self.image_names = sorted(n for n in self._members if _is_listed(n))
        self.labels = self._read_labels()

    def _load_cifar10(self):
        """CIFAR-10 python tarball (cifar-10-python.tar.gz): the 50k training images with class labels, as NVlabs."""
        images, labels = [], []
        for b in range(1, 6):
            name = f'data_batch_{b}'
            try:
                batch = _NumpyOnlyUnpickler(io.BytesIO(self.read(name)), encoding='latin1').load()
                images.append(np.asarray(batch['data'], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
                labels += [int(l) for l in batch['labels']]
            except (pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError) as e:
                raise DatasetToolError(f'{self.describe(name)}: not a CIFAR-10 python batch ({type(e).__name__}: {e})') from e
        self._arrays = np.concatenate(images)
        self.image_names = [f'cifar10/{i:05d}' for i in range(len(self._arrays))]
        self.labels = dict(zip(self.image_names, labels))

    def load(self, name, channels=None):
        """Image `name` as uint8 HxW or HxWx3 (see load_image for `channels`)."""
        if self._arrays is not None:
            img = self._arrays[int(name.rsplit('/', 1)[1])]
            return np.array(PIL.Image.fromarray(img, 'RGB').convert('L')) if channels == 'gray' else img
        return load_image(self.read(name), self.describe(name), channels)

    def _open_tar(self, path):
        # A compressed tar is decompressed once to a temporary file: random access into gzip is quadratic.
        with open(path, 'rb') as f:
            magic = f.read(6)
        opener = gzip.open if magic[:2] == b'\x1f\x8b' else bz2.open if magic[:3] == b'BZh' else lzma.open if magic == b'\xfd7zXZ\x00' else None
        if opener is None:
            return tarfile.open(path, 'r:')
        self._tmp = tempfile.TemporaryFile(prefix='ganforge-dataset-tool-')
        with opener(path, 'rb') as src:
            shutil.copyfileobj(src, self._tmp, 1 << 20)
        self._tmp.seek(0)
        return tarfile.open(fileobj=self._tmp, mode='r:')

    def describe(self, name):
        return os.path.join(self.path, name) if self.kind == 'folder' else f'{self.path}:{name}'

    def read(self, name):
        member = self._members[name]
        try:
            if self.kind == 'folder':
                with open(os.path.join(self.path, member), 'rb') as f:
                    return f.read()
            if self.kind == 'zip':
                return self._zip.read(member)
            return self._tar.extractfile(member).read()
        except (OSError, EOFError, zlib.error, zipfile.BadZipFile, tarfile.TarError) as e:
            raise DatasetToolError(f'{self.describe(name)}: cannot read file ({e})') from e

    def _read_labels(self):
        if LABELS_FNAME not in self._members:
            return {}
        where = self.describe(LABELS_FNAME)
        try:
            labels = json.loads(self.read(LABELS_FNAME).decode('utf-8')).get('labels')
            return {} if labels is None else {str(k): v for k, v in labels}
        except (UnicodeDecodeError, ValueError, TypeError, AttributeError) as e:
            raise DatasetToolError(f'{where}: expected {{"labels": [[relative_path, label], ...] or null}} ({type(e).__name__}: {e})') from e

    def close(self):
        for obj in (self._zip, self._tar, self._tmp):
            if obj is not None:
                obj.close()


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for numpy-array pickles (CIFAR batches) that refuses every other global: no code runs."""
    _ALLOWED = {('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
                ('numpy', 'ndarray'), ('numpy', 'dtype'), ('_codecs', 'encode')}  # _codecs.encode: bytes in protocol-2 pickles

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f'refusing to load {module}.{name} (only numpy arrays are allowed)')
        if module == '_codecs':
            return codecs.encode
        return np.ndarray(0).__reduce__()[0] if name == '_reconstruct' else getattr(np, name)


def _is_tarfile(path):
    try:
        return tarfile.is_tarfile(path)
    except (OSError, tarfile.TarError, EOFError):
        return False

#----------------------------------------------------------------------------
# Image loading and transforms (NVlabs dataset_tool semantics).

_GRAY_MODES = ('1', 'L', 'LA', 'La')
_RGB_MODES = ('RGB', 'RGBA', 'RGBa', 'RGBX', 'P', 'PA', 'CMYK', 'YCbCr', 'LAB', 'HSV')


MAX_SOURCE_PIXELS = 1 << 27  # 134 Mpixel (e.g. 16384x8192): larger source images are refused before decoding
CHANNELS = ('rgb', 'gray')


def load_image(data, where, channels=None):
    """Decode image bytes into uint8 HxW (grayscale) or HxWx3 (everything else, alpha dropped).

    channels=None keeps grayscale images 1-channel and makes everything else RGB; 'rgb' or 'gray' converts
    every image to that (gray: Pillow's ITU-R 601-2 luma). The size is read from the header first (PNG IHDR,
    Pillow's lazy open) and images over MAX_SOURCE_PIXELS are refused before their pixels are decoded.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', PIL.Image.DecompressionBombWarning)  # our own limit applies
            _check_source_size(png_header_size(data), where)
            with PIL.Image.open(io.BytesIO(data)) as img:
                _check_source_size(img.size, where)
                img.load()
                if img.mode not in _GRAY_MODES + _RGB_MODES:
                    raise DatasetToolError(f'{where}: unsupported image mode {img.mode!r} (e.g. 16-bit or float); convert it to 8-bit RGB or grayscale')
                gray = channels == 'gray' or (channels is None and img.mode in _GRAY_MODES)
                if gray and img.mode not in _GRAY_MODES:
                    img = img.convert('RGB')  # P, CMYK, ...: via RGB to luma
                img = img.convert('L' if gray else 'RGB')
                return np.array(img)
    except DatasetToolError:
        raise
    except PIL.Image.DecompressionBombError as e:
        raise DatasetToolError(f'{where}: refused before decoding: {e}') from e
    except Exception as e:  # any decoder failure: report it with the file name
        raise DatasetToolError(f'{where}: not a readable image ({type(e).__name__}: {e})') from e


def _check_source_size(size, where):
    if size is not None and size[0] * size[1] > MAX_SOURCE_PIXELS:
        raise DatasetToolError(f'{where}: image is {size[0]}x{size[1]}; refused before decoding: source images may have '
                               f'at most {MAX_SOURCE_PIXELS} pixels. Downscale it first')


def _to_pil(img):
    return PIL.Image.fromarray(img, 'L' if img.ndim == 2 else 'RGB')


def transform_image(img, transform=None, resolution=None, resize_filter='lanczos'):
    """Crop and resize an HxW[x3] uint8 image as NVlabs dataset_tool does; None means "drop this image".

    transform=None:            resize to `resolution` (W, H) if given and different.
    'center-crop':             crop the largest centered square, resize to (W, H).
    'center-crop-wide':        crop a centered band of aspect W:H spanning the full width, resize to (W, H),
                               and paste into the middle rows of a black WxW canvas; images narrower than W
                               (or whose band would be lower than H) are dropped.
    """
    resample = RESIZE_FILTERS[resize_filter]
    if transform is None:
        if resolution is None or (img.shape[1], img.shape[0]) == tuple(resolution):
            return img
        return np.array(_to_pil(img).resize(tuple(resolution), resample))
    width, height = resolution
    if transform == 'center-crop':
        crop = min(img.shape[:2])
        img = img[(img.shape[0] - crop) // 2 : (img.shape[0] + crop) // 2, (img.shape[1] - crop) // 2 : (img.shape[1] + crop) // 2]
        return np.array(_to_pil(img).resize((width, height), resample))
    if transform == 'center-crop-wide':
        ch = int(np.round(width * img.shape[0] / img.shape[1]))
        if img.shape[1] < width or ch < height:
            return None
        img = img[(img.shape[0] - ch) // 2 : (img.shape[0] + ch) // 2]
        img = np.array(_to_pil(img).resize((width, height), resample))
        canvas = np.zeros([width, width] + list(img.shape[2:]), dtype=np.uint8)
        canvas[(width - height) // 2 : (width + height) // 2, :] = img
        return canvas
    raise DatasetToolError(f'--transform: unknown transform {transform!r}; expected one of {", ".join(TRANSFORMS)}')


def parse_resolution(s):
    """'512x384' or '512,384' -> (512, 384); '256' -> (256, 256)."""
    m = re.fullmatch(r'\s*(\d+)\s*(?:[x,]\s*(\d+))?\s*', str(s))
    if not m or int(m.group(1)) <= 0 or (m.group(2) is not None and int(m.group(2)) <= 0):
        raise DatasetToolError(f'--resolution: cannot parse {s!r}; expected WxH, e.g. 256x256')
    w = int(m.group(1))
    return (w, int(m.group(2)) if m.group(2) else w)

#----------------------------------------------------------------------------
# Destinations: written to a temporary path, renamed into place at the end.

_DATASET_FILE_RE = re.compile(r'\d{5}/img\d{8}\.png|' + re.escape(LABELS_FNAME))


def _first_foreign_file(folder):
    """The first file under `folder` that dataset_tool did not write (anything but NNNNN/imgNNNNNNNN.png and
    dataset.json), or None. Stops at the first one, so a large unrelated folder is not walked to the end."""
    for root, _dirs, files in os.walk(folder):
        for f in files:
            path = os.path.join(root, f)
            if not _DATASET_FILE_RE.fullmatch(os.path.relpath(path, folder).replace(os.sep, '/')):
                return path
    return None


def _remove_dataset_folder(folder):
    """Delete the files dataset_tool wrote in `folder` and the then-empty folders; anything else stays (with a warning)."""
    for root, _dirs, files in os.walk(folder, topdown=False):
        for f in files:
            path = os.path.join(root, f)
            if _DATASET_FILE_RE.fullmatch(os.path.relpath(path, folder).replace(os.sep, '/')):
                os.remove(path)
        if not os.listdir(root):
            os.rmdir(root)
    if os.path.exists(folder):
        print(f'Warning: {folder} (the replaced dataset) holds files that appeared during the conversion; left in place.', file=sys.stderr)


def check_source_and_dest_apart(source, dest):
    """Refuse a --dest equal to, inside, or containing --source (real paths: symlinks resolved), so that
    writing the dataset can neither overwrite the source nor be read back in as source images."""
    src, dst = os.path.realpath(source), os.path.realpath(dest)
    if src == dst:
        raise DatasetToolError(f'--dest: {dest} is the same path as --source; write the dataset elsewhere')
    if dst.startswith(src.rstrip(os.sep) + os.sep):
        raise DatasetToolError(f'--dest: {dest} is inside --source {source}; it would be read back as source images. '
                               f'Write the dataset outside the source folder')
    if src.startswith(dst.rstrip(os.sep) + os.sep):
        raise DatasetToolError(f'--dest: {dest} contains --source {source}; replacing it would delete the source. '
                               f'Write the dataset elsewhere')


class _Dest:
    """The output .zip or folder. --force replaces an existing .zip file, or a folder holding only files that
    dataset_tool writes; anything else already at --dest is refused, never deleted."""

    def __init__(self, dest, force):
        self.dest = os.path.normpath(dest)
        self.is_zip = dest.lower().endswith('.zip')
        if os.path.lexists(self.dest) and self.is_zip and (os.path.isdir(self.dest) or not os.path.isfile(self.dest)):
            raise DatasetToolError(f'--dest: {dest} exists and is not a file; a .zip destination must be a file path')
        if os.path.lexists(self.dest) and not self.is_zip and not os.path.isdir(self.dest):
            raise DatasetToolError(f'--dest: {dest} is a file; give a folder or a path ending in .zip')
        if os.path.isdir(self.dest) and os.path.islink(self.dest):
            raise DatasetToolError(f'--dest: {dest} is a symbolic link; give the real folder or a new path')
        if os.path.isdir(self.dest):
            foreign = _first_foreign_file(self.dest)
            if foreign is not None:
                raise DatasetToolError(f'--dest: {dest} holds files that are not part of a dataset written by dataset_tool '
                                       f'(e.g. {foreign}); --force replaces only such a dataset. Choose a new or empty folder')
        if os.path.exists(self.dest) and not force and (self.is_zip or os.listdir(self.dest)):
            raise DatasetToolError(f'--dest: {dest} already exists; pass --force to overwrite it')
        parent = os.path.dirname(os.path.abspath(self.dest))
        os.makedirs(parent, exist_ok=True)
        self.tmp = os.path.join(parent, f'.tmp-{os.path.basename(self.dest)}-{dnnlib.util.unique_id()}')
        if self.is_zip:
            self._zip = zipfile.ZipFile(self.tmp, mode='w', compression=zipfile.ZIP_STORED)
        else:
            os.makedirs(self.tmp)

    def write(self, name, data):
        if self.is_zip:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            self._zip.writestr(info, data)
        else:
            path = os.path.join(self.tmp, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'wb') as f:
                f.write(data)

    def commit(self):
        if self.is_zip:
            self._zip.close()
            with open(self.tmp, 'rb') as f:
                os.fsync(f.fileno())
            os.replace(self.tmp, self.dest)  # atomic
            return
        old = None
        if os.path.isdir(self.dest):
            old = self.tmp + '-old'
            os.rename(self.dest, old)
        os.rename(self.tmp, self.dest)
        if old is not None:
            _remove_dataset_folder(old)

    def abort(self):
        if self.is_zip:
            self._zip.close()
            if os.path.exists(self.tmp):
                os.remove(self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

#----------------------------------------------------------------------------

def _progress(verbose, done, total, t0, final=False):
    """One updating line on a terminal; plain lines (every 10 s) in logs."""
    if verbose:
        tty = sys.stdout.isatty()
        rate = done / max(time.time() - t0, 1e-6)
        prefix = '\r' if tty else ''
        print(f'{prefix}Converting: {done}/{total} images ({rate:.0f} img/s)', end='\n' if final or not tty else '', flush=True)


def convert_dataset(source, dest, max_images=None, transform=None, resolution=None, resize_filter='lanczos', force=False, verbose=True,
                    channels=None):
    """Convert `source` (folder, zip, tar[.gz|.bz2|.xz], CIFAR-10 tarball) into `dest` (.zip or folder) in the NVlabs layout.

    Images are found recursively, sorted by relative path, and the first `max_images` of them
    converted; labels come from the source's dataset.json (written only if every image has one).
    Output: uncompressed PNGs `00000/img00000000.png`, ... and `dataset.json`.
    Args:
        source:        input path.
        dest:          output path; '.zip' for a zip, anything else for a folder.
        max_images:    use at most this many source images (None = all).
        transform:     None, 'center-crop' or 'center-crop-wide' (both need `resolution`).
        resolution:    (W, H), 'WxH' or None (keep the source size).
        resize_filter: 'box' or 'lanczos' (PIL resampling filters).
        force:         overwrite an existing `dest` (a .zip file, or a folder holding only a dataset_tool dataset).
        verbose:       print progress.
        channels:      None (grayscale stays 1-channel, the rest RGB), 'rgb' or 'gray' (convert every image).
    Returns:
        EasyDict(num_images, num_dropped, resolution, channels, labels) describing what was written.
    """
    if resize_filter not in RESIZE_FILTERS:
        raise DatasetToolError(f'--resize-filter: unknown filter {resize_filter!r}; expected one of {", ".join(RESIZE_FILTERS)}')
    if transform is not None and transform not in TRANSFORMS:
        raise DatasetToolError(f'--transform: unknown transform {transform!r}; expected one of {", ".join(TRANSFORMS)}')
    if isinstance(resolution, str):
        resolution = parse_resolution(resolution)
    if transform is not None and resolution is None:
        raise DatasetToolError(f'--transform={transform} needs --resolution=WxH')
    if max_images is not None and max_images < 1:
        raise DatasetToolError(f'--max-images must be >= 1, got {max_images}')
    if not dest:
        raise DatasetToolError('--dest must not be empty')
    if channels not in (None, 'rgb', 'gray'):
        raise DatasetToolError(f'--channels: unknown value {channels!r}; expected rgb or gray')
    check_source_and_dest_apart(source, dest)

    src = _Source(source)
    try:
        names = src.image_names[:max_images] if max_images is not None else src.image_names
        if not names:
            raise DatasetToolError(f'--source: no images found in {source} (looked for {", ".join(IMAGE_EXTENSIONS)})')
        out = _Dest(dest, force)
        try:
            result = _convert(src, names, out, transform, resolution, resize_filter, verbose, channels)
            out.commit()
        except BaseException:
            out.abort()
            raise
    finally:
        src.close()
    if verbose:
        print(f'Wrote {result.num_images} images ({result.resolution}x{result.resolution}, {result.channels} channel(s), '
              f'{"labels" if result.labels else "no labels"}) to {dest}' + (f'; dropped {result.num_dropped} too-small images' if result.num_dropped else ''))
    return result


def _convert(src, names, out, transform, resolution, resize_filter, verbose, channels):
    attrs = None
    labels = []
    dropped = 0
    t0 = last = time.time()
    for src_idx, name in enumerate(names):
        where = src.describe(name)
        img = transform_image(src.load(name, channels), transform, resolution, resize_filter)
        if img is None:
            dropped += 1
            continue

        # Every output image must be square, power-of-two, and like the first one.
        cur = dict(width=img.shape[1], height=img.shape[0], channels=img.shape[2] if img.ndim == 3 else 1)
        if attrs is None:
            attrs = cur
            w, h = cur['width'], cur['height']
            if w != h:
                raise DatasetToolError(f'{where}: image is {w}x{h} after crop and resize; output images must be square. '
                                       f'Use --transform=center-crop --resolution=NxN (or --resolution=NxN).')
            if w < 4 or w & (w - 1):
                raise DatasetToolError(f'{where}: image is {w}x{h} after crop and resize; the resolution must be a power of two. '
                                       f'Use --resolution=NxN with N a power of two.')
        elif cur != attrs:
            fixes = []
            if (cur['width'], cur['height']) != (attrs['width'], attrs['height']):
                fixes.append(f'--resolution={attrs["width"]}x{attrs["height"]} (and --transform) to make the sizes uniform')
            if cur['channels'] != attrs['channels']:
                fixes.append('--channels=rgb or --channels=gray to convert every image to RGB or grayscale')
            raise DatasetToolError(f'{where}: image is {cur["width"]}x{cur["height"]} with {cur["channels"]} channel(s) after crop and resize, '
                                   f'but the first image {names[0]} is {attrs["width"]}x{attrs["height"]} with {attrs["channels"]}; '
                                   f'all images must match. Use {" and ".join(fixes)}.')

        # Save as uncompressed PNG.
        idx = len(labels)
        archive_name = f'{idx // 1000:05d}/img{idx:08d}.png'
        buf = io.BytesIO()
        _to_pil(img).save(buf, format='png', compress_level=0, optimize=False)
        out.write(archive_name, buf.getvalue())
        labels.append([archive_name, src.labels.get(name)])
        if time.time() - last > (0.5 if sys.stdout.isatty() else 10):
            last = time.time()
            _progress(verbose, src_idx + 1, len(names), t0)
    _progress(verbose, len(names), len(names), t0, final=True)
    if attrs is None:
        raise DatasetToolError(f'--transform={transform}: every image was dropped (all are smaller than --resolution={resolution[0]}x{resolution[1]})')

    have = sum(l is not None for _, l in labels)
    if 0 < have < len(labels):
        missing = next(n for n, (_, l) in zip(names, labels) if l is None)
        print(f'Warning: {src.describe(LABELS_FNAME)} has no label for {len(labels) - have} of {len(labels)} images '
              f'(e.g. {missing}); writing the dataset without labels.', file=sys.stderr)
    meta = {'labels': labels if have == len(labels) else None}
    out.write(LABELS_FNAME, json.dumps(meta).encode('utf-8'))
    return dnnlib.EasyDict(num_images=len(labels), num_dropped=dropped, resolution=attrs['width'], channels=attrs['channels'], labels=meta['labels'] is not None)

#----------------------------------------------------------------------------

def _parse_resolution_option(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_resolution(value)
    except DatasetToolError as e:
        raise click.BadParameter(str(e).split(': ', 1)[1]) from None


@click.command(context_settings=dnnlib.cli.CONTEXT_SETTINGS)
@click.option('--source',        help='Input folder, .zip or tar archive (searched recursively)', metavar='PATH', required=True)
@click.option('--dest',          help='Output .zip file or folder', metavar='PATH', required=True)
@click.option('--max-images',    help='Convert at most this many source images', metavar='INT', type=click.IntRange(min=1))
@click.option('--transform',     help='Crop mode (needs --resolution)', type=click.Choice(TRANSFORMS))
@click.option('--resolution',    help='Output size, e.g. 256x256', metavar='WxH', callback=_parse_resolution_option)
@click.option('--resize-filter', help='Resampling filter for resizing', type=click.Choice(list(RESIZE_FILTERS)), default='lanczos', show_default=True)
@click.option('--channels',      help='Make every image RGB or grayscale [default: grayscale stays gray, the rest RGB; mixing is an error]', type=click.Choice(CHANNELS))
@click.option('--force',         help='Overwrite an existing --dest (a .zip, or a folder holding only a dataset_tool dataset)', is_flag=True)
def main(source, dest, max_images, transform, resolution, resize_filter, channels, force):
    """Convert images into a dataset for train.py (NVlabs layout: uncompressed PNGs + dataset.json).

    Sources: a folder, a .zip, or a tar archive (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz);
    images (PNG, JPEG, BMP, WebP, TIFF) are found recursively and sorted by path. Labels are taken
    from a dataset.json at the source root, {"labels": [["relative/path.png", label], ...]}.
    The CIFAR-10 python tarball (cifar-10-python.tar.gz) gives its 50k training images with labels.
    Grayscale images stay 1-channel; everything else becomes RGB (alpha is dropped); --channels=rgb|gray
    converts every image. --dest may be neither the source nor inside or around it.
    Outputs must be square and a power of two: use --resolution, and --transform for non-square inputs.

    \b
    Examples:
    python dataset_tool.py --source=~/photos --dest=~/datasets/photos256.zip --transform=center-crop --resolution=256x256
    python dataset_tool.py --source=lsun_cars.tar.gz --dest=cars512.zip --transform=center-crop-wide --resolution=512x384
    python dataset_tool.py --source=big.zip --dest=small.zip --max-images=1000 --resolution=64x64 --resize-filter=box
    python dataset_tool.py --source=cifar-10-python.tar.gz --dest=cifar10-32x32.zip
    """
    try:
        convert_dataset(os.path.expanduser(source), os.path.expanduser(dest), max_images=max_images, transform=transform,
                        resolution=resolution, resize_filter=resize_filter, force=force, channels=channels)
    except DatasetToolError as e:
        raise click.ClickException(str(e)) from None

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
