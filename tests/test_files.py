"""planecut.files: model files read plain or gzipped (by the gzip magic, whatever the name)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from planecut.errors import ModelError
from planecut.files import onnxruntime_model, read_model_bytes

MODEL = Path(__file__).resolve().parents[1] / "examples" / "tiny_fc.onnx"


def test_plain_and_gzipped_models_read_the_same_bytes_whatever_the_name(tmp_path):
    data = MODEL.read_bytes()
    for name in ("m.onnx.gz", "gzipped_but_named.onnx"):
        (tmp_path / name).write_bytes(gzip.compress(data))
        assert read_model_bytes(tmp_path / name) == data
        assert onnxruntime_model(tmp_path / name) == data  # onnxruntime cannot read gzip
    assert read_model_bytes(MODEL) == data
    assert onnxruntime_model(MODEL) == str(MODEL)  # plain: the path (external data resolves)


@pytest.mark.parametrize("damage", ["truncated", "bad crc", "bad header"])
def test_corrupt_gzip_is_a_one_line_model_error(tmp_path, damage):
    gz = bytearray(gzip.compress(MODEL.read_bytes()))
    if damage == "truncated":
        gz = gz[:len(gz) // 2]
    elif damage == "bad crc":
        gz[-8] ^= 0xFF
    else:
        gz[2] = 0  # compression method 0: not deflate
    p = tmp_path / "m.onnx.gz"
    p.write_bytes(bytes(gz))
    for read in (read_model_bytes, onnxruntime_model):
        with pytest.raises(ModelError, match="corrupt or truncated gzip file") as exc:
            read(p)
        assert str(exc.value).startswith(f"{p}: ") and "\n" not in str(exc.value)


def test_missing_and_empty_gzip(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        onnxruntime_model(tmp_path / "nope.onnx.gz")
    p = tmp_path / "empty.onnx.gz"
    p.write_bytes(gzip.compress(b""))
    with pytest.raises(ModelError, match="empty"):
        read_model_bytes(p)
