"""Image datasets in the NVlabs layout (a folder or an uncompressed zip of PNG/JPEG images plus an
optional `dataset.json` with labels) and an infinite, rank-sharded, resumable sampler.

The on-disk format is the one written by NVlabs' `dataset_tool.py` and by ours:

    00000/img00000000.png
    00000/img00000001.png
    ...
    dataset.json            {"labels": [["00000/img00000000.png", 6], ...]}   (optional)

Labels are either one integer class per image (returned one-hot) or one float vector per image.
Images must be square, power-of-two, 1 (grayscale) or 3 (RGB) channels, all the same shape.
Every error names the offending file and what to do about it.
"""

import abc
import io
import json
import math
import os
import warnings
import zipfile

import numpy as np
import PIL.Image
import torch

import dnnlib
from torch_utils import persistence

try:
    import pyspng
except ImportError:
    pyspng = None

#----------------------------------------------------------------------------

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff')
LABELS_FNAME = 'dataset.json'


class DatasetError(IOError):
    """A dataset file is missing, unreadable or inconsistent; the message names the file."""

#----------------------------------------------------------------------------

class Dataset(torch.utils.data.Dataset, abc.ABC):
    """Base class: max_size subsetting, x-flip doubling, labels, and the NVlabs dataset properties.

    Items are `(image, label)`: image uint8 ndarray [C, H, W], label float32 ndarray [label_dim]
    (one-hot for integer class labels; shape [0] without labels).
    Subclasses implement `_load_raw_image(raw_idx)` and `_load_raw_labels()`.
    """

    def __init__(self,
        name,                   # Name of the dataset (used in run dir names and metric caches).
        raw_shape,              # Shape of the raw image data [N, C, H, W].
        max_size    = None,     # Keep at most this many images (random subset, sorted). None = all. Applied before xflip.
        use_labels  = False,    # Load labels? False = label dimension is zero.
        xflip       = False,    # Double the dataset with horizontally flipped copies. Applied after max_size.
        random_seed = 0,        # Seed for choosing the max_size subset.
    ):
        self._name = name
        self._raw_shape = list(raw_shape)
        self._use_labels = use_labels
        self._raw_labels = None
        self._label_shape = None

        # Choose the max_size subset (same selection as NVlabs for the same seed).
        self._raw_idx = np.arange(self._raw_shape[0], dtype=np.int64)
        if max_size is not None and self._raw_idx.size > max_size:
            np.random.RandomState(random_seed).shuffle(self._raw_idx)
            self._raw_idx = np.sort(self._raw_idx[:max_size])

        # Append x-flipped copies: item i + n is item i mirrored.
        self._xflip = np.zeros(self._raw_idx.size, dtype=np.uint8)
        if xflip:
            self._raw_idx = np.tile(self._raw_idx, 2)
            self._xflip = np.concatenate([self._xflip, np.ones_like(self._xflip)])

    @abc.abstractmethod
    def _load_raw_image(self, raw_idx):
        """Return image number `raw_idx` as a uint8 ndarray [C, H, W], validated against image_shape."""

    @abc.abstractmethod
    def _load_raw_labels(self):
        """Return int64 [N] class labels, float32 [N, D] label vectors, or None for no labels."""

    def close(self):
        """Release open file handles (reopened on demand)."""

    def _get_raw_labels(self):
        if self._raw_labels is None:
            labels = self._load_raw_labels() if self._use_labels else None
            if labels is None:
                labels = np.zeros([self._raw_shape[0], 0], dtype=np.float32)
            if not isinstance(labels, np.ndarray) or labels.shape[0] != self._raw_shape[0] or labels.dtype not in (np.float32, np.int64):
                raise DatasetError(f'{self._name}: labels must be an int64 [N] or float32 [N, D] array with N = {self._raw_shape[0]}, '
                                   f'got {getattr(labels, "dtype", type(labels).__name__)} {list(getattr(labels, "shape", []))}')
            self._raw_labels = labels
        return self._raw_labels

    def __getstate__(self):
        return dict(self.__dict__, _raw_labels=None)  # labels are reloaded lazily; keeps pickles small

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: modules may already be gone
            return

    def __len__(self):
        return self._raw_idx.size

    def __getitem__(self, idx):
        image = self._load_raw_image(self._raw_idx[idx])
        if self._xflip[idx]:
            image = image[:, :, ::-1]
        return image.copy(), self.get_label(idx)

    def get_label(self, idx):
        """Label of item `idx` as float32 [label_dim] (one-hot for class labels)."""
        label = self._get_raw_labels()[self._raw_idx[idx]]
        if label.dtype == np.int64:
            onehot = np.zeros(self.label_shape, dtype=np.float32)
            onehot[label] = 1
            label = onehot
        return label.copy()

    def get_details(self, idx):
        """EasyDict(raw_idx, xflip, raw_label) of item `idx`."""
        d = dnnlib.EasyDict()
        d.raw_idx = int(self._raw_idx[idx])
        d.xflip = (int(self._xflip[idx]) != 0)
        d.raw_label = self._get_raw_labels()[d.raw_idx].copy()
        return d

    @property
    def name(self):
        return self._name

    @property
    def image_shape(self):
        """[C, H, W] of every image."""
        return list(self._raw_shape[1:])

    @property
    def num_channels(self):
        return self.image_shape[0]

    @property
    def resolution(self):
        return self.image_shape[1]

    @property
    def label_shape(self):
        """[num_classes] for class labels, [D] for vector labels, [0] without labels."""
        if self._label_shape is None:
            raw_labels = self._get_raw_labels()
            if raw_labels.dtype == np.int64:
                self._label_shape = [int(np.max(raw_labels)) + 1]
            else:
                self._label_shape = list(raw_labels.shape[1:])
        return list(self._label_shape)

    @property
    def label_dim(self):
        return self.label_shape[0]

    @property
    def has_labels(self):
        return any(x != 0 for x in self.label_shape)

    @property
    def has_onehot_labels(self):
        return self._get_raw_labels().dtype == np.int64

