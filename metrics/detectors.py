"""Feature detectors for the metrics: NVlabs' TorchScript Inception-v3 and VGG16 files, and the native
FID Inception-v3 on pytorch-fid's weights; located in a detector folder, the download cache, or
downloaded (checksummed, atomic).

Every detector is called as `detector(img_uint8_nchw, return_features=True)` (the VGG16 file also as
`detector(img, resize_images=False, return_lpips=True)` for PPL) and resizes internally.

Safety: a detector file is data, no code it carries may run. A TorchScript archive (`.pt`) does carry
code: `torch.jit.load` compiles the archive's `code/` sources and runs their `__setstate__` methods, and
the forward pass runs whatever operations the code names (TorchScript can call `aten::save`, which
writes files). So before `torch.jit.load` we read the archive as a zip and check it statically
(`check_torchscript_archive`): every code file is parsed (never executed) and may only use the
operations a convolutional feature extractor needs (an allow-list of `aten` and `prim` operations,
the archive's own classes, a few TorchScript builtins), may not define `__setstate__`, and may not
reach other operator namespaces; every pickle in the archive may only name tensor-rebuild functions,
storage types and the archive's own classes. A refusal names the operation and the archive member. A
`.pkl` as published by NVlabs for stylegan3 wraps such an archive in a pickle; we read the pickle's
opcodes without executing them, accept the file only if it carries exactly one embedded TorchScript
archive, and check and load that archive as above. Anything else (a pickle of Python classes, embedded
source code) is refused with an error pointing at the `.pt`. The pytorch-fid `.pth` is a plain
state_dict read with `torch.load(weights_only=True)`.

Air-gapped clusters: `--detector-dir` / `$GANFORGE_DETECTOR_DIR` name a folder holding the files under
their usual names (below); nothing is downloaded then. Files found by their official name (in that
folder or downloaded) are checked against the official checksum where one is known; an explicit local
path is used as given. Either way the statistics cache is keyed by the file's own sha256.
"""
import ast
import collections
import functools
import io
import math
import os
import pickletools
import re
import sys
import urllib.parse
import warnings
import zipfile

import torch

import dnnlib

#----------------------------------------------------------------------------
# Known detectors. URLs from NVlabs/stylegan2-ada-pytorch (.pt, TorchScript archive),
# NVlabs/stylegan3 (.pkl) and mseitzer/pytorch-fid (.pth, state_dict). NVlabs publishes no checksums;
# pytorch-fid's file name carries the first 8 hex digits of its sha256 (torch.hub convention), the only
# digest its publisher gives. (A third party, genforce, pins b437eb09...c07c3 for vgg16.pt; not being
# NVlabs' own, it is not enforced: the static archive check below is what keeps detector files safe.)

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

#----------------------------------------------------------------------------
# Static check of TorchScript archives (nothing in the archive is compiled or executed).

