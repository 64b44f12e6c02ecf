use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = rating::Config::parse();
    platform::telemetry::init();
    rating::run(config, platform::shutdown::on_signal()).await
}
