"""The paper configs row by row: every planned run as the paper's text or the released code
specifies it, with the reading labelled, and no GPU time spent twice or on points the paper
does not support. Planned with ``make_plan`` (what the workflow runs), no Snakemake:
the dry runs of the same configs (job counts) are in test_workflow.py and test_slurm.py.
"""

import copy
import re
from pathlib import Path

import pytest
import yaml

from gmsop import paper_values as pv
from gmsop.aggregate.claims import evaluate_claims
from gmsop.experiments import make_plan
from gmsop.protocol import OFFICIAL, PAPER, protocol_fields
from gmsop.registry import resolve_variant

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "workflow" / "configs"
IMAGENET = yaml.safe_load((CONFIGS / "paper-imagenet64.yaml").read_text())
PLACES = yaml.safe_load((CONFIGS / "paper-places365.yaml").read_text())

# lr x epochs as the released scripts (examples/GM/*.m) or the paper's text give them
GAP = [[0.075, 50], [0.0075, 15], [0.00075, 10]]
SRSOP_RELEASED = [[0.15, 40], [0.015, 10], [0.0015, 5], [0.00015, 5]]
SRSOP_TEXT = [[0.15, 20], [0.015, 5], [0.0015, 5], [0.00015, 5], [0.000015, 5]]
GM_SOP = [[0.1, 40], [0.01, 10], [0.001, 5], [0.0001, 5]]
WRN_GM_GAP = [[0.1, 20], [0.01, 10], [0.001, 10]]
WRN_GM_SOP = [[0.09, 20], [0.009, 10], [0.0009, 5], [0.00009, 5]]
PLACES_SCHED = [[0.1, 25], [0.01, 5], [0.001, 5], [0.0001, 5]]
# ours: the text's epochs at lr 0.02 (the text's 0.05 diverges in gmsop preflight)
PLACES_8256D = [[0.02, 35], [0.002, 10], [0.0002, 10], [0.00002, 5]]


@pytest.fixture(scope="module")
def imagenet():
    return make_plan(IMAGENET)


@pytest.fixture(scope="module")
def places():
    return make_plan(PLACES)


def _facts(row):
    s = row.settings
    return resolve_variant(s["variant"], s["backbone"], s["protocol"], s["overrides"], float(s["width_mult"]))


def _effective_alpha(row):
    """The balance-loss weight against the MEAN cross-entropy this row trains with."""
    return _facts(row).protocol.effective_alpha(int(row.settings["batch_size"]))


def _epochs(row):
    return sum(ep for _, ep in row.settings["schedule"])


def _enabled(cfg, name):
    cfg = copy.deepcopy(cfg)
    cfg["experiments"][name]["enabled"] = True
    return make_plan(cfg)


# ---- downsampled ImageNet ------------------------------------------------------------------------


def test_imagenet_plans_33_runs_each_once(imagenet):
    assert len(imagenet.runs) == 33 and len(imagenet.train_jobs()) == 99 and len(imagenet.benches) == 26
    assert set(imagenet.experiments) == {
        "table2",
        "table3",
        "figure2",
        "figure3",
        "protocols",
    }  # extension off


def test_table2_schedules_name_their_source(imagenet):
    t2 = imagenet.experiments["table2"]
    sched = {r.label: r.settings["schedule"] for r in t2.rows}
    assert sched["SR-SOP (released schedule {40,10,5,5})"] == SRSOP_RELEASED
    assert sched["SR-SOP (text schedule {20,5,5,5,5})"] == SRSOP_TEXT
    # no released script: the text is the only specification
    assert sched["Parametric SR-SOP (text schedule {20,5,5,5,5})"] == SRSOP_TEXT
    assert sched["GM-SOP-16-8"] == sched["Ave-SOP-16"] == GM_SOP
    for label in ("ResNet-18", "ResNet-18-512d", "Ave-GAP-16", "GM-GAP-16-8"):
        assert sched[label] == GAP, label
    # the 8256d row (ours): GAP's epochs at lr 0.02, where gmsop preflight finds it trains
    assert [ep for _, ep in sched["ResNet-18-8256d"]] == [ep for _, ep in GAP]
    assert [lr for lr, _ in sched["ResNet-18-8256d"]] == pytest.approx([0.02, 0.002, 0.0002])
    # a label naming a schedule names the one it runs
    for r in t2.rows:
        m = re.search(r"schedule \{([\d,]+)\}", r.label)
        if m:
            assert [ep for _, ep in r.settings["schedule"]] == [int(x) for x in m[1].split(",")], r.label
    # both SR-SOP readings are compared with the published SR-SOP number
    assert {r.paper_key for r in t2.rows if r.variant == "SR-SOP"} == {("SR-SOP", "")}


