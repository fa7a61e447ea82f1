"""``gmsop models`` prints the variant table and fails clearly on a bad name."""
import json

from gmsop.cli import main as gmsop_main
from gmsop.cli_models import main


def test_json_table_has_params_dims_and_flops(capsys):
    assert main(["--variants", "ResNet-18-512d", "GM-GAP-16-8", "--backbones", "resnet18", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["variant"] for r in rows] == ["ResNet-18-512d", "GM-GAP-16-8"]
    assert rows[0]["rep_dim"] == 512 and rows[0]["paper_params_M"] == 1.3
    assert 0.25 < rows[0]["gflops_per_image"] < rows[1]["gflops_per_image"] < 0.5


def test_markdown_and_dispatcher(capsys):
    assert gmsop_main(["models", "--variants", "SR-SOP", "--backbones", "resnet18", "--no-flops", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| variant") and "8256" in out


def test_bad_variant_exits_2_with_message(capsys):
    assert main(["--variants", "GM-SOP-8-9", "--backbones", "resnet18"]) == 2
    assert "K must satisfy" in capsys.readouterr().err


def test_unknown_command(capsys):
    assert gmsop_main(["modles"]) == 2
    assert "unknown command 'modles'" in capsys.readouterr().err
