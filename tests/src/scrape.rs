//! One figure from the Prometheus text a service serves at its `--metrics-addr`, read with a plain HTTP/1.0 request.
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

/// The sum of the series `name` whose labels include `labels` (e.g.
/// `rpc_method="GetAggregatedRating"`, or "" for all); 0 when there is none.
pub fn metric(address: SocketAddr, name: &str, labels: &str) -> f64 {
    let text = scrape(address);
    let prefix = format!("{name}{{");
    text.lines()
        .filter(|line| {
            (line.starts_with(&prefix) && line.contains(labels))
                || (labels.is_empty() && line.starts_with(&format!("{name} ")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The whole text served at `http://ADDRESS/metrics`.
pub fn scrape(address: SocketAddr) -> String {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .unwrap_or_else(|error| panic!("cannot connect to the metrics listener at {address}: {error}"));
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("a read timeout");
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: metrics\r\n\r\n").expect("ask for the metrics");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read the metrics");
    text
}
