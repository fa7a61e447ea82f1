"""The config -> plan expansion: shared runs, resolved settings, clear config errors."""

import copy
import inspect
from pathlib import Path

import pytest
import yaml

from gmsop import paper_values as pv
from gmsop.aggregate.claims import evaluate_claims
from gmsop.experiments import make_plan

CONFIG = yaml.safe_load(open("config.yaml"))
TINY = yaml.safe_load(open("tests/data/tiny.yaml"))


def _one_recipe(config: dict) -> dict:
    """``config`` with every experiment on the top-level schedules (none of its own)."""
    config = copy.deepcopy(config)
    for exp in config["experiments"].values():
        exp.pop("schedules", None)
    return config


def test_runs_are_shared_between_tables():
    plan = make_plan(_one_recipe(CONFIG))
    rows = {(name, r.label): r for name, e in plan.experiments.items() for r in e.rows}
    assert rows[("table2", "GM-SOP-16-8")].run == rows[("table3", "GM-SOP-16-8")].run
    assert rows[("table2", "ResNet-18-512d")].run == rows[("figure3", "ResNet-18-512d")].run
    assert rows[("table2", "GM-GAP-16-8")].run == rows[("figure3", "N=16, K=8")].run
    assert rows[("table3", "GM-GAP-16-8")].run != rows[("table3", "GM-GAP-16-8*")].run
    jobs = plan.train_jobs()
    assert len(jobs) == len(set(jobs))
    # every (run, seed) pair is trained once although several tables show it
    shown = sum(len(r.seeds) for e in plan.experiments.values() for r in e.rows)
    assert len(jobs) < shown


def test_an_experiments_own_schedules_replace_the_named_ones_for_its_rows_only():
    cfg = _one_recipe(CONFIG)
    short = {"gap": [[0.05, 2]], "srsop": [[0.1, 2]]}
    cfg["experiments"]["table3"]["schedules"] = short
    plan = make_plan(cfg)
    t2 = {r.label: r for r in plan.experiments["table2"].rows}
    t3 = {r.label: r for r in plan.experiments["table3"].rows}
    assert plan.runs[t3["ResNet-18-512d"].run]["schedule"] == short["gap"]  # the variant's family, named here
    assert plan.runs[t3["NetVLAD"].run]["schedule"] == short["srsop"]  # `schedule: srsop` on the row
    assert (
        plan.runs[t3["GM-SOP-16-8"].run]["schedule"] == cfg["schedules"]["gm_sop"]
    )  # not named here: top level
    assert plan.runs[t2["ResNet-18-512d"].run]["schedule"] == cfg["schedules"]["gap"]
    assert (
        t2["ResNet-18-512d"].run != t3["ResNet-18-512d"].run
        and t2["GM-SOP-16-8"].run == t3["GM-SOP-16-8"].run
    )
    cfg["experiments"]["table3"]["schedules"] = {"gap": [[float("nan"), 2]]}
    with pytest.raises(ValueError, match=r"experiments.table3.schedules.gap"):
        make_plan(cfg)


def test_settings_resolve_row_over_experiment_over_defaults():
    plan = make_plan(_one_recipe(CONFIG))
    t4 = {r.label: plan.runs[r.run] for r in plan.experiments["table4"].rows}
    assert t4["SR-SOP"]["dataset"] == "synthetic-places"
    assert t4["SR-SOP"]["schedule"] == CONFIG["schedules"]["srsop"]
    assert t4["ResNet-18-512d"]["schedule"] == CONFIG["schedules"]["gap"]
    alpha = {r.label: plan.runs[r.run] for r in plan.experiments["figure2"].rows}
    assert alpha["alpha=0"]["overrides"] == {"alpha": 0.0}
    # alpha does not change the computation: the sweep shares one throughput benchmark
    assert len({r.bench for r in plan.experiments["figure2"].rows}) == 1


def test_grid_skips_impossible_points_and_adds_the_baseline():
    plan = make_plan(CONFIG)
    labels = [r.label for r in plan.experiments["figure3"].rows]
    assert labels[0] == "ResNet-18-512d" and "N=4, K=8" not in labels and "N=16, K=8" in labels


