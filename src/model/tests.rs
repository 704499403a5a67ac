use super::*;

fn parse(text: &str) -> Result<Vec<ServiceSpec>, SpecError> {
    parse_cast_file("api.yaml", text)
}

const FULL: &str = r#"
service:
  name: api
  namespace: default
  scale: 3
  command: ["python3", "-m", "http.server", "--bind", "127.0.0.1", "${PORT}"]
  env: {LOG_LEVEL: info}
  workingDir: /srv/api
  ports:
    - name: http
  health:
    readiness: {type: http, port: http, path: /healthz, intervalSeconds: 1, timeoutSeconds: 1, failureThreshold: 3, successThreshold: 1, initialDelaySeconds: 0}
    liveness:  {type: tcp, port: http}
  restartPolicy: Always
  stopGracePeriod: 30s
  scaling:
    mode: immediate
    step: 1
    interval: 30s
    rollbackOnFail: true
"#;

#[test]
fn parses_the_contract_example() {
    let specs = parse(FULL).unwrap();
    assert_eq!(specs.len(), 1);
    let s = &specs[0];
    assert_eq!(s.name(), "api");
    assert_eq!(s.scale, Some(3));
    assert_eq!(s.ports[0].name.as_str(), "http");
    let r = s.health.readiness.as_ref().unwrap();
    assert_eq!(r.kind, ProbeKind::Http);
    assert_eq!(r.interval_seconds, 1);
    let l = s.health.liveness.as_ref().unwrap();
    assert_eq!(l.failure_threshold, 3, "kubernetes default");
    assert_eq!(s.stop_grace_period.as_secs(), 30);
}

#[test]
fn defaults_apply() {
    let s = &parse("service:\n  name: w\n  command: sleep 100\n").unwrap()[0];
    assert_eq!(s.namespace(), "default");
    assert_eq!(s.scale, None);
    assert_eq!(s.command, Command::Shell("sleep 100".into()));
    assert_eq!(s.restart_policy, RestartPolicy::Always);
    assert_eq!(s.scaling_defaults(), ScalingDefaults::default());
}

#[test]
fn services_list_and_multiple_documents() {
    let list = "services:\n  - {name: a, command: x}\n  - {name: b, command: y}\n";
    assert_eq!(parse(list).unwrap().len(), 2);
    let docs = "service: {name: a, command: x}\n---\nservice: {name: b, command: y}\n";
    let names: Vec<_> = parse(docs)
        .unwrap()
        .iter()
        .map(|s| s.name().to_string())
        .collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn json_files_parse_too() {
    let json = r#"{"service": {"name": "a", "command": ["sleep", "1"], "scale": 2}}"#;
    assert_eq!(parse(json).unwrap()[0].scale, Some(2));
}

fn error_of(text: &str) -> SpecError {
    parse(text).expect_err("should be rejected")
}

#[test]
fn unknown_field_names_line_and_column() {
    let e = error_of("service:\n  name: a\n  command: x\n  replicas: 3\n");
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.column.is_some(), "{e}");
    assert!(e.to_string().starts_with("api.yaml:4:"), "{e}");
    assert!(e.message.contains("replicas"), "{e}");
}

#[test]
fn bad_name_is_located() {
    let e = error_of("service:\n  name: My_Api\n  command: x\n");
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.message.contains("DNS-1123"), "{e}");
}

#[test]
fn negative_scale_is_located() {
    let e = error_of("service:\n  name: a\n  command: x\n  scale: -1\n");
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("0 or more"), "{e}");
}

#[test]
fn wrong_type_is_located() {
    let e = error_of("service:\n  name: a\n  command: x\n  scale: lots\n");
    assert_eq!(e.line, Some(4), "{e}");
}

#[test]
fn probe_missing_what_its_type_needs() {
    let e = error_of("service:\n  name: a\n  command: x\n  health:\n    readiness: {type: exec}\n");
    assert!(e.message.contains("command"), "{e}");
    assert!(e.line.is_some(), "{e}");
    let e = error_of("service:\n  name: a\n  command: x\n  health:\n    readiness: {type: tcp}\n");
    assert!(e.message.contains("needs a port"), "{e}");
}

#[test]
fn probe_port_must_be_declared() {
    let e = error_of(
        "service:\n  name: a\n  command: x\n  ports: [{name: http}]\n  health:\n    liveness: {type: tcp, port: web}\n",
    );
    assert!(e.message.contains("\"web\""), "{e}");
    assert!(e.message.contains("http"), "{e}");
    assert!(e.line.is_some(), "{e}");
}

