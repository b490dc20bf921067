"""Flags of ``hadmc-host search`` (the defaults are the measured default run: docs/results.md).

The measurement flags carry TFLite benchmark_model's names (``host.flags``); ``FLAGS`` maps
the dests whose flag is named differently, for messages that name a flag.
"""

from __future__ import annotations

import argparse

from host.flags import add_flag
from protos import runtimes as runtime_table

# Sizes. In the 2026-12-01 bench (2-vCPU VM, demo, local agent) one candidate cost ~18 s:
# fine-tune 20 steps of batch 64 ~11 s (0.55 s a step on that day's machine; 0.19 s on
# 2026-11-24's), export ~2.5 s, test + validation accuracy ~3 s, measurement ~1.5 s; a PPO
# surrogate round adds ~25 s per 4 candidates. 20 steps keep uniform int8 within 0.3 points and
# let keep ~0.7 int8 reach the 1-point limit; 50 steps recover more but cost 2.5x the time.
# On 2026-12-02 a candidate cost ~30 s (fine-tune steps 0.6-0.9 s; validation now 1,350
# images), and a 16-candidate ppo+surrogate run in the bench took 10.3 min with its setup:
# 16 is the budget that keeps the README's main command at about 10 minutes, and it is the
# budget the bench compares strategies at (docs/results.md).
DEFAULT_EPISODES = 16
DEFAULT_EPISODES_PER_UPDATE = 4
DEFAULT_FINETUNE_STEPS = 20
DEFAULT_MAX_ACCURACY_DROP = 1.0


def _drop_points(text: str) -> float | None:
    """``--max-accuracy-drop``: points (0-100), or ``none`` to lift the limit."""
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        msg = f"expected points (e.g. 1.5) or none, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