# aten operations a convolutional feature extractor (and the torch.nn.functional helpers TorchScript
# compiles into an archive) may use: tensor arithmetic, shapes, convolution, pooling, normalisation,
# resampling, activations, and the scalar/list/string builtins of TorchScript. No file, process,
# network, RNG-state or global-state operation is in it.
_ALLOWED_ATEN = frozenset('''
    _convolution conv1d conv2d conv3d convolution conv_transpose1d conv_transpose2d linear addmm matmul mm bmm
    t transpose permute batch_norm instance_norm layer_norm group_norm native_batch_norm
    relu relu_ leaky_relu leaky_relu_ elu gelu silu sigmoid tanh softplus hardtanh hardtanh_ clamp clamp_ clamp_min
    clamp_max threshold threshold_ softmax log_softmax _softmax
    max_pool1d max_pool2d max_pool3d max_pool2d_with_indices avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d
    adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool2d _adaptive_avg_pool2d
    upsample_nearest1d upsample_nearest2d upsample_nearest3d upsample_linear1d upsample_bilinear2d
    upsample_trilinear3d upsample_bicubic2d _upsample_nearest_exact1d _upsample_nearest_exact2d
    _upsample_nearest_exact3d _upsample_bilinear2d_aa _upsample_bicubic2d_aa _upsample_lanczos2d_aa
    affine_grid_generator grid_sampler grid_sampler_2d pad constant_pad_nd reflection_pad2d replication_pad2d
    dropout dropout_ feature_dropout feature_dropout_ alpha_dropout
    add add_ sub sub_ rsub mul mul_ div div_ floor_divide remainder fmod neg neg_ abs pow pow_ sqrt rsqrt square exp
    log log2 log10 log1p expm1 reciprocal sign floor ceil round trunc frac sin cos erf
    sum mean std var norm prod max min amax amin argmax argmin maximum minimum cumsum logsumexp
    eq ne lt le gt ge logical_and logical_or logical_not where masked_fill masked_fill_ isnan isfinite
    cat stack chunk split split_with_sizes unbind narrow select slice index index_select gather expand expand_as
    repeat reshape view view_as flatten unflatten squeeze squeeze_ unsqueeze unsqueeze_ contiguous clone detach
    copy_ fill_ zero_ to type_as float double half int long bool item numel dim size stride is_floating_point
    is_contiguous tensor scalar_tensor zeros zeros_like ones ones_like full full_like empty empty_like eye
    new_zeros new_ones new_full new_empty new_tensor arange linspace range floordiv is_grad_enabled
    len append extend insert pop list format warn str join startswith endswith lower upper
    Int Float Bool ScalarImplicit IntImplicit FloatImplicit device dtype layout
    __is__ __isnot__ __not__ __and__ __or__ __xor__ __contains__ __getitem__ __derive_index __range_length
    __round_to_zero_floordiv __upsample __upsample_bilinear __interpolate _set_item
    _infer_size _assert mode warn_deprecated dict keys values items
'''.split())

# prim operations: interpreter intrinsics (no printing, forking, RPC or file access).
_ALLOWED_PRIM = frozenset('''
    device dtype layout unchecked_cast unchecked_unwrap_optional RaiseException NumToTensor min max abs
    is_cuda is_cpu is_mps is_xpu is_meta is_quantized is_sparse requires_grad data shape TupleIndex TupleUnpack
    ListConstruct ListUnpack TupleConstruct Uninitialized isinstance rangelist AutogradZero
    unchecked_isinstance type tolist grad itemsize nbytes id
'''.split())

# Bare names a TorchScript archive may call: TorchScript builtins and Python type conversions.
_ALLOWED_BUILTINS = frozenset('''
    annotate uninitialized unchecked_cast isinstance getattr hasattr int float bool str len range enumerate zip
    list tuple dict min max abs round divmod all any sum complex ord chr hex oct bin sorted reversed
'''.split())

# Operations refused wherever they appear (even as a member name an archive declares for itself): file,
# process, thread, RPC, printing and global-state operations that aten/prim offer.
_DENIED = frozenset('''
    save from_file load manual_seed seed set_ sleep wait fork Print print rpc_async rpc_sync rpc_remote
    set_grad_enabled record_stream share_memory_ system popen open _load_for_mobile
'''.split())

# Globals the archive's pickles (data.pkl, constants.pkl, debug info) may name, besides its own classes.
_ALLOWED_PICKLE_GLOBALS = frozenset([
    ('collections', 'OrderedDict'), ('torch._utils', '_rebuild_tensor'), ('torch._utils', '_rebuild_tensor_v2'),
    ('torch._utils', '_rebuild_parameter'), ('torch', 'device'),
    *[('torch.jit._pickle', n) for n in ('build_intlist', 'build_doublelist', 'build_boollist', 'build_tensorlist',
                                         'build_tensor_from_id', 'restore_type_tag')],
    *[('torch', f'{t}Storage') for t in ('Float', 'Double', 'Half', 'BFloat16', 'Long', 'Int', 'Short', 'Char',
                                         'Byte', 'Bool')],
])

