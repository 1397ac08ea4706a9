"""make bench-gpu measures on a CUDA GPU; on a machine without one it says so and stops."""

import subprocess
import sys

import pytest
import torch

from support.comfy_harness import REPO


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU: bench-gpu would run")
def test_without_cuda_bench_gpu_refuses_with_a_message(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_gpu.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert "measures on a CUDA GPU and this machine has none" in done.stderr and "--tiny" in done.stderr
    assert not out.exists()
