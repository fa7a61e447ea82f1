"""torch.compile: the SOP models trace into one graph and compute what the eager models compute.

A graph break is a return to Python between compiled regions (on a GPU often a host sync). The
second-order layer used to break the graph three ways: ``torch.get_num_threads()`` read inside
the fused Function (the CPU chunk size), and the triangle-index caches written from inside the
Functions' forward and backward (a side effect Dynamo refuses inside a higher-order op).
``backend="eager"`` traces with Dynamo but runs the captured ops as they are, so it checks the
graph structure quickly and its outputs must equal the uncompiled model's exactly.
"""

from __future__ import annotations

import copy

import pytest
import torch

from gmsop import build_model
from gmsop.compile_report import compile_graph_count
from gmsop.functional import isqrt_cov, triu_vector


def _tiny(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, backbone="resnet18", num_classes=5, width_mult=0.125)


def _x(b: int = 4) -> torch.Tensor:
    return torch.randn(b, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_srsop_model_is_one_graph():
    report = compile_graph_count(_tiny("SR-SOP"), _x())
    assert (report["graph_count"], report["graph_break_count"]) == (1, 0), report["break_reasons"]


def test_compiled_srsop_equals_eager_forward_and_backward():
    eager = _tiny("SR-SOP")
    compiled_model = copy.deepcopy(eager)
    torch._dynamo.reset()
    compiled = torch.compile(compiled_model, backend="eager", fullgraph=True)  # fullgraph: a break raises
    x = _x()
    out_e, out_c = eager(x), compiled(x)
    assert torch.equal(out_e.logits, out_c.logits)
    out_e.logits.square().sum().backward()
    out_c.logits.square().sum().backward()
    for (name, p), q in zip(eager.named_parameters(), compiled_model.parameters()):
        assert torch.equal(p.grad, q.grad), name
    torch._dynamo.reset()


def test_gmsop_grouped_path_is_one_graph():
    """A gated mixture on its grouped path (the default off the CPU) is one graph. (N=4, K=2
    for speed; GM-SOP-16-8 gives the same counts.) The generic path, the CPU default, splits the
    routed batch with sizes read on the host (``counts.tolist()`` in ``gmsop.layers.mixture``):
    data-dependent breaks by design (5 for a ResNet-18 trunk), none from the SOP layer."""
    model = _tiny("GM-SOP-4-2")
    model.head.execution = "grouped"
    report = compile_graph_count(model, _x(8))
    assert (report["graph_count"], report["graph_break_count"]) == (1, 0), report["break_reasons"]


@pytest.mark.parametrize("iterations", [1, 3, 5])
def test_compiled_isqrt_cov_is_fullgraph_and_exact(iterations):
    torch._dynamo.reset()
    x = torch.randn(5, 6, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(iterations))
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_c = torch.compile(isqrt_cov, backend="eager", fullgraph=True)(a, iterations)
    out_e = isqrt_cov(b, iterations)
    assert torch.equal(out_c, out_e)
    grad = torch.randn(out_e.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    out_c.backward(grad)
    out_e.backward(grad)
    assert torch.equal(a.grad, b.grad)
    c = torch.randn(2, 4, 4)
    assert torch.equal(torch.compile(triu_vector, backend="eager", fullgraph=True)(c), triu_vector(c))
    torch._dynamo.reset()


def test_compile_graph_count_leaves_the_model_as_it_was():
    model = _tiny("SR-SOP")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compile_graph_count(model, _x())
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="needs an nn.Module, got function"):
        compile_graph_count(isqrt_cov, _x())
