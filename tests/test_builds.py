"""The ways to build besides the editable install the suite runs on: a source distribution that a
wheel is built from and installed, CMakeLists.txt against libtorch, the CPU module with the
sanitizers and with Clang. Each must give a library that registers working ops. Compiling takes a while, so the builds run when ATA_EXT_TEST_BUILDS=1
(scripts/test.sh, hence CI, sets it); checking the source distribution's contents always runs."""
import glob
import os
import shutil
import subprocess
import sys
import tarfile

import pytest
import torch
import torch.utils

import ata_ext

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

builds = pytest.mark.skipif(os.environ.get("ATA_EXT_TEST_BUILDS") != "1", reason="set ATA_EXT_TEST_BUILDS=1")
# What a copy of the tree leaves out: build outputs and hidden folders (.git, .venv, caches).
SOURCE_ONLY = shutil.ignore_patterns(".*", "build", "build-*", "dist", "*.egg-info", "*.so", "__pycache__")
# 3x3 problem with one optimum, [1, 0, 2] (cost 5), in scipy's documentation.
PROBLEM = "[[4., 1., 3.], [2., 0., 5.], [3., 2., 2.]]"


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    # From a copy without build outputs or hidden folders (.git, .venv, caches): setuptools reuses
    # an existing egg-info's file list, which would hide a file missing from MANIFEST.in.
    src = tmp_path_factory.mktemp("src") / "ata_ext"
    shutil.copytree(ROOT, src, ignore=SOURCE_ONLY)
    out = tmp_path_factory.mktemp("sdist")
    r = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(out)], cwd=src, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    (path,) = glob.glob(str(out / "*.tar.gz"))
    return path


def test_sdist_has_every_build_input(sdist):
    # setup.py names only the .cpp/.cu files; the headers they include come from MANIFEST.in.
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    needed = {"setup.py", "pyproject.toml", "README.md", "CMakeLists.txt"}
    for d, _, files in os.walk(os.path.join(ROOT, "csrc")):
        needed |= {os.path.relpath(os.path.join(d, f), ROOT) for f in files}
    assert any(n.endswith(".h") for n in needed)
    assert sorted(needed - names) == []


