"""Reading the user's input files, plain or gzipped.

VNN-COMP 2023 ships its models and properties as ``.onnx.gz`` and ``.vnnlib.gz``. Whether a
file is compressed is decided by the gzip magic bytes, whatever its name; the decompressed
bytes are exactly those of the plain file, so everything after the read (parsers with their
line and column numbers, onnxruntime) sees no difference. Only the standard library is imported
here: the benchmark runner and the counterexample re-check use it without paying for torch.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable
from pathlib import Path

from planecut.errors import ModelError

GZIP_MAGIC = b"\x1f\x8b"


def gunzip_if_compressed(data: bytes, fail: Callable[[str], Exception]) -> bytes:
    """``data`` decompressed if it starts with the gzip magic, else ``data`` itself; a corrupt
    or truncated stream raises ``fail(cause)`` (one line, no traceback)."""
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise fail(f"corrupt or truncated gzip file ({e})") from None


def read_model_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of the ONNX model at ``path``, gunzipped when the file is gzipped.

    Raises :class:`ModelError` (path and one line of cause) for a missing, unreadable or empty
    file and for a corrupt gzip stream.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{path}: model file not found") from None
    except IsADirectoryError:
        raise ModelError(f"{path}: is a directory, not an ONNX model") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot read model file ({e.strerror or e})") from None
    if not data:
        raise ModelError(f"{path}: model file is empty")
    plain = gunzip_if_compressed(data, lambda cause: ModelError(f"{path}: {cause}"))
    if not plain:
        raise ModelError(f"{path}: model file is empty (after gunzip)")
    return plain


def onnxruntime_model(path: str | os.PathLike[str]) -> str | bytes:
    """What to give ``onnxruntime.InferenceSession`` for the model at ``path``: the decompressed
    bytes of a gzipped file (onnxruntime cannot read gzip), the path of a plain one (so that
    weights stored as external data next to it are still found)."""
    try:
        with open(path, "rb") as fh:
            compressed = fh.read(2) == GZIP_MAGIC
    except OSError:
        compressed = True  # read_model_bytes raises the ModelError that names the cause
    return read_model_bytes(path) if compressed else str(path)
