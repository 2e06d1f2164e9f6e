"""align / dealign against a literal Algorithm 1 with scipy, plus the gather ops' contracts."""
import subprocess
import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import ata_ext
from ata_ext._ops import ops
from ata_ext.testing import devices
from reference_ata import literal_align, literal_dealign, step_totals

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@pytest.mark.parametrize("device", devices())
def test_matches_literal_algorithm_1(device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 49, 24, generator=g, dtype=torch.float64)
    aligned, perm = ata_ext.align(x.to(device))
    aligned, perm = aligned.cpu(), perm.cpu()
    assert perm.shape == (2, 3, 5, 49) and perm.dtype == torch.int64
    for b in range(2):
        for c in range(3):
            ref, ref_perm, ref_totals = literal_align(x[b, c])
            # Random features have no ties: the very same permutations and features.
            assert torch.equal(perm[b, c], ref_perm)
            assert torch.equal(aligned[b, c], ref)
            assert step_totals(x[b, c], perm[b, c]) == pytest.approx(ref_totals, rel=1e-12)


@pytest.mark.parametrize("device", devices())
def test_objectives_match_literal_in_float32(device):
    # float32 similarities can reorder near-ties, so compare what Algorithm 1 optimises: each
    # step's total similarity.
    x = torch.randn(4, 6, 64, 32, generator=torch.Generator().manual_seed(1))
    _, perm = ata_ext.align(x.to(device))
    for b in range(4):
        _, _, ref_totals = literal_align(x[b])
        assert step_totals(x[b], perm[b].cpu()) == pytest.approx(ref_totals, rel=1e-5)


def moving_camera_clip(T=6, grid=14, patch=16, step=(1, 1), seed=0):
    """A procedural texture seen through a window that moves `step` patches per frame, cut into
    patch x patch RGB patches: (T, grid*grid, 3*patch*patch), plus the true shift."""
    g = torch.Generator().manual_seed(seed)
    size = (grid + T * max(step)) * patch
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij")
    world = torch.zeros(3, size, size, dtype=torch.float64)
    for _ in range(12):  # smooth structure plus fine noise: every patch distinct
        f = torch.rand(2, generator=g) * 0.8
        ph = torch.rand(3, 1, 1, generator=g, dtype=torch.float64) * 6.28
        world += torch.sin(f[0] * yy + f[1] * xx + ph)
    world += torch.rand(3, size, size, generator=g, dtype=torch.float64) - 0.5
    frames = []
    for t in range(T):
        y0, x0 = t * step[0] * patch, t * step[1] * patch
        crop = world[:, y0:y0 + grid * patch, x0:x0 + grid * patch]
        p = crop.reshape(3, grid, patch, grid, patch).permute(1, 3, 0, 2, 4).reshape(grid * grid, -1)
        frames.append(p)
    return torch.stack(frames)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("step", [(0, 1), (1, 1), (1, 0)])
def test_moving_camera_recovers_the_shift(device, step):
    grid, T = 14, 6
    x = moving_camera_clip(T=T, grid=grid, step=step)
    aligned, perm = ata_ext.align(x.to(device).float())
    perm = perm.cpu()
    dy, dx = step
    for t in range(1, T):
        # Patch (r, c) of frame t-1 shows what patch (r - dy, c - dx) of frame t shows.
        for r in range(dy, grid):
            for c in range(dx, grid):
                i = int((perm[t - 1] == r * grid + c).nonzero())  # aligned slot of that content
                assert int(perm[t, i]) == (r - dy) * grid + (c - dx), (t, r, c)


@pytest.mark.parametrize("device", devices())
def test_batched_equals_per_clip(device):
    x = torch.randn(3, 4, 36, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64).to(device)
    aligned, perm = ata_ext.align(x)
    for b in range(3):
        a1, p1 = ata_ext.align(x[b])
        assert torch.equal(a1, aligned[b]) and torch.equal(p1, perm[b])


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["tn", "nt"])
def test_dealign_inverts_bit_for_bit(device, dtype, layout):
    x = torch.randn(2, 5, 25, 40, generator=torch.Generator().manual_seed(3)).to(device, dtype)
    aligned, perm = ata_ext.align(x, layout=layout)
    assert torch.equal(perm[..., 0, :], torch.arange(25, device=device).expand(2, 25))
    ref = ata_ext.align(x)[0]
    assert torch.equal(aligned, ref.transpose(-2, -3) if layout == "nt" else ref)
    expect_gather = x.gather(-2, perm.unsqueeze(-1).expand_as(x))
    assert torch.equal(ref, expect_gather)
    assert torch.equal(ata_ext.dealign(aligned, perm, layout=layout), x)


@pytest.mark.parametrize("device", devices())
def test_key_is_used_for_matching(device):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 16, 8, generator=g, dtype=torch.float64).to(device)
    key = torch.randn(3, 16, 5, generator=g, dtype=torch.float64).to(device)
    aligned, perm = ata_ext.align(x, key=key)
    _, ref_perm, _ = literal_align(key.cpu())
    assert torch.equal(perm.cpu(), ref_perm)
    assert torch.equal(aligned, x.gather(-2, perm.unsqueeze(-1).expand_as(x)))


