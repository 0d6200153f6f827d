"""Every public op against PyTorch: forward values, result dtype and gradients, on
fresh random inputs over several shapes (broadcasting, size-1 and odd dims) and
memory layouts (contiguous, transposed, strided), then `gradcheck` in float64.

A case is `fn(L, *tensors)` written once for both libraries (`L` is `mytensor` or
`torch`); `torch_fn` overrides it where the two spell an op differently.
"""
import warnings

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings

import mytensor as mt

DEVICES = ["cpu"] + ([pytest.param("cuda", marks=pytest.mark.gpu)] if mt.cuda_is_available() else [])
TOL = {"float64": (1e-10, 1e-12), "float32": (1e-5, 1e-6), "float16": (2e-3, 2e-3), "bfloat16": (1.6e-2, 1.6e-2)}
LAYOUTS = ("contiguous", "transposed", "strided")


class Case:
    def __init__(self, name, fn, shapes, domain="real", grad=True, torch_fn=None, layouts=LAYOUTS, f16=False):
        self.name, self.fn, self.torch_fn = name, fn, torch_fn or fn
        self.shapes = [s if isinstance(s, list) else [s] for s in shapes]  # per case: one shape per input
        self.domain = domain if isinstance(domain, tuple) else (domain,) * len(self.shapes[0])
        self.grad, self.layouts, self.f16 = grad, layouts, f16

    def __repr__(self):
        return self.name


# ----------------------------------------------------------------------------- shapes
UNARY = [(), (1,), (7,), (3, 1, 4), (2, 3, 5)]
BINARY = [[(), ()], [(5,), ()], [(), (2, 3)], [(3, 4), (3, 4)], [(3, 1), (1, 4)], [(2, 3, 4), (4,)],
          [(5, 1, 3), (1, 4, 1)], [(1,), (3, 1)]]
TERNARY = [[(3, 4), (3, 4), (3, 4)], [(3, 1), (1, 4), ()], [(2, 1, 3), (3,), (4, 1)], [(), (2,), (1,)]]
BOX = [(2, 3, 4), (1, 5, 1), (4, 1, 3), (3, 2, 5)]  # 3-d inputs for ops that take dims
MATMUL = [[(3,), (3,)], [(2, 3), (3,)], [(3,), (3, 4)], [(2, 3), (3, 4)], [(5, 2, 3), (3, 4)], [(2, 3), (5, 3, 4)],
          [(5, 1, 2, 3), (4, 3, 2)], [(1, 3), (3, 1)], [(3,), (2, 3, 4)], [(2, 4, 3), (3,)], [(1, 1), (1, 1)]]


def F(L):
    """torch.nn.functional, or mytensor's ops where they live at top level."""
    return torch.nn.functional if L is torch else mt


def idx(L, x, values):
    """An int64 index tensor on x's device."""
    return L.tensor(values, device=x.device)


