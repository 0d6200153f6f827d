"""A small convolutional classifier on CIFAR-10, written against PyTorch's API and run on mytensor.

Follows the CIFAR-10 "Training a Classifier" tutorial of PyTorch's "Deep Learning with
PyTorch: A 60 Minute Blitz" (pytorch.org/tutorials, beginner/blitz/cifar10_tutorial):
two 5x5 convolutions with max pooling and three linear layers, CrossEntropyLoss, SGD with
momentum on batches of four, the weights saved and loaded back, then overall and
per-class test accuracy. The port changed the imports only: `torch` -> `mytensor`,
`torchvision` -> `mytensor.vision`.

    python docs/examples/cifar10_classifier.py --epochs 2
"""
import argparse

import mytensor as torch
import mytensor.nn as nn
import mytensor.nn.functional as F
import mytensor.optim as optim
import mytensor.vision as torchvision
import mytensor.vision.transforms as transforms

CLASSES = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def main(argv=None):
    parser = argparse.ArgumentParser(description="CIFAR-10 classifier")
    parser.add_argument("--data", default="./data")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--log-interval", type=int, default=2000)
    parser.add_argument("--save", default="./cifar_net.pth")
    args = parser.parse_args(argv)

    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    trainset = torchvision.datasets.CIFAR10(root=args.data, train=True, download=True, transform=transform)
    trainloader = torch.utils.data.DataLoader(trainset, batch_size=args.batch_size, shuffle=True, num_workers=2)
    testset = torchvision.datasets.CIFAR10(root=args.data, train=False, download=True, transform=transform)
    testloader = torch.utils.data.DataLoader(testset, batch_size=args.batch_size, shuffle=False, num_workers=2)

    net = Net().to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=args.lr, momentum=0.9)
    for epoch in range(args.epochs):
        running_loss = 0.0
        for i, data in enumerate(trainloader, 0):
            inputs, labels = data[0].to(device), data[1].to(device)
            optimizer.zero_grad()
            outputs = net(inputs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            if i % args.log_interval == args.log_interval - 1:
                print(f"[{epoch + 1}, {i + 1:5d}] loss: {running_loss / args.log_interval:.6f}")
                running_loss = 0.0
    print("Finished Training")
    torch.save(net.state_dict(), args.save)

    images, labels = next(iter(testloader))
    print("GroundTruth: ", " ".join(f"{CLASSES[labels[j]]:5s}" for j in range(len(labels))))
    net = Net()
    net.load_state_dict(torch.load(args.save, weights_only=True))
    net.to(device)
    outputs = net(images.to(device))
    _, predicted = torch.max(outputs, 1)
    print("Predicted: ", " ".join(f"{CLASSES[predicted[j]]:5s}" for j in range(len(labels))))

    correct, total = 0, 0
    correct_pred = {name: 0 for name in CLASSES}
    total_pred = {name: 0 for name in CLASSES}
    with torch.no_grad():
        for images, labels in testloader:
            images, labels = images.to(device), labels.to(device)
            outputs = net(images)
            _, predicted = torch.max(outputs.data, 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
            for label, prediction in zip(labels, predicted):
                if label == prediction:
                    correct_pred[CLASSES[label]] += 1
                total_pred[CLASSES[label]] += 1
    print(f"Accuracy of the network on the {total} test images: {100 * correct / total:.2f} %")
    for name, count in correct_pred.items():
        if total_pred[name]:
            print(f"Accuracy for class: {name:5s} is {100 * float(count) / total_pred[name]:.1f} %")


if __name__ == "__main__":
    main()
