//! tcp probes: healthy when a connection to 127.0.0.1:<port> is accepted.

pub async fn check(port: u16) -> Result<(), String> {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map(drop)
        .map_err(|e| format!("tcp connect 127.0.0.1:{port}: {e}"))
}
