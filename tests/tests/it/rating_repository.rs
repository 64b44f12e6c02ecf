//! The rating repository contract: one suite of checks, run against every
//! store (memory, a SQLite file, a real PostgreSQL), so they all behave the
//! same behind `RatingRepository`.
use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use contract::{
    id::{RecordKey, UserId},
    rating::{RatingRange, RatingValue},
};
use e2e::postgres::Postgres;
use rating::{
    model::RatingEvent,
    repository::{
        LoggedEvent, MIGRATIONS, RatingRepository, RepositoryError, SharedPositions, Store, memory::MemoryRepository,
    },
};
use sql_store::{DatabaseArgs, DatabaseUrl};

const TOPIC: &str = "ratings";

fn key(id: &str) -> RecordKey {
    RecordKey::parse("movie".into(), id.into()).unwrap()
}

fn user(id: &str) -> UserId {
    UserId::parse("user_id", id.into()).unwrap()
}

fn put(record: &str, who: &str, value: i32) -> RatingEvent {
    let value = RatingValue::parse("rating_value", value, RatingRange::new(1, 10).unwrap()).unwrap();
    RatingEvent::Put { key: key(record), user: user(who), value }
}

fn delete(record: &str, who: &str) -> RatingEvent {
    RatingEvent::Delete { key: key(record), user: user(who) }
}

fn logged(partition: i32, offset: i64, event: RatingEvent) -> LoggedEvent {
    LoggedEvent { partition, offset, event: Some(event) }
}

async fn average(repository: &impl RatingRepository, record: &str) -> Option<(f64, u64)> {
    match repository.aggregate(&key(record)).await {
        Ok(aggregate) => Some((aggregate.average, aggregate.count)),
        Err(RepositoryError::NotFound(missing)) => {
            assert_eq!(missing, key(record));
            None
        }
        Err(error) => panic!("{}", telemetry::Chain(&error)),
    }
}

/// What every store must do with writes made straight to it.
async fn direct_writes_contract(repository: &impl RatingRepository) {
    assert_eq!(average(repository, "1").await, None);
    repository.apply(&[put("1", "alice", 5), put("1", "bob", 2), put("2", "alice", 1)]).await.unwrap();
    assert_eq!(average(repository, "1").await, Some((3.5, 2)));

    // alice changes her mind: her rating is replaced, not added; the same
    // put twice changes nothing.
    repository.apply(&[put("1", "alice", 3)]).await.unwrap();
    repository.apply(&[put("1", "alice", 3)]).await.unwrap();
    assert_eq!(average(repository, "1").await, Some((2.5, 2)));

    // Deletes remove one user's rating and are idempotent; the last one
    // forgets the record.
    repository.apply(&[delete("1", "bob"), delete("1", "bob"), delete("1", "nobody")]).await.unwrap();
    assert_eq!(average(repository, "1").await, Some((3.0, 1)));
    repository.apply(&[delete("1", "alice")]).await.unwrap();
    assert_eq!(average(repository, "1").await, None);
    assert_eq!(average(repository, "2").await, Some((1.0, 1)));

    // Within one call, events apply in order: the last one per user wins.
    repository.apply(&[put("3", "a", 1), delete("3", "a"), put("3", "a", 9), put("3", "b", 4)]).await.unwrap();
    assert_eq!(average(repository, "3").await, Some((6.5, 2)));

    // Record types, ids and users are compared exactly.
    let other_type = RecordKey::parse("series".into(), "1".into()).unwrap();
    let value = RatingValue::parse("rating_value", 8, RatingRange::new(1, 10).unwrap()).unwrap();
    repository.apply(&[RatingEvent::Put { key: other_type.clone(), user: user("alice"), value }]).await.unwrap();
    repository.apply(&[put("é 1", "Alice", 2), put("é 1", "alice", 4)]).await.unwrap();
    assert_eq!(repository.aggregate(&other_type).await.unwrap().average, 8.0);
    assert_eq!(average(repository, "é 1").await, Some((3.0, 2)));
    assert_eq!(average(repository, "2").await, Some((1.0, 1)));
}

