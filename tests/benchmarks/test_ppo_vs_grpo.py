"""morbench PPO vs TRL ``GRPOTrainer``: sampled tokens per second at matched update work, interleaved in one run.

Both loops do the whole iteration on the same model, task and reward (``mean(r)``): generation of 64
completions, scoring, an old-log-probability pass, a KL-reference pass (beta 0.05) and the same update schedule,
4 passes over the batch in minibatches of 32 (ours: ``ppo_epochs=4``; GRPO: ``num_iterations=4,
steps_per_generation=2``, gradient checkpointing off as ours). Two cases:

* ``motifs-tiny``: a random 4 x 128 GPT-2 on ``morbench/Motifs-v0`` (max_length 32);
* ``qm9-prior``: QM9-v0's own 1.8M-parameter prior at the task's max_length, EOS allowed (TRL suppresses the
  special tokens ours masks, so both sample the same distribution).

The learning rate is 1e-8 in both, so both keep sampling the starting model's length distribution (at 5e-5 GRPO
lengthens Motifs completions within a few generations and PPO does not, which moves tokens/s without moving the
work per iteration); an update costs the same at any learning rate.

One process, one torch thread (as the suites run; restored afterwards). TRL trains; at the end of each of its
generations (every 8 optimizer steps) a callback runs one iteration of ours in fp32 and one in bf16
(``ppo.precision``), so the paths alternate A B A B and share whatever load the machine has. TRL runs three
times, one per setting of ``TRL_SETTINGS``: fp32, ``bf16=True`` (its default; autocast on the CPU) and bf16 with
eager attention. Every phase is timed (exclusive timers: generation, scoring, old-log-prob pass, reference pass,
update forward + loss, backward, optimizer = gradient clipping + step) and, in one untimed iteration of each,
its FLOPs are counted (``torch.utils.flop_counter``). Run with::

    MORBENCH_PPO_GRPO_JSON=docs/data/ppo_vs_grpo.json \\
        pytest tests/benchmarks/test_ppo_vs_grpo.py --benchmark-enable --benchmark-only -s

It prints the ratios and the phase table (and writes them to ``$MORBENCH_PPO_GRPO_JSON`` if set;
``MORBENCH_PPO_GRPO_GENERATIONS`` timed generations per TRL setting, default 6). The issue's target (>= 1.5x)
is met in no honest configuration and asserted for none: the update is most of either iteration and both run it
at the same FLOP rate, which is what the benchmark asserts, with ours not slower in fp32. The measured numbers
are in the README's Performance section and ``docs/data/ppo_vs_grpo.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from gymnasium.vector import AutoresetMode
from torch.utils.flop_counter import FlopCounterMode

import morbench
from morbench.baselines import common
from morbench.baselines.common import PPOConfig, PPOLearner
from morbench.baselines.trl_interop import reward_functions
from morbench.models import build_gpt2, load_prior
from morbench.vector import TokenVectorEnv

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")
transformers = pytest.importorskip("transformers")

BATCH, MINIBATCH, EPOCHS, KL = 64, 32, 4, 0.05
# Both policies stay at the model they start from, so both sample the same length distribution (GRPO's group
# normalisation lengthens Motifs sequences within a few steps at 5e-5, PPO's does not): tokens/s compares the same
# sampling and update work. An update costs the same at any learning rate.
LEARNING_RATE = 1e-8
COMMAND = (  # what regenerated docs/data/ppo_vs_grpo.json
    "MORBENCH_PPO_GRPO_JSON=docs/data/ppo_vs_grpo.json MORBENCH_PPO_GRPO_GENERATIONS=6 "
    "pytest tests/benchmarks/test_ppo_vs_grpo.py --benchmark-enable --benchmark-only -s"
)
STEPS_PER_GENERATION = EPOCHS * BATCH // MINIBATCH  # optimizer steps per generation, both loops
PHASES = (
    "generation",
    "scoring",
    "old_logprob_pass",
    "reference_pass",
    "update_forward",
    "backward",
    "optimizer",
    "rollout_other",
    "update_other",
)
# TRL's settings: fp32; bf16=True (autocast on the CPU) with the default (fused SDPA) attention; bf16 with eager
# attention (matmuls, as ours runs attention under bf16: the fused CPU kernel's bf16 backward is slow)
TRL_SETTINGS = {"fp32": "bf16=False", "bf16": "bf16=True", "bf16_eager": "bf16=True, attn_implementation='eager'"}


@dataclasses.dataclass(frozen=True)
class Case:
    env_id: str
    max_length: int | None  # None: the task's own
    tiny_model: bool  # a random 4 x 128 GPT-2 instead of the task's prior


CASES = {
    "motifs-tiny": Case("morbench/Motifs-v0", 32, True),
    "qm9-prior": Case("morbench/QM9-v0", None, False),
}


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _task(case: Case) -> Any:
    kwargs = {"max_length": case.max_length} if case.max_length else {}
    return morbench.make(case.env_id, **kwargs)


def _model(case: Case, task: Any) -> torch.nn.Module:
    if case.tiny_model:
        return build_gpt2(task.vocab_size, task.max_length + 2, n_layer=4, n_embd=128, n_head=4, seed=0)
    return load_prior(task)


class Phases:
    """Exclusive wall-clock timers (a nested phase's time is its own, not its parent's) and optional FLOP counts."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.flops: dict[str, int] = defaultdict(int)
        self.counter: FlopCounterMode | None = None
        self._stack: list[list[Any]] = []  # [name, start, child seconds, start flops, child flops]

    def _flops(self) -> int:
        return self.counter.get_total_flops() if self.counter is not None else 0

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._stack.append([name, time.perf_counter(), 0.0, self._flops(), 0])
        try:
            yield
        finally:
            _, start, child, flops0, child_flops = self._stack.pop()
            elapsed, flops = time.perf_counter() - start, self._flops() - flops0
            self.seconds[name] += elapsed - child
            self.flops[name] += flops - child_flops
            if self._stack:
                self._stack[-1][2] += elapsed
                self._stack[-1][4] += flops

    def wrap(self, fn: Callable[..., Any], name: str | Callable[..., str]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name(*args, **kwargs) if callable(name) else name):
                return fn(*args, **kwargs)

        return timed

    def snapshot(self) -> tuple[dict[str, float], dict[str, int]]:
        return dict(self.seconds), dict(self.flops)


