"""The `ctrdistill` command: parses, validates, calls the library. User mistakes print one line
and exit with code 2."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

from ctrdistill.errors import CtrDistillError
from ctrdistill.training.memory import keep_freed_memory
from ctrdistill.version import __version__


def _config(path: str | None, assignments: list[str]) -> dict:
    from ctrdistill.config import load_yaml
    from ctrdistill.overrides import apply_overrides

    data = load_yaml(path) if path else {}
    if not isinstance(data, dict):
        raise CtrDistillError(f"{path}: the config must be a mapping of keys to values")
    return apply_overrides(data, assignments)


def _with_flags(raw: dict, args, keys: tuple[str, ...]) -> dict:
    """Flags given on the command line override the config's keys of the same name."""
    return raw | {k: getattr(args, k) for k in keys if getattr(args, k) is not None}


def _rank() -> int:
    """This process's rank under torchrun (0 alone): only rank 0 shows results."""
    return int(os.environ.get("RANK", "0"))


def _show(result, line: str | None) -> None:
    """The result's table (if any), then one line saying what was written."""
    from ctrdistill.analysis.report import print_table

    if _rank() != 0:
        return
    if result.rows:
        print_table(result.rows, result.title)
    if line is not None:
        print(line)


def cmd_synth(args) -> None:
    from ctrdistill.pipelines import synth

    raw = _with_flags(_config(args.config, args.set), args, ("rows", "days", "drift", "seed"))
    if args.landing:
        from ctrdistill.pipelines.follow import synth_landing

        result = synth_landing(raw, landing=args.landing, partitions=args.partitions,
                               rows_per_partition=args.rows_per_partition,
                               new_ids_rate=args.new_ids_rate,
                               interval_seconds=args.interval_seconds)
        print(f"landed {args.partitions} partitions of {args.rows_per_partition:,} rows in "
              f"{args.landing}")
        return
    if not args.output:
        raise CtrDistillError("synth needs --output DIR (a dataset) or --landing DIR (partitions "
                              "as a live source writes them)")
    result = synth(raw, output=args.output)
    print(f"wrote {result.metrics['rows']:,} synthetic rows to {args.output}")


def cmd_prepare(args) -> None:
    from ctrdistill.pipelines import prepare

    raw = _with_flags(_config(args.config, args.set), args,
                      ("recipe", "input", "output", "protocol"))
    if args.overwrite:
        raw["overwrite"] = True
    result = prepare(raw)
    splits = ", ".join(f"{k} {v:,}" for k, v in result.metrics["rows"].items())
    print(f"prepared {result.path}: {result.metrics['fields']} fields; rows: {splits}")


def _training_verb(name: str):
    """train, distill, mutual and kdef: a YAML config, --set overrides, --resume."""

    def command(args) -> None:
        import ctrdistill.pipelines as pipelines

        result = getattr(pipelines, name)(_config(args.config, args.set), resume=args.resume)
        _show(result, f"run saved to {result.path}")

    return command


def cmd_analyze_collapse(args) -> None:
    from ctrdistill.pipelines import collapse

    result = collapse(runs=args.runs, data=args.data, output=args.output,
                      sample_rows=args.sample_rows)
    for r in result.history:
        print(f"{r['run']}: N={r['num_subnetworks']} field IA {r['mean_field_abundance']:.2f} "
              f"hidden IA {r['mean_hidden_abundance']:.2f}")
    print(f"collapse report written to {args.output}")


def cmd_evaluate(args) -> None:
    from ctrdistill.pipelines import evaluate

    result = evaluate(run=args.run, data=args.data, split=args.split, device=args.device)
    _show(result, json.dumps(result.metrics) if args.json else None)


def cmd_predict(args) -> None:
    from ctrdistill.pipelines import predict

    result = predict(run=args.run, data=args.data, split=args.split, input=args.input,
                     key=args.key, output=args.output, overwrite=args.overwrite,
                     device=args.device)
    print(f"wrote {result.metrics['rows']:,} scores to {args.output}")


def cmd_export(args) -> None:
    from ctrdistill.pipelines import export

    result = export(run=args.run, output=args.output, format=args.format,
                    overwrite=args.overwrite)
    m = result.metrics
    parity = m["parity_max_abs_logit_difference"]
    checked = f"; max abs logit difference to PyTorch {parity:.1e}" if parity is not None else ""
    print(f"exported {args.run} to {args.output} ({m['format']} by {m['exporter']}{checked})")