# ------------------------------------------------------------------------------ cases
ELEMENTWISE = [
    Case("neg", lambda L, x: -x, UNARY, f16=True),
    Case("abs", lambda L, x: L.abs(x), UNARY, f16=True),
    Case("exp", lambda L, x: L.exp(x), UNARY, f16=True),
    Case("log", lambda L, x: x.log(), UNARY, "pos", f16=True),
    Case("sqrt", lambda L, x: L.sqrt(x), UNARY, "pos", f16=True),
    Case("rsqrt", lambda L, x: x.rsqrt(), UNARY, "pos"),
    Case("sin", lambda L, x: L.sin(x), UNARY, f16=True),
    Case("cos", lambda L, x: x.cos(), UNARY, f16=True),
    Case("tanh", lambda L, x: L.tanh(x), UNARY, f16=True),
    Case("sigmoid", lambda L, x: L.sigmoid(x), UNARY, f16=True),
    Case("relu", lambda L, x: L.relu(x), UNARY, f16=True),
    Case("square", lambda L, x: x.square(), UNARY),
    Case("reciprocal", lambda L, x: x.reciprocal(), UNARY, "nonzero"),
    Case("clamp", lambda L, x: L.clamp(x, -0.5, 0.5), UNARY, f16=True),
    Case("clamp_min", lambda L, x: x.clamp(min=-0.3), UNARY),
    Case("clamp_max", lambda L, x: x.clamp(max=0.2), UNARY),
    Case("clamp_tensor", lambda L, x, lo: L.clamp(x, lo - 0.5, lo + 0.5), BINARY),
    Case("pow2", lambda L, x: x ** 2, UNARY, f16=True),
    Case("pow3", lambda L, x: L.pow(x, 3), UNARY),
    Case("pow0", lambda L, x: x ** 0, UNARY),
    Case("pow_half", lambda L, x: x ** 0.5, UNARY, "pos"),
    Case("pow_neg", lambda L, x: x ** -1.5, UNARY, "pos"),
    Case("rpow", lambda L, x: 2 ** x, UNARY),
    Case("radd", lambda L, x: 2.5 + x, UNARY),
    Case("rsub", lambda L, x: 1 - x, UNARY),
    Case("rmul", lambda L, x: 3 * x, UNARY),
    Case("rdiv", lambda L, x: 3 / x, UNARY, "nonzero"),
    Case("add", lambda L, a, b: a + b, BINARY, f16=True),
    Case("add_fn", lambda L, a, b: L.add(a, b), BINARY),
    Case("sub", lambda L, a, b: a - b, BINARY, f16=True),
    Case("mul", lambda L, a, b: a * b, BINARY, f16=True),
    Case("div", lambda L, a, b: a / b, BINARY, ("real", "nonzero"), f16=True),
    Case("pow", lambda L, a, b: a ** b, BINARY, ("pos", "real")),
    Case("maximum", lambda L, a, b: L.maximum(a, b), BINARY, f16=True),
    Case("minimum", lambda L, a, b: L.minimum(a, b), BINARY),
    Case("max_binary", lambda L, a, b: L.max(a, b), BINARY),
    Case("where", lambda L, c, a, b: L.where(c > 0, a, b), TERNARY, f16=True),
    Case("masked_fill", lambda L, x: x.masked_fill(x > 0, 0.5), UNARY),
    Case("sign", lambda L, x: x.sign() * x, UNARY),
    Case("where_method", lambda L, a, b: a.where(b > 0, b * 2), BINARY),
    Case("numpy_scalars", lambda L, x: x * np.float32(2) + np.int64(3) - np.float64(0.5) ** x, UNARY),
    Case("square_chain", lambda L, a, b: (a * b).exp() / (1 + b * b), BINARY),
]
COMPARISONS = [
    Case(name, fn, BINARY, "int", grad=False, f16=True) for name, fn in [
        ("eq", lambda L, a, b: a == b), ("ne", lambda L, a, b: a != b), ("lt", lambda L, a, b: a < b),
        ("le", lambda L, a, b: a <= b), ("gt", lambda L, a, b: a > b), ("ge", lambda L, a, b: L.ge(a, b)),
        ("eq_scalar", lambda L, a, b: a == 1), ("lt_scalar", lambda L, a, b: a < 0.5),
        ("logical", lambda L, a, b: (a > 0) & ~(b < 0) | (a == b)),
        ("logical_fn", lambda L, a, b: L.logical_or(L.logical_and(a > 0, b > 0), L.logical_not(a < b))),
        ("floordiv", lambda L, a, b: (a + 0.5) // (b.abs() + 0.75)), ("rfloordiv", lambda L, a, b: 7 // (a + 2.5)),
        ("isnan_isfinite", lambda L, a, b: (L.isnan(a / b), (a / b).isfinite()))]
]
REDUCTIONS = [
    Case("sum", lambda L, x: x.sum(), UNARY, f16=True),
    Case("sum_dim", lambda L, x: L.sum(x, 1), BOX),
    Case("sum_neg_keep", lambda L, x: x.sum(-1, keepdim=True), BOX),
    Case("sum_dims", lambda L, x: x.sum((0, 2)), BOX),
    Case("mean", lambda L, x: L.mean(x), UNARY),
    Case("mean_dims_keep", lambda L, x: x.mean((2, 0), keepdim=True), BOX),
    Case("empty_dims_mean_all", lambda L, x: (x.sum(()), x.mean([]), x.amax(())), BOX),
    Case("max", lambda L, x: x.max(), UNARY),
    Case("max_dim", lambda L, x: tuple(L.max(x, 1)), BOX),
    Case("max_dim_keep", lambda L, x: tuple(x.max(-1, keepdim=True)), BOX),
    Case("min", lambda L, x: L.min(x), UNARY),
    Case("min_dim", lambda L, x: tuple(x.min(0)), BOX),
    Case("amax", lambda L, x: x.amax((0, 2)), BOX),
    Case("amin_keep", lambda L, x: L.amin(x, 1, keepdim=True), BOX),
    Case("argmax", lambda L, x: x.argmax(), UNARY, grad=False),
    Case("argmax_dim", lambda L, x: L.argmax(x, 1), BOX, grad=False),
    Case("argmin_keep", lambda L, x: x.argmin(-1, keepdim=True), BOX, grad=False),
    Case("argmin_all_keep", lambda L, x: L.argmin(x, keepdim=True), BOX, grad=False),
    Case("var", lambda L, x: x.var(), BOX),
    Case("var_dim", lambda L, x: L.var(x, 1), BOX),
    Case("var_biased", lambda L, x: x.var((0, 2), correction=0, keepdim=True), BOX),
    Case("var_unbiased_false", lambda L, x: x.var(2, unbiased=False), BOX),
    Case("std", lambda L, x: L.std(x), BOX),
    Case("std_dim", lambda L, x: x.std(-1, keepdim=True), BOX),
    Case("logsumexp", lambda L, x: L.logsumexp(x, 1), BOX),
    Case("logsumexp_dims", lambda L, x: x.logsumexp((0, 2), keepdim=True), BOX),
    Case("prod", lambda L, x: x.prod(), [(), (1,), (7,), (2, 3)]),
    Case("prod_dim", lambda L, x: L.prod(x, 1), BOX),
    Case("prod_dim_keep", lambda L, x: x.prod(-1, keepdim=True), BOX),
    Case("cumsum", lambda L, x: x.cumsum(1), BOX),
    Case("reduce_0d", lambda L, x: (x.sum(0), x.mean(-1, keepdim=True), x.max(0)[0], L.min(x, -1, True)[1],
                                    x.argmax(0), x.logsumexp(0), x.prod(0), x.cumsum(0), x.amax(-1), x.std(0)), [()]),
    Case("all_any", lambda L, x: ((x > 0).all(1), (x > 0).any(), (x > 0).any(0, keepdim=True)), BOX, grad=False),
]
LINALG = [
    Case("matmul", lambda L, a, b: a @ b, MATMUL, f16=False),
    Case("matmul_fn", lambda L, a, b: L.matmul(a, b), MATMUL[:4]),
    Case("mm", lambda L, a, b: L.mm(a, b), [[(2, 3), (3, 4)], [(1, 5), (5, 1)]]),
    Case("bmm", lambda L, a, b: a.bmm(b), [[(4, 2, 3), (4, 3, 5)]]),
    Case("dot", lambda L, a, b: L.dot(a, b), [[(5,), (5,)]]),
]
SHAPE = [
    Case("reshape", lambda L, x: x.reshape(4, 6), [(2, 3, 4)]),
    Case("reshape_infer", lambda L, x: L.reshape(x, (-1, 2)), [(2, 3, 4), (6,)]),
    Case("reshape_scalar", lambda L, x: x.reshape(()), [(1,), (1, 1)]),
    Case("view", lambda L, x: x.view(6, -1), [(2, 3, 4), (6,)], layouts=("contiguous",)),
    Case("flatten", lambda L, x: x.flatten(), UNARY),
    Case("flatten_range", lambda L, x: L.flatten(x, 1), BOX),
    Case("flatten_01", lambda L, x: x.flatten(0, 1), BOX),
    Case("unflatten", lambda L, x: x.unflatten(1, (3, 1)), [(2, 3, 4)]),
    Case("squeeze", lambda L, x: x.squeeze(), [(1, 3, 1, 2), (1,), ()]),
    Case("squeeze_dim", lambda L, x: (x.squeeze(0), L.squeeze(x, 1), x.squeeze(-1)), [(1, 3, 1), (2, 1, 1)]),
    Case("unsqueeze", lambda L, x: (x.unsqueeze(0), L.unsqueeze(x, -1), x.unsqueeze(1)), UNARY[1:]),
    Case("unsqueeze_scalar", lambda L, x: x.unsqueeze(0), [()]),
    Case("transpose", lambda L, x: x.transpose(0, 2), BOX),
    Case("transpose_fn", lambda L, x: L.transpose(x, -1, 0), [(3, 4), (2, 3, 4)]),
    Case("permute", lambda L, x: x.permute(2, 0, 1), BOX),
    Case("permute_fn", lambda L, x: L.permute(x, (1, 2, 0)), BOX),
    Case("T", lambda L, x: x.T, [(3, 4), (1, 5)]),
    Case("mT", lambda L, x: x.mT, [(3, 4), (2, 3, 4)]),
    Case("expand", lambda L, x: x.expand(2, 3, 4), [(3, 1), (1, 4), (2, 1, 4), ()]),
    Case("expand_keep", lambda L, x: x.expand(-1, 5, -1), [(2, 1, 4)]),
    Case("expand_as", lambda L, x, y: x.expand_as(y) * y, [[(3, 1), (2, 3, 4)]]),
    Case("broadcast_to", lambda L, x: L.broadcast_to(x, (2, 3, 4)), [(3, 1), (4,)]),
    Case("t", lambda L, x: x.t(), [(3, 4), (5,)]),
    Case("concatenate", lambda L, a, b: L.concatenate((a, b), 0), [[(2, 3), (1, 3)]]),
    Case("contiguous", lambda L, x: x.contiguous() * 1, BOX),
    Case("clone", lambda L, x: x.clone(), UNARY),
    Case("flip", lambda L, x: x.flip(0), BOX),
    Case("flip_dims", lambda L, x: L.flip(x, (0, 2)), BOX),
    Case("narrow", lambda L, x: x.narrow(1, 1, 2), [(2, 3, 4), (3, 4)]),
    Case("split", lambda L, x: x.split(2, dim=1), [(2, 5, 3), (3, 4)]),
    Case("split_sizes", lambda L, x: L.split(x, [1, 3], 1), [(2, 4, 3), (3, 4)]),
    Case("chunk", lambda L, x: x.chunk(3, -1), [(2, 3, 7), (5,), (3, 6)]),
    Case("cat", lambda L, a, b: L.cat([a, b, a], 1), [[(2, 3, 4), (2, 1, 4)], [(3, 2), (3, 5)]]),
    Case("cat_neg", lambda L, a, b: L.cat([a, b], -1), [[(2, 3), (2, 1)]]),
    Case("stack", lambda L, a, b: L.stack([a, b, a]), [[(2, 3), (2, 3)], [(), ()]]),
    Case("stack_last", lambda L, a, b: L.stack((a, b), -1), [[(2, 3), (2, 3)], [(4,), (4,)]]),
    Case("pad", lambda L, x: F(L).pad(x, (1, 2)), [(3,), (2, 3, 4)]),
    Case("pad_value", lambda L, x: F(L).pad(x, (0, 1, 2, 0), value=-1.5), [(3, 4), (2, 3, 4)]),
]
INDEXING = [
    Case("int", lambda L, x: x[1], [(3,), (3, 4)]),
    Case("neg_int_slice", lambda L, x: x[-1, 1:], BOX),
    Case("slice_step_none", lambda L, x: x[:, None, ::2], BOX),
    Case("ellipsis", lambda L, x: x[..., 1], [(3, 4), (2, 3, 4)]),
    Case("int_ellipsis_none", lambda L, x: x[0, ..., None], [(3, 4), (2, 3, 4)]),
    Case("scalar_int", lambda L, x: x[2] * x[0], [(3,)]),
    Case("list", lambda L, x: x[[0, 2, 0, 0]], [(3,), (3, 4)]),
    Case("tensor_index", lambda L, x: x[:, idx(L, x, [1, 1, 0])], [(2, 3), (2, 3, 4)]),
    Case("two_arrays", lambda L, x: x[idx(L, x, [0, 1, 0]), idx(L, x, [2, 0, 2])], [(2, 3), (2, 3, 4)]),
    Case("array_2d", lambda L, x: x[idx(L, x, [[0, 1], [1, 1]])], [(3,), (2, 3)]),
    Case("array_slice_array", lambda L, x: x[idx(L, x, [1, 0]), :, idx(L, x, [0, 0])], [(2, 3, 4)]),
    Case("bool_mask", lambda L, x: x[x > 0], UNARY[1:]),
    Case("bool_mask_dim", lambda L, x: x[:, x[0] > 0], [(3, 4), (2, 3, 4)]),
    Case("gather", lambda L, x: x.gather(1, idx(L, x, [[0, 0, 2], [1, 0, 1]])), [(2, 3), (3, 4)]),
    Case("gather_fn", lambda L, x: L.gather(x, 0, idx(L, x, [[1, 0], [1, 1]])), [(2, 2), (3, 4)]),
    Case("index_select", lambda L, x: x.index_select(1, idx(L, x, [2, 0, 2])), [(2, 3), (2, 3, 4)]),
    Case("iter", lambda L, x: L.stack(list(x)[::-1]), [(3, 2)]),
]
ALL = ELEMENTWISE + COMPARISONS + REDUCTIONS + LINALG + SHAPE + INDEXING


# ---------------------------------------------------------------------------- helpers
def draw(rng, shape, domain):
    x = rng.standard_normal(shape)
    if domain == "pos":
        return np.abs(x) + 0.5
    if domain == "nonzero":
        return np.sign(x + 1e-300) * (np.abs(x) + 0.5)
    if domain == "int":
        return rng.integers(-2, 3, shape).astype(np.float64)
    return x


def mt_input(arr, dtype, device, layout, requires_grad):
    """An mt leaf holding `arr`, laid out in memory as asked."""
    if layout == "transposed" and arr.ndim >= 2:
        t = mt.tensor(arr.T.copy(), dtype=dtype, device=device).T
    elif layout == "strided" and arr.ndim >= 1:
        t = mt.tensor(np.repeat(arr, 2, axis=-1), dtype=dtype, device=device)[..., ::2]
    else:
        t = mt.tensor(arr, dtype=dtype, device=device)
    return t.detach().requires_grad_(requires_grad)


def outputs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def to_np(t):
    if isinstance(t, torch.Tensor) and t.dtype is torch.bfloat16:
        t = t.float()  # NumPy has no bfloat16 of its own: PyTorch won't hand one over
    return t.detach().cpu().numpy()


def dtype_name(t):
    return t.dtype.name if isinstance(t, mt.Tensor) else str(t.dtype).replace("torch.", "")


def assert_close(actual, expected, dtype, what):
    rtol, atol = TOL[dtype]
    expected = np.asarray(expected)
    scale = max(1.0, float(np.max(np.abs(expected[np.isfinite(expected)]), initial=0)))
    np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol * scale,
                               err_msg=what)


