//! The Redis bus between two app instances (two "nodes" sharing one Redis).

use std::time::Duration;

use crate::helpers::{Backend, redis_url, spawn_app_with};

#[actix_web::test]
async fn two_nodes_talk_over_the_redis_bus() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("test:{}:", uuid::Uuid::new_v4());
    let node = |url: String, prefix: String| {
        spawn_app_with(Backend::Sqlite, move |s| {
            s.redis_url = url;
            s.redis.key_prefix = prefix;
        })
    };
    let a = node(url.clone(), prefix.clone()).await.unwrap();
    let b = node(url.clone(), prefix.clone()).await.unwrap();
    // A third node under another prefix (another deployment) hears nothing.
    let other = node(url, format!("test:{}:", uuid::Uuid::new_v4()))
        .await
        .unwrap();

    let mut on_b = b.state.bus.subscribe("org.42.index").await.unwrap();
    let mut on_other = other.state.bus.subscribe("org.42.index").await.unwrap();
    a.state
        .bus
        .publish("org.42.index", b"chunks-added")
        .await
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(2), on_b.recv())
        .await
        .expect("node B hears node A")
        .unwrap();
    assert_eq!(msg.payload, b"chunks-added");
    assert_eq!(msg.topic, "org.42.index");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), on_other.recv())
            .await
            .is_err()
    );

    // The rate limiter is shared too: a bucket drained on A is empty on B.
    use bwenge_actors::ports::RateLimit;
    let limit = RateLimit {
        capacity: 2,
        refill_per_sec: 0.01,
    };
    assert!(
        a.state
            .limiter
            .check("ip:1", limit, 1)
            .await
            .unwrap()
            .is_allowed()
    );
    assert!(
        a.state
            .limiter
            .check("ip:1", limit, 1)
            .await
            .unwrap()
            .is_allowed()
    );
    assert!(
        !b.state
            .limiter
            .check("ip:1", limit, 1)
            .await
            .unwrap()
            .is_allowed()
    );

    // And the cache.
    a.state
        .cache
        .set("k", b"v", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        b.state.cache.get("k").await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
}