def test_run_ids_follow_the_data_not_its_spelling(monkeypatch):
    """A default spelt out keeps the run; another option, a changed default in code or a
    version bump makes a new one, so results of other data are never reused."""
    import gmsop.data.synthetic as synthetic_module

    base = {r.run for r in make_plan(TINY).experiments["figure2"].rows}
    spelt = copy.deepcopy(TINY)
    spelt["datasets"]["tiny"]["options"]["difficulty"] = 0.5  # the builder's default
    assert {r.run for r in make_plan(spelt).experiments["figure2"].rows} == base
    harder = copy.deepcopy(TINY)
    harder["datasets"]["tiny"]["options"]["difficulty"] = 0.7
    assert not {r.run for r in make_plan(harder).experiments["figure2"].rows} & base
    monkeypatch.setattr(
        synthetic_module.synthetic, "data_version", synthetic_module.synthetic.data_version + 1
    )
    assert not {r.run for r in make_plan(TINY).experiments["figure2"].rows} & base
    monkeypatch.undo()
    defaults = list(synthetic_module.synthetic.__defaults__)  # every parameter has one, root too
    defaults[list(inspect.signature(synthetic_module.synthetic).parameters).index("contexts")] = (
        2  # a default changed in code
    )
    monkeypatch.setattr(synthetic_module.synthetic, "__defaults__", tuple(defaults))
    assert not {r.run for r in make_plan(TINY).experiments["figure2"].rows} & base


def _bad(mutate):
    cfg = copy.deepcopy(TINY)
    mutate(cfg)
    return cfg


@pytest.mark.parametrize(
    "mutate,message",
    [
        (
            lambda c: c["experiments"]["table2"]["rows"].append({"variant": "GM-SOP-4-8"}),
            r"table2.rows\[2\].*K must satisfy.*N=4, K=8",
        ),
        (
            lambda c: c["experiments"]["table2"]["rows"].append({"variant": "GM-SOB-4-2"}),
            r"table2.rows\[2\].*unknown variant 'GM-SOB-4-2'",
        ),
        (
            lambda c: c["experiments"]["table2"]["rows"].append({"variant": "SR-SOP", "shedule": "short"}),
            r"unknown key\(s\) \['shedule'\]",
        ),
        (
            lambda c: c["experiments"]["table2"]["rows"].append({"variant": "SR-SOP", "dataset": "imagenet"}),
            r"unknown dataset 'imagenet'",
        ),
        (
            lambda c: c["experiments"]["table2"]["rows"].append({"variant": "SR-SOP", "schedule": "long"}),
            r"unknown schedule 'long'",
        ),
        (
            lambda c: c["experiments"]["table2"]["rows"].append(
                {"variant": "SR-SOP", "overrides": {"iterations": 5}}
            ),
            r"unknown option\(s\) \['iterations'\] for variant 'SR-SOP'",
        ),
        (
            lambda c: c["experiments"]["table2"]["rows"].append(
                {"variant": "SR-SOP", "backbone": "resnet34"}
            ),
            r"unknown backbone 'resnet34'",
        ),
        (
            lambda c: c["datasets"]["tiny"]["options"].update(clases=4),
            r"datasets.tiny: dataset 'synthetic' has no option\(s\) 'clases'",
        ),
        (
            lambda c: c["datasets"]["tiny"].update(name="imagenet"),
            r"datasets.tiny: unknown dataset 'imagenet'",
        ),
    ],
)
def test_config_errors_name_the_key_and_value(mutate, message):
    with pytest.raises(ValueError, match=message):
        make_plan(_bad(mutate))


def test_rows_carry_what_readers_need():
    """Tables, claims and figures read these from the row; nobody re-parses names or paths."""
    plan = make_plan(CONFIG)
    gm = plan.experiments["table2"].row("GM-SOP-16-8")
    assert (gm.num_experts, gm.k, gm.alpha, gm.dataset_name, gm.width_mult) == (
        16,
        8,
        25.0,
        "synthetic",
        0.25,
    )
    assert gm.settings == plan.runs[gm.run] and gm.paper_key == ("GM-SOP-16-8", "")
    assert plan.experiments["table3"].row("GM-GAP-16-8*").paper_key == ("GM-GAP-16-8", "star")
    assert [r.alpha for r in plan.experiments["figure2"].rows] == [0.0, 1.0, 10.0, 100.0, 1000.0]
    grid = plan.experiments["figure3"]
    assert grid.baseline == "ResNet-18-512d" and grid.rows[0].num_experts is None
    assert {(r.num_experts, r.k) for r in grid.rows[1:]} == {
        (4, 2),
        (4, 4),
        (8, 2),
        (8, 4),
        (8, 8),
        (16, 2),
        (16, 4),
        (16, 8),
    }
    assert plan.experiments["table2"].claims[0].better == "SR-SOP"
    # a run shared by several rows knows all of them
    gm3 = plan.experiments["table3"].row("GM-SOP-16-8")
    assert {"experiment": "table3", "row": "GM-SOP-16-8"} in plan.planned_for(gm3.run)
    assert {"experiment": "protocols", "row": "GM-SOP-16-8 (official)"} in plan.planned_for(gm3.run)
    assert {"experiment": "table2", "row": "GM-SOP-16-8"} in plan.planned_for(gm.run)


