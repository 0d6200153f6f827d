"""The layers point one way: no module of mytensor imports one of a higher layer, at the top of
the file or inside a function. The order is written once, here; a new module must be placed in it.
Modules of one layer may import each other (the tensor and autograd are one layer)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "mytensor"

LAYERS = [  # lowest first; a module belongs to the longest name that prefixes it
    ["backend", "dtypes", "memory_formats", "unsupported"],
    ["tensor", "autograd", "creation", "random"],
    ["ops", "tensor_methods"],
    ["nn.functional"],
    ["nn", "optim", "amp", "backends", "cuda", "accelerator", "serialization"],
    ["data", "vision", "utils", "models"],
    ["training", "cli", "__main__"],
]


def layer_of(module):
    """The layer of a dotted module name (without the `mytensor.` prefix), or None."""
    best = None
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (best is None or len(name) > best[1]):
                best = (i, len(name))
    return None if best is None else best[0]


def modules():
    """(dotted name, path, the package it resolves relative imports in) for every module."""
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        package = parts[:-1]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path, package


def imported(path, package):
    """The mytensor modules a file imports (each `from . import a, b` name counted as a module)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name[len("mytensor."):] for a in node.names if a.name.startswith("mytensor."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
            elif node.module and node.module.startswith("mytensor"):
                base, node.module = [], node.module[len("mytensor"):].lstrip(".") or None
            else:
                continue
            if node.module:
                yield ".".join(base + [node.module])
            else:
                yield from (".".join(base + [a.name]) for a in node.names)


def test_every_module_has_a_layer():
    unplaced = [name for name, _, _ in modules() if name and layer_of(name) is None]
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"


def test_no_module_imports_a_higher_layer():
    upward = []
    for name, path, package in modules():
        if not name:  # the package itself binds everything
            continue
        mine = layer_of(name)
        for target in imported(path, package):
            theirs = layer_of(target)
            if theirs is not None and theirs > mine:
                upward.append(f"{name} (layer {mine}) imports {target} (layer {theirs})")
    assert not upward, "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path):
    """The test above would notice: a function-level import of nn from the tensor is upward."""
    fake = tmp_path / "tensor.py"
    fake.write_text("import numpy\n\n\ndef f():\n    from .nn.functional import relu\n    import mytensor.optim\n")
    assert list(imported(fake, [])) == ["nn.functional", "optim"]
    assert layer_of("nn.functional") > layer_of("tensor") and layer_of("optim") > layer_of("tensor")
