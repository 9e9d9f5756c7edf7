"""Generation: the one decode loop (prefill / decode_one_token / decode_n_tokens), sampling and beam search."""
