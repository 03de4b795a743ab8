#!/usr/bin/env python3
"""Renders tests/data/chat_template/*.jinja with Python's jinja2 the way Hugging Face transformers
renders chat templates (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loop controls,
tojson as json.dumps with ensure_ascii=False, raise_exception, {% generation %} rendering its body)
on a fixed set of conversations, and writes expected.json for tests/test_chat_template.cpp.
With --check, compares with the expected.json in the tree instead (exit 1 on a difference).
Needs `pip install jinja2`."""
import json
import pathlib
import sys

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

DIR = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "chat_template"

CASES = [
    {"name": "user", "messages": [{"role": "user", "content": "Hello!"}]},
    {"name": "system_user", "messages": [{"role": "system", "content": "You are terse.  "},
                                         {"role": "user", "content": "  What is  Mamba?  "}]},
    {"name": "multi_turn", "messages": [
        {"role": "system", "content": "Answer in one line."},
        {"role": "user", "content": "Why state spaces?"},
        {"role": "assistant", "content": "<think>constant memory</think>Constant memory per sequence."},
        {"role": "user", "content": "Thanks \u2014 \u00fcn\u00efcode \u2713 and a long tail"}]},
    {"name": "alternating", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                         {"role": "user", "content": "c"}]},
    {"name": "two_users", "messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]},
    {"name": "tools", "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": ""},
        {"role": "tool", "content": "{\"temp\": 21}"},
        {"role": "tool", "content": "sunny"}],
     "extra": {"tools": [{"type": "function", "function": {
         "name": "get_weather", "description": "Current weather",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]}},
]


class Generation(Extension):
    """{% generation %}...{% endgeneration %}: renders its body (transformers' AssistantTracker)."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def main():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    results = {}
    for path in sorted(DIR.glob("*.jinja")):
        template = env.from_string(path.read_text())
        results[path.stem] = {}
        for case in CASES:
            context = {"messages": case["messages"], "bos_token": "<s>", "eos_token": "</s>",
                       "add_generation_prompt": True, **case.get("extra", {})}
            try:
                results[path.stem][case["name"]] = {"text": template.render(**context)}
            except jinja2.exceptions.TemplateError as e:
                results[path.stem][case["name"]] = {"error": str(e)}
    text = json.dumps({"cases": CASES, "results": results}, indent=1, ensure_ascii=False) + "\n"
    if "--check" in sys.argv[1:]:
        if (DIR / "expected.json").read_text() != text:
            sys.exit("chat template oracle: tests/data/chat_template/expected.json differs from what jinja2 renders now")
        print("chat template oracle: jinja2 renders what expected.json holds")
        return
    (DIR / "expected.json").write_text(text)


if __name__ == "__main__":
    main()
