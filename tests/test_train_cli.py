"""train.py: validation errors name the flag, --dry-run writes nothing, presets fill only unset
values, and re-running the same command with --resume=auto continues the same run dir."""

import json
import os

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import train
from tests.test_training_loop import tiny_dataset

TINY = ['--cbase=256', '--cmax=32', '--map=2', '--batch=4', '--mbstd-group=2', '--workers=0', '--device=cpu',
        '--aug=noaug', '--tick=0.004', '--snap=1']


@pytest.fixture(scope='module')
def data_path(tmp_path_factory):
    return tiny_dataset(str(tmp_path_factory.mktemp('data')))


def _run(args):
    return CliRunner().invoke(train.main, args, catch_exceptions=False)


@pytest.mark.parametrize('extra, flag, message', [
    (['--batch=6', '--gpus=4', '--device=cpu'], '--batch', 'multiple of --gpus'),
    (['--batch=8', '--gpus=2', '--batch-gpu=3'], '--batch-gpu', 'multiple of --gpus × --batch-gpu'),
    (['--batch=8', '--batch-gpu=2', '--mbstd-group=4'], '--batch-gpu', 'smaller than the minibatch-std group'),
    (['--cfg=nosuchcfg'], '--cfg', 'nosuchcfg'),
    (['--metrics=fid_nonsense'], '--metrics', 'unknown metric'),
    (['--metrics=fid_demo,eqt1k_int'], '--metrics', 'eqt1k_int measures the equivariance of StyleGAN3 generators'),
    (['--p=0.3'], '--p', 'aug=fixed'),
    (['--target=0.5', '--aug=noaug'], '--target', 'aug=ada'),
    (['--resume=/no/such/checkpoint.pt'], '--resume', 'no such file'),
])
def test_validation_names_the_flag(tmp_path, data_path, extra, flag, message):
    args = [f'--outdir={tmp_path}', f'--data={data_path}', '--device=cpu', '-n'] + extra
    result = CliRunner().invoke(train.main, args)
    assert result.exit_code != 0
    assert flag in result.output and message in result.output, result.output
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('flag, value, text', [
    ('--kimg', 'nan', "'nan' is not a finite number"),
    ('--kimg', '0', 'out of range: need 0 < x'),
    ('--tick', 'inf', "'inf' is not a finite number"),
    ('--gamma', '-inf', 'not a finite number'),
    ('--gamma', '-1', 'out of range: need 0 <= x'),
    ('--glr', 'nan', 'not a finite number'),
    ('--dlr', '1e999', 'not a finite number'),
    ('--ema', 'nan', 'not a finite number'),
    ('--target', 'nan', 'not a finite number'),
    ('--target', '1', 'out of range: need 0 < x < 1'),
    ('--p', '1.5', 'out of range: need 0 <= x <= 1'),
    ('--p', 'nan', 'not a finite number'),
    ('--device', 'meta', "'meta' is not a supported device"),
    ('--seed', '4294967296', '4294967296'),
])
def test_non_finite_and_out_of_range_flags_are_refused(tmp_path, data_path, flag, value, text):
    result = CliRunner().invoke(train.main, [f'--outdir={tmp_path}', f'--data={data_path}', '-n', f'{flag}={value}'])
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert f"'{flag}'" in last and text in last, result.output
    assert os.listdir(tmp_path) == []


def test_outdir_or_run_dir_that_is_a_file_is_refused(tmp_path, data_path):
    (tmp_path / 'file').write_text('keep')
    for flag in ('--outdir', '--run-dir'):
        args = {'--outdir': str(tmp_path / 'o'), '--data': data_path, flag: str(tmp_path / 'file')}
        result = CliRunner().invoke(train.main, [f'{k}={v}' for k, v in args.items()] + ['--device=cpu', '-n'])
        assert result.exit_code == 2 and f"'{flag}'" in result.output and 'is an existing file, not a folder' in result.output
    assert (tmp_path / 'file').read_text() == 'keep' and sorted(os.listdir(tmp_path)) == ['file']


