#!/usr/bin/env python3
"""The table of scripts/durable-bench.sh, made from its raw lines and nothing else.

Groups peerbench's JSON lines by case (scenario and its parameters) and mode (pub/sub,
or durable and its linger), takes the median of every metric over the runs of a group,
and puts each durable mode beside pub/sub as a ratio (durable median ÷ pub/sub median).

Usage:
  python3 scripts/durable-bench-report.py RESULTS.jsonl [RUN.txt] > table.md
  python3 scripts/durable-bench-report.py --splice RESULTS.jsonl DOC.md
      (the same tables into DOC.md, between its durable-bench markers)
  python3 scripts/durable-bench-report.py --check RESULTS.jsonl
      (exit 1 unless every run is verified; lists the failed ones)
"""
import json
import statistics
import sys
from collections import defaultdict

PUBSUB = "pubsub"


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def failed(run):
    return "error" in run or run.get("verified") is not True


def case_of(run):
    """A case's sort key and label, from the scenario and the parameters it ran with."""
    s, p = run["scenario"], run.get("params", {})
    n = lambda key: f"{p.get(key, 0):,}"  # noqa: E731
    labels = {
        "solo": ((0,), f"solo ({n('n')} chunks, 1 reader)"),
        "fanout": ((1,), f"fanout ({n('n')} chunks, 1 + {n('resumers')} readers)"),
        "join_live": ((2,), f"join_live ({n('n')} chunks, {n('resumers')} resumers join live)"),
        "resume_latency": ((3,), f"resume_latency ({n('resumes')} resumes of {n('preload')} chunks)"),
        "many": ((4,), f"many ({n('streams')} streams × {n('chunks_per_stream')} chunks)"),
        "llm_paced": (
            (5, -p.get("streams", 0), p.get("chunks_per_stream", 0)),
            f"llm_paced ({n('streams')} streams × {n('chunks_per_stream')} chunks at "
            f"{p.get('rate', 0):g}/s, 1 + 1 readers each)",
        ),
    }
    return labels.get(s, ((9,), s))


def mode_of(run):
    mode = run.get("mode", PUBSUB)
    linger = run.get("linger_ms")
    label = "pub/sub" if mode == PUBSUB else f"durable, linger {linger:g} ms"
    return (0 if mode == PUBSUB else 1, linger or 0), mode, label


def per(run, command):
    """Calls of `command` per chunk (or None without chunks)."""
    chunks = run.get("chunks_total")
    if not chunks:
        return None
    return run.get("redis_commands", {}).get(command, 0) / chunks


# (column, how to read it from a run, format). A reader returning None leaves a blank.
SPEED = [
    ("chunks/s", lambda r: r.get("chunks_per_s"), "int"),
    ("wall s", lambda r: r.get("wall_s"), "3"),
    ("resume p50 ms", lambda r: r.get("p50_ms"), "3"),
    ("resume p99 ms", lambda r: r.get("p99_ms"), "3"),
    ("creator lag p99 ms", lambda r: r.get("creator_lag_p99_ms"), "1"),
    ("resumer lag p50 ms", lambda r: r.get("resumer_lag_p50_ms"), "1"),
    ("resumer lag p99 ms", lambda r: r.get("resumer_lag_p99_ms"), "1"),
    ("peak RSS MiB", lambda r: r.get("peak_rss_mib"), "1"),
]
COST = [
    ("commands / unit", lambda r: r.get("redis_commands_per_chunk", r.get("redis_commands_per_resume")), "4"),
    ("writes / unit", lambda r: r.get("redis_writes_per_chunk", r.get("redis_writes_per_resume")), "4"),
    ("XADD / chunk", lambda r: per(r, "xadd"), "4"),
    ("PUBLISH / chunk", lambda r: per(r, "publish"), "4"),
    ("chunks / log entry", lambda r: r.get("log_chunks_per_entry"), "2"),
    ("1-chunk entries", lambda r: r.get("log_single_chunk_entries"), "2"),
    ("socket reads / unit", lambda r: r.get("socket_reads_per_chunk", r.get("socket_reads_per_resume")), "4"),
    ("connections", lambda r: r.get("connections_opened"), "int"),
    ("keys B / stream", lambda r: r.get("memory_keys_bytes_per_stream"), "int"),
    ("log B / stream", lambda r: r.get("memory_log_bytes"), "int"),
    ("used_memory Δ / stream", lambda r: r.get("used_memory_delta_per_stream"), "int"),
]


