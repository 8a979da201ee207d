"""fastreg.torch: autograd Functions, modules and optimizers against PyTorch itself.

Oracles: ``torch.autograd.gradcheck`` (float64 finite differences), PyTorch autograd through
the unfused composition with an explicit mask tensor built from ``fastreg.random_bits`` and the
threshold formula of docs/contract/random-stream.md, ``nn.Linear``'s initialization, and
``torch.optim.SGD`` / ``AdamW`` (the proximal optimizers with ``l1 = l2 = 0``).
"""

from __future__ import annotations

import copy
import math
import subprocess
import sys

import numpy as np
import pytest

import fastreg

torch = pytest.importorskip("torch")
ft = pytest.importorskip("fastreg.torch")
bridge = pytest.importorskip("fastreg.torch._bridge")
layer_ops = pytest.importorskip("fastreg.torch.layer_ops")
nn = torch.nn

SEED = 2**40 + 99
OFFSET = 5
F64 = torch.float64


@pytest.fixture(autouse=True)
def _use_backend(backend):
    with fastreg.use_backend(backend):
        yield


def _keep(shape, p, seed=SEED, offset=OFFSET, salt=0):
    """The keep-mask of docs/contract/random-stream.md, from the raw bits and the threshold
    formula."""
    threshold = min(math.floor(p * 2.0**32), 2**32 - 1)
    bits = fastreg.random_bits(shape, seed=seed, offset=offset, salt=salt)
    return torch.from_numpy(bits.astype(np.int64) >= threshold)


def _activation(name, z):
    return {
        "identity": lambda v: v,
        "relu": torch.relu,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "gelu": nn.functional.gelu,  # erf form by default
    }[name](z)


def _rand(*shape, dtype=F64, grad=True, seed=0):
    g = torch.Generator().manual_seed(seed + len(shape) + sum(shape))
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(grad)


# ------------------------------------------------------------------------------ import hygiene


def test_import_fastreg_does_not_import_torch():
    code = "import sys, fastreg; assert 'torch' not in sys.modules; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# ------------------------------------------------------------------------------ zero copy


def test_cpu_tensors_are_views_both_ways():
    t = torch.arange(12.0, dtype=F64).reshape(3, 4).T  # strided
    a = bridge.as_array(t)
    assert a.__array_interface__["data"][0] == t.data_ptr()
    assert a.strides == tuple(s * 8 for s in t.stride())
    back = bridge.as_tensor(a)
    assert back.data_ptr() == t.data_ptr() and torch.equal(back, t)


def test_forward_output_wraps_the_kernel_result_and_weight_is_not_copied(monkeypatch, backend):
    """numpy: the API gets a view of the weight and its result is returned as is; numba: the
    GEMM runs in torch and the Numba epilogue works in place on the returned buffer."""
    seen = {}
    if backend == "numba":
        twin = fastreg._backends.twin("dense", "numba")
        real = twin.dense_epilogue

        def spy(y, *args):
            seen["y"] = y
            return real(y, *args)

        monkeypatch.setattr(twin, "dense_epilogue", spy)
    else:
        real = layer_ops._api_dense_dropout

        def spy(x, W, b=None, **kw):
            seen["W"] = W
            seen["y"] = real(x, W, b, **kw)
            return seen["y"]

        monkeypatch.setattr(layer_ops, "_api_dense_dropout", spy)
    layer = ft.DenseDropout(5, 3, p=0.5, dtype=F64)
    y = layer(_rand(4, 5))
    if backend == "numpy":
        assert seen["W"].__array_interface__["data"][0] == layer.weight.data_ptr()
        assert seen["W"].shape == (5, 3)
    assert y.data_ptr() == seen["y"].__array_interface__["data"][0]


