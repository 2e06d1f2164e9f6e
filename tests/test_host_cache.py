"""The host block cache behind CPU align/dealign outputs: reuse, limits, clearing, and that its
tensors behave like any other CPU tensor (contents, resize, threads, fork)."""
import multiprocessing
import os
import subprocess
import sys
import threading

import pytest
import torch

import ata_ext

MiB = 1 << 20


def gathered(x, perm):
    """aligned[..., t, i, :] = x[..., t, perm[..., t, i], :], by plain indexing."""
    return torch.gather(x, -2, perm[..., None].expand(x.shape))


def clip(seed, shape=(2, 4, 49, 1024)):  # 1.5 MiB in float32: cached, in a 2 MiB block
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_freed_blocks_are_reused_and_overwritten():
    ata_ext.empty_host_cache()
    x1, x2 = clip(0), clip(1)
    y, perm1 = ata_ext.align(x1)
    ptr = y.data_ptr()
    assert torch.equal(y, gathered(x1, perm1))
    del y
    assert ata_ext.host_cache_info()["cached_bytes"] == 2 * MiB  # rounded up to the 2 MiB granule
    y, perm2 = ata_ext.align(x2)
    assert y.data_ptr() == ptr and ata_ext.host_cache_info()["cached_bytes"] == 0
    assert torch.equal(y, gathered(x2, perm2))  # no stale rows of x1
    assert torch.equal(ata_ext.dealign(y, perm2), x2)


def test_empty_host_cache_frees_the_blocks():
    y, _ = ata_ext.align(clip(2))
    del y
    assert ata_ext.host_cache_info()["cached_bytes"] > 0
    ata_ext.empty_host_cache()
    assert ata_ext.host_cache_info()["cached_bytes"] == 0


def test_small_outputs_bypass_the_cache():
    ata_ext.empty_host_cache()
    y, _ = ata_ext.align(torch.randn(2, 3, 16, 8))
    del y
    assert ata_ext.host_cache_info()["cached_bytes"] == 0


def test_cached_tensors_are_ordinary_tensors():
    x = clip(3)
    y, perm = ata_ext.align(x)
    ref = y.clone()
    y.resize_(3, 4, 49, 1024)  # storage grows through the cache's allocator, keeping the data
    assert torch.equal(y[:2], ref)
    y.add_(1)
    z = y[:2].clone()
    assert torch.equal(z, ref + 1)
    # Moving to shared memory (as multiprocessing queues do) swaps the block out of the storage.
    y.share_memory_()
    assert y.is_shared() and torch.equal(y[:2], ref + 1)
    # Gradients (align_scatter outputs) come from the cache as well.
    x.requires_grad_(True)
    aligned, perm = ata_ext.align(x)
    (aligned * 2).sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 2))


def test_concurrent_threads():
    errors = []

    def work(seed):
        try:
            for i in range(10):
                x = clip(100 * seed + i)
                y, perm = ata_ext.align(x)
                assert torch.equal(y, gathered(x, perm))
                assert torch.equal(ata_ext.dealign(y, perm), x)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads) and not errors, errors


def _align_in_child(queue):
    # As in a DataLoader worker: GNU OpenMP's thread pool does not survive fork (torch's own ops
    # hang in such a child too), so forked workers run single-threaded.
    torch.set_num_threads(1)
    x = clip(7)
    y, perm = ata_ext.align(x)
    queue.put(bool(torch.equal(y, gathered(x, perm))))


@pytest.mark.skipif(sys.platform != "linux", reason="fork is a Linux start method here")
def test_usable_after_fork():
    y, _ = ata_ext.align(clip(6))  # the cache is live in the parent
    del y
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    p = ctx.Process(target=_align_in_child, args=(queue,))
    p.start()
    p.join(timeout=120)
    assert p.exitcode == 0 and queue.get(timeout=5) is True


def _run(env_mb, code):
    env = dict(os.environ, ATA_EXT_HOST_CACHE_MB=str(env_mb))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


LIMIT_CODE = """
import torch, ata_ext
xs = [torch.randn(2, 4, 49, 1024) for _ in range(3)]  # 1.5 MiB each: a 2 MiB block
ys = [ata_ext.align(x) for x in xs]
ok = all(torch.equal(ata_ext.dealign(y, p), x) for x, (y, p) in zip(xs, ys))
del ys  # 4 blocks are free: the 3 aligned outputs and the dealign outputs' (freed and reused)
info = ata_ext.host_cache_info()
print(info["cached_bytes"], info["limit_bytes"], ok)
"""


@pytest.mark.parametrize("mb, cached", [(0, 0), (5, 4 * MiB), (1024, 8 * MiB)])
def test_limit_from_the_environment(mb, cached):
    assert _run(mb, LIMIT_CODE) == [str(cached), str(mb * MiB), "True"]


def test_memory_profiler_sees_the_blocks():
    x = clip(8)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        y, _ = ata_ext.align(x)
    usage = {e.key: e.self_cpu_memory_usage for e in prof.key_averages()}
    assert usage["ata_ext::align_gather"] >= y.nbytes


EVICT_CODE = """
import torch, ata_ext
big, small = torch.randn(2, 4, 49, 2048), torch.randn(2, 4, 49, 1024)  # 4 MiB and 2 MiB blocks
y, _ = ata_ext.align(big); del y
a = ata_ext.host_cache_info()["cached_bytes"]
y, _ = ata_ext.align(small); ptr = y.data_ptr(); del y  # the older 4 MiB block makes room
b = ata_ext.host_cache_info()["cached_bytes"]
y, _ = ata_ext.align(small)
print(a, b, y.data_ptr() == ptr)
"""


def test_least_recently_freed_blocks_make_room():
    assert _run(5, EVICT_CODE) == [str(4 * MiB), str(2 * MiB), "True"]
