"""In-context regression pieces: token layout, causality of the read-out, the baselines' known answers,
the curriculum, the out-of-distribution prompts, and the one-line errors for bad prompts and classes."""
from functools import partial
from itertools import combinations

import pytest
import torch

from attnkit.config import TrainConfig
from attnkit.zoo.data.icl import Curriculum, exact_from, ood_prompts, position_weights, sample_prompts
from attnkit.errors import UserError
from attnkit.zoo.eval.icl import baseline_predictions, error_by_k
from attnkit.zoo.models.icl import ICLConfig, ICLTransformer, interleave
from attnkit.zoo.tasks.icl import ICLOptions, ICLTask
from attnkit.engine.resolve import resolve_config


def test_interleave_puts_y_in_the_first_coordinate_of_its_own_token():
    xs, ys = torch.arange(12.0).reshape(1, 2, 6)[..., :3].reshape(1, 2, 3), torch.tensor([[7.0, 8.0]])
    tokens = interleave(xs, ys)  # (1, 4, 3)
    assert torch.equal(tokens[0, 0], xs[0, 0]) and torch.equal(tokens[0, 2], xs[0, 1])
    assert torch.equal(tokens[0, 1], torch.tensor([7.0, 0, 0])) and torch.equal(tokens[0, 3], torch.tensor([8.0, 0, 0]))


def test_prediction_i_sees_only_the_pairs_before_x_i():
    model = ICLTransformer(ICLConfig(n_dims=3, n_points=6, n_layer=2, n_head=2, n_embd=32)).eval()
    g = torch.Generator().manual_seed(0)
    p = sample_prompts("linear", 2, 3, 6, g)
    base = model(p.xs, p.ys)
    ys = p.ys.clone()
    ys[:, 3] += 5.0  # y_3 may only move predictions 4 and 5
    xs = p.xs.clone()
    xs[:, 4] += 1.0  # x_4 moves predictions 4 and 5, never 0..3
    moved_y, moved_x = model(p.xs, ys), model(xs, p.ys)
    assert torch.allclose(moved_y[:, :4], base[:, :4]) and not torch.allclose(moved_y[:, 4:], base[:, 4:])
    assert torch.allclose(moved_x[:, :4], base[:, :4]) and not torch.allclose(moved_x[:, 4], base[:, 4])


def test_least_squares_is_exact_from_k_equal_d_and_beats_the_weak_baselines():
    p = sample_prompts("linear", 200, 4, 9, torch.Generator().manual_seed(1))
    errs = {m: error_by_k(baseline_predictions(m, p), p) for m in ("least_squares", "ridge", "knn3", "averaging")}
    assert all(e < 1e-8 for e in errs["least_squares"][4:])
    assert errs["least_squares"][0] == pytest.approx(1.0, abs=0.25)     # k = 0: predict 0, error/d ≈ 1
    assert errs["least_squares"][2] == pytest.approx(0.5, abs=0.15)     # min-norm: (d - k)/d below d
    assert 0 < errs["ridge"][8] < 0.05                                  # ridge shrinks a little
    assert errs["knn3"][8] > 0.3 and errs["averaging"][8] > 0.3


def test_sparse_functions_have_the_requested_support_and_lasso_finds_them():
    p = sample_prompts("sparse_linear", 50, 8, 9, torch.Generator().manual_seed(2), sparsity=2)
    ls = error_by_k(baseline_predictions("least_squares", p), p)
    lasso = error_by_k(baseline_predictions("lasso", p), p)
    assert lasso[6] < 0.2 * ls[6]                                       # sparsity helps below k = d


def test_sparse_posterior_mean_with_a_single_support_is_least_squares():
    from attnkit.zoo.eval.icl import predict_per_k, sparse_posterior_mean

    p = sample_prompts("linear", 64, 5, 9, torch.Generator().manual_seed(3))
    dense = predict_per_k(partial(sparse_posterior_mean, sparsity=5), p)  # one support: every coordinate
    assert torch.allclose(dense, baseline_predictions("least_squares", p), atol=1e-5)


def test_sparse_posterior_mean_is_exact_past_s_points_and_below_least_squares_before():
    from attnkit.zoo.eval.icl import predict_per_k, sparse_posterior_mean

    p = sample_prompts("sparse_linear", 400, 6, 8, torch.Generator().manual_seed(4), sparsity=2)
    bayes = error_by_k(predict_per_k(partial(sparse_posterior_mean, sparsity=2), p), p)
    ls = error_by_k(baseline_predictions("least_squares", p), p)
    assert max(bayes[3:]) < 1e-12 and ls[5] > 0.05                   # only the true support fits 3 points
    assert bayes[0] == ls[0] and bayes[1] < ls[1] and bayes[2] < 0.8 * ls[2]