def fmt(value, kind):
    if value is None:
        return ""
    if kind == "int":
        return f"{value:,.0f}"
    return f"{value:,.{int(kind)}f}"


def ratio(d, p):
    if d is None or p is None:
        return ""
    if p == 0:
        return "(pub/sub 0)" if d else "="
    if p < 0 or d < 0:
        return "n/a"  # a memory delta below zero: noise (freed client buffers)
    r = d / p
    return f"×{r:,.0f}" if r >= 1000 else f"×{r:.3g}"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def groups(runs):
    out = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if "error" in run:
            continue
        out[case_of(run)][mode_of(run)].append(run)
    return out


def table(title, columns, grouped):
    lines = [f"### {title}", ""]
    head = ["case", "mode", "verified"] + [c[0] for c in columns]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for case in sorted(grouped):
        modes = grouped[case]
        medians = {m: [median([c[1](r) for r in runs]) for c in columns] for m, runs in modes.items()}
        pubsub = next((medians[m] for m in modes if m[1] == PUBSUB), None)
        first = True
        for mode in sorted(modes):
            runs = modes[mode]
            ok = sum(not failed(r) for r in runs)
            cells = [case[1] if first else "", mode[2], f"{ok}/{len(runs)}"]
            cells += [fmt(v, c[2]) for v, c in zip(medians[mode], columns)]
            lines.append("| " + " | ".join(cells) + " |")
            first = False
            if mode[1] != PUBSUB and pubsub is not None:
                cells = ["", "↳ ÷ pub/sub", ""]
                cells += [ratio(d, p) for d, p in zip(medians[mode], pubsub)]
                lines.append("| " + " | ".join(cells) + " |")
    return lines


def commands_table(grouped):
    lines = ["### Redis commands per run (medians)", ""]
    lines.append("| case | mode | commands |")
    lines.append("|---|---|---|")
    for case in sorted(grouped):
        first = True
        for mode in sorted(grouped[case]):
            runs = grouped[case][mode]
            names = sorted({name for r in runs for name in r.get("redis_commands", {})})
            counts = ", ".join(
                f"{name.upper()} {median([r.get('redis_commands', {}).get(name, 0) for r in runs]):,.0f}"
                for name in names
            )
            lines.append(f"| {case[1] if first else ''} | {mode[2]} | {counts} |")
            first = False
    return lines


def targets_table(grouped):
    """The issue's targets, judged from the medians: durable fanout at least as fast as
    pub/sub fanout; at LLM pace (llm_paced), at most 0.1 Redis writes per chunk."""
    lines = ["### Targets", ""]
    lines.append("| target | case | mode | measured (median) | pub/sub (median) | met |")
    lines.append("|---|---|---|---|---|---|")

    def med(runs, key):
        return median([r.get(key) for r in runs])

    for case in sorted(grouped):
        modes = grouped[case]
        pubsub = next((runs for m, runs in modes.items() if m[1] == PUBSUB), None)
        scenario = next(iter(modes.values()))[0]["scenario"]
        for mode in sorted(modes):
            if mode[1] == PUBSUB or pubsub is None:
                continue
            runs = modes[mode]
            all_ok = all(not failed(r) for r in runs + pubsub)
            if scenario == "fanout":
                d, p = med(runs, "chunks_per_s"), med(pubsub, "chunks_per_s")
                met = all_ok and d is not None and p is not None and d >= p
                lines.append(f"| durable fanout ≥ pub/sub fanout | {case[1]} | {mode[2]} | "
                             f"{fmt(d, 'int')} chunks/s ({ratio(d, p)}) | {fmt(p, 'int')} chunks/s | "
                             f"{'yes' if met else '**no**'} |")
            elif scenario == "llm_paced":
                d, p = med(runs, "redis_writes_per_chunk"), med(pubsub, "redis_writes_per_chunk")
                met = all_ok and d is not None and d <= 0.1
                lag = med(runs, "resumer_lag_p50_ms")
                lines.append(f"| ≤ 0.1 Redis writes / chunk at LLM pace | {case[1]} | {mode[2]} | "
                             f"{fmt(d, '4')} writes / chunk (resumer lag p50 {fmt(lag, '1')} ms) | "
                             f"{fmt(p, '4')} | {'yes' if met else '**no**'} |")
    return lines


