"""Bad input fails early with an error that names the shapes, dtypes or devices involved."""
import numpy as np
import pytest

import mytensor as mt


def needs_grad(*shape):
    return mt.ones(*shape, requires_grad=True)


def second_backward():
    y = (needs_grad(3).exp() * 2).sum()
    y.backward()
    y.backward()


def inplace_on_saved():
    a = needs_grad(2, 3)
    y = a * 1
    z = y.sin()  # saves y
    y.add_(1)
    z.sum().backward()


def inplace_through_view_on_saved():
    y = needs_grad(2, 3) * 1
    z = y @ y.T
    y[0].mul_(2)
    z.sum().backward()


def inplace_on_index():
    a, index = needs_grad(2, 3), mt.tensor([[0, 1], [2, 2]])
    g = a.gather(1, index)
    index.zero_()
    g.sum().backward()


def inplace_on_leaf():
    a = needs_grad(3)
    a.add_(1)


def inplace_on_view_of_leaf():
    a = needs_grad(2, 3)
    a[0].mul_(2)


CASES = [
    # broadcasting and shapes
    ("broadcast", lambda: mt.ones(2, 3) + mt.ones(4), ValueError, r"shapes \(2, 3\) and \(4,\) cannot be broadcast"),
    ("broadcast_mul", lambda: mt.ones(5, 1, 3) * mt.ones(4, 2), ValueError, r"\(5, 1, 3\) and \(4, 2\)"),
    ("broadcast_where", lambda: mt.where(mt.ones(3, dtype=mt.bool), mt.ones(3), mt.ones(2)), ValueError,
     r"\(3,\) and \(3,\) and \(2,\) cannot be broadcast"),
    ("broadcast_compare", lambda: mt.ones(3) < mt.ones(2), ValueError, r"\(3,\) and \(2,\)"),
    ("broadcast_inplace", lambda: mt.ones(3).add_(mt.ones(2, 3)), RuntimeError,
     r"in-place result of shape \(2, 3\) doesn't match the tensor's shape \(3,\)"),
    ("matmul_inner", lambda: mt.ones(2, 3) @ mt.ones(4, 5), ValueError,
     r"matmul: inner dimensions don't match: shapes \(2, 3\) and \(4, 5\) \(3 != 4\)"),
    ("matmul_vec", lambda: mt.ones(3) @ mt.ones(4), ValueError, r"shapes \(3,\) and \(4,\)"),
    ("matmul_batch", lambda: mt.ones(2, 3, 4) @ mt.ones(5, 4, 2), ValueError, r"batch dimensions of shapes"),
    ("matmul_0d", lambda: mt.ones(()) @ mt.ones(2), ValueError, r"at least 1 dimension, got shapes \(\) and \(2,\)"),
    ("mm_ndim", lambda: mt.mm(mt.ones(2, 3, 4), mt.ones(4, 2)), ValueError, r"mm expects 2-D tensors"),
    ("bmm_batch", lambda: mt.bmm(mt.ones(2, 3, 4), mt.ones(3, 4, 2)), ValueError, r"batch sizes differ"),
    ("reshape", lambda: mt.ones(2, 3).reshape(4, 2), ValueError, r"shape \(4, 2\) is invalid for input of size 6"),
    ("reshape_two_infer", lambda: mt.ones(6).reshape(-1, -1), ValueError, r"only one dimension can be inferred"),
    ("view_noncontiguous", lambda: mt.ones(3, 4).T.view(12), RuntimeError,
     r"view size \(12,\) is not compatible with input of shape \(4, 3\)"),
    ("expand", lambda: mt.ones(2, 3).expand(4, 3), ValueError, r"expand: the size of dimension 0 \(2\) must match 4"),
    ("permute", lambda: mt.ones(2, 2).permute(0, 0), ValueError, r"not a permutation of the 2 dimensions"),
    ("dim_range", lambda: mt.ones(2, 3).sum(2), IndexError, r"dimension out of range .*\[-2, 1\].* 2"),
    ("cat", lambda: mt.cat([mt.ones(2, 3), mt.ones(2, 4)]), ValueError, r"\[\(2, 3\), \(2, 4\)\]"),
    ("stack", lambda: mt.stack([mt.ones(2), mt.ones(3)]), ValueError, r"equal size.*\[\(2,\), \(3,\)\]"),
    ("split", lambda: mt.ones(5).split([2, 2]), ValueError, r"split sizes \[2, 2\] don't add up to the size 5"),
    ("pad", lambda: mt.pad(mt.ones(3), (1, 1, 1, 1)), ValueError, r"at most 2 \* ndim"),
    ("index", lambda: mt.ones(3)[5], IndexError, r"index 5 is invalid for a tensor of shape \(3,\)"),
    ("index_mask", lambda: mt.ones(3)[mt.ones(2, dtype=mt.bool)], IndexError, r"shape \(3,\)"),
    ("index_float", lambda: mt.ones(3)[mt.ones(1)], IndexError, r"long or bool, got mytensor.float32"),
    ("gather_shape", lambda: mt.ones(2, 3).gather(1, mt.zeros(3, 3, dtype=mt.int64)), ValueError,
     r"index of shape \(3, 3\) is larger than input of shape \(2, 3\)"),
    ("gather_dtype", lambda: mt.ones(2, 3).gather(1, mt.zeros(2, 3)), TypeError, r"int64"),
    ("one_hot_range", lambda: mt.one_hot(mt.tensor([0, 3]), 3), ValueError, r"smaller than num_classes \(3\)"),
    ("one_hot_negative", lambda: mt.one_hot(mt.tensor([-1])), ValueError, r"non-negative"),
    # dtypes
    ("requires_grad_int", lambda: mt.tensor([1, 2], requires_grad=True), RuntimeError,
     r"only floating point tensors can require gradients, got mytensor.int64"),
    ("inplace_cast", lambda: mt.ones(3, dtype=mt.int64).mul_(1.5), TypeError,
     r"result type mytensor.float32 can't be cast to the in-place output type mytensor.int64"),
    ("mean_int", lambda: mt.ones(3, dtype=mt.int64).mean(), RuntimeError, r"mytensor.int64 is not floating point"),
    ("var_int", lambda: mt.ones(3, dtype=mt.int64).var(), RuntimeError, r"floating point tensor, got mytensor.int64"),
    ("bool_sub", lambda: mt.ones(2, dtype=mt.bool) - mt.ones(2, dtype=mt.bool), TypeError, r"subtraction with a bool"),
    ("where_cond", lambda: mt.where(mt.ones(2), mt.ones(2), mt.ones(2)), TypeError, r"bool tensor as condition"),
    ("unsupported_dtype", lambda: mt.zeros(2, dtype="complex64"), TypeError, r"unsupported dtype 'complex64'"),
    ("ragged", lambda: mt.tensor([[1], [1, 2]]), TypeError, r"ragged"),
    ("operand_type", lambda: mt.add(mt.ones(2), "a"), TypeError, r"expected a tensor or a number, got str"),
    ("operator_type", lambda: mt.ones(2) + "a", TypeError, r"unsupported operand type.*'Tensor' and 'str'"),
    ("ndarray_operator", lambda: np.ones(2) - mt.ones(2), TypeError, r"unsupported operand type"),
    ("gradcheck_float32", lambda: mt.gradcheck(lambda t: t * 2, [needs_grad(2)]), TypeError, r"float64 .*float32"),
    ("random_int", lambda: mt.randn(2, dtype=mt.int64), TypeError, r"randn needs a floating point dtype"),
    # autograd
    ("backward_nonscalar", lambda: (needs_grad(2, 3) * 2).backward(), RuntimeError,
     r"grad can be implicitly created only for scalar outputs; this tensor has shape \(2, 3\)"),
    ("backward_gradient_shape", lambda: (needs_grad(2, 3) * 2).backward(mt.ones(3)), RuntimeError,
     r"gradient has shape \(3,\) but the tensor has shape \(2, 3\)"),
    ("backward_no_grad", lambda: mt.ones(2).sum().backward(), RuntimeError, r"does not require grad"),
    ("backward_under_no_grad", lambda: mt.no_grad()(lambda: (needs_grad(2) * 2).sum())().backward(), RuntimeError,
     r"does not require grad"),
    ("second_backward", second_backward, RuntimeError,
     r"backward through the graph a second time \(MulBackward has freed its saved arrays\).*retain_graph=True"),
    ("inplace_on_saved", inplace_on_saved, RuntimeError,
     r"modified by an in-place operation: a tensor of shape \(2, 3\) and dtype float32, saved by SinBackward, "
     r"is at version 1; expected version 0"),
    ("inplace_view_on_saved", inplace_through_view_on_saved, RuntimeError,
     r"modified by an in-place operation.*MatMulBackward"),
    ("inplace_on_index", inplace_on_index, RuntimeError, r"shape \(2, 2\) and dtype int64, saved by GatherBackward"),
    ("inplace_leaf", inplace_on_leaf, RuntimeError, r"a leaf tensor that requires grad is being used in an in-place"),
    ("inplace_view_of_leaf", inplace_on_view_of_leaf, RuntimeError, r"leaf tensor that requires grad \(or a view"),
    ("hook_no_grad", lambda: mt.ones(2).register_hook(print), RuntimeError, r"doesn't require gradient"),
    ("numpy_requires_grad", lambda: needs_grad(2).numpy(), RuntimeError, r"use tensor.detach\(\).numpy\(\)"),
    ("item", lambda: mt.ones(2).item(), ValueError, r"one-element tensor .* shape \(2,\)"),
    ("clamp_no_bounds", lambda: mt.ones(2).clamp(), ValueError, r"at least one of min and max"),
    ("device_string", lambda: mt.zeros(2, device="gpu"), ValueError, r"unknown device type 'gpu'"),
    ("from_dlpack", lambda: mt.from_dlpack(np.ones(2).tolist()), TypeError, r"expects an object with __dlpack__"),
]


@pytest.mark.parametrize("fn,exc,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_message(fn, exc, pattern):
    with pytest.raises(exc, match=pattern):
        fn()


@pytest.mark.gpu
@pytest.mark.skipif(not mt.cuda_is_available(), reason="needs CUDA")
def test_device_mismatch_names_devices():
    with pytest.raises(RuntimeError, match=r"expected all tensors on the same device, got tensors on cpu, cuda:0"):
        mt.ones(2) + mt.ones(2, device="cuda")
    with pytest.raises(RuntimeError, match=r"indices are on cpu but the indexed tensor is on cuda:0"):
        mt.ones(3, device="cuda")[mt.tensor([0, 1])]
