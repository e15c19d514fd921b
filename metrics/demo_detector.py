"""The demo detector: a small CNN trained on the demo shapes, the feature space of the offline metrics
fid_demo, pr_demo and cls_demo.

It is trained deterministically, once, on first use (about half a minute of one CPU thread), on demo
shapes that it renders itself from seeds the demo dataset does not use (dnnlib.demo_shapes), and saved as
a TorchScript file `<cache dir>/detectors/demo-shapes-v<VERSION>-<recipe>.pt` (atomically). From then on
it is an ordinary detector file: the metrics load it through metrics.detectors like the Inception file,
call it as `detector(img_uint8_nchw, return_features=True)`, and key the dataset-statistics cache by
its sha256.

Heads. The network learns the shape class (circle, square, triangle, or `none`: a bare background, a
shapeless blob rendered at 4x4 and upsampled, or a smooth random colour field; half of all training
images carry strong pixel noise, as early generator output does) and, for the shapes, the texture kind
and the regressed foreground colour, mean background colour, position and size. So its features see
class, colour, layout and sharpness, and the class head says whether a generated image shows a
recognisable shape. It is small: generated images far from anything it saw (a blob with fragments of an
outline) can still get a confident shape class, so cls_demo is a coarse indicator.

The numbers it gives are comparable only among runs on the demo data: the network knows nothing else,
and it is not Inception (an fid_demo is not an FID anyone publishes).
"""

import hashlib
import io
import json
import os
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

import dnnlib
from dnnlib import demo_shapes
from metrics import metric_utils

#----------------------------------------------------------------------------
# Recipe. Any change here changes the file name (RECIPE digest), so an old cached file is never reused.

VERSION = 1
RESOLUTION = 32                                      # input size; other sizes are resized to it
CLASS_NAMES = demo_shapes.CLASS_NAMES + ('none',)    # class head; 'none' = no recognisable shape
NONE_CLASS = len(CLASS_NAMES) - 1
CONFIDENCE = 0.75                                    # cls_demo: a sample counts as a shape at this class probability
RECIPE = dict(version=VERSION, resolution=RESOLUTION, channels=[16, 32, 64], num_features=64,
              train_seed=1, num_train=4000, none_seed=3, num_none=1500, blob_res=4, heldout_seed=2,
              noise_seed=4, noise_max=48, init_seed=0, epochs=5, batch=64, lr=0.005)

#----------------------------------------------------------------------------