def test_seed_dealignment_matrices_and_algorithm_2():
    x = torch.randn(5, 20, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    aligned, perm = ata_ext.align(x)
    D = ata_ext.dealignment_matrices(perm)
    assert D.shape == (5, 20, 20)
    assert torch.equal(D.sum(-1), torch.ones(5, 20, dtype=D.dtype))
    assert torch.equal(literal_dealign(aligned, D), x)


@pytest.mark.parametrize("device", devices())
def test_degenerate_shapes(device):
    x = torch.randn(2, 1, 9, 4, device=device)  # T = 1: identity
    aligned, perm = ata_ext.align(x)
    assert torch.equal(aligned, x) and torch.equal(perm, torch.arange(9, device=device).expand(2, 1, 9))
    x = torch.randn(2, 3, 0, 4, device=device)  # N = 0
    aligned, perm = ata_ext.align(x)
    assert aligned.shape == x.shape and perm.shape == (2, 3, 0)
    assert ata_ext.dealign(aligned, perm).shape == x.shape
    x = torch.randn(3, 7, 5, device=device)  # no batch dims
    aligned, perm = ata_ext.align(x)
    assert torch.equal(ata_ext.dealign(aligned, perm), x)
    # C = 0 (or a key with D = 0): every similarity is 0, so any permutations are optimal. (This
    # raised from an ambiguous reshape.)
    for x, key in ((torch.randn(2, 4, 9, 0, device=device), None),
                   (torch.randn(2, 4, 9, 3, device=device), torch.randn(2, 4, 9, 0, device=device))):
        aligned, perm = ata_ext.align(x, key=key)
        assert aligned.shape == x.shape and perm.shape == (2, 4, 9)
        assert torch.equal(perm.sort(-1).values, torch.arange(9, device=device).expand(2, 4, 9))
        assert torch.equal(ata_ext.dealign(aligned, perm), x)
    with pytest.raises(ValueError, match="permutation"):  # nothing to copy, but perm is still checked
        ata_ext.dealign(torch.randn(2, 4, 9, 0, device=device), torch.zeros(2, 4, 9, dtype=torch.long, device=device))


@pytest.mark.parametrize("device", devices())
def test_bad_input(device):
    x = torch.randn(2, 3, 4, 5, device=device)
    perm = ata_ext.align(x)[1]
    with pytest.raises(ValueError, match=r"\(\.\.\., T, N, C\)"):
        ata_ext.align(torch.randn(4, 5, device=device))
    with pytest.raises(TypeError, match="floating-point"):
        ata_ext.align(torch.ones(2, 3, 4, dtype=torch.long, device=device))
    # float8: not matched on directly (a TypeError that says what to do), but aligned with a key.
    x8 = x.to(torch.float8_e4m3fn)
    for call in (lambda: ata_ext.align(x8), lambda: ata_ext.align(x, key=x8)):
        with pytest.raises(TypeError, match="key=x.float()"):
            call()
    aligned8, perm8 = ata_ext.align(x8, key=x8.float())
    assert torch.equal(perm8, ata_ext.align(x8.float())[1])
    assert torch.equal(ata_ext.dealign(aligned8, perm8).view(torch.uint8), x8.view(torch.uint8))
    with pytest.raises(ValueError, match="key"):
        ata_ext.align(x, key=torch.randn(2, 3, 5, 5, device=device))
    with pytest.raises(ValueError, match="layout"):
        ata_ext.align(x, layout="ntc")
    # Sparse tensors: a TypeError that names the argument, not the dispatcher's missing-backend error.
    for call, name in ((lambda: ata_ext.align(x.cpu().to_sparse()), "x"),
                       (lambda: ata_ext.align(x.cpu(), key=x.cpu().to_sparse()), "key"),
                       (lambda: ata_ext.dealign(x.cpu().to_sparse(), perm.cpu()), "aligned"),
                       (lambda: ata_ext.dealign(x.cpu(), perm.cpu().to_sparse()), "perm")):
        with pytest.raises(TypeError, match=rf"^{name} must be a dense \(strided\) tensor"):
            call()
    # dealign's errors name dealign (not the op behind it, align_scatter).
    with pytest.raises(ValueError, match=r"^dealign: perm must have shape"):
        ata_ext.dealign(x, perm[..., :3])
    with pytest.raises(TypeError, match="^dealign: perm must be int64"):
        ata_ext.dealign(x, perm.int())
    bad = perm.clone()
    bad[1, 2, 0] = 4  # out of range
    with pytest.raises(ValueError, match="^dealign: perm.* is not a permutation"):
        ata_ext.dealign(x, bad)
    bad[1, 2, 0] = bad[1, 2, 1]  # repeated
    with pytest.raises(ValueError, match="^dealign: perm.* is not a permutation"):
        ata_ext.dealign(x, bad)
    with pytest.raises(ValueError, match="not a permutation"):
        torch.ops.ata_ext.align_gather(x, bad, False, True)


@pytest.mark.parametrize("layout", ["tn", "nt"])
def test_unchecked_gathers_stay_in_bounds(layout):
    # check=False skips the permutation test (dealign inside a model, perm from align), but an
    # index out of range must still never move memory from or to outside the tensors: on the CPU
    # a ValueError naming the entry. (A -1 is what a failed solve leaves in a composed perm.)
    x = torch.randn(2, 3, 4, 8)
    _, perm = ata_ext.align(x)
    y = x.transpose(1, 2).contiguous() if layout == "nt" else x
    nt = layout == "nt"
    for value in (4, -1, 2**62, -(2**63)):
        bad = perm.clone()
        bad[1, 2, 3] = value
        for op, features in ((ops.align_gather, x), (ops.align_scatter, y)):
            with pytest.raises(ValueError, match=rf"perm\[5\] .* holds {value}, outside 0..3"):
                op(features, bad, nt, False)
        with pytest.raises(ValueError, match=r"^dealign: perm\[5\] .* outside 0..3"):
            ata_ext.dealign(y, bad, layout=layout, check=False)
    # Repeated indices are what check=False leaves to the caller: no error, the in-range rows moved.
    rep = perm.clone()
    rep[0, 1, 0] = rep[0, 1, 1]
    out = ops.align_gather(x, rep, False, False)
    assert torch.equal(out[0, 1, 1:], x[0, 1, rep[0, 1, 1:]])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_unchecked_cuda_gather_asserts_out_of_range():
    # On CUDA check=False has no validation pass and no sync: an index out of range stops the
    # kernel with a device-side assert (PyTorch's own index ops do the same), so it runs in a
    # process of its own, whose CUDA context the assert ends.
    code = (
        "import torch, ata_ext\n"
        "x = torch.randn(2, 3, 4, 8, device='cuda')\n"
        "perm = torch.arange(4, device='cuda').expand(2, 3, 4).contiguous()\n"
        "perm[1, 2, 3] = 4\n"
        "ata_ext.dealign(x, perm, check=False)\n"
        "torch.cuda.synchronize()\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "device-side assert" in r.stderr, r.stderr[-2000:]


def composed_by_gathers(steps):
    """perm[b, t] = steps[t-1, b][perm[b, t-1]], one torch.gather a frame: the reference."""
    T1, B, N = steps.shape
    perms = [torch.arange(N).expand(B, N)]
    for t in range(T1):
        perms.append(torch.gather(steps[t], -1, perms[-1]))
    return torch.stack(perms, dim=1)


@pytest.mark.parametrize("device", devices())
def test_compose_permutations(device):
    g = torch.Generator().manual_seed(11)
    for T1, B, N in ((4, 3, 17), (1, 2, 5), (0, 3, 4), (3, 0, 6), (2, 4, 0), (7, 1, 300)):
        steps = torch.argsort(torch.rand(T1, B, N, generator=g), dim=-1)
        perm = ops.compose_permutations(steps.to(device)).cpu()
        assert perm.shape == (B, T1 + 1, N) and perm.dtype == torch.long
        assert torch.equal(perm, composed_by_gathers(steps))
    steps = torch.argsort(torch.rand(3, 2, 6, generator=g), dim=-1)
    torch.library.opcheck(torch.ops.ata_ext.compose_permutations.default, (steps.to(device),))
    with pytest.raises(ValueError, match=r"\(T-1, B, N\)"):
        ops.compose_permutations(steps[0].to(device))
    with pytest.raises(TypeError, match="int64"):
        ops.compose_permutations(steps.int().to(device))
    bad = steps.clone()
    bad[2, 1, 3] = -1  # a problem the solver left unassigned
    if device == "cpu":
        with pytest.raises(ValueError, match=r"outside 0\.\.5"):
            ops.compose_permutations(bad)
    else:  # no sync on CUDA: the chain through it is -1 from there on, nothing read out of bounds
        perm = ops.compose_permutations(bad.to(device)).cpu()
        want = composed_by_gathers(steps)
        hit = want[1, 2] == 3
        assert bool((perm[1, 3][hit] == -1).all()) and torch.equal(perm[1, 3][~hit], want[1, 3][~hit])


def gram_and_norms(g, T=4, B=3, N=9, D=16, dtype=torch.float32):
    """Frame-pair Gram matrices (T-1, B, N, N) of features with a zero, a NaN and an infinite
    token, their norms (B, T, N), and the float64 reference cosines."""
    k = torch.randn(B, T, N, D, generator=g, dtype=torch.float64)
    k[0, 1, 2] = 0
    k[1, 2, 4, 3] = float("nan")
    k[2, 0, 5, :2] = float("inf")
    unit = torch.nn.functional.normalize(k, dim=-1)
    want = torch.stack([unit[:, t] @ unit[:, t + 1].transpose(1, 2) for t in range(T - 1)])
    want = torch.nan_to_num(want, nan=-2.0, posinf=-2.0, neginf=-2.0)
    kd = k.to(dtype)
    gram = torch.stack([kd[:, t] @ kd[:, t + 1].transpose(1, 2) for t in range(T - 1)])
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    return gram, torch.linalg.vector_norm(kd, dim=-1, dtype=acc), want


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_normalize_similarities(device, dtype):
    g = torch.Generator().manual_seed(12)
    gram, norms, want = gram_and_norms(g, dtype=dtype)
    sim = gram.to(device)
    ops.normalize_similarities_(sim, norms.to(device))
    tol = {torch.float32: 1e-6, torch.float64: 1e-13, torch.bfloat16: 2e-2}[dtype]
    assert sim.dtype == dtype and torch.allclose(sim.cpu().double(), want, atol=tol, rtol=0)
    assert float(sim[0, 0, :, 2].abs().max()) == 0  # a zero token: cosine 0 (normalize's eps)
    # Without norms only the entries that are not finite change.
    sim = gram.to(device)
    ops.normalize_similarities_(sim, None)
    assert torch.equal(sim.cpu(), torch.nan_to_num(gram, nan=-2.0, posinf=-2.0, neginf=-2.0))
    # Read from products in another layout (align's one bmm leaves them in (B, T) order, rows
    # padded): the same bits as in place; products is not written.
    T, B, N = gram.shape[0] + 1, gram.shape[1], gram.shape[2]
    padded = torch.full((B, T, N, N + 3), 7.0, dtype=dtype)
    padded[:, : T - 1, :, 3:] = gram.transpose(0, 1)
    padded = padded.to(device)
    products = padded[:, : T - 1, :, 3:].transpose(0, 1)
    before = padded.clone()
    out = torch.full_like(products, 5.0, memory_format=torch.contiguous_format)
    ops.normalize_similarities_(out, norms.to(device), products)
    in_place = gram.to(device)
    ops.normalize_similarities_(in_place, norms.to(device))
    assert torch.equal(out, in_place) and torch.equal(padded, before)
    same = gram.to(device)
    ops.normalize_similarities_(same, norms.to(device), same)  # products is gram: in place
    assert torch.equal(same, in_place)
    torch.library.opcheck(torch.ops.ata_ext.normalize_similarities_.default, (gram.to(device), norms.to(device)))
    torch.library.opcheck(torch.ops.ata_ext.normalize_similarities_.default, (out, norms.to(device), products))
    with pytest.raises(ValueError, match="products must have gram's shape"):
        ops.normalize_similarities_(out, norms.to(device), products[:, :1])
    with pytest.raises(TypeError, match="products must be"):
        ops.normalize_similarities_(out, norms.to(device), products.double() if dtype != torch.float64 else products.float())
    with pytest.raises(ValueError, match="products' rows must be contiguous"):
        ops.normalize_similarities_(out, norms.to(device), products.transpose(2, 3))
    with pytest.raises(RuntimeError, match="refer to a single memory location"):
        ops.normalize_similarities_(out, norms.to(device), out[:])  # a view of gram itself
    with pytest.raises(ValueError, match=r"\(T-1, B, N, N\)"):
        ops.normalize_similarities_(gram[0].to(device), norms.to(device))
    with pytest.raises(ValueError, match="contiguous"):
        ops.normalize_similarities_(gram.transpose(2, 3).to(device), norms.to(device))
    with pytest.raises(ValueError, match=r"\(B, T, N\)"):
        ops.normalize_similarities_(gram.to(device), norms[:, :2].contiguous().to(device))
    with pytest.raises(TypeError, match="norms must be"):
        ops.normalize_similarities_(gram.to(device), norms.half().to(device))


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16], ids=str)
def test_frame_similarities_op(device, dtype):
    # The op align gets its similarities from: F.normalize's cosines of frame t (rows) with frame
    # t+1 (columns), -2 where not finite, in the key's dtype; on the CPU from the host block cache.
    g = torch.Generator().manual_seed(13)
    k = torch.randn(3, 4, 9, 16, generator=g, dtype=torch.float64) * 3
    k[1, 2, 4] = 0
    k[2, 0, 5, :2] = float("inf")
    unit = torch.nn.functional.normalize(k, dim=-1)
    want = torch.stack([unit[:, t] @ unit[:, t + 1].transpose(1, 2) for t in range(3)])
    want = torch.nan_to_num(want, nan=-2.0, posinf=-2.0, neginf=-2.0)
    sim = ops.frame_similarities(k.to(device, dtype))
    tol = {torch.float32: 1e-6, torch.float64: 1e-13, torch.bfloat16: 2e-2, torch.float16: 2e-3}[dtype]
    assert sim.dtype == dtype and sim.shape == (3, 3, 9, 9) and sim.is_contiguous()
    assert torch.allclose(sim.cpu().double(), want, atol=tol, rtol=0)
    assert ops.frame_similarities(k[:, :1].to(device)).shape == (0, 3, 9, 9)  # T = 1: no frame pairs
    torch.library.opcheck(torch.ops.ata_ext.frame_similarities.default, (k.to(device, dtype),))
    # Not differentiated: a key that requires grad (grad mode on, as in a traced model) or carries
    # a tangent gives the same similarities; the bmm_out inside raised for both.
    import torch.autograd.forward_ad as fwAD

    kd = k.to(device, dtype)
    assert torch.equal(ops.frame_similarities(kd.clone().requires_grad_()).detach(), sim)
    with fwAD.dual_level():
        dual = ops.frame_similarities(fwAD.make_dual(kd, torch.ones_like(kd)))
        assert torch.equal(fwAD.unpack_dual(dual).primal, sim)
    with pytest.raises(ValueError, match=r"\(B, T, N, D\)"):
        ops.frame_similarities(k[0].to(device))
    with pytest.raises(TypeError, match="key must be float16"):
        ops.frame_similarities(k.to(device, torch.int32))
    if device == "cpu":  # the output's block goes back to the host cache, and comes out again
        ata_ext.empty_host_cache()
        big = torch.randn(4, 4, 196, 64, generator=g)  # a 1.8 MB output: the cache takes 1 MiB and up
        ptr = ops.frame_similarities(big).data_ptr()
        assert ata_ext.host_cache_info()["cached_bytes"] > 0
        assert ops.frame_similarities(big).data_ptr() == ptr


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_frame_similarities_in_one_bmm(device, dtype, monkeypatch):
    # ATA_EXT_SIMILARITY_BMM=one (frame_similarities.h; the default on CUDA): all frame pairs in one
    # bmm, the products across clips dropped; =pair (the default elsewhere): one bmm a frame pair.
    # The same similarities in the same order (the products' rounding may differ on a GPU, where
    # the batch size can change cuBLAS's kernel), and the same alignment; a non-contiguous key and
    # T = 2 take the per-pair bmm. Another value is an error naming the variable.
    g = torch.Generator().manual_seed(14)
    k = torch.randn(3, 5, 9, 16, generator=g) * 3
    k[1, 2, 4] = 0
    k[2, 0, 5, :2] = float("inf")
    kd = k.to(device, dtype)
    tol = {torch.float32: 2e-6, torch.bfloat16: 4e-2, torch.float16: 4e-3}[dtype]  # twice test_frame_similarities_op's
    default = ops.frame_similarities(kd)
    for key in (kd, kd[..., ::2], kd[:, :2]):
        monkeypatch.setenv("ATA_EXT_SIMILARITY_BMM", "pair")
        want = ops.frame_similarities(key)
        monkeypatch.setenv("ATA_EXT_SIMILARITY_BMM", "one")
        got = ops.frame_similarities(key)
        assert got.shape == want.shape and got.is_contiguous()
        assert torch.allclose(got.float(), want.float(), atol=tol, rtol=0)
        if key is kd:
            assert torch.equal(default, got if device == "cuda" else want)
    from ata_ext._align import NONFINITE_SIMILARITY

    # One bmm pads each product row to 16 bytes, its second operand reading the rows before a
    # frame: N = 9 pads in every dtype; N = 3 does not (the padding would not fit in a frame), nor
    # N = 8 (aligned already) in half types; NaN in the rows read as padding (the end of a frame)
    # and in the last frame stays in its own similarities.
    for n in (3, 8, 20):
        key = torch.randn(2, 4, n, 8, generator=g) * 3
        key[0, 2, n - 1, 1] = key[1, 3, 1, 0] = float("nan")
        key = key.to(device, dtype)
        monkeypatch.setenv("ATA_EXT_SIMILARITY_BMM", "pair")
        want = ops.frame_similarities(key)
        monkeypatch.setenv("ATA_EXT_SIMILARITY_BMM", "one")
        got = ops.frame_similarities(key)
        assert torch.allclose(got.float(), want.float(), atol=tol, rtol=0)
        assert (got == NONFINITE_SIMILARITY).sum() == 3 * n  # a column of pair 1, a row of pair 2 (clip 0), a column of pair 2 (clip 1)
    monkeypatch.setenv("ATA_EXT_SIMILARITY_BMM", "ONE")
    with pytest.raises(ValueError, match="ATA_EXT_SIMILARITY_BMM must be 'one' or 'pair', got 'ONE'"):
        ops.frame_similarities(kd)
    monkeypatch.setenv("ATA_EXT_SIMILARITY_BMM", "pair")
    x = torch.randn(2, 6, 12, 8, generator=g).to(device)
    want = ata_ext.align(x)
    monkeypatch.setenv("ATA_EXT_SIMILARITY_BMM", "one")
    got = ata_ext.align(x)
    if device == "cpu":  # the same bits in the similarities, so the same permutations
        assert torch.equal(got[1], want[1]) and torch.equal(got[0], want[0])
    else:  # an equally good alignment: the same total similarity of each aligned frame pair
        unit = [torch.nn.functional.normalize(a.double(), dim=-1) for a in (got[0], want[0])]
        totals = [(u[:, :-1] * u[:, 1:]).sum((-1, -2)) for u in unit]
        assert torch.allclose(*totals, atol=1e-4, rtol=0)


