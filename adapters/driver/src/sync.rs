//! The synchronization primitives this crate uses, from `std` normally and from `loom`
//! under `--cfg loom`, so that the loom tests model-check the real code (the way tokio
//! does it). Code in this crate imports them only from here.

#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Locks `mutex`, recovering it if a thread panicked while holding it: every critical
/// section here leaves the guarded data consistent between statements.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(not(loom))]
pub(crate) use std::sync::Weak;

/// loom has no `Weak`: under loom a weak reference never upgrades. Only a transport's
/// [`Inbox`](crate::Inbox) holds one (so that it does not keep its context alive); the
/// hub itself needs none, so its whole producer-start path runs under loom.
#[cfg(loom)]
pub(crate) struct Weak<T>(std::marker::PhantomData<T>);

#[cfg(loom)]
impl<T> Clone for Weak<T> {
    fn clone(&self) -> Self {
        Weak::new()
    }
}

#[cfg(loom)]
impl<T> Weak<T> {
    pub(crate) fn new() -> Self {
        Weak(std::marker::PhantomData)
    }

    pub(crate) fn upgrade(&self) -> Option<Arc<T>> {
        None
    }
}

/// `Arc::downgrade` (under loom, a reference that never upgrades).
#[cfg(not(loom))]
pub(crate) fn downgrade<T>(arc: &Arc<T>) -> Weak<T> {
    Arc::downgrade(arc)
}

/// `Arc::downgrade` (under loom, a reference that never upgrades).
#[cfg(loom)]
pub(crate) fn downgrade<T>(_: &Arc<T>) -> Weak<T> {
    Weak::new()
}