def error_norm(actual, expected):
    """||actual - expected|| over the finite entries (which must agree)."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert np.array_equal(np.isfinite(actual), np.isfinite(expected))
    finite = np.isfinite(expected)
    return np.linalg.norm(actual[finite] - expected[finite])


def run_case(L, case, xs, upstream_seed, dtype, device=None):
    """Outputs and input gradients of `case` in library L (gradients of sum(out * u), u random)."""
    out = outputs(case.fn(L, *xs) if L is mt else case.torch_fn(L, *xs))
    if not all(x.requires_grad for x in xs):
        return out, []
    rng = np.random.default_rng(upstream_seed)
    total = 0
    for o in out:
        if o.dtype.is_floating_point:
            u = rng.standard_normal(tuple(o.shape)).astype(mt.bfloat16.np if dtype == "bfloat16" else np.float64)
            total = total + (o * (L.tensor(u.astype(np.float64), dtype=o.dtype, device=device) if L is mt
                                  else L.tensor(u.astype(np.float64), dtype=o.dtype))).sum()
    total.backward()
    return out, [x.grad for x in xs]


def compare(case, dtype, device, seed, layouts=None):
    """Forward values, dtypes and gradients of `case` against PyTorch in `dtype`. bfloat16 is
    measured against PyTorch in float64 on the same (bfloat16-rounded) inputs, by the normwise
    relative error, which must be under 3e-2 or no more than twice PyTorch's own in bfloat16,
    both summed over three upstream gradients: element by element, a rounding at another step
    can leave two right bfloat16 results an ulp or more apart, and where a sum cancels, one
    draw's relative error is a matter of luck."""
    rng = np.random.default_rng(seed)
    for shapes in case.shapes:
        arrays = [draw(rng, s, d) for s, d in zip(shapes, case.domain)]
        if dtype == "bfloat16":
            arrays = [a.astype(mt.bfloat16.np).astype(np.float64) for a in arrays]
        for layout in layouts or case.layouts:
            if layout == "transposed" and all(a.ndim < 2 for a in arrays):
                continue
            if layout == "strided" and all(a.ndim < 1 for a in arrays):
                continue
            what = f"{case.name} shapes={shapes} {dtype} {layout} seed={seed}"
            grad = case.grad and dtype != "float16"
            xs = [mt_input(a, dtype, device, layout, grad) for a in arrays]
            ts = [torch.tensor(a, dtype=getattr(torch, dtype), requires_grad=grad) for a in arrays]
            upstream_seed = rng.integers(2 ** 32)
            got, got_grads = run_case(mt, case, xs, upstream_seed, dtype, device)
            want, want_grads = run_case(torch, case, ts, upstream_seed, dtype)
            assert len(got) == len(want), what
            for g, w in zip(got, want):
                assert g.shape == tuple(w.shape), f"{what}: shape {g.shape} != {tuple(w.shape)}"
                assert dtype_name(g) == dtype_name(w), f"{what}: dtype {g.dtype} != {w.dtype}"
                assert str(g.device).startswith(device), what
            for i, (x, gx, tx) in enumerate(zip(xs, got_grads, want_grads)):
                if tx is None:  # not on a differentiable path (a `where` condition)
                    assert gx is None, f"{what}: gradient for input {i}, which PyTorch doesn't give"
                else:
                    assert gx is not None, f"{what}: no gradient for input {i}"
                    assert gx.shape == x.shape and gx.dtype == x.dtype, what
            pairs = [(g, w, "forward") for g, w in zip(got, want)]
            pairs += [(g, w, f"grad of input {i}") for i, (g, w) in enumerate(zip(got_grads, want_grads))
                      if w is not None]
            if dtype != "bfloat16":
                for g, w, part in pairs:
                    assert_close(to_np(g), to_np(w), dtype, f"{what} ({part})")
                continue
            ours, theirs, size = np.sum([bfloat16_errors(case, arrays, layout, device, grad, s) for s in
                                         (upstream_seed, *rng.integers(2 ** 32, size=2))], axis=0)
            for (_, _, part), e, e_torch, n in zip(pairs, ours, theirs, size):
                assert e <= max(3e-2 * n, 2 * e_torch), \
                    f"{what} ({part}): relative error {e / n:.3g} (PyTorch bfloat16: {e_torch / n:.3g})"


