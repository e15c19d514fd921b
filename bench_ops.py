"""Benchmark the CUDA ops against their PyTorch references.

Times bias_act, upfirdn2d (upsample2d, downsample2d, filter2d) and the modulated-conv weight
preparation, forward and forward+backward, for the layer shapes of a 256px and a 1024px StyleGAN2
(batch 4 and 32) plus large tensors, and filtered_lrelu for the layers of a 256px and a 1024px
StyleGAN3-T and -R (their distinct shapes), in fp32/fp16/bf16. Timing uses CUDA events after warm-up,
rotating through enough input copies that the working set exceeds the L2 cache. Reports time,
achieved GB/s (minimal bytes each op must move), percent of a measured device-to-device copy and
of the GPU's datasheet peak, and the speedup over the reference.

Examples:

\b
    python bench_ops.py --quick                       # smoke run, a few seconds
    python bench_ops.py --dtypes=fp16,bf16 --json=bench.json
    python bench_ops.py --ops=upfirdn2d --configs=1024 --batches=32
    python bench_ops.py --ops=filtered_lrelu --batches=4 --dtypes=fp32,fp16 --summary
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
OPS = ('bias_act', 'upfirdn2d', 'modconv', 'filtered_lrelu')
# StyleGAN2 configs: channel_base and channel_max (NVlabs paper256 and stylegan2 config-f).
CONFIGS = {256: (16384, 512), 1024: (32768, 512)}
# StyleGAN3 configs: channel_base, channel_max, conv_kernel, radial down filters (NVlabs train.py).
SG3_CONFIGS = {'T': (32768, 512, 3, False), 'R': (65536, 1024, 1, True)}


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


def sg3_layers(res, cfg, num_layers=14, num_critical=2, margin=10, first_cutoff=2, first_stopband=2 ** 2.1,
               last_stopband_rel=2 ** 0.3, filter_size=6, lrelu_upsampling=2):
    """filtered_lrelu calls of the StyleGAN3-`cfg` ('T' or 'R') synthesis layers at `res` px (paper, Sec. 3 and App. F):
    dicts of name, channels, size (of the input: the convolution's output), up, down, up_taps, down_taps, padding, radial."""
    base, cmax, kernel, radial = SG3_CONFIGS[cfg]
    last_cutoff = res / 2
    last_stopband = last_cutoff * last_stopband_rel
    rates, sizes, channels = [], [], []
    for i in range(num_layers + 1):
        e = min(i / (num_layers - num_critical), 1)
        cutoff = first_cutoff * (last_cutoff / first_cutoff) ** e
        stopband = first_stopband * (last_stopband / first_stopband) ** e
        rates.append(2 ** math.ceil(math.log2(min(stopband * 2, res))))
        sizes.append(res if i >= num_layers - 1 else rates[-1] + 2 * margin)
        channels.append(3 if i == num_layers else int(round(min((base / 2) / cutoff, cmax))))
    layers = []
    for i in range(num_layers + 1):
        prev = max(i - 1, 0)
        torgb = i == num_layers
        tmp = max(rates[prev], rates[i]) * (1 if torgb else lrelu_upsampling)
        up, down = int(round(tmp / rates[prev])), int(round(tmp / rates[i]))
        up_taps = filter_size * up if up > 1 and not torgb else 1
        down_taps = filter_size * down if down > 1 and not torgb else 1
        size_in = sizes[prev] + (kernel - 1 if not torgb else 0)
        pad_total = (sizes[i] - 1) * down + 1 - size_in * up + up_taps + down_taps - 2
        lo = (pad_total + up) // 2
        layers.append(dict(name=f'L{i}_{sizes[i]}_{channels[i]}', channels=channels[i], size=size_in, up=up, down=down, up_taps=up_taps,
                           down_taps=down_taps, padding=[lo, pad_total - lo, lo, pad_total - lo],
                           radial=radial and i < num_layers - num_critical, torgb=torgb))
    return [l for l in layers if not l['torgb']]  # ToRGB is bias_act, not filtered_lrelu


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
    if 'filtered_lrelu' in ops:
        for res in configs:
            for cfg in SG3_CONFIGS:
                for batch in batches:
                    seen = set()
                    layers = sg3_layers(res, cfg)
                    for layer in (layers[-2:] if quick else layers):
                        shape = [batch, layer['channels'], layer['size'], layer['size']]
                        key = (tuple(shape), layer['up'], layer['down'], layer['up_taps'], layer['down_taps'], tuple(layer['padding']), layer['radial'])
                        if key in seen:
                            continue
                        seen.add(key)
                        out.append(dict(op='filtered_lrelu', name=f'flrelu {cfg}{res} b{batch} {layer["name"]}', shape=shape,
                                        **{k: layer[k] for k in ('up', 'down', 'up_taps', 'down_taps', 'padding', 'radial')}))
            if quick:
                break
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
    from ops import _cuda_modconv, bias_act, filtered_lrelu, modconv, upfirdn2d
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
    elif case['op'] == 'filtered_lrelu':
        b = torch.randn(shape[1], device=device, dtype=dtype, requires_grad=backward)
        fu = torch.full([case['up_taps']], 1 / case['up_taps'], device=device)
        fd_taps = case['down_taps']
        fd = torch.full([fd_taps, fd_taps] if case['radial'] else [fd_taps], 1 / fd_taps ** (2 if case['radial'] else 1), device=device)

        def forward(x):
            return filtered_lrelu.filtered_lrelu(x, fu, fd, b, up=case['up'], down=case['down'], padding=case['padding'], clamp=256, impl=impl)
        out_numel = forward(xs[0].detach()).numel()
        params = [b]
        nbytes = (2 if backward else 1) * (numel + out_numel) * es  # input and output only (fwd: x, y; bwd: dy, dx)
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


# Benchmark case op -> the extension (and self-check) it exercises.
EXTENSION = {'bias_act': 'bias_act', 'upsample2d': 'upfirdn2d', 'downsample2d': 'upfirdn2d', 'filter2d': 'upfirdn2d',
             'modconv': 'modconv', 'grouped_conv': 'modconv', 'filtered_lrelu': 'filtered_lrelu'}


def summary_lines(device_name, copy_gbps, rows, verdicts):
    """Compact table: per op, dtype and pass the median GB/s and % of copy bandwidth over its cases, the
    geometric-mean speedup over the reference, and the self-check verdict of the op's extension."""
    groups = {}
    for r in rows:
        groups.setdefault((r['op'], r['dtype'], r['pass_']), []).append(r)
    lines = [f'{"GPU":<22} {"op":<15} {"dtype":<5} {"pass":<7} {"cases":>5} {"GB/s":>7} {"%copy":>6} {"speedup":>8}  self-check',
             f'{device_name[:22]:<22} {"copy":<15} {"":<5} {"":<7} {"":>5} {copy_gbps:>7.0f} {100.0:>6.1f} {"":>8}']
    for (op, dname, pass_), rs in groups.items():
        gb = sorted(r['gbps'] for r in rs if r['gbps'])
        med = gb[len(gb) // 2] if gb else None
        sp = [r['speedup'] for r in rs if r['speedup']]
        geo = math.exp(sum(math.log(v) for v in sp) / len(sp)) if sp else None
        verdict = verdicts.get((EXTENSION[op], dname))
        lines.append(f'{"":<22} {op:<15} {dname:<5} {pass_:<7} {len(rs):>5} {_fmt(med, ">7.0f", 7)} '
                     f'{_fmt(100 * med / copy_gbps if med else None, ">6.1f", 6)} {(f"{geo:.2f}x" if geo else "n/a"):>8}  '
                     f'{"pass" if verdict is None else "FAIL"}')
    for (ext, dname), verdict in verdicts.items():
        if verdict is not None:
            lines.append(f'self-check {ext} {dname}: FAIL {verdict}')
    return lines


def run(ops, configs, batches, dtypes, large, quick, warmup, iters, json_path, summary=False):
    if not torch.cuda.is_available():
        click.echo('bench_ops.py needs a CUDA GPU: torch.cuda.is_available() is False '
                   f'(PyTorch {torch.__version__}, CUDA {torch.version.cuda}). Run it on a machine with an NVIDIA GPU.', err=True)
        sys.exit(2)
    from ops import _build, _selfcheck
    verdicts = {}
    for name in ops:
        try:
            _build.load_op(name)
        except _build.BuildError as e:
            click.echo(f'Cannot benchmark {name}: {e}', err=True)
            sys.exit(1)
        for dname in dtypes:
            verdicts[(name, dname)] = _selfcheck.verdict(name, 'cuda', DTYPES[dname])
            click.echo(f'self-check {name} {dname}: {"pass" if verdicts[(name, dname)] is None else "FAIL " + verdicts[(name, dname)]}')
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
            if verdicts[(EXTENSION[case['op']], dname)] is not None:
                continue  # the kernel disagrees with the reference here: nothing worth timing
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
    if summary:
        click.echo('')
        for line in summary_lines(device_name, copy_gbps, rows, verdicts):
            click.echo(line)
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
@click.option('--summary', is_flag=True, help='Also print a compact table per op, dtype and pass (median GB/s, speedup, self-check)')
@click.option('--json', 'json_path', type=click.Path(dir_okay=False), default=None, help='Also write the results as JSON')
def main(ops, configs, batches, dtypes, large, quick, warmup, iters, summary, json_path):
    try:
        batch_list = [int(b) for b in batches.split(',') if b.strip()]
    except ValueError:
        raise click.BadParameter(f'{batches!r}: expected comma-separated integers', param_hint='--batches')
    if not batch_list or min(batch_list) < 1:
        raise click.BadParameter(f'{batches!r}: expected positive integers', param_hint='--batches')
    configs = [int(c) for c in configs]
    if quick:
        configs, batch_list, dtypes, warmup, iters = [256], [4], ['fp32'], 2, 5
    run(ops, configs, batch_list, dtypes, large, quick, warmup, iters, json_path, summary)


if __name__ == '__main__':
    main()
