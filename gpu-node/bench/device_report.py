"""Collects the RESULT lines of a device check into one markdown table, prints it, and appends it to
BENCHMARKS.md with the card, the date and the commit.

  python3 device_report.py --log device-check.log --benchmarks BENCHMARKS.md --commit SHA [--out report.md]
"""
import argparse
import datetime
import json
import re


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--benchmarks", required=True)
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--out")
    args = ap.parse_args()
    results, kernel_line, card = [], "kernel tests: not run", "unknown GPU"
    with open(args.log, errors="replace") as f:
        for line in f:
            if line.startswith("RESULT "):
                try:
                    results.append(json.loads(line[7:]))
                except json.JSONDecodeError:
                    pass
            m = re.match(r"^(\d+) passed, (\d+) failed", line)
            if m:
                # kernel_tests, then quant_kernel_tests
                done = "" if kernel_line.endswith("not run") else kernel_line + "; "
                kernel_line = f"{done}kernel tests: {m.group(1)} passed, {m.group(2)} failed"
            m = re.match(r"^device: (.+) \(sm_", line)
            if m:
                card = m.group(1)
    ceil = next((r for r in results if r["kind"] == "ceilings"), {})
    copy_cpp = next((r for r in results if r["kind"] == "copy"), {})
    card = ceil.get("device", card)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    lines = [f"### {card}, {date}, commit {args.commit}", ""]
    lines.append(
        f"Measured in the same run: copy bandwidth {copy_cpp.get('copy_tbps', float('nan')):.2f} TB/s (cudaMemcpy D2D, read + write), "
        f"{ceil.get('copy_tbps', float('nan')):.2f} TB/s (torch copy_); bf16 matmul peak {ceil.get('matmul_tflops', float('nan')):.0f} TFLOP/s "
        f"(8192³, torch). {kernel_line}.")
    lines.append("")
    parity = [r for r in results if r["kind"] == "parity"]
    if parity:
        lines.append("Tiny-model parity (greedy, 3 sequences × 16 tokens): " + "; ".join(
            f"{r['name']}: tokens {'same' if r['tokens_match'] else 'DIFFER'}, logits rel max {r['logits_rel_max']:.1e}"
            + (" OK" if r.get("ok") else " FAIL") for r in parity) + ".")
        lines.append("")
    lines.append("70B-shaped decode, 1k-token contexts, synthetic weights (step = one full engine step incl. sampling and the host sync):")
    lines.append("")
    lines.append("| engine | weights | batch | layers run | step ms (80 layers) | tok/s | GB read/step | TB/s | of copy BW | host µs/step (of step) |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in sorted((r for r in results if r["kind"] == "decode"), key=lambda r: (r.get("batch", 0), r.get("engine", ""), r.get("quant", ""))):
        if "error" in r:
            lines.append(f"| {r['engine']} | | {r['batch']} | failed | | | | | | |")
            continue
        proj = "" if r["layers_run"] == 80 else " (projected)"
        host = ""
        if "host_prepare_us" in r:
            host = f"{r['host_prepare_us'] + r['host_readback_us']:.0f} ({100 * r['frac_host']:.2f}%)"
        lines.append(
            f"| {r['engine']} | {r['quant']} | {r['batch']} | {r['layers_run']} | {r['step_ms_80']:.2f}{proj} | {r['tok_s']:.1f} | "
            f"{r['gb_per_step']:.1f} | {r['tbps']:.2f} | {100 * r['frac_copy']:.0f}% | {host} |")
    lines.append("")
    gemv = [r for r in results if r["kind"] == "gemv"]
    if gemv:
        lines.append("Decode GEMVs of one 70B layer (q, k, v, o, gate, up, down; synthetic weights), weight bytes read per second:")
        lines.append("")
        lines.append("| weights | batch | ms per layer | MB of weights | TB/s | of copy BW |")
        lines.append("|---|---:|---:|---:|---:|---:|")
        for r in sorted(gemv, key=lambda r: (r["format"], r["batch"])):
            lines.append(f"| {r['format']} | {r['batch']} | {r['layer_ms']:.3f} | {r['mb']:.0f} | {r['tbps']:.2f} | {100 * r['frac_copy']:.0f}% |")
        lines.append("")
    ops = [r for r in results if r["kind"] == "gemv_op"]
    if ops:
        batches = sorted({r["batch"] for r in ops})
        lines.append("Each decode GEMV alone (one launch; µs and fraction of copy bandwidth; seventy's bf16/fp8 GEMV is the "
                     "cp.async-pipelined tensor-core kernel, w4a16 the AWQ GEMV):")
        lines.append("")
        lines.append("| weights | op | N × K | " + " | ".join(f"batch {b}" for b in batches) + " |")
        lines.append("|---|---|---|" + "---:|" * len(batches))
        by = {(r["format"], r["op"], r["batch"]): r for r in ops}
        for fmt_, op, n, k in sorted({(r["format"], r["op"], r["N"], r["K"]) for r in ops}, key=lambda t: (t[0], "qkvogud".find(t[1][0]) if t[1] else 0)):
            cells = []
            for b in batches:
                r = by.get((fmt_, op, b))
                cells.append(f"{r['us']:.0f} µs ({100 * r['frac_copy']:.0f}%)" if r else "")
            lines.append(f"| {fmt_} | {op} | {n} × {k} | " + " | ".join(cells) + " |")
        lines.append("")
    ceil_prefill = next((r for r in results if r["kind"] == "prefill_ceilings"), {})
    pg = [r for r in results if r["kind"] == "prefill_gemm"]
    if pg:
        lines.append("Prefill GEMMs of one 70B layer (qkv, o, gate/up, down; synthetic weights), against the mma.sync bf16 peak "
                     f"({ceil_prefill.get('mma_tflops', float('nan')):.0f} TFLOP/s, measured by prefill_bench) — torch against its own matmul peak:")
        lines.append("")
        lines.append("| engine | weights | rows | ms per layer | TFLOP/s | of peak |")
        lines.append("|---|---|---:|---:|---:|---:|")
        for r in sorted(pg, key=lambda r: (r.get("engine", "seventy"), r["format"], r["rows"])):
            lines.append(f"| {r.get('engine', 'seventy')} | {r['format']} | {r['rows']} | {r['layer_ms']:.3f} | {r['tflops']:.1f} | {100 * r['frac_peak']:.0f}% |")
        lines.append("")
    pa = [r for r in results if r["kind"] in ("prefill_attention", "decode_attention")]
    if pa:
        lines.append("Attention at 70B shapes (64/8 heads of 128): causal prefill of one sequence (TFLOP/s, of peak) and decode at "
                     "batch 32 (K/V TB/s, of copy bandwidth):")
        lines.append("")
        lines.append("| engine | kind | KV | context | ms | throughput | of ceiling |")
        lines.append("|---|---|---|---:|---:|---:|---:|")
        for r in sorted(pa, key=lambda r: (r["kind"], r.get("engine", "seventy"), r["kv"], r["ctx"])):
            thr = f"{r['tflops']:.1f} TFLOP/s" if "tflops" in r else f"{r['tbps']:.2f} TB/s"
            frac = r.get("frac_peak", r.get("frac_copy", float("nan")))
            lines.append(f"| {r.get('engine', 'seventy')} | {r['kind'].split('_')[0]} | {r['kv']} | {r['ctx']} | {r['ms']:.3f} | {thr} | {100 * frac:.0f}% |")
        lines.append("")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.benchmarks, "a") as f:
        f.write("\n" + text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
