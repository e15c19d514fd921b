"""torch_utils.misc, persistence and training_stats."""

import numpy as np
import pytest
import torch

from torch_utils import misc, persistence, training_stats


def test_assert_shape_messages():
    x = torch.zeros(4, 256)
    misc.assert_shape(x, [None, 256], name='styles')
    with pytest.raises(ValueError, match=r'styles: expected shape \[\*, 512\], got \[4, 256\]'):
        misc.assert_shape(x, [None, 512], name='styles')
    with pytest.raises(ValueError, match=r'w: expected 3-D tensor of shape \[\*, 10, 512\], got 2-D \[4, 256\]'):
        misc.assert_shape(x, [None, 10, 512], name='w')
    with pytest.raises(ValueError, match='expected a 4-D tensor, got 2-D'):
        misc.assert_rank(x, 4, name='img')


def test_constant_cache():
    a = misc.constant([1, 2, 3], dtype=torch.float32)
    b = misc.constant([1, 2, 3], dtype=torch.float32)
    assert a is b and a.tolist() == [1, 2, 3]
    c = misc.constant(0.5, shape=[2, 3])
    assert c.shape == (2, 3) and bool((c == 0.5).all())
    assert misc.constant([1, 2, 3], dtype=torch.float64) is not a


def test_copy_params_and_buffers():
    src = torch.nn.BatchNorm1d(3)
    dst = torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        src.weight.fill_(2)
        src.running_mean.fill_(5)
    misc.copy_params_and_buffers(src, dst, require_all=True)
    assert torch.equal(dst.weight, src.weight) and torch.equal(dst.running_mean, src.running_mean)
    with pytest.raises(ValueError, match=r'weight: source shape \[3\] != destination shape \[4\]'):
        misc.copy_params_and_buffers(src, torch.nn.BatchNorm1d(4))
    with pytest.raises(KeyError, match='no tensor named'):
        misc.copy_params_and_buffers(torch.nn.Identity(), dst, require_all=True)


def test_print_module_summary(capsys):
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    out = misc.print_module_summary(net, [torch.zeros(3, 4)])
    text = capsys.readouterr().out
    assert out.shape == (3, 2)
    assert 'Total' in text and str(4 * 8 + 8 + 8 * 2 + 2) in text and '[3, 2]' in text


@persistence.persistent_class
class _Base(torch.nn.Module):
    def __init__(self, a, b=2):
        super().__init__()
        self.lin = torch.nn.Linear(a, b)


@persistence.persistent_class
class _Derived(_Base):
    def __init__(self, c, **kwargs):
        super().__init__(a=c, b=3)
        self.extra = kwargs


def test_persistence_records_outermost_init():
    obj = _Derived(5, note={'x': [1]})
    assert obj.init_args == (5,) and obj.init_kwargs == {'note': {'x': [1]}}
    kw = obj.init_kwargs
    kw['note']['x'].append(2)  # copies, not references
    assert obj.init_kwargs == {'note': {'x': [1]}}
    name = persistence.class_name_of(obj)
    assert name.endswith('test_torch_utils._Derived')
    assert persistence.lookup_class(name) is _Derived
    assert persistence.is_persistent(obj) and not persistence.is_persistent(torch.nn.Linear(1, 1))
    with pytest.raises(ValueError, match="Unknown network class 'os.system'"):
        persistence.lookup_class('os.system')


def test_training_stats_moments():
    training_stats.reset()
    collector = training_stats.Collector(regex='Loss/.*')
    values = np.array([1.0, 2.0, 3.0, 10.0])
    training_stats.report('Loss/a', torch.tensor(values[:3]))
    training_stats.report('Loss/a', float(values[3]))
    training_stats.report('Exact', 0.004)
    training_stats.report('Other/b', 7.0)
    collector.update()
    assert collector.names() == ['Loss/a']
    assert collector.num('Loss/a') == 4
    assert collector.mean('Loss/a') == pytest.approx(values.mean())
    assert collector.std('Loss/a') == pytest.approx(values.std())
    exact = training_stats.Collector(regex='Exact')
    assert exact.names() == ['Exact']
    training_stats.report('Exact', 0.004)
    exact.update()
    assert exact['Exact'] == 0.004  # Python floats are accumulated in float64, not rounded to float32
    # Next interval only sees new reports; keep_previous keeps the old value when nothing came in.
    training_stats.report('Loss/a', 5.0)
    collector.update()
    assert collector.num('Loss/a') == 1 and collector['Loss/a'] == 5.0
    collector.update()
    assert collector['Loss/a'] == 5.0
    fresh = training_stats.Collector(regex='Loss/.*', keep_previous=False)
    fresh.update()
    assert np.isnan(fresh['Loss/a']) and fresh.num('Loss/a') == 0
    with pytest.raises(KeyError, match='does not match'):
        collector.mean('Other/b')
    assert set(collector.as_dict()) == {'Loss/a'}
    training_stats.reset()


def test_training_stats_report0_and_empty():
    training_stats.reset()
    c = training_stats.Collector()
    training_stats.report0('x', 3.0)
    training_stats.report('x', [])  # empty: ignored
    c.update()
    assert c.num('x') == 1 and c['x'] == 3.0
    training_stats.reset()


def test_cli_device_type(monkeypatch):
    import click
    from torch_utils.cli import Device
    d = Device()
    assert d.convert('cpu', None, None) == 'cpu'
    for bad in ('meta', 'mps', 'cuda:x', 'gpu', 'cpu:0', ''):
        with pytest.raises(click.BadParameter, match='is not a supported device; use one of cpu, cuda, cuda:N'):
            d.convert(bad, None, None)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(click.BadParameter, match='cuda: CUDA is not available on this machine; use --device=cpu'):
        d.convert('cuda', None, None)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    assert d.convert('cuda', None, None) == 'cuda' and d.convert('cuda:1', None, None) == 'cuda:1'
    with pytest.raises(click.BadParameter, match=r'cuda:2: only 2 CUDA device\(s\) are visible \(cuda:0..cuda:1\)'):
        d.convert('cuda:2', None, None)
    train_like = Device(extra=['auto'], allow_index=False)
    assert train_like.convert('auto', None, None) == 'auto'
    with pytest.raises(click.BadParameter, match="'cuda:0' is not a supported device; use one of auto, cpu, cuda$"):
        train_like.convert('cuda:0', None, None)
