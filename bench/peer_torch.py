#!/usr/bin/python3
"""peer_torch.py: time plumb bench's generation workload in PyTorch.

The same work as `plumb bench`'s "generate" figures: GPT-2 with random
weights, a KV cache, prompts of 64 random tokens, 64 new tokens per sequence
sampled at temperature 1 from the full distribution (no end token), for one
prompt and for 32 at once; the time covers prefill and decoding, best of
--steps runs after a warm-up. Shapes: 4 layers x 256 wide with vocabulary
50257, and GPT-2 124M.

The PyTorch side is written to be fast, not naive: weights preallocated, the
cache written in place (no torch.cat per step), the LM head over the last
position only, inference_mode, the same thread count as plumb.

    python3 bench/peer_torch.py [--threads N] [--steps N] [--plumb bench.json]

With --plumb (the output of `plumb bench --json`) it also prints plumb/torch
ratios. Run it with Debian's python3-torch and OpenBLAS's own CPU detection
(unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, and put OpenBLAS first:
LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread), as
`make bench-peer` does.
"""

import argparse
import json
import math
import os
import sys
import time

PROMPT = 64
NEW = 64
SHAPES = [
    {"name": "4x256", "n_layer": 4, "n_embd": 256, "n_head": 4, "vocab_size": 50257},
    {"name": "gpt2-124M", "n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 50257},
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--plumb", help="plumb bench --json output, to print plumb/torch ratios")
    return p.parse_args()


ARGS = parse_args()
# OpenBLAS sizes its own pool when it loads: it must match before torch loads it.
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class GPT2:
    """GPT-2 as Hugging Face computes it (Conv1D weights [in, out], tanh GELU)."""

    def __init__(self, n_layer, n_embd, n_head, vocab_size, n_positions, gen):
        def normal(*shape, std=0.02):
            return torch.randn(*shape, generator=gen) * std

        C = n_embd
        self.L, self.C, self.NH = n_layer, C, n_head
        self.wte = normal(vocab_size, C)
        self.wpe = normal(n_positions, C)
        proj = 0.02 / math.sqrt(2 * n_layer)
        self.layers = [
            {
                "ln1": (torch.ones(C), torch.zeros(C)),
                "attn": (normal(C, 3 * C), torch.zeros(3 * C)),
                "attn_proj": (normal(C, C, std=proj), torch.zeros(C)),
                "ln2": (torch.ones(C), torch.zeros(C)),
                "fc": (normal(C, 4 * C), torch.zeros(4 * C)),
                "fc_proj": (normal(4 * C, C, std=proj), torch.zeros(C)),
            }
            for _ in range(n_layer)
        ]
        self.lnf = (torch.ones(C), torch.zeros(C))

    def new_cache(self, B, T):
        hs = self.C // self.NH
        return torch.zeros(self.L, 2, B, self.NH, T, hs)

    def forward(self, tokens, past, cache):
        """Logits after the last of tokens [B, n], positions past.., cache updated."""
        B, n = tokens.shape
        C, NH = self.C, self.NH
        hs = C // NH
        pos = torch.arange(past, past + n)
        x = self.wte[tokens] + self.wpe[pos]
        mask = None
        if n > 1:
            mask = torch.ones(n, past + n, dtype=torch.bool).tril(diagonal=past)
        for l, w in enumerate(self.layers):
            h = F.layer_norm(x, (C,), *w["ln1"], eps=1e-5)
            qkv = torch.addmm(w["attn"][1], h.view(-1, C), w["attn"][0]).view(B, n, 3, NH, hs)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, NH, n, hs]
            cache[l, 0, :, :, past : past + n] = k
            cache[l, 1, :, :, past : past + n] = v
            keys = cache[l, 0, :, :, : past + n]
            values = cache[l, 1, :, :, : past + n]
            att = (q @ keys.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            if mask is not None:
                att = att.masked_fill(~mask, float("-inf"))
            y = (att.softmax(dim=-1) @ values).transpose(1, 2).reshape(B * n, C)
            x = x + torch.addmm(w["attn_proj"][1], y, w["attn_proj"][0]).view(B, n, C)
            h = F.layer_norm(x, (C,), *w["ln2"], eps=1e-5)
            h = F.gelu(torch.addmm(w["fc"][1], h.view(-1, C), w["fc"][0]), approximate="tanh")
            x = x + torch.addmm(w["fc_proj"][1], h, w["fc_proj"][0]).view(B, n, C)
        last = F.layer_norm(x[:, -1], (C,), *self.lnf, eps=1e-5)
        return F.linear(last, self.wte)


def generate(model, prompts, cache, gen):
    """Prefill, then one token a step for every sequence: 64 new tokens each."""
    logits = model.forward(prompts, 0, cache)
    out = []
    for step in range(NEW):
        probs = torch.softmax(logits, dim=-1)
        tok = torch.multinomial(probs, 1, generator=gen)
        out.append(tok)
        if step + 1 < NEW:
            logits = model.forward(tok, PROMPT + step, cache)
    return torch.cat(out, dim=1)


def tokens_per_s(model, B, vocab, steps):
    gen = torch.Generator().manual_seed(2)
    prompts = torch.randint(0, vocab, (B, PROMPT), generator=gen)
    cache = model.new_cache(B, PROMPT + NEW)  # allocated once, as plumb's is
    best = float("inf")
    for rep in range(steps + 1):
        t0 = time.perf_counter()
        generate(model, prompts, cache, gen)
        dt = time.perf_counter() - t0
        if rep > 0:
            best = min(best, dt)
    return B * NEW / best


def main():
    torch.set_num_threads(ARGS.threads)
    results = []
    with torch.inference_mode():
        for s in SHAPES:
            gen = torch.Generator().manual_seed(1)
            model = GPT2(s["n_layer"], s["n_embd"], s["n_head"], s["vocab_size"], PROMPT + NEW, gen)
            r = {k: s[k] for k in ("name", "n_layer", "n_embd", "n_head", "vocab_size")}
            r["generate"] = {
                f"b{B}": {"tokens_per_s": tokens_per_s(model, B, s["vocab_size"], ARGS.steps)}
                for B in (1, 32)
            }
            results.append(r)
            print(
                f"torch {s['name']}: generate {r['generate']['b1']['tokens_per_s']:.0f} tokens/s "
                f"for 1 prompt, {r['generate']['b32']['tokens_per_s']:.0f} for 32",
                file=sys.stderr,
            )
    print(json.dumps({"torch": torch.__version__, "threads": ARGS.threads, "shapes": results}))
    if ARGS.plumb:
        print_ratios(results)


def print_ratios(torch_results):
    with open(ARGS.plumb) as f:
        plumb = json.load(f)
    for t in torch_results:
        match = [
            p
            for p in plumb
            if "shape" in p
            and p["shape"]["n_layer"] == t["n_layer"]
            and p["shape"]["n_embd"] == t["n_embd"]
            and p.get("generate", {}).get("vocab_size") == t["vocab_size"]
        ]
        if not match or "generate" not in match[0]:
            print(f"{t['name']}: no plumb generation figures", file=sys.stderr)
            continue
        p = match[0]["generate"]
        for b in ("b1", "b32"):
            ratio = p[b]["tokens_per_s"] / t["generate"][b]["tokens_per_s"]
            print(
                f"{t['name']} generate {b}: plumb {p[b]['tokens_per_s']:.0f} tokens/s, "
                f"torch {t['generate'][b]['tokens_per_s']:.0f}, plumb/torch {ratio:.2f}"
            )


if __name__ == "__main__":
    main()
