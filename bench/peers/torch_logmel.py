"""Peer for bench/audio.ts: Whisper's 80-bin log-mel features with torchaudio (transformers is not
installed here, so the extractor's torch path is written out): MelSpectrogram(n_fft=400,
hop_length=160, power=2, mel_scale='slaney', norm='slaney', f_max=8000) on 30 s windows, the last
frame dropped, log10(clamp(min=1e-10)), each window floored at its max - 8, (x + 4) / 4.

argv: JSON {"audio": path of raw float32 [windows, 480000], "windows": W, "runs": 5, "threads": 2,
"out": path for window 0's features [80, 3000] float32}; prints one JSON line with the median seconds.
Run with OMP_WAIT_POLICY=PASSIVE (DESIGN.md: torch's thread pools otherwise fight over 2 cores).
"""
import json
import sys
import time

import numpy as np
import torch
import torchaudio


def log_mel(mel_transform, batch):
    mel = mel_transform(batch)[..., :-1]  # [W, 80, 3000]: Whisper drops the last frame
    log_spec = torch.clamp(mel, min=1e-10).log10()
    peak = log_spec.amax(dim=(1, 2), keepdim=True)
    log_spec = torch.maximum(log_spec, peak - 8.0)
    return (log_spec + 4.0) / 4.0


def main():
    req = json.loads(sys.argv[1])
    torch.set_num_threads(req.get("threads", 2))
    samples = np.fromfile(req["audio"], dtype=np.float32).reshape(req["windows"], 480000)
    batch = torch.from_numpy(samples)
    mel_transform = torchaudio.transforms.MelSpectrogram(
        sample_rate=16000, n_fft=400, hop_length=160, n_mels=80, f_min=0.0, f_max=8000.0,
        power=2.0, mel_scale="slaney", norm="slaney")
    with torch.no_grad():
        first = log_mel(mel_transform, batch)  # warm-up, and the features bench/audio.ts compares
        first[0].numpy().astype(np.float32).tofile(req["out"])
        times = []
        for _ in range(req.get("runs", 5)):
            t0 = time.perf_counter()
            log_mel(mel_transform, batch)
            times.append(time.perf_counter() - t0)
    print(json.dumps({"median_s": float(np.median(times)), "times_s": times, "torch": torch.__version__,
                      "torchaudio": torchaudio.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
