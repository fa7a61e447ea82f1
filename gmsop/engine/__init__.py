"""Training and throughput for gmsop: one module per job (ConvNeXt's split, a typed config).

    from gmsop.engine import TrainConfig, train, BenchConfig, measure_throughput
    metrics = train(TrainConfig(variant="GM-SOP-16-8", dataset="synthetic", batch_size=256,
                                schedule=[(0.1, 40), (0.01, 10)], seed=0, out="run/metrics.json"))
    bench = measure_throughput(BenchConfig(variant="GM-GAP-16-8", input_size=(3, 64, 64), batch_size=32))

Command line: ``gmsop train --help`` and ``gmsop bench --help``.

Modules:
    config.py       TrainConfig (validated dataclass), step schedules, released default schedules
    data.py         DataPipeline: gmsop.data loader + augmentation -> normalised device batches
    loop.py         train_one_epoch / evaluate (dicts of averaged metrics), NonFiniteLossError
    trainer.py      train(): build, resume, epoch loop, checkpoint, progress.jsonl, metrics.json
    checkpoint.py   last.pt: weights_only-loadable, fingerprinted, atomically replaced
    env.py          device, determinism, seeds, RNG state capture/restore, environment record
    progress.py     stderr progress: tqdm bar on a terminal, one line per epoch otherwise
    (atomic writes: gmsop.atomic; file formats: gmsop.formats)
    throughput.py   timm-protocol img/s, step-time median/IQR, peak memory, FLOP/s
    train_cli.py    ``gmsop train``;  bench_cli.py  ``gmsop bench``
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