@pytest.mark.parametrize("device", devices())
def test_nonfinite_tokens_are_matched_last(device):
    # A token with NaN or infinite features has no similarity: it is matched after all others
    # (NONFINITE_SIMILARITY), the rest of its frames align as usual, and its values move with it.
    from ata_ext._align import NONFINITE_SIMILARITY

    g = torch.Generator().manual_seed(9)
    x = torch.randn(3, 5, 16, 8, generator=g, dtype=torch.float64)
    x[0, 2, 5, 3] = float("nan")
    x[1, 1, 3, :] = float("inf")
    x[1, 4, 0, 0] = -float("inf")
    aligned, perm = ata_ext.align(x.to(device))
    aligned, perm = aligned.cpu(), perm.cpu()
    assert torch.equal(perm.sort(-1).values, torch.arange(16).expand(3, 5, 16))
    assert torch.equal(aligned.isnan(), x.gather(2, perm[..., None].expand_as(x)).isnan())
    for b in range(3):
        ref, ref_perm, ref_totals = literal_align(x[b], nonfinite=NONFINITE_SIMILARITY)
        assert torch.equal(perm[b], ref_perm)
        assert torch.equal(aligned[b].nan_to_num(), ref.nan_to_num())


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_overflowing_token_is_a_zero_vector(device, dtype):
    # A token whose norm overflows float32 (1e20 * a unit-scale vector) counts as the zero vector
    # F.normalize makes of it (documented in align): the frames align as with that token zeroed.
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 4, 12, 16, generator=g)
    x[1, 2, 5] *= 1e20
    zeroed = x.clone()
    zeroed[1, 2, 5] = 0
    perm = ata_ext.align(x.to(dtype).to(device))[1]
    assert torch.equal(perm, ata_ext.align(zeroed.to(dtype).to(device))[1])
    # The documented exception: two such tokens in neighbouring frames overflow their raw product
    # as well, and the pair counts as non-finite (F.normalize would make it 0).
    from ata_ext._align import NONFINITE_SIMILARITY, frame_similarities

    x[1, 3, 0] = x[1, 2, 5]
    sim = frame_similarities(x.to(dtype).to(device)).cpu()
    assert sim[2, 1, 5, 0] == NONFINITE_SIMILARITY and sim[1, 1, 0, 5] == 0


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype, scale", [(torch.float64, 1e200), (torch.float32, 1e30), (torch.bfloat16, 1e30),
                                          (torch.float16, 1e4), (torch.float32, 1.0)])
