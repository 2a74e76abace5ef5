"""One Fashion-MNIST epoch of LeNet-5 in PyTorch, as constnet's main job runs it with
`--no-augment --batch 64 --optimizer sgd`: 60,000 images padded to 32×32, shuffled, batches
of 64, cross-entropy, SGD with momentum 0.9 and learning rate 0.05. Prints the training
loop's time alone (the data already in memory as one tensor) and its images per second,
beside which constnet's whole process (loading, training, the test pass) is timed:

    /usr/bin/time -f %e target/release/train --data /usr/share/datasets/fashion-mnist \
        --epochs 1 --no-augment --batch 64 --optimizer sgd --threads 1 --out /tmp/f.cnet
    python3 compare/epoch_torch.py [--data DIR] [--threads N]

Not part of CI (`pip install torch`).
"""
import argparse
import gzip
import time

import torch
import torch.nn.functional as F

from lenet_torch import LeNet5


def idx(path):
    """An IDX file's values as a uint8 tensor of its shape."""
    data = gzip.open(path, "rb").read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return torch.frombuffer(bytearray(data[4 + 4 * dims :]), dtype=torch.uint8).reshape(shape)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    images = idx(f"{args.data}/train-images-idx3-ubyte.gz").float().div_(255.0)
    images = F.pad(images, (2, 2, 2, 2)).unsqueeze(1)
    labels = idx(f"{args.data}/train-labels-idx1-ubyte.gz").long()
    net = LeNet5()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    order = torch.randperm(len(images))
    start = time.perf_counter()
    for b in range(0, len(images), 64):
        batch = order[b : b + 64]
        opt.zero_grad()
        F.cross_entropy(net(images[batch]), labels[batch]).backward()
        opt.step()
    seconds = time.perf_counter() - start
    print(
        f"PyTorch {torch.__version__}, {args.threads} thread(s): one epoch's training loop "
        f"{seconds:.2f} s, {len(images) / seconds:.0f} images/s"
    )


if __name__ == "__main__":
    main()
