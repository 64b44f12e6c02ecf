//! A stand-in for the part of Consul's agent HTTP API the suite uses, true to
//! Consul's documented paths, methods, JSON and TTL-check semantics:
//!
//! * `PUT /v1/agent/service/register` (ID defaults to Name; a `Check` with a
//!   `TTL` gets the id `CheckID` or `service:<ID>` and starts critical);
//! * `PUT /v1/agent/service/deregister/:service_id`;
//! * `PUT /v1/agent/check/pass/:check_id` (404 for an unknown check);
//! * `GET /v1/health/service/:service[?passing]` (a TTL check is passing
//!   only within its TTL of the last pass).
//!
//! With [`FakeConsul::start_with_token`] it enforces an ACL token as Consul
//! does with ACLs on and a default deny: a request without the
//! `X-Consul-Token` header is refused with 403 "Permission denied", one with
//! another token with 403 "ACL not found".
//!
//! It records what it receives so tests can check the requests themselves.
use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, put},
};
use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub struct Registered {
    /// The registration body exactly as received.
    pub body: Value,
    pub id: String,
    pub name: String,
    pub check_id: Option<String>,
    ttl: Option<Duration>,
    last_pass: Option<Instant>,
}

impl Registered {
    /// Passing: no TTL check, or a pass within the TTL.
    fn passing_at(&self, now: Instant) -> bool {
        match (self.ttl, self.last_pass) {
            (None, _) => true,
            (Some(ttl), Some(last)) => now.duration_since(last) < ttl,
            (Some(_), None) => false,
        }
    }
}

#[derive(Default)]
struct Agent {
    services: BTreeMap<String, Registered>,
    heartbeats: HashMap<String, usize>,
    deregistered: Vec<String>,
    /// When each deregistration arrived, in order.
    deregistered_at: Vec<(String, Instant)>,
    requests: Vec<String>,
    /// The ACL token every request must carry, if ACLs are on.
    token: Option<String>,
    refused: usize,
}

type Shared = Arc<Mutex<Agent>>;