# Flags whose name is not their dest with dashes (host.flags: benchmark_model's names).
FLAGS = {"threads": "--num-threads", "measure_runs": "--num-runs",
         "measure_seconds": "--min-secs", "warmup_seconds": "--warmup-min-secs"}  # fmt: skip


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
    if not values or len(values) > 4:
        raise argparse.ArgumentTypeError(f"expected 1 or 3 numbers, got {text!r}")
    return values


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``hadmc-host search`` (DESIGN §6)."""
    a = parser.add_argument
    a(
        "--model",
        help="pkg.module:factory or path/file.py:factory, called with no arguments, returning "
        "the *trained* model (or pair it with --weights); or a whole-model .pt file "
        "(unpickled: only trusted files). Default: the built-in demo (MobileNetV2-style CNN on "
        "scikit-learn digits, trained once and cached, ~2 min)",
    )
    a(
        "--demo",
        choices=("standard", "tiny"),
        default="standard",
        help="which built-in demo runs without --model: 'standard', 48x48 digits (fp32 about "
        "2.6 ms on a 2-core x86 CPU, where compression shows), or 'tiny', 32x32 (about 1.1 ms; "
        "fast tries and tests). Default: standard",
    )
    a(
        "--weights",
        metavar="STATE_DICT.pt",
        help="trained weights for --model: a state_dict saved with "
        "torch.save(model.state_dict(), path), loaded into the factory's model",
    )
    a(
        "--data",
        help="required with --model: file.npz with x_train, y_train, x_val, y_val [x_test, "
        "y_test] (NCHW float32, int labels); or an image folder DIR/<class>/<image> (split "
        "70/15/15 here, seeded, stratified, the split saved in the run directory) or "
        "DIR/train|val[|test]/<class>/<image>; or pkg.module:factory returning DataSplits or "
        "a dict of those arrays (or of (x, y) batch iterables)",
    )
    a(
        "--image-size",
        type=int,
        metavar="N",
        help="image folders: resize every image to N x N (needed when sizes differ)",
    )
    a(
        "--mean",
        type=_floats,
        metavar="M[,M,M]",
        help="image folders: subtract per channel after scaling pixels to [0, 1]",
    )
    a(
        "--std",
        type=_floats,
        metavar="S[,S,S]",
        help="image folders: divide per channel after --mean",
    )
    a(
        "--device",
        action="append",
        metavar="ADDRESS",
        help="ip:port of a hadmc-device agent, or sim:<profile> (analytic estimate, "
        "labelled simulated). Default: start a local agent on 127.0.0.1. Repeat it (or give "
        "A,B) for a pool of identical boards: candidates spread over them, one at a time "
        "each, while the next ones are built",
    )
    a(
        "--allow-mixed-pool",
        action="store_true",
        help="a pool of boards of different kinds (GetInfo: arch, CPU, cores, runtimes, or "
        "the agent's --kind): every candidate is measured on one board of each kind, and "
        "the front holds one model for the whole fleet",
    )
    a(
        "--fleet-objective",
        choices=("worst", "mean"),
        default="worst",
        help="with --allow-mixed-pool: a candidate's speed is its worst kind's (default: it "
        "must be fast on every board it ships to) or the mean over kinds",
    )
    a(
        "--token",
        help="bearer token for a remote agent started with --token (default: $HADMC_TOKEN)",
    )
    a(
        "--runtime",
        choices=runtime_table.RUNTIME_NAMES,
        default="onnxruntime",
        help="runtime on the device; decides the artifact (.onnx / .tflite). Default: "
        "onnxruntime",
    )
    a(
        "--target",
        default=None,
        metavar="RUNTIME:ACCEL|auto",
        help="execution target on the device for the baseline and every candidate, e.g. "
        "onnxruntime:cuda (`hadmc-host devices` lists them). Default: the runtime's CPU "
        "target. Checked against the device before the model is loaded. The quantization "
        "agent chooses among the precisions the target executes: fp32/int8 on CPU targets, "
        "fp16 too on CUDA/TensorRT. 'auto': one search on every target the device offers, "
        "--episodes split between them, one front naming each row's target, and speedups "
        "also against the fastest fp32 target",
    )
    add_flag(parser, "--num-threads", "--threads", dest="threads", type=int, default=1,
             help="inference threads on the device (default 1)")  # fmt: skip
    a(
        "--host-threads",
        type=int,
        default=None,
        help="torch threads for fine-tuning and evaluation on this machine (default: all cores; "
        "lower it when the machine is shared, e.g. 1 beside other heavy work)",
    )
    a(
        "--host-workers",
        type=int,
        default=None,
        metavar="N",
        help="build (prune, fine-tune, export) N candidates of a round at once, in N worker "
        "processes sharing the cores (default: one at a time, in this process)",
    )
    a(
        "--ray",
        default=None,
        metavar="auto|local|ADDRESS",
        help="build candidates as Ray actors: auto (the cluster this machine is in), local (a "
        "Ray instance on this machine) or a cluster address (ray://head:10001); one actor per "
        "cluster CPU unless --host-workers says. Needs the scale extra: pip install \"hadmc[scale]\"",
    )
    a(
        "--ray-gpus-per-build",
        type=float,
        default=0.0,
        metavar="G",
        help="with --ray: the GPU share each build actor asks Ray for (e.g. 0.5); above 0 the "
        "fine-tune runs on that GPU (default 0: CPU)",
    )
    a(
        "--host-device",
        default="auto",
        metavar="auto|cpu|cuda[:N]",
        help="where this machine fine-tunes, computes teacher logits and the sensitivity table: "
        "auto takes CUDA when torch sees it (bf16 mixed precision where supported); pruning "
        "and export always run on the CPU",
    )
    a(
        "--episodes",
        type=int,
        default=DEFAULT_EPISODES,
        help=f"budget: real candidates (built, fine-tuned, measured on the device) the search may "
        f"spend (default {DEFAULT_EPISODES}); a proposal already measured is free, and every "
        "strategy is compared at this count",
    )
    a(
        "--episodes-per-update",
        type=int,
        default=DEFAULT_EPISODES_PER_UPDATE,
        help="real candidates per round: per PPO update, per surrogate ranking, per checkpoint "
        f"(default {DEFAULT_EPISODES_PER_UPDATE})",
    )
    a("--max-latency-ms", type=float, help="latency limit, p50 in milliseconds (default none)")
    a(
        "--max-accuracy-drop",
        type=_drop_points,
        default=DEFAULT_MAX_ACCURACY_DROP,
        help="accuracy drop limit vs the fp32 baseline on validation, in percentage points "
        f"(default {DEFAULT_MAX_ACCURACY_DROP:g}; 'none' lifts it). A candidate over it scores "
        "below every candidate within it, and the chosen model must meet it",
    )
    add_flag(parser, "--max-memory-mib", "--max-memory-mb", dest="max_memory_mib", type=float,
             help="peak memory limit in MiB (2**20 bytes; default none)")  # fmt: skip
    a("--out", help="run directory (default outputs/run-<UTC timestamp>)")
    a(
        "--resume",
        metavar="DIR",
        help="continue a killed run from its run directory; the run's saved arguments are used",
    )
    a(
        "--strategy",
        choices=("ppo", "random", "optuna", "grid"),
        default="ppo",
        help="ppo (multi-agent policy, default), random (uniform over the same actions), optuna "
        "(TPE over the same actions) or grid (uniform keep ratio x precision, what a user tries "
        "first; stops when the grid is done)",
    )
    a(
        "--surrogate",
        choices=("on", "off"),
        default="on",
        help="on (default): measure a small designed set first, then rank proposals with a "
        "latency model calibrated on the device and an accuracy proxy, and (ppo) train the "
        "policy on hundreds of predicted episodes between real rounds. Applies to ppo and "
        "random; predicted figures are labelled and never enter the Pareto front",
    )
    a(
        "--paired-latency",
        choices=("on", "off"),
        default="on",
        help="on (default): time every candidate interleaved with the baseline in one device "
        "call and take its latency as (its p50 / the baseline's p50 in that window) x the "
        "baseline's p50 at setup, so a board whose speed drifts (load, clock, heat) moves "
        "both alike; costs about twice the measuring window. off: time candidates alone",
    )
    a(
        "--int8-probe",
        choices=("on", "off"),
        default="on",
        help="on (default): at setup, time the unpruned model at int8 in every precision stage "
        "and with each stage left float, paired with the baseline (one measurement per stage "
        "+ 1), and keep float the stages whose int8 is slower on this device, so no candidate "
        "pays for int8 that loses there (onnxruntime, real devices, --paired-latency on)",
    )
    a(
        "--seed",
        type=int,
        default=0,
        help="seed of the policy / sampler and fine-tuning (default 0)",
    )
    a(
        "--finetune-steps",
        type=int,
        default=DEFAULT_FINETUNE_STEPS,
        help=f"distillation fine-tune steps per candidate, batch 64 (default {DEFAULT_FINETUNE_STEPS})",
    )
    add_flag(parser, "--num-runs", "--measure-runs", dest="measure_runs", type=int, default=50,
             help="min timed runs per measurement (default 50)")  # fmt: skip
    add_flag(parser, "--min-secs", "--measure-seconds", dest="measure_seconds", type=float,
             default=1.0, help="min timed window per measurement, seconds (default 1.0)")  # fmt: skip
    add_flag(parser, "--warmup-min-secs", "--warmup-seconds", dest="warmup_seconds",
             type=float, default=0.5,
             help="min warm-up per measurement, seconds, after >= 10 runs (default 0.5)")  # fmt: skip
    a("--json", action="store_true", help="print a JSON summary on stdout (table goes to stderr)")
