//! Fuzz harness: one entry point per decoder of a value rune stores in etcd or reads
//! from a user (spec YAML and JSON, the stored spec, cast files, operation records,
//! status, instance records and statuses, node records, durations, quantities).
//!
//! Each takes arbitrary bytes, runs the decoder the programs run, and asserts what
//! must hold for every input: no panic; what parses is valid and round-trips through
//! its serialized forms (JSON as stored, YAML as `rune get -o yaml` prints it); what
//! is rejected says where (line and column) when the decoder promises it. The methods
//! the CLI and the controller call on a decoded record are called too: a record that
//! decodes and then panics the controller is as bad as one that panics the decoder.
//!
//! Driven on stable by `tests/fuzz/` (the seed corpus in `tests/fuzz-corpus/`, a
//! bounded time, part of `make test`) and on nightly by the cargo-fuzz targets in
//! `fuzz/`. Not API: hidden from the docs, but public so both can reach it.

use std::borrow::Cow;
use std::fmt::Debug;

use jiff::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::document::{self, SpecError, StoredService, parse_cast_file};
use super::duration;
use super::instance::{InstanceRecord, InstanceStatus};
use super::limits;
use super::names::check_dns_label;
use super::node::NodeRecord;
use super::operation::{BASE_TIMEOUT, OperationProgress, OperationRecord, ScalePlan};
use super::refs::{InstanceRef, ServiceRef};
use super::revision::Revision;
use super::spec::{ScaleMode, ServiceSpec};
use super::status::{ConditionKind, ConditionStatus, HISTORY_LIMIT, ServiceStatus};

/// A fuzz target: panics when an invariant breaks; says whether the decoder took the
/// input (how deep a run got, for its statistics).
pub type Target = fn(&[u8]) -> bool;

/// Every target, by the name its corpus directory and test carry.
pub const TARGETS: &[(&str, Target)] = &[
    ("spec_yaml", spec_yaml),
    ("spec_json", spec_json),
    ("stored_service", stored_service),
    ("cast_file", cast_file),
    ("operation", operation),
    ("status", status),
    ("instance_record", instance_record),
    ("revision", revision),
    ("instance_status", instance_status),
    ("node", node),
    ("endpoints", endpoints),
    ("duration", duration),
    ("quantity", quantity),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// A bare spec document in YAML (`name:`, `command:`, ... at the top). Its errors
/// need not be located: the cross-field checks run when the spec's mapping ends,
/// which for a bare spec is the end of the input (users' and stored specs sit
/// under `service:`, whose errors are located; see [`cast_file`]).
pub fn spec_yaml(bytes: &[u8]) -> bool {
    let text = lossy(bytes);
    match document::parse_yaml::<ServiceSpec>("fuzz.yaml", &text) {
        Ok(spec) => check_spec_round_trips(&spec),
        Err(e) => check_error(&e, "fuzz.yaml", &text),
    }
}

/// A bare spec in JSON, as instance records carry it (errors need not be located,
/// as for [`spec_yaml`]).
pub fn spec_json(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(text) => match document::parse_json::<ServiceSpec>("fuzz.json", text) {
            Ok(spec) => check_spec_round_trips(&spec),
            Err(e) => check_error(&e, "fuzz.json", text),
        },
        // Invalid UTF-8 can only sit in a string (an error) or outside (a syntax error).
        Err(_) => {
            let parsed = serde_json::from_slice::<ServiceSpec>(bytes);
            assert!(parsed.is_err(), "non-UTF-8 JSON parsed");
            false
        }
    }
}

const STORED_KEY: &str = "services/default/fuzz";

