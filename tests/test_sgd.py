"""gmsop.engine.sgd.SGD against torch.optim.SGD: the same update bit for bit, interchangeable state dicts."""
import copy

import pytest
import torch

from gmsop.engine.sgd import SGD


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5), torch.nn.Linear(5, 3))


def _steps(model, opt, n, seed=1, skip_last_layer_at=()):
    """n steps on fixed batches; at the steps in skip_last_layer_at the last layer gets no gradient."""
    gen = torch.Generator().manual_seed(seed)
    for i in range(n):
        x, y = torch.randn(6, 3, 8, 8, generator=gen), torch.randint(0, 3, (6,), generator=gen)
        opt.zero_grad(set_to_none=True)
        if i in skip_last_layer_at:
            model[:-1](x).sum().backward()
        else:
            torch.nn.functional.cross_entropy(model(x), y).backward()
        if i == 2:
            for group in opt.param_groups:
                group["lr"] *= 0.1
        opt.step()


def _assert_same(a, b, opt_a, opt_b):
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for k in sa["state"]:
        assert torch.equal(sa["state"][k]["momentum_buffer"], sb["state"][k]["momentum_buffer"])


@pytest.mark.parametrize("options", [
    dict(lr=0.1, momentum=0.9, weight_decay=1e-4),
    dict(lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=False),
    dict(lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=True),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4),
    dict(lr=0.05, momentum=0.5, dampening=0.1, maximize=True),
    dict(lr=0.2),
])
def test_the_update_is_torch_optim_sgds_bit_for_bit(options):
    ours, theirs = _model(), _model()
    opt_ours, opt_theirs = SGD(ours.parameters(), **options), torch.optim.SGD(theirs.parameters(), **options)
    # a parameter without a gradient is skipped by both (no decay, no momentum step)
    _steps(ours, opt_ours, 6, skip_last_layer_at=(1,))
    _steps(theirs, opt_theirs, 6, skip_last_layer_at=(1,))
    _assert_same(ours, theirs, opt_ours, opt_theirs)


@pytest.mark.parametrize("first, second", [(SGD, torch.optim.SGD), (torch.optim.SGD, SGD)])
def test_a_state_dict_moves_between_the_two_and_training_continues_identically(first, second):
    """A checkpoint written by either class resumes in the other (old checkpoints keep resuming)."""
    options = dict(lr=0.1, momentum=0.9, weight_decay=1e-4)
    reference, resumed = _model(), _model()
    opt_ref = first(reference.parameters(), **options)
    _steps(reference, opt_ref, 3)
    resumed.load_state_dict(reference.state_dict())
    opt_resumed = second(resumed.parameters(), **options)
    opt_resumed.load_state_dict(copy.deepcopy(opt_ref.state_dict()))  # as through a checkpoint file
    _steps(reference, opt_ref, 3, seed=7)
    _steps(resumed, opt_resumed, 3, seed=7)
    for pa, pb in zip(reference.parameters(), resumed.parameters()):
        assert torch.equal(pa, pb)


def test_parameter_groups_and_zero_grad_behave_as_torchs():
    model = _model()
    groups = [{"params": list(model[0].parameters()), "lr": 0.01}, {"params": list(model[4:].parameters())}]
    ours = SGD(groups, lr=0.1, momentum=0.9)
    assert [g["lr"] for g in ours.param_groups] == [0.01, 0.1]
    assert [g["momentum"] for g in ours.param_groups] == [0.9, 0.9]
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    ours.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for g in ours.param_groups for p in g["params"])
    ours.zero_grad()
    assert all(p.grad is None for g in ours.param_groups for p in g["params"])


@pytest.mark.parametrize("call, message", [
    (lambda p: SGD(p, lr=-0.1), "lr must be a number >= 0, got -0.1"),
    (lambda p: SGD(p, lr=0.1, momentum=0.0, nesterov=True), "Nesterov momentum requires"),
    (lambda p: SGD([{"params": p, "betas": (0.9, 0.99)}], lr=0.1), r"unknown parameter-group option\(s\) \['betas'\]"),
    (lambda p: SGD([{"params": p, "fused": True}], lr=0.1), "fused modes are not supported"),
    (lambda p: SGD([], lr=0.1), "empty parameter list"),
])
def test_bad_settings_are_refused_naming_them(call, message):
    with pytest.raises(ValueError, match=message):
        call(list(_model().parameters()))


def test_a_state_dict_of_another_shape_is_refused():
    a, b = _model(), torch.nn.Linear(3, 2)
    opt = SGD(a.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="differ in size"):
        SGD(b.parameters(), lr=0.1).load_state_dict(opt.state_dict())


def test_loading_a_state_dict_copies_its_buffers():
    model = _model()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    _steps(model, opt, 2)
    saved = opt.state_dict()
    other = SGD(model.parameters(), lr=0.1, momentum=0.9)
    other.load_state_dict(saved)
    _steps(model, other, 1)
    assert not any(torch.equal(saved["state"][k]["momentum_buffer"], other.state_dict()["state"][k]["momentum_buffer"])
                   for k in saved["state"])
