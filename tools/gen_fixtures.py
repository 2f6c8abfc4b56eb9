#!/usr/bin/python3
"""gen_fixtures.py: regenerate plumb's tiny GPT-2 test fixtures with PyTorch.

Run from anywhere (paths are relative to the repo root, the parent of tools/):

    python3 tools/gen_fixtures.py          # needs Debian's python3-torch (+ numpy)

If the `python3` on PATH has no torch (a pyenv shim, say), the script re-executes
itself with /usr/bin/python3. The outputs are committed; CI and `make test` only
READ them and never need Python or torch. Regenerate only when the fixture design
changes. Everything is deterministic (fixed seeds, CPU, float64 reference).

What it writes (all under tests/data/):

  tiny-gpt2/                     the main checkpoint, F32, names without prefix
    config.json                  HF GPT-2 config (vocab 300, P 32, C 32, L 2, H 4)
    model.safetensors            hand-written safetensors: wte, wpe, h.N.*, ln_f.*,
                                 plus score.weight [1, C] (scalar head, as in
                                 GPT2ForSequenceClassification, never prefixed)
    vocab.json, merges.txt       a tiny made-up GPT-2-format byte-level BPE:
                                 ids 0..255 = GPT-2's byte symbols in encoder.json
                                 order, 256..298 = 43 merges, 299 = <|endoftext|>
    expected.json                tokens/targets, logits, log-probs, loss, scalar-head
                                 outputs and selected gradients (schema below)
    tokenizer_expected.json      strings and their ids under the tiny BPE (the
                                 GPT-2 regex is hand-compiled below with unicodedata;
                                 it agrees with the `regex` module on every code
                                 point assigned in Python's Unicode version)
  tiny-gpt2-f16/                 the same weights rounded to F16, names with the
                                 `transformer.` prefix (score.weight unprefixed, as HF
                                 saves it), plus HF's old h.N.attn.bias [1,1,P,P] and
                                 h.N.attn.masked_bias [] buffers the loader must
                                 ignore; header keys sorted, __metadata__ first
    tiny-gpt2-bf16/              the same weights rounded to BF16, no prefix
      (each variant: config.json, model.safetensors, vocab.json, merges.txt and an
       expected.json for ITS rounded weights: same schema minus the gradients)

expected.json (all arrays flat, row-major; floats have 7 significant digits):
  {"reference": str, "dtype": "F32"|"F16"|"BF16", "B": 2, "T": 12, "V": 300,
   "tokens": [B*T] ints, "targets": [B*T] ints (-1 = ignored),
   "last": [B] index of each row's last real token (read the scalar head there),
   "logits_rows": [R] flat rows r = b*T+t whose logits are recorded
                  (main: all 0..B*T-1; variants: [0, 11, 19, 23]),
   "logits": [R*V] logits of those rows, in that order,
   "logp": [B*T] log p(target) (0 where target is -1),
   "loss": mean -logp over targets >= 0, "n_targets": int, "head": [B],
   "loss_grads": [{"name", "shape", "data"}]   d loss / d tensor (main only),
   "head_grads": [{"name", "shape", "data"}]   d sum(head) / d tensor, a separate
                                               backward of that objective (main only),
   "torch_f32_max_abs_diff": {"logits", "logp", "loss", "head", "loss_grads",
                              "head_grads"}  how far plain float32 PyTorch lands
                                             from the float64 reference,
   "logits_max_abs_diff_vs_f32": float (variants only: rounding's effect)}

Reference values are the float64 PyTorch forward/backward of the stored weights
(exactly the weights on disk, widened), printed with 7 significant digits.
The model is checked against a second loop-by-loop float64 writing of itself and
its gradients against central finite differences before anything is written.
"""

import json
import math
import os
import struct
import sys
import unicodedata
from collections import Counter

# ---------------------------------------------------------------------------
# Configuration

