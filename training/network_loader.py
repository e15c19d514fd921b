"""One entry point for every network file: ganforge snapshots, training checkpoints and NVlabs pickles."""

import dnnlib.util
from torch_utils import snapshot
from training import nvlabs_pickle

GANFORGE = 'ganforge'
NVLABS = 'nvlabs-pickle'


def probe_format(data):
    """'ganforge' for a torch.save zip (snapshot or checkpoint), 'nvlabs-pickle' for a pickle, else None."""
    if data[:4] == b'PK\x03\x04':
        return GANFORGE
    if data[:1] == b'\x80':
        return NVLABS
    return None


def load_network_bytes(data, name, device='cpu'):
    """Rebuild the networks held in `data` (the bytes of a network file); `name` is used in errors."""
    kind = probe_format(data)
    if kind == GANFORGE:
        result = snapshot.load_snapshot_bytes(data, name, device)
    elif kind == NVLABS:
        result = nvlabs_pickle.load_nvlabs_pickle(data, name, device)
    else:
        raise ValueError(f'{name}: not a ganforge snapshot (torch.save zip) or an NVlabs network pickle')
    for key in snapshot.NETWORK_KEYS:
        module = result[key]
        if module is not None:
            module.eval().requires_grad_(False)
    return result


def load_network(path_or_url, device='cpu'):
    """Load a ganforge snapshot / training checkpoint or an NVlabs network pickle.

    Returns a dict with 'G', 'D', 'G_ema' (modules on `device` in eval mode with requires_grad off;
    'G' and 'D' may be None when the file has only G_ema), 'augment_pipe' (module or None),
    'training_set_kwargs' (dict or None), 'cur_nimg' (int, None for NVlabs pickles) and
    'format' (the ganforge file's format name, e.g. 'ganforge-snapshot', or 'nvlabs-pickle').
    """
    with dnnlib.util.open_url(path_or_url) as f:
        data = f.read()
    return load_network_bytes(data, str(path_or_url), device)
