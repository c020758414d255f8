"""One typed, validated configuration object, passed down explicitly.

There is no global config: :func:`load_config` builds a :class:`VerifierConfig` from a YAML file
(unknown keys and wrong types are errors, so a typo never silently changes behaviour), and the
CLI overrides single fields with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_type_hints

from planecut.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from planecut.verifier.features import ModelFeatures


@dataclass(frozen=True)
class AttackConfig:
    """PGD falsification (REFERENCE_SETTINGS: 100 steps, many restarts, early stop on a hit)."""

    enabled: bool = True
    restarts: int = 50  # random starts per input region, run as one batch
    steps: int = 100
    step_size: float = 0.25  # as a fraction of each input's box width (halved on plateaus)
    rounds: int = 2  # PGD rounds before bounding; a final round runs if bounds fail
    seed: int = 0


@dataclass(frozen=True)
class BoundsConfig:
    """Incomplete verification: which bounds to try, cheapest first."""

    methods: tuple[str, ...] = ("crown", "alpha-crown")
    alpha_iterations: int = 50
    alpha_lr: float = 0.1
    alpha_lr_line: float = 0.01  # sigmoid/tanh tangent points (see AlphaOptions.lr_line)
    alpha_lr_decay: float = 0.98
    alpha_early_stop: int = 10
    optimise_intermediate: bool = True
    # intermediate slopes optimised with the final bound ("joint"), each for its own bounds
    # ("layerwise", far tighter on sigmoid/tanh nets), or "auto": layerwise when the network
    # has sigmoid/tanh nodes
    intermediate_objective: str = "auto"
    region_batch: int = 64  # input regions bounded together in one call
    # a row is proven only if lower bound - threshold > proof_margin * max(1, |threshold|):
    # covers float32 rounding in the bound computation (about 1e-7 relative)
    proof_margin: float = 1e-5


@dataclass(frozen=True)
class BabConfig:
    """Branch and bound (REFERENCE_SETTINGS: beta-CROWN, filtered smart branching)."""

    enabled: bool = True
    # "auto": input split when the input has at most input_split_max_dim dimensions,
    # activation split otherwise; "input" / "activation" force one
    mode: str = "auto"
    input_split_max_dim: int = 20
    batch_size: int = 1024  # domains bounded per call (halved on CUDA out-of-memory)
    branching: str = "fsb"  # fsb (filtered smart branching) | babsr
    fsb_candidates: int = 3
    iterations: int = 20  # alpha/beta optimisation steps per BaB round
    lr_alpha: float = 0.01
    lr_beta: float = 0.05
    input_split_method: str = "crown"  # crown | alpha-crown for boxes in input split
    # sb (bound coefficients x width) | lookahead (try every dim) | portfolio (alternate both
    # in restarts of doubling length)
    input_branching: str = "sb"
    progress_interval: float = 2.0  # seconds between live progress lines
    max_domains: int = 2_000_000  # give up (unknown) beyond this many stored domains


@dataclass(frozen=True)
class CutsConfig:
    """The MIP cut worker (SCIP in a separate process) during activation-split BaB.

    ``mode``: ``off``; ``mip`` (run it: its cuts tighten the bounds via GCP-CROWN, and its own
    verdict — property proven by the MIP, or a violating incumbent confirmed with onnxruntime —
    ends the search); ``auto`` (``mip`` where measured to pay: ReLU networks searched by
    activation split with one input region and at least ``auto_min_unstable`` unstable
    neurons at the root and ``auto_min_seconds`` left, on a machine with at least 2 CPU
    cores: on smaller or shorter problems the search alone is faster than starting a solver
    whose first cuts take seconds), and not for networks with residual connections. Measured
    at 60 s on this project's 2-core CPU, cuts on vs off: oval21 (all 30) 13 vs 11 solved in
    the same total time; mnist_fc (15 target instances) the same 11 solved, tighter final bounds
    on 2 of the 4 unsolved, less total time; cifar10_resnet (12 target instances) the same 8
    solved, no bound tighter."""

    mode: str = "auto"
    max_cuts: int = 1000  # cuts kept in the bound computation (largest multipliers first)
    refresh_seconds: float = 2.0  # at most one root re-optimisation per this many seconds
    samples: int = 2000  # executions every cut is checked against before it is used
    auto_min_unstable: int = 200
    auto_min_seconds: float = 20.0  # auto: only when at least this much time is left
    # share of the worker's time spent first on MIP-tightening the root's intermediate bounds
    # (fully connected nets only; 0: off), at most refine_solve_seconds per solve (see
    # planecut.mip_cuts.refine)
    refine_fraction: float = 0.0
    refine_solve_seconds: float = 0.4
    # SCIP solves at once while refining, as threads of the worker (0: one per CPU core; the
    # search's own thread shares the cores meanwhile)
    refine_threads: int = 0
    # with refinement on: after this many seconds of search, the search waits while the
    # worker refines (its threads get every core) and goes on from the roots it gives
    refine_pause_after: float = 5.0


@dataclass(frozen=True)
class VerifierConfig:
    """Everything that changes how ``verify`` runs (CLI flags override single fields)."""

    # preset chosen from the model and the spec ("auto", see auto_preset), a preset's name, or
    # "none"; fields of this config that differ from the defaults override the preset's values
    preset: str = "auto"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "float32"  # float32 | float64
    seed: int = 0
    # CPU threads for torch; 0 = auto: one thread for small networks (thread wake-ups cost
    # more than they save on small matrices, and badly so on a busy machine), all cores else
    threads: int = 0
    attack: AttackConfig = field(default_factory=AttackConfig)
    bounds: BoundsConfig = field(default_factory=BoundsConfig)
    bab: BabConfig = field(default_factory=BabConfig)
    cuts: CutsConfig = field(default_factory=CutsConfig)

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"dtype must be float32 or float64, not {self.dtype!r}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, not {self.device!r}")
        for m in self.bounds.methods:
            if m not in ("ibp", "crown", "alpha-crown"):
                raise ConfigError(f"unknown bound method {m!r} (ibp, crown, alpha-crown)")
        b = self.bounds
        if min(b.alpha_lr, b.alpha_lr_line) <= 0 or not 0 < b.alpha_lr_decay <= 1:
            raise ConfigError("bounds.alpha_lr and bounds.alpha_lr_line must be > 0, "
                              "bounds.alpha_lr_decay in (0, 1]")
        if self.bounds.intermediate_objective not in ("auto", "joint", "layerwise"):
            raise ConfigError("bounds.intermediate_objective must be auto, joint or layerwise, "
                              f"not {self.bounds.intermediate_objective!r}")
        if self.preset not in ("auto", "none") + PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; known: auto, none, "
                              f"{', '.join(PRESETS)}")
        if self.bab.mode not in ("auto", "input", "activation"):
            raise ConfigError(f"bab.mode must be auto, input or activation, not {self.bab.mode!r}")
        if self.bab.branching not in ("fsb", "babsr"):
            raise ConfigError(f"bab.branching must be fsb or babsr, not {self.bab.branching!r}")
        if self.bab.input_branching not in ("sb", "lookahead", "portfolio"):
            raise ConfigError("bab.input_branching must be sb, lookahead or portfolio, not "
                              f"{self.bab.input_branching!r}")
        if self.cuts.mode == "on":  # (also what YAML's bare `on`/`yes` becomes)
            object.__setattr__(self, "cuts", dataclasses.replace(self.cuts, mode="mip"))
        if self.cuts.mode not in ("off", "mip", "auto"):
            raise ConfigError(f"cuts.mode must be off, mip (or on) or auto, not "
                              f"{self.cuts.mode!r}")
        if not 0 <= self.cuts.refine_fraction < 1 or self.cuts.refine_solve_seconds <= 0 \
                or self.cuts.refine_threads < 0 or self.cuts.refine_pause_after < 0:
            raise ConfigError("cuts.refine_fraction must be in [0, 1), "
                              "cuts.refine_solve_seconds > 0, cuts.refine_threads >= 0 and "
                              "cuts.refine_pause_after >= 0")
        if self.bab.batch_size < 1:
            raise ConfigError("bab.batch_size must be >= 1")
        if self.attack.restarts < 1 or self.attack.steps < 0:
            raise ConfigError("attack.restarts must be >= 1 and attack.steps >= 0")


def _build(cls: type, data: Any, where: str) -> Any:
    """Construct dataclass ``cls`` from a mapping, checking keys and value types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(names))}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        hint = hints[key]
        sub = f"{where}.{key}" if where else key
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, sub)
        elif hint is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{sub}: expected true/false, got {value!r}")
            kwargs[key] = value
        elif hint is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{sub}: expected an integer, got {value!r}")
            kwargs[key] = value
        elif hint is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{sub}: expected a number, got {value!r}")
            kwargs[key] = float(value)
        elif hint is str:
            if isinstance(value, bool):  # YAML 1.1 reads a bare off/on/no/yes as a boolean
                value = "on" if value else "off"
            if not isinstance(value, str):
                raise ConfigError(f"{sub}: expected a string, got {value!r}")
            kwargs[key] = value
        elif getattr(hint, "__origin__", None) is tuple:
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                raise ConfigError(f"{sub}: expected a list, got {value!r}")
            kwargs[key] = tuple(value)
        else:  # pragma: no cover - every field type is handled above
            kwargs[key] = value
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> VerifierConfig:
    return _build(VerifierConfig, data, "")


