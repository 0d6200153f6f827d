"""The name -> builder table behind `get_model`."""

_BUILDERS = {}


def register_model(name):
    """Decorator: make `fn(num_classes, in_channels, image_size)` buildable as `name`."""
    def add(fn):
        if name in _BUILDERS:
            raise ValueError(f"a model named {name!r} is already registered")
        _BUILDERS[name] = fn
        return fn
    return add


def available_models():
    return sorted(_BUILDERS)


def get_model(name, num_classes=10, in_channels=None, image_size=None, **kwargs):
    """Build model `name` for images of `in_channels` x `image_size` x `image_size`
    (left out: the model's usual dataset, 1x28x28 for the MNIST ones, 3x32x32 for the CIFAR ones)."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    shape = {k: v for k, v in (("in_channels", in_channels), ("image_size", image_size)) if v is not None}
    return _BUILDERS[name](num_classes=num_classes, **shape, **kwargs)