/// The value under `services/default/fuzz`, YAML or JSON, as the controller and the
/// CLI read it.
pub fn stored_service(bytes: &[u8]) -> bool {
    match StoredService::parse(STORED_KEY, bytes, "default", "fuzz") {
        Ok(stored) => {
            assert_eq!(
                (stored.service.namespace(), stored.service.name()),
                ("default", "fuzz")
            );
            check_spec(&stored.service);
            let json = stored.to_json();
            let back = StoredService::parse(STORED_KEY, json.as_bytes(), "default", "fuzz")
                .unwrap_or_else(|e| panic!("stored JSON does not parse back: {e}\n{json}"));
            assert_eq!(back, stored, "stored JSON round trip\n{json}");
            let yaml = to_yaml(&stored);
            let back = StoredService::parse(STORED_KEY, yaml.as_bytes(), "default", "fuzz")
                .unwrap_or_else(|e| panic!("stored YAML does not parse back: {e}\n{yaml}"));
            assert_eq!(back, stored, "stored YAML round trip\n{yaml}");
            true
        }
        Err(e) => {
            let text = lossy(bytes);
            if std::str::from_utf8(bytes).is_err() {
                assert!(e.message.starts_with("not UTF-8"), "{e:?}");
                check_error(&e, STORED_KEY, &text)
            } else if text.trim_start().starts_with('{') || e.message.contains("stored under") {
                check_error(&e, STORED_KEY, &text)
            } else {
                check_yaml_error(&e, STORED_KEY, &text)
            }
        }
    }
}

/// A file given to `rune cast`: `service:`, `services:`, several documents, or JSON.
pub fn cast_file(bytes: &[u8]) -> bool {
    let text = lossy(bytes);
    match parse_cast_file("fuzz.yaml", &text) {
        Ok(specs) => {
            assert!(!specs.is_empty(), "a cast file parsed to no services");
            // Each spec from YAML here, all of them from JSON below.
            for s in &specs {
                check_spec(s);
                check_spec_yaml_round_trip(s);
            }
            #[derive(Serialize)]
            struct File<'a> {
                services: &'a [ServiceSpec],
            }
            let json = serde_json::to_string(&File { services: &specs }).expect("serializes");
            let back = parse_cast_file("roundtrip.json", &json)
                .unwrap_or_else(|e| panic!("cast file as JSON does not parse back: {e}"));
            assert_eq!(back, specs, "cast file JSON round trip");
            true
        }
        Err(e) => {
            if text.trim_start().starts_with('{') {
                check_error(&e, "fuzz.yaml", &text)
            } else {
                check_yaml_error(&e, "fuzz.yaml", &text)
            }
        }
    }
}

/// `operations/<ns>/<name>`: the record the CLI writes and the controller takes up.
pub fn operation(bytes: &[u8]) -> bool {
    let Some(op) = json::<OperationRecord>(bytes) else {
        return false;
    };
    json_round_trip(&op);
    exercise_plan(&op.plan());
    let _ = op.reason();
    // A timeout past the calendar's end is over only there (not at once).
    let endless = op.requested_at.checked_add(op.timeout).is_err();
    for now in moments(&[op.requested_at]) {
        let before_the_end = now < Timestamp::MAX;
        assert!(
            !(endless && before_the_end && op.expired(now)),
            "{op:?} expired at {now}"
        );
        for current in [0, 1, op.from, op.to, u32::MAX] {
            let _ = op.deadline(current, now);
            assert!(op.timeout_from(current) >= op.timeout);
            let progress = op.start(7, current, &["a-1".to_string()], now);
            exercise_progress(&progress);
        }
    }
    true
}

/// `status/<ns>/<name>`: what the controller wrote, read back by the next leader.
pub fn status(bytes: &[u8]) -> bool {
    let Some(st) = json::<ServiceStatus>(bytes) else {
        return false;
    };
    json_round_trip(&st);
    for kind in [
        ConditionKind::Available,
        ConditionKind::Progressing,
        ConditionKind::ReplicaFailure,
        ConditionKind::SpecInvalid,
        ConditionKind::Terminating,
        ConditionKind::NodeLost,
        ConditionKind::RecordsInvalid,
    ] {
        let _ = st.is_true(kind);
    }
    let _ = st.running_operation();
    let mut next = st.clone();
    if let Some(op) = &st.operation {
        exercise_progress(op);
        next.record_history(op, "fuzz");
        assert!(next.history.len() <= HISTORY_LIMIT);
    }
    let at = st.last_scale_at.unwrap_or(Timestamp::UNIX_EPOCH);
    next.set_condition(
        ConditionKind::Available,
        ConditionStatus::True,
        "Fuzz",
        "fuzz",
        at,
    );
    assert!(next.is_true(ConditionKind::Available));
    true
}

