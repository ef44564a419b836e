//! The webhook inbox: dedupe by delivery id and body, pending order, lag.

use std::time::Duration;

use crate::fakes::contract::store::{assert_not_found, at, delivery};
use crate::fakes::contract::{case, Case};
use crate::ports::{InboxInsert, InboxOutcome, Source, Store};
use crate::time::Timestamp;

/// Stores `count` distinct deliveries of `source`, delivery ids and bodies numbered after
/// the prefixes in `names`, the `n`th received at `at(n)`; their row ids.
async fn queued(store: &dyn Store, source: Source, names: (&str, &str), count: i64) -> Vec<i64> {
    let mut ids = Vec::new();
    for n in 0..count {
        let (id, body) = (format!("{}{n}", names.0), format!("{}{n}", names.1));
        let inserted = store
            .inbox_insert(delivery(source, &id, &body, at(n)))
            .await
            .expect("insert");
        let InboxInsert::Queued(id) = inserted else {
            panic!("expected queued, got {inserted:?}")
        };
        ids.push(id);
    }
    ids
}

pub(super) const CASES: &[Case<dyn Store>] = &[
    case!(inbox_dedupes_by_source_and_delivery_id, |store| {
        let first = store
            .inbox_insert(delivery(Source::Plane, "d1", "one", at(0)))
            .await
            .expect("insert");
        let InboxInsert::Queued(id) = first else {
            panic!("first delivery should be queued, got {first:?}")
        };
        let again = store
            .inbox_insert(delivery(Source::Plane, "d1", "two", at(1)))
            .await
            .expect("insert");
        assert_eq!(again, InboxInsert::Duplicate);
        let gitea = store
            .inbox_insert(delivery(Source::Gitea, "d1", "three", at(2)))
            .await
            .expect("insert");
        assert!(
            matches!(gitea, InboxInsert::Queued(other) if other != id),
            "another source is another delivery"
        );
        let much_later = at(30 * 24 * 3600);
        let old_id = store
            .inbox_insert(delivery(Source::Plane, "d1", "four", much_later))
            .await
            .expect("insert");
        assert_eq!(old_id, InboxInsert::Duplicate, "delivery ids never expire");
        assert_eq!(store.inbox_pending(10).await.expect("pending").len(), 2);
    }),
    case!(
        inbox_dedupes_the_same_body_within_seven_days_only,
        |store| {
            let week_ms = 7 * 24 * 3600 * 1000;
            let start = at(0);
            let later = |millis: i64| Timestamp::from_millis(start.as_millis() + millis);
            assert!(matches!(
                store
                    .inbox_insert(delivery(Source::Plane, "d1", "body", start))
                    .await
                    .expect("insert"),
                InboxInsert::Queued(_)
            ));
            let retry = store
                .inbox_insert(delivery(Source::Plane, "d2", "body", later(week_ms - 1)))
                .await
                .expect("insert");
            assert_eq!(
                retry,
                InboxInsert::Duplicate,
                "same body under a new delivery id within 7 days"
            );
            let gitea = store
                .inbox_insert(delivery(Source::Gitea, "d3", "body", later(1)))
                .await
                .expect("insert");
            assert!(
                matches!(gitea, InboxInsert::Queued(_)),
                "another source does not dedupe by body"
            );
            let week_on = store
                .inbox_insert(delivery(Source::Plane, "d4", "body", later(week_ms)))
                .await
                .expect("insert");
            assert!(
                matches!(week_on, InboxInsert::Queued(_)),
                "7 days later the body is new again"
            );
        }
    ),
    case!(
        inbox_pending_is_oldest_first_until_processed_and_stats_show_lag,
        |store| {
            assert_eq!(store.inbox_stats(at(0)).await.expect("stats").pending, 0);
            assert_eq!(
                store
                    .inbox_stats(at(0))
                    .await
                    .expect("stats")
                    .oldest_pending_age,
                None
            );
            let ids = queued(store, Source::Gitea, ("d", "b"), 3).await;
            let pending = store.inbox_pending(10).await.expect("pending");
            assert_eq!(pending.iter().map(|d| d.id).collect::<Vec<_>>(), ids);
            let first = &pending[0];
            assert_eq!(
                (
                    first.source,
                    first.delivery_id.as_str(),
                    first.event_type.as_str()
                ),
                (Source::Gitea, "d0", "issue")
            );
            assert_eq!(
                (first.body.as_slice(), first.received_at),
                (b"b0".as_slice(), at(0))
            );
            assert_eq!(store.inbox_pending(2).await.expect("pending").len(), 2);
            let stats = store.inbox_stats(at(10)).await.expect("stats");
            assert_eq!(
                (stats.pending, stats.oldest_pending_age),
                (3, Some(Duration::from_secs(10)))
            );
            store
                .inbox_mark_processed(ids[0], &InboxOutcome::Applied, at(11))
                .await
                .expect("mark");
            store
                .inbox_mark_processed(
                    ids[2],
                    &InboxOutcome::Ignored("not ours".to_owned()),
                    at(11),
                )
                .await
                .expect("mark");
            let pending = store.inbox_pending(10).await.expect("pending");
            assert_eq!(
                pending.iter().map(|d| d.id).collect::<Vec<_>>(),
                vec![ids[1]]
            );
            let stats = store.inbox_stats(at(10)).await.expect("stats");
            assert_eq!(
                (stats.pending, stats.oldest_pending_age),
                (1, Some(Duration::from_secs(9)))
            );
            let duplicate = store
                .inbox_insert(delivery(Source::Gitea, "d0", "b0", at(12)))
                .await
                .expect("insert");
            assert_eq!(
                duplicate,
                InboxInsert::Duplicate,
                "a processed delivery still dedupes"
            );
            assert_not_found(
                store
                    .inbox_mark_processed(ids[2] + 1000, &InboxOutcome::Applied, at(12))
                    .await,
                "unknown delivery",
            );
        }
    ),
    case!(
        inbox_marks_a_page_at_once_and_names_the_unknown_ids,
        |store| {
            let ids = queued(store, Source::Plane, ("p", "page"), 4).await;
            let unknown = ids[3] + 1000;
            assert_not_found(
                store
                    .inbox_mark_processed_all(
                        &[
                            (ids[0], InboxOutcome::Applied),
                            (unknown, InboxOutcome::Applied),
                            (ids[2], InboxOutcome::Ignored("not ours".to_owned())),
                        ],
                        at(10),
                    )
                    .await,
                "a page with an unknown delivery",
            );
            let left: Vec<i64> = store
                .inbox_pending(10)
                .await
                .expect("pending")
                .iter()
                .map(|d| d.id)
                .collect();
            assert_eq!(
                left,
                vec![ids[1], ids[3]],
                "the known deliveries of the page are marked all the same"
            );
            store
                .inbox_mark_processed_all(
                    &[
                        (ids[1], InboxOutcome::NoChange("nothing to do".to_owned())),
                        (ids[3], InboxOutcome::Applied),
                    ],
                    at(11),
                )
                .await
                .expect("marks");
            store
                .inbox_mark_processed_all(&[], at(12))
                .await
                .expect("an empty page writes nothing");
            assert!(store.inbox_pending(10).await.expect("pending").is_empty());
            assert_eq!(store.inbox_stats(at(12)).await.expect("stats").pending, 0);
        }
    ),
];