def test_decompression_bomb_and_bad_labels_are_one_line_naming_the_file(tmp_path, monkeypatch):
    # train.py -n opens the dataset: a 30000x30000 PNG of a few hundred KB is refused from its header,
    # and --cond=1 labels that mix classes and vectors name dataset.json; neither decodes the bomb.
    from tests.test_dataset import _bomb_png, no_decoding_patch
    bomb_dir = tmp_path / 'bomb'
    bomb_dir.mkdir()
    (bomb_dir / 'a.png').write_bytes(_bomb_png(30000, 30000))
    with no_decoding_patch(monkeypatch):
        result = CliRunner().invoke(train.main, [f'--outdir={tmp_path}/o', f'--data={bomb_dir}', '--device=cpu', '-n'])
    assert result.exit_code == 2 and 'Invalid value for --data: ' in result.output and 'a.png: image is 30000x30000; refused before decoding' in result.output
    labeled = tmp_path / 'labeled'
    labeled.mkdir()
    names = [f'img{i}.png' for i in range(4)]
    for i, name in enumerate(names):
        PIL.Image.fromarray(np.full([8, 8, 3], 40 * i, dtype=np.uint8)).save(labeled / name)
    labels = [[n, [1.0, 0.0] if i == 2 else i % 2] for i, n in enumerate(names)]
    (labeled / 'dataset.json').write_text(json.dumps({'labels': labels}))
    result = CliRunner().invoke(train.main, [f'--outdir={tmp_path}/o', f'--data={labeled}', '--device=cpu', '--cond=1', '-n'])
    assert result.exit_code == 2 and 'dataset.json: label of ' in result.output and 'not a mix' in result.output
    assert not (tmp_path / 'o').exists()


@pytest.mark.parametrize('script', ['train', 'generate', 'calc_metrics', 'dataset_tool', 'bench_ops'])
def test_every_script_has_short_help(script):
    import importlib
    module = importlib.import_module(script)
    command = getattr(module, 'cli', None) or module.main
    short, long = CliRunner().invoke(command, ['-h']), CliRunner().invoke(command, ['--help'])
    assert short.exit_code == 0 and short.output == long.output and 'Usage:' in short.output


def test_missing_data_names_the_flag(tmp_path):
    result = CliRunner().invoke(train.main, [f'--outdir={tmp_path}', '--data=/no/such/data.zip', '-n'])
    assert result.exit_code != 0 and '--data' in result.output and '/no/such/data.zip' in result.output


def test_dry_run_writes_nothing_and_presets_fill_unset(tmp_path, data_path):
    outdir = tmp_path / 'out'
    result = _run([f'--outdir={outdir}', f'--data={data_path}', '--cfg=paper256', '--gamma=3', '--device=cpu', '--dry-run'])
    assert result.exit_code == 0 and 'Dry run' in result.output
    assert not outdir.exists()
    options = json.loads(result.output[result.output.index('{'):result.output.index('\n}') + 2])
    assert options['loss_kwargs']['r1_gamma'] == 3                # given
    assert options['batch_size'] == 64 and options['ema_kimg'] == 20   # paper256 preset
    assert options['G_kwargs']['channel_base'] == 16384 and options['G_kwargs']['mapping_kwargs']['num_layers'] == 8
    assert options['training_set_kwargs']['resolution'] == 16       # from the data

    # cfg=auto on CPU: small nets for the quick start; explicit flags still win.
    result = _run([f'--outdir={outdir}', f'--data={data_path}', '--device=cpu', '--cbase=512', '-n'])
    options = json.loads(result.output[result.output.index('{'):result.output.index('\n}') + 2])
    assert options['G_kwargs']['channel_base'] == 512 and options['G_kwargs']['channel_max'] == train.CPU_AUTO['cmax']
    assert options['G_kwargs']['input_from_w'] is True
    assert not outdir.exists()


