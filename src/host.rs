//! Facts about the host and its signals, shared by every binary.

/// This machine's host name (the agent's default node name, the controller's
/// default identity, the `user@host` of operation records).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// This host's primary address: the source address of its route to the outside
/// (a UDP socket connected to a documentation address, TEST-NET-1 or
/// 2001:db8::; connecting a UDP socket sends nothing). `None` when the host has
/// no such route, or only loopback.
pub fn primary_ip() -> Option<std::net::IpAddr> {
    use std::net::UdpSocket;
    let via = |bind: &str, to: &str| {
        let socket = UdpSocket::bind(bind).ok()?;
        socket.connect(to).ok()?;
        let ip = socket.local_addr().ok()?.ip();
        (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
    };
    via("0.0.0.0:0", "192.0.2.1:9").or_else(|| via("[::]:0", "[2001:db8::1]:9"))
}

/// Resolves on SIGTERM or SIGINT: how supervisors and people ask a daemon to stop.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
