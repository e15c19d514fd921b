"""training.dataset (ImageFolderDataset, InfiniteSampler) and training.demo_dataset."""

import hashlib
import io
import json
import os
import contextlib
import pickle
import struct
import time
import tracemalloc
import zipfile
import zlib

import numpy as np
import PIL.Image
import PIL.ImageFile
import pytest
import torch

from training import dataset as ds_mod
from training import demo_dataset
from training.dataset import DatasetError, ImageFolderDataset, InfiniteSampler

#----------------------------------------------------------------------------
# Helpers: hand-made datasets.

def _png_bytes(arr, mode=None):
    buf = io.BytesIO()
    PIL.Image.fromarray(arr, mode).save(buf, format='png')
    return buf.getvalue()


def _random_images(n, res=8, channels=3, seed=0):
    shape = [n, res, res] + ([channels] if channels > 1 else [])
    return np.random.RandomState(seed).randint(0, 256, size=shape).astype(np.uint8)


def _write_folder(root, files):
    """files: {relpath: bytes}."""
    for name, data in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(data)
    return str(root)


def _write_zip(path, files):
    with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_STORED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return str(path)


def _dataset_files(images, labels=None, names=None):
    names = names or [f'{i // 1000:05d}/img{i:08d}.png' for i in range(len(images))]
    files = {n: _png_bytes(img) for n, img in zip(names, images)}
    if labels is not None:
        files['dataset.json'] = json.dumps({'labels': [[n, l] for n, l in zip(names, labels)]}).encode()
    return files


def _chw(img):
    return img[np.newaxis] if img.ndim == 2 else img.transpose(2, 0, 1)

#----------------------------------------------------------------------------
# ImageFolderDataset.

@pytest.fixture
def labeled(tmp_path):
    images = _random_images(6)
    labels = [2, 0, 1, 2, 4, 0]
    files = _dataset_files(images, labels)
    folder = _write_folder(tmp_path / 'data', files)
    zpath = _write_zip(tmp_path / 'data.zip', files)
    return images, labels, folder, zpath


def test_zip_and_folder_identical(labeled):
    images, labels, folder, zpath = labeled
    a = ImageFolderDataset(folder, use_labels=True, xflip=True)
    b = ImageFolderDataset(zpath, use_labels=True, xflip=True)
    assert a.name == 'data' and b.name == 'data'
    assert len(a) == len(b) == 12
    for i in range(len(a)):
        (ia, la), (ib, lb) = a[i], b[i]
        assert ia.dtype == np.uint8 and ia.shape == (3, 8, 8)
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(la, lb)
    for i in range(6):  # pixel-exact against the source arrays
        np.testing.assert_array_equal(a[i][0], _chw(images[i]))
    assert a.image_shape == [3, 8, 8] and a.num_channels == 3 and a.resolution == 8


def test_int_labels_onehot(labeled):
    images, labels, folder, _ = labeled
    d = ImageFolderDataset(folder, use_labels=True)
    assert d.has_labels and d.has_onehot_labels
    assert d.label_shape == [5] and d.label_dim == 5
    for i, l in enumerate(labels):
        expect = np.zeros(5, np.float32)
        expect[l] = 1
        np.testing.assert_array_equal(d.get_label(i), expect)
        assert d[i][1].dtype == np.float32
    nolabels = ImageFolderDataset(folder, use_labels=False)
    assert not nolabels.has_labels and nolabels.label_shape == [0] and nolabels[0][1].shape == (0,)


def test_float_labels(tmp_path):
    images = _random_images(3)
    labels = [[0.5, -1.0], [2.0, 0.25], [0.0, 3.5]]
    d = ImageFolderDataset(_write_folder(tmp_path, _dataset_files(images, labels)), use_labels=True)
    assert d.has_labels and not d.has_onehot_labels and d.label_shape == [2]
    for i in range(3):
        np.testing.assert_array_equal(d.get_label(i), np.array(labels[i], np.float32))


def test_no_dataset_json_and_null_labels(tmp_path):
    images = _random_images(2)
    d = ImageFolderDataset(_write_folder(tmp_path / 'a', _dataset_files(images)), use_labels=True)
    assert not d.has_labels
    files = _dataset_files(images)
    files['dataset.json'] = b'{"labels": null}'
    d = ImageFolderDataset(_write_folder(tmp_path / 'b', files), use_labels=True)
    assert not d.has_labels


