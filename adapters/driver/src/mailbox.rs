//! A multi-producer, single-consumer queue that a receiver can wait on either
//! asynchronously (any executor: it stores a `Waker`) or by blocking a thread (a
//! `Condvar`). Every driver uses it: readers' chunks, command queues, answers and timer
//! wake-ups all travel through mailboxes, so that the tokio, async-std and blocking
//! drivers share one piece of concurrent code, model-checked with loom.
//!
//! The queue ends when every sender is gone or [`Sender::close`] is called; items sent
//! before that are still received.

use crate::sync::{lock, Arc, Condvar, Mutex, MutexGuard};
use std::collections::VecDeque as Queue;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

struct State<T> {
    queue: Queue<T>,
    senders: usize,
    closed: bool,
    receiver_alive: bool,
    waker: Option<Waker>,
    /// Receivers blocked on the condition variable: a send notifies it only then (a
    /// notification is a system call even when nobody waits).
    blocked: usize,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

/// The sending half; cheap to clone.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving half.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// A new, empty mailbox.
pub fn mailbox<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: Queue::new(),
            senders: 1,
            closed: false,
            receiver_alive: true,
            waker: None,
            blocked: 0,
        }),
        ready: Condvar::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// Whom a change of state must wake: taken under the lock, woken after it.
struct Wake {
    waker: Option<Waker>,
    blocked: bool,
}

impl<T> State<T> {
    fn take_wake(&mut self) -> Wake {
        Wake {
            waker: self.waker.take(),
            blocked: self.blocked > 0,
        }
    }

    /// Stores `cx`'s waker, unless the stored one already wakes the same task.
    fn register(&mut self, cx: &Context<'_>) {
        match &self.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => self.waker = Some(cx.waker().clone()),
        }
    }
}

impl<T> Shared<T> {
    /// Wakes the receiver, whichever way it waits.
    fn wake(&self, wake: Wake) {
        if wake.blocked {
            self.ready.notify_all();
        }
        if let Some(waker) = wake.waker {
            waker.wake();
        }
    }

    /// Waits on the condition variable, counted in `blocked`.
    fn block<'a>(&self, mut state: MutexGuard<'a, State<T>>) -> MutexGuard<'a, State<T>> {
        state.blocked += 1;
        let mut state = self
            .ready
            .wait(state)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.blocked -= 1;
        state
    }
}

impl<T> Sender<T> {
    /// Queues `item`; gives it back if the receiver is gone or the mailbox closed.
    pub fn send(&self, item: T) -> Result<(), T> {
        let waker = {
            let mut state = lock(&self.shared.state);
            if state.closed || !state.receiver_alive {
                return Err(item);
            }
            state.queue.push_back(item);
            state.take_wake()
        };
        self.shared.wake(waker);
        Ok(())
    }

    /// Queues every item of `items` under one lock, emptying it, and returns `true`; if
    /// the receiver is gone or the mailbox closed, leaves them in `items` and returns
    /// `false`. Into an empty mailbox the two queues are swapped, so a batch costs no
    /// copy, and `items` comes back with the capacity the receiver emptied.
    pub fn send_all(&self, items: &mut Queue<T>) -> bool {
        let wake = {
            let mut state = lock(&self.shared.state);
            if state.closed || !state.receiver_alive {
                return false;
            }
            if state.queue.is_empty() {
                std::mem::swap(&mut state.queue, items);
            } else {
                state.queue.append(items);
            }
            state.take_wake()
        };
        self.shared.wake(wake);
        true
    }

    /// Ends the mailbox for every sender: the receiver gets what is queued, then the end.
    pub fn close(&self) {
        let waker = {
            let mut state = lock(&self.shared.state);
            state.closed = true;
            state.take_wake()
        };
        self.shared.wake(waker);
    }

    /// Whether the receiver has gone away.
    pub fn is_receiver_gone(&self) -> bool {
        !lock(&self.shared.state).receiver_alive
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        lock(&self.shared.state).senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = lock(&self.shared.state);
            state.senders -= 1;
            if state.senders > 0 {
                return;
            }
            state.closed = true;
            state.take_wake()
        };
        self.shared.wake(waker);
    }
}

/// Why a blocking receive with a deadline returned without an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// The deadline passed.
    Timeout,
    /// The mailbox ended.
    Closed,
}

impl<T> Receiver<T> {
    /// The next item if one is queued, without waiting. `Err(())` once the mailbox ended
    /// and is empty.
    #[allow(clippy::result_unit_err)]
    pub fn try_recv(&self) -> Result<Option<T>, ()> {
        let mut state = lock(&self.shared.state);
        match state.queue.pop_front() {
            Some(item) => Ok(Some(item)),
            None if state.closed => Err(()),
            None => Ok(None),
        }
    }

    /// Waits (asynchronously) for the next item; `None` once the mailbox ended.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = lock(&self.shared.state);
        if let Some(item) = state.queue.pop_front() {
            return Poll::Ready(Some(item));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        state.register(cx);
        Poll::Pending
    }

