"""More of `torch.nn.functional`, composed from differentiable ops: the L1-type losses,
normalize, cosine_similarity, and nearest-neighbour interpolation."""
from ... import ops
from ...ops import autocast_policy
from .util import check_float, check_reduction, reduce_loss, reduction_from_legacy


def _pointwise_loss(fn, input, target, size_average, reduce, reduction, loss, weight=None, weighted_mean=False):
    """loss(input - target), weighted elementwise if asked; PyTorch's weighted 'mean' is
    sum(w * loss) / sum(w) for l1_loss but the plain mean of w * loss for huber_loss."""
    check_float(input, "input", fn)
    reduction = reduction_from_legacy(size_average, reduce, reduction)
    check_reduction(reduction, fn)
    err = loss(input - target)
    if weight is None:
        return reduce_loss(err, reduction)
    if tuple(weight.shape) != tuple(input.shape):
        raise ValueError(f"{fn}(): weight of shape {tuple(weight.shape)} must have the input's shape "
                         f"{tuple(input.shape)}")
    err = err * weight
    if reduction == "mean" and weighted_mean:
        return err.sum() / weight.sum()
    return reduce_loss(err, reduction)


@autocast_policy.float32
def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    return _pointwise_loss("l1_loss", input, target, size_average, reduce, reduction, ops.abs, weight, True)


@autocast_policy.float32
def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta."""
    def loss(d):
        a = ops.abs(d)
        return ops.where(a < beta, 0.5 * d * d / beta, a - 0.5 * beta) if beta > 0 else a
    return _pointwise_loss("smooth_l1_loss", input, target, size_average, reduce, reduction, loss)


@autocast_policy.float32
def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta)."""
    def loss(d):
        a = ops.abs(d)
        return ops.where(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta))
    return _pointwise_loss("huber_loss", input, target, None, None, reduction, loss, weight)


@autocast_policy.float32
def normalize(input, p=2.0, dim=1, eps=1e-12, out=None):
    """input / max(||input||_p, eps) along dim."""
    return input / ops.clamp(ops.norm(input, p, dim, keepdim=True), min=eps)


@autocast_policy.float32
def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    return (normalize(x1, 2.0, dim, eps) * normalize(x2, 2.0, dim, eps)).sum(dim)


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None, recompute_scale_factor=None,
                antialias=False):
    """Nearest-neighbour resizing of (N, C, W), (N, C, H, W), ... input: output pixel i takes
    input pixel floor(i * in / out) (floor(i / scale_factor) when a factor is given), as PyTorch."""
    import numpy as np
    from ...tensor import Tensor
    if mode != "nearest":
        raise NotImplementedError(f"torch.nn.functional.interpolate(mode={mode!r}): only 'nearest' is supported")
    spatial = input.shape[2:]
    if not spatial:
        raise ValueError(f"interpolate(): expected an input with spatial dimensions, got shape {tuple(input.shape)}")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate(): give exactly one of size and scale_factor")
    k = len(spatial)
    if size is not None:
        out = (size,) * k if isinstance(size, int) else tuple(size)
        scales = [i / o for i, o in zip(spatial, out)]
    else:
        factors = (scale_factor,) * k if isinstance(scale_factor, (int, float)) else tuple(scale_factor)
        out = tuple(int(np.floor(i * f)) for i, f in zip(spatial, factors))
        scales = [1 / f for f in factors]
    x = input
    for axis, (n_in, n_out, s) in enumerate(zip(spatial, out, scales)):
        src = np.minimum(np.floor(np.arange(n_out) * s).astype(np.int64), n_in - 1)
        idx = Tensor(src, device=input.device)
        x = ops.index_select(x, 2 + axis, idx)
    return x
