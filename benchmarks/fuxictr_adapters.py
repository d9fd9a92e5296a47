"""FuxiCTR's side of bench_fuxictr_parity.py; runs inside the FuxiCTR venv, never in ours.

FuxiCTR's model_zoo is not part of its wheel, so DNN, DeepFM and DCNv2 are re-declared here on
the wheel's own `BaseModel` and layers, line for line as in FuxiCTR's model_zoo (DNN/DNN.py,
DeepFM/DeepFM.py, DCNv2/DCNv2.py). Preprocessing is FuxiCTR's Criteo-x4 recipe:
`fuxictr.datasets.criteo.CustomizedFeatureProcessor` with `convert_to_bucket` on I1-I13, all 39
fields categorical, min_categr_count 10, then `build_dataset` (fit + transform to parquet).

    python fuxictr_adapters.py prepare --csv-dir D --data-root R
    python fuxictr_adapters.py train --data-root R --models dnn deepfm --seeds 1 2 ...

Each command prints one JSON line (prefixed RESULT:) with timings and metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

import torch
from torch import nn

DATASET_ID = "synthetic_x4"
NUMERIC = [f"I{i}" for i in range(1, 14)]
CATEGORICAL = [f"C{i}" for i in range(1, 27)]


def _feature_cols() -> list[dict]:
    return [
        {"name": NUMERIC, "active": True, "dtype": "float", "type": "categorical",
         "preprocess": "convert_to_bucket"},
        {"name": CATEGORICAL, "active": True, "dtype": "str", "type": "categorical"},
    ]


def prepare(args) -> dict:
    from fuxictr.datasets.criteo import CustomizedFeatureProcessor
    from fuxictr.preprocess import build_dataset

    started = time.perf_counter()
    processor = CustomizedFeatureProcessor(
        feature_cols=_feature_cols(), label_col={"name": "label", "dtype": "float"},
        dataset_id=DATASET_ID, data_root=args.data_root)
    build_dataset(processor,
                  train_data=os.path.join(args.csv_dir, "train.csv"),
                  valid_data=os.path.join(args.csv_dir, "valid.csv"),
                  test_data=os.path.join(args.csv_dir, "test.csv"),
                  min_categr_count=10, data_format="csv")
    return {"preprocess_s": time.perf_counter() - started}


def _model_classes():
    from fuxictr.pytorch.layers import (
        CrossNetV2,
        FactorizationMachine,
        FeatureEmbedding,
        MLP_Block,
    )
    from fuxictr.pytorch.models import BaseModel

    class DNN(BaseModel):
        def __init__(self, feature_map, model_id="DNN", gpu=-1, learning_rate=1e-3,
                     embedding_dim=10, hidden_units=(64, 64, 64), hidden_activations="ReLU",
                     net_dropout=0, batch_norm=False, embedding_regularizer=None,
                     net_regularizer=None, **kwargs):
            super().__init__(feature_map, model_id=model_id, gpu=gpu,
                             embedding_regularizer=embedding_regularizer,
                             net_regularizer=net_regularizer, **kwargs)
            self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
            self.mlp = MLP_Block(input_dim=feature_map.sum_emb_out_dim(), output_dim=1,
                                 hidden_units=list(hidden_units),
                                 hidden_activations=hidden_activations, output_activation=None,
                                 dropout_rates=net_dropout, batch_norm=batch_norm)
            self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
            self.reset_parameters()
            self.model_to_device()

        def forward(self, inputs):
            X = self.get_inputs(inputs)
            feature_emb = self.embedding_layer(X, flatten_emb=True)
            return {"y_pred": self.output_activation(self.mlp(feature_emb))}

    class DeepFM(BaseModel):
        def __init__(self, feature_map, model_id="DeepFM", gpu=-1, learning_rate=1e-3,
                     embedding_dim=10, hidden_units=(64, 64, 64), hidden_activations="ReLU",
                     net_dropout=0, batch_norm=False, embedding_regularizer=None,
                     net_regularizer=None, **kwargs):
            super().__init__(feature_map, model_id=model_id, gpu=gpu,
                             embedding_regularizer=embedding_regularizer,
                             net_regularizer=net_regularizer, **kwargs)
            self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
            self.fm = FactorizationMachine(feature_map)
            self.mlp = MLP_Block(input_dim=feature_map.sum_emb_out_dim(), output_dim=1,
                                 hidden_units=list(hidden_units),
                                 hidden_activations=hidden_activations, output_activation=None,
                                 dropout_rates=net_dropout, batch_norm=batch_norm)
            self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
            self.reset_parameters()
            self.model_to_device()

        def forward(self, inputs):
            X = self.get_inputs(inputs)
            feature_emb = self.embedding_layer(X)
            y_pred = self.fm(X, feature_emb)
            y_pred += self.mlp(feature_emb.flatten(start_dim=1))
            return {"y_pred": self.output_activation(y_pred)}

    class DCNv2(BaseModel):
        def __init__(self, feature_map, model_id="DCNv2", gpu=-1, model_structure="parallel",
                     learning_rate=1e-3, embedding_dim=10, num_cross_layers=3,
                     stacked_dnn_hidden_units=(), parallel_dnn_hidden_units=(),
                     dnn_activations="ReLU", net_dropout=0, batch_norm=False,
                     embedding_regularizer=None, net_regularizer=None, **kwargs):
            super().__init__(feature_map, model_id=model_id, gpu=gpu,
                             embedding_regularizer=embedding_regularizer,
                             net_regularizer=net_regularizer, **kwargs)
            self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
            input_dim = feature_map.sum_emb_out_dim()
            self.crossnet = CrossNetV2(input_dim, num_cross_layers)
            self.model_structure = model_structure
            assert model_structure == "parallel", "only the parallel structure is adapted"
            self.parallel_dnn = MLP_Block(input_dim=input_dim, output_dim=None,
                                          hidden_units=list(parallel_dnn_hidden_units),
                                          hidden_activations=dnn_activations,
                                          output_activation=None, dropout_rates=net_dropout,
                                          batch_norm=batch_norm)
            self.fc = nn.Linear(input_dim + parallel_dnn_hidden_units[-1], 1)
            self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
            self.reset_parameters()
            self.model_to_device()

        def forward(self, inputs):
            X = self.get_inputs(inputs)
            feature_emb = self.embedding_layer(X, flatten_emb=True)
            cross_out = self.crossnet(feature_emb)
            dnn_out = self.parallel_dnn(feature_emb)
            final_out = torch.cat([cross_out, dnn_out], dim=-1)
            return {"y_pred": self.output_activation(self.fc(final_out))}

    return {"dnn": DNN, "deepfm": DeepFM, "dcnv2": DCNv2}


def _model_params(name: str, args) -> dict:
    common = {"optimizer": "adam", "loss": "binary_crossentropy", "learning_rate": args.lr,
              "embedding_dim": 16, "embedding_regularizer": args.embedding_l2,
              "net_regularizer": 0, "net_dropout": 0.1, "batch_norm": False,
              "monitor": "AUC", "monitor_mode": "max", "metrics": ["logloss", "AUC"],
              "early_stop_patience": 2, "verbose": 0, "model_root": args.model_root}
    if name == "dcnv2":
        return {**common, "model_structure": "parallel", "num_cross_layers": 3,
                "parallel_dnn_hidden_units": [400, 400, 400]}
    return {**common, "hidden_units": [400, 400, 400]}


def train(args) -> dict:
    from fuxictr.features import FeatureMap
    from fuxictr.pytorch.dataloaders import RankDataLoader
    from fuxictr.pytorch.torch_utils import seed_everything

    torch.set_num_threads(args.threads)
    data_dir = os.path.join(args.data_root, DATASET_ID)
    feature_map = FeatureMap(DATASET_ID, data_dir)
    feature_map.load(os.path.join(data_dir, "feature_map.json"), {"embedding_dim": 16})
    started = time.perf_counter()
    train_gen, valid_gen, test_gen = RankDataLoader(
        feature_map, stage="both", data_format="parquet", batch_size=args.batch_size,
        train_data=os.path.join(data_dir, "train.parquet"),
        valid_data=os.path.join(data_dir, "valid.parquet"),
        test_data=os.path.join(data_dir, "test.parquet"), shuffle=True)
    loader_s = time.perf_counter() - started
    classes = _model_classes()
    runs = []
    for name in args.models:
        for seed in args.seeds:
            seed_everything(seed)
            model = classes[name](feature_map, model_id=f"{name}_{seed}",
                                  **_model_params(name, args))
            os.makedirs(model.model_dir, exist_ok=True)  # as FuxiCTR's run_expid.py does
            valid_s = [0.0]
            original = model.eval_step

            def timed_eval_step(original=original, valid_s=valid_s):
                t0 = time.perf_counter()
                original()
                valid_s[0] += time.perf_counter() - t0

            model.eval_step = timed_eval_step
            t0 = time.perf_counter()
            model.fit(train_gen, epochs=args.epochs, validation_data=valid_gen,
                      max_gradient_norm=10.0)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            test = model.evaluate(test_gen)
            eval_s = time.perf_counter() - t0
            runs.append({"model": name, "seed": seed, "auc": test["AUC"],
                         "logloss": test["logloss"], "fit_s": fit_s, "valid_s": valid_s[0],
                         "train_s": fit_s - valid_s[0], "eval_s": eval_s,
                         "params": sum(p.numel() for p in model.parameters())})
            print(json.dumps(runs[-1]), flush=True)
    return {"loader_s": loader_s, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--csv-dir", required=True)
    p.add_argument("--data-root", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data-root", required=True)
    t.add_argument("--model-root", required=True)
    t.add_argument("--models", nargs="+", default=["dnn", "deepfm", "dcnv2"])
    t.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--batch-size", type=int, default=4096)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--embedding-l2", type=float, default=1e-5)
    t.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = prepare(args) if args.command == "prepare" else train(args)
    print("RESULT:" + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
