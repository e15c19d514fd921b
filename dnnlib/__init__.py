"""Miscellaneous utilities with no torch dependency: EasyDict, construction by name, URL/file opening."""

from .util import EasyDict, make_cache_dir_path

__all__ = ['EasyDict', 'make_cache_dir_path']
