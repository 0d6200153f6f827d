"""`mytensor.autograd.Function` keeps PyTorch's contract for user code (Tensors in forward and
backward, ctx.save_for_backward/saved_tensors, setup_context, needs_input_grad, ...): each
Function below is written once and run by both libraries, and their values and gradients agree."""
import numpy as np
import pytest
import torch

import mytensor as mt


def pair(rng, *shape):
    a = rng.standard_normal(shape)
    return (mt.tensor(a, dtype=mt.float64, requires_grad=True),
            torch.tensor(a, dtype=torch.float64, requires_grad=True))


def legendre(L):
    """The PyTorch tutorial's custom Function: P3(x) = (5x^3 - 3x) / 2."""
    class LegendrePolynomial3(L.autograd.Function):
        @staticmethod
        def forward(ctx, input):
            ctx.save_for_backward(input)
            return 0.5 * (5 * input ** 3 - 3 * input)

        @staticmethod
        def backward(ctx, grad_output):
            input, = ctx.saved_tensors
            return grad_output * 1.5 * (5 * input ** 2 - 1)
    return LegendrePolynomial3


def linear_fn(L):
    """The "Extending PyTorch" docs' LinearFunction, in the setup_context style."""
    class LinearFunction(L.autograd.Function):
        @staticmethod
        def forward(input, weight, bias):
            output = input.mm(weight.t())
            if bias is not None:
                output += bias.unsqueeze(0).expand_as(output)
            return output

        @staticmethod
        def setup_context(ctx, inputs, output):
            input, weight, bias = inputs
            ctx.save_for_backward(input, weight, bias)

        @staticmethod
        def backward(ctx, grad_output):
            input, weight, bias = ctx.saved_tensors
            grad_input = grad_weight = grad_bias = None
            if ctx.needs_input_grad[0]:
                grad_input = grad_output.mm(weight)
            if ctx.needs_input_grad[1]:
                grad_weight = grad_output.t().mm(input)
            if bias is not None and ctx.needs_input_grad[2]:
                grad_bias = grad_output.sum(0)
            return grad_input, grad_weight, grad_bias
    return LinearFunction


def scaled_max(L):
    """Several outputs, one of them integer and marked non-differentiable, and a non-tensor argument."""
    class ScaledMax(L.autograd.Function):
        @staticmethod
        def forward(ctx, x, scale):
            values, indices = x.max(-1)
            ctx.mark_non_differentiable(indices)
            ctx.save_for_backward(indices)
            ctx.scale, ctx.n = scale, x.shape[-1]
            return values * scale, indices

        @staticmethod
        def backward(ctx, grad_values, grad_indices):
            indices, = ctx.saved_tensors
            picked = L.nn.functional.one_hot(indices, ctx.n).to(grad_values.dtype)
            return picked * (grad_values * ctx.scale).unsqueeze(-1), None
    return ScaledMax


def test_tutorial_function_matches_torch():
    rng = np.random.default_rng()
    x, tx = pair(rng, 7, 3)
    y, ty = legendre(mt).apply(x), legendre(torch).apply(tx)
    assert y.grad_fn.name == "LegendrePolynomial3Backward"
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-12)
    g = rng.standard_normal(y.shape)
    y.backward(mt.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
    assert mt.autograd.gradcheck(legendre(mt).apply, (x,), eps=1e-6, atol=1e-4)


@pytest.mark.parametrize("with_bias,needs", [(True, (True, True, True)), (False, (True, False, False)),
                                             (True, (False, True, True))])
def test_setup_context_style_and_needs_input_grad(with_bias, needs):
    rng = np.random.default_rng()
    shapes = [(5, 3), (4, 3), (4,)]
    ins = []
    for shape, need in zip(shapes, needs):
        a = rng.standard_normal(shape)
        ins.append((mt.tensor(a, dtype=mt.float64, requires_grad=need),
                    torch.tensor(a, dtype=torch.float64, requires_grad=need)))
    if not with_bias:
        ins[2] = (None, None)
    y = linear_fn(mt).apply(*(m for m, _ in ins))
    ty = linear_fn(torch).apply(*(t for _, t in ins))
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-12)
    y.sum().backward()
    ty.sum().backward()
    for m, t in ins:
        if t is not None and t.requires_grad:
            np.testing.assert_allclose(m.grad.numpy(), t.grad.numpy(), rtol=1e-12)
        elif m is not None:
            assert m.grad is None
    assert mt.autograd.gradcheck(linear_fn(mt).apply, tuple(m for m, _ in ins), fast_mode=True)


