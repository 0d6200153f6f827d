"""The ops, layers and optimizers PyTorch programs need beyond the core set, against PyTorch:
forward values, dtypes and gradients on fresh random inputs (float64 and float32), then
gradcheck, with the helpers of test_ops_torch."""
import numpy as np
import pytest
import torch

import mytensor as mt
from test_ops_torch import BOX, DEVICES, Case, compare, draw

BINARY_SAME = [[(3, 4), (3, 4)], [(2, 3, 5), (2, 3, 5)]]
IDX_UNIQUE = [[0, 2], [1, 3], [3, 0]]  # per row distinct: scatter's result is then defined
IDX_REPEAT = [[0, 0], [1, 1], [3, 0]]


def idx(L, x, values):
    return L.tensor(values, device=x.device)


def NF(L):
    return L.nn.functional


CASES = [
    Case("tril", lambda L, x: (x.tril(), L.tril(x, 1), x.triu(-1), L.triu(x)), [(3, 4), (2, 3, 5), (1, 1)]),
    Case("sort", lambda L, x: (*x.sort(-1), *L.sort(x, 0, descending=True)), BOX),
    Case("argsort", lambda L, x: (x.argsort(), L.argsort(x, 1, descending=True)), BOX, grad=False),
    Case("topk", lambda L, x: (*x.topk(2), *L.topk(x, 1, dim=0, largest=False)), [(2, 3, 4), (3, 5), (4, 2)]),
    Case("scatter", lambda L, x, s: x.scatter(1, idx(L, x, IDX_UNIQUE), s), [[(3, 4), (3, 2)], [(3, 5), (3, 2)]]),
    Case("scatter_value", lambda L, x: L.scatter(x, 1, idx(L, x, IDX_UNIQUE), 1.5), [(3, 4)]),
    Case("scatter_add", lambda L, x, s: x.scatter_add(1, idx(L, x, IDX_REPEAT), s), [[(3, 4), (3, 2)]]),
    Case("scatter_inplace", lambda L, x, s: (x * 1).scatter_(1, idx(L, x, IDX_UNIQUE), s), [[(3, 4), (3, 2)]],
         layouts=("contiguous",)),
    Case("einsum_mm", lambda L, a, b: L.einsum("ij,jk->ik", a, b), [[(2, 3), (3, 4)]]),
    Case("einsum_batched", lambda L, a, b: L.einsum("bhqd,bhkd->bhqk", a, b), [[(2, 3, 4, 5), (2, 3, 6, 5)]]),
    Case("einsum_dot_sum", lambda L, a, b: (L.einsum("i,i->", a, b), L.einsum("ij->j", L.outer(a, b))),
         [[(4,), (4,)]]),
    Case("einsum_ellipsis", lambda L, a, b: L.einsum("...ij,...jk->...ik", a, b), [[(2, 3, 4), (2, 4, 5)]]),
    Case("einsum_implicit", lambda L, a, b: L.einsum("ij,kj", a, b), [[(2, 3), (4, 3)]]),
    Case("einsum_list_only_a", lambda L, a, b: L.einsum("ij,j->i", [a, b]) + L.einsum("ik->i", a[:, :2]),
         [[(3, 4), (4,)]]),
    Case("std_var_mean", lambda L, x: (*L.std_mean(x, 1), *L.var_mean(x, (0, 2), keepdim=True)), BOX[:1] + BOX[3:]),
    Case("softmax_methods", lambda L, x: (x.softmax(-1), x.log_softmax(1), L.softmax(x, 0)), BOX),
    Case("layer_norm", lambda L, x, w, b: NF(L).layer_norm(x, (4,), w, b), [[(2, 3, 4), (4,), (4,)],
                                                                           [(5, 4), (4,), (4,)]]),
    Case("layer_norm_2d_plain", lambda L, x: NF(L).layer_norm(x, x.shape[1:], eps=1e-3), [(2, 3, 4), (3, 5)]),
    Case("embedding", lambda L, w: NF(L).embedding(idx(L, w, [[1, 4, 1], [0, 4, 2]]), w), [(5, 3)],
         layouts=("contiguous",)),
    Case("embedding_padding", lambda L, w: NF(L).embedding(idx(L, w, [3, 0, 3, 1]), w, padding_idx=3), [(5, 2)],
         layouts=("contiguous",)),
    Case("sdpa", lambda L, q, k, v: NF(L).scaled_dot_product_attention(q, k, v),
         [[(2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 2)], [(4, 3), (5, 3), (5, 2)]]),
    Case("sdpa_causal", lambda L, q, k, v: NF(L).scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3),
         [[(2, 5, 4), (2, 5, 4), (2, 5, 3)]]),
    Case("sdpa_masks", lambda L, q, k, v: (
        NF(L).scaled_dot_product_attention(q, k, v, attn_mask=q[..., :1] * k[..., 0].unsqueeze(-2) > -0.5),
        NF(L).scaled_dot_product_attention(q, k, v, attn_mask=L.tril(q[..., :1] * k[..., 0].unsqueeze(-2))),
        NF(L).scaled_dot_product_attention(q, k, v, attn_mask=L.arange(4, device=q.device).reshape(4, 1)
                                           + L.arange(5, device=q.device) < 2)),
        [[(2, 4, 3), (2, 5, 3), (2, 5, 2)]]),  # the last mask leaves queries 2 and 3 nothing to attend to
]

