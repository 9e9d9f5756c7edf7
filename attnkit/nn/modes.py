"""Scopes over a model that are always undone on exit: train/eval mode, and direct calls for token-by-token decoding."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn
from torch.nn.modules import module as _module


@contextlib.contextmanager
def mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """`with mode(model, training=False): ...` runs in eval mode and puts back each submodule's own mode."""
    before = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield model
    finally:
        for m, was in before:
            m.training = was


def model_device(model: nn.Module):
    """The device of the model's parameters (all on one device in the zoo)."""
    return next(model.parameters()).device


# ---- direct calls -----------------------------------------------------------------------------------------------
_DIRECT: dict[type, type] = {}  # module class -> its subclass whose __call__ is its forward


def _direct_class(cls: type) -> type:
    """cls with `__call__ = cls.forward`: m(x) runs forward(m, x) without nn.Module.__call__'s two frames and hook checks."""
    if cls not in _DIRECT:
        _DIRECT[cls] = type(cls.__name__, (cls,), {"__call__": cls.forward, "__module__": cls.__module__,
                                                    "__qualname__": cls.__qualname__})
    return _DIRECT[cls]


def _has_hooks(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks)


def _global_hooks() -> bool:
    """Hooks registered for every module (`register_module_forward_hook`, ...): then no call may skip __call__."""
    return bool(_module._global_forward_hooks or _module._global_forward_pre_hooks
                or _module._global_backward_hooks or _module._global_backward_pre_hooks)


def _can_call_directly(m: nn.Module) -> bool:
    """A module whose __call__ would do nothing but run its class's forward."""
    cls = type(m)
    return (cls.__call__ is nn.Module.__call__ and cls.forward is not nn.Module.forward
            and "forward" not in m.__dict__ and getattr(m, "_compiled_call_impl", None) is None
            and not isinstance(m, torch.jit.ScriptModule) and not _has_hooks(m))


@contextlib.contextmanager
def direct_calls(model: nn.Module) -> Iterator[nn.Module]:
    """`with direct_calls(model): ...` runs the model's Python with less of nn.Module's per-call overhead; every
    change is undone on exit.

    Decoding one token per step on CPU, a small model's arithmetic is cheap enough that nn.Module.__call__ (two
    extra frames, a tracing check and eight hook checks per call) and nn.Module.__getattr__ (a failed attribute lookup, then
    dict probes, for every `self.submodule` and `self.weight`) are a large share of each step. Inside the scope:
      - each hook-free module is switched to a subclass of its class whose __call__ is its forward, so
        `self.attn(x)` runs `forward` directly; modules with hooks of their own keep the normal call and their
        hooks fire, and when global module hooks exist no module is switched;
      - every module's submodules and parameters are also plain instance attributes, found without __getattr__.
    Outputs are bit-identical: the same forward code runs on the same tensors. Hooks must be registered before
    entering, and the model's structure (its submodules and parameters) must not change inside the scope: a
    hook added inside does not fire on a switched module, and setting a parameter or submodule to None would
    leave the old one visible. Buffers are not copied (torch reassigns them without touching the instance dict).
    Copy, save, trace or compile the model outside the scope (a copy made inside keeps the switched classes).
    Nesting is fine: an inner scope leaves what the outer one did for the outer one to undo.
    """
    switched: list[tuple[nn.Module, type]] = []
    cached: list[tuple[nn.Module, str, object]] = []
    switch = not _global_hooks()
    try:
        for m in model.modules():
            for name, value in (*m._modules.items(), *m._parameters.items()):
                if value is not None and name not in m.__dict__:
                    m.__dict__[name] = value
                    cached.append((m, name, value))
            cls = type(m)
            if switch and cls not in _DIRECT.values() and _can_call_directly(m):
                m.__class__ = _direct_class(cls)
                switched.append((m, cls))
        yield model
    finally:
        for m, cls in switched:
            m.__class__ = cls
        for m, name, value in cached:
            if m.__dict__.get(name) is value:
                del m.__dict__[name]