#[test]
fn json_errors_are_located() {
    let e = error_of("{\"service\": {\"name\": \"a\",\n \"command\": \"x\", \"bogus\": 1}}");
    assert_eq!(e.line, Some(2), "{e}");
}

#[test]
fn empty_and_wrong_shape_files() {
    assert!(error_of("foo: 1\n").message.contains("unknown field"));
    let empty = error_of("");
    assert!(empty.message.contains("no services"), "{empty}");
    assert_eq!(
        empty.line,
        Some(1),
        "an empty file's error names a line: {empty}"
    );
    assert_eq!(error_of("# only a comment\n").line, Some(1));
}

#[test]
fn absurd_values_are_rejected_naming_the_bound_and_located() {
    let cases = [
        (
            "  stopGracePeriod: 300000000000y\n",
            4,
            "stopGracePeriod",
            "limit of 1h",
        ),
        (
            "  scaling: {interval: 100000000000y}\n",
            4,
            "interval",
            "limit of 1day",
        ),
        (
            "  scaling: {step: 4294967297}\n",
            4,
            "step",
            "from 1 to 10000",
        ),
        (
            "  scaling: {step: 4294967296}\n",
            4,
            "step",
            "from 1 to 10000",
        ),
        ("  scale: 10001\n", 4, "scale", "from 0 to 10000"),
        (
            "  ports: [{name: http}]\n  health:\n    readiness: {type: tcp, intervalSeconds: 99999}\n",
            6,
            "intervalSeconds",
            "from 1 to 3600",
        ),
    ];
    for (extra, line, what, bound) in cases {
        let e = error_of(&format!("service:\n  name: a\n  command: x\n{extra}"));
        assert!(
            e.message.contains(what) && e.message.contains(bound),
            "{extra}: {e}"
        );
        assert_eq!(e.line, Some(line), "{extra}: {e}");
    }
}

#[test]
fn stored_spec_must_match_its_key() {
    let spec = &parse("service: {name: a, command: x}").unwrap()[0];
    let json = StoredService::new(spec.clone()).to_json();
    assert!(StoredService::parse("k", json.as_bytes(), "default", "a").is_ok());
    let e = StoredService::parse("k", json.as_bytes(), "default", "b").unwrap_err();
    assert!(e.message.contains("stored under"), "{e}");
}

#[test]
fn a_controller_may_lower_the_largest_scale() {
    let stored = |text: &str| StoredService::new(parse(text).unwrap()[0].clone());
    let six = stored("service: {name: a, command: x, scale: 6}");
    assert!(six.check_scale("k", 6).is_ok());
    let e = six.check_scale("k", 5).unwrap_err();
    assert_eq!(
        e.to_string(),
        "k: scale 6 is over this controller's limit of 5 (--max-scale)"
    );
    // No scale: the current one is kept, which was within the limit when set.
    assert!(
        stored("service: {name: a, command: x}")
            .check_scale("k", 0)
            .is_ok()
    );
}

#[test]
fn anchors_and_merge_keys_shared_by_many_services_parse() {
    let vars: Vec<String> = (0..40).map(|i| format!("V{i}: value-{i}")).collect();
    let mut text = format!(
        "services:\n  - {{name: s0, command: &cmd [run, --fast], env: &common {{{}}}}}\n",
        vars.join(", ")
    );
    // 98 aliases of 2 anchors: past 100, the crate allows 10 aliases per anchor.
    for i in 1..50 {
        text += &format!("  - {{name: s{i}, command: *cmd, env: {{<<: *common, OWN: x}}}}\n");
    }
    let specs = parse(&text).unwrap();
    assert_eq!(specs.len(), 50);
    assert_eq!(specs[49].env.len(), 41);
    assert_eq!(specs[49].command, specs[0].command);
}

#[test]
fn merge_key_chains_are_cut_short() {
    // Each level merges the previous one twice: 2^20 replays from 1.3 kB.
    let mut text = "services:\n  - {name: m0, command: x, env: &e0 {A: v}}\n".to_string();
    for i in 1..21 {
        let p = i - 1;
        text += &format!("  - {{name: m{i}, command: x, env: &e{i} {{<<: [*e{p}, *e{p}]}}}}\n");
    }
    let started = std::time::Instant::now();
    let e = error_of(&text);
    assert!(e.line.is_some(), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "{e}");
}

mod roundtrip {
    use super::*;
    use crate::model::names::Label;
    use proptest::prelude::*;
    use std::time::Duration;

