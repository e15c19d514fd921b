"""Native PyTorch Inception-v3 in the FID variant of the TensorFlow graph 'inception-2015-12-05'
(the network of TTUR's FID and of pytorch-fid), loading pytorch-fid's weights file
`pt_inception-2015-12-05-6726825d.pth` with identical state_dict keys and shapes.

Differences from torchvision's ImageNet Inception-v3, all from the TF graph: 1008 output classes; the
average pools inside the mixed blocks ignore the zero padding (TF 'SAME' pooling); the last mixed block
pools with max instead of average. Input: uint8 (or float in [0, 255]) NCHW RGB; resized to 299x299
bilinearly (align_corners=False) and mapped to [-1, 1] exactly as pytorch-fid does.
"""

import torch
import torch.nn.functional as F

#----------------------------------------------------------------------------

class BasicConv2d(torch.nn.Module):
    """Conv without bias, batch norm (eps 1e-3, as the TF graph), ReLU. Keys: conv.weight, bn.*"""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = torch.nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_same(x):
    # TF 'SAME' average pooling: padded zeros are not counted.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(torch.nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | pool-1x1 (64 + 64 + 96 + pool_features channels)."""

    def __init__(self, in_channels, pool_features):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x):
        a = self.branch1x1(x)
        b = self.branch5x5_2(self.branch5x5_1(x))
        c = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        d = self.branch_pool(_avg_pool_same(x))
        return torch.cat([a, b, c, d], dim=1)


class InceptionB(torch.nn.Module):
    """35x35 -> 17x17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        a = self.branch3x3(x)
        b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        c = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([a, b, c], dim=1)


class InceptionC(torch.nn.Module):
    """17x17 block with factorized 7x7 convolutions (c7 inner channels), 4 x 192 output channels."""

    def __init__(self, in_channels, channels_7x7):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x):
        a = self.branch1x1(x)
        b = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        c = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            c = layer(c)
        d = self.branch_pool(_avg_pool_same(x))
        return torch.cat([a, b, c, d], dim=1)


class InceptionD(torch.nn.Module):
    """17x17 -> 8x8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        a = self.branch3x3_2(self.branch3x3_1(x))
        b = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        c = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([a, b, c], dim=1)


class InceptionE(torch.nn.Module):
    """8x8 block with split 1x3/3x1 outputs (320 + 768 + 768 + 192 channels). `pool` is 'avg' (Mixed_7b,
    padding excluded) or 'max' (Mixed_7c: the TF graph's quirk that FID inherits)."""

    def __init__(self, in_channels, pool):
        super().__init__()
        if pool not in ('avg', 'max'):
            raise ValueError(f'InceptionE: pool must be "avg" or "max", got {pool!r}')
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x):
        a = self.branch1x1(x)
        b = self.branch3x3_1(x)
        b = torch.cat([self.branch3x3_2a(b), self.branch3x3_2b(b)], dim=1)
        c = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        c = torch.cat([self.branch3x3dbl_3a(c), self.branch3x3dbl_3b(c)], dim=1)
        p = _avg_pool_same(x) if self.pool == 'avg' else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        d = self.branch_pool(p)
        return torch.cat([a, b, c, d], dim=1)

#----------------------------------------------------------------------------

class InceptionV3FID(torch.nn.Module):
    """FID Inception-v3 with the detector call signature of the NVlabs TorchScript file.

    forward(img, return_features=False, no_output_bias=False, resize_images=True):
        img: uint8 [N, 3, H, W] (or float in [0, 255]).
        returns float32 [N, 2048] pool features with return_features=True, otherwise softmax
        probabilities [N, 1008] (with no_output_bias=True the fc bias is left out, as NVlabs' IS).
    """

    num_features = 2048
    num_classes = 1008

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool='avg')
        self.Mixed_7c = InceptionE(2048, pool='max')
        self.fc = torch.nn.Linear(2048, 1008)

    @staticmethod
    def preprocess(img, resize_images=True):
        """uint8 / [0, 255] [N, 3, H, W] -> float32 [N, 3, 299, 299] in [-1, 1], as pytorch-fid."""
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f'InceptionV3FID: img must be [N, 3, H, W], got {list(img.shape)}')
        x = img.to(torch.float32) / 255  # pytorch-fid feeds [0, 1]
        if resize_images:
            x = F.interpolate(x, size=(299, 299), mode='bilinear', align_corners=False)
        return 2 * x - 1

    def features(self, x):
        """[N, 3, H, W] in [-1, 1] -> [N, 2048]."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean(dim=[2, 3])

    def forward(self, img, return_features=False, no_output_bias=False, resize_images=True):
        feats = self.features(self.preprocess(img, resize_images))
        if return_features:
            return feats
        logits = F.linear(feats, self.fc.weight, None if no_output_bias else self.fc.bias)
        return torch.softmax(logits, dim=1)

#----------------------------------------------------------------------------

def load_state_dict_strict(model, state_dict, source='state_dict'):
    """Load `state_dict` into `model` requiring the same keys and shapes (BatchNorm's
    `num_batches_tracked` counters may be absent, as in files saved before they existed)."""
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f'{source}: expected a state_dict (a dict of tensors), got {type(state_dict).__name__}')
    own = model.state_dict()
    optional = {k for k in own if k.endswith('.num_batches_tracked')}
    missing = sorted(set(own) - set(state_dict) - optional)
    unexpected = sorted(set(state_dict) - set(own))
    if missing or unexpected:
        raise ValueError(f'{source}: not an FID Inception-v3 state_dict: {len(missing)} missing keys {missing[:5]}, '
                         f'{len(unexpected)} unexpected keys {unexpected[:5]}')
    for k, v in state_dict.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f'{source}: {k} has shape {list(v.shape)}, expected {list(own[k].shape)}')
    full = dict(own)
    full.update(state_dict)
    model.load_state_dict(full, strict=True)
    return model


def load_inception_fid(path, device='cpu'):
    """InceptionV3FID with the weights of a pytorch-fid .pth file (loaded with weights_only=True), in eval mode."""
    state_dict = torch.load(path, map_location='cpu', weights_only=True)
    model = InceptionV3FID()
    load_state_dict_strict(model, state_dict, source=str(path))
    return model.eval().requires_grad_(False).to(device)

#----------------------------------------------------------------------------
