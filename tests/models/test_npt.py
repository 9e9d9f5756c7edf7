"""NPT: masking statistics of the training objective, row-permutation equivariance, no leak through masked
cells, column typing of CSVs, and the lookup probe's duplicated rows."""

import dataclasses

import numpy as np
import pytest
import torch

from attnkit.config import TrainConfig
from attnkit.zoo.data.tables import load_table
from attnkit.zoo.models.npt import NPT, NPTConfig, NPTFolds, cell_losses
from attnkit.errors import UserError
from attnkit.zoo.data.masked_cells import CONTEXT, TEST, TRAIN
from attnkit.zoo.tasks.npt import NPTTask
from attnkit.engine.resolve import resolve_config


def make_task(tmp_path, **overrides):
    options = {k: overrides.pop(k) for k in ("folds", "probe", "target_shift", "target") if k in overrides}
    cfg = resolve_config(TrainConfig(model="npt", flavor="debug", options=options, **overrides))
    task = NPTTask(cfg)
    task.prepare(tmp_path)
    return task


def test_masking_statistics(tmp_path):
    """Feature cells selected with p=0.15, split 80/10/10 into mask token / random value / unchanged;
    training targets masked with p_target and trained on; test targets always masked, never trained on."""
    task = make_task(tmp_path, data="breast_cancer", folds=2)
    task.objective.update(feature_mask=0.15, target_mask=0.3, target_weight=0.25)
    t = task.table.target
    g = torch.Generator().manual_seed(0)
    chosen_n = token_n = random_n = same_n = cells = 0
    tgt_chosen = tgt_train = 0
    for _ in range(4):
        b = task.get_batch("train", 4096, g)
        K, B, d = b["values"].shape
        role = task.roles                                                   # (K, B): full batch, row order kept
        feat = torch.ones(d, dtype=torch.bool)
        feat[t] = False
        chosen = (b["weight"] > 0) & feat
        token_n += (chosen & b["mask"]).sum().item()
        changed = b["values"] != b["labels"]
        random_n += (chosen & ~b["mask"] & changed).sum().item()
        same_n += (chosen & ~b["mask"] & ~changed).sum().item()
        chosen_n += chosen.sum().item()
        cells += K * B * (d - 1)
        # No feature cell is masked or altered unless it was selected for the loss.
        assert not (b["mask"][..., feat] & ~chosen[..., feat]).any()
        assert not (changed[..., feat] & ~chosen[..., feat]).any()
        # Targets: test rows always hidden with zero weight; context-free run has no other roles.
        assert b["mask"][..., t][role == TEST].all() and (b["weight"][..., t][role == TEST] == 0).all()
        train_chosen = b["weight"][..., t] > 0
        assert (b["mask"][..., t][train_chosen]).all()                    # trained-on targets are hidden
        assert not b["mask"][..., t][(role == TRAIN) & ~train_chosen].any()  # the rest are visible inputs
        tgt_chosen += train_chosen.sum().item()
        tgt_train += (role == TRAIN).sum().item()
        # λ split: per fold the feature weights sum to 1 − λ and the target weights to λ.
        torch.testing.assert_close(b["weight"][..., feat].sum((1, 2)), torch.full((K,), 0.75))
        torch.testing.assert_close(b["weight"][..., t].sum(1), torch.full((K,), 0.25))
    assert chosen_n / cells == pytest.approx(0.15, abs=0.005)
    assert token_n / chosen_n == pytest.approx(0.8, abs=0.02)
    # A random replacement can draw the same value; breast-cancer values are continuous, so that is rare.
    assert random_n / chosen_n == pytest.approx(0.1, abs=0.015)
    assert same_n / chosen_n == pytest.approx(0.1, abs=0.015)
    assert tgt_chosen / tgt_train == pytest.approx(0.3, abs=0.02)


def test_minibatches_are_random_row_subsets(tmp_path):
    task = make_task(tmp_path, data="iris", folds=3)
    b = task.get_batch("train", 32, torch.Generator().manual_seed(0))
    assert b["values"].shape == (3, 32, 5)
    rows = {tuple(map(float, r)) for r in b["labels"][0]}
    assert len(rows) > 25                                                  # distinct rows drawn (iris has a few duplicates)


