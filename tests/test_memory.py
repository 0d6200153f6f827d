"""A long training loop keeps memory flat: every step's graph and saved arrays
are freed by backward, and nothing accumulates from step to step.

NumPy reports its array allocations to tracemalloc, so the traced total covers
both Python objects and array data."""
import gc
import tracemalloc
import weakref

import pytest

import mytensor as mt
import mytensor.nn.functional as F
from mytensor.autograd.function import Node


def _live_nodes():
    return sum(1 for o in gc.get_objects() if type(o) is Node)  # type(): no __class__ lookups on foreign objects


def test_cnn_training_loop_keeps_memory_flat():
    params = {
        "conv_w": mt.randn(4, 1, 3, 3, requires_grad=True),
        "conv_b": mt.randn(4, requires_grad=True),
        "fc_w": mt.randn(10, 4 * 6 * 6, requires_grad=True),
        "fc_b": mt.randn(10, requires_grad=True),
    }
    x = mt.randn(8, 1, 12, 12)
    y = mt.randint(0, 10, (8,))

    def step():
        h = F.relu(F.conv2d(x, params["conv_w"], params["conv_b"], padding=1))
        h = F.max_pool2d(h, 2).flatten(1)
        loss = F.cross_entropy(F.linear(h, params["fc_w"], params["fc_b"]), y)
        loss.backward()
        with mt.no_grad():
            for p in params.values():
                p -= 0.01 * p.grad
                p.grad = None
        return weakref.ref(loss.grad_fn)

    gc.collect()
    nodes_before = _live_nodes()
    # automatic collection off: each step must be freed by reference counting alone,
    # with no cycles left for a later gc pass (on a GPU those would hold big arrays)
    gc.disable()
    try:
        for i in range(100):  # warm up (caches, first-call allocations) untraced
            assert step()() is None, f"step {i}: the graph outlived its step"
        gc.collect()
        # tracemalloc counts only allocations made while it runs: what is still alive at
        # step 1000 of what steps 100..999 allocated is the growth (a full collection
        # first, to empty CPython's free lists, which would otherwise count too)
        tracemalloc.start()
        at_100 = tracemalloc.get_traced_memory()[0]
        for i in range(100, 1000):
            assert step()() is None, f"step {i}: the graph outlived its step"
        cyclic_garbage = gc.collect()
        at_1000 = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        gc.enable()
    growth = at_1000 - at_100
    assert growth < 1_000_000, f"memory grew by {growth / 1e6:.2f} MB between step 100 and step 1000"
    assert cyclic_garbage == 0, f"{cyclic_garbage} objects were left in reference cycles by 900 steps"
    assert _live_nodes() <= nodes_before, "graph nodes survived the loop"


@pytest.mark.gpu
@pytest.mark.skipif(not mt.cuda_is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("graphed", [False, True])
def test_gpu_training_keeps_device_memory_flat(graphed):
    """1000 steps of cifar_lenet on the GPU, eager and replayed from a CUDA graph:
    the bytes in use in CuPy's pool at step 1000 are those of step 100."""
    import cupy

    from mytensor import models, optim
    from mytensor.training.loop import train_step
    model = models.get_model("cifar_lenet", num_classes=10, in_channels=3, image_size=32).to("cuda")
    step = train_step(model, optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    step = mt.cuda.graphed(step) if graphed else step
    batches = [(mt.randn(64, 3, 32, 32, device="cuda"), mt.randint(0, 10, (64,), device="cuda")) for _ in range(4)]
    pool = cupy.get_default_memory_pool()
    used = {}
    for i in range(1, 1001):
        step(*batches[i % 4])
        if i in (100, 1000):
            cupy.cuda.Device().synchronize()
            used[i] = pool.used_bytes()
    assert used[1000] - used[100] < 1 << 20, f"device memory grew by {(used[1000] - used[100]) / 2**20:.1f} MiB"