/// `instances/<ns>/<svc>/<id>`: the controller's intent, read by agents.
pub fn instance_record(bytes: &[u8]) -> bool {
    // The decoder the controller and agents call (it explains old-layout records).
    let Ok(rec) = InstanceRecord::parse(bytes) else {
        return false;
    };
    json_round_trip(&rec);
    let r = ServiceRef::new(&rec.namespace, &rec.service).instance(&rec.id);
    let _ = r.file_name();
    let _ = InstanceRef::parse(&r.to_string());
    true
}

/// `revisions/<ns>/<svc>/<n>`: a spec revision, resolved by agents.
pub fn revision(bytes: &[u8]) -> bool {
    let Some(rev) = json::<Revision>(bytes) else {
        return false;
    };
    check_spec(&rev.spec);
    json_round_trip(&rev);
    true
}

/// `instance-status/<ns>/<svc>/<id>`: an agent's report.
pub fn instance_status(bytes: &[u8]) -> bool {
    let Some(st) = json::<InstanceStatus>(bytes) else {
        return false;
    };
    json_round_trip(&st);
    let _ = (st.phase.is_live(), st.phase.to_string());
    if let Some(exit) = &st.last_exit {
        assert!(!exit.to_string().is_empty());
    }
    true
}

/// `nodes/<node>`: an agent's registration.
pub fn node(bytes: &[u8]) -> bool {
    let Some(n) = json::<NodeRecord>(bytes) else {
        return false;
    };
    json_round_trip(&n);
    true
}

/// `endpoints/<ns>/<svc>`: the controller's list of ready instances, read by the
/// CLI, the controller itself and load balancers.
pub fn endpoints(bytes: &[u8]) -> bool {
    let Some(e) = json::<super::endpoints::Endpoints>(bytes) else {
        return false;
    };
    json_round_trip(&e);
    for one in &e.endpoints {
        let any = one.socket(None);
        assert_eq!(any.is_some(), !one.ports.is_empty(), "{one:?}");
        for name in one.ports.keys() {
            let socket = one.socket(Some(name)).expect("a named port has a socket");
            assert!(socket.ends_with(&one.ports[name].to_string()), "{socket}");
        }
    }
    true
}

/// A duration as a flag (`--interval`, `--timeout`) or a spec field
/// (`stopGracePeriod`, `scaling.interval`) gives it, and what it is used for.
pub fn duration(bytes: &[u8]) -> bool {
    // Flags reach `parse` only as UTF-8 (clap), fields only as decoded strings.
    let Ok(s) = std::str::from_utf8(bytes) else {
        return false;
    };
    let parsed = duration::parse(s);
    match parsed {
        Ok(d) => {
            let f = duration::format(d);
            assert!(!f.contains(' '), "{f:?}");
            assert_eq!(
                duration::parse(&f),
                Ok(d),
                "format {f:?} does not parse back"
            );
            for ts in moments(&[]) {
                assert!(duration::add(ts, d) >= ts);
            }
            for (from, to) in [(0, 3), (3, 0), (0, u32::MAX), (u32::MAX, 0)] {
                exercise_plan(&ScalePlan {
                    mode: ScaleMode::Gradual,
                    from,
                    to,
                    step: 1,
                    interval: d,
                });
            }
        }
        Err(ref e) => assert!(e.contains("30s"), "{e}"),
    }
    // The same text in both duration fields of a spec, as YAML and as JSON.
    let q = yaml_quote(s);
    let yaml = format!(
        "name: d\ncommand: x\nstopGracePeriod: {q}\nscaling: {{mode: gradual, interval: {q}}}\n"
    );
    let json = format!(
        r#"{{"name":"d","command":"x","stopGracePeriod":{q},"scaling":{{"interval":{q}}}}}"#
    );
    for (what, spec) in [
        ("yaml", document::parse_yaml::<ServiceSpec>("d.yaml", &yaml)),
        ("json", document::parse_json::<ServiceSpec>("d.json", &json)),
    ] {
        match (&parsed, spec) {
            // Past the smaller of the two bounds (stopGracePeriod's), the spec
            // refuses it, naming the bound.
            (Ok(d), Err(e)) if *d > limits::MAX_STOP_GRACE => {
                assert!(e.message.contains("over the limit"), "{what}: {e}")
            }
            (Ok(d), Ok(spec)) => {
                assert!(
                    *d <= limits::MAX_STOP_GRACE,
                    "{what}: {s:?} past its bound accepted"
                );
                assert_eq!(spec.stop_grace_period, *d, "{what}");
                assert_eq!(spec.scaling_defaults().interval, *d, "{what}");
                check_spec_round_trips(&spec);
            }
            (Err(_), Err(e)) => assert!(e.message.contains("invalid duration"), "{what}: {e}"),
            (Ok(d), Err(e)) => panic!("{what}: {s:?} parses as {d:?} alone but not in a spec: {e}"),
            (Err(e), Ok(_)) => panic!("{what}: {s:?} is rejected alone ({e}) but not in a spec"),
        }
    }
    parsed.is_ok()
}

