"""How the interop matrix judges an outcome: pass, a known difference, or a failure.

An outcome is `pass` when it is exactly what the resumer meant. Otherwise it is
checked against the known differences below, each a predicate over (producer,
resumer, case, observed vs expected) that matches one precise, explained behaviour:

- `by-design-ours`: a choice of this project, with a setting that changes it: our
  resumer naming a skip unit (code points, bytes) that a v1 producer cannot know
  about, and our default unit (UTF-16, the npm library's) meeting the PyPI port,
  which counts code points;
- `known-peer-bug`: a behaviour of a deployed library: the npm library and its PyPI
  port count `skipCharacters` in different units; the PyPI producer's fan-out race
  (a listener that joins while a chunk is being published gets that chunk twice,
  or its catch-up after live chunks); the PyPI resumer has no ack timeout.

Anything else is `FAIL`, and so is any outcome that misses a chunk of the stream,
whoever produced it: no known difference accepts a lost chunk. Standard library only;
test_classify.py checks every predicate both ways.
"""

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

PASS, OURS, PEER, FAIL = "pass", "by-design-ours", "known-peer-bug", "FAIL"

# The unit a deployed (v1) producer counts skipCharacters in; it ignores "skipUnit".
V1_PRODUCER_UNIT = {"node": "utf16", "python": "codepoint"}

# Case kinds (Outcome.kind):
#   "plain"            an exact check with no known difference (state, exit codes, ...)
#   "skip"             a resumer with a skip, joining a complete stream held open
#   "live-before"      a resumer that joined a live stream before its first chunk
#   "live-during"      a resumer (or a `produce` that resumes) joining while chunks flow
#   "burst"            a resumer joining a burst of chunks 1 ms apart
#   "gone"             a resumer of a sentinel nobody produces
# The fan-out race needs a listener to join while chunks are being published.
JOINS_WHILE_PRODUCING = ("live-during", "burst")


@dataclass(frozen=True)
class Outcome:
    """One observed row of the matrix, with what the resumer meant."""

    # Languages, not peers: our CLI in durable mode, rust(durable) in the matrix, is
    # judged as rust (to v1 resumers it must be indistinguishable from a plain producer).
    producer: str  # rust | node | python | "-" | "(gone)"
    resumer: str  # the resumer's language: rust | node | python, or "(itself)"
    unit: Optional[str]  # the unit our resumer names (--unit), None when it names none
    kind: str  # one of the case kinds above
    code: Optional[int]
    timed_out: bool
    out: bytes
    expected: bytes = b""  # the bytes the resumer meant to get
    chunks: Tuple[bytes, ...] = ()  # the stream's chunks, in order (live, burst)
    text: str = ""  # the stream's text (skip)
    skip: int = 0  # the resumer's skipCharacters (skip)


@dataclass(frozen=True)
class KnownDifference:
    """A named behaviour; `explain` returns why an outcome is this one, or None."""

    name: str
    status: str
    explain: Callable[[Outcome], Optional[str]]


# ----- skip units -----


def cut(text, skip, unit):
    """The bytes a producer counting in `unit` sends for `skip` (as JS/Python slice)."""
    if unit == "codepoint":
        return text[skip:].encode()
    if unit == "byte":
        return text.encode()[skip:]
    # UTF-16: a cut between the halves of a surrogate pair leaves a lone half, which
    # UTF-8 encoding turns into U+FFFD (as Node does on the wire).
    return text.encode("utf-16-le")[2 * skip :].decode("utf-16-le", errors="replace").encode()


def counted_unit(producer, resumer, named):
    """The unit the producer counts this resumer's skip in: ours honours the unit our
    resumer names in "skipUnit" (else UTF-16), v1 producers always count their own."""
    if producer == "rust":
        return (named if resumer == "rust" else None) or "utf16"
    return V1_PRODUCER_UNIT[producer]


def meant_unit(resumer, named):
    """The unit the resumer counted its skip in."""
    return named or ("codepoint" if resumer == "python" else "utf16")


def unit_mismatch(o):
    """(counted, meant) when the output is exactly the producer's cut in its own unit,
    the resumer meant another unit, and the two cuts differ; else None."""
    if o.kind != "skip" or o.code != 0 or o.timed_out or o.producer not in ("rust", "node", "python"):
        return None
    counted, meant = counted_unit(o.producer, o.resumer, o.unit), meant_unit(o.resumer, o.unit)
    if counted == meant or o.out != cut(o.text, o.skip, counted) or o.out == cut(o.text, o.skip, meant):
        return None
    return counted, meant


def skip_unit_difference(pair, why):
    """An explain function for a unit mismatch on the pairs `pair(o)` accepts, `why(o)`
    saying who counts in which unit."""

    def explain(o):
        mismatch = unit_mismatch(o)
        if not mismatch or not pair(o):
            return None
        counted, meant = mismatch
        return (f"{why(o)}; skip {o.skip} counted in {counted}, meant in {meant}: "
                f"got {o.out!r}, meant {o.expected!r}")

    return explain


