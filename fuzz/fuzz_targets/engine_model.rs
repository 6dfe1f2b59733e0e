//! The main target: two or three engines around one `MemoryRedis`, joined by a network
//! the fuzzer controls, checked step by step against a reference model of the protocol
//! (docs/protocol.md: v1, our extensions, and its invariants).
//!
//! # The network
//!
//! The network is the core's simulated one (`resumable_stream::sim::Net`, shared with
//! the simulator tests): each engine has two connections, each a pair of FIFO links:
//! commands up to Redis, replies (and, on the pub/sub connection, messages) down. Links
//! keep their order, as TCP does; the fuzzer picks which link moves next, so deliveries
//! reorder freely across connections and engines, and time advances only when it says
//! so. As faults it may drop the next item of a link, fail it (the command does not run
//! and its reply is an error, or the reply of a command that ran becomes an error),
//! duplicate or silently drop a pub/sub message on its way to an engine
//! (`MessageFault`), delete a sentinel, lose or interrupt an engine's pub/sub
//! connection, drop one of its subscriptions on the server's side
//! (`SubscriptionFault`), or forge requests on a producer's channel.
//!
//! # The model
//!
//! Per producer: every chunk pushed, how many the bounded buffer dropped, how it ended
//! (clean, source error, cancelled), its registered listeners in order (each with its
//! extension token, if any), and whether it still owns its request channel (from its
//! `SUBSCRIBE` until it fails or the reply to its `UNSUBSCRIBE` arrives). When the
//! harness delivers a request to an engine the model says which producer answers and
//! with exactly which messages: hello (extended listeners), the catch-up computed by the
//! reference (`fuzz/src/reference.rs`) over everything ever pushed, the ending if the
//! stream is over; or a refusal when the bounded buffer no longer holds what is needed
//! (conservative refusals are tolerated where a dropped chunk boundary splits a
//! character; wrong data never is). From then on that resumer is owed the catch-up and
//! every later chunk, in order. `PUBLISH` replies count too: 0 receivers removes the
//! listener, an error removes an extended one and sends it `lost`.
//!
//! # Invariants (checked after every step)
//!
//! - no panic; per-handle event grammar; nothing after the final event; nothing for a
//!   dropped reader but a producer's `Started`, `StopSource` or setup failure;
//! - the commands of `push_chunk`, `finish`/`fail`, a request and a `PUBLISH` error are
//!   exactly the model's; `push_chunk`/`finish` succeed exactly on a live producer; the
//!   local reader gets every non-empty chunk at once with its chunk index, then its end;
//! - a resumer's request says what it was asked (skip, unit, extension, position);
//! - no unexpected reply (`unmatched_replies == 0`); no two producers of one stream in
//!   one engine; `poll_timeout` is always `None` or later than now;
//! - a v1 resumer's `Data` messages are a prefix of what it is owed; an extended one's
//!   bytes are exactly what it is owed up to the chunk index each `Data` carries; an
//!   end by message means everything owed arrived, and the ending is the producer's;
//!   an extended resumer ended by the done watchdog has everything too;
//! - a cancel answered `Cancelled` means the producer was cancelled;
//! - without faults only timing errors happen (ack timeout, producer gone, truncated
//!   after a refusal, already producing), and after the run, with every producer
//!   finished and time running until the network is quiet, every handle has ended,
//!   every produced sentinel says `DONE` and no engine holds a handle.
//!
//! Extended resumers are checked under every fault but a wild one: whatever is lost or
//! repeated, each ends byte-exact or with a typed error, its bytes an exact prefix of
//! what it is owed ("a lost or repeated message is detected and asked for again, never
//! delivered wrong"). A v1 resumer cannot tell: a silently lost message (or command,
//! or connection) or a failed `PUBLISH` leaves it a subsequence of what it is owed, a
//! repeated message anything. Wild faults, a request heard by two engines (two producers
//! of one stream) or a forged request naming a real listener, leave only the per-handle
//! checks. Any fault lifts the error-kind checks, any but an interruption or a repeated
//! message the liveness checks.
//!
//! # Durable mode
//!
//! Each engine is durable or not, as the input says (`DurableStep::Configure`, with
//! small batches, pages and caps, a short replay window): mixed runs pair a durable
//! producer with plain resumers and the reverse. Each node then has a third connection,
//! for blocking reads (`XREAD BLOCK`), whose links the fuzzer moves, drops, fails,
//! reorders, delays and repeats; reads parked in Redis time out as time advances. New
//! faults: a node killed for good, a node cut off (past its producer's lease) and
//! healed, an operator's `XTRIM`. Checked after every step: the log read back from
//! Redis holds one entry per chunk index, in order, from chunk 0 unless trimmed, each
//! chunk the one its producer pushed, and its end names the producer's length and
//! ending; Redis never accepts a chunk after an end; a gone end is written only by an
//! engine that read the lease and found it lapsed; a live durable producer renews its
//! lease every heartbeat; its appends hold exactly what was pushed, in order, retries
//! aside. A log reader's bytes at every `Data` are exactly the log writer's from its
//! position up to the chunk index it carries; a clean ending (`End`, a source error, a
//! cancel, a full log) brings every chunk and is the writer's; `ProducerGone` and
//! `Fenced` only with a gone end in the log, `BeforeRetained` only after a trim,
//! `PastEnd` only past the writer's length, a Redis error only under an injected
//! fault. After the run every log reader not cut off by a lost command has ended,
//! within three of the longest heartbeat, one of its own and 3 s of the faults
//! stopping (`epilogue.rs`). Known engine bugs are tolerated narrowly
//! (`fuzz/src/known.rs`; `RS_FUZZ_STRICT=all` turns the tolerances off).
//!
//! The operations are in `fuzz/src/ops.rs` and `durable_ops.rs`, the model in
//! `model.rs`, `events.rs`, `durable.rs` and `log_readers.rs`, the harness in
//! `harness.rs` (application calls), `drain.rs` (commands and events), `network.rs`
//! (deliveries and connection faults), `answers.rs` (resume requests), `steps.rs` and
//! `durable_steps.rs` (one step) and `epilogue.rs` (time, and the end of a run).
#![no_main]

use libfuzzer_sys::fuzz_target;
use resumable_stream_fuzz::harness::{Harness, MAX_STEPS};
use resumable_stream_fuzz::ops::{check_step_layout, AnyStep, Input};
use resumable_stream_fuzz::trace;

fuzz_target!(|input: Input| {
    static LAYOUT: std::sync::Once = std::sync::Once::new();
    LAYOUT.call_once(check_step_layout);
    let mut harness = Harness::new(&input);
    for step in input.steps.iter().take(MAX_STEPS) {
        match step {
            AnyStep::Step(step) => {
                trace!("step {step:?}");
                harness.step(step);
            }
            AnyStep::Fault(fault) => {
                trace!("fault {fault:?}");
                harness.message_fault(fault);
            }
            AnyStep::Subscription(fault) => {
                trace!("subscription dropped {fault:?}");
                harness.subscription_dropped(fault);
            }
            AnyStep::Durable(step) => {
                trace!("durable {step:?}");
                harness.durable_step(step);
            }
        }
        harness.check_logs();
    }
    trace!("epilogue");
    harness.epilogue();
});
