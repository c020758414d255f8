"""The VNN-COMP scripts in docker/, run directly (no docker needed)."""

from __future__ import annotations

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


@pytest.mark.parametrize("category, preset", [
    ("acasxu", "input_split"), ("mnist_fc", "fully_connected"), ("eran", "fully_connected"),
    ("oval21", "convolutional"), ("cifar10_resnet", "convolutional"), ("test", None)])
def test_category_selects_preset(category, preset):
    p = run("run_instance.sh", "v1", category, "m.onnx", "s.vnnlib", "out.txt", "12",
            PLANECUT_DRY_RUN="1")
    assert p.returncode == 0, p.stderr
    assert "verify m.onnx s.vnnlib --timeout 12 --result-file out.txt" in p.stdout
    if preset is None:
        assert "--config" not in p.stdout
    else:
        assert f"--config {REPO / 'verifier' / 'presets' / preset}.yaml" in p.stdout


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
