"""How ``torch.compile`` splits a model: graph and graph-break counts, with the reasons.

Every graph break is a return to Python between compiled regions (on a GPU often a host sync), so
the count is the first thing to check when a compiled model is not faster. ``torch._dynamo.explain``
and ``reset`` are the tools torch documents for this.
"""

from __future__ import annotations

from typing import Any

import torch


def compile_graph_count(model: torch.nn.Module, x: torch.Tensor, max_reasons: int = 20) -> dict[str, Any]:
    """``{"graph_count", "graph_break_count", "break_reasons"}`` of ``model(x)``, each
    reason as "file:line function: first line of the reason". Dynamo's caches are reset before and
    after (earlier compilations would hide breaks); the forward runs with gradients enabled (so
    custom autograd Functions are traced too) and the model's buffers are restored afterwards."""
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"compile_graph_count needs an nn.Module, got {type(model).__name__}")
    saved = {name: b.detach().clone() for name, b in model.named_buffers()}
    torch._dynamo.reset()
    try:
        with torch.enable_grad():
            explained = torch._dynamo.explain(model)(x)
    finally:
        torch._dynamo.reset()
        with torch.no_grad():
            for name, b in model.named_buffers():  # one made during the forward keeps its value
                b.copy_(saved.get(name, b))
    reasons = []
    for r in explained.break_reasons[:max_reasons]:
        frame = r.user_stack[-1] if r.user_stack else None
        where = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.name}" if frame else "?"
        reasons.append(f"{where}: {str(r.reason).strip().splitlines()[0]}")
    return {
        "graph_count": int(explained.graph_count),
        "graph_break_count": int(explained.graph_break_count),
        "break_reasons": reasons,
    }
