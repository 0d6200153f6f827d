"""airbench94's network against its PyTorch twin (benchmarks/torch_models.py) with the same weights:
forward, backward, and SGD steps with airbench's parameter groups (frozen batch-norm weights, a
learning rate of their own for the batch-norm biases, Nesterov momentum)."""
import os
import sys

import numpy as np
import torch

import mytensor as mt
import mytensor.nn.functional as F
from mytensor import models, nn, optim

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import torch_models  # noqa: E402


def twins(seed=0):
    mt.manual_seed(seed)
    ours = models.get_model("airbench94")
    x = mt.randn(16, 3, 32, 32)
    ours.whiten.fit(x)
    theirs = torch_models.get_model("airbench94", in_channels=3, image_size=32)
    theirs.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in ours.state_dict().items()})
    return ours, theirs, x


def groups(model, bias_lr):
    """airbench's: the batch-norm biases with their own lr (and weight decay), the rest together."""
    norm = [p for n, p in model.named_parameters() if "norm" in n and p.requires_grad]
    other = [p for n, p in model.named_parameters() if "norm" not in n and p.requires_grad]
    return [dict(params=norm, lr=bias_lr, weight_decay=1e-4), dict(params=other)]


def test_structure():
    net = models.get_model("airbench94")
    assert [g.conv1.out_channels for g in net.groups] == [64, 256, 256]
    assert net.whiten.weight.shape == (24, 3, 2, 2) and net.head.weight.shape == (10, 256)
    frozen = [n for n, p in net.named_parameters() if not p.requires_grad]
    assert frozen == ["whiten.weight"] + [f"groups.{i}.norm{j}.weight" for i in range(3) for j in (1, 2)]
    assert not any(isinstance(m, models.BasicBlock) for m in net.modules())
    norm = net.groups[0].norm1
    assert (norm.eps, norm.momentum) == (1e-12, 0.4)
    w = net.groups[1].conv1.weight.detach().numpy()  # 64 -> 256: the first 64 filters pass their input through
    np.testing.assert_array_equal(w[:64, :, 1, 1], np.eye(64))
    assert not w[:64, :, 0].any() and w[64:].std() > 0


def test_forward_backward_and_steps_match_torch():
    ours, theirs, x = twins()
    tx = torch.tensor(x.numpy())
    y = mt.tensor([0, 1, 2, 3] * 4)
    opt = optim.SGD(groups(ours, 0.5), lr=0.01, momentum=0.85, nesterov=True, weight_decay=5e-4)
    topt = torch.optim.SGD(groups(theirs, 0.5), lr=0.01, momentum=0.85, nesterov=True, weight_decay=5e-4)
    for step in range(3):
        logits = ours(x)
        tlogits = theirs(tx)
        np.testing.assert_allclose(logits.detach().numpy(), tlogits.detach().numpy(), rtol=1e-3, atol=1e-4)
        loss = F.cross_entropy(logits, y, label_smoothing=0.2)
        tloss = torch.nn.functional.cross_entropy(tlogits, torch.tensor(y.numpy()), label_smoothing=0.2)
        opt.zero_grad()
        topt.zero_grad()
        loss.backward()
        tloss.backward()
        mine, twin = dict(ours.named_parameters()), dict(theirs.named_parameters())
        for name, p in mine.items():
            if p.requires_grad:
                scale = np.abs(twin[name].grad.numpy()).max()
                np.testing.assert_allclose(p.grad.numpy(), twin[name].grad.numpy(), atol=5e-3 * scale + 1e-7,
                                           err_msg=name)
            else:
                assert p.grad is None and twin[name].grad is None
        opt.step()
        topt.step()
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.detach().numpy(), dict(theirs.named_parameters())[name].detach().numpy(),
                                   rtol=1e-3, atol=1e-4, err_msg=name)
    assert (ours.groups[2].norm2.weight.numpy() == 1).all()  # frozen at 1
    np.testing.assert_allclose(ours.groups[0].norm1.running_var.numpy(), theirs.groups[0].norm1.running_var.numpy(),
                               rtol=1e-4)
