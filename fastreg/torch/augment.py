"""PyTorch front end of batch augmentation (docs/contract/ops.md): ``RandomAugment``, the op
``fastreg::augment_images`` behind it, and ``AugmentBatch``.

``RandomAugment`` is an ``nn.Module`` for batches already on their device (in the model or the
training loop); ``AugmentBatch`` is a picklable ``collate_fn`` that augments whole batches inside
``DataLoader`` workers. Both run :func:`fastreg.random_affine` (rotation, zoom, shift) and then
:func:`fastreg.augment` (flips, integer shift, cutout: cutout last, on the final image).

CPU tensors reach the Numba kernels as NumPy views (bfloat16 as its bits, viewed as
``ml_dtypes.bfloat16``); CUDA tensors reach the CuPy kernels by DLPack on PyTorch's current
stream. Augmentation transforms data: the result carries no gradient. ``fastreg::augment_images``
is a ``torch.library`` custom op with a fake kernel, and ``RandomAugment`` advances its offset
buffer with ``fastreg::advance_offset``, so a model holding it compiles with
``torch.compile(fullgraph=True)`` and exports with ``torch.export`` like the other layers.

Streams. A call with call index ``c`` runs ``random_affine`` at offset ``2*c + 1`` and ``augment``
at offset ``2*c``, so the shift of one never reuses the translation words of the other
(docs/contract/ops.md: both read ``u_2, u_3``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.library import custom_op

import fastreg
from fastreg import _validate

from ._bridge import as_array, as_tensor, on_device, seed_tensor, stream_ints
from .layer_ops import advance_offset

__all__ = ["AugmentBatch", "RandomAugment"]

#: Call indices wrap here, so that ``2*c + 1`` stays a uint32 offset.
_CALLS = 1 << 31
#: Sample ids of a collated batch: ``batch * _STRIDE + position`` (2**37 batches of up to
#: 2**24 samples before ids reach 2**61).
_STRIDE = 1 << 24
#: The custom op passes max_shift and cutout as int64s; a cutout size is clipped to
#: _CUT_LIMIT (at least 2*H + 1 for any image that fits in memory: the same whole-axis cut).
_INT64 = 1 << 63
_CUT_LIMIT = 1 << 62


@dataclass(frozen=True)
class _Params:
    """The validated hyper-parameters of one augmentation pipeline."""

    flip: bool
    vertical_flip: bool
    max_shift: tuple[int, int]
    cutout: tuple[int, int]
    rotation: float
    zoom: float
    shift: float
    fill: float
    interpolation: str
    data_format: str

    @classmethod
    def of(cls, flip: Any, vertical_flip: Any, max_shift: Any, rotation: Any, zoom: Any,
           shift: Any, cutout: Any, fill: Any, interpolation: Any, data_format: Any) -> _Params:
        fill = _validate.as_float(fill, "fill")
        shifts = _validate.check_size_pair(max_shift, "max_shift", 0)
        if max(shifts) >= _INT64:  # the custom op takes int64s
            raise ValueError(f"max_shift entries must be below 2**63 in fastreg.torch, got "
                             f"{_validate._describe(max_shift)}")
        # Any size of 2*extent + 1 or more cuts out the whole axis: larger ones are the same.
        cuts = tuple(min(c, _CUT_LIMIT) for c in _validate.check_size_pair(cutout, "cutout", 0))
        return cls(
            _validate.check_bool(flip, "flip"),
            _validate.check_bool(vertical_flip, "vertical_flip"),
            shifts,
            cuts,
            _validate.check_finite(rotation, "rotation"),
            _validate.check_probability(zoom, "zoom", allow_one=False),
            _validate.check_nonnegative(shift, "shift"),
            fill,
            _validate.check_choice(interpolation, "interpolation", ("bilinear", "nearest")),
            _validate.check_choice(data_format, "data_format", _validate.DATA_FORMATS),
        )

    @property
    def warps(self) -> bool:
        return bool(self.rotation or self.zoom or self.shift)

    @property
    def moves(self) -> bool:
        return self.flip or self.vertical_flip or any(self.max_shift) or all(self.cutout)

    def apply(self, x: Any, seed: int, call: int, sample_ids: Any) -> Any:
        """``augment(random_affine(x))`` on arrays, at offsets ``2*call + 1`` and ``2*call``."""
        common = dict(seed=seed, fill=self.fill, data_format=self.data_format,
                      sample_ids=sample_ids)
        if self.warps:
            x = fastreg.random_affine(x, rotation=self.rotation, zoom=self.zoom,
                                      shift=self.shift, interpolation=self.interpolation,
                                      offset=2 * call + 1, **common)
        if self.moves or not self.warps:
            x = fastreg.augment(x, horizontal_flip=self.flip, vertical_flip=self.vertical_flip,
                                max_shift=self.max_shift, cutout=self.cutout, offset=2 * call,
                                **common)
        return x


def _check_tensors(x: Any, sample_ids: Any) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if sample_ids is not None and not isinstance(sample_ids, torch.Tensor):
        raise TypeError(f"sample_ids must be a torch.Tensor of integers, got "
                        f"{type(sample_ids).__name__}")


def _augment_tensor(params: _Params, x: torch.Tensor, seed: int, call: int,
                    sample_ids: torch.Tensor | None) -> torch.Tensor:
    _check_tensors(x, sample_ids)
    ids = None
    if sample_ids is not None:
        if sample_ids.device != x.device:
            raise TypeError(f"sample_ids must be on x's device {x.device}, got "
                            f"{sample_ids.device}")
        ids = as_array(sample_ids)
    with on_device(x):
        return as_tensor(params.apply(as_array(x), seed, call, ids))


@custom_op("fastreg::augment_images", mutates_args=())
def augment_images_op(x: torch.Tensor, sample_ids: torch.Tensor | None, seed: torch.Tensor,
                      call: torch.Tensor, flip: bool, vertical_flip: bool, max_shift: list[int],
                      cutout: list[int], rotation: float, zoom: float, shift: float, fill: float,
                      interpolation: str, data_format: str) -> torch.Tensor:
    """``augment(random_affine(x))`` at call index ``call mod 2**31`` (offsets ``2c + 1`` and
    ``2c``) and the stream of ``seed`` (an int64 0-d tensor, two's complement)."""
    params = _Params.of(flip, vertical_flip, tuple(max_shift), rotation, zoom, shift,
                        tuple(cutout), fill, interpolation, data_format)
    s, c = stream_ints(seed, call)
    return _augment_tensor(params, x, s, c % _CALLS, sample_ids)


@augment_images_op.register_fake
def _(x: torch.Tensor, sample_ids: torch.Tensor | None, seed: torch.Tensor, call: torch.Tensor,
      flip: bool, vertical_flip: bool, max_shift: list[int], cutout: list[int], rotation: float,
      zoom: float, shift: float, fill: float, interpolation: str,
      data_format: str) -> torch.Tensor:
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def _draw_seed() -> int:
    low, high = torch.randint(0, 1 << 32, (2,), dtype=torch.int64).tolist()
    return low | (high << 32)


class RandomAugment(nn.Module):
    """Random rotation/zoom/shift, flips, integer shift and cutout of an image batch.

    Training: ``y = augment(random_affine(x))`` (docs/contract/ops.md) at the layer's seed, with
    ``random_affine`` at offset ``2*c + 1`` and ``augment`` at offset ``2*c`` for call index
    ``c = offset mod 2**31``; then the ``offset`` buffer advances by one (inside the graph under
    ``torch.compile``). Eval mode: ``y = x``. Each sample's transform
    depends only on ``(seed, c, its id)``: pass ``sample_ids`` (dataset indices) to make it
    independent of batch composition. A stage whose parameters are all zero is skipped.

    Parameters
    ----------
    flip : bool, random left-right mirror (``a_0 >= 2**31``); vertical_flip : bool, top-bottom
    max_shift : int or (rows, columns), the integer translation of :func:`fastreg.augment`
    rotation : degrees; zoom : in [0, 1); shift : fraction of the size (:func:`random_affine`)
    cutout : int or (rows, columns), 0 for none
    fill : value of pixels with no source; interpolation : "bilinear" or "nearest"
    data_format : "channels_first" (default: PyTorch's (N, C, H, W)) or "channels_last"
    seed : int in [0, 2**64), or None to draw one from PyTorch's default generator

    Buffers ``seed`` (int64, two's complement) and ``offset`` (the call index ``c``) are in the
    state dict.

    Example
    -------
    >>> import torch
    >>> layer = RandomAugment(flip=True, max_shift=2, cutout=3, seed=0)
    >>> y = layer(torch.ones(4, 3, 8, 8))
    >>> y.shape, int(layer.offset), bool(torch.equal(layer.eval()(y), y))
    (torch.Size([4, 3, 8, 8]), 1, True)
    """

    def __init__(self, flip: bool = False, max_shift: Any = 0, rotation: float = 0.0,
                 zoom: float = 0.0, shift: float = 0.0, cutout: Any = 0, *,
                 vertical_flip: bool = False, fill: float = 0.0, interpolation: str = "bilinear",
                 data_format: str = "channels_first", seed: int | None = None) -> None:
        super().__init__()
        self.params = _Params.of(flip, vertical_flip, max_shift, rotation, zoom, shift, cutout,
                                 fill, interpolation, data_format)
        seed = _draw_seed() if seed is None else _validate.check_seed(seed)
        self.register_buffer("seed", seed_tensor(seed))
        self.register_buffer("offset", torch.zeros((), dtype=torch.int64))

    def forward(self, x: torch.Tensor, sample_ids: torch.Tensor | None = None) -> torch.Tensor:
        _check_tensors(x, sample_ids)
        if not self.training:
            return x
        p = self.params
        return augment_images_op(x, sample_ids, self.seed, advance_offset(self.offset), p.flip,
                                 p.vertical_flip, list(p.max_shift), list(p.cutout), p.rotation,
                                 p.zoom, p.shift, p.fill, p.interpolation, p.data_format)

    def extra_repr(self) -> str:
        return str(self.params)


class AugmentBatch:
    """A picklable ``collate_fn``: collate the samples, then augment the batch's images.

    Use it as ``DataLoader(dataset, batch_size=B, collate_fn=AugmentBatch(...))``: each worker
    augments whole batches with the Numba kernels (no per-image Python loop). Batch ``b`` of an
    epoch (counted across workers: worker ``w`` of ``W`` makes batches ``w, w + W, ...``, as
    PyTorch's DataLoader hands them out) gives its samples the ids ``b * 2**24 + position``, and the
    epoch set by :meth:`set_epoch` is the call index, so every sample of every epoch draws its
    own transform, whatever the worker count. Call ``set_epoch(epoch)`` before each epoch (as
    with ``DistributedSampler``): it also restarts the batch count, which workers (forked
    from the main process's copy) and ``num_workers=0`` (the main process's copy itself) keep.
    With ``persistent_workers=True`` the workers never see it: their batch count goes on, so
    samples still get distinct ids, under the first epoch's call index.

    Parameters
    ----------
    seed : int in [0, 2**64)
    flip, vertical_flip, max_shift, rotation, zoom, shift, cutout, fill, interpolation,
    data_format : as in :class:`RandomAugment`
    collate : the collate function applied first (default ``torch.utils.data.default_collate``)
    images : index of the image tensor in a collated tuple/list batch (default 0); a batch that
        is a tensor is the images itself

    Example
    -------
    >>> import torch
    >>> collate = AugmentBatch(seed=1, flip=True, max_shift=1)
    >>> x, y = collate([(torch.ones(1, 4, 4), 0), (torch.ones(1, 4, 4), 1)])
    >>> x.shape, y.tolist()
    (torch.Size([2, 1, 4, 4]), [0, 1])
    """

    def __init__(self, *, seed: int, flip: bool = False, vertical_flip: bool = False,
                 max_shift: Any = 0, rotation: float = 0.0, zoom: float = 0.0,
                 shift: float = 0.0, cutout: Any = 0, fill: float = 0.0,
                 interpolation: str = "bilinear", data_format: str = "channels_first",
                 collate: Callable[[list[Any]], Any] | None = None, images: int = 0) -> None:
        self.params = _Params.of(flip, vertical_flip, max_shift, rotation, zoom, shift, cutout,
                                 fill, interpolation, data_format)
        self.seed = _validate.check_seed(seed)
        self.collate = collate
        self.images = _validate.check_int_at_least(images, "images", 0)
        self.epoch = 0
        self._calls = 0

    def set_epoch(self, epoch: int) -> None:
        """The call index of the next batches (like ``DistributedSampler.set_epoch``)."""
        self.epoch = _validate.check_int_at_least(epoch, "epoch", 0) % _CALLS
        self._calls = 0

    def __call__(self, samples: list[Any]) -> Any:
        collate = self.collate or torch.utils.data.default_collate
        batch = collate(samples)
        info = torch.utils.data.get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        index = self._calls * workers + worker  # this batch's position in the epoch
        self._calls += 1
        is_sequence = isinstance(batch, (tuple, list))
        x = batch[self.images] if is_sequence else batch
        n = x.shape[0]
        if n > _STRIDE:
            raise ValueError(f"AugmentBatch takes batches of at most {_STRIDE} samples, got {n}")
        ids = torch.arange(index * _STRIDE, index * _STRIDE + n, dtype=torch.int64,
                           device=x.device)
        y = _augment_tensor(self.params, x, self.seed, self.epoch, ids)
        if not is_sequence:
            return y
        parts = list(batch)
        parts[self.images] = y
        return type(batch)(parts) if isinstance(batch, tuple) else parts
