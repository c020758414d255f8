import pytest

from planecut.errors import ConfigError
from planecut.verifier.config import VerifierConfig, config_from_dict, load_config


def test_defaults_are_valid():
    cfg = VerifierConfig()
    assert cfg.device == "auto" and cfg.dtype == "float32"
    assert cfg.bounds.methods == ("crown", "alpha-crown")


def test_yaml_overrides_nested_fields(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("device: cpu\nattack:\n  restarts: 7\nbounds:\n  methods: [ibp, crown]\n")
    cfg = load_config(p)
    assert cfg.device == "cpu" and cfg.attack.restarts == 7
    assert cfg.bounds.methods == ("ibp", "crown")
    assert cfg.attack.steps == VerifierConfig().attack.steps  # untouched fields keep defaults


@pytest.mark.parametrize("data, words", [
    ({"devise": "cpu"}, ["unknown key", "devise"]),
    ({"attack": {"restarts": "many"}}, ["attack.restarts", "integer"]),
    ({"attack": {"enabled": 1}}, ["attack.enabled", "true/false"]),
    ({"dtype": "float16"}, ["dtype"]),
    ({"bounds": {"methods": ["magic"]}}, ["magic"]),
    ({"bounds": {"methods": "crown"}}, ["bounds.methods", "list"]),
    ({"attack": 3}, ["attack", "mapping"]),
    ({"bounds": {"alpha_lr_line": 0}}, ["bounds.alpha_lr_line", "> 0"]),
    ({"cuts": {"refine_threads": -1}}, ["cuts.refine_threads", ">= 0"]),
    ({"cuts": {"refine_pause_after": -1.0}}, ["cuts.refine_pause_after", ">= 0"]),
    ({"cuts": {"refine_fraction": 1.0}}, ["cuts.refine_fraction", "[0, 1)"]),
])
def test_bad_config_is_a_clear_error(data, words):
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    for w in words:
        assert w in str(info.value)


def test_bad_yaml_names_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("device: cpu\nattack: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(p) in str(info.value) and ":3:" in str(info.value) or ":2:" in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_user_settings_override_the_preset():
    from dataclasses import replace

    from planecut.verifier.config import BoundsConfig, apply_preset

    cfg = apply_preset(VerifierConfig(), "input_split")
    assert cfg.bab.mode == "input" and cfg.bounds.methods == ("crown",)
    assert cfg.preset == "input_split"
    user = replace(VerifierConfig(), bounds=BoundsConfig(methods=("ibp", "crown")))
    cfg = apply_preset(user, "input_split")
    assert cfg.bounds.methods == ("ibp", "crown")  # the user's choice wins
    assert cfg.bab.mode == "input"  # the preset fills what the user left at its default


def test_every_preset_loads():
    from planecut.verifier.config import PRESETS, apply_preset

    assert "general_nonlinear" in PRESETS
    for name in PRESETS:
        assert apply_preset(VerifierConfig(), name).preset == name
        assert config_from_dict({"preset": name}).preset == name
    with pytest.raises(ConfigError, match="unknown preset"):
        apply_preset(VerifierConfig(), "nope")


def test_cuts_mode_from_yaml_booleans(tmp_path):
    """YAML 1.1 reads a bare `off`/`on` as a boolean: `cuts: {mode: off}` must still mean off."""
    from planecut.verifier.config import load_config

    for text, want in (("off", "off"), ("on", "mip"), ("mip", "mip"), ("auto", "auto")):
        p = tmp_path / f"{text}.yaml"
        p.write_text(f"cuts:\n  mode: {text}\n")
        assert load_config(p).cuts.mode == want
    p = tmp_path / "bad.yaml"
    p.write_text("cuts:\n  mode: sometimes\n")
    with pytest.raises(ConfigError, match="cuts.mode"):
        load_config(p)
