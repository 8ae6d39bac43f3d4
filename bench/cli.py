"""`edgebench` / `python -m bench`: every Makefile variable is a flag here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgebench.bench.config import PRECISIONS, TARGETS, BenchConfig, TimingConfig, default_load_jobs, default_threads
from edgebench.bench.errors import UsageError

PROG = "edgebench"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        print(f"{PROG}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _int_list(what: str):
    def parse(text: str) -> tuple[int, ...]:
        values = []
        for part in text.split(","):
            part = part.strip()
            if not part.isdigit() or int(part) < 1:
                raise argparse.ArgumentTypeError(f"bad {what} {part!r} in {text!r}: expected whole numbers >= 1, "
                                                 "comma-separated (e.g. 1,8)")
            values.append(int(part))
        return tuple(values)
    return parse


def _positive_int(what: str, minimum: int = 1):
    def parse(text: str) -> int:
        if not text.strip().isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"bad {what} {text!r}: expected a whole number >= {minimum}")
        return int(text)
    return parse


TRUE, FALSE = ("1", "yes", "on", "true", "y"), ("0", "no", "off", "false", "n")


def _boolean(what: str):
    """The usual spellings, any case: 1/0, yes/no, on/off, true/false; anything else is refused in one line."""
    def parse(text: str) -> bool:
        word = text.strip().lower()
        if word in TRUE or word in FALSE:
            return word in TRUE
        raise argparse.ArgumentTypeError(f"bad {what} {text!r}: expected yes or no (also on/off, true/false, 1/0)")
    return parse


def _seconds(what: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not value >= 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"bad {what} {text!r}: expected a number of seconds >= 0")
        return value
    return parse


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def build_parser() -> argparse.ArgumentParser:
    d = TimingConfig()
    p = _Parser(prog=PROG, description="Benchmark a PyTorch model across deployment runtimes on this machine.")
    p.add_argument("--model", default="resnet18", help="reference model name, several of one family "
                   "comma-separated (mnist_resnet_s,mnist_resnet_m), or path/to/file.py:function "
                   "returning (nn.Module, example input) [resnet18]")
    p.add_argument("--weights", default=None, help="state_dict file, an Ultralytics checkpoint (best.pt) for a "
                   "YOLO model, or 'pretrained' for torchvision's weights (needs network or cache); default: random "
                   "init with recalibrated BatchNorm")
    p.add_argument("--runtimes", type=_names, default=(), help="comma-separated runtimes [all]")
    p.add_argument("--precision", type=_names, default=("fp32",), help=f"comma-separated, of {', '.join(PRECISIONS)}")
    p.add_argument("--batch", type=_int_list("batch size"), default=(1,), help="comma-separated batch sizes [1]")
    p.add_argument("--threads", type=_positive_int("thread count"), default=default_threads(),
                   help=f"threads for every runtime [{default_threads()}]")
    p.add_argument("--target", type=_names, default=("cpu",),
                   help=f"comma-separated, of {', '.join(TARGETS)} [cpu]; cpu,gpu gives CPU ms and GPU ms columns")
    p.add_argument("--out", type=Path, default=None, help="folder for this run's results [results/<time>-...]")
    p.add_argument("--warmup", type=_positive_int("warm-up count", 0), default=d.warmup_iters,
                   help=f"minimum warm-up iterations [{d.warmup_iters}]")
    p.add_argument("--warmup-s", type=_seconds("warm-up duration"), default=d.warmup_s,
                   help=f"minimum warm-up seconds [{d.warmup_s:g}]")
    p.add_argument("--iters", type=_positive_int("iteration count"), default=d.min_iters,
                   help=f"minimum timed iterations [{d.min_iters}]")
    p.add_argument("--duration", type=_seconds("duration"), default=d.min_s,
                   help=f"minimum timed seconds [{d.min_s:g}]")
    p.add_argument("--max-duration", type=_seconds("max duration"), default=None,
                   help=f"stop timing after this many seconds; not below --duration [{d.max_s:g}, or --duration "
                        "if longer]")
    p.add_argument("--repeats", type=_positive_int("repeats"), default=BenchConfig.repeats,
                   help="timed rounds per row, taken round-robin across the runtimes (A B C A B C ...) so a slow "
                        "minute on a shared machine hits them alike; each round warms up and times as above; "
                        "speed-up intervals need 6 for 95%% (below, the table says what they hold) "
                        f"[{BenchConfig.repeats}]")
    p.add_argument("--target-ci", type=float, default=None, metavar="FRACTION",
                   help="adaptive: take rounds past --repeats until the 95%% interval of each row's p50 is within "
                        "±FRACTION of it (0.02 = ±2%%), at most --max-repeats rounds; each row says which stopped it")
    p.add_argument("--max-repeats", type=_positive_int("max repeats"), default=None,
                   help=f"adaptive: the most rounds a row gets; not below --repeats [{BenchConfig.max_repeats}, or "
                        "--repeats if more]")
    p.add_argument("--mode", default="latency", metavar="latency|throughput",
                   help="latency: one request in flight (MLPerf SingleStream); throughput: as many as each runtime "
                        "serves at once (OpenVINO's THROUGHPUT hint and its infer requests, ONNX Runtime's "
                        "concurrent runs), items/s over the window (MLPerf Offline) [latency]")
    p.add_argument("--timeout", type=_seconds("timeout"), default=900.0,
                   help="seconds allowed for each export and each measurement process [900]")
    p.add_argument("--seed", type=_positive_int("seed", 0), default=0, help="seed for random init and inputs [0]")
    p.add_argument("--compress", type=_names, default=(), metavar="VARIANT[,VARIANT...]",
                   help="compression variants, each a method or a +chain: prune-unstructured:0.5, prune-channels:0.3, "
                        "cluster:16, cluster:32@last3, distill:STUDENT, qat, prune-channels:0.5+qat; the baseline "
                        "is always measured too")
    p.add_argument("--data", default=None, help="labelled data for accuracy and fine-tuning: mnist, digits, or a "
                   "folder with train/ and val/ (ImageFolder); for a YOLO detector (mAP), an Ultralytics data.yaml "
                   "or a COCO folder; default: the model's own task (zoo models)")
    p.add_argument("--preprocess", default=None,
                   help="how DATA images become inputs: imagenet, unit ([0, 1]), signed ([-1, 1]), mnist, digits, or "
                   "path/to/file.py:function; default: what the model declares (a model file's `preprocess`), "
                   "else a guess the table names")
    p.add_argument("--finetune-epochs", type=_positive_int("fine-tune epochs", 0), default=2,
                   help="epochs every fine-tuning method trains for, and its control [2]")
    p.add_argument("--keep-artifacts", action="store_true", help="keep exported models in the run folder")
    p.add_argument("--no-cache", action="store_true", help="export every artifact afresh, neither reading nor "
                   "filling the artifact cache (models/.cache/artifacts; `make clean-cache` empties it)")
    p.add_argument("--cache", type=_boolean("cache"), default=True, metavar="yes|no",
                   help="the same as a switch: no, off, false or 0 is --no-cache (what CACHE= takes) [yes]")
    p.add_argument("--profile", type=_boolean("profile"), nargs="?", const=True, default=False, metavar="yes|no",
                   help="after each row's timed rounds, a per-operator profile with its runtime's own profiler: "
                        "profile.csv in the run folder, the slowest operators and int8 coverage in table.md "
                        "(what PROFILE=1 passes) [no]")
    p.add_argument("--fresh-exports", action="store_true",
                   help="export and compress each row in a fresh interpreter, instead of forking it from a warm "
                        "process that imported torch and the converter once per run")
    p.add_argument("--export-jobs", type=_positive_int("export jobs"), default=1,
                   help="exports run at once, each in its own process [1]; more is faster on many cores, but "
                        "each row's export time then includes the others' contention")
    p.add_argument("--load-jobs", type=_positive_int("load jobs"), default=default_load_jobs(),
                   help="rows loading at once before timing starts, each in its own measuring process [2, 1 on one "
                        "core]; exports and first inferences still run alone; each row's load time then includes "
                        "the other load's contention (1: each loads alone)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                   help="finish an interrupted run in its folder, with its own settings: finished rows are kept, "
                        "the rest measured (a variant cut off part-way is measured again whole)")
    p.add_argument("--fleet", default=None, metavar="ADDRESS|local",
                   help="measure on a fleet of devices: a Dask scheduler (tcp://host:8786, tls://...) whose workers "
                        "were started with `edgebench worker`, or `local` for a loopback fleet on this machine")
    p.add_argument("--devices", type=_names, default=(), help="comma-separated device names of the fleet "
                   "[local: local1,local2]")
    p.add_argument("--list", action="store_true", help="list models, runtimes and their availability, then exit")
    return p


def _at_least(given: float | None, default: float, floor: float, limit: tuple[str, str],
              least: tuple[str, str]) -> float:
    """A limit and its floor, each named as (Makefile variable, flag): a limit the user gave below its floor is a
    contradiction (one line); the default is raised to the floor (the header shows what was used)."""
    if given is not None and given < floor:
        raise UsageError(f"{limit[0]}={given:g} ({limit[1]}) is below {least[0]}={floor:g} ({least[1]}): raise "
                         f"{limit[0]} or lower {least[0]}")
    return max(default if given is None else given, floor)


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    max_s = _at_least(args.max_duration, TimingConfig().max_s, args.duration, ("MAX_DURATION", "--max-duration"),
                      ("DURATION", "--duration"))
    max_repeats = int(_at_least(args.max_repeats, BenchConfig.max_repeats, args.repeats,
                                ("MAX_REPEATS", "--max-repeats"), ("REPEATS", "--repeats")))
    timing = TimingConfig(warmup_iters=args.warmup, warmup_s=args.warmup_s, min_iters=args.iters,
                          min_s=args.duration, max_s=max_s)
    return BenchConfig(model=args.model, weights=args.weights, runtimes=args.runtimes, precisions=args.precision,
                       batches=args.batch, threads=args.threads, targets=args.target, out=args.out, timing=timing,
                       timeout_s=args.timeout, seed=args.seed, keep_artifacts=args.keep_artifacts,
                       compress=args.compress, data=args.data, preprocess=args.preprocess,
                       finetune_epochs=args.finetune_epochs,
                       repeats=args.repeats, cache=args.cache and not args.no_cache, mode=args.mode,
                       target_ci=args.target_ci,
                       export_jobs=args.export_jobs, load_jobs=args.load_jobs, warm_exports=not args.fresh_exports,
                       profile=args.profile,
                       command=tuple(getattr(args, "command", ())),
                       resume=getattr(args, "resuming", False), max_repeats=max_repeats)


def resumed_args(args: argparse.Namespace) -> argparse.Namespace:
    """The run's own arguments, read from its folder, aimed back at it; other flags beside --resume are refused
    (a resumed run measured with other settings would not be one run)."""
    from edgebench.bench.resume import load_command

    defaults = vars(build_parser().parse_args([]))
    others = sorted(name for name, value in vars(args).items() if name != "resume" and value != defaults[name])
    if others:
        flags = ", ".join("--" + name.replace("_", "-") for name in others)
        raise UsageError(f"--resume reuses the run's own settings: drop {flags}")
    stored = load_command(args.resume)
    resumed = build_parser().parse_args([*stored, "--out", str(args.resume)])
    resumed.command, resumed.resuming = stored, True
    return resumed


def print_listing(console: Console) -> None:
    from edgebench.models import REFERENCE_MODELS
    from edgebench.runtimes import get_runtime, runtime_names

    console.print("Reference models: " + ", ".join(f"{n} ({s}x{s})" for n, s in REFERENCE_MODELS.items()))
    console.print("Also: any torchvision classifier by name, or path/to/file.py:function")
    console.print("YOLO detectors (the yolo extra), built offline from Ultralytics' YAML: yolov5nu..yolov5xu, "
                  "yolov8n..yolov8x, yolo11n..yolo11x (scales n, s, m, l, x)")
    from edgebench.compression import get_method, method_names
    from edgebench.models.zoo import ZOO

    console.print("Trained on embedded data (accuracy measured): "
                  + ", ".join(f"{n} ({s.task})" for n, s in ZOO.items()))
    console.print("Compression methods (COMPRESS=, chained with +):")
    for name in method_names():
        cls = get_method(name)
        spec = f"{name}:{cls.argument}" if cls.argument else name
        console.print(f"  {spec:<26} {cls.summary}", markup=False, highlight=False)
    table = Table("runtime", "format", "targets", "runs cpu fp32 here")
    for name in runtime_names():
        cls = get_runtime(name)
        table.add_row(name, cls.label, ", ".join(f"{t} ({'/'.join(p)})" for t, p in cls.precisions.items()),
                      runs_here(cls))
    console.print(table)
    from edgebench.runtimes.onnxrt import onnxruntime_conflict

    conflict = onnxruntime_conflict()
    if conflict:
        console.print(f"warning: {conflict}", markup=False, highlight=False)


def runs_here(cls) -> str:
    """`make list`'s answer for a runtime at cpu fp32: yes only where it can run here; an artifact that can be made
    but not run here (CoreML off macOS) is offered as what it is."""
    reason = cls.export_unavailable("cpu", "fp32")
    if reason:
        return f"no: {reason}"
    if "cpu" in cls.precisions:
        cannot_run = cls.run_unavailable("cpu")
        if cannot_run:
            return f"no, conversion only (size and contents, no timing): {cannot_run}"
    return "yes"


def print_table(console: Console, rows) -> None:
    from rich.markup import escape

    from edgebench.bench.report import FLAG_HELP, table_layout, used_flags

    headers, body, notes = table_layout(rows)
    table = Table(*map(escape, headers))  # `CPU ms [jetson01]` is a device's column, not rich markup
    for column in table.columns:  # a narrow terminal folds a long cell onto more lines, never cuts it short
        column.overflow = "fold"
    for cells in body:
        table.add_row(*map(escape, cells))
    console.print(table)
    for i, note in enumerate(notes, 1):
        console.print(f"[{i}] {note}", highlight=False, markup=False)
    for flag in used_flags(body):
        console.print(f"{flag}: {FLAG_HELP[flag]}", highlight=False)


def _usage_error(exc: UsageError) -> int:
    """One line on stderr (a quoted library message may span several)."""
    print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["worker"]:  # `edgebench worker SCHEDULER --name NAME`: serve as a fleet device
        from edgebench.fleet.worker import main as worker_main

        return worker_main(raw[1:])
    args = build_parser().parse_args(argv)
    # Logs and CI have no terminal width: give tables room rather than folding every cell.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=160)
    if args.list:
        print_listing(console)
        return 0
    from edgebench.bench.progress import Reporter
    from edgebench.bench.runlog import RunLog

    log = RunLog()  # from here on, library warnings go to the run's log
    runner = None
    try:
        from edgebench.bench.runner import Runner, RunSummary

        if args.resume is not None:
            args = resumed_args(args)
        else:
            from edgebench.bench.resume import without_options

            args.command = without_options(raw, ("--out",))
            args.command += [] if "--threads" in args.command else ["--threads", str(args.threads)]
        config = config_from_args(args)
        if args.devices and not args.fleet:
            raise UsageError("--devices names the devices of a fleet: add --fleet tcp://scheduler:8786 (or local)")
        if args.fleet:
            from edgebench.fleet.run import run_fleet

            devices = args.devices or (("local1", "local2") if args.fleet == "local" else ())
            run_dir, rows = run_fleet(config, args.fleet, devices, Reporter(err), log)
            summary = RunSummary(run_dir, rows)
        else:
            runner = Runner(config, Reporter(err), log)
            summary = runner.run()
    except UsageError as exc:
        return _usage_error(exc)
    except KeyboardInterrupt:
        where = f"; rows finished so far are in {log.path.parent}" if log.path else ""
        print(f"{PROG}: interrupted{where}", file=sys.stderr)
        return 130
    finally:
        log.close()
    print_table(console, summary.rows)
    console.print(f"Results: {summary.run_dir}  (table.md, rows.csv, rows.jsonl, environment.json, run.log)",
                  highlight=False)
    return 0 if any(row.status == "ok" for row in summary.rows) else 1