def test_noisy_sparse_posterior_mean_weighs_supports_by_their_gaussian_marginal_likelihood():
    """Against the textbook form: weight_S ∝ N(y; 0, X_S X_Sᵀ + σ² I), mean_S = q_Sᵀ X_Sᵀ (X_S X_Sᵀ + σ² I)⁻¹ y."""
    from attnkit.zoo.eval.icl import sparse_posterior_mean

    g = torch.Generator().manual_seed(5)
    xs, q, ys = torch.randn(8, 3, 5, generator=g), torch.randn(8, 5, generator=g), torch.randn(8, 3, generator=g)
    xs, q, ys = xs.double(), q.double(), ys.double()
    expected = []
    for b in range(8):
        logs, means = [], []
        for support in combinations(range(5), 2):
            x = xs[b][:, list(support)]  # (k, s)
            cov = x @ x.T + 0.09 * torch.eye(3, dtype=torch.float64)  # (k, k)
            logs.append(torch.distributions.MultivariateNormal(torch.zeros(3, dtype=torch.float64), cov).log_prob(ys[b]))
            means.append(q[b][list(support)] @ x.T @ torch.linalg.solve(cov, ys[b]))
        expected.append((torch.stack(logs).softmax(0) * torch.stack(means)).sum())
    got = sparse_posterior_mean(xs, ys, q, sparsity=2, noise=0.3)
    assert torch.allclose(got, torch.stack(expected).float(), atol=1e-5)


def test_curriculum_grows_dimension_and_points_up_to_the_model():
    c = Curriculum(d_start=2, n_start=5, interval=10)
    assert c.at(0, 8, 17) == (2, 5) and c.at(25, 8, 17) == (4, 9) and c.at(10_000, 8, 17) == (8, 17)
    p = sample_prompts("linear", 4, 8, 5, torch.Generator().manual_seed(0), d_active=3)
    assert p.xs[..., 3:].abs().sum() == 0 and p.xs[..., :3].abs().sum() > 0


def test_ood_prompts():
    g = torch.Generator().manual_seed(3)
    orth = ood_prompts("one_orthant", "linear", 16, 4, 6, g)
    signs = torch.sign(orth.xs)
    assert (signs == signs[:, :1]).all()                                 # every point of a prompt in one orthant
    assert orth.queries is not None and not (torch.sign(orth.queries) == signs[:, :1]).all()
    noisy = ood_prompts("noisy_y", "linear", 16, 4, 6, g)
    assert not torch.allclose(noisy.ys, noisy.targets)
    scaled = ood_prompts("scaled_query", "linear", 4000, 4, 2, g)
    assert scaled.xs.std().item() == pytest.approx(2.0, rel=0.05)


def _task(**opts):
    cfg = resolve_config(TrainConfig(model="icl", flavor="debug"))
    return ICLTask(cfg, ICLOptions(**opts))


def test_unknown_function_class_is_a_user_error():
    with pytest.raises(UserError, match="unknown function class 'trees'; choose from linear, sparse_linear"):
        _task(function="trees")


def test_unknown_loss_weight_is_a_user_error():
    with pytest.raises(UserError, match="unknown loss_weight 'ls'; choose from uniform, inverse_ls"):
        _task(loss_weight="ls")


def test_inverse_ls_weights_each_prediction_by_least_squares_expected_error():
    """(d − k)⁺/d + 0.25 at d = 8, n = 17: k = 0 gets 1.25, k ≥ 8 gets 0.25, so they weigh 1 : 5; mean 1."""
    w = position_weights("inverse_ls", 8, 17)
    assert w.mean().item() == pytest.approx(1.0)
    want = 1 / ((8 - torch.arange(17.0)).clamp(min=0) / 8 + 0.25)
    torch.testing.assert_close(w, want / want.mean())
    assert w[16] / w[0] == pytest.approx(5.0) and bool((w[1:] >= w[:-1]).all())
    assert torch.equal(position_weights("uniform", 8, 17), torch.ones(17))


def test_inverse_optimal_weighs_every_point_past_the_exact_one_as_much_as_those_past_d():
    """s-sparse weights at d = 8: from k = s + 1 = 4 points on the Bayes-optimal predictor is exact, so k = 4..16
    all get 1 / 0.25 before normalising, and k < 4 keep inverse_ls' 1 / ((8 − k)/8 + 0.25)."""
    w = position_weights("inverse_optimal", 8, 17, exact_from=4)
    assert w.mean().item() == pytest.approx(1.0)
    assert bool((w[4:] == w[4]).all()) and w[4] / w[0] == pytest.approx(5.0)
    torch.testing.assert_close(w[:4] / w[4], 0.25 / ((8 - torch.arange(4.0)) / 8 + 0.25))
    # with the exact point at d it is inverse_ls; and the task passes sparsity + 1 for sparse functions only
    assert torch.equal(position_weights("inverse_optimal", 8, 17, exact_from=8), position_weights("inverse_ls", 8, 17))
    assert [exact_from("sparse_linear", 3, d) for d in (2, 3, 4, 8)] == [2, 3, 4, 4]
    assert exact_from("linear", 3, 8) == 8
    # the debug flavor: d = 4, 9 points; 2-sparse weights are exact from 3 points
    batch = _task(function="sparse_linear", sparsity=2, loss_weight="inverse_optimal").get_batch("val", 2,
                                                                                               torch.Generator())
    torch.testing.assert_close(batch["weights"][0], position_weights("inverse_optimal", 4, 9, exact_from=3))
    assert not torch.allclose(batch["weights"][0], position_weights("inverse_ls", 4, 9))


