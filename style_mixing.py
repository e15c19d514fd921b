"""Style-mixing figure: for every row seed and column seed, the row's ws with the layers in --styles
taken from the column's ws.

As NVlabs' style_mixing.py: writes one PNG per pair, OUTDIR/ROW-COL.png (and SEED-SEED.png for the
unmixed images), and grid.png with the column seeds' images across the top, the row seeds' images
down the left and the mixed images inside. Layers index the generator's ws (G.num_ws: 18 for a
1024px StyleGAN2 network, 16 for a 1024px StyleGAN3 one); --styles=0-6 swaps the coarse styles of a
1024px StyleGAN2 network, --styles=8-17 the fine ones.

Examples:

\b
    python style_mixing.py --network=ffhq.pkl --rows=85,100,75,458,1500 --cols=55,821,1789,293 --styles=0-6 --outdir=out
    python style_mixing.py --network=snap.pt --rows=0-3 --cols=4-7 --styles=4-11 --trunc=0.7 --outdir=out
"""

import os

import click
import numpy as np
import torch

import dnnlib
import dnnlib.cli
import dnnlib.util
import torch_utils.cli
import generate

#----------------------------------------------------------------------------
# Library functions.

@torch.no_grad()
def style_mix(G, row_seeds, col_seeds, col_styles, truncation_psi=1.0, noise_mode='const', class_idx=None, device=None):
    """Images for all (row, col) pairs and each seed alone, as {(row_seed, col_seed): uint8 [H, W, C]}.

    w of a seed: G.mapping of z = RandomState(seed).randn(z_dim) with truncation; the mixed w takes
    the row's w and replaces the layers `col_styles` (indices into num_ws) with the column's.
    """
    device = torch.device(device if device is not None else ('cuda' if torch.cuda.is_available() else 'cpu'))
    bad = [s for s in col_styles if not 0 <= s < G.num_ws]
    if bad:
        raise ValueError(f'style layer(s) {bad} out of range: this network has {G.num_ws} ws (0..{G.num_ws - 1})')
    all_seeds = sorted(set(row_seeds) | set(col_seeds))
    all_w = generate.seeds_to_ws(G, all_seeds, truncation_psi, None, class_idx, device, 1)
    w_dict = dict(zip(all_seeds, all_w))
    images = {(seed, seed): img for seed, img in zip(all_seeds, generate.synthesize(G, all_w, noise_mode, 1))}
    for row_seed in row_seeds:
        for col_seed in col_seeds:
            w = w_dict[row_seed].clone()
            w[col_styles] = w_dict[col_seed][col_styles]
            images[(row_seed, col_seed)] = generate.synthesize(G, w[np.newaxis], noise_mode, 1)[0]
    return images


def mixing_grid(images, row_seeds, col_seeds):
    """uint8 [(rows+1)*H, (cols+1)*W, C]: black corner, column seeds' images on top, row seeds' on the left."""
    H, W, C = next(iter(images.values())).shape
    canvas = np.zeros([(len(row_seeds) + 1) * H, (len(col_seeds) + 1) * W, C], dtype=np.uint8)
    for row_idx, row_seed in enumerate([None] + list(row_seeds)):
        for col_idx, col_seed in enumerate([None] + list(col_seeds)):
            if row_seed is None and col_seed is None:
                continue
            key = (col_seed, col_seed) if row_seed is None else (row_seed, row_seed) if col_seed is None else (row_seed, col_seed)
            canvas[row_idx * H:(row_idx + 1) * H, col_idx * W:(col_idx + 1) * W] = images[key]
    return canvas

#----------------------------------------------------------------------------
# Command line.

@click.command(help=__doc__, context_settings=dnnlib.cli.CONTEXT_SETTINGS)
@click.option('--network', 'network', help='Network snapshot (.pt) or NVlabs pickle (.pkl): path or URL', metavar='PATH|URL', required=True)
@click.option('--rows', 'row_seeds', type=dnnlib.cli.SeedList(), help='Row seeds, e.g. 0-3', metavar='LIST', required=True)
@click.option('--cols', 'col_seeds', type=dnnlib.cli.SeedList(), help='Column seeds, e.g. 4-7', metavar='LIST', required=True)
@click.option('--styles', 'col_styles', type=dnnlib.cli.SeedList(), default='0-6', show_default=True,
              help='Layers (ws) taken from the columns', metavar='LIST')
@click.option('--trunc', 'truncation_psi', type=dnnlib.cli.FiniteFloat(), default=1.0, show_default=True, help='Truncation psi')
@click.option('--class', 'class_idx', type=click.IntRange(min=0), default=None, help='Class label (conditional networks)')
@click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const', show_default=True, help='Noise inputs')
@click.option('--outdir', type=dnnlib.cli.OutputDir(), required=True, help='Output directory', metavar='DIR')
@click.option('--device', type=torch_utils.cli.Device(), default=None, help='Torch device  [default: cuda if available, else cpu]')
def cli(network, row_seeds, col_seeds, col_styles, truncation_psi, class_idx, noise_mode, outdir, device):
    if not dnnlib.util.is_url(network) and not os.path.isfile(network):
        raise click.BadParameter(f'no such file: {network}', param_hint="'--network'")
    G, device = generate.load_generator_for_cli(network, device, class_idx)
    bad = [s for s in col_styles if not 0 <= s < G.num_ws]
    if bad:
        raise click.BadParameter(f'layer(s) {bad} out of range: this network has {G.num_ws} ws (0..{G.num_ws - 1})',
                                 param_hint="'--styles'")

    print(f'Network: {network} ({G.img_resolution}x{G.img_resolution}, num_ws={G.num_ws}); '
          f'{len(row_seeds)}x{len(col_seeds)} mixes of layers {col_styles}')
    images = style_mix(G, row_seeds, col_seeds, col_styles, truncation_psi=truncation_psi, noise_mode=noise_mode,
                       class_idx=class_idx, device=device)
    os.makedirs(outdir, exist_ok=True)
    for (row_seed, col_seed), img in images.items():
        generate.save_png(img, os.path.join(outdir, f'{row_seed}-{col_seed}.png'))
    generate.save_png(mixing_grid(images, row_seeds, col_seeds), os.path.join(outdir, 'grid.png'))
    print(f'Done: {len(images)} images and grid.png in {outdir}')


def main():
    cli()  # pylint: disable=no-value-for-parameter


if __name__ == '__main__':
    main()
