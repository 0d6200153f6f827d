"""`save` and `load`: tensors, arrays and plain values in a file that holds data only.

A file is a zip archive of `data.json` (the nesting of dicts, lists, tuples,
numbers, strings, None and bools, with tagged references such as
{"$tensor": ...} and {"$ndarray": 3}) and `arrays/3.npy`, ... in NumPy's own
format, read with `allow_pickle=False`. Nothing in it names a Python function,
so loading it cannot run code, as loading a pickle can (pickle calls whatever a
file names). Files written before this format, plain pickles, load through an
unpickler that admits only the types they hold (containers and NumPy arrays),
and refuse anything else by name.
"""
import collections
import contextlib
import io
import json
import os
import pickle
import uuid
import zipfile

import numpy as np

from .backend import cuda_is_available, device as as_device, to_host
from .tensor import Tensor

FORMAT = "mytensor/1"
_DICTS = {dict: "$dict", collections.OrderedDict: "$odict", collections.Counter: "$counter"}
_DICT_TAGS = {tag: kind for kind, tag in _DICTS.items()}
_SUPPORTED = ("it stores tensors, NumPy arrays, numbers, strings, None, bools, and dicts, lists and tuples of "
              "them")


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file beside `path` and rename it to `path` only once it is
    written and flushed to disk: a reader (or a run killed mid-write) sees the
    old file or the new one, never half of one. A failed write removes the
    temporary; a killed one leaves `.tmp-<name>.<random>` for `remove_temporaries`."""
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{name}.{uuid.uuid4().hex[:12]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask decides, as for open()
    try:
        with open(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_temporaries(folder):
    """Delete what killed `atomic_write`s left in `folder`; only its single writer may call it."""
    for entry in os.scandir(folder):
        if entry.name.startswith(".tmp-") and entry.is_file():
            os.unlink(entry.path)


# ---------------------------------------------------------------- save
def save(obj, f):
    """Write `obj` (e.g. a model's or an optimizer's `state_dict()`) to the path or
    binary file `f`; to a path atomically. Anything other than tensors, NumPy
    arrays and plain values is refused before a byte is written."""
    arrays = []
    tree = _encode(obj, arrays, "obj")
    if isinstance(f, (str, os.PathLike)):
        with atomic_write(f) as out:
            _write_zip(out, tree, arrays)
    else:
        _write_zip(f, tree, arrays)


def _write_zip(f, tree, arrays):
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        z.writestr("data.json", json.dumps({"format": FORMAT, "data": tree}))
        for i, a in enumerate(arrays):
            with z.open(f"arrays/{i}.npy", "w", force_zip64=True) as out:
                np.lib.format.write_array(out, a, allow_pickle=False)


def _encode(obj, arrays, where):
    """The JSON-able form of `obj`; its arrays are appended to `arrays`."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Tensor):
        from .nn.parameter import Parameter
        return {"$tensor": {"array": _add_array(to_host(obj._data), arrays, where),
                            "device": str(obj.device), "requires_grad": obj.requires_grad,
                            "parameter": isinstance(obj, Parameter)}}
    if isinstance(obj, np.ndarray):
        return {"$ndarray": _add_array(obj, arrays, where)}
    if isinstance(obj, np.generic):
        return {"$npscalar": _add_array(np.asarray(obj), arrays, where)}
    if isinstance(obj, list):
        return [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return {"$tuple": [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if type(obj) in _DICTS:
        if type(obj) is dict and all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: _encode(v, arrays, f"{where}[{k!r}]") for k, v in obj.items()}
        return {_DICTS[type(obj)]: [[_encode(k, arrays, f"{where} key {k!r}"), _encode(v, arrays, f"{where}[{k!r}]")]
                                    for k, v in obj.items()]}
    raise TypeError(f"mytensor.save: cannot store {where}, a {type(obj).__module__}.{type(obj).__qualname__}; "
                    f"{_SUPPORTED}")


def _add_array(a, arrays, where):
    if a.dtype.hasobject:
        raise TypeError(f"mytensor.save: cannot store {where}, a NumPy array of Python objects; {_SUPPORTED}")
    arrays.append(a)
    if a.dtype.isbuiltin == 2:  # a dtype NumPy knows only by registration (bfloat16): kept by name
        return [len(arrays) - 1, a.dtype.name]
    return len(arrays) - 1


# ---------------------------------------------------------------- load
def load(f, map_location=None, *, weights_only=True):
    """What `save` wrote, from a path or binary file. Tensors go back to the device
    they were saved from, or as `map_location` says: a device ("cpu", "cuda",
    `mytensor.device`), a dict {saved device: device}, or a callable
    (cpu_tensor, saved_device) -> tensor or None (None: the saved device).
    Files in the older pickle format load only if they hold plain data;
    `weights_only=False` unpickles them without that check (only for files you trust)."""
    name = os.fspath(f) if isinstance(f, (str, os.PathLike)) else getattr(f, "name", "the file")
    with contextlib.ExitStack() as stack:
        if isinstance(f, (str, os.PathLike)):
            f = stack.enter_context(open(f, "rb"))
        start = f.read(4)
        f.seek(-len(start), io.SEEK_CUR)
        if start == b"PK\x03\x04":
            return _load_zip(f, name, map_location)
        return _load_pickle(f, name, weights_only)


def _load_zip(f, name, map_location):
    try:
        with zipfile.ZipFile(f) as z:
            header = json.loads(z.read("data.json"))
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise ValueError(f"format {header.get('format') if isinstance(header, dict) else None!r}, "
                                 f"expected {FORMAT!r}")

            def array(ref):
                i, dtype = ref if isinstance(ref, list) else (ref, None)
                with z.open(f"arrays/{int(i)}.npy") as a:
                    a = np.lib.format.read_array(a, allow_pickle=False)
                return a if dtype is None else a.view(np.dtype(dtype))
            return _decode(header["data"], array, map_location)
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, AttributeError, EOFError, OSError) as e:
        raise RuntimeError(f"{name} is corrupt, truncated or not a mytensor file ({type(e).__name__}: {e})") from None


def _decode(node, array, map_location):
    if isinstance(node, list):
        return [_decode(v, array, map_location) for v in node]
    if not isinstance(node, dict):
        return node
    if not any(k.startswith("$") for k in node):
        return {k: _decode(v, array, map_location) for k, v in node.items()}
    (tag, value), = node.items()
    if tag == "$tensor":
        return _restore_tensor(array(value["array"]), value, map_location)
    if tag == "$ndarray":
        return array(value)
    if tag == "$npscalar":
        return array(value)[()]
    if tag == "$tuple":
        return tuple(_decode(v, array, map_location) for v in value)
    if tag in _DICT_TAGS:
        return _DICT_TAGS[tag]({_decode(k, array, map_location): _decode(v, array, map_location) for k, v in value})
    raise ValueError(f"unknown entry {tag!r}")


def _restore_tensor(a, info, map_location):
    saved = info["device"]
    if callable(map_location):
        t = map_location(Tensor(a), saved)
        if t is not None:
            return t
        target = saved
    elif isinstance(map_location, dict):
        target = map_location.get(saved, map_location.get(as_device(saved).type, saved))
    else:
        target = saved if map_location is None else map_location
    target = as_device(target)
    if target.type == "cuda" and not cuda_is_available():
        raise RuntimeError(f"a tensor was saved on {saved}, and there is no CUDA GPU here; "
                           f"load it with map_location='cpu'")
    t = Tensor(a, device=target)
    if info["parameter"]:
        from .nn.parameter import Parameter
        return Parameter(t, requires_grad=info["requires_grad"])
    return t.requires_grad_(True) if info["requires_grad"] else t


# what the pickles of older versions hold: containers and NumPy arrays, and nothing that runs code
_PICKLED_DATA = {("collections", "OrderedDict"), ("collections", "Counter"), ("numpy", "dtype"),
                 ("numpy", "ndarray")} | {(f"numpy.{core}.{module}", fn) for core in ("core", "_core")
                                          for module, fn in (("multiarray", "_reconstruct"), ("multiarray", "scalar"),
                                                             ("numeric", "_frombuffer"))}


class _DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _PICKLED_DATA:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused {module}.{name}")


def _load_pickle(f, name, weights_only):
    unpickler = _DataOnlyUnpickler(f) if weights_only else pickle.Unpickler(f)
    try:
        return unpickler.load()
    except pickle.UnpicklingError as e:
        if str(e).startswith("refused "):
            raise pickle.UnpicklingError(
                f"{name}: {e}: this pickle asks to call or build something other than plain data (containers, "
                f"numbers, NumPy arrays), which could run any code; it was not loaded. Only if you trust where "
                f"it comes from, load it with mytensor.load(path, weights_only=False)") from None
        raise RuntimeError(f"{name} is corrupt, truncated or not a mytensor file ({e})") from None
    except (EOFError, AttributeError, ValueError, TypeError, IndexError) as e:
        raise RuntimeError(f"{name} is corrupt, truncated or not a mytensor file ({type(e).__name__}: {e})") \
            from None
