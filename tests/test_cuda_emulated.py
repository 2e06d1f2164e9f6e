"""The CUDA kernels' own source, run on the CPU by a small emulator (tests/emulator/): every CUDA
thread is a fiber that switches only at barriers, __syncwarp and warp shuffles, in an order drawn
from a seed. CI has no GPU; this is where the kernel code itself, not only its CPU twin, executes.

Checked: the auction kernel's assignments are bit-identical to the twin's on the shared-memory
and the global-memory path, whatever the thread schedule, with the same statuses on bad input;
and the emulator saw no divergent barrier, deadlock or spin. Not checked: memory ordering and
speed (the emulator is sequentially consistent); benchmarks/gpu_check.sh remains the real test."""
import ctypes
import os
import shutil
import subprocess
import sys

import pytest
import torch

import ata_ext
from ata_ext.testing import assert_optimal, video_similarity

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OK, INVALID, INFEASIBLE = 0, 1, 2
MAX_SWEEPS = 3_000_000  # scheduler steps per launch; the largest case here needs well under a tenth

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the emulator uses Linux ucontext")


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    from torch.utils.cpp_extension import include_paths

    out = tmp_path_factory.mktemp("emulator") / "kernels_emulated.so"
    src = os.path.join(HERE, "emulator", "kernels_emulated.cpp")
    includes = [f"-I{os.path.join(ROOT, 'csrc')}", f"-I{os.path.join(HERE, 'emulator')}"]
    includes += [f"-I{p}" for p in include_paths()]
    build = subprocess.run([cxx, "-O2", "-std=c++20", "-shared", "-fPIC", *includes, src, "-o", str(out)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-4000:]
    lib = ctypes.CDLL(str(out))
    i64, vp = ctypes.c_int64, ctypes.c_void_p
    lib.emu_auction.argtypes = [vp, ctypes.c_int, i64, i64, i64, i64, i64, i64, ctypes.c_int, ctypes.c_int,
                                ctypes.c_uint64, i64, vp, vp, ctypes.c_char_p, ctypes.c_int]
    lib.emu_auction.restype = ctypes.c_int
    return lib


def emulated_auction(lib, cost, maximize=False, shared_levels=True, seed=0):
    """The CUDA auction kernel on cost (batch, N, M) float32/float64, any strides: (out, status)."""
    assert cost.dtype in (torch.float32, torch.float64) and cost.dim() == 3
    batch, n, m = cost.shape
    out = torch.full((batch, n), -1, dtype=torch.long)  # as the CUDA launcher prepares it
    status = torch.full((batch,), -7, dtype=torch.int32)
    err = ctypes.create_string_buffer(2048)
    rc = lib.emu_auction(cost.data_ptr(), 0 if cost.dtype == torch.float32 else 1, batch, n, m, *cost.stride(),
                         int(maximize), int(shared_levels), seed, MAX_SWEEPS, out.data_ptr(), status.data_ptr(), err,
                         len(err))
    assert rc == 0, err.value.decode()
    return out, status


def families(g):
    yield torch.rand(3, 49, 49, generator=g), False
    yield video_similarity(2, 196, generator=g), True
    yield torch.randint(0, 4, (3, 30, 30), generator=g).float(), False  # ties
    yield torch.full((2, 40, 40), 3.0), True  # constant
    yield torch.rand(3, 20, 35, generator=g).double(), False  # N < M
    yield torch.rand(3, 35, 20, generator=g), True  # N > M
    yield torch.rand(2, 40, 40, generator=g).double() * 1e12 - 5e11, False  # huge range
    yield 1 + torch.rand(2, 40, 40, generator=g).double() * 1e-9, True  # tiny gaps
    c = torch.rand(3, 30, 30, generator=g)
    c[torch.rand(3, 30, 30, generator=g) < 0.4] = float("inf")
    c[:, torch.arange(30), torch.arange(30)] = 1.0  # forbidden pairs, still feasible
    yield c, False
    yield torch.rand(1, 64, 64, generator=g), False  # long single-bidder chains
    yield torch.rand(2, 1, 1, generator=g), False
    yield torch.rand(2, 1, 5, generator=g), True
    yield torch.rand(2, 5, 1, generator=g), False
    yield torch.rand(2, 2, 2, generator=g).double(), True


@pytest.mark.parametrize("shared_levels", [True, False], ids=["shared", "global"])
def test_kernel_bit_identical_to_twin(lib, shared_levels):
    g = torch.Generator().manual_seed(0)
    for cost, mx in families(g):
        twin = ata_ext.linear_sum_assignment(cost, mx, algorithm="auction")
        for seed in (0, 1):
            out, status = emulated_auction(lib, cost, mx, shared_levels, seed)
            assert bool((status == OK).all()), (tuple(cost.shape), status)
            assert torch.equal(out, twin), (tuple(cost.shape), cost.dtype, mx, seed)
        for k in range(cost.shape[0]):
            assert_optimal(cost[k].double(), out[k], mx, algorithm="auction")


def test_kernel_reads_strided_costs(lib):
    base = torch.rand(3, 25, 40, generator=torch.Generator().manual_seed(3))
    for cost in (base.transpose(1, 2), base[:, ::2, 5:30]):  # N > M transposed; a strided slice
        out, status = emulated_auction(lib, cost, seed=2)
        assert bool((status == OK).all())
        assert torch.equal(out, ata_ext.linear_sum_assignment(cost, algorithm="auction"))


def test_kernel_statuses_on_bad_input(lib):
    inf, nan = float("inf"), float("nan")
    cost = torch.rand(4, 3, 3, generator=torch.Generator().manual_seed(4))
    cost[1, 0, 2] = nan
    cost[2, 0, :] = inf  # row 0 can take no column
    cost[3, 1, 1] = -inf  # an infinity that cannot mark a forbidden pair when minimising
    out, status = emulated_auction(lib, cost, seed=5)
    assert status.tolist() == [OK, INVALID, INFEASIBLE, INVALID]
    assert bool((out[1:] == -1).all())
    assert torch.equal(out, ata_ext.linear_sum_assignment(cost, algorithm="auction", check=False))
