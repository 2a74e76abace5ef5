"""LeNet-5 in PyTorch, single thread, f32: µs per image for inference and for a training
step (forward, cross-entropy, backward, SGD update) at batch 1 and batch 64, in the same
shape as `cargo run --release` prints for constnet and candle.

Run (not part of CI):  pip install torch && python3 lenet_torch.py
"""
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class LeNet5(nn.Module):
    """1×32×32 → conv 6@5×5 → ReLU → pool 2 → conv 16@5×5 → ReLU → pool 2 → 120 → 100 → 10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 100)
        self.fc3 = nn.Linear(100, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def best_us(f, rounds=5, fill=0.06):
    """µs per call: the best of `rounds` rounds of enough calls to fill `fill` seconds."""
    f()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < fill:
        f()
        calls += 1
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(calls):
            f()
        best = min(best, (time.perf_counter() - t) * 1e6 / calls)
    return best


def main():
    torch.set_num_threads(1)
    torch.manual_seed(42)
    net = LeNet5()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    rows = []
    for n in (1, 64):
        x = torch.rand(n, 1, 32, 32)
        y = torch.arange(n) % 10

        def infer():
            with torch.no_grad():
                F.softmax(net(x), dim=1)

        def train():
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()

        rows.append((f"inference, batch {n}", best_us(infer) / n))
        rows.append((f"training step, batch {n}", best_us(train) / n))

    print(f"PyTorch {torch.__version__}, 1 thread, f32")
    print("| LeNet-5                  | PyTorch µs/image |")
    print("|--------------------------|-----------------:|")
    for name, us in rows:
        print(f"| {name:<24} | {us:>16.1f} |")


if __name__ == "__main__":
    main()
