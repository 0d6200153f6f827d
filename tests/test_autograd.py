"""The autograd engine against PyTorch: backward with and without a gradient,
accumulation, retain_graph, grad modes, hooks, retain_grad, in-place ops (also
through views) with their version checks, custom Functions and gradcheck."""
import numpy as np
import pytest
import torch

import mytensor as mt

DEVICES = ["cpu"] + ([pytest.param("cuda", marks=pytest.mark.gpu)] if mt.cuda_is_available() else [])
A = [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]
B = [[1.0, 2.0, -3.0], [0.5, -0.5, 4.0]]


def leaf(L, values, device="cpu"):
    return L.tensor(values, dtype=L.float64, requires_grad=True, device=device)


def result(x):
    """Values of a tensor, a gradient that may be None, or a nested structure of them."""
    if isinstance(x, (list, tuple)):
        return [result(v) for v in x]
    return x.detach().cpu().numpy() if isinstance(x, (mt.Tensor, torch.Tensor)) else x


# Each scenario runs as written on both libraries and returns what to compare.
def backward_with_gradient(L, dev):
    a = leaf(L, A, dev)
    y = a * a
    y.backward(L.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=L.float64, device=dev))
    return a.grad


def accumulation(L, dev):
    a = leaf(L, A, dev)
    (a * 2).sum().backward()
    g = a.grad
    (a ** 2).sum().backward()
    return a.grad, g  # accumulated in place: the first .grad object sees the sum


def diamond(L, dev):
    a = leaf(L, A, dev)
    b = a.exp()
    c = b * a + b.sin() - (b * 3).sum(0)
    (c * c).sum().backward()
    return a.grad


def shared_inputs(L, dev):
    a, b = leaf(L, A, dev), leaf(L, B, dev)
    (a * a * b + a @ b.T.sum(1, keepdim=True) + b).sum().backward()
    return a.grad, b.grad


def retain_graph(L, dev):
    a = leaf(L, A, dev)
    y = (a.exp() * a).sum()
    y.backward(retain_graph=True)
    y.backward()
    return a.grad


def twice_without_saved_arrays(L, dev):
    a = leaf(L, A, dev)
    y = (a + 1).sum()
    y.backward()
    y.backward()
    return a.grad


def partially_used_outputs(L, dev):
    a = leaf(L, A, dev)
    values, _ = a.max(1)
    first, second = a.split(2, dim=1)
    (values * 2 + first.sum(1)).sum().backward()
    return a.grad


def no_grad_blocks(L, dev):
    a = leaf(L, A, dev)
    with L.no_grad():
        b = a * 2
        with L.enable_grad():
            c = a * 3
    decorated = L.no_grad()(lambda t: t * 4)(a)
    c.sum().backward()
    return [b.requires_grad, c.requires_grad, decorated.requires_grad, L.is_grad_enabled()], a.grad


def detach_cuts(L, dev):
    a = leaf(L, A, dev)
    (a * a.detach()).sum().backward()
    return a.grad


def hooks(L, dev):
    a = leaf(L, A, dev)
    seen = []
    a.register_hook(lambda g: g * 10)
    y = a * 2
    y.register_hook(lambda g: seen.append(g.detach().cpu().numpy().copy()))
    handle = y.register_hook(lambda g: g + 1)
    y.retain_grad()
    y.register_hook(lambda g: g * 2)
    (y * y).sum().backward(retain_graph=True)
    grads = [a.grad.clone(), y.grad.clone()]
    handle.remove()
    (y * y).sum().backward()
    return grads + [a.grad, y.grad, seen[0]]


def post_accumulate_grad_hooks(L, dev):
    """Called once per backward with the leaf, after its gradient is summed into `.grad`."""
    a = leaf(L, A, dev)
    seen = []

    def double(p):
        p.grad.mul_(2)

    a.register_post_accumulate_grad_hook(lambda p: seen.append(p.grad.clone()))
    handle = a.register_post_accumulate_grad_hook(double)
    (a * a + a).sum().backward()
    handle.remove()
    (a * 3).sum().backward()
    return [a.grad, L.tensor(float(len(seen)))] + seen


