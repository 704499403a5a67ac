//! Fuzzing on the stable toolchain, bounded in time, part of `make test`: every
//! decoder harness in `rune::model::fuzz` (one test per target) runs on its whole
//! seed corpus (`tests/fuzz-corpus/common/` and `tests/fuzz-corpus/<target>/`,
//! always, whatever the budget), then on proptest-generated inputs until its share
//! of the time budget is spent.
//!
//! Every case runs under three guards: a panic is caught and reported (with the
//! input shrunk, saved and previewed); a case slower than the per-case limit fails,
//! and one that never ends is caught by a watchdog thread that ends the run; heap
//! growth is counted per case by this binary's allocator and must stay under the
//! per-case cap (past a hard cap for the process the allocator ends the run).
//!
//! Settings (environment):
//! - `RUNE_FUZZ_SECONDS` — wall-clock budget of the whole binary, default 60. Each
//!   target gets `budget / ceil(targets / test threads)`, so the binary takes about
//!   the budget whatever the thread count (`RUST_TEST_THREADS`, else the CPUs), and
//!   never runs generated cases past it.
//! - `RUNE_FUZZ_TARGET_SECONDS` — a target's own budget instead (for a long run of
//!   one target: `RUNE_FUZZ_TARGET_SECONDS=600 cargo test --test fuzz cast_file`).
//! - `RUNE_FUZZ_SEED` — the generator's seed (a u64; default: from the clock). A
//!   failure prints the seed it ran with.
//! - `RUNE_FUZZ_CASE_SECONDS` — per-case time limit, default 2.
//! - `RUNE_FUZZ_CASE_MIB` — per-case heap growth cap, default 512.

mod alloc;
mod inputs;
mod watchdog;

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Once, OnceLock};
use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rune::model::fuzz::{TARGETS, Target};

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                fuzz(stringify!($name));
            }
        )*

        /// The tests above, to check against the harness's list.
        const TESTED: &[&str] = &[$(stringify!($name)),*];
    };
}

targets!(
    spec_yaml,
    spec_json,
    stored_service,
    cast_file,
    operation,
    status,
    instance_record,
    revision,
    instance_status,
    node,
    endpoints,
    duration,
    quantity,
);

#[test]
fn every_harness_target_has_a_test_and_a_corpus() {
    let harness: Vec<_> = TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(harness, TESTED);
    for name in TESTED {
        let dir = inputs::corpus_dir().join(name);
        let files = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        assert!(files > 0, "{} has no seed files", dir.display());
    }
}

fn env_f64(name: &str) -> Option<f64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

/// Per-case time limit.
pub fn case_limit() -> Duration {
    Duration::from_secs_f64(env_f64("RUNE_FUZZ_CASE_SECONDS").unwrap_or(2.0))
}

fn case_memory_cap() -> usize {
    (env_f64("RUNE_FUZZ_CASE_MIB").unwrap_or(512.0) * (1 << 20) as f64) as usize
}

/// When this target must stop generating cases.
fn deadline(started: Instant) -> Instant {
    if let Some(s) = env_f64("RUNE_FUZZ_TARGET_SECONDS") {
        return started + Duration::from_secs_f64(s);
    }
    static FIRST: OnceLock<Instant> = OnceLock::new();
    let first = *FIRST.get_or_init(|| started);
    let total = Duration::from_secs_f64(env_f64("RUNE_FUZZ_SECONDS").unwrap_or(60.0));
    let threads = std::env::var("RUST_TEST_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .max(1);
    let rounds = TARGETS.len().div_ceil(threads) as u32;
    (started + total / rounds).min(first + total)
}

fn seed() -> u64 {
    match std::env::var("RUNE_FUZZ_SEED") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("RUNE_FUZZ_SEED={v:?} is not a u64")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    }
}

fn rng(seed: u64) -> TestRng {
    // splitmix64 to fill ChaCha's 32-byte seed.
    let mut x = seed;
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(8) {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Keeps each panic's message and place for the report; prints it (the default
/// hook) except while shrinking, when hundreds of expected panics would bury it.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            LAST_PANIC.with(|p| *p.borrow_mut() = info.to_string());
            if !QUIET.with(Cell::get) {
                default(info);
            }
        }));
    });
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Kind {
    Panic,
    Slow,
    Memory,
}

struct Failure {
    kind: Kind,
    what: String,
}

#[derive(Default)]
struct Stats {
    accepted: u64,
    slowest: Duration,
    slowest_label: String,
    most_memory: usize,
}

