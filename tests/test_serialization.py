"""mytensor.save / mytensor.load: round trips, map_location, and files that would run code."""
import collections
import io
import json
import os
import pickle
import zipfile
from fractions import Fraction

import numpy as np
import pytest

import mytensor as mt
from mytensor import nn, optim


class RunsCode:
    """What a hostile checkpoint holds: unpickling it calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _trained():
    mt.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(mt.randn(5, 4)).sum().backward()
    opt.step()
    return model, opt


def test_round_trip_of_state_dicts_and_plain_values(tmp_path):
    model, opt = _trained()
    obj = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3, "loss": float("nan"),
           "nested": [(1, 2.5, None, True, "s"), {"$not_a_tag": np.float32(2)}], "counts": collections.Counter("aab"),
           "array": np.arange(6).reshape(2, 3).T, "tensor": mt.randn(2, 3), "param": model[0].weight}
    mt.save(obj, tmp_path / "a.pt")
    back = mt.load(tmp_path / "a.pt")
    assert type(back["model"]) is collections.OrderedDict and list(back["model"]) == list(obj["model"])
    for k, v in obj["model"].items():
        np.testing.assert_array_equal(back["model"][k], v)
    assert back["optimizer"]["param_groups"] == obj["optimizer"]["param_groups"]
    assert list(back["optimizer"]["state"]) == [0, 1, 2, 3, 4, 5]  # int keys stay ints
    assert back["epoch"] == 3 and np.isnan(back["loss"])
    assert back["nested"][0] == (1, 2.5, None, True, "s")
    assert back["nested"][1] == {"$not_a_tag": 2.0} and type(back["nested"][1]["$not_a_tag"]) is np.float32
    assert back["counts"] == collections.Counter("aab") and type(back["counts"]) is collections.Counter
    np.testing.assert_array_equal(back["array"], obj["array"])
    assert isinstance(back["tensor"], mt.Tensor) and not back["tensor"].requires_grad
    np.testing.assert_array_equal(back["tensor"].numpy(), obj["tensor"].numpy())
    assert isinstance(back["param"], nn.Parameter) and back["param"].requires_grad

    fresh_model, fresh_opt = _trained()
    fresh_model.load_state_dict(back["model"])
    fresh_opt.load_state_dict(back["optimizer"])
    for opt_ in (opt, fresh_opt):
        opt_.step()
    for a, b in zip(model.parameters(), fresh_model.parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_file_objects_and_map_location(tmp_path):
    buf = io.BytesIO()
    mt.save({"w": mt.ones(2)}, buf)
    buf.seek(0)
    assert mt.load(buf, map_location="cpu")["w"].device == mt.device("cpu")

    # a file saved on a GPU: the tensor's device is recorded as cuda:0
    path = tmp_path / "gpu.pt"
    mt.save({"w": mt.ones(2)}, path)
    with zipfile.ZipFile(path) as z:
        files = {name: z.read(name) for name in z.namelist()}
    files["data.json"] = files["data.json"].replace(b'"device": "cpu"', b'"device": "cuda:0"')
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    for where in ("cpu", mt.device("cpu"), {"cuda:0": "cpu"}, {"cuda": "cpu"}, lambda t, loc: t):
        assert mt.load(path, map_location=where)["w"].device == mt.device("cpu"), where
    seen = []
    mt.load(path, map_location=lambda t, loc: seen.append(loc) or t)
    assert seen == ["cuda:0"]
    if not mt.cuda_is_available():
        for where in (None, lambda t, loc: None):  # None: the saved device
            with pytest.raises(RuntimeError, match="saved on cuda:0, and there is no CUDA GPU here; .*map_location"):
                mt.load(path, map_location=where)


def test_save_refuses_what_load_could_not_rebuild(tmp_path):
    with pytest.raises(TypeError, match=r"cannot store obj\['x'\]\[1\], a fractions.Fraction"):
        mt.save({"x": [1, Fraction(1, 3)]}, tmp_path / "a.pt")
    with pytest.raises(TypeError, match="array of Python objects"):
        mt.save(np.array([None, 1]), tmp_path / "a.pt")
    assert os.listdir(tmp_path) == []  # nothing written, not even a temporary


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"model": RunsCode(marker)}))
    with pytest.raises(pickle.UnpicklingError, match=r"refused posix\.system.*weights_only=False"):
        mt.load(path)
    assert not marker.exists()


def test_older_pickled_checkpoints_still_load(tmp_path):
    model, opt = _trained()
    old = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 2, "acc": np.float64(0.5),
           "scheduler": {"milestones": collections.Counter([2, 4]), "f": np.asfortranarray(np.ones((2, 3)))}}
    path = tmp_path / "old.ckpt"
    path.write_bytes(pickle.dumps(old, protocol=pickle.HIGHEST_PROTOCOL))
    back = mt.load(path)
    for k, v in old["model"].items():
        np.testing.assert_array_equal(back["model"][k], v)
    assert back["scheduler"]["milestones"] == old["scheduler"]["milestones"] and back["acc"] == 0.5

    path.write_bytes(pickle.dumps({"x": Fraction(1, 3)}))
    with pytest.raises(pickle.UnpicklingError, match="refused fractions.Fraction"):
        mt.load(path)
    assert mt.load(path, weights_only=False) == {"x": Fraction(1, 3)}  # the caller vouches for the file


@pytest.mark.parametrize("data", [b"", b"not a checkpoint", b"PK\x03\x04truncated"])
def test_corrupt_files_are_a_clear_error(tmp_path, data):
    path = tmp_path / "bad.pt"
    path.write_bytes(data)
    with pytest.raises(RuntimeError, match="bad.pt is corrupt, truncated or not a mytensor file"):
        mt.load(path)


def test_a_zip_naming_unknown_entries_is_refused(tmp_path):
    path = tmp_path / "odd.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data.json", json.dumps({"format": "mytensor/1", "data": {"$callable": "os.system"}}))
    with pytest.raises(RuntimeError, match="unknown entry '\\$callable'"):
        mt.load(path)


def test_dtypes_numpy_knows_by_registration(tmp_path):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    a = np.arange(4, dtype=np.float32).astype(ml_dtypes.bfloat16)
    mt.save({"a": a}, tmp_path / "b.pt")
    back = mt.load(tmp_path / "b.pt")["a"]
    assert back.dtype == a.dtype
    np.testing.assert_array_equal(back.astype(np.float32), a.astype(np.float32))
