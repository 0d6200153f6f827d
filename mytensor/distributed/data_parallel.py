"""DistributedDataParallel: the same model in every process, each on its share of the batch;
backward averages the gradients over the processes while it runs.

At construction rank 0's parameters and buffers are broadcast, so the replicas start equal. The
parameters are grouped into buckets of about `bucket_cap_mb`, in reverse order, the order in which
backward produces their gradients (as PyTorch's DDP). A hook on each parameter's gradient
accumulator marks it ready; once every gradient of a bucket is, the bucket is copied into one flat
buffer, all-reduced, scaled by 1 / world size and copied back, while backward goes on with the
layers below. Buckets go out in the same order on every rank, as NCCL needs. On CUDA this runs on a
stream of its own that waits for an event recorded after the gradients, and after the last bucket
the current stream waits for that stream's event: the optimizer step sees averaged gradients and the
host never waits. Batch-norm statistics stay per process (a checkpoint saves rank 0's).
"""
import contextlib
import functools

from ..autograd.grad_mode import is_grad_enabled, no_grad
from ..nn.modules.module import Module
from .process_group import default_group

MB = 1024 * 1024
BUCKET_CAP_MB = 25  # PyTorch's defaults; with the default cap, the last layers' gradients leave
FIRST_BUCKET_MB = 1  # early, in a small first bucket


def bucket_assignment(params, bucket_cap_mb, first_bucket_mb=None):
    """Lists of indices into `params` in the order backward fills them: from the last parameter
    to the first, one dtype per bucket, a bucket closed once it holds `bucket_cap_mb` or more (the
    first bucket: `first_bucket_mb`, if given)."""
    first_bucket_mb = bucket_cap_mb if first_bucket_mb is None else first_bucket_mb
    buckets, filling = [], {}  # dtype -> [indices, bytes] of the bucket it is filling
    for i in reversed(range(len(params))):
        slot = filling.setdefault(params[i].dtype, [[], 0])
        slot[0].append(i)
        slot[1] += params[i].numel() * params[i].element_size()
        if slot[1] >= (first_bucket_mb if not buckets else bucket_cap_mb) * MB:
            buckets.append(slot[0])
            del filling[params[i].dtype]
    return buckets + [indices for indices, _ in filling.values()]


class _Bucket:
    def __init__(self, params):
        self.params = params
        self.sizes = [p.numel() for p in params]
        self.flat = params[0]._backend.xp.empty(sum(self.sizes), dtype=params[0]._data.dtype)
        self.waiting = set(range(len(params)))  # the positions whose gradient has not arrived


class DistributedDataParallel(Module):
    """`module` replicated in each process of `process_group` (default: the one `init_process_group`
    made); `.module` is the wrapped module, and `state_dict()` keys begin with `module.` as in PyTorch.
    Every parameter that requires grad must receive a gradient in each backward."""

    def __init__(self, module, device_ids=None, output_device=None, process_group=None, bucket_cap_mb=None):
        super().__init__()
        if device_ids is not None and len(device_ids) > 1:
            raise ValueError(f"device_ids {list(device_ids)}: each process trains on one device")
        self.module = module
        self.process_group = default_group(process_group)
        self.require_backward_grad_sync = True
        with no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                self.process_group.broadcast(t._data, 0)
        params = [p for p in module.parameters() if p.requires_grad]
        self._names = {id(p): name for name, p in module.named_parameters()}
        assignment = bucket_assignment(params, BUCKET_CAP_MB, FIRST_BUCKET_MB) if bucket_cap_mb is None else \
            bucket_assignment(params, bucket_cap_mb)
        self._buckets = [_Bucket([params[i] for i in indices]) for indices in assignment]
        for b, bucket in enumerate(self._buckets):
            for position, p in enumerate(bucket.params):
                p.register_post_accumulate_grad_hook(functools.partial(self._ready, b, position))
        self._next = 0  # the bucket to all-reduce next
        self._sync = True  # whether the backward of the last forward averages
        self._xp = params[0]._backend.xp if params else None
        self._stream = self._xp.cuda.Stream(non_blocking=True) if params and params[0].is_cuda else None

    def forward(self, *inputs, **kwargs):
        self._check_finished()
        if is_grad_enabled():
            self._sync = self.require_backward_grad_sync
        return self.module(*inputs, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Backwards of the forwards run inside keep their gradients local (accumulating in `.grad`);
        the first backward after it averages the sum."""
        before, self.require_backward_grad_sync = self.require_backward_grad_sync, False
        try:
            yield
        finally:
            self.require_backward_grad_sync = before

    def _ready(self, b, position, param):
        if not self._sync:
            return
        self._buckets[b].waiting.discard(position)
        while self._next < len(self._buckets) and not self._buckets[self._next].waiting:
            self._all_reduce(self._buckets[self._next])
            self._next += 1
        if self._next == len(self._buckets):
            if self._stream is not None:
                self._xp.cuda.get_current_stream().wait_event(self._stream.record())
            for bucket in self._buckets:
                bucket.waiting = set(range(len(bucket.params)))
            self._next = 0

    def _all_reduce(self, bucket):
        grads = [p.grad._data for p in bucket.params]
        with self._side_stream() as stream:
            self._xp.concatenate([g.reshape(-1) for g in grads], out=bucket.flat)
            self.process_group.all_reduce(bucket.flat, stream)
            bucket.flat *= 1 / self.process_group.size
            offset = 0
            for g, n in zip(grads, bucket.sizes):
                g[...] = bucket.flat[offset:offset + n].reshape(g.shape)
                offset += n

    @contextlib.contextmanager
    def _side_stream(self):
        """On CUDA, the communication stream, started after what the current stream has queued."""
        if self._stream is None:
            yield None
            return
        self._stream.wait_event(self._xp.cuda.get_current_stream().record())
        with self._stream:
            yield self._stream

    def _check_finished(self):
        """A backward that left buckets unsent (some parameter got no gradient) would let the
        replicas drift apart: say so at the next forward."""
        if all(len(b.waiting) == len(b.params) for b in self._buckets):
            return
        waiting = {id(b.params[i]) for b in self._buckets for i in b.waiting}
        missing = [name for key, name in self._names.items() if key in waiting]
        raise RuntimeError(f"the last backward gave no gradient to {', '.join(missing[:10])}: "
                           f"DistributedDataParallel averages gradients once every parameter has one; give every "
                           f"parameter a part in the loss, or set requires_grad=False on those it does not use")
