//! `loadgen`: gRPC load on `GetMovieDetails` or `GetMetadata`, in closed loop
//! (`--concurrency N` workers, for a `--duration` or a number of
//! `--requests`) or open loop (`--rate R` requests per second on a fixed
//! schedule, latencies timed from each request's intended send time, so
//! coordinated omission is accounted for; see `bench::load`; it runs on one
//! thread, since its requests arrive one at a time and handing each to
//! another thread would cost a wake-up per request). Load is spread
//! over `--connections` HTTP/2 connections; the `--warmup` is sent but not
//! recorded. Prints one JSON line: requests, errors by status code, elapsed,
//! requests/s and latency percentiles in µs.
use std::time::Duration;

use bench::{
    load::{Extent, IdSet, LoadResult, OpenLoop, run_closed_loop},
    rpc::{Rpc, connect},
};
use clap::Parser;

/// The services' allocator: the load generator shares the cores with them and should spend no more per allocation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "gRPC load generator: closed loop (--concurrency) or constant rate (--rate); prints a JSON summary.")]
struct Args {
    /// The RPC to call
    #[arg(long, value_enum)]
    rpc: Rpc,
    /// Server address, host:port
    #[arg(long)]
    address: String,
    /// Ids to ask for, chosen uniformly: FIRST..END or a,b,c
    #[arg(long, default_value = "0..1000")]
    ids: IdSet,
    /// HTTP/2 connections to spread the load over
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Closed loop: this many workers, each with one request in flight
    #[arg(long, conflicts_with = "rate", required_unless_present = "rate")]
    concurrency: Option<usize>,
    /// Open loop: requests per second on a fixed schedule
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: the most requests in flight before sending waits (the wait still counts as latency)
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
    /// Open loop: the sender wakes at most this often, sending every request due by then (each is still timed from its intended send time)
    #[arg(long, default_value_t = OpenLoop::SEND_GRANULARITY.into())]
    send_granularity: humantime::Duration,
    /// How long to measure, after the warm-up
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s", conflicts_with = "requests")]
    duration: Duration,
    /// Measure this many requests instead of a duration
    #[arg(long)]
    requests: Option<u64>,
    /// Load sent before measuring
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    warmup: Duration,
    /// Deadline of each request
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    timeout: Duration,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut runtime = if args.rate.is_some() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    runtime.enable_all().build()?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        channels.push(connect(&args.address, args.timeout).await?);
    }
    let (rpc, ids) = (args.rpc, args.ids.clone());
    let request = move |lane: usize| {
        let channel = channels[lane % channels.len()].clone();
        let id = ids.pick(&mut rand::rng()).to_owned();
        rpc.call(channel, id)
    };
    let extent = args.requests.map_or(Extent::Duration(args.duration), Extent::Requests);
    let (result, mode): (LoadResult, _) = match (args.concurrency, args.rate) {
        (Some(workers), _) => {
            anyhow::ensure!(workers > 0, "--concurrency must be at least 1");
            (run_closed_loop(workers, args.warmup, extent, request).await, "closed")
        }
        (None, Some(rate)) => {
            let request = move |k: u64| request(k as usize);
            let open = OpenLoop {
                rate,
                warmup: args.warmup,
                extent,
                max_in_flight: args.max_in_flight,
                send_granularity: args.send_granularity.into(),
            };
            (open.run(request).await?, "open")
        }
        (None, None) => anyhow::bail!("give --concurrency or --rate"),
    };
    let mut summary = result.summary(rpc.name(), mode, args.connections);
    summary.concurrency = args.concurrency;
    summary.rate = args.rate;
    let ticks = bench::procfs::cpu_ticks(std::process::id()).unwrap_or(0);
    summary.client_cpu_s = ticks as f64 / bench::procfs::clock_ticks_per_second() as f64;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