# ------------------------------------------------------------------------------ dropout


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 9)])
@pytest.mark.parametrize("p", [0.3, 1.0])
def test_dropout_matches_explicit_mask_and_autograd(shape, p):
    x = _rand(*shape)
    keep = _keep(shape, p)
    y = ft.dropout(x, p, seed=SEED, offset=OFFSET)
    expected = torch.where(keep, x.detach() / (1 - p), torch.zeros((), dtype=F64))
    torch.testing.assert_close(y.detach(), expected, rtol=1e-12, atol=0)
    dy = _rand(*shape, grad=False, seed=1)
    y.backward(dy)
    torch.testing.assert_close(x.grad, torch.where(keep, dy / (1 - p), 0.0), rtol=1e-12, atol=0)


def test_dropout_gradcheck_and_noise_shape():
    x = _rand(4, 6)
    assert torch.autograd.gradcheck(lambda v: ft.dropout(v, 0.4, seed=SEED, offset=3), (x,))
    rows = ft.dropout(x, 0.5, seed=SEED, noise_shape=(4, 1)).detach()
    keep = _keep((4, 1), 0.5, offset=0)
    torch.testing.assert_close(rows, torch.where(keep, 2 * x.detach(), 0.0))
    assert torch.autograd.gradcheck(
        lambda v: ft.dropout(v, 0.5, seed=SEED, noise_shape=(4, 1)), (x,)
    )


def test_dropout_identity_cases_return_the_input():
    x = _rand(3)
    assert ft.dropout(x, 0.0, seed=1) is x
    assert ft.dropout(x, 0.7, seed=1, training=False) is x


def test_dropout_float32_and_strided_input():
    base = _rand(6, 8, dtype=torch.float32, grad=False)
    x = base[::2, 1::3]  # a strided view
    y = ft.dropout(x, 0.5, seed=SEED, offset=OFFSET)
    keep = _keep(tuple(x.shape), 0.5)
    torch.testing.assert_close(y, torch.where(keep, 2 * x, 0.0), rtol=1e-6, atol=0)


# ------------------------------------------------------------------------------ dense_dropout

