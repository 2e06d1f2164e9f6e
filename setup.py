"""Builds ata_ext._C with torch.utils.cpp_extension and ninja.

CUDA kernels are compiled when nvcc is found or FORCE_CUDA=1 (no GPU needs to be visible);
USE_CUDA=0 forces a CPU-only build. TORCH_CUDA_ARCH_LIST and MAX_JOBS are respected;
ATA_EXT_DEBUG=1 keeps debug info (-g) in the C++ objects.
Install with `pip install --no-build-isolation .` (torch must already be installed).
"""
import glob
import os
import shutil
import sys
import sysconfig

from setuptools import find_packages, setup


def _find_cuda_home():
    # /usr/local/bin/nvcc may be a wrapper script, which makes torch guess CUDA_HOME=/usr/local
    # and fail to link -lcudart; prefer an explicit setting, then the toolkit's usual home.
    for key in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(key):
            return os.environ[key]
    if os.path.exists("/usr/local/cuda/bin/nvcc"):
        return "/usr/local/cuda"
    nvcc = shutil.which("nvcc")
    return os.path.dirname(os.path.dirname(os.path.realpath(nvcc))) if nvcc else None


_cuda_home = _find_cuda_home()
if _cuda_home:
    os.environ["CUDA_HOME"] = _cuda_home  # must be set before cpp_extension is imported

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

# The oldest torch the package was tested on (README, "Building": on 2.8 every test but one
# passes; on 2.5 vmap hit a PyTorch assertion; 2.4 lacks torch.library.register_vmap, which the
# package calls at import). An older one is refused here, before anything is compiled.
_MIN_TORCH = (2, 8)
if tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) < _MIN_TORCH:
    sys.exit(f"ata_ext needs torch {_MIN_TORCH[0]}.{_MIN_TORCH[1]} or newer; torch {torch.__version__} is installed")


def _use_cuda():
    if os.environ.get("USE_CUDA", "") == "0":
        return False
    forced = os.environ.get("FORCE_CUDA", "") == "1"
    if not (forced or (_cuda_home and os.path.exists(os.path.join(_cuda_home, "bin", "nvcc")))):
        return False
    if torch.version.cuda is None:
        if forced:
            raise RuntimeError("FORCE_CUDA=1 but the installed torch is a CPU-only build")
        return False
    if _cuda_home is None:
        raise RuntimeError("FORCE_CUDA=1 but no CUDA toolkit was found: set CUDA_HOME")
    return True


def _shared_libstdcxx():
    """Some g++ setups link libstdc++ statically into shared objects (-static-libstdc++ in a
    wrapper or specs file; the driver then makes even an explicit -lstdc++ static). A private
    libstdc++ beside torch's crashes the first time an error message formats a number: its
    locale facets are not the ones torch's streams were set up with. Linking, by path, the
    libstdc++ this process (which has imported torch) has loaded makes the link dynamic; where
    g++ links it dynamically anyway, this changes nothing."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/libstdc++.so" in line}
    except OSError:
        return []
    return sorted(p for p in paths if os.path.exists(p))[:1]


def _extension():
    here = os.path.dirname(os.path.abspath(__file__))
    cuda = _use_cuda()
    sources = ["csrc/ata_ext.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
    cuda_version = torch.version.cuda if cuda else "cpu"
    defines = [
        "-DATA_EXT_PYTHON_MODULE",
        f'-DATA_EXT_TORCH_VERSION="{torch.__version__}"',
        f'-DATA_EXT_CUDA_VERSION="{cuda_version}"',
    ]
    # The C++ standard is the one cpp_extension picks for this torch. at::parallel_for is inline
    # OpenMP: without -fopenmp here it silently runs serially. Python's own build flags add -g;
    # debug info for torch's headers made each file compile 2-3x slower (57 -> 24 s for one on a
    # 2-core machine), so it is off unless ATA_EXT_DEBUG=1.
    debug = os.environ.get("ATA_EXT_DEBUG", "") == "1"
    cxx = ["-O3", "-fopenmp"] + ([] if debug else ["-g0"]) + defines
    link = ["-fopenmp"]
    link += _shared_libstdcxx()  # [] where there is no /proc (not Linux)
    include_dirs = [os.path.join(here, "csrc")]
    if not cuda:
        return CppExtension(
            "ata_ext._C", sources, include_dirs=include_dirs, extra_compile_args={"cxx": cxx}, extra_link_args=link
        )
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        # No GPU to detect the architecture from: build for Hopper (the GPUs this project is
        # tested on) instead of every architecture torch knows, which multiplies compile time.
        os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"
    nvcc = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"] + defines
    return CUDAExtension(
        "ata_ext._C",
        sources + sorted(glob.glob("csrc/cuda/*.cu")),
        include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx, "nvcc": nvcc},
        extra_link_args=link,
    )


class BuildExt(BuildExtension.with_options(use_ninja=True)):
    """pip's editable installs (scripts/setup.sh) compile in a fresh temporary directory, so every
    run of the two commands recompiled every file (3 minutes on a 2-core machine with the CUDA
    kernels). The objects go to build/ in the source tree instead, where ninja recompiles only
    what changed: it tracks each object's headers and command line, which names the torch and
    CUDA versions, the architectures and the flags."""

    def finalize_options(self):
        super().finalize_options()
        here = os.path.dirname(os.path.abspath(__file__))
        self.build_temp = os.path.join(here, "build", f"temp-{sysconfig.get_platform()}-{sys.implementation.cache_tag}")


setup(
    name="ata_ext",
    version="0.1.0",
    description="Batched linear assignment (CPU and CUDA) and alignment kernels for PyTorch",
    packages=find_packages(include=["ata_ext", "ata_ext.*"]),
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExt},
    python_requires=">=3.10",
    install_requires=["torch>=2.8", "numpy"],
    zip_safe=False,
)
