"""Feature detectors for the metrics: NVlabs' TorchScript Inception-v3 and VGG16 files, and the native
FID Inception-v3 on pytorch-fid's weights; located in a detector folder, the download cache, or
downloaded (checksummed, atomic).

Every detector is called as `detector(img_uint8_nchw, return_features=True)` (the VGG16 file also as
`detector(img, resize_images=False, return_lpips=True)` for PPL) and resizes internally.

Safety: we never unpickle a detector file. A `.pt` is a TorchScript archive (`torch.jit.load`: the
TorchScript interpreter runs no Python). A `.pkl` as published by NVlabs for stylegan3 wraps such an
archive in a pickle; we read the pickle's opcodes without executing them and accept the file only if
it carries exactly one embedded TorchScript archive, which we then `torch.jit.load`. Anything else
(a pickle of Python classes, embedded source code) is refused with an error pointing at the `.pt`.
The pytorch-fid `.pth` is a plain state_dict read with `torch.load(weights_only=True)`.

Air-gapped clusters: `--detector-dir` / `$GANFORGE_DETECTOR_DIR` name a folder holding the files under
their usual names (below); nothing is downloaded then. Files found by their official name (in that
folder or downloaded) are checked against the official checksum where one is known; an explicit local
path is used as given. Either way the statistics cache is keyed by the file's own sha256.
"""

import io
import os
import pickletools
import sys
import urllib.parse
import warnings
import zipfile

import torch

import dnnlib

#----------------------------------------------------------------------------
# Known detectors. URLs from NVlabs/stylegan2-ada-pytorch (.pt, TorchScript archive),
# NVlabs/stylegan3 (.pkl) and mseitzer/pytorch-fid (.pth, state_dict). NVlabs publishes no checksums;
# pytorch-fid's file name carries the first 8 hex digits of its sha256 (torch.hub convention).

INCEPTION = 'inception-2015-12-05'          # NVlabs TorchScript Inception-v3 (FID, KID, IS)
VGG16 = 'vgg16'                             # NVlabs TorchScript VGG16 (precision/recall, PPL's LPIPS)
PT_INCEPTION = 'pt_inception-2015-12-05'    # native Inception-v3 on the pytorch-fid weights

DETECTOR_DIR_ENV = 'GANFORGE_DETECTOR_DIR'

KNOWN_DETECTORS = {
    INCEPTION: [
        dict(file='inception-2015-12-05.pt', url='https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt', sha256=None),
        dict(file='inception-2015-12-05.pkl', url='https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/metrics/inception-2015-12-05.pkl', sha256=None),
    ],
    VGG16: [
        dict(file='vgg16.pt', url='https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt', sha256=None),
        dict(file='vgg16.pkl', url='https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/metrics/vgg16.pkl', sha256=None),
    ],
    PT_INCEPTION: [
        dict(file='pt_inception-2015-12-05-6726825d.pth', url='https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth', sha256='6726825d'),
    ],
}


class DetectorNotFoundError(FileNotFoundError):
    """A detector file is neither in the detector folder nor downloadable."""


class DetectorChecksumError(IOError):
    """A detector file's sha256 differs from the official one."""


class DetectorFormatError(ValueError):
    """A detector file is not in an accepted format."""

#----------------------------------------------------------------------------
# Locating files.

def _canonical(name_or_url):
    """Known detector name for a name, official file name or URL of one; None if unknown."""
    if name_or_url in KNOWN_DETECTORS:
        return name_or_url
    base = os.path.basename(urllib.parse.urlparse(name_or_url).path) if '://' in name_or_url else os.path.basename(name_or_url)
    for name, entries in KNOWN_DETECTORS.items():
        if any(e['file'] == base for e in entries):
            return name
    return None