def test_xflip_and_details(labeled):
    images, labels, folder, _ = labeled
    d = ImageFolderDataset(folder, use_labels=True, xflip=True)
    for i in range(6):
        np.testing.assert_array_equal(d[i + 6][0], _chw(images[i])[:, :, ::-1])
        np.testing.assert_array_equal(d[i + 6][1], d[i][1])
        det = d.get_details(i + 6)
        assert det.raw_idx == i and det.xflip and int(det.raw_label) == labels[i]
        assert not d.get_details(i).xflip


def test_max_size_matches_nvlabs_selection(labeled):
    _, _, folder, _ = labeled
    d = ImageFolderDataset(folder, max_size=4, random_seed=7, xflip=True)
    order = np.arange(6)
    np.random.RandomState(7).shuffle(order)
    expect = np.sort(order[:4])
    assert len(d) == 8
    assert [d.get_details(i).raw_idx for i in range(8)] == list(expect) * 2


def test_grayscale_and_pyspng_vs_pillow(tmp_path, monkeypatch):
    gray = _random_images(2, channels=1)
    folder = _write_folder(tmp_path, {f'g{i}.png': _png_bytes(g) for i, g in enumerate(gray)})
    d = ImageFolderDataset(folder)
    assert d.image_shape == [1, 8, 8]
    np.testing.assert_array_equal(d[1][0], gray[1][np.newaxis])
    monkeypatch.setattr(ds_mod, 'pyspng', None)  # the Pillow path gives the same pixels
    np.testing.assert_array_equal(ImageFolderDataset(folder)[1][0], gray[1][np.newaxis])


def test_palette_png_expanded(tmp_path):
    rgb = _random_images(1)[0] // 64 * 64  # few colors: exact palette
    pal = PIL.Image.fromarray(rgb).quantize(colors=64, method=PIL.Image.Quantize.FASTOCTREE, dither=PIL.Image.Dither.NONE)
    buf = io.BytesIO()
    pal.save(buf, format='png')
    d = ImageFolderDataset(_write_folder(tmp_path, {'p.png': buf.getvalue()}))
    np.testing.assert_array_equal(d[0][0], _chw(np.array(pal.convert('RGB'))))


def test_pickle_and_reopen(labeled):
    _, _, _, zpath = labeled
    d = ImageFolderDataset(zpath, use_labels=True)
    first = d[3]
    d2 = pickle.loads(pickle.dumps(d))
    np.testing.assert_array_equal(d2[3][0], first[0])
    np.testing.assert_array_equal(d2[3][1], first[1])
    d.close()
    np.testing.assert_array_equal(d[3][0], first[0])  # reopens on demand


def test_dataloader_two_workers(labeled):
    _, _, _, zpath = labeled
    d = ImageFolderDataset(zpath, use_labels=True, xflip=True)
    d[0]  # the zip is open in the parent before the workers fork
    loader = torch.utils.data.DataLoader(d, batch_size=3, num_workers=2, shuffle=False)
    imgs, labels = zip(*loader)
    imgs, labels = torch.cat(imgs), torch.cat(labels)
    assert imgs.shape == (12, 3, 8, 8) and imgs.dtype == torch.uint8
    for i in range(12):
        np.testing.assert_array_equal(imgs[i].numpy(), d[i][0])
        np.testing.assert_array_equal(labels[i].numpy(), d[i][1])


def test_validate(labeled):
    _, _, folder, _ = labeled
    assert ImageFolderDataset(folder, use_labels=True).validate() == 6


def test_construction_is_lazy(tmp_path):
    files = _dataset_files(_random_images(3))
    files['00000/img00000002.png'] = b'not a png'
    ImageFolderDataset(_write_folder(tmp_path, files))  # only the first image is decoded


def test_hidden_and_non_image_files_ignored(tmp_path):
    files = _dataset_files(_random_images(2))
    files.update({'notes.txt': b'hello', '.hidden.png': b'junk', '__MACOSX/00000/._img00000000.png': b'junk'})
    d = ImageFolderDataset(_write_zip(tmp_path / 'x.zip', files))
    assert len(d) == 2 and d.image_fnames == ['00000/img00000000.png', '00000/img00000001.png']

