"""Device names: `cpu`, `cuda`, `cuda:1`, parsed once into a small value object,
and the default device that factory functions use when none is named."""


class Device:
    """`Device("cuda")`, `Device("cuda", 1)`, `Device("cuda:1")` or `Device(other_device)`,
    as `torch.device` takes them; `mytensor.device` is this class."""
    __slots__ = ("type", "index")

    def __init__(self, type, index=None):
        if isinstance(type, Device):
            type, index = type.type, type.index if index is None else index
        elif not isinstance(type, str):
            raise TypeError(f"device must be a string or Device, got {type.__class__.__name__}")
        elif ":" in type:
            type, _, idx = type.partition(":")
            if not idx.isdigit() or index is not None:
                raise ValueError(f"bad device string {type}:{idx!r}; expected 'cpu', 'cuda' or 'cuda:N'")
            index = int(idx)
        if type not in ("cpu", "cuda"):
            hint = " (mytensor runs on NVIDIA GPUs through CuPy, or on the CPU)" if type in ("mps", "xpu") else ""
            raise ValueError(f"unknown device type {type!r}; expected 'cpu' or 'cuda'{hint}")
        self.type = type
        self.index = None if type == "cpu" else (index or 0)

    def __eq__(self, other):
        try:
            other = device(other)
        except (TypeError, ValueError):
            return NotImplemented
        return self.type == other.type and self.index == other.index

    def __hash__(self):
        return hash((self.type, self.index))

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        return f"device(type='{self.type}'" + ("" if self.index is None else f", index={self.index}") + ")"

    def __enter__(self):
        """`with mytensor.device("cuda"):` makes it the default device for the block."""
        global _default
        _outer.append(_default)
        _default = self
        return self

    def __exit__(self, *exc):
        global _default
        _default = _outer.pop()


_CPU = Device("cpu")
_default = _CPU
_outer = []  # the defaults that enclosing `with device(...)` blocks replaced


def device(spec):
    """Parse 'cpu', 'cuda', 'cuda:N' or return a Device unchanged; None is the default device."""
    if spec.__class__ is Device:
        return spec
    if spec is None:
        return _default
    return Device(spec)


def set_default_device(spec):
    """Where factory functions (`zeros`, `randn`, `tensor`, layers' parameters...) put
    tensors when no device is named, as `torch.set_default_device`; None resets it to the CPU."""
    global _default
    _default = _CPU if spec is None else Device(spec)


def get_default_device():
    return _default
