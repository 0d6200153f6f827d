"""What a PyTorch program may reach for that mytensor does not have.

A missing name raises `NotSupportedError`, a `NotImplementedError` that names the
PyTorch API and, where there is one, what to use instead. It is also an
`AttributeError`, so `hasattr()` and `getattr(obj, name, default)` keep working.
"""


class NotSupportedError(NotImplementedError, AttributeError):
    pass


# PyTorch name -> what to do instead (empty: nothing equivalent yet)
ALTERNATIVES = {
    "torch.compile": "run the model eagerly; on a GPU, mytensor.cuda.graphed records a whole step as a CUDA graph",
    "torch.jit": "run the model eagerly",
    "torch.cuda.Stream": "mytensor runs every op on the current CuPy stream",
    "torch.cuda.Event": "time with time.perf_counter() around mytensor.cuda.synchronize()",
    "torch.cuda.graphs": "mytensor.cuda.graphed records a function (a whole training step) as a CUDA graph",
    "torch.cuda.CUDAGraph": "mytensor.cuda.graphed records a function (a whole training step) as a CUDA graph",
    "torch.cuda.nccl": "",
    "torch.autograd.gradgradcheck": "mytensor.autograd.gradcheck (first derivatives)",
    "torch.autograd.functional": "",
    "torch.autograd.forward_ad": "",
    "torch.fft": "",
    "torch.sparse": "",
    "torch.quantization": "",
    "torch.nn.LSTM": "",
    "torch.nn.GRU": "",
    "torch.nn.RNN": "",
    "torch.nn.Transformer": "build it from nn.MultiheadAttention, nn.LayerNorm and nn.Linear",
    "torch.nn.TransformerEncoderLayer": "build it from nn.MultiheadAttention, nn.LayerNorm and nn.Linear",
    "torch.nn.TransformerDecoderLayer": "build it from nn.MultiheadAttention, nn.LayerNorm and nn.Linear",
    "torch.nn.InstanceNorm2d": "",
    "torch.nn.functional.grid_sample": "",
    "torch.linalg": "torch.norm for vector norms, torch.matmul/einsum for products",
    "torch.cuda.max_memory_allocated": "mytensor.cuda.memory_allocated (no peak is kept)",
    "torch.Tensor.bernoulli_": "(torch.rand_like(x) < p).float()",
    "torch.Tensor.random_": "torch.randint",
    "torch.Tensor.apply_": "",
    "torch.nn.Conv3d": "",
    "torch.nn.utils.rnn": "",
    "torch.optim.LBFGS": "",
    "torch.utils.data.IterableDataset": "a map-style Dataset (__getitem__ and __len__)",
    "torch.utils.tensorboard": "mytensor train writes metrics.csv and curves.png",
    "torch.hub": "",
    "torch.onnx": "",
    "torch.complex64": "",
    "torch.complex128": "",
    "torch.Tensor.to_sparse": "",
    "torch.Tensor.share_memory_": "",
    "torch.Tensor.pin_memory": "mytensor's DataLoader copies batches to the GPU through pinned memory itself",
}


def error(torch_name, what="is not supported by mytensor"):
    alt = ALTERNATIVES.get(torch_name, "")
    return NotSupportedError(f"{torch_name} {what}" + (f"; instead: {alt}" if alt else "")
                             + " (docs/supported.md lists what is)")


def module_getattr(torch_prefix, module_name):
    """A module-level `__getattr__` for a mytensor module mirroring `torch_prefix`."""
    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        raise error(f"{torch_prefix}.{name}")
    return __getattr__
