"""What the ASR model tests share: a tiny seeded recogniser in eval mode, and clips padded into a batch."""
import torch

from attnkit.zoo.models.asr import ASR, ASRConfig, pad_frames


def tiny_asr(**kw) -> ASR:
    """2 encoder layers, 1 decoder layer, 2 heads × 32, 12 tokens, ≤ 200 frames and 24 tokens; kw override."""
    torch.manual_seed(0)
    return ASR(ASRConfig(**dict(dict(vocab_size=12, n_enc_layer=2, n_dec_layer=1, n_head=2, d_model=32, d_ff=64,
                                     max_frames=200, max_len=24), **kw))).eval()


def padded(*clips: torch.Tensor) -> torch.Tensor:
    """Clips (n_mels, T_i) → mel (B, n_mels, max T_i), as the task batches them."""
    return pad_frames(clips)
