//! The server settings every service shares, flattened into each service's
//! own clap `Config`: addresses, limits on calls and connections, and the
//! telemetry and TLS settings of the process.
use std::{num::NonZeroUsize, time::Duration};

use bytesize::ByteSize;

use super::connections::ConnectionLimits;
use crate::discovery::InstanceId;

#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Host name or IP other services should use to reach this instance [default: the listen IP; when listening on all interfaces, the IP the host name resolves to (a container's network address), else the host name]
    #[arg(long, env = "ADVERTISE_HOST")]
    pub advertise_host: Option<String>,

    /// Id of this instance in the registry [default: the service name and a random suffix]
    #[arg(long, env = "INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// On SIGINT/SIGTERM, how long in-flight RPCs may take to finish before the process exits anyway
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Largest gRPC message this instance takes or sends (e.g. 4MiB, 65536); a larger request is refused with RESOURCE_EXHAUSTED. The movie service's calls to its dependencies have the same limit
    #[arg(long, env = "MAX_MESSAGE_SIZE", default_value = "4MiB")]
    pub max_message_size: ByteSize,

    /// RPCs this instance serves at once; past it, a new call is refused at once with RESOURCE_EXHAUSTED instead of waiting (health checks and reflection never are)
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value = "1000")]
    pub max_concurrent_requests: NonZeroUsize,

    /// Threads running this instance's tasks (tokio's worker threads). 1 is the cheapest per call when an instance needs at most a core, as when several services share a machine's cores: a call's tasks never move between threads, and the writes of concurrent calls always share a system call [default: one per core]
    #[arg(long, env = "WORKER_THREADS")]
    pub worker_threads: Option<NonZeroUsize>,

    /// How long a new connection may take to finish its TLS handshake (with TLS on) and send the HTTP/2 preface and its first SETTINGS frame; past it, it is closed
    #[arg(long, env = "HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub handshake_timeout: Duration,

    /// A connection this instance received nothing on for this long is sent an HTTP/2 PING, so that a peer that vanished (a crashed host, a dropped route) is noticed
    #[arg(long, env = "HTTP2_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = positive_duration)]
    pub http2_keepalive_interval: Duration,

    /// A keep-alive PING unanswered for this long closes the connection, and the calls still open on it
    #[arg(long, env = "HTTP2_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = positive_duration)]
    pub http2_keepalive_timeout: Duration,

    /// A connection with no call open for this long is closed with GOAWAY; its client reconnects on its next call
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "5m", value_parser = positive_duration)]
    pub idle_timeout: Duration,

    /// Client connections this instance holds open at once; past it, a new one is closed at once (keep it under the process's file descriptor limit, `ulimit -n`)
    #[arg(long, env = "MAX_CONNECTIONS", default_value = "10000")]
    pub max_connections: NonZeroUsize,

    /// A client connection this old (give or take a tenth, at random) is sent GOAWAY, however busy: its client reconnects, and a client behind a load balancer spreads again over the instances added since (e.g. 5m). Calls open on it get --shutdown-timeout to finish before it is closed [default: none, a connection lives until its client closes it]
    #[arg(long, env = "MAX_CONNECTION_AGE", value_parser = positive_duration)]
    pub max_connection_age: Option<Duration>,

    #[command(flatten)]
    pub metrics: telemetry::MetricsArgs,

    #[command(flatten)]
    pub logging: telemetry::LogArgs,

    #[command(flatten)]
    pub tls: crate::security::ServerTlsArgs,
}

impl ServerArgs {
    pub fn instance_id(&self) -> Option<InstanceId> {
        self.instance_id.as_deref().map(InstanceId::new)
    }

    /// The limits of every connection the server accepts.
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            handshake_timeout: self.handshake_timeout,
            keepalive_interval: self.http2_keepalive_interval,
            keepalive_timeout: self.http2_keepalive_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            max_age: self.max_connection_age,
            max_age_grace: self.shutdown_timeout,
        }
    }

    /// `--max-message-size` in bytes, as tonic's limits take it.
    pub fn max_message_size(&self) -> usize {
        usize::try_from(self.max_message_size.as_u64()).unwrap_or(usize::MAX)
    }
}

/// A duration such as `10s` or `5m`, more than zero: a limit of zero
/// would close every connection at once.
fn positive_duration(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(Duration::ZERO) => Err("must be more than zero".into()),
        Ok(duration) => Ok(duration),
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct ServerProbe {
        #[command(flatten)]
        server: ServerArgs,
    }

    #[test]
    fn message_sizes_take_units_and_default_to_4_mib() {
        let probe = ServerProbe::try_parse_from(["probe"]).unwrap();
        assert_eq!(probe.server.max_message_size(), 4 * 1024 * 1024);
        let probe = ServerProbe::try_parse_from(["probe", "--max-message-size", "64KiB"]).unwrap();
        assert_eq!(probe.server.max_message_size(), 64 * 1024);
        let probe = ServerProbe::try_parse_from(["probe", "--max-message-size", "1000"]).unwrap();
        assert_eq!(probe.server.max_message_size(), 1000);
        assert!(ServerProbe::try_parse_from(["probe", "--max-message-size", "lots"]).is_err());
    }

    #[test]
    fn a_concurrency_limit_of_zero_is_refused() {
        assert!(ServerProbe::try_parse_from(["probe", "--max-concurrent-requests", "0"]).is_err());
        let probe = ServerProbe::try_parse_from(["probe", "--max-concurrent-requests", "2"]).unwrap();
        assert_eq!(probe.server.max_concurrent_requests.get(), 2);
    }

    #[test]
    fn connection_limits_default_to_bounds_for_production_and_refuse_zero() {
        let limits = ServerProbe::try_parse_from(["probe"]).unwrap().server.connection_limits();
        assert_eq!(limits.handshake_timeout, Duration::from_secs(10));
        assert_eq!(limits.keepalive_interval, Duration::from_secs(30));
        assert_eq!(limits.keepalive_timeout, Duration::from_secs(20));
        assert_eq!(limits.idle_timeout, Duration::from_secs(300));
        assert_eq!(limits.max_connections.get(), 10_000);
        assert_eq!(limits.max_age, None, "connections live until their clients close them");
        let probe = ServerProbe::try_parse_from(["probe", "--max-connection-age", "5m", "--shutdown-timeout", "3s"])
            .unwrap()
            .server
            .connection_limits();
        assert_eq!((probe.max_age, probe.max_age_grace), (Some(Duration::from_secs(300)), Duration::from_secs(3)));
        let probe =
            ServerProbe::try_parse_from(["probe", "--handshake-timeout", "1s", "--idle-timeout", "2m"]).unwrap();
        assert_eq!(probe.server.connection_limits().handshake_timeout, Duration::from_secs(1));
        assert_eq!(probe.server.connection_limits().idle_timeout, Duration::from_secs(120));
        for flag in [
            "--handshake-timeout",
            "--http2-keepalive-interval",
            "--http2-keepalive-timeout",
            "--idle-timeout",
            "--max-connection-age",
        ] {
            assert!(ServerProbe::try_parse_from(["probe", flag, "0s"]).is_err(), "{flag} 0s");
        }
        assert!(ServerProbe::try_parse_from(["probe", "--max-connections", "0"]).is_err());
    }
}
