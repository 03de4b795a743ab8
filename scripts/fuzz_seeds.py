#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer harnesses (fuzz/) under OUT/<harness>/, generated from
the test data: tokenizers and texts of tests/data/tokenizer, config.json files of the golden
checkpoints (re-serialised, and edited), and small safetensors, pytorch_model.bin (as
tests/torch_pickle_writer.h lays them out) and training token files built here. Nothing is copied
into the repository. Usage: scripts/fuzz_seeds.py OUT [FUZZ_BUILD_DIR] (the build dir's fuzz_state
writes that harness's seed: a real decode state of its model)."""
import glob
import json
import os
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER_SEP = b"\n#m3#\n"  # fuzz/fuzz_tokenizer.cpp's kSep
DTYPES = {"F64": ("d", 8), "F32": ("f", 4), "F16": ("e", 2), "BF16": ("H", 2), "I64": ("q", 8), "I32": ("i", 4),
          "I16": ("h", 2), "I8": ("b", 1), "U8": ("B", 1), "BOOL": ("?", 1)}


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, values)] -> the file's bytes."""
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, values in tensors:
        fmt, _ = DTYPES[dtype]
        blob = struct.pack("<%d%s" % (len(values), fmt), *values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def write(out, harness, name, data):
    d = os.path.join(out, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors_seeds(out):
    for dtype in DTYPES:
        vals = [True, False, True, True] if dtype == "BOOL" else [0, 1, 2, 3] if dtype[0] in "IU" else [0.5, -1.0, 2.0, 0.0]
        if dtype == "BF16":
            vals = [0x3F80, 0xBF80, 0x4000, 0]
        write(out, "fuzz_safetensors", dtype, safetensors([("w", dtype, [2, 2], vals)]))
    write(out, "fuzz_safetensors", "several", safetensors(
        [("a.weight", "F32", [3], [1.0, 2.0, 3.0]), ("b", "I64", [1, 2], [5, 6]), ("empty", "F32", [0, 4], [])],
        {"format": "pt"}))


def logits_input_seeds(out):
    write(out, "fuzz_logits_input", "i64", safetensors([("input_ids", "I64", [2, 3], [1, 2, 3, 4, 5, 6])]))
    write(out, "fuzz_logits_input", "i32", safetensors([("input_ids", "I32", [1, 4], [0, 9, 99, 999])]))


def config_seeds(out):
    golden = os.path.join(ROOT, "..", "shared", "golden")
    paths = sorted(glob.glob(os.path.join(golden, "*", "config.json")))
    paths += sorted(glob.glob(os.path.join(ROOT, "tests", "data", "hf_*", "config.json")))  # Bamba, Jamba, Zamba2
    for path in paths:
        name = os.path.basename(os.path.dirname(path))
        with open(path) as f:
            c = json.load(f)
        write(out, "fuzz_config", name, json.dumps(c))
        # Edits that reach the range checks: a huge width, a zero, a wrong type.
        for key in ("d_model", "hidden_size", "n_layer", "num_hidden_layers"):
            if key in c:
                write(out, "fuzz_config", name + "." + key + ".big", json.dumps({**c, key: 2**31}))
                write(out, "fuzz_config", name + "." + key + ".zero", json.dumps({**c, key: 0}))
                write(out, "fuzz_config", name + "." + key + ".str", json.dumps({**c, key: "16"}))
        # Zamba2's shared blocks: their count, the adapters' rank and the layer pattern.
        edits = (("num_mem_blocks", 0), ("num_mem_blocks", 2**31), ("adapter_rank", 2**31), ("adapter_rank", -1),
                 ("layers_block_type", ["hybrid"]), ("layers_block_type", "mamba"))
        for i, (key, bad) in enumerate(edits):
            if key in c:
                write(out, "fuzz_config", "%s.%s.%d" % (name, key, i), json.dumps({**c, key: bad}))


def tokenizer_seeds(out):
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "data", "tokenizer", "*.json"))):
        if path.endswith(".cases.json"):
            continue
        name = os.path.basename(path)[:-5]
        with open(path) as f:
            j = json.load(f)
        # A few hundred tokens keep every component and make inputs small (fast to mutate and
        # run): the vocabulary's first ids, the added tokens, and the merges among them.
        added = {t["id"] for t in j.get("added_tokens") or []}
        vocab = {t: i for t, i in j["model"]["vocab"].items() if i < 300 or i in added}
        merges = []
        for m in j["model"].get("merges") or []:
            left, right = m if isinstance(m, list) else m.split(" ", 1)
            if left in vocab and right in vocab and left + right in vocab:
                merges.append(m)
        j["model"]["vocab"], j["model"]["merges"] = vocab, merges[:300]
        tok = json.dumps(j, ensure_ascii=False).encode()
        specials = [t["content"] for t in j.get("added_tokens") or [] if t.get("special")]
        config = json.dumps({"bos_token": specials[0], "eos_token": specials[-1]}).encode() if specials else b""
        cases_path = path[:-5] + ".cases.json"
        texts = []
        if os.path.exists(cases_path):
            with open(cases_path) as f:
                texts = [c["text"] for c in json.load(f)["cases"] if c["text"]][:40:8]
        for i, text in enumerate(texts or ["hello world"]):
            write(out, "fuzz_tokenizer", "%s.%d" % (name, i), tok + TOKENIZER_SEP + config + TOKENIZER_SEP + text.encode())


