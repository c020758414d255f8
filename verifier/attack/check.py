"""Confirm counterexamples on the ORIGINAL ONNX model with onnxruntime.

Nothing planecut computes itself (graph IR, simplification passes, float32 arithmetic in torch)
is trusted for a ``sat`` answer: a candidate counts only if onnxruntime, running the file the
user gave us, produces outputs that violate the property at an input that lies in the box.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from planecut.files import onnxruntime_model
from planecut.vnnlib.spec import Spec

_NP_DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16}


@dataclass(frozen=True)
class Counterexample:
    """A confirmed violation: flat input ``x`` (exactly the values fed to onnxruntime, as
    float64) and the outputs ``y`` onnxruntime produced for it."""

    x: np.ndarray
    y: np.ndarray
    region: int


def snap_into_box(x: np.ndarray, lower: np.ndarray, upper: np.ndarray, dtype: type
                  ) -> np.ndarray:
    """Round ``x`` to the model's input dtype while staying inside ``[lower, upper]``.

    Casting a clipped float64 point to float32 can step just outside the box; step back by one
    ulp where it does, so the written counterexample is exactly representable and in the box.
    """
    x = np.clip(np.asarray(x, dtype=np.float64), lower, upper)
    xr = x.astype(dtype)
    over = xr.astype(np.float64) > upper
    xr[over] = np.nextafter(xr[over], dtype(-np.inf))
    under = xr.astype(np.float64) < lower
    xr[under] = np.nextafter(xr[under], dtype(np.inf))
    return xr


class OnnxChecker:
    """Evaluates the original model with onnxruntime, one input at a time (a gzipped model
    is fed to onnxruntime decompressed)."""

    def __init__(self, model_path: str | Path, input_name: str, input_shape: tuple[int, ...],
                 input_dtype: str) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = 1
        self._sess = ort.InferenceSession(onnxruntime_model(model_path), sess_options=opts,
                                          providers=["CPUExecutionProvider"])
        names = [i.name for i in self._sess.get_inputs()]
        self._input = input_name if input_name in names else names[0]
        # symbolic or unknown dims (batch) become 1: we feed one example at a time
        self._shape = tuple(s if isinstance(s, int) and s > 0 else 1 for s in input_shape)
        self._dtype = _NP_DTYPES.get(input_dtype, np.float32)
        self._output = self._sess.get_outputs()[0].name

    @property
    def dtype(self) -> type:
        return self._dtype

    def outputs(self, x_flat: np.ndarray) -> np.ndarray:
        """Flat float64 outputs of the model at flat input ``x_flat``."""
        x = np.asarray(x_flat).astype(self._dtype).reshape(self._shape)
        (y,) = self._sess.run([self._output], {self._input: x})
        return np.asarray(y, dtype=np.float64).reshape(-1)

    def confirm(self, spec: Spec, x_flat: np.ndarray, region: int) -> Counterexample | None:
        """The counterexample if ``x_flat`` (snapped into region ``region``) violates ``spec``."""
        reg = spec.regions[region]
        x = snap_into_box(x_flat, reg.lower, reg.upper, self._dtype)
        y = self.outputs(x)
        x64 = x.astype(np.float64)
        if not np.all(np.isfinite(y)):
            return None
        if spec.is_violated_by(x64, y):
            return Counterexample(x=x64, y=y, region=region)
        return None
