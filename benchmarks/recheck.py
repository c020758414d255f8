"""Re-checking a ``sat`` answer's counterexample, independently of the verifier run.

The runner does what VNN-COMP's checker does: read the counterexample back from the result
file, run the ORIGINAL ONNX file with onnxruntime at the reported input, and check that the
input lies in the property's box and the outputs satisfy the property's unsafe condition
(``Spec.is_violated_by``, exact on the float values). When the file also gives outputs, they must
agree with onnxruntime's within ``OUTPUT_RTOL``/``OUTPUT_ATOL`` (a mismatch means the verifier
reported numbers it did not get from the model). Only the model's first input and output are
used, as everywhere in planecut.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from planecut.files import onnxruntime_model

OUTPUT_RTOL = 1e-4
OUTPUT_ATOL = 1e-4

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
               "tensor(float16)": np.float16}


@dataclass(frozen=True)
class RecheckOutcome:
    """Whether the counterexample holds, and why not when it does not."""

    ok: bool
    message: str = ""


def onnx_outputs(model: Path, x_flat: np.ndarray) -> np.ndarray:
    """Flat float64 outputs of the model's first output at flat input ``x_flat``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(onnxruntime_model(model), sess_options=opts,
                                providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = tuple(s if isinstance(s, int) and s > 0 else 1 for s in inp.shape)
    x = np.asarray(x_flat).astype(_ORT_DTYPES.get(inp.type, np.float32)).reshape(shape)
    y = sess.run([sess.get_outputs()[0].name], {inp.name: x})[0]
    return np.asarray(y, dtype=np.float64).reshape(-1)


def recheck_counterexample(model: Path, spec_path: Path, result_text: str) -> RecheckOutcome:
    """Check the counterexample in ``result_text`` (a ``sat`` result file) on ``model``."""
    from planecut.vnnlib.counterexample import parse_counterexample
    from planecut.vnnlib.parse import parse_spec

    try:
        spec = parse_spec(str(spec_path))
        x, y_file = parse_counterexample(result_text, spec)
    except Exception as exc:  # noqa: BLE001 - any failure to read it back is a bad answer
        return RecheckOutcome(False, f"counterexample unreadable: {exc}")
    try:
        y = onnx_outputs(model, x)
    except Exception as exc:  # noqa: BLE001 - e.g. wrong input size for the model
        return RecheckOutcome(False, f"onnxruntime failed on the counterexample: {exc}")
    if not np.all(np.isfinite(y)):
        return RecheckOutcome(False, "onnxruntime outputs at the counterexample are not finite")
    if y_file is not None and (y_file.shape != y.shape or not np.allclose(
            y_file, y, rtol=OUTPUT_RTOL, atol=OUTPUT_ATOL)):
        return RecheckOutcome(False, "outputs in the result file differ from onnxruntime's")
    if not spec.is_violated_by(x, y):
        return RecheckOutcome(False, "counterexample does not violate the property "
                                     "(input outside the box or output condition false)")
    return RecheckOutcome(True)
