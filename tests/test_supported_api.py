"""docs/supported.md is the list of PyTorch names mytensor has, and this test keeps it exact:
every name listed exists (under the same path, with mytensor for torch and mytensor.vision for
torchvision), every mytensor name that is also a PyTorch name is listed, and every name in
its "Not supported" section raises NotImplementedError naming the PyTorch API."""
import re
import types
from pathlib import Path

import pytest
import torch

import mytensor as mt
import mytensor.vision  # noqa: F401
from mytensor.unsupported import ALTERNATIVES, NotSupportedError

DOC = Path(__file__).resolve().parents[1] / "docs" / "supported.md"
NAMESPACES = ["torch", "torch.Tensor", "torch.nn", "torch.nn.functional", "torch.nn.init", "torch.nn.utils",
              "torch.nn.parallel", "torch.optim", "torch.optim.lr_scheduler", "torch.utils.data", "torch.distributed",
              "torch.autograd", "torch.autograd.graph", "torch.cuda", "torch.backends.cudnn", "torch.backends.mps",
              "torch.accelerator"]
VISION = ["torchvision.datasets", "torchvision.transforms", "torchvision.utils"]
# attributes that are not callables or that instances carry
FLAGS = {"torch.backends.cudnn": {"benchmark", "deterministic", "enabled"}, "torch.Tensor": {"grad", "requires_grad"}}


def resolve(path):
    """The mytensor object for a PyTorch path: torch.nn.Linear -> mytensor.nn.Linear."""
    parts = path.split(".")
    obj = mt.vision if parts[0] == "torchvision" else mt
    for p in parts[1:]:
        obj = getattr(obj, p)
    return obj


def torch_object(path):
    obj = torch
    for p in path.split(".")[1:]:
        obj = getattr(obj, p)
    return obj


def ours(namespace):
    """mytensor's public names in a namespace that are its own (not imports), callables, classes or dtypes."""
    obj = resolve(namespace)
    if isinstance(obj, type):
        found = set(FLAGS.get(namespace, ()))
        for n in dir(obj):
            if n.startswith("_"):
                continue
            try:
                getattr(mt.ones(1), n)
            except NotSupportedError:
                continue
            except Exception:
                pass
            found.add(n)
        return found
    found = set(FLAGS.get(namespace, ()))
    for n, v in vars(obj).items():
        if n.startswith("_") or isinstance(v, types.ModuleType):
            continue
        if isinstance(v, mt.DType) or (callable(v) and getattr(v, "__module__", "").startswith("mytensor")):
            found.add(n)
    return found


def documented():
    sections, current = {}, None
    for line in DOC.read_text().splitlines():
        heading = re.match(r"## `([\w.]+)`", line)
        if heading:
            current = sections.setdefault(heading.group(1), set())
        elif line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), set())
        elif current is not None:
            current.update(re.findall(r"`([\w.]+)`", line))
    return sections


def test_every_listed_name_exists_and_every_shared_name_is_listed():
    sections = documented()
    for namespace in NAMESPACES:
        listed = sections.get(namespace, set())
        shared = {n for n in ours(namespace) if hasattr(torch_object(namespace), n)}
        assert listed == shared, (f"{namespace}: listed but missing or not PyTorch's: {sorted(listed - shared)}; "
                                  f"not listed: {sorted(shared - listed)}")
    for namespace in VISION:
        for n in sections[namespace]:
            assert resolve(f"{namespace}.{n}") is not None


def test_module_layout_is_listed_and_bound():
    for path in sections_of("The module layout"):
        assert isinstance(resolve(path), types.ModuleType), path


def sections_of(title):
    return documented()[title]


def test_unsupported_names_raise_not_implemented():
    listed = sections_of("Not supported")
    assert listed == set(ALTERNATIVES), sorted(listed ^ set(ALTERNATIVES))
    for path in sorted(listed):
        head, _, name = path.rpartition(".")
        with pytest.raises(NotImplementedError, match=re.escape(path)):
            if head == "torch.Tensor":
                getattr(mt.ones(1), name)
            else:
                resolve(path)
