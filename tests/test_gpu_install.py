"""``make install GPU=...``: a missing toolkit or an unknown backend is one clear line and a failure,
before anything is built (the build itself needs the toolkit, so it is not run here)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.quick
REPO = Path(__file__).resolve().parent.parent


def make_install(gpu: str, path: str) -> subprocess.CompletedProcess:
    # -o: the CPU install is taken as done, so only the GPU step can run
    return subprocess.run([shutil.which("make"), "-s", "-o", ".venv/.installed", "install", f"GPU={gpu}"], cwd=REPO,
                          env={"PATH": path, "HOME": str(REPO)}, capture_output=True, text=True, timeout=60)


def basic_path(tmp_path) -> str:
    """A PATH with the basic tools only: no nvcc, no glslc, no pkg-config."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "bash", "env", "uname", "grep", "echo", "nproc"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


MISSING = {
    "cuda": "GPU=cuda needs the CUDA toolkit's nvcc on PATH (Debian/Ubuntu: apt install nvidia-cuda-toolkit, or "
            "NVIDIA's cuda-toolkit)",
    "vulkan": "GPU=vulkan needs the Vulkan headers and glslc (Debian/Ubuntu: apt install libvulkan-dev glslc "
              "mesa-vulkan-drivers spirv-headers glslang-tools pkg-config)",
}


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
@pytest.mark.parametrize("gpu", sorted(MISSING))
def test_a_missing_toolkit_fails_in_one_line_naming_what_to_install(tmp_path, gpu):
    res = make_install(gpu, basic_path(tmp_path))
    assert res.returncode != 0
    assert [x for x in res.stderr.splitlines() if not x.startswith("make")] == [MISSING[gpu]], res.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_an_unknown_backend_is_refused():
    res = make_install("rocm", "/usr/bin:/bin")
    assert res.returncode != 0 and "GPU=rocm is not one of cuda, vulkan, metal" in res.stderr