    /// Moves up to `max` queued items into `out`, waiting (asynchronously) for at least
    /// one; `Poll::Ready(0)` once the mailbox ended.
    pub fn poll_recv_many(
        &self,
        cx: &mut Context<'_>,
        out: &mut Vec<T>,
        max: usize,
    ) -> Poll<usize> {
        let mut state = lock(&self.shared.state);
        let count = state.queue.len().min(max);
        if count > 0 {
            out.extend(state.queue.drain(..count));
            return Poll::Ready(count);
        }
        if state.closed {
            return Poll::Ready(0);
        }
        state.register(cx);
        Poll::Pending
    }

    /// Moves everything queued into `out` at once (the queues are swapped when `out` is
    /// empty, so this costs no copy), waiting (asynchronously) for at least one item;
    /// `Poll::Ready(false)` once the mailbox ended and is empty.
    pub fn poll_recv_all(&self, cx: &mut Context<'_>, out: &mut Queue<T>) -> Poll<bool> {
        let mut state = lock(&self.shared.state);
        if !state.queue.is_empty() {
            if out.is_empty() {
                std::mem::swap(&mut state.queue, out);
            } else {
                out.extend(state.queue.drain(..));
            }
            return Poll::Ready(true);
        }
        if state.closed {
            return Poll::Ready(false);
        }
        state.register(cx);
        Poll::Pending
    }

    /// Waits for the next item; `None` once the mailbox ended.
    pub async fn recv(&self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Waits for at least one item and moves up to `max` into `out`; 0 once ended.
    pub async fn recv_many(&self, out: &mut Vec<T>, max: usize) -> usize {
        std::future::poll_fn(|cx| self.poll_recv_many(cx, out, max)).await
    }

    /// Blocks the thread until the next item; `None` once the mailbox ended.
    pub fn recv_blocking(&self) -> Option<T> {
        let mut state = lock(&self.shared.state);
        loop {
            if let Some(item) = state.queue.pop_front() {
                return Some(item);
            }
            if state.closed {
                return None;
            }
            state = self.shared.block(state);
        }
    }

    /// Blocks until at least one item and moves up to `max` into `out`; 0 once ended.
    pub fn recv_many_blocking(&self, out: &mut Vec<T>, max: usize) -> usize {
        let mut state = lock(&self.shared.state);
        loop {
            let count = state.queue.len().min(max);
            if count > 0 {
                out.extend(state.queue.drain(..count));
                return count;
            }
            if state.closed {
                return 0;
            }
            state = self.shared.block(state);
        }
    }

    /// Blocks until the next item or `deadline`, whichever comes first.
    #[cfg(not(loom))]
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        let mut state = lock(&self.shared.state);
        loop {
            if let Some(item) = state.queue.pop_front() {
                return Ok(item);
            }
            if state.closed {
                return Err(RecvTimeoutError::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RecvTimeoutError::Timeout);
            }
            state.blocked += 1;
            state = match self.shared.ready.wait_timeout(state, deadline - now) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
            state.blocked -= 1;
        }
    }

    /// Under loom, time does not pass: waits as [`recv_blocking`](Self::recv_blocking).
    #[cfg(loom)]
    pub fn recv_deadline(&self, _deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.recv_blocking().ok_or(RecvTimeoutError::Closed)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        state.receiver_alive = false;
        state.queue.clear();
        state.waker = None;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn items_arrive_in_order_then_the_end() {
        let (tx, rx) = mailbox();
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        drop(tx);
        assert_eq!(rx.recv_blocking(), Some(1));
        assert_eq!(rx.recv_blocking(), Some(2));
        assert_eq!(rx.recv_blocking(), None);
    }

    #[test]
    fn close_ends_it_for_every_sender_and_refuses_later_items() {
        let (tx, rx) = mailbox();
        let other = tx.clone();
        tx.send("a").unwrap();
        other.close();
        assert_eq!(tx.send("b"), Err("b"));
        assert_eq!(rx.try_recv(), Ok(Some("a")));
        assert_eq!(rx.try_recv(), Err(()));
    }

    #[test]
    fn a_gone_receiver_refuses_items() {
        let (tx, rx) = mailbox();
        drop(rx);
        assert!(tx.is_receiver_gone());
        assert_eq!(tx.send(5), Err(5));
    }

    #[test]
    fn a_deadline_passes_without_items() {
        let (_tx, rx) = mailbox::<u8>();
        let deadline = Instant::now() + Duration::from_millis(5);
        assert_eq!(rx.recv_deadline(deadline), Err(RecvTimeoutError::Timeout));
    }

    #[test]
    fn recv_many_takes_what_is_queued() {
        let (tx, rx) = mailbox();
        for i in 0..5 {
            tx.send(i).unwrap();
        }
        let mut out = Vec::new();
        assert_eq!(rx.recv_many_blocking(&mut out, 3), 3);
        assert_eq!(rx.recv_many_blocking(&mut out, 10), 2);
        assert_eq!(out, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn an_async_receiver_is_woken() {
        let (tx, rx) = mailbox();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            tx.send(7).unwrap();
        });
        assert_eq!(futures_util::FutureExt::now_or_never(rx.recv()), None);
        let got = futures_executor_block_on(rx.recv());
        assert_eq!(got, Some(7));
        thread.join().unwrap();
    }

    /// A minimal executor: parks the thread until woken.
    fn futures_executor_block_on<F: std::future::Future>(future: F) -> F::Output {
        struct ThreadWaker(std::thread::Thread);
        impl std::task::Wake for ThreadWaker {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(std::sync::Arc::new(ThreadWaker(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            std::thread::park();
        }
    }
}