def test_single_channel_features_of_any_size(device, dtype, scale):
    # With C = 1 a norm is |x|, finite up to the dtype's maximum, and F.normalize makes +-1 of the
    # features; the raw product of two such values overflowed (from 1.3e154 in float64, 1.8e19 in
    # float32), so every similarity counted as non-finite and the frames were matched at random.
    g = torch.Generator().manual_seed(12)
    x = (torch.randn(2, 4, 24, 1, generator=g, dtype=torch.float64) * scale).to(dtype)
    _, perm = ata_ext.align(x.to(device))
    for b in range(2):
        _, _, ref = literal_align(x[b])
        assert step_totals(x[b], perm[b].cpu()) == pytest.approx(ref, abs=1e-9)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("scale", [300.0, 1.0, 1e-4])
def test_half_precision_similarities_keep_their_range(device, scale):
    # float16 Gram matrices of raw features overflow once norms pass 256 and lose their digits
    # when norms are tiny; zero tokens have similarity 0 (normalize's eps), never NaN.
    from ata_ext._align import frame_similarities

    g = torch.Generator().manual_seed(10)
    x = torch.randn(2, 4, 20, 64, generator=g, dtype=torch.float64) * scale
    x[1, 2, 7] = 0
    want = frame_similarities(x)
    for dtype in (torch.float16, torch.bfloat16):
        got = frame_similarities(x.to(device, dtype)).cpu().double()
        assert bool(got.isfinite().all())
        assert torch.allclose(got, want, atol=2e-2 if dtype == torch.bfloat16 else 2e-3)
    _, perm = ata_ext.align(x.to(device, torch.float16))
    totals = [v for b in range(2) for v in step_totals(x[b], perm[b].cpu())]
    ref = [v for b in range(2) for v in literal_align(x[b])[2]]
    assert totals == pytest.approx(ref, rel=1e-2)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("nt", [False, True])
