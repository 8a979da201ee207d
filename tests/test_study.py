"""The regularization study (fastreg.study, ``python -m fastreg demo``) and ``bench --plot``.

One small study (2 x 64 hidden units, 30 epochs, every configuration of the table) is run once
per module and checked for internal consistency; the MLP's gradients are checked against
PyTorch autograd with the masks rebuilt from fastreg.random_bits / dropout_mask.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

import fastreg
from fastreg.random import kernel_threshold

pytest.importorskip("sklearn")

from fastreg.study import (  # noqa: E402
    CONFIGS,
    Config,
    EarlyStopping,
    Scale,
    config_by_name,
    run_study,
)
from fastreg.study.model import (  # noqa: E402
    MLP,
    backward,
    evaluate,
    forward,
    prune_masks,
    softmax_cross_entropy,
)

SMALL = Scale("test", hidden=(64, 64), epochs=30, n_train=200, n_val=200)
BACKENDS = ["numpy", "numba"]


@pytest.fixture(scope="module")
def study():
    return run_study(scale=SMALL, seed=0)


def test_every_configuration_ran_in_table_order(study):
    assert [run.config.name for run in study.runs] == [c.name for c in CONFIGS]
    assert study.split == {"train": 200, "val": 200, "test": 1797 - 400}
    for run in study.runs:
        assert 0.0 <= run.test_acc <= 1.0 and 0.0 <= run.train_acc <= 1.0
        assert run.gap == pytest.approx(run.train_acc - run.test_acc)
        assert len(run.history["val_loss"]) == run.epochs_run
        assert np.isfinite(run.history["train_loss"]).all()


def test_l1_prox_runs_have_exact_zeros_and_others_do_not(study):
    for name in ("l1", "elastic_net"):
        model = study.run(name).model
        assert study.run(name).zero_fraction > 0.0
        # Exact +0.0 from the soft-threshold (select), never -0.0.
        zeros = np.concatenate([w[w == 0.0] for w in model.W])
        assert not np.signbit(zeros).any()
    for name in ("none", "l2", "dropout", "input_noise"):
        assert study.run(name).zero_fraction == 0.0


def test_early_stopping_restored_the_best_epoch(study):
    run = study.run("early_stopping")
    patience = config_by_name("early_stopping").patience
    val = run.history["val_loss"]
    assert run.restored
    assert run.best_epoch == int(np.argmin(val))
    assert run.epochs_run < SMALL.epochs, "the small study is meant to trigger the stop"
    assert run.epochs_run == run.best_epoch + 1 + patience
    # The returned model is the best epoch's: its validation loss is the recorded minimum.
    loss, _ = evaluate(run.model, *_val(), run.config)
    assert loss == pytest.approx(val[run.best_epoch], rel=1e-6)
    assert run.val_loss == pytest.approx(min(val), rel=1e-6)


def _val():
    from fastreg.study import load_split

    split = load_split(SMALL.n_train, SMALL.n_val, 0)
    return split.x_val, split.y_val


def test_a_regularizer_shrinks_the_generalization_gap(study):
    base = study.run("none")
    smaller = [r.config.name for r in study.runs if r is not base and r.gap < base.gap]
    assert smaller, [(r.config.name, r.gap) for r in study.runs]


def test_max_norm_holds_and_dsd_ends_dense(study):
    model = study.run("maxnorm_dropout").model
    bound = config_by_name("maxnorm_dropout").max_norm
    for W in model.W[:-1]:
        assert np.linalg.norm(W.astype(np.float64), axis=0).max() <= bound * (1 + 1e-5)
    dsd = study.run("dsd")
    assert [phase for _, phase in dsd.phases] == ["dense", "sparse", "re-dense"]
    assert dsd.model.mask is None


def test_same_seed_same_study():
    tiny = Scale("tiny", hidden=(16,), epochs=2, n_train=50, n_val=50)
    names = ["dropout", "dropconnect", "input_noise"]
    a = run_study(scale=tiny, configs=names, seed=3)
    b = run_study(scale=tiny, configs=names, seed=3)
    for ra, rb in zip(a.runs, b.runs, strict=True):
        assert ra.history == rb.history
        for wa, wb in zip(ra.model.W, rb.model.W, strict=True):
            np.testing.assert_array_equal(wa, wb)


def test_run_study_rejects_bad_arguments():
    with pytest.raises(ValueError, match="config must be one of"):
        run_study(scale=SMALL, configs=["nope"])
    with pytest.raises(ValueError, match="threads"):
        run_study(scale=SMALL, threads=0)


# --- the model against PyTorch autograd -----------------------------------------------------


def _torch_loss(torch, m, x, y, cfg, seed, step):
    """The training-mode network in PyTorch, the masks rebuilt from fastreg's streams."""
    base = step * (len(m.W) + 2)
    h = x
    if cfg.input_noise:
        h = fastreg.gaussian_noise(h, cfg.input_noise, seed=seed, offset=base, backend="numpy")
    if cfg.input_dropout:
        h = fastreg.dropout(h, cfg.input_dropout, seed=seed, offset=base + 1, backend="numpy")
    h = torch.tensor(h)
    Ws = [torch.tensor(w, requires_grad=True) for w in m.W]
    bs = [torch.tensor(v, requires_grad=True) for v in m.b]
    for layer, (W, b) in enumerate(zip(Ws, bs, strict=True)):
        offset = base + 2 + layer
        if layer == len(Ws) - 1:
            h = h @ W + b
        elif cfg.dropconnect:
            p = cfg.dropconnect
            shape = (h.shape[0], *W.shape)
            bits = fastreg.random_bits(shape, seed=seed, offset=offset, salt=1)
            keep = torch.tensor(bits.astype(np.uint64) >= kernel_threshold(p))
            Wm = torch.where(keep, W / (1 - p), torch.zeros((), dtype=W.dtype))
            h = torch.relu(torch.einsum("bk,bkn->bn", h, Wm) + b)
        else:
            p = cfg.hidden_dropout
            z = torch.relu(h @ W + b)
            keep = torch.tensor(fastreg.dropout_mask(z.shape, p, seed=seed, offset=offset))
            h = torch.where(keep, z / (1 - p), torch.zeros((), dtype=z.dtype))
    loss = torch.nn.functional.cross_entropy(h, torch.tensor(y))
    loss.backward()
    return loss.item(), [w.grad.numpy() for w in Ws], [v.grad.numpy() for v in bs]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "cfg",
    [
        Config("drop", "", input_dropout=0.2, hidden_dropout=0.5, input_noise=0.3),
        Config("dc", "", dropconnect=0.4),
        Config("plain", ""),
    ],
    ids=lambda c: c.name,
)
def test_gradients_match_torch_autograd(backend, cfg):
    torch = pytest.importorskip("torch")
    m = MLP.init((7, 9, 5, 3), seed=1)
    rng = np.random.default_rng(2)
    m.W = [w.astype(np.float64) for w in m.W]
    m.b = [rng.standard_normal(v.shape) for v in m.b]
    x = rng.random((6, 7))
    y = np.array([0, 1, 2, 0, 1, 2])
    seed, step = 5, 3
    logits, cache = forward(m, x, cfg, seed=seed, step=step, training=True, backend=backend)
    loss, dlogits = softmax_cross_entropy(logits, y)
    dWs, dbs = backward(m, dlogits, cache, cfg, seed=seed, step=step, backend=backend)
    ref_loss, ref_dW, ref_db = _torch_loss(torch, m, x, y, cfg, seed, step)
    assert loss == pytest.approx(ref_loss, rel=1e-10)
    for ours, ref in zip([*dWs, *dbs], [*ref_dW, *ref_db], strict=True):
        np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


