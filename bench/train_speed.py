"""Measure training-step time of a model under allocator and memory-format settings.

Each setting runs in a fresh Python process (allocator settings only apply at process
start), trains ``--steps`` steps on random faces after a warm-up, and reports the median
step time. Run from the repository root::

    python bench/train_speed.py --model heatmapnet --steps 30 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SETTINGS = {
    "glibc default": ({}, False),
    "glibc default + channels_last": ({}, True),
    "glibc tunables": ({"GLIBC_TUNABLES": "TUNABLES"}, False),
    "glibc tunables + channels_last": ({"GLIBC_TUNABLES": "TUNABLES"}, True),
}


def _child(model_name: str, steps: int, batch_size: int, channels_last: bool) -> None:
    import torch

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
    args = parser.parse_args()
    if args.child:
        _child(args.model, args.steps, args.batch_size, args.channels_last)
        return

    from facekp.cli.train import GLIBC_TUNABLES

    results: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    for _ in range(args.repeats):  # interleave settings so load changes hit all of them
        for name, (extra_env, channels_last) in SETTINGS.items():
            env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
            env.update({k: GLIBC_TUNABLES if v == "TUNABLES" else v for k, v in extra_env.items()})
            env["FACEKP_NO_REEXEC"] = "1"
            command = [sys.executable, __file__, "--child", "--model", args.model,
                       "--steps", str(args.steps), "--batch-size", str(args.batch_size)]
            if channels_last:
                command.append("--channels-last")
            output = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            results[name].append(json.loads(output.stdout.strip().splitlines()[-1]))

    baseline = statistics.median(r["median"] for r in results["glibc default"])
    print(f"model {args.model}, batch {args.batch_size}, {args.steps} steps x {args.repeats} runs")
    print("| setting | median step ms | ratio to default | user s | system s |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in results.items():
        median = statistics.median(r["median"] for r in runs)
        user = statistics.median(r["user"] for r in runs)
        system = statistics.median(r["system"] for r in runs)
        print(f"| {name} | {median * 1000:.1f} | {median / baseline:.2f} | {user:.1f} | {system:.1f} |")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