def cmd_serve(args) -> None:
    from ctrdistill.pipelines import serve

    print(f"serving {args.bundle} on http://{args.host}:{args.port} (Ctrl-C stops)",
          file=sys.stderr)
    serve(bundle=args.bundle, host=args.host, port=args.port, workers=args.workers,
          threads=args.threads)


def cmd_label(args) -> None:
    from ctrdistill.pipelines import label

    result = label(teachers=args.teachers, data=args.data, output=args.output,
                   splits=args.split or None, days=args.day or None, hidden=args.hidden,
                   relabel=args.relabel, device=args.device)
    if _rank() != 0:
        return
    m = result.metrics
    print(f"label store {args.output}: {m['partitions']} partitions, {m['rows']:,} rows, "
          f"{m['teacher_versions']} teacher version(s)")


def cmd_stream(args) -> None:
    from ctrdistill.pipelines import stream

    result = stream(_config(args.config, args.set))
    _show(result, f"stream saved to {result.path}")


def cmd_follow(args) -> None:
    from ctrdistill.pipelines.follow import describe_status, follow, read_status

    if args.status:
        print(describe_status(read_status(args.status)))
        return
    if not args.config:
        raise CtrDistillError("follow needs a CONFIG (or --status DIR)")
    result = follow(_config(args.config, args.set), once=args.once)
    print(describe_status(result.metrics))


def cmd_search(args) -> None:
    from ctrdistill.pipelines import search

    result = search(_config(args.config, args.set), resume=args.resume)
    print((result.path.parents[1] / "trials.md").read_text())
    print(f"best teacher (trial {result.metrics['best_trial']}, {result.metrics['objective']} "
          f"valid AUC {result.metrics['best_value']:.5f}): {result.path}")


def cmd_demo(args) -> None:
    from ctrdistill.pipelines import demo

    result = demo(args.workdir, rows=args.rows, overwrite=args.overwrite)
    _show(result, f"runs, learning curves and the results table are in {result.path}")


def _add_processes(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--nproc", type=int, default=1, metavar="N",
                     help="run in N processes with DDP (torchrun on this machine; gloo on CPUs, "
                     "NCCL on GPUs)")
    sub.add_argument("--max-restarts", type=int, default=0, metavar="R",
                     help="with --nproc: restart the group up to R times after a failure; it "
                     "resumes from the last checkpoint")