def test_plan_refuses_a_claim_on_an_unknown_row():
    cfg = copy.deepcopy(CONFIG)
    cfg["experiments"]["table2"]["orderings"] = ["GM-SOP-16-8 < ResNet-34"]
    with pytest.raises(ValueError, match=r"experiments\.table2\.orderings\[0\].*'ResNet-34'"):
        make_plan(cfg)


ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [ROOT / "config.yaml", *sorted((ROOT / "workflow/configs").glob("*.yaml"))]
#: Overlays are not configs of their own: each is layered on orderings-synthetic.yaml (as its
#: header's command does), merged as ``snakemake --configfile BASE OVERLAY`` merges them.
OVERLAYS = {
    p: ROOT / "workflow/configs/orderings-synthetic.yaml"
    for p in sorted((ROOT / "workflow/configs/overlays").glob("*.yaml"))
}


def _load_config(path: Path) -> dict:
    """A shipped config, or an overlay merged onto its base with Snakemake's own merge."""
    from snakemake.utils import update_config

    if path not in OVERLAYS:
        return yaml.safe_load(path.read_text())
    cfg = yaml.safe_load(OVERLAYS[path].read_text())
    update_config(cfg, yaml.safe_load(path.read_text()))
    return cfg


@pytest.mark.parametrize("path", CONFIGS + list(OVERLAYS), ids=lambda p: p.name)
def test_shipped_claims_are_what_the_paper_reports(path):
    """Every claim in a shipped config holds in the paper's own numbers (no invented claims)."""
    plan = make_plan(_load_config(path))
    checked = 0
    for name, exp in plan.experiments.items():
        table = exp.paper if exp.paper in ("table2", "table3", "table4") else None
        paper_err = {}
        for r in exp.rows:
            v = (
                pv.paper_value(table, r.paper_key[0], r.backbone, r.paper_key[1])
                if table and r.paper_key
                else None
            )
            paper_err[r.label] = [v.top1_err] if v and v.top1_err is not None else []
        for c in evaluate_claims(exp.claims, paper_err, {}).itertuples():
            assert c.diff < 0, f"{path.name} {name}: the paper does not report {c.claim}"
            checked += 1
    assert checked >= 4


def test_a_row_without_a_schedule_takes_its_variants_family():
    """The registry names each variant's schedule family once; planning asks it."""
    cfg = copy.deepcopy(TINY)
    del cfg["defaults"]["schedule"]
    cfg["schedules"] = {"gap": [[0.1, 1]], "srsop": [[0.2, 1]], "gm_sop": [[0.3, 1]]}
    plan = make_plan(cfg)
    got = {r.variant: plan.runs[r.run]["schedule"] for r in plan.experiments["table2"].rows}
    assert got == {"ResNet-18-512d": [[0.1, 1]], "GM-SOP-4-2": [[0.3, 1]]}
    assert plan.runs[plan.experiments["protocols"].rows[0].run]["schedule"] == [[0.2, 1]]  # SR-SOP
    del cfg["schedules"]["gm_sop"]  # a family the config does not define: the released schedule
    from gmsop.engine.config import DEFAULT_SCHEDULES

    plan = make_plan(cfg)
    gm = plan.experiments["table2"].rows[1]
    assert plan.runs[gm.run]["schedule"] == [list(p) for p in DEFAULT_SCHEDULES["gm_sop"]]
    cfg["experiments"]["table2"]["rows"][1]["schedule"] = "gm_sop_typo"
    with pytest.raises(ValueError, match=r"table2.rows\[1\]: unknown schedule 'gm_sop_typo'"):
        make_plan(cfg)


