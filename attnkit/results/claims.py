"""Each model's claim as data: what it measures, against what, and the goal that decides met / not met.

A model is trained in one or more arms (the default flavor, plus e.g. music's absolute positions) on the
same seeds. A claim reads a value from one seed's runs: `"ARM:key.path"` (a key of that arm's summary.json,
dots for nested dicts) or the name of a function in DERIVED. It is met when the mean over seeds of `metric`
beats the mean of `baseline` by at least `margin` (in the metric's units; a negative margin is a tolerance),
or, without a baseline, beats `target`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from attnkit.results.speedrun import speedup

Runs = dict[str, dict[str, Any]]  # arm -> that arm's summary.json, plus "curve": its eval rows (step, wall_s, val_loss)


@dataclasses.dataclass(frozen=True)
class Claim:
    text: str                     # what the model shows, in words
    goal: str                     # the goal, in words
    metric: str                   # "ARM:key.path" or a DERIVED name
    better: str = "higher"        # "higher" or "lower"
    baseline: str | None = None   # the same kind of reference, from the same seed's runs
    margin: float = 0.0           # metric must beat baseline by this much (negative: within this much)
    target: float | None = None   # without a baseline: the value to reach
    unit: str = ""                # "%" (shown ×100), "×", or a unit name
    every_seed: bool = False      # met only if each seed's value reaches the target (not just their mean)

    def met(self, value: float | None, baseline: float | None) -> bool | None:
        """None when it could not be measured (a key missing, a speedup that never happened)."""
        reference = baseline if self.baseline else self.target
        if value is None or reference is None:
            return None
        gain = value - reference if self.better == "higher" else reference - value
        return gain >= (self.margin if self.baseline else 0.0)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    model: str
    claims: tuple[Claim, ...]
    # arm name -> TrainConfig overrides (flavor, options); "main" is the model's default flavor. With "runner":
    # NAME, the arm runs as attnkit.results.speedrun.RUNNERS[NAME] says (a timed process of its own: our trainer,
    # or a baseline's own code) instead of through the trainer in this process.
    arms: dict[str, dict[str, Any]] = dataclasses.field(default_factory=lambda: {"main": {}})


# ---- values computed from a seed's runs ----------------------------------------------------------
def gpt_speedup(runs: Runs) -> float | None:
    """nanoGPT's wall at its final eval over the speedrun arm's time to nanoGPT's final loss, both re-scored on
    the common measure (attnkit.results.speedrun)."""
    return speedup(runs["nanogpt"]["curve"], runs["main"]["curve"], "common_loss")


def _dt_by_target(runs: Runs, arm: str = "main") -> tuple[list[dict], float]:
    s = runs[arm]
    return s["return_by_target"], s["dataset_max_return"]


def _dt_top(runs: Runs, arm: str = "main") -> dict:
    rows, _ = _dt_by_target(runs, arm)
    return max(rows, key=lambda r: r["target"])


def dt_top_return(runs: Runs) -> float:
    return _dt_top(runs)["mean"]


def dt_top_return_acrobot(runs: Runs) -> float:
    return _dt_top(runs, "acrobot")["mean"]


def dt_top_fraction(runs: Runs) -> float:
    return dt_top_return(runs) / runs["main"]["dataset_max_return"]


def dt_top_se_fraction(runs: Runs) -> float:
    """The standard error of the top target's mean return, as a fraction of the dataset's best."""
    return _dt_top(runs)["se"] / abs(runs["main"]["dataset_max_return"])


def dt_worst_tracking_gap(runs: Runs) -> float:
    """Largest |achieved − target| over the targets up to the dataset's best, as a fraction of the best."""
    rows, best = _dt_by_target(runs)
    return max(abs(r["mean"] - r["target"]) for r in rows if r["target"] <= best) / abs(best)


def asr_pocketsphinx_ratio(runs: Runs) -> float:
    """pocketsphinx's WER over the model's, on the same held-out clips."""
    s = runs["main"]
    return s["wer_pocketsphinx"] / s["wer_heldout_voices_on_pocketsphinx_clips"]


def asr_command_minutes(runs: Runs) -> float:
    """The whole command's wall time: synthesis + training + report, in minutes."""
    s = runs["main"]
    return (s["synth_wall_s"] + s["train_wall_s"] + s["report_wall_s"]) / 60


def music_nll_longest(arm: str) -> Callable[[Runs], float]:
    """Validation NLL at the longest evaluation window (4× the training length)."""
    def value(runs: Runs) -> float:
        by_length = runs[arm]["val_nll_by_length"]
        return by_length[max(by_length, key=int)]
    return value


