"""The workflow on SLURM (workflow/profiles/slurm, snakemake-executor-plugin-slurm).

* The paper configs dry-run under the SLURM profile: job list and each job's resource requests
  (needs only the plugin, no cluster), at the first attempt and at the retry (``--attempt 2``:
  twice the time and memory), with a GPU model set in the profile; the plugin's own sbatch
  command builder then turns a training job's requests into the options sbatch receives
  (``--gpus=<model>:<n>``, ``-t``, ``--mem``, ``--cpus-per-task``).
* The tiny config (by default its figure2 experiment, see SLURM_EXPERIMENTS) runs through
  `--executor slurm` on a real scheduler: a single-node cluster on localhost that
  `.ci/slurm/start_local_slurm.sh` starts (as .ci/run does, which then sets GMSOP_SLURM_TEST=1).
  The test checks that every data/train/bench job went through SLURM
  (plugin job logs, squeue records with the requested time/memory/CPUs, slurmctld's log)
  and that tables and figures ran locally (localrules). Without the cluster it is skipped
  with the reason.

The local cluster has no accounting database, so sacct does not work: the plugin must poll
with `--slurm-status-command squeue` (with sacct it silently loses the jobs and Snakemake
hangs); every run is wrapped in `timeout -k`.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.yaml"
PROFILE = ROOT / "workflow" / "profiles" / "slurm"
PAPER_CONFIGS = ["paper-imagenet64.yaml", "paper-places365.yaml"]
CLUSTER_RULES = {"prepare_data", "train", "bench"}  # everything else runs on the submit host
GPU_RULES = {"train", "bench"}
SLURM_DIR = Path(os.environ.get("GMSOP_SLURM_DIR", "/tmp/gmsop-slurm"))
RUN_LIMIT_S = int(os.environ.get("GMSOP_SLURM_TIMEOUT", "600"))  # timeout -k 10 <this> snakemake ...
# Which of tiny.yaml's experiments go through SLURM. Default figure2: 4 cluster jobs (data, 2
# training runs, 1 benchmark) and 4 local ones (table, curves, both Fig. 2 panels), so every
# rule kind is covered in a couple of minutes on 2 cores (each SLURM job parses the Snakefile
# twice, in its batch step and its srun step: ~2x the local cost per job).
# GMSOP_SLURM_EXPERIMENTS=all runs the whole tiny DAG (21 cluster jobs; ~4x longer).
SLURM_EXPERIMENTS = os.environ.get("GMSOP_SLURM_EXPERIMENTS", "figure2")

pytestmark = pytest.mark.slow

PLUGIN_MISSING = importlib.util.find_spec("snakemake_executor_plugin_slurm") is None
requires_plugin = pytest.mark.skipif(
    PLUGIN_MISSING and os.environ.get("GMSOP_SLURM_TEST") != "1",
    reason="snakemake-executor-plugin-slurm is not installed (pip install -e '.[test]')",
)


def snakemake(workdir, *args, config=TINY, limit=600, profile=PROFILE):
    """snakemake on the repository's Snakefile under the SLURM profile, killed after ``limit`` s."""
    cmd = [
        "timeout",
        "-k",
        "10",
        str(limit),
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--workflow-profile",
        str(profile),
        "--configfile",
        str(config),
        "--replace-workflow-config",
        *args,
    ]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=limit + 60)
    proc.seconds = time.monotonic() - t0
    proc.output = proc.stdout + proc.stderr
    return proc


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table Snakemake prints before running (or dry-running) the DAG."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats"))
    counts = {}
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    counts.pop("total", None)
    return counts