def test_cpu_auto_w_input_and_aug_defaults(tmp_path, data_path, monkeypatch):
    """The CPU auto preset turns --w-input on and augmentation off; both stay NVlabs' elsewhere (no
    input_from_w key at all, ADA), explicit flags win, and --w-input is refused for StyleGAN3."""
    base = [f'--outdir={tmp_path}', f'--data={data_path}']
    o = _dry_run_options(base + ['--device=cpu'])
    assert o['augment_kwargs'] is None and o['ada_target'] is None and o['augment_p'] == 0
    o = _dry_run_options(base + ['--device=cpu', '--aug=ada'])
    assert o['augment_kwargs']['class_name'] == 'training.augment.AugmentPipe' and o['ada_target'] == 0.6
    assert _dry_run_options(base + ['--device=cpu', '--cfg=paper256'])['ada_target'] == 0.6
    result = _run(base + ['--device=cpu', '--target=0.5', '-n'])  # the CPU default is noaug
    assert result.exit_code == 2 and '--target' in result.output and 'aug=ada' in result.output, result.output
    assert _dry_run_options(base + ['--device=cpu'])['G_kwargs']['input_from_w'] is True
    assert 'input_from_w' not in _dry_run_options(base + ['--device=cpu', '--w-input=0'])['G_kwargs']
    assert 'input_from_w' not in _dry_run_options(base + ['--device=cpu', '--cfg=paper256'])['G_kwargs']
    assert _dry_run_options(base + ['--device=cpu', '--cfg=paper256', '--w-input=1'])['G_kwargs']['input_from_w'] is True
    assert 'input_from_w' not in _dry_run_options(base + ['--device=cpu', '--cfg=stylegan3-t', '--gamma=1'])['G_kwargs']
    result = _run(base + ['--device=cpu', '--cfg=stylegan3-t', '--gamma=1', '--w-input=1', '-n'])
    assert result.exit_code == 2 and '--w-input' in result.output and 'stylegan3-t' in result.output, result.output
    monkeypatch.setattr(train.torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(train.torch.cuda, 'device_count', lambda: 1)
    assert 'input_from_w' not in _dry_run_options(base + ['--device=cuda'])['G_kwargs']


def test_resume_auto_is_the_same_command(tmp_path, data_path):
    outdir = tmp_path / 'out'
    base = [f'--outdir={outdir}', f'--data={data_path}', '--resume=auto'] + TINY
    assert _run(base + ['--kimg=0.004']).exit_code == 0
    runs = os.listdir(outdir)
    assert len(runs) == 1 and runs[0].startswith('00000-auto-')
    run_dir = outdir / runs[0]
    for name in ['training_options.json', 'log.txt', 'stats.jsonl', 'reals.png', 'network-snapshot-000000.004.pt', 'training-state-000000.004.pt']:
        assert (run_dir / name).exists(), name

    # Same command, longer: continues in the same run dir from its checkpoint.
    result = _run(base + ['--kimg=0.008'])
    assert result.exit_code == 0
    assert os.listdir(outdir) == runs
    assert 'Resuming from' in result.output and 'training-state-000000.004.pt' in result.output
    lines = [json.loads(l) for l in open(run_dir / 'stats.jsonl')]
    kimg = [line['Progress/kimg']['mean'] for line in lines]
    assert kimg == sorted(kimg) and abs(kimg[-1] - 0.008) < 1e-6
    # NVlabs: 'Progress/augment' is reported once per tick, 0 without an augment pipe (--aug=noaug).
    assert all(line['Progress/augment'] == dict(num=1, mean=0, std=0) for line in lines)
    assert all(line['Timing/total_days']['mean'] == pytest.approx(line['Timing/total_hours']['mean'] / 24) for line in lines)

    # A different configuration is not silently continued: a new description gives a new run dir.
    assert _run(base + ['--kimg=0.004', '--gamma=5', '-n']).exit_code == 0
    assert os.listdir(outdir) == runs


def _dry_run_options(args):
    result = _run(args + ['--dry-run'])
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index('{'):result.output.index('\n}') + 2])


