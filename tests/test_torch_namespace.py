"""The PyTorch module layout and the device/queries surface a ported program reaches first."""
import numpy as np
import pytest
import torch

import mytensor as mt

GPU = mt.cuda.is_available()


def test_modules_are_bound_by_a_plain_import():
    import mytensor as t  # what a port writes: `import mytensor as torch`
    assert t.nn.functional.relu is mt.nn.functional.relu and t.nn.Linear is mt.nn.Linear
    assert t.optim.SGD is mt.optim.SGD and t.optim.lr_scheduler.StepLR is mt.optim.lr_scheduler.StepLR
    assert t.utils.data.DataLoader is mt.data.DataLoader and t.utils.data.TensorDataset is mt.data.TensorDataset
    assert t.autograd.gradcheck is mt.gradcheck and t.autograd.no_grad is mt.no_grad
    import mytensor.utils.data as data  # and `from torch.utils.data import ...` as a module path
    assert data.Dataset is mt.data.Dataset


def test_cuda_queries_answer_without_a_gpu():
    assert mt.cuda.is_available() == GPU == mt.accelerator.is_available()
    assert (mt.cuda.device_count() > 0) == GPU and mt.accelerator.device_count() == mt.cuda.device_count()
    assert mt.cuda.current_device() == 0
    mt.cuda.manual_seed(3)
    mt.cuda.manual_seed_all(3)
    if not GPU:
        assert mt.accelerator.current_accelerator() is None and mt.cuda.memory_allocated() == 0
        mt.cuda.empty_cache()
        mt.accelerator.synchronize()
        with pytest.raises(RuntimeError, match="no CUDA GPU is available"):
            mt.cuda.synchronize()
    with pytest.raises(NotImplementedError, match=r"torch.cuda.set_device\(1\).*cuda:1"):
        mt.cuda.set_device(1)
    mt.cuda.set_device(0)


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU")
def test_cuda_queries_on_a_gpu():
    assert mt.accelerator.current_accelerator() == mt.device("cuda")
    x = mt.ones(1024, device="cuda")
    mt.cuda.synchronize()
    assert mt.cuda.memory_allocated() >= x.numel() * 4 and mt.cuda.get_device_name()
    assert len(mt.cuda.get_device_capability()) == 2
    mt.set_default_device("cuda")
    try:
        assert mt.zeros(2).device == mt.device("cuda") and mt.tensor([1.0]).is_cuda
        assert mt.nn.Linear(2, 3).weight.is_cuda
    finally:
        mt.set_default_device(None)


def test_backends_flags_are_accepted():
    from mytensor.backend.cuda.implicit_gemm import benchmarking
    mt.backends.cudnn.benchmark = True
    mt.backends.cudnn.deterministic = True
    assert mt.backends.cudnn.enabled and not mt.backends.cudnn.is_available()
    assert mt.backends.cudnn.benchmark is True and benchmarking()  # the convolution kernels' switch
    mt.backends.cudnn.benchmark = mt.backends.cudnn.deterministic = False
    assert mt.backends.cudnn.benchmark is False and not benchmarking()
    with mt.backends.cudnn.flags(enabled=True, benchmark=True):
        assert benchmarking()
    assert not benchmarking()
    assert not mt.backends.mps.is_available() and not mt.backends.mps.is_built()


def test_device_is_a_class_taking_torchs_arguments():
    device = mt.device("cuda" if mt.cuda.is_available() else "cpu")
    assert isinstance(device, mt.device)
    assert mt.device("cuda", 1) == "cuda:1" == mt.device("cuda:1") and mt.device(mt.device("cuda:1")).index == 1
    assert repr(mt.device("cpu")) == "device(type='cpu')" and str(mt.device("cuda:2")) == "cuda:2"
    with pytest.raises(ValueError, match="unknown device type 'mps'"):
        mt.device("mps")
    with pytest.raises(ValueError, match="bad device string"):
        mt.device("cuda:x")
    with pytest.raises(TypeError):
        mt.device(3)


def test_default_device():
    assert mt.get_default_device() == "cpu"
    with mt.device("cpu") as d:
        assert mt.get_default_device() is d and mt.zeros(1).device == "cpu"
    mt.set_default_device("cpu")
    assert mt.tensor([1, 2]).device == "cpu"
    mt.set_default_device(None)
    assert mt.get_default_device() == "cpu"


def test_size_prints_and_behaves_like_torchs():
    x = mt.zeros(2, 3, 4)
    t = torch.zeros(2, 3, 4)
    assert repr(x.size()) == repr(t.size()).replace("torch", "mytensor") == "mytensor.Size([2, 3, 4])"
    assert x.shape == (2, 3, 4) == tuple(t.shape) and x.size(-1) == 4 and isinstance(x.shape, tuple)
    assert x.shape[1:] == (3, 4) and x.shape[0] == 2
    assert x.shape.numel() == t.shape.numel() == 24 and mt.Size([2, 3]) == (2, 3)
    assert isinstance(x.shape + (5,), mt.Size) and mt.zeros(x.shape[:2]).shape == (2, 3)


def test_format_of_a_scalar_tensor():
    rng = np.random.default_rng()
    v = rng.standard_normal()
    for spec in [".4f", "", ">10.2e", "g"]:
        assert format(mt.tensor(v), spec) == format(torch.tensor(v), spec)
    assert f"{mt.tensor(3):03d}" == f"{torch.tensor(3):03d}" == "003"
    x = mt.ones(2)
    assert f"{x}" == str(x)
    with pytest.raises(TypeError, match="format one element"):
        f"{x:.2f}"


def test_missing_names_raise_not_implemented_with_the_torch_name():
    with pytest.raises(NotImplementedError, match=r"torch\.compile is not supported.*instead"):
        mt.compile
    with pytest.raises(NotImplementedError, match=r"torch\.cuda\.Stream"):
        mt.cuda.Stream
    with pytest.raises(NotImplementedError, match=r"torch\.Tensor\.pin_memory"):
        mt.ones(1).pin_memory()
    with pytest.raises(NotImplementedError, match=r"torch\.utils\.data\.IterableDataset.*map-style"):
        mt.utils.data.IterableDataset
    # still AttributeErrors, so probing code keeps working
    assert not hasattr(mt, "compile") and not hasattr(mt.ones(1), "pin_memory")
    with pytest.raises(AttributeError):
        mt.__no_such_dunder__
