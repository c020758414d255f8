"""Gzipped VNN-LIB files (VNN-COMP 2023 ships ``.vnnlib.gz``), 1.0 and 2.0: the same ``Spec`` as
the plain file, the same error positions, and a one-line error for a corrupt gzip stream."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from planecut.errors import SpecError
from planecut.vnnlib import parse_spec as public_parse_spec
from planecut.vnnlib.parse import parse_spec

DATA = Path(__file__).parent / "data"
V1_TEXT = (Path(__file__).resolve().parents[2] / "examples"
           / "tiny_fc_falsifiable.vnnlib").read_text()
V2_TEXT = (DATA / "robustness_2x3.vnnlib").read_text()


def _gzip(path: Path, text: str) -> Path:
    path.write_bytes(gzip.compress(text.encode()))
    return path


def _same(a, b) -> None:
    assert (a.version, a.inputs, a.outputs, len(a.regions)) == \
        (b.version, b.inputs, b.outputs, len(b.regions))
    for ra, rb in zip(a.regions, b.regions):
        np.testing.assert_array_equal(ra.lower, rb.lower)
        np.testing.assert_array_equal(ra.upper, rb.upper)
        for da, db in zip(ra.disjuncts, rb.disjuncts):
            np.testing.assert_array_equal(da.C, db.C)
            np.testing.assert_array_equal(da.d, db.d)


@pytest.mark.parametrize("text, version", [(V1_TEXT, "1.0"), (V2_TEXT, "2.0")])
@pytest.mark.parametrize("name", ["q.vnnlib.gz", "gzipped_but_named.vnnlib"])
def test_gzipped_spec_equals_plain_one(tmp_path, text, version, name):
    plain = tmp_path / "plain.vnnlib"
    plain.write_text(text)
    gz = _gzip(tmp_path / name, text)
    a, b = parse_spec(plain), public_parse_spec(gz)
    assert a.version == version and b.path == str(gz)
    _same(a, b)


def test_plain_text_named_gz_is_read_as_plain(tmp_path):
    p = tmp_path / "not_compressed.vnnlib.gz"
    p.write_text(V1_TEXT)
    _same(parse_spec(p), parse_spec(_gzip(tmp_path / "c.vnnlib.gz", V1_TEXT)))


@pytest.mark.parametrize("text, line, column", [
    # 1.0 (our parser): an undeclared variable on line 5
    ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0))\n"
     "(assert (<= X_0 1))\n(assert (<= Y_3 0))\n", 5, 13),
    # 2.0 (the official package): a syntax error on line 4
    ("(vnnlib-version <2.0>)\n(declare-network N (declare-input X float32 [1]) "
     "(declare-output Y float32 [1]))\n\n(assert (foo X[0] 1.0))\n", 4, 9),
])
def test_errors_in_a_gzipped_spec_point_into_the_text(tmp_path, text, line, column):
    plain = tmp_path / "bad.vnnlib"
    plain.write_text(text)
    gz = _gzip(tmp_path / "bad.vnnlib.gz", text)
    with pytest.raises(SpecError) as e_plain:
        parse_spec(plain)
    with pytest.raises(SpecError) as e_gz:
        parse_spec(gz)
    assert (e_gz.value.path, e_gz.value.line, e_gz.value.column) == (str(gz), line, column)
    assert e_gz.value.message == e_plain.value.message


@pytest.mark.parametrize("damage", ["truncated", "bad crc"])
def test_corrupt_gzip_is_a_one_line_spec_error(tmp_path, damage):
    data = bytearray(gzip.compress(V1_TEXT.encode()))
    if damage == "truncated":
        data = data[:len(data) // 2]
    else:
        data[-8] ^= 0xFF
    p = tmp_path / "s.vnnlib.gz"
    p.write_bytes(bytes(data))
    with pytest.raises(SpecError, match="corrupt or truncated gzip file") as exc:
        public_parse_spec(p)
    assert exc.value.path == str(p) and "\n" not in str(exc.value)
