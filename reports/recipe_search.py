"""Train the embedded default's single-component rows under candidate recipes (epochs x images),
3 seeds each, and print top-1 error mean +- std per row and recipe.

Used to choose the default's recipe on single-component rows only, before any mixture row runs at
it (``config.yaml`` says which was chosen and why). Every candidate trains at the default's batch,
width, data and ``lr_scaling``; only the training-set size and the schedule's epochs vary.

    python reports/recipe_search.py --out /tmp/recipes --jobs 2 [--recipe NAME ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

ROWS = [("ResNet-18", "gap"), ("ResNet-18-512d", "gap"), ("ResNet-18-8256d", "gap"), ("SR-SOP", "srsop")]
BASE_LR = {"gap": 0.075, "srsop": 0.15}  # the released first rates; lr_scaling applies on top
#: name -> (training images, epochs at the first rate, epochs at 1/10)
RECIPES = {
    "3200x9": (3200, 7, 2),
    "1600x18": (1600, 14, 4),
    "3200x12": (3200, 9, 3),
    "3200x6": (3200, 5, 1),
    "4800x6": (4800, 5, 1),
    "6400x4": (6400, 3, 1),
    "4800x4": (4800, 3, 1),
    "4800x5": (4800, 4, 1),
    "9600x3": (9600, 2, 1),
}


def _one(job):
    recipe, variant, family, seed, out = job
    from gmsop.pipeline import run_training

    n_train, e1, e2 = RECIPES[recipe]
    lr = BASE_LR[family]
    spec = {
        "variant": variant,
        "backbone": "resnet18",
        "protocol": "official",
        "batch_size": 64,
        "lr_scaling": "linear",
        "width_mult": 0.25,
        "overrides": {"alpha": 25},
        "augment": {},
        "schedule": [[lr, e1], [lr / 10, e2]],
        "deterministic": True,
    }
    ds = {
        "name": "synthetic",
        "options": {"classes": 16, "n_train": n_train, "n_val": 1280, "size": 32, "seed": 0},
    }
    path = Path(out) / recipe / variant / f"seed{seed}" / "metrics.json"
    if not path.exists():
        run_training(
            spec,
            ds,
            seed,
            str(path),
            str(path.parent / "ckpt"),
            device="cpu",
            threads=1,
            eval_every=max(e1 + e2, 1),
        )
    return recipe, variant, seed, json.loads(path.read_text())["final"]["top1_err"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for the runs (resumable: finished runs are kept)")
    p.add_argument("--jobs", type=int, default=2, help="runs at once, one core each (default: 2)")
    p.add_argument("--recipe", action="append", choices=list(RECIPES), help="recipes to run (default: all)")
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args(argv)
    jobs = [
        (r, v, f, s, args.out) for r in (args.recipe or RECIPES) for v, f in ROWS for s in range(args.seeds)
    ]
    results: dict = {}
    with ProcessPoolExecutor(args.jobs) as pool:
        for recipe, variant, seed, err in pool.map(_one, jobs):
            results.setdefault(recipe, {}).setdefault(variant, []).append(err)
            print(f"{recipe} {variant} seed {seed}: {err:.2f}", flush=True)
    for recipe, rows in results.items():
        cells = [
            f"{v} {statistics.mean(e):.1f} +- {statistics.stdev(e) if len(e) > 1 else 0:.1f}"
            for v, e in rows.items()
        ]
        print(f"{recipe}: " + "; ".join(cells))
    Path(args.out, "summary.yaml").write_text(yaml.safe_dump(results))


if __name__ == "__main__":
    main()