/// What every store must do with events from the topic.
async fn logged_events_contract(repository: &impl RatingRepository) {
    assert_eq!(repository.positions(TOPIC).await.unwrap(), HashMap::new());
    let batch = [
        logged(0, 0, put("10", "a", 4)),
        logged(1, 0, put("11", "a", 2)),
        LoggedEvent { partition: 0, offset: 1, event: None },
        logged(0, 2, put("10", "b", 8)),
    ];
    let progress = repository.apply_logged(TOPIC, &batch).await.unwrap();
    assert_eq!((progress.puts, progress.deletes, progress.skipped), (3, 0, 0));
    assert_eq!(progress.positions, vec![(0, 3), (1, 1)]);
    assert_eq!(repository.positions(TOPIC).await.unwrap(), HashMap::from([(0, 3), (1, 1)]));
    assert_eq!(repository.positions("another-topic").await.unwrap(), HashMap::new());

    // The same batch again (a redelivery, or a second replica during a
    // rebalance) is skipped whole.
    let progress = repository.apply_logged(TOPIC, &batch).await.unwrap();
    assert_eq!((progress.puts, progress.skipped), (0, 4));
    assert_eq!(average(repository, "10").await, Some((6.0, 2)));

    // A batch that overlaps what was applied applies only what is new.
    let overlapping =
        [logged(0, 2, put("10", "b", 8)), logged(0, 3, delete("10", "a")), logged(0, 4, put("10", "c", 2))];
    let progress = repository.apply_logged(TOPIC, &overlapping).await.unwrap();
    assert_eq!((progress.puts, progress.deletes, progress.skipped), (1, 1, 1));
    assert_eq!(average(repository, "10").await, Some((5.0, 2)));
    assert_eq!(repository.positions(TOPIC).await.unwrap(), HashMap::from([(0, 5), (1, 1)]));
}

/// A large batch, checked against the obvious model: every sum and count
/// exact.
async fn large_batches_contract(repository: &impl RatingRepository) {
    let mut model: HashMap<(String, String), i32> = HashMap::new();
    let mut offset = 0;
    for round in 0..3 {
        let mut batch = Vec::new();
        for i in 0..4_000 {
            let (record, who) = (format!("r{}", i % 37), format!("u{}", (i * 7 + round) % 300));
            let event = if (i + round) % 11 == 0 {
                model.remove(&(record.clone(), who.clone()));
                delete(&record, &who)
            } else {
                let value = 1 + (i * 3 + round) % 10;
                model.insert((record.clone(), who.clone()), value);
                put(&record, &who, value)
            };
            batch.push(logged(offset % 3, i64::from(offset / 3), event));
            offset += 1;
        }
        repository.apply_logged("bulk", &batch).await.unwrap();
    }
    for record in 0..37 {
        let record = format!("r{record}");
        let values: Vec<i32> = model.iter().filter(|((r, _), _)| *r == record).map(|(_, v)| *v).collect();
        let expected = (!values.is_empty())
            .then(|| (values.iter().sum::<i32>() as f64 / values.len() as f64, values.len() as u64));
        assert_eq!(average(repository, &record).await, expected, "{record}");
    }
}

/// Two appliers of the same batches at once (two replicas holding the same
/// partition for a moment): every event counts once.
async fn concurrent_appliers_contract<R: RatingRepository>(repository: Arc<R>) {
    let batches: Vec<Vec<LoggedEvent>> = (0..20)
        .map(|n| (0..50).map(|i| logged(0, n * 50 + i, put("20", &format!("u{}", n * 50 + i), 7))).collect())
        .collect();
    let batches = Arc::new(batches);
    let appliers: Vec<_> = (0..2)
        .map(|_| {
            let (repository, batches) = (repository.clone(), batches.clone());
            tokio::spawn(async move {
                for batch in batches.iter() {
                    repository.apply_logged("race", batch).await.unwrap();
                }
            })
        })
        .collect();
    for applier in appliers {
        applier.await.unwrap();
    }
    assert_eq!(average(repository.as_ref(), "20").await, Some((7.0, 1000)));
    assert_eq!(repository.positions("race").await.unwrap(), HashMap::from([(0, 1000)]));
}

