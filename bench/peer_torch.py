#!/usr/bin/python3
"""peer_torch.py: time plumb bench's training, scoring, generation and PPO workloads in PyTorch.

Training step and scoring, the same work as `plumb bench`'s "train" and
"score" figures: random weights, batch 4 x 256 random tokens with random
targets, on 4 layers x 256 wide with the byte vocabulary (256) and on GPT-2
124M, context 1024 as plumb's shapes have. A training step is the forward, the
mean cross-entropy over every position, the backward, clipping at norm 1.0 and
AdamW (lr 1e-4, betas 0.9/0.95, eps 1e-8, weight decay 0.1 on matrices); a
scoring pass is a no-grad forward with each position's log-prob of its target
(logit minus log-sum-exp, without writing the log-softmax). Best of --steps
after a warm-up.

Generation, the same work as `plumb bench`'s "generate" figures: GPT-2 with
random weights, a KV cache, prompts of 64 random tokens, 64 new tokens per
sequence sampled at temperature 1 from the full distribution (no end token),
for one prompt and for 32 at once; the time covers prefill and decoding, best
of --steps runs after a warm-up. Shapes: 4 layers x 256 wide with vocabulary
50257, and GPT-2 124M.

One PPO iteration, as `plumb bench` runs it (bench_ppo in cmd/bench.c, which
runs rlhf/ppo.c): 4 layers x 256 with the byte vocabulary (257) and a context
of 128, randomly initialised; policy and frozen reference from one init, value
model and frozen reward model (scalar head) from another. Generation: the 32
bench prompts, one response each of up to 48 tokens (stopping at the end
token) sampled at temperature 1 through a KV cache, with each token's log-prob.
Scoring, 8 rows a forward: reference log-probs, values at every position, the
reward at an end token appended to prompt + response; then per-token KL
rewards (k1, beta 0.2), GAE (gamma 1, lambda 0.95) and whitening. Update: 4
epochs x 4 shuffled minibatches of 8 rows, each a policy and a value forward,
the clipped policy loss + 0.1 x the clipped value loss (token means),
backward, then for both models clipping at norm 1.0 and AdamW (lr 1e-5, betas
0.9/0.95, weight decay 0.1 on matrices). The second of two iterations is
timed. plumb's iteration is timed whole (rlhf/ppo.h's struct ppo_timing):
its update_s is everything after scoring (forwards, losses, backwards,
clipping, AdamW) and its tokens_per_s is tokens over the iteration's wall
time; torch's update_s + optimizer_s and wall_tokens_per_s are the figures
that compare with them.

The PyTorch side is written to be fast, not naive: the cache preallocated and
written in place (no torch.cat per step), the LM head over the positions that
need it only, inference_mode for the generation benchmark and no_grad for
PPO's generation and scoring, the same thread count as plumb.

    python3 bench/peer_torch.py [--threads N] [--steps N] [--plumb bench.json]
                                [--only train|generate|ppo]

With --plumb (the output of `plumb bench --json`) it also prints one table of
plumb/torch ratios of speeds (above 1: plumb is faster) and, without
--threads, uses the thread count of plumb's run. Run it as `make bench-peer`
does: Debian's python3-torch on the OpenMP build of OpenBLAS
(LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp: torch's OpenMP
threads and OpenBLAS's are then one pool; the pthread build makes two pools
fight over the cores), OpenBLAS's own CPU detection (OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE unset, so it picks its AVX-512 kernels; the script prints the
core OpenBLAS chose), and glibc's malloc kept from handing memory back to the
system between steps (GLIBC_TUNABLES: huge pages, no mmap below 4 GiB, no
trimming).
"""

import argparse
import json
import math
import os
import sys
import time

