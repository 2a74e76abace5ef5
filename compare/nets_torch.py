"""The cases of `cargo bench --bench nets` in PyTorch (torchvision's models, random weights,
f32, eager mode, oneDNN): inference of one image in evaluation mode for ResNet-18, VGG-16,
AlexNet, GoogLeNet and DenseNet-121; ResNet-18's training step at batch 8; the CIFAR ResNet-20
(1×32×32, 10 classes, projection shortcuts) at batch 64; LeNet-5 at batch 64. A training step
is the forward pass in training mode, the cross-entropy, the backward pass and an SGD update
(momentum 0.9, weight decay 5e-4), as constnet's bench does.

Each case runs once to warm up, then again until 2 s have passed and at least 5 calls were
timed (at most 200): the median and the fastest call, as constnet's bench reports them. FLOPs
come from `torch.utils.flop_counter` (2 per multiply-add, forward and backward), and set the
GFLOP/s of both sides.

One command pair gives the table (not part of CI; `pip install torch torchvision`):

    cargo bench --bench nets -- --tsv > constnet.tsv
    python3 compare/nets_torch.py --constnet constnet.tsv [--threads 1] [case ...]

Without `--constnet` it prints PyTorch's column alone.
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.resnet import BasicBlock

from lenet_torch import LeNet5  # the article's LeNet-5, as compare/lenet_torch.py times it

# The performance issue's targets: constnet's time as a fraction of PyTorch's (LeNet-5's are
# µs per image on the machine, checked separately).
TARGETS = {
    "resnet18/infer/1": 0.6,
    "vgg16/infer/1": 0.7,
    "alexnet/infer/1": 0.7,
    "googlenet/infer/1": 0.6,
    "densenet121/infer/1": 0.6,
    "resnet18/train/8": 0.7,
    "resnet20/infer/64": 0.5,
    "resnet20/train/64": 0.4,
}


class ResNet20(nn.Module):
    """He et al. 2015 §4.2 with projection shortcuts (option B), as constnet's `ResNet20`."""

    def __init__(self, channels=1, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for cout, stride in [(16, 1), (32, 2), (64, 2)]:
            blocks = []
            for b in range(3):
                s = stride if b == 0 else 1
                down = None
                if s != 1 or cin != cout:
                    down = nn.Sequential(
                        nn.Conv2d(cin, cout, 1, s, bias=False), nn.BatchNorm2d(cout)
                    )
                blocks.append(BasicBlock(cin, cout, s, down))
                cin = cout
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def timed(f):
    """(median, fastest) seconds of `f`, after one warm-up call."""
    f()
    secs, start = [], time.perf_counter()
    while len(secs) < 200 and (len(secs) < 5 or time.perf_counter() - start < 2.0):
        t = time.perf_counter()
        f()
        secs.append(time.perf_counter() - t)
    secs.sort()
    return secs[len(secs) // 2], secs[0]


def flops(f):
    with FlopCounterMode(display=False) as counter:
        f()
    return counter.get_total_flops()


def infer(model, shape, batch):
    model.eval()
    x = torch.rand(batch, *shape) * 2 - 1

    def call():
        with torch.inference_mode():
            model(x)

    return call


def train(model, shape, batch, classes):
    model.train()
    x = torch.rand(batch, *shape) * 2 - 1
    y = torch.arange(batch) % classes
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def call():
        opt.zero_grad(set_to_none=False)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return call


def cases():
    """(name, images per call, the call) of each case, built when asked for."""
    m = torchvision.models
    image = (3, 224, 224)
    yield "resnet18/infer/1", 1, lambda: infer(m.resnet18(), image, 1)
    yield "vgg16/infer/1", 1, lambda: infer(m.vgg16(), image, 1)
    yield "alexnet/infer/1", 1, lambda: infer(m.alexnet(), image, 1)
    googlenet = lambda: m.googlenet(aux_logits=False, init_weights=True)  # noqa: E731
    yield "googlenet/infer/1", 1, lambda: infer(googlenet(), image, 1)
    yield "densenet121/infer/1", 1, lambda: infer(m.densenet121(), image, 1)
    yield "resnet18/train/8", 8, lambda: train(m.resnet18(), image, 8, 1000)
    yield "resnet20/infer/64", 64, lambda: infer(ResNet20(), (1, 32, 32), 64)
    yield "resnet20/train/64", 64, lambda: train(ResNet20(), (1, 32, 32), 64, 10)
    yield "lenet5/infer/64", 64, lambda: infer(LeNet5(), (1, 32, 32), 64)
    yield "lenet5/train/64", 64, lambda: train(LeNet5(), (1, 32, 32), 64, 10)


def read_constnet(path):
    """case → (images, median ms, fastest ms) from `cargo bench --bench nets -- --tsv`."""
    rows = {}
    with open(path) as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) == 4:
                rows[parts[0]] = (int(parts[1]), float(parts[2]), float(parts[3]))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="cases whose name contains one of these")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--constnet", help="the output of `cargo bench --bench nets -- --tsv`")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(2026)
    ours = read_constnet(args.constnet) if args.constnet else {}
    peak = ours.get("peak", (0, 0.0, 0.0))[1]
    print(f"PyTorch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"{args.threads} thread(s); constnet's one-core FMA peak {peak:.1f} GFLOP/s")
    if ours:
        # The peak of as many cores as threads (run the bench with `--threads=N` to match).
        print("| case | PyTorch ms | constnet ms | constnet / PyTorch | target | "
              f"PyTorch GFLOP/s | constnet GFLOP/s | constnet % of {args.threads} core(s)' peak |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
    else:
        print("| case | PyTorch ms (median) | fastest | GFLOP/s |")
        print("|---|---:|---:|---:|")
    for name, images, build in cases():
        if args.only and not any(o in name for o in args.only):
            continue
        call = build()
        work = flops(call)
        median, fastest = timed(call)
        torch_ms, gflops = median * 1e3, work / median / 1e9
        if not ours:
            print(f"| {name} | {torch_ms:.3f} | {fastest * 1e3:.3f} | {gflops:.1f} |")
            continue
        if name not in ours:
            print(f"| {name} | {torch_ms:.3f} | – | – | – | {gflops:.1f} | – | – |")
            continue
        _, ms, _ = ours[name]
        ours_gflops = work / (ms / 1e3) / 1e9
        share = f"{100 * ours_gflops / (peak * args.threads):.0f}%" if peak else "–"
        target = f"≤ {TARGETS[name]}" if name in TARGETS else "–"
        print(f"| {name} | {torch_ms:.3f} | {ms:.3f} | {ms / torch_ms:.2f} | {target} | "
              f"{gflops:.1f} | {ours_gflops:.1f} | {share} |")


if __name__ == "__main__":
    main()
