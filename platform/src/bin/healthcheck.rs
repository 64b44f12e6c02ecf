//! `healthcheck`: asks a server's `grpc.health.v1.Health/Check` and exits 0
//! only when it answers SERVING. Container healthchecks run it (the image has
//! no shell tools and no grpc_health_probe), as in
//! `healthcheck 127.0.0.1:8082 --service RatingService`.
use std::{process::ExitCode, time::Duration};

use clap::Parser;
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
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", args.address))
        .map_err(|error| format!("not a host:port address: {error}"))?;
    let channel = endpoint.connect().await.map_err(|error| format!("cannot connect: {error}"))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest { service: args.service.clone() })
        .await
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?;
    Ok(response.into_inner().status())
}
