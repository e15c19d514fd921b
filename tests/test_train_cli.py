"""train.py: validation errors name the flag, --dry-run writes nothing, presets fill only unset
values, and re-running the same command with --resume=auto continues the same run dir."""

import json
import os

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
    assert not outdir.exists()


def test_resume_auto_is_the_same_command(tmp_path, data_path):
    outdir = tmp_path / 'out'
    base = [f'--outdir={outdir}', f'--data={data_path}', '--resume=auto'] + TINY
    assert _run(base + ['--kimg=0.004']).exit_code == 0
    runs = os.listdir(outdir)
    assert len(runs) == 1 and runs[0].startswith('00000-auto-')
    run_dir = outdir / runs[0]
    for name in ['training_options.json', 'log.txt', 'stats.jsonl', 'reals.png', 'network-snapshot-000000.pt', 'training-state-000000.pt']:
        assert (run_dir / name).exists(), name

    # Same command, longer: continues in the same run dir from its checkpoint.
    result = _run(base + ['--kimg=0.008'])
    assert result.exit_code == 0
    assert os.listdir(outdir) == runs
    assert 'Resuming from' in result.output and 'training-state-000000.pt' in result.output
    kimg = [json.loads(l)['Progress/kimg']['mean'] for l in open(run_dir / 'stats.jsonl')]
    assert kimg == sorted(kimg) and abs(kimg[-1] - 0.008) < 1e-6

    # A different configuration is not silently continued: a new description gives a new run dir.
    assert _run(base + ['--kimg=0.004', '--gamma=5', '-n']).exit_code == 0
    assert os.listdir(outdir) == runs
