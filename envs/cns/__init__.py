"""Drug-like CNS molecules: QED, synthetic accessibility and blood-brain-barrier permeability."""

from morbench.registry import register_task

ENTRY = "morbench.envs.cns.env"

register_task("CNS", 0, f"{ENTRY}:CNSEnv", f"{ENTRY}:make_vec")
