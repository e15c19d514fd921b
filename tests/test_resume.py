"""Exact resume: k steps + resume + m steps equals an uninterrupted k+m run bit for bit on CPU,
also when a killed writer left a partial temporary checkpoint; weights-only resume from a snapshot."""


import pytest
import torch

from training import checkpoint, training_loop
from tests.test_training_loop import tiny_config, tiny_dataset


@pytest.fixture(scope='module')
def data_path(tmp_path_factory):
    return tiny_dataset(str(tmp_path_factory.mktemp('data')))


def _final_state(run_dir):
    path = checkpoint.find_latest_checkpoint(str(run_dir))
    assert path is not None, f'no checkpoint in {run_dir}'
    return checkpoint.read_checkpoint(path)


def _assert_tree_equal(a, b, where='state'):
    """Bitwise equality of nested dicts/lists of tensors and numbers."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype, where
        assert torch.equal(a, b), f'{where}: max abs diff {(a.double() - b.double()).abs().max().item()}'
    elif isinstance(a, dict):
        assert set(a) == set(b), f'{where}: keys differ: {sorted(set(a) ^ set(b))}'
        for k in a:
            _assert_tree_equal(a[k], b[k], f'{where}.{k}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_tree_equal(x, y, f'{where}[{i}]')
    else:
        assert a == b, f'{where}: {a!r} != {b!r}'


def _compare(full, resumed):
    for key in ['G', 'D', 'G_ema', 'augment_pipe']:
        _assert_tree_equal(full[key]['state_dict'], resumed[key]['state_dict'], key)
    fs, rs = full['extra']['training_state'], resumed['extra']['training_state']
    for key in ['opt_states', 'loss_state', 'ada_state', 'augment_p', 'cur_nimg', 'batch_idx']:
        _assert_tree_equal(fs[key], rs[key], key)


def test_resume_is_bit_exact(tmp_path, data_path):
    # Lazy regularization every 2 (G) / 4 (D) minibatches and ADA every 2: k = 3 stops mid-interval.
    opts = dict(image_snapshot_ticks=None, network_snapshot_ticks=100, kimg_per_tick=0.008)
    total = 0.028  # 7 minibatches of 4
    training_loop.training_loop(**tiny_config(tmp_path / 'full', data_path, total_kimg=total, **opts))
    full = _final_state(tmp_path / 'full')
    assert full['extra']['training_state']['batch_idx'] == 7

    run_dir = tmp_path / 'split'
    training_loop.training_loop(**tiny_config(run_dir, data_path, total_kimg=0.012, **opts))
    first = checkpoint.find_latest_checkpoint(str(run_dir))
    first_data = checkpoint.read_checkpoint(first)
    assert first_data['extra']['training_state']['batch_idx'] == 3

    # Simulated crash while writing a later checkpoint: a truncated temporary file stays behind.
    data = open(first, 'rb').read()
    partial = run_dir / '.tmp-training-state-000999.pt.k2j4h1'
    partial.write_bytes(data[:len(data) // 3])
    assert checkpoint.find_latest_checkpoint(str(run_dir)) == first

    status = training_loop.training_loop(**tiny_config(run_dir, data_path, total_kimg=total, resume=first, **opts))
    assert status == 'done'
    resumed = _final_state(run_dir)
    _compare(full, resumed)
    assert not partial.exists()  # cleaned up by the next checkpoint write
    assert 'Resuming from' in open(run_dir / 'log.txt').read()

    # The uninterrupted run is not trivially equal to a shorter one (the comparison can fail).
    with pytest.raises(AssertionError):
        _assert_tree_equal(full['G']['state_dict'], first_data['G']['state_dict'])


def test_resume_from_snapshot_is_weights_only(tmp_path, data_path):
    opts = dict(image_snapshot_ticks=None, network_snapshot_ticks=100, kimg_per_tick=0.008, augment_kwargs=None, ada_target=None)
    training_loop.training_loop(**tiny_config(tmp_path / 'a', data_path, total_kimg=0.004, **opts))
    snap = str(next((tmp_path / 'a').glob('network-snapshot-*.pt')))
    src = checkpoint.read_checkpoint(snap)
    training_loop.training_loop(**tiny_config(tmp_path / 'b', data_path, total_kimg=0.004, resume=snap,
                                              G_opt_kwargs=dict(class_name='torch.optim.Adam', lr=1e-30, betas=[0, 0.99], eps=1e-8), **opts))
    out = _final_state(tmp_path / 'b')
    assert out['extra']['training_state']['batch_idx'] == 1  # counters restart: fine-tuning
    key = 'synthesis.b16.conv1.weight'
    assert torch.allclose(out['G']['state_dict'][key], src['G']['state_dict'][key], atol=1e-6)


def test_resume_errors_name_the_file(tmp_path, data_path):
    bad = tmp_path / 'training-state-000001.pt'
    bad.write_bytes(b'PK\x03\x04 not a real zip')
    with pytest.raises(IOError, match='training-state-000001.pt'):
        training_loop.training_loop(**tiny_config(tmp_path / 'run', data_path, resume=str(bad)))