PROMPT = 64
NEW = 64
# Generation uses GPT-2's vocabulary on both shapes (plumb bench does the same); training and
# scoring use train_vocab, plumb bench's shapes.
SHAPES = [
    {"name": "4x256", "n_layer": 4, "n_embd": 256, "n_head": 4, "vocab_size": 50257,
     "train_vocab": 256},
    {"name": "gpt2-124M", "n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 50257,
     "train_vocab": 50257},
]
TRAIN_B, TRAIN_T, TRAIN_CONTEXT = 4, 256, 1024
TRAIN_LR, TRAIN_BETAS, TRAIN_EPS, TRAIN_DECAY, TRAIN_MAX_NORM = 1e-4, (0.9, 0.95), 1e-8, 0.1, 1.0

# bench_ppo's shape and ppo_opts_default's settings.
PPO_SHAPE = {"n_layer": 4, "n_embd": 256, "n_head": 4, "vocab_size": 257, "n_positions": 128}
PPO_EOS = 256
PPO_BATCH, PPO_NEW, PPO_MINIBATCH, PPO_EPOCHS = 32, 48, 8, 4
PPO_TEMPERATURE, PPO_BETA, PPO_GAMMA, PPO_LAMBDA = 1.0, 0.2, 1.0, 0.95
PPO_CLIP, PPO_CLIP_VALUE, PPO_VF_COEF, PPO_RATIO_GUARD = 0.2, 0.2, 0.1, 10.0
PPO_LR, PPO_BETAS, PPO_EPS, PPO_DECAY, PPO_MAX_NORM = 1e-5, (0.9, 0.95), 1e-8, 0.1, 1.0
PPO_PROMPTS = [
    f"User: What is the capital of place number {i}?\nAssistant:".encode() for i in range(PPO_BATCH)
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, help="threads (default: plumb's run's, else all cores)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--plumb", help="plumb bench --json output, to print plumb/torch ratios")
    p.add_argument("--only", choices=("train", "generate", "ppo"),
                   help="run one benchmark only (train: training step and scoring)")
    a = p.parse_args()
    a.plumb_json = None
    if a.plumb:
        try:
            with open(a.plumb) as f:
                a.plumb_json = json.load(f)
        except (OSError, ValueError) as e:
            p.error(f"--plumb {a.plumb}: {e}")
        if not isinstance(a.plumb_json, list):
            p.error(f"--plumb {a.plumb}: not the JSON array of plumb bench --json")
    if a.threads is None:
        used = [e["blis"]["threads"] for e in a.plumb_json or [] if "threads" in e.get("blis", {})]
        a.threads = used[0] if used else os.cpu_count()
    if a.threads < 1 or a.steps < 1:
        p.error("--threads and --steps must be positive")
    return a


