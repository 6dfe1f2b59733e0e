//! A resume request reaching an engine: the model says which producer answers and
//! exactly how (`serve`), and what each resumer's own request must say.

use crate::harness::*;
use crate::model::*;
use crate::reference;
use bytes::Bytes;
use resumable_stream::wire::{Control, ErrorKind, Incoming, ResumeRequest, DONE_MESSAGE};
use resumable_stream::{Op, Position, SkipUnit};

impl Harness {
    /// A resumer's request says what it was asked.
    pub fn check_request_sent(
        &mut self,
        node: usize,
        key: Key,
        stream: usize,
        request: ResumeRequest,
    ) {
        let extensions = self.nodes[node].extensions;
        let unit = self.nodes[node].unit;
        let r = self.readers.get_mut(&key).expect("owner");
        assert_eq!(r.stream, stream);
        assert_eq!(Some(&request.listener_id), r.listener.as_ref());
        match &r.token {
            None => {
                let cancel = r.kind == Kind::Cancel;
                let (skip, from_chunk) = match r.position {
                    Position::Start => (None, None),
                    Position::Units(n) => (Some(n as i64), None),
                    Position::Chunk(n) => (None, Some(n)),
                    other => panic!("a position the target never asks for: {other:?}"),
                };
                assert_eq!(request.skip, skip);
                let named = (unit != SkipUnit::Utf16 && skip.is_some()).then_some(unit);
                assert_eq!(request.unit, named, "the unit is named unless UTF-16");
                let extended = extensions || cancel || from_chunk.is_some();
                assert_eq!(request.ext.is_some(), extended, "{request:?}");
                if let Some(ext) = &request.ext {
                    assert_eq!((ext.from_chunk, ext.cancel), (from_chunk, cancel));
                }
                r.extended = extended;
                r.token = Some(request.ext.map(|e| e.token).unwrap_or_default());
            }
            Some(token) => {
                // Asking again (after `lost`, a reconnect or a missing hello): the same
                // request, or an extended one from a chunk index, with the same token.
                if let Some(ext) = &request.ext {
                    assert_eq!(&ext.token, token);
                    assert_eq!(ext.cancel, r.kind == Kind::Cancel);
                } else {
                    assert!(
                        !r.extended,
                        "an extended resumer asks again without the extension"
                    );
                }
            }
        }
    }

    pub fn serve(
        &self,
        node: usize,
        pkey: Key,
        request: &ResumeRequest,
    ) -> Result<Option<Bytes>, Bytes> {
        let p = self.readers[&pkey].prod();
        if let Some(from) = request.ext.as_ref().and_then(|e| e.from_chunk) {
            let from = usize::try_from(from).unwrap_or(usize::MAX);
            if from < p.dropped {
                return Ok(None);
            }
            return Ok(Some(Bytes::from(reference::join(
                &p.chunks[from.min(p.chunks.len())..],
            ))));
        }
        let skip = request.skip.unwrap_or(0);
        let unit = request.unit.unwrap_or(self.nodes[node].unit);
        let text = reference::join(&p.chunks);
        let answer = Bytes::from(reference::catch_up(&text, skip, unit));
        if p.dropped == 0 {
            return Ok(Some(answer));
        }
        let mut boundaries = Vec::new();
        let mut at = 0;
        for chunk in &p.chunks[..p.dropped] {
            at += chunk.len();
            boundaries.push(at);
        }
        let dropped_bytes = at;
        let (cut, replacement) = reference::cut(&text, skip, unit);
        // Up to 3 bytes of a character split by the drop boundary are still held (the
        // engine keeps them to count characters over the joined stream): a cut among
        // them may be served, exactly, or refused.
        if cut + 3 < dropped_bytes {
            return Ok(None);
        }
        if cut < dropped_bytes {
            return Err(answer);
        }
        let ambiguous = (replacement && cut - 4 < dropped_bytes)
            || reference::splits_a_character(&text, &boundaries);
        if ambiguous {
            Err(answer)
        } else {
            Ok(Some(answer))
        }
    }

