"""Human-readable progress on stderr: a tqdm bar on a terminal, one line per epoch in a log
(a bar's carriage returns would fill a Snakemake or SLURM log). progress.jsonl is the machine record.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


class Progress:
    """Reports a run's progress; ``mode`` is auto, bar, lines or none."""

    def __init__(self, mode: str = "auto", stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "lines"
        self.mode = mode
        self._bar = None

    def message(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        elif self.mode != "none":
            print(text, file=self.stream, flush=True)

    def start_epoch(self, epoch: int, epochs: int, steps: int, lr: float) -> None:
        if self.mode != "bar":
            return
        self._bar = tqdm(
            total=steps,
            desc=f"epoch {epoch}/{epochs} lr {lr:g}",
            unit="batch",
            file=self.stream,
            leave=False,
            dynamic_ncols=True,
        )

    def step(self, loss: float | None = None) -> None:
        if self._bar is not None:
            self._bar.update(1)
            if loss is not None:
                self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def end_epoch(self, record: dict[str, Any], epochs: int, eta_s: float) -> None:
        self.close()
        h, rem = divmod(round(eta_s), 3600)
        self.message(
            f"epoch {record['epoch']}/{epochs} lr {record['lr']:g} "
            f"loss {_fmt(record['train_loss'], '.4f')} (ce {_fmt(record['train_ce'], '.4f')} "
            f"bal {_fmt(record['train_balance'], '.4f')}) train top1 {_fmt(record['train_top1_err'])}% "
            f"val top1 {_fmt(record['val_top1_err'])}% top5 {_fmt(record['val_top5_err'])}% "
            f"| {_fmt(record['train_img_s'], '.1f')} img/s | {record['epoch_time_s']:.1f} s "
            f"| ETA {h}:{rem // 60:02d}:{rem % 60:02d}"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