def bfloat16_errors(case, arrays, layout, device, grad, upstream_seed):
    """Norms of mytensor's and of PyTorch's errors in bfloat16, and of the float64 results
    (outputs, then the gradients PyTorch gives)."""
    ours = run_case(mt, case, [mt_input(a, "bfloat16", device, layout, grad) for a in arrays], upstream_seed,
                    "bfloat16", device)
    theirs, exact = (run_case(torch, case, [torch.tensor(a, dtype=dt, requires_grad=grad) for a in arrays],
                              upstream_seed, "bfloat16") for dt in (torch.bfloat16, torch.float64))
    kept = [i for i, w in enumerate(theirs[1]) if w is not None]
    ours, theirs, exact = ([*out, *(grads[i] for i in kept)] for out, grads in (ours, theirs, exact))
    refs = [to_np(r) for r in exact]
    return ([error_norm(to_np(g), r) for g, r in zip(ours, refs)],
            [error_norm(to_np(g), r) for g, r in zip(theirs, refs)],
            [max(np.linalg.norm(r[np.isfinite(r)]), 1e-30) for r in refs])


# ------------------------------------------------------------------------------ tests
@pytest.mark.filterwarnings("ignore:.*degrees of freedom")  # PyTorch's, for the variance of one element
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", ALL, ids=repr)
def test_matches_torch(case, dtype, device):
    compare(case, dtype, device, seed=np.random.SeedSequence().entropy)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", [c for c in ALL if c.f16], ids=repr)
