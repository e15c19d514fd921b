"""Detector loading: NVlabs-style TorchScript files (.pt and pickle-wrapped .pkl), refusal of other
pickles without executing them, the detector folder / environment variable, missing-file and checksum
errors, and the native FID Inception-v3 loading a pytorch-fid state_dict strictly."""

import os
import pickle

import numpy as np
import pytest
import torch

from metrics import detectors, inception
from tests import metrics_fixtures as mf
from tests.metrics_fixtures import single_thread  # noqa: F401 (autouse fixture)

#----------------------------------------------------------------------------

@pytest.fixture
def images():
    return torch.from_numpy(np.random.RandomState(0).randint(0, 256, size=[5, 3, 8, 8]).astype(np.uint8))


@pytest.mark.parametrize('fmt, protocol', [('pt', None), ('pkl', 2), ('pkl', 4)])
def test_torchscript_detectors_load_and_match_eager(tmp_path, images, fmt, protocol):
    # Protocol 2 stores bytes as a latin-1 string passed to _codecs.encode; 4 as BINBYTES.
    inc_path, vgg_path = mf.write_detectors(str(tmp_path), fmt=fmt, protocol=protocol or 4)
    inc = detectors.get_detector(inc_path, device='cpu')
    vgg = detectors.get_detector(vgg_path, device='cpu')
    assert isinstance(inc, torch.jit.ScriptModule)
    torch.testing.assert_close(inc(images, return_features=True), mf.TinyInception(1)(images, return_features=True))
    torch.testing.assert_close(inc(images, no_output_bias=True), mf.TinyInception(1)(images, no_output_bias=True))
    torch.testing.assert_close(vgg(images.float(), resize_images=False, return_lpips=True), mf.TinyVGG(2)(images.float(), return_lpips=True))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))  # would create the marker file if executed


def test_pickle_without_torchscript_is_refused_unexecuted(tmp_path):
    marker = str(tmp_path / 'executed')
    path = str(tmp_path / 'inception-2015-12-05.pkl')
    with open(path, 'wb') as f:
        pickle.dump({'net': _Evil(marker), 'w': torch.zeros(3).numpy()}, f)
    with pytest.raises(detectors.DetectorFormatError, match='exactly one TorchScript archive, found 0'):
        detectors.load_detector_file(path)
    assert not os.path.exists(marker)


def test_garbage_pt_is_refused(tmp_path):
    path = str(tmp_path / 'vgg16.pt')
    with open(path, 'wb') as f:
        f.write(b'not a zip at all')
    with pytest.raises(detectors.DetectorFormatError, match='not a TorchScript archive'):
        detectors.load_detector_file(path)


def test_detector_dir_by_name_url_and_env(tmp_path, monkeypatch):
    mf.write_detectors(str(tmp_path), fmt='pt')
    official_url = detectors.KNOWN_DETECTORS[detectors.INCEPTION][1]['url']  # the .pkl URL; the .pt in the folder serves
    assert detectors.resolve_detector(detectors.INCEPTION, detector_dir=str(tmp_path)) == str(tmp_path / 'inception-2015-12-05.pt')
    assert detectors.resolve_detector(official_url, detector_dir=str(tmp_path)) == str(tmp_path / 'inception-2015-12-05.pt')
    monkeypatch.setenv(detectors.DETECTOR_DIR_ENV, str(tmp_path))
    assert detectors.resolve_detector('vgg16') == str(tmp_path / 'vgg16.pt')


def test_missing_detector_names_file_and_folder(tmp_path):
    with pytest.raises(detectors.DetectorNotFoundError) as e:
        detectors.get_detector('vgg16', detector_dir=str(tmp_path))
    msg = str(e.value)
    assert 'vgg16.pt' in msg and 'vgg16.pkl' in msg and str(tmp_path) in msg and 'https://' in msg


def test_missing_local_file():
    with pytest.raises(detectors.DetectorNotFoundError, match='not found: /nonexistent/x.pt'):
        detectors.resolve_detector('/nonexistent/x.pt')


