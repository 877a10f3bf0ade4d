"""The torch baseline on the GPU machine, same shapes as native/bench/decode_bench.cu: Llama-3.1-70B
decode layers in bf16 (plain torch ops, SDPA with GQA over a contiguous KV cache, the step captured in
a CUDA graph), at batch 1, 8, 32, 64 with 1k-token contexts; plus the card's measured copy bandwidth
and bf16 matmul peak. Layers that do not fit are not run: the per-layer time is measured on as many
distinct layers as fit and projected to 80 (plus lm_head). Also the decode GEMVs of one layer (q, k, v,
o, gate, up, down; torch.matmul in bf16) at the same batches, as native/bench/quant_bench.cu times
its own. Prints "RESULT {json}" lines.

  python3 torch_baseline.py [--batches 1,8,32,64] [--ctx 1024]

With --prefill it measures instead the shapes of native/bench/prefill_bench.cu: the GEMMs of one layer
(fused qkv, o, fused gate/up, down) in bf16 at --prefill-rows rows, causal prefill attention (SDPA with
GQA) of one sequence and decode attention at batch 32 over contiguous K/V at --prefill-ctx tokens.
"""
import argparse
import json

import torch
import torch.nn.functional as F

H, I, NH, NKV, HD, V, L = 8192, 28672, 64, 8, 128, 128256, 80


def result(**kw):
    print("RESULT " + json.dumps(kw), flush=True)


