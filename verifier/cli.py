"""The ``planecut`` command.

``planecut verify MODEL SPEC`` prints the verdict on stdout, progress and diagnostics on
stderr, and with ``--result-file`` writes VNN-COMP's result file. Exit codes:

* 0 — a verdict was reached: ``sat``, ``unsat``, ``unknown`` or ``timeout``;
* 1 — ``error``: the model, spec or config is bad or unsupported (cause on stderr, one line);
* 2 — the command line itself is wrong (usage message);
* 3 — ``error`` from an internal failure of planecut (a bug: please report it; ``--debug``
  shows the traceback).

A watchdog thread guarantees the answer by the deadline plus about a second even if a
computation does not return in time.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

EXIT_VERDICT, EXIT_INPUT_ERROR, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
WATCHDOG_GRACE_S = 0.5
# the computation's own deadline comes this much before --timeout: stopping the search, the
# cut worker and the interpreter takes a few hundred milliseconds, and the answer must be
# there by the timeout (VNN-COMP counts process wall time; interpreter shutdown after the
# verdict takes 0.5-0.8 s with torch loaded)
SHUTDOWN_RESERVE_S = 1.0


def _build_parser() -> argparse.ArgumentParser:
    from planecut import __version__

    parser = argparse.ArgumentParser(
        prog="planecut", description="Neural-network verifier for ONNX models and VNN-LIB "
        "properties.")
    parser.add_argument("--version", action="version", version=f"planecut {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    v = sub.add_parser("verify", help="verify one property on one model",
                       description="Verify VNN-LIB property SPEC on ONNX model MODEL. Prints "
                       "sat/unsat/unknown/timeout/error on stdout.")
    v.add_argument("model", help="ONNX model (.onnx or .onnx.gz)")
    v.add_argument("spec", help="VNN-LIB property (1.0 or 2.0; .vnnlib or .vnnlib.gz)")
    v.add_argument("--timeout", type=float, default=60.0,
                   help="seconds for the whole run, start-up included (default 60)")
    v.add_argument("--result-file", type=Path,
                   help="write the VNN-COMP result file (verdict line, counterexample if sat)")
    v.add_argument("--device", choices=None, default=None,
                   help="auto (default), cpu, cuda or cuda:N")
    v.add_argument("--config", type=Path, help="YAML configuration file")
    v.add_argument("--stats", type=Path,
                   help="write run statistics as JSON (verdict, seconds per phase, figures)")
    v.add_argument("--cuts", choices=("off", "mip", "auto"),
                   help="MIP cut worker during branch and bound: off, mip (on), auto "
                   "(default: per model, see the config's cuts.mode)")
    v.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    v.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    from planecut.benchmarks.cli import add_bench_parser

    add_bench_parser(sub)
    from planecut.mip_cuts.inspect import add_cuts_parser

    add_cuts_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    t_start = time.monotonic()
    args = _build_parser().parse_args(argv)
    if args.command == "verify":
        return _verify_command(args, t_start)
    if args.command == "bench":
        from planecut.benchmarks.cli import bench_main

        return bench_main(args)
    if args.command == "cuts":
        from planecut.mip_cuts.inspect import cuts_main

        return cuts_main(args)
    return EXIT_USAGE  # pragma: no cover - argparse enforces the command


def _write_result(path: Path | None, text: str) -> str | None:
    """Write the result file; returns an error message instead of raising."""
    if path is None:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        return f"cannot write result file {path}: {exc.strerror or exc}"
    return None


def _write_stats(path: Path, result, wall: float) -> None:
    import json

    data = {"verdict": result.verdict, "message": result.message, "seconds": result.seconds,
            "process_seconds": wall, "timings": result.timings, "stats": result.stats}
    err = _write_result(path, json.dumps(data, indent=1, default=float) + "\n")
    if err:
        print(f"planecut: {err}", file=sys.stderr, flush=True)


def _verify_command(args: argparse.Namespace, t_start: float) -> int:
    import dataclasses

    from planecut.errors import PlanecutError

    if args.timeout <= 0:
        print("planecut: error: --timeout must be positive", file=sys.stderr)
        return EXIT_USAGE

    def log(msg: str) -> None:
        if not args.quiet:
            print(f"[{time.monotonic() - t_start:7.2f}s] {msg}", file=sys.stderr, flush=True)

    # the answer must exist by the deadline: claim the result file with "timeout" right away
    # only when the watchdog fires; a normal run writes its own verdict
    outcome: dict[str, object] = {}
    lock = threading.Lock()

    def finish(verdict_text: str, verdict: str, code: int, message: str = "") -> int:
        with lock:
            if "done" in outcome:
                return int(outcome["code"])  # type: ignore[arg-type]
            outcome["done"], outcome["code"] = True, code
            err = _write_result(args.result_file, verdict_text)
            if message:
                print(f"planecut: {message}", file=sys.stderr, flush=True)
            if err:
                print(f"planecut: {err}", file=sys.stderr, flush=True)
            print(verdict, flush=True)
            return code if not err else EXIT_INPUT_ERROR

    def work() -> None:
        try:
            from planecut.verifier.api import verify
            from planecut.verifier.config import VerifierConfig, load_config

            config = load_config(args.config) if args.config else VerifierConfig()
            if args.device:
                config = dataclasses.replace(config, device=args.device)
            if args.cuts:
                config = dataclasses.replace(
                    config, cuts=dataclasses.replace(config.cuts, mode=args.cuts))
            remaining = args.timeout - (time.monotonic() - t_start) - SHUTDOWN_RESERVE_S
            result = verify(args.model, args.spec, timeout=remaining, config=config, log=log)
            log(f"{result.verdict} after {time.monotonic() - t_start:.2f}s "
                + " ".join(f"{k}={v:.2f}s" for k, v in result.timings.items()))
            if args.stats:
                _write_stats(args.stats, result, time.monotonic() - t_start)
            if result.verdict == "error":
                outcome["rc"] = finish("error\n", "error", EXIT_INPUT_ERROR, result.message)
            else:
                outcome["rc"] = finish(result.result_file_text(), result.verdict, EXIT_VERDICT)
        except PlanecutError as exc:
            outcome["rc"] = finish("error\n", "error", EXIT_INPUT_ERROR, str(exc))
        except BaseException as exc:  # noqa: BLE001 - last line of defence: no traceback
            if args.debug:
                import traceback

                traceback.print_exc()
            outcome["rc"] = finish("error\n", "error", EXIT_INTERNAL,
                                   f"internal error: {type(exc).__name__}: {exc} "
                                   "(rerun with --debug for the traceback)")

    thread = threading.Thread(target=work, name="planecut-verify", daemon=True)
    thread.start()
    budget = args.timeout - (time.monotonic() - t_start) + WATCHDOG_GRACE_S
    try:
        thread.join(max(0.0, budget))
    except KeyboardInterrupt:
        finish("unknown\n", "unknown", 130, "interrupted")
        os._exit(130)
    if thread.is_alive():
        code = finish("timeout\n", "timeout", EXIT_VERDICT)
        if args.stats:  # the computing thread never got to write its statistics
            import json

            _write_result(args.stats, json.dumps(
                {"verdict": "timeout", "message": "deadline reached while still computing",
                 "process_seconds": time.monotonic() - t_start, "timings": {},
                 "stats": {}}) + "\n")
        log("deadline reached while still computing: stopped")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # the computing thread cannot be interrupted; do not wait for it
    return int(outcome.get("rc", EXIT_INTERNAL))  # type: ignore[arg-type]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