CONV_T = [  # (input shape, weight shape), stride, padding, output_padding, dilation
    ([(2, 3, 4, 5), (3, 2, 3, 3), (2,)], 2, 1, 1, 1), ([(1, 2, 3, 3), (2, 3, 4, 2), (3,)], (2, 1), (1, 0), 0, 1),
    ([(2, 1, 3, 4), (1, 2, 3, 3), (2,)], 1, 0, 0, 2)]
CASES += [
    Case("rounding", lambda L, x: (x.floor(), L.ceil(x), x.round(), L.trunc(x), L.round(x, decimals=1)),
         [(7,), (3, 1, 4)]),
    Case("log1p_expm1", lambda L, x: (x.log1p(), L.expm1(x), L.log2(x), x.log10()), [(7,), (3, 1, 4)], "pos"),
    Case("repeat_tile", lambda L, x: (x.repeat(2, 1, 3), x.repeat(2, 1, 1, 2), L.tile(x, (2,)), x.tile((2, 1, 1, 1))),
         BOX),
    Case("repeat_interleave", lambda L, x: (x.repeat_interleave(2, dim=1), L.repeat_interleave(x, 3)), BOX),
    Case("roll", lambda L, x: (x.roll(1, 0), L.roll(x, (2, -1), (1, 2)), x.roll(3)), BOX),
    Case("unbind_movedim", lambda L, x: (*x.unbind(1), L.movedim(x, 0, -1), x.movedim((0, 1), (2, 0)),
                                         L.swapaxes(x, 0, 2)), BOX),
    Case("norm", lambda L, x: (x.norm(), L.norm(x, dim=1), x.norm(p=1, dim=(0, 2), keepdim=True),
                               x.norm(float("inf"), dim=-1), x.norm(3, dim=0)), BOX, "nonzero"),
    Case("lerp", lambda L, a, b: (L.lerp(a, b, 0.3), a.lerp(b, b.sigmoid())), BINARY_SAME),
    Case("masked_select_clip", lambda L, x: (L.masked_select(x, x > 0) * 2, L.clip(x, -0.5, 0.5)), [(7,), (3, 4)]),
    Case("softplus_elu", lambda L, x: (NF(L).softplus(x), NF(L).softplus(x, beta=2, threshold=1), NF(L).elu(x, 0.5),
                                       NF(L).logsigmoid(x)), [(7,), (3, 1, 4)]),
    Case("l1_losses", lambda L, a, b: (NF(L).l1_loss(a, b), NF(L).l1_loss(a, b, reduction="sum"),
                                       NF(L).l1_loss(a, b, weight=b.abs()), NF(L).huber_loss(a, b, weight=a.abs()),
                                       NF(L).smooth_l1_loss(a, b, beta=0.5), NF(L).huber_loss(a, b, delta=0.7,
                                                                                              reduction="none")),
         BINARY_SAME),
    Case("normalize_cosine", lambda L, a, b: (NF(L).normalize(a), NF(L).normalize(a, p=1, dim=0),
                                              NF(L).cosine_similarity(a, b)), BINARY_SAME, "nonzero"),
    Case("interpolate", lambda L, x: (NF(L).interpolate(x, scale_factor=2), NF(L).interpolate(x, size=(5, 7)),
                                      NF(L).interpolate(x, scale_factor=(1, 3))), [(2, 3, 3, 4)]),
    Case("group_norm", lambda L, x, w, b: NF(L).group_norm(x, 2, w, b), [[(2, 4, 3, 3), (4,), (4,)],
                                                                         [(3, 6, 5), (6,), (6,)]]),
    Case("group_norm_plain", lambda L, x: NF(L).group_norm(x, 4, eps=1e-3), [(2, 4, 5)]),
    Case("conv1d", lambda L, x, w, b: (NF(L).conv1d(x, w, b, stride=2, padding=1), NF(L).conv1d(x, w)),
         [[(2, 3, 7), (4, 3, 3), (4,)]], layouts=("contiguous",)),
    Case("conv1d_groups", lambda L, x, w, b: NF(L).conv1d(x, w, b, dilation=2, groups=2),
         [[(2, 4, 8), (6, 2, 3), (6,)]], layouts=("contiguous",)),
    Case("pool1d", lambda L, x: (NF(L).max_pool1d(x, 3, 2, 1), NF(L).avg_pool1d(x, 2), NF(L).max_pool1d(x, 2)),
         [(2, 3, 8)], layouts=("contiguous",)),
] + [
    Case(f"conv_transpose2d_{i}", lambda L, x, w, b, s=s, p=p, op=op, d=d: NF(L).conv_transpose2d(
        x, w, b, stride=s, padding=p, output_padding=op, dilation=d), [shapes], layouts=("contiguous",))
    for i, (shapes, s, p, op, d) in enumerate(CONV_T)
]


