"""Decision Transformer: token interleaving, what each action prediction may see, padded contexts, the data."""
import math
import types

import numpy as np
import pytest
import torch

from attnkit.zoo.data.rl import ENVS, cartpole_controller, generate, get_env_spec, make_env
from attnkit.errors import UserError
from attnkit.zoo.models.dt import DecisionTransformer, DTConfig, PolicySet, interleave
from attnkit.zoo.data.trajectory_windows import Windows, top_episodes
from attnkit.zoo.tasks.dt import parse_targets

K, S, A = 6, 4, 3


def small(**kw) -> DecisionTransformer:
    torch.manual_seed(0)
    return DecisionTransformer(DTConfig(state_dim=S, act_dim=A, context=K, max_timestep=50, n_layer=2,
                                        n_head=2, d_model=32, dropout=0.0, return_scale=10.0, **kw)).eval()


def inputs(B=2, steps=K, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(states=torch.randn(B, steps, S, generator=g), actions=torch.randint(A, (B, steps), generator=g),
                returns_to_go=torch.randn(B, steps, generator=g) * 10,
                timesteps=torch.arange(3, 3 + steps).expand(B, steps).clone())


def test_interleave_orders_tokens_step_by_step():
    B, d = 2, 3
    r, s, a = (torch.full((B, K, d), float(i)) + torch.arange(K)[None, :, None] * 10 for i in range(3))
    x = interleave(r, s, a)  # (B, 3K, d)
    assert x.shape == (B, 3 * K, d)
    expected = torch.tensor([10.0 * t + i for t in range(K) for i in range(3)])  # R_1 s_1 a_1 R_2 ...
    assert torch.equal(x[0, :, 0], expected) and torch.equal(x[1, :, 2], expected)


@pytest.mark.parametrize("returns", [True, False])
def test_action_at_step_t_sees_its_return_and_state_but_not_its_action_or_the_future(returns):
    model, x = small(returns=returns), inputs()
    base = model(**x)  # (B, K, A)
    t = 2

    def changed(key, step):
        y = {k: v.clone() for k, v in x.items()}
        y[key][:, step] = (y[key][:, step] + 1) % A if key == "actions" else y[key][:, step] + 3.0
        return (model(**y) - base).abs().amax(dim=(0, 2))  # (K,): largest change per step

    d_action, d_state, d_return = changed("actions", t), changed("states", t), changed("returns_to_go", t)
    assert d_action[: t + 1].max() == 0 and d_action[t + 1:].min() > 0     # a_t reaches only later steps
    assert d_state[:t].max() == 0 and d_state[t:].min() > 0                # s_t reaches step t on
    if returns:
        assert d_return[:t].max() == 0 and d_return[t:].min() > 0          # R_t conditions a_t
    else:
        assert d_return.max() == 0                                         # BC never reads returns


def test_left_padded_context_matches_the_short_one_and_has_no_nan():
    model = small()
    short = inputs(B=2, steps=3, seed=1)
    pad = K - 3
    padded = {k: torch.cat((torch.full_like(v[:, :1], 2).expand(-1, pad, *v.shape[2:]), v), 1)
              for k, v in short.items()}  # junk on the left, masked out below
    mask = torch.arange(K)[None].expand(2, K) >= pad  # (B, K)
    out = model(**padded, mask=mask)
    assert torch.isfinite(out).all()  # padded query rows see no key at all: zeros, not NaN
    torch.testing.assert_close(out[:, pad:], model(**short), rtol=1e-5, atol=1e-5)
    # A context with no real step at all stays finite, and so do the gradients through masked rows.
    model.train()
    mask[1] = False
    loss = model.action_loss(model(**padded, mask=mask), padded["actions"], mask)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_continuous_actions_train_with_mse():
    torch.manual_seed(0)
    model = DecisionTransformer(DTConfig(state_dim=S, act_dim=2, discrete=False, context=K, max_timestep=50,
                                         n_layer=1, d_model=32, dropout=0.0))
    x = inputs(B=8)
    x["actions"] = torch.tanh(x["states"][..., :2])  # a learnable target in (-1, 1)
    mask = torch.ones(8, K, dtype=torch.bool)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = model.action_loss(model(**x, mask=mask), x["actions"], mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_policy_set_trains_three_disjoint_policies():
    model = PolicySet(DTConfig(state_dim=S, act_dim=A, context=K, max_timestep=50, n_layer=1, d_model=16))
    x = dict(inputs(), mask=torch.ones(2, K, dtype=torch.bool))
    losses = model({**x, **{f"top_{k}": v for k, v in x.items()}})
    assert set(losses) == {"dt", "bc", "pct_bc"} and all(torch.isfinite(v) for v in losses.values())
    losses["bc"].backward()
    assert model.dt.predict_action.weight.grad is None and model.bc.predict_action.weight.grad is not None
    assert model.bc.embed_return is None and model.dt.embed_return is not None


def test_generated_cartpole_data_spans_poor_to_expert_and_is_reproducible():
    data = generate("CartPole-v1", 30, seed=3)
    again = generate("CartPole-v1", 30, seed=3)
    assert np.array_equal(data.actions, again.actions) and np.array_equal(data.observations, again.observations)
    returns = data.returns()
    assert np.array_equal(data.lengths(), returns.astype(int))  # +1 per step
    rtg, t = data.returns_to_go(), data.timesteps()
    first = data.starts[:-1]
    assert np.array_equal(rtg[first], returns) and (t[first] == 0).all() and (rtg[data.starts[1:] - 1] == 1).all()
    # ε alone (the old recipe): experts and near-random play, and the returns say nothing about a quit step.
    eps_only = generate("CartPole-v1", 30, seed=3, max_epsilon=1.0, quit=False)
    assert eps_only.returns().max() == 500 and eps_only.returns().min() < 50 and (eps_only.quit_steps == 500).all()


def test_cartpole_episodes_end_soon_after_they_quit_so_returns_cover_the_range():
    """The default CartPole recipe: an episode that quits at step g falls at about g + 9, so the returns are
    spread over [0, 500] (not bimodal as with ε alone) and the return-to-go at the quit step is small."""
    data = generate("CartPole-v1", 60, seed=0)
    returns, quit = data.returns(), data.quit_steps
    assert (data.epsilons <= get_env_spec("CartPole-v1").max_epsilon).all()
    quitters = quit < 480
    assert quitters.sum() >= 40 and (returns == 500).sum() >= 5
    assert ((returns - quit)[quitters] >= 5).all() and ((returns - quit)[quitters] <= 16).all()
    assert np.histogram(returns, bins=5, range=(0, 500))[0].min() >= 6  # every fifth of the range is covered
    # Without quitting the same seed draws the same ε, and its first episode is the same up to its quit step
    # (the random actions share one stream, so the later episodes differ).
    kept = generate("CartPole-v1", 60, seed=0, quit=False)
    assert np.array_equal(kept.epsilons, data.epsilons) and quit[0] < data.lengths()[0] < kept.lengths()[0]
    assert np.array_equal(data.actions[:quit[0]], kept.actions[:quit[0]])


def test_windows_are_left_padded_at_episode_starts():
    data = generate("CartPole-v1", 4, seed=0)
    windows = Windows(data)
    b = windows.batch(256, K, torch.Generator().manual_seed(0))
    mask, t = b["mask"], b["timesteps"]
    n_real = mask.sum(1)
    assert (mask[:, -1]).all() and torch.equal(mask, mask.cummax(1).values)  # padding only on the left
    assert torch.equal(n_real, torch.minimum(t[:, -1] + 1, torch.tensor(K)))  # short only near the start
    assert (b["states"][~mask] == 0).all() and (t[mask] >= 0).all()
    real = mask[:, 1:] & mask[:, :-1]
    assert ((t[:, 1:] - t[:, :-1])[real] == 1).all()  # consecutive steps of one episode


def test_top_episodes_and_target_parsing():
    assert top_episodes(np.array([5.0, 1, 9, 9, 3, 0, 2, 8, 7, 6]), 0.2).tolist() == [2, 3]
    assert parse_targets("100, 200,300.5") == [100.0, 200.0, 300.5]
    for bad in ("", "100,,200", "abc", "100;200", "nan"):
        with pytest.raises(UserError, match="--target-return must be comma-separated numbers"):
            parse_targets(bad)
    with pytest.raises(UserError, match="unknown environment 'Pong-v5'.*CartPole-v1"):
        get_env_spec("Pong-v5")
    assert {"CartPole-v1", "Acrobot-v1"} <= set(ENVS)


class _Scripted(torch.nn.Module):
    """A CartPole policy with a known behaviour: the controller when asked for a return of at least `good_from`
    (its target is return-to-go + timestep, as CartPole pays 1 per step), else always push left. Logits ±15
    make the sampled action the scripted one (the other has probability e^-30)."""

    def __init__(self, good_from: float):
        super().__init__()
        self.cfg, self.good_from = types.SimpleNamespace(context=3), good_from
        self.unused = torch.nn.Parameter(torch.zeros(1))  # rollout reads the device off a parameter

    def forward(self, states, actions, returns_to_go, timesteps):
        target = returns_to_go[:, -1] + timesteps[:, -1]  # (n,)
        good = torch.tensor([cartpole_controller(s.numpy()) for s in states[:, -1]])  # (n,)
        action = torch.where(target >= self.good_from, good, torch.zeros_like(good))
        logits = torch.zeros(*returns_to_go.shape, 2)  # (n, k, 2)
        logits[:, -1] = torch.nn.functional.one_hot(action, 2) * 30.0 - 15.0
        return logits


def _played(seeds, policy) -> np.ndarray:
    """Returns of CartPole episodes played directly, without the rollout machinery."""
    out = []
    for seed in seeds:
        env, total, done = make_env("CartPole-v1"), 0.0, False
        obs, _ = env.reset(seed=seed)
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total, done = total + reward, terminated or truncated
        out.append(total)
    return np.array(out)


def test_rollouts_return_what_the_policies_score_and_the_rank_correlation_follows_the_targets():
    from attnkit.zoo.eval.rl import evaluate_policies

    good, bad = _played([5, 6], cartpole_controller), _played([5, 6], lambda obs: 0)
    assert good.mean() > bad.mean()
    policies = types.SimpleNamespace(dt=_Scripted(good_from=200), bc=_Scripted(math.inf), pct_bc=_Scripted(-math.inf))
    dataset = {"max_return": 500.0, "mean_return": 9.0}
    r = evaluate_policies(policies, "CartPole-v1", [50, 100, 300, 400], 2, 5, dataset)
    assert [(t["target"], t["mean"], t["std"]) for t in r["return_by_target"]] == [
        (50, bad.mean(), bad.std()), (100, bad.mean(), bad.std()), (300, good.mean(), good.std()),
        (400, good.mean(), good.std())]
    assert [t["se"] for t in r["return_by_target"]] == pytest.approx([bad.std(ddof=1) / math.sqrt(2)] * 2
                                                                     + [good.std(ddof=1) / math.sqrt(2)] * 2)
    assert (r["bc_return"], r["bc_return_std"]) == (bad.mean(), bad.std())
    assert (r["pct_bc_return"], r["pct_bc_return_std"]) == (good.mean(), good.std())
    # Spearman of ranks (1, 2, 3, 4) and (1.5, 1.5, 3.5, 3.5): 4 / (√5 · 2)
    assert r["return_rank_correlation"] == pytest.approx(2 / math.sqrt(5))
    # A DT that ignores its target gets the same return at every target: no correlation to speak of.
    policies.dt = _Scripted(good_from=math.inf)
    assert evaluate_policies(policies, "CartPole-v1", [50, 300], 2, 5, dataset)["return_rank_correlation"] is None


def test_rollout_progress_counts_each_policys_time_steps_and_changes_nothing():
    """progress(what, t, T): one bar per policy, a call per time step until its last episode ends, then (T, T)."""
    from attnkit.zoo.eval.rl import evaluate_policies

    good, bad = _played([5, 6], cartpole_controller), _played([5, 6], lambda obs: 0)
    policies = types.SimpleNamespace(dt=_Scripted(good_from=200), bc=_Scripted(math.inf), pct_bc=_Scripted(-math.inf))
    dataset = {"max_return": 500.0, "mean_return": 9.0}
    calls: dict[str, list[tuple[int, int]]] = {}
    r = evaluate_policies(policies, "CartPole-v1", [50, 300], 2, 5, dataset,
                          progress=lambda what, done, total: calls.setdefault(what, []).append((done, total)))
    assert r == evaluate_policies(policies, "CartPole-v1", [50, 300], 2, 5, dataset)
    assert list(calls) == ["DT rollouts (2 targets × 2 episodes)", "BC rollouts (2 episodes)",
                           "%BC rollouts (2 episodes)"]
    T = get_env_spec("CartPole-v1").max_episode_steps
    longest = {"DT rollouts (2 targets × 2 episodes)": good.max(), "BC rollouts (2 episodes)": bad.max(),
               "%BC rollouts (2 episodes)": good.max()}  # CartPole pays 1 per step: a return is a length
    for what, steps in calls.items():
        assert steps == [(t, T) for t in range(1, int(longest[what]) + 1)] + [(T, T)], what


def test_a_tiny_dt_trained_on_quitting_episodes_quits_when_its_return_to_go_runs_out():
    """What return-tracking needs on CartPole: at the step an episode quit (return-to-go ≈ 9), the DT plays the
    quitter's push; asked for the most the episode could still get from the same states, it keeps balancing."""
    data = generate("CartPole-v1", 60, seed=0)
    torch.manual_seed(0)
    k = 3
    model = DecisionTransformer(DTConfig(context=k, max_timestep=500, n_layer=1, n_head=1, d_model=32, dropout=0.0,
                                         return_embedding="symlog", state_mean=data.observations.mean(0).tolist(),
                                         state_std=data.observations.std(0).tolist()))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    windows, g = Windows(data), torch.Generator().manual_seed(0)
    for _ in range(600):
        b = windows.batch(64, k, g, end_share=0.5)
        loss = model.action_loss(model(b["states"], b["actions"], b["returns_to_go"], b["timesteps"], b["mask"]),
                                 b["actions"], b["mask"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    # The k steps up to each quit step (episodes that quit after step k), as a batch of contexts.
    quitting = [e for e in range(len(data)) if k <= data.quit_steps[e] < data.lengths()[e]]
    idx = torch.tensor([data.starts[e] + data.quit_steps[e] for e in quitting])[:, None] - k + 1 + torch.arange(k)
    states, actions = torch.from_numpy(data.observations)[idx], torch.from_numpy(data.actions)[idx]
    rtg, t = torch.from_numpy(data.returns_to_go())[idx], torch.from_numpy(data.timesteps())[idx]
    quit_action = torch.tensor([1 - cartpole_controller(s) for s in states[:, -1].numpy()])  # (n,)

    def p_quit(returns_to_go):
        with torch.no_grad():
            probs = model(states, actions, returns_to_go, t)[:, -1].softmax(-1)  # (n, 2)
        return probs.gather(1, quit_action[:, None]).mean().item()

    assert len(quitting) >= 30 and (rtg[:, -1] <= 16).all()
    # 500 - t: the return-to-go of an episode that never quits (measured: 0.83 against 0.55)
    assert p_quit(rtg) > 0.75 and p_quit(rtg) - p_quit(500 - t) > 0.2
