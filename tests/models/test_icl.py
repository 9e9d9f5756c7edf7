"""In-context regression pieces: token layout, causality of the read-out, the baselines' known answers,
the curriculum, the out-of-distribution prompts, and the one-line errors for bad prompts and classes."""
import pytest
import torch

from attnkit.config import TrainConfig
from attnkit.zoo.data.icl import Curriculum, ood_prompts, sample_prompts
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


@pytest.mark.parametrize("prompt, message", [
    ("1,2,3=1; 1,2,3,4", "prompt point 1 has 3 coordinates; this model reads d = 4"),
    ("1,2,3,4=1; 1,2,3,4=2", "must end with a query point"),
    ("1,2,a,4=1; 1,2,3,4", "is not 'x1,...,xd=y' with numbers"),
])
def test_bad_prompts_are_user_errors(prompt, message):
    with pytest.raises(UserError, match=message):
        _task().parse_prompt(prompt)
