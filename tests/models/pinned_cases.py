"""Pinned outputs of every zoo model: the debug-sized models built on a fixed seed, run on fixed inputs.

`python tests/models/pinned_cases.py` writes tests/models/pinned/*.json; it was run once with the code
*before* the shared-block refactor (issue 13), so tests/models/test_pinned.py compares today's models
against what the models computed then. Each JSON file holds, per case, a fingerprint of the output (sum,
sum of |x|, the first values) and the model's state-dict keys at the time with each tensor's shape, sum
and sum of |x|, so the test can rebuild the checkpoint an old run would have written and load it.

The committed files come from the tree before the refactor (`git archive 9c4f60f attnkit kernels` into a
folder, then this script with that folder first on PYTHONPATH). Run it again only when a model's behaviour
is meant to change, and say why in the commit.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

PINNED = Path(__file__).parent / "pinned"
SEED = 1234


def fingerprint(x: torch.Tensor) -> dict:
    x = x.detach().double().flatten()
    x = x[torch.isfinite(x)]  # NPT's -inf logits of classes a column lacks
    return {"sum": x.sum().item(), "abs_sum": x.abs().sum().item(), "first": x[:8].tolist(), "numel": x.numel()}


def _gpt(position="learned", model=None):
    from attnkit.zoo.models.gpt import GPT, GPTConfig
    torch.manual_seed(SEED)
    model = model or GPT(GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=32, position=position)).eval()
    idx = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(0))
    logits, _ = model(idx, idx)
    g = torch.Generator().manual_seed(7)
    tokens = model.generate(idx[:, :4], 24, temperature=0.9, top_k=20, top_p=0.95, generator=g)
    return model, {"logits": fingerprint(logits), "generated": tokens.tolist()}


def _music(position="relative", model=None):
    from attnkit.zoo.models.music import MusicConfig, MusicTransformer
    torch.manual_seed(SEED)
    model = model or MusicTransformer(MusicConfig(vocab_size=93, block_size=64, n_layer=2, n_head=2, d_model=32,
                                         dropout=0.0, position=position, max_relative=32)).eval()
    idx = torch.randint(4, 93, (2, 24), generator=torch.Generator().manual_seed(0))
    logits, _ = model(idx)
    maps = model.attention_maps(idx, layer=-1)
    out = {"logits": fingerprint(logits), "attention": fingerprint(maps)}
    try:  # the music decode loop with its voice-order hooks (where it lives depends on the version)
        from attnkit.zoo.tasks.music import sample_tokens
        seq = sample_tokens(model, [1] + idx[0, :11].tolist(), 40, window=32, temperature=1.0, top_k=30,
                            top_p=None, generator=torch.Generator().manual_seed(3))
        out["sampled"] = seq
    except ImportError:
        pass
    return model, out


def _vit(model=None):
    from attnkit.zoo.models.vit import ViT, ViTConfig
    torch.manual_seed(SEED)
    model = model or ViT(ViTConfig(image_size=8, patch_size=2, n_layer=2, n_head=2, d_model=32, mlp_ratio=2,
                          dropout=0.0)).eval()
    images = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    return model, {"logits": fingerprint(model(images)), "attention": fingerprint(model.attention_maps(images))}


def _image(attention="local2d", model=None):
    from attnkit.zoo.models.image import ImageTransformer, ImageTransformerConfig
    torch.manual_seed(SEED)
    model = model or ImageTransformer(ImageTransformerConfig(image_size=8, n_layer=2, n_head=2, d_model=32, dropout=0.0,
                                                    attention=attention, query_block=(2, 4), memory_flange=(2, 2),
                                                    block_1d=8, memory_1d=16)).eval()
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 17, (2, 8, 8), generator=g)
    labels = torch.tensor([3, 7])
    logits = model(images, labels)
    drawn = model.generate(labels, temperature=1.0, top_k=8, generator=torch.Generator().manual_seed(5))
    return model, {"logits": fingerprint(logits), "generated": drawn.tolist()}


def _bert(pre_ln=False, model=None):
    from attnkit.zoo.models.bert import BERT, BERTConfig
    torch.manual_seed(SEED)
    model = model or BERT(BERTConfig(vocab_size=80, block_size=32, n_layer=2, n_head=2, d_model=32, d_ff=64,
                            nsp=True, pre_ln=pre_ln)).eval()
    ids = torch.randint(1, 80, (2, 12), generator=torch.Generator().manual_seed(0))
    ids[1, 9:] = 0  # padding
    return model, {"logits": fingerprint(model(ids))}


def _encdec(pre_ln=False, model=None):
    from attnkit.generation.beam import beam_search, greedy_decode
    from attnkit.zoo.models.encdec import EncDec, EncDecConfig
    torch.manual_seed(SEED)
    model = model or EncDec(EncDecConfig(src_vocab_size=40, tgt_vocab_size=40, n_enc_layer=2, n_dec_layer=2, n_head=2,
                                d_model=32, d_ff=64, dropout=0.0, pre_ln=pre_ln)).eval()
    g = torch.Generator().manual_seed(0)
    src = torch.randint(3, 40, (2, 9), generator=g)
    src[1, 6:] = 0
    tgt = torch.randint(3, 40, (2, 7), generator=g)
    tgt[:, 0] = 1
    greedy = [[h.tokens, h.logprob] for h in greedy_decode(model, src, max_len=10)]
    beams = [[[h.tokens, h.logprob, h.score] for h in hs] for hs in beam_search(model, src, beam=3, max_len=10)]
    return model, {"logits": fingerprint(model(src, tgt)), "greedy": greedy, "beam": beams}


def _npt(model=None):
    from attnkit.zoo.models.npt import NPTConfig, NPTFolds
    torch.manual_seed(SEED)
    model = model or NPTFolds(NPTConfig(cardinalities=[0, 0, 3, 2], embed_dim=4, n_layer=2, n_head_abd=2, n_head_aba=1,
                               ff_mult=2, dropout=0.0, head_scale=5.0), n_folds=2).eval()
    g = torch.Generator().manual_seed(0)
    values = torch.randn(2, 10, 4, generator=g)
    values[..., 2] = torch.randint(0, 3, (2, 10), generator=g).float()
    values[..., 3] = torch.randint(0, 2, (2, 10), generator=g).float()
    mask = torch.rand(2, 10, 4, generator=g) < 0.3
    numeric, logits = model(values, mask)
    return model, {"numeric": fingerprint(numeric), "logits": fingerprint(logits)}


CASES = {
    "gpt": _gpt, "gpt_rotary": lambda model=None: _gpt("rotary", model),
    "music": _music, "music_absolute": lambda model=None: _music("absolute", model),
    "vit": _vit,
    "image": _image, "image_full": lambda model=None: _image("full", model),
    "bert": _bert, "bert_preln": lambda model=None: _bert(True, model),
    "encdec": _encdec, "encdec_preln": lambda model=None: _encdec(True, model),
    "npt": _npt,
}


def run_case(name: str, model=None):
    """(model, outputs) of one case, under no_grad: a fresh seeded model, or `model` (eval mode) if given."""
    with torch.no_grad():
        return CASES[name](model=model)


def main() -> None:
    PINNED.mkdir(exist_ok=True)
    for name in CASES:
        model, out = run_case(name)
        keys = {k: {"shape": list(v.shape), "sum": v.double().sum().item(), "abs_sum": v.double().abs().sum().item()}
                for k, v in model.state_dict().items()}
        (PINNED / f"{name}.json").write_text(json.dumps({"outputs": out, "state_dict": keys}, indent=1) + "\n")
        print(f"wrote {name}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    main()