ACTIVATIONS = ["identity", "relu", "tanh", "sigmoid", "gelu"]


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_dropout_gradcheck(activation):
    x, w, b = _rand(3, 4), _rand(5, 4), _rand(5)
    assert torch.autograd.gradcheck(
        lambda x, w, b: ft.dense_dropout(x, w, b, p=0.3, seed=SEED, offset=OFFSET,
                                         activation=activation),
        (x, w, b),
    )


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("lead", [(1,), (7,), (2, 3)])
def test_dense_dropout_matches_torch_composition(activation, lead):
    k, n, p = 6, 9, 0.4
    x, w, b = _rand(*lead, k), _rand(n, k), _rand(n)
    xr, wr, br = (t.detach().clone().requires_grad_() for t in (x, w, b))
    y = ft.dense_dropout(x, w, b, p=p, seed=SEED, offset=OFFSET, activation=activation)
    keep = _keep((*lead, n), p)
    expected = torch.where(keep, _activation(activation, nn.functional.linear(xr, wr, br))
                           / (1 - p), torch.zeros((), dtype=F64))
    torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-12)
    dy = _rand(*lead, n, grad=False, seed=3)
    y.backward(dy)
    expected.backward(dy)
    for got, want in ((x.grad, xr.grad), (w.grad, wr.grad), (b.grad, br.grad)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_dense_dropout_without_bias_and_eval():
    x, w = _rand(4, 3), _rand(2, 3)
    assert torch.autograd.gradcheck(
        lambda x, w: ft.dense_dropout(x, w, p=0.5, seed=1, activation="tanh"), (x, w)
    )
    y = ft.dense_dropout(x, w, p=0.5, seed=1, activation="tanh", training=False)
    torch.testing.assert_close(y, torch.tanh(x @ w.T), rtol=1e-12, atol=1e-14)


def test_dense_dropout_input_without_grad_gets_none():
    x, w = _rand(4, 3, grad=False), _rand(2, 3)
    ft.dense_dropout(x, w, p=0.5, seed=1).sum().backward()
    assert x.grad is None and w.grad is not None


# ------------------------------------------------------------------------------ dropconnect


@pytest.mark.parametrize("per_example", [False, True])
def test_dropconnect_gradcheck(per_example):
    x, w, b = _rand(3, 4), _rand(5, 4), _rand(5)
    assert torch.autograd.gradcheck(
        lambda x, w, b: ft.dropconnect(x, w, b, p=0.4, seed=SEED, offset=OFFSET,
                                       per_example=per_example),
        (x, w, b),
    )


@pytest.mark.parametrize("per_example", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 3, 7), (4, 9, 2)])
def test_dropconnect_masks_in_torch_layout(per_example, shape):
    """Weight ``weight[n, k]`` uses stream element ``k*N + n`` (``(e*K + k)*N + n`` per
    example): the masks of fastreg.dropconnect on ``W = weight.T``."""
    bsz, k, n = shape
    p = 0.5
    x, w = _rand(bsz, k), _rand(n, k)
    y = ft.dropconnect(x, w, p=p, seed=SEED, offset=OFFSET, per_example=per_example)
    if per_example:
        keep = _keep((bsz, k, n), p, salt=1).transpose(1, 2)  # (B, N, K), torch layout
        masked = torch.where(keep, w.detach() / (1 - p), 0.0)
        expected = torch.einsum("bk,bnk->bn", x.detach(), masked)
    else:
        keep = _keep((k, n), p, salt=1).T
        expected = x.detach() @ torch.where(keep, w.detach() / (1 - p), 0.0).T
    torch.testing.assert_close(y.detach(), expected, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------ modules


def test_dense_dropout_module_init_layout_and_modes():
    torch.manual_seed(3)
    ref = nn.Linear(7, 4)
    torch.manual_seed(3)
    layer = ft.DenseDropout(7, 4, p=0.5, activation="sigmoid")
    assert layer.weight.shape == (4, 7) and layer.bias.shape == (4,)
    assert torch.equal(layer.weight, ref.weight) and torch.equal(layer.bias, ref.bias)
    x = torch.randn(6, 7)
    seed = int(layer.seed) & (2**64 - 1)
    y = layer(x)
    keep = _keep((6, 4), 0.5, seed=seed, offset=0)
    torch.testing.assert_close(y, torch.where(keep, 2 * torch.sigmoid(ref(x)), 0.0))
    assert int(layer.offset) == 1
    layer.eval()
    torch.testing.assert_close(layer(x), torch.sigmoid(ref(x)))
    assert int(layer.offset) == 1  # eval draws nothing


def test_offset_advances_and_manual_seed_reproduces():
    def run():
        torch.manual_seed(11)
        layer = ft.DenseDropout(5, 8, p=0.5, dtype=F64)
        x = torch.ones(3, 5, dtype=F64)
        return [layer(x).detach() != 0 for _ in range(3)]

    first, again = run(), run()
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], first[1])  # a fresh mask per call


def test_layers_draw_distinct_seeds_and_bias_false():
    a, b = ft.Dropout(0.5), ft.Dropout(0.5)
    assert int(a.seed) != int(b.seed)
    layer = ft.DropConnectLinear(3, 2, p=0.5, bias=False)
    assert layer.bias is None and "bias" not in dict(layer.named_parameters())


def test_state_dict_round_trips_the_stream():
    torch.manual_seed(0)
    layer = ft.DenseDropout(4, 6, p=0.5, dtype=F64)
    x = torch.randn(5, 4, dtype=F64)
    for _ in range(3):
        layer(x)
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    assert int(state["offset"]) == 3
    expected = layer(x)
    torch.manual_seed(123)  # a different seed: the state must override it
    other = ft.DenseDropout(4, 6, p=0.5, dtype=F64)
    other.load_state_dict(state)
    assert torch.equal(other(x), expected)
    assert int(other.offset) == 4


def test_dropout_module():
    layer = ft.Dropout(0.25)
    x = torch.randn(40, 3, dtype=F64)
    seed = int(layer.seed) & (2**64 - 1)
    for offset in range(2):
        keep = _keep((40, 3), 0.25, seed=seed, offset=offset)
        torch.testing.assert_close(layer(x), torch.where(keep, x / 0.75, 0.0))
    assert layer.eval()(x) is x


