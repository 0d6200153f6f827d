"""Device names: `cpu`, `cuda`, `cuda:1`, parsed once into a small value object."""


class Device:
    __slots__ = ("type", "index")

    def __init__(self, type, index=None):
        if type not in ("cpu", "cuda"):
            raise ValueError(f"unknown device type {type!r}; expected 'cpu' or 'cuda'")
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


def device(spec):
    """Parse 'cpu', 'cuda', 'cuda:N' or return a Device unchanged."""
    if isinstance(spec, Device):
        return spec
    if spec is None:
        return Device("cpu")
    if not isinstance(spec, str):
        raise TypeError(f"device must be a string or Device, got {type(spec).__name__}")
    kind, _, idx = spec.partition(":")
    if idx and not idx.isdigit():
        raise ValueError(f"bad device string {spec!r}; expected 'cpu', 'cuda' or 'cuda:N'")
    return Device(kind, int(idx) if idx else None)
