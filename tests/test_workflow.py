"""The Snakemake workflow: lint/format, dry-runs of the paper configs, config errors, and one
tiny end-to-end run (every rule, the report, and both ways of adding a variant)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from gmsop.aggregate.claims import TESTED, VERDICTS, verdict_kind

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.yaml"
pytestmark = pytest.mark.slow


def snakemake(workdir, *args, config=None, timeout=600, check=True):
    """Run snakemake on the repository's Snakefile in ``workdir`` (never the default profile)."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--workflow-profile",
        "none",
    ]
    if config is not None:  # one file, or several layered in order
        cmd += [
            "--configfile",
            *map(str, config if isinstance(config, (list, tuple)) else [config]),
            "--replace-workflow-config",
        ]
    proc = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout, cwd=workdir)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def job_counts(dry_run_output: str) -> dict[str, int]:
    lines = dry_run_output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats"))
    counts = {}
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def test_lint_and_format(tmp_path):
    """Lint-clean except the one lint README explains: no conda env/container per rule (the
    rules run in the environment where gmsop is installed)."""
    proc = snakemake(tmp_path, "--lint", "--configfile", str(ROOT / "config.yaml"), check=False)
    out = proc.stdout + proc.stderr
    lints = [line.strip() for line in out.splitlines() if line.strip().startswith("* ")]
    assert "Lints for rule" in out or proc.returncode == 0, out
    assert lints and all(line.startswith("* Specify a conda environment or container") for line in lints), out
    fmt = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


