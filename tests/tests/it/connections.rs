//! Every server's connections are bounded, seen from real sockets against a
//! real metadata process: thousands of connections that never speak are
//! closed within `--handshake-timeout` and the process's descriptors come
//! back to where they were, while calls on a normal connection go on; a
//! connection past `--max-connections` is closed at once and counted; a
//! connection with no call open is closed with GOAWAY after
//! `--idle-timeout`, and a client's next call reconnects by itself; a peer
//! that stops answering PINGs is dropped after the keep-alive timeout; a
//! connection is sent GOAWAY at `--max-connection-age`, however busy, and
//! its client goes on calling on a new one; and
//! a graceful shutdown does not wait for connections that never spoke.
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use contract::api::{GetMetadataRequest, metadata_service_client::MetadataServiceClient};
use e2e::{calls::put_movie, free_port, process::ServiceProcess};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tonic::transport::Channel;

const START: Duration = Duration::from_secs(20);
const CLIENT_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: the client's first frame, all defaults.
const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a test runtime")
}

fn metrics_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// The descriptors the process holds open.
fn descriptors(process: &ServiceProcess) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", process.pid())).expect("the process's descriptors").count()
}

/// The soft limit of descriptors of this process, which the test's own
/// sockets count against (the server, a child, inherits the same).
fn descriptor_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("this process's limits");
    let line = limits.lines().find(|line| line.starts_with("Max open files")).expect("a descriptor limit");
    line.split_whitespace().nth(3).and_then(|soft| soft.parse().ok()).unwrap_or(usize::MAX)
}

/// The value of a series in the Prometheus text the process serves at
/// `address`, for the series whose labels include `labels`; 0 when absent.
async fn metric(address: SocketAddr, name: &str, labels: &str) -> f64 {
    let mut stream = TcpStream::connect(address).await.expect("connect to the metrics listener");
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: metrics\r\n\r\n").await.expect("ask for the metrics");
    let mut text = String::new();
    stream.read_to_string(&mut text).await.expect("read the metrics");
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(labels))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A metadata process with `flags` and metrics on, serving, with movie 1
/// (Heat) stored; and its metrics address.
fn start_metadata(flags: &[&str]) -> (ServiceProcess, SocketAddr) {
    let metrics = metrics_address();
    let metrics_flag = metrics.to_string();
    let args: Vec<&str> = flags.iter().copied().chain(["--metrics-addr", &metrics_flag]).collect();
    let metadata = ServiceProcess::start("metadata", &args, &[]);
    metadata.wait_until_serving(START);
    // The health checks' connections are closed on their side first: until
    // the server has seen them go, they count against --max-connections.
    runtime().block_on(e2e::wait_for("the server holds no connection", START, || async {
        metric(metrics, "rpc_server_connections_open", "").await == 0.0
    }));
    put_movie(&metadata, "1");
    (metadata, metrics)
}

async fn metadata_client(process: &ServiceProcess) -> MetadataServiceClient<Channel> {
    let channel = e2e::process::endpoint(process).timeout(Duration::from_secs(5)).connect().await.expect("connect");
    MetadataServiceClient::new(channel)
}

async fn get_heat(client: &mut MetadataServiceClient<Channel>) -> Result<(), tonic::Status> {
    let answer = client.get_metadata(GetMetadataRequest { movie_id: "1".into() }).await?;
    assert_eq!(answer.into_inner().metadata.map(|metadata| metadata.title).as_deref(), Some("Heat"));
    Ok(())
}

/// Waits until the server closes `stream`: end of stream or a reset; the
/// time it took, or `None` if it was still open after `patience`.
async fn closed_by_server(mut stream: TcpStream, patience: Duration) -> Option<Duration> {
    frames_until_closed(&mut stream, patience, false).await.1
}

