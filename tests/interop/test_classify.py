"""Checks the interop matrix's judge (classify.py) both ways: each known difference
matches exactly its behaviour and nothing near it, and no outcome that misses a chunk
is ever accepted. Run by scripts/interop.sh before the matrix:

    python3 -m unittest discover -s tests/interop -p 'test_*.py'
"""

import unittest

from classify import FAIL, OURS, PEER, Outcome, classify, cut, pypi_fanout_race

BURST = tuple(f"{i:04d}|".encode() for i in range(1000))
UNICODE = tuple(c.encode() for c in ["héllo", " ", "日本", " ", "🚀", " done"])
TEXT = "héllo 日本 🚀 done"


def joined(chunks):
    return b"".join(chunks)


def streamed(producer, resumer, out, kind="burst", chunks=BURST, code=0):
    return Outcome(producer, resumer, None, kind, code, False, out, joined(chunks), chunks)


def skipped(producer, resumer, unit, skip, counted):
    meant = unit or ("codepoint" if resumer == "python" else "utf16")
    return Outcome(producer, resumer, unit, "skip", 0, False, cut(TEXT, skip, counted),
                   cut(TEXT, skip, meant), text=TEXT, skip=skip)


def race(j, duplicated, overtaken, chunks=BURST):
    """What the PyPI producer's race gives a listener (see classify.pypi_fanout_race)."""
    live = list(chunks[j - 1 if duplicated else j :])
    return joined(live[:overtaken] + list(chunks[:j]) + live[overtaken:])


class FanoutRace(unittest.TestCase):
    def status(self, producer, out, kind="burst", resumer="rust", chunks=BURST):
        return classify(streamed(producer, resumer, out, kind, chunks))[0]

    def test_a_duplicated_chunk_from_the_pypi_producer_is_its_race(self):
        for resumer in ("rust", "node", "python"):
            self.assertEqual(self.status("python", race(10, True, 0), resumer=resumer), PEER)
        self.assertEqual(self.status("python", race(1, True, 0)), PEER)
        self.assertEqual(self.status("python", race(3, True, 0, UNICODE), "live-during", chunks=UNICODE), PEER)

    def test_an_overtaken_catch_up_from_the_pypi_producer_is_its_race(self):
        self.assertEqual(self.status("python", race(500, False, 3)), PEER)
        self.assertEqual(self.status("python", race(500, True, 2)), PEER)
        self.assertEqual(self.status("python", race(999, False, 1)), PEER)

    def test_the_same_outputs_from_other_producers_fail(self):
        for producer in ("rust", "node"):
            self.assertEqual(self.status(producer, race(10, True, 0)), FAIL)
            self.assertEqual(self.status(producer, race(500, False, 3)), FAIL)

    def test_the_race_is_not_accepted_where_no_chunk_was_in_flight(self):
        for kind in ("live-before", "skip", "plain"):
            self.assertEqual(self.status("python", race(3, True, 0, UNICODE), kind, chunks=UNICODE), FAIL)

    def test_a_missing_chunk_fails_whoever_produced_it(self):
        dropped = joined(BURST[:500] + BURST[501:])
        dup_and_dropped = joined(BURST[:11] + BURST[10:500] + BURST[501:])
        # The end message overtook the catch-up: the resumer stopped before it came.
        catch_up_lost = joined(BURST[10:])
        cut_short = joined(BURST[:998])
        for producer in ("rust", "node", "python"):
            for out in (dropped, dup_and_dropped, catch_up_lost, cut_short):
                status, _, reason = classify(streamed(producer, "rust", out))
                self.assertEqual(status, FAIL)
                self.assertIn("missing", reason)
        # Not only the guard: the race's model itself explains none of them.
        for out in (dropped, dup_and_dropped, catch_up_lost, cut_short):
            self.assertIsNone(pypi_fanout_race(out, BURST))

    def test_other_disorders_fail(self):
        swapped = joined(BURST[:100] + (BURST[101], BURST[100]) + BURST[102:])
        two_duplicates = joined(BURST[:11] + BURST[10:600] + BURST[599:])
        dup_not_at_the_catch_up_end = joined(BURST[:10] + BURST[8:])
        for out in (swapped, two_duplicates, dup_not_at_the_catch_up_end):
            self.assertEqual(self.status("python", out), FAIL)

    def test_a_failed_or_unfinished_resumer_fails(self):
        out = race(10, True, 0)
        self.assertEqual(classify(streamed("python", "rust", out, code=1))[0], FAIL)
        timed_out = Outcome("python", "rust", None, "burst", None, True, out, joined(BURST), BURST)
        self.assertEqual(classify(timed_out)[0], FAIL)