def test_non_differentiable_output_and_non_tensor_argument():
    rng = np.random.default_rng()
    x, tx = pair(rng, 3, 6)
    (v, i), (tv, ti) = scaled_max(mt).apply(x, 2.5), scaled_max(torch).apply(tx, 2.5)
    assert v.requires_grad and not i.requires_grad and i.dtype == mt.int64
    np.testing.assert_array_equal(i.numpy(), ti.numpy())
    w = rng.standard_normal(v.shape)
    (v * mt.tensor(w)).sum().backward()
    (tv * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
    assert mt.autograd.gradcheck(lambda t: scaled_max(mt).apply(t, 2.5)[0], [x])


def test_unused_outputs_get_zero_gradients_or_none():
    seen = []

    class Split(mt.autograd.Function):
        @staticmethod
        def forward(ctx, x, materialize):
            ctx.set_materialize_grads(materialize)
            return x * 2, x * 3

        @staticmethod
        def backward(ctx, ga, gb):
            seen.append((ga, gb))
            return (ga if ga is not None else 0) * 2 + (gb if gb is not None else 0) * 3, None

    x = mt.ones(2, requires_grad=True)
    Split.apply(x, True)[0].sum().backward()
    assert seen[-1][1].tolist() == [0.0, 0.0] and x.grad.tolist() == [2.0, 2.0]
    Split.apply(x, False)[1].sum().backward()
    assert seen[-1][0] is None and x.grad.tolist() == [5.0, 5.0]


def test_contract_errors():
    class TooMany(mt.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def backward(ctx, g):
            return g, g

    class NotATensor(mt.autograd.Function):
        @staticmethod
        def forward(ctx, x, k):
            ctx.save_for_backward(x)
            return x * k

        @staticmethod
        def backward(ctx, g):
            return g.numpy(), None

    x = mt.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"TooManyBackward returned an incorrect number of gradients "
                                           r"\(expected 1, got 2\)"):
        TooMany.apply(x).sum().backward()
    with pytest.raises(TypeError, match="NotATensorBackward returned a ndarray"):
        NotATensor.apply(x, 2).sum().backward()
    with pytest.raises(TypeError, match="save_for_backward can only save tensors"):
        class SavesNumber(mt.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(3)
                return x
        SavesNumber.apply(x)


def test_saved_tensors_are_version_checked_and_freed():
    rng = np.random.default_rng()
    x, _ = pair(rng, 4)
    h = x * 1
    y = legendre(mt).apply(h)
    h.add_(1)
    with pytest.raises(RuntimeError, match="modified by an in-place operation.*LegendrePolynomial3Backward"):
        y.sum().backward()
    y = legendre(mt).apply(x)
    y.sum().backward(retain_graph=True)
    y.sum().backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.sum().backward()


def test_returning_an_input_and_mark_dirty():
    class Identity(mt.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g * 10

    class AddOneInPlace(mt.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            x.add_(1)
            ctx.mark_dirty(x)
            return x

        @staticmethod
        def backward(ctx, g):
            return g

    a = mt.ones(2, requires_grad=True)
    b = Identity.apply(a)
    assert a.is_leaf and b is not a and b.grad_fn.name == "IdentityBackward"
    b.sum().backward()
    assert a.grad.tolist() == [10.0, 10.0]
    h = a * 2
    out = AddOneInPlace.apply(h)
    assert out is h and h.grad_fn.name == "AddOneInPlaceBackward" and h.tolist() == [3.0, 3.0]
    (h * h).sum().backward()
    assert a.grad.tolist() == [10.0 + 12.0, 10.0 + 12.0]
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        AddOneInPlace.apply(mt.ones(2, requires_grad=True))


def test_no_graph_without_grad():
    x = mt.ones(3, requires_grad=True)
    with mt.no_grad():
        y = legendre(mt).apply(x)
    assert y.grad_fn is None and not y.requires_grad
    assert legendre(mt).apply(mt.ones(3)).grad_fn is None


def test_next_functions_walk_the_graph_like_torchs():
    a, b, c = (mt.ones(2, requires_grad=True) for _ in range(3))
    ta, tb, tc = (torch.ones(2, requires_grad=True) for _ in range(3))
    d, td = mt.ones(2), torch.ones(2)
    y, ty = ((a * b + c * d).sum(), (ta * tb + tc * td).sum())

    def shape(fn):
        return None if fn is None else [shape(f) for f, _ in fn.next_functions]

    assert shape(y.grad_fn) == shape(ty.grad_fn) == [[[[], []], [[], None]]]
    mul = y.grad_fn.next_functions[0][0].next_functions[0][0]
    tmul = ty.grad_fn.next_functions[0][0].next_functions[0][0]
    assert [f.variable for f, _ in mul.next_functions] == [a, b] and [f.variable for f, _ in tmul.next_functions] == \
        [ta, tb]


def test_autograd_grad_matches_torch_and_leaves_grad_alone():
    rng = np.random.default_rng()
    (x, tx), (w, tw) = pair(rng, 3, 4), pair(rng, 4)
    h, th = x.tanh(), tx.tanh()
    y, ty = (h * w).sum() + (w ** 2).sum(), (th * tw).sum() + (tw ** 2).sum()
    gx, gh, gw = mt.autograd.grad(y, [x, h, w], retain_graph=True)
    tgx, tgh, tgw = torch.autograd.grad(ty, [tx, th, tw], retain_graph=True)
    for g, t in ((gx, tgx), (gh, tgh), (gw, tgw)):
        np.testing.assert_allclose(g.numpy(), t.numpy(), rtol=1e-12)
    assert x.grad is None and w.grad is None
    (gw2,) = mt.autograd.grad([y], w, grad_outputs=[mt.tensor(2.0, dtype=mt.float64)])
    np.testing.assert_allclose(gw2.numpy(), 2 * tgw.numpy(), rtol=1e-12)
    unused = mt.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="allow_unused=True"):
        mt.autograd.grad((x * 2).sum(), [unused])
    assert mt.autograd.grad((x * 2).sum(), [x, unused], allow_unused=True)[1] is None
    assert mt.autograd.grad((x * 2).sum(), [unused], materialize_grads=True)[0].tolist() == [0.0, 0.0]


def test_gradcheck_takes_torchs_options():
    x = mt.ones(3, dtype=mt.float64, requires_grad=True)
    assert mt.autograd.gradcheck(lambda t: t.exp(), (x,), eps=1e-6, atol=1e-5, rtol=1e-3, nondet_tol=0.0,
                                 check_undefined_grad=True, check_batched_grad=False, fast_mode=True)
    with pytest.raises(NotImplementedError, match="forward-mode"):
        mt.autograd.gradcheck(lambda t: t.exp(), (x,), check_forward_ad=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        mt.autograd.gradcheck(lambda t: t.exp(), (x,), bogus=1)
    assert mt.autograd.Variable(x) is x