_MAX_CODE_BYTES = 64 << 20      # all code files of one archive together
_MAX_PICKLE_BYTES = 64 << 20    # one pickle member (structure only; tensor data is stored beside it)
_CODE_SUFFIX = '.py'


class DetectorCodeError(DetectorFormatError):
    """A detector archive names an operation outside the allow-list (nothing of it was run)."""


def _dotted(node):
    """'a.b.c' for a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return '.'.join(reversed(parts))


def _is_allowed_aten(op):
    """An allowed aten op, its in-place variant (`relu_`), or a TorchScript builtin helper (`__getitem__`,
    `__interpolate`, `__derive_index`: aten names that start with two underscores)."""
    if op in _DENIED:
        return False
    return op in _ALLOWED_ATEN or (op.endswith('_') and op[:-1] in _ALLOWED_ATEN) or re.fullmatch(r'__\w+', op) is not None


def _check_op(name, where):
    """Refuse `name` (a dotted reference rooted at torch, ops or math) unless it is an allowed operation."""
    parts = name.split('.')
    if parts[0] == 'torch' and len(parts) >= 2 and parts[1] == 'ops':
        parts = parts[1:]
    if parts[0] == 'ops':
        if len(parts) != 3:
            raise DetectorCodeError(f'{where}: refusing detector: {name} is not an operation reference (ops.<namespace>.<op>)')
        ns, op = parts[1], parts[2]
        if ns not in ('aten', 'prim'):
            raise DetectorCodeError(f'{where}: refusing detector: operation {name} is in the operator namespace '
                                    f'{ns!r}; a feature detector uses only aten and prim operations')
        if not (_is_allowed_aten(op) if ns == 'aten' else op in _ALLOWED_PRIM and op not in _DENIED):
            raise DetectorCodeError(f'{where}: refusing detector: operation {ns}::{op} ({name}) is not one a '
                                    f'feature detector needs')
        return
    if parts[0] == 'math':
        if len(parts) != 2 or parts[1].startswith('_') or not hasattr(math, parts[1]):
            raise DetectorCodeError(f'{where}: refusing detector: unknown math operation {name}')
        return
    op = '.'.join(parts[1:])
    if len(parts) != 2 or not _is_allowed_aten(op):
        raise DetectorCodeError(f'{where}: refusing detector: operation {name} (aten::{op}) is not one a '
                                f'feature detector needs')


def _declared_names(tree):
    """Attribute and method names the archive's classes declare, and every local name bound anywhere."""
    members, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    members.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members.add(item.target.id)
                elif isinstance(item, ast.Assign):
                    for target in item.targets:
                        if isinstance(target, ast.Name):
                            members.add(target.id)
                        elif isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant):
                            members.add(str(target.slice.value))  # __annotations__["0"] = ... (Sequential)
                        elif isinstance(target, (ast.List, ast.Tuple)):
                            members.update(str(e.value) for e in target.elts if isinstance(e, ast.Constant))
                    if isinstance(item.value, (ast.List, ast.Tuple)):  # __parameters__ = ["weight", ]
                        members.update(str(e.value) for e in item.value.elts if isinstance(e, ast.Constant))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.FunctionDef):
            bound.add(node.name)
    return members, bound


@functools.lru_cache(maxsize=None)
def _registered_op_names():
    """Names of every aten and prim operation this torch knows (what a method call on a tensor can reach)."""
    names = set()
    for schema in torch._C._jit_get_all_schemas():  # pylint: disable=protected-access
        ns, _, op = schema.name.partition('::')
        if ns in ('aten', 'prim'):
            names.add(op)
    return frozenset(names)


def _is_member_or_op(attr, members, called=False):
    """An attribute or method reached from a value: an allowed operation, or a member the archive's classes
    declare; a called member may not share its name with an operation outside the allow-list (a tensor's
    method of that name would run: no aliasing `resize_`)."""
    if attr in _DENIED:
        return False
    if _is_allowed_aten(attr) or attr in _ALLOWED_PRIM:
        return True
    return attr in members and not (called and attr in _registered_op_names())