SEED = 1234
VOCAB_BYTES = 256
N_MERGES = 43
EOT = "<|endoftext|>"
CONFIG = {
    "vocab_size": VOCAB_BYTES + N_MERGES + 1,
    "n_positions": 32,
    "n_ctx": 32,
    "n_embd": 32,
    "n_layer": 2,
    "n_head": 4,
    "layer_norm_epsilon": 1e-5,
    "activation_function": "gelu_new",
    "bos_token_id": VOCAB_BYTES + N_MERGES,
    "eos_token_id": VOCAB_BYTES + N_MERGES,
}
B, T = 2, 12
LAST = [T - 1, 7]  # second row: 8 real tokens, then <|endoftext|> padding
ALL_ROWS = list(range(B * T))  # logits recorded at these flat rows b*T+t (main)
VARIANT_ROWS = [0, T - 1, T + LAST[1], 2 * T - 1]  # (F16/BF16 variants: a few rows)

LOSS_GRADS = ["wte.weight", "wpe.weight", "h.0.attn.c_attn.weight", "h.1.mlp.c_fc.weight",
              "h.1.ln_2.weight", "ln_f.bias"]
HEAD_GRADS = ["score.weight", "h.1.mlp.c_proj.weight"]

GPT2_BPE_DIR = os.environ.get("GPT2_BPE_DIR", "/work/shared/datasets/gpt2-bpe")

# ---------------------------------------------------------------------------
# Tokenizer (pure Python; importable without torch)


