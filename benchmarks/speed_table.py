"""Run step_time.py and train_step.py over a set of networks and sizes and print the README's speed table.

Each measurement runs in its own process, so its peak memory is its own and no run warms the next.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from harness import run, save_json
from sr3.cli.common import check_json
from sr3.errors import SR3Error

HERE = Path(__file__).resolve().parent
EXAMPLES = """examples:
  python benchmarks/speed_table.py --threads 2 --json speed.json
  python benchmarks/speed_table.py --row step:sr3-ref-small:64:8 --row train:sr3-ref-small:64:8"""


@dataclass(frozen=True)
class Row:
    """One measurement: a denoising step (`step`, channels_last as the pipeline runs it) or a training step."""

    kind: str
    preset: str
    resolution: int
    batch: int
    repeats: int = 5
    warmup: int = 2

    def argv(self, threads: int | None) -> list[str]:
        script = "step_time.py" if self.kind == "step" else "train_step.py"
        argv = [sys.executable, str(HERE / script), "--preset", self.preset, "--resolution", str(self.resolution),
                "--batch", str(self.batch), "--repeats", str(self.repeats), "--warmup", str(self.warmup), "--json"]
        if self.kind == "step":
            argv.append("--channels-last")
        return argv + (["--threads", str(threads)] if threads else [])


# The reference architecture at the sizes the speed goal names, its small variant, and the shipped networks at
# the sizes they sample (faces-8x: one 128-px face; natural-4x: a batch of four 128-px output tiles), and the
# space-to-depth network measured for faces.
DEFAULT_ROWS = [
    Row("step", "sr3-ref-faces-16-128", 128, 1),
    Row("step", "sr3-ref-faces-16-128", 128, 8, repeats=3, warmup=1),
    Row("step", "sr3-ref-faces-16-128", 256, 1, repeats=3, warmup=1),
    Row("step", "sr3-ref-faces-16-128", 256, 8, repeats=3, warmup=1),
    Row("step", "sr3-ref-small", 64, 8),
    Row("step", "faces-8x", 128, 1),
    Row("step", "faces-8x-sdunet", 128, 1),
    Row("step", "natural-4x", 128, 4),
    Row("train", "sr3-ref-faces-16-128", 128, 1),
    Row("train", "sr3-ref-small", 64, 8),
    Row("train", "faces-8x", 128, 8),
    Row("train", "faces-8x-sdunet", 128, 8),
]


def parse_row(spec: str) -> Row:
    """KIND:PRESET:RESOLUTION:BATCH, e.g. step:sr3-ref-small:64:8."""
    parts = spec.split(":")
    if len(parts) != 4 or parts[0] not in ("step", "train") or not (parts[2].isdigit() and parts[3].isdigit()):
        raise argparse.ArgumentTypeError(f"{spec!r} is not KIND:PRESET:RESOLUTION:BATCH with KIND step or train")
    return Row(parts[0], parts[1], int(parts[2]), int(parts[3]))


def measure(row: Row, threads: int | None) -> dict:
    """The benchmark script's JSON record for one row; its own error message if it refuses the row."""
    done = subprocess.run(row.argv(threads), capture_output=True, text=True)
    if done.returncode:
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"{row} failed"
        raise SR3Error(last.split(": error: ", 1)[-1])  # the script's message without its own prefix
    return json.loads(done.stdout)


def table_line(row: Row, r: dict) -> str:
    """One markdown table line for a measured row."""
    size = f"{row.resolution}x{row.resolution}, batch {row.batch}"
    if row.kind == "train":
        return (f"| {row.preset} | training step | {size} | {r['seconds_per_step']:.3f} | "
                f"{r['samples_per_second']:.2f} samples/s | | {r['peak_rss_mb']:.0f} |")
    return (f"| {row.preset} | denoising step | {size} | {r['seconds_per_step']:.3f} | {r['gflop_per_step']:.1f} GFLOP, "
            f"{r['achieved_gflops']:.0f} GFLOP/s | {r['fraction_of_peak']:.0%} of {r['peak_gflops_measured']:.0f} | "
            f"{r['peak_rss_mb']:.0f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--row", type=parse_row, action="append", help="KIND:PRESET:RESOLUTION:BATCH (repeatable; "
                   "default: the README's rows)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads for every row")
    p.add_argument("--json", type=Path, default=None, help="also save every row's full record to this file")
    args = p.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        raise SR3Error("--threads must be at least 1")
    check_json(str(args.json) if args.json else None)
    rows = args.row or DEFAULT_ROWS
    print("| network (preset) | what | input | seconds | work | fraction of measured fp32 peak (GFLOP/s) | peak MB |")
    print("|---|---|---|---|---|---|---|")
    records = []
    for row in rows:
        record = measure(row, args.threads)
        records.append({"row": asdict(row)} | record)
        print(table_line(row, record), flush=True)
        if args.json:  # after every row, so a refused or interrupted row keeps the ones measured
            save_json(args.json, records)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