def _check_attribute_chain(node, where, members, called):
    """Check an outermost attribute chain: an operation (torch.*, ops.*, math.*), an archive class
    (__torch__.*), a type, or members / tensor methods reached from a local value."""
    name = _dotted(node)
    root = name.split('.')[0] if name is not None else None
    if root in ('torch', 'ops', 'math'):
        _check_op(name, where)
        return
    if root == '__torch__':
        if name.startswith('__torch__.torch.classes'):
            raise DetectorCodeError(f'{where}: refusing detector: it uses the C++ custom class {name}')
        return
    chain = []
    while isinstance(node, ast.Attribute):
        chain.append(node.attr)
        node = node.value
    chain.reverse()
    if root == 'CONSTANTS' and re.fullmatch(r'c\d+', chain[0]):
        chain = chain[1:]  # CONSTANTS.c0: a tensor constant of the archive
    for i, attr in enumerate(chain):  # value.attr1.attr2...: each attribute a member or an allowed method
        if not _is_member_or_op(attr, members, called=called and i == len(chain) - 1):
            raise DetectorCodeError(f'{where}: refusing detector: attribute or method {attr!r} is neither a '
                                    f'member of the classes in the archive nor an operation a feature detector needs')


def _check_code(tree, member, members):
    """Walk one parsed code file; refuse anything outside the allow-lists (see the module docstring)."""
    _, bound = _declared_names(tree)
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}  # non-outermost parts of a.b.c
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        where = f'{member}:{getattr(node, "lineno", "?")}'
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or '']
            for n in names:
                if n.split('.')[0] not in ('__torch__', 'torch', 'typing', 'math'):
                    raise DetectorCodeError(f'{where}: refusing detector: it imports the module {n}')
        elif isinstance(node, ast.FunctionDef) and node.name == '__setstate__':
            raise DetectorCodeError(f'{where}: refusing detector: it defines {node.name}, which torch.jit.load would run '
                                    f'while loading; NVlabs detectors have none')
        elif isinstance(node, (ast.Lambda, ast.AsyncFunctionDef, ast.Await, ast.Global, ast.Nonlocal, ast.Delete)):
            raise DetectorCodeError(f'{where}: refusing detector: unexpected {type(node).__name__} statement in TorchScript code')
        elif isinstance(node, ast.Attribute) and id(node) not in inner:
            _check_attribute_chain(node, where, members, id(node) in called)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            fn = node.func.id
            if fn in _DENIED or (fn not in bound and fn not in _ALLOWED_BUILTINS):
                raise DetectorCodeError(f'{where}: refusing detector: call of {fn}(), which is not an allowed builtin')
            if fn in ('getattr', 'hasattr') and len(node.args) >= 2:
                attr = node.args[1]
                if not (isinstance(attr, ast.Constant) and isinstance(attr.value, str)):
                    raise DetectorCodeError(f'{where}: refusing detector: {fn}() with a computed attribute name')
                if not _is_member_or_op(attr.value, members, called=True):  # may be called: be strict
                    raise DetectorCodeError(f'{where}: refusing detector: {fn}(..., {attr.value!r}) names neither a member '
                                            f'of the classes in the archive nor an allowed operation')


