"""Shared pytest setup: repo root on sys.path, deterministic CPU threads, and skipping of
`cuda`-marked tests on machines without a GPU."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA GPU')
    for item in items:
        if 'cuda' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope='module')
def one_thread():
    """One torch thread for a module of tiny-tensor tests: they are dominated by thread synchronisation,
    and one thread is much faster on a busy 2-core machine. Use with
    `pytestmark = pytest.mark.usefixtures('one_thread')`."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)
