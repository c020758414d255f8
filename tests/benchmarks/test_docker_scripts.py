"""The VNN-COMP scripts in docker/, run directly (no docker needed)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
EXAMPLES = REPO / "examples"
MODEL = EXAMPLES / "tiny_fc.onnx"
SCRIPTS = ("install_tool.sh", "prepare_instance.sh", "run_instance.sh")


def run(script: str, *args: object, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PLANECUT_PYTHON": sys.executable, "PLANECUT_DEVICE": "cpu",
                **env}
    return subprocess.run(["bash", str(DOCKER / script), *map(str, args)], env=full_env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_are_executable_strict_bash(script):
    path = DOCKER / script
    assert os.access(path, os.X_OK)
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


def test_dockerfile_uses_a_cuda_base_and_installs_planecut():
    text = (DOCKER / "Dockerfile").read_text()
    assert "FROM nvidia/cuda:" in text and 'pip install ".[mip]"' in text


def test_wrong_version_or_arguments_are_usage_errors():
    assert run("install_tool.sh", "v2").returncode == 2
    assert run("run_instance.sh", "v1", "test").returncode == 2


def test_category_does_not_configure():
    """The category is only logged: every benchmark name, known or not, gets the same
    command, with no --config (planecut picks its preset from the model and the spec)."""
    commands = set()
    for category in ("acasxu", "mnist_fc", "eran", "oval21", "cifar10_resnet", "test",
                     "never_seen_2031"):
        p = run("run_instance.sh", "v1", category, "m.onnx", "s.vnnlib", "out.txt", "12",
                PLANECUT_DRY_RUN="1")
        assert p.returncode == 0, p.stderr
        assert "verify m.onnx s.vnnlib --timeout 12 --result-file out.txt" in p.stdout
        assert "--config" not in p.stdout and category not in p.stdout
        commands.add(p.stdout)
    assert len(commands) == 1
    text = (DOCKER / "run_instance.sh").read_text()
    assert "docker/configs" not in text and "presets/" not in text


def test_prepare_checks_files(tmp_path):
    p = run("prepare_instance.sh", "v1", "test", MODEL, tmp_path / "missing.vnnlib")
    assert p.returncode == 1 and "missing.vnnlib" in p.stderr
    p = run("prepare_instance.sh", "v1", "test", MODEL, EXAMPLES / "tiny_fc_robust.vnnlib")
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("category, spec, verdict", [
    ("test", "tiny_fc_robust.vnnlib", "unsat"), ("acasxu", "tiny_fc_falsifiable.vnnlib", "sat")])
def test_run_instance_writes_the_result_file(category, spec, verdict, tmp_path):
    result = tmp_path / "sub" / "result.txt"
    p = run("run_instance.sh", "v1", category, MODEL, EXAMPLES / spec, result, 30)
    assert p.returncode == 0, p.stderr
    assert result.read_text().split("\n", 1)[0] == verdict


def test_gz_files_are_passed_on_where_the_listed_name_is_missing(tmp_path):
    """VNN-COMP 2023 names x.onnx / x.vnnlib where only x.onnx.gz / x.vnnlib.gz exist: the
    scripts pass the .gz files to planecut, which reads them directly (no unzip step)."""
    for src in (MODEL, EXAMPLES / "tiny_fc_falsifiable.vnnlib"):
        (tmp_path / f"{src.name}.gz").write_bytes(gzip.compress(src.read_bytes()))
    model, spec = tmp_path / "tiny_fc.onnx", tmp_path / "tiny_fc_falsifiable.vnnlib"
    p = run("prepare_instance.sh", "v1", "test", model, spec)
    assert p.returncode == 0, p.stderr
    p = run("run_instance.sh", "v1", "test", model, spec, tmp_path / "r.txt", 12,
            PLANECUT_DRY_RUN="1")
    assert f"verify {model}.gz {spec}.gz --timeout 12" in p.stdout
    result = tmp_path / "result.txt"
    p = run("run_instance.sh", "v1", "test", model, spec, result, 30)
    assert p.returncode == 0, p.stderr
    assert result.read_text().split("\n", 1)[0] == "sat"
