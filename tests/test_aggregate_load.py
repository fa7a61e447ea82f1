"""Reading result files: tidy frames from valid files, a named key and file for broken ones."""

import json

import pytest
from result_files import make_bench, make_metrics, write_json

from gmsop.aggregate.load import RUN_COLUMNS, load_bench, load_metrics, read_metrics, select_epoch
from gmsop.formats import BENCH_DIR, ResultFileError, bench_files


def _write(tmp_path, name, obj):
    return write_json(tmp_path / name / "metrics.json", obj)


class TestRuns:
    def test_one_row_per_run_with_flat_hparams(self, tmp_path):
        _write(tmp_path, "a", make_metrics(seed=0, top1=38.0, hparams={"optim": {"momentum": 0.9}}))
        _write(tmp_path, "b", make_metrics(seed=1, top1=39.0))
        runs = load_metrics(tmp_path).runs
        assert list(runs.columns[: len(RUN_COLUMNS)]) == list(RUN_COLUMNS)
        assert sorted(runs["seed"]) == [0, 1]
        assert sorted(runs["top1_err"]) == [38.0, 39.0]
        assert runs["finished"].all()
        assert runs["hp.schedule"].iloc[0] == "[[0.1, 3]]"  # lists as JSON text
        assert runs.loc[runs["seed"] == 0, "hp.optim.momentum"].item() == 0.9

    def test_explicit_file_list_and_empty(self, tmp_path):
        p = _write(tmp_path, "a", make_metrics())
        assert len(load_metrics([p]).runs) == 1
        empty = load_metrics([]).runs
        assert empty.empty and list(empty.columns) == list(RUN_COLUMNS)

    def test_missing_source(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="nope"):
            load_metrics([tmp_path / "nope"])

    def test_unfinished_runs(self, tmp_path):
        _write(tmp_path, "running", make_metrics(finished=False))
        half = make_metrics(epochs=4)
        half["final"]["epochs"] = 2  # schedule plans 4
        _write(tmp_path, "half", half)
        runs = load_metrics(tmp_path).runs
        assert not runs["finished"].any()
        assert runs.set_index("path")["epochs_planned"].tolist() == [4, 3]

    def test_epochs_frame(self, tmp_path):
        _write(tmp_path, "a", make_metrics(epochs=5, top1=40.0))
        ep = load_metrics(tmp_path).epochs
        assert ep["epoch"].tolist() == [1, 2, 3, 4, 5]
        assert ep["val_top1_err"].iloc[-1] == pytest.approx(40.0)


class TestRouting:
    def test_long_format_last_epoch(self, tmp_path):
        _write(tmp_path, "gm", make_metrics(variant="GM-GAP-16-4", routing=[30, 10, 0, 60], epochs=3))
        _write(tmp_path, "plain", make_metrics(variant="SR-SOP"))
        routing = load_metrics(tmp_path).routing
        r = select_epoch(routing)
        assert len(r) == 4 and set(r["epoch"]) == {3}
        assert r["count"].tolist() == [30, 10, 0, 60]
        assert r["share"].sum() == pytest.approx(1.0)
        assert len(routing) == 12  # every epoch's counts are loaded

    def test_length_mismatch(self, tmp_path):
        m = make_metrics(routing=[1, 2, 3])
        m["epochs"][1]["importance"] = [1.0, 2.0]
        p = _write(tmp_path, "bad", m)
        with pytest.raises(ResultFileError, match=r"epochs\[1\]\.routing_counts has 3 entries"):
            read_metrics(p)


class TestValidation:
    @pytest.mark.parametrize(
        "mutate, message",
        [
            (lambda m: m.pop("seed"), "missing required key 'seed'"),
            (lambda m: m["final"].pop("top1_err"), "missing required key 'final.top1_err'"),
            (
                lambda m: m["epochs"][2].pop("val_top1_err"),
                r"missing required key 'epochs\[2\].val_top1_err'",
            ),
            (lambda m: m.update(seed="zero"), "key 'seed' must be an integer, got 'zero'"),
            (lambda m: m.update(seed=True), "key 'seed' must be an integer"),
            (lambda m: m.update(variant=None), "key 'variant' must be a string, got null"),
            (lambda m: m["final"].update(top5_err="17%"), "key 'final.top5_err' must be a number"),
        ],
    )
    def test_bad_metrics_name_file_and_key(self, tmp_path, mutate, message):
        m = make_metrics()
        mutate(m)
        p = _write(tmp_path, "run", m)
        with pytest.raises(ResultFileError, match=message) as err:
            load_metrics(tmp_path)
        assert str(p) in str(err.value)

    def test_not_json(self, tmp_path):
        p = tmp_path / "metrics.json"
        p.write_text('{"variant": "GM-SOP-16-8",')
        with pytest.raises(ResultFileError, match="not valid JSON") as err:
            read_metrics(p)
        assert str(p) in str(err.value)

    def test_not_an_object(self, tmp_path):
        p = tmp_path / "metrics.json"
        p.write_text(json.dumps([1, 2]))
        with pytest.raises(ResultFileError, match="expected a JSON object"):
            read_metrics(p)

    def test_nan_error_is_kept(self, tmp_path):
        m = make_metrics()
        m["final"]["top1_err"] = float("nan")  # a diverged run; json writes NaN
        _write(tmp_path, "run", m)
        assert load_metrics(tmp_path).runs["top1_err"].isna().all()


