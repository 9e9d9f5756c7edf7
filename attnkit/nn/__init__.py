"""Building blocks on top of attnkit.ops: attention layers and KV caches, masks, the shared transformer block."""
