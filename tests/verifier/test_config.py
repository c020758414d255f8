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