def test_gradcheck(device, nt):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 6, 4, generator=g, dtype=torch.float64).to(device).requires_grad_()
    perm = ata_ext.align(x)[1]
    layout = "nt" if nt else "tn"
    assert torch.autograd.gradcheck(lambda z: ata_ext.align(z, layout=layout)[0], (x,))
    y = ata_ext.align(x.detach(), layout=layout)[0].requires_grad_()
    assert torch.autograd.gradcheck(lambda z: ata_ext.dealign(z, perm, layout=layout), (y,))
    assert torch.autograd.gradgradcheck(lambda z: ata_ext.align(z, layout=layout)[0], (x,))


def _permutation_jacobian(x, perm):
    """The Jacobian of x -> align's output, a 0/1 matrix (aligned.numel(), x.numel()), built by
    aligning the entries' flat indices."""
    n = x.numel()
    index = torch.arange(n, dtype=torch.float64, device=x.device).reshape(x.shape)
    src = torch.ops.ata_ext.align_gather(index, perm, False, True).long().flatten()
    J = torch.zeros(n, n, dtype=x.dtype, device=x.device)
    J[torch.arange(n, device=x.device), src] = 1
    return J


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("layout", ["tn", "nt"])
def test_forward_mode_ad(device, layout):
    # A permutation is linear: aligned's tangent is x's tangent permuted alike, and the matching
    # takes no tangent. The ops' registered formula has no tangent rule: through it a dual tensor
    # silently lost its tangent (None) and torch.func.jvp returned zeros; and a dual key reached
    # the similarity matmuls, which raised.
    import torch.autograd.forward_ad as fwAD

    g = torch.Generator().manual_seed(21)
    x = torch.randn(2, 3, 7, 5, generator=g, dtype=torch.float64).to(device)
    tx = torch.randn(2, 3, 7, 5, generator=g, dtype=torch.float64).to(device)
    aligned, perm = ata_ext.align(x, layout=layout)
    want = ata_ext.align(tx, key=x, layout=layout)[0]
    primal, tangent = torch.func.jvp(lambda z: ata_ext.align(z, layout=layout)[0], (x,), (tx,))
    assert torch.equal(primal, aligned) and torch.equal(tangent, want)
    primal, tangent = torch.func.jvp(lambda z: ata_ext.dealign(z, perm, layout=layout), (aligned,), (want,))
    assert torch.equal(primal, x) and torch.equal(tangent, tx)
    with fwAD.dual_level():
        a, p = ata_ext.align(fwAD.make_dual(x, tx), layout=layout)
        assert torch.equal(p, perm)
        assert torch.equal(fwAD.unpack_dual(a).primal, aligned) and torch.equal(fwAD.unpack_dual(a).tangent, want)
        back = fwAD.unpack_dual(ata_ext.dealign(a, p, layout=layout))
        assert torch.equal(back.primal, x) and torch.equal(back.tangent, tx)
        a, p = ata_ext.align(x, key=fwAD.make_dual(x, tx), layout=layout)
        assert torch.equal(p, perm) and fwAD.unpack_dual(a).tangent is None


