"""200-bp enhancer design: cell-type activity proxies for HepG2, K562 and GM12878."""

from morbench.registry import register_task

ENTRY = "morbench.envs.enhancer.env"

register_task("Enhancer", 0, f"{ENTRY}:EnhancerEnv", f"{ENTRY}:make_vec")
