"""ata_ext: batched linear assignment and alignment kernels for PyTorch.

linear_sum_assignment solves many small dense assignment problems at once (CPU: Jonker-Volgenant,
parallel over the batch; CUDA: a batched auction). See README.md.
"""
from . import _ops
from ._ops import built_with_cuda
from ._solver import linear_sum_assignment
from . import compat

__version__ = "0.1.0"
__all__ = ["linear_sum_assignment", "compat", "built_with_cuda"]
