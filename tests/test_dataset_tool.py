"""dataset_tool.py: conversion round trips, NVlabs crop/resize semantics, overwrite protection, bad input."""

import hashlib
import io
import json
import os
import pickle
import tarfile
import zipfile

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import dataset_tool
from dataset_tool import DatasetToolError, convert_dataset
from training.dataset import ImageFolderDataset

#----------------------------------------------------------------------------

def _save(path, arr, fmt='png', **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    PIL.Image.fromarray(arr).save(path, format=fmt, **kwargs)


def _rand(h, w, c=3, seed=0):
    shape = [h, w] + ([c] if c > 1 else [])
    return np.random.RandomState(seed).randint(0, 256, size=shape).astype(np.uint8)


@pytest.fixture
def src(tmp_path):
    """Folder with 5 RGB 8x8 PNGs in two subfolders (listed out of order) and labels."""
    root = tmp_path / 'src'
    names = ['b/3.png', 'a/1.png', 'a/2.png', 'b/10.png', 'c.png']
    images = {n: _rand(8, 8, seed=i) for i, n in enumerate(names)}
    for n, img in images.items():
        _save(str(root / n), img)
    labels = {n: i % 3 for i, n in enumerate(names)}
    (root / 'dataset.json').write_text(json.dumps({'labels': [[n, l] for n, l in labels.items()]}))
    (root / 'notes.txt').write_text('not an image')
    return str(root), images, labels


def _sorted_names(images):
    return sorted(images)


def _digest(path):
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()


def test_folder_to_zip_round_trip(src, tmp_path):
    root, images, labels = src
    dest = str(tmp_path / 'out.zip')
    result = convert_dataset(root, dest, verbose=False)
    assert (result.num_images, result.resolution, result.channels, result.labels) == (5, 8, 3, True)
    with zipfile.ZipFile(dest) as z:
        names = sorted(z.namelist())
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
        meta = json.loads(z.read('dataset.json'))
    assert names == ['00000/img00000000.png', '00000/img00000001.png', '00000/img00000002.png',
                     '00000/img00000003.png', '00000/img00000004.png', 'dataset.json']
    d = ImageFolderDataset(dest, use_labels=True)
    for i, n in enumerate(_sorted_names(images)):  # sorted source order, pixel-exact
        np.testing.assert_array_equal(d[i][0], images[n].transpose(2, 0, 1))
        assert meta['labels'][i] == [f'00000/img{i:08d}.png', labels[n]]
        assert int(np.argmax(d[i][1])) == labels[n]
    assert [f for f in os.listdir(tmp_path) if f.startswith('.tmp-')] == []


def test_folder_zip_and_tar_sources_give_identical_zips(src, tmp_path):
    root, _, _ = src
    convert_dataset(root, str(tmp_path / 'a.zip'), verbose=False)
    with tarfile.open(tmp_path / 'src.tar.gz', 'w:gz') as t:  # a tarred folder: common top-level dir
        t.add(root, arcname='mydata')
    convert_dataset(str(tmp_path / 'src.tar.gz'), str(tmp_path / 'b.zip'), verbose=False)
    with zipfile.ZipFile(tmp_path / 'src.zip', 'w') as z:
        for dirpath, _, files in os.walk(root):
            for f in files:
                z.write(os.path.join(dirpath, f), os.path.relpath(os.path.join(dirpath, f), root))
    convert_dataset(str(tmp_path / 'src.zip'), str(tmp_path / 'c.zip'), verbose=False)
    assert _digest(tmp_path / 'a.zip') == _digest(tmp_path / 'b.zip') == _digest(tmp_path / 'c.zip')


def test_folder_dest_and_grayscale(tmp_path):
    gray = [_rand(4, 4, c=1, seed=s) for s in range(3)]
    for i, g in enumerate(gray):
        _save(str(tmp_path / 'src' / f'{i}.png'), g)
    result = convert_dataset(str(tmp_path / 'src'), str(tmp_path / 'out'), verbose=False)
    assert result.channels == 1 and not result.labels
    assert json.loads((tmp_path / 'out' / 'dataset.json').read_text()) == {'labels': None}
    d = ImageFolderDataset(str(tmp_path / 'out'))
    assert d.image_shape == [1, 4, 4]
    for i in range(3):
        np.testing.assert_array_equal(d[i][0][0], gray[i])


def test_jpeg_and_rgba_sources(tmp_path):
    _save(str(tmp_path / 'src' / 'a.jpg'), _rand(8, 8), fmt='jpeg', quality=90)
    rgba = _rand(8, 8, c=4, seed=1)
    _save(str(tmp_path / 'src' / 'b.png'), rgba)
    convert_dataset(str(tmp_path / 'src'), str(tmp_path / 'o.zip'), verbose=False)
    d = ImageFolderDataset(str(tmp_path / 'o.zip'))
    expect_jpg = np.array(PIL.Image.open(tmp_path / 'src' / 'a.jpg').convert('RGB'))
    np.testing.assert_array_equal(d[0][0], expect_jpg.transpose(2, 0, 1))
    np.testing.assert_array_equal(d[1][0], rgba[:, :, :3].transpose(2, 0, 1))  # alpha dropped, as PIL convert('RGB')

#----------------------------------------------------------------------------
# Crop and resize against PIL computed independently.

@pytest.mark.parametrize('filt,resample', [('lanczos', PIL.Image.LANCZOS), ('box', PIL.Image.BOX)])
def test_center_crop_matches_pil(tmp_path, filt, resample):
    img = _rand(12, 20)  # H=12, W=20: the centered 12x12 square starts at x=4
    _save(str(tmp_path / 'src' / 'x.png'), img)
    convert_dataset(str(tmp_path / 'src'), str(tmp_path / 'o.zip'), transform='center-crop', resolution='8x8', resize_filter=filt, verbose=False)
    expect = np.array(PIL.Image.fromarray(img).crop((4, 0, 16, 12)).resize((8, 8), resample))
    np.testing.assert_array_equal(ImageFolderDataset(str(tmp_path / 'o.zip'))[0][0], expect.transpose(2, 0, 1))


def test_center_crop_wide_matches_pil(tmp_path):
    wide = _rand(20, 32)                # W=32, H=20, output 16x8: band height round(16*20/32)=10 at rows 5..15
    small = _rand(20, 12, seed=1)       # narrower than 16: dropped
    _save(str(tmp_path / 'src' / 'a.png'), wide)
    _save(str(tmp_path / 'src' / 'b.png'), small)
    result = convert_dataset(str(tmp_path / 'src'), str(tmp_path / 'o.zip'), transform='center-crop-wide', resolution=(16, 8), verbose=False)
    assert result.num_images == 1 and result.num_dropped == 1
    band = np.array(PIL.Image.fromarray(wide).crop((0, 5, 32, 15)).resize((16, 8), PIL.Image.LANCZOS))
    expect = np.zeros([16, 16, 3], np.uint8)
    expect[4:12] = band
    np.testing.assert_array_equal(ImageFolderDataset(str(tmp_path / 'o.zip'))[0][0], expect.transpose(2, 0, 1))


def test_resize_only_matches_pil(tmp_path):
    img = _rand(16, 16)
    _save(str(tmp_path / 'src' / 'x.png'), img)
    convert_dataset(str(tmp_path / 'src'), str(tmp_path / 'o.zip'), resolution='8x8', resize_filter='box', verbose=False)
    expect = np.array(PIL.Image.fromarray(img).resize((8, 8), PIL.Image.BOX))
    np.testing.assert_array_equal(ImageFolderDataset(str(tmp_path / 'o.zip'))[0][0], expect.transpose(2, 0, 1))

#----------------------------------------------------------------------------
# Options and errors.

def test_max_images(src, tmp_path):
    root, images, _ = src
    result = convert_dataset(root, str(tmp_path / 'o.zip'), max_images=3, verbose=False)
    assert result.num_images == 3
    d = ImageFolderDataset(str(tmp_path / 'o.zip'))
    assert len(d) == 3
    np.testing.assert_array_equal(d[2][0], images[_sorted_names(images)[2]].transpose(2, 0, 1))


def test_refuses_overwrite_without_force(src, tmp_path):
    root, _, _ = src
    dest = tmp_path / 'o.zip'
    dest.write_bytes(b'precious')
    with pytest.raises(DatasetToolError, match=r'--dest: .*o\.zip already exists; pass --force'):
        convert_dataset(root, str(dest), verbose=False)
    assert dest.read_bytes() == b'precious'
    convert_dataset(root, str(dest), force=True, verbose=False)
    assert len(ImageFolderDataset(str(dest))) == 5

    folder = tmp_path / 'outdir'
    convert_dataset(root, str(folder), max_images=3, verbose=False)
    with pytest.raises(DatasetToolError, match=r'outdir already exists; pass --force'):
        convert_dataset(root, str(folder), verbose=False)
    convert_dataset(root, str(folder), force=True, verbose=False)  # a dataset folder is replaced as a whole
    assert len(ImageFolderDataset(str(folder))) == 5 and sorted(os.listdir(tmp_path)) == ['o.zip', 'outdir', 'src']

    # --force never deletes what dataset_tool did not write: a folder with any other file is refused as it is.
    (folder / 'keep.txt').write_text('x')
    for force in (False, True):
        with pytest.raises(DatasetToolError, match=r'outdir holds files that are not part of a dataset written by dataset_tool '
                                                   r'\(e\.g\. .*keep\.txt\); --force replaces only such a dataset'):
            convert_dataset(root, str(folder), force=force, verbose=False)
    assert (folder / 'keep.txt').read_text() == 'x' and len(ImageFolderDataset(str(folder))) == 5


def _tree_digest(root):
    """{relative path: sha256} of every file under `root`."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            out[os.path.relpath(os.path.join(dirpath, f), root)] = _digest(os.path.join(dirpath, f))
    return out


def test_dest_around_source_leaves_source_byte_identical(src, tmp_path):
    root, _, _ = src
    (tmp_path / 'unrelated.txt').write_text('beside the source')
    before, beside = _tree_digest(root), _tree_digest(tmp_path)
    link = tmp_path / 'link'
    os.symlink(root, link)
    cases = [
        (root, 'is the same path as --source'),
        (str(link), 'is the same path as --source'),                       # equal once symlinks are resolved
        (os.path.join(root, 'out.zip'), 'is inside --source'),              # would be read back on the next run
        (os.path.join(root, 'a', 'out'), 'is inside --source'),
        (str(link / 'out.zip'), 'is inside --source'),
        (str(tmp_path), 'contains --source'),                               # --force would have deleted the source
        (os.path.dirname(str(tmp_path)), 'contains --source'),
    ]
    for dest, text in cases:
        for force in (False, True):
            with pytest.raises(DatasetToolError, match=rf'--dest: .* {text}'):
                convert_dataset(root, dest, force=force, verbose=False)
            res = CliRunner().invoke(dataset_tool.main, ['--source', root, '--dest', dest] + (['--force'] if force else []))
            assert res.exit_code == 1 and text in res.output
    assert _tree_digest(root) == before and _tree_digest(tmp_path) == beside


def test_truncated_archives_are_one_line_naming_the_file(src, tmp_path):
    root, _, _ = src
    full = tmp_path / 'full.tar.gz'
    with tarfile.open(full, 'w:gz') as t:
        t.add(root, arcname='src')
    data = full.read_bytes()
    for cut in (len(data) // 2, len(data) - 12):
        (tmp_path / 'cut.tar.gz').write_bytes(data[:cut])
        res = CliRunner().invoke(dataset_tool.main, ['--source', str(tmp_path / 'cut.tar.gz'), '--dest', str(tmp_path / 'o.zip')])
        assert res.exit_code == 1 and not isinstance(res.exception, (EOFError, OSError)), res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and 'cut.tar.gz: truncated or damaged archive' in lines[0], res.output
        assert 'Compressed file ended before the end-of-stream marker was reached' in lines[0]
    convert_dataset(root, str(tmp_path / 'full.zip'), verbose=False)
    (tmp_path / 'cut.zip').write_bytes((tmp_path / 'full.zip').read_bytes()[:300])
    with pytest.raises(DatasetToolError, match=r'--source: .*cut\.zip: truncated or damaged zip archive'):
        convert_dataset(str(tmp_path / 'cut.zip'), str(tmp_path / 'o.zip'), verbose=False)
    assert not (tmp_path / 'o.zip').exists()


def test_channels_flag_converts_mixed_gray_and_rgb(tmp_path):
    rgb, gray = _rand(8, 8, seed=1), _rand(8, 8, c=1, seed=2)
    _save(str(tmp_path / 's' / 'a.png'), rgb)
    _save(str(tmp_path / 's' / 'b.png'), gray)
    with pytest.raises(DatasetToolError, match=r'b\.png: image is 8x8 with 1 channel\(s\).*first image a\.png is 8x8 with 3; '
                                               r'all images must match\. Use --channels=rgb or --channels=gray') as info:
        convert_dataset(str(tmp_path / 's'), str(tmp_path / 'x.zip'), verbose=False)
    assert '--resolution' not in str(info.value)  # the size is fine: the hint names only the fix that applies
    convert_dataset(str(tmp_path / 's'), str(tmp_path / 'rgb.zip'), channels='rgb', verbose=False)
    d = ImageFolderDataset(str(tmp_path / 'rgb.zip'))
    np.testing.assert_array_equal(d[0][0], rgb.transpose(2, 0, 1))
    np.testing.assert_array_equal(d[1][0], np.stack([gray] * 3))  # gray -> RGB repeats the value
    res = CliRunner().invoke(dataset_tool.main, ['--source', str(tmp_path / 's'), '--dest', str(tmp_path / 'gray.zip'), '--channels=gray'])
    assert res.exit_code == 0, res.output
    d = ImageFolderDataset(str(tmp_path / 'gray.zip'))
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    luma = np.floor((r * 19595 + g * 38470 + b * 7471 + 0x8000) / 65536)  # ITU-R 601-2, Pillow's rounding
    np.testing.assert_array_equal(d[0][0][0], luma.astype(np.uint8))
    np.testing.assert_array_equal(d[1][0][0], gray)


def test_source_image_over_pixel_limit_refused_before_decoding(tmp_path, monkeypatch):
    from tests.test_dataset import _bomb_png, no_decoding_patch
    _save(str(tmp_path / 's' / 'a.png'), _rand(8, 8))
    (tmp_path / 's' / 'b.png').write_bytes(_bomb_png(30000, 30000))
    with no_decoding_patch(monkeypatch):
        with pytest.raises(DatasetToolError, match=r'b\.png: image is 30000x30000; refused before decoding: source images may have at most 134217728'):
            convert_dataset(str(tmp_path / 's'), str(tmp_path / 'o.zip'), verbose=False)
    assert not (tmp_path / 'o.zip').exists()


def test_bad_image_names_file_and_writes_nothing(src, tmp_path):
    root, _, _ = src
    with open(os.path.join(root, 'b', '5.png'), 'wb') as f:
        f.write(b'\x89PNG broken')
    with pytest.raises(DatasetToolError, match=r'b/5\.png: not a readable image'):
        convert_dataset(root, str(tmp_path / 'o.zip'), verbose=False)
    assert sorted(os.listdir(tmp_path)) == ['src']  # no partial output, no temporary left behind


def test_inconsistent_and_invalid_sizes(tmp_path):
    _save(str(tmp_path / 'a' / '1.png'), _rand(8, 8))
    _save(str(tmp_path / 'a' / '2.png'), _rand(16, 16))
    with pytest.raises(DatasetToolError, match=r'2\.png: image is 16x16 with 3 channel\(s\).*first image 1\.png is 8x8.*--resolution'):
        convert_dataset(str(tmp_path / 'a'), str(tmp_path / 'o.zip'), verbose=False)
    _save(str(tmp_path / 'b' / 'rect.png'), _rand(8, 16))
    with pytest.raises(DatasetToolError, match=r'rect\.png: image is 16x8.*must be square.*--transform=center-crop'):
        convert_dataset(str(tmp_path / 'b'), str(tmp_path / 'o.zip'), verbose=False)
    _save(str(tmp_path / 'c' / 'odd.png'), _rand(12, 12))
    with pytest.raises(DatasetToolError, match=r'odd\.png: .*power of two'):
        convert_dataset(str(tmp_path / 'c'), str(tmp_path / 'o.zip'), verbose=False)


def test_bad_options_and_sources(src, tmp_path):
    root, _, _ = src
    out = str(tmp_path / 'o.zip')
    with pytest.raises(DatasetToolError, match=r'--transform=center-crop needs --resolution'):
        convert_dataset(root, out, transform='center-crop', verbose=False)
    with pytest.raises(DatasetToolError, match=r'--resolution: cannot parse'):
        convert_dataset(root, out, resolution='big', verbose=False)
    with pytest.raises(DatasetToolError, match=r'--source: .*missing does not exist'):
        convert_dataset(str(tmp_path / 'missing'), out, verbose=False)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DatasetToolError, match=r'--source: no images found'):
        convert_dataset(str(tmp_path / 'empty'), out, verbose=False)
    (tmp_path / 'x.bin').write_bytes(b'123')
    with pytest.raises(DatasetToolError, match=r'--source: .*x\.bin is not a folder, a \.zip or a tar'):
        convert_dataset(str(tmp_path / 'x.bin'), out, verbose=False)
    with open(os.path.join(root, 'dataset.json'), 'w') as f:
        f.write('{"labels": 5}')
    with pytest.raises(DatasetToolError, match=r'dataset\.json: expected'):
        convert_dataset(root, out, verbose=False)


def test_partial_labels_dropped_with_warning(src, tmp_path, capsys):
    root, images, labels = src
    meta = {'labels': [[n, l] for n, l in labels.items() if n != 'c.png']}
    with open(os.path.join(root, 'dataset.json'), 'w') as f:
        json.dump(meta, f)
    assert not convert_dataset(root, str(tmp_path / 'o.zip'), verbose=False).labels
    assert 'no label for 1 of 5 images (e.g. c.png)' in capsys.readouterr().err


def _cifar_like_tarball(path, n_per_batch=2, payload=None):
    """A tiny tarball with the layout of cifar-10-python.tar.gz (numpy pickles, CHW-flattened rows)."""
    rnd = np.random.RandomState(0)
    data = rnd.randint(0, 256, size=[5, n_per_batch, 3072]).astype(np.uint8)
    labels = rnd.randint(0, 10, size=[5, n_per_batch])
    with tarfile.open(path, 'w:gz') as t:
        for b in range(5):
            obj = payload if payload is not None else {'data': data[b], 'labels': [int(l) for l in labels[b]], 'batch_label': 'x'}
            blob = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f'cifar-10-batches-py/data_batch_{b + 1}')
            info.size = len(blob)
            t.addfile(info, io.BytesIO(blob))
    return data.reshape(-1, 3, 32, 32), labels.reshape(-1)


def test_cifar10_tarball(tmp_path):
    data, labels = _cifar_like_tarball(tmp_path / 'cifar-10-python.tar.gz')
    result = convert_dataset(str(tmp_path / 'cifar-10-python.tar.gz'), str(tmp_path / 'c.zip'), verbose=False)
    assert (result.num_images, result.resolution, result.labels) == (10, 32, True)
    d = ImageFolderDataset(str(tmp_path / 'c.zip'), use_labels=True)
    for i in range(10):
        np.testing.assert_array_equal(d[i][0], data[i])
        assert d.get_details(i).raw_label == labels[i]
    _cifar_like_tarball(tmp_path / 'evil.tar.gz', payload=os.system)  # a pickle that names a function: refused
    with pytest.raises(DatasetToolError, match=r'data_batch_1: not a CIFAR-10 python batch.*refusing to load posix.system'):
        convert_dataset(str(tmp_path / 'evil.tar.gz'), str(tmp_path / 'e.zip'), verbose=False)


def test_cli(src, tmp_path):
    root, _, _ = src
    runner = CliRunner()
    res = runner.invoke(dataset_tool.main, ['--source', root, '--dest', str(tmp_path / 'o.zip'), '--resolution=4x4', '--resize-filter=box'])
    assert res.exit_code == 0, res.output
    assert 'Wrote 5 images (4x4, 3 channel(s), labels)' in res.output
    res = runner.invoke(dataset_tool.main, ['--source', root, '--dest', str(tmp_path / 'o.zip')])
    assert res.exit_code == 1 and 'pass --force' in res.output
    res = runner.invoke(dataset_tool.main, ['--source', root, '--dest', str(tmp_path / 'p.zip'), '--resolution=wide'])
    assert res.exit_code == 2 and '--resolution' in res.output
    res = runner.invoke(dataset_tool.main, ['--source', root, '--dest', str(tmp_path / 'p.zip'), '--max-images=0'])
    assert res.exit_code == 2 and '--max-images' in res.output

#----------------------------------------------------------------------------
