//! The two migration folders must define the same schema: tables, columns,
//! types (mapped across dialects), nullability, primary keys, foreign keys,
//! indexes, triggers and functions. Applied to a fresh SQLite file and a
//! fresh PostgreSQL database, then introspected.
//!
//! Triggers and functions are compared by name and table, the most both
//! dialects can list (SQLite `sqlite_master`; PostgreSQL
//! `information_schema.triggers` and `pg_proc`; SQLite has no stored
//! functions). The deliberate differences are in [`DIALECT_ONLY`].

use std::collections::BTreeSet;

use sqlx::Row;

use crate::helpers::{fresh_postgres_database, test_settings};

/// One fact about the schema, comparable across dialects.
type Fact = String;

/// Facts one dialect has on purpose, with why.
const DIALECT_ONLY: &[(&str, &str)] = &[
    (
        "trigger chat_events_advance_session on chat_events",
        // SQLite appends a chat event in one `INSERT … SELECT last_seq + 1`
        // statement; the trigger advances the session's `last_seq` within it.
        // PostgreSQL appends in a transaction that updates the row first
        // (`chat::store`), so it needs none.
        "sqlite",
    ),
    // SQLite stores raw analytics events in the order of (organisation,
    // kind, at, id), the table being its key (WITHOUT ROWID, migration
    // 0012), so that a school's events lie together on disk. PostgreSQL's
    // heap keeps rows in the order they were written whatever the key, so
    // there the key stays `id` and an index on (organisation, kind, at, id)
    // serves the same reads, carrying the columns they read (migration 0013)
    // so that they do not visit the heap.
    ("pk analytics_events.organization_id", "sqlite"),
    ("pk analytics_events.kind", "sqlite"),
    ("pk analytics_events.at", "sqlite"),
    (
        "index analytics_events_org_kind_at_idx on analytics_events (organization_id, kind, at, id) \
         include (day, user_id, persona_id, session_id, seq, grounded, refusal, first_token_ms, \
         total_ms, provider, text)",
        "postgres",
    ),
];

/// Types are written the same in both folders; PostgreSQL reports its own
/// spellings, mapped back here.
fn pg_type(t: &str) -> String {
    match t {
        "uuid" => "UUID".into(),
        "timestamp with time zone" => "TIMESTAMPTZ".into(),
        "bigint" => "BIGINT".into(),
        "integer" => "INTEGER".into(),
        "text" => "TEXT".into(),
        "boolean" => "BOOLEAN".into(),
        "double precision" => "DOUBLE PRECISION".into(),
        "real" => "REAL".into(),
        "bytea" => "BYTEA".into(),
        other => other.to_ascii_uppercase(),
    }
}

async fn sqlite_facts(pool: &sqlx::SqlitePool) -> BTreeSet<Fact> {
    let mut facts = BTreeSet::new();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%' ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for table in tables {
        facts.insert(format!("table {table}"));
        let cols = sqlx::query(&format!("PRAGMA table_info(\"{table}\")"))
            .fetch_all(pool)
            .await
            .unwrap();
        for c in cols {
            let name: String = c.get("name");
            let ty: String = c.get("type");
            let pk: i64 = c.get("pk");
            let notnull: i64 = c.get("notnull");
            let nullable = notnull == 0 && pk == 0;
            facts.insert(format!(
                "column {table}.{name} {} {}",
                ty.to_ascii_uppercase(),
                if nullable { "NULL" } else { "NOT NULL" }
            ));
            if pk > 0 {
                facts.insert(format!("pk {table}.{name}"));
            }
        }
        let fks = sqlx::query(&format!("PRAGMA foreign_key_list(\"{table}\")"))
            .fetch_all(pool)
            .await
            .unwrap();
        for f in fks {
            let from: String = f.get("from");
            let to_table: String = f.get("table");
            let to: String = f.get("to");
            let on_delete: String = f.get("on_delete");
            facts.insert(format!(
                "fk {table}.{from} -> {to_table}.{to} on delete {}",
                on_delete.to_ascii_uppercase()
            ));
        }
        let indexes = sqlx::query(&format!("PRAGMA index_list(\"{table}\")"))
            .fetch_all(pool)
            .await
            .unwrap();
        for i in indexes {
            let name: String = i.get("name");
            let origin: String = i.get("origin");
            if origin == "pk" {
                continue;
            }
            let unique: i64 = i.get("unique");
            let cols: Vec<String> = sqlx::query(&format!("PRAGMA index_info(\"{name}\")"))
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>("name"))
                .collect();
            facts.insert(format!(
                "index {name} on {table} ({}){}",
                cols.join(", "),
                if unique == 1 { " unique" } else { "" }
            ));
        }
    }
    let triggers = sqlx::query(
        "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger' ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for t in triggers {
        facts.insert(format!(
            "trigger {} on {}",
            t.get::<String, _>("name"),
            t.get::<String, _>("tbl_name")
        ));
    }
    facts
}