our_resumer_names_a_unit = skip_unit_difference(
    lambda o: o.resumer == "rust" and o.unit in ("codepoint", "byte") and o.producer in V1_PRODUCER_UNIT,
    lambda o: f"our resumer names skipUnit={o.unit}, an extension the v1 {o.producer} producer "
              "cannot know; it counts its own unit",
)
our_producer_default_for_pypi = skip_unit_difference(
    lambda o: o.producer == "rust" and o.resumer == "python",
    lambda o: "our producer counts a request without skipUnit in UTF-16 (its default, the npm "
              "library's; Config::with_skip_unit(CodePoint) for Python clients), the PyPI "
              "resumer counts code points",
)
our_resumer_default_for_pypi = skip_unit_difference(
    lambda o: o.producer == "python" and o.resumer == "rust" and o.unit is None,
    lambda o: "our resumer counts in UTF-16 by default (the npm library's unit) and the PyPI "
              "producer in code points (--unit codepoint is exact against it: row "
              "python -> rust(codepoint))",
)
npm_and_pypi_units = skip_unit_difference(
    lambda o: {o.producer, o.resumer} == {"node", "python"},
    lambda o: "the npm library counts skipCharacters in UTF-16 units, its PyPI port in code "
              "points; v1 requests carry no unit",
)


# ----- the PyPI producer's fan-out race -----


def pypi_fanout_race(out, chunks):
    """How the PyPI producer's fan-out race explains `out`, or None if it cannot.

    The model, from resumable_stream/runtime.py 0.2.0: the producer appends chunk k to
    its buffer, then awaits one PUBLISH per listener, walking its listener list. A
    request handled meanwhile (the subscriber task runs between those awaits) appends
    its listener to that same list and PUBLISHes the catch-up, the buffer joined, from
    its own task over another pooled connection. So a listener gets:

    - the catch-up C = chunks[:j] (j >= 1: a request handled before any chunk gets an
      empty catch-up and nothing can go wrong);
    - the live chunks L = chunks[j-1:] if it was appended during chunk j-1's fan-out
      (the walk reaches it: chunk j-1 twice), else chunks[j:];
    - L in order (published one after another), C anywhere among them: out ==
      L[:i] + C + L[i:].

    Every chunk is in every such output; a catch-up overtaken by the end message is
    lost to the resumer (it stops at the end), and is a failure: never matched here.
    Returns (j, duplicated, overtaken) for an output other than the plain stream.
    """
    full = b"".join(chunks)
    offsets = [0]
    for chunk in chunks:
        offsets.append(offsets[-1] + len(chunk))
    n = len(chunks)

    def span(a, b):
        return full[offsets[a] : offsets[b]]

    for j in range(1, n + 1):
        catch_up = span(0, j)
        for duplicated in (False, True):
            first_live = j - 1 if duplicated else j
            if len(out) != len(catch_up) + len(full) - offsets[first_live]:
                continue
            # i: the live chunks first_live..i-1 arrived before the catch-up.
            for i in range(first_live, n + 1):
                head = span(first_live, i)
                if not out.startswith(head):
                    break
                rest = out[len(head) :]
                if rest.startswith(catch_up) and rest[len(catch_up) :] == span(i, n):
                    if duplicated or i > first_live:
                        return j, duplicated, i - first_live
    return None


def pypi_producer_race(o):
    if o.producer != "python" or o.kind not in JOINS_WHILE_PRODUCING or o.code != 0 or o.timed_out:
        return None
    found = pypi_fanout_race(o.out, o.chunks)
    if not found:
        return None
    j, duplicated, overtaken = found
    what = []
    if duplicated:
        what.append(f"chunk {o.chunks[j - 1]!r} twice (in its catch-up and again live)")
    if overtaken:
        what.append(f"its catch-up (chunks 0..{j - 1}) after {overtaken} live chunk(s)")
    return ("the PyPI producer's fan-out race: a request handled while it awaited the PUBLISHes "
            f"of chunk {j - 1} joined the listener list it was walking; got " + " and ".join(what)
            + ", every chunk present")


# ----- the PyPI resumer without an ack timeout -----


def pypi_resumer_waits(o):
    if o.kind == "gone" and o.resumer == "python" and o.timed_out and o.out == b"":
        return ("the PyPI resumer has no ack timeout: still waiting, with nothing received, at the "
                "suite's deadline (it re-reads the sentinel every 30 s and waits on while it is not DONE)")
    return None


KNOWN = (
    KnownDifference("our resumer names a unit a v1 producer ignores", OURS, our_resumer_names_a_unit),
    KnownDifference("our producer's default unit (UTF-16) for a PyPI resumer", OURS, our_producer_default_for_pypi),
    KnownDifference("our resumer's default unit (UTF-16) against a PyPI producer", OURS, our_resumer_default_for_pypi),
    KnownDifference("npm and PyPI count skips in different units", PEER, npm_and_pypi_units),
    KnownDifference("PyPI producer's fan-out race", PEER, pypi_producer_race),
    KnownDifference("PyPI resumer has no ack timeout", PEER, pypi_resumer_waits),
)


def missing_chunks(out, chunks):
    """The chunks not found in `out` (exact for delimited chunks such as the burst's)."""
    return [chunk for chunk in chunks if chunk not in out]


def classify(o):
    """(status, class name or None, reason) for an outcome that is not exactly right."""
    missing = missing_chunks(o.out, o.chunks)
    if missing:
        shown = ", ".join(repr(chunk) for chunk in missing[:3]) + (" ..." if len(missing) > 3 else "")
        return FAIL, None, f"{len(missing)} chunk(s) missing: {shown}"
    matches = [(known, reason) for known in KNOWN if (reason := known.explain(o)) is not None]
    if len(matches) > 1:
        names = ", ".join(known.name for known, _ in matches)
        return FAIL, None, f"matches more than one known difference ({names}): the predicates overlap"
    if matches:
        known, reason = matches[0]
        return known.status, known.name, reason
    return FAIL, None, ""