    /// A resume request reaches engine `node`: the model says which producer answers and
    /// with what; the engine's commands must be exactly that.
    pub fn request(&mut self, node: usize, stream: usize, message: Bytes) {
        let (_, request_channel) = names(stream);
        let producer = self.routed_producer(node, stream);
        let decoded = ResumeRequest::decode(&message).ok();
        let (Some(pkey), Some(request)) = (producer, decoded) else {
            self.nodes[node]
                .engine
                .handle_message(self.now, &request_channel, message);
            let sent = app_ops(self.drain_ops(node, None));
            assert!(
                sent.is_empty(),
                "a request nobody here serves is dropped: {sent:?}"
            );
            return;
        };
        let listener = request.listener_id.clone();
        let token = request.ext.as_ref().map(|e| e.token.clone());
        let resumer = self.listener_owner.get(&listener).copied();
        let p = self.readers[&pkey].prod();
        let ended = p.ending;
        let next = p.chunks.len() as u64;

        if request.ext.as_ref().is_some_and(|e| e.cancel) {
            let live = self.readers[&pkey].live_producer();
            // Over: "done"; live: "cancelled", and it ends; still starting: no answer
            // (nothing to stop yet; the canceller times out rather than hear a lie).
            let answer = match ended {
                Some(_) => Some(Bytes::from_static(DONE_MESSAGE)),
                None if live => Some(
                    Control::Cancelled { next: None }.encode(token.as_deref().unwrap_or_default()),
                ),
                None => None,
            };
            self.nodes[node]
                .engine
                .handle_message(self.now, &request_channel, message);
            let mut expected: Vec<Op> = answer.map(|a| publish(&listener, a)).into_iter().collect();
            if live {
                expected.extend(self.end_production(pkey, Ending::Cancelled));
            }
            if let Some(rkey) = resumer {
                self.readers.get_mut(&rkey).unwrap().cancel_answered_by = Some(pkey);
            }
            let ops = app_ops(self.drain_ops(node, Some(pkey.1)));
            assert_eq!(ops, expected, "the answer to the cancel {request:?}");
            return;
        }

        let registered = p.registrations.iter().position(|r| r.listener == listener);
        if registered.is_some() && token.is_none() {
            // A v1 listener asking twice is a duplicate: dropped.
            self.nodes[node]
                .engine
                .handle_message(self.now, &request_channel, message);
            let sent = app_ops(self.drain_ops(node, None));
            assert!(sent.is_empty(), "a duplicate request is dropped: {sent:?}");
            return;
        }
        let served = |catch_up: &Bytes| -> Vec<Op> {
            let mut ops = vec![publish(
                &listener,
                match &token {
                    Some(token) => Incoming::encode_answer(
                        token,
                        next,
                        self.nodes[node].heartbeat.as_millis() as u64,
                        request.ext.as_ref().map_or(0, |e| e.seq),
                        catch_up,
                    ),
                    None => catch_up.clone(),
                },
            )];
            if let Some(ending) = ended {
                ops.push(publish(
                    &listener,
                    final_message(ending, next, token.as_deref()),
                ));
            }
            ops
        };
        let refused = match &token {
            Some(token) => {
                let control = Control::Error {
                    kind: ErrorKind::Truncated,
                    message: "the data asked for is no longer buffered".to_owned(),
                    next: None,
                };
                vec![publish(&listener, control.encode(token))]
            }
            None => Vec::new(),
        };
        let (expect, catch_up) = match self.serve(node, pkey, &request) {
            Ok(Some(catch_up)) => (Expect::Exactly(served(&catch_up)), Some(catch_up)),
            Ok(None) => (Expect::Exactly(refused), None),
            Err(catch_up) => (Expect::Either(served(&catch_up), refused), Some(catch_up)),
        };

        self.nodes[node]
            .engine
            .handle_message(self.now, &request_channel, message);
        // Update the model before draining, so that the answer's PUBLISHes are known
        // as deliveries to the new registration. A refusal is told apart below.
        let serial = {
            let p = self.readers.get_mut(&pkey).unwrap().prod_mut();
            if let Some(index) = registered {
                p.registrations.remove(index);
            }
            let serial = p.next_serial;
            p.next_serial += 1;
            if ended.is_none() && catch_up.is_some() {
                p.registrations.push(Registration {
                    serial,
                    listener: listener.clone(),
                    token: token.clone(),
                    lost: false,
                });
            }
            serial
        };
        let ops = app_ops(self.drain_ops(node, Some(pkey.1)));
        let answered = match expect {
            Expect::Exactly(expected) => {
                assert_eq!(ops, expected, "the answer to {request:?} by {pkey:?}");
                catch_up.is_some()
            }
            Expect::Either(served, refused) => {
                if ops == refused {
                    false
                } else {
                    assert_eq!(ops, served, "the answer to {request:?} by {pkey:?}");
                    true
                }
            }
        };
        if !answered {
            let p = self.readers.get_mut(&pkey).unwrap().prod_mut();
            p.registrations.retain(|r| r.serial != serial);
        }
        let Some(rkey) = resumer else {
            return;
        };
        let seq = request.ext.as_ref().map_or(0, |e| e.seq);
        let r = self.readers.get_mut(&rkey).unwrap();
        if !answered {
            r.refused = true;
            return;
        }
        match &r.owed {
            None => {
                r.owed = Some(Owed {
                    producer: pkey,
                    catch_up: catch_up.unwrap(),
                    from: next as usize,
                });
                r.owed_seq = seq;
            }
            // Asked again with nothing received yet (the answer was lost): the answer
            // to the latest request is what it is owed. (A position past the end
            // resumes at the end when the request is answered, so the answers may
            // differ.) A repeated request (the same `seq`) is answered again, but the
            // resumer takes the first answer and drops the repeat; an earlier one,
            // answered late, it drops too.
            Some(owed)
                if owed.producer == pkey
                    && r.extended
                    && r.received_bytes.is_empty()
                    && seq > r.owed_seq =>
            {
                r.owed = Some(Owed {
                    producer: pkey,
                    catch_up: catch_up.unwrap(),
                    from: next as usize,
                });
                r.owed_seq = seq;
            }
            // Asked again (after `lost`): still owed the same stream, from the same
            // producer; a different one makes the stream wild.
            Some(owed) if owed.producer == pkey => {}
            Some(_) => {
                let stream = r.stream;
                self.fault(Some(stream), |f| f.wild = true);
            }
        }
    }
}
