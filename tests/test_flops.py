"""gmsop.flops.count_flops_cached: the same number as count_flops, remembered only where asked, and
counted afresh whenever anything that decides it changes."""
import importlib.util
import json
import sys

import torch

import gmsop
from gmsop.data.cache import CACHE_ENV
from gmsop.flops import _file_digest, count_flops, count_flops_cached, flops_key


def _net(width=0.25):
    return gmsop.build_model("GM-SOP-4-2", num_classes=4, width_mult=width)


def test_without_a_cache_folder_it_counts_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert count_flops_cached(_net(), (3, 16, 16)) == count_flops(_net(), (3, 16, 16))
    assert not any(tmp_path.iterdir())


def test_a_count_is_written_once_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    flops = count_flops_cached(_net(), (3, 16, 16))
    assert flops == count_flops(_net(), (3, 16, 16))
    (entry,) = (tmp_path / "flops").glob("*.json")
    # the stored number is what the next call returns (it is read, not recounted)
    entry.write_text(json.dumps({"flops_per_image": 123.0}))
    assert count_flops_cached(_net(), (3, 16, 16)) == 123.0
    # an unreadable entry is counted anew and rewritten
    entry.write_text("{half a file")
    assert count_flops_cached(_net(), (3, 16, 16)) == flops
    assert json.loads(entry.read_text())["flops_per_image"] == flops


def test_the_key_follows_the_network_the_input_and_the_code(tmp_path, monkeypatch):
    base = flops_key(_net(), (3, 16, 16))
    assert flops_key(_net(), (3, 16, 16)) == base
    assert flops_key(_net(0.5), (3, 16, 16)) != base
    assert flops_key(_net(), (3, 32, 32)) != base
    protocol_changed = gmsop.build_model("GM-SOP-4-2", num_classes=4, width_mult=0.25, ns_iterations=5)  # official: 3
    assert flops_key(protocol_changed, (3, 16, 16)) != base
    # a loss-only switch (the balance weight) shares the count, as it shares the benchmark
    loss_only = gmsop.build_model("GM-SOP-4-2", num_classes=4, width_mult=0.25, alpha=25)
    assert flops_key(loss_only, (3, 16, 16)) == base

    # a module class defined outside the package (a user's head): its source is part of the key
    source = tmp_path / "user_layer.py"
    source.write_text("import torch\nclass Layer(torch.nn.Linear):\n    pass\n")
    spec = importlib.util.spec_from_file_location("user_layer", source)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "user_layer", module)  # imported as a plugin is
    spec.loader.exec_module(module)
    net = torch.nn.Sequential(module.Layer(3, 2))
    before = flops_key(net, (3,))
    source.write_text("import torch\nclass Layer(torch.nn.Linear):\n    pass  # forward changed\n")
    _file_digest.cache_clear()
    assert flops_key(net, (3,)) != before
