use clap::Parser;

/// mimalloc: fewer instructions per allocation than glibc's malloc, and the
/// request path allocates a lot (HTTP/2 frames, headers, messages).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = movie::Config::parse();
    platform::telemetry::init();
    movie::run(config, platform::shutdown::on_signal()).await
}
