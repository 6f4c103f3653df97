//! PostgreSQL replication against real servers (Debian's `postgresql`),
//! two clusters started by each test in its own folder on free ports, as
//! the `postgres` user when run as root. `#[ignore]`: `.ci/run` runs them.

use cutover_db::local::{LocalPostgres, SUPERUSER, free_port};
use cutover_db::{DbError, Server, postgres};
use std::time::{Duration, Instant};

const PASSWORD: &str = "pg-test-Secret-4711";

struct Pair {
    _dir: tempfile::TempDir,
    source: LocalPostgres,
    destination: LocalPostgres,
}

fn pair(source_settings: &[(&str, &str)]) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let source = LocalPostgres::start(&a, free_port().unwrap(), PASSWORD, source_settings).unwrap();
    let destination = LocalPostgres::start(&b, free_port().unwrap(), PASSWORD, &[]).unwrap();
    Pair {
        _dir: dir,
        source,
        destination,
    }
}

impl Pair {
    fn src(&self) -> Server {
        self.source.server("app", SUPERUSER, Some(PASSWORD))
    }
    fn dst(&self) -> Server {
        self.destination.server("app", SUPERUSER, Some(PASSWORD))
    }
}

async fn sql(server: &LocalPostgres, database: &str, text: &str) {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(server.port())
        .dbname(database)
        .user(SUPERUSER)
        .password(PASSWORD);
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    let task = tokio::spawn(conn);
    client.batch_execute(text).await.unwrap();
    drop(client);
    let _ = task.await;
}

async fn setup_app(pair: &Pair) {
    sql(&pair.source, "postgres", "CREATE DATABASE app").await;
    sql(&pair.destination, "postgres", "CREATE DATABASE app").await;
    sql(
        &pair.source,
        "app",
        "CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL, qty int DEFAULT 0, created timestamptz DEFAULT now());
         CREATE INDEX items_name ON items (name);
         CREATE TABLE pairs (a int, b text, v numeric(10,2), PRIMARY KEY (a, b));
         CREATE TABLE loose (x int, y text);
         ALTER TABLE loose REPLICA IDENTITY FULL;
         CREATE SEQUENCE tickets START 100;
         CREATE TABLE shapes (id int PRIMARY KEY, p point);
         INSERT INTO shapes SELECT g, point(g, g * 2) FROM generate_series(1, 100) g;
         SELECT nextval('tickets'), nextval('tickets');
         INSERT INTO items (name, qty) SELECT 'item ' || g, g % 17 FROM generate_series(1, 5000) g;
         INSERT INTO pairs SELECT g % 50, 'k' || g, g / 7.0 FROM generate_series(1, 2000) g;
         INSERT INTO loose SELECT g, 'y' || g FROM generate_series(1, 300) g;",
    )
    .await;
}

