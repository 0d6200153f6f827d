"""`increment_version`: how code that writes a tensor's storage directly (optimizer updates,
running statistics, module loading, in-place ops) tells autograd, as `torch.autograd.graph`.

Every tensor has a version counter, shared with its views; an op that saves a tensor for
backward remembers the version, and backward refuses to run on a tensor changed since."""


def increment_version(tensor):
    """Count one in-place write to `tensor`, or to each tensor of an iterable."""
    for t in (tensor,) if hasattr(tensor, "_version") else tensor:
        t._version[0] += 1