#[test]
fn silent_connections_are_closed_within_the_handshake_timeout_while_calls_go_on() {
    // Below the descriptor limit, with room for the rest of the process.
    let silent = 3_000.min(descriptor_limit().saturating_sub(500) / 2);
    assert!(silent >= 500, "a descriptor limit of {} is too low for this test", descriptor_limit());
    let handshake_timeout = Duration::from_secs(1);
    let (metadata, metrics) = start_metadata(&["--handshake-timeout", "1s"]);

    runtime().block_on(async {
        let mut client = metadata_client(&metadata).await;
        get_heat(&mut client).await.expect("a call before the silent connections");
        let baseline = descriptors(&metadata);

        // Calls on the normal connection all along.
        let (stop_calling, mut stop) = tokio::sync::oneshot::channel::<()>();
        let calling = tokio::spawn(async move {
            let (mut answered, mut failed) = (0, Vec::new());
            loop {
                match tokio::time::timeout(Duration::from_secs(5), get_heat(&mut client)).await {
                    Ok(Ok(())) => answered += 1,
                    Ok(Err(status)) => failed.push(status.to_string()),
                    Err(_) => failed.push("no answer within 5s".to_owned()),
                }
                if stop.try_recv().is_ok() {
                    return (answered, failed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });

        let address: SocketAddr = metadata.authority().parse().expect("an address");
        let mut waiting = tokio::task::JoinSet::new();
        for _ in 0..silent {
            let stream = TcpStream::connect(address).await.expect("a silent connection");
            // Each has the timeout, and slack for a busy machine, from its own connect.
            waiting.spawn(closed_by_server(stream, handshake_timeout + Duration::from_secs(10)));
        }
        let mut slowest = Duration::ZERO;
        let mut still_open = 0;
        while let Some(closed) = waiting.join_next().await {
            match closed.expect("the watch ran") {
                Some(after) => slowest = slowest.max(after),
                None => still_open += 1,
            }
        }
        assert_eq!(still_open, 0, "{still_open} of {silent} silent connections were never closed");
        assert!(slowest >= handshake_timeout / 2, "closed after {slowest:?}, before the timeout could have passed");

        e2e::wait_for("the server's descriptors are back to their baseline", Duration::from_secs(10), || async {
            descriptors(&metadata) <= baseline
        })
        .await;
        let timed_out = metric(metrics, "rpc_server_connections_closed_total", "reason=\"handshake_timeout\"").await;
        assert_eq!(timed_out, silent as f64, "every silent connection counted as a handshake timeout");

        stop_calling.send(()).expect("the caller still runs");
        let (answered, failed) = calling.await.expect("the caller ended");
        assert!(failed.is_empty(), "{} calls failed meanwhile, the first: {}", failed.len(), failed[0]);
        assert!(answered > 1, "the normal connection was served throughout ({answered} calls)");
    });
    assert!(metadata.terminate(Duration::from_secs(10)).success());
}

#[test]
fn a_connection_past_the_cap_is_closed_at_once_and_counted() {
    let (metadata, metrics) = start_metadata(&["--max-connections", "2", "--handshake-timeout", "1m"]);

    runtime().block_on(async {
        let address: SocketAddr = metadata.authority().parse().expect("an address");
        // Two connections: a client's, and one that says nothing (yet).
        let open = || metric(metrics, "rpc_server_connections_open", "");
        let mut client = metadata_client(&metadata).await;
        get_heat(&mut client).await.expect("the first connection is served");
        // The connections of the start-up checks are gone.
        e2e::wait_for("the server holds the client's connection alone", Duration::from_secs(10), || async {
            open().await == 1.0
        })
        .await;
        let quiet = TcpStream::connect(address).await.expect("the second connection");
        e2e::wait_for("the server holds both connections", Duration::from_secs(10), || async { open().await == 2.0 })
            .await;

        let third = TcpStream::connect(address).await.expect("the kernel takes the third connection");
        let closed = closed_by_server(third, Duration::from_secs(10)).await;
        assert!(closed.is_some(), "the connection past --max-connections 2 was not closed");
        assert_eq!(metric(metrics, "rpc_server_connections_refused_total", "").await, 1.0);
        get_heat(&mut client).await.expect("the connections within the cap are still served");

        // A slot that frees up takes a new connection again.
        drop(quiet);
        e2e::wait_for("a new client is served once a connection closed", Duration::from_secs(10), || async {
            match e2e::process::endpoint(&metadata).timeout(Duration::from_secs(2)).connect().await {
                Ok(channel) => get_heat(&mut MetadataServiceClient::new(channel)).await.is_ok(),
                Err(_) => false,
            }
        })
        .await;
    });
    assert!(metadata.terminate(Duration::from_secs(10)).success());
}

/// The frames a raw HTTP/2 client reads, by type, until the server closes
/// the connection (or `patience` runs out): each with when it came, and
/// when the connection closed (`None`: still open). With `answer_pings`,
/// it acknowledges each PING as a client's HTTP/2 stack does.
async fn frames_until_closed(
    stream: &mut TcpStream,
    patience: Duration,
    answer_pings: bool,
) -> (Vec<(u8, Duration)>, Option<Duration>) {
    let started = Instant::now();
    let (mut unparsed, mut frames, mut buffer) = (Vec::new(), Vec::new(), [0; 4096]);
    let closed = tokio::time::timeout(patience, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => unparsed.extend_from_slice(&buffer[..read]),
            }
            while unparsed.len() >= 9 {
                let length = u32::from_be_bytes([0, unparsed[0], unparsed[1], unparsed[2]]) as usize;
                let Some(payload) = unparsed.get(9..9 + length) else { break };
                let (kind, flags) = (unparsed[3], unparsed[4]);
                frames.push((kind, started.elapsed()));
                if answer_pings && kind == PING && flags & ACK == 0 {
                    let mut ack = vec![0, 0, 8, PING, ACK, 0, 0, 0, 0];
                    ack.extend_from_slice(payload);
                    if stream.write_all(&ack).await.is_err() {
                        return;
                    }
                }
                unparsed.drain(..9 + length);
            }
        }
    })
    .await;
    (frames, closed.ok().map(|()| started.elapsed()))
}

