"""The `ctrdistill` command: parses, validates, calls the library. User mistakes print one line
and exit with code 2.

One convention for every verb: `ctrdistill VERB [POSITIONAL] [--config YAML] [--FIELD VALUE ...]
[--set key.path=value ...]`. The flags are generated from the verb's config class (see
`ctrdistill.flags`); the command line overrides `--set`, which overrides the YAML file."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ctrdistill.errors import CtrDistillError
from ctrdistill.files import os_failure
from ctrdistill.version import __version__

#: The positional of verbs whose argument is the YAML config file itself.
CONFIG_FILE = "config"

#: (result, config, parsed arguments) -> what the verb prints last (None: nothing)
Line = Callable[[Any, Any, argparse.Namespace], str | None]


@dataclass(frozen=True)
class Verb:
    """One verb: where its function and config class live (imported only when it runs), its
    positional (a config key, CONFIG_FILE, or none), and the line it prints after its table
    (`started`: a line on stderr once its work has started, from its config: the function
    takes an `on_start` callback)."""

    help: str
    module: str
    function: str
    config: str
    positional: str | None
    line: Line
    example: str
    table: bool = True  # print the result's rows as a table
    switches: dict[str, str] = field(default_factory=dict)  # switches only the line reads
    aliases: dict[str, str] = field(default_factory=dict)  # extra flag name -> config key
    processes: bool = False  # --nproc/--max-restarts (torchrun)
    started: Callable[[Any], str] | None = None
    #: `--NAME VALUE` options that do something else instead of running the verb (no config
    #: needed): name -> (help, function of the value returning the line to print)
    instead: dict[str, tuple[str, Callable[[str], str]]] = field(default_factory=dict)
    more_help: Callable[[], str] | None = None  # text after the flags in --help


def _run_saved(result: Any, config: Any, args: argparse.Namespace) -> str:
    return f"run saved to {result.path}"


def _prepared(result: Any, config: Any, args: argparse.Namespace) -> str:
    splits = ", ".join(f"{k} {v:,}" for k, v in result.metrics["rows"].items())
    return f"prepared {result.path}: {result.metrics['fields']} fields; rows: {splits}"


def _collapsed(result: Any, config: Any, args: argparse.Namespace) -> str:
    lines = [f"{r['run']}: N={r['num_subnetworks']} field IA {r['mean_field_abundance']:.2f} "
             f"hidden IA {r['mean_hidden_abundance']:.2f}" for r in result.history]
    return "\n".join([*lines, f"collapse report written to {config.output}"])


def _exported(result: Any, config: Any, args: argparse.Namespace) -> str:
    m = result.metrics
    parity = m["parity_max_abs_logit_difference"]
    checked = f"; max abs logit difference to PyTorch {parity:.1e}" if parity is not None else ""
    return f"exported {config.run} to {config.output} ({m['format']} by {m['exporter']}{checked})"


def _synthesised(result: Any, config: Any, args: argparse.Namespace) -> str:
    if config.landing is not None:
        return (f"landed {result.metrics['partitions']} partitions of "
                f"{config.rows_per_partition:,} rows in {result.path}")
    return f"wrote {result.metrics['rows']:,} synthetic rows to {result.path}"


def _follow_status(directory: str) -> str:
    from ctrdistill.pipelines.follow import describe_status, read_status

    return describe_status(read_status(directory))


def _followed(result: Any, config: Any, args: argparse.Namespace) -> str:
    from ctrdistill.pipelines.follow import describe_status

    return describe_status(result.metrics)


def _recipes() -> str:
    from ctrdistill.data.prepare import split_help
    from ctrdistill.data.recipes import recipes_help

    return f"{recipes_help()}\n\n{split_help()}"


def _labelled(result: Any, config: Any, args: argparse.Namespace) -> str:
    m = result.metrics
    return (f"label store {config.output}: {m['partitions']} partitions, {m['rows']:,} rows, "
            f"{m['teacher_versions']} teacher version(s)")


def _searched(result: Any, config: Any, args: argparse.Namespace) -> str:
    m = result.metrics
    return ((result.path.parents[1] / "trials.md").read_text() +
            f"\nbest teacher (trial {m['best_trial']}, {m['objective']} valid AUC "
            f"{m['best_value']:.5f}): {result.path}")



#: Every verb, in the order of the flow (`analyze collapse` is a verb under a group).
VERBS: dict[str, Verb] = {
    "synth": Verb(
        "generate the synthetic benchmark (raw Parquet)", "ctrdistill.pipelines.prepare",
        "synth", "SynthCommand", None, _synthesised,
        "ctrdistill synth --output data/raw --rows 1000000 --days 10 --drift 0.05"),
    "prepare": Verb(
        "encode raw logs into Parquet shards with vocabularies", "ctrdistill.pipelines.prepare",
        "prepare", "PrepareConfig", None, _prepared,
        "ctrdistill prepare --recipe synthetic --input data/raw --output data/synth "
        "--protocol x4", more_help=_recipes),
    "train": Verb(
        "train one model on hard labels", "ctrdistill.pipelines.fit", "train", "TrainRunConfig",
        CONFIG_FILE, _run_saved, "ctrdistill train configs/train_dnn.yaml --set train.epochs=2",
        processes=True),
    "distill": Verb(
        "distil frozen teachers (an ensemble, optionally gated) into a student",
        "ctrdistill.pipelines.fit", "distill", "DistillConfig", CONFIG_FILE, _run_saved,
        "ctrdistill distill configs/distill_example.yaml --set strategy.ensemble=mean_logits",
        processes=True),
    "mutual": Verb(
        "mutual learning between peers", "ctrdistill.pipelines.fit", "mutual", "MutualConfig",
        CONFIG_FILE, _run_saved, "ctrdistill mutual configs/mutual_example.yaml", processes=True),
    "kdef": Verb(
        "KDEF ensemble of sub-networks on a shared embedding", "ctrdistill.pipelines.fit", "kdef",
        "KDEFConfig", CONFIG_FILE, _run_saved,
        "ctrdistill kdef configs/kdef_example.yaml --set num_subnetworks=2", processes=True),
    "analyze collapse": Verb(
        "embedding/representation collapse spectra", "ctrdistill.pipelines.analyze",
        "collapse", "CollapseConfig", "runs", _collapsed,
        "ctrdistill analyze collapse runs/kdef4 runs/naive4 --data data/synth "
        "--output collapse/"),
    "evaluate": Verb(
        "metrics of a run on a split", "ctrdistill.pipelines.evaluate", "evaluate",
        "EvaluateConfig", "run", lambda r, c, a: json.dumps(r.metrics) if a.json else None,
        "ctrdistill evaluate runs/dnn --data data/synth --split test --json",
        switches={"json": "also print metrics as JSON"}),
    "predict": Verb(
        "scores of a run, keyed by row id (needs torch to read the run's checkpoint)",
        "ctrdistill.pipelines.predict", "predict", "PredictConfig", "run",
        lambda r, c, a: f"wrote {r.metrics['rows']:,} scores to {r.path}",
        "ctrdistill predict runs/dnn --data data/synth --output scores.parquet"),
    "export": Verb(
        "a run's served model as a bundle for production", "ctrdistill.pipelines.export",
        "export", "ExportConfig", "run", _exported,
        "ctrdistill export runs/kd-gate --output bundles/kd-gate"),
    "serve": Verb(
        "an ONNX bundle as an HTTP JSON scoring service", "ctrdistill.pipelines.serve", "serve",
        "ServeConfig", "bundle", lambda r, c, a: None,
        "ctrdistill serve bundles/kd-gate --port 8000 --workers 2",
        started=lambda c: f"serving {c.bundle} on http://{c.host}:{c.port} (Ctrl-C stops)"),
    "stream": Verb(
        "continual distillation day by day", "ctrdistill.pipelines.stream", "stream",
        "StreamConfig", CONFIG_FILE, lambda r, c, a: f"stream saved to {r.path}",
        "ctrdistill stream configs/stream_example.yaml"),
    "follow": Verb(
        "continuous distillation from a landing zone: each new partition validated, labelled "
        "once, distilled into every student, trained into the teacher, exported every K",
        "ctrdistill.pipelines.follow", "follow", "FollowConfig", CONFIG_FILE, _followed,
        "ctrdistill follow configs/follow_example.yaml --once", table=False, processes=True,
        instead={"status": ("print where the follow directory DIR stands (lag, rows/s per "
                            "stage, last committed partition) and exit", _follow_status)}),
    "label": Verb(
        "score data once with teacher runs into a label store", "ctrdistill.pipelines.label",
        "label", "LabelConfig", "teachers", _labelled,
        "ctrdistill label runs/kd-gate-teachers/dcnv2 --data data/synth --output stores/t1",
        aliases={"split": "splits", "day": "days"}, processes=True),
    "search": Verb(
        "choose a teacher under a budget (Optuna): the objective is the teacher's or the "
        "distilled student's valid AUC", "ctrdistill.pipelines.search", "search",
        "SearchConfig", CONFIG_FILE, _searched,
        "ctrdistill search configs/search_example.yaml --set trials=12", table=False),
    "demo": Verb(
        "the whole flow on built-in synthetic data", "ctrdistill.pipelines.demo", "demo",
        "DemoConfig", None,
        lambda r, c, a: f"runs, learning curves and the results table are in {r.path}",
        "ctrdistill demo --rows 100000 --workdir /tmp/demo"),
}
#: Groups of verbs (`ctrdistill analyze collapse`) and their help.
GROUPS = {"analyze": "analyses of finished runs"}


def _rank() -> int:
    """This process's rank under torchrun (0 alone): only rank 0 shows results."""
    return int(os.environ.get("RANK", "0"))


