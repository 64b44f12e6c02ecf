//! `healthcheck`: asks a server's `grpc.health.v1.Health/Check` and exits 0
//! only when it answers SERVING. Container healthchecks run it (the image has
//! no shell tools and no grpc_health_probe), as in
//! `healthcheck 127.0.0.1:8082 --service RatingService`. A TLS server is
//! probed with `--tls-ca` (and `--tls-cert`/`--tls-key` when it asks for a
//! client certificate), or the `HEALTHCHECK_TLS_*` variables.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use platform::{
    security::{ClientTls, ClientTlsFiles},
    upstream::Connection,
};
use telemetry::Chain;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

#[derive(Debug, Parser)]
#[command(about = "Exit 0 when a gRPC server's health service reports SERVING")]
struct Args {
    /// host:port of the server
    address: String,

    /// Health of one gRPC service (e.g. RatingService) instead of the whole server
    #[arg(long, default_value = "")]
    service: String,

    /// Give up (unhealthy) after this long
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,

    /// PEM CA certificate(s) the server's certificate must chain to; the probe then speaks TLS [default: plaintext]
    #[arg(long, env = "HEALTHCHECK_TLS_CA")]
    tls_ca: Option<PathBuf>,

    /// PEM client certificate, for a server that asks for one (--tls-client-ca), with --tls-key
    #[arg(long, env = "HEALTHCHECK_TLS_CERT")]
    tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert
    #[arg(long, env = "HEALTHCHECK_TLS_KEY")]
    tls_key: Option<PathBuf>,

    /// Name the server's certificate must be issued for [default: the host of the address]
    #[arg(long, env = "HEALTHCHECK_TLS_DOMAIN")]
    tls_domain: Option<String>,
}

impl Args {
    fn tls(&self) -> Result<Option<ClientTls>, String> {
        ClientTlsFiles {
            ca: ("--tls-ca (HEALTHCHECK_TLS_CA)", self.tls_ca.as_deref()),
            cert: ("--tls-cert (HEALTHCHECK_TLS_CERT)", self.tls_cert.as_deref()),
            key: ("--tls-key (HEALTHCHECK_TLS_KEY)", self.tls_key.as_deref()),
            domain: ("--tls-domain (HEALTHCHECK_TLS_DOMAIN)", self.tls_domain.as_deref()),
        }
        .client_tls()
        .map_err(|error| Chain(&error).to_string())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match tokio::time::timeout(args.timeout, check(&args)).await {
        Ok(Ok(ServingStatus::Serving)) => {
            println!("{}: SERVING", args.address);
            ExitCode::SUCCESS
        }
        Ok(Ok(status)) => {
            eprintln!("{}: {}", args.address, status.as_str_name());
            ExitCode::FAILURE
        }
        Ok(Err(error)) => {
            eprintln!("{}: {error}", args.address);
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("{}: no answer within {}", args.address, humantime::format_duration(args.timeout));
            ExitCode::FAILURE
        }
    }
}

async fn check(args: &Args) -> Result<ServingStatus, String> {
    let tls = args.tls()?;
    let connection =
        Connection::new(&args.address, tls.as_ref(), args.timeout).map_err(|_| "not a host:port address".to_owned())?;
    let response = HealthClient::new(connection)
        .check(HealthCheckRequest { service: args.service.clone() })
        .await
        .map_err(|status| match std::error::Error::source(&status) {
            Some(source) => format!("{:?}: {}: {}", status.code(), status.message(), Chain(source)),
            None => format!("{:?}: {}", status.code(), status.message()),
        })?;
    Ok(response.into_inner().status())
}