def test_matches_torch_float16(case, device):
    compare(case, "float16", device, seed=np.random.SeedSequence().entropy, layouts=("contiguous",))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", ALL, ids=repr)
def test_matches_torch_bfloat16(case, device):
    compare(case, "bfloat16", device, seed=np.random.SeedSequence().entropy,
            layouts=[lay for lay in case.layouts if lay != "strided"])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", [c for c in ALL if c.grad], ids=repr)
def test_gradcheck(case, device):
    rng = np.random.default_rng()
    small = [shapes for shapes in case.shapes if sum(int(np.prod(s)) for s in shapes) <= 100][:3]
    assert small, f"{case.name}: no input small enough for finite differences"
    for shapes in small:
        xs = [mt.tensor(draw(rng, s, d), dtype=mt.float64, device=device, requires_grad=True)
              for s, d in zip(shapes, case.domain)]
        with mt.no_grad():
            if not all(np.isfinite(to_np(o)).all() for o in outputs(case.fn(mt, *xs))):
                continue  # e.g. the variance of one element: nan, as in PyTorch
        assert mt.gradcheck(lambda *a: case.fn(mt, *a), xs), f"{case.name} {shapes}"


def test_layouts_are_what_they_say():
    arr = np.arange(30.0).reshape(2, 3, 5)
    for layout in LAYOUTS:
        t = mt_input(arr, "float64", "cpu", layout, True)
        assert t.is_leaf and t.requires_grad and t.is_contiguous() == (layout == "contiguous")
        np.testing.assert_array_equal(to_np(t), arr)