    fn label() -> impl Strategy<Value = Label> {
        "[a-z][a-z0-9-]{0,10}[a-z0-9]".prop_map(|s| Label::new("name", s).unwrap())
    }

    fn probe(port: Option<String>) -> impl Strategy<Value = Probe> {
        (0u32..3, 0u32..5, 1u32..20, 1u32..5, 1u32..5, 1u32..3).prop_map(
            move |(k, delay, interval, timeout, failure, success)| {
                let (kind, port, path, command) = match k {
                    0 => (
                        ProbeKind::Http,
                        port.clone(),
                        Some("/healthz".to_string()),
                        None,
                    ),
                    1 => (ProbeKind::Tcp, port.clone(), None, None),
                    _ => (ProbeKind::Exec, None, None, Some(vec!["true".to_string()])),
                };
                Probe {
                    kind,
                    port: port.map(PortRef::Name),
                    path,
                    command,
                    initial_delay_seconds: delay,
                    interval_seconds: interval,
                    timeout_seconds: timeout,
                    failure_threshold: failure,
                    success_threshold: success,
                }
            },
        )
    }

    prop_compose! {
        fn spec()(
            name in label(),
            ns in label(),
            scale in proptest::option::of(0u32..500),
            shell in any::<bool>(),
            words in proptest::collection::vec("[a-zA-Z0-9_./${}-]{1,12}", 1..4),
            env in proptest::collection::btree_map("[A-Z_]{1,8}", "[ -~]{0,12}", 0..3),
            pinned in proptest::option::of(1024u16..60000),
            grace in 0u64..120,
            gradual in any::<bool>(),
            step in 1u32..10,
            readiness in probe(Some("http".into())),
            liveness in proptest::option::of(probe(Some("http".into()))),
            memory in proptest::option::of(1u64 << 20..1 << 36),
            cpu in proptest::option::of(10u32..64_000),
            pids in proptest::option::of(1u32..100_000),
        ) -> ServiceSpec {
            ServiceSpec {
                name,
                namespace: ns,
                scale,
                command: if shell { Command::Shell(words.join(" ")) } else { Command::Argv(words) },
                args: vec![],
                env: env.into_iter().map(|(k, v)| (k, v.into())).collect(),
                working_dir: None,
                ports: vec![PortSpec { name: Label::new("port", "http").unwrap(), port: pinned }],
                health: Health { readiness: Some(readiness), liveness },
                restart_policy: RestartPolicy::OnFailure,
                stop_grace_period: Duration::from_secs(grace),
                shutdown_delay: Duration::ZERO,
                scaling: gradual.then(|| ScalingDefaults {
                    mode: ScaleMode::Gradual,
                    step,
                    interval: Duration::from_secs(step as u64 * 7),
                    rollback_on_fail: false,
                }),
                resources: (memory.is_some() || cpu.is_some() || pids.is_some()).then(|| {
                    crate::model::Resources {
                        memory: memory.map(crate::model::Memory),
                        cpu: cpu.map(crate::model::Cpu),
                        pids,
                    }
                }),
                placement: None,
                disruption: None,
                update: None,
                files: vec![],
                user: None,
                group: None,
            }
        }
    }

    proptest! {
        #[test]
        fn json_round_trips(s in spec()) {
            let stored = StoredService::new(s);
            let json = stored.to_json();
            let back = StoredService::parse("k", json.as_bytes(), stored.service.namespace(), stored.service.name()).unwrap();
            prop_assert_eq!(back, stored);
        }

        #[test]
        fn yaml_round_trips(s in spec()) {
            let yaml = serde_saphyr::to_string(&StoredService::new(s.clone())).unwrap();
            let back = parse_cast_file("x.yaml", &yaml).unwrap();
            prop_assert_eq!(&back[0], &s);
        }
    }
}

#[test]
fn resources_are_validated_with_their_location() {
    let ok = "service:\n  name: api\n  command: x\n  resources:\n    memory: 256Mi\n    cpu: \"0.5\"\n    pids: 512\n";
    let spec = parse_cast_file("ok.yaml", ok).unwrap().remove(0);
    let r = spec.resources.unwrap();
    assert_eq!(r.memory, Some(crate::model::Memory(256 << 20)));
    assert_eq!(r.cpu, Some(crate::model::Cpu(500)));
    assert_eq!(r.pids, Some(512));
    let bad = "service:\n  name: api\n  command: x\n  resources:\n    memory: 256MB\n";
    let e = parse_cast_file("bad.yaml", bad).unwrap_err();
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.to_string().contains("memory \"256MB\""), "{e}");
    let bad = "service:\n  name: api\n  command: x\n  resources:\n    cpu: 5m\n";
    let e = parse_cast_file("bad.yaml", bad).unwrap_err();
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.to_string().contains("outside 10m"), "{e}");
    let bad = "service:\n  name: api\n  command: x\n  resources:\n    pids: 0\n";
    assert!(
        parse_cast_file("bad.yaml", bad)
            .unwrap_err()
            .to_string()
            .contains("pids must be from 1")
    );
    let bad = "service:\n  name: api\n  command: x\n  resources:\n    disk: 1Gi\n";
    assert!(parse_cast_file("bad.yaml", bad).is_err());
}

