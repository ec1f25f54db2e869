"""``morbench build-assets qm9``, stages 2 and 3: the SMILES GPT-2 prior, and the training oracle
(fingerprint MLP) and judge (graph convolution) property predictors."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from morbench.buildkit import agreement
from morbench.envs.qm9.build_data import Dataset
from morbench.envs.qm9.predictors import PROPERTY_NAMES

if TYPE_CHECKING:
    from rdkit import Chem
    from transformers import PreTrainedTokenizerBase

    from morbench.envs.qm9.build import BuildConfig
    from morbench.envs.qm9.predictors import PropertyPredictor

__all__ = ["PRIOR_CONTEXT_SLACK", "SHARED_TRAINING_PARTS", "build_oracles", "build_prior", "task_max_length"]

# positions the prior keeps beyond [BOS] + max_length, for conditioning tokens such as Rewards-in-Context's
# reward tokens (the same slack as ``morbench.models.CONDITIONING_SLACK`` gives asset-free priors)
PRIOR_CONTEXT_SLACK = 16


def build_prior(config: BuildConfig, data: Dataset) -> dict[str, Any]:
    from morbench.chem import build_smiles_tokenizer
    from morbench.models import save_causal_lm
    from morbench.pretrain import encode_corpus, pretrain_gpt2, sequence_nll

    train, _ = data.part("train")
    valid, _ = data.part("valid")
    test, _ = data.part("test")
    tokenizer = build_smiles_tokenizer(train)
    max_length = task_max_length(tokenizer, train, config.max_length_slack)
    max_tokens = max_length + 1  # [BOS] + tokens + [EOS] must fit n_positions
    train_ids, dropped_train = encode_corpus(tokenizer, train, max_tokens)
    valid_ids, dropped_valid = encode_corpus(tokenizer, valid, max_tokens)
    test_ids, dropped_test = encode_corpus(tokenizer, test, max_tokens)
    n_positions = max_tokens + PRIOR_CONTEXT_SLACK
    result = pretrain_gpt2(
        tokenizer, train_ids, valid_ids, n_positions=n_positions, config=config.prior, progress=config.progress
    )
    prior_dir = config.assets_dir / "prior"
    save_causal_lm(result.model, prior_dir, tokenizer)
    return {
        "config": dataclasses.asdict(config.prior),
        "vocab_size": len(tokenizer),
        "vocabulary": tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))),
        "max_length": max_length,
        "n_positions": n_positions,
        "num_parameters": result.num_parameters,
        "steps": result.steps,
        "train_sequences": len(train_ids),
        "dropped_with_unknown_tokens": {
            "train": len(dropped_train),
            "valid": len(dropped_valid),
            "test": len(dropped_test),
        },
        "train_nll_last_epoch": result.train_loss,
        "valid_nll": result.valid_nll,
        "test_nll": sequence_nll(result.model, test_ids, tokenizer.pad_token_id),
        "train_seconds": result.seconds,
    }


def task_max_length(tokenizer: PreTrainedTokenizerBase, train: Sequence[str], slack: int) -> int:
    longest = max(len(ids) for ids in tokenizer(list(train), add_special_tokens=False)["input_ids"])
    return longest + 1 + slack


# -- stage 3: oracles -----------------------------------------------------------------------------------------
# which parts of the dataset each role trains and early-stops on (v0: both the whole training split)
SHARED_TRAINING_PARTS = {"oracle": ("train", "valid"), "judge": ("train", "valid")}


def build_oracles(
    config: BuildConfig, data: Dataset, training_parts: Mapping[str, tuple[str, str]] = SHARED_TRAINING_PARTS
) -> dict[str, Any]:
    """Train the oracle (fingerprint MLP) and the judge (graph convolution); report both on the test split.

    ``training_parts`` maps each role to the (training, validation) parts of ``data.split`` it learns from:
    QM9-v0 trains both on the whole training split, QM9-v1 each on its own half (``build_v1``).
    """
    from morbench.envs.qm9.molecules import parse_qm9_molecule
    from morbench.envs.qm9.predictors import regression_metrics, train_predictor

    names = dict.fromkeys([*(part for pair in training_parts.values() for part in pair), "test"])
    parts = {name: data.part(name) for name in names}
    mols = {name: [parse_qm9_molecule(s) for s in smiles] for name, (smiles, _) in parts.items()}
    report: dict[str, Any] = {}
    predictions = {}
    for role, training, filename in (("oracle", config.oracle, "oracle_mlp"), ("judge", config.judge, "judge_gnn")):
        train_part, valid_part = training_parts[role]
        result = train_predictor(
            training,
            mols[train_part],
            parts[train_part][1],
            mols[valid_part],
            parts[valid_part][1],
            progress=config.progress,
        )
        result.predictor.save(config.assets_dir, filename)
        predictions[role] = result.predictor.predict(mols["test"])
        report[role] = {
            "files": [f"{filename}.safetensors", f"{filename}.json"],
            "model": training.kind,
            "config": dataclasses.asdict(training),
            "num_parameters": result.num_parameters,
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "train_seconds": result.seconds,
            "history": result.history,
            "valid": regression_metrics(parts[valid_part][1], result.predictor.predict(mols[valid_part])),
            "test": regression_metrics(parts["test"][1], predictions[role]),
            "composition_baseline_only_test": regression_metrics(
                parts["test"][1], _baseline_prediction(result.predictor, mols["test"])
            ),
        }
    report["judge"]["agreement_with_oracle_on_test"] = agreement(
        predictions["oracle"], predictions["judge"], PROPERTY_NAMES
    )
    return report


def _baseline_prediction(predictor: PropertyPredictor, mols: list[Chem.Mol]) -> np.ndarray:
    from morbench.envs.qm9.molecules import composition

    counts = composition(mols)
    return predictor.scaler.baseline(counts) + predictor.scaler.residual_mean
