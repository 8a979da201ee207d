"""fastreg.torch under PyTorch 2 (docs/contract/pytorch.md): custom ops, opcheck,
torch.compile, export, torch.func, jit.trace, 16-bit dtypes and autocast, torch.optim
compatibility, checkpoints.

Oracles: eager fastreg itself for compiled runs (the contract asks for eager's masks bit for
bit), the random-stream contract's mask from ``fastreg.random_bits``, ``torch.optim.SGD`` /
``AdamW`` and PyTorch's own float32 arithmetic rounded once for 16-bit storage.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import fastreg

torch = pytest.importorskip("torch")
ft = pytest.importorskip("fastreg.torch")
nn = torch.nn
ops = torch.ops.fastreg
dynamo = torch._dynamo

SEED = 2**40 + 99
F64 = torch.float64


def _keep(shape, p, seed, offset, salt=0):
    threshold = min(math.floor(p * 2.0**32), 2**32 - 1)
    bits = fastreg.random_bits(shape, seed=seed, offset=offset, salt=salt)
    return torch.from_numpy(bits.astype(np.int64) >= threshold)


def _seed(v=SEED):
    return torch.tensor(v, dtype=torch.int64)


def _off(v=3):
    return torch.tensor(v, dtype=torch.int64)


def _rand(*shape, dtype=F64, grad=True, seed=0):
    g = torch.Generator().manual_seed(seed + sum(shape))
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(grad)


# ------------------------------------------------------------------------------ opcheck


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_opcheck_every_layer_op(backend):
    x, w, b = _rand(4, 5), _rand(3, 5), _rand(3)
    dy = _rand(4, 3, grad=False)
    y, z = ops.dense_dropout(x.detach(), w.detach(), b.detach(), 0.4, _seed(), _off(), "gelu")
    cases = [
        (ops.dropout, (x, 0.3, _seed(), _off(), None)),
        (ops.dropout, (_rand(4, 6), 0.5, _seed(), _off(), [4, 1])),
        (ops.dropout_backward, (dy, 0.3, _seed(), _off(), None)),
        (ops.dense_dropout, (x, w, b, 0.4, _seed(), _off(), "relu")),
        (ops.dense_dropout, (x, w, None, 0.4, _seed(), _off(), "gelu")),
        (ops.dense_dropout_backward, (dy, x.detach(), w.detach(), y, z, 0.4, _seed(), _off(),
                                      "gelu", True, True)),
        (ops.dropconnect, (x, w, b, 0.4, _seed(), _off(), False)),
        (ops.dropconnect, (x, w, b, 0.4, _seed(), _off(), True)),
        (ops.dropconnect_backward, (dy, x.detach(), w.detach(), 0.4, _seed(), _off(), True,
                                    True, True)),
        (ops.advance_offset, (_off(),)),
    ]
    with fastreg.use_backend(backend):
        for op, args in cases:
            torch.library.opcheck(op, args)


def test_opcheck_optimizer_ops():
    ws = [_rand(3, 4, grad=False), _rand(4, grad=False)]
    gs = [_rand(3, 4, grad=False, seed=1), _rand(4, grad=False, seed=1)]
    bufs = [torch.zeros_like(w) for w in ws]
    lr = torch.tensor(0.1, dtype=F64)
    torch.library.opcheck(ops.prox_sgd_, (ws, gs, bufs, lr, 0.9, False, 0.0, 0.01, 0.0, False,
                                          0.1, 2.0, [1]))
    ms, vs = [torch.zeros_like(w) for w in ws], [torch.zeros_like(w) for w in ws]
    steps = [torch.zeros(()), torch.zeros(())]
    torch.library.opcheck(ops.prox_adam_, (ws, gs, ms, vs, steps, lr, 0.9, 0.999, 1e-8, 0.01,
                                           0.01, 0.0, "decoupled", False, 0.0, None, [1]))


def test_advance_offset_returns_the_index_and_wraps():
    offset = _off(2**32 - 1)
    index = ops.advance_offset(offset)
    assert int(index) == 2**32 - 1 and int(offset) == 0
    assert index.data_ptr() != offset.data_ptr()


# ------------------------------------------------------------------------------ compile


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        ft.DenseDropout(8, 16, p=0.3), ft.Dropout(0.2), ft.DenseDropout(16, 12, p=0.2,
                                                                         activation="gelu"),
        ft.DropConnectLinear(12, 6, p=0.3), ft.DropConnectLinear(6, 3, p=0.5, per_example=True),
    )


@pytest.mark.slow
@pytest.mark.parametrize("compiler", ["aot_eager", "inductor"])
def test_compiled_model_matches_eager_bit_for_bit_without_recompiling(compiler):
    """Train steps (forward, backward) and eval: eager's outputs and gradients exactly, the
    offsets advanced inside the graph, one compilation for all training steps."""
    dynamo.reset()
    eager, compiled = _model(), _model()
    run = torch.compile(compiled, fullgraph=True, backend=compiler)
    x = torch.randn(5, 8)
    for step in range(3):
        with dynamo.config.patch(error_on_recompile=step > 0):
            got = run(x)
        want = eager(x)
        got.sum().backward()
        want.sum().backward()
        assert torch.equal(got, want), step
        for a, b in zip(compiled.parameters(), eager.parameters(), strict=True):
            assert torch.equal(a.grad, b.grad), step
        assert [int(m.offset) for m in compiled] == [step + 1] * 5
    compiled.eval()
    eager.eval()
    assert torch.equal(run(x), eager(x))
    assert [int(m.offset) for m in compiled] == [3] * 5


@pytest.mark.slow
@pytest.mark.parametrize("cls,kw", [("ProxSGD", {"momentum": 0.9, "l1": 1e-3}),
                                    ("ProxAdamW", {"l1": 1e-3})])
def test_compiled_optimizer_step_matches_eager(cls, kw):
    dynamo.reset()
    eager, compiled = _model(), _model()
    opt_e = getattr(ft, cls)(eager.parameters(), lr=torch.tensor(0.05), **kw)
    opt_c = getattr(ft, cls)(compiled.parameters(), lr=torch.tensor(0.05), **kw)
    step = torch.compile(opt_c.step, backend="aot_eager")
    x = torch.randn(5, 8)
    for k in range(3):
        for model in (eager, compiled):
            model.zero_grad()
            model(x).sum().backward()
        opt_e.step()
        with dynamo.config.patch(error_on_recompile=k > 0):
            step()
        for a, b in zip(compiled.parameters(), eager.parameters(), strict=True):
            assert torch.equal(a, b), k


@pytest.mark.slow
def test_export_train_and_eval():
    model = _model()
    x = torch.randn(5, 8)
    for mode in (True, False):
        model.train(mode)
        exported = torch.export.export(model, (x,))
        names = {str(n.target) for n in exported.graph.nodes}
        assert any("fastreg" in n for n in names)
    reference = _model().eval()
    assert torch.equal(exported.module()(x), reference(x))


# ------------------------------------------------------------------------------ func, jit


def test_func_transforms_raise_a_clear_error():
    """This PyTorch does not run a custom op's registered autograd under torch.func: the
    functions and modules say so (instead of an error about setup_context from inside)."""
    x, w = _rand(3, 4, grad=False), _rand(5, 4, grad=False)
    calls = [
        lambda w: ft.dense_dropout(x, w, p=0.3, seed=SEED).sum(),
        lambda w: ft.dropconnect(x, w, p=0.3, seed=SEED).sum(),
        lambda w: ft.dropout(w, 0.3, seed=SEED).sum(),
    ]
    for f in calls:
        with pytest.raises(RuntimeError, match="torch.func"):
            torch.func.grad(f)(w)
    layer = ft.DenseDropout(4, 5, dtype=F64)
    with pytest.raises(RuntimeError, match="torch.func"):
        torch.func.vmap(layer)(x)
    assert int(layer.offset) == 0  # refused before the stream advanced


def test_vmap_is_refused_or_correct():
    x = _rand(3, 6, grad=False)
    try:
        y = torch.func.vmap(lambda v: ft.dropout(v, 0.5, seed=SEED))(x)
    except (RuntimeError, NotImplementedError) as error:
        assert "vmap" in str(error).lower() or "batch" in str(error).lower()
    else:  # each row gets the mask of one (6,) call
        keep = _keep((6,), 0.5, SEED, 0)
        assert torch.equal(y, torch.where(keep, 2 * x, 0.0))


def test_jit_trace_advances_the_offset():
    layer = ft.Dropout(0.5)
    x = torch.ones(64, dtype=F64)
    traced = torch.jit.trace(layer, (x,), check_trace=False)
    seed = int(layer.seed) & (2**64 - 1)
    start = int(layer.offset)
    for k in range(3):
        keep = _keep((64,), 0.5, seed, start + k)
        assert torch.equal(traced(x), torch.where(keep, 2 * x, 0.0))
    assert int(layer.offset) == start + 3


# ------------------------------------------------------------------------------ dtypes


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16bit_layers_compute_in_float32_and_round_once(dtype):
    x = torch.randn(6, 5).to(dtype)
    y = ft.dropout(x, 0.3, seed=SEED, offset=1)
    keep = _keep((6, 5), 0.3, SEED, 1)
    assert y.dtype == dtype
    # the scale is 1/(1-p) cast once to the storage type (docs/contract/random-stream.md), then
    # the product in float32, rounded once
    scale = torch.tensor(1 / 0.7, dtype=torch.float64).to(dtype).float()
    assert scale != np.float32(1 / 0.7)  # the two scales differ: the test can tell them apart
    assert torch.equal(y, torch.where(keep, x.float() * scale, 0.0).to(dtype))
    w, b = torch.randn(4, 5).to(dtype), torch.randn(4).to(dtype)
    y = ft.dense_dropout(x, w, b, p=0.3, seed=SEED, offset=1, activation="identity")
    z = x.double() @ w.double().T + b.double()
    keep = _keep((6, 4), 0.3, SEED, 1)
    want = torch.where(keep, z / 0.7, 0.0).to(dtype)
    assert y.dtype == dtype
    # float32 GEMM of 16-bit inputs: within one 16-bit rounding of the exact value
    ulp = 2.0 ** (-7 if dtype == torch.bfloat16 else -10)
    torch.testing.assert_close(y.float(), want.float(), rtol=ulp, atol=1e-6)


@pytest.mark.parametrize("cls", ["Dropout", "DenseDropout", "DropConnectLinear"])
def test_modules_under_bfloat16_autocast_return_the_input_dtype(cls):
    layer = ft.Dropout(0.2) if cls == "Dropout" else getattr(ft, cls)(8, 4, p=0.2)
    front = nn.Linear(8, 8)
    x = torch.randn(3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = front(x)
        y = layer(h)
    assert h.dtype == torch.bfloat16 and y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert front.weight.grad is not None and front.weight.grad.dtype == torch.float32
    if cls != "Dropout":
        assert layer.weight.grad.dtype == torch.float32


@pytest.mark.parametrize("cls", ["ProxSGD", "ProxAdamW"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_optimizers_update_16bit_parameters_in_float32_rounding_once(cls, dtype):
    """The oracle: torch.optim on float32 copies, parameters and states rounded to the 16-bit
    type after each step (float32 compute, one rounding per step). The two float32 formulas
    differ in order, so a stored value may differ by one 16-bit rounding (1 ulp)."""
    g = torch.Generator().manual_seed(0)
    start = torch.randn(256, generator=g).to(dtype)
    ours, ref = nn.Parameter(start.clone()), nn.Parameter(start.float())
    kw = {"momentum": 0.9} if cls == "ProxSGD" else {"weight_decay": 0.1}
    opt_o = getattr(ft, cls)([ours], lr=0.01, **kw)
    opt_r = (torch.optim.SGD if cls == "ProxSGD" else torch.optim.AdamW)([ref], lr=0.01, **kw)
    for _ in range(3):
        grad = torch.randn(256, generator=g).to(dtype)
        ours.grad, ref.grad = grad.clone(), grad.float()
        opt_o.step()
        opt_r.step()
        with torch.no_grad():
            ref.copy_(ref.to(dtype).float())
            for key, value in opt_r.state[ref].items():
                if key != "step":
                    value.copy_(value.to(dtype).float())
    assert ours.dtype == dtype
    ulp = 2.0 ** (-7 if dtype == torch.bfloat16 else -10)
    torch.testing.assert_close(ours.float(), ref.detach(), rtol=ulp, atol=1e-6)
    for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
        if key in opt_o.state[ours]:
            assert opt_o.state[ours][key].dtype == dtype


# ------------------------------------------------------------------------------ optimizers


def _params(dtype=F64):
    g = torch.Generator().manual_seed(1)
    return [nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in ((4, 3), (4,))]


def _step(opt, params, k):
    g = torch.Generator().manual_seed(50 + k)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
    opt.step()


@pytest.mark.parametrize("pair", ["sgd", "adamw"])
def test_torch_optim_state_dicts_load_and_continue_identically(pair):
    torch_cls, ours_cls, kw = {
        "sgd": (torch.optim.SGD, ft.ProxSGD, {"lr": 0.1, "momentum": 0.9}),
        "adamw": (torch.optim.AdamW, ft.ProxAdamW, {"lr": 0.01, "weight_decay": 0.1}),
    }[pair]
    theirs = _params()
    opt_t = torch_cls(theirs, **kw)
    for k in range(2):
        _step(opt_t, theirs, k)
    ours = [nn.Parameter(p.detach().clone()) for p in theirs]
    opt_o = ours_cls(ours, **kw)
    opt_o.load_state_dict(copy.deepcopy(opt_t.state_dict()))  # state_dict holds references
    assert opt_o.param_groups[0]["l1"] == 0.0 and opt_o.param_groups[0]["group_lasso"] == 0.0
    for k in range(2, 4):
        _step(opt_t, theirs, k)
        _step(opt_o, ours, k)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cls", ["ProxSGD", "ProxAdamW"])
def test_lr_tensor_and_maximize(cls):
    kw = {} if cls == "ProxSGD" else {"weight_decay": 0.0}
    a, b = _params(), _params()
    opt_a = getattr(ft, cls)(a, lr=torch.tensor(0.05), maximize=True, **kw)
    ref = (torch.optim.SGD if cls == "ProxSGD" else torch.optim.AdamW)(b, lr=0.05,
                                                                       maximize=True, **kw)
    for k in range(2):
        _step(opt_a, a, k)
        _step(ref, b, k)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-8)


def test_optimizer_options_refused_with_clear_errors():
    w = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="fused"):
        ft.ProxSGD(w, lr=0.1, fused=True)
    with pytest.raises(ValueError, match="amsgrad"):
        ft.ProxAdamW(w, amsgrad=True)
    with pytest.raises(ValueError, match="dampening"):
        ft.ProxSGD(w, lr=0.1, momentum=0.9, dampening=0.1)
    with pytest.raises(ValueError, match="penalty_metric"):
        ft.ProxAdamW(w, penalty_metric="euclid")
    with pytest.raises(ValueError, match="lr"):
        ft.ProxSGD(w, lr=torch.tensor(-1.0))
    ft.ProxSGD(w, lr=0.1, foreach=True).step()  # accepted: always one list call


def test_prox_adamw_decoupled_default_keeps_rows_with_zero_gradient():
    """docs/contract/ops.md: an unused embedding row (gradient 0) is not zeroed by the L1 prox."""
    emb = nn.Parameter(torch.full((4, 3), 0.5))
    opt = ft.ProxAdamW([emb], lr=1e-3, l1=1e-5, weight_decay=0.0)
    emb.grad = torch.zeros(4, 3)
    opt.step()
    assert torch.count_nonzero(emb) == 12
    adam = nn.Parameter(torch.full((4, 3), 0.5))
    adam.grad = torch.zeros(4, 3)
    ft.ProxAdamW([adam], lr=1e-3, l1=1e-5, weight_decay=0.0, penalty_metric="adam").step()
    assert torch.count_nonzero(adam) == 0


# ------------------------------------------------------------------------------ checkpoints


def test_plain_torch_checkpoints_load_strictly():
    linear = nn.Linear(5, 3)
    for cls in (ft.DenseDropout, ft.DropConnectLinear):
        layer = cls(5, 3, p=0.5)
        seed, offset = int(layer.seed), int(layer.offset)
        layer.load_state_dict(linear.state_dict(), strict=True)
        assert torch.equal(layer.weight, linear.weight) and torch.equal(layer.bias, linear.bias)
        assert (int(layer.seed), int(layer.offset)) == (seed, offset)
    plain = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.3))
    ours = nn.Sequential(nn.Linear(4, 4), ft.Dropout(0.3))
    ours.load_state_dict(plain.state_dict(), strict=True)
    with pytest.raises(RuntimeError, match="Unexpected"):
        ours.load_state_dict({**plain.state_dict(), "1.extra": torch.zeros(1)}, strict=True)


def test_replace_dropout_swaps_modules_keeping_p_and_mode():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.3),
                          nn.Sequential(nn.Dropout(0.1), nn.ReLU()))
    model[2].eval()
    out = ft.replace_dropout(model)
    assert out is model
    assert isinstance(model[1], ft.Dropout) and model[1].p == 0.3 and model[1].training
    assert isinstance(model[2][0], ft.Dropout) and model[2][0].p == 0.1
    assert not model[2][0].training
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    single = ft.replace_dropout(nn.Dropout(0.25))
    assert isinstance(single, ft.Dropout) and single.p == 0.25
