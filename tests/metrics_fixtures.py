"""Stand-ins for the metrics tests: a tiny dataset class with the NVlabs dataset interface, a tiny
persistent generator with mapping/synthesis, and small TorchScript detectors with the call signatures
of NVlabs' inception-2015-12-05 and vgg16 files, saved under their official names."""

import io
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torch_utils import persistence

#----------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def single_thread():
    """One intra-op thread: these tests run tiny ops, which many threads on a shared 2-core machine slow 10x."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)

#----------------------------------------------------------------------------
# Dataset.

def make_tiny_dataset(path, num_images=48, resolution=8, channels=3, num_classes=0, seed=0, shift=0):
    """Write an .npz with uint8 images [N, C, R, R] (smooth random blobs + `shift`) and int64 labels."""
    rnd = np.random.RandomState(seed)
    base = rnd.uniform(0, 255, size=[num_images, channels, 2, 2])
    images = np.kron(base, np.ones([1, 1, resolution // 2, resolution // 2])) + rnd.normal(0, 20, size=[num_images, channels, resolution, resolution])
    images = np.clip(images + shift, 0, 255).astype(np.uint8)
    labels = rnd.randint(0, max(num_classes, 1), size=[num_images]).astype(np.int64)
    np.savez(path, images=images, labels=labels, num_classes=np.int64(num_classes))
    return path


@persistence.register_class('dataset')
class TinyDataset(torch.utils.data.Dataset):
    """NVlabs dataset interface over an .npz written by make_tiny_dataset."""

    def __init__(self, path, resolution=None, use_labels=False, max_size=None, xflip=False, random_seed=0):
        with np.load(path) as data:
            self._images = data['images']
            self._labels = data['labels']
            self._num_classes = int(data['num_classes'])
        self._path = path
        if resolution is not None and resolution != self._images.shape[2]:
            raise IOError(f'{path}: resolution {self._images.shape[2]}, requested {resolution}')
        self._use_labels = use_labels
        self._raw_idx = np.arange(len(self._images))
        if max_size is not None and len(self._raw_idx) > max_size:
            np.random.RandomState(random_seed).shuffle(self._raw_idx)
            self._raw_idx = np.sort(self._raw_idx[:max_size])
        self._xflip = np.zeros(len(self._raw_idx), dtype=bool)
        if xflip:
            self._raw_idx = np.tile(self._raw_idx, 2)
            self._xflip = np.concatenate([self._xflip, np.ones_like(self._xflip)])

    def __len__(self):
        return len(self._raw_idx)

    def __getitem__(self, idx):
        img = self._images[self._raw_idx[idx]]
        if self._xflip[idx]:
            img = img[:, :, ::-1]
        return img.copy(), self.get_label(idx)

    def get_label(self, idx):
        if not self.has_labels:
            return np.zeros([0], dtype=np.float32)
        onehot = np.zeros([self._num_classes], dtype=np.float32)
        onehot[self._labels[self._raw_idx[idx]]] = 1
        return onehot

    name = property(lambda self: os.path.splitext(os.path.basename(self._path))[0])
    image_shape = property(lambda self: list(self._images.shape[1:]))
    num_channels = property(lambda self: self._images.shape[1])
    resolution = property(lambda self: self._images.shape[2])
    has_labels = property(lambda self: self._use_labels and self._num_classes > 0)
    label_dim = property(lambda self: self._num_classes if self.has_labels else 0)
    label_shape = property(lambda self: [self.label_dim])

#----------------------------------------------------------------------------
# Generator: z -> w (linear + lrelu) -> image (linear map of w + a noise buffer, tanh).

@persistence.persistent_class
class TinyMapping(torch.nn.Module):
    def __init__(self, z_dim, c_dim, w_dim, num_ws):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.fc = torch.nn.Linear(z_dim + c_dim, w_dim)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        x = torch.cat([z, c], dim=1) if self.c_dim else z
        w = F.leaky_relu(self.fc(x), 0.2)
        return w.unsqueeze(1).repeat([1, self.num_ws, 1])


@persistence.persistent_class
class TinySynthesis(torch.nn.Module):
    def __init__(self, w_dim, num_ws, img_resolution, img_channels, linear=False):
        super().__init__()
        self.w_dim, self.num_ws, self.img_resolution, self.img_channels = w_dim, num_ws, img_resolution, img_channels
        self.linear = linear
        self.fc = torch.nn.Linear(w_dim, img_channels * img_resolution * img_resolution, bias=not linear)
        self.register_buffer('noise_const', torch.randn([img_resolution, img_resolution]))

    def forward(self, ws, noise_mode='random', force_fp32=False, **_kwargs):
        x = self.fc(ws.mean(dim=1)).reshape([-1, self.img_channels, self.img_resolution, self.img_resolution])
        if self.linear:
            return x
        if noise_mode == 'const':
            x = x + 0.1 * self.noise_const
        return torch.tanh(x)


@persistence.persistent_class
class TinyGenerator(torch.nn.Module):
    """Deterministic stand-in for the StyleGAN2 generator interface used by the metrics."""

    def __init__(self, z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3, linear=False):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels, self.num_ws = img_resolution, img_channels, 2
        self.mapping = TinyMapping(z_dim, c_dim, w_dim, self.num_ws)
        self.synthesis = TinySynthesis(w_dim, self.num_ws, img_resolution, img_channels, linear=linear)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, noise_mode='const', force_fp32=False, **kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, force_fp32=force_fp32, **kwargs)

#----------------------------------------------------------------------------
# Detectors with the NVlabs call signatures (TorchScript).

class TinyInception(torch.nn.Module):
    """uint8 [N, 3, H, W] -> 16-D features (return_features) or softmax over 10 classes."""

    def __init__(self, seed=1):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer('proj', torch.randn([48, 16], generator=g) / 4)
        self.register_buffer('cls_w', torch.randn([16, 10], generator=g))
        self.register_buffer('cls_b', torch.randn([10], generator=g))

    def forward(self, img: torch.Tensor, return_features: bool = False, no_output_bias: bool = False, resize_images: bool = True) -> torch.Tensor:
        x = img.to(torch.float32) / 127.5 - 1
        x = F.adaptive_avg_pool2d(x, [4, 4]).flatten(1)
        feats = torch.tanh(x @ self.proj) * 3
        if return_features:
            return feats
        logits = feats @ self.cls_w
        if not no_output_bias:
            logits = logits + self.cls_b
        return torch.softmax(logits, dim=1)


class TinyVGG(torch.nn.Module):
    """uint8/float [N, 3, H, W] in [0, 255] -> unit-length 12-D features; LPIPS features = linear map."""

    def __init__(self, seed=2):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer('proj', torch.randn([48, 12], generator=g) / 4)

    def forward(self, img: torch.Tensor, resize_images: bool = True, return_features: bool = False, return_lpips: bool = False) -> torch.Tensor:
        x = img.to(torch.float32) / 255
        x = F.adaptive_avg_pool2d(x, [4, 4]).flatten(1)
        if return_lpips:
            return x @ self.proj
        feats = torch.tanh(x @ self.proj * 4)
        return feats / feats.square().sum(dim=1, keepdim=True).sqrt()


def script(module):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)  # torch.jit.script/save are deprecated but still the format NVlabs ships
        return torch.jit.script(module)


def torchscript_bytes(module):
    import warnings
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        torch.jit.save(script(module), buf)
    return buf.getvalue()


class _TorchScriptPickle:
    """Pickles as a call to torch.jit.load on the archive bytes (a pickle wrapping TorchScript)."""

    def __init__(self, data):
        self.data = data

    def __reduce__(self):
        return (torch.jit.load, (io.BytesIO(self.data),))


def write_detectors(folder, fmt='pt', inception_seed=1, vgg_seed=2, protocol=pickle.DEFAULT_PROTOCOL):
    """Write the stand-in detectors as inception-2015-12-05.<fmt> and vgg16.<fmt> (fmt 'pt' or 'pkl')."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, module in [('inception-2015-12-05', TinyInception(inception_seed)), ('vgg16', TinyVGG(vgg_seed))]:
        path = os.path.join(folder, f'{name}.{fmt}')
        data = torchscript_bytes(module)
        with open(path, 'wb') as f:
            if fmt == 'pkl':
                pickle.dump(_TorchScriptPickle(data), f, protocol=protocol)
            else:
                f.write(data)
        paths.append(path)
    return paths

#----------------------------------------------------------------------------