def _check_pickle(data, member):
    """Refuse pickle opcodes that name globals other than tensor rebuilders, storages and archive classes."""
    strings = collections.deque(maxlen=2)  # the last two pushed strings (STACK_GLOBAL's operands)
    try:
        for opcode, arg, _pos in pickletools.genops(data):
            if opcode.name in ('GLOBAL', 'INST'):
                module, _, name = str(arg).partition(' ')
            elif opcode.name in ('EXT1', 'EXT2', 'EXT4'):
                raise DetectorCodeError(f'{member}: refusing detector: pickle names a global through the extension '
                                        f'registry ({opcode.name} {arg})')
            elif opcode.name == 'STACK_GLOBAL':
                if len(strings) < 2:
                    raise DetectorCodeError(f'{member}: refusing detector: pickle STACK_GLOBAL without literal names')
                module, name = strings[-2], strings[-1]
            else:
                if isinstance(arg, str):
                    strings.append(arg)
                elif opcode.name in ('BINGET', 'LONG_BINGET', 'GET'):
                    strings.append(None)  # a memo reference: not a literal
                continue
            if not isinstance(module, str) or not isinstance(name, str):
                raise DetectorCodeError(f'{member}: refusing detector: pickle global given by memo reference')
            if module.split('.')[0] != '__torch__' and (module, name) not in _ALLOWED_PICKLE_GLOBALS:
                raise DetectorCodeError(f'{member}: refusing detector: its pickle names the global {module}.{name}, which '
                                        f'is not a tensor, storage or class of the archive')
            if module.startswith('__torch__.torch.classes'):
                raise DetectorCodeError(f'{member}: refusing detector: its pickle names the C++ custom class {module}.{name}')
    except DetectorFormatError:
        raise
    except ValueError as e:
        raise DetectorFormatError(f'{member}: refusing detector: malformed pickle ({e})') from e


def check_torchscript_archive(data, source):
    """Statically check a TorchScript archive (bytes) before `torch.jit.load`; raise DetectorCodeError
    naming the operation and archive member for anything a feature detector does not need."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        raise DetectorFormatError(f'{source}: not a TorchScript archive ({e})') from e
    with zf:
        infos = zf.infolist()
        code = [i for i in infos if i.filename.endswith(_CODE_SUFFIX)]
        if not any(i.filename.endswith('/data.pkl') for i in infos) or not code:
            raise DetectorFormatError(f'{source}: not a TorchScript archive (no data.pkl or code/ sources)')
        if sum(i.file_size for i in code) > _MAX_CODE_BYTES:
            raise DetectorFormatError(f'{source}: refusing detector: its code files exceed {_MAX_CODE_BYTES >> 20} MiB')
        trees = []
        for info in code:
            member = f'{source}:{info.filename}'
            if '/code/' not in f'/{info.filename}':
                raise DetectorFormatError(f'{member}: refusing detector: Python source outside the code/ folder of the archive')
            with zf.open(info) as f:
                text = f.read(_MAX_CODE_BYTES + 1)
            try:
                trees.append((ast.parse(text.decode('utf-8'), filename=info.filename), member))
            except (SyntaxError, UnicodeDecodeError, ValueError, RecursionError, MemoryError) as e:
                raise DetectorFormatError(f'{member}: refusing detector: unparsable TorchScript code ({type(e).__name__})') from e
        members = set()
        for tree, _member in trees:
            members |= _declared_names(tree)[0]
        for tree, member in trees:
            _check_code(tree, member, members)
        for info in infos:
            if info.filename.endswith('.pkl') or info.filename.endswith('.debug_pkl'):
                if info.file_size > _MAX_PICKLE_BYTES:  # tensor data lives in data/, not in the pickles
                    raise DetectorFormatError(f'{source}:{info.filename}: refusing detector: pickle of {info.file_size} bytes '
                                              f'(at most {_MAX_PICKLE_BYTES >> 20} MiB)')
                with zf.open(info) as f:
                    _check_pickle(f.read(_MAX_PICKLE_BYTES + 1), f'{source}:{info.filename}')


def _load_torchscript(data, device, source):
    """Check the archive bytes statically, then load those same bytes (no second read of the file)."""
    check_torchscript_archive(data, source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)  # torch.jit is deprecated, yet it is the format the detectors ship in
            module = torch.jit.load(io.BytesIO(data), map_location=device)
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
            data = f.read()
        if not data.startswith(_ZIP_MAGIC):
            raise DetectorFormatError(f'{path}: not a TorchScript archive (.pt), a pickle-wrapped one (.pkl) or '
                                      f'a pytorch-fid state_dict (.pth)')
        module = _load_torchscript(data, device, path)
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