class _Help(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and shows a flag's default where it has a real one
    (None defaults come from the config, and their help says so)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default is None or default is False or default == [] \
                or default == argparse.SUPPRESS or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


#: One example per verb, shown under its --help.
EXAMPLES = {
    "synth": "ctrdistill synth --output data/raw --rows 1000000 --days 10 --drift 0.05",
    "prepare": "ctrdistill prepare --recipe synthetic --input data/raw --output data/synth "
               "--protocol x4",
    "train": "ctrdistill train configs/train_dnn.yaml --set train.epochs=2",
    "distill": "ctrdistill distill configs/distill_example.yaml "
               "--set strategy.ensemble=mean_logits",
    "mutual": "ctrdistill mutual configs/mutual_example.yaml",
    "kdef": "ctrdistill kdef configs/kdef_example.yaml --set num_subnetworks=2",
    "analyze": "ctrdistill analyze collapse runs/kdef4 runs/naive4 --data data/synth "
               "--output collapse/",
    "evaluate": "ctrdistill evaluate runs/dnn --data data/synth --split test --json",
    "predict": "ctrdistill predict runs/dnn --data data/synth --output scores.parquet",
    "stream": "ctrdistill stream configs/stream_example.yaml",
    "follow": "ctrdistill follow configs/follow_example.yaml --once",
    "label": "ctrdistill label runs/kd-gate-teachers/dcnv2 --data data/synth --output stores/t1",
    "search": "ctrdistill search configs/search_example.yaml --set trials=12",
    "demo": "ctrdistill demo --rows 100000 --workdir /tmp/demo",
    "export": "ctrdistill export runs/kd-gate --output bundles/kd-gate",
    "serve": "ctrdistill serve bundles/kd-gate --port 8000 --workers 2",
}
EXAMPLES["collapse"] = EXAMPLES["analyze"]


def _epilog(name: str) -> str:
    return f"example:\n  {EXAMPLES[name]}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctrdistill", description=__doc__, formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True)

    def add(name: str, handler, help_text: str,
            config: str | None = "optional") -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, description=help_text,
                               epilog=_epilog(name), formatter_class=_Help)
        if config == "required":
            sub.add_argument("config", help="YAML config")
        elif config == "optional":
            sub.add_argument("--config", help="YAML config (flags override it)")
        if config:
            sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                             help="override a config value, e.g. train.epochs=3")
        sub.set_defaults(handler=handler)
        return sub

    sub = add("synth", cmd_synth, "generate the synthetic benchmark (raw Parquet)")
    sub.add_argument("--output", help="directory for the raw Parquet files")
    sub.add_argument("--landing", help="instead of --output: write partitions into this landing "
                     "zone one after another, as a live source would (for `follow`)")
    sub.add_argument("--partitions", type=int, default=4, help="with --landing: partitions")
    sub.add_argument("--rows-per-partition", type=int, default=100_000,
                     help="with --landing: rows per partition")
    sub.add_argument("--new-ids-rate", type=float, default=0.0,
                     help="with --landing: fraction of each field's ids first appearing in a "
                     "later partition")
    sub.add_argument("--interval-seconds", type=float, default=0.0,
                     help="with --landing: wait between partitions")
    sub.add_argument("--rows", type=int, help="rows to generate (default: the config's rows)")
    sub.add_argument("--days", type=int, help="days the rows span (default: the config's days)")
    sub.add_argument("--drift", type=float,
                     help="rotation of the hidden click model per day, in radians (default: the "
                     "config's drift)")
    sub.add_argument("--seed", type=int, help="random seed (default: the config's seed)")

    sub = add("prepare", cmd_prepare, "encode raw logs into Parquet shards with vocabularies")
    sub.add_argument("--recipe", help="raw format, e.g. criteo, avazu, synthetic, csv (an unknown "
                     "name lists them all; default: the config's recipe)")
    sub.add_argument("--input", help="raw file or directory (default: the config's input)")
    sub.add_argument("--output", help="prepared dataset directory (default: the config's output)")
    sub.add_argument("--protocol", help="split/encoding protocol, e.g. x1 or x4 (default: the "
                     "config's protocol)")
    sub.add_argument("--overwrite", action="store_true",
                     help="replace an existing prepared dataset")

    for name, text in (
            ("train", "train one model on hard labels"),
            ("mutual", "mutual learning between peers"),
            ("kdef", "KDEF ensemble of sub-networks on a shared embedding"),
            ("distill", "distil frozen teachers (an ensemble, optionally gated) into a student")):
        sub = add(name, _training_verb(name), text, config="required")
        sub.add_argument("--resume", action="store_true",
                         help="continue an interrupted run of the same config from its last "
                         "checkpoint")
        _add_processes(sub)

    analyze = verbs.add_parser("analyze", help="analyses of finished runs",
                               description="analyses of finished runs", epilog=_epilog("analyze"),
                               formatter_class=_Help)
    analyses = analyze.add_subparsers(dest="analysis", required=True)
    text = "embedding/representation collapse spectra"
    sub = analyses.add_parser("collapse", help=text, description=text,
                              epilog=_epilog("collapse"), formatter_class=_Help)
    sub.add_argument("runs", nargs="+", help="run directories")
    sub.add_argument("--data", required=True, help="prepared dataset")
    sub.add_argument("--output", default="collapse", help="directory for JSON and PNG")
    sub.add_argument("--sample-rows", type=int, default=4096,
                     help="rows of the test split whose hidden vectors are analysed")
    sub.set_defaults(handler=cmd_analyze_collapse)

    for name, handler, text in (("evaluate", cmd_evaluate, "metrics of a run on a split"),
                                ("predict", cmd_predict, "scores of a run, keyed by row id")):
        sub = add(name, handler, text, config=None)
        sub.add_argument("run", help="run directory")
        sub.add_argument("--data", required=name == "evaluate", help="prepared dataset")
        sub.add_argument("--split", default="test", help="train, valid or test")
        sub.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
        if name == "predict":
            sub.add_argument("--input", help="new raw logs in the run's recipe format (instead "
                             "of --data): encoded with the run's fitted preprocessing")
            sub.add_argument("--key", help="with --input: raw column carried to the output "
                             "(default: row_id, the 0-based row number)")
            sub.add_argument("--output", required=True, help="Parquet file to write")
            sub.add_argument("--overwrite", action="store_true",
                             help="replace an existing output file")
        else:
            sub.add_argument("--json", action="store_true", help="also print metrics as JSON")

    sub = add("export", cmd_export, "a run's served model as a bundle for production",
              config=None)
    sub.add_argument("run", help="run directory")
    sub.add_argument("--output", required=True, help="bundle directory to write")
    sub.add_argument("--format", choices=("onnx", "torchscript"), default="onnx",
                     help="onnx (served by `ctrdistill serve`) or torchscript (default: onnx)")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing bundle")

    sub = add("serve", cmd_serve, "an ONNX bundle as an HTTP JSON scoring service", config=None)
    sub.add_argument("bundle", help="bundle directory written by export")
    sub.add_argument("--host", default="127.0.0.1", help="address to listen on (default: "
                     "127.0.0.1)")
    sub.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    sub.add_argument("--workers", type=int, default=1, metavar="N",
                     help="uvicorn worker processes (default 1)")
    sub.add_argument("--threads", type=int, help="onnxruntime threads per worker")

    add("stream", cmd_stream, "continual distillation day by day", config="required")

    sub = add("follow", cmd_follow, "continuous distillation from logs arriving in a landing "
              "zone", config=None)
    sub.add_argument("config", nargs="?", help="YAML config")
    sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. export_every=4")
    sub.add_argument("--once", action="store_true",
                     help="process the partitions that have landed, then stop")
    sub.add_argument("--status", metavar="DIR", help="print the status of a follow directory")

    sub = add("label", cmd_label, "score data once with teacher runs into a label store",
              config=None)
    sub.add_argument("teachers", nargs="+", help="teacher run directories (an ensemble if many)")
    sub.add_argument("--data", required=True, help="prepared dataset")
    sub.add_argument("--output", required=True, help="label store directory")
    sub.add_argument("--split", action="append", help="only these splits (repeatable)")
    sub.add_argument("--day", type=int, action="append", help="only these days (repeatable)")
    sub.add_argument("--hidden", action="store_true",
                     help="also store the teachers' hidden vectors (for gates and hint losses)")
    sub.add_argument("--relabel", action="store_true",
                     help="replace partitions labelled by another teacher set (default: refuse)")
    sub.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    _add_processes(sub)

    sub = add("search", cmd_search, "choose a teacher under a budget (Optuna): the objective "
              "is the teacher's or the distilled student's valid AUC", config="required")
    sub.add_argument("--resume", action="store_true",
                     help="continue the search's study (study.db) where it stopped")

    sub = add("demo", cmd_demo, "the whole flow on built-in synthetic data", config=None)
    sub.add_argument("--workdir", default="ctrdistill-demo",
                     help="directory for the demo's data, runs and results")
    sub.add_argument("--rows", type=int, default=1_000_000, help="synthetic rows to generate")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing --workdir")
    return parser