@pytest.mark.parametrize("per_example", [False, True])
def test_dropconnect_module(per_example):
    torch.manual_seed(5)
    ref = nn.Linear(6, 3, dtype=F64)
    torch.manual_seed(5)
    layer = ft.DropConnectLinear(6, 3, p=0.5, per_example=per_example, dtype=F64)
    assert torch.equal(layer.weight, ref.weight)
    x = torch.randn(4, 6, dtype=F64)
    seed = int(layer.seed) & (2**64 - 1)
    y = layer(x)
    expected = ft.dropconnect(x, ref.weight, ref.bias, p=0.5, seed=seed, offset=0,
                              per_example=per_example)
    torch.testing.assert_close(y, expected)
    layer.eval()
    torch.testing.assert_close(layer(x), ref(x))


def test_module_argument_errors():
    with pytest.raises(ValueError, match="p must be in"):
        ft.Dropout(1.5)
    with pytest.raises(ValueError, match="activation"):
        ft.DenseDropout(2, 2, activation="swish")
    with pytest.raises(TypeError, match="per_example"):
        ft.DropConnectLinear(2, 2, per_example=1)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.complex64, torch.bool])
def test_dropout_refuses_non_float_tensors_before_the_offset_advances(dtype):
    # SPEC 4/8: integer inputs raise TypeError; a layer raises before its offset advances.
    x = torch.ones(8, dtype=dtype)
    layer = ft.Dropout(0.5)
    with pytest.raises(TypeError, match="x must be a float16"):
        layer(x)
    assert int(layer.offset) == 0
    with pytest.raises(TypeError, match="x must be a float16"):
        ft.dropout(x, 0.5, seed=SEED, offset=OFFSET)
    with pytest.raises(TypeError, match="x must be a float16"):
        torch.ops.fastreg.dropout(x, 0.5, torch.tensor(SEED), torch.tensor(OFFSET), None)


def test_dropout_module_bad_noise_shape_raises_before_the_offset_advances():
    layer = ft.Dropout(0.5, noise_shape=(3, 1))
    with pytest.raises(ValueError, match="noise_shape"):
        layer(torch.ones(4, 5, dtype=F64))
    assert int(layer.offset) == 0


def test_rank_seed():
    assert ft.rank_seed(SEED, 0) == SEED
    seeds = {ft.rank_seed(SEED, r) for r in range(64)}
    assert len(seeds) == 64 and all(0 <= s < 2**64 for s in seeds)
    assert ft.rank_seed(SEED) == SEED  # no process group: rank 0
    with pytest.raises(ValueError, match="rank"):
        ft.rank_seed(1, -1)


# ------------------------------------------------------------------------------ optimizers


def _params(seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    shapes = [(5, 3), (5,), (2, 5), (1, 1)]
    return [nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in shapes]


def _grads(params, step):
    g = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)


def _train(opt, params, steps=4):
    for step in range(steps):
        _grads(params, step)
        opt.step()


@pytest.mark.parametrize(
    "options",
    [{}, {"momentum": 0.9}, {"momentum": 0.8, "nesterov": True, "weight_decay": 0.1},
     {"weight_decay": 0.05}],
)
def test_prox_sgd_is_torch_sgd_without_penalties(options):
    ours, theirs = _params(), _params()
    _train(ft.ProxSGD(ours, lr=0.1, **options), ours)
    _train(torch.optim.SGD(theirs, lr=0.1, **options), theirs)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_prox_adamw_is_torch_adamw_without_penalties(dtype):
    ours, theirs = _params(dtype=dtype), _params(dtype=dtype)
    _train(ft.ProxAdamW(ours, lr=0.05, weight_decay=0.1), ours)
    _train(torch.optim.AdamW(theirs, lr=0.05, weight_decay=0.1), theirs)
    tol = 1e-10 if dtype == F64 else 1e-5
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_prox_sgd_l1_l2_formula_and_exact_zeros():
    w = nn.Parameter(torch.tensor([0.5, -0.05, 2.0, -3.0], dtype=F64))
    grad = torch.tensor([0.1, 0.0, -1.0, 0.5], dtype=F64)
    w.grad = grad.clone()
    lr, l1, l2 = 0.1, 1.0, 0.5
    v = w.detach() - lr * grad
    expected = torch.sign(v) * torch.clamp(v.abs() - lr * l1, min=0) / (1 + 2 * lr * l2)
    ft.ProxSGD([w], lr=lr, l1=l1, l2=l2).step()
    torch.testing.assert_close(w.detach(), expected, rtol=1e-12, atol=0)
    assert w[1].item() == 0.0 and not math.copysign(1, w[1].item()) < 0