#----------------------------------------------------------------------------
# Validation errors name the file.

def _dataset_with(tmp_path, extra, n=2):
    files = _dataset_files(_random_images(n))
    files.update(extra)
    return _write_folder(tmp_path, files)


def test_error_not_an_image(tmp_path):
    d = ImageFolderDataset(_dataset_with(tmp_path, {'zz/broken.png': b'\x89PNG garbage'}))
    with pytest.raises(DatasetError, match=r'zz/broken\.png.*cannot decode'):
        d[2]
    with pytest.raises(DatasetError, match=r'zz/broken\.png'):
        d.validate()
    with pytest.raises(DatasetError, match=r'/0\.jpg: cannot decode'):  # sorts first: checked at construction
        ImageFolderDataset(_dataset_with(tmp_path / 'b', {'0.jpg': b'nope'}))


def test_error_wrong_size(tmp_path):
    d = ImageFolderDataset(_dataset_with(tmp_path, {'zz/big.png': _png_bytes(_random_images(1, res=16)[0])}))
    with pytest.raises(DatasetError, match=r'zz/big\.png: image is 16x16, but the first image 00000/img00000000\.png is 8x8; '
                                           r'all images must match \(refused before decoding\)'):
        d.validate()


def _chunk(kind, payload):
    return struct.pack('>I', len(payload)) + kind + payload + struct.pack('>I', zlib.crc32(kind + payload) & 0xFFFFFFFF)