def test_the_task_loss_applies_the_weights():
    torch.manual_seed(0)
    uniform, weighted = _task(), _task(loss_weight="inverse_ls")
    model = ICLTransformer(ICLConfig(**uniform.flavor.model))
    batch = uniform.get_batch("val", 8, torch.Generator().manual_seed(3))
    weighted_batch = weighted.get_batch("val", 8, torch.Generator().manual_seed(3))
    assert torch.equal(batch["xs"], weighted_batch["xs"])  # the same prompts, only the weights differ
    err = (model(batch["xs"], batch["ys"]) - batch["ys"]).pow(2) / batch["d_active"]  # (B, n)
    n = err.shape[1]
    torch.testing.assert_close(uniform.loss(model, batch), err.mean())
    torch.testing.assert_close(weighted.loss(model, weighted_batch),
                               (err * position_weights("inverse_ls", batch["d_active"].item(), n)).mean())
    assert not torch.allclose(weighted.loss(model, weighted_batch), err.mean())


def test_weight_from_keeps_the_training_loss_uniform_until_that_step():
    task, g = _task(loss_weight="inverse_ls", weight_from=3), torch.Generator().manual_seed(0)
    batches = [task.get_batch("train", 4, g) for _ in range(5)]  # optimizer steps 0..4 (grad_accum 1)
    assert [bool((b["weights"] == 1).all()) for b in batches] == [True, True, True, False, False]
    for b in batches[3:]:
        torch.testing.assert_close(b["weights"], position_weights("inverse_ls", b["d_active"].item(),
                                                                  b["ys"].shape[1])[None])
    with pytest.raises(UserError, match="weight_from must be a step ≥ 0, got -1"):
        _task(weight_from=-1)


def test_ddp_shards_the_prompts_but_not_the_loss_weights():
    """Each rank takes its rows of the global batch; the per-position weights are (1, n), so a global batch as
    large as n (debug flavor: 9 points; 2 ranks × 4.5 is no batch, 3 ranks × 3 is) leaves them whole."""
    from attnkit.engine.distributed import World, shard_batch
    task = _task(loss_weight="inverse_ls")
    batch = task.get_batch("val", 9, torch.Generator().manual_seed(0))  # 9 prompts of 9 points
    mine = shard_batch(batch, World(rank=1, size=3), 3)
    assert torch.equal(mine["xs"], batch["xs"][3:6]) and torch.equal(mine["weights"], batch["weights"])
    assert mine["weights"].shape == (1, 9)


@pytest.mark.parametrize("prompt, message", [
    ("1,2,3=1; 1,2,3,4", "prompt point 1 has 3 coordinates; this model reads d = 4"),
    ("1,2,3,4=1; 1,2,3,4=2", "must end with a query point"),
    ("1,2,a,4=1; 1,2,3,4", "is not 'x1,...,xd=y' with numbers"),
])
def test_bad_prompts_are_user_errors(prompt, message):
    with pytest.raises(UserError, match=message):
        _task().parse_prompt(prompt)


# ---- y as its own token, and the agreement probe (Akyürek et al. 2022) ---------------------------------------

def test_own_y_token_keeps_causality_and_reads_y_apart_from_x():
    torch.manual_seed(0)
    model = ICLTransformer(ICLConfig(n_dims=3, n_points=5, n_layer=1, n_head=2, n_embd=16, y_token="own")).eval()
    p = sample_prompts("linear", 2, 3, 5, torch.Generator().manual_seed(0))
    base = model(p.xs, p.ys)
    ys = p.ys.clone()
    ys[:, 2] += 3.0  # y_2 may only move predictions 3 and 4
    moved = model(p.xs, ys)
    assert torch.allclose(moved[:, :3], base[:, :3]) and not torch.allclose(moved[:, 3:], base[:, 3:])
    xs = p.xs.clone()
    xs[:, 1, 0] += 3.0  # x_1's first coordinate moves prediction 1, unlike a padded y token in its place
    assert not torch.allclose(model(xs, p.ys)[:, 1], base[:, 1])
    with pytest.raises(ValueError, match="y_token"):
        ICLConfig(y_token="sideways")


