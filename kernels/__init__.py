"""attnkit.kernels: Triton kernels and the pure-torch references that define them.

Importing this package does not import triton; the kernel modules are loaded on first use,
so the torch path works on machines where triton cannot initialise.
"""
from attnkit.kernels.reference import attention_chunked, attention_reference, visible_mask
from attnkit.kernels.validate import check_attention_args

__all__ = ["attention_reference", "attention_chunked", "visible_mask", "check_attention_args"]