def dry_run_jobs(output: str) -> list[dict]:
    """[{rule, threads, resources{...}}] of every job a dry run prints."""
    jobs = []
    for line in output.splitlines():
        m = re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):$", line)
        if m:
            jobs.append({"rule": m.group(1), "threads": 1, "resources": {}})
            continue
        if not jobs:
            continue
        m = re.match(r"^\s+threads: (\d+)$", line)
        if m:
            jobs[-1]["threads"] = int(m.group(1))
        m = re.match(r"^\s+resources: (.*)$", line)
        if m:
            for item in m.group(1).split(", "):
                key, _, value = item.partition("=")
                jobs[-1]["resources"][key] = int(value) if value.isdigit() else value
    return jobs


def minutes(slurm_time: str) -> int:
    """squeue's %l ([D-]HH:MM:SS, MM:SS) in minutes."""
    days, _, rest = slurm_time.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    h, m, s = parts
    return int(days or 0) * 1440 + h * 60 + m + (1 if s else 0)


def targets_of(cfg: dict, experiments: list[str]) -> list[str]:
    """The tables and figures of some of a config's experiments (what `rule all` asks for them)."""
    out = []
    for name in experiments:
        kind = cfg["experiments"][name]["kind"]
        out += [f"results/tables/{name}.csv", f"results/figures/curves_{name}.svg"]
        out += {
            "alpha": [f"results/figures/{name}_counts.svg", f"results/figures/{name}_error.svg"],
            "grid": [f"results/figures/{name}_grid.svg"],
        }.get(kind, [])
    return out


def profile_value(rule: str, key: str, attempt: int = 1):
    prof = yaml.safe_load((PROFILE / "config.yaml").read_text())
    value = (prof.get("set-resources", {}).get(rule) or {}).get(key, prof["default-resources"].get(key))
    return eval(str(value), {}, {"attempt": attempt}) if isinstance(value, str) else value


# ---- the paper configs under the SLURM profile (no cluster needed) ---------------------------------


def test_profile_is_read_by_this_snakemake():
    """profile.yaml is only read by Snakemake >= 9.19; config.yaml by every 9.x (pyproject: >=9.1)."""
    prof = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert prof["executor"] == "slurm"
    assert not (PROFILE / "profile.yaml").exists(), "two profile files: Snakemake reads only one of them"
    for key in ("runtime", "mem_mb"):
        assert profile_value("prepare_data", key) > 0 and profile_value(
            "prepare_data", key, 2
        ) > profile_value("prepare_data", key)


@requires_plugin
@pytest.mark.parametrize("config_name", PAPER_CONFIGS)
def test_paper_config_dry_run_under_slurm_profile(tmp_path, config_name):
    config_path = ROOT / "workflow" / "configs" / config_name
    cfg = yaml.safe_load(config_path.read_text())
    # --cores: a dry run caps threads at the local cores; on SLURM they are not capped
    proc = snakemake(tmp_path, "--dry-run", "--cores", "1024", config=config_path)
    assert proc.returncode == 0, proc.output[-5000:]
    assert "Using workflow specific profile" in proc.output
    counts = job_counts(proc.output)
    jobs = dry_run_jobs(proc.output)
    assert Counter(j["rule"] for j in jobs) == Counter(counts), "every job of the DAG is listed"
    assert counts.get("prepare_data") == 1 and counts.get("train", 0) > 0 and counts.get("bench", 0) > 0

    gpus = cfg.get("gpus_per_job", 1)
    summary = {}
    for job in jobs:
        rule, res = job["rule"], job["resources"]
        if rule in GPU_RULES:
            assert res.get("gpu") == gpus, (rule, res)
            assert job["threads"] == cfg.get("threads_per_job", 1), (rule, job)
            assert res["mem_mb"] == cfg.get("train_mem_mb", 4000), (rule, res)
            if rule == "train":
                assert res["runtime"] == cfg.get("train_runtime_min", 60), (rule, res)
        elif rule == "prepare_data":
            assert "gpu" not in res or res["gpu"] == 0
            assert res["runtime"] == profile_value("prepare_data", "runtime")
            assert res["mem_mb"] == profile_value("prepare_data", "mem_mb")
        if rule in CLUSTER_RULES:
            assert isinstance(res.get("runtime"), int) and res["runtime"] > 0, (rule, res)
            assert isinstance(res.get("mem_mb"), int) and res["mem_mb"] > 0, (rule, res)
            s = summary.setdefault(
                rule, {"jobs": 0, "gpu": set(), "cpus": set(), "runtime_min": set(), "mem_mb": set()}
            )
            s["jobs"] += 1
            s["gpu"].add(res.get("gpu", 0))
            s["cpus"].add(job["threads"])
            s["runtime_min"].add(res["runtime"])
            s["mem_mb"].add(res["mem_mb"])
    print(f"\n{config_name} under workflow/profiles/slurm (attempt 1):")
    for rule, s in summary.items():
        print(
            f"  {rule:13s} {s['jobs']:4d} jobs  "
            + "  ".join(f"{k}={sorted(v)}" for k, v in s.items() if k != "jobs")
        )