@builds
def test_wheel_from_sdist_installs_and_runs(sdist, tmp_path):
    # What `pip install ata_ext-*.tar.gz` does, CPU-only to keep it short, into a folder of its
    # own, imported from outside the repo: nothing may depend on the source tree.
    env = dict(os.environ, USE_CUDA="0")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    r = subprocess.run(pip + ["wheel", "-q", "--no-build-isolation", "--no-deps", "-w", str(tmp_path / "wheel"), sdist],
                       env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-4000:]
    (wheel,) = glob.glob(str(tmp_path / "wheel" / "*.whl"))
    r = subprocess.run(pip + ["install", "-q", "--no-deps", "--target", str(tmp_path / "site"), wheel],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    # A CUDA tensor reaching this CPU-only build's ops gets an error that says why (no GPU is
    # needed to check: the CUDA kernel is called directly, on CPU tensors).
    code = (
        "import torch, ata_ext; "
        "print(ata_ext.__file__); "
        f"print(ata_ext.linear_sum_assignment(torch.tensor({PROBLEM})).tolist()); "
        "x = torch.randn(2, 3, 5, 4); a, p = ata_ext.align(x); print(torch.equal(ata_ext.dealign(a, p), x))\n"
        "print(sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith('ata_ext::') "
        "and torch._C._dispatch_has_kernel_for_dispatch_key(n, 'CUDA')))\n"
        "try:\n"
        "    torch.ops.ata_ext.compose_permutations.default.redispatch("
        "torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA), torch.zeros(1, 1, 3, dtype=torch.long))\n"
        "except NotImplementedError as e:\n"
        "    print(str(e).splitlines()[0])"
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    where, cols, inverse, cuda_ops, error = r.stdout.strip().splitlines()
    assert where.startswith(str(tmp_path / "site"))
    assert cols == "[1, 0, 2]"
    assert inverse == "True"
    assert error.startswith("ata_ext::compose_permutations: this build of ata_ext has no CUDA kernels")
    if ata_ext.built_with_cuda:  # then every op with a CUDA kernel must have the stub in a CPU-only build
        ours = sorted(n for n in torch._C._dispatch_get_all_op_names()
                      if n.startswith("ata_ext::") and torch._C._dispatch_has_kernel_for_dispatch_key(n, "CUDA"))
        assert cuda_ops == str(ours)
    else:
        assert "'ata_ext::linear_sum_assignment'" in cuda_ops


@builds
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
        f"print(torch.ops.ata_ext.linear_sum_assignment(torch.tensor({PROBLEM})).tolist())" % str(lib)
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[1, 0, 2]"


def build_copy_and_test(tmp_path, build_env, test_env=None):
    """Builds a copy of the tree in place, CPU-only, with build_env added to the environment, and
    runs the solver, drop-in and alignment tests against that build (test_env added)."""
    src = tmp_path / "ata_ext"
    shutil.copytree(ROOT, src, ignore=SOURCE_ONLY)
    env = dict(os.environ, USE_CUDA="0", **build_env)
    r = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=src, env=env, capture_output=True,
                       text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    env = dict(os.environ, PYTHONPATH=str(src), **(test_env or {}))
    code = "import ata_ext, sys; sys.exit(0 if ata_ext.__file__.startswith(%r) else 1)" % str(src)
    assert subprocess.run([sys.executable, "-c", code], cwd=src, env=env, timeout=300).returncode == 0
    # -s: a sanitizer's report goes to stderr as the process exits, past pytest's capture.
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-s", "-p", "no:cacheprovider", "tests/test_lsa.py",
                        "tests/test_compat.py", "tests/test_align.py"], cwd=src, env=env, capture_output=True, text=True,
                       timeout=1800)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-6000:]


@builds
@pytest.mark.skipif(shutil.which("clang++") is None, reason="needs clang++ (with OpenMP: libomp)")
def test_clang_build_passes_the_solver_tests(tmp_path):
    # Compilers differ where the standards leave room: Clang starts an OpenMP simd min-reduction
    # at the largest finite double where GCC starts at +inf, and the Dijkstra search crashed on
    # every infeasible problem until it allowed for both (jv_augment). CI's machine has no Clang,
    # so this runs where one is installed (Debian: apt-get install clang libomp-dev).
    build_copy_and_test(tmp_path, {"CC": "clang", "CXX": "clang++"})


@builds
@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ (GCC's sanitizers)")
def test_sanitized_build_passes_the_solver_tests(tmp_path):
    # The CPU kernels built with AddressSanitizer and UndefinedBehaviorSanitizer (GCC's), each
    # report fatal: an out-of-bounds access, a use after free, an overflow of a signed integer or a
    # misaligned load in any test fails it. Python is not built with ASan, so its runtime is
    # preloaded, and libstdc++ with it (otherwise ASan cannot find the real __cxa_throw and stops
    # at the first C++ exception); leak checking is off (the interpreter never frees some memory).
    def runtime(name):
        path = subprocess.run(["g++", f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
        if not os.path.isabs(path):
            pytest.skip(f"g++ has no {name}")
        return os.path.realpath(path)

    # _GLIBCXX_ASSERTIONS bounds-checks std::vector's operator[] too: ASan sees no overrun that
    # stays within a vector's capacity.
    flags = "-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -D_GLIBCXX_ASSERTIONS"
    build_copy_and_test(
        tmp_path,
        {"CC": "gcc", "CXX": "g++", "CFLAGS": flags, "LDFLAGS": "-fsanitize=address,undefined"},
        {"LD_PRELOAD": f"{runtime('libasan.so')} {runtime('libstdc++.so')}",
         "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1", "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"},
    )