pub struct FakeConsul {
    agent: Shared,
    address: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeConsul {
    pub fn start() -> Self {
        Self::start_on(0)
    }

    /// Starts on a given port of 127.0.0.1 (0 for any).
    pub fn start_on(port: u16) -> Self {
        Self::start_with(port, None)
    }

    /// Starts with ACLs on: every request must carry `token`.
    pub fn start_with_token(token: &str) -> Self {
        Self::start_with(0, Some(token.to_owned()))
    }

    fn start_with(port: u16, token: Option<String>) -> Self {
        let agent: Shared = Arc::new(Mutex::new(Agent { token, ..Agent::default() }));
        let app = Router::new()
            .route("/v1/agent/service/register", put(register))
            .route("/v1/agent/service/deregister/{id}", put(deregister))
            .route("/v1/agent/check/pass/{check_id}", put(pass))
            .route("/v1/health/service/{service}", get(health))
            .layer(middleware::from_fn_with_state(agent.clone(), acl))
            .with_state(agent.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind the Consul stand-in");
                ready_tx.send(listener.local_addr().expect("address")).expect("report address");
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = shutdown_rx.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        let address = ready_rx.recv().expect("the Consul stand-in started");
        Self { agent, address, shutdown: Some(shutdown), thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT`, for CONSUL_HTTP_ADDR.
    pub fn http_address(&self) -> String {
        format!("http://{}", self.address)
    }

    fn agent(&self) -> std::sync::MutexGuard<'_, Agent> {
        self.agent.lock().unwrap()
    }

    /// The registered instances of a service.
    pub fn registered(&self, service: &str) -> Vec<Registered> {
        self.agent().services.values().filter(|registered| registered.name == service).cloned().collect()
    }

    /// The ids of a service's instances whose check passes now, as
    /// `GET /v1/health/service/NAME?passing` lists them.
    pub fn passing(&self, service: &str) -> Vec<String> {
        let now = Instant::now();
        self.agent()
            .services
            .values()
            .filter(|registered| registered.name == service && registered.passing_at(now))
            .map(|registered| registered.id.clone())
            .collect()
    }

    /// How many TTL passes a check has received.
    pub fn heartbeats(&self, check_id: &str) -> usize {
        self.agent().heartbeats.get(check_id).copied().unwrap_or(0)
    }

    /// Service ids deregistered so far, in order.
    pub fn deregistered(&self) -> Vec<String> {
        self.agent().deregistered.clone()
    }

    /// When `id` was deregistered, if it was.
    pub fn deregistered_at(&self, id: &str) -> Option<Instant> {
        self.agent().deregistered_at.iter().find(|(deregistered, _)| deregistered == id).map(|(_, at)| *at)
    }

    /// The port it listens on, to start another one there later.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// How many requests the ACL check refused.
    pub fn refused(&self) -> usize {
        self.agent().refused
    }

    /// Every request received, as `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.agent().requests.clone()
    }
}

impl Drop for FakeConsul {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Consul's ACL check, when a token is required.
async fn acl(State(agent): State<Shared>, request: Request, next: Next) -> Response {
    let given = request.headers().get("x-consul-token").and_then(|value| value.to_str().ok()).map(str::to_owned);
    let refusal = {
        let mut agent = agent.lock().unwrap();
        let refusal = match (&agent.token, given) {
            (None, _) => None,
            (Some(_), None) => Some("Permission denied: anonymous token lacks permission"),
            (Some(required), Some(given)) if *required != given => Some("ACL not found"),
            (Some(_), Some(_)) => None,
        };
        agent.refused += usize::from(refusal.is_some());
        refusal
    };
    match refusal {
        Some(message) => (StatusCode::FORBIDDEN, message).into_response(),
        None => next.run(request).await,
    }
}

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_string)
}

/// Consul's duration syntax as Go's `time.ParseDuration` reads it (the subset
/// of units a TTL uses).
fn parse_duration(raw: &str) -> Option<Duration> {
    let split = raw.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = raw.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

async fn register(State(agent): State<Shared>, body: Bytes) -> (StatusCode, String) {
    let mut agent = agent.lock().unwrap();
    agent.requests.push("PUT /v1/agent/service/register".into());
    let body: Value = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(error) => return (StatusCode::BAD_REQUEST, format!("Request decode failed: {error}")),
    };
    let Some(name) = text(&body, "Name").filter(|name| !name.is_empty()) else {
        return (StatusCode::BAD_REQUEST, "Missing service name".into());
    };
    let id = text(&body, "ID").filter(|id| !id.is_empty()).unwrap_or_else(|| name.clone());
    let check = body.get("Check").filter(|check| !check.is_null());
    let ttl = match check.and_then(|check| text(check, "TTL")) {
        Some(raw) => match parse_duration(&raw) {
            Some(ttl) => Some(ttl),
            None => return (StatusCode::BAD_REQUEST, format!("Invalid check: TTL {raw:?} is not a duration")),
        },
        None => None,
    };
    let check_id = check.map(|check| text(check, "CheckID").unwrap_or_else(|| format!("service:{id}")));
    let passing_now = check.and_then(|check| text(check, "Status")).as_deref() == Some("passing");
    let registered =
        Registered { body, id: id.clone(), name, check_id, ttl, last_pass: passing_now.then(Instant::now) };
    agent.services.insert(id, registered);
    (StatusCode::OK, String::new())
}

async fn deregister(State(agent): State<Shared>, Path(id): Path<String>) -> (StatusCode, String) {
    let mut agent = agent.lock().unwrap();
    agent.requests.push(format!("PUT /v1/agent/service/deregister/{id}"));
    if agent.services.remove(&id).is_none() {
        return (
            StatusCode::NOT_FOUND,
            format!("Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."),
        );
    }
    agent.deregistered_at.push((id.clone(), Instant::now()));
    agent.deregistered.push(id);
    (StatusCode::OK, String::new())
}

async fn pass(State(agent): State<Shared>, Path(check_id): Path<String>) -> (StatusCode, String) {
    let mut agent = agent.lock().unwrap();
    agent.requests.push(format!("PUT /v1/agent/check/pass/{check_id}"));
    let Some(service) =
        agent.services.values_mut().find(|service| service.check_id.as_deref() == Some(check_id.as_str()))
    else {
        return (
            StatusCode::NOT_FOUND,
            format!("Unknown check ID {check_id:?}. Ensure that the check ID is passed, not the check name."),
        );
    };
    if service.ttl.is_none() {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("CheckID {check_id:?} does not have associated TTL"));
    }
    service.last_pass = Some(Instant::now());
    *agent.heartbeats.entry(check_id).or_default() += 1;
    (StatusCode::OK, String::new())
}

async fn health(
    State(agent): State<Shared>,
    Path(service): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let mut agent = agent.lock().unwrap();
    let query_text: Vec<String> = query.iter().map(|(key, value)| format!("{key}={value}")).collect();
    agent.requests.push(format!("GET /v1/health/service/{service}?{}", query_text.join("&")));
    // `?passing` with no value, or a true boolean, filters to passing instances.
    let passing_only = match query.get("passing").map(String::as_str) {
        None => false,
        Some("" | "1" | "t" | "T" | "true" | "TRUE" | "True") => true,
        Some(_) => false,
    };
    let now = Instant::now();
    let entries: Vec<Value> = agent
        .services
        .values()
        .filter(|registered| registered.name == service)
        .filter_map(|registered| {
            let status = if registered.passing_at(now) { "passing" } else { "critical" };
            if passing_only && status != "passing" {
                return None;
            }
            let body = &registered.body;
            let mut checks = vec![json!({
                "Node": "stand-in", "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing",
                "ServiceID": "", "ServiceName": "",
            })];
            if let Some(check_id) = &registered.check_id {
                checks.push(json!({
                    "Node": "stand-in", "CheckID": check_id, "Name": format!("Service '{}' check", registered.name),
                    "Status": status, "ServiceID": registered.id, "ServiceName": registered.name, "Type": "ttl",
                }));
            }
            Some(json!({
                "Node": { "ID": "00000000-0000-0000-0000-000000000001", "Node": "stand-in", "Address": "127.0.0.1", "Datacenter": "dc1" },
                "Service": {
                    "ID": registered.id, "Service": registered.name,
                    "Address": body.get("Address").cloned().unwrap_or(json!("")),
                    "Port": body.get("Port").cloned().unwrap_or(json!(0)),
                    "Tags": body.get("Tags").cloned().filter(|tags| !tags.is_null()).unwrap_or(json!([])),
                    "Meta": body.get("Meta").cloned().filter(|meta| !meta.is_null()).unwrap_or(json!({})),
                },
                "Checks": checks,
            }))
        })
        .collect();
    (StatusCode::OK, Json(Value::Array(entries)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("ten"), None);
    }
}