def _config_class(verb: Verb) -> Any:
    return getattr(importlib.import_module(verb.module), verb.config)


class _Help(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and shows a flag's argparse default where it has a real
    one (generated flags default to None: their help shows the config class's default)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default is None or default is False or default == [] \
                or default == argparse.SUPPRESS or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def _add_verb_arguments(sub: argparse.ArgumentParser, name: str, verb: Verb) -> None:
    from ctrdistill.flags import add_flags

    if verb.positional == CONFIG_FILE:
        sub.add_argument(CONFIG_FILE, help="YAML config", nargs="?" if verb.instead else None)
    else:
        sub.add_argument("--config", help="YAML config (flags override it)")
    sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. train.epochs=3")
    add_flags(sub, _config_class(verb), positional=verb.positional, aliases=verb.aliases)
    for switch, text in verb.switches.items():
        sub.add_argument(f"--{switch}", action="store_true", help=text)
    for option, (text, _) in verb.instead.items():
        sub.add_argument(f"--{option}", metavar="DIR", dest=f"instead_{option}", help=text)
    sub.add_argument("--quiet", action="store_true",
                     help="log warnings and errors only, and draw no progress bars")
    if verb.processes:
        sub.add_argument("--nproc", type=int, default=1, metavar="N",
                         help="run in N processes with DDP (torchrun on this machine; gloo on "
                         "CPUs, NCCL on GPUs)")
        sub.add_argument("--max-restarts", type=int, default=0, metavar="R",
                         help="with --nproc: restart the group up to R times after a failure; "
                         "it resumes from the last checkpoint")
    sub.set_defaults(verb_name=name)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every verb, or with `only` (a first word) the flags of that verb alone:
    generating flags imports a verb's config class, and a verb imports only what it uses."""
    parser = argparse.ArgumentParser(prog="ctrdistill", description=__doc__, formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True)
    groups: dict[str, Any] = {}
    for name, verb in VERBS.items():
        group, _, leaf = name.rpartition(" ")
        example = f"example:\n  {verb.example}"
        if group and group not in groups:
            text = GROUPS[group]
            groups[group] = verbs.add_parser(
                group, help=text, description=text, epilog=example,
                formatter_class=_Help).add_subparsers(dest="analysis", required=True)
        if verb.more_help is not None and (only is None or only == name.split()[0]):
            example = f"{verb.more_help()}\n\n{example}"
        sub = (groups[group] if group else verbs).add_parser(
            leaf, help=verb.help, description=verb.help, epilog=example, formatter_class=_Help)
        if only is None or only == name.split()[0]:
            _add_verb_arguments(sub, name, verb)
    return parser


def _first_word(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def _config(args: argparse.Namespace, config_class: Any) -> Any:
    """The verb's validated config: the YAML file, then --set, then the flags given."""
    from ctrdistill.config import load_yaml, validate_config
    from ctrdistill.flags import flag_values
    from ctrdistill.overrides import apply_overrides

    path = args.config
    data = load_yaml(path) if path else {}
    if not isinstance(data, dict):
        raise CtrDistillError(f"{path}: the config must be a mapping of keys to values")
    data = apply_overrides(data, args.set) | flag_values(args)
    return validate_config(config_class, data, config_class.__name__)


def execute(args: argparse.Namespace) -> None:
    """Run the parsed verb and print its table and result line (rank 0 only)."""
    verb = VERBS[args.verb_name]
    for option, (_, function) in verb.instead.items():
        value = getattr(args, f"instead_{option}")
        if value is not None:
            print(function(value))
            return
    if verb.positional == CONFIG_FILE and verb.instead and args.config is None:
        raise CtrDistillError(f"{args.verb_name} needs a CONFIG (or --"
                              f"{' / --'.join(verb.instead)} DIR)")
    module = importlib.import_module(verb.module)
    config = _config(args, getattr(module, verb.config))
    function = getattr(module, verb.function)
    if verb.started is not None and _rank() == 0 and not args.quiet:
        started = verb.started(config)  # said once it has started: a failed start is one line
        result = function(config, on_start=lambda: print(started, file=sys.stderr))
    else:
        result = function(config)
    if _rank() != 0:
        return
    if verb.table and result.rows:
        from ctrdistill.analysis.report import print_table

        print_table(result.rows, result.title)
    line = verb.line(result, config, args)
    if line is not None:
        print(line)


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


def _show_logs(quiet: bool) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Messages())
    root = logging.getLogger("ctrdistill")
    root.addHandler(handler)
    # one copy of each line: rank 0's
    root.setLevel(logging.WARNING if quiet or _rank() != 0 else logging.INFO)
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
    from ctrdistill.progress import set_quiet
    from ctrdistill.training.memory import keep_freed_memory

    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_first_word(argv) or "").parse_args(argv)
    name = args.verb_name
    if getattr(args, "nproc", 1) > 1 and "LOCAL_RANK" not in os.environ:
        try:
            return _launch(argv, args.nproc, args.max_restarts)
        except Exception as error:  # the agent's ChildFailedError: the ranks said why
            print(f"ctrdistill {name}: error: {type(error).__name__}: "
                  f"{str(error).splitlines()[0] if str(error) else ''}", file=sys.stderr)
            return 1
    keep_freed_memory()
    set_quiet(args.quiet)
    handler = _show_logs(args.quiet)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        execute(args)
    except CtrDistillError as error:
        print(f"ctrdistill {name}: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        refused = os_failure(error)  # disk full, permission denied, ...: one line too
        if refused is None:
            raise
        print(f"ctrdistill {name}: error: {refused}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        by_sigterm = interrupt.args == (signal.SIGTERM,)
        signum = signal.SIGTERM if by_sigterm else signal.SIGINT
        print(f"interrupted ({signum.name})", file=sys.stderr)
        return 128 + signum
    finally:
        set_quiet(False)
        logging.getLogger("ctrdistill").removeHandler(handler)
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
