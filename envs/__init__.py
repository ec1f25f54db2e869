"""morbench task families; importing this package registers every task id (no heavy imports happen here)."""

from morbench.envs import cns, enhancer, motifs, qm9, summarize  # noqa: F401
