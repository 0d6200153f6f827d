"""The model zoo: every model builds, runs forward and backward, and has the intended shape."""
import numpy as np
import pytest

import mytensor as mt
import mytensor.nn.functional as F
from mytensor import models, nn, optim

DEVICES = ["cpu"] + ([pytest.param("cuda", marks=pytest.mark.gpu)] if mt.cuda_is_available() else [])

CASES = [
    ("mlp", 10, 1, 28),
    ("mlp", 10, 3, 32),
    ("lenet5", 10, 1, 28),
    ("lenet5", 10, 3, 32),
    ("simple_conv", 10, 1, 28),
    ("simple_conv", 10, 3, 32),
    ("cifar_lenet", 10, 3, 32),
    ("cifar_cnn3", 10, 3, 32),
    ("resnet_small", 10, 3, 32),
    ("resnet_small", 200, 3, 64),
    ("resnet9", 10, 3, 32),
    ("resnet18", 10, 3, 32),
    ("airbench94", 10, 3, 32),
    ("airbench94_muon", 10, 3, 32),
]


def test_available_models():
    assert models.available_models() == sorted(
        ["mlp", "lenet5", "simple_conv", "cifar_lenet", "cifar_cnn3", "resnet_small", "resnet9", "resnet18",
         "airbench94", "airbench94_muon"])


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ValueError, match="available: airbench94, airbench94_muon, cifar_cnn3, cifar_lenet, lenet5"):
        models.get_model("vgg99")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,num_classes,channels,size", CASES)
def test_model_forward_backward(name, num_classes, channels, size, device):
    mt.manual_seed(0)
    model = models.get_model(name, num_classes=num_classes, in_channels=channels, image_size=size).to(device)
    x = mt.randn(2, channels, size, size, device=device)
    logits = model(x)
    assert logits.shape == (2, num_classes)
    loss = F.cross_entropy(logits, mt.tensor([0, 1], device=device))
    loss.backward()
    for name_, p in model.named_parameters():
        if not p.requires_grad:  # airbench94's frozen whitening and batch-norm weights
            assert p.grad is None, name_
            continue
        assert p.grad is not None and p.grad.shape == p.shape, name_
        assert np.isfinite(p.grad.cpu().numpy()).all(), name_
    model.eval()
    with mt.no_grad():
        assert model(x).shape == (2, num_classes)


@pytest.mark.parametrize("name,channels,size", [("mlp", 1, 28), ("lenet5", 1, 28), ("simple_conv", 1, 28),
                                               ("cifar_lenet", 3, 32), ("cifar_cnn3", 3, 32), ("resnet_small", 3, 32)])
def test_model_can_fit_a_tiny_batch(name, channels, size):
    """A model that can learn at all memorises 8 random images in a few Adam steps."""
    mt.manual_seed(0)
    model = models.get_model(name, num_classes=4, in_channels=channels, image_size=size)
    x, y = mt.randn(8, channels, size, size), mt.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    opt = optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(25):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
    with mt.no_grad():
        assert (model.eval()(x).argmax(1) == y).all().item()


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_architectures_have_the_documented_sizes():
    mlp = models.get_model("mlp")
    assert [m.weight.shape for m in mlp.modules() if isinstance(m, nn.Linear)] == [(512, 784), (256, 512), (10, 256)]
    lenet = models.get_model("lenet5")
    assert [m.weight.shape for m in lenet.modules() if isinstance(m, (nn.Linear, nn.Conv2d))] == [
        (6, 1, 5, 5), (16, 6, 5, 5), (120, 400), (84, 120), (10, 84)]
    assert count(lenet) == 61706  # the classic LeNet-5 count
    cifar_lenet = models.get_model("cifar_lenet")
    assert [m.weight.shape for m in cifar_lenet.modules() if isinstance(m, nn.Linear)] == [
        (512, 4096), (128, 512), (10, 128)]
    cnn3 = models.get_model("cifar_cnn3")
    assert [m.weight.shape for m in cnn3.modules() if isinstance(m, (nn.Linear, nn.Conv2d))] == [
        (8, 3, 3, 3), (16, 8, 3, 3), (32, 16, 3, 3), (256, 2048), (10, 256)]
    simple = models.get_model("simple_conv")
    assert sum(isinstance(m, nn.Conv2d) for m in simple.modules()) == 1
    assert sum(isinstance(m, nn.Linear) for m in simple.modules()) == 2


