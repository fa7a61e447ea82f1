"""Throughput measurement (timm protocol) and the `gmsop bench` command."""

import json

import pytest
import torch

from gmsop import build_model
from gmsop.aggregate.load import read_bench
from gmsop.engine.throughput import BenchConfig, measure_throughput, step_stats
from gmsop.engine.throughput import main as bench_main
from gmsop.flops import count_params


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Sane values do not need two threads; one avoids OpenMP spin-waits on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_step_stats_median_and_iqr():
    med, iqr = step_stats([0.001, 0.002, 0.003, 0.004, 0.005])
    assert med == pytest.approx(3.0) and iqr == pytest.approx(2.0)
    assert step_stats([0.01]) == (pytest.approx(10.0), 0.0)


def test_measure_throughput_sane_values():
    r = measure_throughput(
        BenchConfig(
            variant="GM-GAP-4-2",
            input_size=(3, 16, 16),
            num_classes=10,
            batch_size=8,
            warmup=1,
            steps=3,
            device="cpu",
        )
    )
    assert (r["variant"], r["backbone"], r["input_size"], r["device"]) == (
        "GM-GAP-4-2",
        "resnet18",
        [3, 16, 16],
        "cpu",
    )
    assert r["params"] == count_params(build_model("GM-GAP-4-2", num_classes=10))
    assert (
        r["train_step_ms_median"] > r["infer_step_ms_median"] > 0
    )  # backward + SGD cost more than a forward
    assert r["train_img_s"] == pytest.approx(8 / (r["train_step_ms_median"] / 1e3))
    assert r["infer_img_s"] > r["train_img_s"] > 0
    assert r["train_step_ms_iqr"] >= 0 and r["peak_mem_mb"] > 10
    assert r["flops_per_image"] > 1e6
    assert r["achieved_tflops"] == pytest.approx(3 * r["flops_per_image"] * r["train_img_s"] / 1e12)
    assert r["env"]["torch"] and r["env"]["device"] == "cpu"


def test_bench_cli_writes_valid_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = bench_main(
        [
            "--variant",
            "ResNet-18-512d",
            "--input-size",
            "3,16,16",
            "--num-classes",
            "10",
            "--batch-size",
            "4",
            "--warmup",
            "1",
            "--steps",
            "2",
            "--device",
            "cpu",
            "--override",
            "width_mult=0.5",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    on_disk = read_bench(out)  # the aggregation module's validator
    assert on_disk == json.loads(capsys.readouterr().out)
    assert on_disk["variant"] == "ResNet-18-512d" and on_disk["rep_dim"] == 256 and on_disk["batch_size"] == 4


@pytest.mark.parametrize(
    "argv, word",
    [
        (["--variant", "GM-NOPE"], "GM-NOPE"),
        (["--batch-size", "1"], "batch_size"),
        (["--steps", "0"], "steps"),
        (["--override", "nonsense=3"], "nonsense"),
    ],
)
def test_bench_cli_bad_values(argv, word, capsys):
    assert bench_main(argv + ["--input-size", "3,8,8", "--device", "cpu"]) == 2
    assert word in capsys.readouterr().err


def test_bench_cli_bad_input_size_and_help(capsys):
    with pytest.raises(SystemExit):
        bench_main(["--input-size", "3,64"])
    assert "C,H,W" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        bench_main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for opt in (
        "--variant",
        "--backbone",
        "--input-size",
        "--num-classes",
        "--batch-size",
        "--warmup",
        "--steps",
        "--device",
        "--protocol",
        "--override",
        "--out",
    ):
        assert opt in text


class _CountingPool(torch.nn.Module):
    """A real head (global average pooling) that counts the passes it serves, by mode."""

    calls = {"train": 0, "eval": 0, "infer": 0}

    def __init__(self, in_channels):
        super().__init__()
        self.out_features = in_channels

    def forward(self, x):
        mode = "infer" if torch.is_inference_mode_enabled() else ("train" if self.training else "eval")
        _CountingPool.calls[mode] += 1
        return x.mean(dim=(2, 3))


@pytest.mark.parametrize("warmup,steps", [(0, 1), (3, 2)])
def test_the_protocol_runs_exactly_its_warmup_and_timed_steps(warmup, steps):
    """Skipping the warm-up (or timing fewer steps) would change the measurement silently."""
    import gmsop

    gmsop.register_head("counting_pool", _CountingPool, overwrite=True)
    gmsop.register_variant("CountingPool", "counting_pool", overwrite=True)
    _CountingPool.calls = {"train": 0, "eval": 0, "infer": 0}
    from gmsop.flops import count_flops

    count_flops(build_model("CountingPool", num_classes=4), input_size=(3, 16, 16))  # what counting costs
    flops_passes = dict(_CountingPool.calls)
    _CountingPool.calls = {"train": 0, "eval": 0, "infer": 0}
    r = measure_throughput(
        BenchConfig(
            variant="CountingPool",
            input_size=(3, 16, 16),
            num_classes=4,
            batch_size=4,
            warmup=warmup,
            steps=steps,
            device="cpu",
        )
    )
    assert _CountingPool.calls["train"] == warmup + steps + flops_passes["train"]
    assert _CountingPool.calls["infer"] == warmup + steps + flops_passes["infer"]
    assert (r["warmup"], r["steps"]) == (warmup, steps)
