use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = metadata::Config::parse();
    platform::telemetry::init();
    metadata::run(config, platform::shutdown::on_signal()).await
}
