//! `constant-server`: a tonic server whose `GetMetadata` answers the same
//! `Metadata` at once, whatever the id. With no storage, no validation and no
//! downstream call, it is the floor of one RPC through tonic on this machine,
//! the yardstick the services are compared with. tonic binds the listener
//! itself here, so its `tcp_nodelay` applies to every accepted connection
//! (it does not to a listener passed in as a stream of connections). No
//! reflection or health, which cost nothing per request.
use std::net::SocketAddr;

use clap::Parser;
use contract::api::{
    GetMetadataRequest, GetMetadataResponse, Metadata, PutMetadataRequest, PutMetadataResponse,
    metadata_service_server::{MetadataService, MetadataServiceServer},
};
use tonic::{Request, Response, Status};

/// The services' allocator, so the yardstick pays what they pay per allocation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "Answers MetadataService/GetMetadata with a constant Metadata: the floor of one RPC.")]
struct Args {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8091")]
    listen: SocketAddr,
}

struct ConstantMetadata {
    metadata: Metadata,
}

#[tonic::async_trait]
impl MetadataService for ConstantMetadata {
    async fn get_metadata(&self, _: Request<GetMetadataRequest>) -> Result<Response<GetMetadataResponse>, Status> {
        Ok(Response::new(GetMetadataResponse { metadata: Some(self.metadata.clone()) }))
    }

    async fn put_metadata(&self, _: Request<PutMetadataRequest>) -> Result<Response<PutMetadataResponse>, Status> {
        Err(Status::unimplemented("the constant server stores nothing"))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The size of what the metadata service answers for a seeded movie.
    let metadata = Metadata {
        id: "1".to_owned(),
        title: "Movie 1".to_owned(),
        description: "The benchmark's movie number 1, with a description of ordinary length.".to_owned(),
        director: "A. Director".to_owned(),
    };
    eprintln!("constant-server listening on {}", args.listen);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(MetadataServiceServer::new(ConstantMetadata { metadata }))
        .serve_with_shutdown(args.listen, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