def test_wrn_rows_as_released(imagenet):
    t3 = imagenet.experiments["table3"]
    gap, sop = t3.row("GM-GAP-16-8 + WRN-36-2"), t3.row("GM-SOP-16-8 + WRN-36-2")
    for row, sched in ((gap, WRN_GM_GAP), (sop, WRN_GM_SOP)):
        assert (
            row.backbone == "wrn36_2"
            and row.settings["batch_size"] == 150
            and row.settings["schedule"] == sched
        )
        assert _facts(row).protocol.weight_decay == 1e-4
        assert _effective_alpha(row) == pytest.approx(100 / 150)
    assert _facts(gap).head_kwargs["gate_dims"] == [512]  # one conv 256->512 + BN + ReLU, GAP: a 512-d gate
    assert (
        "gate_dims" not in _facts(sop).head_kwargs and _facts(sop).dropout == 0.4
    )  # gate [512, 128] + SR-SOP
    # every other row trains at the paper's batch 256; official: alpha on the summed loss = alpha/256;
    # the paper's text (the protocols experiment's "paper" row): alpha on the mean loss
    for exp in imagenet.experiments.values():
        for row in exp.rows:
            if row.backbone != "wrn36_2":
                assert row.settings["batch_size"] == 256, (exp.name, row.label)
                if row.alpha is not None:
                    expected = row.alpha / 256 if row.protocol == "official" else row.alpha
                    assert _effective_alpha(row) == pytest.approx(expected), (exp.name, row.label)
    assert _effective_alpha(imagenet.experiments["protocols"].row("GM-SOP-16-8 (paper)")) == 100.0


def test_starred_rows_are_labelled_and_offer_equal_steps(imagenet):
    t3 = imagenet.experiments["table3"]
    plain = t3.row("GM-GAP-16-8")
    literal, equal = t3.row("GM-GAP-16-8* (2x set, 75 epochs)"), t3.row("GM-GAP-16-8* (2x set, equal steps)")
    for row in (literal, equal):
        assert row.paper_key == ("GM-GAP-16-8", "star") and row.settings["augment"]["flip_double"] is True
        assert row.settings["augment"]["pad"] == 4 and row.settings["augment"]["eval_pad_crop"] is True
    assert _epochs(plain) == _epochs(literal) == 75  # the doubled set for 75 epochs: twice the steps
    assert 2 * _epochs(equal) / _epochs(plain) == pytest.approx(
        1.0, abs=0.02
    )  # equal steps (38 doubled epochs)
    claims = {(c.better, c.worse) for c in t3.claims}
    assert {(literal.label, "GM-GAP-16-8"), (equal.label, "GM-GAP-16-8")} <= claims


def test_figure2_alphas_are_scaled_by_the_batch(imagenet):
    rows = imagenet.experiments["figure2"].rows
    assert [r.alpha for r in rows] == [0.0, 1.0, 10.0, 100.0, 1000.0]
    assert [_effective_alpha(r) for r in rows] == pytest.approx([0, 1 / 256, 10 / 256, 100 / 256, 1000 / 256])
    assert _effective_alpha(rows[-1]) == pytest.approx(3.9, abs=0.01)
    # the alpha = 100 point is Figure 3's N = 16, K = 4 point: one run, trained once
    assert (
        imagenet.experiments["figure2"].row("alpha=100").run
        == imagenet.experiments["figure3"].row("N=16, K=4").run
    )


def test_figure3_plans_the_grid_the_paper_supports(imagenet):
    grid = imagenet.experiments["figure3"]
    points = {(r.num_experts, r.k) for r in grid.rows if r.num_experts is not None}
    assert points == {
        (16, 4),
        (16, 8),
        (16, 12),
        (16, 16),
        (128, 4),
        (128, 8),
        (128, 12),
        (128, 16),
        (128, 32),
    }
    assert all(k > 1 for _, k in points)  # the paper requires K > 1
    # the points the text names are in it
    assert {(16, 8), (16, 12), (16, 16), (128, 32)} <= points
    assert grid.baseline == "ResNet-18-512d"
    assert all(r.settings["schedule"] == GAP for r in grid.rows)
    # points shared with other experiments train once: 7 runs of its own (+ the shared baseline)
    elsewhere = {r.run for n, e in imagenet.experiments.items() if n != "figure3" for r in e.rows}
    assert len({r.run for r in grid.rows} - elsewhere) == 7


def test_figure3_extension_is_optional_and_k_above_1():
    plan = _enabled(IMAGENET, "figure3_extended")
    ext = plan.experiments["figure3_extended"]
    points = [(r.num_experts, r.k) for r in ext.rows if r.num_experts is not None]
    assert len(points) == 28 and all(1 < k <= n for n, k in points)
    assert len(plan.runs) == 33 + 19  # the 9 points of figure3 are shared


def test_protocols_title_counts_the_switches_that_differ(imagenet):
    differ = [f for f in protocol_fields() if getattr(OFFICIAL, f) != getattr(PAPER, f)]
    assert len(differ) == 7 and "bn_momentum" in differ
    assert "seven switches" in imagenet.experiments["protocols"].title


