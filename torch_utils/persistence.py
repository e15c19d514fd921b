"""Recording of constructor arguments, so that modules can be saved as plain data
(class name + init kwargs + state_dict) and rebuilt without pickling code.

    @persistence.persistent_class
    class Generator(torch.nn.Module):
        def __init__(self, z_dim, ...): ...

    G = Generator(z_dim=512, ...)
    G.init_args, G.init_kwargs      # (), {'z_dim': 512, ...}
    persistence.class_name_of(G)    # 'training.networks_stylegan2.Generator'

Only classes decorated here can be rebuilt from a snapshot (`lookup_class`), which keeps a
malicious snapshot from naming an arbitrary callable such as `os.system`. Other classes that a file
may name (the dataset class in a snapshot's training_set_kwargs) are looked up the same way in a
registry of their own kind (`register_class('dataset')`, `lookup_class(name, kind='dataset')`).
"""

import copy
import functools
import importlib

_registry = dict()  # 'module.QualName' -> class
_kind_registries = dict()  # kind (e.g. 'dataset') -> {'module.QualName': class}

# Modules whose decorated classes may be imported on demand when a snapshot names them.
ALLOWED_MODULE_PREFIXES = ('training.', 'metrics.', 'ops.', 'torch_utils.')

#----------------------------------------------------------------------------

def persistent_class(cls):
    """Class decorator: record the outermost constructor call's args/kwargs as `init_args`/`init_kwargs`."""
    orig_init = cls.__init__

    @functools.wraps(orig_init)
    def __init__(self, *args, **kwargs):
        # Only the outermost decorated __init__ records (a decorated subclass calling super().__init__).
        outermost = '_init_kwargs' not in self.__dict__
        if outermost:
            object.__setattr__(self, '_init_args', copy.deepcopy(tuple(args)))
            object.__setattr__(self, '_init_kwargs', copy.deepcopy(dict(kwargs)))
        orig_init(self, *args, **kwargs)

    cls.__init__ = __init__
    cls.init_args = property(lambda self: copy.deepcopy(self._init_args))
    cls.init_kwargs = property(lambda self: copy.deepcopy(self._init_kwargs))
    _registry[class_name_of(cls)] = cls
    return cls


def is_persistent(obj):
    """True if `obj` (instance or class) is of a class decorated with `persistent_class`."""
    cls = obj if isinstance(obj, type) else type(obj)
    return _registry.get(class_name_of(cls)) is cls


def class_name_of(obj):
    """Dotted 'module.QualName' of an instance or class."""
    cls = obj if isinstance(obj, type) else type(obj)
    return f'{cls.__module__}.{cls.__qualname__}'


def register_class(kind):
    """Class decorator: allow files to name this class where a class of `kind` is expected (e.g. 'dataset')."""
    def decorator(cls):
        _kind_registries.setdefault(kind, dict())[class_name_of(cls)] = cls
        return cls
    return decorator


def registered_classes(kind):
    """The classes registered under `kind`, sorted by name."""
    return [cls for _name, cls in sorted(_kind_registries.get(kind, dict()).items())]


def lookup_class(class_name, kind=None):
    """Return the persistent class (or, with `kind`, the class registered under that kind) named
    `class_name`, importing its module if it is a ganforge module.

    Raises ValueError for names that are not such classes.
    """
    registry = _registry if kind is None else _kind_registries.setdefault(kind, dict())
    if not isinstance(class_name, str):
        raise ValueError(f'Invalid class name {class_name!r}: expected a string')
    if class_name in registry:
        return registry[class_name]
    module_name = class_name.rpartition('.')[0]
    if module_name and module_name.startswith(ALLOWED_MODULE_PREFIXES):
        importlib.import_module(module_name)  # registers its classes
    if class_name not in registry:
        if kind is None:
            raise ValueError(f'Unknown network class {class_name!r}: only ganforge persistent classes '
                             f'(modules {", ".join(p + "*" for p in ALLOWED_MODULE_PREFIXES)}) can be rebuilt from a snapshot')
        raise ValueError(f'Unknown {kind} class {class_name!r}: a file may only name a registered {kind} class '
                         f'({", ".join(sorted(registry)) or "none registered"})')
    return registry[class_name]
