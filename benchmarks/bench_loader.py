"""Images/s of the real downsampled-ImageNet input path: release npz -> memmap cache -> loader ->
augmentation.

What is measured: a synthetic release in the real format (``train_data_batch_k.npz`` files with
``data`` uint8 (n, 3*S*S) planes and 1-based ``labels``, and ``val_data.npz``) is written to a
temporary folder, converted to the uint8 memmap cache by ``get_dataset("imagenet64", ...)`` (the
same code a real run uses; the conversion time is reported too), and then ``BatchLoader`` +
``BatchTransform`` (random flip, mean/std normalisation; ``--augment star`` adds mirror
doubling and 4-pixel pad + random crop) run for ``--seconds`` after a short warm-up.

Compare the printed img/s with a model's training img/s (``gmsop bench``): if the model is
slower, the input pipeline is not the bottleneck.

Two loader paths side by side (``--paths``, default both), timed in alternating rounds so
that a busy machine slows both alike, with the ratio printed: ``host`` (the split in host
memory, a gather per batch in a background thread, pinned non-blocking copies to a CUDA device)
and ``resident`` (the split copied to the device once, batches gathered there with
``index_select``; on the CPU the split's own tensor through the same code). Augmentation draws
from a generator on the device, as ``gmsop.engine.data.DataPipeline`` does.

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
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--images", type=int, default=20_000, help="training images in the synthetic release (20000)"
    )
    p.add_argument("--size", type=int, default=64, help="image side (64)")
    p.add_argument("--batches", type=int, default=10, help="training files to spread them over (10)")
    p.add_argument("--batch-size", type=int, default=256, help="loader batch size (256)")
    p.add_argument("--seconds", type=float, default=5.0, help="measuring time after warm-up (5)")
    p.add_argument("--device", default="cpu", help="where batches are delivered and augmented (cpu)")
    p.add_argument(
        "--augment", default="flip", choices=["flip", "star", "none"], help="imagenet64 preset (flip)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--workdir", default=None, help="folder for the temporary release (default: system temp)")
    p.add_argument(
        "--paths", default="host,resident", help="loader paths to time, comma-separated (host,resident)"
    )
    p.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds per path; --seconds is split over them (3)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = p.parse_args(argv)

    import torch

    from gmsop.data import BatchLoader, BatchTransform, SubsetWarning, get_dataset
    from gmsop.data.throughput import time_loader

    paths = [q.strip() for q in args.paths.split(",") if q.strip()]
    if not paths or any(q not in ("host", "resident") for q in paths):
        p.error(f"--paths must list host and/or resident, got {args.paths!r}")
    if args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    device = torch.device(args.device)
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
        transform = BatchTransform.for_dataset(ds, train=True)
        loaders = {
            q: BatchLoader(
                ds.train,
                args.batch_size,
                shuffle=True,
                seed=0,
                drop_last=True,
                device=device,
                flip_double=ds.augment.flip_double,
                resident=(q == "resident"),
            )
            for q in paths
        }
        runs: dict[str, list[float]] = {q: [] for q in paths}
        counted = {q: [0, 0.0] for q in paths}
        for r in range(args.rounds):
            for q in paths if r % 2 == 0 else paths[::-1]:  # ABBA...: neither path always goes first
                timed = time_loader(loaders[q], transform, args.seconds / args.rounds, epoch=r)
                runs[q].append(timed["images_per_s"])
                counted[q][0] += timed["images"]
                counted[q][1] += timed["seconds"]
    med = {q: float(np.median(v)) for q, v in runs.items()}
    result = {
        "images_per_s": med[paths[0]],
        "images": counted[paths[0]][0],
        "seconds": counted[paths[0]][1],
        "batch_size": args.batch_size,
        "input_size": [3, args.size, args.size],
        "device": str(device),
        "paths": {
            q: {
                "images_per_s": med[q],
                "rounds_images_per_s": [round(v, 1) for v in runs[q]],
                "placement": loaders[q].placement,
            }
            for q in paths
        },
    }
    if "host" in med and "resident" in med:
        result["resident_over_host"] = med["resident"] / med["host"]
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
        head = (
            f"loader+augment ({args.augment}, {result['device']}, batch {args.batch_size}, "
            f"{args.size}x{args.size})"
        )
        for q, r in result["paths"].items():
            print(
                f"{head} {q:8s}: {r['images_per_s']:,.0f} img/s "
                f"(median of {r['rounds_images_per_s']}) [{r['placement']}]"
            )
        if "resident_over_host" in result:
            print(f"resident / host: {result['resident_over_host']:.3f}")
        print(f"cache conversion of {len(ds.train):,} images took {t2 - t1:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
