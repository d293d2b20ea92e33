//! The cluster scenarios: a master failover with replicas, and a slot migration
//! under load.

use std::time::Duration;

use cache_testkit::{RedisCluster, Reply};

use crate::{HOT_KEYS, INVALIDATIONS, Redis, Run, Timing, check, fleet, fleet_with, outage_end};

/// `CLUSTER KEYSLOT` of `key`, asked of a node.
fn keyslot(cluster: &RedisCluster, key: &str) -> Result<u16, String> {
    let node = cluster
        .nodes()
        .first()
        .ok_or_else(|| "empty cluster".to_owned())?;
    match node
        .connect()
        .and_then(|mut c| c.cmd(&["CLUSTER", "KEYSLOT", key]))
        .map_err(|e| e.to_string())?
    {
        Reply::Int(n) => u16::try_from(n).map_err(|e| e.to_string()),
        other => Err(format!("KEYSLOT answered {other:?}")),
    }
}

fn bus_key(name: &str) -> String {
    format!("cache:{name}#bus")
}

pub(crate) async fn failover(t: Timing) -> Run {
    let mut cluster = tokio::task::block_in_place(|| RedisCluster::start_with_replicas(3, 1))
        .map_err(|e| e.to_string())?;
    let name = "failover";
    let mut f = fleet(name, &Redis::Cluster(cluster.urls())).await?;
    let slot = keyslot(&cluster, &bus_key(name))?;
    f.start_load("baseline");
    tokio::time::sleep(t.baseline).await;
    f.begin_phase("fault");
    f.watch_bypass();
    let killing = tokio::task::spawn_blocking(move || {
        let r = cluster.kill_master_and_wait_for_promotion(slot);
        (cluster, r)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let invalidated = f.invalidate(INVALIDATIONS).await;
    let (cluster, promoted) = killing.await.map_err(|e| e.to_string())?;
    promoted.map_err(|e| e.to_string())?;
    let run = outage_end(t, f, invalidated).await;
    drop(cluster);
    run
}

pub(crate) async fn slot_migration(t: Timing) -> Run {
    let cluster = tokio::task::block_in_place(RedisCluster::start).map_err(|e| e.to_string())?;
    let name = "migration";
    let redis = Redis::Cluster(cluster.urls());
    let mut f = fleet_with(name, |_| &redis, true).await?;
    let store = f.caches[0]
        .tiered()
        .l2()
        .ok_or_else(|| "no L2".to_owned())?
        .clone();
    let mut slots = std::collections::BTreeSet::new();
    slots.insert(keyslot(&cluster, &bus_key(name))?);
    for k in 0..HOT_KEYS {
        let key = store.redis_key(&k).map_err(|e| e.to_string())?;
        slots.insert(keyslot(&cluster, &key)?);
    }
    // More slots, spread over the key space, up to the scenario's count.
    let mut extra = 0u16;
    while slots.len() < t.slots && extra < 16_384 {
        slots.insert(extra);
        extra += 7;
    }
    f.start_load("baseline");
    tokio::time::sleep(t.baseline).await;
    f.begin_phase("fault");
    f.watch_bypass();
    let masters = cluster.masters();
    let moving = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        let mut moved = 0usize;
        for &slot in &slots {
            let to = match cluster.owner_of(slot) {
                Ok(owner) => (owner + 1) % masters,
                Err(e) => return (cluster, Err(e.to_string())),
            };
            if let Err(e) = cluster.migrate_slot(slot, to) {
                return (cluster, Err(format!("slot {slot}: {e}")));
            }
            moved += 1;
        }
        (cluster, Ok(moved))
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let invalidated = f.invalidate(INVALIDATIONS).await;
    let (cluster, moved) = moving.await.map_err(|e| e.to_string())?;
    let moved = moved?;
    println!("chaos: moved {moved} slots");
    let mut run = outage_end(t, f, invalidated).await;
    drop(cluster);
    if let Ok(m) = &mut run {
        let bypass = m.bypass.unwrap_or(Duration::MAX);
        m.checks.push(check(
            format!("L2 bypass (any breaker open) while {moved} slots moved < 1 s"),
            bypass < Duration::from_secs(1),
            format!("{:.2} s", bypass.as_secs_f64()),
        ));
    }
    run
}
