"""nn.Module machinery: registration, traversal, modes, state_dict, devices, repr, containers."""
import copy
import inspect
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

import mytensor as mt
from mytensor import nn, optim

DEVICES = ["cpu"] + ([pytest.param("cuda", marks=pytest.mark.gpu)] if mt.cuda_is_available() else [])


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)
        self.fc2 = nn.Linear(3, 2, bias=False)
        self.scale = nn.Parameter(mt.ones(1))
        self.register_buffer("steps", mt.zeros(1))
        self.register_buffer("scratch", mt.zeros(2), persistent=False)

    def forward(self, x):
        return self.fc2(self.fc1(x).relu()) * self.scale


# ----------------------------------------------------------------- registration
def test_parameters_buffers_and_children_are_registered_in_order():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == ["scale", "fc1.weight", "fc1.bias", "bn.weight", "bn.bias",
                                                       "fc2.weight"]
    assert [n for n, _ in net.named_buffers()] == ["steps", "scratch", "bn.running_mean", "bn.running_var",
                                                    "bn.num_batches_tracked"]
    assert [n for n, _ in net.named_children()] == ["fc1", "bn", "fc2"]
    assert [n for n, _ in net.named_modules()] == ["", "fc1", "bn", "fc2"]
    assert list(net.children()) == [net.fc1, net.bn, net.fc2]
    assert next(iter(net.modules())) is net
    assert len(list(net.parameters(recurse=False))) == 1
    assert net.fc2.bias is None and "bias" in net.fc2._parameters
    assert all(isinstance(p, nn.Parameter) and isinstance(p, mt.Tensor) for p in net.parameters())


def test_reassigning_and_deleting_attributes():
    net = Net()
    net.fc1 = nn.Linear(4, 3, bias=False)  # replaced, not duplicated
    assert [n for n, _ in net.named_parameters()].count("fc1.weight") == 1
    net.scale = None
    assert "scale" not in [n for n, _ in net.named_parameters()]
    net.steps = mt.ones(1)
    assert net.steps.item() == 1
    del net.fc2
    assert not hasattr(net, "fc2")
    net.plain = 3  # ordinary attributes stay ordinary
    assert net.plain == 3 and "plain" not in net._modules
    with pytest.raises(TypeError, match="nn.Parameter or None"):
        net.fc1.weight = mt.zeros(3, 4)
    with pytest.raises(TypeError, match="Tensor or None"):
        net.steps = 5
    with pytest.raises(AttributeError, match="has no attribute 'missing'"):
        net.missing


def test_forgetting_super_init_gives_a_clear_error():
    class Broken(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match="super\\(\\).__init__\\(\\)"):
        Broken()


def test_forward_must_be_defined():
    with pytest.raises(NotImplementedError, match="forward"):
        nn.Module()(mt.zeros(1))


def test_shared_parameters_are_listed_once():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(model.parameters())) == 2
    assert len(list(model.modules())) == 3  # Sequential, Linear (once), ReLU


def test_train_eval_apply_and_requires_grad():
    net = Net()
    assert net.training and net.bn.training
    assert net.eval() is net and not net.bn.training and not net.training
    net.train()
    assert net.fc1.training
    names = []
    net.apply(lambda m: names.append(type(m).__name__))
    assert names == ["Linear", "BatchNorm1d", "Linear", "Net"]
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


def test_zero_grad():
    net = Net()
    net(mt.randn(5, 4)).sum().backward()
    assert net.fc1.weight.grad is not None
    net.zero_grad(set_to_none=False)
    assert not net.fc1.weight.grad.numpy().any()
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


# ------------------------------------------------------------------ state dict
def test_state_dict_keys_and_values():
    sd = Net().state_dict()
    assert list(sd) == ["scale", "steps", "fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "bn.running_mean",
                        "bn.running_var", "bn.num_batches_tracked", "fc2.weight"]  # PyTorch's order
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    assert sd["bn.num_batches_tracked"].dtype == np.int64
    net = Net()
    assert Net.state_dict(net, keep_vars=True)["fc1.weight"] is net.fc1.weight


def test_state_dict_is_a_snapshot():
    net = Net()
    sd = net.state_dict()
    with mt.no_grad():
        net.fc1.weight.fill_(7.0)
    assert not (sd["fc1.weight"] == 7).any()


def test_state_dict_round_trip_through_pickle():
    mt.manual_seed(0)
    a, b = Net(), Net()
    x = mt.randn(5, 4)
    b.load_state_dict(pickle.loads(pickle.dumps(a.state_dict())))
    np.testing.assert_array_equal(a.eval()(x).detach().numpy(), b.eval()(x).detach().numpy())


