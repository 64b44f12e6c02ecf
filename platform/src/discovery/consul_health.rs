//! Consul's health endpoint for a service, `GET /v1/health/service/:service`,
//! which consulrs 0.1 lacks, written as consulrs writes its own endpoints
//! (a rustify `Endpoint` request with a builder, a response type, and an API
//! function taking the consulrs client) so it runs through the same client,
//! middleware (API version prefix, ACL token) and error types.
//!
//! Reference: <https://developer.hashicorp.com/consul/api-docs/health#list-service-instances-for-service>
use consulrs::{
    api::{
        self, ApiResponse,
        features::{FeaturedEndpoint, Features},
        service::common::AgentService,
    },
    client::Client,
    error::ClientError,
};
use rustify_derive::Endpoint;
use serde::Deserialize;

/// ## List Service Instances for Service, passing only
/// Returns the nodes providing a service in the datacenter whose checks all
/// pass.
///
/// * Path: health/service/{self.service}?passing=true
/// * Method: GET
/// * Response: [`Vec<ServiceEntry>`]
#[derive(Debug, Default, Endpoint)]
#[endpoint(path = "health/service/{self.service}", response = "Vec<ServiceEntry>")]
struct ListServiceInstancesRequest {
    #[endpoint(skip)]
    features: Option<Features>,
    #[endpoint(skip)]
    service: String,
    #[endpoint(query)]
    passing: Option<bool>,
}

impl FeaturedEndpoint for ListServiceInstancesRequest {
    fn features(&self) -> Option<Features> {
        self.features.clone()
    }
}

/// One instance of a service: the node it runs on and its registration
/// (Consul sends their checks too, which `passing` has already judged).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ServiceEntry {
    pub node: ServiceEntryNode,
    pub service: AgentService,
}

/// The node part of a [`ServiceEntry`]: its address, where an instance
/// registered without an address of its own is reached.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ServiceEntryNode {
    #[serde(default)]
    pub address: Option<String>,
}

/// Lists the instances of a service whose checks all pass.
///
/// Its span is a debug log span: a lookup is background work, not part of a
/// call (the upstream pool refreshes its instances on its own), and is not
/// exported as a trace.
#[tracing::instrument(level = "debug", skip(client), err)]
pub(super) async fn passing(
    client: &impl Client,
    service: &str,
) -> Result<ApiResponse<Vec<ServiceEntry>>, ClientError> {
    let endpoint = ListServiceInstancesRequest { service: service.to_owned(), passing: Some(true), features: None };
    api::exec_with_result(client, endpoint).await
}
