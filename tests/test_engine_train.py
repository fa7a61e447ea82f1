"""The trainer on tiny synthetic data: learning, routing, schema, determinism, resume, NaN stop."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gmsop.aggregate.load import read_metrics
from gmsop.engine import NonFiniteLossError, TrainConfig, train
from gmsop.engine.checkpoint import CheckpointMismatchError
from gmsop.engine.train_cli import main as train_main
from gmsop.engine.trainer import Progress, build_run
from gmsop.formats import EPOCH_KEYS

DS = {"classes": 10, "n_train": 192, "n_val": 64, "size": 16}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from a second thread, and on an oversubscribed test machine
    OpenMP threads spin-wait for each other (minutes instead of seconds)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def strip_timing(metrics: dict) -> dict:
    """Everything but wall-clock measurements and the environment (which differ between runs)."""
    m = {k: v for k, v in metrics.items() if k != "env"}
    m["final"] = {k: v for k, v in m["final"].items() if k not in ("train_time_s", "train_img_s")}
    m["epochs"] = [
        {k: v for k, v in e.items() if k not in ("epoch_time_s", "train_img_s")} for e in m["epochs"]
    ]
    return m


def weights(ckpt_dir: Path) -> dict:
    return torch.load(ckpt_dir / "last.pt", map_location="cpu", weights_only=True)["model"]


# --------------------------------------------------------------------------------------------
# One run per family (GAP, SR-SOP, gated mixture), shared by several tests.

FAMILIES = {"ResNet-18": 0.05, "SR-SOP": 0.05, "GM-GAP-16-8": 0.01}


@pytest.fixture(scope="module")
def family_runs(tmp_path_factory):
    out = {}
    for variant, lr in FAMILIES.items():
        d = tmp_path_factory.mktemp(variant.replace(" ", "_"))
        cfg = TrainConfig(
            variant=variant,
            dataset_options=DS,
            batch_size=32,
            schedule=[(lr, 2)],
            deterministic=True,
            out=str(d / "metrics.json"),
            progress="none",
        )
        out[variant] = (cfg, train(cfg))
    return out


@pytest.mark.parametrize("variant", list(FAMILIES))
def test_one_variant_per_family_lowers_the_loss(family_runs, variant):
    _, m = family_runs[variant]
    first, last = m["epochs"][0], m["epochs"][-1]
    assert last["train_loss"] < first["train_loss"], [e["train_loss"] for e in m["epochs"]]
    assert last["train_ce"] < first["train_ce"]
    for e in m["epochs"]:
        assert 0.0 <= e["val_top1_err"] <= 100.0 and 0.0 <= e["val_top5_err"] <= e["val_top1_err"]
        assert e["train_img_s"] > 0 and e["epoch_time_s"] > 0


def test_metrics_json_schema(family_runs):
    cfg, m = family_runs["GM-GAP-16-8"]
    on_disk = read_metrics(cfg.out)  # the aggregation module's own validator
    assert on_disk == json.loads(json.dumps(m))
    for key in (
        "variant",
        "backbone",
        "protocol",
        "dataset",
        "seed",
        "params",
        "rep_dim",
        "flops_per_image",
        "hparams",
        "env",
        "final",
        "epochs",
    ):
        assert key in on_disk, key
    assert (on_disk["variant"], on_disk["backbone"], on_disk["protocol"], on_disk["dataset"]) == (
        "GM-GAP-16-8",
        "resnet18",
        "official",
        "synthetic",
    )
    for key in (
        "batch_size",
        "schedule",
        "weight_decay",
        "momentum",
        "overrides",
        "dataset_options",
        "protocol_switches",
    ):
        assert key in on_disk["hparams"], key
    # the schedule trained: 0.01 at the released batch 256, x 32/256 at batch 32 (lr_scaling: linear)
    assert (
        on_disk["hparams"]["schedule"] == [[0.01 * 32 / 256, 2]]
        and on_disk["hparams"]["weight_decay"] == 1e-4
    )
    assert on_disk["hparams"]["dataset_options"] == DS
    for key in ("torch", "cuda", "device", "device_name", "gmsop", "deterministic"):
        assert key in on_disk["env"], key
    assert (
        on_disk["env"]["device"] == "cpu"
        and on_disk["env"]["cuda"] is None
        and on_disk["env"]["deterministic"]
    )
    assert set(on_disk["final"]) >= {"top1_err", "top5_err", "epochs", "train_time_s", "train_img_s"}
    assert (
        on_disk["final"]["epochs"] == 2
        and on_disk["final"]["top1_err"] == on_disk["epochs"][-1]["val_top1_err"]
    )
    assert [list(e) for e in on_disk["epochs"]] == [list(EPOCH_KEYS)] * 2
    # progress.jsonl holds the same records, one line per epoch
    lines = (Path(cfg.out).parent / "ckpt" / "progress.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == on_disk["epochs"]


def test_non_gated_models_report_no_routing(family_runs):
    for variant in ("ResNet-18", "SR-SOP"):
        for e in family_runs[variant][1]["epochs"]:
            assert e["routing_counts"] is None and e["importance"] is None and e["train_balance"] == 0.0
            assert e["gate_logit_spread"] is None and e["gate_noise_spread"] is None


def test_gate_routing_counts_sum_to_samples_times_k(family_runs):
    _, m = family_runs["GM-GAP-16-8"]
    samples = (DS["n_train"] // 32) * 32  # the last incomplete batch is dropped
    for e in m["epochs"]:
        assert len(e["routing_counts"]) == 16 and len(e["importance"]) == 16
        assert sum(e["routing_counts"]) == samples * 8
        assert sum(e["importance"]) == pytest.approx(samples, rel=1e-5)  # K softmax weights sum to 1
        assert e["train_balance"] > 0
        # the gate has learned to tell images apart: its clean logits are no longer all equal
        assert e["gate_logit_spread"] > 0 and e["gate_noise_spread"] >= 0


def test_gm_sop_routing_with_capped_batches(tmp_path):
    m = train(
        TrainConfig(
            variant="GM-SOP-4-2",
            dataset_options=DS,
            batch_size=32,
            schedule="0.01:1",
            max_train_batches=2,
            progress="none",
        )
    )
    e = m["epochs"][0]
    assert sum(e["routing_counts"]) == 2 * 32 * 2 and len(e["routing_counts"]) == 4
    assert sum(e["importance"]) == pytest.approx(64, rel=1e-5)
    assert m["rep_dim"] == 8256 and m["hparams"]["max_train_batches"] == 2


@pytest.mark.parametrize("variant", ["GM-GAP-8-2", "GM-SOP-8-2"])
def test_unrouted_components_take_the_same_sgd_step_on_both_execution_paths(variant):
    """A component with no sample in a batch gets no gradient on the generic path and a zero one
    on the grouped path; the loop fills in zeros, so weight decay and momentum act alike."""
    import gmsop
    from gmsop.engine.loop import Runtime, train_one_epoch

    lr, wd, mom = 0.01, 0.1, 0.9
    torch.manual_seed(5)
    batches = [
        (torch.randn(2, 3, 16, 16), torch.tensor([0, 3])) for _ in range(2)
    ]  # 2 images x K=2: >= 4 idle CMs
    finals, init = {}, None
    for path in ("generic", "grouped"):
        torch.manual_seed(0)
        model = gmsop.build_model(variant, num_classes=5, width_mult=0.25, alpha=1.0)
        init = {k: v.clone() for k, v in model.state_dict().items()}
        model.head.execution = path
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=mom, weight_decay=wd)
        torch.manual_seed(1)
        fp32 = Runtime(torch.device("cpu"))  # float32 NCHW: the two paths' own rounding, not bf16's
        stats = train_one_epoch(model, batches, opt, fp32, epoch=1, num_experts=8)
        finals[path] = model.state_dict()
    # Two steps on a batch of 2 amplify rounding through BatchNorm: ~3e-5 measured; a skipped
    # weight-decay step on an idle component would differ by ~1e-3.
    for key, value in finals["generic"].items():
        torch.testing.assert_close(value, finals["grouped"][key], rtol=0, atol=2e-4, msg=key)
    idle = [i for i, c in enumerate(stats["routing_counts"]) if c == 0]
    assert idle, stats["routing_counts"]
    for key in (k for k in init if k.startswith(f"head.components.{idle[0]}.") and k.endswith("weight")):
        p1 = init[key] * (1 - lr * wd)  # step 1: gradient 0, buffer = wd * p0
        expected = p1 - lr * (mom * wd * init[key] + wd * p1)  # step 2: buffer = mom * buffer + wd * p1
        torch.testing.assert_close(finals["generic"][key], expected, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------------------------
# Determinism, resume, refusal of a foreign checkpoint.


def _small(tmp: Path | None, seed: int = 0, **kw) -> TrainConfig:
    args = dict(
        variant="GM-GAP-4-2",
        dataset_options=DS,
        batch_size=32,
        schedule="0.01:1,0.001:1",
        max_train_batches=3,
        seed=seed,
        deterministic=True,
        progress="none",
    )
    if tmp is not None:
        args["out"] = str(tmp / "metrics.json")
    args.update(kw)
    return TrainConfig(**args)


def test_same_seed_is_bit_identical_and_seed_matters(tmp_path):
    a = train(_small(tmp_path / "a"))
    b = train(_small(tmp_path / "b"))
    assert strip_timing(a) == strip_timing(b)
    wa, wb = weights(tmp_path / "a" / "ckpt"), weights(tmp_path / "b" / "ckpt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    c = train(_small(None, seed=1))
    assert [e["train_loss"] for e in c["epochs"]] != [e["train_loss"] for e in a["epochs"]]


def test_rerun_of_finished_run_reports_again_and_other_config_is_refused(tmp_path, capsys):
    first = train(_small(tmp_path, progress="lines"))
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err and "img/s" in err and "ETA" in err
    (tmp_path / "metrics.json").unlink()
    again = train(_small(tmp_path, progress="lines"))  # resumes after the last epoch: no training
    assert strip_timing(again) == strip_timing(first) and (tmp_path / "metrics.json").exists()
    assert "resuming" in capsys.readouterr().err
    # the trained schedules (x 32/256: lr_scaling linear at batch 32)
    with pytest.raises(
        CheckpointMismatchError, match=r"schedule.*\[\[0\.00125, 1\], \[0\.000125, 1\]\].*\[\[0\.0025, 2\]\]"
    ):
        train(_small(tmp_path, schedule="0.02:2"))
    assert read_metrics(tmp_path / "metrics.json") == json.loads(
        json.dumps(first)
    )  # a refused rerun touches nothing


class _StopAfterFirstEpoch(Progress):
    def end_epoch(self, record, epochs, eta_s):
        raise KeyboardInterrupt  # after the epoch's checkpoint, as a kill would be


def test_the_optimizer_is_torch_optim_sgd_and_resume_after_an_epoch_is_exact(tmp_path):
    """A scheduler takes the trainer's optimiser; an interrupted run resumed from its checkpoint
    (optimiser state included) ends bit-identical to an uninterrupted one."""
    run = build_run(_small(None))
    assert isinstance(run.optimizer, torch.optim.SGD)
    scheduler = torch.optim.lr_scheduler.StepLR(run.optimizer, step_size=1, gamma=0.1)
    run.optimizer.step()
    scheduler.step()
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * run.schedule[0][0])

    straight = train(_small(tmp_path / "straight"))
    with pytest.raises(KeyboardInterrupt):
        train(_small(tmp_path / "resumed"), progress=_StopAfterFirstEpoch("none"))
    resumed = train(_small(tmp_path / "resumed"))
    assert strip_timing(resumed) == strip_timing(straight)
    wa, wb = weights(tmp_path / "straight" / "ckpt"), weights(tmp_path / "resumed" / "ckpt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def _cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "gmsop.cli", "train", *args]


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch_matches_uninterrupted_run(tmp_path):
    """Kill -9 a real `gmsop train` during epoch 2, rerun it, compare with an uninterrupted run."""
    ds = {**DS, "n_train": 448}  # 14 batches per epoch: long enough to be killed inside epoch 2
    common = [
        "--variant",
        "GM-GAP-4-2",
        "--batch-size",
        "32",
        "--schedule",
        "0.01:2,0.001:1",
        "--deterministic",
        "--seed",
        "3",
        "--progress",
        "lines",
    ] + [a for k, v in ds.items() for a in ("--dataset-option", f"{k}={v}")]
    # One thread: identical in all three processes (bit-identity needs the same reduction
    # splits) and immune to OpenMP spin-waiting when the test machine is oversubscribed.
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
    }
    killed = tmp_path / "killed"
    progress = killed / "ckpt" / "progress.jsonl"
    proc = subprocess.Popen(
        _cli(common + ["--out", str(killed / "metrics.json")]),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600  # generous: CI machines may be shared
        while not (progress.exists() and progress.read_text().count("\n") >= 1):
            assert proc.poll() is None, f"training exited early: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "epoch 1 never finished"
            time.sleep(0.01)
        time.sleep(0.1)  # well inside epoch 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    done = progress.read_text().count("\n")
    assert done in (1, 2), f"killed after {done} epochs"  # not finished: epoch 3 never completed
    assert not (killed / "metrics.json").exists()
    resumed = subprocess.run(
        _cli(common + ["--out", str(killed / "metrics.json")]),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"after epoch {done}/3" in resumed.stderr
    assert not [p.name for p in killed.rglob("*.tmp")]  # no half-written file survives the rerun

    straight = tmp_path / "straight"
    ref = subprocess.run(
        _cli(common + ["--out", str(straight / "metrics.json")]),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert ref.returncode == 0, ref.stderr
    a, b = read_metrics(killed / "metrics.json"), read_metrics(straight / "metrics.json")
    assert strip_timing(a) == strip_timing(b)
    wa, wb = weights(killed / "ckpt"), weights(straight / "ckpt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [json.loads(x) for x in (killed / "ckpt" / "progress.jsonl").read_text().splitlines()] == a[
        "epochs"
    ]


# --------------------------------------------------------------------------------------------
# A loss that blows up.


def test_nan_loss_stops_with_epoch_and_step_and_keeps_last_good_checkpoint(tmp_path, capsys):
    out = tmp_path / "metrics.json"
    out.write_text('{"stale": "a previous run"}')
    args = [
        "--variant",
        "ResNet-18",
        "--batch-size",
        "32",
        "--schedule",
        "0.01:1,1e30:1",
        "--progress",
        "lines",
        "--out",
        str(out),
    ] + [a for k, v in DS.items() for a in ("--dataset-option", f"{k}={v}")]
    assert train_main(args) == 1
    err = capsys.readouterr().err
    assert "gmsop train: error: non-finite training loss" in err and "at epoch 2, step" in err, err
    assert not out.exists()
    ckpt = torch.load(tmp_path / "ckpt" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1 and all(
        torch.isfinite(t).all() for t in ckpt["model"].values() if t.is_floating_point()
    )
    assert len((tmp_path / "ckpt" / "progress.jsonl").read_text().splitlines()) == 1
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_nan_in_first_epoch_python_api(tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step \d+ of 6.*no checkpoint was written") as exc:
        train(
            TrainConfig(
                variant="SR-SOP",
                dataset_options=DS,
                batch_size=32,
                schedule="1e30:1",
                out=str(tmp_path / "metrics.json"),
                progress="none",
            )
        )
    assert exc.value.epoch == 1 and exc.value.step >= 2
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "ckpt" / "last.pt").exists()


def test_evaluating_less_often_changes_nothing_that_is_trained():
    """``eval_every`` only skips evaluations: the training (gate noise and dropout included) and
    the final evaluation are the same, so the workflow may evaluate every 3rd epoch."""
    common = dict(
        variant="GM-GAP-4-2",
        dataset_options=DS,
        batch_size=32,
        schedule="0.05:3",
        deterministic=True,
        max_train_batches=2,
        progress="none",
        overrides={"width_mult": 0.25},
    )
    every, third = train(TrainConfig(**common)), train(TrainConfig(**common, eval_every=3))
    assert [e["val_top1_err"] is not None for e in third["epochs"]] == [False, False, True]
    timing = ("train_img_s", "train_time_s")
    assert {k: v for k, v in third["final"].items() if k not in timing} == {
        k: v for k, v in every["final"].items() if k not in timing
    }
    assert [e["train_loss"] for e in third["epochs"]] == [e["train_loss"] for e in every["epochs"]]