def load_config(path: str | Path) -> VerifierConfig:
    """Read a YAML config file; every problem is a :class:`ConfigError` naming the file."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        raise ConfigError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        data = {}
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None


PRESETS = ("input_split", "fully_connected", "convolutional", "general_nonlinear")

# Where a network counts as large (cheaper settings, see auto_preset): nonlinear neurons, or
# neurons times the spec rows bounded together (the backward passes carry one row each). The
# largest nets the presets were measured on stay below: verivital's conv nets (23328 ReLUs,
# 9 rows), cifar10_resnet's resnet_4b (14436 ReLUs, 9 rows).
LARGE_NEURONS = 40_000
LARGE_NEURON_ROWS = 1_000_000
# Networks with other nonlinearities than ReLU / max pooling have no activation split: input
# split pays for them on more free inputs. At 15 s on the CPU, ml4acopf's 14-bus net (22 free
# inputs; sin, cos, pow, products) proves 11 of 14 properties with input split, 8 with
# alpha-CROWN alone; pensieve_small_parallel (32 free; pow, products) reaches a worst bound of
# -1.9 in 30 s where alpha-CROWN stays at -4.4. 118-bus (189 free): no difference.
NONLINEAR_INPUT_SPLIT_FACTOR = 4


@dataclass(frozen=True)
class PresetChoice:
    """What ``preset: auto`` picked: a preset, settings on top of it (below the user's own
    settings) and why, in words."""

    name: str
    adjust: dict[str, Any] = field(default_factory=dict)  # nested like the YAML files
    reasons: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.name} ({'; '.join(self.reasons)})" if self.reasons else self.name


def auto_preset(f: "ModelFeatures", input_split_max_dim: int = 20) -> PresetChoice:
    """The preset for a (model, spec) pair from its features alone (no names):

    * at most ``input_split_max_dim`` free input coordinates (the spec's boxes may fix the
      rest): ``input_split``, whatever the nonlinearities (CROWN bounds them all);
    * nonlinearities other than ReLU / max pooling (sigmoid, tanh, products, softmax, sign,
      ...): ``input_split`` up to ``NONLINEAR_INPUT_SPLIT_FACTOR`` times as many free
      coordinates (it is their only complete search), ``general_nonlinear`` beyond
      (activation split and MIP cuts need ReLU nets);
    * else ReLU nets: ``convolutional`` with spatial layers, ``fully_connected`` without.

    On top: large networks (``LARGE_NEURONS`` nonlinear neurons, or ``LARGE_NEURON_ROWS``
    neurons times spec rows) get a quarter of the preset's BaB batch and 20 alpha-CROWN
    iterations; input split on a spec that fixes most coordinates branches by ``sb`` only
    (``lookahead`` bounds two children per coordinate, fixed ones included)."""
    free = f.free_inputs
    smooth = not f.piecewise_linear
    if free <= input_split_max_dim * (NONLINEAR_INPUT_SPLIT_FACTOR if smooth else 1):
        name = "input_split"
        why = [f"{free} free input(s) of {f.num_inputs}"]
    elif smooth:
        name = "general_nonlinear"
        why = [f"{'+'.join(sorted(f.nonlinear_kinds - {'relu'}))} nodes"]
    elif f.has_conv:
        name, why = "convolutional", ["ReLU net with spatial layers"]
    else:
        name, why = "fully_connected", ["fully connected ReLU net"]
    adjust: dict[str, Any] = {}
    if name == "input_split" and 2 * free < f.num_inputs:
        adjust["bab"] = {"input_branching": "sb"}
        why.append("sb branching (most inputs fixed)")
    work = f.nonlinear_neurons * max(1, f.max_rows)
    if f.nonlinear_neurons >= LARGE_NEURONS or work >= LARGE_NEURON_ROWS:
        batch = _load_preset(name).get("bab", {}).get("batch_size", BabConfig().batch_size)
        adjust["bab"] = {**adjust.get("bab", {}), "batch_size": max(1, batch // 4)}
        adjust["bounds"] = {"alpha_iterations": 20}
        why.append(f"large: {f.nonlinear_neurons} neurons x {max(1, f.max_rows)} row(s)")
    return PresetChoice(name, adjust, tuple(why))


def _as_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _as_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return obj


def _diff(value: dict, default: dict) -> dict:
    """The entries of ``value`` that differ from ``default`` (recursively)."""
    out = {}
    for k, v in value.items():
        if isinstance(v, dict):
            sub = _diff(v, default[k])
            if sub:
                out[k] = sub
        elif v != default[k]:
            out[k] = v
    return out


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def _load_preset(name: str) -> dict:
    from importlib.resources import files

    import yaml

    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return yaml.safe_load(files("planecut.verifier").joinpath(
        "presets", f"{name}.yaml").read_text()) or {}


def apply_preset(config: VerifierConfig, name: str,
                 adjust: dict[str, Any] | None = None) -> VerifierConfig:
    """``config`` on top of preset ``name`` (with ``adjust``, nested fields, on top of the
    preset): the preset fills every field ``config`` leaves at its default value."""
    preset = _merge(_load_preset(name), adjust or {})
    overrides = _diff(_as_dict(config), _as_dict(VerifierConfig()))
    merged = _merge(preset, overrides)
    merged["preset"] = name
    return config_from_dict(merged)
