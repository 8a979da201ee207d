"""Train a small MLP on scikit-learn's bundled digits (8x8 images, 10 classes) with fastreg layers.

Two fused ``DenseDropout`` layers (Linear + ReLU + dropout in one pass, masks regenerated in the
backward, never stored), a ``DropConnectLinear`` head, and ``ProxSGD`` with an L1 prox (exact
zeros) and a max-norm constraint on each unit's incoming weights. No download: ``load_digits``
ships with scikit-learn.

    python examples/digits_mlp.py [--epochs 30] [--seed 0]
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import fastreg.torch as ft


def build_model(hidden: int = 256, p: float = 0.2) -> nn.Module:
    """64 -> hidden -> hidden -> 10: the model of the example and of the ``torch`` bench case."""
    return nn.Sequential(
        ft.DenseDropout(64, hidden, p=p, activation="relu"),
        ft.DenseDropout(hidden, hidden, p=p, activation="relu"),
        ft.DropConnectLinear(hidden, 10, p=0.1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)  # weights and every layer's dropout seed
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=args.seed, stratify=y
    )

    model = build_model()
    optimizer = ft.ProxSGD(model.parameters(), lr=0.05, momentum=0.9, l1=1e-5, max_norm=3.0,
                           axis=1)  # axis=1: row j of weight (out, in) is unit j's fan-in
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train))
        total = 0.0
        for start in range(0, len(order), args.batch):
            rows = order[start : start + args.batch]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x_train[rows]), y_train[rows])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        if epoch % 10 == 9 or epoch == args.epochs - 1:
            print(f"epoch {epoch + 1:3d}  train loss {total / len(x_train):.4f}")

    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(dim=1) == y_test).float().mean().item()
    zeros = sum(int((p == 0).sum()) for p in model.parameters())
    print(f"test accuracy {accuracy:.4f}  ({len(x_test)} test images; {zeros} weights exactly 0)")


if __name__ == "__main__":
    main()
