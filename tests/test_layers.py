"""The layers point one way: no module of mytensor imports one of a higher layer, at the top of
the file or inside a function. The order is written once, here; a new module must be placed in it.
Modules of one layer may import each other (the tensor and autograd are one layer).

And no package takes another's private names: what one package offers the others has a name
without a leading underscore."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "mytensor"

LAYERS = [  # lowest first; a module belongs to the longest name that prefixes it
    ["backend", "dtypes", "memory_formats", "unsupported"],
    ["tensor", "autograd", "creation", "random"],
    ["ops", "tensor_methods"],
    ["nn.functional"],
    ["nn", "optim", "amp", "backends", "cuda", "accelerator", "serialization", "distributed"],
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


def package_of(module):
    """The package of a dotted module name: itself for a package, else its parent ('' at the top)."""
    return module if (ROOT / module.replace(".", "/")).is_dir() else module.rpartition(".")[0]


def private_uses(path, package):
    """The underscore names a file takes from another package: imported (`from ..x import _y`,
    or from a module `_y`) or read off a name it imported (`init._y`, `Tensor._y`)."""
    def private(name):
        return name.startswith("_") and not name.startswith("__")
    tree, mine, bound = ast.parse(path.read_text()), ".".join(package), {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or not (node.level or (node.module or "").startswith("mytensor")):
            continue
        base = package[:len(package) - node.level + 1] if node.level else []
        module = node.module[len("mytensor"):].lstrip(".") if not node.level else node.module
        for a in node.names:
            source = ".".join(base + ([module] if module else [a.name]))
            if package_of(source) == mine:
                continue
            if private(a.name) or any(private(part) for part in source.split(".")):
                yield f"from {source} import {a.name}"
            bound[a.asname or a.name] = source
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound \
                and private(node.attr):
            yield f"{node.value.id}.{node.attr} (from {bound[node.value.id]})"


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


def test_no_package_takes_another_packages_private_names():
    """The core (the tensor, autograd and the ops) builds tensors around arrays with `Tensor._wrap`;
    the layers above it use the public constructors (`as_tensor`, `zeros_like`, `full`, ...)."""
    found = []
    for name, path, package in modules():
        if not name:
            continue
        uses = private_uses(path, package)
        if layer_of(name) <= layer_of("ops"):
            uses = (u for u in uses if not u.startswith("Tensor._wrap"))
        found += [f"{name}: {u}" for u in uses]
    assert not found, "\n".join(found)


def test_the_check_sees_a_private_name(tmp_path):
    fake = tmp_path / "conv.py"
    fake.write_text("from .. import init\nfrom ...backend import _backends\nfrom .module import _helper\n\n\n"
                    "def f(w):\n    return init._fan(w)\n")
    assert list(private_uses(fake, ["nn", "modules"])) == ["from backend import _backends", "init._fan (from nn.init)"]
