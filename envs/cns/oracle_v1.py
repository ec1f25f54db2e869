"""The CNS-v1 oracle: CNS-v0's pool and BBB batching, with the objectives chosen by name (see ``objectives_v1``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from morbench.core import Context, OracleEvaluation
from morbench.envs.cns.bbb import BBBModel, feature_matrix
from morbench.envs.cns.env import CNSOracle, sa_objective
from morbench.envs.cns.objectives_v1 import (
    OBJECTIVES_V1,
    PROPERTIES,
    V1Molecule,
    similarity_objective,
    solubility_objective,
)
from morbench.errors import ConfigError

__all__ = ["V1_PROPERTIES", "CNSOracleV1"]

V1_PROPERTIES = tuple(PROPERTIES)  # raw properties every CNS-v1 record carries: esol_log_s, sim_imatinib, tpsa


class CNSOracleV1(CNSOracle):
    """Scores ``objectives`` (names from :data:`~morbench.envs.cns.objectives_v1.OBJECTIVES_V1`), all in [0, 1].

    Each worker computes QED, SA, the BBB model's features and the exact v1 properties (ESOL log S, ECFP4
    Tanimoto to imatinib, TPSA) of a molecule; the BBB model then scores the batch in one forward pass, as in
    :class:`~morbench.envs.cns.env.CNSOracle`. ``info["properties"]`` holds every raw value whichever
    objectives are chosen.
    """

    def __init__(self, model: BBBModel, objectives: Sequence[str], **settings: object) -> None:
        objectives = tuple(objectives)
        unknown = [name for name in objectives if name not in OBJECTIVES_V1]
        if unknown or not objectives or len(set(objectives)) != len(objectives):
            raise ConfigError(f"objectives must be distinct names from {sorted(OBJECTIVES_V1)}, got {list(objectives)}")
        self.objective_names = objectives
        self.property_names = ("qed", "sa_score", "bbb_probability", *V1_PROPERTIES)
        settings.pop("molecule_function", None)
        super().__init__(model, molecule_function=V1Molecule(V1_PROPERTIES), **settings)  # type: ignore[arg-type]

    def with_model(self, model: BBBModel, budget: int | None = None) -> CNSOracleV1:
        """A new oracle that scores the same objectives with another BBB model (the env's judge)."""
        return CNSOracleV1(model, self.objective_names, budget=budget, **self.worker_settings)

    def evaluate(self, keys: list[str], contexts: list[Context | None]) -> OracleEvaluation:
        records, failures, ok = self.molecule_records(keys)
        width = len(self.spec.descriptors)
        bbb_records = [records[i]._replace(descriptors=records[i].descriptors[:width]) for i in ok]
        bits, descriptors = feature_matrix(bbb_records, self.spec)
        properties = {name: np.full(len(keys), np.nan) for name in self.property_names}
        properties["qed"][ok] = [records[i].qed for i in ok]
        properties["sa_score"][ok] = [records[i].sa for i in ok]
        properties["bbb_probability"][ok] = self.model.probability(bits, descriptors)
        for k, name in enumerate(V1_PROPERTIES):
            properties[name][ok] = [records[i].descriptors[width + k] for i in ok]
        values = {
            "qed": properties["qed"],
            "sa": sa_objective(properties["sa_score"]),
            "bbb": properties["bbb_probability"],
            "solubility": solubility_objective(properties["esol_log_s"]),
            "imatinib_likeness": similarity_objective(properties["sim_imatinib"]),
        }
        rewards = np.stack([values[name] for name in self.objective_names], axis=1)
        return OracleEvaluation(rewards=rewards, properties=properties, failures=failures)
