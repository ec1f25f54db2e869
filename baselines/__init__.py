"""Reference agents: a token-level PPO learner, MORLHF, Rewarded Soups, IterativeRS, Rewards-in-Context, reference rows."""
