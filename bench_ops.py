"""Benchmark the CUDA ops against their PyTorch references.

Times bias_act, upfirdn2d (upsample2d, downsample2d, filter2d) and the modulated-conv weight
preparation, forward and forward+backward, for the layer shapes of a 256px and a 1024px StyleGAN2
(batch 4 and 32) plus large tensors, in fp32/fp16/bf16. Timing uses CUDA events after warm-up,
rotating through enough input copies that the working set exceeds the L2 cache. Reports time,
achieved GB/s (minimal bytes each op must move), percent of a measured device-to-device copy and
of the GPU's datasheet peak, and the speedup over the reference.

Examples:

\b
    python bench_ops.py --quick                       # smoke run, a few seconds
    python bench_ops.py --dtypes=fp16,bf16 --json=bench.json
    python bench_ops.py --ops=upfirdn2d --configs=1024 --batches=32
"""

import math
import re
import sys
import time

import click
import torch

import dnnlib.cli

# Datasheet memory bandwidth in GB/s, matched against torch.cuda.get_device_name() in order.
PEAK_BANDWIDTH = [
    (r'GH200', 4000), (r'H200', 4800), (r'H100.*(PCIe)', 2000), (r'H100.*NVL', 3900), (r'H100', 3350),
    (r'B200', 8000), (r'B100', 8000), (r'A100.*80GB.*PCIe', 1935), (r'A100.*80GB', 2039), (r'A100', 1555),
    (r'L40S', 864), (r'L40', 864), (r'L4\b', 300), (r'A10\b', 600), (r'A40', 696), (r'V100', 900),
    (r'RTX 4090', 1008), (r'RTX 3090', 936), (r'RTX A6000', 768), (r'RTX 6000 Ada', 960),
]
DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}
OPS = ('bias_act', 'upfirdn2d', 'modconv')
# StyleGAN2 configs: channel_base and channel_max (NVlabs paper256 and stylegan2 config-f).
CONFIGS = {256: (16384, 512), 1024: (32768, 512)}


def peak_bandwidth(name):
    """Datasheet bandwidth (GB/s) of the GPU called `name`, or None when unknown."""
    for pattern, gbps in PEAK_BANDWIDTH:
        if re.search(pattern, name):
            return gbps
    return None


