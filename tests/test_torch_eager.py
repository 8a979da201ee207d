"""The eager fast path of fastreg.torch (fastreg/torch/_eager.py): the same bits as the
custom-op path, and taken only where nothing records the call.

Oracles: the custom-op path itself, forced by a pass-through ``TorchFunctionMode`` (any active
mode sends a call to the ops, as under ``torch.compile``/``export``), whose masks the other
torch tests check against ``fastreg.random_bits`` and PyTorch; the random-stream contract's
mask from ``fastreg.random_bits`` directly; ``torch.autograd.gradcheck``'s finite differences.
Which path ran is read from ``torch.profiler``: the op path records ``fastreg::*`` events, the
fast path none.
"""

from __future__ import annotations

import contextlib
import copy
import math

import numpy as np
import pytest

import fastreg

torch = pytest.importorskip("torch")
ft = pytest.importorskip("fastreg.torch")
nn = torch.nn

DTYPES = [torch.float32, torch.bfloat16]


class _OpPath(torch.overrides.TorchFunctionMode):
    """A mode that changes nothing but sends every fastreg.torch call to the custom ops."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def _fastreg_events(fn):
    """The fastreg custom-op events ``fn()`` records (empty on the fast path)."""
    with torch.profiler.profile() as prof:
        fn()
    return {e.name for e in prof.events() if e.name.startswith("fastreg::")}


def _keep(shape, p, seed, offset, salt=0):
    threshold = min(math.floor(p * 2.0**32), 2**32 - 1)
    bits = fastreg.random_bits(shape, seed=seed, offset=offset, salt=salt)
    return torch.from_numpy(bits.astype(np.int64) >= threshold)


def _layers():
    return [
        ("dropout", lambda: ft.Dropout(0.3)),
        ("dropout_p0", lambda: ft.Dropout(0.0)),
        ("dropout_noise_shape", lambda: ft.Dropout(0.4, noise_shape=(None, 1))),
        *((f"dense_{a}", (lambda a=a: ft.DenseDropout(6, 5, p=0.3, activation=a)))
          for a in ("identity", "relu", "tanh", "sigmoid", "gelu")),
        ("dense_no_bias", lambda: ft.DenseDropout(6, 5, p=0.5, bias=False)),
        ("dense_p1", lambda: ft.DenseDropout(6, 5, p=1.0)),
        ("dropconnect", lambda: ft.DropConnectLinear(6, 5, p=0.4)),
        ("dropconnect_example", lambda: ft.DropConnectLinear(6, 5, p=0.4, per_example=True)),
        ("dropconnect_no_bias", lambda: ft.DropConnectLinear(6, 5, p=0.2, bias=False)),
        ("dropconnect_p0", lambda: ft.DropConnectLinear(6, 5, p=0.0)),
    ]


def _run_steps(layer, xs, op_path):
    """Forward and backward of each input; the outputs and every gradient, in order."""
    results = []
    for x in xs:
        x = x.clone().requires_grad_(True)
        if op_path:
            with _OpPath():
                y = layer(x)
                (y.float() * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        else:
            y = layer(x)
            (y.float() * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        grads = [p.grad.clone() for p in layer.parameters()]
        layer.zero_grad()
        results.append((y.detach(), x.grad, *grads))
    return results


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,make", _layers(), ids=[n for n, _ in _layers()])
def test_modules_fast_path_matches_the_op_path_bit_for_bit(name, make, dtype):
    torch.manual_seed(3)
    fast = make().to(dtype)
    ops = copy.deepcopy(fast)
    xs = [torch.randn(4, 6, dtype=dtype) for _ in range(3)]
    fast_results, op_results = _run_steps(fast, xs, False), _run_steps(ops, xs, True)
    for got, want in zip(fast_results, op_results, strict=True):
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype == dtype
            assert torch.equal(a, b)
    # the offset buffers advanced alike, in place; checkpoints are the same
    assert int(fast.offset) == int(ops.offset) == 3
    for (k, a), (_, b) in zip(fast.state_dict().items(), ops.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    # eval mode too
    fast.eval(), ops.eval()
    with _OpPath():
        want = ops(xs[0])
    assert torch.equal(fast(xs[0]), want)


def test_the_fast_path_is_taken_in_eager_and_the_op_path_under_a_mode():
    torch.manual_seed(0)
    model = nn.Sequential(ft.DenseDropout(6, 8, p=0.3), ft.Dropout(0.2),
                          ft.DropConnectLinear(8, 3, p=0.3))
    opt = ft.ProxSGD(model.parameters(), lr=0.1, momentum=0.9, l1=1e-3, max_norm=1.0)
    x = torch.randn(4, 6)

    def step():
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()

    assert _fastreg_events(step) == set()

    def op_step():
        with _OpPath():
            step()

    assert _fastreg_events(op_step) >= {
        "fastreg::advance_offset", "fastreg::dense_dropout", "fastreg::dense_dropout_backward",
        "fastreg::dropout", "fastreg::dropout_backward", "fastreg::dropconnect",
        "fastreg::dropconnect_backward", "fastreg::prox_sgd_"}


def test_the_fast_path_draws_the_contract_mask_and_advances_the_offset():
    layer = ft.Dropout(0.5)
    seed = int(layer.seed) & (2**64 - 1)
    layer.offset.fill_(2**32 - 1)  # wraps to 0 after the call, as fastreg::advance_offset does
    x = torch.ones(1000)
    y = layer(x)
    assert int(layer.offset) == 0
    keep = _keep((1000,), 0.5, seed, 2**32 - 1)
    assert torch.equal(y, torch.where(keep, 2.0, 0.0))
    assert torch.equal(layer(x), torch.where(_keep((1000,), 0.5, seed, 0), 2.0, 0.0))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_functional_fast_path_matches_the_op_path(dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 7, generator=g).to(dtype)
    w = torch.randn(4, 7, generator=g).to(dtype)
    b = torch.randn(4, generator=g).to(dtype)
    seed_t, off_t = torch.tensor(-5, dtype=torch.int64), torch.tensor(9, dtype=torch.int64)
    calls = [
        lambda x, w, b, s, o: ft.dropout(x, 0.3, seed=s, offset=o),
        lambda x, w, b, s, o: ft.dropout(x, 0.3, seed=s, offset=o, noise_shape=(1, None)),
        lambda x, w, b, s, o: ft.dense_dropout(x, w, b, p=0.4, seed=s, offset=o,
                                               activation="gelu"),
        lambda x, w, b, s, o: ft.dense_dropout(x, w, None, p=0.4, seed=s, offset=o,
                                               training=False),
        lambda x, w, b, s, o: ft.dropconnect(x, w, b, p=0.4, seed=s, offset=o),
        lambda x, w, b, s, o: ft.dropconnect(x, w, b, p=0.4, seed=s, offset=o,
                                             per_example=True),
    ]
    for call in calls:
        for s, o in ((2**63 + 5, 9), (seed_t, off_t)):
            results = []
            for op_path in (False, True):
                leaves = [t.clone().requires_grad_(True) for t in (x, w, b)]
                if op_path:
                    with _OpPath():
                        y = call(*leaves, s, o)
                else:
                    assert _fastreg_events(lambda c=call, a=leaves, s=s, o=o: c(*a, s, o)) == set()
                    y = call(*leaves, s, o)
                y.float().square().sum().backward()
                results.append([y.detach()] + [t.grad for t in leaves])
            for a, c in zip(*results, strict=True):
                assert (a is None) == (c is None)
                if a is not None:
                    assert torch.equal(a, c)


def test_functional_seeds_are_validated_on_the_fast_path():
    x = torch.ones(4)
    with pytest.raises(ValueError, match="seed"):
        ft.dropout(x, 0.5, seed=-1)
    with pytest.raises(ValueError, match="offset"):
        ft.dropout(x, 0.5, seed=1, offset=2**32)
    with pytest.raises(ValueError, match="do not chain"):
        ft.dense_dropout(x.reshape(1, 4), torch.ones(3, 5), p=0.5, seed=1)


def test_bad_input_leaves_the_offset_alone_on_the_fast_path():
    layer = ft.DenseDropout(4, 3)
    with pytest.raises(ValueError, match="do not chain"):
        layer(torch.ones(2, 5))
    assert int(layer.offset) == 0
    layer = ft.DropConnectLinear(4, 3)
    with pytest.raises(ValueError, match="do not chain"):
        layer(torch.ones(2, 5))
    assert int(layer.offset) == 0


def test_gradcheck_float64_through_the_fast_path():
    g = torch.Generator().manual_seed(2)

    def leaf(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(True)

    x, w, b = leaf(3, 5), leaf(4, 5), leaf(4)
    cases = [
        (lambda x: ft.dropout(x, 0.4, seed=11, offset=2), (x,)),
        *((lambda x, w, b, a=a: ft.dense_dropout(x, w, b, p=0.3, seed=5, activation=a),
           (x, w, b)) for a in ("identity", "tanh", "sigmoid", "gelu")),
        (lambda x, w, b: ft.dropconnect(x, w, b, p=0.3, seed=5), (x, w, b)),
        (lambda x, w, b: ft.dropconnect(x, w, b, p=0.3, seed=5, per_example=True), (x, w, b)),
    ]
    for fn, args in cases:
        assert _fastreg_events(lambda fn=fn, args=args: fn(*args)) == set()
        assert torch.autograd.gradcheck(fn, args)
    # Dropout's backward is itself differentiable (create_graph runs the backward op)
    assert torch.autograd.gradgradcheck(lambda x: ft.dropout(x, 0.4, seed=11), (x,))


def test_double_backward_matches_the_op_path():
    results = []
    for op_path in (False, True):
        x = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(3, 4).requires_grad_(True)
        w = torch.linspace(-2, 1, 20, dtype=torch.float64).reshape(5, 4).requires_grad_(True)
        with _OpPath() if op_path else contextlib.nullcontext():
            y = ft.dropout(x, 0.5, seed=3)
            (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
            (ggx,) = torch.autograd.grad(gx.sum(), x)
            z = ft.dense_dropout(x, w, p=0.5, seed=3, activation="tanh")
            (gz,) = torch.autograd.grad(z.sum(), x, create_graph=True)
            # the dense backward op has no autograd formula: both paths refuse a second pass
            with pytest.raises(RuntimeError):
                torch.autograd.grad(gz.sum(), w)
        results.append((y, gx, ggx, z, gz))
    for a, b in zip(*results, strict=True):
        assert torch.equal(a.detach(), b.detach())


def _optimizers():
    return [
        ("sgd_l1", lambda ps: ft.ProxSGD(ps, lr=0.1, l1=0.05)),
        ("sgd_momentum_l2_maxnorm", lambda ps: ft.ProxSGD(ps, lr=0.1, momentum=0.9, l2=0.1,
                                                          max_norm=0.5, axis=1)),
        ("sgd_nesterov_decay_lasso", lambda ps: ft.ProxSGD(ps, lr=0.05, momentum=0.8,
                                                           nesterov=True, weight_decay=0.01,
                                                           group_lasso=0.2, maximize=True)),
        ("sgd_lr_tensor", lambda ps: ft.ProxSGD(ps, lr=torch.tensor(0.1), l1=0.01)),
        ("adam_l1_decoupled", lambda ps: ft.ProxAdamW(ps, lr=0.05, l1=0.01)),
        ("adam_l1_l2_adam_metric", lambda ps: ft.ProxAdamW(ps, lr=0.05, l1=0.01, l2=0.1,
                                                           penalty_metric="adam")),
        ("adam_maxnorm_lasso", lambda ps: ft.ProxAdamW(ps, lr=0.05, weight_decay=0.1,
                                                       max_norm=0.3, group_lasso=0.1)),
    ]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,make", _optimizers(), ids=[n for n, _ in _optimizers()])
def test_optimizer_fast_path_matches_the_op_path_bit_for_bit(name, make, dtype):
    torch.manual_seed(4)
    fast_model = nn.Sequential(ft.DenseDropout(6, 8, p=0.2), ft.DropConnectLinear(8, 3, p=0.2))
    fast_model = fast_model.to(dtype)
    op_model = copy.deepcopy(fast_model)
    fast_opt, op_opt = make(fast_model.parameters()), make(op_model.parameters())
    for step in range(3):
        x = torch.randn(5, 6, dtype=dtype)
        for model, opt, op_path in ((fast_model, fast_opt, False), (op_model, op_opt, True)):
            opt.zero_grad()
            model(x).float().sum().backward()
            if op_path:
                with _OpPath():
                    opt.step()
            else:
                assert _fastreg_events(opt.step) == set()
        for a, b in zip(fast_model.parameters(), op_model.parameters(), strict=True):
            assert a.dtype == dtype and torch.equal(a, b), step
    fast_state, op_state = fast_opt.state_dict()["state"], op_opt.state_dict()["state"]
    assert fast_state.keys() == op_state.keys()
    for k in fast_state:
        for key, value in fast_state[k].items():
            assert torch.equal(value, op_state[k][key]), (k, key)


def test_optimizer_fast_path_bumps_the_version_counters():
    """As after torch.optim (and the op's ADInplaceOrView step): a backward through a graph
    that saved the weights before the step is refused."""
    for make in (lambda ps: ft.ProxSGD(ps, lr=0.1, momentum=0.9),
                 lambda ps: ft.ProxAdamW(ps, lr=0.1)):
        w = nn.Parameter(torch.randn(3, 3))
        opt = make([w])
        w.grad = torch.ones(3, 3)
        x = torch.randn(3, requires_grad=True)
        y = (w @ x).square().sum()  # saves w
        before = w._version
        opt.step()
        assert w._version > before
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.backward()


def test_the_op_path_runs_under_compile_jit_trace_and_fake_tensors():
    from torch._subclasses.fake_tensor import FakeTensorMode

    layer = ft.Dropout(0.5)
    traced = torch.jit.trace(layer, torch.ones(8), check_trace=False)
    first, second = traced(torch.ones(8)), traced(torch.ones(8))
    assert int(layer.offset) == 3 and not torch.equal(first, second)  # never a frozen mask
    with FakeTensorMode() as mode:
        fake = mode.from_tensor(torch.ones(2, 6))
        assert ft.dense_dropout(fake, mode.from_tensor(torch.ones(3, 6)), p=0.5,
                                seed=1).shape == (2, 3)
    torch._dynamo.reset()
    compiled = torch.compile(ft.Dropout(0.5), backend="eager", fullgraph=True)
    eager = copy.deepcopy(compiled._orig_mod)
    assert torch.equal(compiled(torch.ones(16)), eager(torch.ones(16)))
    assert int(compiled._orig_mod.offset) == int(eager.offset) == 1


def test_autocast_fast_path_matches_the_op_path():
    torch.manual_seed(5)
    # nn.Linear runs in bfloat16 under autocast, so the fastreg layers get bfloat16 input
    fast = nn.Sequential(nn.Linear(6, 6), ft.DenseDropout(6, 8, p=0.3, activation="gelu"),
                         ft.Dropout(0.2), ft.DropConnectLinear(8, 3, p=0.3))
    ops = copy.deepcopy(fast)
    x = torch.randn(4, 6)
    results = []
    for model, op_path in ((fast, False), (ops, True)):
        with torch.autocast("cpu", dtype=torch.bfloat16), \
                (_OpPath() if op_path else contextlib.nullcontext()):
            y = model(x)
        y.float().sum().backward()
        results.append([y.detach()] + [p.grad for p in model.parameters()])
    assert results[0][0].dtype == torch.bfloat16
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)