def request_seeds(out):
    bodies = {
        "completion": {"model": "m", "prompt": "def main():", "max_tokens": 16, "temperature": 0.7, "top_p": 0.9,
                       "stop": ["\n\n", "END"], "seed": 3, "n": 2, "logprobs": 2, "stream": True,
                       "stream_options": {"include_usage": True}, "presence_penalty": 0.5, "frequency_penalty": 0.1},
        "completion_ids": {"prompt": [1, 2, 3], "max_tokens": 4},
        "chat": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                 "max_completion_tokens": 8, "logprobs": True, "top_logprobs": 3, "stop": "x"},
    }
    for name, b in bodies.items():
        write(out, "fuzz_request", name, json.dumps(b))


def chat_template_seeds(out):
    # The templates of tests/data/chat_template (written for this project, not copied).
    d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "chat_template")
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if name.endswith(".jinja"):
            with open(os.path.join(d, name), "rb") as f:
                write(out, "fuzz_chat_template", name, f.read())


def pickle_str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def pickle_int(v):
    return b"K" + struct.pack("<B", v) if 0 <= v < 256 else b"J" + struct.pack("<i", v)


def pickle_tuple(vs):
    return b"(" + b"".join(pickle_int(v) for v in vs) + b"t"


def state_dict_pickle(tensors):
    """The protocol-2 pickle torch.save writes for an OrderedDict of tensors (as
    tests/torch_pickle_writer.h builds it). tensors: [(name, storage_type, key, storage_numel,
    offset, size, stride)]."""
    p = b"\x80\x02ccollections\nOrderedDict\n)R("
    for name, storage, key, numel, offset, size, stride in tensors:
        p += pickle_str(name) + b"ctorch._utils\n_rebuild_tensor_v2\n(("
        p += pickle_str("storage") + b"ctorch\n" + storage.encode() + b"\n" + pickle_str(key) + pickle_str("cpu")
        p += pickle_int(numel) + b"tQ" + pickle_int(offset) + pickle_tuple(size) + pickle_tuple(stride)
        p += b"\x89ccollections\nOrderedDict\n)RtR"
    return p + b"u."


def zip_archive(entries):
    """A ZIP of stored entries, data aligned to 64 bytes, CRCs 0 (tests/torch_pickle_writer.h)."""
    z, cd = b"", b""
    for name, data in entries:
        n = name.encode()
        local = len(z)
        pad = (64 - (local + 30 + len(n) + 4) % 64) % 64
        z += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, 0, len(data), len(data), len(n), 4 + pad)
        z += n + struct.pack("<HH", 0x1234, pad) + b"\0" * pad + data
        cd += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, 0, len(data), len(data), len(n),
                          0, 0, 0, 0, 0, local) + n
    return z + cd + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(cd), len(z), 0)


def torch_checkpoint_seeds(out):
    f32 = struct.pack("<8f", *range(8))
    bf16 = struct.pack("<3H", 0x3FC0, 0xC000, 0x3E80)
    write(out, "fuzz_torch_checkpoint", "views", zip_archive([
        ("m/data.pkl", state_dict_pickle([("w", "FloatStorage", "0", 8, 1, [2, 3], [3, 1]),
                                          ("wt", "FloatStorage", "0", 8, 0, [3, 2], [1, 3]),
                                          ("b", "BFloat16Storage", "1", 3, 1, [2], [1])])),
        ("m/data/0", f32), ("m/data/1", bf16), ("m/version", b"3\n")]))
    for storage, fmt in (("HalfStorage", "<4e"), ("DoubleStorage", "<4d"), ("LongStorage", "<4q")):
        write(out, "fuzz_torch_checkpoint", storage, zip_archive([
            ("a/data.pkl", state_dict_pickle([("x", storage, "0", 4, 0, [2, 2], [2, 1])])),
            ("a/data/0", struct.pack(fmt, 1, 2, 3, 4))]))


def token_file(width, tokens, doc_offsets):
    """A training token file (src/train/token_file.h's layout)."""
    return (b"M3TOKENS" + struct.pack("<IIQQ", 1, width, len(tokens), len(doc_offsets) - 1) +
            struct.pack("<%dQ" % len(doc_offsets), *doc_offsets) +
            struct.pack("<%d%s" % (len(tokens), "H" if width == 2 else "I"), *tokens))


def token_file_seeds(out):
    toks = [(7 * i) % 50 for i in range(40)]
    write(out, "fuzz_token_file", "u16", token_file(2, toks, [0, 10, 25, 40]))
    write(out, "fuzz_token_file", "u32", token_file(4, [t + 70000 for t in toks[:20]], [0, 20]))


def state_seeds(out, build):
    exe = os.path.join(build, "fuzz", "fuzz_state") if build else ""
    if not os.path.exists(exe):
        print("fuzz_seeds: no %s; fuzz_state starts from an empty corpus" % (exe or "FUZZ_BUILD_DIR"))
        return
    d = os.path.join(out, "fuzz_state")
    os.makedirs(d, exist_ok=True)
    for k in (0, 1, 5):
        env = dict(os.environ, M3_FUZZ_WRITE_STATE=os.path.join(d, "prefill%d" % k), M3_FUZZ_PREFILL=str(k))
        subprocess.run([exe], env=env, check=True, stdout=subprocess.DEVNULL)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    safetensors_seeds(out)
    logits_input_seeds(out)
    config_seeds(out)
    tokenizer_seeds(out)
    request_seeds(out)
    chat_template_seeds(out)
    torch_checkpoint_seeds(out)
    token_file_seeds(out)
    state_seeds(out, sys.argv[2] if len(sys.argv) > 2 else "")


if __name__ == "__main__":
    main()