/// Polls the lag until caught up (bounded).
async fn wait_caught_up(pair: &Pair, name: &str) -> cutover_db::Lag {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lag = postgres::lag(&pair.src(), &pair.dst(), name)
            .await
            .unwrap()
            .unwrap();
        if lag.caught_up() {
            return lag;
        }
        assert!(Instant::now() < deadline, "not caught up in 60 s: {lag:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (Debian postgresql); run by .ci/run"]
async fn replicates_while_written_and_compares_equal_then_finds_a_changed_row() {
    let pair = pair(&[]);
    setup_app(&pair).await;
    postgres::preflight(&pair.src(), &pair.dst()).await.unwrap();
    let name = cutover_db::replication_name("sync db");
    let started = postgres::start(&pair.src(), &pair.src(), &pair.dst(), &name)
        .await
        .unwrap();
    assert_eq!(started.tables, 4);
    assert_eq!(started.tables_created, 4);
    assert!(started.publication_created && started.subscription_created);
    // Idempotent: a second start finds it all and copies nothing again.
    let again = postgres::start(&pair.src(), &pair.src(), &pair.dst(), &name)
        .await
        .unwrap();
    assert!(!again.publication_created && !again.subscription_created && again.tables_created == 0);

    // Writes while the initial copy and the stream run.
    sql(
        &pair.source,
        "app",
        "INSERT INTO items (name) SELECT 'late ' || g FROM generate_series(1, 500) g;
         UPDATE pairs SET v = v + 1 WHERE a = 3; DELETE FROM loose WHERE x < 10;
         SELECT nextval('tickets');",
    )
    .await;
    let lag = wait_caught_up(&pair, &name).await;
    assert_eq!(lag.tables, 4);
    assert!(lag.copied_bytes > 0 && lag.source_bytes > 0);
    // The index no constraint owns is built after the initial copy.
    let early = postgres::compare(&pair.src(), &pair.dst(), 700)
        .await
        .unwrap();
    assert!(
        early.schema.iter().any(|d| d.contains("items_name")),
        "{:?}",
        early.schema
    );
    assert_eq!(
        postgres::create_indexes(&pair.src(), &pair.dst())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        postgres::create_indexes(&pair.src(), &pair.dst())
            .await
            .unwrap(),
        0
    );

    let sequences = postgres::copy_sequences(&pair.src(), &pair.dst())
        .await
        .unwrap();
    let tickets = sequences
        .iter()
        .find(|s| s.sequence == "public.tickets")
        .unwrap();
    assert_eq!(tickets.value, 102);
    let items = sequences
        .iter()
        .find(|s| s.sequence == "public.items_id_seq")
        .unwrap();
    assert_eq!(items.value, 5500);

    let comparison = postgres::compare(&pair.src(), &pair.dst(), 700)
        .await
        .unwrap();
    assert!(comparison.equal(), "{comparison:?}");
    assert_eq!(comparison.rows(), 5500 + 2000 + 291 + 100);
    let items_sum = comparison
        .tables
        .iter()
        .find(|t| t.table == "public.items")
        .unwrap();
    assert_eq!(
        items_sum.chunks, 8,
        "5500 rows in chunks of 700: {comparison:?}"
    );
    assert_eq!(
        comparison.warnings.len(),
        1,
        "the table without a key is warned about: {:?}",
        comparison.warnings
    );
    assert!(comparison.warnings[0].contains("public.loose"));

    // Behind cutover's back: one row changed on the destination.
    sql(
        &pair.destination,
        "app",
        "UPDATE items SET qty = qty + 1000 WHERE id = 4321",
    )
    .await;
    let comparison = postgres::compare(&pair.src(), &pair.dst(), 700)
        .await
        .unwrap();
    assert!(!comparison.equal());
    assert_eq!(
        comparison.differences.len(),
        1,
        "{:?}",
        comparison.differences
    );
    let difference = &comparison.differences[0];
    assert_eq!(difference.table, "public.items");
    assert!(
        difference.range.starts_with("(4320, 4321]"),
        "{}",
        difference.range
    );
    // `point` has no hash function: that table is hashed by its text.
    sql(
        &pair.destination,
        "app",
        "UPDATE shapes SET p = point(0, 0) WHERE id = 77",
    )
    .await;
    let comparison = postgres::compare(&pair.src(), &pair.dst(), 700)
        .await
        .unwrap();
    let shapes = comparison
        .differences
        .iter()
        .find(|d| d.table == "public.shapes")
        .expect("shapes differ");
    assert!(shapes.range.starts_with("(76, 77]"), "{}", shapes.range);

    postgres::stop(&pair.src(), &pair.dst(), &name)
        .await
        .unwrap();
    assert!(!postgres::is_replicating(&pair.dst(), &name).await.unwrap());
    assert!(
        postgres::lag(&pair.src(), &pair.dst(), &name)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (Debian postgresql); run by .ci/run"]
async fn preflight_names_wal_level_privileges_and_a_refused_login() {
    let pair = pair(&[("wal_level", "replica")]);
    setup_app(&pair).await;
    sql(
        &pair.source,
        "app",
        "CREATE ROLE plain LOGIN PASSWORD 'plain-pass-123'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO plain;
         CREATE TABLE bare (x int);",
    )
    .await;
    sql(
        &pair.destination,
        "app",
        "CREATE ROLE plain LOGIN PASSWORD 'plain-pass-123'",
    )
    .await;
    let plain = |p: &LocalPostgres| p.server("app", "plain", Some("plain-pass-123"));
    let err = postgres::preflight(&plain(&pair.source), &plain(&pair.destination))
        .await
        .unwrap_err();
    let DbError::Preflight(problems) = &err else {
        panic!("{err}")
    };
    let settings: Vec<&str> = problems.iter().map(|p| p.setting.as_str()).collect();
    assert!(settings.contains(&"wal_level"), "{settings:?}");
    assert!(
        settings.contains(&"the REPLICATION privilege"),
        "{settings:?}"
    );
    assert!(
        settings.contains(&"the privilege to create a subscription"),
        "{settings:?}"
    );
    assert!(
        settings
            .iter()
            .any(|s| s.starts_with("the replica identity of table public.bare")),
        "{settings:?}"
    );
    let text = err.to_string();
    assert!(text.contains("wal_level = logical"), "{text}");

    let wrong = pair
        .source
        .server("app", SUPERUSER, Some("not-the-password-99"));
    let err = postgres::preflight(&wrong, &pair.dst()).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("the login of user `postgres`"), "{text}");
    assert!(
        !text.contains("not-the-password-99")
            && !format!("{err:?}").contains("not-the-password-99")
    );
}

/// Whether `sql` (one value) on the destination's `app` is `want`.
fn destination_has(pair: &Pair, sql: &str, want: &str) -> bool {
    pair.destination.psql("app", sql).unwrap() == want
}

/// A table past the size whose keys wait (128 MiB) is copied without its
/// primary key, unique constraint and the foreign key pointing at it;
/// the keys are there before replication applies the updates written
/// during the copy (no worker fails on a missing key), the foreign key
/// and the index once every table is copied, and both sides compare equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (Debian postgresql); run by .ci/run"]
async fn a_big_tables_keys_are_built_as_its_copy_ends_while_it_is_written() {
    let pair = pair(&[]);
    sql(&pair.source, "postgres", "CREATE DATABASE app").await;
    sql(&pair.destination, "postgres", "CREATE DATABASE app").await;
    sql(
        &pair.source,
        "app",
        "CREATE TABLE big (id bigserial PRIMARY KEY, code text UNIQUE, pad text);
         CREATE INDEX big_pad ON big (left(pad, 8));
         INSERT INTO big (code, pad) SELECT 'c' || g, repeat(md5(g::text), 8) FROM generate_series(1, 450000) g;
         CREATE TABLE child (id int PRIMARY KEY, big bigint REFERENCES big (id));
         INSERT INTO child SELECT g, g FROM generate_series(1, 1000) g;",
    )
    .await;
    let size: u64 = pair
        .source
        .psql("app", "SELECT pg_table_size('big')")
        .unwrap()
        .parse()
        .unwrap();
    assert!(size >= 128 << 20, "big is {size} bytes");
    let name = cutover_db::replication_name("big");
    postgres::start(&pair.src(), &pair.src(), &pair.dst(), &name)
        .await
        .unwrap();
    let keys = "SELECT count(*) FROM pg_constraint WHERE conrelid = 'big'::regclass AND contype IN ('p', 'u')";
    let foreign =
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'child'::regclass AND contype = 'f'";
    assert!(destination_has(&pair, keys, "0"), "big's keys wait");
    assert!(
        destination_has(&pair, foreign, "0"),
        "so does the key to it"
    );
    assert!(
        destination_has(
            &pair,
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'child'::regclass AND contype = 'p'",
            "1"
        ),
        "a small table has its key from the start"
    );

    // Updates while the copy runs: applying them needs big's key.
    let writer = {
        let source = pair.src();
        tokio::spawn(async move {
            let mut config = tokio_postgres::Config::new();
            config
                .host(&source.host)
                .port(source.port)
                .dbname(&source.database)
                .user(&source.user)
                .password(PASSWORD);
            let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            for n in 0..600u64 {
                client
                    .batch_execute(&format!(
                        "UPDATE big SET pad = 'updated {n}' WHERE id = {}",
                        1 + n * 701 % 450000
                    ))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Looked at as db.sync's verify does, every 100 ms.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let lag = postgres::lag(&pair.src(), &pair.dst(), &name)
            .await
            .unwrap()
            .unwrap();
        assert!(lag.copied_bytes <= lag.source_bytes, "{lag:?}");
        postgres::create_indexes(&pair.src(), &pair.dst())
            .await
            .unwrap();
        if lag.tables_ready == lag.tables
            && destination_has(&pair, foreign, "1")
            && destination_has(&pair, keys, "2")
        {
            break;
        }
        assert!(Instant::now() < deadline, "not copied in 300 s: {lag:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    writer.await.unwrap();
    wait_caught_up(&pair, &name).await;
    assert_eq!(
        postgres::create_indexes(&pair.src(), &pair.dst())
            .await
            .unwrap(),
        0,
        "all built"
    );
    assert!(
        destination_has(
            &pair,
            "SELECT sum(sync_error_count + apply_error_count) FROM pg_stat_subscription_stats",
            "0"
        ),
        "no worker failed on a missing key"
    );
    let comparison = postgres::compare(&pair.src(), &pair.dst(), 50_000)
        .await
        .unwrap();
    assert!(comparison.equal(), "{comparison:?}");
    assert_eq!(comparison.rows(), 451_000);
    postgres::stop(&pair.src(), &pair.dst(), &name)
        .await
        .unwrap();
}
