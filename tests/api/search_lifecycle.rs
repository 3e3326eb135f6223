//! Each school's search index has a lifecycle: opened on first use with no
//! writer held between writes, closed when idle or when the open ones are
//! over `search.max_open_bytes` (least recently used first), reopened from
//! disk without a rebuild, and rebuilt from the database when another node
//! announces a change, while searches go on.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{Backend, Member, TestApp, email, spawn_app_with};
use crate::knowledge::{search, upload_and_wait};
use crate::on_both_databases;

on_both_databases!(
    indexes_over_the_budget_close_and_reopen_from_disk,
    idle_indexes_close_and_searches_go_on,
    a_rebuild_while_searching_loses_no_search,
    a_write_during_a_rebuild_is_kept,
);

const SCHOOLS: [(&str, &str, &str, &str); 3] = [
    (
        "Volcano School",
        "volcanoes.txt",
        "Volcanoes erupt lava when magma rises through the crust.\n",
        "magma",
    ),
    (
        "River School",
        "rivers.txt",
        "Rivers carry sediment from the mountains and build deltas at the sea.\n",
        "sediment",
    ),
    (
        "Star School",
        "stars.txt",
        "Stars shine by fusing hydrogen into helium deep in their cores.\n",
        "hydrogen",
    ),
];

/// A school with its one text, ready.
async fn school(app: &TestApp, i: usize) -> Member {
    let (name, file, text, _) = SCHOOLS[i];
    let admin = app.register(name, &email(&format!("lifecycle-{i}"))).await;
    upload_and_wait(app, &admin, file, text.as_bytes().to_vec()).await;
    admin
}

/// The school finds its own passage, and nothing of the others'.
async fn finds_its_own(app: &TestApp, who: &Member, i: usize) {
    let hits: Vec<Value> = search(app, who, SCHOOLS[i].3).await;
    assert!(!hits.is_empty(), "{} found nothing", SCHOOLS[i].0);
    for hit in &hits {
        assert_eq!(hit["text"].as_str().unwrap().trim(), SCHOOLS[i].2.trim());
    }
}

async fn indexes_over_the_budget_close_and_reopen_from_disk(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| {
        // Any open index is over the budget: only those in use stay open.
        s.search.max_open_bytes = 1;
        s.search.idle_close_secs = 0;
    })
    .await
    else {
        return;
    };
    let mut admins = Vec::new();
    for i in 0..SCHOOLS.len() {
        admins.push(school(&app, i).await);
    }
    let index = app.state.knowledge.indexes();
    assert_eq!(index.stats().writers_open, 0, "a writer outlived its write");
    for (i, admin) in admins.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(300)).await;
        finds_its_own(&app, admin, i).await;
    }
    let before = index.stats();
    assert!(before.open <= 2, "{before:?}");
    assert!(before.closed_budget >= 2, "{before:?}");

    // The first school's index was closed; it reopens from its files.
    tokio::time::sleep(Duration::from_millis(300)).await;
    finds_its_own(&app, &admins[0], 0).await;
    let after = index.stats();
    assert_eq!(after.rebuilt, before.rebuilt, "{after:?}");
    assert!(
        after.opened_from_disk > before.opened_from_disk,
        "{after:?}"
    );

    // New material in a closed school's index is found once it reopens.
    tokio::time::sleep(Duration::from_millis(300)).await;
    finds_its_own(&app, &admins[2], 2).await;
    upload_and_wait(
        &app,
        &admins[1],
        "tides.txt",
        b"Tides rise and fall twice a day, pulled by the moon.\n".to_vec(),
    )
    .await;
    let hits = search(&app, &admins[1], "tides moon").await;
    assert!(
        hits[0]["text"].as_str().unwrap().contains("Tides"),
        "{hits:?}"
    );
    assert_eq!(index.stats().writers_open, 0);
}

async fn idle_indexes_close_and_searches_go_on(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| {
        s.search.idle_close_secs = 1;
    })
    .await
    else {
        return;
    };
    let admin = school(&app, 0).await;
    finds_its_own(&app, &admin, 0).await;
    let index = app.state.knowledge.indexes();
    let deadline = Instant::now() + Duration::from_secs(15);
    while index.stats().open > 0 {
        assert!(Instant::now() < deadline, "{:?}", index.stats());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(index.stats().closed_idle >= 1);
    finds_its_own(&app, &admin, 0).await;
    assert_eq!(index.stats().open, 1);
}

async fn a_rebuild_while_searching_loses_no_search(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |_| {}).await else {
        return;
    };
    let admin = school(&app, 0).await;
    let org: bwenge::ids::OrgId = admin.org_id.parse().unwrap();
    let index = app.state.knowledge.indexes();
    finds_its_own(&app, &admin, 0).await;
    let before = index.stats();
    // Searches run while the index is rebuilt from the database (as when
    // another node announces a change), three times.
    let searches = futures_util::future::join_all((0..30).map(|_| async {
        finds_its_own(&app, &admin, 0).await;
        // Built aside: the index in use stays open until the new one is
        // swapped in, so no search waits for a rebuild or a reopening.
        assert_eq!(index.stats().open, 1, "{:?}", index.stats());
    }));
    let rebuilds = async {
        for _ in 0..3 {
            index.invalidate(org).await.unwrap();
            assert_eq!(index.stats().open, 1, "{:?}", index.stats());
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    };
    let ((), _) = futures_util::future::join(rebuilds, searches).await;
    finds_its_own(&app, &admin, 0).await;
    let after = index.stats();
    assert_eq!(after.rebuilt, before.rebuilt + 3, "{after:?}");
    assert_eq!(
        after.opened_from_disk, before.opened_from_disk,
        "an index rebuilt aside is swapped in, not closed and reopened: {after:?}"
    );
    // The files on disk are the rebuilt index's: a reopening finds them.
    assert_eq!(index.close_idle(Duration::ZERO), 1);
    finds_its_own(&app, &admin, 0).await;
    assert_eq!(index.stats().opened_from_disk, before.opened_from_disk + 1);
    assert_eq!(index.stats().rebuilt, after.rebuilt);
}

/// A passage indexed while a rebuild runs is in the index swapped in.
async fn a_write_during_a_rebuild_is_kept(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |_| {}).await else {
        return;
    };
    let admin = school(&app, 0).await;
    let org: bwenge::ids::OrgId = admin.org_id.parse().unwrap();
    let index = app.state.knowledge.indexes();
    let (_, file, text, _) = SCHOOLS[1];
    let rebuilds = async {
        for _ in 0..5 {
            index.invalidate(org).await.unwrap();
        }
    };
    let upload = upload_and_wait(&app, &admin, file, text.as_bytes().to_vec());
    futures_util::future::join(rebuilds, upload).await;
    let hits: Vec<Value> = search(&app, &admin, SCHOOLS[1].3).await;
    assert!(
        hits.iter()
            .any(|h| h["text"].as_str().unwrap().trim() == text.trim()),
        "the passage written during the rebuilds is lost: {hits:?}"
    );
    finds_its_own(&app, &admin, 0).await;
}
