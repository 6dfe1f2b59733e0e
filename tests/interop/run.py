#!/usr/bin/env python3
"""The interop orchestrator: Rust, Node and Python services on one Redis.

Drives three peers with one command-line interface (exit codes 0 ok, 1 error, 3 done,
4 not found; 5, producer gone, from our CLI in durable mode only): our CLI
(`resumable-stream`), tests/interop/node_peer.mjs (npm `resumable-stream` 2.2.13) and
tests/interop/python_peer.py (PyPI `resumable-stream` 0.2.0). Our CLI runs twice in the
matrix: plain (`rust`) and in durable mode (`rust(durable)`, `--durable`), whose
producer also appends every chunk to the stream's log in Redis and still answers v1
requests (so v1 resumers must not tell it from a plain one), and whose resumer reads the
log when the stream has one and falls back to pub/sub otherwise. For every producer
(rust, rust(durable), node, python) and every resumer (the same four), with the
resumer's idempotent (`resume`) and explicit (`resume --existing`) calls, it checks:

- live streams: resumers joining before the first chunk, during production and after
  the end (exit 3), on a Unicode and a longer ASCII stream, and the state each language
  reads (none / active / done);
- skips: resumers joining a stream whose content is complete while its producer holds
  the source open, with skips counted in the producer's unit (the npm library counts
  UTF-16 code units, the PyPI port code points, ours UTF-16 unless our resumer names
  another unit in its request);
- a burst of small chunks with resumers joining while publishes are in flight;
- our durable resumer asking by chunk index (`--from-chunk`): exact from our producers,
  "not supported" (exit 1) from v1 producers, which cannot answer it;
- a durable producer killed mid-stream: log readers get exactly what reached the log,
  then exit 5; every language then reads the stream as done;
- not found, and a gone producer (a sentinel with nobody listening).

The expectations of a durable producer are the plain producer's, but one: a log reader
of a finished stream that has a log replays it (exit 0) where any other reader is told
it is done (exit 3).

Each outcome is `pass` (exactly what the resumer meant), `FAIL`, or one of the known
differences of classify.py, each a precise predicate over the producer, the resumer,
the case and the bytes observed against those expected: `by-design-ours` (a choice of
ours, with the setting that changes it) or `known-peer-bug` (a behaviour of a deployed
library); it judges a peer by its language, rust(durable) as rust. A missing chunk is a
failure wherever it happens. The matrix is printed as markdown (and written to
.interop/matrix.md, raw rows to .interop/results.json), then a table of the known
differences with their rows, then `N passed, M failed`. Standard library only; every
subprocess has a timeout, everything runs on 127.0.0.1.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

from classify import FAIL, KNOWN, OURS, PASS, PEER, Outcome, classify, cut, meant_unit

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
LANGS = ("rust", "node", "python")
# The peers of the matrix: a label, the language classify.py judges it as, the flags it
# runs `produce` and `resume` with. rust(durable) is our CLI in durable mode.
DURABLE = "rust(durable)"
PEERS = {"rust": ("rust", []), DURABLE: ("rust", ["--durable"]), "node": ("node", []), "python": ("python", [])}
PRODUCERS = ("rust", DURABLE, "node", "python")
RESUMERS = ("rust", DURABLE, "node", "python")
PREFIX = "rs-interop"
TIMEOUT = 30.0

UNICODE = ["héllo", " ", "日本", " ", "🚀", " done"]
ASCII = [f"chunk {i:02d}: the quick brown fox jumps over the lazy dog\n" for i in range(10)]
# Skips for the Unicode text: 10 UTF-16 units end between the two halves of "🚀".
UNICODE_SKIPS = [0, 2, 7, 10]
ASCII_SKIPS = [0, 2, 7, 100, 100000]
# Our durable resumer's chunk index (`--from-chunk`), on the skip cases' streams.
FROM_CHUNK = 2


def lang_of(peer):
    """The language of a peer label (a label that is no peer, e.g. "(itself)", as is)."""
    return PEERS[peer][0] if peer in PEERS else peer


def replays(producer, resumer):
    """A log reader (our durable resumer) of a stream with a log (our durable producer's)
    replays it once it is finished; any other reader is told it is done (exit 3)."""
    return producer == DURABLE and resumer == DURABLE


def unit_label(peer, unit):
    """rust(codepoint), rust(durable,codepoint): a resumer naming a unit."""
    if not unit:
        return peer
    return f"{peer[:-1]},{unit})" if peer.endswith(")") else f"{peer}({unit})"


# ----- a minimal Redis client (RESP), for polling and inspection -----


class Redis:
    """Just enough RESP to send a command and read its reply."""

    def __init__(self, url):
        parts = urllib.parse.urlparse(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.sock = socket.create_connection(self.address, timeout=5)
        self.file = self.sock.makefile("rb")

    def __call__(self, *args):
        out = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(out))
        return self._read()

    def _read(self):
        line = self.file.readline()[:-2]
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)[:-2]
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError(f"unexpected RESP line {line!r}")


# ----- peers as subprocesses -----


class Peers:
    """How to run each language's peer."""

    def __init__(self, args):
        self.redis_url = args.redis
        self.argv = {
            "rust": [args.rust],
            "node": ["node", os.path.join(HERE, "node_peer.mjs")],
            "python": [args.python, os.path.join(HERE, "python_peer.py")],
        }

    def run(self, peer, command, stream_id, *extra, timeout=TIMEOUT):
        lang, flags = PEERS[peer]
        flags = flags if command in ("produce", "resume") else []
        argv = self.argv[lang] + [command, *flags, "--redis", self.redis_url, "--prefix", PREFIX, "--id", stream_id]
        return Proc(argv + [str(x) for x in extra], timeout)


class Proc:
    """A child process whose output is collected as it comes, killed at its deadline."""

    def __init__(self, argv, timeout):
        self.argv = argv
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._out, self._err = bytearray(), bytearray()
        self._lock = threading.Lock()
        self._readers = [
            threading.Thread(target=self._pump, args=(self.child.stdout, self._out), daemon=True),
            threading.Thread(target=self._pump, args=(self.child.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self.code = None
        self.timed_out = False
        self.elapsed = None

    def _pump(self, pipe, into):
        while True:
            data = os.read(pipe.fileno(), 65536)
            if not data:
                return
            with self._lock:
                into.extend(data)

    @property
    def out(self):
        with self._lock:
            return bytes(self._out)

    @property
    def err(self):
        with self._lock:
            return bytes(self._err).decode(errors="replace")

    def wait(self):
        if self.code is None:
            try:
                self.code = self.child.wait(timeout=max(0.0, self.deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.timed_out = True
                self.child.kill()
                self.code = self.child.wait()
            self.elapsed = time.monotonic() - self.started
            for reader in self._readers:
                reader.join(timeout=5)
        return self

    def describe(self):
        """A short account of the run for a failing case."""
        status = "timed out" if self.timed_out else f"exit {self.code}"
        err = self.err.strip().splitlines()
        return f"{status}, stdout {self.out[:80]!r}, stderr {err[-1][:120] if err else ''!r}"


def wait_for(what, condition, timeout=10.0, step=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    print(f"  (timing) gave up waiting for {what}", flush=True)
    return False


# ----- results -----


def observed(producer, resumer, kind, proc, unit=None, **expected):
    """The Outcome of a peer's run, for classify(), which judges peers by language."""
    return Outcome(lang_of(producer), lang_of(resumer), unit, kind, proc.code, proc.timed_out, proc.out, **expected)


class Results:
    MARK = {PASS: "ok   ", FAIL: "FAIL ", OURS: "OURS ", PEER: "PEER "}

    def __init__(self):
        self.rows = []

    def record(self, outcome, producer, label, api, case, ok, proc, note=""):
        """A row: `pass` when `ok` (the exact check), else what classify() makes of it."""
        if ok:
            status, known, detail = PASS, None, note
        else:
            status, known, detail = classify(outcome)
            if status == FAIL:
                detail = "; ".join(part for part in (detail, note, proc.describe()) if part)
        row = dict(producer=producer, resumer=label, api=api, case=case, status=status, known=known, detail=detail)
        self.rows.append(row)
        print(f"  {self.MARK[status]}{producer:>13} -> {label:<23} {api:<10} {case}"
              + (f"  [{detail}]" if detail else ""), flush=True)

    def check(self, producer, resumer, api, case, ok, proc, note=""):
        """A row with no known difference: an exact check of exit code, output, state."""
        self.record(observed(producer, resumer, "plain", proc), producer, resumer, api, case, ok, proc, note)

    def count(self, status):
        return sum(1 for row in self.rows if row["status"] == status)

    def markdown(self):
        lines = [
            "| # | producer | resumer | API | case | result | known difference | detail |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for i, row in enumerate(self.rows, 1):
            detail = row["detail"].replace("|", "\\|")
            lines.append(
                f"| {i} | {row['producer']} | {row['resumer']} | {row['api']} | {row['case']} "
                f"| {row['status']} | {row['known'] or ''} | {detail} |"
            )
        return "\n".join(lines)

    def known_summary(self):
        """Every known difference of classify.py, with the rows and pairs it matched."""
        lines = [
            "| known difference | result | rows | producer -> resumer (rows) |",
            "|---|---|---|---|",
        ]
        for known in KNOWN:
            rows = [row for row in self.rows if row["known"] == known.name]
            pairs = {}
            for row in rows:
                pair = f"{row['producer']} -> {row['resumer']}"
                pairs[pair] = pairs.get(pair, 0) + 1
            shown = ", ".join(f"{pair} ({n})" for pair, n in pairs.items()) or "-"
            lines.append(f"| {known.name} | {known.status} | {len(rows)} | {shown} |")
        return "\n".join(lines)


# ----- the scenarios -----


class Suite:
    def __init__(self, args):
        self.peers = Peers(args)
        self.redis = Redis(args.redis)
        self.redis_cli = args.redis_cli
        self.redis_url = args.redis
        self.results = Results()
        self.tmp = tempfile.mkdtemp(prefix="rs-interop-")
        self.files = {}

    def chunks_file(self, name, chunks):
        if name not in self.files:
            path = os.path.join(self.tmp, f"{name}.json")
            with open(path, "w", encoding="utf-8") as file:
                json.dump(chunks, file, ensure_ascii=False)
            self.files[name] = path
        return self.files[name]

    def fresh_id(self, *parts):
        # "rust(durable)" -> "rust-durable": ids without parentheses.
        parts = tuple(part.replace("(", "-").replace(")", "") for part in parts)
        return "-".join(parts + (uuid.uuid4().hex[:8],))

    def producer_ready(self, stream_id):
        """The producer listens for requests (it subscribes before anything else)."""
        channel = f"{PREFIX}:rs:request:{stream_id}"
        return wait_for(f"{channel} to be subscribed", lambda: self.redis("PUBSUB", "NUMSUB", channel)[1] >= 1)

    def listeners(self):
        """Resumers currently subscribed to a chunk channel (one per pub/sub resumer)."""
        return len(self.redis("PUBSUB", "CHANNELS", f"{PREFIX}:rs:chunk:*"))

    def log_followers(self):
        """Log readers following a log: one blocking-read connection (its last command an
        XREAD) per durable resumer process."""
        clients = self.redis("CLIENT", "LIST").decode(errors="replace")
        return sum(1 for line in clients.splitlines() if "cmd=xread" in line.split())

    def joined(self):
        """Resumers waiting for chunks: over pub/sub or following a log."""
        return self.listeners() + self.log_followers()

    def log(self, stream_id):
        """The chunks of a stream's log, and its end entry's kind (None without one)."""
        chunks, end = [], None
        for _, fields in self.redis("XRANGE", f"{PREFIX}:rs:log:{stream_id}", "-", "+") or []:
            for name, value in zip(fields[::2], fields[1::2]):
                if name == b"d":
                    chunks.append(value)
                elif name == b"end":
                    end = value.decode()
        return chunks, end

    def resumers(self, stream_id, skip=None, unicode_units=False, peers=RESUMERS, extra=()):
        """Every resumer variant: (peer, lang, named unit or None, label, api, process)."""
        variants = []
        # The slowest to start first (Python, then Node), so that all join about together.
        for peer in reversed(peers):
            lang = lang_of(peer)
            # Our resumer's default (UTF-16, not named on the wire), then the units it names.
            units = [None, "codepoint", "byte"] if lang == "rust" and unicode_units else [None]
            for unit in units:
                for api in ("idempotent", "explicit"):
                    args = list(extra) + ([] if skip is None else ["--skip", skip])
                    if api == "explicit":
                        args.append("--existing")
                    if unit:
                        args += ["--unit", unit]
                    proc = self.peers.run(peer, "resume", stream_id, *args)
                    variants.append((peer, lang, unit, unit_label(peer, unit), api, proc))
        order = {peer: i for i, peer in enumerate(peers)}
        return sorted(variants, key=lambda v: order[v[0]])

    def whole_stream(self, producer, resumer, label, api, case, kind, chunks, proc, note=""):
        """A resumer that must get the whole stream: exactly, or a known difference."""
        proc.wait()
        encoded = tuple(chunk.encode() for chunk in chunks)
        full = b"".join(encoded)
        outcome = observed(producer, resumer, kind, proc, expected=full, chunks=encoded)
        self.results.record(outcome, producer, label, api, case, proc.code == 0 and proc.out == full, proc, note)

    def finished(self, producer, resumer, label, api, case, full, proc):
        """A reader of a finished stream: told it is done (exit 3), or, a log reader of a
        stream with a log, the stream replayed from its log (exit 0)."""
        proc.wait()
        if replays(producer, resumer):
            ok = proc.code == 0 and proc.out == full
            self.results.check(producer, label, api, f"{case} -> replayed from its log (exit 0)", ok, proc)
        else:
            ok = proc.code == 3 and proc.out == b"" and "DONE" in proc.err
            self.results.check(producer, label, api, f"{case} -> done (exit 3)", ok, proc)

    # -- live streams: join before, during, after --

    def live(self, producer, name, chunks, delay_ms):
        text = "".join(chunks)
        full = text.encode()
        stream_id = self.fresh_id(producer, name, "live")
        tag = f"{name} live"
        for lang in LANGS:
            state = self.peers.run(lang, "state", stream_id).wait()
            self.results.check(producer, lang, "state", f"{tag}: none before", state.code == 0 and state.out.strip() == b"none", state)

        prod = self.peers.run(producer, "produce", stream_id, "--chunks", self.chunks_file(name, chunks), "--delay-ms", delay_ms)
        self.producer_ready(stream_id)
        before = self.resumers(stream_id)
        joined = wait_for("the early resumers to subscribe", lambda: self.joined() >= len(before))
        early = joined and not prod.out
        before_note = "all joined before the first chunk" if early else f"joined after {len(prod.out)} bytes (timing)"
        # Resumers that joined late (timing) joined while chunks flowed: judged as such.
        before_kind = "live-before" if early else "live-during"

        states = [(lang, self.peers.run(lang, "state", stream_id)) for lang in LANGS]
        for lang, state in states:
            state.wait()
            self.results.check(producer, lang, "state", f"{tag}: active during", state.code == 0 and state.out.strip() == b"active", state)

        two = len("".join(chunks[:2]).encode())
        wait_for("two chunks", lambda: len(prod.out) >= two, timeout=TIMEOUT)
        at = len(prod.out)
        during = self.resumers(stream_id)
        joiners = [
            (peer, self.peers.run(peer, "produce", stream_id, "--chunks", self.chunks_file("other", ["not", "used"])))
            for peer in RESUMERS
        ]

        prod.wait()
        self.results.check(producer, "(itself)", "produce", f"{tag}: producer's own output", prod.code == 0 and prod.out == full, prod)
        for when, kind, group, note in (("before first chunk", before_kind, before, before_note),
                                        ("during", "live-during", during, f"spawned at byte {at}/{len(full)}")):
            for peer, _, _, label, api, proc in group:
                self.whole_stream(producer, peer, label, api, f"{tag}: join {when}, whole stream", kind, chunks, proc, note)
        for peer, proc in joiners:
            case = f"{tag}: produce while produced elsewhere resumes it"
            self.whole_stream(producer, peer, peer, "produce", case, "live-during", chunks, proc)

        after = self.resumers(stream_id)
        again = [(peer, self.peers.run(peer, "produce", stream_id, "--chunks", self.chunks_file(name, chunks))) for peer in RESUMERS]
        states = [(lang, self.peers.run(lang, "state", stream_id)) for lang in LANGS]
        for peer, _, _, label, api, proc in after:
            self.finished(producer, peer, label, api, f"{tag}: after the end", full, proc)
        for peer, proc in again:
            self.finished(producer, peer, peer, "produce", f"{tag}: produce again", full, proc)
        for lang, state in states:
            state.wait()
            self.results.check(producer, lang, "state", f"{tag}: done after", state.code == 0 and state.out.strip() == b"done", state)

    # -- skips (and our durable resumer's chunk index) on a complete stream held open --

    def skips(self, producer, name, chunks, skips, unicode_units):
        text = "".join(chunks)
        full = text.encode()
        stream_id = self.fresh_id(producer, name, "skip")
        hold_ms = 12000
        prod = self.peers.run(producer, "produce", stream_id, "--chunks", self.chunks_file(name, chunks), "--delay-ms", 50, "--hold-ms", hold_ms)
        wait_for("the whole text from the producer", lambda: prod.out == full, timeout=TIMEOUT)
        held_at = time.monotonic()
        groups = [(skip, self.resumers(stream_id, skip, unicode_units)) for skip in skips]
        by_index = self.resumers(stream_id, peers=(DURABLE,), extra=["--from-chunk", FROM_CHUNK])
        # A v1 producer cannot answer a chunk index: those resumers fail at once.
        ours = lang_of(producer) == "rust"
        total = sum(len(group) for _, group in groups) + (len(by_index) if ours else 0)
        in_time = wait_for("every resumer to subscribe", lambda: self.joined() >= total, timeout=hold_ms / 1000)
        if in_time:
            print(f"  {total} resumers subscribed {time.monotonic() - held_at:.1f} s into a {hold_ms / 1000:.0f} s hold", flush=True)
        prod.wait()
        self.results.check(producer, "(itself)", "produce", f"{name} skip: producer's own output", prod.code == 0 and prod.out == full, prod)
        for skip, group in groups:
            for peer, lang, unit, label, api, proc in group:
                proc.wait()
                case = f"{name} skip={skip}" + (" (inside 🚀)" if name == "unicode" and skip == 10 else "")
                meant = cut(text, skip, meant_unit(lang, unit))
                outcome = observed(producer, peer, "skip", proc, unit, expected=meant, text=text, skip=skip)
                ok = proc.code == 0 and proc.out == meant
                note = (f"{proc.out.decode(errors='replace')!r}" if skip else "") if ok else f"meant {meant!r}"
                self.results.record(outcome, producer, label, api, case, ok, proc, note)
        for _, _, _, label, api, proc in by_index:
            proc.wait()
            case = f"{name} from-chunk={FROM_CHUNK}"
            if ours:
                meant = "".join(chunks[FROM_CHUNK:]).encode()
                ok = proc.code == 0 and proc.out == meant
                self.results.check(producer, label, api, case, ok, proc, f"{proc.out.decode(errors='replace')!r}" if ok else f"meant {meant!r}")
            else:
                ok = proc.code == 1 and proc.out == b"" and "not supported" in proc.err
                self.results.check(producer, label, api, f"{case} -> not supported by a v1 producer (exit 1)", ok, proc)

    # -- a burst of chunks with resumers joining while publishes are in flight --

    def burst(self, producer):
        chunks = [f"{i:04d}|" for i in range(1000)]
        stream_id = self.fresh_id(producer, "burst")
        # Held open after the last chunk, so that a resumer spawned late in the burst (a
        # Node peer takes about a second to start on a busy machine) asks before the end.
        hold_ms = 5000
        prod = self.peers.run(producer, "produce", stream_id, "--chunks", self.chunks_file("burst", chunks), "--delay-ms", 1, "--hold-ms", hold_ms)
        self.producer_ready(stream_id)
        full = "".join(chunks).encode()
        procs = [(peer, "explicit", f"at start (byte {len(prod.out)})", self.peers.run(peer, "resume", stream_id, "--existing"))
                 for peer in ("rust", "rust", "rust", DURABLE)]
        late = [("rust", "explicit"), ("node", "explicit"), (DURABLE, "idempotent"), ("rust", "idempotent"),
                ("python", "explicit"), ("rust", "explicit"), ("node", "idempotent"), (DURABLE, "explicit"),
                ("rust", "explicit"), ("python", "idempotent")]
        for i, (peer, api) in enumerate(late):
            mark = len(full) * (i + 1) // (len(late) + 2)
            wait_for(f"byte {mark}", lambda: len(prod.out) >= mark, timeout=TIMEOUT)
            extra = ["--existing"] if api == "explicit" else []
            procs.append((peer, api, f"at byte {len(prod.out)}", self.peers.run(peer, "resume", stream_id, *extra)))
        spawned = time.monotonic()
        if wait_for("every burst resumer to subscribe", lambda: self.joined() >= len(procs), timeout=hold_ms / 1000):
            print(f"  {len(procs)} resumers subscribed {time.monotonic() - spawned:.1f} s after the last was spawned", flush=True)
        prod.wait()
        self.results.check(producer, "(itself)", "produce", "burst 1000 chunks: producer's own output", prod.code == 0 and prod.out == full, prod)
        for peer, api, when, proc in procs:
            self.whole_stream(producer, peer, peer, api, f"burst 1000 chunks: join {when}", "burst", chunks, proc)

    # -- a durable producer killed mid-stream --

    def killed(self, producer):
        """SIGKILL a durable producer after 4 of its 10 chunks: its log readers get exactly
        the chunks that reached the log, then exit 5 (a reader ends the log as gone once
        the producer's lease lapses); every language then reads the stream as done."""
        chunks = ASCII
        stream_id = self.fresh_id(producer, "killed")
        beat = ["--heartbeat-ms", 300]  # the lease lapses 0.9 s after the last renewal
        prod = self.peers.run(producer, "produce", stream_id, "--chunks", self.chunks_file("ascii", chunks), "--delay-ms", 300, *beat)
        self.producer_ready(stream_id)
        attached = [(api, self.peers.run(DURABLE, "resume", stream_id, *beat, *(["--existing"] if api == "explicit" else [])))
                    for api in ("idempotent", "explicit")]
        wait_for("the log readers to follow the log", lambda: self.log_followers() >= len(attached))
        four = len("".join(chunks[:4]).encode())
        wait_for("four chunks", lambda: len(prod.out) >= four, timeout=TIMEOUT)
        prod.child.kill()
        prod.wait()
        tag = f"killed producer (SIGKILL at byte {len(prod.out)})"
        for _, proc in attached:
            proc.wait()
        logged, end = self.log(stream_id)
        log = b"".join(logged)
        encoded = [chunk.encode() for chunk in chunks]
        ok = end == "gone" and 0 < len(logged) < len(chunks) and logged == encoded[: len(logged)]
        self.results.check(producer, "(itself)", "produce", f"{tag}: its log holds whole chunks, then the end 'gone'", ok, prod,
                           f"{len(logged)} of {len(chunks)} chunks, end {end!r}")

        def gone(proc):
            return proc.code == 5 and proc.out == log and "is gone" in proc.err

        for api, proc in attached:
            self.results.check(producer, DURABLE, api, f"{tag}: attached log reader -> the log's chunks, then gone (exit 5)", gone(proc), proc)
        later = self.resumers(stream_id)
        again = [(peer, self.peers.run(peer, "produce", stream_id, "--chunks", self.chunks_file("ascii", chunks))) for peer in RESUMERS]
        states = [(lang, self.peers.run(lang, "state", stream_id)) for lang in LANGS]
        for peer, _, _, label, api, proc in later:
            proc.wait()
            if peer == DURABLE:
                self.results.check(producer, label, api, f"{tag}: later log reader -> the log's chunks, then gone (exit 5)", gone(proc), proc)
            else:
                ok = proc.code == 3 and proc.out == b"" and "DONE" in proc.err
                self.results.check(producer, label, api, f"{tag}: after the gone end -> done (exit 3)", ok, proc)
        for peer, proc in again:
            proc.wait()
            if peer == DURABLE:
                self.results.check(producer, peer, "produce", f"{tag}: produce again -> the log's chunks, then gone (exit 5)", gone(proc), proc)
            else:
                ok = proc.code == 3 and proc.out == b"" and "DONE" in proc.err
                self.results.check(producer, peer, "produce", f"{tag}: produce again -> done (exit 3)", ok, proc)
        for lang, state in states:
            state.wait()
            self.results.check(producer, lang, "state", f"{tag}: done after the gone end", state.code == 0 and state.out.strip() == b"done", state)

    # -- not found, gone producer --

    def not_found(self):
        for peer in RESUMERS:
            proc = self.peers.run(peer, "resume", self.fresh_id("missing"), "--existing").wait()
            self.results.check("-", peer, "explicit", "unknown id -> not found (exit 4)", proc.code == 4 and proc.out == b"", proc)
        for peer in RESUMERS:
            stream_id = self.fresh_id("missing")
            proc = self.peers.run(peer, "resume", stream_id).wait()
            state = self.peers.run("rust", "state", stream_id).wait()
            ok = proc.code == 4 and proc.out == b"" and state.out.strip() == b"done"
            self.results.check("-", peer, "idempotent", "unknown id -> not found (exit 4), now an empty, finished stream", ok, proc)

    def gone_producer(self):
        """A sentinel nobody produces: every resumer must fail with the ack timeout."""
        subprocess.run([self.redis_cli, "-u", self.redis_url, "SET", f"{PREFIX}:rs:sentinel:gone", "1"],
                       check=True, stdout=subprocess.DEVNULL, timeout=TIMEOUT)
        # (peer, flags, its ack timeout: npm's fixed 1 s where there is no flag, the deadline)
        cases = [("rust", ["--ack-timeout-ms", 300], 0.3, TIMEOUT), (DURABLE, ["--ack-timeout-ms", 300], 0.3, TIMEOUT),
                 ("node", [], 1.0, TIMEOUT), ("python", [], 1.0, 5)]
        for peer, extra, ack, deadline in cases:
            for api in ("explicit", "idempotent"):
                flags = (["--existing"] if api == "explicit" else []) + extra
                proc = self.peers.run(peer, "resume", "gone", *flags, timeout=deadline).wait()
                ok = proc.code == 1 and "Timeout waiting for ack" in proc.err and proc.elapsed <= ack + 2
                case = f"gone producer -> 'Timeout waiting for ack' (within {ack:g} s + 2 s)"
                outcome = observed("(gone)", peer, "gone", proc)
                self.results.record(outcome, "(gone)", peer, api, case, ok, proc, f"exit {proc.code} after {proc.elapsed:.2f} s")

    def run(self, producers):
        for producer in producers:
            print(f"\n== producer: {producer}", flush=True)
            self.live(producer, "unicode", UNICODE, 1500)
            self.live(producer, "ascii", ASCII, 1000)
            self.skips(producer, "unicode", UNICODE, UNICODE_SKIPS, unicode_units=True)
            self.skips(producer, "ascii", ASCII, ASCII_SKIPS, unicode_units=False)
            self.burst(producer)
            if producer == DURABLE:
                self.killed(producer)
        print("\n== not found, gone producer", flush=True)
        self.not_found()
        self.gone_producer()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", required=True, help="redis://127.0.0.1:PORT/ of a private server")
    parser.add_argument("--rust", required=True, help="our CLI binary")
    parser.add_argument("--python", required=True, help="the venv's python, with resumable-stream 0.2.0")
    parser.add_argument("--redis-cli", default="redis-cli")
    parser.add_argument("--producers", default=",".join(PRODUCERS),
                        help=f"comma-separated producers to run (all: {','.join(PRODUCERS)})")
    parser.add_argument("--out", default=os.path.join(ROOT, ".interop"), help="where matrix.md and results.json go")
    args = parser.parse_args()
    producers = [lang for lang in args.producers.split(",") if lang]
    if not producers or any(producer not in PRODUCERS for producer in producers):
        parser.error(f"--producers: a comma-separated subset of {','.join(PRODUCERS)}")

    suite = Suite(args)
    started = time.monotonic()
    try:
        suite.run(producers)
    finally:
        shutil.rmtree(suite.tmp, ignore_errors=True)
    results = suite.results
    passed, failed = results.count(PASS), results.count(FAIL)
    ours, peer = results.count(OURS), results.count(PEER)

    table, known = results.markdown(), results.known_summary()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "matrix.md"), "w", encoding="utf-8") as file:
        file.write(table + "\n\n" + known + "\n")
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as file:
        json.dump(results.rows, file, ensure_ascii=False, indent=1)
    print("\n" + table)
    print("\nKnown differences (tests/interop/classify.py), with the rows each matched:\n\n" + known)
    print(f"\n{len(results.rows)} cases in {time.monotonic() - started:.0f} s: {passed} pass, "
          f"{ours} by-design-ours, {peer} known-peer-bug, {failed} FAIL "
          "(the known differences are neither passed nor failed)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
