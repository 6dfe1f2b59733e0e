//! Shared pieces of the fuzz targets: the reference implementation of the skip rules
//! (`reference`), the fuzzer's operations (`ops`, `durable_ops`, and `reply_ops` for
//! `replies`), and the engine model with its harness (`model`, `events`, `durable`,
//! `log_readers`, `harness`, `drain`, `network`, `answers`, `steps`,
//! `durable_steps`, `epilogue`), which drives engines on
//! the core's simulated network (`resumable_stream::sim::Net`).

pub mod answers;
pub mod drain;
pub mod durable;
pub mod durable_ops;
pub mod durable_steps;
pub mod epilogue;
pub mod events;
pub mod harness;
pub mod log_readers;
pub mod model;
pub mod network;
pub mod ops;
pub mod reference;
pub mod reply_ops;
pub mod steps;

/// Whether `RS_FUZZ_TRACE` is set: targets then print what they do, to diagnose a crash
/// (`RS_FUZZ_TRACE=1 cargo fuzz run -s none engine_model <input>`).
pub fn tracing() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("RS_FUZZ_TRACE").is_some_and(|v| v != "0"))
}

/// Prints when tracing.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => {
        if $crate::tracing() {
            eprintln!($($arg)*);
        }
    };
}
