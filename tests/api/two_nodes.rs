//! Two nodes sharing PostgreSQL and Redis: what one indexes, the other
//! finds; what one deletes, the other stops finding.

use reqwest::Method;

use crate::helpers::{Backend, TestApp, email, fresh_postgres_database, redis_url, test_settings};
use crate::knowledge::{search, upload_and_wait};

async fn node(pg: &str, redis: &str, prefix: &str) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path(), pg);
    settings.redis_url = redis.to_owned();
    settings.redis.key_prefix = prefix.to_owned();
    // Nodes of one deployment share their secrets.
    settings.secrets.jwt_secret =
        bwenge::config::Secret::new("a-shared-secret-for-both-nodes-0123456789");
    crate::helpers::start(settings, Backend::Postgres, dir).await
}

#[actix_web::test]
async fn a_node_finds_what_another_indexed() {
    let Some(redis) = redis_url() else { return };
    let Some(pg) = fresh_postgres_database().await else {
        return;
    };
    let prefix = format!("test:{}:", uuid::Uuid::new_v4());
    let a = node(&pg, &redis, &prefix).await;
    let b = node(&pg, &redis, &prefix).await;
    let teacher = a.register("School", &email("teacher")).await;

    // B has looked at the organisation's (empty) index already.
    assert!(search(&b, &teacher, "photosynthesis").await.is_empty());
    let src = upload_and_wait(
        &a,
        &teacher,
        "plants.txt",
        b"Photosynthesis happens in the chloroplasts of green leaves.".to_vec(),
    )
    .await;
    assert_eq!(src["status"], "ready");
    let mut found = Vec::new();
    for _ in 0..100 {
        found = search(&b, &teacher, "photosynthesis chloroplasts").await;
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(found[0]["source_id"], src["id"]);

    // Deleted on A: gone on B too.
    let path = format!("/v1/knowledge/{}", src["id"].as_str().unwrap());
    assert_eq!(
        a.authed(Method::DELETE, &path, &teacher.access)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let mut gone = false;
    for _ in 0..100 {
        if search(&b, &teacher, "photosynthesis chloroplasts")
            .await
            .is_empty()
        {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(gone, "node B still finds a deleted source");
}
