//! Free loopback ports, for servers that must be told their port before they listen (the real
//! registry reads it from its config) and for addresses nothing listens on.

use std::net::TcpListener;

/// A loopback port that was free a moment ago: the kernel's pick for a listener that is then
/// closed. Another process could take it in between; the servers started on it fail loudly then.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
