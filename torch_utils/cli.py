"""Click parameter type for a torch device (the other shared types are in dnnlib.cli)."""

import re

import click
import torch


class Device(click.ParamType):
    """'cpu', 'cuda' or 'cuda:N' (N a visible GPU), plus any of `extra` (e.g. 'auto') passed through as given.

    Everything else ('meta', 'mps', typos) is refused, and so is CUDA on a machine without it, at parse time.
    Returns the device string (the scripts build torch.device from it).
    """
    name = 'device'

    def __init__(self, extra=(), allow_index=True):
        self.extra = tuple(extra)
        self.allow_index = allow_index

    def describe(self):
        return ', '.join(list(self.extra) + ['cpu', 'cuda'] + (['cuda:N'] if self.allow_index else []))

    def convert(self, value, param, ctx):
        text = str(value).strip()
        if text in self.extra or text == 'cpu':
            return text
        m = re.fullmatch(r'cuda(?::(\d+))?', text)
        if not m or (m.group(1) is not None and not self.allow_index):
            self.fail(f'{value!r} is not a supported device; use one of {self.describe()}', param, ctx)
        if not torch.cuda.is_available():
            self.fail(f'{text}: CUDA is not available on this machine; use --device=cpu', param, ctx)
        if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
            self.fail(f'{text}: only {torch.cuda.device_count()} CUDA device(s) are visible (cuda:0..cuda:{torch.cuda.device_count() - 1})', param, ctx)
        return text
