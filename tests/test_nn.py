"""ata_ext.nn against straightforward compositions written with plain torch ops."""
import warnings

import pytest
import torch
import torch.nn.functional as F
import torch.utils.checkpoint

import ata_ext
from ata_ext.nn import AlignedTemporalAttention, DividedSpaceTimeBlock
from ata_ext.testing import devices


def reference_temporal_attention(m, x, align=True):
    """align (batched gather), per-position attention written out by hand, dealign."""
    B, T, N, C = x.shape
    H = m.num_heads
    if align:
        perm = ata_ext.alignment_permutations(x)
        xa = x.gather(2, perm.unsqueeze(-1).expand_as(x))
    else:
        xa = x
    y = xa.permute(0, 2, 1, 3)  # (B, N, T, C)
    q, k, v = (y @ m.qkv.weight.T + m.qkv.bias).reshape(B, N, T, 3, H, C // H).permute(3, 0, 1, 4, 2, 5)
    att = torch.softmax(q @ k.transpose(-1, -2) / (C // H) ** 0.5, dim=-1)
    o = (att @ v).permute(0, 1, 3, 2, 4).reshape(B, N, T, C)
    o = (o @ m.proj.weight.T + m.proj.bias).permute(0, 2, 1, 3)  # (B, T, N, C), aligned order
    if not align:
        return o
    out = torch.empty_like(o)
    out.scatter_(2, perm.unsqueeze(-1).expand_as(o), o)  # de-align
    return out


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("align", [True, False])
def test_temporal_attention_matches_reference(device, align):
    torch.manual_seed(0)
    m = AlignedTemporalAttention(32, 4, align=align).double().to(device)
    x = torch.randn(2, 5, 16, 32, dtype=torch.float64, device=device)
    assert torch.allclose(m(x), reference_temporal_attention(m, x, align), atol=1e-10)


def test_aligned_differs_from_plain_and_uses_key():
    torch.manual_seed(1)
    m = AlignedTemporalAttention(16, 2).double()
    x = torch.randn(1, 4, 9, 16, dtype=torch.float64)
    plain = AlignedTemporalAttention(16, 2, align=False).double()
    plain.load_state_dict(m.state_dict())
    assert not torch.allclose(m(x), plain(x))
    key = torch.randn(1, 4, 9, 8, dtype=torch.float64)
    perm = ata_ext.alignment_permutations(key)
    xa = x.gather(2, perm.unsqueeze(-1).expand_as(x))
    # Matching on key is the same as aligning x with key's permutation.
    expect = plain(xa.clone()).clone()
    expect_dealigned = torch.empty_like(expect).scatter_(2, perm.unsqueeze(-1).expand_as(expect), expect)
    assert torch.allclose(m(x, key=key), expect_dealigned, atol=1e-12)


def timesformer_block_reference(blk, x, B, T, W):
    """TimeSformer's divided_space_time Block.forward, transcribed with plain reshapes."""
    L, C = x.shape[1], x.shape[2]
    N = (L - 1) // T
    xt = x[:, 1:, :]
    tt = xt.reshape(B, N, T, C).reshape(B * N, T, C)  # 'b (h w t) m -> (b h w) t m'
    res = blk.temporal_attn.forward(blk.temporal_norm1(tt.reshape(B, N, T, C).transpose(1, 2))).transpose(1, 2)
    res = blk.temporal_fc(res.reshape(B, N * T, C))
    xt = x[:, 1:, :] + res
    init_cls = x[:, :1]
    cls = init_cls.repeat(1, T, 1).reshape(B * T, 1, C)
    xs = xt.reshape(B, N, T, C).transpose(1, 2).reshape(B * T, N, C)  # 'b (h w t) m -> (b t) (h w) m'
    res_s = blk.attn(blk.norm1(torch.cat((cls, xs), 1)))
    cls = res_s[:, 0].reshape(B, T, C).mean(1, keepdim=True)
    res_s = res_s[:, 1:].reshape(B, T, N, C).transpose(1, 2).reshape(B, N * T, C)
    y = torch.cat((init_cls, xt), 1) + torch.cat((cls, res_s), 1)
    return y + blk.mlp(blk.norm2(y))


@pytest.mark.parametrize("align", [True, False])
def test_block_timesformer_layout(align):
    torch.manual_seed(2)
    B, T, N, C = 2, 4, 9, 32
    blk = DividedSpaceTimeBlock(C, 4, align=align, first_block=True).double()
    x = torch.randn(B, 1 + N * T, C, dtype=torch.float64)
    out = blk(x, T=T)
    assert out.shape == x.shape
    assert torch.allclose(out, timesformer_block_reference(blk, x, B, T, 3), atol=1e-10)
    # The (B, T, N, C) form is the same block without a class token.
    tokens = x[:, 1:].reshape(B, N, T, C).transpose(1, 2)
    assert blk(tokens).shape == (B, T, N, C)


def test_block_parameter_names_and_init():
    names = set(DividedSpaceTimeBlock(16, 2).state_dict())
    for k in ["norm1.weight", "attn.qkv.weight", "attn.proj.bias", "temporal_norm1.weight", "temporal_attn.qkv.weight",
              "temporal_attn.proj.weight", "temporal_fc.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc2.bias"]:
        assert k in names, k
    assert bool((DividedSpaceTimeBlock(16, 2).temporal_fc.weight == 0).all())
    assert not bool((DividedSpaceTimeBlock(16, 2, first_block=True).temporal_fc.weight == 0).all())


@pytest.mark.parametrize("device", devices())
def test_gradients_reach_every_parameter(device):
    torch.manual_seed(3)
    blk = DividedSpaceTimeBlock(32, 4, first_block=True).to(device)
    x = torch.randn(2, 1 + 16 * 4, 32, device=device, requires_grad=True)
    blk(x, T=4).square().sum().backward()
    for name, p in blk.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


@pytest.mark.parametrize("device", devices())
def test_compile_matches_eager(device):
    torch.manual_seed(4)
    blk = DividedSpaceTimeBlock(32, 4, first_block=True).to(device).eval()
    x = torch.randn(2, 4, 16, 32, device=device)
    compiled = torch.compile(blk, fullgraph=True, backend="aot_eager")
    assert torch.allclose(compiled(x), blk(x), atol=1e-5)


@pytest.mark.parametrize("device", devices())
def test_per_sample_gradients_with_torch_func(device):
    # vmap(grad(...)) over the batch through a block with ATA: per-sample gradients, as
    # differential-privacy training (Opacus) and influence functions take them. Each must equal
    # a backward pass on that sample alone.
    torch.manual_seed(7)
    blk = DividedSpaceTimeBlock(16, 2, first_block=True).to(device, torch.float64)
    params = {k: v.detach() for k, v in blk.named_parameters()}
    x = torch.randn(3, 4, 9, 16, device=device, dtype=torch.float64)

    def loss(p, sample):
        return torch.func.functional_call(blk, p, (sample[None],)).square().sum()

    per_sample = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(params, x)
    for b in range(x.shape[0]):
        want = torch.autograd.grad(loss(dict(blk.named_parameters()), x[b]), list(blk.parameters()))
        for (name, got), w in zip(per_sample.items(), want):
            assert torch.allclose(got[b], w, rtol=1e-9, atol=1e-12), name


@pytest.mark.parametrize("reentrant", [False, True])
def test_activation_checkpointing(reentrant):
    # Video transformers checkpoint their blocks to fit memory: the backward recomputes the block,
    # alignment included (deterministic, so the same permutations), and the gradients are those
    # of the plain backward.
    torch.manual_seed(10)
    blk = DividedSpaceTimeBlock(16, 2, first_block=True).double()
    x = torch.randn(2, 4, 9, 16, dtype=torch.float64)
    xc, xp = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.utils.checkpoint.checkpoint(blk, xc, use_reentrant=reentrant).square().sum().backward()
    ckpt = [p.grad.clone() for p in blk.parameters()]
    blk.zero_grad()
    blk(xp).square().sum().backward()
    assert torch.equal(xc.grad, xp.grad)
    assert all(torch.equal(a, p.grad) for a, p in zip(ckpt, blk.parameters()))


def test_torch_export(tmp_path):
    # torch.export with a dynamic batch dim, saved and loaded back: the exported program gives
    # the eager block's output at a batch size it was not exported with.
    torch.manual_seed(9)
    blk = DividedSpaceTimeBlock(16, 2, first_block=True).eval()
    ep = torch.export.export(blk, (torch.randn(2, 4, 9, 16),), dynamic_shapes=({0: torch.export.Dim("B")},))
    torch.export.save(ep, tmp_path / "block.pt2")
    loaded = torch.export.load(tmp_path / "block.pt2").module()
    x = torch.randn(5, 4, 9, 16)
    assert torch.allclose(loaded(x), blk(x), atol=1e-6)


def test_jit_trace():
    # torch.jit.trace records no no_grad blocks: the traced graph ran align's similarity op on
    # features that require grad, with grad mode on, where its bmm_out raised.
    torch.manual_seed(8)
    blk = DividedSpaceTimeBlock(16, 2, first_block=True).eval()
    with warnings.catch_warnings():  # deprecated in newer torch, and shape-specialised
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(blk, (torch.randn(2, 4, 9, 16),), check_trace=False)
    x = torch.randn(2, 4, 9, 16)
    xt, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = traced(xt)
    assert torch.allclose(out, blk(xe), atol=1e-6)
    out.square().sum().backward()
    blk(xe).square().sum().backward()
    assert torch.allclose(xt.grad, xe.grad, atol=1e-5)


@pytest.mark.parametrize("device", devices())
def test_autocast(device):
    torch.manual_seed(5)
    blk = DividedSpaceTimeBlock(32, 4, first_block=True).to(device)
    x = torch.randn(2, 4, 16, 32, device=device)
    dtype = torch.bfloat16 if device == "cpu" else torch.float16
    with torch.autocast(device, dtype=dtype):
        out = blk(x)
    out.float().sum().backward()
    assert out.shape == x.shape and bool(torch.isfinite(out.float()).all())


def test_bad_input():
    m = AlignedTemporalAttention(16, 2)
    with pytest.raises(ValueError, match=r"\(B, T, N, C\)"):
        m(torch.randn(4, 9, 16))
    with pytest.raises(ValueError, match="divisible"):
        AlignedTemporalAttention(15, 2)
    blk = DividedSpaceTimeBlock(16, 2)
    with pytest.raises(ValueError, match="T given"):
        blk(torch.randn(2, 10, 16))
    with pytest.raises(ValueError, match="multiple of T"):
        blk(torch.randn(2, 10, 16), T=4)
    for T in (0, -3, 3.0, True):  # T = 0 was a ZeroDivisionError, 3.0 an error from inside reshape
        with pytest.raises(ValueError, match="positive int"):
            blk(torch.randn(2, 10, 16), T=T)
    with pytest.raises(ValueError, match=r"dim=16\) got C = 8"):  # was matmul's shape error
        m(torch.randn(2, 3, 9, 8))


def test_meta_device_block():
    # A model built on the meta device (as large models are, before to_empty) runs for shapes.
    with torch.device("meta"):
        blk = DividedSpaceTimeBlock(16, 2)
        out = blk(torch.empty(2, 1 + 5 * 3, 16), T=3)
    assert (out.shape, out.device.type) == ((2, 16, 16), "meta")
