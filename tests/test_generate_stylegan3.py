"""generate.py --translate/--rotate on StyleGAN3-interface stand-ins: the input transform is the float64
inverse of NVlabs' [[c, s, tx], [-s, c, ty], [0, 0, 1]] (checked against hand-computed numbers), set for
every StyleGAN3 network as gen_images.py does (identity by default), the same pixels as that procedure,
interpolation videos, and one-line errors for StyleGAN2 networks and malformed values."""

import os

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import generate
from tests.equivariance_standins import StandInGenerator
from torch_utils import snapshot
from training import networks_stylegan2

pytestmark = pytest.mark.usefixtures('one_thread')


def _hand_inverse(tx, ty, deg):
    """Inverse of [[c, s, tx], [-s, c, ty], [0, 0, 1]]: the transposed rotation and -R^T t."""
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, -s, -(c * tx - s * ty)], [s, c, -(s * tx + c * ty)], [0, 0, 1]])


def _nvlabs_procedure(seed, tx, ty, deg, psi=1.0):
    """gen_images.py written out for one seed: transform = inverse matrix (float64, stored float32),
    z = RandomState(seed).randn(1, z_dim), G(z, c) with noise_mode='const', uint8 quantization."""
    G = StandInGenerator(img_resolution=16)
    G.synthesis.input.transform.copy_(torch.from_numpy(_hand_inverse(tx, ty, deg)))
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim))
    img = G(z, torch.zeros([1, 0]), truncation_psi=psi, noise_mode='const')
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()


def test_make_transform_and_hand_computed_inverse():
    m = generate.make_transform((0.3, -0.2), 30)
    np.testing.assert_allclose(m, [[np.sqrt(3) / 2, 0.5, 0.3], [-0.5, np.sqrt(3) / 2, -0.2], [0, 0, 1]], rtol=0, atol=1e-15)
    G = StandInGenerator(img_resolution=16)
    generate.set_input_transform(G, (0.3, -0.2), 30)
    M = G.synthesis.input.transform
    assert M.dtype == torch.float32
    # By hand: c = sqrt(3)/2, s = 1/2; last column -(c*0.3 - s*(-0.2)) = -0.3598..., -(s*0.3 + c*(-0.2)) = 0.0232...
    np.testing.assert_allclose(M.numpy(), [[0.8660254037844386, -0.5, -0.35980762113533157],
                                           [0.5, 0.8660254037844386, 0.023205080756887727],
                                           [0, 0, 1]], rtol=0, atol=1e-7)
    for (tx, ty), deg in [((1.0, 0.5), -90.0), ((-0.125, 0.25), 400.0), ((0.0, 0.0), 180.0)]:
        generate.set_input_transform(G, (tx, ty), deg)
        np.testing.assert_allclose(M.numpy(), _hand_inverse(tx, ty, deg), rtol=0, atol=1e-7)


def test_defaults_reset_a_stylegan3_transform_to_identity():
    G = StandInGenerator(img_resolution=16)
    G.synthesis.input.transform.copy_(torch.tensor([[0.0, 1, 0.2], [-1, 0, 0], [0, 0, 1]]))
    generate.set_input_transform(G)  # as gen_images.py: the inverse of the identity, for every StyleGAN3 network
    np.testing.assert_array_equal(G.synthesis.input.transform.numpy(), np.eye(3))
    generate.set_input_transform(G, rotate=90)
    np.testing.assert_allclose(G.synthesis.input.transform.numpy(), _hand_inverse(0, 0, 90), rtol=0, atol=1e-7)


def test_pixels_match_the_nvlabs_procedure(tmp_path):
    G = StandInGenerator(img_resolution=16)
    written = generate.generate_images(G, [0, 5], str(tmp_path), translate=(0.1, -0.05), rotate=12.5, device='cpu', verbose=False)
    assert sorted(os.path.basename(p) for p in written) == ['seed0000.png', 'seed0005.png']
    for seed in (0, 5):
        got = np.asarray(PIL.Image.open(tmp_path / f'seed{seed:04d}.png'))
        expected = _nvlabs_procedure(seed, 0.1, -0.05, 12.5)
        assert np.array_equal(got, expected)
        assert not np.array_equal(got, _nvlabs_procedure(seed, 0, 0, 0))  # the transform matters


