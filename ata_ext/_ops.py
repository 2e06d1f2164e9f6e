"""Loads the compiled operators and registers what Python adds to them: fake kernels (so
torch.compile can trace through every op) and autograd formulas."""
import torch

try:
    from . import _C  # noqa: F401  (importing it registers the torch.ops.ata_ext operators)
except ImportError as e:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "ata_ext's compiled extension ata_ext._C could not be loaded "
        f"({e}). Build it from source against the installed torch with "
        "`pip install --no-build-isolation .`; if it was built against another torch, rebuild."
    ) from e

_built_torch, _built_cuda = torch.ops.ata_ext.build_info()
if _built_torch.split("+")[0] != torch.__version__.split("+")[0]:  # pragma: no cover
    raise ImportError(
        f"ata_ext was built against torch {_built_torch} but torch {torch.__version__} is installed: "
        "rebuild with `pip install --no-build-isolation .`"
    )
if _built_cuda != "cpu" and torch.version.cuda is not None and _built_cuda != torch.version.cuda:  # pragma: no cover
    raise ImportError(
        f"ata_ext was built with CUDA {_built_cuda} but torch uses CUDA {torch.version.cuda}: rebuild it"
    )

#: True when the CUDA kernels were compiled into this build (a GPU may still be absent).
built_with_cuda = _built_cuda != "cpu"

ops = torch.ops.ata_ext


@torch.library.register_fake("ata_ext::linear_sum_assignment")
def _lsa_fake(cost, maximize=False, check=True):
    return cost.new_empty(cost.shape[:-1], dtype=torch.long)


@torch.library.register_fake("ata_ext::lsa_auction")
def _lsa_auction_fake(cost, maximize=False, check=True):
    return cost.new_empty(cost.shape[:-1], dtype=torch.long)
