"""Pickles that can hold plain data and numpy arrays only: read without running any code from the file.

`pickle.load` calls whatever the file names (`__reduce__`), so a data file from elsewhere could run code. This
unpickler admits containers and numbers the pickle opcodes build themselves (dict, list, tuple, str, bytes,
int, float, bool, None) plus the few globals that rebuild a numpy array, and refuses any other global before
it is looked up, so it is never imported nor called. The globals are those a CIFAR python batch references
(written by Python 2's cPickle, protocol 2: `numpy.core.multiarray._reconstruct`, `numpy.ndarray`,
`numpy.dtype`; the list of datumaro's RestrictedUnpickler for CIFAR, openvinotoolkit/datumaro
datumaro/plugins/cifar_format.py) and what Python 3 writes for the same objects (`numpy._core.*` under numpy 2,
`_codecs.encode(text, "latin1")` for bytes at protocols <= 2, `numpy._core.numeric._frombuffer` at protocol 5).

Even these are not taken as they are: `numpy.ndarray` is only an argument of `_reconstruct` (called, it would
allocate any shape the file names), `_reconstruct` makes only the empty array its pickles start from, and an
array's dtype must be plain numbers with numpy's flags and is rebuilt from its name, because numpy's dtype
__setstate__ takes whatever flags the file gives it (a uint8 "holding Python objects" upsets numpy's memory
handling). Arrays
hold no more bytes than the file, so nothing can grow much beyond its size.
"""

from __future__ import annotations

import pickle
from typing import IO, Any

import numpy as np

_ARRAY = np.zeros(1, np.uint8)
_RECONSTRUCT = _ARRAY.__reduce__()[0]  # numpy's _reconstruct(subtype, shape, typecode), wherever numpy keeps it
_FROMBUFFER = _ARRAY.__reduce_ex__(5)[0]  # numpy's _frombuffer(buffer, dtype, shape, order)
_NDARRAY = object()  # what the name numpy.ndarray stands for: an argument of _reconstruct, never called itself
PLAIN_KINDS = "biuf"  # bool, signed and unsigned integers, floats


class ForbiddenGlobal(pickle.UnpicklingError):
    """The pickle names a global that plain data never needs; `name` is "module.name" as the file spells it."""

    def __init__(self, name: str) -> None:
        super().__init__(f"refused global {name}")
        self.name = name


class _Admitted(tuple):
    """A function the pickle may call but not alter: without a __dict__ or slots, BUILD cannot set attributes
    on it (as it could on a plain Python function)."""

    __slots__ = ()

    def __call__(self, *args: Any) -> Any:
        return self[0](*args)


def plain_dtype(dtype: Any) -> np.dtype:
    """numpy's own dtype of the name of `dtype`, which must be a plain number type with that type's flags:
    numpy's dtype __setstate__ takes the flags a pickle gives it (e.g. "holds Python objects" on uint8), so a
    dtype built by the file is never used itself."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in PLAIN_KINDS or dtype.fields or dtype.subdtype:
        raise pickle.UnpicklingError(f"an array of {dtype!r} is not plain numbers")
    own = np.dtype(dtype.str)
    if dtype.flags != own.flags:
        raise pickle.UnpicklingError(f"a {own} dtype pickled with the flags {dtype.flags} (numpy's are {own.flags})")
    return own


class PlainArray(np.ndarray):
    """The ndarrays a plain pickle builds: BUILD (`__setstate__`) accepts only a plain dtype (rebuilt, see
    `plain_dtype`) and raw bytes, not the list of Python objects an object array pickles."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("not an ndarray's pickled state")
        *head, dtype, fortran, raw = state  # ([version,] shape, dtype, is_fortran, data)
        raw = raw.encode("latin1") if isinstance(raw, str) else raw  # Python 2's str, decoded as latin-1
        if not isinstance(raw, (bytes, bytearray)) or not isinstance(fortran, bool):
            raise pickle.UnpicklingError("an ndarray's data must be raw bytes")
        super().__setstate__((*head, plain_dtype(dtype), fortran, raw))


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> PlainArray:
    """numpy's _reconstruct as its pickles call it (ndarray, (0,), b"b"): an empty array for BUILD to fill."""
    if subtype is not _NDARRAY or shape != (0,):
        raise pickle.UnpicklingError("_reconstruct of anything but an empty ndarray")
    return _RECONSTRUCT(PlainArray, (0,), typecode)


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> PlainArray:
    """numpy's _frombuffer (protocol 5) with the dtype rebuilt; a view of `buffer`, so no larger than the file."""
    if not isinstance(buffer, (bytes, bytearray)):
        raise pickle.UnpicklingError("an ndarray's data must be raw bytes")
    return _FROMBUFFER(buffer, plain_dtype(dtype), shape, order).view(PlainArray)


def _latin1(text: str, encoding: str) -> bytes:
    """`_codecs.encode` as Python 3 pickles bytes at protocols <= 2, for the latin-1 codec only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode of a {type(text).__name__} with codec {encoding!r}")
    return text.encode("latin1")


def _globals() -> dict[tuple[str, str], Any]:
    admitted: dict[tuple[str, str], Any] = {("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): np.dtype,
                                            ("_codecs", "encode"): _Admitted((_latin1,))}
    for core in ("numpy.core", "numpy._core"):  # numpy 1 and numpy 2 names
        admitted[(f"{core}.multiarray", "_reconstruct")] = _Admitted((_reconstruct,))
        admitted[(f"{core}.numeric", "_frombuffer")] = _Admitted((_frombuffer,))
    return admitted


_GLOBALS = _globals()


class PlainUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that resolves only the globals of `_GLOBALS`; any other raises `ForbiddenGlobal`."""

    def find_class(self, module: str, name: str) -> Any:
        found = _GLOBALS.get((module, name))
        if found is None:
            raise ForbiddenGlobal(f"{module}.{name}"[:120])
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not plain data")


def load_plain(file: IO[bytes], encoding: str = "bytes") -> Any:
    """The object pickled in `file`, which may hold only plain data and numpy arrays (see the module's
    docstring). `encoding` decodes Python 2 strings as `pickle.load`'s does ("bytes": left as bytes). Its
    arrays are `PlainArray`s (`np.asarray` gives plain ndarrays). Raises `ForbiddenGlobal` for anything else, and
    pickle's, numpy's or the file's errors for a broken file."""
    return PlainUnpickler(file, encoding=encoding).load()


__all__ = ["PLAIN_KINDS", "ForbiddenGlobal", "PlainArray", "PlainUnpickler", "load_plain", "plain_dtype"]