#[test]
fn an_idle_connection_is_closed_with_goaway_and_the_client_reconnects_on_its_next_call() {
    let idle_timeout = Duration::from_secs(1);
    let (metadata, metrics) = start_metadata(&["--idle-timeout", "1s"]);

    runtime().block_on(async {
        // A raw HTTP/2 client that opens no stream.
        let mut raw = TcpStream::connect(metadata.authority()).await.expect("connect");
        raw.write_all(&[CLIENT_PREFACE, &EMPTY_SETTINGS[..]].concat()).await.expect("the opening");
        let (frames, closed) = frames_until_closed(&mut raw, Duration::from_secs(15), true).await;
        assert!(closed.is_some(), "the idle connection was never closed; frames: {frames:?}");
        let goaway = frames.iter().find(|(kind, _)| *kind == GOAWAY);
        let Some((_, after)) = goaway else { panic!("closed without GOAWAY; frames: {frames:?}") };
        assert!(*after >= idle_timeout / 2, "GOAWAY after {after:?}, before the idle timeout could have passed");

        // A tonic client: its connection closed while idle, the next call
        // on the same client opens a new one without an error.
        let idle = || metric(metrics, "rpc_server_connections_closed_total", "reason=\"idle\"");
        let closed_before = idle().await;
        let mut client = metadata_client(&metadata).await;
        get_heat(&mut client).await.expect("the first call");
        e2e::wait_for("the client's idle connection is closed", Duration::from_secs(15), || async {
            idle().await > closed_before
        })
        .await;
        get_heat(&mut client).await.expect("the next call reconnects transparently");
        get_heat(&mut client).await.expect("and the one after");
    });
    assert!(metadata.terminate(Duration::from_secs(10)).success());
}

/// Calls `client` from `callers` tasks at once until `goaways` connections
/// reached their maximum age (30 s at most); returns the calls answered and
/// the failures.
async fn call_through_goaways<C>(
    client: MetadataServiceClient<C>,
    callers: usize,
    metrics: SocketAddr,
    goaways: f64,
) -> (usize, Vec<String>)
where
    C: tonic::client::GrpcService<tonic::body::Body> + Clone + Send + 'static,
    C::Future: Send,
    C::Error: Into<tonic::codegen::StdError>,
    C::ResponseBody: tonic::codegen::Body<Data = bytes::Bytes> + Send + 'static,
    <C::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let aged = move || metric(metrics, "rpc_server_connections_closed_total", "reason=\"max_age\"");
    let until = aged().await + goaways;
    let deadline = Instant::now() + Duration::from_secs(30);
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let (mut answered, mut failed) = (0, Vec::new());
                while Instant::now() < deadline {
                    let answer = client.get_metadata(GetMetadataRequest { movie_id: "1".into() }).await;
                    match answer {
                        Ok(_) => answered += 1,
                        Err(status) => failed.push(format!("{status:?}")),
                    }
                    if answered % 50 == 0 && aged().await >= until {
                        break;
                    }
                }
                (answered, failed)
            })
        })
        .collect();
    let (mut answered, mut failed) = (0, Vec::new());
    for task in tasks {
        let (answers, failures) = task.await.expect("the caller ran");
        answered += answers;
        failed.extend(failures);
    }
    assert!(aged().await >= until, "fewer than {goaways} connections reached their age in 30 s ({answered} calls)");
    (answered, failed)
}