def test_param_groups_and_missing_grads():
    a, b, c = _params()[:3]
    opt = ft.ProxSGD([{"params": [a], "l1": 100.0}, {"params": [b, c]}], lr=0.1)
    before_c = c.detach().clone()
    a.grad, b.grad = torch.zeros_like(a), torch.ones_like(b)
    opt.step()
    assert torch.count_nonzero(a) == 0  # the big L1 of group 0 zeroes everything
    assert torch.equal(c, before_c)  # no grad: untouched
    assert opt.param_groups[1]["l1"] == 0.0


@pytest.mark.parametrize("cls", [ft.ProxSGD, ft.ProxAdamW])
def test_state_dict_round_trips(cls):
    options = {"lr": 0.05, "momentum": 0.9} if cls is ft.ProxSGD else {"lr": 0.05}
    ours = _params()
    opt = cls(ours, l1=0.01, **options)
    _train(opt, ours, steps=3)
    saved_params = [p.detach().clone() for p in ours]
    saved_state = copy.deepcopy(opt.state_dict())  # state_dict holds references
    _grads(ours, 50)
    opt.step()
    expected = [p.detach().clone() for p in ours]

    restored = [nn.Parameter(p.clone()) for p in saved_params]
    opt2 = cls(restored, l1=0.01, **options)
    opt2.load_state_dict(saved_state)
    _grads(restored, 50)
    opt2.step()
    for got, want in zip(restored, expected, strict=True):
        torch.testing.assert_close(got.detach(), want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cls", [ft.ProxSGD, ft.ProxAdamW])
def test_group_lasso_and_max_norm_on_rows(cls):
    """axis=1 on a (out, in) weight: row j (unit j's incoming weights) is a group."""
    w = nn.Parameter(torch.tensor([[3.0, 4.0], [0.03, 0.04], [0.3, 0.4]], dtype=F64))
    bias = nn.Parameter(torch.tensor([0.01, 0.01, 0.01], dtype=F64))
    lr, lam = 0.1, 1.0
    before = w.detach().clone()
    for p in (w, bias):
        p.grad = torch.zeros_like(p)
    opt = cls([w, bias], lr=lr, group_lasso=lam, max_norm=2.0, axis=1,
              **({"weight_decay": 0.0} if cls is ft.ProxAdamW else {}))
    opt.step()
    norms = before.norm(dim=1, keepdim=True)
    expected = before * torch.clamp(1 - lr * lam / norms, min=0)
    expected = expected * torch.clamp(2.0 / expected.norm(dim=1, keepdim=True), max=1.0)
    torch.testing.assert_close(w.detach(), expected, rtol=1e-12, atol=0)
    assert torch.count_nonzero(w[1]) == 0 and w[2].norm() > 0
    assert torch.equal(bias.detach(), torch.full((3,), 0.01, dtype=F64))  # biases skipped


@pytest.mark.parametrize("cls", [ft.ProxSGD, ft.ProxAdamW])
def test_step_is_visible_to_autograd(cls):
    """Like torch.optim: a graph that saved the old weights refuses to backpropagate."""
    w = nn.Parameter(torch.ones(3, dtype=F64))
    w.grad = torch.ones(3, dtype=F64)
    stale = (w * w).sum()
    cls([w], lr=0.1).step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        stale.backward()


def test_optimizer_argument_errors():
    w = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="lr"):
        ft.ProxSGD(w, lr=-1.0)
    with pytest.raises(ValueError, match="nesterov"):
        ft.ProxSGD(w, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta2"):
        ft.ProxAdamW(w, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="group_lasso"):
        ft.ProxSGD(w, group_lasso=-0.1)


def test_mlp_trains_with_fastreg_layers():
    """A few steps of the example's model on a separable problem lower the loss."""
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    t = (x[:, 0] > 0).long()
    model = nn.Sequential(ft.DenseDropout(8, 32, p=0.2), ft.DropConnectLinear(32, 2, p=0.2))
    opt = ft.ProxSGD(model.parameters(), lr=0.2, momentum=0.9, l1=1e-4)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), t)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# ------------------------------------------------------------------ beside PyTorch's thread pool