def test_equal_resolved_settings_give_one_run_id():
    """A run's id depends only on its resolved settings: an override equal to what the variant
    resolves to without it (the protocol's value, the name's N or K, the registry's gate on
    WRN-36-2) changes nothing, and numbers count by value. Figure 2's alpha = 100 point and
    Figure 3's N = 16, K = 4 point are one run."""
    from gmsop.experiments import run_id

    cfg = copy.deepcopy(TINY)
    cfg["defaults"].pop("overrides", None)
    plan = make_plan(cfg)
    spec = dict(next(iter(plan.runs.values())))

    def rid(variant, backbone="resnet18", protocol="official", **overrides):
        return run_id(
            {**spec, "variant": variant, "backbone": backbone, "protocol": protocol, "overrides": overrides}
        )

    base = rid("GM-GAP-16-4")
    same = [
        rid("GM-GAP-16-4", alpha=100),
        rid("GM-GAP-16-4", alpha=100.0),
        rid("GM-GAP-16-4", num_experts=16, k=4),
        rid("GM-GAP-16-4", alpha_per_batch=True, gate_noise="per_image", ns_iterations=3, width=None),
        rid("GM-GAP-16-4", width=512),
    ]  # the head's default
    assert set(same) == {base}
    assert rid("GM-GAP-16-4", protocol="paper", alpha=100, alpha_per_batch=False) == rid(
        "GM-GAP-16-4", protocol="paper"
    )
    assert rid("GM-GAP-16-8", "wrn36_2", gate_dims=[512]) == rid("GM-GAP-16-8", "wrn36_2")
    assert rid("GM-GAP-16-4", alpha=10) == rid("GM-GAP-16-4", alpha=10.0)
    # a different setting is a different run
    different = {
        base,
        rid("GM-GAP-16-4", alpha=10),
        rid("GM-GAP-16-4", alpha_per_batch=False),
        rid("GM-GAP-16-4", width=256),
        rid("GM-GAP-16-8", "wrn36_2", gate_dims=[512, 128]),
        rid("GM-GAP-16-4", protocol="paper"),
    }
    assert len(different) == 6
    # a spec with no redundant override keeps the id it always had (the digest of the spec itself)
    from gmsop.experiments import _digest, slug

    plain = {**spec, "variant": "GM-GAP-16-4", "overrides": {"alpha": 10}}
    assert run_id(plain).endswith(_digest(plain)) and run_id(plain).startswith(slug("GM-GAP-16-4"))

    # in a plan: Figure 2's alpha = 100 point is Figure 3's N = 16, K = 4 point (one training)
    cfg["experiments"] = {
        "figure2": {"kind": "alpha", "variant": "GM-GAP-4-2", "alphas": [0, 100], "counts_alphas": [0, 100]},
        "figure3": {"kind": "grid", "family": "GM-GAP", "n": [4], "k": [2]},
    }
    plan = make_plan(cfg)
    assert plan.experiments["figure2"].row("alpha=100").run == plan.experiments["figure3"].row("N=4, K=2").run
    assert len(plan.train_jobs()) == 2 * len(plan.experiments["figure2"].rows[0].seeds)


def test_training_cost_orders_runs_by_epochs_images_backbone_and_head():
    """The scheduler's rough cost (gmsop.experiments.training_cost): only its order matters."""
    from gmsop.experiments import training_cost

    base = {
        "variant": "ResNet-18",
        "backbone": "resnet18",
        "protocol": "official",
        "overrides": {},
        "width_mult": 0.25,
        "schedule": [[0.1, 4], [0.01, 2]],
        "data": {"name": "synthetic", "options": {"n_train": 1000}},
    }
    r18 = training_cost(base)
    assert r18 == 6 * 1000
    assert training_cost({**base, "schedule": [[0.1, 12]]}) == 2 * r18
    assert training_cost({**base, "data": {"name": "synthetic", "options": {"n_train": 3000}}}) == 3 * r18
    assert training_cost({**base, "augment": {"flip_double": True, "pad": 4}}) == 2 * r18
    sr_sop, gm_gap = (
        training_cost({**base, "variant": "SR-SOP"}),
        training_cost({**base, "variant": "GM-GAP-16-8"}),
    )
    gm_sop = training_cost({**base, "variant": "GM-SOP-16-8"})
    assert r18 < sr_sop < gm_sop and r18 < gm_gap < gm_sop
    assert training_cost({**base, "variant": "GM-SOP-16-8", "backbone": "resnet50"}) > gm_sop
    # a dataset that does not say how many images it has counts epochs only
    assert training_cost({**base, "data": {"name": "synthetic", "options": {}}}) == 6


def test_a_job_reads_its_identity_from_the_file_the_plan_wrote(tmp_path, monkeypatch):
    """The workflow writes every job's identity block when it plans; a job reads its own there
    (planning only without that file), and the file is left alone while the plan is unchanged."""
    import json

    from gmsop.formats import run_block
    from gmsop.pipeline import identity, write_identities

    cfg = copy.deepcopy(TINY)
    monkeypatch.chdir(tmp_path)
    plan = make_plan(cfg)
    run, bench = next(iter(plan.runs)), next(iter(plan.benches))
    expected = json.loads(json.dumps(run_block(run, plan.planned_for(run), plan.runs[run]), default=str))
    assert identity(cfg, run) == expected  # no file yet: planned in the job
    path = write_identities(plan, cfg)
    written = path.stat().st_mtime_ns
    assert write_identities(make_plan(cfg), cfg).stat().st_mtime_ns == written
    assert identity(cfg, run) == expected and identity(cfg, bench, "bench")["id"] == bench
    blocks = json.loads(path.read_text())
    blocks["train"][run]["planned_for"] = [{"experiment": "x", "row": "y"}]
    path.write_text(json.dumps(blocks))
    assert identity(cfg, run)["planned_for"] == [{"experiment": "x", "row": "y"}]  # read, not replanned