/// A connection is sent GOAWAY at its maximum age however busy it is, and
/// its client reconnects. The suite's own client (movie's connection to
/// each instance) loses no call to it: a call the server did not take up
/// is made again on the new connection. A tonic Channel keeps calling on
/// new connections too, but may lose a call that races the GOAWAY: its
/// HTTP/2 client (hyper) does not make such a call again
/// (hyperium/hyper#2500), and fails it (CANCELLED, INTERNAL or UNKNOWN).
#[test]
fn a_busy_connection_at_its_maximum_age_is_sent_goaway_and_its_client_reconnects() {
    const CALLERS: usize = 4;
    let (metadata, metrics) = start_metadata(&["--max-connection-age", "500ms"]);

    runtime().block_on(async {
        let connection = platform::upstream::Connection::new(&metadata.authority(), None, Duration::from_secs(5))
            .expect("a connection");
        let (answered, failed) =
            call_through_goaways(MetadataServiceClient::new(connection), CALLERS, metrics, 3.0).await;
        assert!(failed.is_empty(), "{} of the suite's client's calls failed, the first: {}", failed.len(), failed[0]);
        assert!(answered > 0);

        let channel = metadata_client(&metadata).await;
        let (answered, failed) = call_through_goaways(channel, CALLERS, metrics, 3.0).await;
        // It goes on being answered across the GOAWAYs: it reconnected.
        assert!(answered > 0, "{failed:?}");
        println!("a tonic Channel through 3 GOAWAYs: {answered} calls answered, {} lost racing a GOAWAY", failed.len());

        // Each GOAWAY was one of these clients' connections, and they
        // reconnected every time: the server holds their last connections.
        e2e::wait_for("the clients' last connections are the ones open", Duration::from_secs(10), || async {
            metric(metrics, "rpc_server_connections_open", "").await <= 2.0
        })
        .await;
    });
    assert!(metadata.terminate(Duration::from_secs(10)).success());
}

#[test]
fn a_peer_that_stops_answering_pings_is_dropped_after_the_keepalive_timeout() {
    let (metadata, metrics) = start_metadata(&["--http2-keepalive-interval", "1s", "--http2-keepalive-timeout", "1s"]);

    runtime().block_on(async {
        // Opens the connection as a client does, then never answers a PING
        // (nor sends anything else).
        let mut raw = TcpStream::connect(metadata.authority()).await.expect("connect");
        raw.write_all(&[CLIENT_PREFACE, &EMPTY_SETTINGS[..]].concat()).await.expect("the opening");
        let (frames, closed) = frames_until_closed(&mut raw, Duration::from_secs(15), false).await;
        assert!(closed.is_some(), "the silent peer was never dropped; frames: {frames:?}");
        assert!(frames.iter().any(|(kind, _)| *kind == PING), "no PING before the close; frames: {frames:?}");
        assert_eq!(metric(metrics, "rpc_server_connections_closed_total", "reason=\"keepalive\"").await, 1.0);
    });
    assert!(metadata.terminate(Duration::from_secs(10)).success());
}

#[test]
fn a_graceful_shutdown_does_not_wait_for_connections_that_never_spoke() {
    let (metadata, _) = start_metadata(&["--handshake-timeout", "1m", "--shutdown-timeout", "30s"]);
    let address: SocketAddr = metadata.authority().parse().expect("an address");
    let silent: Vec<std::net::TcpStream> =
        (0..100).map(|_| std::net::TcpStream::connect(address).expect("a silent connection")).collect();
    runtime().block_on(async {
        let mut client = metadata_client(&metadata).await;
        // Answered after the silent connections were accepted.
        get_heat(&mut client).await.expect("a call on a normal connection");
    });

    let stopping = Instant::now();
    assert!(metadata.terminate(Duration::from_secs(30)).success());
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(5), "the shutdown took {took:?}, held up by {} silent sockets", silent.len());
}