def bytes_to_unicode():
    """GPT-2's byte -> printable symbol map. Returns (bytes in id order, symbols)."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
          + list(range(ord("\xae"), ord("\xff") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return bs, [chr(c) for c in cs]


_BS, _CS = bytes_to_unicode()
BYTE_SYM = dict(zip(_BS, _CS))  # byte value -> symbol

# Unicode White_Space (what the `regex` module's \s matches). PCRE2's \s with UCP
# differs only on U+0085 (NEL); the fixtures avoid it.
_WS = set([0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F,
           0x205F, 0x3000] + list(range(0x2000, 0x200B)))


def _is_ws(ch):
    return ord(ch) in _WS


def _is_l(ch):
    return unicodedata.category(ch).startswith("L")


def _is_n(ch):
    return unicodedata.category(ch).startswith("N")


def _is_other(ch):
    return not (_is_ws(ch) or _is_l(ch) or _is_n(ch))


_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def pretokenize(text):
    """GPT-2's pattern, hand-compiled (python's `re` has no \\p{L}):
    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"""
    out = []
    i, n = 0, len(text)

    def run(j, pred):
        while j < n and pred(text[j]):
            j += 1
        return j

    while i < n:
        m = None
        for c in _CONTRACTIONS:
            if text.startswith(c, i):
                m = i + len(c)
                break
        if m is None:
            for pred in (_is_l, _is_n, _is_other):
                if text[i] == " " and i + 1 < n and pred(text[i + 1]):
                    m = run(i + 1, pred)
                    break
                if pred(text[i]):
                    m = run(i, pred)
                    break
        if m is None:  # text[i] is whitespace
            j = run(i, _is_ws)
            if j == n:
                m = j  # \s+(?!\S) up to the end
            elif j - i >= 2:
                m = j - 1  # \s+(?!\S): leave the last space for the next word
            else:
                m = j  # \s+
        out.append(text[i:m])
        i = m
    return out


def to_symbols(chunk):
    return [BYTE_SYM[b] for b in chunk.encode("utf-8")]


def bpe(symbols, ranks):
    word = list(symbols)
    while len(word) > 1:
        best, best_rank = None, None
        for p in zip(word, word[1:]):
            r = ranks.get(p)
            if r is not None and (best_rank is None or r < best_rank):
                best, best_rank = p, r
        if best is None:
            break
        merged, i = [], 0
        while i < len(word):
            if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                merged.append(word[i] + word[i + 1])
                i += 2
            else:
                merged.append(word[i])
                i += 1
        word = merged
    return word


def encode(text, vocab, ranks):
    ids, toks = [], []
    for chunk in pretokenize(text):
        for s in bpe(to_symbols(chunk), ranks):
            ids.append(vocab[s])
            toks.append(s)
    return ids, toks


# Made-up English for learning the merges.
CORPUS = """\
The cat sat on the mat, and the dog sat there with the other cat.
There is nothing better than reading in the evening: the fire is warm and the tea is hot.
She was singing while he was dancing; they were both smiling at the end of the song.
Then the teacher asked the students whether they were ready for the test on Thursday.
Her brother went to the market to sell the wheat, the eggs and the leather he had made.
In the morning the weather was better, so they started walking together along the river.
Everything that happened there is written in the letter she sent to her mother.
The winter is long here, but the summer is sweet and the evenings are bright.
"""


def learn_merges(corpus, n_merges):
    """Greedy byte-level BPE: merge the most frequent adjacent pair (ties: the
    lexicographically greatest pair), counting within pre-tokenized words."""
    words = Counter(pretokenize(corpus))
    seqs = {w: to_symbols(w) for w in words}
    vocab_syms = set(_CS)
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for w, c in words.items():
            s = seqs[w]
            for p in zip(s, s[1:]):
                pairs[p] += c
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        new = best[0] + best[1]
        assert new not in vocab_syms, new
        vocab_syms.add(new)
        merges.append(best)
        for w in seqs:
            s, out, i = seqs[w], [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(new)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    return merges


def build_tokenizer():
    merges = learn_merges(CORPUS, N_MERGES)
    vocab = {}
    for i, s in enumerate(_CS):
        vocab[s] = i
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab[EOT] = len(vocab)
    assert len(vocab) == CONFIG["vocab_size"] and vocab[EOT] == CONFIG["eos_token_id"]
    ranks = {p: i for i, p in enumerate(merges)}
    return vocab, merges, ranks


TOKENIZER_CASES = [
    "the cat sat on the mat.",
    "The weather is better there in the evening!",
    "Hello, world! It's 2024 and they're singing.",
    "don't we'll you've I'm he'd she's 'S 'LL",
    "  leading spaces,   inner   runs,\ttabs\nand\n\nnewlines\n",
    "trailing spaces   ",
    "numbers: 3.14159, 1,000,000 and -42%",
    "punctuation!!! ...?? (brackets) [x] {y} <z> @#$%^&*",
    "caf\u00e9 na\u00efve \u00fcber Stra\u00dfe \u2014 \u65e5\u672c\u8a9e \u0440\u0443\u0441\u0441\u043a\u0438\u0439",
    "emoji \U0001F600\U0001F44D and symbols \u00a9 \u20ac5 \u00bd",
    "x",
    "",
    "one<|endoftext|>two <|endoftext|>",
]


def self_check_gpt2_bpe():
    """Check pretokenize/bpe against a few well-known GPT-2 ids, when the real
    GPT-2 vocabulary is at hand."""
    enc_path = os.path.join(GPT2_BPE_DIR, "encoder.json")
    bpe_path = os.path.join(GPT2_BPE_DIR, "vocab.bpe")
    if not (os.path.exists(enc_path) and os.path.exists(bpe_path)):
        print("note: %s absent, skipping the GPT-2 BPE self-check" % GPT2_BPE_DIR)
        return
    with open(enc_path, encoding="utf-8") as f:
        enc = json.load(f)
    first = [k for k, _ in sorted(enc.items(), key=lambda kv: kv[1])[:256]]
    assert first == _CS, "byte symbol order differs from encoder.json"
    with open(bpe_path, encoding="utf-8") as f:
        lines = f.read().split("\n")[1:]
    ranks = {tuple(l.split()): i for i, l in enumerate(l for l in lines if l)}
    known = {
        "Hello world": [15496, 995],
        "Hello, world!": [15496, 11, 995, 0],
        " the": [262],
        "The quick brown fox": [464, 2068, 7586, 21831],
    }
    for text, want in known.items():
        got, _ = encode(text, enc, ranks)
        assert got == want, (text, got, want)
    print("GPT-2 BPE self-check passed (byte order, %d known encodings)" % len(known))


# ---------------------------------------------------------------------------
# JSON output with compact float32 numbers


class F32:
    """A flat float array, written as float32 shortest-repr numbers."""

    def __init__(self, values):
        self.values = values


def _f32(x):
    """7 significant digits: within float32's own rounding (2^-24 = 6e-8 relative)
    of the float64 reference, and about 15% smaller than a round-trip repr."""
    assert math.isfinite(x), x
    s = "%.7g" % x
    if "e" in s:
        m, e = s.split("e")
        s = m + "e" + str(int(e))
    return s


def dumps(obj, indent=0):
    pad = "  " * indent
    if isinstance(obj, F32):
        return "[" + ",".join(_f32(v) for v in obj.values) + "]"
    if isinstance(obj, dict):
        items = ["%s  %s: %s" % (pad, json.dumps(k), dumps(v, indent + 1)) for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and any(isinstance(v, (dict, F32)) for v in obj):
        items = ["%s  %s" % (pad, dumps(v, indent + 1)) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    if isinstance(obj, float):
        assert math.isfinite(obj)
        return repr(obj)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def write_text(path, text):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


# ---------------------------------------------------------------------------
# Safetensors


def write_safetensors(path, entries, metadata_first):
    """entries: list of (name, dtype, shape, raw little-endian bytes), written in order."""
    header = {}
    if metadata_first:
        header["__metadata__"] = {"format": "pt"}
    off = 0
    for name, dtype, shape, raw in entries:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    if not metadata_first:
        header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((-len(hb)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for _, _, _, raw in entries:
            f.write(raw)


def read_safetensors(path):
    """Independent reader for the round-trip check: name -> (dtype, shape, float64 list)."""
    import numpy as np
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    assert n % 8 == 0
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    out, end = {}, 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        end = max(end, b)
        raw = data[a:b]
        if info["dtype"] == "F32":
            arr = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        elif info["dtype"] == "F16":
            arr = np.frombuffer(raw, dtype="<f2").astype(np.float64)
        elif info["dtype"] == "BF16":
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32).astype(np.float64)
        else:
            raise ValueError(info["dtype"])
        assert arr.size == int(np.prod(info["shape"])) if info["shape"] else arr.size == 1
        out[name] = (info["dtype"], info["shape"], arr)
    assert end == len(data)
    return out


def tensor_bytes(t, dtype):
    import torch
    t = t.detach().contiguous()
    if dtype == "F32":
        return t.float().numpy().astype("<f4").tobytes()
    if dtype == "F16":
        return t.half().numpy().astype("<f2").tobytes()
    if dtype == "BF16":
        return t.bfloat16().view(torch.int16).numpy().astype("<i2").tobytes()
    raise ValueError(dtype)


def round_to(t, dtype):
    import torch
    if dtype == "F32":
        return t.float().clone()
    return t.to(torch.float16 if dtype == "F16" else torch.bfloat16).float()


# ---------------------------------------------------------------------------
# The model


def param_shapes(cfg):
    V, P, C = cfg["vocab_size"], cfg["n_positions"], cfg["n_embd"]
    shapes = [("wte.weight", [V, C]), ("wpe.weight", [P, C])]
    for l in range(cfg["n_layer"]):
        p = "h.%d." % l
        shapes += [
            (p + "ln_1.weight", [C]), (p + "ln_1.bias", [C]),
            (p + "attn.c_attn.weight", [C, 3 * C]), (p + "attn.c_attn.bias", [3 * C]),
            (p + "attn.c_proj.weight", [C, C]), (p + "attn.c_proj.bias", [C]),
            (p + "ln_2.weight", [C]), (p + "ln_2.bias", [C]),
            (p + "mlp.c_fc.weight", [C, 4 * C]), (p + "mlp.c_fc.bias", [4 * C]),
            (p + "mlp.c_proj.weight", [4 * C, C]), (p + "mlp.c_proj.bias", [C]),
        ]
    shapes += [("ln_f.weight", [C]), ("ln_f.bias", [C]), ("score.weight", [1, C])]
    return shapes


def init_params(cfg, seed):
    """Non-trivial random init so every parameter matters: N(0, 0.1) matrices
    and embeddings, linear biases 0.1*N(0,1), LayerNorm weight 1 + 0.1*N(0,1) and
    bias 0.1*N(0,1). float32."""
    import torch
    g = torch.Generator().manual_seed(seed)
    params = {}
    for name, shape in param_shapes(cfg):
        noise = torch.randn(shape, generator=g, dtype=torch.float32)
        if (name.endswith(".weight") and ("ln_" in name)):
            t = 1.0 + 0.1 * noise
        else:
            t = 0.1 * noise
        params[name] = t
    return params


def gelu_new(x):
    import torch
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def forward(P, cfg, tokens):
    """HF GPT2LMHeadModel in eval mode. Returns (final LayerNorm output, logits)."""
    import torch
    import torch.nn.functional as F
    Bn, Tn = tokens.shape
    C, H = cfg["n_embd"], cfg["n_head"]
    D = C // H
    eps = cfg["layer_norm_epsilon"]
    x = P["wte.weight"][tokens] + P["wpe.weight"][torch.arange(Tn)][None]
    causal = torch.tril(torch.ones(Tn, Tn, dtype=torch.bool))
    for l in range(cfg["n_layer"]):
        p = "h.%d." % l
        h = F.layer_norm(x, (C,), P[p + "ln_1.weight"], P[p + "ln_1.bias"], eps)
        qkv = h @ P[p + "attn.c_attn.weight"] + P[p + "attn.c_attn.bias"]  # Conv1D
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (t.view(Bn, Tn, H, D).transpose(1, 2) for t in (q, k, v))
        att = q @ k.transpose(-1, -2)
        att = att / torch.full([], D ** 0.5, dtype=att.dtype)
        att = torch.where(causal, att, torch.tensor(torch.finfo(att.dtype).min, dtype=att.dtype))
        att = torch.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(Bn, Tn, C)
        x = x + (y @ P[p + "attn.c_proj.weight"] + P[p + "attn.c_proj.bias"])
        h = F.layer_norm(x, (C,), P[p + "ln_2.weight"], P[p + "ln_2.bias"], eps)
        h = gelu_new(h @ P[p + "mlp.c_fc.weight"] + P[p + "mlp.c_fc.bias"])
        x = x + (h @ P[p + "mlp.c_proj.weight"] + P[p + "mlp.c_proj.bias"])
    hf = F.layer_norm(x, (C,), P["ln_f.weight"], P["ln_f.bias"], eps)
    return hf, hf @ P["wte.weight"].t()


def forward_naive(P, cfg, tokens):
    """A second, loop-by-loop writing of the same model (explicit LayerNorm,
    per-head attention with -inf masking), used only to cross-check forward()."""
    import torch
    Bn, Tn = tokens.shape
    C, H = cfg["n_embd"], cfg["n_head"]
    D = C // H
    eps = cfg["layer_norm_epsilon"]

    def ln(x, w, b):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + eps) * w + b

    def gelu(x):
        c = math.sqrt(2.0 / math.pi)
        return 0.5 * x * (1.0 + torch.tanh(c * (x + 0.044715 * x * x * x)))

    logits, hfs = [], []
    for bi in range(Bn):
        x = torch.stack([P["wte.weight"][tokens[bi, t]] + P["wpe.weight"][t] for t in range(Tn)])
        for l in range(cfg["n_layer"]):
            p = "h.%d." % l
            h = ln(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"])
            W, bb = P[p + "attn.c_attn.weight"], P[p + "attn.c_attn.bias"]
            heads = []
            for hh in range(H):
                cols = slice(hh * D, (hh + 1) * D)
                q = h @ W[:, 0 * C:1 * C][:, cols] + bb[0 * C:1 * C][cols]
                k = h @ W[:, 1 * C:2 * C][:, cols] + bb[1 * C:2 * C][cols]
                v = h @ W[:, 2 * C:3 * C][:, cols] + bb[2 * C:3 * C][cols]
                rows = []
                for t in range(Tn):
                    s = (k[:t + 1] @ q[t]) / math.sqrt(D)
                    a = torch.exp(s - s.max())
                    a = a / a.sum()
                    rows.append(a @ v[:t + 1])
                heads.append(torch.stack(rows))
            y = torch.cat(heads, dim=1)
            x = x + y @ P[p + "attn.c_proj.weight"] + P[p + "attn.c_proj.bias"]
            h = ln(x, P[p + "ln_2.weight"], P[p + "ln_2.bias"])
            h = gelu(h @ P[p + "mlp.c_fc.weight"] + P[p + "mlp.c_fc.bias"])
            x = x + h @ P[p + "mlp.c_proj.weight"] + P[p + "mlp.c_proj.bias"]
        hf = ln(x, P["ln_f.weight"], P["ln_f.bias"])
        hfs.append(hf)
        logits.append(hf @ P["wte.weight"].t())
    return torch.stack(hfs), torch.stack(logits)


def objectives(P, cfg, tokens, targets, last):
    import torch
    import torch.nn.functional as F
    hf, logits = forward(P, cfg, tokens)
    V = cfg["vocab_size"]
    loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-1)
    lp = torch.log_softmax(logits.reshape(-1, V), dim=-1)
    t = targets.reshape(-1)
    logp = torch.where(t >= 0, lp.gather(1, t.clamp(min=0)[:, None])[:, 0], torch.zeros((), dtype=lp.dtype))
    rows = hf[torch.arange(hf.shape[0]), torch.tensor(last)]  # [B, C]
    head = (rows @ P["score.weight"].t())[:, 0]
    return logits, logp, loss, head


def evaluate(P32, cfg, tokens, targets, last):
    """Reference values in float64 and the float32 run for comparison."""
    import torch
    out = {}
    for prec in (torch.float64, torch.float32):
        P = {k: v.to(prec).clone().requires_grad_(True) for k, v in P32.items()}
        logits, logp, loss, head = objectives(P, cfg, tokens, targets, last)
        g_loss = torch.autograd.grad(loss, [P[n] for n in LOSS_GRADS], retain_graph=True)
        g_head = torch.autograd.grad(head.sum(), [P[n] for n in HEAD_GRADS])
        out[prec] = dict(logits=logits.detach(), logp=logp.detach(), loss=loss.detach(),
                         head=head.detach(), loss_grads=[g.detach() for g in g_loss],
                         head_grads=[g.detach() for g in g_head])
    r64, r32 = out[torch.float64], out[torch.float32]

    def mad(a, b):
        return float((a.double() - b.double()).abs().max())

    diffs = {k: mad(r64[k], r32[k]) for k in ("logits", "logp", "loss", "head")}
    diffs["loss_grads"] = max(mad(a, b) for a, b in zip(r64["loss_grads"], r32["loss_grads"]))
    diffs["head_grads"] = max(mad(a, b) for a, b in zip(r64["head_grads"], r32["head_grads"]))
    return r64, diffs


def finite_difference_checks(P32, cfg, tokens, targets, last, r64):
    """Central differences in float64 on a few elements of each gradient list."""
    P = {k: v.double().clone() for k, v in P32.items()}
    checks = [("loss", "wte.weight", (7, 3)), ("loss", "wte.weight", (tokens[0, 4].item(), 11)),
              ("loss", "h.0.attn.c_attn.weight", (5, 40)), ("loss", "h.1.ln_2.weight", (9,)),
              ("loss", "wpe.weight", (2, 17)), ("head", "h.1.mlp.c_proj.weight", (100, 6)),
              ("head", "score.weight", (0, 21))]
    eps = 1e-6
    worst = 0.0
    for obj, name, idx in checks:
        def f(delta):
            Q = dict(P)
            t = P[name].clone()
            t[idx] += delta
            Q[name] = t
            _, _, loss, head = objectives(Q, cfg, tokens, targets, last)
            return float(loss) if obj == "loss" else float(head.sum())
        fd = (f(eps) - f(-eps)) / (2 * eps)
        names = LOSS_GRADS if obj == "loss" else HEAD_GRADS
        grads = r64["loss_grads"] if obj == "loss" else r64["head_grads"]
        ad = float(grads[names.index(name)][idx])
        err = abs(fd - ad) / max(1e-8, abs(ad))
        worst = max(worst, err)
        print("  fd %-4s d/d %s%s: autograd %.10g  fd %.10g  rel %.1e" % (obj, name, list(idx), ad, fd, err))
        assert abs(fd - ad) <= 1e-7 + 1e-5 * abs(ad), (name, idx, ad, fd)
    return worst


# ---------------------------------------------------------------------------
# Fixture assembly


def make_batch(vocab_size, eot, seed):
    import torch
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(0, vocab_size, (B, T + 1), generator=g)
    seq[0, 5] = eot  # a document boundary inside row 0
    seq[0, 9] = vocab_size - 2  # the last merge
    L1 = LAST[1] + 1
    seq[1, L1:] = eot  # row 1: L1 real tokens, then <|endoftext|> padding
    tokens = seq[:, :T].clone()
    targets = seq[:, 1:].clone()
    targets[0, :3] = -1  # prompt positions: no loss
    targets[1, :2] = -1
    targets[1, L1:] = -1  # padding (target at LAST[1] is the closing <|endoftext|>)
    return tokens, targets


def config_json(dtype):
    cfg = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}
    cfg.update(CONFIG)
    # plumb's own field (ckpt.h): without it a vocab that is not 50257 means "byte".
    cfg["tokenizer"] = "gpt2"
    # Fields real GPT-2 configs carry that the loader may ignore.
    cfg.update({"attn_pdrop": 0.1, "embd_pdrop": 0.1, "resid_pdrop": 0.1, "initializer_range": 0.02,
                "n_inner": None, "torch_dtype": {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[dtype]})
    return json.dumps(cfg, indent=2) + "\n"


def expected_doc(dtype, tokens, targets, r64, diffs, extra, logit_rows):
    doc = {
        "reference": "float64 PyTorch forward/backward of the %s weights stored in model.safetensors "
                     "(HF GPT2LMHeadModel numerics), printed with 7 significant digits" % dtype,
        "dtype": dtype, "B": B, "T": T, "V": CONFIG["vocab_size"],
        "tokens": tokens.reshape(-1).tolist(),
        "targets": targets.reshape(-1).tolist(),
        "last": LAST,
        "logits_rows": logit_rows,
        "logits": F32(r64["logits"].reshape(B * T, -1)[logit_rows].reshape(-1).tolist()),
        "logp": F32(r64["logp"].tolist()),
        "loss": float(r64["loss"]),
        "n_targets": int((targets >= 0).sum()),
        "head": [float(h) for h in r64["head"]],
    }
    doc.update(extra)
    doc["torch_f32_max_abs_diff"] = diffs
    return doc


def main():
    try:
        import numpy  # noqa: F401
        import torch
    except ImportError:
        deb = "/usr/bin/python3"
        if (os.path.exists(deb) and os.path.realpath(sys.executable) != os.path.realpath(deb)
                and not os.environ.get("GEN_FIXTURES_REEXEC")):
            os.environ["GEN_FIXTURES_REEXEC"] = "1"
            os.execv(deb, [deb] + sys.argv)
        sys.exit("gen_fixtures.py needs PyTorch and numpy (Debian: apt-get install python3-torch)")

    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # bit-reproducible float32 comparisons
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    data = os.path.join(root, "tests", "data")

    # Tokenizer.
    self_check_gpt2_bpe()
    vocab, merges, ranks = build_tokenizer()
    eot = vocab[EOT]
    vocab_txt = json.dumps(vocab, ensure_ascii=False, separators=(",", ":")) + "\n"
    merges_txt = "#version: 0.2\n" + "".join("%s %s\n" % m for m in merges)
    print("merges:", " ".join(a + b for a, b in merges).replace("\u0120", "_"))
    cases = []
    for text in TOKENIZER_CASES:
        ids, toks = encode(text, vocab, ranks)
        assert "".join(toks) == "".join(to_symbols(text))
        special = []
        for k, part in enumerate(text.split(EOT)):
            if k:
                special.append(eot)
            special += encode(part, vocab, ranks)[0]
        cases.append({"text": text, "ids": ids, "ids_special": special})
    tok_doc = {"vocab_size": len(vocab), "eot_id": eot,
               "note": "GPT-2 pre-tokenization regex + byte-level BPE over vocab.json/merges.txt, "
                       "no BOS/EOS added. ids: <|endoftext|> in the text is ordinary characters "
                       "(tok_encode flags 0); ids_special: it is the eot id (TOK_SPECIAL)",
               "cases": cases}

    # Model and batch.
    cfg = dict(CONFIG)
    P32 = init_params(cfg, SEED)
    tokens, targets = make_batch(cfg["vocab_size"], eot, SEED + 1)

    # Cross-check the vectorised model against the naive one, in float64.
    P64 = {k: v.double() for k, v in P32.items()}
    hf_a, lg_a = forward(P64, cfg, tokens)
    hf_b, lg_b = forward_naive(P64, cfg, tokens)
    d = max(float((hf_a - hf_b).abs().max()), float((lg_a - lg_b).abs().max()))
    print("forward vs naive forward (float64): max abs diff %.3g" % d)
    assert d < 1e-12
    # Causality: row 1's prefix must not see its padding.
    tok2 = tokens.clone()
    tok2[1, LAST[1] + 1:] = 3
    _, lg_c = forward(P64, cfg, tok2)
    assert float((lg_c[1, :LAST[1] + 1] - lg_a[1, :LAST[1] + 1]).abs().max()) == 0.0

    variants = [("tiny-gpt2", "F32"), ("tiny-gpt2-f16", "F16"), ("tiny-gpt2-bf16", "BF16")]
    ref_logits = None
    for folder, dtype in variants:
        out = os.path.join(data, folder)
        os.makedirs(out, exist_ok=True)
        Pr = {k: round_to(v, dtype) for k, v in P32.items()}
        r64, diffs = evaluate(Pr, cfg, tokens, targets, LAST)
        print("%s: loss %.8f head %s; float32 torch vs float64: %s" % (
            folder, float(r64["loss"]), [round(float(h), 6) for h in r64["head"]],
            ", ".join("%s %.2g" % kv for kv in diffs.items())))

        # Checkpoint.
        if dtype == "F32":
            entries = [(n, dtype, s, tensor_bytes(Pr[n], dtype)) for n, s in param_shapes(cfg)]
            write_safetensors(os.path.join(out, "model.safetensors"), entries, metadata_first=False)
        elif dtype == "F16":
            P_ = cfg["n_positions"]
            named = {}
            for n, s in param_shapes(cfg):
                named[n if n.startswith("score.") else "transformer." + n] = (s, Pr[n])
            for l in range(cfg["n_layer"]):
                mask = torch.tril(torch.ones(P_, P_)).view(1, 1, P_, P_)
                named["transformer.h.%d.attn.bias" % l] = ([1, 1, P_, P_], mask)
                named["transformer.h.%d.attn.masked_bias" % l] = ([], torch.tensor(-1e4))
            entries = [(n, dtype, named[n][0], tensor_bytes(named[n][1], dtype)) for n in sorted(named)]
            write_safetensors(os.path.join(out, "model.safetensors"), entries, metadata_first=True)
        else:
            entries = [(n, dtype, s, tensor_bytes(Pr[n], dtype)) for n, s in sorted(param_shapes(cfg))]
            write_safetensors(os.path.join(out, "model.safetensors"), entries, metadata_first=True)

        # Round trip: the file holds exactly the weights the reference used.
        back = read_safetensors(os.path.join(out, "model.safetensors"))
        for n, s in param_shapes(cfg):
            key = n if (dtype != "F16" or n.startswith("score.")) else "transformer." + n
            dt, shape, arr = back[key]
            assert dt == dtype and shape == s, (key, dt, shape)
            assert torch.equal(torch.tensor(arr).view(s), Pr[n].double()), key
        assert len(back) == len(param_shapes(cfg)) + (2 * cfg["n_layer"] if dtype == "F16" else 0)

        write_text(os.path.join(out, "config.json"), config_json(dtype))
        write_text(os.path.join(out, "vocab.json"), vocab_txt)
        write_text(os.path.join(out, "merges.txt"), merges_txt)

        extra = {}
        if dtype == "F32":
            worst = finite_difference_checks(Pr, cfg, tokens, targets, LAST, r64)
            print("  finite differences agree (worst rel err %.1e)" % worst)
            extra["loss_grads"] = [{"name": n, "shape": list(g.shape), "data": F32(g.reshape(-1).tolist())}
                                   for n, g in zip(LOSS_GRADS, r64["loss_grads"])]
            extra["head_grads"] = [{"name": n, "shape": list(g.shape), "data": F32(g.reshape(-1).tolist())}
                                   for n, g in zip(HEAD_GRADS, r64["head_grads"])]
            ref_logits = r64["logits"]
            write_text(os.path.join(out, "tokenizer_expected.json"), dumps(tok_doc) + "\n")
        else:
            extra["logits_max_abs_diff_vs_f32"] = float((r64["logits"] - ref_logits).abs().max())
            print("  logits max abs diff vs the F32 checkpoint: %.3g" % extra["logits_max_abs_diff_vs_f32"])
        write_text(os.path.join(out, "expected.json"),
                   dumps(expected_doc(dtype, tokens, targets, r64, diffs, extra,
                                      ALL_ROWS if dtype == "F32" else VARIANT_ROWS)) + "\n")

    total = 0
    for folder, _ in variants:
        for name in sorted(os.listdir(os.path.join(data, folder))):
            size = os.path.getsize(os.path.join(data, folder, name))
            total += size
            print("  %-40s %8d" % (os.path.join("tests/data", folder, name), size))
    print("total %d bytes" % total)


if __name__ == "__main__":
    main()
