"""`apollo train`, `apollo eval`, `apollo compare`: fine-tune, evaluate, compare.

The options of `train` and `eval` are made from the fields of their config dataclasses
(`apollo.train.TrainConfig`, `apollo.evaluate.EvalConfig`): each field is an option of the
same name (`_` written `-`) whose help is the field's help text, so the config and the
command line cannot drift apart. An option not given on the command line keeps the value from
`--config FILE` (train), else the field's default.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live

from apollo.cli import _preflight, err, out
from apollo.config import Home
from apollo.errors import ApolloError
from apollo.evaluate.harness import EvalConfig
from apollo.train.config import TrainConfig, build_config

_SCALARS: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}


def _option_type(cls: type[Any], f: dataclasses.Field[Any]) -> Any:
    """The Python type of a config field (its annotation is a string: postponed)."""
    hints = typing.get_type_hints(cls)
    kind = hints[f.name]
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        kind = args[0]
    return kind


def _default_text(f: dataclasses.Field[Any]) -> str:
    value = f.default
    if value is None or value == "" or f.metadata.get("positional"):
        return ""
    if isinstance(value, bool):
        return " (default: on)" if value else ""
    return f" (default: {value})"


def option_help(f: dataclasses.Field[Any]) -> str:
    """The CLI help of a config field: its help text, and its default where it has one."""
    return str(f.metadata["help"]) + _default_text(f)


def config_parameters(cls: type[Any]) -> list[inspect.Parameter]:
    """One typer parameter per field of a config dataclass (None: not given)."""
    params = []
    for f in dataclasses.fields(cls):
        kind = _option_type(cls, f)
        info: Any
        if f.metadata.get("positional"):
            info = typer.Argument(metavar=f.name.upper(), help=option_help(f), show_default=False)
        else:
            flag = "--" + f.name.replace("_", "-")
            names = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
            info = typer.Option(*names, help=option_help(f), show_default=False)
        params.append(inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
            annotation=Annotated[kind | None, info]))
    return params


def config_command(cls: type[Any], run: Callable[[dict[str, Any]], None],
                   extra: list[inspect.Parameter], doc: str) -> Callable[..., None]:
    """A typer command taking the config's fields (and `extra` parameters) as options and
    calling `run` with them as a dict (None for the ones not given)."""

    def command(**values: Any) -> None:
        run(values)

    params = config_parameters(cls) + extra
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = doc
    return command


def _param(name: str, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=annotation)


# -- train --------------------------------------------------------------------------------


def _train(values: dict[str, Any]) -> None:
    config_file = values.pop("config")
    cfg: TrainConfig = build_config(TrainConfig, config_file, values)
    from apollo.train.trainer import train

    result = train(cfg.check())
    if not result.main:
        return
    m = result.metrics
    data = m["data"]
    _say(f"trained {m['steps']} steps ({m['epochs']:.2f} epochs) on {data['samples_trained']} "
         f"samples: {data['tokens']:,} tokens, {data['trainable_tokens']:,} trainable; "
         f"{m['tokens_per_s'] or 0:,.0f} tokens/s over {m['processes']} process(es)")
    curve = m["loss_curve"]
    if curve:
        _say(f"loss on kept assistant tokens: {curve[0]['loss']:.4f} (step "
             f"{curve[0]['step']}) -> {curve[-1]['loss']:.4f} (step {curve[-1]['step']})")
    if data["overlong"]:
        _say(f"{data['overlong']} sample(s) longer than --max-length: {data['truncated']} "
             f"truncated ({data['trainable_tokens_lost_to_truncation']:,} trainable tokens "
             f"lost), {data['dropped_overlong']} dropped", err)
    if data["dropped_no_loss"]:
        _say(f"{data['dropped_no_loss']} sample(s) without a trainable token left out", err)
    kind = "LoRA adapter" if cfg.lora and not cfg.merge_lora else "model"
    _say(f"{kind} saved to {result.out} (evaluate it with --model hf:{result.out}); metrics in "
         f"{result.out / 'metrics.json'}")


train_command = config_command(
    TrainConfig, _train,
    [_param("config", Annotated[Path | None, typer.Option(
        "--config", help="A YAML or JSON file of these options (keys as the option names); "
        "options given on the command line win.")])],
    "Fine-tune a model on an apollo export (TRL SFT; loss only on kept assistant tokens).")


# -- eval ---------------------------------------------------------------------------------


def _execute(runner: Any, ids: list[str]) -> None:
    """Execute the runs here, showing a live table of them."""
    from apollo.render import runs_table

    async def main() -> list[Any]:
        work = asyncio.ensure_future(runner.execute_many(ids))
        with Live(console=err, refresh_per_second=2, transient=not err.is_terminal) as live:
            while not work.done():
                live.update(runs_table([runner.store.run(r) for r in ids], "evaluation runs"))
                await asyncio.wait({work}, timeout=0.5)
        return work.result()

    try:
        results = asyncio.run(main())
    except KeyboardInterrupt:
        err.print("interrupted: the evaluation's runs stay in its store; evaluate again "
                  "with --overwrite")
        raise typer.Exit(130) from None
    for rid, res in zip(ids, results, strict=True):
        if isinstance(res, BaseException) and not isinstance(res, ApolloError):
            raise res
        if isinstance(res, ApolloError):
            _say(f"{rid}: error: {res}", err)


def _eval(values: dict[str, Any]) -> None:
    from apollo.evaluate.harness import (
        RESULTS,
        SUMMARY,
        clear_output,
        collect,
        create_runs,
        prepare,
        write_results,
    )
    from apollo.executors import make_runner
    from apollo.store.base import open_store

    db = values.pop("db")
    cfg: EvalConfig = build_config(EvalConfig, None, values)
    home = Home.resolve()
    evaluation = prepare(cfg, home)
    if cfg.model.startswith("openai:"):
        _preflight(evaluation.model.options)
    clear_output(evaluation.out)
    store = open_store(db or f"sqlite:///{evaluation.out / 'apollo.db'}")
    try:
        runner = make_runner(store, home, cfg.executor, max_concurrent=cfg.concurrency,
                             ray_address=cfg.ray_address)
        ids = create_runs(store, home, evaluation)
        where = "" if cfg.executor == "local" else f" as {cfg.executor} actors"
        _say(f"evaluating {evaluation.model.spec} as {evaluation.name!r}: "
             f"{len(evaluation.suite.tasks)} task(s) x {cfg.seeds} run(s), at most "
             f"{cfg.concurrency} at once{where}, no human guidance", err)
        _execute(runner, ids)
        results = collect(store, evaluation)
    finally:
        store.close()
    write_results(evaluation.out, results)
    out.print((evaluation.out / SUMMARY).read_text(encoding="utf-8"), markup=False,
              soft_wrap=True)
    _say(f"results in {evaluation.out / RESULTS}")


eval_command = config_command(
    EvalConfig, _eval,
    [_param("db", Annotated[str | None, typer.Option(
        "--db", help="Event store for the evaluation's runs (default: OUT/apollo.db, kept "
        "apart from the store training data is exported from).")])],
    "Evaluate a model on a suite: every task N times, no human guidance; scores with 95% "
    "intervals, time and tokens per run.")


# -- compare ------------------------------------------------------------------------------


def compare_command(
    dirs: Annotated[list[Path], typer.Argument(
        metavar="DIR", help="apollo eval output directories; the first is the baseline.")],
    names: Annotated[str | None, typer.Option(
        "--names", help="Comma-separated column names, one per DIR (default: each "
        "evaluation's name).")] = None,
    out_dir: Annotated[Path, typer.Option(
        "--out", help="Directory for compare.md, compare.csv, domains.png and "
        "best_over_time.png.")] = Path("comparison"),
) -> None:
    """Compare evaluations: per task, domain and overall, final and best scores per model,
    relative to the first (Markdown, CSV, plots)."""
    from apollo.evaluate.compare import compare

    labels = [n.strip() for n in names.split(",")] if names else None
    written = compare(dirs, out_dir, labels)
    out.print(written["markdown"].read_text(encoding="utf-8"), markup=False, soft_wrap=True)
    files = [written["markdown"], written["csv"], *written["plots"]]
    _say("written: " + ", ".join(str(f) for f in files))
    if not written["plots"]:
        _say("no plots: they need matplotlib (pip install matplotlib)", err)


def _say(text: str, console: Any = None) -> None:
    (console or out).print(text, soft_wrap=True, markup=False)


def register(app: typer.Typer) -> None:
    """Add `train`, `eval` and `compare` to the `apollo` command."""
    app.command("train")(train_command)
    app.command("eval")(eval_command)
    app.command("compare")(compare_command)


__all__ = ["config_parameters", "option_help", "register"]
