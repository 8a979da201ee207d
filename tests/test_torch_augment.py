"""fastreg.torch: RandomAugment and the AugmentBatch collate_fn, against the array API
on the numpy backend (the oracle) with the documented offsets."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastreg  # noqa: E402
from fastreg.torch import AugmentBatch, RandomAugment  # noqa: E402

OPTIONS = dict(flip=True, max_shift=2, rotation=20.0, zoom=0.1, shift=0.1, cutout=3)


def expected(x, seed, call, ids=None, data_format="channels_first", fill=0.0):
    """``augment(random_affine(x))`` at offsets ``2c + 1`` and ``2c`` on the numpy backend."""
    kw = dict(seed=seed, fill=fill, data_format=data_format, sample_ids=ids, backend="numpy")
    y = fastreg.random_affine(x, rotation=20.0, zoom=0.1, shift=0.1, offset=2 * call + 1, **kw)
    return fastreg.augment(y, horizontal_flip=True, max_shift=2, cutout=3, offset=2 * call, **kw)


def test_module_equals_the_array_ops_and_advances_its_offset():
    layer = RandomAugment(**OPTIONS, seed=123)
    x = torch.randn(6, 3, 9, 8)
    for call in range(3):
        y = layer(x)
        np.testing.assert_array_equal(y.numpy(), expected(x.numpy(), 123, call))
        assert int(layer.offset) == call + 1
    layer.eval()
    assert layer(x) is x


def test_module_sample_ids_channels_last_and_state_dict():
    layer = RandomAugment(**OPTIONS, data_format="channels_last", seed=5)
    x = torch.randn(4, 7, 7, 2)
    ids = torch.tensor([10, 3, 99, 4])
    y = layer(x, sample_ids=ids)
    np.testing.assert_array_equal(
        y.numpy(), expected(x.numpy(), 5, 0, ids.numpy(), "channels_last"))
    other = RandomAugment(**OPTIONS, data_format="channels_last", seed=6)
    other.load_state_dict(layer.state_dict())
    np.testing.assert_array_equal(other(x, sample_ids=ids).numpy(), layer(x, sample_ids=ids))


def test_module_seed_from_torch_generator():
    torch.manual_seed(0)
    a = RandomAugment(flip=True)
    torch.manual_seed(0)
    b = RandomAugment(flip=True)
    x = torch.randn(16, 1, 4, 4)
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.uint8, torch.float64])
def test_module_dtypes(dtype):
    layer = RandomAugment(**OPTIONS, seed=9)
    x = (torch.rand(3, 2, 6, 6) * 200).to(dtype)
    y = layer(x)
    assert y.dtype == dtype and y.shape == x.shape
    if dtype == torch.bfloat16:
        host = x.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        np.testing.assert_array_equal(y.view(torch.int16).numpy(),
                                      expected(host, 9, 0).view(np.int16))
    else:
        np.testing.assert_array_equal(y.numpy(), expected(x.numpy(), 9, 0))


def test_bad_arguments():
    with pytest.raises(ValueError, match="zoom"):
        RandomAugment(zoom=1.0)
    with pytest.raises(TypeError, match="max_shift"):
        RandomAugment(max_shift=2.0)
    with pytest.raises(ValueError, match="data_format"):
        RandomAugment(data_format="NCHW")
    with pytest.raises(TypeError, match="sample_ids"):
        RandomAugment(flip=True, seed=0)(torch.ones(2, 1, 3, 3), sample_ids=[0, 1])
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        RandomAugment(flip=True, seed=0)(np.ones((2, 1, 3, 3)))
    with pytest.raises(TypeError, match="seed"):
        AugmentBatch(seed=None)
    with pytest.raises(ValueError, match="fill"):  # never OverflowError (errors.md)
        RandomAugment(fill=10**400)
    with pytest.raises(ValueError, match="max_shift"):
        RandomAugment(max_shift=(1, 2**63))
    with pytest.raises(ValueError, match="fill"):
        AugmentBatch(seed=0, fill=-(10**400))


def test_module_cutout_larger_than_int64_cuts_whole_rows():
    # rows [cy - sh//2, cy - sh//2 + sh) clipped: a size past the image covers every row, so
    # only the 2 columns around cx = floor(u_5 * W) (u_5 from the raw salt-3 stream) stay cut.
    layer = RandomAugment(cutout=(10**30, 2), fill=-1.0, seed=8)
    x = torch.rand(5, 2, 4, 6) + 1
    y = layer(x)
    bits = fastreg.random_bits(8 * 5, seed=8, offset=0, salt=3, backend="numpy").reshape(5, 8)
    for n in range(5):
        cx = int(((float(bits[n, 5]) + 0.5) * 2.0**-32) * 6)
        want = x[n].clone()
        want[:, :, max(cx - 1, 0) : cx + 1] = -1.0
        assert torch.equal(y[n], want), n


def _dataset():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(10, 3, 8, 8, generator=g)
    return torch.utils.data.TensorDataset(images, torch.arange(10))


def test_collate_augments_each_batch_with_its_own_ids():
    collate = AugmentBatch(seed=4, **OPTIONS)
    loader = torch.utils.data.DataLoader(_dataset(), batch_size=4, collate_fn=collate)
    images = _dataset().tensors[0].numpy()
    for b, (x, labels) in enumerate(loader):
        rows = labels.numpy()
        ids = b * 2**24 + np.arange(len(rows))
        np.testing.assert_array_equal(x.numpy(), expected(images[rows], 4, 0, ids))
    collate.set_epoch(1)
    x, labels = next(iter(torch.utils.data.DataLoader(_dataset(), batch_size=4,
                                                      collate_fn=collate)))
    np.testing.assert_array_equal(x.numpy(), expected(images[:4], 4, 1, np.arange(4)))
    again = pickle.loads(pickle.dumps(collate))
    assert again.seed == 4 and again.epoch == 1 and again.params == collate.params


def test_collate_in_two_fork_workers_equals_the_main_process():
    # fork workers after fastreg's kernels ran in the parent: run in a child, with a timeout
    script = textwrap.dedent(
        """
        import torch, numpy as np
        from fastreg.torch import AugmentBatch
        g = torch.Generator().manual_seed(0)
        data = torch.utils.data.TensorDataset(torch.randn(20, 3, 8, 8, generator=g),
                                              torch.arange(20))
        collate = AugmentBatch(seed=4, flip=True, max_shift=2, rotation=20.0, zoom=0.1,
                               shift=0.1, cutout=3)
        def run(workers):
            collate.set_epoch(0)
            loader = torch.utils.data.DataLoader(
                data, batch_size=3, collate_fn=collate, num_workers=workers,
                multiprocessing_context="fork" if workers else None)
            return [x for x, _ in loader]
        serial = run(0)
        parallel = run(2)
        assert len(serial) == len(parallel) == 7
        for a, b in zip(serial, parallel):
            assert torch.equal(a, b)
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_module_compiles_fullgraph_with_eager_results_and_no_recompile():
    import torch._dynamo

    torch._dynamo.reset()
    x = torch.rand(4, 3, 8, 8)
    eager = RandomAugment(**OPTIONS, seed=31)
    compiled_layer = RandomAugment(**OPTIONS, seed=31)
    compiled = torch.compile(compiled_layer, fullgraph=True, backend="aot_eager")
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(3):
            assert torch.equal(compiled(x), eager(x))
    assert int(compiled_layer.offset) == int(eager.offset) == 3
    compiled_layer.eval()
    assert torch.equal(compiled_layer(x), x)


def test_module_exports():
    layer = RandomAugment(**OPTIONS, seed=2)
    x = torch.rand(2, 3, 8, 8)
    program = torch.export.export(layer, (x,))
    want = expected(x.numpy(), 2, 0)
    assert np.array_equal(program.module()(x).numpy(), want)


def test_custom_op_passes_opcheck():
    x = torch.rand(2, 3, 6, 6)
    args = (x, None, torch.tensor(7), torch.tensor(1), True, False, [1, 1], [2, 2], 10.0, 0.1,
            0.1, 0.0, "bilinear", "channels_first")
    torch.library.opcheck(torch.ops.fastreg.augment_images.default, args)