@pytest.mark.filterwarnings("ignore:.*degrees of freedom")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_matches_torch(case, dtype, device):
    compare(case, dtype, device, seed=np.random.SeedSequence().entropy)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", [c for c in CASES if c.grad and c.name != "embedding_padding"], ids=repr)
def test_gradcheck(case, device):
    rng = np.random.default_rng()
    shapes = min(case.shapes, key=lambda s: sum(int(np.prod(x)) for x in s))
    xs = [mt.tensor(draw(rng, s, d), dtype=mt.float64, device=device, requires_grad=True)
          for s, d in zip(shapes, case.domain)]
    assert mt.gradcheck(lambda *a: case.fn(mt, *a), xs), f"{case.name} {shapes}"


def test_new_tensor_methods_take_dtype_and_device_from_self():
    x = mt.ones(2, dtype=mt.float64)
    t = torch.ones(2, dtype=torch.float64)
    for fn in (lambda a: a.new_zeros(3, 2), lambda a: a.new_ones((2,)), lambda a: a.new_full((2, 2), 7.0),
               lambda a: a.new_empty(4).zero_(), lambda a: a.new_tensor([1, 2]),
               lambda a: a.new_zeros(2, dtype=a.dtype)):
        got, want = fn(x), fn(t)
        assert got.dtype.name == str(want.dtype)[6:] and np.array_equal(got.numpy(), want.numpy())


def test_multinomial_draws_from_the_distribution():
    mt.manual_seed(0)
    p = mt.tensor([[0.1, 0.0, 0.6, 0.3], [0.25, 0.25, 0.25, 0.25]])
    draws = mt.multinomial(p, 4000, replacement=True)
    assert draws.shape == (2, 4000) and draws.dtype == mt.int64
    freq = np.stack([np.bincount(r, minlength=4) / 4000 for r in draws.numpy()])
    np.testing.assert_allclose(freq, p.numpy(), atol=0.03)
    assert not (draws[0] == 1).any()
    no_rep = mt.multinomial(p, 3)
    assert all(len(set(r)) == 3 for r in no_rep.tolist()) and 1 not in no_rep.tolist()[0]
    assert mt.multinomial(mt.tensor([0.0, 2.0, 0.0]), 1).tolist() == [1]  # unnormalised weights, as in PyTorch
    firsts = np.bincount(mt.multinomial(p[:1].expand(3000, 4), 1).numpy().ravel(), minlength=4) / 3000
    np.testing.assert_allclose(firsts, p.numpy()[0], atol=0.03)
    assert p.multinomial(2).shape == (2, 2)
    with pytest.raises(ValueError, match="without replacement"):
        mt.multinomial(p, 5)
    with pytest.raises(ValueError, match="non-negative"):
        mt.multinomial(mt.tensor([0.5, -0.1]), 1)


