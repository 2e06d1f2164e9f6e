"""ata_ext: batched linear assignment and alignment kernels for PyTorch.

linear_sum_assignment solves many small dense assignment problems at once (CPU: Jonker-Volgenant,
parallel over the batch; CUDA: a batched auction); align / dealign are the ATA paper's
Algorithms 1 and 2, batched, on fused gather kernels with autograd. See README.md.
"""
from . import _ops
from ._ops import built_with_cuda
from ._solver import linear_sum_assignment, linear_sum_assignment_ragged
from ._align import align, alignment_permutations, dealign, dealignment_matrices, empty_host_cache, host_cache_info
from . import compat, nn

__version__ = "0.1.0"
__all__ = [
    "linear_sum_assignment",
    "linear_sum_assignment_ragged",
    "align",
    "dealign",
    "alignment_permutations",
    "dealignment_matrices",
    "host_cache_info",
    "empty_host_cache",
    "compat",
    "nn",
    "built_with_cuda",
]