def _check_official_sha256(path, entry):
    expected = entry['sha256']
    if expected is None:
        return
    got = detector_sha256(path)
    if not got.startswith(expected.lower()):
        raise DetectorChecksumError(
            f'Checksum mismatch for detector file {path}: sha256 is {got}, the official {entry["file"]} has sha256 '
            f'{"starting with " if len(expected) < 64 else ""}{expected}. The file is corrupt or another model; '
            f'replace it with a fresh download of {entry["url"]}.')


def _help_text(name, entries, folder):
    files = ' or '.join(f'{e["file"]} (from {e["url"]})' for e in entries)
    return f'put {files} into {folder}'


def resolve_detector(name_or_url_or_path, detector_dir=None, verbose=False):
    """Local path of a detector file.

    Args:
        name_or_url_or_path: a known name ('inception-2015-12-05', 'vgg16', 'pt_inception-2015-12-05'),
            one of their official URLs (NVlabs code passes URLs), any other URL, or a local file.
        detector_dir: folder holding detector files under their official names (default $GANFORGE_DETECTOR_DIR);
            when set, known detectors are taken from it and never downloaded.

    Raises DetectorNotFoundError saying which file to put where, DetectorChecksumError.
    """
    spec = os.fspath(name_or_url_or_path)
    if '://' not in spec and os.path.isfile(spec):
        return spec
    detector_dir = detector_dir or os.environ.get(DETECTOR_DIR_ENV) or None
    name = _canonical(spec)

    # Known detector: the detector folder (offline), else the download cache / a download.
    if name is not None:
        entries = KNOWN_DETECTORS[name]
        if '://' in spec:  # an official URL: prefer its own file
            entries = sorted(entries, key=lambda e: e['url'] != spec)
        if detector_dir is not None:
            for entry in entries:
                path = os.path.join(detector_dir, entry['file'])
                if os.path.isfile(path):
                    _check_official_sha256(path, entry)
                    return path
            raise DetectorNotFoundError(f'Detector {name!r} not found in the detector folder {detector_dir} '
                                        f'(--detector-dir or ${DETECTOR_DIR_ENV}): {_help_text(name, entries, detector_dir)}.')
        errors = []
        for entry in entries:
            try:
                path = dnnlib.util.open_url(entry['url'], cache_dir=dnnlib.util.make_cache_dir_path('detectors'),
                                            return_filename=True, verbose=verbose,
                                            sha256=entry['sha256'] if entry['sha256'] and len(entry['sha256']) == 64 else None)
            except IOError as e:
                errors.append(f'{entry["url"]}: {e}')
                continue
            try:
                _check_official_sha256(path, entry)
            except DetectorChecksumError:
                os.remove(path)  # never keep a bad download in the cache
                raise
            return path
        raise DetectorNotFoundError(f'Cannot download detector {name!r} ({"; ".join(errors)}). On a machine without '
                                    f'internet, {_help_text(name, entries, "a folder DIR")} and pass --detector-dir=DIR '
                                    f'(or set {DETECTOR_DIR_ENV}=DIR).')

    # Unknown URL or missing path.
    if '://' in spec:
        try:
            return dnnlib.util.open_url(spec, cache_dir=dnnlib.util.make_cache_dir_path('detectors'), return_filename=True, verbose=verbose)
        except OSError as e:
            raise DetectorNotFoundError(f'Cannot get detector {spec}: {e}') from e
    raise DetectorNotFoundError(f'Detector file not found: {spec}. Known detectors: {", ".join(KNOWN_DETECTORS)} '
                                f'(files {", ".join(e["file"] for es in KNOWN_DETECTORS.values() for e in es)}).')

#----------------------------------------------------------------------------
# Identity (for the statistics cache).

_sha256_memo = dict()

