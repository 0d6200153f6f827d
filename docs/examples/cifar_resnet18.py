"""ResNet-18 on CIFAR-10, written against PyTorch's API and run on mytensor.

Follows the training script of the kuangliu/pytorch-cifar repository (github.com/kuangliu/
pytorch-cifar, main.py and models/resnet.py): a BasicBlock ResNet-18 for 32x32 images,
random-crop + flip augmentation, SGD with momentum 0.9 and weight decay 5e-4 under a
cosine schedule, accuracy from `outputs.max(1)`, and a checkpoint dict (model, optimizer and
schedule) saved at each best test accuracy and loaded again with `--resume`. The port changed the imports only:
`torch` -> `mytensor`, `torchvision` -> `mytensor.vision`.

    python docs/examples/cifar_resnet18.py --epochs 200
    python docs/examples/cifar_resnet18.py --epochs 200 --resume     # continue from the checkpoint

`--width` (64 in ResNet-18) scales every layer's channels, for a quick run.
"""
import argparse
import os

import mytensor as torch
import mytensor.backends.cudnn as cudnn
import mytensor.nn as nn
import mytensor.nn.functional as F
import mytensor.optim as optim
import mytensor.vision as torchvision
import mytensor.vision.transforms as transforms


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(self.expansion * planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, block, num_blocks, num_classes=10, width=64):
        super().__init__()
        self.in_planes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._make_layer(block, width, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 2 * width, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, num_blocks[3], stride=2)
        self.linear = nn.Linear(8 * width * block.expansion, num_classes)

    def _make_layer(self, block, planes, num_blocks, stride):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.avg_pool2d(out, 4)
        out = out.view(out.size(0), -1)
        return self.linear(out)


def ResNet18(width=64):
    return ResNet(BasicBlock, [2, 2, 2, 2], width=width)


def main(argv=None):
    parser = argparse.ArgumentParser(description="CIFAR-10 ResNet-18")
    parser.add_argument("--lr", default=0.1, type=float)
    parser.add_argument("--resume", "-r", action="store_true", help="resume from the checkpoint")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--test-batch-size", type=int, default=100)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--data", default="./data")
    parser.add_argument("--checkpoint", default="./checkpoint")
    args = parser.parse_args(argv)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    best_acc, start_epoch = 0.0, 0

    transform_train = transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    ])
    transform_test = transforms.Compose([
        transforms.ToTensor(),
        transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    ])
    trainset = torchvision.datasets.CIFAR10(root=args.data, train=True, download=True, transform=transform_train)
    trainloader = torch.utils.data.DataLoader(trainset, batch_size=args.batch_size, shuffle=True, num_workers=2)
    testset = torchvision.datasets.CIFAR10(root=args.data, train=False, download=True, transform=transform_test)
    testloader = torch.utils.data.DataLoader(testset, batch_size=args.test_batch_size, shuffle=False,
                                             num_workers=2)

    net = ResNet18(args.width).to(device)
    if device == "cuda":
        net = torch.nn.DataParallel(net)
        cudnn.benchmark = True
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    path = os.path.join(args.checkpoint, "ckpt.pth")
    if args.resume:
        assert os.path.isdir(args.checkpoint), "no checkpoint directory found"
        checkpoint = torch.load(path)
        net.load_state_dict(checkpoint["net"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        best_acc, start_epoch = checkpoint["acc"], checkpoint["epoch"] + 1
        print(f"Resumed from epoch {checkpoint['epoch']} (best accuracy {best_acc:.3f}%)")

    def train(epoch):
        net.train()
        train_loss, correct, total = 0.0, 0, 0
        for batch_idx, (inputs, targets) in enumerate(trainloader):
            inputs, targets = inputs.to(device), targets.to(device)
            optimizer.zero_grad()
            outputs = net(inputs)
            loss = criterion(outputs, targets)
            loss.backward()
            optimizer.step()
            train_loss += loss.item()
            _, predicted = outputs.max(1)
            total += targets.size(0)
            correct += predicted.eq(targets).sum().item()
            print(f"Epoch {epoch} [{batch_idx + 1}/{len(trainloader)}] Loss: {train_loss / (batch_idx + 1):.6f} "
                  f"| Acc: {100.0 * correct / total:.3f}% ({correct}/{total})")

    def test(epoch):
        nonlocal best_acc
        net.eval()
        test_loss, correct, total = 0.0, 0, 0
        with torch.no_grad():
            for inputs, targets in testloader:
                inputs, targets = inputs.to(device), targets.to(device)
                outputs = net(inputs)
                test_loss += criterion(outputs, targets).item()
                _, predicted = outputs.max(1)
                total += targets.size(0)
                correct += predicted.eq(targets).sum().item()
        acc = 100.0 * correct / total
        print(f"Test Loss: {test_loss / len(testloader):.6f} | Acc: {acc:.3f}% ({correct}/{total})")
        if acc > best_acc:
            os.makedirs(args.checkpoint, exist_ok=True)
            state = {"net": net.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "acc": acc, "epoch": epoch}
            torch.save(state, path)
            best_acc = acc

    for epoch in range(start_epoch, args.epochs):
        train(epoch)
        test(epoch)
        scheduler.step()
        print(f"lr {scheduler.get_last_lr()[0]:.6f}")


if __name__ == "__main__":
    main()