/// Two appliers of different partitions at once (two replicas of a
/// consumer group) whose events rate the same records, met in opposite
/// orders: neither waits on the other for ever, and every sum and count is
/// exact.
async fn appliers_of_different_partitions_contract<R: RatingRepository>(repository: Arc<R>) {
    let records: Vec<String> = (0..20).map(|record| format!("shared{record}")).collect();
    let batches = |partition: i32| -> Vec<Vec<LoggedEvent>> {
        (0..20_i64)
            .map(|round| {
                let mut order = records.clone();
                if partition == 1 {
                    order.reverse();
                }
                let events = order.iter().enumerate().map(|(i, record)| {
                    put(record, &format!("p{partition}-u{round}"), 1 + ((i as i32 + partition) % 5))
                });
                events.enumerate().map(|(i, event)| logged(partition, round * 20 + i as i64, event)).collect()
            })
            .collect()
    };
    let appliers: Vec<_> = [0, 1]
        .into_iter()
        .map(|partition| {
            let (repository, batches) = (repository.clone(), batches(partition));
            tokio::spawn(async move {
                for batch in &batches {
                    repository.apply_logged("split", batch).await.unwrap();
                }
            })
        })
        .collect();
    for applier in appliers {
        applier.await.unwrap();
    }
    for (i, record) in records.iter().enumerate() {
        // Partition 0 rates record i with 1 + i % 5 twenty times; partition
        // 1 meets the records reversed, so record i is its (19 - i)th.
        let (first, second) = (1 + (i as i32 % 5), 1 + ((19 - i as i32 + 1) % 5));
        let expected = f64::from(first * 20 + second * 20) / 40.0;
        assert_eq!(average(repository.as_ref(), record).await, Some((expected, 40)), "{record}");
    }
    assert_eq!(repository.positions("split").await.unwrap(), HashMap::from([(0, 400), (1, 400)]));
}

/// A replica that applies an older batch after another replica applied a
/// newer one of the same partition (it held the partition a moment too
/// long, in a rebalance) leaves the newer state as it was: each rating ends
/// at its last event in the topic.
async fn older_batches_change_nothing_contract(repository: &impl RatingRepository) {
    let older = [logged(4, 0, put("30", "a", 2)), logged(4, 1, put("30", "b", 6))];
    let newer = [logged(4, 2, put("30", "a", 9)), logged(4, 3, delete("30", "b")), logged(4, 4, put("30", "c", 5))];
    let whole: Vec<LoggedEvent> = older.iter().chain(&newer).cloned().collect();
    repository.apply_logged("stale", &whole).await.unwrap();
    assert_eq!(average(repository, "30").await, Some((7.0, 2)));

    let progress = repository.apply_logged("stale", &older).await.unwrap();
    assert_eq!((progress.puts, progress.deletes, progress.skipped), (0, 0, 2));
    assert_eq!(average(repository, "30").await, Some((7.0, 2)), "a's 9 and c's 5 stay; b stays deleted");
    assert_eq!(repository.positions("stale").await.unwrap(), HashMap::from([(4, 5)]));
}

async fn repository_contract<R: RatingRepository>(repository: R) {
    direct_writes_contract(&repository).await;
    logged_events_contract(&repository).await;
    older_batches_change_nothing_contract(&repository).await;
    large_batches_contract(&repository).await;
    let repository = Arc::new(repository);
    concurrent_appliers_contract(repository.clone()).await;
    appliers_of_different_partitions_contract(repository).await;
}

fn database_args(url: &str) -> DatabaseArgs {
    DatabaseArgs {
        database_url: Some(DatabaseUrl::new(url)),
        database_max_connections: 4,
        database_connect_timeout: Duration::from_secs(5),
    }
}