def small_npt(cards, **kw):
    return NPT(NPTConfig(cardinalities=cards, embed_dim=8, n_layer=4, n_head_abd=2, n_head_aba=2, ff_mult=2, **kw))


def random_table(n, cards, g):
    cols = [torch.randint(0, c, (n,), generator=g).float() if c else torch.randn(n, generator=g) for c in cards]
    return torch.stack(cols, 1), torch.rand(n, len(cards), generator=g) < 0.2


def test_permuting_rows_permutes_predictions():
    g = torch.Generator().manual_seed(0)
    cards = [0, 3, 0, 0, 2]
    model = small_npt(cards, dropout=0.1).eval()
    values, mask = random_table(40, cards, g)
    perm = torch.randperm(40, generator=g)
    with torch.no_grad():
        num, logits = model(values, mask)
        num_p, logits_p = model(values[perm], mask[perm])
    torch.testing.assert_close(num_p, num[perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits_p, logits[perm], atol=1e-5, rtol=1e-5)
    # ...and the rows really interact (ABD): changing another row changes this row's prediction.
    values2 = values.clone()
    values2[1:] = values2[1:].flip(0)
    with torch.no_grad():
        assert not torch.allclose(model(values2, mask)[0][0], num[0])


def test_masked_cells_cannot_leak():
    g = torch.Generator().manual_seed(1)
    cards = [0, 3, 0, 2]
    model = small_npt(cards).eval()
    values, mask = random_table(30, cards, g)
    junk = values.clone()
    junk[mask] = torch.randn(int(mask.sum()), generator=g) * 100           # even out-of-range class codes
    with torch.no_grad():
        a, b = model(values, mask), model(junk, mask)
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])


def test_heads_and_losses_per_column_type():
    cards = [0, 3, 2]
    model = NPTFolds(NPTConfig(cardinalities=cards, embed_dim=4, n_layer=2, n_head_abd=1), n_folds=2)
    values = torch.tensor([[[0.5, 2.0, 1.0]] * 5] * 2)                     # (K=2, N=5, d=3)
    num, logits = model(values, torch.zeros(2, 5, 3, dtype=torch.bool))
    assert num.shape == (2, 5, 3) and logits.shape == (2, 5, 3, 3)
    assert torch.isinf(logits[..., 2, 2]).all() and torch.isfinite(logits[..., 1, :]).all()
    losses = cell_losses(num, logits, values, torch.tensor([False, True, True]))
    torch.testing.assert_close(losses[..., 0], (num[..., 0] - 0.5) ** 2)
    torch.testing.assert_close(losses[..., 1], -logits[..., 1, :].log_softmax(-1)[..., 2])
    assert torch.isfinite(losses).all()


def test_csv_columns_are_typed_and_overridable(tmp_path):
    path = tmp_path / "t.csv"
    rows = ["size,colour,grade,score,label"]
    rng = np.random.default_rng(0)
    for i in range(30):
        rows.append(f"{rng.normal():.3f},{['red', 'blue'][i % 2]},{i % 4},{'' if i == 3 else rng.normal():},"
                    f"{['yes', 'no'][i % 2]}")
    path.write_text("\n".join(rows) + "\n")
    table = load_table(str(path), "label")
    assert table.kinds == ["numeric", "categorical", "categorical", "numeric", "categorical"]
    assert table.categories[4] == ["no", "yes"] and table.target == 4
    assert table.missing[3, 3] and table.missing.sum() == 1
    assert abs(table.values[:, 0].mean()) < 1e-5                           # numeric features standardized
    table = load_table(str(path), "label", "grade=numeric,size=categorical")
    assert table.kinds[:3] == ["categorical", "categorical", "numeric"]
    with pytest.raises(UserError, match="target column 'nope' is not in t"):
        load_table(str(path), "nope")
    with pytest.raises(UserError, match="NAME=numeric"):
        load_table(str(path), "label", "grade=float")