def test_softmax_cross_entropy_is_stable():
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]])
    loss, grad = softmax_cross_entropy(logits, np.array([0, 2]))
    assert loss == pytest.approx(np.log(3) / 2)
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-15)


def test_prune_masks_keep_the_largest_magnitudes():
    m = MLP.init((10, 7, 3), seed=0)
    masks = prune_masks(m, 0.5)
    for W, keep in zip(m.W, masks, strict=True):
        assert keep.sum() == W.size - int(0.5 * W.size)
        assert np.abs(W[keep]).min() > np.abs(W[~keep]).max()


# --- EarlyStopping ---------------------------------------------------------------------------


def test_early_stopping_patience_and_restore():
    w = [np.zeros(3)]
    stopper = EarlyStopping(patience=2)
    stopper.on_train_begin()
    stops = []
    for epoch, loss in enumerate([3.0, 2.0, 2.0, 2.5, 0.5]):
        w[0][:] = epoch
        stops.append(stopper.on_epoch_end(epoch, {"val_loss": loss}, w))
        if stops[-1]:
            break
    # 2.0 again is not an improvement (strict), so epochs 2 and 3 exhaust the patience.
    assert stops == [False, False, False, True]
    assert (stopper.best_epoch, stopper.stopped_epoch, stopper.best) == (1, 3, 2.0)
    stopper.on_train_end(w)
    assert stopper.restored and w[0].tolist() == [1.0, 1.0, 1.0]