class SkipUnits(unittest.TestCase):
    def classified(self, producer, resumer, unit, skip, counted):
        status, name, _ = classify(skipped(producer, resumer, unit, skip, counted))
        return status, name

    def test_our_resumer_naming_a_unit_to_a_v1_producer_is_ours(self):
        self.assertEqual(self.classified("node", "rust", "codepoint", 10, "utf16")[0], OURS)
        self.assertEqual(self.classified("node", "rust", "byte", 2, "utf16")[0], OURS)
        self.assertEqual(self.classified("python", "rust", "byte", 7, "codepoint")[0], OURS)

    def test_our_default_unit_against_the_pypi_port_is_ours(self):
        self.assertEqual(self.classified("rust", "python", None, 10, "utf16"),
                         (OURS, "our producer's default unit (UTF-16) for a PyPI resumer"))
        self.assertEqual(self.classified("python", "rust", None, 10, "codepoint"),
                         (OURS, "our resumer's default unit (UTF-16) against a PyPI producer"))

    def test_npm_against_pypi_is_theirs(self):
        self.assertEqual(self.classified("node", "python", None, 10, "utf16")[0], PEER)
        self.assertEqual(self.classified("python", "node", None, 10, "codepoint")[0], PEER)

    def test_our_producer_ignoring_the_named_unit_fails(self):
        self.assertEqual(self.classified("rust", "rust", "codepoint", 10, "utf16")[0], FAIL)
        self.assertEqual(self.classified("rust", "rust", "byte", 7, "utf16")[0], FAIL)

    def test_a_cut_in_a_unit_nobody_used_fails(self):
        self.assertEqual(self.classified("node", "node", None, 10, "codepoint")[0], FAIL)
        self.assertEqual(self.classified("node", "python", None, 7, "byte")[0], FAIL)
        self.assertEqual(self.classified("rust", "node", None, 10, "codepoint")[0], FAIL)

    def test_bytes_that_are_no_cut_fail(self):
        wrong = Outcome("node", "python", None, "skip", 0, False, b" don", cut(TEXT, 10, "codepoint"),
                        text=TEXT, skip=10)
        self.assertEqual(classify(wrong)[0], FAIL)


class GoneProducer(unittest.TestCase):
    def gone(self, resumer, timed_out, out=b"", code=None):
        return classify(Outcome("(gone)", resumer, None, "gone", code, timed_out, out))[0]

    def test_the_pypi_resumer_waiting_with_nothing_is_theirs(self):
        self.assertEqual(self.gone("python", True), PEER)

    def test_anything_else_fails(self):
        self.assertEqual(self.gone("python", True, b"x"), FAIL)
        self.assertEqual(self.gone("python", False, code=0), FAIL)
        self.assertEqual(self.gone("node", True), FAIL)
        self.assertEqual(self.gone("rust", True), FAIL)


class DurablePeers(unittest.TestCase):
    """run.py judges our CLI in durable mode, rust(durable), as rust: its expectations
    and known differences are the plain CLI's."""

    def test_a_durable_peer_is_judged_as_rust(self):
        from run import DURABLE, lang_of, replays, unit_label

        self.assertEqual(lang_of(DURABLE), "rust")
        self.assertEqual(lang_of("(itself)"), "(itself)")
        self.assertEqual(unit_label(DURABLE, "codepoint"), "rust(durable,codepoint)")
        self.assertEqual(unit_label("rust", "byte"), "rust(byte)")
        # Only a log reader of a stream with a log replays a finished stream.
        self.assertTrue(replays(DURABLE, DURABLE))
        for producer, resumer in ((DURABLE, "rust"), (DURABLE, "node"), ("rust", DURABLE), ("node", DURABLE)):
            self.assertFalse(replays(producer, resumer))
        o = skipped(lang_of(DURABLE), "python", None, 10, "utf16")
        self.assertEqual(classify(o)[:2], (OURS, "our producer's default unit (UTF-16) for a PyPI resumer"))


if __name__ == "__main__":
    unittest.main()