def _bomb_png(width, height, bit_depth=1, color_type=0, rows=None):
    """A valid-headed PNG of `width` x `height` whose IDAT is zlib of zero rows (all of them, or only `rows`): a few
    hundred KB on disk that would decode to width * height pixels."""
    row = b'\x00' * (1 + (width * bit_depth * (3 if color_type == 2 else 1) + 7) // 8)  # filter byte + packed samples
    comp = zlib.compressobj(9)
    block = 64
    n = height if rows is None else rows
    parts = [comp.compress(row * min(block, n - i)) for i in range(0, n, block)]
    idat = b''.join(parts) + comp.flush()
    ihdr = struct.pack('>IIBBBBB', width, height, bit_depth, color_type, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', ihdr) + _chunk(b'IDAT', idat) + _chunk(b'IEND', b'')


def _jpeg_claiming(width, height):
    """A small real JPEG whose SOF0 marker is patched to claim width x height."""
    buf = io.BytesIO()
    PIL.Image.fromarray(_random_images(1)[0]).save(buf, format='jpeg')
    data = bytearray(buf.getvalue())
    sof = data.index(b'\xff\xc0')
    data[sof + 5:sof + 9] = struct.pack('>HH', height, width)
    return bytes(data)


@pytest.mark.parametrize('use_pyspng', [True, False])
def test_decompression_bomb_refused_before_decoding(tmp_path, monkeypatch, use_pyspng):
    if not use_pyspng:
        monkeypatch.setattr(ds_mod, 'pyspng', None)
    bomb = _bomb_png(30000, 30000)  # 1-bit: 0.9 Gpixel, about 3 GB as RGB uint8
    assert len(bomb) < 1 << 20
    plain8 = _bomb_png(30000, 30000, bit_depth=8, color_type=2, rows=4)  # the pyspng route (8-bit RGB); header is what counts
    jpeg = _jpeg_claiming(10000, 10000)  # over our limit, under Pillow's own bomb error: our check refuses it
    tracemalloc.start()
    try:
        for name, data in (('a_bomb.png', bomb), ('a_plain8.png', plain8), ('a_big.jpg', jpeg)):
            folder = _write_folder(tmp_path / name, {name: data})
            with no_decoding_patch(monkeypatch):
                with pytest.raises(DatasetError, match=rf'{name}: image is \d+x\d+; refused before decoding: training images '
                                                       rf'may have at most 8192x8192 pixels'):
                    ImageFolderDataset(folder)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f'peak {peak / 2**20:.1f} MiB'
    # The same file among good ones: refused when loaded or validated, naming the file.
    folder = _dataset_with(tmp_path / 'mixed', {'zz/bomb.png': bomb})
    d = ImageFolderDataset(folder)
    with no_decoding_patch(monkeypatch):
        with pytest.raises(DatasetError, match=r'zz/bomb\.png: image is 30000x30000.*refused before decoding'):
            d[2]


def no_decoding_patch(monkeypatch, max_pixels=1 << 20):
    """Context manager: while active, decoding an image of more than `max_pixels` fails the test
    (smaller images decode normally: a dataset's regular images are still read)."""

    @contextlib.contextmanager
    def patch():
        with monkeypatch.context() as m:
            pil_load, spng_load = PIL.ImageFile.ImageFile.load, getattr(ds_mod.pyspng, 'load', None)

            def check(size):
                assert size[0] * size[1] <= max_pixels, f'a {size[0]}x{size[1]} image was decoded'

            def guarded_pil_load(self, *args, **kwargs):
                check(self.size)
                return pil_load(self, *args, **kwargs)

            def guarded_spng_load(data, *args, **kwargs):
                with PIL.Image.open(io.BytesIO(data)) as img:  # header only
                    check(img.size)
                return spng_load(data, *args, **kwargs)
            m.setattr(PIL.ImageFile.ImageFile, 'load', guarded_pil_load)
            if spng_load is not None:
                m.setattr(ds_mod.pyspng, 'load', guarded_spng_load)
            yield
    return patch()


def test_huge_image_in_small_dataset_refused_at_validation(tmp_path, monkeypatch):
    folder = _dataset_with(tmp_path, {'zz/huge.png': _bomb_png(16384, 16384)}, n=2)
    files = _dataset_files(_random_images(2, res=256))
    _write_folder(folder, files)  # the two regular images become 256x256
    d = ImageFolderDataset(folder)
    assert d.image_shape == [3, 256, 256] and len(d) == 3
    with no_decoding_patch(monkeypatch):
        with pytest.raises(DatasetError, match=r'zz/huge\.png: image is 16384x16384, but the first image 00000/img00000000\.png '
                                               r'is 256x256; all images must match \(refused before decoding\)'):
            d.validate()


def test_error_wrong_channel_count(tmp_path):
    rgba = np.random.RandomState(0).randint(0, 256, size=[8, 8, 4]).astype(np.uint8)
    d = ImageFolderDataset(_dataset_with(tmp_path, {'zz/alpha.png': _png_bytes(rgba)}))
    with pytest.raises(DatasetError, match=r'zz/alpha\.png: image has 4 channels'):
        d[2]
    gray = _png_bytes(_random_images(1, channels=1)[0])
    d = ImageFolderDataset(_dataset_with(tmp_path / 'g', {'zz/gray.png': gray}))
    with pytest.raises(DatasetError, match=r'zz/gray\.png: image is 8x8 with 1 channel'):
        d[2]
    with pytest.raises(DatasetError, match=r'first\.png: image has 4 channels'):
        ImageFolderDataset(_write_folder(tmp_path / 'h', {'first.png': _png_bytes(rgba)}))


def test_error_16bit(tmp_path):
    img = PIL.Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    assert img.mode == 'I;16'
    buf = io.BytesIO()
    img.save(buf, format='png')
    with pytest.raises(DatasetError, match=r'deep\.png: uint16 pixels \(16-bit image\)'):
        ImageFolderDataset(_write_folder(tmp_path, {'deep.png': buf.getvalue()}))


def test_error_non_square_and_non_power_of_two(tmp_path):
    rect = np.zeros([8, 16, 3], np.uint8)
    with pytest.raises(DatasetError, match=r'rect\.png: image is 16x8 \(WxH\); images must be square'):
        ImageFolderDataset(_write_folder(tmp_path / 'a', {'rect.png': _png_bytes(rect)}))
    with pytest.raises(DatasetError, match=r'odd\.png: resolution 12 is not a power of two'):
        ImageFolderDataset(_write_folder(tmp_path / 'b', {'odd.png': _png_bytes(np.zeros([12, 12, 3], np.uint8))}))
    with pytest.raises(DatasetError, match=r'img00000000\.png: image resolution is 8, expected 16'):
        ImageFolderDataset(_dataset_with(tmp_path / 'c', {}), resolution=16)


def test_error_label_mismatch(tmp_path):
    images = _random_images(3)
    files = _dataset_files(images, labels=[0, 1, 2])
    meta = json.loads(files['dataset.json'])
    del meta['labels'][1]
    files['dataset.json'] = json.dumps(meta).encode()
    d = ImageFolderDataset(_write_folder(tmp_path / 'a', files), use_labels=True)
    with pytest.raises(DatasetError, match=r'dataset\.json: no label for image 00000/img00000001\.png \(1 of 3'):
        d.label_shape
    ImageFolderDataset(_write_folder(tmp_path / 'a', files), use_labels=False).label_shape  # not read without use_labels

    files = _dataset_files(images, labels=[[1.0, 2.0], [3.0], [4.0, 5.0]])
    with pytest.raises(DatasetError, match=r'label of 00000/img00000001\.png has 1 values'):
        ImageFolderDataset(_write_folder(tmp_path / 'b', files), use_labels=True).label_shape
    files = _dataset_files(images, labels=[0, -1, 2])
    with pytest.raises(DatasetError, match=r'label of 00000/img00000001\.png is -1'):
        ImageFolderDataset(_write_folder(tmp_path / 'c', files), use_labels=True).get_label(0)
    files = _dataset_files(images, labels=[0, 1, 2])
    files['dataset.json'] = b'{"labels": [oops'
    with pytest.raises(DatasetError, match=r'dataset\.json: not valid JSON'):
        ImageFolderDataset(_write_folder(tmp_path / 'd', files), use_labels=True).label_dim



@pytest.mark.parametrize('labels, text', [
    ([0, [1.0, 2.0], 2], r'label of 00000/img00000001\.png is \[1\.0, 2\.0\] but that of 00000/img00000000\.png is 0; .*not a mix'),
    ([[1.0, 2.0], 3, [0.0, 1.0]], r'label of 00000/img00000001\.png is 3 but that of 00000/img00000000\.png is \[1\.0, 2\.0\]'),
    ([0, float('inf'), 2], r'label of 00000/img00000001\.png is inf; class labels must be integers in \[0, 65535\]'),
    ([0, float('nan'), 2], r'label of 00000/img00000001\.png is nan; class labels'),
    ([0, 1e20, 2], r'label of 00000/img00000001\.png is 1e\+20; class labels'),
    ([0, 10**30, 2], r'label of 00000/img00000001\.png is 1000000000000000000000000000000; class labels'),
    ([0, 65536, 2], r'label of 00000/img00000001\.png is 65536; class labels'),
    ([0, 1.5, 2], r'label of 00000/img00000001\.png is 1\.5; class labels must be integers'),
    ([[0.0], [float('inf')], [1.0]], r'label of 00000/img00000001\.png is \[inf\]; label vectors must contain finite float32'),
    ([[0.0], [1e39], [1.0]], r'label of 00000/img00000001\.png is \[1e\+39\]; label vectors must contain finite float32'),
    ([[0.0], [[1.0]], [1.0]], r'label of 00000/img00000001\.png is \[\[1\.0\]\]; label vectors must contain finite float32 numbers only'),
    ([0, 'cat', 2], r"label of 00000/img00000001\.png is 'cat'; labels must be all integers"),
    ([0, True, 2], r'label of 00000/img00000001\.png is True; labels must be all integers'),
])
def test_bad_labels_are_one_line_naming_dataset_json(tmp_path, labels, text):
    names = [f'00000/img{i:08d}.png' for i in range(3)]
    files = _dataset_files(_random_images(3), names=names)
    files['dataset.json'] = json.dumps({'labels': [[n, l] for n, l in zip(names, labels)]}).encode()  # json writes Infinity, NaN
    d = ImageFolderDataset(_write_folder(tmp_path, files), use_labels=True)
    with pytest.raises(DatasetError, match=r'dataset\.json: ' + text) as info:
        d.label_shape
    assert '\n' not in str(info.value)


def test_deeply_nested_dataset_json_is_refused(tmp_path):
    files = _dataset_files(_random_images(2))
    files['dataset.json'] = b'{"labels": ' + b'[' * 100000 + b']' * 100000 + b'}'
    with pytest.raises(DatasetError, match=r'dataset\.json: not valid JSON \(RecursionError'):
        ImageFolderDataset(_write_folder(tmp_path, files), use_labels=True).label_shape

def test_error_empty_and_missing(tmp_path):
    with pytest.raises(DatasetError, match=r'empty dataset, no image files'):
        ImageFolderDataset(_write_folder(tmp_path / 'e', {'readme.txt': b'x'}))
    with pytest.raises(DatasetError, match=r'Dataset not found: .*nothere'):
        ImageFolderDataset(str(tmp_path / 'nothere'))
    with pytest.raises(DatasetError, match=r'x\.tar: not a folder or a \.zip'):
        ImageFolderDataset(_write_folder(tmp_path, {'x.tar': b'123'}) + '/x.tar')
    (tmp_path / 'bad.zip').write_bytes(b'not a zip')
    with pytest.raises(DatasetError, match=r'bad\.zip: cannot open zip'):
        ImageFolderDataset(str(tmp_path / 'bad.zip'))

#----------------------------------------------------------------------------
# InfiniteSampler.

def _take(it, n):
    return [next(it) for _ in range(n)]


def _reference_epochs(n, seed, epochs):
    """The documented stream without boundary mixing: concatenated RandomState([seed, e]) permutations."""
    return np.concatenate([np.random.RandomState([seed, e]).permutation(n) for e in range(epochs)])


def test_sampler_epochs_are_documented_permutations():
    s = InfiniteSampler(10, seed=3, window_size=0)
    np.testing.assert_array_equal(_take(iter(s), 50), _reference_epochs(10, 3, 5))
    assert _take(iter(InfiniteSampler(4, shuffle=False)), 10) == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]


def test_sampler_window_mixes_only_boundaries():
    n, seed, epochs = 20, 5, 6
    s = InfiniteSampler(n, seed=seed, window_size=0.5)
    lo = 5  # half of the 10-position window lies before each boundary
    mixed = np.array(_take(iter(s), epochs * n))
    plain = _reference_epochs(n, seed, epochs + 1)
    np.testing.assert_array_equal(mixed[:n - lo], plain[:n - lo])  # untouched before the first window
    for e in range(1, epochs):  # each boundary window is a permutation of the plain items there
        a, b = e * n - lo, e * n + lo
        assert sorted(mixed[a:b]) == sorted(plain[a:b])
        np.testing.assert_array_equal(mixed[b:(e + 1) * n - lo], plain[b:(e + 1) * n - lo])
    assert not np.array_equal(mixed, plain[:epochs * n])


@pytest.mark.parametrize('world', [1, 2, 3, 4])
def test_sampler_shards_disjoint_and_cover(world):
    n, per_rank = 7, 20
    full = _take(iter(InfiniteSampler(n, seed=1)), world * per_rank)
    shards = [_take(iter(InfiniteSampler(n, rank=r, num_replicas=world, seed=1)), per_rank) for r in range(world)]
    # Rank r owns positions r, r+R, ...: interleaving the shards gives the global stream back.
    interleaved = [shards[j % world][j // world] for j in range(world * per_rank)]
    assert interleaved == full


@pytest.mark.parametrize('world', [1, 2, 3])
@pytest.mark.parametrize('start', [0, 6, 7, 12, 31])
def test_sampler_resume_equals_uninterrupted(world, start):
    n, total = 7, 60
    for r in range(world):
        uninterrupted = _take(iter(InfiniteSampler(n, rank=r, num_replicas=world, seed=2)), total)
        positions = [r + k * world for k in range(total)]
        expect = [item for item, j in zip(uninterrupted, positions) if j >= start]
        resumed = _take(iter(InfiniteSampler(n, rank=r, num_replicas=world, seed=2, start_index=start)), len(expect))
        assert resumed == expect


def test_sampler_seed_and_errors():
    assert _take(iter(InfiniteSampler(50, seed=0)), 50) != _take(iter(InfiniteSampler(50, seed=1)), 50)
    assert InfiniteSampler(list(range(5))).dataset_size == 5  # accepts a dataset, as NVlabs
    with pytest.raises(ValueError, match='dataset_size'):
        InfiniteSampler(0)
    with pytest.raises(ValueError, match='rank'):
        InfiniteSampler(5, rank=2, num_replicas=2)
    with pytest.raises(ValueError, match='window_size'):
        InfiniteSampler(5, window_size=2)
    with pytest.raises(ValueError, match='start_index'):
        InfiniteSampler(5, start_index=-1)


def test_sampler_with_dataloader(labeled):
    _, _, _, zpath = labeled
    d = ImageFolderDataset(zpath)
    sampler = InfiniteSampler(d, seed=0, start_index=4)
    it = iter(torch.utils.data.DataLoader(d, sampler=sampler, batch_size=4))
    imgs, _ = next(it)
    expect = _take(iter(sampler), 4)
    for k in range(4):
        np.testing.assert_array_equal(imgs[k].numpy(), d[expect[k]][0])

#----------------------------------------------------------------------------
# Demo dataset.

@pytest.fixture(scope='module')
def demo_cache(tmp_path_factory):
    """The default demo dataset generated once into a private cache dir (timed)."""
    cache = tmp_path_factory.mktemp('cache')
    old = os.environ.get('GANFORGE_CACHE_DIR')
    os.environ['GANFORGE_CACHE_DIR'] = str(cache)
    try:
        t0 = time.time()
        path = demo_dataset.resolve_data_path('demo')
        yield cache, path, time.time() - t0
    finally:
        if old is None:
            del os.environ['GANFORGE_CACHE_DIR']
        else:
            os.environ['GANFORGE_CACHE_DIR'] = old


def test_demo_default_generation(demo_cache):
    cache, path, seconds = demo_cache
    assert path == os.path.join(str(cache), 'datasets', 'demo-32-v1.zip') and os.path.isfile(path)
    assert seconds < 60, f'generating the demo dataset took {seconds:.1f}s'
    assert [f for f in os.listdir(os.path.dirname(path)) if f.startswith('.tmp-')] == []
    d = ImageFolderDataset(path, use_labels=True)
    assert len(d) == 2000 and d.image_shape == [3, 32, 32] and d.label_shape == [3] and d.has_onehot_labels
    assert demo_dataset.resolve_data_path('demo') == path  # second call: cached
    assert ImageFolderDataset('demo').path == path  # demo names work as dataset paths


def test_demo_deterministic_and_matches_render(tmp_path):
    a = demo_dataset.ensure_demo_dataset(resolution=16, num_images=60, path=str(tmp_path / 'a.zip'), verbose=False)
    b = demo_dataset.ensure_demo_dataset(resolution=16, num_images=60, path=str(tmp_path / 'b.zip'), verbose=False)
    digest = lambda p: hashlib.sha256(open(p, 'rb').read()).hexdigest()
    assert digest(a) == digest(b)
    images, labels = demo_dataset.render_demo_images(60, 16)
    assert images.shape == (60, 16, 16, 3) and images.dtype == np.uint8
    assert set(labels.tolist()) == {0, 1, 2}
    d = ImageFolderDataset(a, use_labels=True)
    for i in (0, 17, 59):
        np.testing.assert_array_equal(d[i][0], images[i].transpose(2, 0, 1))
        assert int(np.argmax(d[i][1])) == labels[i]
    # The first images do not depend on how many are rendered (per-image parameters and noise).
    np.testing.assert_array_equal(demo_dataset.render_demo_images(5, 16)[0], images[:5])


def test_demo_has_structure():
    images, labels = demo_dataset.render_demo_images(30, 32)
    assert images.std() > 30  # not flat
    center = images[:, 12:20, 12:20].astype(np.float64).mean(axis=(1, 2))
    corner = images[:, :4, :4].astype(np.float64).mean(axis=(1, 2))
    assert np.mean(np.abs(center - corner).sum(axis=1) > 60) > 0.7  # the shape stands out from the background


def test_demo_names_and_passthrough(tmp_path, monkeypatch):
    monkeypatch.setenv('GANFORGE_CACHE_DIR', str(tmp_path / 'cache'))
    assert demo_dataset.resolve_data_path('/some/data.zip') == '/some/data.zip'
    assert demo_dataset.demo_resolution('demo') == 32 and demo_dataset.demo_resolution('demo64') == 64
    p16 = demo_dataset.resolve_data_path('demo16')
    assert p16.endswith('demo-16-v1.zip') and ImageFolderDataset(p16).resolution == 16
    monkeypatch.chdir(tmp_path)
    os.makedirs('demo')
    assert demo_dataset.resolve_data_path('demo') == 'demo'  # an existing folder of that name wins
    with pytest.raises(ValueError, match='power of two'):
        demo_dataset.ensure_demo_dataset(resolution=24, path=str(tmp_path / 'x.zip'))
    with pytest.raises(ValueError, match='Unknown demo dataset'):
        demo_dataset.demo_resolution('demo8')

#----------------------------------------------------------------------------
