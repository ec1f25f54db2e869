"""Every seed morbench derives from a run's seed, in one place.

New code derives seeds with :func:`derive_seed` (``numpy.random.SeedSequence`` over the seed and any labels:
independent streams, no collisions between labels). The named rules below predate it; they are kept exactly,
because they are part of results people have published and verified: the evaluation seeds are the protocol's
(the leaderboard re-samples every verified entry with them), and the training seeds fix every committed
baseline run bit for bit. Changing one is a protocol change (a new env or method version), not a refactor.

=========================  ====================================  ===================================================
rule                       value                                 used by
=========================  ====================================  ===================================================
``preference_seed``        ``seed * 1_000_003 + index``          sampling the protocol's samples at grid point index
``expert_seed``            ``seed * 1000 + 100 + k``             objective k's expert (Rewarded Soups, IterativeRS)
``policy_seed``            ``seed * 1000 + index``               MORLHF's index-th trained preference
``round_members_rng``      ``default_rng([seed, round])``        IterativeRS's objective subset of a round
``ric_offline_seed``       ``seed * 104729 + 1``                 RiC's offline prior samples
``ric_online_seed``        ``seed * 7919 + round``               RiC's online round samples
``ric_goal_rng``           ``default_rng([seed, 7])``            RiC's goal levels
``best_of_n_seed``         ``seed * 1009 + first``               best-of-N's candidates from round ``first`` on
``pilot_seed``             ``seed * 7 + 5``                      best-of-N's cost-measuring pilot batch
=========================  ====================================  ===================================================
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "best_of_n_seed",
    "derive_seed",
    "expert_seed",
    "pilot_seed",
    "policy_seed",
    "preference_seed",
    "ric_goal_rng",
    "ric_offline_seed",
    "ric_online_seed",
    "round_members_rng",
]


def derive_seed(seed: int, *labels: int | str) -> int:
    """A 32-bit seed for the stream named by ``labels`` under ``seed`` (``SeedSequence`` entropy mixing).

    >>> derive_seed(0, "expert", 2) == derive_seed(0, "expert", 2) != derive_seed(0, "expert", 3)
    True
    """
    words = [int(seed)]
    for label in labels:
        if isinstance(label, str):
            words.extend(label.encode())  # bytes as small integers: distinct labels, distinct entropy
            words.append(256)  # a separator no byte equals, so ("ab", "c") != ("a", "bc")
        else:
            words.append(int(label))
            words.append(257)
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint32)[0])


def preference_seed(seed: int, index: int) -> int:
    """The protocol's sampling seed at the ``index``-th preference of the grid."""
    return seed * 1_000_003 + index


def expert_seed(seed: int, objective: int) -> int:
    """Objective ``k``'s expert (shared by Rewarded Soups and IterativeRS, so m = T is Rewarded Soups)."""
    return seed * 1000 + 100 + objective


def policy_seed(seed: int, index: int) -> int:
    """MORLHF's ``index``-th trained preference."""
    return seed * 1000 + index


def round_members_rng(seed: int, round_index: int) -> np.random.Generator:
    """IterativeRS's draw of the objectives a round updates (with ``objectives_per_round < K``)."""
    return np.random.default_rng([seed, round_index])


def ric_offline_seed(seed: int) -> int:
    """Rewards-in-Context's offline prior samples."""
    return seed * 104729 + 1


def ric_online_seed(seed: int, round_index: int) -> int:
    """Rewards-in-Context's samples of online round ``round_index`` (1-based)."""
    return seed * 7919 + round_index


def ric_goal_rng(seed: int) -> np.random.Generator:
    """Rewards-in-Context's goal levels (one generator for all online rounds; its state is checkpointed)."""
    return np.random.default_rng([seed, 7])


def best_of_n_seed(seed: int, first_round: int) -> int:
    """Best-of-N's candidates for one preference, from candidate round ``first_round`` on.

    ``seed`` is the preference's sampling seed, not the run's.
    """
    return seed * 1009 + first_round


def pilot_seed(seed: int) -> int:
    """Best-of-N's pilot batch, which measures the cost of one candidate."""
    return seed * 7 + 5
