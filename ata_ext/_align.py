"""align / dealign: the seed's Algorithms 1 and 2, batched.

Algorithm 1 matches frame t to the already aligned frame t-1. Because an assignment problem is
equivariant under row permutations, that equals matching the original frames and composing:
    sigma_t = argmax_assignment(normalize(x[t-1]) @ normalize(x[t]).T)
    perm[0] = identity,   perm[t] = sigma_t[perm[t-1]]
so all B*(T-1) problems are solved in one batched call and composed by one op,
compose_permutations (see README, "How alignment works").
"""
import contextlib
import math

import torch

from ._ops import autodiff_transform_active, ops, permute_tokens, profile_label
from ._solver import _check_dense, _check_flag, linear_sum_assignment

_LAYOUTS = ("tn", "nt")


def _check_features(x, name):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    _check_dense(x, name)
    if x.dim() < 3:
        raise ValueError(f"{name} must have shape (..., T, N, C), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


def _check_layout(layout):
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")


# The similarity of a token whose features are not finite (NaN or infinite): below every cosine
# similarity, so such tokens are matched after all others and the rest of their frame still
# aligns (the NaN then travel with the gather into aligned, as any PyTorch op would pass them on).
# The ops use it from csrc/common/similarity.h; here it is for reference and tests.
NONFINITE_SIMILARITY = -2.0


def frame_similarities(key):
    """Cosine similarities of consecutive frames: key (..., T, N, D) -> (T-1, B, N, N) with the
    batch dims flattened into B, S[t, b, i, j] = <k[b, t, i], k[b, t+1, j]> / (|k[b, t, i]| |k[b, t+1, j]|),
    and NONFINITE_SIMILARITY where that is not finite.

    One op, frame_similarities (csrc/common/frame_similarities.h): the feature norms, the frame
    pairs' products (on the CPU one bmm per frame pair over strided views: a 4-D matmul of the
    frame slices would first copy both operands, which measured 2.2x slower; on CUDA one bmm over
    all frames, its rows padded to 16 bytes), then normalize_similarities_ divides the
    Gram matrices by the norms (in place, or on CUDA reading them where the one bmm left them, in
    one pass), instead of writing a normalised copy of the features;
    except in float16, where raw Gram matrices overflow once norms pass 256 and lose their digits
    when norms are small, and for single-channel features (D = 1: the norm |k| is finite up to
    the dtype's maximum, the product of two values is not), so those are normalised first. Norms
    are taken in float32 (float64 for float64 features): the inverse of a small norm does not fit
    in float16. On the CPU the output comes from the host block cache (host_cache_info), as the
    gathers' do."""
    if key.dim() != 4:  # a view costs microseconds of host time: only where the batch dims are not one
        *batch, T, N, D = key.shape
        key = key.reshape(math.prod(batch), T, N, D)  # not -1: ambiguous when D (or N) is 0
    return ops.frame_similarities(key)


# The dtypes cosine similarities are computed in. Other float types (float8) can still be aligned
# and de-aligned (the gathers only move bytes) when a key in one of these is given.
_MATCH_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# Whether a device type has autocast, asked once per type and then read from here: Dynamo cannot
# trace torch.amp.is_autocast_available before torch 2.12, so on 2.11 and older calling it inside
# align made torch.compile break the graph there (fullgraph=True raised). The usual types are
# asked at import, outside any compiled region.
_AUTOCAST_AVAILABLE = {d: torch.amp.is_autocast_available(d) for d in ("cpu", "cuda")}


def _autocast_on(dev):
    available = _AUTOCAST_AVAILABLE.get(dev)
    if available is None:
        available = _AUTOCAST_AVAILABLE[dev] = torch.amp.is_autocast_available(dev)
    return available and torch.is_autocast_enabled(dev)


def alignment_permutations(key):
    """perm (..., T, N) int64 that aligns the frames of key (..., T, N, D); no gradient flows."""
    _check_features(key, "key")
    if key.dtype not in _MATCH_DTYPES:
        raise TypeError(f"matching features must be float16, bfloat16, float32 or float64, got {key.dtype} "
                        "(to align other float types, pass key= in one of these, e.g. key=x.float())")
    *batch, T, N, _ = key.shape
    if T < 2 or N == 0:
        return torch.arange(N, device=key.device).expand(*batch, T, N).contiguous()
    # Matching is not differentiated, and runs at the input's precision whatever autocast says.
    # Autocast is turned off only where it is on (entering the context costs 5 us of host time);
    # devices without it, such as meta for shape inference, have nothing to turn off.
    dev = key.device.type
    no_autocast = torch.autocast(dev, enabled=False) if _autocast_on(dev) else contextlib.nullcontext()
    if autodiff_transform_active():
        # no_grad stops reverse mode only: a tangent (forward-mode AD, torch.func.jvp) would still
        # flow into the similarity matmuls, which do not take one.
        key = key.detach()
    with torch.no_grad(), no_autocast:
        # Half-precision matmuls on the CPU are slow and coarse: match in float32 there. On CUDA
        # the similarities stay in the input dtype, which the auction reads directly.
        k = key.float() if dev == "cpu" and key.dtype in (torch.float16, torch.bfloat16) else key
        with profile_label("ata_ext::similarity"):
            sim = frame_similarities(k)  # (T-1, B, N, N)
        # The similarities are finite by construction (see frame_similarities): skip validation,
        # and with it the host sync it costs on CUDA.
        sigma = linear_sum_assignment(sim, maximize=True, check=False)  # (T-1, B, N)
        # perm[t] = sigma[t-1][perm[t-1]] for every t, in one op (one launch on CUDA).
        perm = ops.compose_permutations(sigma)  # (B, T, N)
        return perm if len(batch) == 1 else perm.reshape(*batch, T, N)


def align(x, key=None, *, layout="tn"):
    """Aligns every frame to the previous (aligned) one, exactly as the seed's Algorithm 1.

    Args:
        x: features (..., T, N, C): T frames of N patch tokens (N = H*W), any batch dims, float16,
            bfloat16, float32 or float64, CPU or CUDA (float8 with a key in one of these).
        key: optional (..., T, N, D) features to match on instead of x (for example pre-norm
            features). Matching maximises the total cosine similarity (L2-normalised along the
            last dim) and is not differentiated. A token whose key is NaN or infinite is matched
            after all others (see NONFINITE_SIMILARITY); its values travel into aligned. Matching
            runs in the key's precision (float32 for half types on the CPU), with F.normalize's
            limits: a token whose norm overflows it (above about 1.8e19 in float32 and bfloat16,
            1.3e154 in float64) counts as a zero vector, as F.normalize makes it (but a pair of
            such tokens in neighbouring frames counts as non-finite), and one below 1e-12 is
            scaled by 1e12 instead of normalised.
        layout: "tn" returns aligned as (..., T, N, C); "nt" returns (..., N, T, C), each aligned
            position's T tokens contiguous, the layout temporal attention consumes (no extra
            transpose copy).

    Returns:
        (aligned, perm): perm is int64 (..., T, N) with perm[..., 0, :] = arange(N), and
        aligned[..., t, i, :] = x[..., t, perm[..., t, i], :]. aligned is differentiable w.r.t. x,
        in reverse and forward mode and under the torch.func transforms (vmap included).
    """
    _check_features(x, "x")
    _check_layout(layout)
    if key is None:
        key = x
    else:
        _check_features(key, "key")
        if key.shape[:-1] != x.shape[:-1] or key.device != x.device:
            raise ValueError(
                f"key must have x's (..., T, N) dims and device: x {tuple(x.shape)} on {x.device}, "
                f"key {tuple(key.shape)} on {key.device}"
            )
    with profile_label("ata_ext::align"):  # a label for profilers (see profile_label)
        perm = alignment_permutations(key)
        # perm was just built from solver output: no validation (and no sync) needed.
        return permute_tokens(x, perm, layout == "nt", False, False), perm


def dealign(aligned, perm, *, layout="tn", check=True):
    """The exact inverse of align (the seed's Algorithm 2): x[..., t, perm[..., t, i], :] =
    aligned[..., t, i, :]. aligned is (..., T, N, C), or (..., N, T, C) with layout="nt".
    check validates that perm holds permutations (a host sync on CUDA; off inside a model that
    got perm from align)."""
    _check_features(aligned, "aligned")
    _check_layout(layout)
    if not isinstance(perm, torch.Tensor):
        raise TypeError(f"perm must be a torch.Tensor, got {type(perm).__name__}")
    _check_dense(perm, "perm")
    _check_flag(check, "dealign: check")
    with profile_label("ata_ext::dealign"):
        return permute_tokens(aligned, perm, layout == "nt", True, check)


def dealignment_matrices(perm):
    """The seed's de-alignment one-hot matrices, for code written against Algorithm 2:
    D (..., T, N, N) with D[..., t, j, i] = 1 iff perm[..., t, i] = j, so that
    x[..., t, :, :] = aligned[..., t, D[..., t].argmax(-1), :]. Unlike the seed's list it includes
    frame 0 (the identity), fixing its off-by-one."""
    if not isinstance(perm, torch.Tensor) or perm.dtype != torch.long or perm.dim() < 2:
        raise TypeError("perm must be an int64 tensor of shape (..., T, N)")
    N = perm.shape[-1]
    onehot = torch.nn.functional.one_hot(perm, N)  # [..., t, i, j] = 1 iff perm[t, i] = j
    return onehot.transpose(-1, -2).contiguous()


def host_cache_info():
    """The host block cache that CPU align/dealign outputs (their gradients, and align's
    similarities) come from:
    {"cached_bytes": bytes held in free blocks, "limit_bytes": the most it keeps}.

    Large fresh CPU tensors cost a page fault per 4 KiB page on their first write, several times
    the copy itself; a training loop frees and re-allocates the same aligned shapes every step,
    so freed blocks are kept and reused. The limit is ATA_EXT_HOST_CACHE_MB (default 1024, 0 keeps
    nothing), read once, when the cache is first used; past it the least recently freed blocks
    are released."""
    cached, limit = ops.host_cache_info()
    return {"cached_bytes": cached, "limit_bytes": limit}


def empty_host_cache():
    """Returns the cached free blocks to the system (blocks still in use are not affected)."""
    ops.empty_host_cache()
