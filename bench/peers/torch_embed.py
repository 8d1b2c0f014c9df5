"""Contrastive-training and encoding peer for bench/embed.ts: a BERT-shaped encoder in PyTorch
(word + position + type embeddings with LayerNorm, post-LayerNorm encoder layers through
nn.TransformerEncoderLayer, GELU, no dropout), mean pooling, and the multiple-negatives ranking
loss (cosine x 20, cross-entropy against the diagonal) with AdamW; then encoding under
torch.inference_mode (the median batch). The same shapes and token counts as the Kestrel side. Run with
OMP_WAIT_POLICY=PASSIVE.

argv: JSON {"dim", "layers", "heads", "ffn", "vocab", "seq", "batch", "steps", "threads", "encode_texts"[, "profile",
"autocast", "merge"]} ("autocast": "bf16" runs forward and loss under torch.autocast("cpu", torch.bfloat16);
"merge": true embeds anchors and positives in one forward of 2 x batch rows, as Kestrel does when the
columns pad to one length, which they do here; false: one forward per column, as sentence-transformers does);
prints one JSON line, or with "profile": true torch.profiler's table of the training steps (after one warm-up).
"""
import contextlib
import json
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F


class Encoder(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["dim"]
        self.word = torch.nn.Embedding(c["vocab"], d)
        self.pos = torch.nn.Embedding(512, d)
        self.types = torch.nn.Embedding(2, d)
        self.norm = torch.nn.LayerNorm(d, eps=1e-12)
        layer = torch.nn.TransformerEncoderLayer(d, c["heads"], c["ffn"], dropout=0.0, activation="gelu", batch_first=True, layer_norm_eps=1e-12)
        self.layers = torch.nn.TransformerEncoder(layer, c["layers"], enable_nested_tensor=False)

    def forward(self, ids):
        B, T = ids.shape
        pos = torch.arange(T).unsqueeze(0).expand(B, T)
        h = self.norm(self.word(ids) + self.pos(pos) + self.types(torch.zeros_like(ids)))
        h = self.layers(h)
        return h.mean(1)  # every row is full length: the masked mean is the plain mean


def precision(c):
    """torch's CPU bf16 autocast when asked for, else float32."""
    if c.get("autocast") == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def embed_pair(c, model, a, p):
    """The anchors' and positives' embeddings: one forward over both when "merge" is set."""
    if c.get("merge"):
        e = model(torch.cat([a, p]))
        return e[: a.shape[0]], e[a.shape[0] :]
    return model(a), model(p)


def mnrl(a, p, scale=20.0):
    scores = F.normalize(a, dim=-1) @ F.normalize(p, dim=-1).T * scale
    return F.cross_entropy(scores, torch.arange(a.shape[0]))


def profile(c, model, opt, gen):
    B, T = c["batch"], c["seq"]

    def step():
        a = torch.randint(1, c["vocab"], (B, T), generator=gen)
        p = torch.randint(1, c["vocab"], (B, T), generator=gen)
        with precision(c):
            loss = mnrl(*embed_pair(c, model, a, p))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    t = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(c["steps"]):
            step()
    wall = (time.perf_counter() - t) / c["steps"]
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
    print(f"torch: {wall * 1e3:.0f} ms/step (profiled)")


def main():
    c = json.loads(sys.argv[1])
    torch.set_num_threads(c.get("threads", 2))
    torch.manual_seed(0)
    model = Encoder(c)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
    gen = torch.Generator().manual_seed(1)
    B, T = c["batch"], c["seq"]
    if c.get("profile"):
        return profile(c, model, opt, gen)
    times = []
    for i in range(c["steps"] + 1):
        a = torch.randint(1, c["vocab"], (B, T), generator=gen)
        p = torch.randint(1, c["vocab"], (B, T), generator=gen)
        t = time.perf_counter()
        with precision(c):
            loss = mnrl(*embed_pair(c, model, a, p))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - t)
    train_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = c["encode_texts"]
    ids = torch.randint(1, c["vocab"], (n, T), generator=gen)
    batch_s = []
    with torch.inference_mode(), precision(c):
        model(ids[:B])  # warm-up
        for s in range(0, n, B):
            t = time.perf_counter()
            model(ids[s : s + B])
            batch_s.append(time.perf_counter() - t)
    print(json.dumps({
        "torch": torch.__version__, "threads": torch.get_num_threads(), "autocast": c.get("autocast") or "fp32", "merge": bool(c.get("merge")),
        "train_step_s": statistics.median(times), "train_tokens_per_s": 2 * B * T / statistics.median(times),
        "train_peak_rss_mb": train_rss, "encode_sentences_per_s": B / statistics.median(batch_s),
    }))


main()
