"""Pickles that can hold plain data and numpy arrays only: read without running any code from the file.

`pickle.load` calls whatever the file names (`__reduce__`), so a data file from elsewhere could run code. This
unpickler admits containers and numbers the pickle opcodes build themselves (dict, list, tuple, str, bytes,
int, float, bool, None) plus the few globals that rebuild a numpy array, and refuses any other global before
it is looked up, so it is never imported nor called. The globals are those a CIFAR python batch references
(written by Python 2's cPickle, protocol 2: `numpy.core.multiarray._reconstruct`, `numpy.ndarray`,
`numpy.dtype`; the same list as datumaro's RestrictedUnpickler for CIFAR,
openvinotoolkit/datumaro datumaro/plugins/cifar_format.py) and what Python 3 writes for the same objects
(`numpy._core.*` under numpy 2, `_codecs.encode(text, "latin1")` for bytes at protocols <= 2,
`numpy._core.numeric._frombuffer` at protocol 5, `scalar` for numpy numbers).
"""

from __future__ import annotations

import pickle
from typing import IO, Any

import numpy as np

_ARRAY = np.zeros(1, np.uint8)


class ForbiddenGlobal(pickle.UnpicklingError):
    """The pickle names a global that plain data never needs; `name` is "module.name" as the file spells it."""

    def __init__(self, name: str) -> None:
        super().__init__(f"refused global {name}")
        self.name = name


class _Admitted(tuple):
    """A function the pickle may call but not alter: without a __dict__ or slots, BUILD cannot set attributes
    on it (as it could on a plain Python function, e.g. numpy's `_frombuffer`)."""

    __slots__ = ()

    def __call__(self, *args: Any) -> Any:
        return self[0](*args)


def _latin1(text: str, encoding: str) -> bytes:
    """`_codecs.encode` as Python 3 pickles bytes at protocols <= 2, for the latin-1 codec only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode of a {type(text).__name__} with codec {encoding!r}")
    return text.encode("latin1")


def _globals() -> dict[tuple[str, str], Any]:
    reconstruct = _ARRAY.__reduce__()[0]  # numpy's _reconstruct, wherever this numpy keeps it
    frombuffer = _Admitted((_ARRAY.__reduce_ex__(5)[0],))  # _frombuffer(buffer, dtype, shape, order)
    scalar = np.uint8(0).__reduce__()[0]  # scalar(dtype, bytes)
    admitted: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                            ("_codecs", "encode"): _Admitted((_latin1,))}
    for core in ("numpy.core", "numpy._core"):  # numpy 1 and numpy 2 names
        admitted[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        admitted[(f"{core}.multiarray", "scalar")] = scalar
        admitted[(f"{core}.numeric", "_frombuffer")] = frombuffer
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
    docstring). `encoding` decodes Python 2 strings as `pickle.load`'s does ("bytes": left as bytes).
    Raises `ForbiddenGlobal` for anything else, and pickle's, numpy's or the file's errors for a broken file."""
    return PlainUnpickler(file, encoding=encoding).load()


__all__ = ["ForbiddenGlobal", "PlainUnpickler", "load_plain"]