def test_checksum_mismatch_of_official_file(tmp_path):
    path = tmp_path / 'pt_inception-2015-12-05-6726825d.pth'
    path.write_bytes(b'corrupt download')
    with pytest.raises(detectors.DetectorChecksumError, match=r'Checksum mismatch .*starting with 6726825d'):
        detectors.resolve_detector(detectors.PT_INCEPTION, detector_dir=str(tmp_path))


def test_detector_identity_changes_with_content(tmp_path):
    a = mf.write_detectors(str(tmp_path / 'a'), inception_seed=1)[0]
    b = mf.write_detectors(str(tmp_path / 'b'), inception_seed=5)[0]
    ia, ib = detectors.detector_identity(a), detectors.detector_identity(b)
    assert ia['name'] == ib['name'] == detectors.INCEPTION
    assert ia['sha256'] != ib['sha256']

#----------------------------------------------------------------------------
# Native Inception-v3 (pytorch-fid weights layout).

@pytest.fixture(scope='module')
def native_state_dict():
    torch.manual_seed(0)
    model = inception.InceptionV3FID()
    return {k: v for k, v in model.state_dict().items() if not k.endswith('num_batches_tracked')}


def test_native_inception_architecture_matches_pytorch_fid_layout(native_state_dict):
    # torchvision Inception3 without AuxLogits (27,161,264 - 3,326,696 parameters) with a 1008-way fc.
    model = inception.InceptionV3FID()
    assert sum(p.numel() for p in model.parameters()) == 23850960
    shapes = {k: list(v.shape) for k, v in native_state_dict.items()}
    assert shapes['Conv2d_1a_3x3.conv.weight'] == [32, 3, 3, 3]
    assert shapes['Conv2d_4a_3x3.bn.running_var'] == [192]
    assert shapes['Mixed_5b.branch_pool.conv.weight'] == [32, 192, 1, 1]
    assert shapes['Mixed_6e.branch7x7dbl_5.conv.weight'] == [192, 192, 1, 7]
    assert shapes['Mixed_7a.branch7x7x3_4.conv.weight'] == [192, 192, 3, 3]
    assert shapes['Mixed_7c.branch3x3dbl_3b.conv.weight'] == [384, 384, 3, 1]
    assert shapes['fc.weight'] == [1008, 2048]
    assert len(native_state_dict) == 94 * 5 + 2  # 94 conv+bn layers (weight, bn weight/bias/mean/var) + fc


def test_native_inception_loads_strictly_and_runs(tmp_path, native_state_dict):
    path = str(tmp_path / 'pt_inception-2015-12-05-6726825d.pth')
    torch.save(native_state_dict, path)
    model = detectors.get_detector(path, device='cpu')  # explicit path: no official checksum required
    assert isinstance(model, inception.InceptionV3FID)
    img = torch.from_numpy(np.random.RandomState(1).randint(0, 256, size=[1, 3, 75, 75]).astype(np.uint8))  # smallest input
    feats = model(img, return_features=True, resize_images=False)
    assert feats.shape == (1, 2048) and torch.isfinite(feats).all()
    probs = model(img, no_output_bias=True, resize_images=False)
    assert probs.shape == (1, 1008)
    torch.testing.assert_close(probs, torch.softmax(feats @ native_state_dict['fc.weight'].T, 1), rtol=1e-4, atol=1e-7)


def test_native_inception_preprocessing_matches_pytorch_fid():
    img = torch.from_numpy(np.random.RandomState(2).randint(0, 256, size=[2, 3, 16, 16]).astype(np.uint8))
    x = inception.InceptionV3FID.preprocess(img)
    ref = 2 * torch.nn.functional.interpolate(img.double() / 255, size=(299, 299), mode='bilinear', align_corners=False) - 1
    assert x.shape == (2, 3, 299, 299) and x.dtype == torch.float32
    torch.testing.assert_close(x.double(), ref, rtol=0, atol=1e-5)  # float32 interpolation
    assert x.min() >= -1 and x.max() <= 1
    with pytest.raises(ValueError, match=r'img must be \[N, 3, H, W\], got \[2, 1, 16, 16\]'):
        inception.InceptionV3FID.preprocess(img[:, :1])


