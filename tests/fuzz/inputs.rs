//! Inputs for the fuzz targets: the seed corpus committed in `tests/fuzz-corpus/`
//! (`common/` for every target, `<target>/` for one), and the proptest strategy that
//! generates more: arbitrary bytes, a soup of YAML/JSON tokens and tricky scalars,
//! byte-level mutations of corpus files (bit flips, byte changes, inserted tokens,
//! deletions, duplications, splices of two files, truncation), and structured ones
//! that keep the syntax valid so the decoders' types and rules get exercised: a
//! corpus file read as a document, values replaced by edge cases (huge and negative
//! numbers, absurd durations, timestamps at the calendar's ends, wrong types), keys
//! and elements dropped or repeated, written back as JSON or YAML.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

/// One corpus file: its path under the corpus dir, and its bytes.
pub struct Seed {
    pub label: String,
    pub bytes: Vec<u8>,
}

pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus")
}

/// `common/*` then `<target>/*`, each sorted by name.
pub fn corpus(target: &str) -> Vec<Seed> {
    let mut seeds = Vec::new();
    for dir in ["common", target] {
        let path = corpus_dir().join(dir);
        let mut files: Vec<_> = std::fs::read_dir(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .map(|e| e.expect("corpus entry").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for f in files {
            let bytes = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let label = format!("{dir}/{}", f.file_name().unwrap().to_string_lossy());
            seeds.push(Seed { label, bytes });
        }
    }
    seeds
}

/// Pieces the token soup is made of and mutations insert: YAML and JSON syntax,
/// anchors, aliases, merge keys, tags, the spec's field names, and scalars at the
/// edges of what the types hold.
#[rustfmt::skip]
const TOKENS: &[&[u8]] = &[
    b"{", b"}", b"[", b"]", b":", b": ", b",", b"- ", b"\n", b"\r\n", b"\r", b"  ", b"\t",
    b"&a ", b"&b ", b"*a", b"*b", b"<<: ", b"<<: *a", b"---\n", b"...\n", b"? ", b"|\n",
    b">-\n", b"|+\n", b"\"", b"'", b"#", b"%YAML 1.2\n", b"%TAG ! tag:x,2000:\n", b"!!str ",
    b"!!int ", b"!!binary ", b"!!map ", b"!!seq ", b"!!null ", b"!x ", b"!<tag:x> ",
    b"service:", b"services:", b"name: a", b"namespace: b", b"command: x", b"command: [x]",
    b"args:", b"env:", b"workingDir:", b"ports:", b"- name: http", b"port:", b"health:",
    b"readiness:", b"liveness:", b"type: http", b"type: tcp", b"type: exec", b"path: /",
    b"intervalSeconds:", b"timeoutSeconds:", b"failureThreshold:", b"restartPolicy: Never",
    b"stopGracePeriod:", b"scaling:", b"mode: gradual", b"step:", b"interval:",
    b"rollbackOnFail:", b"scale:", b"\"interval\":", b"\"timeout\":", b"\"from\":",
    b"\"to\":", b"\"step\":", b"\"stepSize\":", b"\"spec\":", b"\"phase\":",
    b"\"requestedAt\":", b"\"deadline\":", b"0", b"1", b"-1", b"65535", b"65536",
    b"4294967295", b"4294967296", b"18446744073709551615", b"18446744073709551616",
    b"-9223372036854775809", b"1e309", b"-0", b"0x10", b"0o17", b"1_000", b".inf", b".nan",
    b"~", b"null", b"true", b"no", b"y", b"30s", b"1h30m", b"300000000000y",
    b"584942417355y", b"18446744073709551615s", b"1ns", b"0s", b"\"2026-01-01T00:00:00Z\"",
    b"\"-009999-01-01T00:00:00Z\"", b"\"9999-12-30T22:00:00Z\"", b"\"+10000-01-01T00:00:00Z\"",
    b"\\u0000", b"\\ud800", b"\\", b"\xef\xbb\xbf", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\0",
    b"\xe2\x80\xa8", b"\xc2\x85",
];

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    InsertToken(Index, Index),
    InsertBytes(Index, Vec<u8>),
    Delete(Index, u8),
    Duplicate(Index, u8, u8),
    Splice(Index, Index, Index, u16),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        4 => (any::<Index>(), any::<Index>()).prop_map(|(i, t)| Mutation::InsertToken(i, t)),
        1 => (any::<Index>(), vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::InsertBytes(i, b)),
        2 => (any::<Index>(), 1u8..32).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => (any::<Index>(), 1u8..64, 1u8..16).prop_map(|(i, n, k)| Mutation::Duplicate(i, n, k)),
        2 => (any::<Index>(), any::<Index>(), any::<Index>(), 1u16..512)
            .prop_map(|(o, f, a, n)| Mutation::Splice(o, f, a, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

/// Largest input that the generated cases grow to.
const MAX_LEN: usize = 1 << 16;

fn apply(mut b: Vec<u8>, ms: &[Mutation], pool: &[Arc<[u8]>]) -> Vec<u8> {
    let at = |i: &Index, b: &Vec<u8>| i.index(b.len() + 1);
    for m in ms {
        match m {
            Mutation::FlipBit(i, bit) if !b.is_empty() => {
                let k = i.index(b.len());
                b[k] ^= 1 << bit;
            }
            Mutation::SetByte(i, v) if !b.is_empty() => {
                let k = i.index(b.len());
                b[k] = *v;
            }
            Mutation::InsertToken(i, t) => {
                let k = at(i, &b);
                b.splice(k..k, TOKENS[t.index(TOKENS.len())].iter().copied());
            }
            Mutation::InsertBytes(i, bytes) => {
                let k = at(i, &b);
                b.splice(k..k, bytes.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let k = at(i, &b);
                let end = (k + *n as usize).min(b.len());
                b.drain(k..end);
            }
            Mutation::Duplicate(i, n, times) => {
                let k = at(i, &b);
                let end = (k + *n as usize).min(b.len());
                let chunk = b[k..end].to_vec();
                for _ in 0..*times {
                    b.splice(end..end, chunk.iter().copied());
                }
            }
            Mutation::Splice(other, from, i, n) => {
                let o = &pool[other.index(pool.len())];
                let f = from.index(o.len() + 1);
                let end = (f + *n as usize).min(o.len());
                let k = at(i, &b);
                b.splice(k..k, o[f..end].iter().copied());
            }
            Mutation::Truncate(i) => {
                let k = at(i, &b);
                b.truncate(k);
            }
            _ => {}
        }
        b.truncate(MAX_LEN);
    }
    b
}

/// Values structured mutations put in a document.
fn edge_values() -> Vec<Value> {
    use serde_json::json;
    vec![
        json!(0),
        json!(1),
        json!(-1),
        json!(65535),
        json!(65536),
        json!(u32::MAX),
        json!(u32::MAX as u64 + 1),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1.5),
        json!(1e300),
        json!(""),
        json!(" "),
        json!("x"),
        json!("30s"),
        json!("0s"),
        json!("300000000000y"),
        json!("584942417355y"),
        json!("18446744073709551615s"),
        json!("2026-01-01T00:00:00Z"),
        json!("-009999-01-02T01:59:59Z"),
        json!("9999-12-30T22:00:00.999999999Z"),
        json!("+99999-01-01T00:00:00Z"),
        json!("http"),
        json!("/"),
        json!("exec"),
        json!("gradual"),
        json!("Running"),
        json!("Stopped"),
        json!(null),
        json!(true),
        json!([]),
        json!(["x"]),
        json!({}),
        json!({"name": "p"}),
    ]
    .into_iter()
    .chain(TRICKY_STRINGS.iter().map(|s| json!(s)))
    .collect()
}

/// Strings that a YAML writer must quote or escape to read back the same.
#[rustfmt::skip]
const TRICKY_STRINGS: &[&str] = &[
    "null", "~", "Null", "true", "False", "yes", "no", "on", "y", "1e3", "0x10", "0o17",
    "1_000", "-", "- a", "a: b", "a:b", "a #b", "#c", "&a", "*a", "!t", "!!str", "|", ">",
    "'", "\"", "\\", "\n", "a\nb", "a\n", " lead", "trail ", "\t", "\r", "\u{feff}",
    "\u{85}", "\u{2028}", "---", "...", "--- a", "@", "`", "%", "{", "[", "]", "}", ",",
    "?", "? a", "😀", "\u{0}", "\u{7f}", "\u{1b}[31m", "<<", "=", ".inf", ".NaN", "-.5",
    "+1", "007", "0", "-0", "1:30", "2026-01-01", "2026-01-01T00:00:00Z", "${PORT}",
];

#[derive(Debug, Clone)]
enum Edit {
    Replace(Index, Index),
    RemoveKey(Index),
    RepeatElement(Index),
    RenameKey(Index, Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        6 => (any::<Index>(), any::<Index>()).prop_map(|(p, v)| Edit::Replace(p, v)),
        2 => any::<Index>().prop_map(Edit::RemoveKey),
        1 => any::<Index>().prop_map(Edit::RepeatElement),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(p, t)| Edit::RenameKey(p, t)),
    ]
}

/// Paths to every value in `v`, parents before children.
fn paths(v: &Value, here: &mut Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                here.push(PathStep::Key(k.clone()));
                paths(child, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                here.push(PathStep::At(i));
                paths(child, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum PathStep {
    Key(String),
    At(usize),
}

fn at<'v>(v: &'v mut Value, path: &[PathStep]) -> Option<&'v mut Value> {
    path.iter().try_fold(v, |v, step| match step {
        PathStep::Key(k) => v.get_mut(k.as_str()),
        PathStep::At(i) => v.get_mut(*i),
    })
}

fn apply_edits(mut doc: Value, edits: &[Edit], values: &[Value]) -> Value {
    for e in edits {
        let mut all = Vec::new();
        paths(&doc, &mut Vec::new(), &mut all);
        let pick = |i: &Index| all[i.index(all.len())].clone();
        match e {
            Edit::Replace(p, v) => {
                if let Some(slot) = at(&mut doc, &pick(p)) {
                    *slot = values[v.index(values.len())].clone();
                }
            }
            Edit::RemoveKey(p) => {
                let path = pick(p);
                if let Some((PathStep::Key(k), parent)) = path.split_last()
                    && let Some(Value::Object(m)) = at(&mut doc, parent)
                {
                    m.remove(k);
                }
            }
            Edit::RepeatElement(p) => {
                let path = pick(p);
                if let Some((PathStep::At(i), parent)) = path.split_last()
                    && let Some(Value::Array(a)) = at(&mut doc, parent)
                {
                    let copy = a[*i].clone();
                    a.insert(*i, copy);
                }
            }
            Edit::RenameKey(p, t) => {
                let path = pick(p);
                if let Some((PathStep::Key(k), parent)) = path.split_last()
                    && let Some(Value::Object(m)) = at(&mut doc, parent)
                    && let Some(v) = m.remove(k)
                {
                    let token = String::from_utf8_lossy(TOKENS[t.index(TOKENS.len())]);
                    m.insert(token.trim_matches([':', ' ', '"']).to_string(), v);
                }
            }
        }
    }
    doc
}

/// A corpus file as a document, and whether it was JSON.
fn document(bytes: &[u8]) -> Option<(Value, bool)> {
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        return Some((v, true));
    }
    let text = std::str::from_utf8(bytes).ok()?;
    // Alias-heavy files expand; their documents are not worth rewriting.
    if text.contains('*') && text.contains('&') {
        return None;
    }
    let v: Value = serde_saphyr::from_str(text).ok()?;
    matches!(v, Value::Object(_)).then_some((v, false))
}

/// Generated inputs for one target, mutating `seeds` (files above 16 KiB only run as
/// themselves: mutating them costs more than it finds).
pub fn strategy(seeds: &[Seed]) -> BoxedStrategy<Vec<u8>> {
    let pool: Arc<Vec<Arc<[u8]>>> = Arc::new(
        seeds
            .iter()
            .filter(|s| s.bytes.len() <= 16 << 10)
            .map(|s| Arc::from(s.bytes.as_slice()))
            .collect(),
    );
    assert!(!pool.is_empty(), "no corpus file small enough to mutate");
    let arbitrary = vec(any::<u8>(), 0..512);
    let soup = vec(any::<Index>(), 0..64).prop_map(|ts| {
        ts.iter()
            .flat_map(|t| TOKENS[t.index(TOKENS.len())].iter().copied())
            .collect::<Vec<u8>>()
    });
    let mutated = (any::<Index>(), vec(mutation(), 1..8))
        .prop_map(move |(i, ms)| apply(pool[i.index(pool.len())].to_vec(), &ms, &pool));
    let docs: Arc<Vec<(Value, bool)>> = Arc::new(
        seeds
            .iter()
            .filter(|s| s.bytes.len() <= 16 << 10)
            .filter_map(|s| document(&s.bytes))
            .collect(),
    );
    if docs.is_empty() {
        return prop_oneof![1 => arbitrary, 2 => soup, 7 => mutated].boxed();
    }
    let values = Arc::new(edge_values());
    let structured = (any::<Index>(), vec(edit(), 1..4), 0u8..4).prop_map(move |(i, es, fmt)| {
        let (doc, json) = &docs[i.index(docs.len())];
        let doc = apply_edits(doc.clone(), &es, &values);
        // Mostly the seed's own format; a quarter of the time the other one.
        if *json == (fmt != 0) {
            serde_json::to_vec(&doc).expect("values serialize")
        } else {
            serde_saphyr::to_string(&doc)
                .map(String::into_bytes)
                .unwrap_or_default()
        }
    });
    prop_oneof![1 => arbitrary, 2 => soup, 4 => mutated, 4 => structured].boxed()
}