def image_tiles(pattern: str) -> Callable[[Runs], float]:
    """64×64 kernel tiles the main arm's attention pattern computes (the kernel skips the empty ones)."""
    def value(runs: Runs) -> float:
        return runs["main"]["pattern"][pattern]["tiles_64x64"]
    return value


def icl_max_ratio_to_knn_and_averaging(runs: Runs) -> float:
    """The largest ratio, over k ≥ 1, of the transformer's error to the better of 3-NN and averaging."""
    errors = runs["main"]["error_by_k"]
    tf, knn, avg = errors["transformer"], errors["knn3"], errors["averaging"]
    return max(tf[k] / min(knn[k], avg[k]) for k in range(1, len(tf)))


def icl_agreement_margin_above_d(runs: Runs) -> float:
    """The smallest, over k ≥ d, of (difference to one GD step − difference to least squares): > 0 when the
    transformer is closer to least squares at every k ≥ d."""
    s = runs["main"]
    ls, gd = s["agreement_by_k"]["least_squares"], s["agreement_by_k"]["gd_one_step"]
    return min(gd[k] - ls[k] for k in range(s["d"], len(ls)))


DERIVED: dict[str, Callable[[Runs], float | None]] = {
    "gpt_speedup": gpt_speedup, "dt_top_return": dt_top_return, "dt_top_return_acrobot": dt_top_return_acrobot,
    "dt_top_fraction": dt_top_fraction,
    "dt_top_se_fraction": dt_top_se_fraction, "dt_worst_tracking_gap": dt_worst_tracking_gap,
    "music_nll_4x_relative": music_nll_longest("main"),
    "music_nll_4x_absolute": music_nll_longest("absolute"), "asr_pocketsphinx_ratio": asr_pocketsphinx_ratio,
    "asr_command_minutes": asr_command_minutes,
    "image_tiles_local2d": image_tiles("local2d"), "image_tiles_full": image_tiles("full"),
    "icl_max_ratio_to_knn_and_averaging": icl_max_ratio_to_knn_and_averaging,
    "icl_agreement_margin_above_d": icl_agreement_margin_above_d,
}


def value(runs: Runs, ref: str) -> float | None:
    """The value `ref` names in one seed's runs; None if that run has no such key."""
    if ref in DERIVED:
        try:
            return DERIVED[ref](runs)
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return None
    arm, _, path = ref.partition(":")
    node: Any = runs.get(arm, {})
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None


