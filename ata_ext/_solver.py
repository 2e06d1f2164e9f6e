"""The public batched assignment solver."""
import torch

from ._ops import ops

_ALGORITHMS = ("auto", "jv", "auction")
# The dtypes the kernels are built for (csrc/common/lsa_common.h checks the same list).
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8, torch.int16,
           torch.int32, torch.int64, torch.bool)


def linear_sum_assignment(cost, maximize=False, *, algorithm="auto", check=True):
    """Solves a batch of dense linear assignment problems exactly.

    Args:
        cost: tensor of shape (..., N, M), any number of batch dims, any real dtype (float16,
            bfloat16, float32, float64, uint8, int8, int16, int32, int64 or bool), any strides, on the CPU or a CUDA device.
            +inf (when minimising) or -inf (when maximising) marks a forbidden pair.
        maximize: maximise the total instead of minimising it.
        algorithm: "auto" (the default: Jonker-Volgenant on the CPU, the auction on CUDA),
            "jv" (CPU only) or "auction" (the CUDA kernel, or on the CPU its serial twin, which
            returns bit-identical assignments).
        check: validate the input and raise on bad problems (default). On CUDA validation costs
            one host sync; with check=False nothing syncs (CUDA-graph capturable) and a problem
            that is invalid or infeasible comes back with every row -1 instead of raising.

    Returns:
        int64 tensor of shape (..., N) on cost's device: entry i is the column assigned to row i.
        When N > M exactly M rows are assigned and the others hold -1; when M = 0 all hold -1.

    Raises:
        ValueError: rank < 2; "invalid numeric entries" for NaN or an infinity of the wrong sign;
            "infeasible" when forbidden pairs leave no complete assignment.
        TypeError: non-tensor input, or a dtype not listed above (complex, float8, uint16-64).

    Problems of different sizes (DETR: a different number of targets per image) batch exactly when
    padded on their shorter side with a constant, 0 for example (README, "Problems of different
    sizes"); solve such batches on the CPU.

    Optimality: the CPU solver works in float64 on the exact input values. For integer-valued
    costs (any dtype) with N * max|cost| < 2**53 the assignment is exactly optimal (the same
    objective as scipy.optimize.linear_sum_assignment). For other float costs its objective is
    within 1e-9 * N * max|cost| of scipy's. The auction (CUDA, and algorithm="auction" on the CPU)
    quantises each problem's finite costs to Q integer levels over their range R and solves that
    integer problem exactly (epsilon-scaling down to 1 on benefits scaled by n+1): its objective is
    within min(N, M) * R / Q of the optimum, Q = min(2**24, 2**40 // (n+1)) for n = max(N, M)
    (about 2**40 / (n+1)**2 when some pair is forbidden). Integer costs with R <= Q are not
    quantised, so they are solved exactly. ata_ext.testing.tolerance computes both bounds.
    The auction handles max(N, M) <= 65535 on the CPU; on CUDA up to what one block's shared
    memory holds (about 8000 on an H100), and it pads rectangular problems to square.

    Speed: on CUDA the auction wins on large batches of small problems, above all video-like
    ones. Where many rows want the same few columns (DETR-style matching early in training, rows
    that are exact copies) it slows down, and the CPU solver (cost.cpu()) is the faster choice
    there, as it is for N >= 392 (README, "Where the auction is slow").
    """
    if not isinstance(cost, torch.Tensor):
        raise TypeError(
            f"linear_sum_assignment: cost must be a torch.Tensor, got {type(cost).__name__} "
            "(use ata_ext.compat.linear_sum_assignment for numpy arrays and lists)"
        )
    if cost.dim() < 2:
        raise ValueError(
            f"linear_sum_assignment: cost must have at least 2 dimensions (..., N, M), got shape {tuple(cost.shape)}"
        )
    if cost.is_complex():
        raise TypeError(f"linear_sum_assignment: complex cost matrices are not supported (got {cost.dtype})")
    if cost.dtype not in _DTYPES:
        raise TypeError(f"linear_sum_assignment: cost dtype {cost.dtype} is not supported (supported: "
                        + ", ".join(str(d).removeprefix("torch.") for d in _DTYPES) + ")")
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"linear_sum_assignment: algorithm must be one of {_ALGORITHMS}, got {algorithm!r}")
    if algorithm == "jv" and cost.device.type != "cpu":
        raise ValueError("linear_sum_assignment: algorithm='jv' runs on the CPU only; move the tensor with .cpu()")
    maximize = bool(maximize)
    if algorithm == "auction":
        return ops.lsa_auction(cost, maximize, check)
    return ops.linear_sum_assignment(cost, maximize, check)