/// Runs one case under the guards.
fn guarded(
    name: &'static str,
    label: &str,
    input: &[u8],
    target: Target,
    stats: &mut Stats,
) -> Result<(), Failure> {
    let shared: Arc<[u8]> = Arc::from(input);
    watchdog::begin(name, label, shared);
    let mem = alloc::case_start();
    let t0 = Instant::now();
    let result = panic::catch_unwind(AssertUnwindSafe(|| target(input)));
    let took = t0.elapsed();
    let grew = alloc::growth(mem);
    watchdog::end();
    if took > stats.slowest {
        stats.slowest = took;
        stats.slowest_label = label.to_string();
    }
    stats.most_memory = stats.most_memory.max(grew);
    stats.accepted += u64::from(matches!(result, Ok(true)));
    if result.is_err() {
        let what = LAST_PANIC.with(|p| p.borrow().clone());
        return Err(Failure {
            kind: Kind::Panic,
            what,
        });
    }
    if took > case_limit() {
        return Err(Failure {
            kind: Kind::Slow,
            what: format!("took {took:?} (limit {:?})", case_limit()),
        });
    }
    if grew > case_memory_cap() {
        return Err(Failure {
            kind: Kind::Memory,
            what: format!(
                "grew the heap by {} MiB (cap {} MiB)",
                grew >> 20,
                case_memory_cap() >> 20
            ),
        });
    }
    Ok(())
}

fn fuzz(name: &'static str) {
    let target = rune::model::fuzz::target(name).expect("a harness target");
    install_panic_hook();
    let started = Instant::now();
    let mut stats = Stats::default();
    let mut failures = Vec::new();

    let seeds = inputs::corpus(name);
    for seed in &seeds {
        if let Err(f) = guarded(name, &seed.label, &seed.bytes, target, &mut stats) {
            failures.push(report(name, &seed.label, &seed.bytes, None, f));
        }
    }
    let corpus_took = started.elapsed();

    let seed = seed();
    let deadline = deadline(started);
    let strategy = inputs::strategy(&seeds);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng(seed));
    let mut generated = 0u64;
    while failures.is_empty() && Instant::now() < deadline {
        let mut tree = strategy.new_tree(&mut runner).expect("strategy generates");
        let input = tree.current();
        generated += 1;
        let label = format!("generated case {generated} (RUNE_FUZZ_SEED={seed})");
        if let Err(f) = guarded(name, &label, &input, target, &mut stats) {
            let small = shrink(name, &mut tree, target, f.kind);
            failures.push(report(name, &label, &input, Some(&small), f));
        }
    }
    eprintln!(
        "fuzz {name}: {} corpus files in {corpus_took:.2?}, {generated} generated cases in \
         {:.2?} (seed {seed}), {} inputs accepted; slowest case {:.2?} ({}), most heap \
         growth {} KiB",
        seeds.len(),
        started.elapsed() - corpus_took,
        stats.accepted,
        stats.slowest,
        stats.slowest_label,
        stats.most_memory >> 10,
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Shrinks a failing generated input while it fails the same way (at most 20 s).
fn shrink(
    name: &'static str,
    tree: &mut impl ValueTree<Value = Vec<u8>>,
    target: Target,
    kind: Kind,
) -> Vec<u8> {
    QUIET.with(|q| q.set(true));
    let mut best = tree.current();
    let until = Instant::now() + Duration::from_secs(20);
    let mut scratch = Stats::default();
    while Instant::now() < until && tree.simplify() {
        let candidate = tree.current();
        let fails = matches!(
            guarded(name, "shrinking", &candidate, target, &mut scratch),
            Err(f) if f.kind == kind
        );
        if fails {
            best = candidate;
        } else if !tree.complicate() {
            break;
        }
    }
    QUIET.with(|q| q.set(false));
    best
}

fn report(name: &str, label: &str, input: &[u8], shrunk: Option<&[u8]>, f: Failure) -> String {
    let kind = match f.kind {
        Kind::Panic => "panicked",
        Kind::Slow => "too slow",
        Kind::Memory => "too much memory",
    };
    let mut s = format!(
        "fuzz {name}: {label}: {kind}: {}\n  input ({} bytes) saved to {}\n  {}",
        f.what,
        input.len(),
        watchdog::save(name, input).display(),
        watchdog::preview(input)
    );
    if let Some(small) = shrunk.filter(|s| *s != input) {
        s += &format!(
            "\n  shrunk ({} bytes) saved to {}\n  {}",
            small.len(),
            watchdog::save(name, small).display(),
            watchdog::preview(small)
        );
    }
    s
}
