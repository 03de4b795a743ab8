#!/usr/bin/env python3
"""`m3 serve` through the official `openai` Python client: a byte-level mamba3-tiny model with a
256-token tokenizer and a chat template, served on a free loopback port with an API key;
models.list, completions and chat completions (whole and streamed, which must agree), the
client's error classes for 401 / 404 / 400, then SIGTERM must exit 0. Says SKIP without the
`openai` package."""
import argparse
import json
import pathlib
import signal
import subprocess
import sys
import tempfile

TEMPLATE = ("{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] | trim + '\\n' }}{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m3", default="build/m3")
    m3 = str(pathlib.Path(ap.parse_args().m3).resolve())
    try:
        import openai
    except ImportError:
        print("openai client test: SKIP (no openai package)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        model = pathlib.Path(tmp) / "tiny"
        subprocess.run([m3, "init", "--preset", "mamba3-tiny", str(model)], check=True, capture_output=True)
        corpus = pathlib.Path(tmp) / "corpus.txt"
        corpus.write_text("state space models keep a constant memory per sequence\n")
        subprocess.run([m3, "tokenizer", "train", "--vocab-size", "256", "--files", str(corpus), "--output", str(model)],
                       check=True, capture_output=True)
        cfg_path = model / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["chat_template"] = TEMPLATE
        cfg_path.write_text(json.dumps(cfg))
        server = subprocess.Popen([m3, "serve", str(model), "--port", "0", "--api-key", "sk-test", "--slots", "4"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            line = server.stdout.readline()
            port = int(line.split("127.0.0.1:")[1].split()[0])
            run(openai, f"http://127.0.0.1:{port}/v1")
        finally:
            server.send_signal(signal.SIGTERM)
            code = server.wait(timeout=30)
        assert code == 0, f"m3 serve exited with {code} after SIGTERM"
    print("openai client test: OK")


def run(openai, base):
    client = openai.OpenAI(base_url=base, api_key="sk-test", max_retries=0)
    assert [m.id for m in client.models.list()] == ["tiny"]

    whole = client.completions.create(model="tiny", prompt="state space", max_tokens=12, temperature=0.7, seed=3)
    assert whole.choices[0].finish_reason == "length" and whole.usage.completion_tokens == 12
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny", prompt="state space", max_tokens=12, temperature=0.7, seed=3, stream=True) if c.choices)
    assert streamed == whole.choices[0].text, (streamed, whole.choices[0].text)

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is memory?"}]
    chat = client.chat.completions.create(model="tiny", messages=messages, max_tokens=10, temperature=0)
    assert chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens == 10
    lp = client.chat.completions.create(model="tiny", messages=messages, max_tokens=4, temperature=0, logprobs=True,
                                        top_logprobs=2).choices[0].logprobs.content
    assert len(lp) == 4 and all(len(t.top_logprobs) == 2 and t.logprob == t.top_logprobs[0].logprob for t in lp)
    parts = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=10, temperature=0, stream=True) if c.choices]
    assert "".join(parts) == chat.choices[0].message.content

    for call, error in [
        (lambda: openai.OpenAI(base_url=base, api_key="wrong", max_retries=0).models.list(), openai.AuthenticationError),
        (lambda: client.completions.create(model="gpt-4", prompt="x"), openai.NotFoundError),
        (lambda: client.completions.create(model="tiny", prompt="x", max_tokens=-1), openai.BadRequestError),
        (lambda: client.completions.create(model="tiny", prompt="x", logprobs=9), openai.BadRequestError),
    ]:
        try:
            call()
        except error:
            continue
        raise AssertionError(f"expected {error.__name__}")


if __name__ == "__main__":
    sys.exit(main())
