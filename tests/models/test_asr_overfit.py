"""A tiny hybrid CTC/attention recogniser memorises 8 real espeak-ng clips: the loss, both decoders and the
joint beam rescoring work end to end on speech, not only on random tensors."""
import pytest
import torch

from attnkit.config import TrainConfig
from attnkit.engine.resolve import resolve_config
from attnkit.zoo.data import speech
from attnkit.zoo.data.logmel import log_mel
from attnkit.zoo.eval.asr import cer
from attnkit.zoo.models.asr import ASR, ASRConfig
from attnkit.zoo.tasks.asr import ASRTask, CharVocab

TEXTS = ["call five", "room twelve", "dial nine one", "go to page four", "send ten dollars", "three two eight",
         "add six to the list", "the code is one"]
VOICES = ["m1", "f1", "m2", "f3", "klatt", "m4", "f4", "m5"]


@pytest.fixture(scope="module")
def overfit():
    mels = [log_mel(speech.say(t, v)).numpy() for t, v in zip(TEXTS, VOICES)]
    cfg = resolve_config(TrainConfig(model="asr", flavor="debug"))
    task = ASRTask(cfg, ASRTask.Options(ctc_weight=0.3, subsample=4))
    torch.manual_seed(0)
    model = ASR(ASRConfig(vocab_size=CharVocab.vocab_size, n_enc_layer=2, n_dec_layer=1, n_head=2, d_model=64,
                          d_ff=128, max_frames=400, max_len=40, subsample=4, ctc_head=True))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = task.collate(mels, TEXTS)
    first = None
    for _ in range(150):
        model.train()
        loss = task.loss(model, batch)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return task, model.eval(), mels, first, loss.item()


def test_the_hybrid_loss_falls_and_8_clips_are_memorised(overfit):
    task, model, mels, first, last = overfit
    assert last < 0.25 * first
    assert cer(TEXTS, task.transcribe(model, mels, beam=1)) <= 0.01     # attention, greedy
    assert cer(TEXTS, task.transcribe(model, mels, beam=0)) <= 0.01     # CTC best path
    assert cer(TEXTS, task.transcribe(model, mels, beam=3)) <= 0.01     # beam + joint CTC rescoring


def test_ctc_and_attention_decoding_agree_on_a_clean_clip(overfit):
    task, model, mels, _, _ = overfit
    # a clip it learnt from, re-synthesised (espeak-ng is not bit-reproducible), without noise
    mel = log_mel(speech.say(TEXTS[4], VOICES[4])).numpy()
    attention, ctc = task.transcribe(model, [mel], beam=1)[0], task.transcribe(model, [mel], beam=0)[0]
    assert attention == ctc == TEXTS[4]
