"""How ``torch.compile`` splits a model: graph and graph-break counts, with the reasons.

Why: every graph break is a return to Python between compiled regions (and, on a GPU, often a
host sync), so the count is the first thing to check when a compiled model is not faster. The
device checks call ``compile_graph_count(model, x)`` and report its numbers; the tests assert
that the SOP models compile to one graph (``tests/test_compile.py``).

    from gmsop.compile_report import compile_graph_count
    report = compile_graph_count(model, x)   # {"graph_count": 1, "graph_break_count": 0, ...}
"""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["compile_graph_count"]


def compile_graph_count(model: torch.nn.Module, *inputs: Any, max_reasons: int = 20, **kwargs: Any) -> dict[str, Any]:
    """Trace ``model(*inputs, **kwargs)`` with ``torch._dynamo.explain``; return its counts.

    Returns ``{"graph_count": int, "graph_break_count": int, "break_reasons": [str, ...]}``,
    the reasons as "file:line function: first line of the reason" (at most ``max_reasons``).

    Side effects, kept small on purpose: it resets Dynamo's caches (``torch._dynamo.reset()``,
    so that earlier compilations in the process do not hide breaks; models compiled before are
    recompiled on their next call) and runs one forward pass with gradients enabled (so that
    custom autograd Functions have their backward traced too, where breaks can also hide). The
    model's buffers (BatchNorm running statistics) are restored afterwards, and its
    train/eval mode is left as it was.
    """
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"compile_graph_count needs an nn.Module, got {type(model).__name__}")
    if not isinstance(max_reasons, int) or max_reasons < 0:
        raise ValueError(f"compile_graph_count: max_reasons must be an int >= 0, got {max_reasons!r}")
    saved = {name: b.detach().clone() for name, b in model.named_buffers()}
    torch._dynamo.reset()
    try:
        with torch.enable_grad():
            explained = torch._dynamo.explain(model)(*inputs, **kwargs)
    finally:
        torch._dynamo.reset()
        with torch.no_grad():
            for name, b in model.named_buffers():
                if name in saved:
                    b.copy_(saved[name])
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
