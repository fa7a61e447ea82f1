"""The class x component heatmap and the per-batch routing curves draw exactly the numbers of the
planned rows' metrics.json files (decoys under another run id and seed carry other numbers)."""

import numpy as np
import pytest
from result_files import make_run_metrics, write_json

from gmsop.aggregate.figures import class_routing_data, curves_data, plot_class_routing, plot_training_curves
from gmsop.aggregate.load import load_metrics
from gmsop.experiments import Experiment, Row

ROUTING = {  # seed -> (val_routing [class][component], images per class): 3 classes, N = 4, K = 2
    0: ([[10, 10, 0, 0], [0, 5, 5, 10], [4, 4, 6, 6]], [10, 10, 10]),
    1: ([[6, 6, 4, 4], [2, 2, 8, 8], [10, 0, 0, 10]], [10, 10, 10]),
}


def _row(label, run, variant, k):
    return Row(
        experiment="t",
        index=0,
        label=label,
        run=run,
        bench=f"b-{run}",
        seeds=(0, 1),
        variant=variant,
        display=variant,
        backbone="resnet18",
        protocol="official",
        dataset="tiny",
        dataset_name="synthetic",
        width_mult=1.0,
        settings={},
        num_experts=4 if k else None,
        k=k,
    )


EXP = Experiment(
    name="t",
    kind="table",
    title="T",
    paper=None,
    baseline=None,
    claims=(),
    rows=(_row("GAP", "gap-run", "ResNet-18", None), _row("GM", "gm-run", "GM-GAP-4-2", 2)),
)


def _write(tmp_path, run, seed, routing, per_class, distinct=(5.0, 3), idle=(0.5, 1)):
    m = make_run_metrics(run, "GM-GAP-4-2", seed=seed, routing=[1, 1, 1, 1], classes=3)
    m["final"].update(val_routing=routing, val_class_counts=per_class)
    for ep in m["epochs"]:
        ep.update(
            distinct_topk_mean=distinct[0] + ep["epoch"],
            distinct_topk_min=distinct[1],
            idle_components_mean=idle[0],
            idle_components_max=idle[1],
        )
    return write_json(tmp_path / run / f"seed{seed}" / "metrics.json", m)


@pytest.fixture
def data(tmp_path):
    for seed, (routing, per_class) in ROUTING.items():
        _write(tmp_path, "gm-run", seed, routing, per_class)
    _write(tmp_path, "other-run", 0, [[99, 99, 99, 99]] * 3, [99] * 3, distinct=(50.0, 40))  # decoy
    _write(tmp_path, "gm-run", 7, [[0, 0, 0, 0]] * 3, [1] * 3)  # a seed the row does not ask for
    return load_metrics(tmp_path)


def test_heatmap_values_are_the_pooled_fractions_of_the_records(data):
    frac = class_routing_data(EXP, data.class_routing)
    assert list(frac) == ["GM"]  # the single-head row has no routing
    for c in range(3):
        for i in range(4):
            counts = sum(ROUTING[s][0][c][i] for s in (0, 1))
            images = sum(ROUTING[s][1][c] for s in (0, 1))
            assert frac["GM"].loc[c, i] == pytest.approx(counts / images)
    fig = plot_class_routing(EXP, data.class_routing)
    mesh = fig.axes[0].collections[0]
    assert np.allclose(np.asarray(mesh.get_array()).reshape(3, 4), frac["GM"].to_numpy())


def test_routing_curves_panels_show_mean_and_worst(data):
    curves = curves_data(EXP, data.epochs)
    gm = curves[curves["label"] == "GM"].sort_values("epoch")
    assert gm["distinct_topk_mean_mean"].tolist() == [6.0, 7.0, 8.0]
    assert gm["idle_components_max_mean"].tolist() == [1.0, 1.0, 1.0]
    fig = plot_training_curves(EXP, data.epochs)
    assert len(fig.axes) == 4
    lines = fig.axes[2].get_lines()
    assert lines[0].get_ydata().tolist() == [6.0, 7.0, 8.0] and lines[1].get_ydata().tolist() == [
        3.0,
        3.0,
        3.0,
    ]


def test_no_mixture_row_with_records_is_an_error(tmp_path):
    data = load_metrics(_write(tmp_path, "gap-run", 0, [[1, 1, 0, 0]] * 3, [1] * 3))
    with pytest.raises(ValueError, match="no gated-mixture row has routing records"):
        class_routing_data(EXP, data.class_routing)