#----------------------------------------------------------------------------

MAX_RESOLUTION = 8192  # largest training image side: the pixel limit checked from the header before decoding
MAX_IMAGE_PIXELS = MAX_RESOLUTION * MAX_RESOLUTION
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def png_header_size(data):
    """(width, height) from a PNG's IHDR chunk (the first chunk, bytes 16..24), or None if `data` has no valid PNG header."""
    if len(data) < 24 or data[:8] != _PNG_SIGNATURE or data[12:16] != b'IHDR':
        return None
    return int.from_bytes(data[16:20], 'big'), int.from_bytes(data[20:24], 'big')


def image_header_size(data, fname):
    """(width, height) from the image header, without decoding the pixels.

    PNG: the IHDR chunk (the first chunk, bytes 16..24). Other formats: Pillow's lazy open, which parses
    only the header (e.g. the JPEG SOF marker). Raises DatasetError naming `fname` if there is no valid header.
    """
    if data[:8] == _PNG_SIGNATURE:
        size = png_header_size(data)
        if size is None:
            raise DatasetError(f'{fname}: cannot decode image (PNG without an IHDR header; truncated or damaged). '
                               f'Remove or replace the file, or rebuild the dataset with dataset_tool.py.')
        return size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', PIL.Image.DecompressionBombWarning)  # our own limit applies below
            with PIL.Image.open(io.BytesIO(data)) as img:
                return img.size
    except PIL.Image.DecompressionBombError as e:
        raise DatasetError(f'{fname}: refused before decoding: {e}') from e
    except Exception as e:  # any header parser failure: report it with the file name
        raise DatasetError(f'{fname}: cannot decode image ({type(e).__name__}: {e}). '
                           f'Remove or replace the file, or rebuild the dataset with dataset_tool.py.') from e


def check_header_size(data, fname, expected_size=None, mismatch_hint=''):
    """Read (width, height) from the header and refuse, before any decoding, images over MAX_IMAGE_PIXELS
    or (if given) of another size than `expected_size`. Returns (width, height)."""
    w, h = image_header_size(data, fname)
    if expected_size is not None and (w, h) != tuple(expected_size):
        raise DatasetError(f'{fname}: image is {w}x{h}, but {mismatch_hint or "the dataset"} is {expected_size[0]}x{expected_size[1]}; '
                           f'all images must match (refused before decoding). '
                           f'Rebuild the dataset with dataset_tool.py --resolution={expected_size[0]}x{expected_size[1]}.')
    if w * h > MAX_IMAGE_PIXELS or w <= 0 or h <= 0:
        raise DatasetError(f'{fname}: image is {w}x{h}; refused before decoding: training images may have at most '
                           f'{MAX_RESOLUTION}x{MAX_RESOLUTION} pixels. Resize it with dataset_tool.py --resolution.')
    return w, h