@pytest.mark.parametrize("device", devices())
def test_torch_func_transforms(device):
    # grad, vjp, jacrev, jacfwd and hessian through align and dealign: torch.func.grad and
    # jacrev raised through the ops' registered formula (a PyTorch limitation, see _ops.py).
    g = torch.Generator().manual_seed(22)
    x = torch.randn(2, 3, 5, 2, generator=g, dtype=torch.float64).to(device)
    w = torch.randn(2, 3, 5, 2, generator=g, dtype=torch.float64).to(device)
    aligned, perm = ata_ext.align(x)
    J = _permutation_jacobian(x, perm).reshape(*x.shape, *x.shape)
    assert torch.equal(torch.func.jacrev(lambda z: ata_ext.align(z)[0])(x), J)
    assert torch.equal(torch.func.jacfwd(lambda z: ata_ext.align(z)[0])(x), J)
    # dealign is the inverse permutation: its Jacobian is J's transpose.
    Jt = J.reshape(x.numel(), x.numel()).T.reshape(*x.shape, *x.shape)
    assert torch.equal(torch.func.jacrev(lambda z: ata_ext.dealign(z, perm))(aligned), Jt)
    grad = torch.func.grad(lambda z: (ata_ext.align(z)[0] * w).sum())(x)
    assert torch.equal(grad, ata_ext.dealign(w, perm))
    out, vjp = torch.func.vjp(lambda z: ata_ext.dealign(z, perm, layout="nt"), ata_ext.align(x, layout="nt")[0])
    assert torch.equal(out, x) and torch.equal(vjp(w)[0], ata_ext.align(w, key=x, layout="nt")[0])
    # sum(aligned ** 3) = sum(x ** 3): its Hessian is diag(6x) whatever the permutation.
    H = torch.func.hessian(lambda z: ata_ext.align(z)[0].pow(3).sum())(x)
    assert torch.allclose(H.reshape(x.numel(), x.numel()), torch.diag(6 * x.flatten()))