def test_lookup_probe_duplicates_rows_with_shifted_visible_targets(tmp_path):
    task = make_task(tmp_path, data="diabetes", folds=2, probe="lookup", target_shift=1.0)
    n, t = task.table.n, task.table.target
    assert task.values.shape == (2, 2 * n, task.table.d)
    assert (task.roles[:, n:] == CONTEXT).all()
    for k in range(2):
        shift = (task.values[k, n:, t] - task.values[k, :n, t]) * task.target_std[k]
        torch.testing.assert_close(shift, torch.ones(n), atol=1e-4, rtol=0)
        torch.testing.assert_close(task.values[k, n:, :t], task.values[k, :n, :t])
    b = task.get_batch("train", 10_000, torch.Generator().manual_seed(0))
    assert not b["mask"][:, n:, t].any() and (b["weight"][:, n:, t] == 0).all()


def test_the_config_picks_the_table_task_or_the_lookup_experiment():
    """`--model npt` is one name for two tasks: probe=lookup without --data is the semi-synthetic experiment.
    `Task.for_config` picks the class; the registry's `task_for` is what the trainer calls."""
    from attnkit.zoo.tasks import task_for
    from attnkit.zoo.tasks.npt_lookup import NPTLookupTask

    def picked(**kw):
        cfg = resolve_config(TrainConfig(model="npt", **kw))
        assert task_for(cfg) is NPTTask.for_config(cfg)
        return NPTTask.for_config(cfg)

    assert picked(options={"probe": "lookup"}) is NPTLookupTask                  # flavor "lookup"
    assert picked(flavor="debug", options={"probe": "lookup"}) is NPTLookupTask
    assert picked(flavor="debug", data="iris", options={"probe": "lookup"}) is NPTTask  # the table's rows
    assert picked(flavor="debug", options={"probe": "corruption"}) is NPTTask
    assert picked(flavor="debug") is NPTTask
    assert NPTLookupTask.for_config(resolve_config(TrainConfig(model="npt"))) is NPTLookupTask  # its own
    cfg = resolve_config(TrainConfig(model="npt", flavor="lookup", data="iris"))
    assert NPTTask.for_config(cfg) is NPTTask
    with pytest.raises(UserError, match="takes no --data"):
        NPTTask(cfg)


def test_a_saved_lookup_run_loads_as_the_lookup_experiment():
    """Run directories keep the one model name "npt"; `attnkit sample` and `load_run` pick the class from the
    saved config, including one saved before options had their own table (flat keys of "train")."""
    from attnkit.engine.sample import saved_task
    from attnkit.zoo.tasks.npt_lookup import NPTLookupTask

    cfg = resolve_config(TrainConfig(model="npt", flavor="debug", options={"probe": "lookup"}))
    saved = {"task": "npt", "train": dataclasses.asdict(cfg), "model": {}}
    assert saved_task(saved)[0] is NPTLookupTask
    old = {"task": "npt", "train": {"model": "npt", "flavor": "debug", "probe": "lookup", "folds": 2}, "model": {}}
    task_cls, train_cfg = saved_task(old)
    assert task_cls is NPTLookupTask and train_cfg.options["probe"] == "lookup"
    table = {"task": "npt", "train": {**old["train"], "data": "iris"}, "model": {}}
    assert saved_task(table)[0] is NPTTask


def test_probe_flags_are_checked():
    with pytest.raises(UserError, match="unknown probe"):
        NPTTask(TrainConfig(model="npt", flavor="debug"), NPTTask.Options(probe="bogus"))
    with pytest.raises(UserError, match="lookup"):
        NPTTask(TrainConfig(model="npt", flavor="debug"), NPTTask.Options(target_shift=1.0))
    with pytest.raises(UserError, match="noise"):   # a table of the user's has its own noise
        NPTTask(TrainConfig(model="npt", flavor="debug", data="iris"), NPTTask.Options(probe="lookup", noise=6.0))
    from attnkit.zoo.tasks.npt_lookup import NPTLookupTask
    with pytest.raises(UserError, match="noise must be"):
        NPTLookupTask(TrainConfig(model="npt", flavor="debug"), NPTTask.Options(probe="lookup", noise=-1.0))
    assert NPTTask(resolve_config(TrainConfig(model="npt"))).opts.folds == 10
    assert NPTTask(resolve_config(TrainConfig(model="npt", flavor="debug"))).opts.folds == 2


