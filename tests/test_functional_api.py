"""The functional namespace has PyTorch's names, parameter names and parameter order,
so `F.f(*args)` written for PyTorch means the same here."""
import inspect
import re

import pytest
import torch.nn.functional as TF

import mytensor.nn.functional as F


def torch_parameters(name):
    fn = getattr(TF, name)
    try:
        params = inspect.signature(fn).parameters
        if not any(p.kind is p.VAR_POSITIONAL for p in params.values()):
            return [p for p in params]
    except (TypeError, ValueError):
        pass
    # C builtins and boolean-dispatched functions: the signature opens the docstring (maybe over several lines)
    inside = re.match(rf"{name}\((.*?)\)", fn.__doc__.strip(), re.DOTALL).group(1)
    return [re.split(r"[=:]", p)[0].strip() for p in inside.split(",") if p.strip() and p.strip() != "*"]


@pytest.mark.parametrize("name", F.__all__)
def test_signature_matches_torch(name):
    ours = list(inspect.signature(getattr(F, name)).parameters)
    theirs = torch_parameters(name)
    assert ours == theirs, f"F.{name}: ours {ours}, PyTorch's {theirs}"


def test_nn_package_exposes_functional():
    import mytensor.nn as nn
    assert nn.functional is F
