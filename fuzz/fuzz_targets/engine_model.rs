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
//! The operations are in `fuzz/src/ops.rs`, the model in `model.rs`, the harness in
//! `harness.rs` (application calls), `network.rs` (deliveries and connection faults),
//! `answers.rs` (resume requests) and `steps.rs` (one step).
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
        }
    }
    trace!("epilogue");
    harness.epilogue();
});
