"""Motifs: synthetic motif-matching objectives with an exact Pareto front (no assets)."""

from morbench.registry import register_task

ENTRY = "morbench.envs.motifs.env"

register_task("Motifs", 0, f"{ENTRY}:MotifsEnv", f"{ENTRY}:make_vec")
register_task(
    "Motifs-2obj",
    0,
    f"{ENTRY}:MotifsEnv",
    f"{ENTRY}:make_vec",
    num_motifs=2,
    motif_length=4,
    max_length=6,
    num_distractors=4,
    preference_divisions=4,
)