def profile_with(tmp_path, **train_resources) -> Path:
    """A copy of the SLURM profile whose set-resources give the train rule ``train_resources`` (as
    a user does by uncommenting ``gpu_model`` there), everything else as shipped."""
    prof = yaml.safe_load((PROFILE / "config.yaml").read_text())
    prof.setdefault("set-resources", {})["train"] = dict(train_resources)
    out = tmp_path / "profile"
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(prof))
    return out


class _Resources(dict):
    """Job resources as the plugin reads them: ``.get(key)`` and ``.key``."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def sbatch_options(job: dict) -> str:
    """The sbatch command snakemake-executor-plugin-slurm builds for a dry-run job's requests."""
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    fake = SimpleNamespace(resources=_Resources(job["resources"]), threads=job["threads"])
    params = {
        "run_uuid": "uuid",
        "slurm_logfile": "job.log",
        "comment_str": f"rule_{job['rule']}",
        "account": "",
        "partition": "",
        "workdir": "/work",
    }
    return get_submit_command(fake, params) + set_gres_string(fake)


@requires_plugin
@pytest.mark.parametrize("config_name", PAPER_CONFIGS)
def test_paper_config_retry_and_gpu_model_reach_sbatch(tmp_path, config_name):
    """Past the first attempt: the retry asks twice the time and memory (train_runtime_min and
    train_mem_mb x attempt; the profile's prepare_data too), the GPU request keeps its count and
    the profile's GPU model, and the plugin turns that into --gpus=<model>:<n> -t --mem."""
    config_path = ROOT / "workflow" / "configs" / config_name
    cfg = yaml.safe_load(config_path.read_text())
    work = tmp_path / "work"
    work.mkdir()
    proc = snakemake(
        work,
        "--dry-run",
        "--cores",
        "1024",
        "--attempt",
        "2",
        config=config_path,
        profile=profile_with(tmp_path, gpu_model="a100"),
    )
    assert proc.returncode == 0, proc.output[-5000:]
    jobs = dry_run_jobs(proc.output)
    train = [j for j in jobs if j["rule"] == "train"]
    assert len(train) == job_counts(proc.output)["train"] > 0
    runtime, mem, gpus = 2 * cfg["train_runtime_min"], 2 * cfg["train_mem_mb"], cfg["gpus_per_job"]
    for job in train:
        res = job["resources"]
        assert (res["runtime"], res["mem_mb"], res["gpu"], res["gpu_model"]) == (
            runtime,
            mem,
            gpus,
            "a100",
        ), res
        assert job["threads"] == cfg["threads_per_job"]
    (prep,) = [j for j in jobs if j["rule"] == "prepare_data"]
    assert (
        prep["resources"]["runtime"]
        == profile_value("prepare_data", "runtime", 2)
        > profile_value("prepare_data", "runtime")
    )
    assert prep["resources"]["mem_mb"] == profile_value("prepare_data", "mem_mb", 2)
    bench = [j for j in jobs if j["rule"] == "bench"]
    assert bench and all(j["resources"]["gpu"] == gpus and "gpu_model" not in j["resources"] for j in bench)

    call = sbatch_options(train[0]).split()
    assert f"--gpus=a100:{gpus}" in call and f"--cpus-per-task={cfg['threads_per_job']}" in call
    assert call[call.index("-t") + 1] == str(runtime) and call[call.index("--mem") + 1] == str(mem)
    # without a model the request is a plain count; prepare_data asks for no GPU at all
    plain = sbatch_options(
        {**train[0], "resources": {k: v for k, v in train[0]["resources"].items() if k != "gpu_model"}}
    )
    assert f"--gpus={gpus}" in plain.split()
    assert "--gpus" not in sbatch_options(prep) and "--ntasks=1" in sbatch_options(prep).split()