#[test]
fn placement_parses_and_round_trips() {
    let text = "service:\n  name: a\n  command: x\n  placement:\n    nodeSelector: {disk: ssd, rune.dev/zone: eu-1}\n    maxPerNode: 2\n";
    let spec = parse(text).unwrap().remove(0);
    let p = spec.placement.clone().unwrap();
    assert_eq!(p.node_selector.get("disk").map(String::as_str), Some("ssd"));
    assert_eq!(p.max_per_node, Some(2));
    let json = serde_json::to_string(&spec).unwrap();
    assert!(json.contains(r#""placement":{"nodeSelector":{"#), "{json}");
    assert_eq!(serde_json::from_str::<ServiceSpec>(&json).unwrap(), spec);
    // Not given: absent, and not serialized.
    let plain = parse("service:\n  name: a\n  command: x\n")
        .unwrap()
        .remove(0);
    assert_eq!(plain.placement, None);
    assert!(!serde_json::to_string(&plain).unwrap().contains("placement"));
}

#[test]
fn bad_placement_is_located() {
    let e = error_of(
        "service:\n  name: a\n  command: x\n  placement:\n    nodeSelector: {\"-disk\": ssd}\n",
    );
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.message.contains("placement.nodeSelector"), "{e}");
    let e = error_of("service:\n  name: a\n  command: x\n  placement:\n    maxPerNode: 0\n");
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.message.contains("maxPerNode must be from 1"), "{e}");
    let e = error_of("service:\n  name: a\n  command: x\n  placement:\n    maxPerNode: 99999\n");
    assert!(e.message.contains("maxPerNode"), "{e}");
    let e = error_of("service:\n  name: a\n  command: x\n  placement:\n    nodeSelecter: {}\n");
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.message.contains("nodeSelecter"), "{e}");
}

#[test]
fn disruption_parses_is_bounded_and_stays_out_of_the_revision() {
    let text = "service:\n  name: a\n  command: x\n  disruption: {minAvailable: 2}\n";
    let spec = parse(text).unwrap().remove(0);
    assert_eq!(spec.disruption.as_ref().unwrap().min_available, 2);
    assert_eq!(crate::model::revision::template(&spec).disruption, None);
    let e = error_of("service:\n  name: a\n  command: x\n  disruption:\n    minAvailable: -1\n");
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.message.contains("minAvailable must be from 0"), "{e}");
    let e = error_of("service:\n  name: a\n  command: x\n  disruption: {maxUnavailable: 1}\n");
    assert!(e.message.contains("maxUnavailable"), "{e}");
}

#[test]
fn user_and_group_parse_round_trip_and_are_part_of_the_revision() {
    let text = "service:\n  name: a\n  command: x\n  user: nobody\n  group: 65534\n";
    let spec = parse(text).unwrap().remove(0);
    assert_eq!(
        spec.user,
        Some(crate::model::Account::Name("nobody".into()))
    );
    assert_eq!(spec.group, Some(crate::model::Account::Id(65534)));
    let json = serde_json::to_string(&spec).unwrap();
    assert!(json.contains(r#""user":"nobody","group":65534"#), "{json}");
    assert_eq!(serde_json::from_str::<ServiceSpec>(&json).unwrap(), spec);
    assert_eq!(crate::model::revision::template(&spec).user, spec.user);
    let quoted = parse("service:\n  name: a\n  command: x\n  user: \"1000\"\n").unwrap();
    assert_eq!(quoted[0].user, Some(crate::model::Account::Id(1000)));
    let plain = parse("service:\n  name: a\n  command: x\n")
        .unwrap()
        .remove(0);
    assert_eq!((plain.user, plain.group), (None, None));

    let e = error_of("service:\n  name: a\n  command: x\n  user: \"bad name\"\n");
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("user \"bad name\""), "{e}");
    let e = error_of("service:\n  name: a\n  command: x\n  group: -1\n");
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("group id -1 is negative"), "{e}");
}
