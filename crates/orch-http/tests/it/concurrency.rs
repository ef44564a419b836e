//! Many concurrent senders: every distinct delivery is stored exactly once.

use std::collections::HashSet;

use crate::support::{
    gitea_headers, plane_headers, run_slow_tests, HttpClient, TestServer, GITEA_SECRET,
    PLANE_SECRET,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_store_every_distinct_delivery_exactly_once() {
    check_concurrent_clients(TestServer::start(|_| {}).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_store_every_distinct_delivery_exactly_once_on_sqlite() {
    check_concurrent_clients(TestServer::start_on_sqlite(|_| {}).await).await;
}

async fn check_concurrent_clients(server: TestServer) {
    let (clients, per_client) = if run_slow_tests() { (32, 500) } else { (8, 50) };
    let plane_url = server.url("/webhooks/plane");
    let gitea_url = server.url("/webhooks/gitea");
    let mut senders = Vec::new();
    for client_idx in 0..clients {
        let (plane_url, gitea_url) = (plane_url.clone(), gitea_url.clone());
        senders.push(tokio::spawn(async move {
            let client = HttpClient::new();
            for item_idx in 0..per_client {
                let delivery = format!("c{client_idx}-d{item_idx}");
                let body =
                    format!(r#"{{"event": "issue", "delivery": "{delivery}"}}"#).into_bytes();
                // Alternate the two sources.
                let (url, headers) = match item_idx % 2 {
                    0 => (&plane_url, plane_headers(PLANE_SECRET, &delivery, &body)),
                    _ => (&gitea_url, gitea_headers(GITEA_SECRET, &delivery, &body)),
                };
                let reply = client.post(url, &headers, body).await;
                assert_eq!(
                    (reply.status, reply.json()),
                    (202, serde_json::json!({"status": "queued"})),
                    "{delivery}"
                );
            }
        }));
    }
    for sender in senders {
        sender.await.expect("sender task");
    }

    let stored = server.stored().await;
    assert_eq!(stored.len(), clients * per_client);
    let ids: HashSet<&str> = stored
        .iter()
        .map(|delivery| delivery.delivery_id.as_str())
        .collect();
    assert_eq!(
        ids.len(),
        clients * per_client,
        "each delivery is stored once"
    );
}