def report(runs, meta):
    grouped = groups(runs)
    write_list = next((r["write_commands"] for r in runs if "write_commands" in r), [])
    out = ["# Durable mode vs pub/sub: peerbench medians", ""]
    out.append("Generated by `scripts/durable-bench-report.py` from `results.jsonl` "
               f"({len(runs)} runs); do not edit by hand.")
    if meta:
        out.append("")
        out += [f"- {line}" for line in meta]
    out += [
        "",
        "Medians per case and mode; under each durable row, its median ÷ the pub/sub "
        "median of the same case. A *unit* is a chunk produced (for resume_latency, one "
        "resume). *Writes* are the calls of " + ", ".join(w.upper() for w in write_list)
        + " (INFO commandstats, diffed around the measured phase). *Socket reads* are "
        "the server's `total_reads_processed`: a request or pipeline a client flushed, "
        "while requests stay under 16 KiB (larger ones take several reads). *Keys B / "
        "stream* is `MEMORY USAGE` of the sentinel, log and lease keys, mean over up to "
        "32 streams sampled right after the run; *chunks / log entry* and *1-chunk "
        "entries* (the share of entries holding one chunk) come from those logs' entry "
        "ids (`{after}-{count}`): chunks per XADD; *used_memory Δ* is `INFO memory` "
        "after − before, per stream created in the phase. *Creator lag* and *resumer "
        "lag* (llm_paced): from a chunk's yield by its source to the hands of the "
        "stream's creator (same context) or of its resumer (the other context), over "
        "the chunks produced after that reader had its stream.",
        "",
    ]
    out += targets_table(grouped) + [""]
    out += table("Speed", SPEED, grouped) + [""]
    out += table("Cost", COST, grouped) + [""]
    out += commands_table(grouped) + [""]
    bad = [r for r in runs if failed(r)]
    if bad:
        out += ["### Failed or unverified runs", ""]
        for r in bad:
            out.append(f"- {r.get('scenario')} {r.get('mode', r.get('args', ''))}: "
                       f"{r.get('error', 'verified: ' + str(r.get('verified')))}")
        out.append("")
    return "\n".join(out)


BEGIN = "<!-- durable-bench tables: generated by scripts/durable-bench-report.py; do not edit -->"
END = "<!-- durable-bench tables: end -->"


def splice(doc_path, runs):
    """Writes the tables into doc_path between the BEGIN and END markers."""
    grouped = groups(runs)
    tables = targets_table(grouped) + [""] + table("Speed", SPEED, grouped) + [""]
    tables += table("Cost", COST, grouped) + [""] + commands_table(grouped)
    with open(doc_path) as f:
        doc = f.read()
    start, end = doc.find(BEGIN), doc.find(END)
    if start < 0 or end < start:
        print(f"{doc_path} has no durable-bench markers", file=sys.stderr)
        return 1
    doc = doc[: start + len(BEGIN)] + "\n\n" + "\n".join(tables) + "\n" + doc[end:]
    with open(doc_path, "w") as f:
        f.write(doc)
    return 0


def main(argv):
    if argv[:1] == ["--splice"]:
        return splice(argv[2], load(argv[1]))
    if argv[:1] == ["--check"]:
        runs = load(argv[1])
        bad = [r for r in runs if failed(r)]
        for r in bad:
            print(f"FAILED: {r.get('scenario')} {r.get('mode', r.get('args', ''))}: "
                  f"{r.get('error', 'unverified')}", file=sys.stderr)
        print(f"{len(runs) - len(bad)} of {len(runs)} runs verified")
        return 1 if bad or not runs else 0
    if not argv:
        print(__doc__, file=sys.stderr)
        return 64
    runs = load(argv[0])
    meta = []
    if len(argv) > 1:
        with open(argv[1]) as f:
            meta = [line.rstrip("\n") for line in f if line.strip()]
    print(report(runs, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