@pytest.mark.parametrize("device", DEVICES)
def test_one_hot(device):
    labels = np.array([[0, 3], [2, 2], [1, 0]])
    got = mt.one_hot(mt.tensor(labels, device=device), 5)
    want = torch.nn.functional.one_hot(torch.tensor(labels), 5)
    assert got.dtype == mt.int64 and np.array_equal(to_np(got), want.numpy())
    assert np.array_equal(to_np(mt.one_hot(mt.tensor(labels, device=device))), torch.nn.functional.one_hot(
        torch.tensor(labels)).numpy())


@pytest.mark.parametrize("device", DEVICES)
def test_special_values_match_torch(device):
    """inf, nan, signed zeros and extremes come out as in PyTorch, without warnings."""
    vals = [-np.inf, -1000.0, -1.0, -0.0, 0.0, 1e-30, 1.0, 1000.0, np.inf, np.nan]
    fns = [lambda L, x: L.exp(x), lambda L, x: L.log(x), lambda L, x: x.sqrt(), lambda L, x: x.rsqrt(),
           lambda L, x: 1 / x, lambda L, x: L.sigmoid(x), lambda L, x: L.tanh(x), lambda L, x: L.relu(x),
           lambda L, x: x.abs(), lambda L, x: x.sign(), lambda L, x: x.clamp(-1, 1), lambda L, x: x ** 2,
           lambda L, x: x ** -1, lambda L, x: 2 ** x, lambda L, x: L.sin(x), lambda L, x: L.maximum(x, 0 * x),
           lambda L, x: x.max(), lambda L, x: x.argmax(), lambda L, x: x[:-1].max(), lambda L, x: x.logsumexp(0),
           lambda L, x: x[:2].logsumexp(0), lambda L, x: x.sum(), lambda L, x: x[4:] // x[:6]]
    for dtype in ["float32", "float64"]:
        for fn in fns:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                got = fn(mt, mt.tensor(vals, dtype=dtype, device=device))
            want = fn(torch, torch.tensor(vals, dtype=getattr(torch, dtype)))
            np.testing.assert_allclose(to_np(got), want.numpy(), rtol=1e-6)


def test_compare_with_other_objects():
    x = mt.ones(2)
    assert (x == None) is False and (x != None) is True and x not in [None, "a"]  # noqa: E711


@pytest.mark.parametrize("device", DEVICES)
def test_prod_gradient_with_zeros(device):
    for values in ([2.0, 0.0, 3.0, 4.0], [0.0, 5.0, 0.0, 2.0], [0.0]):
        x = mt.tensor(values, dtype=mt.float64, device=device, requires_grad=True)
        t = torch.tensor(values, dtype=torch.float64, requires_grad=True)
        x.prod().backward()
        t.prod().backward()
        np.testing.assert_allclose(to_np(x.grad), t.grad.numpy())


@pytest.mark.parametrize("device", DEVICES)
def test_nonsmooth_points_match_torch(device):
    """Ties and kinks, where the gradient is a convention: follow PyTorch's."""
    vals = [-1.0, 0.0, 0.0, 2.0, 2.0]
    fns = [lambda L, x: L.abs(x), lambda L, x: L.relu(x), lambda L, x: x.clamp(0.0, 2.0),
           lambda L, x: L.maximum(x, L.zeros_like(x)), lambda L, x: L.minimum(x, x.flip(0)), lambda L, x: x.max(),
           lambda L, x: x.amax(0), lambda L, x: x ** 0, lambda L, x: x ** 2, lambda L, x: L.sqrt(x * x + 1),
           lambda L, x: 0 ** x, lambda L, x: x.abs() ** x.flip(0),
           lambda L, x: L.div(x, 0.7, rounding_mode="floor") * x,
           lambda L, x: x.clamp(L.zeros_like(x), x.flip(0)), lambda L, x: L.clamp(x.flip(0), max=x)]
    for fn in fns:
        x = mt.tensor(vals, dtype=mt.float64, device=device, requires_grad=True)
        t = torch.tensor(vals, dtype=torch.float64, requires_grad=True)
        fn(mt, x).sum().backward()
        fn(torch, t).sum().backward()
        np.testing.assert_allclose(to_np(x.grad), t.grad.numpy(), equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
def test_float16_reductions_accumulate_in_float32(device):
    a = np.random.default_rng().random((300, 400)).astype(np.float16)
    for fn in [lambda x: x.sum(), lambda x: x.mean(), lambda x: x.mean(0), lambda x: x.var(), lambda x: x.std(1)]:
        got, want = fn(mt.tensor(a, device=device)), fn(torch.from_numpy(a))
        assert got.dtype is mt.float16
        np.testing.assert_allclose(to_np(got).astype(np.float64), want.numpy().astype(np.float64), rtol=2e-3)


# ----------------------------------------------------------- property-based checks
BINARY_FNS = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
              "div": lambda a, b: a / (b * b + 0.5), "maximum": lambda a, b: a.maximum(b),
              "mask": lambda a, b: (a > b) * a + b, "pow": lambda a, b: (a * a + 0.5) ** b,
              "sum_last": lambda a, b: (a * b).sum(-1)}


def _both(arr):
    return (mt.tensor(arr, dtype=mt.float64, requires_grad=True),
            torch.tensor(arr, dtype=torch.float64, requires_grad=True))


@settings(max_examples=40, deadline=None)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4),
       op=st.sampled_from(sorted(BINARY_FNS)), seed=st.integers(0, 2 ** 32 - 1))