/// A number of replicas, a port, a step or a probe setting, as written in a spec. A
/// canonical decimal must mean exactly itself: accepted when in range, rejected (not
/// wrapped, not clamped) when not.
pub fn quantity(bytes: &[u8]) -> bool {
    let text = lossy(bytes);
    let s = text.as_ref();
    let canonical = canonical_int(s);
    let cases: [(&str, &str, i128, i128); 7] = [
        ("scale", "scale: {s}\n", 0, limits::MAX_SCALE as i128),
        (
            "port",
            "ports:\n  - name: p\n    port: {s}\n",
            0,
            u16::MAX as i128,
        ),
        (
            "probe port",
            "health:\n  readiness:\n    type: tcp\n    port: {s}\n",
            1,
            u16::MAX as i128,
        ),
        (
            "step",
            "scaling:\n  step: {s}\n",
            1,
            limits::MAX_SCALE as i128,
        ),
        (
            "intervalSeconds",
            "health:\n  readiness:\n    type: exec\n    command: [x]\n    intervalSeconds: {s}\n",
            1,
            limits::MAX_PROBE_SECONDS as i128,
        ),
        (
            "pids",
            "resources:\n  pids: {s}\n",
            1,
            limits::MAX_PIDS as i128,
        ),
        (
            "memory",
            "resources:\n  memory: {s}\n",
            limits::MIN_MEMORY as i128,
            limits::MAX_MEMORY as i128,
        ),
    ];
    let mut accepted = false;
    for (field, tail, lo, hi) in cases {
        let yaml = format!("name: q\ncommand: x\n{}", tail.replace("{s}", s));
        let got = document::parse_yaml::<ServiceSpec>("q.yaml", &yaml);
        if let Ok(spec) = &got {
            accepted |= check_spec_round_trips(spec);
        }
        if let Some(n) = canonical {
            let value = got.as_ref().ok().and_then(|spec| quantity_of(spec, field));
            if (lo..=hi).contains(&n) {
                assert_eq!(value, Some(n), "{field}: {s:?} not read as {n}: {got:?}");
            } else {
                assert!(
                    got.is_err(),
                    "{field}: {s:?} out of range but accepted: {got:?}"
                );
            }
        }
    }
    let json = format!(r#"{{"name":"q","command":"x","scale":{s}}}"#);
    let got = document::parse_json::<ServiceSpec>("q.json", &json);
    if let Ok(spec) = &got {
        check_spec_round_trips(spec);
    }
    if let Some(n) = canonical {
        let value = got
            .as_ref()
            .ok()
            .and_then(|spec| quantity_of(spec, "scale"));
        if (0..=limits::MAX_SCALE as i128).contains(&n) {
            assert_eq!(value, Some(n), "json scale {s:?}: {got:?}");
        } else {
            assert!(got.is_err(), "json scale {s:?} out of range but accepted");
        }
    }
    accepted
}

/// `s` as a plain decimal integer (`0`, `42`, `-7`; no sign on zero, no leading
/// zeros, no spaces), if it is one.
fn canonical_int(s: &str) -> Option<i128> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let plain = !digits.is_empty()
        && digits.len() <= 30
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && s != "-0";
    plain.then(|| s.parse().ok()).flatten()
}