@pytest.mark.parametrize(("torch_threads", "expected"), [(1, 4), (2, 3), (4, 1), (9, 1)])
def test_kernels_use_the_cores_pytorch_workers_leave(torch_threads, expected):
    before = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        with fastreg.num_threads(4):
            with bridge.on_device(torch.zeros(1)):
                assert fastreg.get_num_threads() == expected
            assert fastreg.get_num_threads() == 4  # restored after the op
    finally:
        torch.set_num_threads(before)


def test_an_op_runs_its_kernel_with_the_threads_beside_pytorch(monkeypatch, backend):
    if backend != "numba":
        pytest.skip("the numpy twins run on the calling thread")
    from fastreg import _runtime

    seen = []
    real = _runtime.parallel_for

    def recording(*args, **kwargs):
        seen.append(fastreg.get_num_threads())
        return real(*args, **kwargs)

    # the dropout twin imported parallel_for by name
    import fastreg._kernels.dropout.cpu_numba as twin

    monkeypatch.setattr(twin, "parallel_for", recording)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with fastreg.num_threads(3):
            ft.functional.dropout(torch.ones(1 << 18), 0.5, seed=1, offset=0, training=True)
    finally:
        torch.set_num_threads(before)
    assert seen and set(seen) == {2}


# -------------------------------------------------------- 16-bit: the storage type's scale
def _storage_scale(p, dtype):
    """1/(1-p) in float64, cast once to the storage type, widened to float32."""
    return torch.tensor(1.0 / (1.0 - p), dtype=torch.float64).to(dtype).float()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16bit_dropout_equals_the_numpy_api_and_the_formula(dtype):
    x = _rand(40, 33, dtype=torch.float32, grad=False).to(dtype)
    p = 0.3
    y = ft.functional.dropout(x, p, seed=SEED, offset=OFFSET)
    want = torch.where(_keep((40, 33), p), x.float() * _storage_scale(p, dtype), 0.0).to(dtype)
    assert y.dtype == dtype and torch.equal(y, want)
    array = bridge.as_array(x)  # the storage bits, as float16 or ml_dtypes.bfloat16
    api = fastreg.dropout(array, p, seed=SEED, offset=OFFSET)
    np.testing.assert_array_equal(bridge.as_array(y).view(np.int16), api.view(np.int16))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16bit_dense_and_dropconnect_scale_by_the_storage_type(dtype):
    p = 0.3
    scale = _storage_scale(p, dtype)
    x = _rand(24, 16, dtype=torch.float32, grad=False).to(dtype)
    w = (_rand(12, 16, dtype=torch.float32, grad=False) / 4).to(dtype)
    b = _rand(12, dtype=torch.float32, grad=False).to(dtype)
    # the same float32 GEMM as the layer's (torch.mm of the widened inputs), then the epilogue
    z = torch.mm(x.float(), w.float().t()) + b.float()
    want = torch.where(_keep((24, 12), p), torch.relu(z) * scale, 0.0).to(dtype)
    y = ft.functional.dense_dropout(x, w, b, p=p, seed=SEED, offset=OFFSET, activation="relu")
    assert torch.equal(y, want)
    keep_kn = _keep((16, 12), p, salt=1)  # DropConnect masks weight.T, element k*N + n
    masked = torch.where(keep_kn, w.float().t().contiguous() * scale, 0.0)
    want = torch.addmm(b.float(), x.float(), masked).to(dtype)
    y = ft.functional.dropconnect(x, w, b, p=p, seed=SEED, offset=OFFSET)
    assert torch.equal(y, want)