/// The store `url` names, connected and migrated.
async fn prepared_store(url: &str) -> Store {
    let store = Store::open(&database_args(url)).expect("a valid database URL");
    store.prepare(&MIGRATIONS).await.unwrap_or_else(|error| panic!("{}", telemetry::Chain(&error)));
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_keeps_the_contract() {
    repository_contract(MemoryRepository::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("rating.db").display());
    repository_contract(prepared_store(&url).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_keeps_the_contract() {
    let postgres = Postgres::start();
    repository_contract(prepared_store(&postgres.create_database()).await).await;
}

/// The claim exactly-once rests on: a batch's events and the positions they
/// bring their partitions to commit together or not at all. Re-applying a
/// batch of upserts leaves the same sums, so nothing else would show
/// events committed apart from their positions: here the database refuses
/// the positions' update (a trigger raises), and the batch's events must be
/// gone with it.
async fn a_refused_position_takes_its_batch_with_it(store: &Store, refuse_positions: impl Future<Output = ()>) {
    store.apply_logged(TOPIC, &[logged(0, 0, put("40", "a", 4)), logged(1, 0, put("41", "a", 2))]).await.unwrap();
    refuse_positions.await;

    let batch = [logged(0, 1, put("40", "b", 8)), logged(0, 2, delete("40", "a")), logged(1, 1, put("42", "z", 5))];
    let error = store.apply_logged(TOPIC, &batch).await.expect_err("the positions' update is refused");
    assert!(telemetry::Chain(&error).to_string().contains("positions refused"), "{}", telemetry::Chain(&error));
    assert_eq!(average(store, "40").await, Some((4.0, 1)), "the batch's put and delete rolled back");
    assert_eq!(average(store, "42").await, None, "the batch's new record rolled back");
    assert_eq!(store.positions(TOPIC).await.unwrap(), HashMap::from([(0, 1), (1, 1)]), "positions unmoved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_applies_a_batch_and_its_positions_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("rating.db").display());
    let store = prepared_store(&url).await;
    let refuse_positions = async {
        let pool = sqlx::SqlitePool::connect(&url).await.expect("open the test database");
        let trigger = "CREATE TRIGGER refuse_positions BEFORE UPDATE ON consumer_offsets \
             BEGIN SELECT RAISE(ABORT, 'positions refused'); END";
        sqlx::raw_sql(trigger).execute(&pool).await.expect("install the trigger");
        pool.close().await;
    };
    a_refused_position_takes_its_batch_with_it(&store, refuse_positions).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_applies_a_batch_and_its_positions_atomically() {
    let postgres = Postgres::start();
    let url = postgres.create_database();
    let store = prepared_store(&url).await;
    let refuse_positions = async {
        let pool = sqlx::PgPool::connect(&url).await.expect("connect to the test database");
        let trigger = "CREATE FUNCTION refuse_positions() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'positions refused'; END $$; \
             CREATE TRIGGER refuse_positions BEFORE UPDATE ON consumer_offsets \
             FOR EACH ROW EXECUTE FUNCTION refuse_positions();";
        sqlx::raw_sql(trigger).execute(&pool).await.expect("install the trigger");
        pool.close().await;
    };
    a_refused_position_takes_its_batch_with_it(&store, refuse_positions).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_sqlite_file_keeps_ratings_and_positions() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rating.db").display());
    let store = prepared_store(&url).await;
    store.apply_logged(TOPIC, &[logged(2, 0, put("1", "a", 4)), logged(2, 1, put("1", "b", 2))]).await.unwrap();
    drop(store);
    let reopened = prepared_store(&url).await;
    assert_eq!(average(&reopened, "1").await, Some((3.0, 2)));
    assert_eq!(reopened.positions(TOPIC).await.unwrap(), HashMap::from([(2, 2)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_positions_can_be_read_without_the_runtime() {
    let postgres = Postgres::start();
    let Store::Postgres(store) = prepared_store(&postgres.create_database()).await else { unreachable!() };
    store.apply_logged(TOPIC, &[logged(1, 41, put("1", "a", 4))]).await.unwrap();
    // As librdkafka's rebalance callback does: from inside a poll that
    // cannot await.
    let positions = tokio::task::block_in_place(|| store.read_blocking(TOPIC)).unwrap();
    assert_eq!(positions, HashMap::from([(1, 42)]));
    drop(postgres);
    let error = tokio::task::block_in_place(|| store.read_blocking(TOPIC)).unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
}

/// Two transactions that lock the same rows in opposite orders: PostgreSQL
/// rolls one back (deadlock detected), and that failure is a conflict to
/// run again, which ingestion retries, not a refusal of the events (which
/// would dead-letter them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_is_a_conflict_to_run_again() {
    let server = Postgres::start();
    let url = server.create_database();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE rows (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)").execute(&pool).await.unwrap();
    sqlx::query("INSERT INTO rows VALUES (1, 0), (2, 0)").execute(&pool).await.unwrap();
    let (first_locked, first_holds) = tokio::sync::oneshot::channel();
    let (second_locked, second_holds) = tokio::sync::oneshot::channel();
    let update = "UPDATE rows SET n = n + 1 WHERE id = $1";
    let in_order = |pool: sqlx::PgPool,
                    first: i32,
                    locked: tokio::sync::oneshot::Sender<()>,
                    other_holds: tokio::sync::oneshot::Receiver<()>| async move {
        let mut transaction = pool.begin().await.unwrap();
        sqlx::query(update).bind(first).execute(&mut *transaction).await.unwrap();
        locked.send(()).unwrap();
        other_holds.await.unwrap();
        sqlx::query(update).bind(3 - first).execute(&mut *transaction).await?;
        transaction.commit().await
    };
    let (one, two) = tokio::join!(
        in_order(pool.clone(), 1, first_locked, second_holds),
        in_order(pool.clone(), 2, second_locked, first_holds)
    );
    let failure = match (one, two) {
        (Err(error), Ok(())) | (Ok(()), Err(error)) => error,
        other => panic!("one transaction is rolled back, the other commits: {other:?}"),
    };
    let error = sql_store::QueryError::from_sqlx("test", failure);
    assert!(error.is_conflict(), "{error:?}");
    assert!(RepositoryError::Database(error).is_conflict());
}