def test_corruption_keeps_the_row_and_shuffles_each_column_of_the_others():
    from attnkit.zoo.eval.npt import corrupt_other_rows

    g = torch.Generator().manual_seed(0)
    values = torch.arange(60.0).view(20, 3)                                 # every cell distinct
    mask = values.remainder(7) == 0
    v, m = corrupt_other_rows(values, mask, 5, g)
    assert torch.equal(v[5], values[5]) and torch.equal(m[5], mask[5])
    others = [r for r in range(20) if r != 5]
    for j in range(3):
        assert sorted(v[others, j].tolist()) == sorted(values[others, j].tolist())  # same column values
        assert torch.equal(m[others, j], v[others, j].remainder(7) == 0)            # mask bit moved along
    assert not torch.equal(v, values)
    # Columns are permuted independently: few corrupted rows are still some original row.
    originals = {tuple(r) for r in values.tolist()}
    assert sum(tuple(r) in originals for r in v[others].tolist()) < 5


def test_prediction_in_row_minibatches_when_the_table_does_not_fit(tmp_path):
    task = make_task(tmp_path, data="iris", folds=3, batch_size=40)
    model = NPTTask.build_model(task.model_config())
    seen = []
    hook = model.folds[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    outs = task.fold_predictions(model)
    hook.remove()
    assert [o.shape for o in outs] == [(50, 3)] * 3
    torch.testing.assert_close(outs[0].sum(1), torch.ones(50))
    assert seen == [40, 40, 40] and len(seen) * 20 >= 50                   # test rows in chunks, context fills up
    assert torch.equal(task.fold_predictions(model)[0], outs[0])                    # deterministic context sampling
    assert all(m.training for m in model.modules())  # the engine owns the mode: predicting leaves it as it was


# ---- the semi-synthetic lookup experiment (attnkit.zoo.data.lookup, attnkit.zoo.eval.npt_lookup) --------------------

def test_lookup_batches_pair_each_masked_original_with_its_visible_duplicate():
    from attnkit.zoo.data.lookup import friedman_table, lookup_batch

    table = friedman_table(n_rows=200, seed=0)
    values = torch.tensor(np.concatenate([table.values, table.values]))  # (2n, d)
    b = lookup_batch(values, torch.arange(150), table.n, table.target, 8, torch.Generator().manual_seed(0))
    x, mask, w = b["values"][0], b["mask"][0], b["weight"][0]  # (16, d)
    t = table.target
    assert torch.equal(x[:8, :t], x[8:, :t])                             # the duplicates are exact copies
    assert torch.equal(b["labels"][0][:8], b["labels"][0][8:])
    assert mask[:8, table.target].all() and not mask[8:].any() and not mask[:, :table.target].any()
    assert torch.allclose(w[:8, table.target], torch.full((8,), 1 / 8)) and w.sum() == pytest.approx(1.0)


def test_lookup_batches_never_show_a_masked_row_its_own_target():
    from attnkit.zoo.data.lookup import friedman_table, lookup_batch
    from attnkit.zoo.eval.npt_lookup import pair_batch

    table = friedman_table(n_rows=300, seed=2)
    n, t = table.n, table.target
    values = torch.tensor(np.concatenate([table.values, table.values]))  # (2n, d)
    pool, held_out = torch.arange(0, 240), torch.arange(240, 300)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        b = lookup_batch(values, pool, n, t, 16, g)
        x, mask, labels = b["values"][0], b["mask"][0], b["labels"][0]
        assert (x[mask] == 0).all() and mask.any()                       # the masked cell holds no answer
        # every masked original is a training row; its only twin is its duplicate, and no held-out row
        # (nor its duplicate) appears: the batch's rows are the 16 originals and their 16 duplicates
        rows = [int(torch.nonzero((values == r).all(1))[0]) % n for r in labels]
        assert len(set(rows[:16])) == 16 and rows[:16] == rows[16:]
        assert not set(rows) & set(held_out.tolist())
    new = torch.arange(4.0)
    x, mask = pair_batch(values, held_out[:4], n, t, duplicate_targets=new)
    assert (x[mask] == 0).all() and torch.equal(x[4:, t], new)         # the probe's batch hides them too


def test_a_lookup_model_follows_the_intervention_and_the_corruption_breaks_it():
    """A hand-made "model" that copies the target of the row with identical features: the probe must report
    correlation 1 with the intervened targets, and the corruption must destroy it."""
    from attnkit.zoo.data.lookup import friedman_table
    from attnkit.zoo.eval.npt_lookup import correlation, predict_corrupted, predict_pairs

    class CopyTwin(torch.nn.Module):
        def forward(self, values, mask):
            t = values.shape[1] - 1
            feats = values[:, :t]
            dist = torch.cdist(feats, feats) + torch.eye(len(values)) * 1e9  # (N, N), never itself
            twin = dist.argmin(1)
            out = values[twin, t]
            return torch.stack([out] * values.shape[1], 1), None

    table = friedman_table(n_rows=300, seed=1)
    values = torch.tensor(np.concatenate([table.values, table.values]))
    rows, t, g = torch.arange(200, 264), table.target, torch.Generator().manual_seed(0)
    new = values[rows, t][torch.randperm(64, generator=g)]
    moved = predict_pairs(CopyTwin(), values, rows, table.n, t, 16, torch.device("cpu"), duplicate_targets=new)
    assert correlation(moved, new) == pytest.approx(1.0)
    broken = predict_corrupted(CopyTwin(), values, rows, table.n, t, 16, torch.device("cpu"), g)
    # Corrupted, it still copies a row of its batch (a duplicate's target, or a masked original's 0), but the
    # twin it finds is a wrong one: pinned on the seeded shuffle.
    for i, value in enumerate(broken.tolist()):
        batch_targets = values[rows[i // 16 * 16:(i // 16 + 1) * 16], t].tolist()
        assert value in batch_targets or value == 0
    assert correlation(broken, values[rows, t]) == pytest.approx(0.2671, abs=1e-4)


def test_lookup_onset_is_the_first_evaluation_at_the_threshold():
    from attnkit.zoo.eval.npt_lookup import lookup_onset

    history = [{"step": 0, "val_lookup_corr": 0.01}, {"step": 500, "val_lookup_corr": float("nan")},
               {"step": 1000, "val_lookup_corr": 0.95}, {"step": 1500, "val_lookup_corr": 0.85}]
    assert lookup_onset(history) == 1000 and lookup_onset(history, threshold=0.99) is None
    assert lookup_onset([{"step": 0, "val_loss": 1.0}]) is None


def test_lookup_noise_option_sets_the_friedman_noise(tmp_path):
    from attnkit.zoo.tasks.npt_lookup import NPTLookupTask

    cfg = resolve_config(TrainConfig(model="npt", options={"probe": "lookup"}))   # the lookup flavor: noise 6
    task = NPTLookupTask(cfg)
    task.prepare(tmp_path)
    assert task.table.name == "friedman1 (10000 rows, noise 6)"
    quiet = NPTLookupTask(resolve_config(TrainConfig(model="npt", options={"probe": "lookup", "noise": 3.0})))
    quiet.prepare(tmp_path / "quiet")
    # Same features, noisier targets: the same seeded normal draws scaled by 6 instead of 3 differ by 3·z.
    assert np.array_equal(task.table.values[:, :10], quiet.table.values[:, :10])
    ratio = np.std(task.table.raw_target - quiet.table.raw_target) / 3.0
    assert 0.95 < ratio < 1.05