# NVlabs stylegan2-ada-pytorch train.py cfg_specs, written out by hand (not read from train.CFG_SPECS).
NVLABS_CFG = {
    'stylegan2': dict(ref_gpus=8, kimg=25000,  mb=32, mbstd=4,  fmaps=1,   lrate=0.002,  gamma=10,   ema=10,  ramp=None, map=8),
    'paper256':  dict(ref_gpus=8, kimg=25000,  mb=64, mbstd=8,  fmaps=0.5, lrate=0.0025, gamma=1,    ema=20,  ramp=None, map=8),
    'paper512':  dict(ref_gpus=8, kimg=25000,  mb=64, mbstd=8,  fmaps=1,   lrate=0.0025, gamma=0.5,  ema=20,  ramp=None, map=8),
    'paper1024': dict(ref_gpus=8, kimg=25000,  mb=32, mbstd=4,  fmaps=1,   lrate=0.002,  gamma=2,    ema=10,  ramp=None, map=8),
    'cifar':     dict(ref_gpus=2, kimg=100000, mb=64, mbstd=32, fmaps=1,   lrate=0.0025, gamma=0.01, ema=500, ramp=0.05, map=2),
}


def _check_nvlabs_options(o, spec, mb, batch_gpu, mbstd, cifar=False):
    assert o['batch_size'] == mb and o['batch_gpu'] == batch_gpu
    assert o['total_kimg'] == spec['kimg'] and o['ema_kimg'] == pytest.approx(spec['ema']) and o['ema_rampup'] == spec['ramp']
    for net in ['G_kwargs', 'D_kwargs']:
        assert o[net]['channel_base'] == int(spec['fmaps'] * 32768) and o[net]['channel_max'] == 512
        assert o[net]['num_fp16_res'] == 4 and o[net]['conv_clamp'] == 256
    assert o['G_kwargs']['z_dim'] == 512 and o['G_kwargs']['w_dim'] == 512
    assert o['G_kwargs']['mapping_kwargs']['num_layers'] == spec['map']
    assert o['D_kwargs']['epilogue_kwargs']['mbstd_group_size'] == mbstd
    for opt in ['G_opt_kwargs', 'D_opt_kwargs']:
        assert o[opt] == dict(class_name='torch.optim.Adam', lr=pytest.approx(spec['lrate']), betas=[0, 0.99], eps=1e-8)
    assert o['G_reg_interval'] == 4 and o['D_reg_interval'] == 16
    assert o['loss_kwargs']['r1_gamma'] == pytest.approx(spec['gamma'])
    assert o['loss_kwargs']['pl_weight'] == (0 if cifar else 2)
    assert o['loss_kwargs']['style_mixing_prob'] == (0 if cifar else 0.9)
    assert o['D_kwargs'].get('architecture', 'resnet') == ('orig' if cifar else 'resnet')
    assert o['augment_kwargs'] == dict(class_name='training.augment.AugmentPipe', xflip=1, rotate90=1, xint=1, scale=1, rotate=1,
                                       aniso=1, xfrac=1, brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)  # default bgc
    assert o['ada_target'] == 0.6 and o['augment_p'] == 0


