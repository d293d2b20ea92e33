//! The same behaviour suite against a real three-master Redis Cluster.

mod common;

use std::time::Duration;

use cache_core::{Clock, Entry, Store, SystemClock};
use cache_store_redis::{Action, BusEvent, RedisStore};
use cache_testkit::RedisCluster;
use common::{Fixture, Raw};

async fn fixture(cluster: &RedisCluster) -> Fixture {
    Fixture {
        builder: RedisStore::builder().cluster(cluster.urls()).prefix("t"),
        raw: Raw::cluster(cluster.urls()).await,
    }
}

fn cluster() -> RedisCluster {
    RedisCluster::start().expect("a 3-master cluster starts")
}

#[tokio::test]
async fn round_trips_ttl_batches_and_limits() {
    let c = cluster();
    let mut f = fixture(&c).await;
    common::values_and_absent_markers_round_trip(&mut f).await;
    common::ttl_is_the_physical_expiry_in_milliseconds(&mut f).await;
    common::batches_keep_order_and_report_missing_keys(&mut f).await;
    common::oversized_input_is_refused_before_any_write(&mut f).await;
    common::health_reports_version_role_and_latency(&mut f).await;
}

#[tokio::test]
async fn keys_spread_over_every_master() {
    let c = cluster();
    let f = fixture(&c).await;
    let store = f.store("spread");
    let entries: Vec<(u32, Entry<u32>)> = (0..300)
        .map(|i| (i, Entry::new(i, SystemClock.now(), Duration::from_secs(60))))
        .collect();
    store
        .put_many(entries)
        .await
        .expect("put_many across slots");
    for url in c.urls() {
        let mut node = Raw::standalone(&url).await;
        let n: u64 = node.q(&redis::cmd("DBSIZE")).await;
        assert!(n > 0, "every master holds some of the keys");
    }
}

#[tokio::test]
async fn prefix_invalidation_scans_every_master() {
    let c = cluster();
    common::prefix_invalidation_stays_in_its_namespace(&mut fixture(&c).await, 20_000).await;
}

#[tokio::test]
async fn tag_invalidation_works_across_slots() {
    let c = cluster();
    common::tag_invalidation_removes_every_member(&mut fixture(&c).await, 10_000).await;
}

#[tokio::test]
async fn a_write_is_removed_only_while_the_key_holds_it() {
    let c = cluster();
    common::a_write_is_removed_only_while_the_key_holds_it(&mut fixture(&c).await).await;
}

#[tokio::test]
async fn corrupt_bytes_are_a_counted_miss_and_deleted() {
    let c = cluster();
    common::corrupt_bytes_are_a_counted_miss_and_deleted(&mut fixture(&c).await).await;
}

#[tokio::test]
async fn the_bus_delivers_across_instances() {
    let c = cluster();
    let a = RedisStore::builder().cluster(c.urls()).build().expect("a");
    // B seeds from another node: a cluster broadcasts PUBLISH to every node.
    let mut urls = c.urls();
    urls.rotate_left(1);
    let b = RedisStore::builder().cluster(urls).build().expect("b");
    let bus_a = a.bus();
    let mut sub_b = b.bus().subscribe().await;
    assert!(sub_b.is_connected());
    bus_a
        .publish(Action::Keys(vec!["k".into()]))
        .await
        .expect("publish");
    let event = tokio::time::timeout(Duration::from_secs(5), sub_b.recv())
        .await
        .expect("in time");
    assert!(
        matches!(&event, Some(BusEvent::Message(m)) if m.origin == bus_a.origin()),
        "{event:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_covers_every_master_and_the_bus_follows_a_failover() {
    let mut c = tokio::task::block_in_place(|| RedisCluster::start_with_replicas(3, 1))
        .expect("a 3-master cluster with a replica each starts");
    let store = RedisStore::builder()
        .cluster(c.urls())
        .namespace("failover")
        .connect_timeout(Duration::from_millis(300))
        .build()
        .expect("store");
    let h = store.check().await;
    assert_eq!(h.masters.len(), 3, "{h:?}");
    assert!(
        h.masters
            .iter()
            .all(|m| m.role.as_deref() == Some("master") && m.error.is_none()),
        "{h:?}"
    );
    assert_eq!(
        h.status(store.op_timeout()),
        cache_core::HealthStatus::Healthy
    );

    let publisher = store.bus();
    let reader = RedisStore::builder()
        .cluster(c.urls())
        .namespace("failover")
        .connect_timeout(Duration::from_millis(300))
        .build()
        .expect("reader");
    let mut sub = reader
        .bus()
        .keepalive(Duration::from_millis(50))
        .subscribe()
        .await;
    assert!(sub.is_connected());
    let slot = {
        let mut raw = c.nodes()[0].connect().expect("raw");
        match raw
            .cmd(&["CLUSTER", "KEYSLOT", publisher.stream_key()])
            .expect("keyslot")
        {
            cache_testkit::Reply::Int(n) => n as u16,
            other => panic!("KEYSLOT answered {other:?}"),
        }
    };
    let (old, new) = tokio::task::block_in_place(|| c.kill_master_and_wait_for_promotion(slot))
        .expect("a replica takes over");
    assert_ne!(old, new);
    let event = tokio::time::timeout(Duration::from_secs(15), sub.recv())
        .await
        .expect("in time");
    assert_eq!(
        event,
        Some(BusEvent::Gap(cache_store_redis::GapReason::ServerChanged)),
        "a failover may lose unreplicated messages: a gap"
    );
    let mut published = false;
    for _ in 0..200 {
        if publisher.publish(Action::Tag("after".into())).await.is_ok() {
            published = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(published, "publishing reaches the new master");
    let event = tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .expect("in time");
    assert!(
        matches!(&event, Some(BusEvent::Message(m)) if m.action == Action::Tag("after".into())),
        "{event:?}"
    );
    let h = store.check().await;
    assert_eq!(
        h.masters.len(),
        3,
        "the promoted replica is a master: {h:?}"
    );
    assert!(h.masters.iter().all(|m| m.error.is_none()), "{h:?}");
}

#[tokio::test]
async fn clear_epoch_rises_and_is_published() {
    let c = cluster();
    common::clear_epoch_rises_and_is_published(&mut fixture(&c).await).await;
}

#[tokio::test]
async fn oversized_values_are_a_counted_miss_and_never_read_whole() {
    let c = cluster();
    common::oversized_values_are_a_counted_miss_and_never_read_whole(&mut fixture(&c).await).await;
}