def test_resnet_small_structure():
    cifar = models.get_model("resnet_small", num_classes=10, in_channels=3, image_size=32)
    blocks = [m for m in cifar.modules() if isinstance(m, models.BasicBlock)]
    assert len(blocks) == 6 and cifar.fc.weight.shape == (10, 64)
    assert [isinstance(b.shortcut, nn.Identity) for b in blocks] == [True, True, False, True, False, True]
    assert any(isinstance(m, nn.BatchNorm2d) for m in cifar.modules())
    tiny = models.get_model("resnet_small", num_classes=200, in_channels=3, image_size=64)
    assert tiny.fc.weight.shape == (200, 128)


def resnet18_parameters(num_classes):
    """ResNet-18's parameters counted from its architecture: a 3x3 stem, two BasicBlocks per width,
    a 1x1 shortcut where the width changes, each conv without bias and followed by a BN (2 per channel)."""
    def conv_bn(cin, cout, k=3):
        return cin * cout * k * k + 2 * cout
    total, cin = conv_bn(3, 64), 64
    for width in (64, 128, 256, 512):
        shortcut = conv_bn(cin, width, 1) if cin != width else 0
        total += conv_bn(cin, width) + conv_bn(width, width) + shortcut + 2 * conv_bn(width, width)
        cin = width
    return total + 512 * num_classes + num_classes


def test_resnet18_structure():
    net = models.get_model("resnet18", num_classes=10, in_channels=3, image_size=32)
    assert count(net) == resnet18_parameters(10) == 11173962  # the CIFAR form of ResNet-18 (3x3 stem), 10 classes
    assert net.stem[0].weight.shape == (64, 3, 3, 3) and net.stem[0].stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    blocks = [m for m in net.modules() if isinstance(m, models.BasicBlock)]
    assert [b.conv1.out_channels for b in blocks] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [b.conv1.stride[0] for b in blocks] == [1, 1, 2, 1, 2, 1, 2, 1]
    shortcuts = [b.shortcut for b in blocks if not isinstance(b.shortcut, nn.Identity)]
    assert [(s[0].kernel_size, s[0].stride, type(s[1])) for s in shortcuts] == [((1, 1), (2, 2), nn.BatchNorm2d)] * 3
    tiny = models.get_model("resnet18", num_classes=200, in_channels=3, image_size=64)
    assert tiny.fc.weight.shape == (200, 512) and count(tiny) == resnet18_parameters(200)
    x = mt.randn(2, 3, 64, 64)
    with mt.no_grad():
        assert tiny.layers(tiny.stem(x)).shape == (2, 512, 8, 8)  # 64 -> 8 over the three stride-2 stages
        assert tiny(x).shape == (2, 200)


def test_resnet9_structure():
    net = models.get_model("resnet9")
    convs = [m.weight.shape[:2] for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [(64, 3), (128, 64), (128, 128), (128, 128), (256, 128), (512, 256), (512, 512), (512, 512)]
    assert net.fc.weight.shape == (10, 512) and net.fc.bias is None and net.scale == 0.125
    assert count(net) == 6568640 + 2 * sum(m.num_features for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    with pytest.raises(ValueError, match="multiple of 8"):
        models.get_model("resnet9", image_size=28)


def test_cifar_cnn3_uses_he_init():
    mt.manual_seed(0)
    model = models.get_model("cifar_cnn3")
    conv = model.features[2]  # 8 -> 16 channels, fan_in 72
    std = conv.weight.detach().numpy().std()
    assert std == pytest.approx(np.sqrt(2 / 72), rel=0.15)
    assert not conv.bias.detach().numpy().any()


def test_models_are_reproducible_with_manual_seed():
    mt.manual_seed(7)
    a = models.get_model("lenet5").state_dict()
    mt.manual_seed(7)
    b = models.get_model("lenet5").state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_every_model_has_a_one_line_doc():
    from mytensor.models import registry
    for name, builder in registry._BUILDERS.items():
        assert builder.__doc__ and builder.__doc__.strip(), name