@pytest.mark.parametrize('cfg', sorted(NVLABS_CFG))
def test_fixed_presets_match_nvlabs(tmp_path, data_path, cfg):
    spec = NVLABS_CFG[cfg]
    o = _dry_run_options([f'--outdir={tmp_path}', f'--data={data_path}', f'--cfg={cfg}', '--device=cpu'])
    # batch_gpu = mb // ref_gpus whatever --gpus is (more rounds of gradient accumulation on fewer GPUs).
    _check_nvlabs_options(o, spec, mb=spec['mb'], batch_gpu=spec['mb'] // spec['ref_gpus'], mbstd=spec['mbstd'], cifar=(cfg == 'cifar'))
    # --batch overrides the batch and sets batch_gpu = batch // gpus (NVlabs); the group never exceeds it.
    o = _dry_run_options([f'--outdir={tmp_path}', f'--data={data_path}', f'--cfg={cfg}', '--device=cpu', '--gpus=2', '--batch=16'])
    assert o['batch_size'] == 16 and o['batch_gpu'] == 8
    assert o['D_kwargs']['epilogue_kwargs']['mbstd_group_size'] == min(spec['mbstd'], 8)


@pytest.mark.parametrize('gpus', [1, 2, 8])
def test_auto_preset_formula_on_gpus(tmp_path, data_path, monkeypatch, gpus):
    # The GPU 'auto' rules (CPU runs use the small CPU_AUTO networks instead); CUDA faked for the dry run.
    monkeypatch.setattr(train.torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(train.torch.cuda, 'device_count', lambda: 8)
    o = _dry_run_options([f'--outdir={tmp_path}', f'--data={data_path}', '--device=cuda', f'--gpus={gpus}'])
    res = 16  # tiny_dataset resolution
    mb = max(min(gpus * min(4096 // res, 32), 64), gpus)
    spec = dict(kimg=25000, mb=mb, mbstd=min(mb // gpus, 4), fmaps=1 if res >= 512 else 0.5, lrate=0.002 if res >= 1024 else 0.0025,
                gamma=0.0002 * res ** 2 / mb, ema=mb * 10 / 32, ramp=0.05, map=2)
    assert mb == {1: 32, 2: 64, 8: 64}[gpus] and spec['ema'] == pytest.approx(mb / 3.2) and spec['gamma'] == pytest.approx(0.0512 / mb)
    _check_nvlabs_options(o, spec, mb=mb, batch_gpu=mb // gpus, mbstd=spec['mbstd'])


def test_resume_from_weights_is_nvlabs_transfer_learning(tmp_path, data_path):
    # NVlabs train.py: --resume=<network pickle> sets ada_kimg=100 and ema_rampup=None. Here that holds
    # for weights-only files; a training-state file continues exactly with the preset's values, and a
    # --resume=auto continuation keeps the values its run was started with.
    src = tmp_path / 'src'
    assert _run([f'--outdir={src}', f'--data={data_path}', '--kimg=0.004'] + TINY).exit_code == 0
    src_dir = src / os.listdir(src)[0]
    o = _dry_run_options([f'--outdir={tmp_path}/x', f'--data={data_path}', '--device=cpu', f'--resume={src_dir}/network-snapshot-000000.004.pt'])
    assert o['ada_kimg'] == 100 and o['ema_rampup'] is None
    o = _dry_run_options([f'--outdir={tmp_path}/x', f'--data={data_path}', '--device=cpu', f'--resume={src_dir}/training-state-000000.004.pt'])
    assert 'ada_kimg' not in o and o['ema_rampup'] == 0.05
    o = _dry_run_options([f'--outdir={tmp_path}/x', f'--data={data_path}', '--device=cpu'])
    assert 'ada_kimg' not in o and o['ema_rampup'] == 0.05

    # Fine-tune from the snapshot, then continue that run with --resume=auto.
    out = tmp_path / 'out'
    result = _run([f'--outdir={out}', f'--data={data_path}', f'--resume={src_dir}/network-snapshot-000000.004.pt', '--kimg=0.004'] + TINY)
    assert result.exit_code == 0 and '(weights only)' in result.output
    runs = os.listdir(out)
    options = json.load(open(out / runs[0] / 'training_options.json'))
    assert options['ada_kimg'] == 100 and options['ema_rampup'] is None
    result = _run([f'--outdir={out}', f'--data={data_path}', '--resume=auto', '--kimg=0.008'] + TINY)
    assert result.exit_code == 0 and '(exact continuation)' in result.output, result.output
    assert os.listdir(out) == runs
    options = json.load(open(out / runs[0] / 'training_options.json'))
    assert options['ada_kimg'] == 100 and options['ema_rampup'] is None