def test_broadcasting_property(shapes, op, seed):
    rng = np.random.default_rng(seed)
    (a, ta), (b, tb) = (_both(rng.standard_normal(s)) for s in shapes.input_shapes)
    out, tout = BINARY_FNS[op](a, b), BINARY_FNS[op](ta, tb)
    np.testing.assert_allclose(to_np(out), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(tout.shape)
    out.backward(mt.tensor(g, dtype=mt.float64))
    tout.backward(torch.from_numpy(g))
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy(), rtol=1e-10, atol=1e-12)


@st.composite
def indexed(draw):
    """A shape and an index PyTorch also accepts: basic parts (no negative steps) or integer arrays."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    if draw(st.booleans()):
        index = draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
        parts = index if isinstance(index, tuple) else (index,)
        assume(all(not isinstance(p, slice) or p.step is None or p.step > 0 for p in parts))
    else:
        index = draw(hnp.integer_array_indices(shape, result_shape=hnp.array_shapes(min_dims=1, max_dims=2,
                                                                                     max_side=3)))
    return shape, index


@settings(max_examples=60, deadline=None)
@given(case=indexed(), seed=st.integers(0, 2 ** 32 - 1))
def test_indexing_property(case, seed):
    shape, index = case
    rng = np.random.default_rng(seed)
    x, tx = _both(rng.standard_normal(shape))
    t_index = tuple(torch.from_numpy(i) if isinstance(i, np.ndarray) else i for i in index) \
        if isinstance(index, tuple) else index
    m_index = tuple(mt.tensor(i) if isinstance(i, np.ndarray) else i for i in index) \
        if isinstance(index, tuple) else index
    out, tout = x[m_index] * 2, tx[t_index] * 2
    np.testing.assert_array_equal(to_np(out), tout.detach().numpy())
    g = rng.standard_normal(tout.shape)
    out.backward(mt.tensor(g, dtype=mt.float64))
    tout.backward(torch.from_numpy(g))
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12)  # repeated indices add up
