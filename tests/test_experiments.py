"""The config -> plan expansion: shared runs, resolved settings, clear config errors."""
import copy
import inspect

import pytest
import yaml

from gmsop.experiments import make_plan

CONFIG = yaml.safe_load(open("config.yaml"))
TINY = yaml.safe_load(open("tests/data/tiny.yaml"))


def test_runs_are_shared_between_tables():
    plan = make_plan(CONFIG)
    rows = {(name, r.label): r for name, e in plan.experiments.items() for r in e["rows"]}
    assert rows[("table2", "GM-SOP-16-8")].run == rows[("table3", "GM-SOP-16-8")].run
    assert rows[("table2", "ResNet-18-512d")].run == rows[("figure3", "ResNet-18-512d")].run
    assert rows[("table2", "GM-GAP-16-8")].run == rows[("figure3", "N=16, K=8")].run
    assert rows[("table3", "GM-GAP-16-8")].run != rows[("table3", "GM-GAP-16-8*")].run
    jobs = plan.train_jobs()
    assert len(jobs) == len(set(jobs))
    # every (run, seed) pair is trained once although several tables show it
    shown = sum(len(r.seeds) for e in plan.experiments.values() for r in e["rows"])
    assert len(jobs) < shown


def test_settings_resolve_row_over_experiment_over_defaults():
    plan = make_plan(CONFIG)
    t4 = {r.label: plan.runs[r.run] for r in plan.experiments["table4"]["rows"]}
    assert t4["SR-SOP"]["dataset"] == "synthetic-places"
    assert t4["SR-SOP"]["schedule"] == CONFIG["schedules"]["second_order"]
    assert t4["ResNet-18-512d"]["schedule"] == CONFIG["schedules"]["first_order"]
    alpha = {r.label: plan.runs[r.run] for r in plan.experiments["figure2"]["rows"]}
    assert alpha["alpha=0"]["overrides"] == {"alpha": 0.0}
    # alpha does not change the computation: the sweep shares one throughput benchmark
    assert len({r.bench for r in plan.experiments["figure2"]["rows"]}) == 1


def test_grid_skips_impossible_points_and_adds_the_baseline():
    plan = make_plan(CONFIG)
    labels = [r.label for r in plan.experiments["figure3"]["rows"]]
    assert labels[0] == "ResNet-18-512d" and "N=4, K=8" not in labels and "N=16, K=8" in labels


def test_run_ids_follow_the_data_not_its_spelling(monkeypatch):
    """A default spelt out keeps the run; another option, a changed default in code or a
    version bump makes a new one, so results of other data are never reused."""
    import gmsop.data.synthetic as synthetic_module

    base = {r.run for r in make_plan(TINY).experiments["table2"]["rows"]}
    spelt = copy.deepcopy(TINY)
    spelt["datasets"]["tiny"]["options"]["difficulty"] = 0.5  # the builder's default
    assert {r.run for r in make_plan(spelt).experiments["table2"]["rows"]} == base
    harder = copy.deepcopy(TINY)
    harder["datasets"]["tiny"]["options"]["difficulty"] = 0.7
    assert not {r.run for r in make_plan(harder).experiments["table2"]["rows"]} & base
    monkeypatch.setattr(synthetic_module.synthetic, "data_version", synthetic_module.synthetic.data_version + 1)
    assert not {r.run for r in make_plan(TINY).experiments["table2"]["rows"]} & base
    monkeypatch.undo()
    defaults = list(synthetic_module.synthetic.__defaults__)  # every parameter has one, root too
    defaults[list(inspect.signature(synthetic_module.synthetic).parameters).index("contexts")] = 2  # a default changed in code
    monkeypatch.setattr(synthetic_module.synthetic, "__defaults__", tuple(defaults))
    assert not {r.run for r in make_plan(TINY).experiments["table2"]["rows"]} & base


def _bad(mutate):
    cfg = copy.deepcopy(TINY)
    mutate(cfg)
    return cfg


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda c: c["experiments"]["table2"]["rows"].append({"variant": "GM-SOP-4-8"}), r"table2.rows\[2\].*K must satisfy.*N=4, K=8"),
        (lambda c: c["experiments"]["table2"]["rows"].append({"variant": "GM-SOB-4-2"}), r"table2.rows\[2\].*unknown variant 'GM-SOB-4-2'"),
        (lambda c: c["experiments"]["table2"]["rows"].append({"variant": "SR-SOP", "shedule": "short"}), r"unknown key\(s\) \['shedule'\]"),
        (lambda c: c["experiments"]["table2"]["rows"].append({"variant": "SR-SOP", "dataset": "imagenet"}), r"unknown dataset 'imagenet'"),
        (lambda c: c["experiments"]["table2"]["rows"].append({"variant": "SR-SOP", "schedule": "long"}), r"unknown schedule 'long'"),
        (lambda c: c["experiments"]["table2"]["rows"].append({"variant": "SR-SOP", "overrides": {"iterations": 5}}), r"unknown override\(s\) \['iterations'\]"),
        (lambda c: c["experiments"]["table2"]["rows"].append({"variant": "SR-SOP", "backbone": "resnet34"}), r"unknown backbone 'resnet34'"),
        (lambda c: c["datasets"]["tiny"]["options"].update(clases=4), r"datasets.tiny: dataset 'synthetic' has no option\(s\) 'clases'"),
        (lambda c: c["datasets"]["tiny"].update(name="imagenet"), r"datasets.tiny: unknown dataset 'imagenet'"),
    ],
)
def test_config_errors_name_the_key_and_value(mutate, message):
    with pytest.raises(ValueError, match=message):
        make_plan(_bad(mutate))
