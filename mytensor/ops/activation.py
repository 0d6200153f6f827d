"""The activations the backend runs as kernels (`backend.relu`, `leaky_relu`, `gelu`, `sigmoid`,
`tanh` and their backwards: activation.cu on the GPU), each a Function with forward and backward
side by side. They are ops, below nn.functional, because relu, sigmoid and tanh are also Tensor
methods; nn.functional.activation checks the arguments of the functional forms."""
from ..autograd.function import Function
from .util import float_unary

__all__ = ["relu", "sigmoid", "tanh"]


class Relu(Function):
    may_warn = False  # a maximum: nan passes through without a warning

    @staticmethod
    def forward(ctx, x):
        out = ctx.backend.relu(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return ctx.backend.relu_backward(grad, ctx.saved[0])


class LeakyRelu(Function):
    @staticmethod
    def forward(ctx, x, slope):
        ctx.slope = slope
        ctx.save_for_backward(x)
        return ctx.backend.leaky_relu(x, slope)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        return ctx.backend.leaky_relu_backward(grad, x, ctx.slope), None


class Gelu(Function):
    @staticmethod
    def forward(ctx, x, approximate):
        ctx.approximate = approximate
        ctx.save_for_backward(x)
        return ctx.backend.gelu(x, approximate)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        return ctx.backend.gelu_backward(grad, x, ctx.approximate), None


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, x):
        out = ctx.backend.sigmoid(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return ctx.backend.sigmoid_backward(grad, ctx.saved[0])


class Silu(Function):
    """x * sigmoid(x); d/dx = s (1 + x (1 - s)) with s = sigmoid(x)."""

    @staticmethod
    def forward(ctx, x):
        s = ctx.backend.sigmoid(x)
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx, grad):
        x, s = ctx.saved
        return grad * s * (1 + x * (1 - s))


class Tanh(Function):
    @staticmethod
    def forward(ctx, x):
        out = ctx.backend.tanh(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return ctx.backend.tanh_backward(grad, ctx.saved[0])


def relu(x):
    return Relu.apply(x)


tanh, sigmoid = float_unary(Tanh), float_unary(Sigmoid)
