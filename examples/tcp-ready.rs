//! A minimal TCP server for benchmarks: binds 127.0.0.1:$PORT and accepts and closes
//! connections forever. One thread, no runtime, no allocation per connection, so
//! hundreds of instances fit on a small machine. SIGTERM ends it (default action).
//!
//! Used by `make bench` (benches/scale.rs) as an instance that is ready at once
//! under a TCP readiness probe.

use std::net::TcpListener;

fn main() {
    let port = std::env::var("PORT").unwrap_or_else(|_| {
        eprintln!("tcp-ready: PORT is not set");
        std::process::exit(2)
    });
    let listener = TcpListener::bind(format!("127.0.0.1:{port}")).unwrap_or_else(|e| {
        eprintln!("tcp-ready: bind 127.0.0.1:{port}: {e}");
        std::process::exit(1)
    });
    loop {
        // Accept and drop at once: the probe only needs the handshake.
        if let Err(e) = listener.accept() {
            eprintln!("tcp-ready: accept: {e}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