def test_sort_is_stable_and_topk_errors():
    x = mt.tensor([2.0, 1.0, 2.0, 1.0, 3.0])
    assert x.sort().indices.tolist() == [1, 3, 0, 2, 4]
    assert x.sort(descending=True).indices.tolist() == [4, 0, 2, 1, 3]
    assert mt.tensor([3, 1, 2]).sort().values.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="out of range"):
        x.topk(6)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        mt.tril(x)


# ------------------------------------------------------------------ layers
def test_embedding_layer():
    emb = mt.nn.Embedding(6, 3, padding_idx=-1)
    assert emb.padding_idx == 5 and emb.weight[5].tolist() == [0.0, 0.0, 0.0]
    i = mt.tensor([[5, 2], [2, 0]])
    out = emb(i)
    np.testing.assert_array_equal(out.detach().numpy(), emb.weight.detach().numpy()[i.numpy()])
    out.sum().backward()
    assert emb.weight.grad[2].tolist() == [2.0] * 3 and emb.weight.grad[5].tolist() == [0.0] * 3
    pre = mt.nn.Embedding.from_pretrained(mt.eye(3))
    assert not pre.weight.requires_grad and pre(mt.tensor([1])).tolist() == [[0.0, 1.0, 0.0]]
    with pytest.raises(TypeError, match="integer tensor"):
        emb(mt.ones(2))


def test_layer_norm_and_dropout2d_layers_match_torch():
    rng = np.random.default_rng()
    ln, tln = mt.nn.LayerNorm((3, 4)), torch.nn.LayerNorm((3, 4))
    assert [n for n, _ in ln.named_parameters()] == [n for n, _ in tln.named_parameters()] == ["weight", "bias"]
    w, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    with mt.no_grad():
        ln.weight.copy_(mt.tensor(w, dtype=mt.float32))
        ln.bias.copy_(mt.tensor(b, dtype=mt.float32))
    with torch.no_grad():
        tln.weight.copy_(torch.tensor(w))
        tln.bias.copy_(torch.tensor(b))
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(ln(mt.tensor(x)).detach().numpy(), tln(torch.tensor(x)).detach().numpy(), atol=1e-5)
    assert mt.nn.LayerNorm(4, elementwise_affine=False).weight is None
    drop = mt.nn.Dropout2d(0.5)
    y = drop(mt.ones(8, 16, 3, 3))
    per_channel = y.numpy().reshape(8, 16, 9)
    assert set(np.unique(per_channel)) <= {0.0, 2.0} and (per_channel.min(-1) == per_channel.max(-1)).all()
    assert 0.2 < (per_channel[..., 0] == 0).mean() < 0.8
    drop.eval()
    assert (drop(mt.ones(2, 3, 2, 2)) == 1).all()


def test_clip_grad_norm_matches_torch():
    rng = np.random.default_rng()
    shapes = [(3, 4), (4,), (2, 2)]
    grads = [rng.standard_normal(s) * 3 for s in shapes]
    for norm_type, max_norm in ((2.0, 1.0), (1.0, 100.0), (float("inf"), 0.5)):
        ps = [mt.zeros(s, dtype=mt.float64, requires_grad=True) for s in shapes]
        tps = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in shapes]
        for p, tp, g in zip(ps, tps, grads):
            p.grad, tp.grad = mt.tensor(g), torch.tensor(g)
        total = mt.nn.utils.clip_grad_norm_(ps, max_norm, norm_type)
        ttotal = torch.nn.utils.clip_grad_norm_(tps, max_norm, norm_type)
        np.testing.assert_allclose(total.item(), ttotal.item(), rtol=1e-12)
        for p, tp in zip(ps, tps):
            np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-12)
    p = mt.zeros(3, requires_grad=True)
    p.grad = mt.tensor([-3.0, 0.5, 2.0])
    mt.nn.utils.clip_grad_value_([p], 1.0)
    assert p.grad.tolist() == [-1.0, 0.5, 1.0]
    v = mt.nn.utils.parameters_to_vector([mt.ones(2, 2), mt.zeros(3)])
    assert v.tolist() == [1, 1, 1, 1, 0, 0, 0]


