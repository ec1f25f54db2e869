"""MO-Gymnasium wrappers and stable-baselines3 work on morbench envs unchanged."""

import numpy as np
import pytest

import morbench

mo_gym = pytest.importorskip("mo_gymnasium")
sb3 = pytest.importorskip("stable_baselines3")


def test_mo_gymnasium_wrappers():
    from mo_gymnasium.wrappers import LinearReward, MORecordEpisodeStatistics

    env = MORecordEpisodeStatistics(morbench.make("morbench/Motifs-v0"), gamma=1.0)
    env = LinearReward(env, weight=np.array([0.5, 0.5, 0.0]))
    env.reset(seed=0)
    task = env.unwrapped
    for c in task.motifs[0]:
        _, reward, terminated, truncated, info = env.step(task.tokenizer.convert_tokens_to_ids(c))
    _, reward, terminated, truncated, info = env.step(task.eos_token_id)
    assert terminated and reward == pytest.approx(0.5)
    np.testing.assert_allclose(info["vector_reward"], [1, 0, 0])
    np.testing.assert_allclose(info["episode"]["r"], [1, 0, 0])
    assert info["episode"]["l"] == 5


def _mean_scalar_return(model, env, episodes=64):
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=episode)
        done, total = False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=False) if model else (env.action_space.sample(), None)
            obs, reward, terminated, truncated, _ = env.step(int(action))
            total += reward
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def test_sb3_ppo_learns_on_a_linear_reward_scalarized_env():
    from mo_gymnasium.wrappers import LinearReward
    from stable_baselines3 import PPO

    env = LinearReward(morbench.make("morbench/Motifs-2obj-v0"), weight=np.array([0.5, 0.5]))
    env.action_space.seed(0)
    before = _mean_scalar_return(None, env)
    model = PPO("MlpPolicy", env, n_steps=512, batch_size=128, learning_rate=3e-3, seed=0, verbose=0, device="cpu")
    model.learn(total_timesteps=6144)
    after = _mean_scalar_return(model, env)
    assert after > before + 0.2, (before, after)
