"""Peer for bench/whisper_train.ts: a Whisper training step (forward, loss, backward, AdamW) in
PyTorch CPU float32. transformers is not installed here, so the model is written out below with
transformers' WhisperForConditionalGeneration layout and eager attention (torch 1.13 has no SDPA);
before timing it loads the tiny random fixture checkpoint and must reproduce transformers' golden
loss, so the timed model is Whisper.

argv: JSON {"config": {...HF config fields...}, "batch": B, "tokens": T, "runs": 3, "threads": 2,
"fixture": dir of whisper-tiny-random or null}; prints one JSON line (median step seconds, peak RSS).
Run with OMP_WAIT_POLICY=PASSIVE.
"""
import json
import math
import resource
import statistics
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def sinusoids(length, channels):
    inc = math.log(10000) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2))
    t = torch.arange(length).view(-1, 1) * inv.view(1, -1)
    return torch.cat([t.sin(), t.cos()], dim=1)


class Attention(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h, self.hd = h, d // h
        self.q_proj, self.k_proj = nn.Linear(d, d), nn.Linear(d, d, bias=False)
        self.v_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x, kv=None, causal=False):
        b, t, d = x.shape
        kv = x if kv is None else kv
        s = kv.shape[1]
        q = (self.q_proj(x) * self.hd ** -0.5).view(b, t, self.h, self.hd).transpose(1, 2)
        k = self.k_proj(kv).view(b, s, self.h, self.hd).transpose(1, 2)
        v = self.v_proj(kv).view(b, s, self.h, self.hd).transpose(1, 2)
        w = q @ k.transpose(-1, -2)
        if causal:
            w = w.masked_fill(torch.ones(t, s, dtype=torch.bool).triu(1), float("-inf"))
        o = w.softmax(-1) @ v
        return self.out_proj(o.transpose(1, 2).reshape(b, t, d))


class Layer(nn.Module):
    def __init__(self, d, h, ffn, cross):
        super().__init__()
        self.self_attn, self.self_attn_layer_norm = Attention(d, h), nn.LayerNorm(d)
        if cross:
            self.encoder_attn, self.encoder_attn_layer_norm = Attention(d, h), nn.LayerNorm(d)
        self.fc1, self.fc2, self.final_layer_norm = nn.Linear(d, ffn), nn.Linear(ffn, d), nn.LayerNorm(d)
        self.cross = cross

    def forward(self, x, enc=None, causal=False):
        x = x + self.self_attn(self.self_attn_layer_norm(x), causal=causal)
        if self.cross:
            x = x + self.encoder_attn(self.encoder_attn_layer_norm(x), kv=enc)
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["d_model"]
        self.conv1 = nn.Conv1d(c["num_mel_bins"], d, 3, padding=1)
        self.conv2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(c["max_source_positions"], d)
        self.embed_positions.weight.data = sinusoids(c["max_source_positions"], d)
        self.embed_positions.requires_grad_(False)
        self.layers = nn.ModuleList([Layer(d, c["encoder_attention_heads"], c["encoder_ffn_dim"], False) for _ in range(c["encoder_layers"])])
        self.layer_norm = nn.LayerNorm(d)

    def forward(self, feats):
        x = F.gelu(self.conv2(F.gelu(self.conv1(feats)))).permute(0, 2, 1) + self.embed_positions.weight
        for layer in self.layers:
            x = layer(x)
        return self.layer_norm(x)


class Decoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["d_model"]
        self.embed_tokens = nn.Embedding(c["vocab_size"], d, padding_idx=c["pad_token_id"])
        self.embed_positions = nn.Embedding(c["max_target_positions"], d)
        self.layers = nn.ModuleList([Layer(d, c["decoder_attention_heads"], c["decoder_ffn_dim"], True) for _ in range(c["decoder_layers"])])
        self.layer_norm = nn.LayerNorm(d)

    def forward(self, ids, enc):
        x = self.embed_tokens(ids) + self.embed_positions.weight[: ids.shape[1]]
        for layer in self.layers:
            x = layer(x, enc, causal=True)
        return self.layer_norm(x)


class Whisper(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.model = nn.Module()
        self.model.encoder, self.model.decoder = Encoder(c), Decoder(c)
        self.c = c

    def forward(self, feats, labels):
        start = torch.full((labels.shape[0], 1), self.c["decoder_start_token_id"], dtype=labels.dtype)
        ids = torch.cat([start, labels[:, :-1]], 1).masked_fill(torch.cat([start, labels[:, :-1]], 1) == -100, self.c["pad_token_id"])
        h = self.model.decoder(ids, self.model.encoder(feats))
        logits = h @ self.model.decoder.embed_tokens.weight.t()  # tied proj_out
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        dtype = {"F32": np.float32, "I64": np.int64}[info["dtype"]]
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype=dtype).reshape(info["shape"]).copy())
    return out


def validate(fixture):
    """The fixture checkpoint in this model reproduces transformers' loss (README: 8.224356651306152)."""
    c = json.load(open(f"{fixture}/config.json"))
    m = Whisper(c)
    weights = read_safetensors(f"{fixture}/model.safetensors")
    missing, unexpected = m.load_state_dict(weights, strict=False)
    assert not unexpected and not missing, (missing, unexpected)
    gold = read_safetensors(f"{fixture}/goldens.safetensors")
    with torch.no_grad():
        loss = m(gold["input_features"], gold["labels"]).item()
    want = gold["loss"].item()
    assert abs(loss - want) < 1e-5, f"peer Whisper loss {loss} != transformers' {want}"
    return abs(loss - want)


def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024


def main():
    req = json.loads(sys.argv[1])
    torch.set_num_threads(req.get("threads", 2))
    out = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    if req.get("fixture"):
        out["validation_loss_abs_error"] = validate(req["fixture"])
    torch.manual_seed(0)
    c = req["config"]
    base = rss_mb()
    model = Whisper(c)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(req["batch"], c["num_mel_bins"], 2 * c["max_source_positions"], generator=gen)
    labels = torch.randint(0, c["vocab_size"] - 20, (req["batch"], req["tokens"]), generator=gen)
    times = []
    for i in range(req["runs"] + 1):  # the first step is the warm-up (allocates AdamW state)
        t = time.perf_counter()
        loss = model(feats, labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - t)
    out.update({"median_s": statistics.median(times), "times_s": times, "loss": loss.item(),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_before_model_mb": base,
                "parameters": sum(p.numel() for p in model.parameters())})
    print(json.dumps(out))


main()