def test_early_stopping_mode_max_min_delta_and_nan():
    stopper = EarlyStopping("val_acc", patience=0, mode="max", min_delta=0.01)
    assert not stopper.on_epoch_end(0, {"val_acc": 0.5})
    assert stopper.on_epoch_end(1, {"val_acc": 0.505})  # within min_delta: no improvement
    stopper.on_train_begin()
    assert stopper.best_epoch == -1 and stopper.stopped_epoch is None
    nan = EarlyStopping(patience=1)
    assert not nan.on_epoch_end(0, {"val_loss": 1.0})
    assert nan.on_epoch_end(1, {"val_loss": float("nan")})


def test_early_stopping_without_restore_leaves_weights():
    w = [np.ones(2)]
    stopper = EarlyStopping(patience=5, restore_best=False)
    stopper.on_epoch_end(0, {"val_loss": 1.0}, w)
    w[0][:] = 7.0
    stopper.on_train_end(w)
    assert not stopper.restored and w[0].tolist() == [7.0, 7.0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"patience": -1}, "patience"),
        ({"patience": 1.5}, "patience"),
        ({"min_delta": -0.1}, "min_delta"),
        ({"mode": "up"}, "mode"),
    ],
)
def test_early_stopping_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EarlyStopping(**kwargs)


def test_early_stopping_names_a_missing_key():
    with pytest.raises(ValueError, match="val_loss"):
        EarlyStopping().on_epoch_end(0, {"loss": 1.0})


# --- report, CLI, bench --plot ---------------------------------------------------------------


def test_report_table_and_figures(study, tmp_path):
    from fastreg.study.report import results_table, write_outputs

    table = results_table(study)
    for config in CONFIGS:
        assert config.name in table
    assert "against no regularization" in table and "standard error" in table
    pytest.importorskip("matplotlib")
    paths = write_outputs(study, tmp_path)
    names = sorted(p.name for p in paths)
    assert names == [
        "augmented_digits.png", "learning_curves.png", "results.json", "results.txt",
        "weight_histograms.png",
    ]  # fmt: skip
    for path in paths:
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [r["config"] for r in saved["runs"]] == [c.name for c in CONFIGS]


def test_demo_cli_list_and_bad_config():
    from fastreg.__main__ import main

    out = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(out):
        assert main(["demo", "--list"]) == 0
    for config in CONFIGS:
        assert config.name in out.getvalue()
    err = io.StringIO()
    from contextlib import redirect_stderr

    with redirect_stderr(err):
        assert main(["demo", "--config", "nope"]) == 2
    assert "config must be one of" in err.getvalue()


def test_bench_plot_draws_a_report(tmp_path):
    pytest.importorskip("matplotlib")
    from fastreg._bench.plot import plot_results

    goal = {"key": "torch", "kind": "speedup", "target": 20.0, "status": "missed"}
    report = {
        "backend": "numba",
        "machine": {"cpu_model": "test cpu", "cpus_usable": 2},
        "results": [
            {"name": "dropout 4M f32", "limit": "copy", "speedups": {"torch": 8.0, "numpy": 3.0},
             "percent_of_limit": 45.0, "goals": [goal], "error": None},
            {"name": "failing case", "limit": "copy", "speedups": {}, "percent_of_limit": None,
             "goals": [], "error": "Traceback ..."},
        ],
    }  # fmt: skip
    path = plot_results(report, tmp_path / "bench.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no result"):
        plot_results({"results": []}, tmp_path / "empty.png")


def test_augmentation_depends_on_the_image_and_epoch_not_the_batch():
    from fastreg.study.augmentation import augment_inputs

    affine = config_by_name("augment_affine")
    x = np.random.default_rng(0).random((10, 64), dtype=np.float32)
    ids = np.arange(100, 110)
    a = augment_inputs(x, ids, affine, seed=1, epoch=2)
    np.testing.assert_array_equal(augment_inputs(x[::-1], ids[::-1], affine, seed=1, epoch=2),
                                  a[::-1])
    assert not np.array_equal(a, augment_inputs(x, ids, affine, seed=1, epoch=3))
    assert not np.array_equal(a, x)
    assert a.min() >= 0.0 and a.max() <= 1.0 + 1e-6  # bilinear blends of [0, 1] and a 0 fill
    shifted = augment_inputs(x, ids, config_by_name("augment_shift"), seed=1, epoch=0)
    for n in range(10):  # each image is itself moved by at most one pixel, 0 filled in
        padded = np.pad(x[n].reshape(8, 8), 1)
        assert any(np.array_equal(shifted[n].reshape(8, 8),
                                  padded[1 - dy : 9 - dy, 1 - dx : 9 - dx])
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    assert config_by_name("augment_dropout").hidden_dropout > 0
