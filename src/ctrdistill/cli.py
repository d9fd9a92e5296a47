"""The `ctrdistill` command: parses, validates, calls the library. User mistakes print one line
and exit with code 2."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from ctrdistill.errors import CtrDistillError
from ctrdistill.training.memory import keep_freed_memory


def _config(path: str | None, assignments: list[str]) -> dict:
    from ctrdistill.config import load_yaml
    from ctrdistill.overrides import apply_overrides

    data = load_yaml(path) if path else {}
    if not isinstance(data, dict):
        raise CtrDistillError(f"{path}: the config must be a mapping of keys to values")
    return apply_overrides(data, assignments)


def cmd_synth(args) -> None:
    from ctrdistill.config import validate_config
    from ctrdistill.data.synthetic import SynthConfig, write_synthetic

    raw = _config(args.config, args.set)
    for key in ("rows", "days", "drift", "seed"):
        if getattr(args, key) is not None:
            raw[key] = getattr(args, key)
    config = validate_config(SynthConfig, raw, "synth")
    write_synthetic(config, Path(args.output))
    print(f"wrote {config.rows:,} synthetic rows to {args.output}")


def cmd_prepare(args) -> None:
    from ctrdistill.config import validate_config
    from ctrdistill.data.prepare import PrepareConfig, prepare

    raw = _config(args.config, args.set)
    for key in ("recipe", "input", "output", "protocol"):
        if getattr(args, key) is not None:
            raw[key] = getattr(args, key)
    if args.overwrite:
        raw["overwrite"] = True
    config = validate_config(PrepareConfig, raw, args.config or "prepare")
    feature_map = prepare(config)
    splits = ", ".join(f"{k} {v:,}" for k, v in feature_map.splits.items())
    print(f"prepared {config.output}: {feature_map.num_fields} fields; rows: {splits}")


def cmd_train(args) -> None:
    from ctrdistill.analysis.report import print_table, result_row
    from ctrdistill.config import validate_config
    from ctrdistill.training.run import RunConfig, run_train

    config = validate_config(RunConfig, _config(args.config, args.set), args.config)
    result = run_train(config)
    print_table([result_row(config.name, result.metrics)], f"{config.name}: test split")
    print(f"run saved to {result.path}")


def cmd_mutual(args) -> None:
    from ctrdistill.config import validate_config
    from ctrdistill.ensembles import MutualConfig, mutual

    config = validate_config(MutualConfig, _config(args.config, args.set), args.config)
    print(f"run saved to {mutual(config).path}")


def cmd_kdef(args) -> None:
    from ctrdistill.config import validate_config
    from ctrdistill.ensembles import KDEFConfig, kdef

    config = validate_config(KDEFConfig, _config(args.config, args.set), args.config)
    print(f"run saved to {kdef(config).path}")


def cmd_distill(args) -> None:
    from ctrdistill.config import validate_config
    from ctrdistill.distill import DistillConfig, distill

    config = validate_config(DistillConfig, _config(args.config, args.set), args.config)
    print(f"run saved to {distill(config).path}")


def cmd_analyze_collapse(args) -> None:
    from ctrdistill.analysis.collapse import analyze_collapse

    reports = analyze_collapse([Path(r) for r in args.runs], Path(args.data), Path(args.output),
                               args.sample_rows)
    for r in reports:
        print(f"{r['run']}: N={r['num_subnetworks']} field IA {r['mean_field_abundance']:.2f} "
              f"hidden IA {r['mean_hidden_abundance']:.2f}")
    print(f"collapse report written to {args.output}")


def cmd_evaluate(args) -> None:
    from ctrdistill.analysis.report import print_table
    from ctrdistill.evaluation import evaluate

    metrics = evaluate(Path(args.run), Path(args.data), args.split)
    print_table([{"model": Path(args.run).name, **metrics}], f"{args.split} split")
    if args.json:
        print(json.dumps(metrics))


def cmd_predict(args) -> None:
    from ctrdistill.evaluation import predict

    rows = predict(Path(args.run), Path(args.data), Path(args.output), args.split)
    print(f"wrote {rows:,} scores to {args.output}")


def cmd_label(args) -> None:
    from ctrdistill.labels.store import label

    store = label([Path(r) for r in args.teachers], Path(args.data), Path(args.output),
                  splits=args.split or None, days=args.day or None, hidden=args.hidden,
                  relabel=args.relabel)
    rows = sum(p["rows"] for p in store.manifest["partitions"].values())
    print(f"label store {args.output}: {len(store.manifest['partitions'])} partitions, "
          f"{rows:,} rows, {len(store.teacher_versions)} teacher version(s)")


def cmd_stream(args) -> None:
    from ctrdistill.analysis.report import print_table
    from ctrdistill.config import validate_config
    from ctrdistill.stream import StreamConfig, stream

    config = validate_config(StreamConfig, _config(args.config, args.set), args.config)
    result = stream(config)
    print_table(result["rows"], f"{config.name}: daily evaluation")
    print(f"stream saved to {result['path']}")


def cmd_demo(args) -> None:
    from ctrdistill.demo import demo

    demo(Path(args.workdir), rows=args.rows, overwrite=args.overwrite)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctrdistill", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)

    def add(name: str, handler, help_text: str,
            config: str | None = "optional") -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, description=help_text)
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
    sub.add_argument("--output", required=True)
    sub.add_argument("--rows", type=int)
    sub.add_argument("--days", type=int)
    sub.add_argument("--drift", type=float)
    sub.add_argument("--seed", type=int)

    sub = add("prepare", cmd_prepare, "encode raw logs into Parquet shards with vocabularies")
    sub.add_argument("--recipe")
    sub.add_argument("--input")
    sub.add_argument("--output")
    sub.add_argument("--protocol")
    sub.add_argument("--overwrite", action="store_true")

    add("train", cmd_train, "train one model on hard labels", config="required")
    add("mutual", cmd_mutual, "mutual learning between peers", config="required")
    add("kdef", cmd_kdef, "KDEF ensemble of sub-networks on a shared embedding",
        config="required")
    add("distill", cmd_distill, "distil frozen teachers (an ensemble, optionally gated) into "
        "a student", config="required")

    analyze = verbs.add_parser("analyze", help="analyses of finished runs")
    analyses = analyze.add_subparsers(dest="analysis", required=True)
    sub = analyses.add_parser("collapse", help="embedding/representation collapse spectra")
    sub.add_argument("runs", nargs="+", help="run directories")
    sub.add_argument("--data", required=True, help="prepared dataset")
    sub.add_argument("--output", default="collapse", help="directory for JSON and PNG")
    sub.add_argument("--sample-rows", type=int, default=4096)
    sub.set_defaults(handler=cmd_analyze_collapse)

    for name, handler, text in (("evaluate", cmd_evaluate, "metrics of a run on a split"),
                                ("predict", cmd_predict, "scores of a run, keyed by row id")):
        sub = add(name, handler, text, config=None)
        sub.add_argument("run", help="run directory")
        sub.add_argument("--data", required=True, help="prepared dataset")
        sub.add_argument("--split", default="test")
        if name == "predict":
            sub.add_argument("--output", required=True, help="Parquet file to write")
        else:
            sub.add_argument("--json", action="store_true", help="also print metrics as JSON")

    add("stream", cmd_stream, "continual distillation day by day", config="required")

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

    sub = add("demo", cmd_demo, "the whole flow on built-in synthetic data", config=None)
    sub.add_argument("--workdir", default="ctrdistill-demo")
    sub.add_argument("--rows", type=int, default=300_000)
    sub.add_argument("--overwrite", action="store_true")
    return parser


def _interrupt(signum: int, frame) -> None:
    """SIGTERM (a scheduler stopping the job) unwinds like Ctrl-C, so atomic outputs are removed
    instead of leaving hidden temporary directories behind."""
    raise KeyboardInterrupt(signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
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
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