# --------------------------------------------------------------- optimizers
OPTIMIZERS = [
    ("RMSprop", dict(lr=0.01)), ("RMSprop", dict(lr=0.02, alpha=0.9, momentum=0.8, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
    ("Adagrad", dict(lr=0.1)), ("Adagrad", dict(lr=0.05, lr_decay=0.1, weight_decay=0.2,
                                                initial_accumulator_value=0.3)),
    ("Adadelta", dict()), ("Adadelta", dict(lr=0.5, rho=0.8, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, maximize=True)),
]


@pytest.mark.parametrize("name,kwargs", OPTIMIZERS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OPTIMIZERS)])
def test_optimizers_match_torch_step_for_step(name, kwargs):
    rng = np.random.default_rng()
    init = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    ps = [mt.tensor(a, requires_grad=True) for a in init]
    tps = [torch.tensor(a, requires_grad=True) for a in init]
    opt, topt = getattr(mt.optim, name)(ps, **kwargs), getattr(torch.optim, name)(tps, **kwargs)
    for step in range(6):
        grads = [rng.standard_normal(a.shape) for a in init]
        for p, tp, g in zip(ps, tps, grads):
            p.grad, tp.grad = mt.tensor(g), torch.tensor(g)
        if step == 3:  # a changed learning rate takes effect, as in PyTorch
            for group in opt.param_groups + topt.param_groups:
                group["lr"] *= 0.5
        opt.step()
        topt.step()
        for p, tp in zip(ps, tps):
            np.testing.assert_allclose(p.detach().numpy(), tp.detach().numpy(), rtol=1e-10, atol=1e-12)
    state = opt.state_dict()
    fresh = getattr(mt.optim, name)([mt.tensor(a, requires_grad=True) for a in init], **kwargs)
    fresh.load_state_dict(state)
    assert fresh.state_dict()["param_groups"] == state["param_groups"]


