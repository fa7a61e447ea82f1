"""Training and throughput for gmsop, each configured by a typed dataclass.

metrics = train(TrainConfig(variant="GM-SOP-16-8", dataset="synthetic", schedule=[(0.1, 40)], out="m.json"))
bench = measure_throughput(BenchConfig(variant="GM-GAP-16-8", input_size=(3, 64, 64), batch_size=32))
"""

from gmsop.engine.config import TrainConfig
from gmsop.engine.loop import NonFiniteLossError
from gmsop.engine.throughput import BenchConfig, measure_throughput
from gmsop.engine.trainer import train
