use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = rating::Config::parse();
    platform::telemetry::init();
    rating::run(config, platform::shutdown::on_signal()).await
}