def test_load_state_dict_keeps_parameter_objects():
    net = Net()
    weight = net.fc1.weight
    opt = optim.SGD(net.parameters(), lr=0.1)
    net.load_state_dict(Net().state_dict())
    assert net.fc1.weight is weight and opt.param_groups[0]["params"][1] is weight


def test_load_state_dict_errors_name_every_problem():
    net = Net()
    sd = net.state_dict()
    del sd["fc1.bias"], sd["bn.running_var"]
    sd["fc3.weight"] = np.zeros(2)
    sd["fc2.weight"] = np.zeros((2, 5), dtype=np.float32)
    before = net.fc2.weight.detach().numpy().copy()
    with pytest.raises(RuntimeError) as err:
        net.load_state_dict(sd)
    msg = str(err.value)
    assert "Error(s) in loading state_dict for Net" in msg
    assert 'Missing key(s) in state_dict: "fc1.bias", "bn.running_var".' in msg
    assert 'Unexpected key(s) in state_dict: "fc3.weight".' in msg
    assert "size mismatch for fc2.weight: copying a param with shape (2, 5) from checkpoint, " \
           "the shape in current model is (2, 3)." in msg
    np.testing.assert_array_equal(net.fc2.weight.detach().numpy(), before)  # nothing written


def test_load_state_dict_non_strict_reports_keys():
    net = Net()
    sd = net.state_dict()
    del sd["fc1.bias"]
    sd["extra"] = np.zeros(1)
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["fc1.bias"] and result.unexpected_keys == ["extra"]
    sd["fc2.weight"] = np.zeros((1, 1))
    with pytest.raises(RuntimeError, match="size mismatch for fc2.weight"):
        net.load_state_dict(sd, strict=False)


def test_load_state_dict_accepts_torch_and_mytensor_values():
    torch_model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    ours = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    ours.load_state_dict(torch_model.state_dict())
    np.testing.assert_array_equal(ours[0].weight.detach().numpy(), torch_model[0].weight.detach().numpy())
    other = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    other.load_state_dict(ours.state_dict(keep_vars=True))
    np.testing.assert_array_equal(other[0].bias.detach().numpy(), ours[0].bias.detach().numpy())


# --------------------------------------------------------------------- devices
def test_to_dtype_converts_in_place():
    net = Net()
    weight, opt = net.fc1.weight, optim.SGD(net.parameters(), lr=0.1)
    assert net.to(mt.float64) is net
    assert net.fc1.weight is weight and weight.dtype == mt.float64
    assert net.bn.running_mean.dtype == mt.float64 and net.bn.num_batches_tracked.dtype == mt.int64
    net(mt.randn(5, 4, dtype=mt.float64)).sum().backward()
    opt.step()  # the optimizer built before still holds the same parameters
    assert net.float().fc1.weight.dtype == mt.float32
    with pytest.raises(TypeError, match="floating point"):
        net.to(mt.int64)


@pytest.mark.gpu
@pytest.mark.skipif(not mt.cuda_is_available(), reason="needs CUDA")
def test_to_cuda_and_back_in_place():
    net = Net()
    weight = net.fc1.weight
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net.cuda()
    assert net.fc1.weight is weight and weight.device.type == "cuda" and net.bn.running_mean.is_cuda
    x = mt.randn(5, 4, device="cuda")
    net(x).sum().backward()
    opt.step()
    assert net.cpu().fc1.weight.device.type == "cpu" and weight.grad.device.type == "cpu"
    net.to("cuda")
    sd = net.state_dict()
    assert isinstance(sd["fc1.weight"], np.ndarray)
    Net().load_state_dict(sd)


@pytest.mark.parametrize("device", DEVICES)
def test_to_device_string_returns_self(device):
    net = Net()
    assert net.to(device) is net and all(p.device == mt.device(device) for p in net.parameters())


# ----------------------------------------------------------------- parameters
def test_parameter():
    p = nn.Parameter(mt.ones(2, 3))
    assert isinstance(p, nn.Parameter) and isinstance(p, mt.Tensor) and p.requires_grad and p.is_leaf
    assert repr(p).startswith("Parameter containing:\ntensor(")
    assert not nn.Parameter(mt.ones(2), requires_grad=False).requires_grad
    q = pickle.loads(pickle.dumps(p))
    assert isinstance(q, nn.Parameter) and q.requires_grad and q.shape == (2, 3)
    r = copy.deepcopy(p)
    assert isinstance(r, nn.Parameter) and r._data is not p._data
    assert isinstance(p * 2, mt.Tensor) and not isinstance(p * 2, nn.Parameter)


