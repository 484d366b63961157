"""minimamba.env: the FAST flag, Triton's interpreter switch, and compute-capability gating."""

import os
import subprocess
import sys

import pytest
import torch

from minimamba import env


def _run(code: str, **extra_env) -> str:
    e = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "FAST")}
    e.update(extra_env)
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=e
    ).stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_import_switches_triton_to_the_interpreter_before_triton_is_imported():
    out = _run(
        "import sys, os; import minimamba; print('triton' in sys.modules, os.environ.get('TRITON_INTERPRET'))"
    )
    assert out.split() == ["False", "1"]


def test_an_explicit_triton_interpret_is_respected():
    out = _run("import os, minimamba; print(os.environ['TRITON_INTERPRET'])", TRITON_INTERPRET="0")
    assert out.strip() == "0"


@pytest.mark.parametrize(("value", "expected"), [("0", False), ("1", True), ("false", False), ("yes", True)])
def test_fast_flag_from_the_environment(value, expected):
    out = _run("from minimamba.env import FAST; print(FAST)", FAST=value)
    assert out.strip() == str(expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_cpu_machine_reports_no_cuda_no_bf16_kernels_and_an_interpreted_triton():
    assert not env.has_cuda()
    assert env.compute_capability() is None
    assert not env.supports_bf16_kernels()
    status = env.triton_status()
    if status.installed:
        assert status.interpreted and status.usable and "interpreter" in status.reason


def test_info_names_versions_and_backends():
    text = env.info()
    for word in ("python", "torch", "triton", "device", "scan backends", "ref"):
        assert word in text
