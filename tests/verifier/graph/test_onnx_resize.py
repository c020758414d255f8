"""Resize and Upsample on variable tensors against onnxruntime: every coordinate and nearest
mode, scales and sizes, opset-18 axes and aspect-ratio policies, and the cGAN benchmark."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from planecut.errors import UnsupportedError
from planecut.verifier.graph import Dense, load_onnx
from planecut.verifier.graph import ir

N = helper.make_node
F32 = np.float32
SHAPE = [1, 2, 5, 6]


def _resize(ox, *, scales=None, sizes=None, roi=None, opset=13, shape=SHAPE, **attrs):
    inits = {}
    ins = ["x", "", "", ""]
    for i, (name, val, dt) in enumerate((("roi", roi, F32), ("scales", scales, F32),
                                         ("sizes", sizes, np.int64)), start=1):
        if val is not None:
            inits[name] = np.asarray(val, dt)
            ins[i] = name
    if opset < 13 and not ins[1]:  # roi became optional in opset 13
        inits["roi"], ins[1] = np.zeros(0, F32), "roi"
    while not ins[-1]:
        ins.pop()
    return ox.make([N("Resize", ins, ["y"], **attrs)], shape, None, inits, opset=opset)


# (scales or sizes, attributes)
NEAREST = {
    "default_x2": (dict(scales=[1, 1, 2, 2]), {}),
    "asymmetric_floor": (dict(scales=[1, 1, 1.5, 2.5]),
                         dict(coordinate_transformation_mode="asymmetric", nearest_mode="floor")),
    "half_pixel_ceil_down": (dict(scales=[1, 1, 0.6, 0.5]), dict(nearest_mode="round_prefer_ceil")),
    "align_corners_sizes": (dict(sizes=[1, 2, 7, 4]),
                            dict(coordinate_transformation_mode="align_corners")),
    "pytorch_half_pixel_ceil": (dict(sizes=[1, 2, 3, 11]),
                                dict(coordinate_transformation_mode="pytorch_half_pixel",
                                     nearest_mode="ceil")),
    "tf_half_pixel_for_nn": (dict(scales=[1, 1, 1.7, 1.3], opset=11),
                             dict(coordinate_transformation_mode="tf_half_pixel_for_nn",
                                  nearest_mode="floor")),
    "channels_and_prefer_floor": (dict(scales=[1, 2, 3, 0.5]), {}),
    "opset11_sizes_empty_scales": (dict(sizes=[1, 2, 4, 9], scales=[], opset=11), {}),
    "tf_crop_and_resize": (dict(sizes=[1, 2, 4, 5], roi=[0, 0, 0.2, -0.1, 1, 1, 0.8, 1.3]),
                           dict(coordinate_transformation_mode="tf_crop_and_resize",
                                extrapolation_value=0.5)),
}
LINEAR = {
    "half_pixel_x2": (dict(scales=[1, 1, 2, 2]), {}),
    "asymmetric": (dict(scales=[1, 1, 1.5, 0.5]),
                   dict(coordinate_transformation_mode="asymmetric")),
    "align_corners": (dict(sizes=[1, 2, 9, 4]),
                      dict(coordinate_transformation_mode="align_corners")),
    "pytorch_half_pixel_len1": (dict(sizes=[1, 2, 1, 8]),
                                dict(coordinate_transformation_mode="pytorch_half_pixel")),
    "half_pixel_down": (dict(scales=[1, 1, 0.4, 0.75]), {}),
    "tf_crop_and_resize": (dict(sizes=[1, 2, 4, 5], roi=[0, 0, 0.2, -0.1, 1, 1, 0.8, 1.3]),
                           dict(coordinate_transformation_mode="tf_crop_and_resize",
                                extrapolation_value=-2.0)),
    "half_pixel_symmetric_opset19": (dict(scales=[1, 1, 1.5, 0.7], opset=19),
                                     dict(coordinate_transformation_mode="half_pixel_symmetric")),
    "axes_opset18": (dict(scales=[2, 1.5], opset=18), dict(axes=[2, 3])),
    "rank3": (dict(scales=[1, 1, 2.5], shape=[1, 3, 7]), {}),
}
OPSET18_SIZES = {
    "not_larger": (dict(sizes=[8, 8], opset=18), dict(axes=[2, 3],
                                                      keep_aspect_ratio_policy="not_larger")),
    # (onnxruntime 1.32 ignores a policy given with negative axes, against its own shape
    # inference: negative axes are checked with "stretch")
    "not_smaller": (dict(sizes=[8, 8], opset=18), dict(axes=[2, 3],
                                                       keep_aspect_ratio_policy="not_smaller")),
    "stretch_negative_axes": (dict(sizes=[3, 8], opset=18), dict(axes=[-1, -2])),
}


@pytest.mark.parametrize("name", sorted(NEAREST))
def test_resize_nearest(name, ox, tmp_path):
    kw, attrs = NEAREST[name]
    g = ox.compare(ox.save(_resize(ox, **kw, mode="nearest", **attrs), tmp_path))[False]
    if name != "tf_crop_and_resize":  # nearest only selects: Gathers, no dense matrices
        assert not any(isinstance(n, Dense) for n in g.nodes)


@pytest.mark.parametrize("name", sorted(LINEAR))
def test_resize_linear(name, ox, tmp_path):
    kw, attrs = LINEAR[name]
    ox.compare(ox.save(_resize(ox, **kw, mode="linear", **attrs), tmp_path))


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("name", sorted(OPSET18_SIZES))
def test_resize_keep_aspect_ratio(name, mode, ox, tmp_path):
    kw, attrs = OPSET18_SIZES[name]
    ox.compare(ox.save(_resize(ox, **kw, mode=mode, **attrs), tmp_path))


def test_resize_in_a_network(ox, tmp_path):
    """Conv -> Resize (scales from a folded constant path) -> Relu -> Conv."""
    m = ox.make([N("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                 N("Constant", [], ["s2"], value=helper.make_tensor("v", 1, [2], [2.0, 2.0])),
                 N("Concat", ["ones", "s2"], ["scales"], axis=0),
                 N("Resize", ["c", "", "scales"], ["r"], mode="linear"),
                 N("Relu", ["r"], ["h"]),
                 N("Conv", ["h", "w2"], ["y"], strides=[2, 2])],
                [1, 2, 4, 4], None, {"w": np.random.default_rng(0).normal(size=(3, 2, 3, 3))
                                     .astype(F32), "ones": np.ones(2, F32),
                                     "w2": np.ones((1, 3, 2, 2), F32)})
    ox.compare(ox.save(m, tmp_path))


@pytest.fixture
def no_converter(monkeypatch):
    """Keep old-opset models as they are (the translators' own legacy semantics)."""
    import onnx.version_converter

    def fail(model, target):
        raise RuntimeError("no adapter")
    monkeypatch.setattr(onnx.version_converter, "convert_version", fail)


def _upsample(ox, mode, scales, opset):
    """A declared output shape: the model passes the checker, so the loader tries to lift it."""
    out = [int(F32(s) * F32(n)) for s, n in zip(scales, SHAPE)]
    if opset == 7:
        return ox.make([N("Upsample", ["x"], ["y"], mode=mode,
                          scales=[float(s) for s in scales])], SHAPE, out, opset=7)
    op = "Upsample" if opset == 9 else "Resize"
    return ox.make([N(op, ["x", "s"], ["y"], mode=mode)], SHAPE, out,
                   {"s": np.asarray(scales, F32)}, opset=opset)


UPSAMPLES = [("nearest", [1, 1, 2, 3], 7), ("nearest", [1, 1, 2, 2], 9),
             ("nearest", [1, 1, 1.5, 2.5], 9), ("linear", [1, 1, 2, 1.5], 9),
             ("nearest", [1, 1, 0.6, 1.5], 10), ("linear", [1, 1, 0.5, 2.5], 10)]


@pytest.mark.parametrize("mode,scales,opset", UPSAMPLES)
def test_upsample_and_resize10_native(mode, scales, opset, ox, tmp_path, no_converter):
    ox.compare(ox.save(_upsample(ox, mode, scales, opset), tmp_path))


@pytest.mark.parametrize("mode,scales,opset", UPSAMPLES)
def test_upsample_and_resize10_through_the_loader(mode, scales, opset, ox, tmp_path):
    """Through the loader: it does not lift these models with onnx's version converter,
    which would drop their asymmetric coordinates (linear results would differ)."""
    from planecut.verifier.graph.onnx_resize import converter_changes_resize

    assert converter_changes_resize(["Upsample" if opset < 10 else "Resize"], opset)
    ox.compare(ox.save(_upsample(ox, mode, scales, opset), tmp_path))


@pytest.mark.parametrize("attrs,needle", [(dict(mode="cubic"), "cubic"),
                                          (dict(mode="linear", antialias=1), "antialias")])
def test_resize_unsupported(attrs, needle, ox, tmp_path):
    opset = 18 if "antialias" in attrs else 13
    m = _resize(ox, scales=[1, 1, 0.5, 0.5], opset=opset, **attrs)
    with pytest.raises(UnsupportedError) as info:
        load_onnx(ox.save(m, tmp_path))
    assert needle in str(info.value) and "Resize" in str(info.value)


def test_resize_input_dependent_scales(ox, tmp_path):
    m = ox.make([N("Reshape", ["x", "shp"], ["s"]),
                 N("Resize", ["x", "", "s"], ["y"])], [1, 4], None,
                {"shp": np.asarray([4], np.int64)})
    with pytest.raises(UnsupportedError, match="scales must be constant"):
        load_onnx(ox.save(m, tmp_path))


CGAN = "vnncomp2023/cgan/onnx/cGAN_imgSz32_nCh_3_upsample.onnx.gz"


def test_cgan_upsample_benchmark(bench_root, ox, tmp_path):
    src = Path(bench_root) / CGAN
    if not src.is_file():
        pytest.skip(f"{CGAN} not present")
    plain = tmp_path / "cgan_upsample.onnx"  # onnxruntime reads no gzip
    plain.write_bytes(gzip.decompress(src.read_bytes()))
    g = ox.compare(plain, n=4, simplify_modes=(True,))[True]
    assert sum(isinstance(n, ir.Gather) for n in g.nodes) >= 6  # 3 Upsamples x 2 axes
    direct = load_onnx(src)
    assert [n.kind for n in direct.nodes] == [n.kind for n in g.nodes]
