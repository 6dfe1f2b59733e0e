//! Model checks of the mailbox under every interleaving loom explores:
//! `RUSTFLAGS="--cfg loom" cargo test -p resumable-stream-driver --release --test loom_mailbox`.

#![cfg(loom)]

use loom::thread;
use resumable_stream_driver::mailbox::mailbox;

#[test]
fn an_item_sent_before_the_end_is_received_then_the_end() {
    loom::model(|| {
        let (tx, rx) = mailbox();
        let sender = thread::spawn(move || {
            tx.send(1).unwrap();
            // Dropping the last sender ends the mailbox.
        });
        assert_eq!(rx.recv_blocking(), Some(1));
        assert_eq!(rx.recv_blocking(), None);
        sender.join().unwrap();
    });
}

#[test]
fn two_senders_lose_nothing_and_keep_their_own_order() {
    loom::model(|| {
        let (tx, rx) = mailbox();
        let other = tx.clone();
        let a = thread::spawn(move || {
            tx.send(("a", 1)).unwrap();
            tx.send(("a", 2)).unwrap();
        });
        let b = thread::spawn(move || other.send(("b", 1)).unwrap());
        let mut got = Vec::new();
        while let Some(item) = rx.recv_blocking() {
            got.push(item);
        }
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(got.len(), 3);
        let from_a: Vec<_> = got
            .iter()
            .filter(|(who, _)| *who == "a")
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(from_a, [1, 2]);
    });
}

#[test]
fn close_racing_a_send_never_loses_an_accepted_item() {
    loom::model(|| {
        let (tx, rx) = mailbox();
        let closer = tx.clone();
        let sender = thread::spawn(move || tx.send(7).is_ok());
        let closing = thread::spawn(move || closer.close());
        let mut received = Vec::new();
        while let Some(item) = rx.recv_blocking() {
            received.push(item);
        }
        let accepted = sender.join().unwrap();
        closing.join().unwrap();
        // Accepted items are delivered; refused ones are handed back, never dropped.
        assert_eq!(received, if accepted { vec![7] } else { vec![] });
    });
}

#[test]
fn a_receiver_leaving_while_items_are_sent_does_not_block_the_sender() {
    loom::model(|| {
        let (tx, rx) = mailbox::<u32>();
        let sender = thread::spawn(move || {
            let first = tx.send(1);
            let second = tx.send(2);
            // Once refused, always refused: the receiver does not come back.
            assert!(!(first.is_err() && second.is_ok()));
        });
        drop(rx);
        sender.join().unwrap();
    });
}

#[test]
fn an_async_receiver_is_woken_by_a_send_from_another_thread() {
    loom::model(|| {
        let (tx, rx) = mailbox();
        let sender = thread::spawn(move || tx.send("x").unwrap());
        let got = loom::future::block_on(rx.recv());
        assert_eq!(got, Some("x"));
        assert_eq!(loom::future::block_on(rx.recv()), None);
        sender.join().unwrap();
    });
}
