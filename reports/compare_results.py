"""Compare two finished workflow result trees run for run, timings aside.

    python reports/compare_results.py /path/to/checkout-before /path/to/checkout-after

Pairs every (experiment, row, seed) a ``metrics.json`` under ``results/runs/`` was planned for
and compares its final and per-epoch numbers (errors, losses, routing counts), parameters and
representation dimension; wall-clock fields and the environment block are left out. Exits 1 when
any pair differs or a pair exists on one side only. Used to show that a refactoring leaves every
number of the default DAG as it was.
"""

import json
import sys
from pathlib import Path

TIMINGS = {"epoch_time_s", "train_img_s", "train_time_s"}


def numbers(metrics: dict) -> dict:
    """What a run computed: final and per-epoch records without timings, parameters, dimension."""
    final = metrics.get("final") or {}
    return {
        "final": {k: v for k, v in final.items() if k not in TIMINGS},
        "epochs": [{k: v for k, v in e.items() if k not in TIMINGS} for e in metrics["epochs"]],
        "params": metrics.get("params"),
        "rep_dim": metrics.get("rep_dim"),
    }


def load(root: str) -> dict:
    runs = {}
    for path in Path(root, "results", "runs").glob("*/seed*/metrics.json"):
        metrics = json.loads(path.read_text())
        for planned in metrics["run"]["planned_for"]:
            runs[(planned["experiment"], planned["row"], metrics["seed"])] = numbers(metrics)
    return runs


def main() -> int:
    before, after = load(sys.argv[1]), load(sys.argv[2])
    one_side = sorted(set(before) ^ set(after))
    differ = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    same = len(set(before) & set(after)) - len(differ)
    print(f"(experiment, row, seed) pairs: before {len(before)}, after {len(after)}")
    print(f"identical: {same}, different: {len(differ)}, on one side only: {len(one_side)}")
    for key in differ[:20]:
        print("  differs:", key, before[key]["final"].get("top1_err"), after[key]["final"].get("top1_err"))
    for key in one_side[:20]:
        print("  one side only:", key)
    return 1 if differ or one_side or not same else 0


if __name__ == "__main__":
    sys.exit(main())