def test_native_inception_rejects_wrong_state_dicts(native_state_dict):
    bad = dict(native_state_dict)
    del bad['Mixed_6a.branch3x3.conv.weight']
    with pytest.raises(ValueError, match=r'1 missing keys \[.Mixed_6a.branch3x3.conv.weight.\]'):
        inception.load_state_dict_strict(inception.InceptionV3FID(), bad)
    bad = dict(native_state_dict, **{'fc.weight': torch.zeros([1000, 2048])})
    with pytest.raises(ValueError, match=r'fc.weight has shape \[1000, 2048\], expected \[1008, 2048\]'):
        inception.load_state_dict_strict(inception.InceptionV3FID(), bad)
    bad = dict(native_state_dict, **{'AuxLogits.fc.weight': torch.zeros([1008, 768])})
    with pytest.raises(ValueError, match='unexpected keys'):
        inception.load_state_dict_strict(inception.InceptionV3FID(), bad)


def test_native_inception_pool_quirks():
    # Mixed_7c pools with max; the other blocks' average pools ignore the zero padding.
    x = torch.rand([1, 4, 5, 5]) + 1
    avg = inception._avg_pool_same(x)
    torch.testing.assert_close(avg[0, :, 0, 0], x[0, :, :2, :2].mean(dim=[1, 2]))
    assert inception.InceptionV3FID().Mixed_7c.pool == 'max' and inception.InceptionV3FID().Mixed_7b.pool == 'avg'

#----------------------------------------------------------------------------


def test_failed_download_says_how_to_work_offline(monkeypatch):
    import dnnlib

    def offline(url, **kwargs):
        raise IOError('network is unreachable')
    monkeypatch.setattr(dnnlib.util, 'open_url', offline)
    monkeypatch.delenv(detectors.DETECTOR_DIR_ENV, raising=False)
    with pytest.raises(detectors.DetectorNotFoundError) as e:
        detectors.resolve_detector(detectors.INCEPTION)
    msg = str(e.value)
    assert 'network is unreachable' in msg and '--detector-dir=DIR' in msg and detectors.DETECTOR_DIR_ENV in msg
    assert 'inception-2015-12-05.pt (from https://nvlabs-fi-cdn.nvidia.com/' in msg and 'inception-2015-12-05.pkl (from https://api.ngc.nvidia.com/' in msg


def test_bad_download_is_removed_from_cache(tmp_path, monkeypatch):
    import dnnlib
    cached = tmp_path / 'cached.pth'
    cached.write_bytes(b'truncated download')
    monkeypatch.setattr(dnnlib.util, 'open_url', lambda url, **kwargs: str(cached))
    monkeypatch.delenv(detectors.DETECTOR_DIR_ENV, raising=False)
    with pytest.raises(detectors.DetectorChecksumError, match='pytorch-fid/releases'):
        detectors.resolve_detector(detectors.PT_INCEPTION)
    assert not cached.exists()


def test_native_inception_through_the_metric_pipeline(tmp_path, monkeypatch, native_state_dict):
    # The native detector has the NVlabs call signature: KID on 4 + 4 images (uint8 8x8 -> 299x299 inside).
    from metrics import kernel_inception_distance, metric_utils
    monkeypatch.setenv('GANFORGE_CACHE_DIR', str(tmp_path / 'cache'))
    path = str(tmp_path / 'native.pth')
    torch.save(native_state_dict, path)
    ds = mf.make_tiny_dataset(str(tmp_path / 'tiny.npz'), num_images=4)
    opts = metric_utils.MetricOptions(G=mf.TinyGenerator(), dataset_kwargs=dict(class_name='tests.metrics_fixtures.TinyDataset', path=ds),
                                      device='cpu', inception=path, batch_size=4, data_loader_kwargs=dict(num_workers=0))
    kid = kernel_inception_distance.compute_kid(opts, max_real=4, num_gen=4, num_subsets=2, max_subset_size=4)
    assert np.isfinite(kid)
    (cache_file,) = os.listdir(tmp_path / 'cache' / 'gan-metrics')
    assert cache_file.startswith('tiny-native-')  # an unknown file is keyed by its own name (and sha256)
