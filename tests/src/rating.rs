//! The rating service as the Kafka tests use it: started against a broker,
//! asked for health and averages through typed clients, and fed workloads
//! of rating events through ratingingester.
use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    process::Command,
    time::Duration,
};

use contract::api::{
    DeleteRatingRequest, GetAggregatedRatingRequest, PutRatingRequest, rating_service_client::RatingServiceClient,
};
use serde_json::json;
use tonic::Code;

pub use crate::process::health;
use crate::{
    broker::Broker,
    process::{ServiceProcess, binary, block_on, endpoint},
};

/// Starts a rating service ingesting from `broker` and waits until it
/// reports SERVING (its replay of the topic is done).
pub fn start_with_kafka(broker: &Broker) -> ServiceProcess {
    start_with_kafka_and(broker, &[])
}

/// As [`start_with_kafka`], with more environment (e.g. `DATABASE_URL`).
pub fn start_with_kafka_and(broker: &Broker, envs: &[(&str, &str)]) -> ServiceProcess {
    start_with_kafka_write_timeout(broker, "10s", envs)
}

/// As [`start_with_kafka_and`], with `--write-timeout` (which is also how
/// long the producer tries to deliver a write).
pub fn start_with_kafka_write_timeout(broker: &Broker, write_timeout: &str, envs: &[(&str, &str)]) -> ServiceProcess {
    let brokers = broker.address();
    let mut all = vec![("KAFKA_BROKERS", brokers.as_str())];
    all.extend_from_slice(envs);
    let rating = ServiceProcess::start("rating", &["--write-timeout", write_timeout], &all);
    rating.wait_until_serving(Duration::from_secs(30));
    rating
}

/// GetAggregatedRating of movie `id` as the service answers it, error
/// included.
pub fn try_average(rating: &ServiceProcess, id: &str) -> Result<f64, tonic::Status> {
    let request = GetAggregatedRatingRequest { record_id: id.into(), record_type: "movie".into() };
    block_on(async {
        let channel = endpoint(rating).connect().await.expect("connect to the rating service");
        RatingServiceClient::new(channel).get_aggregated_rating(request).await
    })
    .map(|answer| answer.into_inner().rating_value)
}

/// The aggregated rating of movie `id`, or None when it has no ratings
/// (NOT_FOUND; any other failure fails the test).
pub fn average(rating: &ServiceProcess, id: &str) -> Option<f64> {
    match try_average(rating, id) {
        Ok(average) => Some(average),
        Err(status) if status.code() == Code::NotFound => None,
        Err(status) => panic!("GetAggregatedRating failed: {status}"),
    }
}

/// PutRating of movie `id` by `user`, which must succeed.
pub fn put(rating: &ServiceProcess, id: &str, user: &str, value: i32) {
    let request = PutRatingRequest {
        user_id: user.into(),
        record_id: id.into(),
        record_type: "movie".into(),
        rating_value: value,
    };
    block_on(async {
        let channel = endpoint(rating).connect().await.expect("connect to the rating service");
        RatingServiceClient::new(channel).put_rating(request).await.expect("PutRating succeeds")
    });
}

/// DeleteRating of movie `id` by `user`, which must succeed.
pub fn delete(rating: &ServiceProcess, id: &str, user: &str) {
    let request = DeleteRatingRequest { user_id: user.into(), record_id: id.into(), record_type: "movie".into() };
    block_on(async {
        let channel = endpoint(rating).connect().await.expect("connect to the rating service");
        RatingServiceClient::new(channel).delete_rating(request).await.expect("DeleteRating succeeds")
    });
}

/// PutRating of movie `id` by `user` with a deadline, as the service
/// answers it.
pub fn try_put(
    rating: &ServiceProcess,
    id: &str,
    user: &str,
    value: i32,
    deadline: Duration,
) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(PutRatingRequest {
        user_id: user.into(),
        record_id: id.into(),
        record_type: "movie".into(),
        rating_value: value,
    });
    request.set_timeout(deadline);
    block_on(async {
        let channel =
            endpoint(rating).connect().await.map_err(|error| tonic::Status::unavailable(error.to_string()))?;
        RatingServiceClient::new(channel).put_rating(request).await.map(|_| ())
    })
}

/// A rating event as ratingingester reads it; `None` is a delete.
pub fn event(record: &str, user: &str, value: Option<i32>) -> serde_json::Value {
    match value {
        Some(value) => json!({"recordId": record, "recordType": "movie", "userId": user, "ratingValue": value}),
        None => json!({"recordId": record, "recordType": "movie", "userId": user, "eventType": "delete"}),
    }
}

/// Events over records `m0`.. and users `u0`.., in `rounds` rounds where
/// users change their minds and some withdraw, and what they leave.
pub struct Workload {
    pub events: Vec<serde_json::Value>,
    /// Each record's (sum, count) once every event is applied.
    pub totals: BTreeMap<String, (i64, i64)>,
    /// Each record's last event, by position in `events`.
    pub last_event: BTreeMap<String, usize>,
}