def detector_sha256(path):
    """sha256 of a file, memoized on (path, size, mtime)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _sha256_memo:
        _sha256_memo[key] = dnnlib.util.sha256_file(path)
    return _sha256_memo[key]


def detector_identity(path):
    """{'name', 'sha256'} of a detector file: what changes the features it computes."""
    name = _canonical(path) or os.path.splitext(os.path.basename(path))[0]
    return dict(name=name, sha256=detector_sha256(path))

#----------------------------------------------------------------------------
# Loading.

_ZIP_MAGIC = b'PK\x03\x04'


def _is_torchscript_archive(data):
    """True if `data` is a zip holding a TorchScript module (a data.pkl and code/ under one root)."""
    if not data.startswith(_ZIP_MAGIC):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = zf.namelist()
    except zipfile.BadZipFile:
        return False
    return any(n.endswith('/data.pkl') for n in names) and any('/code/' in n for n in names)


def extract_torchscript_from_pickle(data, source='pickle'):
    """The TorchScript archive embedded in a pickle, found by walking the opcodes (nothing is executed).

    Accepted: exactly one bytes payload (BINBYTES*, or a latin-1 string as protocol 2 stores bytes)
    that is a TorchScript zip archive. Raises DetectorFormatError otherwise.
    """
    found = []
    try:
        for opcode, arg, _pos in pickletools.genops(data):
            if isinstance(arg, (bytes, bytearray)) and len(arg) > 4:
                payload = bytes(arg)
            elif isinstance(arg, str) and arg.startswith(_ZIP_MAGIC.decode('latin-1')):
                try:
                    payload = arg.encode('latin-1')
                except UnicodeEncodeError:
                    continue
            else:
                continue
            if _is_torchscript_archive(payload):
                found.append(payload)
    except ValueError as e:
        raise DetectorFormatError(f'{source}: not a valid pickle ({e})') from e
    if len(found) != 1:
        raise DetectorFormatError(
            f'{source}: expected a pickle wrapping exactly one TorchScript archive, found {len(found)}. We do not '
            f'unpickle arbitrary objects; use the TorchScript .pt file of this detector instead '
            f'(e.g. {KNOWN_DETECTORS[INCEPTION][0]["url"]}).')
    return found[0]


def _load_torchscript(data_or_path, device, source):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)  # torch.jit is deprecated, yet it is the format the detectors ship in
            module = torch.jit.load(data_or_path if isinstance(data_or_path, str) else io.BytesIO(data_or_path), map_location=device)
    except RuntimeError as e:
        raise DetectorFormatError(f'{source}: not a loadable TorchScript module ({e})') from e
    return module.eval()


_module_cache = dict()

def load_detector_file(path, device='cpu'):
    """Load a local detector file by its extension: .pt (TorchScript), .pkl (pickle-wrapped TorchScript),
    .pth (pytorch-fid state_dict for the native Inception-v3)."""
    from metrics import inception  # local: only needed for .pth

    device = torch.device(device)
    ext = os.path.splitext(path)[1].lower()
    if ext == '.pth':
        module = inception.load_inception_fid(path, device=device)
    elif ext == '.pkl':
        with open(path, 'rb') as f:
            data = f.read()
        module = _load_torchscript(extract_torchscript_from_pickle(data, source=path), device, path)
    else:
        with open(path, 'rb') as f:
            head = f.read(4)
        if head != _ZIP_MAGIC:
            raise DetectorFormatError(f'{path}: not a TorchScript archive (.pt), a pickle-wrapped one (.pkl) or '
                                      f'a pytorch-fid state_dict (.pth)')
        module = _load_torchscript(path, device, path)
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def get_detector(name_or_url_or_path, device='cpu', detector_dir=None, verbose=False):
    """The detector module on `device` (cached per process). See `resolve_detector` for the lookup."""
    path = resolve_detector(name_or_url_or_path, detector_dir=detector_dir, verbose=verbose)
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, str(torch.device(device)))
    if key not in _module_cache:
        if verbose:
            print(f'Loading detector {path}', file=sys.stderr)
        _module_cache[key] = load_detector_file(path, device)
    return _module_cache[key]

#----------------------------------------------------------------------------
