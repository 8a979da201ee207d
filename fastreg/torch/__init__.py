"""PyTorch integration (docs/contract/pytorch.md): custom ops, layers, proximal optimizers.

Import it explicitly (``import fastreg.torch``; needs the ``torch`` extra): ``import fastreg``
never imports PyTorch. Every op is a ``torch.library`` custom op in the ``fastreg`` namespace
(``torch.ops.fastreg.*``) with a fake kernel and a registered autograd formula, so models using
these layers work under ``torch.compile(fullgraph=True)`` and ``torch.export``;
``torch.jit.trace`` records ``fastreg::advance_offset``, so a traced module advances its offset
on every call. ``torch.func`` transforms raise a clear RuntimeError: this PyTorch does not run
a custom op's registered autograd under them. Files: ``layer_ops`` and ``prox_ops`` (the ops),
``functional`` (differentiable functions), ``modules`` (layers, ``replace_dropout``),
``optim`` (``ProxSGD``, ``ProxAdamW``), ``_bridge`` (tensors to arrays, seeds), ``_eager``
(the eager fast path: the ops' implementations without the custom-op dispatcher where nothing
traces the call).
"""

from ._bridge import rank_seed as rank_seed
from .augment import AugmentBatch as AugmentBatch
from .augment import RandomAugment as RandomAugment
from .functional import dense_dropout as dense_dropout
from .functional import dropconnect as dropconnect
from .functional import dropout as dropout
from .modules import DenseDropout as DenseDropout
from .modules import DropConnectLinear as DropConnectLinear
from .modules import Dropout as Dropout
from .modules import replace_dropout as replace_dropout
from .optim import ProxAdamW as ProxAdamW
from .optim import ProxSGD as ProxSGD

__all__ = [
    "AugmentBatch",
    "DenseDropout",
    "DropConnectLinear",
    "Dropout",
    "ProxAdamW",
    "ProxSGD",
    "RandomAugment",
    "dense_dropout",
    "dropconnect",
    "dropout",
    "rank_seed",
    "replace_dropout",
]