def test_optimizer_argument_errors():
    p = [mt.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match="Invalid learning rate"):
        mt.optim.RMSprop(p, lr=-1)
    with pytest.raises(ValueError, match="Invalid rho"):
        mt.optim.Adadelta(p, rho=2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'betas'"):
        mt.optim.Adagrad(p, betas=(0.9, 0.99))
    with pytest.raises(NotImplementedError, match="torch.optim.LBFGS"):
        mt.optim.LBFGS


def test_whole_tensor_queries_match_torch():
    a = np.array([[0.0, 1.5, -2.0], [3.0, 0.0, 1e-9]])
    x, t = mt.tensor(a), torch.tensor(a)
    assert mt.allclose(x, x + 1e-9) == torch.allclose(t, t + 1e-9) is True
    assert mt.equal(x, x.clone()) and not mt.equal(x, x[:1]) and not x.equal(x + 1)
    np.testing.assert_array_equal(mt.isclose(x, x * 1.01).numpy(), torch.isclose(t, t * 1.01).numpy())
    np.testing.assert_array_equal(x.nonzero().numpy(), t.nonzero().numpy())
    np.testing.assert_array_equal(mt.argwhere(x).numpy(), torch.argwhere(t).numpy())
    assert [i.tolist() for i in x.nonzero(as_tuple=True)] == [i.tolist() for i in t.nonzero(as_tuple=True)]
    assert mt.numel(x) == 6 and x.nelement() == 6 and x.ndimension() == 2 and mt.is_tensor(x) and not mt.is_tensor(a)
    arr = np.arange(3.0)
    shared = mt.as_tensor(arr)
    arr[0] = 7
    assert shared.tolist() == [7.0, 1.0, 2.0] and mt.as_tensor(shared) is shared and mt.is_floating_point(shared)
    assert mt.as_tensor([1, 2], dtype=mt.float32).dtype == mt.float32


def test_extra_layers():
    x = mt.randn(2, 3, 4, 5)
    assert mt.nn.Upsample(scale_factor=2)(x).shape == (2, 3, 8, 10)
    assert mt.nn.Unflatten(1, (2, 6))(mt.zeros(4, 12)).shape == (4, 2, 6)
    deconv, tdeconv = mt.nn.ConvTranspose2d(3, 5, 4, stride=2, padding=1), torch.nn.ConvTranspose2d(3, 5, 4, 2, 1)
    assert deconv(x).shape == tuple(tdeconv(torch.zeros(2, 3, 4, 5)).shape) == (2, 5, 8, 10)
    assert [(n, p.shape) for n, p in deconv.named_parameters()] == [(n, tuple(p.shape))
                                                                   for n, p in tdeconv.named_parameters()]
    assert float(deconv.weight.abs().max()) <= 1 / np.sqrt(5 * 16)  # PyTorch's bound: fan_in = out * kh * kw
    for layer, tlayer in ((mt.nn.Softplus(beta=2), torch.nn.Softplus(beta=2)), (mt.nn.ELU(), torch.nn.ELU())):
        np.testing.assert_allclose(layer(mt.tensor(x.numpy())).numpy(), tlayer(torch.tensor(x.numpy())).numpy(),
                                   rtol=1e-5, atol=1e-6)
    y = mt.randn(2, 3, 4, 5)
    for loss, tloss in ((mt.nn.L1Loss(), torch.nn.L1Loss()), (mt.nn.SmoothL1Loss(beta=0.5), torch.nn.SmoothL1Loss(
            beta=0.5)), (mt.nn.HuberLoss(delta=2.0), torch.nn.HuberLoss(delta=2.0))):
        np.testing.assert_allclose(loss(x, y).item(), tloss(torch.tensor(x.numpy()), torch.tensor(y.numpy())).item(),
                                   rtol=1e-5)
    with pytest.raises(NotImplementedError, match="only 'nearest'"):
        mt.nn.functional.interpolate(x, scale_factor=2, mode="bilinear")


def test_init_variants():
    w = mt.empty(200, 50)
    mt.nn.init.trunc_normal_(w, std=0.5, a=-0.6, b=0.4)
    assert -0.6 <= float(w.min()) and float(w.max()) <= 0.4 and 0.2 < float(w.std()) < 0.5
    assert mt.nn.init.eye_(mt.empty(2, 3)).tolist() == [[1, 0, 0], [0, 1, 0]]


@pytest.mark.parametrize("make", [
    lambda L, opt: L.optim.lr_scheduler.ExponentialLR(opt, gamma=0.8),
    lambda L, opt: L.optim.lr_scheduler.LambdaLR(opt, lambda e: 1 / (1 + e)),
    lambda L, opt: L.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1, cooldown=1),
    lambda L, opt: L.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", threshold=0.1, threshold_mode="abs",
                                                          patience=0, min_lr=0.02),
], ids=["exponential", "lambda", "plateau", "plateau_max"])
def test_more_schedulers_match_torch(make):
    metrics = [1.0, 0.9, 0.95, 0.97, 0.96, 0.5, 0.6, 0.7, 0.8, 0.9, 0.91]
    lrs = []
    for L in (mt, torch):
        opt = L.optim.SGD([L.zeros(1, requires_grad=True)], lr=0.1)
        sched = make(L, opt)
        seen = []
        for m in metrics:
            opt.step()
            sched.step(m) if "Plateau" in type(sched).__name__ else sched.step()
            seen.append(opt.param_groups[0]["lr"])
        lrs.append(seen)
    np.testing.assert_allclose(lrs[0], lrs[1], rtol=1e-12)


