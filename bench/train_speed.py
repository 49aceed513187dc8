"""Measure training-step time of a model under allocator, OpenMP and memory-format settings.

Each setting runs in a fresh Python process (allocator and OpenMP settings only apply at
process start), trains ``--steps`` steps on random faces after a warm-up, and reports the median
step time. Run from the repository root::

    python bench/train_speed.py --model heatmapnet --steps 30 --repeats 3

Run it once on an idle machine and once while other jobs load the cores: the OpenMP wait
policy matters most under load. Output: a Markdown table of median step times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# name: (variables of the train command's environment to set, channels_last, torch threads
# or None for torch's default)
SETTINGS: dict[str, tuple[tuple[str, ...], bool, int | None]] = {
    "defaults (2 threads)": ((), False, None),
    "channels_last": ((), True, None),
    "glibc tunables": (("GLIBC_TUNABLES",), False, None),
    "OMP passive": (("OMP_WAIT_POLICY",), False, None),
    "1 thread": ((), False, 1),
    "train command (tunables + passive + channels_last)":
        (("GLIBC_TUNABLES", "OMP_WAIT_POLICY"), True, None),
    "jemalloc, no decay + passive + channels_last": (("JEMALLOC", "OMP_WAIT_POLICY"), True, None),
}

# jemalloc from Debian's libjemalloc2, preloaded, with the return of freed pages to the kernel
# turned off. The setting is skipped where the library is not installed.
JEMALLOC_PATH = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
JEMALLOC_ENVIRONMENT = {
    "LD_PRELOAD": JEMALLOC_PATH,
    "MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1",
}


def _child(
    model_name: str, steps: int, batch_size: int, channels_last: bool, threads: int | None
) -> None:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    from facekp.models import create_model
    from facekp.train import masked_loss

    torch.manual_seed(0)
    model = create_model(model_name).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for step in range(steps + 5):
        faces = torch.rand(batch_size, 1, 96, 96)
        if channels_last:
            faces = faces.contiguous(memory_format=torch.channels_last)
        targets = torch.rand(batch_size, 30) * 2 - 1
        started = time.perf_counter()
        loss = masked_loss(model(faces), targets, torch.ones_like(targets))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= 5:
            times.append(time.perf_counter() - started)
    cpu = os.times()
    print(json.dumps({"median": statistics.median(times),
                      "user": cpu.user, "system": cpu.system}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="heatmapnet")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--channels-last", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.model, args.steps, args.batch_size, args.channels_last, args.threads)
        return

    from facekp.cli.train import TRAINING_ENVIRONMENT

    settings = {
        name: setting
        for name, setting in SETTINGS.items()
        if "JEMALLOC" not in setting[0] or os.path.exists(JEMALLOC_PATH)
    }
    results: dict[str, list[dict]] = {name: [] for name in settings}
    for _ in range(args.repeats):  # interleave settings so load changes hit all of them
        for name, (variables, channels_last, threads) in settings.items():
            env = {k: v for k, v in os.environ.items() if k not in TRAINING_ENVIRONMENT}
            env.update({k: TRAINING_ENVIRONMENT[k] for k in variables if k != "JEMALLOC"})
            if "JEMALLOC" in variables:
                env.update(JEMALLOC_ENVIRONMENT)
            command = [sys.executable, __file__, "--child", "--model", args.model,
                       "--steps", str(args.steps), "--batch-size", str(args.batch_size)]
            if channels_last:
                command.append("--channels-last")
            if threads is not None:
                command += ["--threads", str(threads)]
            output = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            results[name].append(json.loads(output.stdout.strip().splitlines()[-1]))

    baseline = statistics.median(r["median"] for r in results["defaults (2 threads)"])
    print(f"model {args.model}, batch {args.batch_size}, {args.steps} steps x {args.repeats} runs")
    print("| setting | median step ms | ratio to default | user s | system s |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in results.items():
        median = statistics.median(r["median"] for r in runs)
        user = statistics.median(r["user"] for r in runs)
        system = statistics.median(r["system"] for r in runs)
        print(f"| {name} | {median * 1000:.1f} | {median / baseline:.2f} "
              f"| {user:.1f} | {system:.1f} |")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
