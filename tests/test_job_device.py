"""gmsop.gpu_slots.job_device: which device a workflow job trains on, from the config's ``device``
and ``gpus_per_job`` (GPU counts injected: no GPU needed). A job that reserved no GPU does not
take one on its own: with the embedded default (auto, 0) a GPU machine runs the jobs on the CPU."""

import pytest

from gmsop.gpu_slots import job_device


@pytest.mark.parametrize("visible", [0, 1, 8])
def test_auto_without_a_reserved_gpu_is_the_cpu(visible):
    device, note = job_device("auto", 0, visible=visible)
    assert device == "cpu"
    if visible:  # the log says why the GPUs sit idle and how to use them
        assert (
            f"{visible} GPU(s) are visible" in note
            and "gpus_per_job: 1" in note
            and "--resources gpu=" in note
        )
    else:
        assert note == ""


@pytest.mark.parametrize("gpus", [1, 2])
def test_a_job_with_reserved_gpus_keeps_its_setting(gpus):
    # auto stays auto: CUDA on the GPU claim_gpus gave the job, the CPU on a machine without one
    assert job_device("auto", gpus, visible=4) == ("auto", "")
    assert job_device("cuda", gpus, visible=4) == ("cuda", "")
    assert job_device("cpu", gpus, visible=4) == ("cpu", "")


def test_explicit_choices_are_kept():
    assert job_device("cpu", 0, visible=4) == ("cpu", "")
    device, note = job_device("CUDA", 0, visible=4)  # the explicit opt-in to share the GPUs
    assert device == "cuda" and "shares" in note


def test_embedded_default_and_paper_configs(monkeypatch):
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    default = yaml.safe_load((root / "config.yaml").read_text())
    assert job_device(default["device"], default["gpus_per_job"], visible=4)[0] == "cpu"
    for name in ("paper-imagenet64.yaml", "paper-places365.yaml"):
        cfg = yaml.safe_load((root / "workflow" / "configs" / name).read_text())
        assert job_device(cfg["device"], cfg["gpus_per_job"], visible=4)[0] == "auto"
    # visible=None looks the GPUs up (here: a count forced by the environment)
    monkeypatch.setenv("GMSOP_NUM_GPUS", "3")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert "3 GPU(s)" in job_device("auto", 0)[1]
    with pytest.raises(ValueError, match="gpus_per_job"):
        job_device("auto", -1)


def test_a_workflow_job_starts_on_the_device_job_device_gives():
    """gmsop.pipeline.start_job: what the training and the benchmark job do first."""
    from gmsop.pipeline import start_job

    assert start_job("cpu", 0, []) == job_device("cpu", 0)[0] == "cpu"
    assert start_job("auto", 0, []) == job_device("auto", 0)[0]