def test_transforms_inside_torch_compile():
    # Inside torch.compile: Dynamo drops an autograd.Function's tangent rule (pytorch/pytorch#192985),
    # so under forward AD the gathers leave the graph and run eagerly. jvp and forward_ad get the
    # true tangent (jvp got zeros), vmap and grad the eager answers; with fullgraph=True, jvp and
    # grad raise (PyTorch limitations) rather than answer wrong.
    import torch.autograd.forward_ad as fwAD

    g = torch.Generator().manual_seed(24)
    x, tx = torch.randn(2, 2, 3, 5, 4, generator=g, dtype=torch.float64)
    want = ata_ext.align(tx, key=x)[0]

    def jvp(z, t):
        return torch.func.jvp(lambda u: ata_ext.align(u)[0], (z,), (t,))[1]

    def jvp_fullgraph(z, t):  # its own code object: Dynamo caches compiled frames by code
        return torch.func.jvp(lambda u: ata_ext.align(u)[0], (z,), (t,))[1]

    assert torch.equal(torch.compile(jvp, backend="aot_eager")(x, tx), want)
    with pytest.raises(torch._dynamo.exc.Unsupported):  # the graph break, refused
        torch.compile(jvp_fullgraph, backend="aot_eager", fullgraph=True)(x, tx)
    with fwAD.dual_level():
        a = torch.compile(lambda z: ata_ext.align(z)[0], backend="aot_eager")(fwAD.make_dual(x, tx))
        assert torch.equal(fwAD.unpack_dual(a).tangent, want)
    grad = torch.func.grad(lambda z: (ata_ext.align(z)[0] * tx).sum())
    try:
        got = torch.compile(grad, backend="aot_eager")(x)
    except torch._dynamo.exc.TorchRuntimeError as e:
        # PyTorch 2.11 (the GPU machines' build) traces grad into the function register_autograd
        # generates and raises pytorch/pytorch#170834 there: an error, never a wrong answer.
        assert torch.__version__ < (2, 14) and "setup_context" in str(e)
    else:
        assert torch.equal(got, ata_ext.dealign(tx, ata_ext.align(x)[1]))
    vmapped = torch.compile(torch.func.vmap(ata_ext.align), backend="aot_eager", fullgraph=True)(x)
    assert all(torch.equal(a, b) for a, b in zip(vmapped, ata_ext.align(x)))


@pytest.mark.parametrize("device", devices())
def test_vmap_uses_the_batched_ops(device):
    # Each op has a vmap rule: the mapped dim joins the batch dims and the op runs once. Without
    # one PyTorch loops over the samples, one call each, with a performance warning per op; with
    # the fallback off, a missing rule raises.
    g = torch.Generator().manual_seed(23)
    x = torch.randn(3, 2, 4, 6, 5, generator=g).to(device)
    cost = torch.rand(3, 4, 6, 5, generator=g).to(device)
    fallback = torch._C._functorch._set_vmap_fallback_enabled
    fallback(False)
    try:
        aligned, perm = ata_ext.align(x)
        for dim in (0, 2):
            a, p = torch.func.vmap(ata_ext.align, in_dims=dim, out_dims=dim)(x)
            want_a, want_p = ata_ext.align(x.movedim(dim, 0))
            assert torch.equal(a, want_a.movedim(0, dim)) and torch.equal(p, want_p.movedim(0, dim))
        for layout in ("tn", "nt"):
            y = ata_ext.align(x, layout=layout)[0]
            assert torch.equal(torch.func.vmap(lambda z, q: ata_ext.dealign(z, q, layout=layout))(y, perm), x)
            # perm shared by every sample (not mapped): expanded across the batch
            back = torch.func.vmap(lambda z: ata_ext.dealign(z, perm[0], layout=layout))(y)
            assert torch.equal(back[0], x[0])
        for algorithm in ("auto", "auction"):
            solve = lambda c: ata_ext.linear_sum_assignment(c, algorithm=algorithm)  # noqa: E731
            assert torch.equal(torch.func.vmap(solve, in_dims=1, out_dims=1)(cost), solve(cost))
            assert torch.equal(torch.func.vmap(torch.func.vmap(solve))(cost), solve(cost))
    finally:
        fallback(True)


def test_fake_kernels_check_devices():
    # A meta tensor mixed with a real one reaches the fake kernel (Meta wins the dispatch), which
    # returned an uninitialised CPU tensor; it must raise like the real kernels.
    x, perm = torch.randn(2, 3, 5, 4), torch.zeros(2, 3, 5, dtype=torch.long, device="meta")
    for op in (torch.ops.ata_ext.align_gather, torch.ops.ata_ext.align_scatter):
        with pytest.raises(ValueError, match="perm is on meta"):
            op(x, perm, False, True)
    with pytest.raises(ValueError, match="norms is on meta"):
        torch.ops.ata_ext.normalize_similarities_(torch.randn(3, 2, 5, 5), torch.rand(2, 4, 5, device="meta"))


def test_meta_tensors_give_shapes():
    # Shape inference (models built on the meta device, FLOP counters) runs align on meta tensors;
    # it raised from torch.autocast, which the meta device does not have.
    x = torch.empty(2, 3, 5, 4, device="meta")
    for layout, shape in (("tn", (2, 3, 5, 4)), ("nt", (2, 5, 3, 4))):
        aligned, perm = ata_ext.align(x, layout=layout)
        assert (aligned.shape, aligned.device.type) == (shape, "meta")
        assert (perm.shape, perm.dtype, perm.device.type) == ((2, 3, 5), torch.long, "meta")
        back = ata_ext.dealign(aligned, perm, layout=layout, check=False)
        assert (back.shape, back.device.type) == (x.shape, "meta")


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("op", ["align_gather", "align_scatter"])
@pytest.mark.parametrize("nt", [False, True])
def test_opcheck(device, op, nt):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 5, 8, generator=g, dtype=torch.float64).to(device)
    perm = torch.argsort(torch.rand(2, 3, 5, generator=g), dim=-1).to(device)
    src = x.transpose(-2, -3).contiguous() if (op == "align_scatter" and nt) else x
    torch.library.opcheck(getattr(torch.ops.ata_ext, op).default, (src.requires_grad_(), perm, nt, True))


@pytest.mark.parametrize("device", devices())
def test_torch_compile_fullgraph(device):
    w = torch.randn(16, 16, dtype=torch.float64, device=device)

    def f(x):
        aligned, perm = ata_ext.align(x, layout="nt")
        y = torch.tanh(aligned @ w)
        return ata_ext.dealign(y, perm, layout="nt", check=False)

    x = torch.randn(2, 4, 25, 16, dtype=torch.float64, device=device, generator=None)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x), f(x))
    xg = x.clone().requires_grad_()
    compiled(xg).sum().backward()
    xe = x.clone().requires_grad_()
    f(xe).sum().backward()
    assert torch.allclose(xg.grad, xe.grad)


