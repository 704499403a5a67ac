//! A traffic client for zero-downtime proofs: it follows a service's
//! `endpoints/<ns>/<svc>` key (an etcd watch, as a load balancer would) and sends
//! HTTP GETs continuously, round-robin over the ready endpoints, at a bounded rate
//! and to loopback addresses only. It counts what succeeded and what failed (with
//! the instance and the error), and how long the list was empty, until stopped.
//!
//! Two threads: the watcher (its own current-thread tokio runtime, since the tests
//! are synchronous) and the sender (plain blocking sockets).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, WatchOptions};
use rune::model::{Endpoint, Endpoints};

/// A failed request.
#[derive(Debug, Clone)]
pub struct Failure {
    pub instance: String,
    pub address: String,
    pub error: String,
    /// Since the traffic started.
    pub after: Duration,
}

/// What the traffic saw so far.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub ok: u64,
    pub failed: u64,
    /// The first failures (at most [`KEPT_FAILURES`]).
    pub failures: Vec<Failure>,
    /// Versions of the endpoints key seen (the first listing included).
    pub updates: u64,
    /// The longest stretch during which the sender found no endpoint at all.
    pub longest_empty: Duration,
    /// Requests answered per instance.
    pub answered_by: std::collections::BTreeMap<String, u64>,
}

const KEPT_FAILURES: usize = 50;

/// Traffic against one service, running until [`Traffic::stop`] (or drop).
pub struct Traffic {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    endpoints: Arc<Mutex<Option<Vec<Endpoint>>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Traffic {
    /// Follows `key` (the full etcd key, prefix included) on `etcd_url` and sends
    /// `GET path` to the endpoints' `port` (a port name), `per_second` requests a
    /// second at most.
    pub fn start(etcd_url: &str, key: &str, port: &str, path: &str, per_second: u32) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let endpoints = Arc::new(Mutex::new(None));
        let watcher = {
            let (url, key) = (etcd_url.to_string(), key.to_string());
            let (stop, tally, endpoints) = (stop.clone(), tally.clone(), endpoints.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(follow(&url, &key, &stop, &tally, &endpoints));
            })
        };
        let sender = {
            let (port, path) = (port.to_string(), path.to_string());
            let (stop, tally, endpoints) = (stop.clone(), tally.clone(), endpoints.clone());
            let pause = Duration::from_secs(1) / per_second.max(1);
            std::thread::spawn(move || send(&port, &path, pause, &stop, &tally, &endpoints))
        };
        Traffic {
            stop,
            tally,
            endpoints,
            threads: vec![watcher, sender],
        }
    }

    /// What was counted so far.
    pub fn tally(&self) -> Tally {
        self.tally.lock().unwrap().clone()
    }

    /// The endpoints as the watch last saw them (`None` before the first listing).
    pub fn endpoints(&self) -> Option<Vec<Endpoint>> {
        self.endpoints.lock().unwrap().clone()
    }

    /// Stops both threads and returns the final count.
    pub fn stop(mut self) -> Tally {
        self.halt();
        self.tally()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The watcher: the key's value now, then every change, until `stop`. A watch
/// that breaks is opened again from a fresh read.
async fn follow(
    url: &str,
    key: &str,
    stop: &AtomicBool,
    tally: &Mutex<Tally>,
    endpoints: &Mutex<Option<Vec<Endpoint>>>,
) {
    let set = |value: Option<&[u8]>| {
        let list = value
            .and_then(|v| serde_json::from_slice::<Endpoints>(v).ok())
            .map(|e| e.endpoints)
            .unwrap_or_default();
        *endpoints.lock().unwrap() = Some(list);
        tally.lock().unwrap().updates += 1;
    };
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut client) = Client::connect([url], None).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let Ok(got) = client.get(key, None).await else {
            continue;
        };
        set(got.kvs().first().map(|kv| kv.value()));
        let from = got.header().map_or(0, |h| h.revision()) + 1;
        let options = WatchOptions::new().with_start_revision(from);
        let Ok(mut stream) = client.watch(key, Some(options)).await else {
            continue;
        };
        while !stop.load(Ordering::SeqCst) {
            let next = tokio::time::timeout(Duration::from_millis(100), stream.message()).await;
            match next {
                Err(_) => continue,
                Ok(Ok(Some(resp))) => {
                    for event in resp.events() {
                        match event.event_type() {
                            EventType::Put => set(event.kv().map(|kv| kv.value())),
                            EventType::Delete => set(None),
                        }
                    }
                }
                Ok(_) => break,
            }
        }
    }
}

/// The sender: one request per `pause`, the next endpoint each time.
fn send(
    port: &str,
    path: &str,
    pause: Duration,
    stop: &AtomicBool,
    tally: &Mutex<Tally>,
    endpoints: &Mutex<Option<Vec<Endpoint>>>,
) {
    let started = Instant::now();
    let mut next = 0usize;
    let mut empty_since: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        let list = endpoints.lock().unwrap().clone();
        let Some(list) = list else {
            std::thread::sleep(pause);
            continue;
        };
        if list.is_empty() {
            let since = *empty_since.get_or_insert_with(Instant::now);
            let mut t = tally.lock().unwrap();
            t.longest_empty = t.longest_empty.max(since.elapsed());
            drop(t);
            std::thread::sleep(pause);
            continue;
        }
        empty_since = None;
        let endpoint = &list[next % list.len()];
        next = next.wrapping_add(1);
        let outcome = request(endpoint, port, path);
        let mut t = tally.lock().unwrap();
        match outcome {
            Ok(()) => {
                t.ok += 1;
                *t.answered_by.entry(endpoint.instance.clone()).or_default() += 1;
            }
            Err(error) => {
                t.failed += 1;
                if t.failures.len() < KEPT_FAILURES {
                    t.failures.push(Failure {
                        instance: endpoint.instance.clone(),
                        address: endpoint.socket(Some(port)).unwrap_or_default(),
                        error,
                        after: started.elapsed(),
                    });
                }
            }
        }
        drop(t);
        std::thread::sleep(pause);
    }
}

/// One `GET path` over HTTP/1.0; success is a 200.
fn request(endpoint: &Endpoint, port: &str, path: &str) -> Result<(), String> {
    let socket = endpoint
        .socket(Some(port))
        .ok_or_else(|| format!("no port {port:?}"))?;
    let addr: SocketAddr = socket.parse().map_err(|e| format!("{socket}: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{addr} is not loopback: not sent"));
    }
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .and_then(|()| s.set_write_timeout(Some(Duration::from_secs(10))))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&reply);
    let status = text.split_whitespace().nth(1).unwrap_or("");
    if status == "200" {
        Ok(())
    } else {
        Err(format!(
            "answer {:?}",
            text.lines().next().unwrap_or("(nothing)")
        ))
    }
}