@contextlib.contextmanager
def _global_timers(route: Callable[[], Phases | None]) -> Iterator[None]:
    """Time every ``Tensor.backward`` and gradient clipping (both loops call them) into ``route()``'s phases."""
    backward, clip = torch.Tensor.backward, torch.nn.utils.clip_grad_norm_

    def timed_backward(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        phases = route()
        if phases is None:
            return backward(self, *args, **kwargs)
        with phases.phase("backward"):
            return backward(self, *args, **kwargs)

    def timed_clip(*args: Any, **kwargs: Any) -> Any:
        phases = route()
        if phases is None:
            return clip(*args, **kwargs)
        with phases.phase("optimizer"):
            return clip(*args, **kwargs)

    torch.Tensor.backward, torch.nn.utils.clip_grad_norm_ = timed_backward, timed_clip  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.backward, torch.nn.utils.clip_grad_norm_ = backward, clip  # type: ignore[method-assign]


class Ours:
    """A morbench PPO learner as the suites run it (deferred scoring), its phases timed."""

    def __init__(self, case: Case, precision: str) -> None:
        task = _task(case).unwrapped
        self.venv = TokenVectorEnv(task, BATCH, AutoresetMode.DISABLED, defer_scoring=True)
        prior = _model(case, task)
        config = PPOConfig(
            batch_size=BATCH,
            minibatch_size=MINIBATCH,
            ppo_epochs=EPOCHS,
            learning_rate=LEARNING_RATE,
            kl_coef=KL,
            precision=precision,
        )
        self.learner = PPOLearner(prior, prior, self.venv, config, seed=0)
        self.phases = Phases()
        self.seconds: list[float] = []
        self.tokens: list[int] = []
        self.flops: dict[str, int] = {}
        phases, model, ref = self.phases, self.learner.model, self.learner.ref_model
        model.forward = phases.wrap(
            model.forward, lambda *a, **k: "update_forward" if torch.is_grad_enabled() else "old_logprob_pass"
        )  # type: ignore[method-assign]
        ref.forward = phases.wrap(ref.forward, "reference_pass")  # type: ignore[method-assign]
        self.venv.score_finished = phases.wrap(self.venv.score_finished, "scoring")  # type: ignore[method-assign]
        optimizer = self.learner.optimizer
        optimizer.step = phases.wrap(optimizer.step, "optimizer")  # type: ignore[method-assign]

    @contextlib.contextmanager
    def _patched(self) -> Iterator[None]:
        """The module-level functions PPOLearner.iteration calls, timed for this learner."""
        saved = {name: getattr(common, name) for name in ("sample", "collect_rollout", "ppo_update", "minibatch_loss")}
        names = {"sample": "generation", "collect_rollout": "rollout_other", "ppo_update": "update_other"}
        names["minibatch_loss"] = "update_forward"
        for name, fn in saved.items():
            setattr(common, name, self.phases.wrap(fn, names[name]))
        try:
            yield
        finally:
            for name, fn in saved.items():
                setattr(common, name, fn)

    def iteration(self, record: bool = True) -> None:
        seconds = dict(self.phases.seconds)
        with self._patched():
            start = time.perf_counter()
            stats = self.learner.iteration(lambda r: r.mean(axis=1))
            elapsed = time.perf_counter() - start
        if record:
            self.seconds.append(elapsed)
            self.tokens.append(int(stats["tokens"]))
        else:  # warm-up or FLOP count: its phase times are not timings
            self.phases.seconds.clear()
            self.phases.seconds.update(seconds)

    def count_flops(self) -> None:
        """One untimed iteration under a FLOP counter; its per-phase FLOPs."""
        with FlopCounterMode(display=False) as counter:
            self.phases.counter = counter
            self.iteration(record=False)
        self.phases.counter = None
        self.flops = dict(self.phases.flops)


class Grpo:
    """A TRL GRPOTrainer at the same batch and update schedule; ``between`` runs at each generation boundary."""

    def __init__(
        self, case: Case, setting: str, tmp_path: Any, generations: int, between: Callable[[Grpo], None]
    ) -> None:
        env = _task(case)
        task = env.unwrapped
        model_dir = tmp_path / "policy"
        _model(case, task).save_pretrained(model_dir)
        task.tokenizer.save_pretrained(model_dir)
        self.phases, self.between = Phases(), between
        self.seconds: list[float] = []
        self.tokens: list[int] = []
        self.flops: dict[str, int] = {}
        self._counter: FlopCounterMode | None = None
        self._generation_tokens: list[int] = []
        args = trl.GRPOConfig(
            output_dir=str(tmp_path / "out"),
            use_cpu=True,
            bf16=setting != "fp32",
            model_init_kwargs={"attn_implementation": "eager" if setting == "bf16_eager" else "sdpa"},
            activation_checkpointing=False,  # ours recomputes nothing; checkpointing would add a forward per step
            max_steps=STEPS_PER_GENERATION * (generations + 2),  # generation 1: FLOP count, 2: warm-up
            per_device_train_batch_size=MINIBATCH,
            steps_per_generation=BATCH // MINIBATCH,
            num_iterations=EPOCHS,
            num_generations=8,
            max_completion_length=task.max_length,
            generation_kwargs={"suppress_tokens": [int(t) for t in task.forbidden_token_ids]},
            reward_weights=[1 / task.reward_dim] * task.reward_dim,
            report_to="none",
            disable_tqdm=True,
            logging_steps=STEPS_PER_GENERATION,
            save_strategy="no",
            beta=KL,
            learning_rate=LEARNING_RATE,
            seed=0,
        )
        self.trainer = trl.GRPOTrainer(
            model=str(model_dir),
            reward_funcs=reward_functions(env),
            args=args,
            train_dataset=datasets.Dataset.from_dict({"prompt": [task.tokenizer.bos_token] * 4096}),
            processing_class=task.tokenizer,
            callbacks=[_Boundaries(self)],
        )
        self.trainer.remove_callback(transformers.PrinterCallback)  # logs every generation, printed nowhere
        t, p = self.trainer, self.phases
        t._generate_single_turn = p.wrap(t._generate_single_turn, "generation")
        calculate = t._calculate_rewards

        def scoring(inputs: Any, prompts: Any, completions: Any, completion_ids_list: Any) -> Any:
            self._generation_tokens.append(sum(len(ids) for ids in completion_ids_list))
            return calculate(inputs, prompts, completions, completion_ids_list)

        t._calculate_rewards = p.wrap(scoring, "scoring")

        def logps_phase(model: Any, *args: Any, **kwargs: Any) -> str:
            if torch.is_grad_enabled():
                return "update_forward"
            return "reference_pass" if model is t.ref_model else "old_logprob_pass"

        t._get_per_token_logps_and_entropies = p.wrap(t._get_per_token_logps_and_entropies, logps_phase)
        t._generate_and_score_completions = p.wrap(t._generate_and_score_completions, "rollout_other")
        t.compute_loss = p.wrap(t.compute_loss, "update_forward")
        t.training_step = p.wrap(t.training_step, "update_other")

    def run(self) -> None:
        self.trainer.train()


class _Boundaries(transformers.TrainerCallback):
    """Times each TRL generation (its 8 optimizer steps) and runs ``between`` after it, outside the timing."""

    def __init__(self, grpo: Grpo) -> None:
        self.grpo, self.resumed = grpo, 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
        optimizer.step = self.grpo.phases.wrap(optimizer.step, "optimizer")
        self.grpo._counter = FlopCounterMode(display=False)
        self.grpo._counter.__enter__()  # the first generation is counted (and not timed)
        self.grpo.phases.counter = self.grpo._counter
        self.resumed = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step % STEPS_PER_GENERATION:
            return
        end, grpo = time.perf_counter(), self.grpo
        generation = state.global_step // STEPS_PER_GENERATION
        if generation == 1:  # the FLOP-counted generation
            grpo._counter.__exit__(None, None, None)
            grpo.phases.counter = None
            grpo.flops = dict(grpo.phases.flops)
            grpo.phases.flops.clear()
        if generation <= 2:  # counted, then warm-up: not timed
            grpo.phases.seconds.clear()
        else:
            grpo.seconds.append(end - self.resumed)
            grpo.tokens.append(grpo._generation_tokens[generation - 1])
        grpo.between(grpo)
        self.resumed = time.perf_counter()


def _summary(seconds: list[float], tokens: list[int], phases: Phases, flops: dict[str, int]) -> dict[str, Any]:
    rates = [n / s for n, s in zip(tokens, seconds, strict=True)]
    count = len(seconds)
    per_iteration = {k: phases.seconds.get(k, 0.0) / count for k in PHASES}
    per_iteration["untimed"] = sum(seconds) / count - sum(per_iteration.values())
    update_gflop = flops.get("update_forward", 0) / 1e9 + flops.get("backward", 0) / 1e9
    update_seconds = per_iteration["update_forward"] + per_iteration["backward"]
    return {
        "tokens_per_s_median": statistics.median(rates),
        "update_gflop_per_s": update_gflop / update_seconds,  # forward + backward of the update
        "tokens_per_s": rates,
        "seconds_per_iteration_median": statistics.median(seconds),
        "tokens_per_iteration": tokens,
        "phase_seconds_per_iteration": per_iteration,
        "phase_gflop": {k: flops.get(k, 0) / 1e9 for k in PHASES},
    }


def compare(case_name: str, tmp_path: Any, generations: int) -> dict[str, Any]:
    """Interleaved run of one case: each TRL setting in turn, ours fp32 and bf16 between its generations."""
    case = CASES[case_name]
    ours = {precision: Ours(case, precision) for precision in ("fp32", "bf16")}
    active: list[Phases | None] = [None]
    result: dict[str, Any] = {"case": case_name, "generations": generations}
    with _threads(1), _global_timers(lambda: active[0]):
        result["threads"] = torch.get_num_threads()  # what both loops ran with
        for learner in ours.values():
            active[0] = learner.phases
            learner.count_flops()
            learner.iteration(record=False)  # warm-up
        trl_runs = {}

        def between(grpo: Grpo) -> None:
            """After each timed TRL generation: one iteration of each of ours, which goes first alternating."""
            if grpo.seconds:
                for learner in list(ours.values())[:: 1 if len(grpo.seconds) % 2 else -1]:
                    active[0] = learner.phases
                    learner.iteration()
            active[0] = grpo.phases

        for setting in TRL_SETTINGS:
            grpo = Grpo(case, setting, tmp_path / f"{case_name}-{setting}", generations, between)
            active[0] = grpo.phases
            grpo.run()
            trl_runs[setting] = grpo
    for precision, learner in ours.items():
        result[f"ours_{precision}"] = _summary(learner.seconds, learner.tokens, learner.phases, learner.flops)
    for precision, grpo in trl_runs.items():
        result[f"trl_{precision}"] = _summary(grpo.seconds, grpo.tokens, grpo.phases, grpo.flops)
    # paired ratios: ours' iteration right after each TRL generation (same load), per precision pairing
    pairs = [("fp32", "fp32")] + [("bf16", setting) for setting in TRL_SETTINGS]
    for ours_p, trl_p in pairs:
        ours_rates = result[f"ours_{ours_p}"]["tokens_per_s"]
        trl_rates = result[f"trl_{trl_p}"]["tokens_per_s"]
        offset = list(TRL_SETTINGS).index(trl_p) * generations
        paired = [o / g for o, g in zip(ours_rates[offset : offset + len(trl_rates)], trl_rates, strict=True)]
        result[f"ratio_ours_{ours_p}_vs_trl_{trl_p}"] = {
            "median": statistics.median(paired),
            "min": min(paired),
            "max": max(paired),
            "of_medians": result[f"ours_{ours_p}"]["tokens_per_s_median"]
            / result[f"trl_{trl_p}"]["tokens_per_s_median"],
        }
    # TRL's best setting on this machine: whichever sampled more tokens/s
    best = max(trl_runs, key=lambda p: result[f"trl_{p}"]["tokens_per_s_median"])
    result["trl_best"] = best
    result["ratio_ours_bf16_vs_trl_best"] = result[f"ratio_ours_bf16_vs_trl_{best}"]
    return result


def _table(result: dict[str, Any]) -> str:
    runs = ("ours_fp32", "ours_bf16", *(f"trl_{s}" for s in TRL_SETTINGS))
    lines = [
        f"{result['case']}: ms per iteration (GFLOP in the counted iteration)",
        f"{'phase':<18}" + "".join(f"{r:>20}" for r in runs),
    ]
    for phase in (*PHASES, "untimed"):
        cells = []
        for r in runs:
            ms = 1e3 * result[r]["phase_seconds_per_iteration"][phase]
            gflop = result[r]["phase_gflop"].get(phase)
            cells.append(f"{ms:7.1f}" + (f" ({gflop:6.2f})" if gflop else ""))
        lines.append(f"{phase:<18}" + "".join(f"{c:>20}" for c in cells))
    lines.append(f"{'tokens/s':<18}" + "".join(f"{result[r]['tokens_per_s_median']:>20.0f}" for r in runs))
    lines.append(f"{'update GFLOP/s':<18}" + "".join(f"{result[r]['update_gflop_per_s']:>20.1f}" for r in runs))
    for key in [k for k in result if k.startswith("ratio")]:
        v = result[key]
        lines.append(
            f"{key}: median {v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f}), of medians {v['of_medians']:.2f}"
        )
    return "\n".join(lines)


def _machine() -> dict[str, Any]:
    with open("/proc/cpuinfo") as f:
        cpuinfo = f.read()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    flags = [f for f in ("avx512_bf16", "amx_bf16") if f in cpuinfo]
    return {
        "cpu": model,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "trl": trl.__version__,
        "transformers": transformers.__version__,
    }


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
@pytest.mark.parametrize("case_name", list(CASES))
def test_ppo_iteration_vs_grpo_step_throughput(benchmark, tmp_path, case_name):
    threads = torch.get_num_threads()
    if benchmark.disabled:  # normal test run: every path once, on the tiny case only
        if case_name != "motifs-tiny":
            pytest.skip("the realistic case runs only under --benchmark-enable")
        result = compare(case_name, tmp_path, generations=1)
        for run in ("ours_fp32", "ours_bf16", *(f"trl_{s}" for s in TRL_SETTINGS)):
            assert result[run]["tokens_per_s_median"] > 0
            seconds = result[run]["phase_seconds_per_iteration"]
            assert all(seconds[p] > 0 for p in PHASES), (run, seconds)
            flops = result[run]["phase_gflop"]
            assert flops["update_forward"] > 0 and flops["backward"] > flops["update_forward"], (run, flops)
            if run != "trl_bf16_eager":  # same sampling work (eager attention's FLOPs are counted differently)
                assert flops["generation"] == result["ours_fp32"]["phase_gflop"]["generation"]
        assert result["threads"] == 1 and torch.get_num_threads() == threads  # pinned as the suites run, restored
        benchmark(lambda: None)
        return
    load_before = os.getloadavg()
    result = compare(case_name, tmp_path, generations=int(os.environ.get("MORBENCH_PPO_GRPO_GENERATIONS", "6")))
    result["load_average_1min"] = [load_before[0], os.getloadavg()[0]]
    result["machine"] = _machine()
    result["seed"] = 0  # ours and TRL
    result["command"] = COMMAND
    print("\n" + _table(result) + f"\nload average {result['load_average_1min']}")
    path = os.environ.get("MORBENCH_PPO_GRPO_JSON")
    if path:  # e.g. docs/data/ppo_vs_grpo.json; one key per case
        existing = {}
        if os.path.exists(path):
            with open(path) as f:
                existing = json.load(f)
        existing[case_name] = result
        with open(path, "w") as f:
            json.dump(existing, f, indent=1)
            f.write("\n")
    benchmark.extra_info.update({k: v for k, v in result.items() if k.startswith("ratio")})
    benchmark.pedantic(lambda: None, rounds=1)
    assert torch.get_num_threads() == threads
    # ours is not slower in fp32 (measured medians 1.02-1.11x on QM9's prior; 5% for a shared machine's noise)
    assert result["ratio_ours_fp32_vs_trl_fp32"]["median"] >= 0.95
    # why not 1.5x: both run the update (most of either iteration) at the same FLOP rate
    rate = result["ours_fp32"]["update_gflop_per_s"] / result["trl_fp32"]["update_gflop_per_s"]
    assert 0.8 <= rate <= 1.25, rate
