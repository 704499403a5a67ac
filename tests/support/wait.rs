//! Polling with a deadline.

use std::time::{Duration, Instant};

/// Polls `f` until it returns `Some`, or the deadline passes (then `None`). The pause
/// between polls starts at 20 ms and doubles up to 250 ms.
pub fn wait_until<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Like [`wait_until`] but panics with `what` on timeout.
#[track_caller]
pub fn eventually<T>(what: &str, within: Duration, f: impl FnMut() -> Option<T>) -> T {
    match wait_until(within, f) {
        Some(v) => v,
        None => panic!("timed out after {within:?} waiting for: {what}"),
    }
}