fn quantity_of(spec: &ServiceSpec, field: &str) -> Option<i128> {
    let probe = || spec.health.readiness.as_ref();
    match field {
        "scale" => spec.scale.map(i128::from),
        "port" => spec.ports.first().and_then(|p| p.port).map(i128::from),
        "probe port" => match probe()?.port.as_ref()? {
            super::spec::PortRef::Number(n) => Some(i128::from(*n)),
            super::spec::PortRef::Name(_) => None,
        },
        "step" => spec.scaling.as_ref().map(|s| i128::from(s.step)),
        "intervalSeconds" => probe().map(|p| i128::from(p.interval_seconds)),
        "pids" => spec.resources.as_ref()?.pids.map(i128::from),
        "memory" => spec.resources.as_ref()?.memory.map(|m| i128::from(m.0)),
        _ => None,
    }
}

/// What must hold for every spec a decoder accepts.
fn check_spec(s: &ServiceSpec) {
    if let Err(e) = s.validate() {
        panic!("a decoded spec fails validation: {e}");
    }
    check_dns_label("name", s.name()).expect("names are DNS labels");
    check_dns_label("namespace", s.namespace()).expect("namespaces are DNS labels");
    for p in &s.ports {
        check_dns_label("port name", p.name.as_str()).expect("port names are DNS labels");
    }
    if let Some(scaling) = &s.scaling {
        assert!(scaling.step >= 1, "step 0 accepted");
    }
    if let Some(placement) = &s.placement {
        super::node::check_labels(&placement.node_selector).expect("selectors are label maps");
        assert!(
            placement
                .max_per_node
                .is_none_or(|n| (1..=super::limits::MAX_SCALE).contains(&n))
        );
    }
    if let Some(d) = &s.disruption {
        assert!(d.min_available <= super::limits::MAX_SCALE);
    }
    for (_, p) in s.health.probes() {
        assert!(p.interval_seconds >= 1 && p.timeout_seconds >= 1);
        assert!(p.failure_threshold >= 1 && p.success_threshold >= 1);
    }
    if let Some(r) = &s.resources {
        let memory = limits::MIN_MEMORY..=limits::MAX_MEMORY;
        let cpu = limits::MIN_CPU_MILLIS..=limits::MAX_CPU_MILLIS;
        assert!(r.memory.is_none_or(|m| memory.contains(&m.0)), "{r:?}");
        assert!(r.cpu.is_none_or(|c| cpu.contains(&c.0)), "{r:?}");
        assert!(
            r.pids.is_none_or(|p| (1..=limits::MAX_PIDS).contains(&p)),
            "{r:?}"
        );
    }
}

/// [`check_spec`], and the spec comes back the same from JSON (as stored and
/// snapshotted into instance records) and from YAML (as `rune get -o yaml` prints it).
fn check_spec_round_trips(s: &ServiceSpec) -> bool {
    check_spec(s);
    let json = serde_json::to_string(s).expect("specs serialize");
    let back: ServiceSpec = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("spec JSON does not parse back: {e}\n{json}"));
    assert_eq!(&back, s, "spec JSON round trip\n{json}");
    check_spec_yaml_round_trip(s);
    true
}

fn check_spec_yaml_round_trip(s: &ServiceSpec) {
    let yaml = to_yaml(s);
    let back: ServiceSpec = document::parse_yaml("roundtrip.yaml", &yaml)
        .unwrap_or_else(|e| panic!("spec YAML does not parse back: {e}\n{yaml}"));
    assert_eq!(&back, s, "spec YAML round trip\n{yaml}");
}

/// What must hold for every rejection (false: the input was not taken).
fn check_error(e: &SpecError, source: &str, text: &str) -> bool {
    assert_eq!(e.source, source);
    assert!(
        !e.message.trim().is_empty(),
        "an error without a message: {e:?}"
    );
    // A line can be one past the last (the end of the input).
    let breaks = text.bytes().filter(|b| matches!(b, b'\n' | b'\r')).count() as u64;
    if let Some(line) = e.line {
        assert!(
            line >= 1 && line <= breaks + 2,
            "line {line} of {breaks} breaks: {e:?}"
        );
    }
    if let Some(column) = e.column {
        assert!(e.line.is_some(), "a column without a line: {e:?}");
        assert!(column >= 1 && column <= text.len() as u64 + 2, "{e:?}");
    }
    assert!(e.to_string().starts_with(source));
    false
}