def median_ms(fn, iters=10, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def copy_bandwidth():
    n = 2 << 30
    x = torch.randint(0, 255, (n,), dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    ms = median_ms(lambda: y.copy_(x))
    return 2 * n / (ms * 1e-3)


def matmul_peak():
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    ms = median_ms(lambda: a @ b)
    return 2 * 8192**3 / (ms * 1e-3)


def rmsnorm(x, w):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype) * w


def decode(batch, ctx, layers):
    dev = "cuda"
    ws = []
    for _ in range(layers):
        ws.append(dict(
            qkv=torch.randn((NH + 2 * NKV) * HD, H, dtype=torch.bfloat16, device=dev) * 0.01,
            o=torch.randn(H, NH * HD, dtype=torch.bfloat16, device=dev) * 0.01,
            gu=torch.randn(2 * I, H, dtype=torch.bfloat16, device=dev) * 0.01,
            down=torch.randn(H, I, dtype=torch.bfloat16, device=dev) * 0.01,
            n1=torch.ones(H, dtype=torch.bfloat16, device=dev),
            n2=torch.ones(H, dtype=torch.bfloat16, device=dev),
            k=torch.randn(batch, NKV, ctx, HD, dtype=torch.bfloat16, device=dev),
            v=torch.randn(batch, NKV, ctx, HD, dtype=torch.bfloat16, device=dev),
        ))
    x0 = torch.randn(batch, H, dtype=torch.bfloat16, device=dev)

    def step():
        x = x0
        for w in ws:
            h = rmsnorm(x, w["n1"])
            qkv = h @ w["qkv"].t()
            q = qkv[:, : NH * HD].view(batch, NH, 1, HD)
            a = F.scaled_dot_product_attention(q, w["k"], w["v"], enable_gqa=True)
            x = x + a.reshape(batch, NH * HD) @ w["o"].t()
            h = rmsnorm(x, w["n2"])
            gu = h @ w["gu"].t()
            x = x + (F.silu(gu[:, :I]) * gu[:, I:]) @ w["down"].t()
        return x

    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        step()
    ms = median_ms(g.replay)
    del ws, g
    torch.cuda.empty_cache()
    return ms


def lm_head_ms(batch):
    w = torch.randn(V, H, dtype=torch.bfloat16, device="cuda") * 0.01
    x = torch.randn(batch, H, dtype=torch.bfloat16, device="cuda")
    ms = median_ms(lambda: x @ w.t())
    del w
    torch.cuda.empty_cache()
    return ms


GEMV_SHAPES = [("q", NH * HD, H), ("k", NKV * HD, H), ("v", NKV * HD, H), ("o", H, NH * HD), ("gate", I, H), ("up", I, H), ("down", H, I)]


def gemvs(batches, copy):
    ws = [(name, n, k, torch.randn(n, k, dtype=torch.bfloat16, device="cuda") * 0.01) for name, n, k in GEMV_SHAPES]
    total = sum(2 * n * k for _, n, k, _ in ws)
    for batch in batches:
        x = {k: torch.randn(batch, k, dtype=torch.bfloat16, device="cuda") for k in {H, I}}
        ms = median_ms(lambda: [x[k] @ w.t() for _, _, k, w in ws], iters=20)
        tbps = total / (ms * 1e-3) / 1e12
        result(kind="gemv", format="torch bf16", batch=batch, layer_ms=ms, mb=total / 1e6, tbps=tbps, frac_copy=tbps * 1e12 / copy)
        for name, n, k, w in ws:
            op_ms = median_ms(lambda: x[k] @ w.t(), iters=20)
            op_tbps = 2 * n * k / (op_ms * 1e-3) / 1e12
            result(kind="gemv_op", format="torch bf16", op=name, N=n, K=k, batch=batch, us=op_ms * 1e3, tbps=op_tbps, frac_copy=op_tbps * 1e12 / copy)
    del ws
    torch.cuda.empty_cache()


def prefill(rows_list, ctx_list, peak, copy):
    dev = "cuda"
    shapes = [((NH + 2 * NKV) * HD, H), (H, NH * HD), (2 * I, H), (H, I)]
    ws = [torch.randn(n, k, dtype=torch.bfloat16, device=dev) * 0.01 for n, k in shapes]
    flops_per_row = sum(2 * n * k for n, k in shapes)
    top = max(rows_list)
    xs = {k: torch.randn(top, k, dtype=torch.bfloat16, device=dev) for k in {k for _, k in shapes}}
    for rows in rows_list:
        ms = median_ms(lambda: [xs[w.shape[1]][:rows] @ w.t() for w in ws], iters=5)
        tflops = flops_per_row * rows / (ms * 1e-3) / 1e12
        result(kind="prefill_gemm", engine="torch", format="bf16", rows=rows, layer_ms=ms, tflops=tflops, frac_peak=tflops * 1e12 / peak)
    del ws, xs
    torch.cuda.empty_cache()
    batch = 32
    for ctx in ctx_list:
        q = torch.randn(1, NH, ctx, HD, dtype=torch.bfloat16, device=dev)
        k = torch.randn(1, NKV, ctx, HD, dtype=torch.bfloat16, device=dev)
        v = torch.randn(1, NKV, ctx, HD, dtype=torch.bfloat16, device=dev)
        ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True), iters=5)
        flops = 4.0 * NH * HD * ctx * (ctx + 1) / 2
        result(kind="prefill_attention", engine="torch", ctx=ctx, kv="bf16", ms=ms, tflops=flops / (ms * 1e-3) / 1e12,
               frac_peak=flops / (ms * 1e-3) / peak)
        q = torch.randn(batch, NH, 1, HD, dtype=torch.bfloat16, device=dev)
        k = torch.randn(batch, NKV, ctx, HD, dtype=torch.bfloat16, device=dev)
        v = torch.randn(batch, NKV, ctx, HD, dtype=torch.bfloat16, device=dev)
        ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True), iters=20)
        nbytes = 2 * batch * ctx * NKV * HD * 2
        result(kind="decode_attention", engine="torch", ctx=ctx, kv="bf16", batch=batch, ms=ms, tbps=nbytes / (ms * 1e-3) / 1e12,
               frac_copy=nbytes / (ms * 1e-3) / copy)
        del q, k, v
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,8,32,64")
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--prefill", action="store_true", help="measure the prefill_bench shapes instead of decode")
    ap.add_argument("--prefill-rows", default="512,2048,8192")
    ap.add_argument("--prefill-ctx", default="2048,8192")
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.prefill:
        prefill([int(r) for r in args.prefill_rows.split(",")], [int(c) for c in args.prefill_ctx.split(",")], matmul_peak(), copy_bandwidth())
        return
    name = torch.cuda.get_device_name()
    copy = copy_bandwidth()
    peak = matmul_peak()
    result(kind="ceilings", device=name, copy_tbps=copy / 1e12, matmul_tflops=peak / 1e12)
    gemvs([int(b) for b in args.batches.split(",")], copy)
    layer_params = H * (NH + 2 * NKV) * HD + H * NH * HD + 2 * I * H + I * H
    for batch in [int(b) for b in args.batches.split(",")]:
        kv_layer = 2 * batch * NKV * args.ctx * HD * 2
        free, _ = torch.cuda.mem_get_info()
        layers = max(1, min(L, int(0.8 * free / (2 * layer_params + kv_layer)) ))
        layers = min(layers, 16)  # enough distinct layers to defeat the L2 cache; keeps the run short
        ms = decode(batch, args.ctx, layers)
        head = lm_head_ms(batch)
        step80 = ms / layers * L + head
        bytes80 = L * (2 * layer_params + kv_layer) + 2 * V * H
        tbps = bytes80 / (step80 * 1e-3) / 1e12
        result(kind="decode", engine="torch", quant="bf16", batch=batch, ctx=args.ctx, layers_run=layers, step_ms_run=ms,
               step_ms_80=step80, tok_s=batch * 1000 / step80, gb_per_step=bytes80 / 1e9, tbps=tbps, frac_copy=tbps * 1e12 / copy)


if __name__ == "__main__":
    main()
