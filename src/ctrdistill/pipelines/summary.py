"""What a run says of itself: its parameter counts and the short summary.md."""

from __future__ import annotations

from typing import Any

from ctrdistill.strategies.base import Strategy


def parameter_counts(strategy: Strategy) -> str:
    """The served model's parameters and, when training fits more (aux head, gate, hint map),
    what each extra part adds: 'S served parameters (T trained: + aux head A, ensemble E)'."""
    served = {id(p) for p in strategy.served_model().parameters()}
    extra = {}
    for name, module in strategy.named_children():
        count = sum(p.numel() for p in module.parameters()
                    if p.requires_grad and id(p) not in served)
        if count:
            extra[name.replace("_", " ")] = count
    text = f"{sum(p.numel() for p in strategy.served_model().parameters()):,} served parameters"
    if not extra:
        return text
    trained = sum(p.numel() for p in strategy.parameters() if p.requires_grad)
    parts = ", ".join(f"{name} {count:,}" for name, count in extra.items())
    return f"{text} ({trained:,} trained: + {parts})"


def summary(name: str, metrics: dict[str, Any], parameters: str, config: dict[str, Any]) -> str:
    lines = [f"# Run {name}", "", "| split | AUC | logloss | calibration |", "|---|---|---|---|"]
    for split in ("valid", "test"):
        if split in metrics:
            m = metrics[split]
            lines.append(f"| {split} | {m['auc']:.5f} | {m['logloss']:.5f} | "
                         f"{m['calibration']:.4f} |")
    if config.get("method", {}).get("add_valid_to_train"):
        lines += ["", "The valid split is not reported: the model trained on it "
                  "(add_valid_to_train); test is its held-out figure."]
    lines += ["", f"- {parameters}",
              f"- training: {metrics['train_samples_per_second']:,.0f} samples/s, "
              f"{metrics['steps']} steps, best at step {metrics['best_step']}",
              f"- inference: {metrics['inference_samples_per_second']:,.0f} samples/s"]
    return "\n".join(lines) + "\n"