def test_interpolation_video_with_a_stylegan3_network(tmp_path):
    G = StandInGenerator(img_resolution=16)
    generate.generate_images(G, [0, 5], str(tmp_path), rotate=-30, interp_frames=3, device='cpu', verbose=False)
    frames = sorted(os.listdir(tmp_path / 'frames'))
    assert frames == [f'frame{i:05d}.png' for i in range(4)]
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / 'frames' / 'frame00000.png')), _nvlabs_procedure(0, 0, 0, -30))
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / 'frames' / 'frame00003.png')), _nvlabs_procedure(5, 0, 0, -30))
    for call in G.synthesis.calls:
        np.testing.assert_allclose(call['transform'].numpy(), _hand_inverse(0, 0, -30), rtol=0, atol=1e-7)

#----------------------------------------------------------------------------
# Command line.

def _sg2():
    return networks_stylegan2.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3, channel_base=64, channel_max=8,
                                        mapping_kwargs=dict(num_layers=1)).eval()


def _run(*args):
    return CliRunner().invoke(generate.cli, list(args), catch_exceptions=False)


def test_cli_stylegan3(monkeypatch, tmp_path):
    net = tmp_path / 'sg3.pkl'
    net.write_bytes(b'')
    monkeypatch.setattr(generate.network_loader, 'load_network', lambda path, device=None: dict(G_ema=StandInGenerator(img_resolution=16)))
    res = _run(f'--network={net}', '--seeds=5', '--translate=0.1,-0.05', '--rotate=12.5', f'--outdir={tmp_path}/o', '--device=cpu')
    assert res.exit_code == 0, res.output
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / 'o' / 'seed0005.png')), _nvlabs_procedure(5, 0.1, -0.05, 12.5))

    for bad in ('1', 'a,b', '1,2,3', 'nan,0', '0,inf'):
        res = _run(f'--network={net}', '--seeds=5', f'--translate={bad}', f'--outdir={tmp_path}/o')
        assert res.exit_code == 2 and "'--translate'" in res.output and 'two finite numbers' in res.output, res.output
    res = _run(f'--network={net}', '--seeds=5', '--rotate=nan', f'--outdir={tmp_path}/o')
    assert res.exit_code == 2 and "'--rotate'" in res.output and 'not a finite number' in res.output


def test_stylegan2_networks_refuse_transforms(tmp_path):
    path = tmp_path / 'sg2.pt'
    snapshot.save_snapshot(path, G=None, D=None, G_ema=_sg2())
    for flag in ('--translate=0.1,0', '--rotate=5'):
        res = _run(f'--network={path}', '--seeds=0', flag, f'--outdir={tmp_path}/o', '--device=cpu')
        assert res.exit_code == 2, res.output
        assert f"'{flag.split('=')[0]}'" in res.output and 'needs a StyleGAN3 network' in res.output
    assert not (tmp_path / 'o').exists()
    res = _run(f'--network={path}', '--seeds=0', f'--outdir={tmp_path}/ok', '--device=cpu')  # no flags: fine
    assert res.exit_code == 0 and (tmp_path / 'ok' / 'seed0000.png').is_file()
    with pytest.raises(ValueError, match='need a StyleGAN3 network'):
        generate.generate_images(_sg2(), [0], str(tmp_path / 'lib'), rotate=5, device='cpu', verbose=False)
    generate.set_input_transform(_sg2())  # nothing to set and nothing asked: no error


def test_help_lists_the_flags():
    res = CliRunner().invoke(generate.cli, ['--help'])
    assert res.exit_code == 0 and '--translate' in res.output and '--rotate' in res.output