def _png_is_plain_8bit(data):
    """True for an 8-bit grayscale or RGB PNG (IHDR color type 0 or 2): pyspng decodes those exactly like Pillow."""
    return len(data) >= 26 and data[:8] == b'\x89PNG\r\n\x1a\n' and data[24] == 8 and data[25] in (0, 2)


def decode_image(data, fname, expected_size=None, mismatch_hint=''):
    """Decode PNG/JPEG/... bytes into a uint8 ndarray [C, H, W]; errors name `fname`.

    The header is checked first (check_header_size): images over MAX_IMAGE_PIXELS, or not of
    `expected_size` (width, height) when given, are refused before their pixels are decoded.

    PNG goes through pyspng when installed (8-bit gray/RGB), everything else through Pillow.
    Palette and bilevel images are expanded (to RGB and L); CMYK/YCbCr are converted to RGB.
    Alpha channels and 16-bit images are refused: only 1 or 3 channels of 8 bits are supported.
    """
    check_header_size(data, fname, expected_size, mismatch_hint)
    ext = os.path.splitext(fname)[1].lower()
    try:
        if pyspng is not None and ext == '.png' and _png_is_plain_8bit(data):
            image = pyspng.load(data)
        else:
            with PIL.Image.open(io.BytesIO(data)) as img:
                if img.mode == '1':
                    img = img.convert('L')
                elif img.mode in ('P', 'CMYK', 'YCbCr'):
                    img = img.convert('RGBA' if img.mode == 'P' and 'transparency' in img.info else 'RGB')
                image = np.array(img)
    except Exception as e:  # any decoder failure: report it with the file name
        raise DatasetError(f'{fname}: cannot decode image ({type(e).__name__}: {e}). '
                           f'Remove or replace the file, or rebuild the dataset with dataset_tool.py.') from e
    if image.dtype != np.uint8:
        raise DatasetError(f'{fname}: {image.dtype} pixels ({"16-bit" if image.dtype.itemsize == 2 else "non-8-bit"} image); '
                           f'only 8-bit images are supported. Convert it with dataset_tool.py.')
    if image.ndim == 2:
        image = image[:, :, np.newaxis]  # HW => HWC
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        channels = image.shape[2] if image.ndim == 3 else '?'
        raise DatasetError(f'{fname}: image has {channels} channels (shape {list(image.shape)}); only 1 (grayscale) or 3 (RGB) '
                           f'channels are supported. Drop the alpha channel, e.g. with dataset_tool.py.')
    return image.transpose(2, 0, 1)  # HWC => CHW


def check_image_shape(shape, fname, resolution=None):
    """Raise DatasetError unless [C, H, W] is a square power-of-two 1- or 3-channel shape (of `resolution` if given)."""
    c, h, w = shape
    if c not in (1, 3):
        raise DatasetError(f'{fname}: image has {c} channels; only 1 (grayscale) or 3 (RGB) are supported.')
    if h != w:
        raise DatasetError(f'{fname}: image is {w}x{h} (WxH); images must be square. '
                           f'Use dataset_tool.py --transform=center-crop --resolution=NxN.')
    if h < 4 or (h & (h - 1)) != 0:
        raise DatasetError(f'{fname}: resolution {h} is not a power of two >= 4. '
                           f'Use dataset_tool.py --resolution=NxN with N a power of two.')
    if resolution is not None and h != resolution:
        raise DatasetError(f'{fname}: image resolution is {h}, expected {resolution} (the requested resolution).')

MAX_CLASSES = 65536  # class labels (and label vector lengths) beyond this are refused: one-hot vectors are label_dim wide