async fn postgres_facts(pool: &sqlx::PgPool) -> BTreeSet<Fact> {
    let mut facts = BTreeSet::new();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for table in &tables {
        facts.insert(format!("table {table}"));
    }
    let cols = sqlx::query(
        "SELECT table_name::text AS t, column_name::text AS c, data_type::text AS ty, \
         is_nullable::text AS n FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for c in cols {
        let (t, name, ty, n): (String, String, String, String) =
            (c.get("t"), c.get("c"), c.get("ty"), c.get("n"));
        facts.insert(format!(
            "column {t}.{name} {} {}",
            pg_type(&ty),
            if n == "YES" { "NULL" } else { "NOT NULL" }
        ));
    }
    let pks = sqlx::query(
        "SELECT tc.table_name::text AS t, kcu.column_name::text AS c \
         FROM information_schema.table_constraints tc \
         JOIN information_schema.key_column_usage kcu \
           ON tc.constraint_name = kcu.constraint_name AND tc.table_schema = kcu.table_schema \
         WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = 'public' \
           AND tc.table_name NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for p in pks {
        facts.insert(format!(
            "pk {}.{}",
            p.get::<String, _>("t"),
            p.get::<String, _>("c")
        ));
    }
    let fks = sqlx::query(
        "SELECT cl.relname::text AS t, a.attname::text AS c, rc.relname::text AS rt, \
                ra.attname::text AS rcn, con.confdeltype::text AS del \
         FROM pg_constraint con \
         JOIN pg_class cl ON cl.oid = con.conrelid \
         JOIN pg_class rc ON rc.oid = con.confrelid \
         JOIN pg_namespace ns ON ns.oid = cl.relnamespace \
         JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1] \
         JOIN pg_attribute ra ON ra.attrelid = con.confrelid AND ra.attnum = con.confkey[1] \
         WHERE con.contype = 'f' AND ns.nspname = 'public'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for f in fks {
        let del = match f.get::<String, _>("del").as_str() {
            "c" => "CASCADE",
            "n" => "SET NULL",
            "r" => "RESTRICT",
            "d" => "SET DEFAULT",
            _ => "NO ACTION",
        };
        facts.insert(format!(
            "fk {}.{} -> {}.{} on delete {del}",
            f.get::<String, _>("t"),
            f.get::<String, _>("c"),
            f.get::<String, _>("rt"),
            f.get::<String, _>("rcn"),
        ));
    }
    let indexes = sqlx::query(
        "SELECT t.relname::text AS t, i.relname::text AS i, ix.indisunique AS u, \
                array_to_string(array_agg(a.attname::text ORDER BY k.ord) \
                    FILTER (WHERE k.ord <= ix.indnkeyatts), ', ') AS cols, \
                array_to_string(array_agg(a.attname::text ORDER BY k.ord) \
                    FILTER (WHERE k.ord > ix.indnkeyatts), ', ') AS included \
         FROM pg_index ix \
         JOIN pg_class t ON t.oid = ix.indrelid \
         JOIN pg_class i ON i.oid = ix.indexrelid \
         JOIN pg_namespace ns ON ns.oid = t.relnamespace \
         JOIN LATERAL unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord) ON true \
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
         WHERE ns.nspname = 'public' AND NOT ix.indisprimary AND t.relname NOT LIKE '\\_sqlx%' \
         GROUP BY t.relname, i.relname, ix.indisunique, ix.indnkeyatts",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for i in indexes {
        // NULL when the index includes no column.
        let included: Option<String> = i.get("included");
        facts.insert(format!(
            "index {} on {} ({}){}{}",
            i.get::<String, _>("i"),
            i.get::<String, _>("t"),
            i.get::<String, _>("cols"),
            included.map_or(String::new(), |c| format!(" include ({c})")),
            if i.get::<bool, _>("u") { " unique" } else { "" }
        ));
    }
    // One row per trigger and event (INSERT, UPDATE…): one fact per trigger.
    let triggers = sqlx::query(
        "SELECT DISTINCT trigger_name::text AS n, event_object_table::text AS t \
         FROM information_schema.triggers WHERE trigger_schema = 'public'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for t in triggers {
        facts.insert(format!(
            "trigger {} on {}",
            t.get::<String, _>("n"),
            t.get::<String, _>("t")
        ));
    }
    // Functions of our own (not an extension's).
    let functions: Vec<String> = sqlx::query_scalar(
        "SELECT p.proname::text FROM pg_proc p \
         JOIN pg_namespace ns ON ns.oid = p.pronamespace \
         WHERE ns.nspname = 'public' AND NOT EXISTS \
           (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for f in functions {
        facts.insert(format!("function {f}"));
    }
    facts
}

#[actix_web::test]
async fn sqlite_and_postgres_migrations_define_the_same_schema() {
    let Some(pg_url) = fresh_postgres_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("schema.db").display());

    let sqlite = bwenge::db::Db::connect(&test_settings(dir.path(), &sqlite_url))
        .await
        .unwrap();
    sqlite.migrate().await.unwrap();
    let postgres = bwenge::db::Db::connect(&test_settings(dir.path(), &pg_url))
        .await
        .unwrap();
    postgres.migrate().await.unwrap();

    let (bwenge::db::Db::Sqlite(s, _), bwenge::db::Db::Postgres(p)) = (&sqlite, &postgres) else {
        panic!("wrong backends");
    };
    let mut lite = sqlite_facts(s).await;
    let mut pg = postgres_facts(p).await;
    for (fact, only) in DIALECT_ONLY {
        let kept = match *only {
            "sqlite" => !pg.contains(*fact) && lite.remove(*fact),
            _ => !lite.contains(*fact) && pg.remove(*fact),
        };
        assert!(
            kept,
            "the deliberate difference {fact:?} ({only} only) is gone: update DIALECT_ONLY"
        );
    }
    assert!(
        lite.iter()
            .chain(&pg)
            .any(|f| f.starts_with("table chat_events")),
        "introspection missed the chat tables"
    );
    assert!(lite.len() > 20, "introspection found too little: {lite:?}");
    let only_sqlite: Vec<_> = lite.difference(&pg).collect();
    let only_pg: Vec<_> = pg.difference(&lite).collect();
    assert!(
        only_sqlite.is_empty() && only_pg.is_empty(),
        "schemas differ\nonly in sqlite: {only_sqlite:#?}\nonly in postgres: {only_pg:#?}"
    );
}
