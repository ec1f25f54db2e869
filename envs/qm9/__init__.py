"""QM9 molecules: polarizability, HOMO-LUMO gap and internal energy from a SMILES GPT-2 prior."""

from morbench.registry import register_task

ENTRY = "morbench.envs.qm9.env"

register_task("QM9", 0, f"{ENTRY}:QM9Env", f"{ENTRY}:make_vec")
# v1: oracle and learned judge on disjoint halves of the training split, GFN2-xTB judge of the gap (assets_v1/)
register_task("QM9", 1, f"{ENTRY}:QM9Env", f"{ENTRY}:make_vec", task_version=1)
