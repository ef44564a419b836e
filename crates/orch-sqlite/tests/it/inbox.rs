//! The inbox against rows orch did not write itself.

use orch_core::ports::{InboxInsert, NewDelivery, Source, Store};

use crate::support::{at, temp_store};

fn delivery(id: &str, body: &str) -> NewDelivery {
    NewDelivery {
        source: Source::Gitea,
        delivery_id: id.to_owned(),
        event_type: "status".to_owned(),
        body_sha256: format!("{:0>64}", id),
        body: body.as_bytes().to_vec(),
        received_at: at(1),
    }
}

#[tokio::test]
async fn an_unreadable_inbox_row_is_set_aside_and_does_not_stall_the_others() {
    let store = temp_store();
    let InboxInsert::Queued(first) = store
        .inbox_insert(delivery("1", "{\"a\": 1}"))
        .await
        .expect("insert")
    else {
        panic!("queued");
    };
    // What a process that could write the file might insert: a text body, and a source
    // orch does not know.
    let conn = rusqlite::Connection::open(store.db_path()).expect("open");
    conn.execute(
        "INSERT INTO inbox (source, delivery_id, event_type, body_sha256, body, received_at) \
         VALUES ('gitea', 'text-body', 'status', 'x', '{}', 1), \
                ('nobody', 'odd-source', 'status', 'y', X'00', 2)",
        [],
    )
    .expect("hand-written rows");
    store
        .inbox_insert(delivery("2", "{\"b\": 2}"))
        .await
        .expect("insert");

    let pending = store.inbox_pending(10).await.expect("pending is readable");
    let ids: Vec<&str> = pending.iter().map(|d| d.delivery_id.as_str()).collect();
    assert_eq!(ids, ["1", "text-body", "2"]);
    assert_eq!(pending[1].body, b"{}", "a text body is read as its bytes");
    assert_eq!(pending[0].id, first);

    let outcome: String = conn
        .query_row(
            "SELECT outcome FROM inbox WHERE delivery_id = 'odd-source'",
            [],
            |row| row.get(0),
        )
        .expect("set aside");
    assert!(outcome.starts_with("error: unreadable row"), "{outcome}");
    assert_eq!(
        store.inbox_pending(10).await.expect("pending").len(),
        3,
        "the unreadable row is not offered again"
    );
}
