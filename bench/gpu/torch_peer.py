#!/usr/bin/env python3
"""The PyTorch peer of bench/gpu/bench.ts: the CUDA backend's benchmark workloads (issue 18) on this
machine's GPU with its own PyTorch, eager mode, bf16 autocast, random-init weights.

  train  : LlamaForCausalLM (transformers, SDPA attention) forward + loss + backward + AdamW step
  lora   : the same with PEFT LoRA r16 on every linear layer but the head (frozen base)
  decode : greedy decoding with HF generate (KV cache), bf16 weights, --batch prompts of one length
           (1: batch-1 decoding; tokens_per_s counts the new tokens of every row)
  gemm   : torch.matmul of two bf16 n x n matrices
  copy   : host-to-GPU and GPU-to-host copies of --mib MiB, from pageable and from pinned host memory

Prints one JSON object per measurement on stdout (the last line is the list of all of them).
    python3 bench/gpu/torch_peer.py --shape smol135m --mode train --batch 16 --seq 1024
"""
import argparse
import json
import time

import torch

SHAPES = {
    # SmolLM-135M and Llama-3.2-1B (DESIGN.md / issue 18 shapes)
    "smol135m": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                     intermediate_size=1536, vocab_size=49152, tie_word_embeddings=True, rope_theta=10000.0),
    "llama1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                    intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True, rope_theta=500000.0),
}


def build(shape):
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(**SHAPES[shape], max_position_embeddings=4096, rms_norm_eps=1e-5)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).cuda()


def train(shape, mode, batch, seq, steps, warmup):
    model = build(shape)
    if mode == "lora":
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    ids = torch.randint(0, SHAPES[shape]["vocab_size"], (batch, seq), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    t = sorted(times)[len(times) // 2]
    return dict(shape=shape, mode=mode, batch=batch, seq=seq, step_s=t, tokens_per_s=batch * seq / t,
                peak_gib=torch.cuda.max_memory_allocated() / 2**30, trainable=sum(p.numel() for p in params))


def decode(shape, prompt, new_tokens, batch):
    model = build(shape).to(torch.bfloat16).eval()
    ids = torch.randint(0, SHAPES[shape]["vocab_size"], (batch, prompt), device="cuda")
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        model.generate(ids, **dict(kw, max_new_tokens=8, min_new_tokens=8))
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model.generate(ids, **kw)
        torch.cuda.synchronize()
        t = time.perf_counter() - t0
    n = out.shape[1] - prompt
    return dict(shape=shape, mode="decode", batch=batch, prompt=prompt, new_tokens=n, tokens_per_s=batch * n / t,
                weight_bytes=sum(p.numel() * p.element_size() for p in model.parameters()))


def gemm(n, runs):
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(runs):
        a @ b
    torch.cuda.synchronize()
    t = (time.perf_counter() - t0) / runs
    return dict(mode="gemm", n=n, dtype="bfloat16", tflops=2 * n**3 / t / 1e12)


def copy(mib, runs):
    n = mib << 18  # float32 elements
    rates = {}
    for kind in ("pageable", "pinned"):
        host = torch.rand(n)
        if kind == "pinned":
            host = host.pin_memory()
        dev = host.to("cuda")
        back = torch.empty(n, pin_memory=(kind == "pinned"))
        torch.cuda.synchronize()
        up, down = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            dev.copy_(host)
            torch.cuda.synchronize()
            up.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            back.copy_(dev)
            torch.cuda.synchronize()
            down.append(time.perf_counter() - t0)
        rates[kind] = (n * 4 / sorted(up)[runs // 2] / 1e9, n * 4 / sorted(down)[runs // 2] / 1e9)
    # the peer at its best: pinned memory (what a PyTorch user's DataLoader(pin_memory=True) copies from)
    return dict(mode="copy", mib=mib, gb_s=rates["pinned"][0], down_gb_s=rates["pinned"][1],
                pageable_gb_s=rates["pageable"][0], pageable_down_gb_s=rates["pageable"][1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="smol135m", choices=sorted(SHAPES))
    ap.add_argument("--mode", default="train", choices=["train", "lora", "decode", "gemm", "copy"])
    ap.add_argument("--batch", type=int, default=None, help="rows (default: 16 for train/lora, 1 for decode)")
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--mib", type=int, default=1024)
    a = ap.parse_args()
    if a.mode in ("train", "lora"):
        r = train(a.shape, a.mode, a.batch or 16, a.seq, a.steps, a.warmup)
    elif a.mode == "decode":
        r = decode(a.shape, a.prompt, a.new_tokens, a.batch or 1)
    elif a.mode == "copy":
        r = copy(a.mib, 5)
    else:
        r = gemm(a.n, 10)
    r.update(torch=torch.__version__, gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda)
    print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
