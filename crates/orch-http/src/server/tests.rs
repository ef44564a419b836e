//! Who may send admin commands.

use std::net::SocketAddr;

use crate::server::commands_allowed_from;

#[test]
fn without_an_admin_token_only_this_machine_may_send_commands() {
    let local: SocketAddr = "127.0.0.1:50000".parse().expect("address");
    let local_v6: SocketAddr = "[::1]:50000".parse().expect("address");
    let remote: SocketAddr = "192.0.2.7:50000".parse().expect("address");
    assert!(commands_allowed_from(false, local));
    assert!(commands_allowed_from(false, local_v6));
    assert!(!commands_allowed_from(false, remote));
    assert!(
        commands_allowed_from(true, remote),
        "with a token, the token decides"
    );
}