# ---- the tiny config through a real SLURM cluster ---------------------------------------------------


@pytest.fixture(scope="module")
def slurm_cluster():
    if os.environ.get("GMSOP_SLURM_TEST") != "1":
        why = os.environ.get("GMSOP_SLURM_SKIP_REASON") or (
            "run `sudo bash .ci/slurm/start_local_slurm.sh` and set GMSOP_SLURM_TEST=1 (.ci/run does both)"
        )
        pytest.skip(f"no local SLURM cluster: {why}")
    # the cluster is supposed to be up: from here on, anything missing is a failure
    if PLUGIN_MISSING:
        pytest.fail("GMSOP_SLURM_TEST=1 but snakemake-executor-plugin-slurm is not installed")
    for tool in ("sinfo", "squeue", "sbatch", "srun"):
        assert shutil.which(tool), f"GMSOP_SLURM_TEST=1 but `{tool}` is not on PATH"
    info = subprocess.run(["sinfo", "-h", "-o", "%P %T %c %m"], capture_output=True, text=True, timeout=30)
    assert info.returncode == 0 and info.stdout.strip(), f"sinfo failed: {info.stdout}{info.stderr}"
    return info.stdout.split()


def squeue_all() -> dict[str, dict]:
    fmt = "%i|%j|%T|%l|%m|%C|%k"
    out = subprocess.run(["squeue", "-h", "-t", "all", "-o", fmt], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    jobs = {}
    for line in out.stdout.splitlines():
        jid, name, state, limit, mem, cpus, comment = line.strip().split("|", 6)
        jobs[jid] = {
            "name": name,
            "state": state,
            "limit": limit,
            "mem": mem,
            "cpus": int(cpus),
            "comment": comment,
        }
    return jobs


def _diagnostics(work: Path, proc) -> str:
    parts = [proc.output[-6000:]]
    for log in sorted((work / ".snakemake" / "slurm_logs").rglob("*.log"))[:5]:
        parts.append(f"----- {log}\n{log.read_text(errors='replace')[-2000:]}")
    ctld = SLURM_DIR / "log" / "slurmctld.log"
    if ctld.is_file():
        parts.append(f"----- {ctld}\n" + "\n".join(ctld.read_text(errors="replace").splitlines()[-40:]))
    parts.append(subprocess.run(["squeue", "-t", "all"], capture_output=True, text=True).stdout)
    return "\n".join(parts)


@pytest.fixture(scope="module")
def tiny_on_slurm(slurm_cluster, tmp_path_factory):
    work = tmp_path_factory.mktemp("slurm")
    cfg = yaml.safe_load(TINY.read_text())
    assert cfg.get("gpus_per_job", 1) == 0, (
        "the local cluster has no GPUs: tiny.yaml must ask for gpus_per_job: 0"
    )
    experiments = list(cfg["experiments"]) if SLURM_EXPERIMENTS == "all" else SLURM_EXPERIMENTS.split(",")
    proc = snakemake(
        work,
        *targets_of(cfg, experiments),
        "--executor",
        "slurm",
        "--jobs",
        "10",  # keep the node's queue full
        "--slurm-status-command",
        "squeue",  # no slurmdbd here: sacct cannot work
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--slurm-keep-successful-logs",
        "--latency-wait",
        "5",
        "--retries",
        "0",
        # small requests that fit any CI machine (the profile's prepare_data wants 16 GB)
        "--set-resources",
        "prepare_data:runtime=10",
        "prepare_data:mem_mb=1000",
        limit=RUN_LIMIT_S,
    )
    print(
        f"\ntiny workflow ({','.join(experiments)}) through SLURM: {proc.seconds:.0f} s "
        f"(rc={proc.returncode})"
    )
    assert proc.returncode == 0, _diagnostics(work, proc)
    return work, cfg, proc, experiments


def test_tiny_workflow_completes_through_slurm(tiny_on_slurm):
    work, cfg, _, experiments = tiny_on_slurm
    for target in targets_of(cfg, experiments):
        assert (work / target).stat().st_size > 0, target
    for exp in experiments:
        for ext in ("md", "html", "tex"):
            assert (work / "results" / "tables" / f"{exp}.{ext}").stat().st_size > 0


def test_cluster_jobs_went_through_slurm_and_aggregation_ran_locally(tiny_on_slurm):
    work, cfg, proc, _ = tiny_on_slurm
    counts = job_counts(proc.output)
    expected = {rule: n for rule, n in counts.items() if rule in CLUSTER_RULES}
    assert set(expected) == CLUSTER_RULES, counts

    # 1. the plugin's per-job logs: .snakemake/slurm_logs/rule_<rule>/<wildcards>/<SLURM job id>.log
    logs = sorted((work / ".snakemake" / "slurm_logs").rglob("*.log"))
    by_rule = Counter(
        p.relative_to(work / ".snakemake" / "slurm_logs").parts[0].removeprefix("rule_") for p in logs
    )
    assert dict(by_rule) == expected, (
        f"one SLURM job per data/train/bench job, none for local rules: {dict(by_rule)}"
    )
    job_ids = {p.stem for p in logs}
    assert len(job_ids) == len(logs) and all(j.isdigit() for j in job_ids)

    # 2. the scheduler's own records (finished jobs stay visible for MinJobAge=600 s)
    queue = squeue_all()
    ours = {j: queue[j] for j in job_ids if j in queue}
    assert set(ours) == job_ids, f"SLURM has no record of jobs {sorted(job_ids - set(ours))}"
    assert {q["state"] for q in ours.values()} == {"COMPLETED"}
    assert len({q["name"] for q in ours.values()}) == 1  # job name = this Snakemake run's UUID
    for q in ours.values():
        rule = q["comment"].removeprefix("rule_").split("_wildcards")[0]
        assert rule in CLUSTER_RULES, q
        assert q["cpus"] == (cfg.get("threads_per_job", 1) if rule in GPU_RULES else 1), q
        if rule == "train":  # the rule's requests reached sbatch: -t train_runtime_min, --mem train_mem_mb
            assert minutes(q["limit"]) == cfg.get("train_runtime_min", 60), q
            assert q["mem"] == f"{cfg.get('train_mem_mb', 4000)}M", q
        if rule == "prepare_data":
            assert minutes(q["limit"]) == 10 and q["mem"] == "1000M", q

    # 3. slurmctld saw each job complete
    ctld = SLURM_DIR / "log" / "slurmctld.log"
    if ctld.is_file():
        text = ctld.read_text(errors="replace")
        missing = [j for j in job_ids if f"_job_complete: JobId={j} done" not in text]
        assert not missing, f"slurmctld.log has no completion of jobs {missing}"

    # 4. tables and figures ran on the submit host, not as SLURM jobs
    local = {rule for rule in counts if rule not in CLUSTER_RULES and rule != "all"}
    assert local, counts
    for rule in local:
        assert f"localrule {rule}:" in proc.output, f"rule {rule} did not run locally (add it to localrules)"
