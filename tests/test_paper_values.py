"""The published numbers: complete where the paper prints them, absent where it does not."""

import math

import pytest

from gmsop import paper_values as pv


def paper_rows(table):
    return [v for v in pv.PAPER_VALUES if v.table == table]


class TestTables:
    def test_row_counts(self):
        assert len(paper_rows("table2")) == 9
        assert len(paper_rows("table3")) == 15
        assert len(paper_rows("table4")) == 6
        assert paper_rows("fig2_right") == []  # the plot carries no numbers

    def test_table2_top1_in_paper_order(self):
        got = [(v.variant, v.dim, v.top1_err) for v in paper_rows("table2")]
        assert got == [
            ("ResNet-18", 128, 52.00),
            ("ResNet-18-512d", 512, 49.08),
            ("Ave-GAP-16", 512, 47.44),
            ("GM-GAP-16-8", 512, 42.37),
            ("ResNet-18-8256d", 8256, 47.29),
            ("SR-SOP", 8256, 40.32),
            ("Ave-SOP-16", 8256, 40.28),
            ("Parametric SR-SOP", 8256, 40.01),
            ("GM-SOP-16-8", 8256, 38.21),
        ]
        assert all(v.top5_err is None for v in paper_rows("table2"))  # no top-5 column

    def test_table3_cells(self):
        v = pv.paper_value("table3", "GM-SOP-16-8", "wrn36_2")
        assert (v.params_m, v.dim, v.top1_err, v.top5_err) == (15.7, 8256, 32.33, 12.35)
        star = pv.paper_value("table3", "GM-GAP-16-8", "resnet18", pv.STAR)
        plain = pv.paper_value("table3", "GM-GAP-16-8", "resnet18")
        assert (star.top1_err, plain.top1_err) == (40.03, 42.37)
        wrn = pv.paper_value("table3", "WRN-36-5", "wrn36_5", "star")
        assert (wrn.params_m, wrn.dim, wrn.top1_err, wrn.top5_err) == (37.6, 640, 32.34, 12.64)
        assert pv.paper_value("table3", "NetVLAD", "resnet18").dim == 8192

    def test_table3_text_claims_hold(self):
        # "our GM-GAP and GM-SOP improve WRN-36-2 over 3.58% and 7.22% in Top-1 error"
        wrn = pv.paper_value("table3", "WRN-36-2", "wrn36_2", "star").top1_err
        assert math.isclose(wrn - pv.paper_value("table3", "GM-GAP-16-8", "wrn36_2").top1_err, 3.58)
        assert math.isclose(wrn - pv.paper_value("table3", "GM-SOP-16-8", "wrn36_2").top1_err, 7.22)

    def test_table4(self):
        v = pv.paper_value("table4", "GM-SOP-16-8", "resnet18")
        assert (v.dim, v.top1_err, v.top5_err) == (8256, 47.18, 17.02)

    def test_figure3_only_quoted_points(self):
        got = {v.variant: (v.top1_err, v.train_fps) for v in paper_rows("fig3")}
        assert got == {
            "GM-GAP-16-8": (42.37, 800.0),
            "GM-GAP-128-32": (42.52, None),
            "ResNet-18-512d": (49.08, 1470.0),
        }


class TestLookups:
    def test_absent_is_none(self):
        assert pv.paper_value("table2", "NetVLAD", "resnet18") is None
        assert pv.paper_value("table4", "ResNet-18", "resnet18") is None
        assert ("GM-SOP-16-8", "resnet18") not in pv.TRAIN_FPS  # only "about 2 times slower"

    def test_unknown_table_raises(self):
        with pytest.raises(ValueError, match="unknown paper table 'table9'"):
            pv.paper_value("table9", "SR-SOP", "resnet18")

    def test_train_fps(self):
        assert {k[0]: v[0] for k, v in pv.TRAIN_FPS.items()} == {
            "ResNet-18-512d": 1470.0,
            "GM-GAP-16-8": 800.0,
            "SR-SOP": 670.0,
            "Parametric SR-SOP": 680.0,
        }

    def test_params_prefers_table3_then_released_code(self):
        assert pv.paper_params("GM-SOP-16-8", "resnet18") == (10.3, "Table 3")
        assert pv.paper_params("SR-SOP", "resnet18")[0] == 9.0
        assert "method-facts" in pv.paper_params("SR-SOP", "resnet18")[1]
        assert pv.paper_params("Ave-SOP-16", "resnet18") is None

    def test_keys_unique_and_tables_known(self):
        assert len({(v.table, v.variant, v.backbone, v.tag) for v in pv.PAPER_VALUES}) == len(pv.PAPER_VALUES)
        assert {v.table for v in pv.PAPER_VALUES} <= set(pv.TABLES)


class TestBackboneNames:
    def test_every_published_backbone_has_the_papers_spelling(self):
        from gmsop.backbones import paper_name, paper_names

        assert paper_name("wrn36_1") == "WRN-36-1" and paper_name("wrn36_5") == "WRN-36-5"
        assert paper_name("vgg16") == "vgg16"  # unknown ids pass through
        assert {v.backbone for v in pv.PAPER_VALUES} <= set(paper_names())
