"""`torch.backends.mps`: Apple's Metal backend, which mytensor does not have."""


def is_available():
    return False


def is_built():
    return False
