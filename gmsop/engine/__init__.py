"""Training and throughput for gmsop: one module per job, configured by a typed dataclass.

    metrics = train(TrainConfig(variant="GM-SOP-16-8", dataset="synthetic", batch_size=256,
                                schedule=[(0.1, 40), (0.01, 10)], seed=0, out="run/metrics.json"))
    bench = measure_throughput(BenchConfig(variant="GM-GAP-16-8", input_size=(3, 64, 64), batch_size=32))

config (TrainConfig), data (device batches), loop (one epoch / evaluation), trainer (train:
resume, checkpoint, metrics.json), checkpoint, env (device, seeds, RNG states), progress,
throughput, and the ``gmsop train`` / ``gmsop bench`` command lines (train_cli, bench_cli).
"""

from gmsop.engine.config import TrainConfig, default_schedule, parse_schedule
from gmsop.engine.loop import NonFiniteLossError, Runtime, evaluate, train_one_epoch
from gmsop.engine.throughput import BenchConfig, measure_throughput
from gmsop.engine.trainer import train

__all__ = [
    "TrainConfig",
    "parse_schedule",
    "default_schedule",
    "train",
    "train_one_epoch",
    "evaluate",
    "Runtime",
    "NonFiniteLossError",
    "BenchConfig",
    "measure_throughput",
]
