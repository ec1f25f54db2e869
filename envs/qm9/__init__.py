"""QM9 molecules: polarizability, HOMO-LUMO gap and internal energy from a SMILES GPT-2 prior."""

from morbench.registry import register_task

ENTRY = "morbench.envs.qm9.env"

register_task("QM9", 0, f"{ENTRY}:QM9Env", f"{ENTRY}:make_vec")
