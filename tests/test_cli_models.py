"""``gmsop models`` prints the variant table and fails clearly on a bad name."""

import json

from gmsop.cli import main as gmsop_main
from gmsop.cli_models import main


def test_json_table_has_params_dims_and_flops(capsys):
    assert (
        main(["--variants", "ResNet-18-512d", "GM-GAP-16-8", "--backbones", "resnet18", "--format", "json"])
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [r["variant"] for r in rows] == ["ResNet-18-512d", "GM-GAP-16-8"]
    assert rows[0]["rep_dim"] == 512 and rows[0]["paper_params_M"] == 1.3
    assert 0.25 < rows[0]["gflops_per_image"] < rows[1]["gflops_per_image"] < 0.5


def test_rows_come_from_the_registry(capsys):
    from gmsop.paper_values import paper_params
    from gmsop.registry import resolve_variant

    assert (
        main(
            [
                "--variants",
                "ResNet-18",
                "ResNet-18-512d",
                "GM-SOP-16-8",
                "NetVLAD",
                "--backbones",
                "resnet50",
                "--no-flops",
                "--format",
                "json",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [r["variant"] for r in rows] == ["ResNet-50", "ResNet-50-512d", "GM-SOP-16-8", "NetVLAD"]
    assert [r["schedule_family"] for r in rows] == ["gap", "gap", "gm_sop", "srsop"]
    for r in rows:
        resolved = resolve_variant(r["variant"], backbone="resnet50")
        assert r["schedule_family"] == resolved.schedule_family and r["backbone"] == resolved.backbone
        published = paper_params(r["variant"], "resnet50")
        assert r["paper_params_M"] == (published[0] if published else None)
    assert [r["paper_params_M"] for r in rows] == [2.4, 2.8, 11.9, None]


def test_no_published_count_at_another_class_count(capsys):
    assert (
        main(
            [
                "--variants",
                "SR-SOP",
                "--backbones",
                "resnet18",
                "--no-flops",
                "--num-classes",
                "10",
                "--format",
                "json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)[0]["paper_params_M"] is None


def test_markdown_and_dispatcher(capsys):
    assert (
        gmsop_main(
            [
                "models",
                "--variants",
                "SR-SOP",
                "--backbones",
                "resnet18",
                "--no-flops",
                "--format",
                "markdown",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("| variant") and "8256" in out and "schedule_family" in out and "srsop" in out


def test_bad_variant_exits_2_with_message(capsys):
    assert main(["--variants", "GM-SOP-8-9", "--backbones", "resnet18"]) == 2
    assert "K must satisfy" in capsys.readouterr().err


def test_unknown_command(capsys):
    assert gmsop_main(["modles"]) == 2
    assert "unknown command 'modles'" in capsys.readouterr().err


def test_models_show_the_8256d_row_beside_sr_sop_at_a_reduced_width(capsys):
    from gmsop.cli_models import main as models_main

    assert (
        models_main(
            [
                "--variants",
                "ResNet-18-8256d",
                "SR-SOP",
                "--backbones",
                "resnet18",
                "--width-mult",
                "0.25",
                "--no-flops",
                "--format",
                "json",
                "--num-classes",
                "16",
            ]
        )
        == 0
    )
    import json as _json

    rows = _json.loads(capsys.readouterr().out)
    assert [(r["variant"], r["rep_dim"], r["classifier"]) for r in rows] == [
        ("ResNet-18-8256d", 528, "bn_dropout"),
        ("SR-SOP", 528, "linear"),
    ]
