//! What ships beside the code: example manifests (each casts against a real etcd),
//! the Kubernetes deployment, the systemd units and the Dockerfile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rune::model::parse_cast_file;
use rune::model::spec::{Command as SpecCommand, ProbeKind, ScaleMode};
use serde_json::Value;

use crate::harness::World;
use crate::support::scratch::{ScratchDir, unique};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no *.{ext} in {dir}");
    v
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn yaml(p: &Path) -> Value {
    serde_saphyr::from_str(&read(p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

// ---------------------------------------------------------------- manifests

#[test]
fn every_manifest_parses_and_says_what_it_promises() {
    let mut seen = BTreeMap::new();
    for p in files("manifests", "yaml") {
        let specs = parse_cast_file(&name_of(&p), &read(&p))
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(specs.len(), 1, "{}: one service per file", p.display());
        let s = specs.into_iter().next().unwrap();
        let text = read(&p);
        // Plain Debian: python3 and sh only, loopback only.
        let argv0 = match &s.command {
            SpecCommand::Shell(_) => "sh".to_string(),
            SpecCommand::Argv(a) => a[0].clone(),
        };
        assert!(
            argv0 == "python3" || argv0 == "sh",
            "{}: runs {argv0}",
            p.display()
        );
        if !s.ports.is_empty() {
            assert!(text.contains("127.0.0.1"), "{}: bind loopback", p.display());
            assert!(text.contains("${PORT}"), "{}: use ${{PORT}}", p.display());
            assert!(!text.contains("0.0.0.0"), "{}", p.display());
        }
        seen.insert(s.name().to_string(), s);
    }
    let names: Vec<_> = seen.keys().cloned().collect();
    assert_eq!(names, ["flaky", "web", "workers"]);

    let web = &seen["web"];
    assert_eq!(web.scale, Some(2));
    assert_eq!(web.health.readiness.as_ref().unwrap().kind, ProbeKind::Http);
    assert_eq!(web.health.liveness.as_ref().unwrap().kind, ProbeKind::Tcp);

    let workers = &seen["workers"];
    assert_eq!(workers.scale, Some(4));
    assert_eq!(
        workers.health.readiness.as_ref().unwrap().kind,
        ProbeKind::Exec
    );
    let d = workers.scaling_defaults();
    assert_eq!(
        (d.mode, d.step, d.interval),
        (ScaleMode::Gradual, 2, Duration::from_secs(5))
    );
    assert!(workers.scaling.is_some());

    let flaky = &seen["flaky"];
    assert!(flaky.health.readiness.is_some());
    assert!(flaky.scaling_defaults().rollback_on_fail);
    assert!(
        read(&root().join("manifests/flaky.yaml")).contains("rune scale flaky 4"),
        "flaky.yaml documents how to see a rollback"
    );
}

#[test]
fn every_manifest_casts_against_etcd() {
    let w = World::new();
    let manifests = files("manifests", "yaml");
    for p in &manifests {
        let specs = parse_cast_file("f", &read(p)).unwrap();
        let out = w
            .rune()
            .args(["cast", "--dry-run"])
            .arg(p)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("service default/{} created (dry run)\n", specs[0].name())
        );
    }
    assert!(w.etcd.keys(&w.prefix).is_empty(), "dry run wrote nothing");
    // And for real, all at once.
    w.rune().arg("cast").args(&manifests).assert().success();
    for s in ["web", "workers", "flaky"] {
        assert!(
            w.etcd
                .get(&w.key(&format!("services/default/{s}")))
                .is_some(),
            "{s} stored"
        );
    }
    let out = w
        .rune()
        .args(["get", "services", "-o", "json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("SpecInvalid"),
        "{text}"
    );
}

// ---------------------------------------------------------------- kubernetes

/// Every `image:` value anywhere in a document.
fn images(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "image"
                    && let Value::String(s) = x
                {
                    out.push(s.clone());
                }
                images(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| images(x, out)),
        _ => {}
    }
}

fn pinned(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    let last = image.rsplit('/').next().unwrap();
    match last.split_once(':') {
        Some((_, tag)) => !tag.is_empty() && tag != "latest",
        None => false,
    }
}

#[test]
fn pinned_image_check_works() {
    assert!(pinned(
        "registry.example.com:5000/rune/rune-controller:0.1.0"
    ));
    assert!(pinned("x/y@sha256:abc"));
    assert!(!pinned("registry.example.com:5000/rune/rune-controller"));
    assert!(!pinned("rune:latest"));
}

#[test]
fn kubernetes_controller_deployment_is_probed_pinned_and_locked_down() {
    let dir = root().join("deploy/kubernetes");
    let mut docs: BTreeMap<String, Value> = BTreeMap::new();
    for p in files("deploy/kubernetes", "yaml") {
        docs.insert(name_of(&p), yaml(&p));
    }
    // kustomization lists every other file, and every listed file exists.
    let kust = &docs["kustomization.yaml"];
    let mut resources: Vec<String> = kust["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    resources.sort();
    let mut others: Vec<String> = docs
        .keys()
        .filter(|k| *k != "kustomization.yaml")
        .cloned()
        .collect();
    others.sort();
    assert_eq!(resources, others, "kustomization resources");
    for r in &resources {
        assert!(dir.join(r).is_file(), "{r}");
    }
    for img in kust["images"].as_array().unwrap() {
        let tag = img["newTag"].as_str().expect("images pin newTag");
        assert!(!tag.is_empty() && tag != "latest", "{img}");
    }

    let by_kind = |kind: &str| -> Vec<&Value> {
        docs.values()
            .filter(|d| d["kind"].as_str() == Some(kind))
            .collect()
    };
    let deployments = by_kind("Deployment");
    assert_eq!(deployments.len(), 1);
    let dep = deployments[0];
    assert_eq!(dep["spec"]["replicas"].as_u64(), Some(2));
    let pod = &dep["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    // No `latest`, no untagged image, anywhere.
    for (file, d) in &docs {
        let mut imgs = Vec::new();
        images(d, &mut imgs);
        for i in imgs {
            assert!(pinned(&i), "{file}: image {i} must carry a pinned tag");
        }
    }
    let image = c["image"].as_str().unwrap();
    let repo = image.rsplit_once(':').unwrap().0;
    assert!(
        kust["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"].as_str() == Some(repo)),
        "kustomization pins {repo}"
    );

    // --listen 0.0.0.0:PORT; the container port and both probes use PORT.
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let listen = args
        .iter()
        .position(|a| *a == "--listen")
        .map(|i| args[i + 1].to_string())
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--listen=").map(String::from))
        })
        .expect("--listen in args");
    let (host, port) = listen.rsplit_once(':').unwrap();
    assert_eq!(host, "0.0.0.0", "listen on all interfaces in a pod");
    let port: u64 = port.parse().unwrap();
    assert_eq!(port, 9464);
    let ports = c["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["containerPort"].as_u64(), Some(port));
    let port_name = ports[0]["name"].as_str().unwrap_or("");
    let resolve = |v: &Value| -> u64 {
        match v {
            Value::Number(n) => n.as_u64().unwrap(),
            Value::String(s) if s == port_name => port,
            other => panic!("unknown port {other}"),
        }
    };
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(resolve(&get["port"]), port, "{probe} port");
    }

    // Requests and limits.
    for kind in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(
                c["resources"][kind][r].is_string(),
                "resources.{kind}.{r} is set"
            );
        }
    }

    // Non-root, read-only root filesystem, no privilege escalation.
    let sc = &c["securityContext"];
    let psc = &pod["securityContext"];
    assert!(
        sc["runAsNonRoot"].as_bool() == Some(true) || psc["runAsNonRoot"].as_bool() == Some(true),
        "runAsNonRoot"
    );
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    let uid = sc["runAsUser"].as_u64().or(psc["runAsUser"].as_u64());
    assert!(uid.is_none_or(|u| u != 0), "runAsUser is not root");

    // etcd endpoints from a ConfigMap; TLS files from a mounted Secret.
    let cm_name = c["envFrom"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| e["configMapRef"]["name"].as_str())
        .expect("envFrom a ConfigMap");
    let cms = by_kind("ConfigMap");
    let cm = cms
        .iter()
        .find(|d| d["metadata"]["name"].as_str() == Some(cm_name))
        .expect("the ConfigMap is in the kustomization");
    assert!(cm["data"]["RUNE_ETCD_ENDPOINTS"].is_string());
    let secret_volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"].is_string())
        .expect("a Secret volume");
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == secret_volume["name"])
        .expect("the Secret is mounted");
    assert_eq!(mount["readOnly"].as_bool(), Some(true));
    let mount_path = mount["mountPath"].as_str().unwrap();
    for k in ["RUNE_ETCD_CA", "RUNE_ETCD_CERT", "RUNE_ETCD_KEY"] {
        let p = cm["data"][k].as_str().unwrap_or_else(|| panic!("{k}"));
        assert!(
            p.starts_with(&format!("{mount_path}/")),
            "{k}={p} is inside the Secret mount {mount_path}"
        );
    }

    // A Service for metrics that reaches the pods' metrics port.
    let services = by_kind("Service");
    assert_eq!(services.len(), 1);
    let svc = services[0];
    let labels = &dep["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "Service selector {k}");
    }
    let sp = &svc["spec"]["ports"][0];
    assert_eq!(resolve(&sp["targetPort"]), port);
}

