"""The public ops are torch.library ops: torch.compile(fullgraph=True) takes each whole, forward and backward
equal eager, dynamo sees no graph break, and the Triton path traces with fake tensors (no kernel runs)."""
import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

import attnkit
from attnkit import library, ops


def _qkv(B=2, Hq=4, Hkv=2, Lq=12, Lk=12, D=16, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Hq, Lq, D, generator=g, dtype=dtype)
    k = torch.randn(B, Hkv, Lk, D, generator=g, dtype=dtype)
    v = torch.randn(B, Hkv, Lk, D, generator=g, dtype=dtype)
    return q, k, v


def _kpm(B=2, Lk=12):
    kpm = torch.ones(B, Lk, dtype=torch.bool)
    kpm[1, :5] = False  # left padding in the second sequence
    return kpm


def _attn_mask(Lq=12, Lk=12):
    m = torch.rand(1, 4, Lq, Lk, generator=torch.Generator().manual_seed(3)) > 0.4
    m[0, 0, 2] = False  # a row that sees no key
    return m


# Each case: (op, its differentiable tensor inputs, its other keyword arguments).
ATTENTION_CASES = {
    "plain": dict(),
    "causal": dict(causal=True),
    "causal_lq_lt_lk": dict(causal=True, _shape=dict(Lq=5)),
    "sliding_window": dict(causal=True, window=(3, -1)),
    "key_padding_mask": dict(key_padding_mask=_kpm()),
    "attn_mask": dict(attn_mask=_attn_mask()),
    "bias_full": dict(_bias=(2, 4, 12, 12)),
    "bias_broadcast_masked": dict(_bias=(4, 1, 12), causal=True, key_padding_mask=_kpm()),
    "bias_and_attn_mask": dict(_bias=(1, 4, 12, 12), attn_mask=_attn_mask()),
}


def _attention_call(name):
    kw = dict(ATTENTION_CASES[name])
    q, k, v = _qkv(**kw.pop("_shape", {}))
    tensors = [q, k, v]
    bias_shape = kw.pop("_bias", None)
    if bias_shape is not None:
        tensors.append(torch.randn(*bias_shape, generator=torch.Generator().manual_seed(5)))

    def fn(q, k, v, bias=None):
        return attnkit.attention(q, k, v, bias=bias, **kw)
    return fn, tensors


def _position_call(name):
    q, k, v = _qkv()
    kpm = _kpm()
    g = torch.Generator().manual_seed(7)
    if name.startswith("relative"):
        causal = name == "relative_causal"
        rel = torch.randn(4, 12 if causal else 9, 16, generator=g)
        return (lambda q, k, v, rel: attnkit.relative_attention(q, k, v, rel, causal=causal, key_padding_mask=kpm),
                [q, k, v, rel])
    if name.startswith("t5"):
        causal = name == "t5_causal"
        table = torch.randn(4, 8, generator=g)
        return (lambda q, k, v, t: attnkit.t5_attention(q, k, v, t, num_buckets=8, max_distance=16, causal=causal,
                                                        key_padding_mask=kpm), [q, k, v, table])
    slopes = attnkit.ops.alibi_slopes(4).clone()
    return (lambda q, k, v, s: attnkit.alibi_attention(q, k, v, slopes=s, key_padding_mask=kpm, scale=0.5),
            [q, k, v, slopes])


def _rotary_call(name):
    x = _qkv(D=20)[0]
    kw = dict(interleaved=name == "rotary_interleaved", offset=3,
              rotary_dim=12 if name == "rotary_partial" else None)
    return (lambda x: attnkit.apply_rotary(x, **kw)), [x]


CASES = ([("attention", n) for n in ATTENTION_CASES]
         + [("position", n) for n in ("relative_causal", "relative_bidirectional", "t5_bidirectional", "t5_causal",
                                      "alibi")]
         + [("rotary", n) for n in ("rotary_half", "rotary_interleaved", "rotary_partial")])
BUILDERS = {"attention": _attention_call, "position": _position_call, "rotary": _rotary_call}


def _out_and_grads(fn, tensors):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    out = fn(*leaves)
    do = torch.randn(out.shape, generator=torch.Generator().manual_seed(11))
    return [out, *torch.autograd.grad(out, leaves, do)]


@pytest.mark.parametrize("family, name", CASES, ids=[n for _, n in CASES])
def test_fullgraph_compile_matches_eager_with_no_graph_break(family, name):
    fn, tensors = BUILDERS[family](name)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(fn)(*tensors)
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
    # aot_eager runs dynamo and AOTAutograd (fake tensors, the registered fake and autograd formulas) without
    # spending a C++ compile per case; inductor is covered by the README example (tests/integrations/test_readme.py)
    # and by `attnkit train --compile` (test_train_compile.py).
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    for got, want in zip(_out_and_grads(compiled, tensors), _out_and_grads(fn, tensors)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["attention", "relative", "t5", "alibi", "rotary"])
def test_torch_path_passes_opcheck(op):
    """torch.library.opcheck: schema, fake implementation against the real one, autograd registration."""
    q, k, v = _qkv(Lq=6, Lk=6, D=8)
    if op == "attention":
        bias = torch.randn(4, 6, 6, requires_grad=True)
        args = (q, k, v, _kpm(Lk=6), None, bias, True, 2, -1, None, "torch")
        target = library.attention_fwd_op
    elif op == "rotary":
        cos, sin = attnkit.ops.rotary_cos_sin(torch.arange(6), 8)
        args, target = (q, cos, sin, False, False, "torch"), library.rotary_op
    else:
        pos = {"relative": torch.randn(4, 6, 8), "t5": torch.randn(4, 8), "alibi": torch.rand(4)}[op]
        args = (op, q, k, v, pos.requires_grad_(), _kpm(Lk=6), True, None, False, 8, 16, "torch")
        target = library.position_attention_fwd_op
    for t in args:
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            t.requires_grad_()
    torch.library.opcheck(target, args)


