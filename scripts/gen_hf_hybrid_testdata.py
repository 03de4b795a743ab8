#!/usr/bin/env python3
"""Builds tiny random-weight models of the Hugging Face hybrid families that ../shared/golden has no
folder for (BambaForCausalLM, JambaForCausalLM, Zamba2ForCausalLM) with transformers, and writes each to
tests/data/hf_<family>/ in the layout of the golden hf_* folders: config.json and model.safetensors
(save_pretrained), and golden.safetensors with `input_ids` int64 [2, 45], `logits` float32
[2, 45, vocab] (transformers' PyTorch path, float32, no cache), `greedy_prompt` int64 [1, 20] and
`greedy_out` int64 [1, 32] (the prompt and 12 greedy tokens produced through transformers' own
recurrent cache). tests/test_hf_hybrids.cpp holds m3 to them.

Every parameter is drawn at random (norm weights, biases, A_log, D and dt biases too, so that no
weight the code under test might skip sits at its neutral initial value).

With --check, rebuilds every model in a temporary folder and compares it with the tree instead:
the same config and weights bit for bit, logits within 1e-5 relative, the same greedy tokens (exit
1 on a difference). Needs `pip install torch transformers safetensors` (written with torch 2.15,
transformers 5.24)."""
import json
import pathlib
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file
from transformers import (BambaConfig, BambaForCausalLM, JambaConfig, JambaForCausalLM, Zamba2Config,
                          Zamba2ForCausalLM)

DIR = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data"
VOCAB = 128

FAMILIES = {
    # Mamba-2 (4 heads of 16, state 16, 2 groups, chunk 16 so the 45 tokens span three chunks),
    # attention with GQA 4/2 and partial rotary (head_dim 8, rotary 4) at layers 1 and 3.
    "hf_bamba": (BambaForCausalLM, BambaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, attn_layer_indices=[1, 3], mamba_n_heads=4, mamba_d_head="auto", mamba_n_groups=2,
        mamba_d_state=16, mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=16, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 500.0}, initializer_range=0.15,
        tie_word_embeddings=False)),
    # Mamba-1 (d_inner 64, state 16, dt_rank 4) with weighted dt/B/C norms; attention (GQA 4/2, no
    # positional encoding) at layers 1 and 4; MoE (4 experts, top-2) at layers 1 and 3, so the blocks
    # are Mamba+MLP, attention+MoE, Mamba+MLP, Mamba+MoE, attention+MLP; tied embeddings.
    "hf_jamba": (JambaForCausalLM, JambaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=24, num_hidden_layers=5, num_attention_heads=4,
        num_key_value_heads=2, attn_layer_period=3, attn_layer_offset=1, expert_layer_period=2,
        expert_layer_offset=1, num_experts=4, num_experts_per_tok=2, mamba_d_state=16, mamba_d_conv=4,
        mamba_expand=2, mamba_dt_rank=4, use_mamba_kernels=False, rms_norm_eps=1e-6, initializer_range=0.15,
        tie_word_embeddings=True)),
    # Mamba-2 (4 heads of 16, state 16, 2 groups, chunk 16) in every layer; hybrid layers 1, 3 and 4
    # use the two shared transformer blocks round-robin (0, 1, 0: block 0 twice, with different
    # adapters), attention 4 heads of 16 over the 64-wide [h | embeddings] with rotary (base 500),
    # q/k/v and gate_up adapters of rank 4, GELU MLP of 48; tied embeddings.
    "hf_zamba2": (Zamba2ForCausalLM, Zamba2Config(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=5,
        layers_block_type=["mamba", "hybrid", "mamba", "hybrid", "hybrid"], num_mem_blocks=2, num_attention_heads=4,
        n_mamba_heads=4, mamba_ngroups=2, mamba_d_state=16, mamba_d_conv=4, mamba_expand=2, chunk_size=16,
        use_shared_attention_adapter=True, adapter_rank=4, use_mem_rope=True,
        rope_parameters={"rope_type": "default", "rope_theta": 500.0}, rms_norm_eps=1e-5, initializer_range=0.15,
        tie_word_embeddings=True)),
}


def build(name, out):
    cls, cfg = FAMILIES[name]
    torch.manual_seed(1234)
    model = cls(cfg).eval()
    with torch.no_grad():
        for pname, p in sorted(model.named_parameters()):
            if p.dim() == 1 or pname.endswith("A_log"):
                p.add_(0.3 * torch.randn_like(p))
    model.save_pretrained(out)
    g = torch.Generator().manual_seed(99)
    ids = torch.randint(0, VOCAB, (2, 45), generator=g)
    prompt = torch.randint(0, VOCAB, (1, 20), generator=g)
    with torch.no_grad():
        logits = model(ids, use_cache=False).logits.float().contiguous()
        greedy = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, min_new_tokens=12,
                                do_sample=False, use_cache=True, pad_token_id=0)
    save_file({"input_ids": ids, "logits": logits, "greedy_prompt": prompt, "greedy_out": greedy.contiguous()},
              str(out / "golden.safetensors"))
    for extra in ("generation_config.json",):
        (out / extra).unlink(missing_ok=True)


def rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def check(name, tmp):
    want, got = DIR / name, tmp / name
    ok = json.loads((want / "config.json").read_text()) == json.loads((got / "config.json").read_text())
    w, g = load_file(str(want / "model.safetensors")), load_file(str(got / "model.safetensors"))
    ok = ok and w.keys() == g.keys() and all(torch.equal(w[k], g[k]) for k in w)
    w, g = load_file(str(want / "golden.safetensors")), load_file(str(got / "golden.safetensors"))
    err = rel(g["logits"], w["logits"])
    ok = ok and torch.equal(w["input_ids"], g["input_ids"]) and err < 1e-5
    ok = ok and torch.equal(w["greedy_out"], g["greedy_out"])
    print(f"{name}: {'same' if ok else 'DIFFERENT'} (logits relative difference {err:.2g})")
    return ok


def main():
    if "--check" in sys.argv[1:]:
        with tempfile.TemporaryDirectory() as t:
            ok = True
            for name in FAMILIES:
                build(name, pathlib.Path(t) / name)
                ok = check(name, pathlib.Path(t)) and ok
        sys.exit(0 if ok else 1)
    for name in FAMILIES:
        build(name, DIR / name)
        print(f"wrote {DIR / name}")


if __name__ == "__main__":
    main()
