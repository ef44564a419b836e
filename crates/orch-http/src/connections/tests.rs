//! Which connection makes room when a cap is reached.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::connections::{Admission, Connections, Registration, Work};

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

fn admitted(connections: &Arc<Connections>, peer: IpAddr) -> (Registration, bool) {
    match connections.admit(Some(peer)) {
        Admission::Admitted {
            registration,
            evicted,
        } => (registration, evicted),
        other => panic!("not admitted: {other:?}"),
    }
}

/// A connection idle since `idle` seconds after `base`, blocked writing since `blocked`.
fn stalled(
    connections: &Arc<Connections>,
    peer: IpAddr,
    base: Instant,
    idle: u64,
    blocked: Option<u64>,
) -> Registration {
    let (registration, _) = admitted(connections, peer);
    let at = |seconds| base + Duration::from_secs(seconds);
    registration
        .activity()
        .stalled_at(at(idle), blocked.map(at));
    registration
}

fn working(registration: &Registration) -> Work {
    registration
        .worker()
        .begin_work()
        .expect("an open connection starts work")
}

fn is_closing(registration: &Registration) -> bool {
    registration.activity().is_closing()
}

/// A minute ago, so that connections admitted now are newer than any `stalled` one.
fn minute_ago() -> Instant {
    Instant::now()
        .checked_sub(Duration::from_secs(60))
        .expect("the clock is past its first minute")
}

#[test]
fn a_full_table_closes_the_connection_idle_the_longest_for_a_new_one() {
    let connections = Connections::new(3, 3);
    let base = minute_ago();
    let middle = stalled(&connections, B, base, 2, None);
    let oldest = stalled(&connections, A, base, 1, None);
    let newest = stalled(&connections, A, base, 3, None);
    let (_fourth, evicted) = admitted(&connections, B);
    assert!(evicted);
    assert!(is_closing(&oldest));
    assert!(!is_closing(&middle) && !is_closing(&newest));
    assert_eq!(connections.len(), 3);
}

#[test]
fn the_connection_stalled_the_longest_loses_whether_blocked_writing_or_idle() {
    // (idle since, blocked since) of two connections, and which one loses.
    let cases = [
        ((1, None), (2, Some(3)), "first"),
        ((4, None), (2, Some(3)), "second"),
        ((1, Some(5)), (2, None), "second"),
        ((1, Some(2)), (1, Some(3)), "first"),
    ];
    for ((idle1, blocked1), (idle2, blocked2), loser) in cases {
        let connections = Connections::new(2, 2);
        let base = minute_ago();
        let first = stalled(&connections, A, base, idle1, blocked1);
        let second = stalled(&connections, A, base, idle2, blocked2);
        let (_new, evicted) = admitted(&connections, A);
        assert!(evicted);
        let closed = match (is_closing(&first), is_closing(&second)) {
            (true, false) => "first",
            (false, true) => "second",
            other => panic!("closed {other:?}"),
        };
        assert_eq!(
            closed,
            loser,
            "{:?} vs {:?}",
            (idle1, blocked1),
            (idle2, blocked2)
        );
    }
}

#[test]
fn a_blocked_write_makes_a_connection_stalled_since_then_until_drained() {
    let connections = Connections::new(2, 2);
    let base = minute_ago();
    let reader = stalled(&connections, A, base, 1, None);
    let (fresh, _) = admitted(&connections, A);
    // Blocked now, but idle since its accept (after `reader`'s): `reader` still loses.
    fresh.activity().write_blocked();
    let (_new, evicted) = admitted(&connections, A);
    assert!(evicted);
    assert!(is_closing(&reader) && !is_closing(&fresh));

    let connections = Connections::new(2, 2);
    let early = stalled(&connections, A, base, 1, Some(1));
    let later = stalled(&connections, A, base, 2, None);
    early.activity().write_drained();
    let (_new, evicted) = admitted(&connections, A);
    assert!(evicted);
    assert!(
        is_closing(&early) && !is_closing(&later),
        "drained, it is idle since before `later`"
    );
}

#[test]
fn a_request_head_arriving_makes_a_long_idle_connection_fresh_while_its_body_arrives() {
    let connections = Connections::new(2, 2);
    let base = minute_ago();
    let keep_alive = stalled(&connections, A, base, 1, None);
    let silent = stalled(&connections, A, base, 2, None);
    keep_alive.worker().request_arrived();
    let (_new, evicted) = admitted(&connections, A);
    assert!(evicted);
    assert!(is_closing(&silent) && !is_closing(&keep_alive));
}

#[test]
fn a_connection_handling_a_request_is_never_closed_for_another() {
    let connections = Connections::new(2, 2);
    let (first, _) = admitted(&connections, A);
    let (second, _) = admitted(&connections, B);
    let first_work = working(&first);
    let second_work = working(&second);
    assert!(matches!(connections.admit(Some(A)), Admission::Full));
    assert!(!is_closing(&first) && !is_closing(&second));
    drop(second_work);
    let (_third, evicted) = admitted(&connections, A);
    assert!(evicted);
    assert!(is_closing(&second));
    drop(first_work);
}

#[test]
fn a_peer_at_its_cap_makes_room_among_its_own_connections_or_is_refused() {
    let connections = Connections::new(10, 2);
    let base = minute_ago();
    let other_peer = stalled(&connections, B, base, 1, None);
    let a1 = stalled(&connections, A, base, 2, None);
    let a2 = stalled(&connections, A, base, 3, None);
    let (_a3, evicted) = admitted(&connections, A);
    assert!(evicted);
    assert!(is_closing(&a1), "the peer's own longest idle connection");
    assert!(
        !is_closing(&other_peer) && !is_closing(&a2),
        "another peer's connection is not touched"
    );

    let connections = Connections::new(10, 1);
    let (only, _) = admitted(&connections, A);
    let _busy = working(&only);
    assert!(matches!(connections.admit(Some(A)), Admission::Refused));
    let (_other, evicted) = admitted(&connections, B);
    assert!(!evicted, "other peers still get in");
}

#[test]
fn ipv4_mapped_addresses_count_as_their_ipv4_peer() {
    let connections = Connections::new(10, 1);
    let (v4, _) = admitted(&connections, A);
    let mapped = match A {
        IpAddr::V4(ip) => IpAddr::V6(ip.to_ipv6_mapped()),
        IpAddr::V6(ip) => IpAddr::V6(ip),
    };
    let (_v6, evicted) = admitted(&connections, mapped);
    assert!(evicted);
    assert!(is_closing(&v4));
}

#[test]
fn a_registration_dropped_frees_its_place() {
    let connections = Connections::new(1, 1);
    let (first, _) = admitted(&connections, A);
    let work = working(&first);
    assert!(matches!(connections.admit(Some(B)), Admission::Full));
    drop(work);
    drop(first);
    assert_eq!(connections.len(), 0);
    let (_second, evicted) = admitted(&connections, B);
    assert!(!evicted);
}