def _interrupt(signum: int, frame) -> None:
    """SIGTERM (a scheduler stopping the job) unwinds like Ctrl-C, so atomic outputs are removed
    instead of leaving hidden temporary directories behind."""
    raise KeyboardInterrupt(signum)


class _Messages(logging.Formatter):
    """The library's log records as the CLI shows them: plain lines, warnings marked."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return message if record.levelno < logging.WARNING else \
            f"{record.levelname.lower()}: {message}"


def _show_logs() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Messages())
    root = logging.getLogger("ctrdistill")
    root.addHandler(handler)
    root.setLevel(logging.INFO if _rank() == 0 else logging.WARNING)  # one copy of each line
    return handler


def _launch(argv: list[str], nproc: int, max_restarts: int) -> int:
    """Run this command in `nproc` processes under torchrun's elastic agent (DDP on one
    machine); the agent restarts the group up to `max_restarts` times after a failure."""
    from torch.distributed.run import get_args_parser, run

    inner = [a for i, a in enumerate(argv) if a not in ("--nproc", "--max-restarts")
             and (i == 0 or argv[i - 1] not in ("--nproc", "--max-restarts"))]
    inner = [a for a in inner if not a.startswith(("--nproc=", "--max-restarts="))]
    run(get_args_parser().parse_args(
        ["--standalone", "--nproc_per_node", str(nproc), "--max-restarts", str(max_restarts),
         "-m", "ctrdistill", *inner]))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if getattr(args, "nproc", 1) > 1 and "LOCAL_RANK" not in os.environ:
        try:
            return _launch(argv, args.nproc, args.max_restarts)
        except Exception as error:  # the agent's ChildFailedError: the ranks said why
            print(f"ctrdistill {args.verb}: error: {type(error).__name__}: "
                  f"{str(error).splitlines()[0] if str(error) else ''}", file=sys.stderr)
            return 1
    keep_freed_memory()
    handler = _show_logs()
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        args.handler(args)
    except CtrDistillError as error:
        print(f"ctrdistill {args.verb}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        by_sigterm = interrupt.args == (signal.SIGTERM,)
        signum = signal.SIGTERM if by_sigterm else signal.SIGINT
        print(f"interrupted ({signum.name})", file=sys.stderr)
        return 128 + signum
    finally:
        logging.getLogger("ctrdistill").removeHandler(handler)
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