ARGS = parse_args()
# OpenBLAS sizes its own pool when it loads: it must match before torch loads it.
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class GPT2:
    """GPT-2 as Hugging Face computes it (Conv1D weights [in, out], tanh GELU), with
    GPT2ForSequenceClassification's scalar head when score_head is set."""

    def __init__(self, n_layer, n_embd, n_head, vocab_size, n_positions, gen, score_head=False):
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
        self.score = normal(1, C) if score_head else None

    def params(self):
        out = [self.wte, self.wpe]
        for w in self.layers:
            for name in ("ln1", "attn", "attn_proj", "ln2", "fc", "fc_proj"):
                out.extend(w[name])
        out.extend(self.lnf)
        if self.score is not None:
            out.append(self.score)
        return out

    def new_cache(self, B, T):
        hs = self.C // self.NH
        return torch.zeros(self.L, 2, B, self.NH, T, hs)

    def _qkv(self, w, x):
        """q, k, v of x [B, n, C], each [B, NH, n, hs]."""
        B, n, C = x.shape
        h = F.layer_norm(x, (C,), *w["ln1"], eps=1e-5)
        qkv = torch.addmm(w["attn"][1], h.view(-1, C), w["attn"][0])
        return qkv.view(B, n, 3, self.NH, C // self.NH).permute(2, 0, 3, 1, 4)

    def _rest(self, w, x, q, keys, values, mask):
        """The block after q, k, v: attention (mask True = may attend), projection, MLP."""
        B, n, C = x.shape
        att = (q @ keys.transpose(-2, -1)) * (1.0 / math.sqrt(C // self.NH))
        if mask is not None:
            att = att.masked_fill(~mask, float("-inf"))
        y = (att.softmax(dim=-1) @ values).transpose(1, 2).reshape(B * n, C)
        x = x + torch.addmm(w["attn_proj"][1], y, w["attn_proj"][0]).view(B, n, C)
        h = F.layer_norm(x, (C,), *w["ln2"], eps=1e-5)
        h = F.gelu(torch.addmm(w["fc"][1], h.view(-1, C), w["fc"][0]), approximate="tanh")
        return x + torch.addmm(w["fc_proj"][1], h, w["fc_proj"][0]).view(B, n, C)

    def forward(self, tokens, past, cache, pos=None, mask=None):
        """Logits after the last of tokens [B, n], at cache positions past.., cache updated.
        pos [B, n]: position ids (default past..); mask [B or 1, 1, n, past + n]: which cached
        positions each new one attends to (default: causal)."""
        B, n = tokens.shape
        if pos is None:
            pos = torch.arange(past, past + n)
        x = self.wte[tokens] + self.wpe[pos]
        if mask is None and n > 1:
            mask = torch.ones(n, past + n, dtype=torch.bool).tril(diagonal=past)
        for l, w in enumerate(self.layers):
            q, k, v = self._qkv(w, x)
            cache[l, 0, :, :, past : past + n] = k
            cache[l, 1, :, :, past : past + n] = v
            keys = cache[l, 0, :, :, : past + n]
            values = cache[l, 1, :, :, : past + n]
            x = self._rest(w, x, q, keys, values, mask)
        last = F.layer_norm(x[:, -1], (self.C,), *self.lnf, eps=1e-5)
        return F.linear(last, self.wte)

    def hidden(self, tokens):
        """Final LayerNorm output [B, T, C] of a causal forward over tokens [B, T], no cache."""
        T = tokens.shape[1]
        x = self.wte[tokens] + self.wpe[:T]
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        for w in self.layers:
            q, k, v = self._qkv(w, x)
            x = self._rest(w, x, q, k, v, mask)
        return F.layer_norm(x, (self.C,), *self.lnf, eps=1e-5)


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


def bench_generate():
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
    return results


# ---- training step and scoring ----


def openblas_core():
    """The OpenBLAS this process loaded (through torch) and the kernels it picked."""
    import ctypes

    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if "blas" in line and "/" in line}
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            lib.openblas_get_config.restype = ctypes.c_char_p
        except (OSError, AttributeError):
            continue
        par = {0: "sequential", 1: "pthreads", 2: "OpenMP"}.get(lib.openblas_get_parallel(), "?")
        return {"library": os.path.realpath(path),
                "core": lib.openblas_get_corename().decode(),
                "config": lib.openblas_get_config().decode(), "threading": par}
    return {"library": " ".join(sorted(paths)) or "none", "core": "not OpenBLAS"}


def train_batch(vocab):
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, vocab, (TRAIN_B, TRAIN_T), generator=gen)
    targets = torch.randint(0, vocab, (TRAIN_B, TRAIN_T), generator=gen)
    return tokens, targets


def train_rate(s):
    """Tokens/s of the training step, best of --steps after a warm-up."""
    V = s["train_vocab"]
    gen = torch.Generator().manual_seed(1)
    model = GPT2(s["n_layer"], s["n_embd"], s["n_head"], V, TRAIN_CONTEXT, gen)
    for p in model.params():
        p.requires_grad_()
    params = model.params()
    opt = torch.optim.AdamW(
        [{"params": [p for p in params if p.dim() >= 2], "weight_decay": TRAIN_DECAY},
         {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
        lr=TRAIN_LR, betas=TRAIN_BETAS, eps=TRAIN_EPS, foreach=True)
    tokens, targets = train_batch(V)
    best = float("inf")
    for rep in range(ARGS.steps + 1):
        t0 = time.perf_counter()
        logits = F.linear(model.hidden(tokens), model.wte)
        loss = F.cross_entropy(logits.view(-1, V), targets.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, TRAIN_MAX_NORM)
        opt.step()
        opt.zero_grad(set_to_none=True)
        del logits, loss
        dt = time.perf_counter() - t0
        if rep > 0:
            best = min(best, dt)
    return TRAIN_B * TRAIN_T / best


def score_rate(s):
    """Tokens/s of a no-grad forward with every position's log-prob of its target."""
    V = s["train_vocab"]
    gen = torch.Generator().manual_seed(1)
    model = GPT2(s["n_layer"], s["n_embd"], s["n_head"], V, TRAIN_CONTEXT, gen)
    tokens, targets = train_batch(V)
    best = float("inf")
    with torch.inference_mode():
        for rep in range(ARGS.steps + 1):
            t0 = time.perf_counter()
            logits = F.linear(model.hidden(tokens), model.wte)
            logp = logits.gather(-1, targets[..., None])[..., 0] - torch.logsumexp(logits, -1)
            del logits, logp
            dt = time.perf_counter() - t0
            if rep > 0:
                best = min(best, dt)
    return TRAIN_B * TRAIN_T / best


def bench_train():
    results = []
    for s in SHAPES:
        r = {"name": s["name"], "n_layer": s["n_layer"], "n_embd": s["n_embd"],
             "vocab_size": s["train_vocab"], "batch": TRAIN_B, "seq": TRAIN_T,
             "train": {"tokens_per_s": train_rate(s)}, "score": {"tokens_per_s": score_rate(s)}}
        results.append(r)
        print(f"torch {s['name']}: training step {r['train']['tokens_per_s']:.0f} tokens/s, "
              f"scoring {r['score']['tokens_per_s']:.0f} tokens/s", file=sys.stderr)
    return results


# ---- one PPO iteration ----


def ppo_model(seed, score_head, trainable):
    """Same seed, same weights: the reference is the policy's copy, the value model the
    reward model's."""
    s = PPO_SHAPE
    gen = torch.Generator().manual_seed(seed)
    m = GPT2(s["n_layer"], s["n_embd"], s["n_head"], s["vocab_size"], s["n_positions"], gen,
             score_head)
    if trainable:
        for p in m.params():
            p.requires_grad_()
    return m


def adamw(model):
    params = model.params()
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": PPO_DECAY},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=PPO_LR, betas=PPO_BETAS, eps=PPO_EPS)


class Rollout:
    """Row i: prompt i's plen[i] tokens then rlen[i] response tokens (the end token included
    when sampled) in full[i], padded with the end token; per-token arrays are [rows, PPO_NEW],
    response token t at column t."""

    def __init__(self, prompts, full, resp, logp, plen, rlen):
        self.prompts, self.full, self.resp, self.logp = prompts, full, resp, logp
        self.plen, self.rlen = plen, rlen
        self.mask = (torch.arange(PPO_NEW)[None, :] < rlen[:, None]).float()
        self.ref = self.values = self.adv = self.ret = None

    def tokens(self):
        return int((self.plen + self.rlen).sum())

    def rows(self, idx):
        """Rows idx as one right-padded batch as wide as the longest, and for each response
        token the position that predicts it: tokens [n, T], at [n, PPO_NEW]."""
        T = int((self.plen[idx] + self.rlen[idx]).max())
        at = (self.plen[idx, None] - 1 + torch.arange(PPO_NEW)[None, :]).clamp(max=T - 1)
        return self.full[idx, :T], at


def ppo_generate(policy, prompts, gen):
    """One response per prompt: the prompts left-padded to one length and prefilled together,
    then one token a step for all rows until every row has its end token or PPO_NEW tokens."""
    B = len(prompts)
    plen = torch.tensor([len(p) for p in prompts])
    P = int(plen.max())
    pad = P - plen
    left = torch.full((B, P), PPO_EOS, dtype=torch.long)
    for i, p in enumerate(prompts):
        left[i, P - len(p) :] = torch.tensor(list(p))
    # A padding position attends to itself only, so that no softmax row is empty.
    valid = torch.arange(P + PPO_NEW)[None, :] >= pad[:, None]
    causal = torch.ones(P, P, dtype=torch.bool).tril()
    prefill = (causal[None] & valid[:, None, :P]) | torch.eye(P, dtype=torch.bool)[None]
    cache = policy.new_cache(B, P + PPO_NEW)
    logits = policy.forward(left, 0, cache, (torch.arange(P)[None, :] - pad[:, None]).clamp(min=0),
                            prefill[:, None])
    resp = torch.full((B, PPO_NEW), PPO_EOS, dtype=torch.long)
    logp = torch.zeros(B, PPO_NEW)
    rlen = torch.full((B,), PPO_NEW, dtype=torch.long)
    done = torch.zeros(B, dtype=torch.bool)
    for t in range(PPO_NEW):
        lsm = torch.log_softmax(logits / PPO_TEMPERATURE, dim=-1)
        tok = torch.multinomial(lsm.exp(), 1, generator=gen)
        logp[:, t] = lsm.gather(1, tok)[:, 0]
        tok = tok.masked_fill(done[:, None], PPO_EOS)
        resp[:, t] = tok[:, 0]
        ended = ~done & (tok[:, 0] == PPO_EOS)
        rlen[ended] = t + 1
        done |= ended
        if t + 1 == PPO_NEW or bool(done.all()):
            break
        logits = policy.forward(tok, P + t, cache, (P + t - pad)[:, None],
                                valid[:, None, None, : P + t + 1])
    full = torch.full((B, P + PPO_NEW + 1), PPO_EOS, dtype=torch.long)
    for i, p in enumerate(prompts):
        full[i, : len(p)] = left[i, P - len(p) :]
        full[i, len(p) : len(p) + PPO_NEW] = resp[i]
    return Rollout(prompts, full, resp, logp, plen, rlen)


def response_logp(model, tokens, at, targets):
    """log p(targets) at positions at, the LM head over those positions only."""
    h = model.hidden(tokens)
    h = h[torch.arange(h.shape[0])[:, None], at]
    lsm = torch.log_softmax(F.linear(h, model.wte) / PPO_TEMPERATURE, dim=-1)
    return lsm.gather(-1, targets[..., None])[..., 0]


def response_values(model, tokens, at):
    h = model.hidden(tokens)
    return F.linear(h[torch.arange(h.shape[0])[:, None], at], model.score)[..., 0]


def ppo_score(ro, ref, value, reward):
    """Reference log-probs and values a minibatch of rows at a time, the reward model's score
    at the end token after each response, then rewards, advantages and returns."""
    B = len(ro.prompts)
    ro.ref = torch.zeros(B, PPO_NEW)
    ro.values = torch.zeros(B, PPO_NEW)
    scores = torch.zeros(B)
    for i0 in range(0, B, PPO_MINIBATCH):
        idx = torch.arange(i0, min(i0 + PPO_MINIBATCH, B))
        tokens, at = ro.rows(idx)
        ro.ref[idx] = response_logp(ref, tokens, at, ro.resp[idx])
        ro.values[idx] = response_values(value, tokens, at)
        # The reward sequence: prompt, response, and an end token unless the response has one.
        n = ro.plen[idx] + ro.rlen[idx] + (ro.resp[idx, ro.rlen[idx] - 1] != PPO_EOS).long()
        h = reward.hidden(ro.full[idx, : int(n.max())])
        scores[idx] = F.linear(h[torch.arange(len(idx)), n - 1], reward.score)[:, 0]
    mask = ro.mask
    ro.values *= mask
    kl = (ro.logp - ro.ref) * mask
    rewards = -PPO_BETA * kl
    rewards[torch.arange(B), ro.rlen - 1] += scores
    adv = torch.zeros(B, PPO_NEW)
    last = torch.zeros(B)
    for t in reversed(range(PPO_NEW)):
        nxt = ro.values[:, t + 1] if t + 1 < PPO_NEW else torch.zeros(B)
        last = rewards[:, t] + PPO_GAMMA * nxt - ro.values[:, t] + PPO_GAMMA * PPO_LAMBDA * last
        adv[:, t] = last
    ro.ret = adv + ro.values
    k = mask.sum()
    mean = (adv * mask).sum() / k
    var = (((adv - mean) * mask) ** 2).sum() / (k - 1)
    ro.adv = (adv - mean) * torch.rsqrt(var + 1e-8) * mask
    return float(scores.mean()), float(kl.sum() / B)


def ppo_update(ro, policy, value, opts, gen):
    """PPO_EPOCHS passes over the rollout in shuffled minibatches, one optimizer step of both
    models each; returns the seconds of forwards, losses and backwards and of the optimizer
    steps."""
    B = len(ro.prompts)
    fwd_bwd = optim = 0.0
    for _ in range(PPO_EPOCHS):
        perm = torch.randperm(B, generator=gen)
        for i0 in range(0, B, PPO_MINIBATCH):
            t0 = time.perf_counter()
            idx = perm[i0 : i0 + PPO_MINIBATCH]
            tokens, at = ro.rows(idx)
            mask = ro.mask[idx]
            lp = response_logp(policy, tokens, at, ro.resp[idx])
            v = response_values(value, tokens, at)
            ratio = torch.exp(lp - ro.logp[idx])
            adv = ro.adv[idx]
            pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - PPO_CLIP, 1 + PPO_CLIP))
            old, ret = ro.values[idx], ro.ret[idx]
            vc = old + (v - old).clamp(-PPO_CLIP_VALUE, PPO_CLIP_VALUE)
            vf = 0.5 * torch.max((v - ret) ** 2, (vc - ret) ** 2)
            count = mask.sum()
            loss = ((pg + PPO_VF_COEF * vf) * mask).sum() / count
            skip = float((ratio.detach() * mask).sum() / count) > PPO_RATIO_GUARD
            if not skip:
                loss.backward()
            t1 = time.perf_counter()
            if not skip:
                for m, opt in zip((policy, value), opts):
                    torch.nn.utils.clip_grad_norm_(m.params(), PPO_MAX_NORM)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
            t2 = time.perf_counter()
            fwd_bwd += t1 - t0
            optim += t2 - t1
    return fwd_bwd, optim


def ppo_iteration(models, opts, gen):
    policy, ref, value, reward = models
    order = torch.randperm(PPO_BATCH, generator=gen).tolist()
    t0 = time.perf_counter()
    with torch.no_grad():
        ro = ppo_generate(policy, [PPO_PROMPTS[i] for i in order], gen)
        t1 = time.perf_counter()
        score, kl = ppo_score(ro, ref, value, reward)
    t2 = time.perf_counter()
    update, optim = ppo_update(ro, policy, value, opts, gen)
    wall = time.perf_counter() - t0
    tokens = ro.tokens()
    return {
        "generation_s": t1 - t0,
        "scoring_s": t2 - t1,
        "update_s": update,
        "optimizer_s": optim,
        "wall_s": wall,
        "tokens": tokens,
        "tokens_per_s": tokens / (t1 - t0 + t2 - t1 + update),
        "wall_tokens_per_s": tokens / wall,
        "response_tokens": int(ro.rlen.sum()),
        "mean_score": score,
        "mean_kl": kl,
    }


def bench_ppo():
    models = (ppo_model(1, False, True), ppo_model(1, False, False), ppo_model(2, True, True),
              ppo_model(2, True, False))
    opts = (adamw(models[0]), adamw(models[2]))
    gen = torch.Generator().manual_seed(3)
    ppo_iteration(models, opts, gen)
    r = ppo_iteration(models, opts, gen)
    r["shape"] = "4x256 byte, batch 32, 48 new tokens"
    print(
        f"torch ppo iteration: generation {r['generation_s']:.3f} s, scoring "
        f"{r['scoring_s']:.3f} s, update {r['update_s']:.3f} s + optimizer {r['optimizer_s']:.3f} "
        f"s; {r['tokens']} tokens, {r['tokens_per_s']:.0f} tokens/s "
        f"({r['wall_tokens_per_s']:.0f} over the wall time)",
        file=sys.stderr,
    )
    return r


def main():
    torch.set_num_threads(ARGS.threads)
    out = {"torch": torch.__version__, "threads": ARGS.threads}
    if ARGS.only in (None, "train"):
        out["train_shapes"] = bench_train()
    if ARGS.only in (None, "generate"):
        out["shapes"] = bench_generate()
    if ARGS.only in (None, "ppo"):
        out["ppo_iteration"] = bench_ppo()
    out["blas"] = openblas_core()
    print(json.dumps(out))
    if ARGS.plumb_json is not None:
        print_table(out)


def plumb_shape(t, vocab_of):
    """plumb's result for torch's shape t, matched on depth, width and vocab_of(result)."""
    for p in ARGS.plumb_json:
        if ("shape" in p and p["shape"]["n_layer"] == t["n_layer"]
                and p["shape"]["n_embd"] == t["n_embd"] and vocab_of(p) == t["vocab_size"]):
            return p
    return None


def ratio_rows(out):
    """(what, shape, plumb figure, torch figure, unit, plumb/torch speed) for every figure both
    sides measured."""
    rows = []
    for t in out.get("train_shapes", []):
        p = plumb_shape(t, lambda p: p["shape"]["vocab_size"])
        for what, key in (("training step", "train"), ("scoring", "score")):
            if p is None or key not in p:
                print(f"{t['name']} {what}: no plumb figure", file=sys.stderr)
                continue
            mine, theirs = p[key]["tokens_per_s"], t[key]["tokens_per_s"]
            rows.append((f"{what}, batch {t['batch']} x {t['seq']}", t["name"], mine, theirs,
                         "tokens/s", mine / theirs))
    for t in out.get("shapes", []):
        p = plumb_shape(t, lambda p: p.get("generate", {}).get("vocab_size"))
        for b, n in (("b1", 1), ("b32", 32)):
            if p is None:
                print(f"{t['name']} generation: no plumb figure", file=sys.stderr)
                break
            mine, theirs = p["generate"][b]["tokens_per_s"], t["generate"][b]["tokens_per_s"]
            rows.append((f"generation, batch {n}", t["name"] + " vocab 50257", mine, theirs,
                         "tokens/s", mine / theirs))
    t = out.get("ppo_iteration")
    match = [p["ppo_iteration"] for p in ARGS.plumb_json if "ppo_iteration" in p]
    if t and match:
        p = match[0]
        for what, mine, theirs in (
            ("ppo generation", p["generation_s"], t["generation_s"]),
            ("ppo scoring", p["scoring_s"], t["scoring_s"]),
            ("ppo update", p["update_s"], t["update_s"] + t["optimizer_s"]),
        ):
            rows.append((what, "4x256 byte", mine, theirs, "s", theirs / mine))
        rows.append(("ppo iteration", "4x256 byte", p["tokens_per_s"], t["wall_tokens_per_s"],
                     "tokens/s", p["tokens_per_s"] / t["wall_tokens_per_s"]))
    elif t:
        print("ppo iteration: no plumb figures", file=sys.stderr)
    return rows


def print_table(out):
    blas = out["blas"]
    print(f"plumb/torch from one run: {out['threads']} threads each, torch {out['torch']} on "
          f"{blas['library']} (OpenBLAS core {blas['core']}, {blas.get('threading', '?')})")
    print("| work | shape | plumb | torch | unit | plumb / torch |")
    print("|---|---|---|---|---|---|")
    for what, shape, mine, theirs, unit, ratio in ratio_rows(out):
        print(f"| {what} | {shape} | {mine:.4g} | {theirs:.4g} | {unit} | **{ratio:.2f}** |")


if __name__ == "__main__":
    main()
