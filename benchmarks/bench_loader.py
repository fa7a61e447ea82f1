"""Images/s of the real downsampled-ImageNet input path: release npz -> memmap cache -> loader -> augmentation.

What is measured: a synthetic release in the real format (``train_data_batch_k.npz`` files with
``data`` uint8 (n, 3*S*S) planes and 1-based ``labels``, and ``val_data.npz``) is written to a
temporary folder, converted to the uint8 memmap cache by ``get_dataset("imagenet64", ...)`` (the
same code a real run uses; the conversion time is reported too), and then ``BatchLoader`` +
``BatchTransform`` (random flip, mean/std normalisation; ``--augment star`` adds mirror
doubling and 4-pixel pad + random crop) run for ``--seconds`` after a short warm-up.

Compare the printed img/s with a model's training img/s (``gmsop bench``): if the model is
slower, the input pipeline is not the bottleneck.

    python benchmarks/bench_loader.py                       # 20k 64x64 images, batch 256, CPU
    python benchmarks/bench_loader.py --device cuda --seconds 10
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def write_release(root: Path, n_images: int, size: int, batches: int, seed: int = 0) -> None:
    """A release-format tree of ``n_images`` random images over ``batches`` training files."""
    rng = np.random.default_rng(seed)
    part1 = root / f"Imagenet{size}_train_part1_npz"
    part2 = root / f"Imagenet{size}_train_part2_npz"
    val = root / f"Imagenet{size}_val_npz"
    for d in (part1, part2, val):
        d.mkdir(parents=True, exist_ok=True)
    per = -(-n_images // batches)
    for b in range(1, batches + 1):
        n = min(per, n_images - (b - 1) * per)
        if n <= 0:
            break
        data = rng.integers(0, 256, (n, 3 * size * size), dtype=np.uint8)  # R, G, B planes per row
        labels = rng.integers(1, 1001, n)  # 1-based, as released
        folder = part1 if b <= 5 else part2
        np.savez(folder / f"train_data_batch_{b}.npz", data=data, labels=labels, mean=data.mean(0))
    data = rng.integers(0, 256, (1000, 3 * size * size), dtype=np.uint8)
    np.savez(val / "val_data.npz", data=data, labels=rng.integers(1, 1001, 1000))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=20_000, help="training images in the synthetic release (20000)")
    p.add_argument("--size", type=int, default=64, help="image side (64)")
    p.add_argument("--batches", type=int, default=10, help="training files to spread them over (10)")
    p.add_argument("--batch-size", type=int, default=256, help="loader batch size (256)")
    p.add_argument("--seconds", type=float, default=5.0, help="measuring time after warm-up (5)")
    p.add_argument("--device", default="cpu", help="where batches are delivered and augmented (cpu)")
    p.add_argument("--augment", default="flip", choices=["flip", "star", "none"], help="imagenet64 preset (flip)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--workdir", default=None, help="folder for the temporary release (default: system temp)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = p.parse_args(argv)

    import torch

    from gmsop.data import SubsetWarning, get_dataset, measure_loader_throughput

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="gmsop-bench-loader-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_release(root, args.images, args.size, args.batches)
        t1 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SubsetWarning)  # a 20k-image release is a subset by design
            ds = get_dataset("imagenet64", root=root, size=args.size, augment=args.augment)
        t2 = time.perf_counter()
        result = measure_loader_throughput(ds, batch_size=args.batch_size, seconds=args.seconds, device=args.device)
    result.update(
        {
            "train_images": len(ds.train),
            "augment": args.augment,
            "write_release_s": round(t1 - t0, 3),
            "convert_to_cache_s": round(t2 - t1, 3),
            "torch_threads": torch.get_num_threads(),
        }
    )
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"loader+augment ({args.augment}, {result['device']}, batch {args.batch_size}, {args.size}x{args.size}): "
            f"{result['images_per_s']:,.0f} img/s over {result['seconds']:.1f} s; "
            f"cache conversion of {len(ds.train):,} images took {t2 - t1:.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
