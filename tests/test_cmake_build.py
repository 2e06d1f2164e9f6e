"""CMakeLists.txt builds csrc/ against libtorch, and the library it makes registers working ops.
Compiling takes a while, so it runs when ATA_EXT_TEST_CMAKE=1 (scripts/test.sh, hence CI, sets it)."""
import os
import shutil
import subprocess
import sys

import pytest
import torch
import torch.utils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(os.environ.get("ATA_EXT_TEST_CMAKE") != "1", reason="set ATA_EXT_TEST_CMAKE=1")


def test_cmake_build_and_load(tmp_path):
    assert shutil.which("cmake"), "cmake is required"
    env = dict(os.environ)
    cmd = ["cmake", "-S", ROOT, "-B", str(tmp_path), f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"]
    if shutil.which("ninja"):
        cmd += ["-G", "Ninja"]
    if torch.version.cuda:  # a CUDA torch's CMake config looks for the toolkit even for CPU builds
        cuda_home = env.get("CUDA_HOME", "/usr/local/cuda")
        if not os.path.exists(os.path.join(cuda_home, "bin", "nvcc")):
            pytest.skip(f"torch is a CUDA build but no CUDA toolkit is at {cuda_home}: its CMake config needs one")
        cmd.append(f"-DCUDA_TOOLKIT_ROOT_DIR={cuda_home}")
        env.setdefault("CUDA_HOME", cuda_home)
        env.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=600)
    subprocess.run(["cmake", "--build", str(tmp_path), "-j2"], check=True, env=env, capture_output=True, timeout=1200)
    assert (tmp_path / "compile_commands.json").exists()
    lib = tmp_path / "libata_ext.so"
    # A fresh interpreter: the Python extension registers the same op namespace.
    code = (
        "import torch; torch.ops.load_library(%r); "
        "print(torch.ops.ata_ext.linear_sum_assignment(torch.tensor([[4., 1., 3.], [2., 0., 5.], [3., 2., 2.]])).tolist())"
        % str(lib)
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[1, 0, 2]"
