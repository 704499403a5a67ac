//! The fuzz binary's global allocator: the system allocator, counting. Per thread it
//! keeps the bytes live and their peak, so a case's memory growth is exact even with
//! two targets running side by side; process-wide it refuses to go past a hard cap,
//! so an input that would allocate without bound ends the run (naming the case)
//! instead of the machine.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most heap the whole binary may hold at once (two cases at their per-case cap, the
/// corpora and the test harness fit well below it).
pub const HARD_CAP: usize = 3 << 30;

static TOTAL: AtomicUsize = AtomicUsize::new(0);

/// Called once when the hard cap is hit: reports the running case and ends the
/// process. Must not return.
static OVER_CAP: std::sync::OnceLock<fn(usize) -> !> = std::sync::OnceLock::new();

thread_local! {
    // Signed: a thread may free what another allocated.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static REPORTING: Cell<bool> = const { Cell::new(false) };
}

pub struct Counting;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Sets what happens when the hard cap is hit.
pub fn on_over_cap(f: fn(usize) -> !) {
    let _ = OVER_CAP.set(f);
}

/// Starts measuring a case on this thread; pass the result to [`growth`].
pub fn case_start() -> isize {
    let live = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(live));
    live
}

/// The most this thread's live heap grew above `start` since [`case_start`].
pub fn growth(start: isize) -> usize {
    (PEAK.with(Cell::get) - start).max(0) as usize
}

fn admit(size: usize) -> bool {
    let total = TOTAL.load(Ordering::Relaxed);
    if total.saturating_add(size) <= HARD_CAP {
        return true;
    }
    // While reporting (printing, saving the input) allocations go through.
    if REPORTING.try_with(Cell::get).unwrap_or(true) {
        return true;
    }
    if let Some(report) = OVER_CAP.get() {
        let _ = REPORTING.try_with(|r| r.set(true));
        report(total.saturating_add(size));
    }
    false
}

fn grew(size: usize) {
    TOTAL.fetch_add(size, Ordering::Relaxed);
    let _ = LIVE.try_with(|l| {
        let now = l.get() + size as isize;
        l.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

fn shrank(size: usize) {
    TOTAL.fetch_sub(size, Ordering::Relaxed);
    let _ = LIVE.try_with(|l| l.set(l.get() - size as isize));
}

// SAFETY: every method hands the call to `System` unchanged and only counts; a refused
// allocation returns null, which the GlobalAlloc contract allows.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !admit(layout.size()) {
            return ptr::null_mut();
        }
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !admit(layout.size()) {
            return ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() && !admit(new_size - layout.size()) {
            return ptr::null_mut();
        }
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            grew(new_size);
            shrank(layout.size());
        }
        q
    }
}