def retain_grad_leaf_and_twice(L, dev):
    a = leaf(L, A, dev)
    a.retain_grad()
    y = a.sin()
    y.retain_grad()
    y.retain_grad()
    (y * 3).sum().backward()
    return a.grad, y.grad


def inplace_chain(L, dev):
    a, b = leaf(L, A, dev), leaf(L, B, dev)
    y = a * 1
    y.mul_(b)
    y.add_(b, alpha=2)
    y.sin_()
    y /= b
    y **= 2
    y.sub_(1).neg_().abs_()
    y.clamp_(0.2, 5.0)
    y.masked_fill_(b > 3, 0.5)
    y.cos_()
    for op in ["exp_", "sqrt_", "sigmoid_", "tanh_", "relu_", "reciprocal_", "rsqrt_", "square_"]:
        y = y * 1  # these save their output, which the next in-place op would change: PyTorch refuses that
        getattr(y, op)()
    y.sum().backward()
    return y, a.grad, b.grad


def inplace_relu_keeps_graph(L, dev):
    a = leaf(L, A, dev)
    h = a @ a.T
    h.relu_()
    out = h * 3
    out.sum().backward()
    return a.grad


def setitem(L, dev):
    a, b = leaf(L, A, dev), leaf(L, B, dev)
    buf = L.zeros(3, 3, dtype=L.float64, device=dev)
    buf[0] = a[0] * 2
    buf[1:, 1] = b[:, 2]
    buf[2, [0, 2]] = 7.0
    buf[buf > 6] = a[1, :2]
    (buf ** 2).sum().backward()
    return buf, a.grad, b.grad


def inplace_through_views(L, dev):
    a = leaf(L, A, dev)
    x = a * 1
    x[:, 0] += x[:, 1]
    row = x[1]
    row.mul_(3)
    x.T[0].sub_(1)
    x.view(-1)[2:4].exp_()
    (x * x).sum().backward()
    return x, row, a.grad


def stale_view_after_base_change(L, dev):
    a = leaf(L, A, dev)
    x = a * 1
    v = x[0]
    t = x.T
    x.mul_(2)
    (v.sum() + (t * t).sum()).backward()
    return v, a.grad


def copy_and_fill(L, dev):
    a, b = leaf(L, A, dev), leaf(L, B, dev)
    x = L.zeros(2, 3, dtype=L.float64, device=dev)
    x.copy_(a)
    x[0].fill_(b[1, 1])
    x[1].zero_()
    y = a * 1
    y.fill_(2.0)
    (x * b + y * a).sum().backward()
    return x, a.grad, b.grad


def saved_then_modified_scalar_mul(L, dev):
    a = leaf(L, A, dev)
    y = a * 1
    z = y * 2  # saves nothing of y
    y.add_(1)
    z.sum().backward()
    return a.grad


def leaf_grad_is_writable(L, dev):
    a, b = leaf(L, A, dev), leaf(L, [1.0, 2.0, 3.0], dev)
    (a + b).sum().backward()
    a.grad.zero_()  # must not touch b.grad, nor fail on a broadcast view
    b.grad.mul_(2)
    return a.grad, b.grad


def scalar_leaf(L, dev):
    w = L.tensor(1.5, dtype=L.float64, requires_grad=True, device=dev)
    (w * L.tensor(A, dtype=L.float64, device=dev)).sum().backward()
    w.grad.add_(1)
    return w.grad


def manual_sgd(L, dev):
    w, b = leaf(L, A, dev), leaf(L, [0.1, -0.2, 0.3], dev)
    x = L.tensor(B, dtype=L.float64, device=dev).T
    for _ in range(3):
        loss = ((x @ w + b - 1) ** 2).mean()
        loss.backward()
        with L.no_grad():
            w -= 0.1 * w.grad
            b.sub_(0.1 * b.grad)
        w.grad.zero_()
        b.grad = None
    return w, b, loss