impl Workload {
    pub fn new(records: usize, users: usize, rounds: usize) -> Self {
        let mut ratings: HashMap<(String, String), i32> = HashMap::new();
        let mut events = Vec::new();
        let mut last_event = BTreeMap::new();
        for round in 0..rounds {
            for record in 0..records {
                for user in 0..users {
                    let (record_id, user_id) = (format!("m{record}"), format!("u{user}"));
                    let value = if (record + user + round) % 13 == 0 {
                        ratings.remove(&(record_id.clone(), user_id.clone()));
                        None
                    } else {
                        let value = 1 + ((record * 3 + user * 7 + round) % 5) as i32;
                        ratings.insert((record_id.clone(), user_id.clone()), value);
                        Some(value)
                    };
                    last_event.insert(record_id.clone(), events.len());
                    events.push(event(&record_id, &user_id, value));
                }
            }
        }
        let mut totals = BTreeMap::new();
        for ((record, _), value) in ratings {
            let entry: &mut (i64, i64) = totals.entry(record).or_default();
            *entry = (entry.0 + i64::from(value), entry.1 + 1);
        }
        Self { events, totals, last_event }
    }

    /// The average of `record` once every event is applied.
    pub fn expected_average(&self, record: &str) -> Option<f64> {
        self.totals.get(record).map(|(sum, count)| *sum as f64 / *count as f64)
    }

    /// The records whose answer differs from the expected one.
    pub fn wrong_answers(&self, rating: &ServiceProcess) -> Vec<String> {
        self.totals.keys().filter(|record| average(rating, record) != self.expected_average(record)).cloned().collect()
    }

    /// Writes the events to `file` as a JSON array, for ratingingester.
    pub fn write(&self, file: &Path) {
        std::fs::write(file, serde_json::to_string(&self.events).expect("events serialise")).expect("write the events");
    }
}

/// Publishes `events` with ratingingester, as a user does, and waits for it
/// to succeed.
pub fn ingest(broker: &Broker, file: &Path, events: &[serde_json::Value]) {
    std::fs::write(file, serde_json::to_string(events).expect("events serialise")).expect("write the events");
    let output = Command::new(binary("ratingingester"))
        .arg(file)
        .env("KAFKA_BROKERS", broker.address())
        .output()
        .expect("run ratingingester");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// The `applied=N` an instance's log gives when its ingestion stops.
pub fn applied_at_stop(log: &str) -> u64 {
    count_at_stop(log, "applied=")
}

/// The `skipped=N` (events behind the store's position) an instance's log
/// gives when its ingestion stops.
pub fn skipped_at_stop(log: &str) -> u64 {
    count_at_stop(log, "skipped=")
}

fn count_at_stop(log: &str, name: &str) -> u64 {
    let line = log.lines().rev().find(|line| line.contains("ingestion stopped")).expect("ingestion stopped line");
    count_in_line(line, name)
}

/// The last `name=N` (e.g. `already_applied=`) the log gives.
pub fn count_in_log(log: &str, name: &str) -> u64 {
    let line = log.lines().rev().find(|line| line.contains(name)).unwrap_or_else(|| panic!("no {name}N in the log"));
    count_in_line(line, name)
}

fn count_in_line(line: &str, name: &str) -> u64 {
    let (_, after) = line.split_once(name).unwrap_or_else(|| panic!("{name}N in the line: {line}"));
    after.split(|c: char| !c.is_ascii_digit()).next().and_then(|digits| digits.parse().ok()).expect("a count")
}

/// How many events of the `ratings` topic the store at `url` (SQLite or
/// PostgreSQL) has applied: the sum of its stored positions.
pub fn stored_position(url: &str) -> i64 {
    const QUERY: &str = "SELECT CAST(SUM(next_offset) AS BIGINT) FROM consumer_offsets WHERE topic = 'ratings'";
    block_on(async {
        let (position,): (Option<i64>,) = if url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(url).await.expect("connect to the SQLite store");
            let row = sqlx::query_as(QUERY).fetch_one(&pool).await.expect("read the positions");
            pool.close().await;
            row
        } else {
            let pool = sqlx::PgPool::connect(url).await.expect("connect to the test database");
            let row = sqlx::query_as(QUERY).fetch_one(&pool).await.expect("read the positions");
            pool.close().await;
            row
        };
        position.unwrap_or(0)
    })
}

/// Each movie's (sum, count) as the PostgreSQL store at `url` holds it.
pub fn stored_totals(url: &str) -> BTreeMap<String, (i64, i64)> {
    block_on(async {
        let pool = sqlx::PgPool::connect(url).await.expect("connect to the test database");
        let rows: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT record_id, rating_sum, rating_count FROM rating_totals WHERE record_type = 'movie'")
                .fetch_all(&pool)
                .await
                .expect("read the totals");
        pool.close().await;
        rows.into_iter().map(|(record, sum, count)| (record, (sum, count))).collect()
    })
}