class TestBench:
    def test_frame(self, tmp_path):
        write_json(tmp_path / "a" / "bench.json", make_bench(train_img_s=100.0))
        write_json(
            tmp_path / "b" / "bench.json", make_bench("SR-SOP", train_img_s=50.0, input_size=(3, 96, 96))
        )
        b = load_bench(tmp_path)
        assert sorted(b["train_img_s"]) == [50.0, 100.0]
        assert set(b["input_size"]) == {"3x64x64", "3x96x96"}

    def test_missing_key(self, tmp_path):
        bad = make_bench()
        del bad["train_img_s"]
        p = write_json(tmp_path / "x" / "bench.json", bad)
        with pytest.raises(ResultFileError, match="missing required key 'train_img_s'") as err:
            load_bench(tmp_path)
        assert str(p) in str(err.value)

    def test_finds_the_files_bench_files_finds(self, tmp_path):
        folder = tmp_path / BENCH_DIR.format(experiment="table2")
        for name, fps in (("bench-sr-sop", 50.0), ("bench-gap", 100.0)):
            write_json(folder / f"{name}.json", make_bench(train_img_s=fps))
        root = tmp_path / "results" / "bench"
        want = [str(p) for p in bench_files([root])]
        assert len(want) == 2
        assert load_bench(root)["path"].tolist() == want == load_bench([root])["path"].tolist()

    def test_bad_input_size(self, tmp_path):
        p = write_json(tmp_path / "x" / "bench.json", make_bench(input_size=(64, 64)))
        with pytest.raises(ResultFileError, match=r"input_size' must be \[C, H, W\]"):
            load_bench([p])


class TestFormat:
    """gmsop.formats: one declaration, a version, errors naming the file and the key."""

    def test_run_id_is_read_from_the_file(self, tmp_path):
        _write(tmp_path, "somewhere-else", make_metrics(run_id="abc_123"))
        _write(tmp_path, "by-hand", make_metrics(run_id=None))
        assert sorted(load_metrics(tmp_path).runs["run_id"]) == ["", "abc_123"]

    @pytest.mark.parametrize(
        "mutate,message",
        [
            (lambda m: m.pop("format_version"), r"missing required key 'format_version'.*before format 2"),
            (
                lambda m: m.update(format_version=1),
                r"'format_version' is 1; this gmsop reads metrics.json format 2",
            ),
            (lambda m: m.pop("run"), r"missing required key 'run'"),
            (lambda m: m["run"].pop("planned_for"), r"missing required key 'run.planned_for'"),
            (lambda m: m["run"]["planned_for"][0].pop("row"), r"'run.planned_for\[0\].row'"),
            (lambda m: m["hparams"].pop("num_classes"), r"'hparams.num_classes'"),
        ],
    )
    def test_version_and_identity_keys(self, tmp_path, mutate, message):
        m = make_metrics()
        mutate(m)
        path = _write(tmp_path, "a", m)
        with pytest.raises(ResultFileError, match=message) as err:
            load_metrics([path])
        assert str(path) in str(err.value)

    def test_bench_version(self, tmp_path):
        b = make_bench()
        b["format_version"] = 3
        path = write_json(tmp_path / "b.json", b)
        with pytest.raises(ResultFileError, match=r"b.json: key 'format_version' is 3"):
            load_bench([path])


class TestSchemaFiles:
    """The JSON Schemas shipped for producers outside gmsop are generated from gmsop.formats."""

    @pytest.mark.parametrize("kind", ["metrics", "bench"])
    def test_shipped_schema_is_the_generated_one(self, kind):
        from pathlib import Path

        from gmsop.formats import json_schema

        shipped = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / f"{kind}.schema.json"
        assert json.loads(shipped.read_text()) == json_schema(kind), (
            f"regenerate: python -m gmsop.formats {kind}"
        )

    def test_schema_accepts_what_gmsop_accepts_and_rejects_a_broken_file(self, tmp_path):
        import jsonschema

        from gmsop.formats import json_schema, rule_metrics

        for record in (
            make_metrics(),
            make_metrics(run_id=None),
            rule_metrics("my_rule", 0, 12.5, dataset="d", num_classes=10, train_size=100),
        ):
            jsonschema.validate(record, json_schema("metrics"))
        broken = rule_metrics("my_rule", 0, 12.5, dataset="d", num_classes=10, train_size=100)
        del broken["hparams"]["num_classes"]
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, json_schema("metrics"))
        path = write_json(tmp_path / "m.json", broken)
        with pytest.raises(ResultFileError, match=r"m.json: missing required key 'hparams.num_classes'"):
            load_metrics([path])
        jsonschema.validate(make_bench(), json_schema("bench"))

    def test_a_rule_record_needs_no_backbone(self, tmp_path):
        from gmsop.formats import rule_metrics

        rec = rule_metrics("my_rule", 1, 20.0, 5.0, dataset="synthetic", num_classes=16, train_size=1280)
        runs = load_metrics([write_json(tmp_path / "m.json", rec)]).runs
        assert (
            runs.loc[0, "run_id"] == "rule:my_rule"
            and runs.loc[0, "top1_err"] == 20.0
            and runs.loc[0, "finished"]
        )
