//! `gen-events`: writes a deterministic NDJSON file of rating events for
//! ratingingester, ending with the probe block that tells when a rating
//! instance has applied all of it (see `bench::events`).
use std::{fs::File, io, path::PathBuf};

use bench::events::{EventSpec, PROBE_AVERAGE, PROBE_RECORD, PROBE_USERS, write_events};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Writes N rating events (puts and deletes) as NDJSON, then a probe block of 64 puts.")]
struct Args {
    /// Events before the probe block
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Movie ids are 0..MOVIES
    #[arg(long, default_value_t = 10_000)]
    movies: u32,
    /// User ids are 0..USERS
    #[arg(long, default_value_t = 100_000)]
    users: u32,
    /// Share of events that delete a rating put earlier
    #[arg(long, default_value_t = 0.1)]
    delete_share: f64,
    /// Seed of the generator: the same seed gives the same file
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output file; `-` for stdout
    #[arg(long, short, default_value = "-")]
    output: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        (0.0..1.0).contains(&args.delete_share),
        "--delete-share must be in [0, 1), got {}",
        args.delete_share
    );
    let spec = EventSpec {
        events: args.events,
        movies: args.movies,
        users: args.users,
        delete_share: args.delete_share,
        seed: args.seed,
    };
    let lines = if args.output.as_os_str() == "-" {
        write_events(spec, io::stdout().lock())?
    } else {
        write_events(spec, File::create(&args.output)?)?
    };
    eprintln!(
        "wrote {lines} events ({} + {PROBE_USERS} probe events; {PROBE_RECORD} averages {PROBE_AVERAGE} once all are applied)",
        args.events
    );
    Ok(())
}
