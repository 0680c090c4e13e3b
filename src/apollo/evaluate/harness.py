"""`apollo eval`: every task of a suite, N runs each, concurrently; scores and costs.

Evaluation runs take no human guidance: their agent config has `guidance: false` (recorded
in `run_created`; `apollo guide` refuses them) and `results.json` says so. They are kept in
the evaluation's own event store (`OUT/apollo.db`, unless `--db` names another), so
`apollo export` of the collection store never picks them up as training data.

A run's scores: `final` is the last scored submission (the final evaluation the agent loop
makes when a graded run ends), `best` the highest. A run that ended without a score (a model
error, a stop) counts 0 and is flagged `scored: false`. Cost per run: working time (what the
agent's clock shows: model latency plus tool time), wall time (from the runner attaching to
the end) and tokens (as the model reported them).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from apollo import __version__
from apollo import events as ev
from apollo.agent.config import AgentConfig
from apollo.agent.state import RunState
from apollo.config import Home
from apollo.errors import ApolloError, ConfigError
from apollo.evaluate.stats import Estimate, mean_ci, stratified_ci
from apollo.evaluate.suite import Suite, load_suite
from apollo.executors import check_executor
from apollo.models import ModelConfig, parse_model_spec
from apollo.protocols import Store

RESULTS = "results.json"
RUNS_CSV = "runs.csv"
SUMMARY = "summary.md"
EVAL_LABEL = "eval"


@dataclass
class EvalConfig:
    """How a model is evaluated on a suite (recorded in results.json)."""

    suite: str = field(default="builtin", metadata={"help": (
        "builtin (every built-in task with a grader), or a PATH: a task, a directory of "
        "tasks, or a suite file listing tasks.")})
    model: str = field(default="", metadata={"help": (
        "The model: hf:PATH (e.g. an apollo train output), hf:smollm2, openai:MODEL or "
        "scripted:NAME_OR_PATH.")})
    seeds: int = field(default=3, metadata={"help": "Runs of every task."})
    out: str | None = field(default=None, metadata={"help": (
        "Directory for results.json, runs.csv, summary.md and the runs' event store "
        "(default: $APOLLO_HOME/evals/NAME).")})
    name: str | None = field(default=None, metadata={"help": (
        "The model's name in apollo compare (default: from the model spec).")})
    concurrency: int = field(default=4, metadata={"help": "Runs executed at once."})
    executor: str = field(default="local", metadata={"help": (
        "Where the runs execute: local (this process) or ray (each run a Ray actor).")})
    ray_address: str | None = field(default=None, metadata={"help": (
        "With --executor ray: the cluster to join (auto: the one running on this machine); "
        "default: start a local one.")})
    max_steps: int | None = field(default=None, metadata={"help": (
        "Override every task's max steps.")})
    max_time: float | None = field(default=None, metadata={"help": (
        "Override every task's working-time limit (seconds).")})
    base_url: str | None = field(default=None, metadata={"help": (
        "Endpoint of an openai: model (default: $OPENAI_BASE_URL).")})
    temperature: float | None = field(default=None, metadata={"help": "Sampling temperature."})
    max_tokens: int | None = field(default=None, metadata={"help": "Max tokens per reply."})
    tool_mode: Literal["native", "text"] | None = field(default=None, metadata={"help": (
        "native or text (default: the model's; hf: models choose from their chat template).")})
    unsafe_local: bool = field(default=False, metadata={"help": (
        "Run commands without isolation where bubblewrap cannot run (recorded in each run).")})
    overwrite: bool = field(default=False, metadata={"help": (
        "Replace an earlier evaluation in --out.")})

    def check(self) -> EvalConfig:
        if not self.model:
            raise ConfigError("apollo eval: --model is required")
        for name in ("seeds", "concurrency", "max_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_time is not None and self.max_time <= 0:
            raise ConfigError("--max-time must be positive")
        check_executor(self.executor, self.ray_address)
        return self


def default_name(spec: str) -> str:
    """A short name for a model spec: the last part of its path or model name."""
    rest = spec.partition(":")[2].rstrip("/")
    last = rest.rsplit("/", 1)[-1] or rest
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", last).strip("-") or "model"


@dataclass
class Evaluation:
    """A planned evaluation: its runs are created, not yet executed."""

    cfg: EvalConfig
    name: str
    suite: Suite
    model: ModelConfig
    out: Path
    runs: list[tuple[str, str, int]] = field(default_factory=list)
    """(run id, task id, seed)."""

    @property
    def run_ids(self) -> list[str]:
        return [r for r, _, _ in self.runs]


def prepare(cfg: EvalConfig, home: Home) -> Evaluation:
    """Check everything before any run is made: the suite, the model spec (an hf: model's
    directory; hf:smollm2 is converted here once), the output directory."""
    cfg.check()
    suite = load_suite(cfg.suite)
    opts = {"base_url": cfg.base_url if cfg.model.startswith("openai:") else None,
            "temperature": cfg.temperature, "max_tokens": cfg.max_tokens,
            "tool_mode": cfg.tool_mode}
    model = parse_model_spec(cfg.model, **opts)
    name = cfg.name or (Path(cfg.out).name if cfg.out else default_name(cfg.model))
    out = Path(cfg.out) if cfg.out else home.root / "evals" / name
    if out.exists() and not out.is_dir():
        raise ApolloError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not cfg.overwrite:
            raise ApolloError(f"--out {out}: the directory is not empty (pass --overwrite to "
                              "replace an earlier evaluation there)")
        if not (out / RESULTS).is_file() and not (out / "apollo.db").is_file():
            raise ApolloError(f"--out {out}: not empty and not an apollo eval output; "
                              "refusing to overwrite it")
    return Evaluation(cfg, name, suite, model, out)


def clear_output(out: Path) -> None:
    """Remove an earlier evaluation's files from `out` (its store too) and make sure it is
    there."""
    for item in ("apollo.db", "apollo.db-wal", "apollo.db-shm", RESULTS, RUNS_CSV, SUMMARY):
        (out / item).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def create_runs(store: Store, home: Home, evaluation: Evaluation) -> list[str]:
    """Create the runs: every task × every seed, guidance off (the runner fits the context
    settings to the model's window)."""
    from apollo.runner import Runner

    cfg, model = evaluation.cfg, evaluation.model
    runner = Runner(store, home, max_concurrent=cfg.concurrency)
    for task in evaluation.suite.tasks:
        agent = AgentConfig(
            max_steps=cfg.max_steps or task.limits.max_steps,
            max_time_s=cfg.max_time or task.limits.max_time_s,
            command_timeout_s=task.limits.command_timeout_s,
            tool_mode=model.options.get("tool_mode", "native"), guidance=False)
        for seed in range(cfg.seeds):
            seeded = model
            if model.spec.startswith("hf:"):  # a sampling model gets a seed per run
                seeded = model.model_copy(update={"options": {**model.options, "seed": seed}})
            rid = runner.create(task, seeded, agent, {EVAL_LABEL: evaluation.name,
                                                      "seed": str(seed)},
                                unsafe_local=cfg.unsafe_local)
            evaluation.runs.append((rid, task.id, seed))
    return evaluation.run_ids


def run_record(events: Sequence[ev.Event], task_id: str, domain: str,
               seed: int) -> dict[str, Any]:
    """One run's outcome and cost, folded from its log."""
    state = RunState()
    curve: list[list[float]] = []
    tokens = {"prompt": 0, "completion": 0}
    started = None
    for e in events:
        state.apply(e)
        if isinstance(e, ev.RunnerAttached) and started is None:
            started = e.time
        elif isinstance(e, ev.ModelCalled):
            tokens["prompt"] += e.usage.prompt_tokens
            tokens["completion"] += e.usage.completion_tokens
        elif isinstance(e, ev.SubmissionScored):
            curve.append([round(state.elapsed_s, 3), e.score])
    done = state.finished
    scored = bool(state.scores)
    return {
        "run_id": events[0].run_id, "task_id": task_id, "domain": domain, "seed": seed,
        "status": done.status if done else "unfinished", "steps": state.step,
        "scored": scored, "final_score": state.scores[-1] if scored else 0.0,
        "best_score": max(state.scores) if scored else 0.0,
        "working_time_s": round(state.elapsed_s, 3),
        "wall_time_s": round((done.time - started).total_seconds(), 3)
        if done and started else None,
        "prompt_tokens": tokens["prompt"], "completion_tokens": tokens["completion"],
        "tokens": tokens["prompt"] + tokens["completion"], "score_curve": curve}


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _cost(rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    return {k: _mean([r[k] for r in rows])
            for k in ("working_time_s", "wall_time_s", "tokens", "steps")}


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per task, per domain and overall: final and best means with 95% intervals, costs."""
    tasks: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        tasks.setdefault(r["task_id"], []).append(r)
    per_task = []
    for task_id, runs in tasks.items():
        per_task.append({
            "task_id": task_id, "domain": runs[0]["domain"], "runs": len(runs),
            "unscored": sum(not r["scored"] for r in runs),
            "final": mean_ci([r["final_score"] for r in runs]).to_json(),
            "best": mean_ci([r["best_score"] for r in runs]).to_json(), **_cost(runs)})

    def pooled(chosen: Sequence[str]) -> dict[str, Any]:
        groups = [tasks[t] for t in chosen]
        return {"tasks": list(chosen), "runs": sum(len(g) for g in groups),
                **{m: stratified_ci([[r[f"{m}_score"] for r in g] for g in groups]).to_json()
                   for m in ("final", "best")},
                **_cost([r for g in groups for r in g])}

    domains = sorted({r["domain"] for r in rows})
    return {"tasks": per_task,
            "domains": [{"domain": d, **pooled([t["task_id"] for t in per_task
                                                 if t["domain"] == d])} for d in domains],
            "overall": pooled(list(tasks))}


def collect(store: Store, evaluation: Evaluation) -> dict[str, Any]:
    """The results document of an executed evaluation (what results.json holds)."""
    domains = {t.id: t.domain for t in evaluation.suite.tasks}
    rows = [run_record(store.events(rid), task_id, domains[task_id], seed)
            for rid, task_id, seed in evaluation.runs]
    cfg = evaluation.cfg
    return {
        "apollo_version": __version__, "created_at": ev.utcnow().isoformat(),
        "name": evaluation.name, "model": evaluation.model.model_dump(),
        "suite": {"name": evaluation.suite.name, "source": evaluation.suite.source,
                  "tasks": [t.id for t in evaluation.suite.tasks]},
        "seeds": cfg.seeds, "guidance": False, "config": dataclasses.asdict(cfg),
        "store": getattr(store, "url", None), **aggregate(rows), "runs": rows}


def write_results(out: Path, results: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n",
                               encoding="utf-8")
    columns = ["run_id", "task_id", "domain", "seed", "status", "steps", "scored",
               "final_score", "best_score", "working_time_s", "wall_time_s", "prompt_tokens",
               "completion_tokens", "tokens"]
    with (out / RUNS_CSV).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results["runs"])
    (out / SUMMARY).write_text(summary_markdown(results), encoding="utf-8")


def fmt_estimate(data: dict[str, Any] | None) -> str:
    if data is None or data.get("mean") is None:
        return "–"
    est = Estimate.from_json(data)
    half = est.half_width
    return f"{est.mean:.1f}" + (f" ± {half:.1f}" if half is not None else "")


def fmt_number(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def summary_markdown(results: dict[str, Any]) -> str:
    lines = [f"# Evaluation: {results['name']}", "",
             f"Model `{results['model']['spec']}` on suite `{results['suite']['name']}`, "
             f"{results['seeds']} run(s) per task, no human guidance. Scores 0-100: mean ± "
             "half-width of the 95% confidence interval.", "",
             "| task | domain | final | best | unscored | working time (s) | wall time (s) "
             "| tokens |", "|---|---|---|---|---|---|---|---|"]
    for t in results["tasks"]:
        lines.append(f"| {t['task_id']} | {t['domain']} | {fmt_estimate(t['final'])} | "
                     f"{fmt_estimate(t['best'])} | {t['unscored']} | "
                     f"{fmt_number(t['working_time_s'], 1)} | {fmt_number(t['wall_time_s'], 1)}"
                     f" | {fmt_number(t['tokens'])} |")
    for d in results["domains"]:
        lines.append(f"| **{d['domain']}** (mean) | | {fmt_estimate(d['final'])} | "
                     f"{fmt_estimate(d['best'])} | | {fmt_number(d['working_time_s'], 1)} | "
                     f"{fmt_number(d['wall_time_s'], 1)} | {fmt_number(d['tokens'])} |")
    o = results["overall"]
    lines.append(f"| **overall** | | {fmt_estimate(o['final'])} | {fmt_estimate(o['best'])} | "
                 f"| {fmt_number(o['working_time_s'], 1)} | {fmt_number(o['wall_time_s'], 1)} "
                 f"| {fmt_number(o['tokens'])} |")
    return "\n".join(lines) + "\n"
