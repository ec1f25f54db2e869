"""Drug-like CNS molecules: QED, synthetic accessibility and blood-brain-barrier permeability (v0); brain
penetration against solubility and kinase-inhibitor likeness (v1), and a five-objective variant (CNS-MPO-v1)."""

from morbench.registry import register_task

ENTRY = "morbench.envs.cns.env"

register_task("CNS", 0, f"{ENTRY}:CNSEnv", f"{ENTRY}:make_vec")
register_task("CNS", 1, f"{ENTRY}:CNSEnv", f"{ENTRY}:make_vec", task_version=1)
register_task(
    "CNS-MPO",
    1,
    f"{ENTRY}:CNSEnv",
    f"{ENTRY}:make_vec",
    task_version=1,
    objectives=("qed", "sa", "bbb", "solubility", "imatinib_likeness"),
    preference_divisions=2,
)