// ---------------------------------------------------------------- systemd

/// `[Section] key=value` pairs of a unit file (repeated keys keep every value).
fn unit(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = line.split_once('=').expect("key=value");
        out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
    }
    out
}

fn value<'a>(u: &'a [(String, String, String)], section: &str, key: &str) -> Option<&'a str> {
    u.iter()
        .rev()
        .find(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.as_str())
}

#[test]
fn systemd_units_restart_read_the_env_file_and_keep_instances() {
    let dir = root().join("deploy/systemd");
    let env_file = read(&dir.join("rune.env"));
    for line in env_file.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("rune.env: {l}"));
        assert!(k.starts_with("RUNE_"), "rune.env sets only RUNE_*: {k}");
        if k.ends_with("_LISTEN") {
            // /metrics and /readyz are for this host's monitoring: loopback.
            assert!(v.starts_with("127.0.0.1:"), "rune.env: {l}");
        }
    }
    for (file, bin) in [
        ("rune-controller.service", "rune-controller"),
        ("rune-agent.service", "rune-agent"),
    ] {
        let u = unit(&read(&dir.join(file)));
        let exec = value(&u, "Service", "ExecStart").unwrap_or_else(|| panic!("{file}"));
        assert!(
            exec.split_whitespace()
                .next()
                .unwrap()
                .ends_with(&format!("/{bin}")),
            "{file}: ExecStart runs {bin}: {exec}"
        );
        let restart = value(&u, "Service", "Restart").unwrap_or_else(|| panic!("{file}"));
        assert!(
            ["always", "on-failure"].contains(&restart),
            "{file}: Restart={restart}"
        );
        let ef = value(&u, "Service", "EnvironmentFile").unwrap_or_else(|| panic!("{file}"));
        assert_eq!(ef.trim_start_matches('-'), "/etc/rune/rune.env", "{file}");
        assert_eq!(value(&u, "Install", "WantedBy"), Some("multi-user.target"));
        if bin == "rune-agent" {
            // Root, to run instances as their users; bounded to what that takes.
            assert_eq!(value(&u, "Service", "User"), Some("root"), "{file}");
            let caps = value(&u, "Service", "CapabilityBoundingSet").unwrap_or_default();
            let mut caps: Vec<&str> = caps.split_whitespace().collect();
            caps.sort();
            assert_eq!(
                caps,
                [
                    "CAP_CHOWN",
                    "CAP_DAC_OVERRIDE",
                    "CAP_KILL",
                    "CAP_SETGID",
                    "CAP_SETUID"
                ],
                "{file}"
            );
            assert_eq!(value(&u, "Service", "StateDirectoryMode"), Some("0700"));
            // $RUNE_FILES on tmpfs (the --files-dir default), passable by instance
            // users, kept while instances outlive an agent restart.
            assert_eq!(value(&u, "Service", "RuntimeDirectory"), Some("rune-agent"));
            assert_eq!(value(&u, "Service", "RuntimeDirectoryMode"), Some("0711"));
            assert_eq!(
                value(&u, "Service", "RuntimeDirectoryPreserve"),
                Some("yes")
            );
        } else {
            assert!(
                value(&u, "Service", "User").is_some_and(|u| u != "root"),
                "{file}: runs as an unprivileged user"
            );
        }
        assert_eq!(value(&u, "Service", "NoNewPrivileges"), Some("yes"));
        let kill_mode = value(&u, "Service", "KillMode");
        if bin == "rune-agent" {
            // Restarting the agent must not kill the instances it runs.
            assert_eq!(kill_mode, Some("process"), "{file}");
            assert!(value(&u, "Service", "PrivateTmp").is_none());
            assert!(value(&u, "Service", "MemoryDenyWriteExecute").is_none());
        } else {
            assert_ne!(kill_mode, Some("process"), "{file}");
        }
    }
    let readme = read(&dir.join("README.md"));
    assert!(
        readme.contains("KillMode=process"),
        "README explains KillMode"
    );
}

