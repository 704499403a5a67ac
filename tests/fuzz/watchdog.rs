//! What each test thread is decoding right now, and a watchdog thread that ends the
//! run when one case takes longer than the per-case limit (a hang cannot be
//! interrupted, only reported; the report goes straight to stderr, past the test
//! harness's capture, since the run ends with it). Also where failing inputs are saved, and the report
//! for an input that hit the allocator's hard cap.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

struct Case {
    target: &'static str,
    label: String,
    input: Arc<[u8]>,
    started: Instant,
}

fn running() -> &'static Mutex<HashMap<ThreadId, Case>> {
    static RUNNING: OnceLock<Mutex<HashMap<ThreadId, Case>>> = OnceLock::new();
    RUNNING.get_or_init(|| {
        super::alloc::on_over_cap(over_cap);
        let limit = super::case_limit();
        thread::Builder::new()
            .name("fuzz-watchdog".into())
            .spawn(move || watch(limit))
            .expect("watchdog thread starts");
        Mutex::new(HashMap::new())
    })
}

/// This thread starts decoding `input`.
pub fn begin(target: &'static str, label: &str, input: Arc<[u8]>) {
    let case = Case {
        target,
        label: label.to_string(),
        input,
        started: Instant::now(),
    };
    let id = thread::current().id();
    running().lock().unwrap().insert(id, case);
}

/// This thread is done with its case.
pub fn end() {
    let id = thread::current().id();
    running().lock().unwrap().remove(&id);
}

fn watch(limit: Duration) {
    loop {
        thread::sleep(Duration::from_millis(50));
        let guard = running().lock().unwrap();
        if let Some(case) = guard.values().find(|c| c.started.elapsed() > limit) {
            let saved = save(case.target, &case.input);
            let _ = writeln!(
                std::io::stderr(),
                "\nfuzz {}: {} still running after {:?} (limit {limit:?}): a hang.\n  input saved to {}\n  {}\n",
                case.target,
                case.label,
                case.started.elapsed(),
                saved.display(),
                preview(&case.input),
            );
            std::process::exit(101);
        }
    }
}

fn over_cap(bytes: usize) -> ! {
    // Best effort: another thread may hold the lock (it is never held while decoding).
    if let Ok(guard) = running().try_lock() {
        let id = thread::current().id();
        if let Some(case) = guard.get(&id) {
            let saved = save(case.target, &case.input);
            let _ = writeln!(
                std::io::stderr(),
                "\nfuzz {}: {} made the process hold {} MiB of heap (hard cap {} MiB): \
                 unbounded allocation.\n  input saved to {}\n  {}\n",
                case.target,
                case.label,
                bytes >> 20,
                super::alloc::HARD_CAP >> 20,
                saved.display(),
                preview(&case.input),
            );
            std::process::abort();
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "\nfuzz: heap past the hard cap ({} MiB) outside a case\n",
        bytes >> 20
    );
    std::process::abort();
}

/// Saves a failing input under `target/tmp/fuzz-failures/` (copy it into
/// `tests/fuzz-corpus/<target>/` once fixed, as a regression case).
pub fn save(target: &str, input: &[u8]) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    input.hash(&mut h);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    let path = dir.join(format!("{target}-{:016x}", h.finish()));
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(&path, input);
    path
}

/// The start of an input, escaped, for a failure message.
pub fn preview(input: &[u8]) -> String {
    const SHOWN: usize = 300;
    let head: String = input[..input.len().min(SHOWN)].escape_ascii().to_string();
    let more = if input.len() > SHOWN {
        format!("... ({} bytes)", input.len())
    } else {
        String::new()
    };
    format!("b\"{head}\"{more}")
}