class DemoShapesNet(torch.nn.Module):
    """Three conv-batchnorm-ReLU-maxpool stages (32 -> 4 pixels), a feature layer and the heads.

    forward(img uint8 [N, 3, H, W]) -> class probabilities [N, 4]; return_logits=True: the logits;
    return_features=True: the feature vector [N, num_features] (before its ReLU) used by the metrics.
    """

    def __init__(self, channels=(16, 32, 64), num_features=64, num_classes=len(CLASS_NAMES), num_textures=3, num_targets=9):
        super().__init__()
        self.resolution = RESOLUTION
        c0, c1, c2 = channels
        self.stages = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.Conv2d(i, o, 3, padding=1), torch.nn.BatchNorm2d(o),
                                                                torch.nn.ReLU(), torch.nn.MaxPool2d(2))
                                            for i, o in [(3, c0), (c0, c1), (c1, c2)]])
        self.fc = torch.nn.Linear(c2 * (RESOLUTION // 8) ** 2, num_features)
        self.class_head = torch.nn.Linear(num_features, num_classes)
        self.texture_head = torch.nn.Linear(num_features, num_textures)
        self.target_head = torch.nn.Linear(num_features, num_targets)

    def features(self, img):
        x = img.to(torch.float32)
        res = self.resolution
        if x.shape[2] > res or x.shape[3] > res:
            x = F.adaptive_avg_pool2d(x, [res, res])
        elif x.shape[2] < res or x.shape[3] < res:
            x = F.interpolate(x, size=[res, res], mode='bilinear', align_corners=False)
        return self.fc(self.stages(x / 127.5 - 1).flatten(1))

    def forward(self, img, return_features: bool = False, return_logits: bool = False):
        feat = self.features(img)
        if return_features:
            return feat
        logits = self.class_head(F.relu(feat))
        if return_logits:
            return logits
        return F.softmax(logits, dim=1)

#----------------------------------------------------------------------------
# Training data.

def _targets(p):
    """Regression targets [N, 9]: foreground RGB, mean background RGB, centre x, y, size."""
    return np.concatenate([p.fg, (p.bg0 + p.bg1) / 2, np.stack([p.cx, p.cy, p.size], axis=1)], axis=1).astype(np.float32)


def render_none_images(num_images, seed, resolution=RESOLUTION, blob_res=4):
    """Images without a recognisable shape, uint8 [N, H, W, 3]. Item i % 3 == 0: the background alone;
    1: the shape rendered at blob_res x blob_res and upsampled (a shapeless blob); 2: a smooth random
    colour field (random colours on a 2x2 to 8x8 grid, upsampled), as an untrained generator draws."""
    p = demo_shapes.draw_params(num_images, seed)
    bare = dnnlib.EasyDict(p, size=np.full_like(p.size, -1))  # negative size: every pixel lies outside the shape and its outline
    out = demo_shapes.render_images(bare, resolution)
    upsample = lambda x: F.interpolate(torch.from_numpy(x.astype(np.float32)).permute(0, 3, 1, 2), size=[resolution, resolution],
                                       mode='bilinear', align_corners=False).permute(0, 2, 3, 1).numpy()
    blobs = np.arange(1, num_images, 3)
    if len(blobs):
        out[blobs] = np.clip(np.rint(upsample(demo_shapes.render_params(p, blobs, blob_res)) * 255), 0, 255).astype(np.uint8)
    rnd = np.random.RandomState([seed, 1])
    for i in range(2, num_images, 3):
        cells = rnd.randint(2, 9)
        field = rnd.uniform(0, 1, size=[1, cells, cells, 3]) ** rnd.uniform(0.5, 2)
        out[i] = np.clip(np.rint(upsample(field)[0] * 255), 0, 255).astype(np.uint8)
    return out


def add_pixel_noise(images, seed, noise_max):
    """Every other image (chosen at random) gets uniform pixel noise of a random amplitude up to noise_max,
    so that speckle, common in early generator output, is neither a shape nor a sign of 'none'."""
    rnd = np.random.RandomState(seed)
    amp = rnd.uniform(0, noise_max, size=len(images)) * (rnd.uniform(size=len(images)) < 0.5)
    noise = rnd.uniform(-1, 1, size=images.shape) * amp[:, None, None, None]
    return np.clip(np.rint(images + noise), 0, 255).astype(np.uint8)


def heldout_images(num_images, resolution=RESOLUTION):
    """Demo shapes the detector never saw in training (seed RECIPE['heldout_seed']): uint8 images, labels."""
    return demo_shapes.render_demo_images(num_images, resolution, seed=RECIPE['heldout_seed'])

#----------------------------------------------------------------------------
# Building.

def recipe_digest(recipe=RECIPE):
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode('utf-8')).hexdigest()[:12]


def default_path(recipe=RECIPE):
    return dnnlib.util.make_cache_dir_path('detectors', f'demo-shapes-v{recipe["version"]}-{recipe_digest(recipe)}.pt')


def weights_digest(net):
    """sha256 over the parameter names, shapes and float32 bytes (the identity of the trained weights)."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        t = t.detach().to(torch.float32).contiguous().cpu()
        h.update(f'{name}:{list(t.shape)}\n'.encode('utf-8'))
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def train_demo_detector(recipe=RECIPE, verbose=False):
    """Train the detector from scratch on one CPU thread (bit-identical on a given machine and torch build).
    The global torch RNG and thread count are left as they were. Returns the network in eval mode."""
    r = dnnlib.EasyDict(recipe)
    p = demo_shapes.draw_params(r.num_train, r.train_seed)
    images = np.concatenate([demo_shapes.render_images(p, r.resolution),
                             render_none_images(r.num_none, r.none_seed, r.resolution, r.blob_res)])
    images = add_pixel_noise(images, r.noise_seed, r.noise_max)
    labels = np.concatenate([p.label, np.full([r.num_none], NONE_CLASS)]).astype(np.int64)
    is_shape = labels != NONE_CLASS
    textures = np.concatenate([p.tex_kind, np.zeros([r.num_none])]).astype(np.int64)
    targets = _targets(p)
    mean, std = targets.mean(axis=0), targets.std(axis=0) + 1e-8
    targets = np.concatenate([(targets - mean) / std, np.zeros([r.num_none, targets.shape[1]], np.float32)])

    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    y_all, tex_all, t_all = torch.from_numpy(labels), torch.from_numpy(textures), torch.from_numpy(targets)
    m_all = torch.from_numpy(is_shape.astype(np.float32))

    prev_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a fixed reduction order: the same weights on every build
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(r.init_seed)
            net = DemoShapesNet(channels=r.channels, num_features=r.num_features).train()
        opt = torch.optim.Adam(net.parameters(), lr=r.lr)
        order = np.random.RandomState(r.init_seed)
        n = len(labels)
        steps = r.epochs * (n // r.batch)
        step = 0
        t0 = time.time()
        for epoch in range(r.epochs):
            perm = torch.from_numpy(order.permutation(n))
            correct = 0
            for i in range(n // r.batch):
                for g in opt.param_groups:  # cosine decay to zero
                    g['lr'] = r.lr * 0.5 * (1 + np.cos(np.pi * step / steps))
                idx = perm[i * r.batch:(i + 1) * r.batch]
                feat = F.relu(net.features(x_all[idx]))
                logits = net.class_head(feat)
                m = m_all[idx]
                loss = F.cross_entropy(logits, y_all[idx])
                loss = loss + (F.cross_entropy(net.texture_head(feat), tex_all[idx], reduction='none') * m).sum() / m.sum().clamp(min=1)
                loss = loss + (((net.target_head(feat) - t_all[idx]) ** 2).mean(dim=1) * m).sum() / m.sum().clamp(min=1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                correct += int((logits.argmax(dim=1) == y_all[idx]).sum())
                step += 1
            if verbose:
                print(f'demo detector epoch {epoch + 1}/{r.epochs}: train accuracy {correct / (n // r.batch * r.batch):.3f}, '
                      f'{time.time() - t0:.0f}s', flush=True)
    finally:
        torch.set_num_threads(prev_threads)
    return net.eval().requires_grad_(False)


def save_detector(net, path):
    """Write the network as a TorchScript archive (what metrics.detectors loads), atomically."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)  # torch.jit is deprecated, yet it is the detectors' format
        torch.jit.save(torch.jit.script(net), buf)
    with dnnlib.util.atomic_write(path) as f:
        f.write(buf.getvalue())


def ensure_demo_detector(path=None, recipe=RECIPE, verbose=True):
    """Path of the demo detector file, training and saving it first if it is not in the cache."""
    path = path or default_path(recipe)
    if os.path.isfile(path):
        return path
    t0 = time.time()
    if verbose:
        print(f'Training the demo detector (once, ~1 min on one CPU thread) into {path} ...', flush=True)
    net = train_demo_detector(recipe, verbose=verbose)
    save_detector(net, path)
    if verbose:
        print(f'Trained the demo detector in {time.time() - t0:.0f}s (weights sha256 {weights_digest(net)[:16]})', flush=True)
    return path

#----------------------------------------------------------------------------
# Metrics.

NUM_GEN = 2000  # generated images per demo metric (the demo dataset has 2000 real ones)


def detector_for_metrics(opts):
    """Path of the demo detector for a metric run; rank 0 trains it if needed while the others wait."""
    with metric_utils.leader_first(opts):
        return ensure_demo_detector(verbose=opts.rank == 0)


def compute_cls(opts, num_gen, detector_path):
    """Share of `num_gen` generated images that the class head calls circle, square or triangle with
    probability >= CONFIDENCE, and the share it recognises as none of them ('none')."""
    probs = metric_utils.compute_feature_stats_for_generator(
        opts=opts, detector_name=detector_path, detector_kwargs={}, capture_all=True, max_items=num_gen).get_all()
    if opts.rank != 0:
        return {name: float('nan') for name in CLASS_NAMES}
    shares = {name: float(np.mean(probs[:, k] >= CONFIDENCE)) for k, name in enumerate(demo_shapes.CLASS_NAMES)}
    shares['none'] = 1 - sum(shares.values())
    return shares

#----------------------------------------------------------------------------