# ---- the table ---------------------------------------------------------------------------------
SPECS: dict[str, ModelSpec] = {s.model: s for s in (
    ModelSpec("gpt", arms={"main": {"flavor": "speedrun", "runner": "attnkit"},
                           "nanogpt": {"flavor": "demo", "runner": "nanogpt"}}, claims=(
        Claim("the speedrun flavor reaches the final val loss of nanoGPT's own train.py (its CPU recipe, same "
              "text, same run) faster", "≥ 3× faster: nanoGPT's wall / ours to its loss, both re-scored on the "
              "whole val split", "gpt_speedup", target=3.0, unit="×"),)),
    ModelSpec("bert", claims=(
        Claim("MLM pretraining helps fine-tuning with few labels", "≥ 5 points above the same model from scratch",
              "main:finetune_acc_pretrained", baseline="main:finetune_acc_scratch", margin=0.05, unit="%"),
        Claim("fine-tuned BERT beats bag-of-words", "above bag-of-words logistic regression",
              "main:finetune_acc_pretrained", baseline="main:finetune_acc_bow", unit="%"),
        Claim("masked-token accuracy beats the unigram baseline", "above unigram frequency",
              "main:mlm_accuracy", baseline="main:unigram_accuracy", unit="%"))),
    ModelSpec("encdec", claims=(
        Claim("beam search matches or beats greedy decoding", "beam EM ≥ greedy EM",
              "main:beam_exact_match", baseline="main:greedy_exact_match", unit="%"),
        Claim("averaging the last checkpoints matches or beats the final weights", "averaged EM ≥ final EM",
              "main:averaged_greedy_exact_match", baseline="main:greedy_exact_match", unit="%"))),
    ModelSpec("music", arms={"main": {"options": {"position": "relative"}}, "absolute": {"options": {"position": "absolute"}}},
              claims=(
        Claim("relative positions beat absolute ones (Music Transformer)", "lower validation NLL than absolute",
              "main:val_nll", better="lower", baseline="absolute:val_nll", unit="nats"),
        Claim("relative positions hold past the training length", "lower NLL than absolute with 4× longer windows",
              "music_nll_4x_relative", better="lower", baseline="music_nll_4x_absolute", unit="nats"))),
    ModelSpec("vit", claims=(
        Claim("ViT beats an SVM on the same digits split", "test accuracy above the SVM's",
              "main:test_acc", baseline="main:svm_test_acc", unit="%"),)),
    ModelSpec("image", arms={"main": {}, "full": {"options": {"attention": "full"}}}, claims=(
        Claim("local 2D attention costs little against full attention (Image Transformer)",
              "within 0.02 bits/dim of full attention", "main:test_bpd", better="lower", baseline="full:test_bpd",
              margin=-0.02, unit="bits/dim"),
        Claim("local 2D attention skips kernel tiles that full causal attention computes",
              "fewer 64×64 tiles than full causal attention", "image_tiles_local2d", better="lower",
              baseline="image_tiles_full", margin=1, unit="tiles"),)),
    ModelSpec("npt", arms={"main": {}, "lookup": {"flavor": "lookup", "options": {"probe": "lookup"}}}, claims=(
        Claim("NPT is competitive with gradient boosting on Breast Cancer", "within 1 point of gradient boosting's "
              "accuracy", "main:npt.accuracy.mean", baseline="main:baselines.GradientBoosting.accuracy.mean",
              margin=-0.01, unit="%"),
        Claim("NPT looks a row's answer up in its duplicate (Kossen et al. §4.1)", "lookup correlation ≥ 0.99 on "
              "every seed", "lookup:lookup_correlation", target=0.99, every_seed=True),
        Claim("the lookup needs the other rows", "R² ≤ 0.2 with the other rows' features shuffled",
              "lookup:corruption.corrupted.r2", better="lower", target=0.2))),
    ModelSpec("dt", arms={"main": {}, "acrobot": {"options": {"env": "Acrobot-v1"}}}, claims=(
        Claim("at the top target DT reaches the dataset's best return", "≥ 95% of the dataset's best",
              "dt_top_fraction", target=0.95, unit="%"),
        Claim("the top target's mean is tight", "standard error under 2% of the dataset's best",
              "dt_top_se_fraction", better="lower", target=0.02, unit="%"),
        Claim("achieved return follows the target", "every target up to the best within 0.1 × the best",
              "dt_worst_tracking_gap", better="lower", target=0.1, unit="× best"),
        Claim("DT beats behaviour cloning", "top-target return above BC's", "dt_top_return",
              baseline="main:bc_return", unit="return"),
        Claim("on Acrobot too, DT beats behaviour cloning", "top-target return above BC's", "dt_top_return_acrobot",
              baseline="acrobot:bc_return", unit="return"),
        Claim("on Acrobot too, the achieved return rises with the target", "rank correlation ≥ 0.9 over the targets",
              "acrobot:return_rank_correlation", target=0.9))),
    ModelSpec("asr", claims=(
        Claim("speech recognition on held-out voices", "WER ≤ 10% (beam)", "main:wer_heldout_voices",
              better="lower", target=0.10, unit="%"),
        Claim("characters right on held-out voices", "CER ≤ 4% (beam)", "main:cer_heldout_voices",
              better="lower", target=0.04, unit="%"),
        Claim("beats pocketsphinx on the same clips", "≥ 5× lower WER than pocketsphinx",
              "asr_pocketsphinx_ratio", target=5.0, unit="×"),
        Claim("the whole command fits a lecture's break", "≤ 30 minutes (synthesis + training + report)",
              "asr_command_minutes", better="lower", target=30.0, unit="min"))),
    ModelSpec("icl", claims=(
        Claim("in-context regression matches least squares below d",
              "within 1.25× of least squares at k < d, on every seed", "main:max_ratio_to_least_squares_below_d",
              better="lower", target=1.25, unit="×", every_seed=True),
        Claim("in-context regression solves the task with 2d examples", "error ≤ 0.02 at k = 2d, on every seed",
              "main:error_at_2d", better="lower", target=0.02, every_seed=True),
        Claim("in-context regression beats the simple estimators",
              "below 3-NN and averaging at every k ≥ 1, on every seed", "icl_max_ratio_to_knn_and_averaging",
              better="lower", target=1.0, unit="×", every_seed=True),
        Claim("it runs something like least squares, not one gradient step (Akyürek et al.)",
              "closer to least squares than to one GD step at every k ≥ d, on every seed",
              "icl_agreement_margin_above_d", target=0.0, every_seed=True))),
)}


def fmt(x: float | None, unit: str) -> str:
    if x is None:
        return "—"
    if unit == "%":
        return f"{100 * x:.2f}%"
    if unit == "×":
        return f"{x:.2f}×"
    return f"{x:.4g}" + (f" {unit}" if unit else "")