def layer_shapes(res):
    """(resolution, channels) of the synthesis layers of a StyleGAN2 at `res` px."""
    base, cmax = CONFIGS[res]
    return [(r, min(base // r, cmax)) for r in (2 ** i for i in range(2, int(math.log2(res)) + 1))]


class Timer:
    """Mean milliseconds per call of fn(i) by CUDA events, after warm-up."""

    def __init__(self, warmup, iters):
        self.warmup = warmup
        self.iters = iters

    def __call__(self, fn):
        for i in range(self.warmup):
            fn(i)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for i in range(self.iters):
            fn(i)
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / self.iters


def copy_bandwidth(timer):
    """Measured device-to-device copy bandwidth in GB/s (read + write of 1 GiB)."""
    src = torch.empty(1 << 28, dtype=torch.float32, device='cuda')
    dst = torch.empty_like(src)
    ms = timer(lambda i: dst.copy_(src))
    return 2 * src.numel() * 4 / (ms * 1e-3) / 1e9


def rotating(make, nbytes, l2_bytes, max_copies=16):
    """Enough copies of make() that cycling through them exceeds twice the L2 size."""
    copies = max(1, min(max_copies, math.ceil(2 * l2_bytes / max(nbytes, 1))))
    return [make() for _ in range(copies)]


def cases(ops, configs, batches, large, quick):
    """Benchmark cases: dicts with op, name and shape parameters."""
    out = []
    for res in configs:
        for batch in batches:
            layers = layer_shapes(res)
            if quick:
                layers = layers[-2:]
            for r, c in layers:
                tag = f'{res}px b{batch} {r}x{r}'
                if 'bias_act' in ops:
                    out.append(dict(op='bias_act', name=f'lrelu {tag}', shape=[batch, c, r, r]))
                if 'upfirdn2d' in ops and r >= 8:
                    cin = min(CONFIGS[res][0] // (r // 2), CONFIGS[res][1])
                    out.append(dict(op='upsample2d', name=f'up2 {tag}', shape=[batch, cin, r // 2, r // 2]))
                    out.append(dict(op='downsample2d', name=f'down2 {tag}', shape=[batch, c, r, r]))
                    out.append(dict(op='filter2d', name=f'filter {tag}', shape=[batch, c, r, r]))
                if 'modconv' in ops:
                    out.append(dict(op='modconv', name=f'modulate {tag}', shape=[batch, c, c, 3, 3]))
                    out.append(dict(op='grouped_conv', name=f'grouped conv {tag}', shape=[batch, c, c, 3, 3], res=r))
    if large:
        big = [1 << 27] if quick else [1 << 27, 1 << 28]  # elements: >= 256 MiB in fp16/bf16
        for n in big:
            side = int(math.sqrt(n // 256))
            if 'bias_act' in ops:
                out.append(dict(op='bias_act', name=f'lrelu large {n >> 20}M', shape=[1, 256, side, side]))
            if 'upfirdn2d' in ops:
                out.append(dict(op='upsample2d', name=f'up2 large {n >> 20}M', shape=[1, 256, side // 2, side // 2]))
                out.append(dict(op='downsample2d', name=f'down2 large {n >> 20}M', shape=[1, 256, side, side]))
                out.append(dict(op='filter2d', name=f'filter large {n >> 20}M', shape=[1, 256, side, side]))
    return out


def make_runner(case, dtype, impl, backward, l2_bytes, device='cuda'):
    """(fn(i), bytes moved per call or None) for one case; fn(i) runs call number i."""
    from ops import _cuda_modconv, bias_act, modconv, upfirdn2d
    es = torch.finfo(dtype).bits // 8
    if case['op'] == 'grouped_conv':  # what the modulated weights feed (cuDNN), for scale
        n, o, i_ch, kh, kw = case['shape']
        r = case['res']
        x = torch.randn(1, n * i_ch, r, r, device=device, dtype=dtype, requires_grad=backward)
        w = torch.randn(n * o, i_ch, kh, kw, device=device, dtype=dtype, requires_grad=backward)

        def fn(i):
            y = torch.nn.functional.conv2d(x, w, padding=kh // 2, groups=n)
            if backward:
                torch.autograd.grad(y, [x, w], torch.ones_like(y))
        return fn, None
    if case['op'] == 'modconv':
        n, o, i_ch, kh, kw = case['shape']
        weight = torch.randn(o, i_ch, kh, kw, device=device, dtype=dtype, requires_grad=backward)
        styles_all = rotating(lambda: torch.randn(n, i_ch, device=device, dtype=dtype, requires_grad=backward), n * i_ch * es, l2_bytes)
        modulate = _cuda_modconv.modulate if impl == 'cuda' else modconv._modulate_ref
        gw = torch.ones(n, o, i_ch, kh, kw, device=device, dtype=dtype)
        gd = torch.ones(n, o, device=device, dtype=dtype)

        def fn(i):
            styles = styles_all[i % len(styles_all)]
            w, d = modulate(weight, styles, True, True)
            if backward:
                torch.autograd.grad([w, d], [weight, styles], [gw, gd])
        nbytes = None if backward else (o * i_ch * kh * kw + n * i_ch + n * o * i_ch * kh * kw + n * o) * es
        return fn, nbytes
    shape = case['shape']
    numel = math.prod(shape)
    xs = rotating(lambda: torch.randn(shape, device=device, dtype=dtype, requires_grad=backward), numel * es, l2_bytes)
    if case['op'] == 'bias_act':
        b = torch.randn(shape[1], device=device, dtype=dtype, requires_grad=backward)

        def forward(x):
            return bias_act.bias_act(x, b, act='lrelu', clamp=256, impl=impl)
        out_numel = numel
        params = [b]  # differentiated besides x
        nbytes = (6 if backward else 2) * numel * es  # fwd: x, y; bwd: dy, x, dx, then dx again for db
    else:
        f = upfirdn2d.setup_filter([1, 3, 3, 1], device=device)
        call = {'upsample2d': upfirdn2d.upsample2d, 'downsample2d': upfirdn2d.downsample2d,
                'filter2d': lambda x, f, impl: upfirdn2d.filter2d(x, f, padding=1, impl=impl)}[case['op']]

        def forward(x):
            return call(x, f, impl=impl)
        out_numel = forward(xs[0].detach()).numel()
        params = []
        nbytes = (2 if backward else 1) * (numel + out_numel) * es
    dy = torch.randn(out_numel, device=device, dtype=dtype).reshape(forward(xs[0].detach()).shape) if backward else None

    def fn(i):
        x = xs[i % len(xs)]
        y = forward(x)
        if backward:
            torch.autograd.grad(y, [x] + params, dy)
    return fn, nbytes


def _fmt(value, spec, width):
    return format(value, spec) if value is not None else 'n/a'.rjust(width)


def format_row(row):
    """One line of the printed table."""
    speedup = f'{row["speedup"]:.2f}x' if row['speedup'] is not None else 'n/a'
    return (f'{row["case"]:<36} {row["dtype"]:<5} {row["pass_"]:<7} {row["ms"]:>9.4f} {_fmt(row["gbps"], ">8.0f", 8)} '
            f'{_fmt(row["pct_copy"], ">6.1f", 6)} {_fmt(row["pct_peak"], ">6.1f", 6)} {_fmt(row["ref_ms"], ">9.4f", 9)} {speedup:>8}')


def run(ops, configs, batches, dtypes, large, quick, warmup, iters, json_path):
    if not torch.cuda.is_available():
        click.echo('bench_ops.py needs a CUDA GPU: torch.cuda.is_available() is False '
                   f'(PyTorch {torch.__version__}, CUDA {torch.version.cuda}). Run it on a machine with an NVIDIA GPU.', err=True)
        sys.exit(2)
    from ops import _build
    for name in ops:
        try:
            _build.load_op(name)
        except _build.BuildError as e:
            click.echo(f'Cannot benchmark {name}: {e}', err=True)
            sys.exit(1)
    props = torch.cuda.get_device_properties(0)
    device_name = torch.cuda.get_device_name(0)
    timer = Timer(warmup, iters)
    copy_gbps = copy_bandwidth(timer)
    peak = peak_bandwidth(device_name)
    click.echo(f'{device_name}: measured copy {copy_gbps:.0f} GB/s, datasheet {peak if peak else "n/a"} GB/s, '
               f'L2 {props.L2_cache_size >> 20} MiB; PyTorch {torch.__version__}, CUDA {torch.version.cuda}')
    header = f'{"case":<36} {"dtype":<5} {"pass":<7} {"ms":>9} {"GB/s":>8} {"%copy":>6} {"%peak":>6} {"ref ms":>9} {"speedup":>8}'
    click.echo(header)
    click.echo('-' * len(header))
    rows = []
    t0 = time.time()
    for case in cases(ops, configs, batches, large, quick):
        for dname in dtypes:
            dtype = DTYPES[dname]
            for backward in (False, True):
                fn, nbytes = make_runner(case, dtype, 'cuda', backward, props.L2_cache_size)
                ms = timer(fn)
                del fn
                ref_ms = None
                if case['op'] != 'grouped_conv':
                    ref_fn, _ = make_runner(case, dtype, 'ref', backward, props.L2_cache_size)
                    ref_ms = timer(ref_fn)
                    del ref_fn
                gbps = nbytes / (ms * 1e-3) / 1e9 if nbytes else None
                row = dict(op=case['op'], case=case['name'], shape=case['shape'], dtype=dname,
                           pass_='fwd+bwd' if backward else 'fwd', ms=ms, gbps=gbps,
                           pct_copy=100 * gbps / copy_gbps if gbps else None,
                           pct_peak=100 * gbps / peak if (gbps and peak) else None, ref_ms=ref_ms,
                           speedup=ref_ms / ms if ref_ms else None)
                rows.append(row)

                click.echo(format_row(row))
        torch.cuda.empty_cache()
    click.echo(f'{len(rows)} measurements in {time.time() - t0:.0f} s')
    if json_path:
        import json

        from dnnlib import util
        result = dict(device=device_name, torch=torch.__version__, cuda=torch.version.cuda, copy_gbps=copy_gbps, peak_gbps=peak,
                      l2_bytes=props.L2_cache_size, warmup=warmup, iters=iters,
                      rows=[{('pass' if k == 'pass_' else k): v for k, v in r.items()} for r in rows])
        with util.atomic_write(json_path, 'w') as f:
            json.dump(result, f, indent=2)
        click.echo(f'Wrote {json_path}')


def _csv(choices, name):
    def parse(ctx, param, value):
        items = [v.strip() for v in value.split(',') if v.strip()]
        bad = [v for v in items if v not in choices]
        if bad or not items:
            raise click.BadParameter(f'{", ".join(bad) or "empty"}: choose from {", ".join(choices)}', param_hint=f'--{name}')
        return items
    return parse


@click.command(help=__doc__, context_settings=dnnlib.cli.CONTEXT_SETTINGS)
@click.option('--ops', default=','.join(OPS), show_default=True, callback=_csv(OPS, 'ops'), help='Ops to time')
@click.option('--configs', default='256,1024', show_default=True, callback=_csv(['256', '1024'], 'configs'), help='StyleGAN2 resolutions whose layer shapes are used')
@click.option('--batches', default='4,32', show_default=True, help='Batch sizes, comma-separated')
@click.option('--dtypes', default='fp32,fp16,bf16', show_default=True, callback=_csv(list(DTYPES), 'dtypes'), help='Data types')
@click.option('--large/--no-large', default=True, show_default=True, help='Also time large tensors (2^27 and 2^28 elements: 256 MiB to 1 GiB)')
@click.option('--quick', is_flag=True, help='Smoke run: 256px, batch 4, the two largest layers, one 512 MiB tensor, fp32, few iterations')
@click.option('--warmup', type=click.IntRange(min=0), default=10, show_default=True, help='Untimed calls first')
@click.option('--iters', type=click.IntRange(min=1), default=50, show_default=True, help='Timed calls per measurement')
@click.option('--json', 'json_path', type=click.Path(dir_okay=False), default=None, help='Also write the results as JSON')
def main(ops, configs, batches, dtypes, large, quick, warmup, iters, json_path):
    try:
        batch_list = [int(b) for b in batches.split(',') if b.strip()]
    except ValueError:
        raise click.BadParameter(f'{batches!r}: expected comma-separated integers', param_hint='--batches')
    if not batch_list or min(batch_list) < 1:
        raise click.BadParameter(f'{batches!r}: expected positive integers', param_hint='--batches')
    configs = [int(c) for c in configs]
    if quick:
        configs, batch_list, dtypes, warmup, iters = [256], [4], ['fp32'], 2, 5
    run(ops, configs, batch_list, dtypes, large, quick, warmup, iters, json_path)


if __name__ == '__main__':
    main()
