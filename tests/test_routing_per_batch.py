"""Per-batch routing statistics (distinct Top-K sets, idle components) and the class x component
routing of the last evaluation, against hand-computed cases and a real run."""

import torch

from gmsop.engine.config import TrainConfig
from gmsop.engine.trainer import train
from gmsop.layers.gating import distinct_selections, selection_mask


def test_selection_mask_and_distinct_sets_by_hand():
    # 5 images, N = 4, K = 2: sets {0,1}, {1,0} (the same set), {2,3}, {0,2}, {3,2} (= {2,3})
    selected = torch.tensor([[0, 1], [1, 0], [2, 3], [0, 2], [3, 2]])
    mask = selection_mask(selected, 4)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0], [0, 0, 1, 1]]
    assert int(distinct_selections(selected, 4)) == 3
    assert int(distinct_selections(torch.tensor([[2, 0]] * 6), 4)) == 1
    assert int(distinct_selections(torch.tensor([[0], [1], [2], [3]]), 4)) == 4


DS = {"classes": 4, "n_train": 96, "n_val": 40, "size": 16}


def test_a_mixture_run_records_per_batch_routing_and_class_routing():
    m = train(
        TrainConfig(
            variant="GM-GAP-4-2",
            dataset_options=DS,
            batch_size=32,
            schedule="0.05:2",
            progress="none",
            overrides={"width_mult": 0.125},
            seed=3,
        )
    )
    for e in m["epochs"]:
        assert 1 <= e["distinct_topk_min"] <= e["distinct_topk_mean"] <= 6  # C(4, 2) sets exist
        assert 0 <= e["idle_components_mean"] <= e["idle_components_max"] <= 2  # K = 2 of 4 always busy
    final = m["final"]
    routing, per_class = final["val_routing"], final["val_class_counts"]
    assert len(routing) == 4 and all(len(row) == 4 for row in routing)
    assert sum(per_class) == 40
    for row, n in zip(routing, per_class):
        assert sum(row) == 2 * n  # every image selects exactly K = 2 components
        assert all(0 <= v <= n for v in row)


def test_a_single_head_run_has_no_routing():
    m = train(
        TrainConfig(
            variant="ResNet-18",
            dataset_options=DS,
            batch_size=32,
            schedule="0.05:1",
            progress="none",
            overrides={"width_mult": 0.125},
        )
    )
    e = m["epochs"][0]
    assert e["distinct_topk_mean"] is None and e["idle_components_max"] is None
    assert m["final"]["val_routing"] is None and sum(m["final"]["val_class_counts"]) == 40
