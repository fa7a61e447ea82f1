"""TrainConfig validation, schedules and the `gmsop train` option parsing (no training here)."""

import json
from pathlib import Path

import pytest

from gmsop.engine.config import (
    DEFAULT_SCHEDULES,
    TrainConfig,
    default_schedule,
    parse_key_value,
    parse_schedule,
)
from gmsop.engine.train_cli import config_from_args, get_args_parser
from gmsop.engine.train_cli import main as train_main

ROOT = Path(__file__).resolve().parents[1]


class TestSchedule:
    def test_string_and_pairs_agree(self):
        assert parse_schedule("0.1:40,0.01:10") == [(0.1, 40), (0.01, 10)]
        assert parse_schedule([[0.1, 40], [0.01, 10]]) == [(0.1, 40), (0.01, 10)]

    @pytest.mark.parametrize(
        "bad, word",
        [
            ("", "empty"),
            ([], "empty"),
            ("0.1", "LR:EPOCHS"),
            ("0:5", "positive"),
            ("-0.1:5", "positive"),
            ("0.1:0", "epochs must be >= 1"),
            ("0.1:2.5", "LR:EPOCHS"),
            ([[0.1, "x"]], "epochs"),
            ("nan:3", "positive"),
        ],
    )
    def test_bad_schedules_name_the_value(self, bad, word):
        with pytest.raises(ValueError, match=word):
            parse_schedule(bad)

    def test_step_lr(self):
        cfg = TrainConfig(schedule="0.1:2,0.01:1")
        assert [cfg.lr_at(e) for e in (1, 2, 3)] == [0.1, 0.1, 0.01]
        assert cfg.epochs == 3
        with pytest.raises(ValueError, match="past the end"):
            cfg.lr_at(4)

    def test_released_defaults_per_family(self):
        assert default_schedule("GM-SOP-16-8") == [(0.1, 40), (0.01, 10), (0.001, 5), (0.0001, 5)]
        assert sum(e for _, e in default_schedule("GM-GAP-16-8")) == 75
        assert default_schedule("SR-SOP")[0] == (0.15, 40)
        with pytest.raises(ValueError, match="nope"):
            default_schedule("nope")

    def test_families_are_the_registrys(self):
        from gmsop.heads import SCHEDULE_FAMILIES
        from gmsop.registry import list_variants, resolve_variant

        assert tuple(DEFAULT_SCHEDULES) == SCHEDULE_FAMILIES
        for name in list_variants():
            assert default_schedule(name) == DEFAULT_SCHEDULES[resolve_variant(name).schedule_family], name
        assert default_schedule("NetVLAD") == DEFAULT_SCHEDULES["srsop"]  # first-order, SR-SOP's schedule
        assert default_schedule("SG-MoE") == DEFAULT_SCHEDULES["gap"]

    def test_a_plugin_heads_schedule_follows_its_declaration(self):
        import gmsop
        from gmsop import heads, registry

        saved = [(d, dict(d)) for d in (heads.HEADS, heads._TRAITS, registry._CUSTOM)]
        try:
            gmsop.register_head("test_sched", lambda in_channels: None, overwrite=True, second_order=True)
            gmsop.register_variant("Test-Sched", "test_sched", overwrite=True)
            assert default_schedule("Test-Sched") == DEFAULT_SCHEDULES["srsop"]
            gmsop.register_variant("Test-Sched", "test_sched", overwrite=True, schedule_family="gm_sop")
            assert default_schedule("Test-Sched") == DEFAULT_SCHEDULES["gm_sop"]
        finally:
            for d, content in saved:
                d.clear()
                d.update(content)

    @pytest.mark.parametrize(
        "path",
        sorted(
            str(p.relative_to(ROOT))
            for p in [
                ROOT / "config.yaml",
                *ROOT.glob("workflow/configs/**/*.yaml"),
                *ROOT.glob("tests/data/*.yaml"),
            ]
        ),
    )
    def test_shipped_configs_name_schedules_as_the_engine_does(self, path):
        """One naming everywhere: a workflow schedule named after a family uses the family's name."""
        import yaml

        config = yaml.safe_load((ROOT / path).read_text())
        named = set(config.get("schedules") or {})
        for exp in (config.get("experiments") or {}).values():
            named |= {row["schedule"] for row in exp.get("rows", []) if isinstance(row.get("schedule"), str)}
        named |= {s for s in ((config.get("defaults") or {}).get("schedule"),) if isinstance(s, str)}
        assert not named & {"first_order", "second_order"}, path