SCENARIOS = [manual_sgd, backward_with_gradient, accumulation, diamond, shared_inputs, retain_graph,
             twice_without_saved_arrays, partially_used_outputs, no_grad_blocks, detach_cuts, hooks,
             post_accumulate_grad_hooks,
             retain_grad_leaf_and_twice, inplace_chain, inplace_relu_keeps_graph, setitem, inplace_through_views,
             stale_view_after_base_change, copy_and_fill, saved_then_modified_scalar_mul, leaf_grad_is_writable,
             scalar_leaf]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_scenario_matches_torch(scenario, device):
    got, want = result(scenario(mt, device)), result(scenario(torch, "cpu"))

    def check(g, w, path):
        if isinstance(w, list):
            assert isinstance(g, list) and len(g) == len(w), path
            for i, (gi, wi) in enumerate(zip(g, w)):
                check(gi, wi, f"{path}[{i}]")
        elif w is None or isinstance(w, bool):
            assert g == w, path
        else:
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14, err_msg=path)
    check(got, want, scenario.__name__)


# --------------------------------------------------------------- engine details
def test_each_node_runs_once():
    calls = []

    class Count(mt.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def backward(ctx, grad):
            calls.append(1)
            return grad

    a = mt.ones(3, requires_grad=True)
    b = Count.apply(a)
    (b * 2 + b.exp() + b[0]).sum().backward()
    assert len(calls) == 1 and np.allclose(a.grad.numpy(), 2 + np.e + np.array([3, 0, 0]))


def test_custom_function_saves_and_checks_versions():
    class Cube(mt.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved
            return 3 * x * x * grad

    a = mt.tensor([1.0, 2.0], dtype=mt.float64, requires_grad=True)
    assert mt.gradcheck(Cube.apply, [a])
    y = a * 1
    z = Cube.apply(y)
    y.add_(1)
    with pytest.raises(RuntimeError, match=r"modified by an in-place operation.*CubeBackward.*version 1; expected "
                                           r"version 0"):
        z.sum().backward()


def test_gradcheck_catches_a_wrong_gradient():
    class Wrong(mt.Function):
        @staticmethod
        def forward(ctx, x):
            return x * x

        @staticmethod
        def backward(ctx, grad):
            return grad  # should be 2 * x * grad

    x = mt.tensor([0.3, -1.2, 2.0], dtype=mt.float64, requires_grad=True)
    x.grad = mt.ones(3, dtype=mt.float64)
    with pytest.raises(RuntimeError, match="gradcheck failed for input 0"):
        mt.gradcheck(Wrong.apply, [x])
    assert not mt.gradcheck(Wrong.apply, [x], raise_exception=False)
    assert x.grad.tolist() == [1.0, 1.0, 1.0]  # left as it was
    with pytest.raises(TypeError, match="float64"):
        mt.gradcheck(lambda t: t * 2, [mt.ones(2, requires_grad=True)])
    with pytest.raises(ValueError, match="no input requires grad"):
        mt.gradcheck(lambda t: t * 2, [mt.ones(2, dtype=mt.float64)])


def test_gradcheck_non_contiguous_input():
    base = mt.tensor(np.random.randn(4, 3), dtype=mt.float64)
    x = base.T.detach().requires_grad_()
    assert not x.is_contiguous() and mt.gradcheck(lambda t: (t @ t.T).exp(), [x])


def test_graph_is_freed():
    a = mt.ones(3, requires_grad=True)
    y = (a.exp() * a).sum()
    y.backward()
    assert all(n.saved == () for n in [y.grad_fn.edges[0][0]])


def test_set_grad_enabled_and_nested_modes():
    x = mt.ones(2, requires_grad=True)
    mt.set_grad_enabled(False)
    try:
        assert not (x * 2).requires_grad
    finally:
        mt.set_grad_enabled(True)

    @mt.no_grad()
    def f(t):
        return t * 2

    assert not f(x).requires_grad and (x * 2).requires_grad and mt.is_grad_enabled()


def test_backward_explicit_gradient_from_numpy_and_lists():
    a = mt.ones(2, 2, requires_grad=True)
    (a * 3).backward(np.full((2, 2), 2.0))
    (a * 3).backward([[1.0, 0.0], [0.0, 1.0]])
    assert a.grad.tolist() == [[9.0, 6.0], [6.0, 9.0]]