def _traced(fn, *tensors):
    gm = make_fx(fn, tracing_mode="fake")(*tensors)
    out = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    return gm, [(tuple(a.meta["val"].shape), a.meta["val"].dtype) for a in out]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_triton_path_traces_with_fake_tensors(dtype, monkeypatch):
    """Forward and backward of each op on backend="triton" trace to the right shapes and dtypes with fake
    tensors: the kernels never run, so this needs no GPU (and no interpreter)."""
    monkeypatch.setattr(ops, "INTERPRET", True)  # only lets resolve_backend accept CPU tensors
    q, k, v = _qkv(B=2, Hq=4, Hkv=2, Lq=64, Lk=80, D=40, dtype=dtype)
    bias = torch.randn(4, 1, 80)  # float32 bias beside half-precision q: its gradient keeps float32

    def attention(q, k, v, bias):
        o = attnkit.attention(q, k, v, causal=True, bias=bias, key_padding_mask=_kpm(Lk=80), backend="triton")
        return (o, *torch.autograd.grad(o, (q, k, v, bias), torch.ones_like(o)))

    leaves = [t.requires_grad_() for t in (q, k, v, bias)]
    gm, shapes = _traced(attention, *leaves)
    assert "attnkit.attention_fwd" in gm.code and "attnkit.attention_bwd" in gm.code and "'triton'" in gm.code
    expect = [((2, 4, 64, 40), dtype), ((2, 4, 64, 40), dtype), ((2, 2, 80, 40), dtype), ((2, 2, 80, 40), dtype),
              ((4, 1, 80), torch.float32)]
    assert shapes == expect

    def t5(q, k, v, table):
        o = attnkit.t5_attention(q, k, v, table, num_buckets=8, max_distance=32, backend="triton")
        return (o, *torch.autograd.grad(o, (q, k, v, table), torch.ones_like(o)))

    table = torch.randn(4, 8, dtype=dtype, requires_grad=True)
    gm, shapes = _traced(t5, *leaves[:3], table)
    assert "attnkit.position_attention_bwd" in gm.code and shapes[-1] == ((4, 8), dtype)
    assert shapes[0] == ((2, 4, 64, 40), dtype)

    def rotary(x):
        o = attnkit.apply_rotary(x, rotary_dim=32, backend="triton")
        return o, *torch.autograd.grad(o, (x,), torch.ones_like(o))

    gm, shapes = _traced(rotary, leaves[0])
    assert "attnkit.rotary" in gm.code and shapes == [((2, 4, 64, 40), dtype)] * 2


@pytest.mark.parametrize("name", ["attention", "t5", "relative", "rotary"])
def test_triton_kernels_through_the_ops_match_the_torch_path_compiled(name):
    """The registered ops on backend="triton" for real (the kernels, through Triton's interpreter on CPU), under
    fullgraph compile, against the eager torch path: forward and every gradient."""
    q, k, v = _qkv(Lq=20, Lk=24, D=16)
    if name == "attention":
        bias = torch.randn(4, 1, 24, generator=torch.Generator().manual_seed(5))

        def fn(q, k, v, bias, backend):
            return attnkit.attention(q, k, v, bias=bias, causal=True, key_padding_mask=_kpm(Lk=24), backend=backend)
        tensors = [q, k, v, bias]
    elif name == "t5":
        def fn(q, k, v, table, backend):
            return attnkit.t5_attention(q, k, v, table, num_buckets=8, max_distance=16, backend=backend)
        tensors = [q, k, v, torch.randn(4, 8)]
    elif name == "relative":
        def fn(q, k, v, rel, backend):
            return attnkit.relative_attention(q, k, v, rel, causal=True, backend=backend)
        tensors = [q, k, v, torch.randn(1, 24, 16)]
    else:
        def fn(x, backend):
            return attnkit.apply_rotary(x, offset=2, rotary_dim=8, backend=backend)
        tensors = [q]
    compiled = torch.compile(lambda *t: fn(*t, backend="triton"), fullgraph=True, backend="aot_eager")
    got = _out_and_grads(compiled, tensors)
    want = _out_and_grads(lambda *t: fn(*t, backend="torch"), tensors)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("family, name", CASES, ids=[n for _, n in CASES])
def test_registered_backward_is_the_true_gradient(family, name):
    """Compiled and eager share the registered backward, so they agreeing says nothing about it being right:
    check it against finite differences in float64."""
    fn, tensors = BUILDERS[family](name)
    leaves = [t.double().requires_grad_() for t in tensors]
    assert torch.autograd.gradcheck(fn, leaves, fast_mode=True)