def test_imagenet_requires_the_full_dataset():
    assert IMAGENET["datasets"]["imagenet64"]["options"]["require_full"] is True


# ---- Places365 -----------------------------------------------------------------------------------


def test_places_rows_and_the_stride_reading(places):
    assert len(places.runs) == 6 and len(places.train_jobs()) == 18 and len(places.benches) == 6
    t4 = places.experiments["table4"]
    for row in t4.rows:
        assert row.settings["batch_size"] == 256
        assert row.settings["schedule"] == (
            PLACES_8256D if row.variant == "ResNet-18-8256d" else PLACES_SCHED
        )
        if row.alpha is not None:
            assert _effective_alpha(row) == pytest.approx(100 / 256)
    # default reading: the released code's rule, second-order heads keep stage 5 at stride 1 (24x24 at 96 px)
    second = {r.label: _facts(r).last_stride for r in t4.rows if _facts(r).second_order}
    assert second == {"SR-SOP": 1, "Parametric SR-SOP": 1, "GM-SOP-16-8": 1}
    assert "stride 1, 24x24" in t4.title
    assert "table4_stride2" not in places.experiments


def test_places_stride2_reading_is_a_labelled_switch():
    plan = _enabled(PLACES, "table4_stride2")
    alt = plan.experiments["table4_stride2"]
    assert [_facts(r).last_stride for r in alt.rows] == [2, 2, 2]
    assert all("stride 2, 12x12" in r.label and r.paper_key[0] == r.variant for r in alt.rows)
    assert len(plan.runs) == 9  # 3 runs of its own
    paper = {r.label: [pv.paper_value("table4", r.paper_key[0], r.backbone, "").top1_err] for r in alt.rows}
    assert (evaluate_claims(alt.claims, paper, {})["diff"] < 0).all()  # claims the paper's numbers show


# ---- both --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [IMAGENET, PLACES], ids=["imagenet64", "places365"])
def test_cluster_requests_fit_common_partitions(cfg):
    # one training job asks at most a day (two on the retry): 72 h / 144 h is refused by many partitions
    assert cfg["train_runtime_min"] <= 1440
    assert cfg["gpus_per_job"] == 1 and cfg["threads_per_job"] >= 1


def test_documented_commands_keep_every_gpu_busy():
    """Each README command running a paper config gives --cores >= threads_per_job x GPUs."""
    readme = (ROOT / "README.md").read_text()
    found = 0
    for line in readme.splitlines():
        m = re.search(r"--configfile workflow/configs/(paper-[\w-]+\.yaml)", line)
        gpus, cores = re.search(r"--resources gpu=(\d+)", line), re.search(r"--cores (\d+)", line)
        if m and gpus and cores:
            cfg = yaml.safe_load((CONFIGS / m[1]).read_text())
            assert int(cores[1]) >= cfg["threads_per_job"] * cfg["gpus_per_job"] * int(gpus[1]), line
            found += 1
    assert found >= 3


def test_figure2_axis_and_legend_show_the_batch_scaled_alpha(imagenet):
    """Under official the released code weighs alpha on the batch-SUMMED loss: the axis says so
    and every tick and legend entry shows alpha/256 next to alpha."""
    import pandas as pd

    from gmsop.aggregate.figures import plot_alpha_sweep, plot_routing

    exp = imagenet.experiments["figure2"]
    runs, routing = [], []
    for i, r in enumerate(exp.rows):
        for s in r.seeds:
            path = f"{r.run}/seed{s}"
            runs.append({"run_id": r.run, "seed": s, "top1_err": 45.0 - i, "finished": True, "path": path})
            routing += [
                {"run_id": r.run, "seed": s, "path": path, "epoch": 75, "component": c, "count": 100.0 + c}
                for c in range(16)
            ]
    ax = plot_alpha_sweep(exp, pd.DataFrame(runs)).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "0\n(0)",
        "1\n(0.0039)",
        "10\n(0.039)",
        "100\n(0.39)",
        "1000\n(3.9)",
    ]
    assert "α/256, its weight on the mean loss" in ax.get_xlabel()
    legend = [t.get_text() for t in plot_routing(exp, pd.DataFrame(routing)).axes[0].get_legend().get_texts()]
    assert any(t.startswith("α = 100 (α/256 = 0.39)") for t in legend)


def test_wrn_rows_are_benchmarked_at_their_training_batch():
    """bench.batch_size null: each benchmark runs at its row's batch (150 for WRN-36-2 as released)."""
    import yaml

    from gmsop.experiments import make_plan

    cfg = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "workflow/configs/paper-imagenet64.yaml").read_text()
    )
    plan = make_plan(cfg)
    for exp in plan.experiments.values():
        for row in exp.rows:
            assert plan.benches[row.bench]["batch_size"] == plan.runs[row.run]["batch_size"], row.label
    assert {
        plan.benches[r.bench]["batch_size"]
        for r in plan.experiments["table3"].rows
        if r.backbone == "wrn36_2"
    } == {150}