def test_deepcopy_and_pickle_of_a_module():
    net = Net()
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert isinstance(clone.fc1.weight, nn.Parameter) and clone.fc1.weight is not net.fc1.weight
        np.testing.assert_array_equal(clone.fc1.weight.detach().numpy(), net.fc1.weight.detach().numpy())
        assert [n for n, _ in clone.named_parameters()] == [n for n, _ in net.named_parameters()]


# ------------------------------------------------------------------------ repr
def build_repr_model(lib):
    return lib.Sequential(
        lib.Conv2d(3, 8, 3, padding=1, bias=False), lib.BatchNorm2d(8), lib.ReLU(),
        lib.MaxPool2d(2), lib.Conv2d(8, 16, (3, 5), stride=2, dilation=2, groups=2),
        lib.Sequential(lib.AvgPool2d(2), lib.AdaptiveAvgPool2d(1), lib.Dropout(0.25)),
        lib.Flatten(), lib.Linear(16, 10), lib.LeakyReLU(0.2), lib.GELU(), lib.SiLU(), lib.Tanh(), lib.Sigmoid(),
        lib.Identity(), lib.Softmax(dim=1), lib.LogSoftmax(dim=1), lib.ModuleList([lib.Linear(2, 2)]))


def test_repr_matches_torch():
    ours = repr(build_repr_model(nn))
    if "bias" not in inspect.signature(torch.nn.BatchNorm2d.__init__).parameters:
        ours = ours.replace(" bias=True,", "")  # PyTorch before 2.13 doesn't show BatchNorm's bias flag
    assert ours == repr(build_repr_model(torch.nn))


def test_repr_of_custom_module():
    assert repr(Net()) == (
        "Net(\n"
        "  (fc1): Linear(in_features=4, out_features=3, bias=True)\n"
        "  (bn): BatchNorm1d(3, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)\n"
        "  (fc2): Linear(in_features=3, out_features=2, bias=False)\n"
        ")")


# ------------------------------------------------------------------ containers
def test_sequential_indexing():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    seq = nn.Sequential(a, b, c)
    assert len(seq) == 3 and seq[0] is a and seq[-1] is c and list(seq) == [a, b, c]
    assert isinstance(seq[1:], nn.Sequential) and list(seq[1:]) == [b, c]
    with pytest.raises(IndexError):
        seq[3]
    seq[1] = nn.Tanh()
    assert isinstance(seq[1], nn.Tanh)
    del seq[1]
    assert len(seq) == 2 and [n for n, _ in seq.named_children()] == ["0", "1"]
    seq.append(nn.Sigmoid())
    assert len(seq) == 3 and seq(mt.randn(4, 2)).shape == (4, 1)
    named = nn.Sequential(OrderedDict([("first", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert [n for n, _ in named.named_children()] == ["first", "act"] and named.first is named[0]


def test_module_list_and_dict():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(layers) == 3 and len(list(layers.parameters())) == 6
    layers.append(nn.ReLU())
    layers.insert(0, nn.Tanh())
    assert isinstance(layers[0], nn.Tanh) and isinstance(layers[-1], nn.ReLU) and len(layers) == 5
    del layers[0]
    assert [n for n, _ in layers.named_children()] == ["0", "1", "2", "3"]
    assert len(layers[1:3]) == 2
    heads = nn.ModuleDict({"a": nn.Linear(2, 2), "b": nn.Linear(2, 1)})
    assert list(heads) == ["a", "b"] and "a" in heads and len(list(heads.parameters())) == 4


# ----------------------------------------------------------------- DataParallel
def test_data_parallel_is_the_module_on_its_device_as_in_torch():
    rng = np.random.default_rng()
    ours, theirs = mt.nn.Linear(5, 3).double(), torch.nn.Linear(5, 3).double()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    wrapped, wrapped_torch = mt.nn.DataParallel(ours), torch.nn.DataParallel(theirs)
    assert wrapped.module is ours and isinstance(wrapped, nn.Module)
    assert list(wrapped.state_dict()) == list(wrapped_torch.state_dict()) == ["module.weight", "module.bias"]
    x = rng.standard_normal((int(rng.integers(1, 7)), 5))
    y, y_torch = wrapped(mt.tensor(x)), wrapped_torch(torch.tensor(x))
    np.testing.assert_allclose(y.detach().cpu().numpy(), y_torch.detach().cpu().numpy(), rtol=1e-12)
    y.sum().backward()
    y_torch.sum().backward()
    np.testing.assert_allclose(ours.weight.grad.cpu().numpy(), theirs.weight.grad.cpu().numpy(), rtol=1e-12)
    wrapped.load_state_dict({k: v.cpu() for k, v in wrapped_torch.state_dict().items()})  # checkpoints of wrapped models load back
    with pytest.raises(NotImplementedError, match="torch.nn.DataParallel across devices"):
        mt.nn.DataParallel(ours, device_ids=[0, 1])
