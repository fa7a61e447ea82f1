"""Figures: each one renders to a non-empty SVG and PNG; bad selections fail with a reason."""
import xml.etree.ElementTree as ET

import pytest

from gmsop.aggregate.figures import (
    figure_paths, plot_alpha_sweep, plot_nk_grid, plot_routing, plot_training_curves, save_figure,
)
from gmsop.aggregate.load import load_bench, load_metrics
from result_files import make_bench, make_metrics, write_json

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """An alpha sweep of GM-GAP-16-4 (2 seeds each), a small N x K grid at alpha=100, a baseline."""
    root = tmp_path_factory.mktemp("figs")
    skewed, even = [900, 800, 700, 600] + [0] * 12, [220] * 16
    for alpha in (0, 1, 100):
        for seed in (0, 1):
            write_json(root / f"r/alpha{alpha}/{seed}/metrics.json",
                       make_metrics("GM-GAP-16-4", seed=seed, alpha=alpha, top1=45.0 - (alpha > 0) - seed / 10,
                                    routing=skewed if alpha == 0 else even, params=2_000_000, rep_dim=512))
    for n, k in ((8, 2), (16, 2), (8, 8), (16, 8)):
        write_json(root / f"r/nk{n}-{k}/metrics.json",
                   make_metrics(f"GM-GAP-{n}-{k}", top1=44.0 - n / 8 - k / 8, train_img_s=800.0 / n,
                                params=2_000_000, rep_dim=512))
        write_json(root / f"b/nk{n}-{k}/bench.json", make_bench(f"GM-GAP-{n}-{k}", train_img_s=80.0 / n))
    write_json(root / "r/base/metrics.json",
               make_metrics("ResNet-18-512d", top1=49.0, params=1_300_000, rep_dim=512, train_img_s=1500.0))
    write_json(root / "b/base/bench.json", make_bench("ResNet-18-512d", train_img_s=150.0, params=1_300_000))
    return load_metrics(root / "r"), load_bench(root / "b"), root


def _check_saved(fig, stem):
    svg, png = save_figure(fig, figure_paths(stem))
    assert svg.suffix == ".svg" and png.suffix == ".png"
    assert ET.parse(svg).getroot().tag.endswith("svg")
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    assert not [p for p in stem.parent.iterdir() if p.name.endswith(".tmp")]


def test_routing(data, tmp_path):
    metrics, _, _ = data
    fig = plot_routing(metrics.routing, "GM-GAP-16-4", alphas=(0, 100))
    assert "Figure 2 (left)" in fig.axes[0].get_title()
    assert fig.axes[0].get_ylabel() and fig.axes[0].get_legend() is not None
    _check_saved(fig, tmp_path / "fig2_left")


def test_routing_errors(data):
    metrics, _, _ = data
    with pytest.raises(ValueError, match=r"no runs with hp.alpha in \[1000\]; available: \[0, 1, 100\]"):
        plot_routing(metrics.routing, "GM-GAP-16-4", alphas=(0, 1000))
    with pytest.raises(ValueError, match="order='index' needs one run per α"):
        plot_routing(metrics.routing, "GM-GAP-16-4", order="index")
    plot_routing(metrics.routing, "GM-GAP-16-4", order="index", where={"seed": 0})
    with pytest.raises(ValueError, match="no routing counts"):
        plot_routing(metrics.routing, "SR-SOP")


def test_alpha_sweep(data, tmp_path):
    metrics, _, _ = data
    fig = plot_alpha_sweep(metrics.runs, "GM-GAP-16-4")
    ax = fig.axes[0]
    assert ax.get_xscale() == "symlog" and "(%)" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "100"]
    _check_saved(fig, tmp_path / "fig2_right")


def test_nk_grid(data, tmp_path):
    metrics, bench, _ = data
    fig = plot_nk_grid(metrics.runs, bench, where={"hp.alpha": 100.0})
    err_ax, fps_ax = fig.axes
    assert "relative to ResNet-18-512d" in fps_ax.get_ylabel()
    # one line per K (2 and 8) on the speed panel, plus the baseline line
    assert {l.get_label() for l in fps_ax.get_lines()} >= {"K = 2", "K = 8"}
    _check_saved(fig, tmp_path / "fig3")
    with pytest.raises(ValueError, match="seed 0 appears 3 times"):
        plot_nk_grid(metrics.runs, bench)  # the alpha sweep's GM-GAP-16-4 runs collide without a filter


def test_training_curves(data, tmp_path):
    metrics, _, _ = data
    rows = [("ResNet-18-512d", "resnet18"), ("GM-GAP-16-8", "resnet18"), ("SR-SOP", "resnet18")]
    fig = plot_training_curves(metrics.epochs, rows, title="Table 2 runs")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["ResNet-18-512d (n=1)", "GM-GAP-16-8 (n=1)"]
    assert any("no runs yet: SR-SOP" in t.get_text() for t in fig.texts)
    _check_saved(fig, tmp_path / "curves")
    with pytest.raises(ValueError, match="no epochs for any of the rows"):
        plot_training_curves(metrics.epochs, [("SR-SOP", "resnet18")])


def test_save_figure_rejects_unknown_format(data, tmp_path):
    metrics, _, _ = data
    fig = plot_alpha_sweep(metrics.runs, "GM-GAP-16-4")
    with pytest.raises(ValueError, match="must end in one of"):
        save_figure(fig, [tmp_path / "x.jpeg"])
