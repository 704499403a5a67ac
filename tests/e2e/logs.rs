//! `rune logs`: instance logs read from their agents' `/v1/logs/` endpoint with the
//! token each agent publishes in etcd; merged and prefixed, tailed, followed across
//! a rotation and a scale-up, and with one of two nodes down; on a listener of its
//! own (`--logs-listen`), plain, over TLS, and over mutual TLS instead of the token.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{Daemon, World};
use crate::support::wait::eventually;
use crate::system::*;

const LONG: Duration = Duration::from_secs(60);

/// Numbered lines, padded so that a log grows by about 2 KiB a second.
const COUNTER: &str = r#"i=0; while true; do i=$((i+1)); echo "line $i ................................................................................................"; sleep 0.05; done"#;

fn counter(w: &World, name: &str, scale: u32) -> std::path::PathBuf {
    w.file(
        &format!("{name}.yaml"),
        &format!(
            "service:\n  name: {name}\n  scale: {scale}\n  command: '{COUNTER}'\n  stopGracePeriod: 2s\n"
        ),
    )
}

fn agent_with(w: &World, node: &str, extra: &[&str]) -> Daemon {
    let mut args = vec!["--lease-ttl", "3s"];
    args.extend_from_slice(extra);
    let a = w.agent(node, &args);
    eventually(&format!("{node} registered"), LONG, || {
        w.etcd.get(&w.key(&format!("nodes/{node}"))).map(|_| ())
    });
    a
}