#[test]
fn systemd_analyze_verify_accepts_the_units() {
    let Ok(which) = Command::new("sh")
        .args(["-c", "command -v systemd-analyze"])
        .output()
    else {
        return;
    };
    if !which.status.success() {
        println!("note: systemd-analyze is not installed; skipping `systemd-analyze verify`");
        return;
    }
    let scratch = ScratchDir::create(std::env::temp_dir().join(unique("rune-systemd")));
    let tmp = &scratch.path;
    let mut units = Vec::new();
    for p in files("deploy/systemd", "service") {
        // verify insists that ExecStart= exists and is executable; the binaries are
        // not installed here, so point it at one that is.
        let text = read(&p)
            .lines()
            .map(|l| match l.strip_prefix("ExecStart=") {
                Some(_) => "ExecStart=/bin/true".to_string(),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let dest = tmp.join(name_of(&p));
        std::fs::write(&dest, text).unwrap();
        units.push(dest);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    // verify exits 0 on some warnings; these would mean a typo in the units.
    for bad in [
        "Unknown key",
        "Unknown section",
        "Failed to parse",
        "Invalid",
    ] {
        assert!(!stderr.contains(bad), "systemd-analyze verify: {stderr}");
    }
}

// ---------------------------------------------------------------- Dockerfile

#[test]
fn dockerfile_is_multi_stage_pinned_non_root_and_ships_controller_and_cli_only() {
    let text = read(&root().join("deploy/Dockerfile"));
    let froms: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("FROM "))
        .collect();
    assert!(froms.len() >= 2, "multi-stage");
    for f in &froms {
        let image = f.split_whitespace().next().unwrap();
        assert!(pinned(image), "FROM {image} is pinned");
    }
    assert!(text.contains("protobuf-compiler"));
    let user = text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("USER "))
        .expect("USER in the final stage");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "USER {user}");
    assert!(text.contains("--bin rune-controller") && text.contains("--bin rune "));
    assert!(!text.contains("rune-agent"), "agents are not containerized");
}
