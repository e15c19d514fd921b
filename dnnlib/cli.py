"""Click parameter types shared by the command-line scripts.

Every value is checked when the command line is parsed, so a bad flag fails at once with one line
naming it ("Invalid value for '--kimg': nan is not a finite number") instead of deep in the work:

    FiniteFloat(min, max, min_open, max_open)   a finite float, optionally within a range
    SeedList()                                  '0-3,7' -> [0, 1, 2, 3, 7], each in [0, 2**32 - 1]
    OutputDir()                                 a folder path that is not, and is not inside, an existing file

CONTEXT_SETTINGS gives every script both `-h` and `--help`. The torch device type lives in
torch_utils.cli (dnnlib does not import torch).
"""

import math
import os
import re

import click

CONTEXT_SETTINGS = dict(help_option_names=['-h', '--help'])
MAX_SEED = 2**32 - 1  # numpy's RandomState accepts seeds in [0, 2**32 - 1]

#----------------------------------------------------------------------------

class FiniteFloat(click.ParamType):
    """A finite float (NaN and infinities refused), optionally within [min, max]; *_open excludes the bound."""
    name = 'float'

    def __init__(self, min=None, max=None, min_open=False, max_open=False):  # pylint: disable=redefined-builtin
        self.min, self.max, self.min_open, self.max_open = min, max, min_open, max_open

    def describe_range(self):
        lo = '' if self.min is None else f'{self.min:g} {"<" if self.min_open else "<="} '
        hi = '' if self.max is None else f' {"<" if self.max_open else "<="} {self.max:g}'
        return f'{lo}x{hi}'

    def convert(self, value, param, ctx):
        if isinstance(value, float) and math.isfinite(value) and self._in_range(value):
            return value
        try:
            x = float(value)
        except (TypeError, ValueError):
            self.fail(f'{value!r} is not a number', param, ctx)
        if not math.isfinite(x):
            self.fail(f'{value!r} is not a finite number', param, ctx)
        if not self._in_range(x):
            self.fail(f'{x:g} is out of range: need {self.describe_range()}', param, ctx)
        return x

    def _in_range(self, x):
        if self.min is not None and (x < self.min or (self.min_open and x == self.min)):
            return False
        if self.max is not None and (x > self.max or (self.max_open and x == self.max)):
            return False
        return True

    def __repr__(self):
        return f'FiniteFloat({self.describe_range()})'


class SeedList(click.ParamType):
    """Comma-separated seeds and ranges ('0-3,7') -> list of ints, each in [0, MAX_SEED], at most MAX_COUNT of them."""
    name = 'seeds'
    MAX_COUNT = 1_000_000

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            parts = [(int(v), int(v)) for v in value]
        else:
            parts = []
            for part in str(value).split(','):
                part = part.strip()
                m = re.fullmatch(r'(-?\d+)(?:-(-?\d+))?', part)
                if not m:
                    self.fail(f'{part!r} in {value!r} is not a seed: expected N or A-B, comma-separated, e.g. 0-3,7', param, ctx)
                lo = int(m.group(1))
                hi = int(m.group(2)) if m.group(2) is not None else lo
                if hi < lo:
                    self.fail(f'range {part!r}: end {hi} is below start {lo}', param, ctx)
                parts.append((lo, hi))
        for lo, hi in parts:
            bad = lo if not 0 <= lo <= MAX_SEED else hi if not 0 <= hi <= MAX_SEED else None
            if bad is not None:
                self.fail(f'seed {bad} is out of range: seeds must be in [0, {MAX_SEED}] (numpy RandomState seeds)', param, ctx)
        count = sum(hi - lo + 1 for lo, hi in parts)
        if count > self.MAX_COUNT:
            self.fail(f'{count} seeds requested; at most {self.MAX_COUNT} per run', param, ctx)
        return [s for lo, hi in parts for s in range(lo, hi + 1)]


class OutputDir(click.ParamType):
    """A folder to write into (created later): refused when it, or a folder above it, is an existing file."""
    name = 'dir'

    def convert(self, value, param, ctx):
        path = os.path.expanduser(os.fspath(value))
        if not path:
            self.fail('empty path', param, ctx)
        probe = os.path.abspath(path)
        while not os.path.lexists(probe):
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        if os.path.lexists(probe) and not os.path.isdir(probe):
            what = 'is' if probe == os.path.abspath(path) else f'is inside {probe}, which is'
            self.fail(f'{path} {what} an existing file, not a folder', param, ctx)
        return path

#----------------------------------------------------------------------------
