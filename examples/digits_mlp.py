"""Train a small MLP on scikit-learn's bundled digits (8x8 images, 10 classes) with fastreg layers.

Two fused ``DenseDropout`` layers (Linear + ReLU + dropout in one pass, masks regenerated in the
backward, never stored), a ``DropConnectLinear`` head, and ``ProxSGD`` with an L1 prox (exact
zeros) and a max-norm constraint on each unit's incoming weights. No download: ``load_digits``
ships with scikit-learn.

``--plain`` trains the plain-PyTorch twin of the same model instead (``nn.Linear`` + ``nn.ReLU``
+ ``nn.Dropout``, a plain ``nn.Linear`` head since PyTorch has no DropConnect, ``torch.optim.SGD``
with the L1 penalty's subgradient in the loss and the max-norm constraint applied after each
step), same data, batches and epochs, so the two wall times can be compared; the first step is
timed apart (fastreg's includes loading its compiled kernels). Timings on a shared machine are
noisy: run each twice.

    python examples/digits_mlp.py [--epochs 30] [--seed 0] [--plain]
"""

from __future__ import annotations

import argparse
import time

_START = time.perf_counter()
print("loading PyTorch and scikit-learn ...", flush=True)

import torch  # noqa: E402  (imported after the first message: importing takes seconds)
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from torch import nn  # noqa: E402

import fastreg.torch as ft  # noqa: E402

LR, MOMENTUM, L1, MAX_NORM = 0.05, 0.9, 1e-5, 3.0


def _elapsed() -> str:
    return f"[{time.perf_counter() - _START:5.1f} s]"


def build_model(hidden: int = 256, p: float = 0.2) -> nn.Module:
    """64 -> hidden -> hidden -> 10: the model of the example and of the ``torch`` bench case."""
    return nn.Sequential(
        ft.DenseDropout(64, hidden, p=p, activation="relu"),
        ft.DenseDropout(hidden, hidden, p=p, activation="relu"),
        ft.DropConnectLinear(hidden, 10, p=0.1),
    )


def build_plain_model(hidden: int = 256, p: float = 0.2) -> nn.Module:
    """The same model in plain PyTorch (a plain ``nn.Linear`` head: PyTorch has no DropConnect)."""
    return nn.Sequential(
        nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(p),
        nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(p),
        nn.Linear(hidden, 10),
    )  # fmt: skip


class _PlainSGD:
    """``torch.optim.SGD`` with what ``ProxSGD`` does in its step done the usual way: the L1
    penalty's subgradient in the loss (it never gives exact zeros) and max-norm by renorm."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.sgd = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

    def penalty(self) -> torch.Tensor:
        return L1 * sum(p.abs().sum() for p in self.model.parameters())

    def zero_grad(self) -> None:
        self.sgd.zero_grad()

    def step(self) -> None:
        self.sgd.step()
        with torch.no_grad():
            for module in self.model.modules():
                if isinstance(module, nn.Linear):
                    module.weight.copy_(torch.renorm(module.weight, 2, 0, MAX_NORM))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plain", action="store_true", help="the plain-PyTorch twin instead")
    args = parser.parse_args()

    torch.manual_seed(args.seed)  # weights and every layer's dropout seed
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=args.seed, stratify=y
    )

    if args.plain:
        model = build_plain_model()
        optimizer: _PlainSGD | ft.ProxSGD = _PlainSGD(model)
        print(f"{_elapsed()} plain PyTorch: nn.Linear + nn.Dropout, SGD + L1 subgradient")
    else:
        model = build_model()
        optimizer = ft.ProxSGD(
            model.parameters(), lr=LR, momentum=MOMENTUM, l1=L1, max_norm=MAX_NORM, axis=1
        )  # axis=1: row j of weight (out, in) is unit j's fan-in
        # The first step compiles fastreg's kernels (a few seconds), or loads them from the
        # on-disk cache in every later run.
        print(f"{_elapsed()} fastreg: first step compiles the kernels (cached for later runs)")
    print(f"{_elapsed()} training {args.epochs} epochs on {len(x_train)} images", flush=True)
    train_start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train))
        total = 0.0
        for start in range(0, len(order), args.batch):
            rows = order[start : start + args.batch]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x_train[rows]), y_train[rows])
            objective = loss + optimizer.penalty() if isinstance(optimizer, _PlainSGD) else loss
            objective.backward()
            optimizer.step()
            total += loss.item() * len(rows)
            if epoch == 0 and start == 0:
                first_s = time.perf_counter() - train_start
                print(f"{_elapsed()} first step done", flush=True)
        if epoch == 0 or epoch % 5 == 4 or epoch == args.epochs - 1:
            print(
                f"{_elapsed()} epoch {epoch + 1:3d}  train loss {total / len(x_train):.4f}",
                flush=True,
            )
    train_s = time.perf_counter() - train_start

    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(dim=1) == y_test).float().mean().item()
    zeros = sum(int((p == 0).sum()) for p in model.parameters())
    print(f"test accuracy {accuracy:.4f}  ({len(x_test)} test images; {zeros} weights exactly 0)")
    # The first step is shown apart: for fastreg it includes loading the compiled kernels (Numba
    # sets up its compiler on first use, ~0.5 s, once per process); the rest is the training.
    steps = args.epochs * -(-len(x_train) // args.batch)
    rest_s = train_s - first_s
    print(f"training took {train_s:.2f} s: first step {first_s:.2f} s, the other {steps - 1} "
          f"steps {rest_s:.2f} s ({rest_s / (steps - 1) * 1e3:.2f} ms per step)")


if __name__ == "__main__":
    main()