/// A YAML rejection: located, unless it is one of the document-level messages that
/// have no single place (no services, a document with neither key).
fn check_yaml_error(e: &SpecError, source: &str, text: &str) -> bool {
    check_error(e, source, text);
    let whole_document = e.message == "no services in this file"
        || (e.message.starts_with("document ") && e.message.contains("expected `service:`"));
    assert!(
        whole_document || e.line.is_some(),
        "a YAML error without a line: {e:?}"
    );
    false
}

fn exercise_plan(plan: &ScalePlan) {
    let steps = plan.steps();
    assert!(steps >= 1);
    let _ = plan.length();
    assert!(plan.default_timeout() >= BASE_TIMEOUT);
    let (lo, hi) = (plan.from.min(plan.to), plan.from.max(plan.to));
    for step in [0, 1, 2, steps - 1, steps, steps.saturating_add(1), u32::MAX] {
        let t = plan.step_target(step);
        assert!((lo..=hi).contains(&t), "{plan:?} step {step} aims at {t}");
    }
    assert_eq!(
        plan.step_target(steps),
        plan.to,
        "{plan:?}: the last step ends at `to`"
    );
}

fn exercise_progress(p: &OperationProgress) {
    exercise_plan(&p.plan());
    let n = p.step_count();
    for step in [
        0,
        1,
        2,
        n.saturating_sub(1),
        n,
        n.saturating_add(1),
        p.step,
        u32::MAX,
    ] {
        let _ = p.target_of(step);
    }
    let _ = (p.hold(), p.next_step_at(), p.phase.is_terminal());
    assert_eq!(p.history_entry("fuzz").id, p.id);
}

/// Moments to evaluate deadlines at: the calendar's ends, the epoch, a fixed day,
/// and the record's own times.
fn moments(own: &[Timestamp]) -> Vec<Timestamp> {
    let mut v = vec![
        Timestamp::MIN,
        Timestamp::MAX,
        Timestamp::UNIX_EPOCH,
        Timestamp::from_second(1_767_225_600).expect("2026-01-01"),
    ];
    v.extend_from_slice(own);
    v
}

/// Stored records are JSON, decoded with `serde_json::from_slice` (`Kv::json`, the
/// controller's `parsed`).
fn json<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    match serde_json::from_slice(bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            None
        }
    }
}

fn json_round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(v: &T) {
    let json = serde_json::to_vec(v).expect("records serialize");
    let back: T = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!(
            "record JSON does not parse back: {e}\n{}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(&back, v, "record JSON round trip");
}

fn to_yaml<T: Serialize>(v: &T) -> String {
    serde_saphyr::to_string(v).expect("serializes to YAML")
}

/// What a file reader sees: `rune cast` refuses non-UTF-8 files, so the lossy text
/// stands in for them (it still exercises the parser on the rest).
fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// `s` as a YAML (and JSON) double-quoted scalar, everything but printable ASCII
/// escaped, so the text arrives exactly as it was.
fn yaml_quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            ' '..='~' => q.push(c),
            c if (c as u32) <= 0xFFFF => q.push_str(&format!("\\u{:04x}", c as u32)),
            c => {
                // A surrogate pair: what both YAML and JSON read.
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    q.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_ints() {
        assert_eq!(canonical_int("42"), Some(42));
        assert_eq!(canonical_int("-7"), Some(-7));
        assert_eq!(canonical_int("0"), Some(0));
        for not in ["", "-", "-0", "007", "+1", " 1", "1_000", "0x10", "1e3"] {
            assert_eq!(canonical_int(not), None, "{not}");
        }
    }

    #[test]
    fn quoting_survives_both_parsers() {
        for s in ["30s", "a\"b\\c", "\n\t\u{feff}\u{2028}😀", ""] {
            let q = yaml_quote(s);
            let y: String = serde_saphyr::from_str(&q).unwrap();
            let j: String = serde_json::from_str(&q).unwrap();
            assert_eq!((y.as_str(), j.as_str()), (s, s));
        }
    }

    #[test]
    fn every_target_runs_on_nothing() {
        for (name, t) in TARGETS {
            // An empty quantity is YAML's null: `scale:` alone keeps the live scale.
            assert_eq!(t(b""), *name == "quantity", "{name}");
        }
    }
}
