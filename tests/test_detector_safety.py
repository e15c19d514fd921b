"""Detector files are data: the static check of TorchScript archives accepts modules built like the
NVlabs Inception-v3 and VGG16-LPIPS files (scripted and traced, .pt and NVlabs .pkl) and refuses archives
that would run file operations, custom __setstate__ or foreign operator namespaces, before anything of
them is compiled or run."""

import copy
import io
import os
import pickle
import warnings
import zipfile
from typing import List, Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metrics import detectors
from tests import metrics_fixtures as mf
from tests.metrics_fixtures import single_thread  # noqa: F401 (autouse fixture)

#----------------------------------------------------------------------------
# Look-alikes of the NVlabs detectors. Public facts about the official files: inception-2015-12-05.pt is
# a TorchScript conversion of the TF graph whose top module (scripted; `model.code` as printed by users
# who ported it) resizes with affine_grid/grid_sample to 299x299, maps [0, 255] to [-1, 1], runs `layers`
# (conv without bias, batch_norm with weight None and eps 0.001, relu, max/avg pooling, Inception blocks
# that cat contiguous branches), reshapes to [-1, 2048] and applies `output` (linear, optionally without
# bias) and softmax. vgg16.pt holds layers.conv1..13, layers.fc1..3 and lpips0..4 (as ported by
# genforce, models/perceptual_model.py) and is called as
# (img, resize_images, return_features, return_lpips). These modules use the same operations, tiny.

class ConvBN(torch.nn.Module):
    def __init__(self, cin, cout, k, stride=1, pad=0, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.nn.Parameter(torch.randn([cout, cin, k, k], generator=g) * 0.3)
        self.register_buffer('beta', torch.randn([cout], generator=g) * 0.1)
        self.register_buffer('mean', torch.randn([cout], generator=g) * 0.1)
        self.register_buffer('var', torch.rand([cout], generator=g) + 0.5)
        self.stride, self.pad = stride, pad

    def forward(self, x):
        x = F.conv2d(x, self.weight, None, self.stride, self.pad)
        x = F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.0, 0.001)
        return F.relu(x)


