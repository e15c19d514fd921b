"""dnnlib.util: EasyDict, construction by name, open_url (paths, file://, http with cache and checksum), atomic writes."""

import functools
import hashlib
import http.server
import os
import threading

import pytest

import dnnlib
from dnnlib import util


def test_easydict():
    d = dnnlib.EasyDict(a=1)
    d.b = 2
    assert d == {'a': 1, 'b': 2} and d.a == 1
    del d.a
    assert 'a' not in d
    with pytest.raises(AttributeError, match='missing'):
        _ = d.missing


def test_construct_and_call_by_name():
    od = util.construct_class_by_name([('x', 1)], class_name='collections.OrderedDict')
    assert list(od.items()) == [('x', 1)]
    assert util.call_func_by_name(-3, func_name='builtins.abs') == 3
    assert util.get_obj_by_name('os.path.join') is os.path.join
    with pytest.raises(TypeError, match='not a class'):
        util.construct_class_by_name(class_name='os.path.join')
    with pytest.raises(ValueError, match='Invalid object name'):
        util.get_obj_by_name('not a name')
    with pytest.raises(AttributeError, match='no attribute path'):
        util.get_obj_by_name('os.path.does_not_exist')
    with pytest.raises(ImportError, match='Cannot import'):
        util.get_obj_by_name('no_such_module_xyz.thing')


def test_atomic_write_success_and_failure(tmp_path):
    path = tmp_path / 'sub' / 'out.bin'
    with util.atomic_write(path) as f:
        f.write(b'first')
    assert path.read_bytes() == b'first'
    mask = os.umask(0o022)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == 0o666 & ~mask  # not mkstemp's 0600
    with pytest.raises(RuntimeError, match='boom'):
        with util.atomic_write(path) as f:
            f.write(b'partial')
            raise RuntimeError('boom')
    assert path.read_bytes() == b'first'  # untouched
    assert [p.name for p in path.parent.iterdir()] == ['out.bin']  # temp removed
    with pytest.raises(ValueError, match='mode'):
        with util.atomic_write(path, mode='a'):
            pass


def test_open_url_local_and_file_url(tmp_path):
    p = tmp_path / 'data.bin'
    p.write_bytes(b'hello')
    digest = hashlib.sha256(b'hello').hexdigest()
    with util.open_url(str(p), sha256=digest) as f:
        assert f.read() == b'hello'
    with util.open_url(p.as_uri()) as f:
        assert f.read() == b'hello'
    assert util.open_url(str(p), return_filename=True) == str(p)
    with pytest.raises(IOError, match='Checksum mismatch'):
        util.open_url(str(p), sha256='0' * 64)
    with pytest.raises(FileNotFoundError, match='No such file'):
        util.open_url(str(tmp_path / 'missing.bin'))


@pytest.fixture
def http_server(tmp_path):
    root = tmp_path / 'www'
    root.mkdir()
    (root / 'weights.bin').write_bytes(b'\x01\x02' * 1000)
    counter = {'n': 0}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            counter['n'] += 1
            return super().do_GET()
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{server.server_address[1]}', counter
    server.shutdown()
    server.server_close()


def test_open_url_http_cached_and_checksummed(http_server, tmp_path):
    base, counter = http_server
    cache = tmp_path / 'cache'
    digest = hashlib.sha256(b'\x01\x02' * 1000).hexdigest()
    path = util.open_url(base + '/weights.bin', cache_dir=str(cache), return_filename=True, sha256=digest, verbose=False)
    assert open(path, 'rb').read() == b'\x01\x02' * 1000
    assert counter['n'] == 1
    with util.open_url(base + '/weights.bin', cache_dir=str(cache), sha256=digest, verbose=False) as f:
        assert len(f.read()) == 2000
    assert counter['n'] == 1  # served from the cache

    # A corrupted cached copy is detected by the checksum and fetched again.
    with open(path, 'wb') as f:
        f.write(b'garbage')
    path2 = util.open_url(base + '/weights.bin', cache_dir=str(cache), return_filename=True, sha256=digest, verbose=False)
    assert open(path2, 'rb').read() == b'\x01\x02' * 1000 and counter['n'] == 2

    with pytest.raises(IOError, match='Checksum mismatch'):
        util.open_url(base + '/weights.bin', cache_dir=str(tmp_path / 'c2'), sha256='f' * 64, num_attempts=1, verbose=False)
    assert not (tmp_path / 'c2').exists() or not any((tmp_path / 'c2').iterdir())  # nothing bad cached
    with pytest.raises(IOError, match='Failed to download'):
        util.open_url(base + '/missing.bin', cache_dir=str(cache), num_attempts=1, verbose=False)


def test_make_cache_dir_path(monkeypatch, tmp_path):
    monkeypatch.setenv('GANFORGE_CACHE_DIR', str(tmp_path))
    assert util.make_cache_dir_path('a', 'b') == os.path.join(str(tmp_path), 'a', 'b')
    monkeypatch.delenv('GANFORGE_CACHE_DIR')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    assert util.make_cache_dir_path('x') == os.path.join(str(tmp_path / 'xdg'), 'ganforge', 'x')


def test_format_time():
    assert util.format_time(42) == '42s'
    assert util.format_time(185) == '3m 05s'
    assert util.format_time(2 * 3600 + 7 * 60) == '2h 07m'
    assert util.format_time(86400 + 3 * 3600) == '1d 03h'


def test_cli_param_types():
    import click
    from dnnlib import cli

    def fails(ptype, value, text):
        with pytest.raises(click.BadParameter, match=text):
            ptype.convert(value, None, None)
    f = cli.FiniteFloat(min=0, max=1, min_open=True)
    assert f.convert('0.25', None, None) == 0.25 and f.convert('1', None, None) == 1.0
    for bad in ('nan', 'NaN', 'inf', '-inf', '1e999'):
        fails(f, bad, 'not a finite number')
    fails(f, '0', r'0 is out of range: need 0 < x <= 1')
    fails(f, 'abc', "'abc' is not a number")
    assert cli.FiniteFloat().convert('-1e300', None, None) == -1e300

    s = cli.SeedList()
    assert s.convert('0-3,7, 10-11', None, None) == [0, 1, 2, 3, 7, 10, 11]
    assert s.convert('4294967295', None, None) == [4294967295]
    fails(s, '-5', r'seed -5 is out of range: seeds must be in \[0, 4294967295\]')
    fails(s, '3-4294967296', 'seed 4294967296 is out of range')
    fails(s, '5-1', 'end 1 is below start 5')
    fails(s, '1,,2', "'' in '1,,2' is not a seed")
    fails(s, '0-99999999', r'100000000 seeds requested; at most 1000000')  # refused before any list is built


def test_cli_output_dir(tmp_path):
    import click
    from dnnlib import cli
    (tmp_path / 'file').write_text('x')
    d = cli.OutputDir()
    assert d.convert(str(tmp_path / 'new' / 'deeper'), None, None) == str(tmp_path / 'new' / 'deeper')
    assert d.convert(str(tmp_path), None, None) == str(tmp_path)
    with pytest.raises(click.BadParameter, match=r'file is an existing file, not a folder'):
        d.convert(str(tmp_path / 'file'), None, None)
    with pytest.raises(click.BadParameter, match=r'sub is inside .*file, which is an existing file'):
        d.convert(str(tmp_path / 'file' / 'sub'), None, None)
