//! The kernel's table of this machine's TCP sockets (`/proc/net/tcp{,6}`):
//! whether a port listens yet, and how many connections a listener holds,
//! without opening a connection of our own.

/// Whether a TCP socket of this machine listens on `port` (state `0A`).
pub fn is_listening(port: u16) -> bool {
    let wanted = format!(":{port:04X}");
    let mut found = false;
    visit_tcp_sockets(|local, state| found |= state == "0A" && local.ends_with(&wanted));
    found
}

/// Calls `visit(local address, state)` for every TCP socket in the kernel's
/// tables (/proc/net/tcp{,6}; addresses `ADDR:PORT` in hex, states in hex).
pub fn visit_tcp_sockets(mut visit: impl FnMut(&str, &str)) {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1).unwrap_or_default();
            let state = fields.nth(1).unwrap_or_default();
            visit(local, state);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sees_a_listening_port_in_the_socket_table() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(super::is_listening(port));
        drop(listener);
        assert!(!super::is_listening(port));
    }
}