def test_agreement_probe_is_zero_against_the_algorithm_itself():
    from attnkit.zoo.eval.icl import agreement_by_k, algorithm_predictions, fit_algorithms

    fit = sample_prompts("linear", 512, 4, 9, torch.Generator().manual_seed(5))
    p = sample_prompts("linear", 256, 4, 9, torch.Generator().manual_seed(6))
    fitted = fit_algorithms(fit)
    others = {name: algorithm_predictions(name, p, fitted) for name in ("gd_one_step", "least_squares", "knn3")}
    agree = agreement_by_k(others["least_squares"], others, d=4)   # least squares standing in for the model
    assert max(agree["least_squares"]) < 1e-10
    assert all(a > 1e-3 for a in agree["gd_one_step"][1:]) and all(a > 1e-3 for a in agree["knn3"][1:])
    assert agreement_by_k(others["knn3"], {"self": others["knn3"]}, d=4)["self"] == [0.0] * 9


def test_one_gd_step_fits_the_known_optimal_step_size():
    from attnkit.zoo.eval.icl import fit_gd_steps

    # x, w ~ N(0, I_d): E[q·XᵀXw · w·q] = k·d and E[(q·XᵀXw)²] = d·k(k+d+1), so η*_k = 1 / (k + d + 1).
    p = sample_prompts("linear", 20_000, 4, 7, torch.Generator().manual_seed(7))
    etas = fit_gd_steps(p)
    assert etas[0] == 0.0
    for k in range(1, 7):
        assert etas[k] == pytest.approx(1 / (k + 4 + 1), rel=0.1)


def test_agreement_crossover_is_where_least_squares_stays_closer_than_gd():
    from attnkit.zoo.eval.icl import agreement_crossover, agreement_rows

    agree = {"gd_one_step": [0, 0.1, 0.2, 0.3, 0.3], "least_squares": [0, 0.2, 0.1, 0.4, 0.01]}
    assert agreement_crossover(agree) == 4
    agree["least_squares"][3] = 0.2
    assert agreement_crossover(agree) == 2
    headers, rows = agreement_rows(agree, d=2)
    assert headers == ["k", "gd one step", "least squares"] and rows[2] == ["2 (= d)", "0.2000", "0.1000*"]


def test_a_tiny_model_learns_two_dimensional_regression_in_context():
    """CI-sized (about 20 s of one core): 2 layers × 32, 1,200 Adam steps on fresh d = 2 prompts. At k = 1 it is
    within 1.5× of least squares (the Bayes-optimal answer; seeds 0-2 measured 1.13-1.15); from k = d on below
    the better of averaging and 3-NN on the same prompts (measured 0.45-0.69 of it). 600 steps at lr 3e-3
    fail both."""
    from attnkit.zoo.eval.icl import model_predictions

    torch.manual_seed(0)
    d, n = 2, 5
    model = ICLTransformer(ICLConfig(n_dims=d, n_points=n, n_layer=2, n_head=2, n_embd=32, y_token="own"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(1200):
        p = sample_prompts("linear", 64, d, n, g)
        loss = (model(p.xs, p.ys) - p.ys).pow(2).mean() / d
        opt.zero_grad()
        loss.backward()
        opt.step()
    p = sample_prompts("linear", 1000, d, n, torch.Generator().manual_seed(99))
    tf = error_by_k(model_predictions(model, p, torch.device("cpu")), p)
    ls = error_by_k(baseline_predictions("least_squares", p), p)
    weak = [min(a, b) for a, b in zip(error_by_k(baseline_predictions("averaging", p), p),
                                      error_by_k(baseline_predictions("knn3", p), p))]
    assert tf[1] < 1.5 * ls[1]
    assert all(tf[k] < weak[k] for k in range(d, n))


def test_standard_error_of_the_error_matches_its_spread_over_fresh_prompt_sets():
    """The error at k is a mean over prompts; its standard error from one set of prompts predicts how much
    that mean moves between independent sets (averaging's error at k = 2, d = 4: 32 sets of 128 prompts)."""
    from attnkit.zoo.eval.icl import error_standard_error

    means, ses = [], []
    for seed in range(32):
        p = sample_prompts("linear", 128, 4, 9, torch.Generator().manual_seed(100 + seed))
        pred = baseline_predictions("averaging", p)
        means.append(error_by_k(pred, p)[2])
        ses.append(error_standard_error(pred, p, 2))
    spread = torch.tensor(means).std().item()
    assert 0.7 < sum(ses) / len(ses) / spread < 1.4  # measured 0.98
    assert error_standard_error(p.targets, p, 2) == 0.0  # exact predictions: no spread at all