def test_torch_compile_does_not_ask_for_autocast(monkeypatch):
    # Dynamo cannot trace torch.amp.is_autocast_available before torch 2.12: asked inside align,
    # it broke the graph there (fullgraph=True raised on 2.10 and 2.11). align reads the answer
    # for the usual device types from a table made at import; here asking it under compile fails.
    def refuse(device_type):
        if torch.compiler.is_compiling():
            raise AssertionError("is_autocast_available called while compiling")
        return True

    monkeypatch.setattr(torch.amp, "is_autocast_available", refuse)
    torch._dynamo.reset()  # no compiled frame from another test reused here
    x = torch.randn(2, 3, 9, 4, dtype=torch.float64)
    compiled = torch.compile(lambda z: ata_ext.align(z)[0], fullgraph=True, backend="eager")
    assert torch.equal(compiled(x), ata_ext.align(x)[0])
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast on: matching still in float64
        assert torch.equal(compiled(x), ata_ext.align(x)[0])


def test_profiler_sees_the_labels():
    # The labels are only entered while a profiler runs (they cost host time otherwise); under
    # one, align, its similarities, dealign and the gathers' backward each show by name.
    x = torch.randn(2, 3, 9, 4, requires_grad=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        aligned, perm = ata_ext.align(x)
        ata_ext.dealign(aligned * 2, perm, check=False).sum().backward()
    names = {e.name for e in prof.events()}
    assert {"ata_ext::align", "ata_ext::similarity", "ata_ext::dealign", "ata_ext::gather_backward"} <= names


def test_torch_compile_is_quiet():
    # align/dealign label their eager calls for profilers; under torch.compile those labels are
    # left out, where dynamo would drop them with a warning on every compile. A fresh process, as
    # the warning goes through torch's own logging.
    code = (
        "import torch, ata_ext\n"
        "def f(x):\n"
        "    aligned, perm = ata_ext.align(x)\n"
        "    return ata_ext.dealign(aligned * 2, perm, check=False)\n"
        "x = torch.randn(2, 3, 9, 4, requires_grad=True)\n"
        "torch.compile(f, fullgraph=True, backend='aot_eager')(x).sum().backward()\n"
        "print(torch.equal(x.grad, torch.full_like(x, 2.0)))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"
    assert "will be ignored" not in r.stderr, r.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_cuda_graph_capture_and_reduce_overhead(dtype):
    # align syncs nowhere (similarities, solver, composition, gather), so it can be captured in a
    # CUDA graph, and torch.compile's "reduce-overhead" mode (CUDA graphs) runs it.
    g = torch.Generator().manual_seed(13)
    x = torch.randn(4, 6, 49, 64, generator=g).to("cuda", dtype)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        ata_ext.align(x)  # warm-up outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        aligned, perm = ata_ext.align(x)
    x.copy_(torch.randn(4, 6, 49, 64, generator=g).to("cuda", dtype))
    graph.replay()
    torch.cuda.synchronize()
    want_aligned, want_perm = ata_ext.align(x)
    assert torch.equal(perm, want_perm) and torch.equal(aligned, want_aligned)

    def f(z):
        a, p = ata_ext.align(z, layout="nt")
        return ata_ext.dealign(a * 2, p, layout="nt", check=False)

    compiled = torch.compile(f, mode="reduce-overhead", fullgraph=True)
    for _ in range(3):
        out = compiled(x)
    assert torch.equal(out, f(x))


def features(kind, shape, g):
    """float64 features (..., T, N, C) of one kind: random, or built to break a matcher (ties,
    zero tokens, a few distinct values, extreme magnitudes, near-duplicates)."""
    *batch, T, N, C = shape
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if kind == "duplicates":  # tokens repeated within a frame: tied similarities
        idx = torch.randint(0, max(1, N // 3), (*batch, T, N, 1), generator=g)
        x = x.gather(-2, idx.expand(shape))
    elif kind == "zeros":  # zero tokens: similarity 0 with everything
        x = x.masked_fill(torch.rand(*batch, T, N, 1, generator=g) < 0.3, 0)
    elif kind == "few values":
        x = torch.randint(-1, 2, shape, generator=g).double()
    elif kind == "constant":
        x = torch.ones(shape, dtype=torch.float64)
    elif kind == "magnitudes":  # 1e-300 (below normalize's eps) to 1e150; overflowing norms: above
        x = x * 10.0 ** torch.randint(-300, 151, (*batch, T, N, 1), generator=g).double()
    elif kind == "near duplicates":  # every frame the same tokens up to 1e-13
        x = x[..., :1, :, :] + 1e-13 * x
    return x


@given(st.sampled_from(["random", "duplicates", "zeros", "few values", "constant", "magnitudes", "near duplicates"]),
       st.integers(1, 3), st.integers(1, 5), st.integers(0, 12), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_property_against_literal(kind, batch, T, N, C, seed):
    # The objective of every step equals the literal Algorithm 1's (permutations may differ where
    # similarities tie). Overflowing norms have tests of their own (test_overflowing_token_...,
    # test_single_channel_features_of_any_size).
    x = features(kind, (batch, T, N, C), torch.Generator().manual_seed(seed))
    aligned, perm = ata_ext.align(x)
    assert torch.equal(ata_ext.dealign(aligned, perm), x)
    assert torch.equal(perm.sort(-1).values, torch.arange(N).expand_as(perm))
    for b in range(batch):
        if N == 0:
            continue
        _, _, ref_totals = literal_align(x[b])
        assert step_totals(x[b], perm[b]) == pytest.approx(ref_totals, rel=1e-9, abs=1e-12)