fn ids(w: &World, name: &str) -> BTreeMap<String, String> {
    instances(w, name)
        .iter()
        .filter_map(|i| {
            Some((
                i["instance"]["id"].as_str()?.to_string(),
                i["instance"]["node"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// `[id] line N ...` or `line N ...`: (id, N).
fn parse(line: &str) -> Option<(Option<String>, u64)> {
    let (id, rest) = match line.strip_prefix('[') {
        Some(r) => {
            let (id, rest) = r.split_once("] ")?;
            (Some(id.to_string()), rest)
        }
        None => (None, line),
    };
    let n = rest
        .strip_prefix("line ")?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    Some((id, n))
}

fn logs(w: &World, args: &[&str]) -> std::process::Output {
    w.rune().arg("logs").args(args).output().unwrap()
}

/// A `rune logs -f` in the background, and what it printed so far.
struct Follower {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Follower {
    fn start(w: &World, args: &[&str]) -> Follower {
        let mut all = vec!["logs", "-f"];
        all.extend_from_slice(args);
        let mut child = spawn_rune(w, &all);
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                sink.lock().unwrap().push(l);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines() {
                let Ok(l) = l else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&l);
                s.push('\n');
            }
        });
        Follower {
            child,
            lines,
            stderr,
        }
    }

    /// The line numbers printed for `id`, in order.
    fn numbers(&self, id: &str) -> Vec<u64> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| parse(l))
            .filter(|(i, _)| i.as_deref() == Some(id))
            .map(|(_, n)| n)
            .collect()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Kills it by its pid; returns what it wrote to stderr.
    fn stop(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr()
    }
}

impl Drop for Follower {
    /// Also when a test fails before it stops the follower.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn logs_are_merged_tailed_and_followed_across_rotation_and_scale_up() {
    let w = World::new();
    let _c = controller(&w, "c1");
    let mut a1 = agent_with(&w, "n1", &["--instance-log-max-size", "8KiB"]);
    deploy(&w, &counter(&w, "counter", 2), "counter", 2);
    let first = ids(&w, "counter");
    let (a, b) = {
        let mut k = first.keys();
        (k.next().unwrap().clone(), k.next().unwrap().clone())
    };

    // Both instances, every line prefixed with its instance, each from its line 1.
    eventually("both logs have 5 lines", LONG, || {
        let out = logs(&w, &["counter"]);
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let parsed: Vec<_> = text.lines().map(|l| parse(l).expect(l)).collect();
        assert!(parsed.iter().all(|(id, _)| id.is_some()), "{text}");
        let per = |id: &str| {
            parsed
                .iter()
                .filter(|(i, _)| i.as_deref() == Some(id))
                .map(|(_, n)| *n)
                .collect::<Vec<_>>()
        };
        let (pa, pb) = (per(&a), per(&b));
        // Each instance's lines together, in order, from line 1.
        (pa.len() >= 5 && pb.len() >= 5).then(|| {
            assert_eq!(pa, (1..=pa.len() as u64).collect::<Vec<_>>());
            assert_eq!(pb, (1..=pb.len() as u64).collect::<Vec<_>>());
        })
    });

    // One instance, its last 3 lines: no prefix (one instance), consecutive.
    let out = logs(&w, &["counter", &a, "--tail", "3"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let n: Vec<_> = text.lines().map(|l| parse(l).expect(l)).collect();
    assert_eq!(n.len(), 3, "{text}");
    assert!(n.iter().all(|(id, _)| id.is_none()), "{text}");
    assert_eq!((n[1].1, n[2].1), (n[0].1 + 1, n[0].1 + 2), "{text}");
    // --prefix and --timestamps: `[id] <time> line`, as kubectl orders them.
    let out = logs(
        &w,
        &["counter", &a, "--tail", "1", "--prefix", "--timestamps"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rest = text.strip_prefix(&format!("[{a}] ")).expect(&text);
    let (ts, rest) = rest.split_once(' ').unwrap();
    assert!(ts.parse::<jiff::Timestamp>().is_ok(), "{text}");
    assert!(rest.starts_with("line "), "{text}");

    // What does not exist: exit 4.
    assert_eq!(logs(&w, &["nosuch"]).status.code(), Some(4));
    assert_eq!(logs(&w, &["counter", "nosuch"]).status.code(), Some(4));

    // Following from the last line: across a rotation of a's log...
    let mut f = Follower::start(&w, &["counter", "--tail", "1"]);
    let rotated = w
        .dir
        .join(format!("agent-n1/logs/default_counter_{a}.log.1"));
    let last_rotated = || -> u64 {
        let text = std::fs::read_to_string(&rotated).unwrap_or_default();
        text.lines()
            .filter_map(parse)
            .map(|(_, n)| n)
            .max()
            .unwrap_or(0)
    };
    let from = eventually("a followed", LONG, || f.numbers(&a).first().copied());
    // A rotation while following: `.1` now holds lines that were followed.
    let at_rotation = eventually("a's log rotated while followed", LONG, || {
        let n = last_rotated();
        (n > from).then_some(n)
    });
    eventually("lines well past the rotation followed", LONG, || {
        (f.numbers(&a).last().copied().unwrap_or(0) > at_rotation + 40).then_some(())
    });
    let seen = f.numbers(&a);
    assert!(
        seen.windows(2).all(|p| p[1] > p[0]),
        "followed lines in order, none twice: {seen:?}"
    );
    // Copy-then-truncate loses what is written between the copy and the truncation:
    // at most a line per rotation here.
    let missing = seen.last().unwrap() - seen[0] + 1 - seen.len() as u64;
    assert!(missing <= 2, "{missing} lines lost: {seen:?}");

    // ...and a scale-up: the new instance joins from its first line.
    w.rune()
        .args(["scale", "counter", "3", "--timeout", "60s"])
        .assert()
        .success();
    let new = ids(&w, "counter")
        .into_keys()
        .find(|id| !first.contains_key(id))
        .expect("a third instance");
    eventually("the new instance's lines followed", LONG, || {
        let n = f.numbers(&new);
        (n.len() >= 5).then(|| assert_eq!(n[..5], [1, 2, 3, 4, 5], "{n:?}"))
    });
    // The old ones still stream.
    let before = f.numbers(&b).len();
    eventually("b still followed", LONG, || {
        (f.numbers(&b).len() > before + 5).then_some(())
    });
    assert!(!f.stderr().contains("warning"), "{}", f.stderr());

    // The agent killed and started again (its instances keep running): the streams
    // break, and resume from the logs' end once it is back.
    a1.kill9();
    eventually("the break noticed", LONG, || {
        f.stderr().contains("until it is back").then_some(())
    });
    let at_kill = *f.numbers(&a).last().unwrap();
    let _a1 = agent_with(&w, "n1", &["--instance-log-max-size", "8KiB"]);
    eventually("a followed again", LONG, || {
        (f.numbers(&a).last().copied().unwrap_or(0) > at_kill + 20).then_some(())
    });
    let seen = f.numbers(&a);
    assert!(seen.windows(2).all(|p| p[1] > p[0]), "none twice: {seen:?}");
    f.stop();
}

/// GET with an optional `Authorization` header; (status, body).
fn get_with(addr: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let code = buf.split(' ').nth(1).unwrap().parse().unwrap();
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, body.to_string())
}

#[test]
fn logs_need_the_token_and_a_node_down_is_named_while_the_rest_print() {
    let w = World::new();
    let _c = w.controller("c1", &fast_controller_with_grace("120s"));
    let a1 = agent_with(&w, "n1", &[]);
    let mut a2 = agent_with(&w, "n2", &[]);
    deploy(&w, &counter(&w, "spread", 4), "spread", 4);
    let placed = ids(&w, "spread");
    let on = |node: &str| -> BTreeSet<String> {
        placed
            .iter()
            .filter(|(_, n)| *n == node)
            .map(|(id, _)| id.clone())
            .collect()
    };
    let (on1, on2) = (on("n1"), on("n2"));
    assert!(!on1.is_empty() && !on2.is_empty(), "{placed:?}");

    // The endpoint: 401 without the token or with a wrong one, 200 with n1's.
    let id = on1.iter().next().unwrap();
    let path = format!("/v1/logs/default/spread/{id}");
    let token = w.etcd.get(&w.key("node-tokens/n1")).expect("n1's token");
    assert_eq!(token.trim().len(), 64);
    assert_eq!(get_with(&a1.http, &path, None).0, 401);
    assert_eq!(get_with(&a1.http, &path, Some("Bearer nope")).0, 401);
    let n2_token = w.etcd.get(&w.key("node-tokens/n2")).unwrap();
    assert_ne!(n2_token, token);
    let wrong = format!("Bearer {}", n2_token.trim());
    assert_eq!(get_with(&a1.http, &path, Some(&wrong)).0, 401);
    let right = format!("Bearer {}", token.trim());
    eventually("n1 serves the log", LONG, || {
        let (code, body) = get_with(&a1.http, &path, Some(&right));
        assert_eq!(code, 200, "{body}");
        body.contains("line 1 ").then_some(())
    });
    let (code, _) = get_with(&a1.http, "/v1/logs/default/spread/nosuch", Some(&right));
    assert_eq!(code, 404);
    // The node record has the address; the token is not on it.
    let record = w.etcd.get(&w.key("nodes/n1")).unwrap();
    assert!(
        record.contains(&a1.http) && !record.contains(token.trim()),
        "{record}"
    );

    // Following all four, n2 dies: its streams end with a warning naming each
    // instance; n1's lines keep coming.
    let mut f = Follower::start(&w, &["spread", "--tail", "1"]);
    eventually("every instance followed", LONG, || {
        placed
            .keys()
            .all(|id| !f.numbers(id).is_empty())
            .then_some(())
    });
    a2.kill9();
    let counts = |f: &Follower| on1.iter().map(|id| f.numbers(id).len()).collect::<Vec<_>>();
    let before = counts(&f);
    eventually("n1's instances still followed", LONG, || {
        counts(&f)
            .iter()
            .zip(&before)
            .all(|(now, then)| *now > then + 10)
            .then_some(())
    });
    // The CLI notices a stream ended on its next look at the records (every second).
    let lost = eventually("n2's streams reported lost", LONG, || {
        let err = f.stderr();
        on2.iter()
            .all(|id| err.contains(id.as_str()))
            .then_some(err)
    });
    assert!(lost.contains("warning"), "{lost}");
    eprintln!("rune logs -f with n2 killed said:\n{lost}");
    f.stop();

    // Without -f: n2's instances are named in a warning; n1's print.
    let out = logs(&w, &["spread"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: node n2"), "{err}");
    for id in &on2 {
        assert!(err.contains(id.as_str()), "{id} named: {err}");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let printed: BTreeSet<String> = text
        .lines()
        .filter_map(parse)
        .filter_map(|(id, _)| id)
        .collect();
    assert_eq!(printed, on1, "{text}");
    // Only n2's instance asked for: none could be read.
    let gone = on2.iter().next().unwrap();
    assert_eq!(logs(&w, &["spread", gone]).status.code(), Some(4));
}

/// Runs `openssl ARGS` in `dir`; it must succeed.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA `<ca>.crt`/`<ca>.key` in `dir`.
fn make_ca(dir: &std::path::Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A leaf `<name>.crt`/`<name>.key` signed by `ca`, with extensions `ext`.
fn make_leaf(dir: &std::path::Path, ca: &str, name: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

#[test]
fn logs_over_mutual_tls_need_a_client_certificate_of_the_logs_ca() {
    let w = World::new();
    let pki = w.dir.join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    make_ca(&pki, "logs-ca");
    make_ca(&pki, "other-ca");
    make_leaf(
        &pki,
        "logs-ca",
        "agent",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    make_leaf(&pki, "logs-ca", "reader", "extendedKeyUsage=clientAuth\n");
    make_leaf(
        &pki,
        "other-ca",
        "stranger",
        "extendedKeyUsage=clientAuth\n",
    );
    let p = |f: &str| pki.join(f).to_str().unwrap().to_string();

    let _c = w.controller("c1", &fast_controller_with_grace("120s"));
    let (cert, key, ca) = (p("agent.crt"), p("agent.key"), p("logs-ca.crt"));
    let a = agent_with(
        &w,
        "n1",
        &[
            "--logs-listen",
            "127.0.0.1:0",
            "--logs-tls-cert",
            &cert,
            "--logs-tls-key",
            &key,
            "--logs-client-ca",
            &ca,
        ],
    );
    deploy(&w, &counter(&w, "secure", 1), "secure", 1);
    let node: serde_json::Value =
        serde_json::from_str(&w.etcd.get(&w.key("nodes/n1")).unwrap()).unwrap();
    assert_eq!(node["logs"]["tls"], true, "{node}");
    assert_eq!(node["logs"]["clientCertificates"], true, "{node}");
    let logs_at = node["logs"]["address"].as_str().unwrap().to_string();
    assert_ne!(logs_at, node["address"].as_str().unwrap());
    assert_eq!(
        w.etcd.get(&w.key("node-tokens/n1")),
        None,
        "mutual TLS authenticates: no token is published"
    );
    // /metrics stays plain HTTP on --listen, and the logs are not served there.
    assert_eq!(a.http_get("/metrics").map(|(c, _)| c), Some(200));
    let id = ids(&w, "secure").into_keys().next().unwrap();
    let path = format!("/v1/logs/default/secure/{id}?tail=1");
    assert_eq!(a.http_get(&path).map(|(c, _)| c), Some(404));

    // The reader's certificate: the log streams.
    let reader = [
        "--logs-tls-ca",
        &ca,
        "--logs-tls-cert",
        &p("reader.crt"),
        "--logs-tls-key",
        &p("reader.key"),
    ];
    let got = eventually("the log over mutual TLS", LONG, || {
        let out = logs(&w, &[&["secure", "--tail", "3"][..], &reader[..]].concat());
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (out.status.success() && text.lines().filter_map(parse).count() == 3).then_some(text)
    });
    assert!(got.lines().all(|l| l.starts_with("line ")), "{got}");
    // Followed too: new lines keep coming over the one TLS stream.
    let mut f = Follower::start(
        &w,
        &[&["secure", "--prefix", "--tail", "1"][..], &reader[..]].concat(),
    );
    let first = eventually("a followed line", LONG, || f.numbers(&id).first().copied());
    eventually("lines after it", LONG, || {
        (f.numbers(&id).last().copied()? >= first + 5).then_some(())
    });
    let err = f.stop();
    assert!(!err.contains("warning"), "{err}");

    // No client certificate: the CLI says what is missing, naming the node.
    let out = logs(&w, &["secure", "--logs-tls-ca", &ca]);
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: node n1:") && err.contains("takes mutual TLS") && err.contains(&id),
        "{err}"
    );
    // ... and the agent refuses a client without one (curl: no --cert).
    let url = format!("https://{logs_at}{path}");
    let curl = |extra: &[&str]| {
        std::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
                &ca,
            ])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap()
    };
    let bare = curl(&[]);
    assert!(
        !bare.status.success(),
        "served without a client certificate: {bare:?}"
    );
    let good = curl(&["--cert", &p("reader.crt"), "--key", &p("reader.key")]);
    assert_eq!(String::from_utf8_lossy(&good.stdout), "200", "{good:?}");

    // A certificate of another CA: refused in the handshake, the node named.
    let stranger = [
        "--logs-tls-ca",
        &ca,
        "--logs-tls-cert",
        &p("stranger.crt"),
        "--logs-tls-key",
        &p("stranger.key"),
    ];
    let out = logs(&w, &[&["secure"][..], &stranger[..]].concat());
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: node n1:") && err.contains("TLS") && err.contains(&id),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");

    // Not the agent's CA either way: the agent's certificate does not verify.
    let out = logs(
        &w,
        &[
            "secure",
            "--logs-tls-ca",
            &p("other-ca.crt"),
            "--logs-tls-cert",
            &p("reader.crt"),
            "--logs-tls-key",
            &p("reader.key"),
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: node n1:") && err.contains("TLS handshake"),
        "{err}"
    );
}

#[test]
fn logs_on_a_listener_of_their_own_plain_or_tls_with_the_token() {
    let w = World::new();
    let pki = w.dir.join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    make_ca(&pki, "logs-ca");
    make_leaf(
        &pki,
        "logs-ca",
        "agent",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    let p = |f: &str| pki.join(f).to_str().unwrap().to_string();
    let (cert, key, ca) = (p("agent.crt"), p("agent.key"), p("logs-ca.crt"));

    let _c = w.controller("c1", &fast_controller_with_grace("120s"));
    // n1: plain HTTP on its own listener; n2: TLS without client certificates.
    let _a1 = agent_with(&w, "n1", &["--logs-listen", "127.0.0.1:0"]);
    let _a2 = agent_with(
        &w,
        "n2",
        &[
            "--logs-listen",
            "127.0.0.1:0",
            "--logs-tls-cert",
            &cert,
            "--logs-tls-key",
            &key,
        ],
    );
    let file = w.file(
        "pair.yaml",
        &format!(
            "service:\n  name: pair\n  scale: 2\n  command: '{COUNTER}'\n  stopGracePeriod: 2s\n  placement: {{maxPerNode: 1}}\n"
        ),
    );
    deploy(&w, &file, "pair", 2);
    let placed = ids(&w, "pair");
    let on = |node: &str| placed.iter().find(|(_, n)| *n == node).unwrap().0.clone();
    let (i1, i2) = (on("n1"), on("n2"));
    for node in ["n1", "n2"] {
        assert!(
            w.etcd.get(&w.key(&format!("node-tokens/{node}"))).is_some(),
            "{node}: without client certificates the token authenticates"
        );
    }

    // With the CA both nodes are read.
    let seen = eventually("both instances' logs", LONG, || {
        let out = logs(&w, &["pair", "--tail", "2", "--logs-tls-ca", &ca]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let ids: BTreeSet<String> = text
            .lines()
            .filter_map(parse)
            .filter_map(|(id, _)| id)
            .collect();
        (out.status.success() && ids.len() == 2).then_some(ids)
    });
    assert_eq!(seen, [i1.clone(), i2.clone()].into());

    // Without it, the TLS node is named and the plain one still prints.
    let out = logs(&w, &["pair", "--tail", "2"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.is_empty() && text.lines().all(|l| l.starts_with(&format!("[{i1}] "))),
        "{text}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: node n2:") && err.contains("--logs-tls-ca") && err.contains(&i2),
        "{err}"
    );
}

#[test]
fn an_agent_with_an_unreadable_logs_certificate_exits_2_naming_it_before_etcd() {
    let dir = crate::support::scratch::ScratchDir::create(
        crate::support::scratch::scratch_root()
            .join(crate::support::scratch::unique("rune-logs-tls")),
    );
    let missing = dir.path.join("missing.crt");
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("rune-agent"))
        .args(["--node-name", "n1", "--data-dir"])
        .arg(dir.path.join("data"))
        .args(["--listen", "127.0.0.1:0", "--logs-listen", "127.0.0.1:0"])
        .arg("--logs-tls-cert")
        .arg(&missing)
        .arg("--logs-tls-key")
        .arg(&missing)
        // Nothing listens there: the error must come before etcd is tried.
        .env("RUNE_ETCD_ENDPOINTS", "http://127.0.0.1:1")
        .env("RUNE_CGROUP_PARENT", "none")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--logs-tls-cert") && err.contains("missing.crt"),
        "{err}"
    );
}