class TestConfig:
    @pytest.mark.parametrize(
        "kwargs, word",
        [
            ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
            ({"batch_size": -3}, "batch_size"),
            ({"batch_size": True}, "batch_size must be an integer"),
            ({"schedule": []}, "empty"),
            ({"momentum": 1.0}, "momentum"),
            ({"weight_decay": -1e-4}, "weight_decay"),
            ({"seed": -1}, "seed"),
            ({"device": "gpu0"}, "gpu0"),
            ({"max_train_batches": 0}, "max_train_batches"),
            ({"progress": "fancy"}, "fancy"),
            ({"input_norm": "zscore"}, "zscore"),
            ({"variant": ""}, "variant"),
            ({"overrides": [1, 2]}, "overrides"),
            ({"weight_decay": 1e-4, "overrides": {"weight_decay": 5e-4}}, "weight decay given twice"),
        ],
    )
    def test_bad_values_are_named(self, kwargs, word):
        with pytest.raises(ValueError, match=word):
            TrainConfig(**kwargs)

    def test_from_dict_rejects_unknown_keys_and_accepts_dashes(self):
        cfg = TrainConfig.from_dict({"batch-size": 8, "schedule": "0.1:1"})
        assert cfg.batch_size == 8
        with pytest.raises(ValueError, match="batchsize"):
            TrainConfig.from_dict({"batchsize": 8})

    def test_fingerprint_ignores_paths_but_not_numbers(self):
        a = TrainConfig(schedule="0.1:1", out="a/metrics.json")
        b = TrainConfig(schedule="0.1:1", out="b/metrics.json", ckpt_dir="elsewhere")
        assert a.fingerprint("cpu") == b.fingerprint("cpu")
        assert a.fingerprint("cpu") != TrainConfig(schedule="0.1:2").fingerprint("cpu")
        assert a.fingerprint("cpu") != a.fingerprint("cuda")

    def test_ckpt_dir_defaults_next_to_out(self, tmp_path):
        assert TrainConfig(out=str(tmp_path / "m.json")).resolved_ckpt_dir() == tmp_path / "ckpt"
        assert TrainConfig().resolved_ckpt_dir() is None

    def test_key_value_parsing(self):
        assert parse_key_value("ns_iterations=5") == ("ns_iterations", 5)
        assert parse_key_value("dims=[256, 64]") == ("dims", [256, 64])
        assert parse_key_value("augment=flip") == ("augment", "flip")
        with pytest.raises(ValueError, match="KEY=VALUE"):
            parse_key_value("novalue")


class TestCli:
    def test_help_explains_every_option(self, capsys):
        with pytest.raises(SystemExit) as exc:
            train_main(["--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        for opt in (
            "--variant",
            "--backbone",
            "--dataset",
            "--data-root",
            "--dataset-option",
            "--protocol",
            "--override",
            "--batch-size",
            "--schedule",
            "--seed",
            "--deterministic",
            "--out",
            "--ckpt-dir",
            "--device",
            "--compile",
            "--max-train-batches",
            "--config",
            "--weight-decay",
            "--momentum",
            "--progress",
            "--input-norm",
            "--eval-every",
            "--amp",
            "--tag",
            "--dropout",
        ):
            assert opt in text, opt

    def test_config_file_then_flags(self, tmp_path):
        f = tmp_path / "run.yaml"
        f.write_text(
            "variant: SR-SOP\nbatch_size: 16\nschedule: 0.1:3\ndataset_options: {classes: 10, size: 16}\n"
            "overrides: {ns_iterations: 5}\n"
        )
        args = get_args_parser().parse_args(
            [
                "--config",
                str(f),
                "--batch-size",
                "8",
                "--dataset-option",
                "n_train=64",
                "--override",
                "alpha=0",
            ]
        )
        cfg = config_from_args(args)
        assert cfg.variant == "SR-SOP" and cfg.batch_size == 8 and cfg.schedule == [(0.1, 3)]
        assert cfg.dataset_options == {"classes": 10, "size": 16, "n_train": 64}
        assert cfg.overrides == {"ns_iterations": 5, "alpha": 0}

    def test_json_config_file_with_unknown_key(self, tmp_path, capsys):
        f = tmp_path / "run.json"
        f.write_text(json.dumps({"variant": "SR-SOP", "epochz": 3}))
        assert train_main(["--config", str(f)]) == 2
        assert "epochz" in capsys.readouterr().err

    @pytest.mark.parametrize(
        "argv, word",
        [
            (["--schedule", ""], "empty"),
            (["--schedule", "0.1:-1"], "epochs must be >= 1"),
            (["--schedule=-0.1:1"], "positive"),
            (["--batch-size", "0"], "batch_size"),
            (["--variant", "GM-XYZ-1-1", "--schedule", "0.1:1"], "GM-XYZ-1-1"),
            (["--dataset", "mnist9", "--schedule", "0.1:1"], "mnist9"),
            (["--dataset-option", "colourz=3", "--schedule", "0.1:1"], "colourz"),
            (
                [
                    "--override",
                    "bogus=1",
                    "--schedule",
                    "0.1:1",
                    "--dataset-option",
                    "classes=4",
                    "--dataset-option",
                    "n_train=8",
                    "--dataset-option",
                    "n_val=4",
                    "--dataset-option",
                    "size=8",
                    "--batch-size",
                    "4",
                ],
                "bogus",
            ),
            (["--device", "cuda:7"], "cuda:7"),
        ],
    )
    def test_bad_config_exits_2_naming_the_value(self, argv, word, capsys, tmp_path):
        assert train_main(argv + ["--out", str(tmp_path / "m.json")]) == 2
        err = capsys.readouterr().err
        assert "gmsop train: error:" in err and word in err
        assert not (tmp_path / "m.json").exists()
