"""Data-parallel training with fastreg.torch: two CPU processes, gloo backend, loopback only.

Run by pytest, this file launches itself twice (``python test_torch_ddp.py RANK WORLD PORT DIR``);
each rank trains a ``DistributedDataParallel`` model of fastreg layers with ``ProxSGD`` on its
half of a global batch and writes its weights and a dropout mask to ``DIR``. The oracle is the
same model trained in this process on the whole batch: DDP averages gradients during
``backward()``, so the proximal step after it must give the same weights. The weight part uses
``p = 0`` (the masks of the two runs could not agree otherwise); the mask part checks that each
rank draws its own mask, the one of ``rank_seed(seed, rank)``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

WORLD = 2
GLOBAL_BATCH = 8
STEPS = 5


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(42)
    x = torch.randn(GLOBAL_BATCH, 6, generator=g, dtype=torch.float64)
    y = torch.randn(GLOBAL_BATCH, 3, generator=g, dtype=torch.float64)
    return x, y


def _model_and_optimizer(wrap=None):
    import fastreg.torch as ft

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        ft.DenseDropout(6, 8, p=0.0, activation="tanh", dtype=torch.float64),
        ft.DropConnectLinear(8, 3, p=0.0, dtype=torch.float64),
    )
    trained = wrap(model) if wrap else model
    opt = ft.ProxSGD(trained.parameters(), lr=0.1, momentum=0.9, l1=1e-3, group_lasso=1e-2)
    return model, trained, opt


def _train(trained, opt, x, y) -> None:
    for _ in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.mse_loss(trained(x), y).backward()
        opt.step()


def _worker(rank: int, world: int, port: int, out: Path) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    import fastreg.torch as ft

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        x, y = _data()
        rows = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
        model, trained, opt = _model_and_optimizer(DistributedDataParallel)
        _train(trained, opt, x[rows], y[rows])
        weights = {name: p.detach().numpy() for name, p in model.named_parameters()}

        torch.manual_seed(1)  # the same layer seed on every rank
        layer = ft.Dropout(0.5)
        mask = (layer(torch.ones(256, dtype=torch.float64)) != 0).numpy()
        np.savez(out / f"rank{rank}.npz", mask=mask, seed=np.uint64(int(layer.seed) & (2**64 - 1)),
                 **weights)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_prox_sgd_matches_single_process_and_ranks_draw_own_masks(tmp_path):
    import fastreg
    import fastreg.torch as ft

    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo",
           "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    port = _free_port()
    procs = [
        subprocess.Popen([sys.executable, __file__, str(rank), str(WORLD), str(port),
                          str(tmp_path)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for rank in range(WORLD)
    ]
    logs = [proc.communicate(timeout=120)[0] for proc in procs]
    for proc, log in zip(procs, logs, strict=True):
        assert proc.returncode == 0, log
    ranks = [np.load(tmp_path / f"rank{rank}.npz") for rank in range(WORLD)]

    model, trained, opt = _model_and_optimizer()
    _train(trained, opt, *_data())
    for name, p in model.named_parameters():
        for result in ranks:
            np.testing.assert_allclose(result[name], p.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert np.count_nonzero(model[0].weight.detach().numpy()) > 0  # not a trivial fixed point

    seed = int(ranks[0]["seed"])
    assert all(int(r["seed"]) == seed for r in ranks)
    masks = [r["mask"] for r in ranks]
    assert not np.array_equal(masks[0], masks[1])
    for rank, mask in enumerate(masks):
        expected = fastreg.dropout_mask(256, 0.5, seed=ft.rank_seed(seed, rank), offset=0)
        np.testing.assert_array_equal(mask, expected)


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