@pytest.mark.parametrize(
    "config,expected",
    [
        # 33 runs x 3 seeds (Figure 2's alpha = 100 and Figure 3's N = 16, K = 4 are one run; the
        # grid is the points the paper's text supports); tables 2-3, figures 2-3, protocols
        # one benchmark job per experiment (26 and 6 networks)
        ("paper-imagenet64.yaml", {"train": 99, "bench": 5, "table": 5, "prepare_data": 1}),
        ("paper-places365.yaml", {"train": 18, "bench": 1, "table": 1, "prepare_data": 1}),
        ("orderings-synthetic.yaml", {"train": 18, "bench": None, "table": 1, "prepare_data": 1}),
        # other budgets, the released recipe, the paper's protocol and more images are layered on
        # orderings-synthetic.yaml
        (
            ("orderings-synthetic.yaml", "overlays/orderings-12ep.yaml"),
            {"train": 18, "bench": None, "table": 1},
        ),
        (
            ("orderings-synthetic.yaml", "overlays/orderings-30ep.yaml"),
            {"train": 15, "bench": None, "table": 1},
        ),
        (
            ("orderings-synthetic.yaml", "overlays/orderings-batch256-12ep.yaml"),
            {"train": 15, "bench": None, "table": 1},
        ),
        (
            ("orderings-synthetic.yaml", "overlays/orderings-paper-protocol.yaml"),
            {"train": 18, "bench": None, "table": 1},
        ),
        (
            ("orderings-synthetic.yaml", "overlays/orderings-40k-images.yaml"),
            {"train": 15, "bench": None, "table": 1},
        ),
        (
            ("orderings-synthetic.yaml", "overlays/orderings-released-schedules.yaml"),
            {"train": 18, "bench": None, "table": 1},
        ),
    ],
)
def test_paper_configs_dry_run_every_job(tmp_path, config, expected):
    files = [ROOT / "workflow" / "configs" / c for c in (config if isinstance(config, tuple) else (config,))]
    out = snakemake(tmp_path, "-n", "--cores", "16", config=files).stdout
    counts = job_counts(out)
    assert {k: counts.get(k) for k in expected} == expected


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda c: c["defaults"].update(batch_szie=8), "batch_szie"),
        (lambda c: c["experiments"]["table2"]["rows"].append({"variant": "GM-GAB-4-2"}), "GM-GAB-4-2"),
        (lambda c: c["experiments"]["table2"]["rows"].append({"variant": "GM-SOP-4-5"}), "K must satisfy"),
        (lambda c: c["experiments"]["table2"].update(orderings=["SR-SOP < ResNet-81"]), "ResNet-81"),
    ],
)
def test_config_errors_fail_before_any_job(tmp_path, mutate, message):
    cfg = yaml.safe_load(TINY.read_text())
    mutate(cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, "--cores", "1", config=path, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


PLUGIN = '''
"""A user's own head, registered from outside the package."""
import torch
from torch import nn

import gmsop


class MaxAvgPool(nn.Module):
    """Concatenated global max and average pooling: 2C-d."""

    def __init__(self, in_channels):
        super().__init__()
        self.out_features = 2 * in_channels

    def forward(self, x):
        return torch.cat([x.amax(dim=(2, 3)), x.mean(dim=(2, 3))], dim=1)


gmsop.register_head("max_avg", MaxAvgPool, overwrite=True)
gmsop.register_variant("MaxAvg", "max_avg", overwrite=True)
'''


#: (c) a method of the user's own, as a Snakemake rule: a logistic regression fitted by SGD on the
#: pixels of the row's dataset, one metrics.json per seed; the seed shuffles the data, so each
#: seed gives its own error (a table that summarised one seed for both would be caught).
RULE = """
rule sklearn_logreg:
    input:
        "results/data/learnable.json",
    output:
        "results/rules/sklearn_logreg/seed{seed}/metrics.json",
    run:
        from sklearn.linear_model import SGDClassifier
        from gmsop.atomic import atomic_write_json
        from gmsop.data import get_dataset
        from gmsop.formats import rule_metrics

        ds = get_dataset("synthetic", **config["datasets"]["learnable"]["options"])
        x, y = ds.train.images.flatten(1).float().numpy() / 255, ds.train.labels.numpy()
        clf = SGDClassifier(loss="log_loss", max_iter=5, tol=None, random_state=int(wildcards.seed)).fit(x, y)
        xv, yv = ds.val.images.flatten(1).float().numpy() / 255, ds.val.labels.numpy()
        err = 100.0 * (1.0 - clf.score(xv, yv))
        atomic_write_json(output[0], rule_metrics("sklearn_logreg", int(wildcards.seed), err,
                                                  dataset="learnable", num_classes=ds.num_classes,
                                                  train_size=len(ds.train)))
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny scenario end to end, plus (a) a config-only variant, (b) a plugin head, (c) a
    method of the user's own as a rule, and SR-SOP with a claim on two learned rows."""
    work = tmp_path_factory.mktemp("tiny")
    (work / "my_heads.py").write_text(PLUGIN)
    (work / "my_method.smk").write_text(RULE)
    cfg = yaml.safe_load(TINY.read_text())
    cfg["plugins"] = ["my_heads.py"]
    cfg["rule_files"] = ["my_method.smk"]
    rows = cfg["experiments"]["table2"]["rows"]
    rows.append(
        {"variant": "GM-GAP-4-1", "label": "GM-GAP-4-1 (alpha 10)", "overrides": {"alpha": 10}, "paper": None}
    )  # (a)
    rows.append({"variant": "MaxAvg", "paper": None})  # (b)
    rows.append({"rule": "sklearn_logreg", "label": "Logistic regression (rule)"})  # (c)
    cfg["experiments"]["table2"]["orderings"].append("Logistic regression (rule) < ResNet-18-512d")
    # a claim on two single-component rows, both learned on table2's data: tested with an interval
    rows.append({"variant": "SR-SOP"})
    cfg["experiments"]["table2"]["orderings"].append("SR-SOP < ResNet-18-512d")
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    t0 = time.time()
    run = snakemake(work, "--cores", "2", config=path)
    (work / "reports").mkdir(exist_ok=True)
    report = snakemake(work, "--report", "reports/report.html", config=path)
    return work, time.time() - t0, run, report


def test_tiny_end_to_end_writes_every_table_and_figure(tiny_run):
    work, seconds, _, _ = tiny_run
    print(f"tiny workflow: {seconds:.0f} s")
    for exp in ("table2", "figure2", "figure3", "protocols"):
        for ext in ("csv", "md", "html", "tex"):
            assert (work / "results" / "tables" / f"{exp}.{ext}").stat().st_size > 0
        assert (work / "results" / "figures" / f"curves_{exp}.svg").stat().st_size > 0
    for fig in ("figure2_counts", "figure2_error", "figure3_grid"):
        for ext in ("svg", "png"):
            assert (work / "results" / "figures" / f"{fig}.{ext}").stat().st_size > 0
    assert (work / "reports" / "report.html").stat().st_size > 0
    for ext in ("csv", "md", "html"):
        assert (work / "results" / f"scorecard.{ext}").stat().st_size > 0
    # no checkpoint is a declared output, and every finished run left its metrics
    metrics = list((work / "results" / "runs").glob("*/seed*/metrics.json"))
    assert len(metrics) == len(list((work / "results" / "checkpoints").glob("*/seed*")))


def test_tables_show_every_row_with_numbers_from_runs(tiny_run):
    work = tiny_run[0]
    table = pd.read_csv(work / "results" / "tables" / "table2.csv")
    assert "ResNet-18-512d" in set(table.iloc[:, 0]) or "ResNet-18-512d" in table.to_string()
    text = table.to_string()
    assert "GM-GAP-4-1 (alpha 10)" in text and "MaxAvg" in text  # both added variants are rows
    rule_row = table.set_index("method").loc["Logistic regression (rule)"]
    files = sorted((work / "results" / "rules" / "sklearn_logreg").glob("seed*/metrics.json"))
    errs = [json.loads(p.read_text())["final"]["top1_err"] for p in files]
    assert len(set(errs)) == 2, errs  # seed-dependent: a summary of one seed would not pass
    assert rule_row["n"] == 2 == len(errs) and rule_row["top1_mean"] == pytest.approx(np.mean(errs))
    assert rule_row["top1_std"] == pytest.approx(np.std(errs, ddof=1))
    card = pd.read_csv(work / "results" / "scorecard.csv")
    assert "Logistic regression (rule) < ResNet-18-512d" in set(card["claim"])
    assert (table["n"] >= 1).all()
    runs = [json.loads(p.read_text()) for p in (work / "results" / "runs").glob("*/seed*/metrics.json")]
    assert {r["variant"] for r in runs} >= {"MaxAvg", "GM-GAP-4-1", "GM-SOP-4-2", "ResNet-18-512d"}
    maxavg = next(r for r in runs if r["variant"] == "MaxAvg")
    assert maxavg["rep_dim"] == 2 * 16  # width_mult 0.125: 128 -> 16 channels, max + avg
    md = (work / "results" / "tables" / "table2.md").read_text()
    claim = next(line for line in md.splitlines() if line.startswith("| GM-SOP-4-2 < ResNet-18-512d |"))
    assert verdict_kind(claim.rstrip(" |").rsplit("| ", 1)[-1]) in VERDICTS, claim


def test_a_claim_on_learned_rows_is_tested_with_an_interval(tiny_run):
    """Table 2's data is one its single-component rows learn: at least one claim rests on two
    learned rows with spread and gets an interval (whatever its verdict), shown in the scorecard's
    cells and in its forest plot."""
    work = tiny_run[0]
    table = pd.read_csv(work / "results" / "tables" / "table2.csv").set_index("method")
    assert table.loc["ResNet-18-512d", "learned"] and table.loc["SR-SOP", "learned"], table["top1_mean"]
    card = pd.read_csv(work / "results" / "scorecard.csv")
    tested = card[card["verdict"].isin(TESTED)]
    assert len(tested) >= 1 and tested["ci_low"].notna().all() and tested["holm_low"].notna().all()
    md = (work / "results" / "scorecard.md").read_text()
    for _, r in tested.iterrows():
        assert f"{r['diff']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]" in md
        assert f"[{r['holm_low']:+.2f}, {r['holm_high']:+.2f}]" in md
    plural = "s" if len(tested) != 1 else ""
    assert f"the {len(tested)} claim{plural} this scorecard tests with an interval" in md
    for ext in ("svg", "png"):
        assert (work / "results" / f"scorecard.{ext}").stat().st_size > 0


def test_every_result_file_carries_the_id_it_was_planned_for(tiny_run):
    """Aggregation selects files by the run id written in them: check it for every planned row."""
    from gmsop.experiments import make_plan
    from gmsop.formats import read_bench, read_metrics
    from gmsop.plugins import load_plugins

    work = tiny_run[0]
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    old = os.getcwd()
    os.chdir(work)  # plugins are named relative to the working directory
    try:
        load_plugins(cfg["plugins"])
    finally:
        os.chdir(old)
    plan = make_plan(cfg)
    checked = 0
    for exp in plan.experiments.values():
        for row in exp.rows:
            if row.rule:  # written by the user's rule: its id names the rule
                assert read_metrics(work / row.result_path(0))["run"]["id"] == f"rule:{row.rule}"
                continue
            for seed in row.seeds:
                m = read_metrics(work / "results" / "runs" / row.run / f"seed{seed}" / "metrics.json")
                assert m["run"]["id"] == row.run and m["seed"] == seed
                assert {"experiment": exp.name, "row": row.label} in m["run"]["planned_for"]
                assert m["run"]["settings"] == json.loads(json.dumps(plan.runs[row.run]))
                checked += 1
            b = read_bench(work / "results" / "bench" / exp.name / f"{row.bench}.json")
            assert (
                b["run"]["id"] == row.bench
                and {"experiment": exp.name, "row": row.label} in b["run"]["planned_for"]
            )
    assert checked >= 15
    card = pd.read_csv(work / "results" / "scorecard.csv")
    assert card["claim"].tolist()[0] == "GM-SOP-4-2 < ResNet-18-512d"
    assert {verdict_kind(v) for v in card["verdict"]} <= set(VERDICTS)


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("CI"):
        pytest.fail("CI must install Debian's chromium (see .ci/run) to check the report")
    pytest.skip("headless Chromium not installed (apt-get install chromium)")


def _dump_dom(page: Path, profile: Path, *options: str) -> str:
    """The DOM of ``page`` after headless Chromium ran its scripts (10 s of virtual time)."""
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *options,
        "--virtual-time-budget=10000",
        "--dump-dom",
        page.as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout


def test_report_renders_tables_and_figures_in_a_browser(tiny_run):
    """The report, opened in headless Chromium, shows the tables and figures (CI installs it)."""
    work = tiny_run[0]
    report = work / "reports" / "report.html"
    dom = _dump_dom(report, work / "chromium-profile")
    raw = report.read_text()
    # rendered by the report's JavaScript: category and item elements that the raw file lacks
    for element in (">Tables<", ">Figures<", ">Training curves<"):
        assert element in dom and element not in raw, element
    assert ">table2<" in dom and ">figure3<" in dom
    assert "figure3_grid.svg" in dom and "figure2_counts.svg" in dom
    # the landing page opens on the scorecard: a real table element (the raw file holds it only
    # as an escaped string inside the report's data), with the tiny config's one claim
    assert '<table id="gmsop-scorecard"' in dom and '<table id="gmsop-scorecard"' not in raw
    landing = dom[dom.index('<table id="gmsop-scorecard"') :]
    assert "GM-SOP-4-2 &lt; ResNet-18-512d" in landing[: landing.index("</table>")]
    assert dom.index('<figure id="gmsop-forest"') < dom.index('<table id="gmsop-scorecard"')  # the plot first


#: Measures, once the report has drawn its landing page, where the scorecard's columns are and
#: which elements scroll sideways; written into an attribute of <body> for --dump-dom.
LAYOUT_PROBE = """<script>
(function () {
  function measure() {
    var table = document.getElementById("gmsop-scorecard");
    if (!table) { setTimeout(measure, 100); return; }
    var out = {width: window.innerWidth, columns: {}, scrolling: []};
    table.querySelectorAll("thead th").forEach(function (th) {
      var r = th.getBoundingClientRect();
      out.columns[th.textContent] = [r.left, r.right];
    });
    var box = table.getBoundingClientRect();
    out.narrower = [];  // ancestors the table sticks out of (it would cover what lies beside them)
    for (var el = table.parentElement; el && el !== document.body; el = el.parentElement) {
      var r = el.getBoundingClientRect();
      if (r.left > box.left + 1 || r.right < box.right - 1)
        out.narrower.push(el.tagName + "." + el.className);
    }
    document.querySelectorAll("*").forEach(function (el) {
      var x = getComputedStyle(el).overflowX;
      var scrolls = el === document.scrollingElement || x === "auto" || x === "scroll";
      if (scrolls && el.scrollWidth > el.clientWidth + 1) out.scrolling.push(el.tagName + "." + el.className);
    });
    document.body.setAttribute("data-gmsop-layout", JSON.stringify(out));
  }
  window.addEventListener("load", function () { setTimeout(measure, 100); });
})();
</script>"""


def test_scorecard_intervals_are_visible_without_scrolling_sideways_at_1400px(tiny_run):
    """The report's landing page at a 1,400-px wide window: the difference and Holm interval
    columns of the scorecard lie inside the window, nothing scrolls sideways, and the table fits
    the column that holds it (sticking out, it would cover the workflow graph beside it)."""
    import html as html_module

    work = tiny_run[0]
    raw = (work / "reports" / "report.html").read_text()
    end = raw.rindex("</body>")
    probe = work / "reports" / "report-layout.html"
    probe.write_text(raw[:end] + LAYOUT_PROBE + raw[end:])
    dom = _dump_dom(probe, work / "chromium-layout", "--window-size=1400,900", "--hide-scrollbars")
    found = re.search(r'data-gmsop-layout="([^"]*)"', dom)
    assert found, "the probe found no scorecard table on the landing page"
    layout = json.loads(html_module.unescape(found[1]))
    assert layout["width"] == 1400 and layout["scrolling"] == [] and layout["narrower"] == [], layout
    for column in ("Difference [95% CI]", "Holm interval"):
        left, right = layout["columns"][column]
        assert 0 <= left < right <= layout["width"], (column, layout)


def test_interrupted_training_resumes_and_finished_runs_survive(tmp_path):
    """SIGINT during a multi-epoch run, then rerun: the finished run is not redone and the
    interrupted one continues from its checkpoint."""
    cfg = yaml.safe_load(TINY.read_text())
    # the long run must still be running when the SIGINT lands, even on an idle machine and
    # when the short run finishes late: 2048 images per epoch (about 2.3 s on 2 cores), 20
    # epochs (a margin of ~40 s)
    cfg["schedules"] = {"short": [[0.05, 1]], "long": [[0.05, 20]]}
    cfg["datasets"]["big"] = {
        "name": "synthetic",
        "options": {**cfg["datasets"]["tiny"]["options"], "n_train": 2048},
    }
    cfg["experiments"] = {
        "table2": {
            "kind": "table",
            "seeds": [0],
            "rows": [
                {"variant": "ResNet-18-512d"},
                {"variant": "SR-SOP", "schedule": "long", "dataset": "big"},
            ],
        }
    }
    cfg["bench"] = {"enabled": False}
    # With retries, the training job killed by the SIGINT can be restarted (and run to the end)
    # before Snakemake handles the interrupt itself: seen twice in CI.
    cfg["train_retries"] = 0
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--workflow-profile",
        "none",
        "--configfile",
        str(path),
        "--replace-workflow-config",
        "--cores",
        "2",
    ]
    # Snakemake's output goes to a file: an unread pipe fills up (each job's "reason" can be
    # kilobytes) and blocks Snakemake, which then cannot start the short job in time.
    out_log = (tmp_path / "snakemake.out").open("w")
    # SIGINT back to its default in the child: a test run started in the background of a
    # non-interactive shell (`bash .ci/run &`) inherits SIGINT ignored, and so would Snakemake.
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        stdout=out_log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 300
    progress = None
    while time.time() < deadline and proc.poll() is None:
        # both jobs run at once (2 cores): wait for the short one to finish and the long one
        # to have finished at least two epochs
        found = list((tmp_path / "results" / "checkpoints").glob("sr-sop*/seed0/progress.jsonl"))
        short_done = list((tmp_path / "results" / "runs").glob("resnet-18-512d*/seed0/metrics.json"))
        if short_done and found and len(found[0].read_text().splitlines()) >= 2:
            progress = found[0]
            break
        time.sleep(0.5)
    assert progress is not None, (
        "the long run never reached epoch 2:\n" + (tmp_path / "snakemake.out").read_text()[-3000:]
    )
    time.sleep(3)  # let Snakemake register the short job as finished
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    out_log.close()
    finished = list((tmp_path / "results" / "runs").glob("resnet-18-512d*/seed0/metrics.json"))
    assert finished, "the short run should have finished before the long one"
    mtime = finished[0].stat().st_mtime
    done_before = len(progress.read_text().splitlines())
    assert not list((tmp_path / "results" / "runs").glob("sr-sop*/seed0/metrics.json")), (
        "the long run finished before the SIGINT:\n" + (tmp_path / "snakemake.out").read_text()[-3000:]
    )

    # --rerun-incomplete is in the default profile: a job killed mid-run is restarted
    rerun = subprocess.run(
        cmd + ["--rerun-incomplete"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert finished[0].stat().st_mtime == mtime  # not retrained
    log = next((tmp_path / "logs" / "train").glob("sr-sop*/seed0.log")).read_text()
    assert "resum" in log.lower()
    metrics = json.loads(next((tmp_path / "results" / "runs").glob("sr-sop*/seed0/metrics.json")).read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == list(range(1, 21))
    assert done_before >= 2


def test_plain_snakemake_finds_the_default_profile(tmp_path):
    """`snakemake` with no option works: Snakemake 9 finds profiles/default beside the Snakefile
    (cores, rerun-incomplete, show-failed-logs) — a dry run without --cores must plan the DAG."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(ROOT / "config.yaml"),
        "-n",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert f"Using workflow specific profile {ROOT / 'profiles' / 'default'}" in out
    profile = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())
    assert profile["cores"] == "all" and profile["rerun-incomplete"] and profile["show-failed-logs"]
    assert job_counts(out)["train"] > 0


def test_the_costliest_training_jobs_are_scheduled_first(tmp_path):
    """Each training job's Snakemake priority is its run's training_cost (longest first, so no
    long run is left alone on one core at the end); a dry run shows the priorities."""
    import re

    from gmsop.experiments import make_plan

    out = snakemake(tmp_path, "-n", "--cores", "2", config=ROOT / "config.yaml").stdout
    plan = make_plan(yaml.safe_load((ROOT / "config.yaml").read_text()))
    shown = {}
    for block in out.split("rule train:")[1:]:
        run = re.search(r"output: results/runs/([^/]+)/seed\d+/metrics.json", block)[1]
        shown[run] = float(re.search(r"priority: ([0-9.]+)", block)[1])
    assert shown and shown == {run: plan.training_cost(run) for run in shown}
    assert len(set(shown.values())) > 3