def _label_kind(value):
    """'class' for a JSON number, 'vector' for a list of anything, None for other values (strings, bools, objects)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return 'class'
    if isinstance(value, (list, tuple)):
        return 'vector'
    return None


def _short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + '...'

#----------------------------------------------------------------------------

@persistence.register_class('dataset')  # files (snapshots' training_set_kwargs) may name it
class ImageFolderDataset(Dataset):
    """A folder or zip of images in the NVlabs layout, with optional `dataset.json` labels.

    Construction only lists the files and decodes the first image (which fixes image_shape);
    the other images are validated when loaded, or all at once by `validate()`.
    Picklable and fork-safe: the zip is reopened in each process (DataLoader workers).
    Images are the files with extensions IMAGE_EXTENSIONS, sorted by relative path; hidden files
    (a path component starting with '.') and `__MACOSX/` are ignored.

    `path` may also be a demo dataset name ('demo', 'demo16', 'demo32', 'demo64'; see
    training.demo_dataset) when no file or folder of that name exists: it is generated on first use.
    """

    def __init__(self,
        path,                   # Folder or .zip file (or a demo dataset name).
        resolution  = None,     # Require this resolution. None = that of the images.
        use_labels  = False,    # Load labels from dataset.json.
        max_size    = None,     # Keep at most this many images. None = all.
        xflip       = False,    # Double the dataset with x-flipped copies.
        random_seed = 0,        # Seed for the max_size subset.
        name        = None,     # Dataset name. None = file/folder name without extension.
    ):
        path = os.fspath(path)
        if not os.path.exists(path):
            from training import demo_dataset  # same layer; only for demo names
            if demo_dataset.is_demo_name(path):
                path = demo_dataset.resolve_data_path(path)
            else:
                raise DatasetError(f'Dataset not found: {path} (expected a folder, a .zip file, or one of {demo_dataset.DEMO_NAMES})')
        self._path = path
        self._zipfile = None
        self._zip_pid = None

        if os.path.isdir(path):
            self._type = 'dir'
            all_fnames = []
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith('.') and d != '__MACOSX')
                all_fnames += [os.path.relpath(os.path.join(root, f), start=path).replace('\\', '/') for f in files]
        elif os.path.isfile(path) and path.lower().endswith('.zip'):
            self._type = 'zip'
            all_fnames = [n for n in self._get_zipfile().namelist() if not n.endswith('/')]
        else:
            raise DatasetError(f'{path}: not a folder or a .zip file. Create a dataset with dataset_tool.py.')
        all_fnames = [f for f in all_fnames if not any(p.startswith('.') or p == '__MACOSX' for p in f.split('/'))]
        self._all_fnames = set(all_fnames)
        self._image_fnames = sorted(f for f in all_fnames if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)
        if len(self._image_fnames) == 0:
            raise DatasetError(f'{path}: empty dataset, no image files found (looked for {", ".join(IMAGE_EXTENSIONS)}).')

        # The first image defines the shape every other image must have.
        first = self._decode(self._image_fnames[0])
        check_image_shape(first.shape, self._describe(self._image_fnames[0]), resolution)
        raw_shape = [len(self._image_fnames)] + list(first.shape)
        if name is None:
            name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
        super().__init__(name=name, raw_shape=raw_shape, use_labels=use_labels, max_size=max_size, xflip=xflip, random_seed=random_seed)

    @property
    def path(self):
        return self._path

    @property
    def image_fnames(self):
        """Relative paths of the images, in item order of the raw dataset."""
        return list(self._image_fnames)

    def _describe(self, fname):
        return os.path.join(self._path, fname) if self._type == 'dir' else f'{self._path}:{fname}'

    def _get_zipfile(self):
        if self._zipfile is None or self._zip_pid != os.getpid():  # reopen after fork: never share a file offset
            try:
                self._zipfile = zipfile.ZipFile(self._path)
            except (zipfile.BadZipFile, OSError) as e:
                raise DatasetError(f'{self._path}: cannot open zip file ({e}).') from e
            self._zip_pid = os.getpid()
        return self._zipfile

    def _read_bytes(self, fname):
        try:
            if self._type == 'dir':
                with open(os.path.join(self._path, fname), 'rb') as f:
                    return f.read()
            with self._get_zipfile().open(fname, 'r') as f:
                return f.read()
        except (OSError, KeyError, zipfile.BadZipFile) as e:
            raise DatasetError(f'{self._describe(fname)}: cannot read file ({e}).') from e

    def _decode(self, fname, expected_size=None, mismatch_hint=''):
        return decode_image(self._read_bytes(fname), self._describe(fname), expected_size, mismatch_hint)

    def close(self):
        try:
            if self._zipfile is not None and self._zip_pid == os.getpid():
                self._zipfile.close()
        finally:
            self._zipfile = None
            self._zip_pid = None

    def __getstate__(self):
        return dict(super().__getstate__(), _zipfile=None, _zip_pid=None)

    def _load_raw_image(self, raw_idx):
        fname = self._image_fnames[raw_idx]
        _c0, h0, w0 = self.image_shape
        image = self._decode(fname, expected_size=(w0, h0), mismatch_hint=f'the first image {self._image_fnames[0]}')
        if list(image.shape) != self.image_shape:
            c, h, w = image.shape
            c0, h0, w0 = self.image_shape
            raise DatasetError(f'{self._describe(fname)}: image is {w}x{h} with {c} channel(s), but the first image '
                               f'{self._image_fnames[0]} is {w0}x{h0} with {c0} channel(s); all images must match. '
                               f'Rebuild the dataset with dataset_tool.py --resolution={w0}x{h0}.')
        return image

    def _load_raw_labels(self):
        if LABELS_FNAME not in self._all_fnames:
            return None
        where = self._describe(LABELS_FNAME)
        try:
            meta = json.loads(self._read_bytes(LABELS_FNAME).decode('utf-8'))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise DatasetError(f'{where}: not valid JSON ({type(e).__name__}: {e}).') from e
        if not isinstance(meta, dict) or 'labels' not in meta:
            raise DatasetError(f'{where}: expected an object with a "labels" entry, e.g. {{"labels": [["00000/img00000000.png", 3], ...]}}.')
        labels = meta['labels']
        if labels is None:
            return None
        try:
            labels = dict(labels)
        except (TypeError, ValueError) as e:
            raise DatasetError(f'{where}: "labels" must be a list of [relative_path, label] pairs ({e}).') from e
        missing = [f for f in self._image_fnames if f not in labels]
        if missing:
            raise DatasetError(f'{where}: no label for image {missing[0]} ({len(missing)} of {len(self._image_fnames)} images '
                               f'have no label). Every image needs a label, or set "labels": null.')
        values = [labels[f] for f in self._image_fnames]
        kinds = [_label_kind(v) for v in values]
        bad = next((i for i, k in enumerate(kinds) if k is None), None)
        if bad is not None:
            f = self._image_fnames[bad]
            raise DatasetError(f'{where}: label of {f} is {_short(values[bad])}; labels must be all integers (classes) or all lists of numbers.')
        mixed = next((i for i, k in enumerate(kinds) if k != kinds[0]), None)
        if mixed is not None:
            f0, f = self._image_fnames[0], self._image_fnames[mixed]
            raise DatasetError(f'{where}: label of {f} is {_short(values[mixed])} but that of {f0} is {_short(values[0])}; '
                               f'labels must be all integers (classes) or all lists of numbers, not a mix.')
        if kinds[0] == 'class':
            for f, v in zip(self._image_fnames, values):
                if not 0 <= v < MAX_CLASSES or v != math.floor(v):  # NaN fails the range test; huge ints never become floats
                    raise DatasetError(f'{where}: label of {f} is {_short(v)}; class labels must be integers in [0, {MAX_CLASSES - 1}].')
            return np.array([int(v) for v in values], dtype=np.int64)
        dims = {len(v) for v in values}
        d0 = len(values[0])
        if len(dims) != 1:
            bad = next(f for f, v in zip(self._image_fnames, values) if len(v) != d0)
            raise DatasetError(f'{where}: label of {bad} has {len(labels[bad])} values but that of {self._image_fnames[0]} has {d0}; '
                               f'all label vectors must have the same length.')
        if d0 > MAX_CLASSES:
            raise DatasetError(f'{where}: label vectors have {d0} values; at most {MAX_CLASSES} are supported.')
        limit = float(np.finfo(np.float32).max)
        for f, v in zip(self._image_fnames, values):
            if not all(_label_kind(x) == 'class' and abs(x) <= limit for x in v):  # NaN and infinities fail abs(x) <= limit
                raise DatasetError(f'{where}: label of {f} is {_short(v)}; label vectors must contain finite float32 numbers only.')
        return np.array(values, dtype=np.float32).reshape(len(values), d0)

    def validate(self, verbose=False):
        """Decode and check every image and the labels; raise DatasetError naming the first bad file.

        Args:
            verbose: print progress ("Validating dataset: k/N images") to stdout.
        Returns:
            The number of images checked.
        """
        n = len(self._image_fnames)
        step = max(1, n // 20)
        for raw_idx in range(n):
            self._load_raw_image(raw_idx)
            if verbose and ((raw_idx + 1) % step == 0 or raw_idx + 1 == n):
                print(f'\rValidating dataset {self._name}: {raw_idx + 1}/{n} images', end='', flush=True)
        if verbose:
            print(flush=True)
        self._raw_labels = None
        self._get_raw_labels()
        return n

#----------------------------------------------------------------------------

class InfiniteSampler(torch.utils.data.Sampler):
    """Endless shuffled stream of dataset indices, sharded across ranks, that can start anywhere.

    The global stream is a pure function of (dataset_size, shuffle, seed, window_size) and the
    position j = 0, 1, 2, ...:

      - epoch e = j // N covers positions [e*N, (e+1)*N) with the permutation
        np.random.RandomState([seed, e]).permutation(N) (identity order when shuffle=False);
      - with window_size > 0, the W = round(window_size * N) positions around each epoch boundary
        (W//2 before it, W - W//2 after) are additionally shuffled with
        np.random.RandomState([seed, e, 1]), so the end of one epoch mixes with the start of the next
        (the purpose of NVlabs' sliding window) while the order stays a pure function of j.

    Rank r of R yields stream[j] for every j >= start_index with j % R == r, i.e. positions r, r+R,
    r+2R, ... . Each rank reading one batch of batch_gpu per step means that after cur_nimg images
    (R * batch_gpu per step) the next positions are exactly [cur_nimg, ...), so resuming with
    start_index=cur_nimg reproduces the uninterrupted run's items on every rank.
    """

    def __init__(self, dataset_size, rank=0, num_replicas=1, shuffle=True, seed=0, window_size=0.5, start_index=0):
        n = dataset_size if isinstance(dataset_size, int) else len(dataset_size)  # also accepts a dataset, as NVlabs
        if n <= 0:
            raise ValueError(f'InfiniteSampler: dataset_size must be positive, got {n}')
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f'InfiniteSampler: need 0 <= rank < num_replicas, got rank={rank}, num_replicas={num_replicas}')
        if not 0 <= window_size <= 1:
            raise ValueError(f'InfiniteSampler: window_size must be in [0, 1], got {window_size}')
        if start_index < 0:
            raise ValueError(f'InfiniteSampler: start_index must be >= 0, got {start_index}')
        super().__init__()
        self.dataset_size = n
        self.rank = rank
        self.num_replicas = num_replicas
        self.shuffle = shuffle
        self.seed = seed
        self.window_size = window_size
        self.start_index = start_index
        self._window = int(np.rint(n * window_size)) if shuffle else 0

    def _epoch_order(self, epoch):
        if not self.shuffle:
            return np.arange(self.dataset_size, dtype=np.int64)
        return np.random.RandomState([self.seed & 0xFFFFFFFF, epoch]).permutation(self.dataset_size)

    def _boundary_perm(self, epoch):
        """Permutation of the W positions around the start of `epoch` (>= 1)."""
        return np.random.RandomState([self.seed & 0xFFFFFFFF, epoch, 1]).permutation(self._window)

    def chunk(self, epoch):
        """Global stream positions [epoch*N, (epoch+1)*N) as an int64 array of dataset indices."""
        n, w = self.dataset_size, self._window
        cur = self._epoch_order(epoch)
        if w < 2:
            return cur
        lo, hi = w // 2, w - w // 2  # positions before / after the boundary
        out = cur.copy()
        if epoch >= 1:  # boundary at the start of this epoch: its last `hi` positions
            prev = self._epoch_order(epoch - 1)
            window = np.concatenate([prev[n - lo:], cur[:hi]])[self._boundary_perm(epoch)]
            out[:hi] = window[lo:]
        nxt = self._epoch_order(epoch + 1)  # boundary at the end of this epoch: its first `lo` positions
        window = np.concatenate([cur[n - lo:], nxt[:hi]])[self._boundary_perm(epoch + 1)]
        out[n - lo:] = window[:lo]
        return out

    def item(self, j):
        """Dataset index at global stream position j."""
        return int(self.chunk(j // self.dataset_size)[j % self.dataset_size])

    def __iter__(self):
        n, r, R = self.dataset_size, self.rank, self.num_replicas
        j = self.start_index + (r - self.start_index) % R  # first position >= start_index owned by this rank
        while True:
            epoch = j // n
            chunk = self.chunk(epoch)
            end = (epoch + 1) * n
            while j < end:
                yield int(chunk[j - epoch * n])
                j += R

#----------------------------------------------------------------------------