class InceptionBlock(torch.nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.conv = ConvBN(cin, 4, 1, seed=1)
        self.tower = torch.nn.Sequential(ConvBN(cin, 3, 1, seed=2), ConvBN(3, 4, 3, pad=1, seed=3))
        self.tower_1 = torch.nn.Sequential(torch.nn.AvgPool2d(3, 1, 1), ConvBN(cin, 4, 1, seed=4))
        self.pool = torch.nn.MaxPool2d(3, 1, 1)

    def forward(self, x):
        return torch.cat([self.conv(x).contiguous(), self.tower(x).contiguous(), self.tower_1(x).contiguous(),
                          self.pool(x).contiguous()], 1)


class NVInceptionLike(torch.nn.Module):
    def __init__(self, size=32):
        super().__init__()
        self.size = size
        self.layers = torch.nn.Sequential(ConvBN(3, 4, 3, 2, seed=5), torch.nn.MaxPool2d(3, 2), InceptionBlock(4),
                                          torch.nn.AvgPool2d(7, 7))
        self.output = torch.nn.Linear(16, 10)

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        batch_size, channels, height, width = img.shape
        x = img.to(torch.float32)
        theta = torch.eye(2, 3, device=x.device)
        theta[0, 2] += theta[0, 0] / width - theta[0, 0] / self.size
        theta[1, 2] += theta[1, 1] / height - theta[1, 1] / self.size
        theta = theta.to(x.dtype).unsqueeze(0).repeat([batch_size, 1, 1])
        grid = F.affine_grid(theta, [batch_size, channels, self.size, self.size], align_corners=False)
        x = F.grid_sample(x, grid, mode='bilinear', padding_mode='border', align_corners=False)
        x = (x - 128) / 128
        features = self.layers(x).reshape([-1, 16]).to(torch.float32)
        if return_features:
            return features
        if no_output_bias:
            logits = F.linear(features, self.output.weight)
        else:
            logits = self.output(features)
        return F.softmax(logits, dim=1)


class VGGLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(7)
        for i, (cin, cout) in enumerate([(3, 4), (4, 4), (4, 6)]):
            conv = torch.nn.Conv2d(cin, cout, 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.3)
            setattr(self, f'conv{i + 1}', conv)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        f1 = F.relu(self.conv1(x))
        f2 = F.relu(self.conv2(F.max_pool2d(f1, 2, 2)))
        f3 = F.relu(self.conv3(F.max_pool2d(f2, 2, 2)))
        return [f1, f2, f3]


class NVVGGLike(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = VGGLayers()
        self.fc1 = torch.nn.Linear(6 * 2 * 2, 8)
        g = torch.Generator().manual_seed(8)
        for i, c in enumerate([4, 4, 6]):
            self.register_buffer(f'lpips{i}', torch.rand([c], generator=g))
        self.register_buffer('mean', torch.tensor([123.68, 116.78, 103.94]).reshape(1, 3, 1, 1))

    def forward(self, img: torch.Tensor, resize_images: bool = True, return_features: bool = False,
                return_lpips: bool = False) -> torch.Tensor:
        x = img.to(torch.float32)
        if resize_images:
            x = F.interpolate(x, size=(16, 16), mode='area')
        feats = self.layers(x - self.mean)
        if return_lpips:
            out = []
            for f, w in zip(feats, [self.lpips0, self.lpips1, self.lpips2]):
                f = f / (f.square().sum(dim=1, keepdim=True) + 1e-10).sqrt()
                f = f * w.sqrt().reshape(1, -1, 1, 1)
                out.append(f.flatten(1) / float(f.shape[2] * f.shape[3]) ** 0.5)
            return torch.cat(out, dim=1)
        x = F.adaptive_avg_pool2d(feats[2], [2, 2]).flatten(1)
        x = F.relu(self.fc1(x))
        if return_features:
            return x / x.square().sum(dim=1, keepdim=True).sqrt().clamp(min=1e-8)
        return F.softmax(x, dim=1)


def _save(module):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        torch.jit.save(module, buf)
    return buf.getvalue()


def _scripted(module):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        return torch.jit.script(module)


def _traced_layers(module, example):
    """Trace `module.layers` (as a converter from a static graph would) and script the top module."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        module.layers = torch.jit.trace(module.layers, example, check_trace=False)
        return torch.jit.script(module)


def _write(path, data, fmt):
    with open(path, 'wb') as f:
        if fmt == 'pkl':
            pickle.dump(mf._TorchScriptPickle(data), f, protocol=4)
        else:
            f.write(data)
    return str(path)


@pytest.fixture
def img():
    return torch.from_numpy(np.random.RandomState(3).randint(0, 256, size=[3, 3, 20, 20]).astype(np.uint8))

#----------------------------------------------------------------------------
# Look-alikes pass, scripted and traced, as .pt and .pkl, and compute what the eager modules compute.

@pytest.mark.parametrize('fmt', ['pt', 'pkl'])
@pytest.mark.parametrize('mode', ['scripted', 'traced'])
def test_nvlabs_like_detectors_pass_and_match_eager(tmp_path, img, fmt, mode):
    inc, vgg = NVInceptionLike().eval(), NVVGGLike().eval()
    if mode == 'scripted':
        inc_ts, vgg_ts = _scripted(copy.deepcopy(inc)), _scripted(copy.deepcopy(vgg))
    else:
        inc_ts = _traced_layers(copy.deepcopy(inc), torch.zeros([1, 3, 32, 32]))
        vgg_ts = _traced_layers(copy.deepcopy(vgg), torch.zeros([1, 3, 16, 16]))
    folder = tmp_path / fmt
    folder.mkdir()
    inc_path = _write(folder / f'inception-2015-12-05.{fmt}', _save(inc_ts), fmt)
    vgg_path = _write(folder / f'vgg16.{fmt}', _save(vgg_ts), fmt)
    inc_d = detectors.get_detector(detectors.INCEPTION, detector_dir=str(folder))
    vgg_d = detectors.get_detector('vgg16', detector_dir=str(folder))
    assert detectors.resolve_detector('vgg16', detector_dir=str(folder)) == vgg_path
    assert detectors.resolve_detector(detectors.INCEPTION, detector_dir=str(folder)) == inc_path
    with torch.no_grad():
        torch.testing.assert_close(inc_d(img, return_features=True), inc(img, return_features=True))
        torch.testing.assert_close(inc_d(img, no_output_bias=True), inc(img, no_output_bias=True))
        x = img.float()[:, :, :16, :16]
        torch.testing.assert_close(vgg_d(x, resize_images=False, return_lpips=True), vgg(x, resize_images=False, return_lpips=True))
        torch.testing.assert_close(vgg_d(img, return_features=True), vgg(img, return_features=True))

#----------------------------------------------------------------------------
# Crafted archives are refused before anything runs.

class SetstateWriter(torch.nn.Module):
    """Writes a file from __setstate__, which torch.jit.load runs while loading."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        torch.ops.aten.save(torch.zeros(1), state[0])

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return img.float().flatten(1)


class ForwardWriter(torch.nn.Module):
    """Writes a file from forward (through a renamed alias of the op)."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        torch.ops.aten.save(img, self.marker)
        return img.float().flatten(1)


def test_setstate_writer_is_a_real_attack(tmp_path):
    # The reference: plain torch.jit.load of this archive does write the marker.
    marker = tmp_path / 'written-by-plain-jit-load'
    data = _save(_scripted(SetstateWriter(str(marker))))
    assert not marker.exists()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        torch.jit.load(io.BytesIO(data))
    assert marker.exists()


@pytest.mark.parametrize('fmt', ['pt', 'pkl'])
def test_setstate_writer_refused_and_marker_never_appears(tmp_path, fmt):
    marker = tmp_path / 'marker'
    path = _write(tmp_path / f'inception-2015-12-05.{fmt}', _save(_scripted(SetstateWriter(str(marker)))), fmt)
    with pytest.raises(detectors.DetectorCodeError, match=r'inception-2015-12-05\.' + fmt + r':archive/code/__torch__/.*\.py:\d+: '
                                                          r'refusing detector: it defines __setstate__'):
        detectors.get_detector(detectors.INCEPTION, detector_dir=str(tmp_path))
    assert not marker.exists()


@pytest.mark.parametrize('fmt', ['pt', 'pkl'])
def test_forward_file_write_refused(tmp_path, fmt, img):
    marker = tmp_path / 'marker'
    path = _write(tmp_path / f'vgg16.{fmt}', _save(_scripted(ForwardWriter(str(marker)))), fmt)
    with pytest.raises(detectors.DetectorCodeError, match=r'operation torch\.save \(aten::save\) is not one a feature detector needs'):
        detectors.load_detector_file(path)
    assert not marker.exists()


def _edit_code(data, old, new):
    """The archive with `old` replaced by `new` in its code (an attacker writes code by hand)."""
    src, out, edited = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO(), 0
    with zipfile.ZipFile(out, 'w') as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename.endswith('.py') and old.encode() in body:
                body = body.replace(old.encode(), new.encode())
                edited += 1
            dst.writestr(info, body)
    assert edited == 1
    return out.getvalue()


@pytest.mark.parametrize('payload, message', [
    ('ops.aten.save(img, "x")', r'operation aten::save \(ops\.aten\.save\)'),
    ('torch.ops.aten.from_file("x")', r'aten::from_file'),
    ('ops.profiler._record_function_enter("x")', r"operator namespace 'profiler'"),
    ('print("x")', r'call of print\(\)'),
    ('fork(torch.relu, img)', r'call of fork\(\)'),
    ('getattr(img, "save")', r"getattr\(\.\.\., 'save'\)"),
    ('img.save("x")', r"attribute or method 'save'"),
    ('torch.jit.load("x")', r'operation torch\.jit\.load'),
    ('_0 = torch\n    _0.save(img, "x")', r"attribute or method 'save'"),
    ('_0 = torch.ops\n    _0.aten.save(img, "x")', r'torch\.ops is not an operation reference'),
    ('CONSTANTS.c0.pin_memory()', r"attribute or method 'pin_memory'"),
    ('img.resize_([1 << 40])', r"attribute or method 'resize_'"),
    ('import os', r'imports the module os'),
    ('torch.set_num_threads(1)', r'operation torch\.set_num_threads'),
])
def test_hand_written_payloads_refused(tmp_path, payload, message):
    data = _save(mf.script(mf.TinyInception(1)))
    marker_line = 'proj = self.proj'
    data = _edit_code(data, marker_line, f'{payload}\n    {marker_line}')
    with pytest.raises(detectors.DetectorCodeError, match=message):
        detectors.check_torchscript_archive(data, 'crafted.pt')


class _SystemCall:
    def __reduce__(self):
        return (os.system, ('echo unreachable',))


def test_member_named_like_an_operation_is_no_loophole():
    # A class that declares a member `resize_` may not thereby call Tensor.resize_ (not on the allow-list).
    data = _save(mf.script(mf.TinyInception(1)))
    data = _edit_code(data, 'cls_b : Tensor', 'cls_b : Tensor\n  resize_ : Tensor')
    data = _edit_code(data, 'proj = self.proj', 'torch.resize_(img, [1 << 40])\n    proj = self.proj')
    with pytest.raises(detectors.DetectorCodeError, match=r'torch\.resize_'):
        detectors.check_torchscript_archive(data, 'crafted.pt')
    data = _edit_code(data, 'torch.resize_(img, [1 << 40])', 'img.resize_([1 << 40])')
    with pytest.raises(detectors.DetectorCodeError, match=r"attribute or method 'resize_'"):
        detectors.check_torchscript_archive(data, 'crafted.pt')


def test_foreign_pickle_global_refused():
    data = _save(mf.script(mf.TinyInception(1)))
    src, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, 'w') as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename.endswith('/data.pkl'):
                body = pickle.dumps(_SystemCall(), protocol=2)
            dst.writestr(info, body)
    with pytest.raises(detectors.DetectorCodeError, match=r'crafted\.pt:archive/data\.pkl: refusing detector: its pickle '
                                                          r'names the global (posix|os|nt)\.system'):
        detectors.check_torchscript_archive(out.getvalue(), 'crafted.pt')


def test_full_size_traced_inception_v3_passes(tmp_path):
    # The full Inception-v3 of pytorch-fid's layout (ganforge's native FID network: the same TF graph the
    # NVlabs file converts), traced as a converter would: 91 MB of weights, every op of the architecture.
    from metrics import inception
    net = inception.InceptionV3FID().eval()
    img = torch.from_numpy(np.random.RandomState(0).randint(0, 256, size=[1, 3, 64, 64]).astype(np.uint8))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        traced = torch.jit.trace(net, img, check_trace=False)
    _write(tmp_path / 'inception-2015-12-05.pt', _save(traced), 'pt')
    loaded = detectors.get_detector(detectors.INCEPTION, detector_dir=str(tmp_path))
    with torch.no_grad():
        torch.testing.assert_close(loaded(img), net(img))