@pytest.mark.parametrize("batch_first", [False, True])
def test_multihead_attention_matches_torch(batch_first):
    rng = np.random.default_rng()
    E, H, L, S, N = 8, 2, 5, 6, 3
    m, t = mt.nn.MultiheadAttention(E, H, batch_first=batch_first), torch.nn.MultiheadAttention(
        E, H, batch_first=batch_first)
    assert [(n, p.shape) for n, p in m.named_parameters()] == [(n, tuple(p.shape)) for n, p in t.named_parameters()]
    m.load_state_dict({k: mt.tensor(v.numpy()) for k, v in t.state_dict().items()})
    shape = (lambda n: (N, n, E)) if batch_first else (lambda n: (n, N, E))
    q, k = rng.standard_normal(shape(L)).astype(np.float32), rng.standard_normal(shape(S)).astype(np.float32)
    pad = rng.random((N, S)) < 0.3
    pad[:, 0] = False
    causal = np.triu(np.ones((L, S), bool), 1)
    for opts in ({}, {"key_padding_mask": pad, "attn_mask": causal}, {"attn_mask": np.where(causal, -1.5, 0.0)
                                                                      .astype(np.float32)},
                 {"average_attn_weights": False}, {"need_weights": False}):
        mq, mk = mt.tensor(q, requires_grad=True), mt.tensor(k, requires_grad=True)
        tq, tk = torch.tensor(q, requires_grad=True), torch.tensor(k, requires_grad=True)
        out, w = m(mq, mk, mk, **{n: mt.tensor(v) if isinstance(v, np.ndarray) else v for n, v in opts.items()})
        tout, tw = t(tq, tk, tk, **{n: torch.tensor(v) if isinstance(v, np.ndarray) else v for n, v in opts.items()})
        np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), atol=1e-5)
        assert (w is None) == (tw is None)
        loss, tloss = out.sum(), tout.sum()
        if w is not None:
            np.testing.assert_allclose(w.detach().numpy(), tw.detach().numpy(), atol=1e-6)
            loss, tloss = loss + (w * w).sum(), tloss + (tw * tw).sum()
        loss.backward()
        tloss.backward()
        np.testing.assert_allclose(mq.grad.numpy(), tq.grad.numpy(), atol=1e-5)
        np.testing.assert_allclose(mk.grad.numpy(), tk.grad.numpy(), atol=1e-5)
        np.testing.assert_allclose(m.in_proj_weight.grad.numpy(), t.in_proj_weight.grad.numpy(), atol=1e-5)
        m.zero_grad()
        t.zero_grad()
    causal_out, _ = m(mt.tensor(q), mt.tensor(q), mt.tensor(q), is_causal=True)
    mask = mt.triu(mt.ones(L, L, dtype=mt.bool), 1)
    np.testing.assert_allclose(causal_out.detach().numpy(), m(mt.tensor(q), mt.tensor(q), mt.tensor(q),
                                                              attn_mask=mask)[0].detach().numpy())
    single, _ = m(mt.tensor(q[0] if batch_first else q[:, 0]), mt.tensor(k[0] if batch_first else k[:, 0]),
                  mt.tensor(k[0] if batch_first else k[:, 0]))
    assert single.shape == (L, E)


def test_layers_1d_and_group_norm_modules():
    conv, tconv = mt.nn.Conv1d(3, 4, 3, padding=1), torch.nn.Conv1d(3, 4, 3, padding=1)
    assert [(n, p.shape) for n, p in conv.named_parameters()] == [(n, tuple(p.shape))
                                                                  for n, p in tconv.named_parameters()]
    x = mt.randn(2, 3, 7)
    assert conv(x).shape == (2, 4, 7) and mt.nn.MaxPool1d(2)(x).shape == (2, 3, 3)
    assert mt.nn.AvgPool1d(3, 2)(x).shape == (2, 3, 3)
    gn = mt.nn.GroupNorm(2, 4)
    y = gn(mt.randn(2, 4, 3, 3) * 5 + 1)
    np.testing.assert_allclose(y.reshape(2, 2, -1).mean(-1).detach().numpy(), 0, atol=1e-5)
    assert [n for n, _ in gn.named_parameters()] == ["weight", "bias"]


def test_forward_hooks():
    calls = []
    lin, tlin = mt.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    for layer, L in ((lin, mt), (tlin, torch)):
        pre = layer.register_forward_pre_hook(lambda mod, args: (args[0] * 2,))
        post = layer.register_forward_hook(lambda mod, args, out: calls.append(tuple(args[0].shape)) or out + 1)
        with L.no_grad():
            layer.weight.fill_(1.0)
            layer.bias.fill_(0.0)
        assert layer(L.ones(4, 3)).tolist() == [[7.0, 7.0]] * 4
        pre.remove()
        post.remove()
        assert layer(L.ones(1, 3)).tolist() == [[3.0, 3.0]]
    assert calls == [(4, 3), (4, 3)]
