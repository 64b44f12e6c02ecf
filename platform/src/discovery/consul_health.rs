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
        check::common::HealthCheck,
        features::{FeaturedEndpoint, Features},
        service::common::AgentService,
    },
    client::Client,
    error::ClientError,
};
use derive_builder::Builder;
use rustify_derive::Endpoint;
use serde::{Deserialize, Serialize};

/// ## List Service Instances for Service
/// Returns the nodes providing a service in the datacenter, with their checks.
///
/// * Path: health/service/{self.service}
/// * Method: GET
/// * Response: [`Vec<ServiceEntry>`]
#[derive(Builder, Debug, Default, Endpoint)]
#[endpoint(path = "health/service/{self.service}", response = "Vec<ServiceEntry>", builder = "true")]
#[builder(setter(into, strip_option), default)]
pub struct ListServiceInstancesRequest {
    #[endpoint(skip)]
    pub features: Option<Features>,
    #[endpoint(skip)]
    pub service: String,
    /// Only instances whose checks are all passing.
    #[endpoint(query)]
    pub passing: Option<bool>,
    #[endpoint(query)]
    pub dc: Option<String>,
    #[endpoint(query)]
    pub tag: Option<String>,
    #[endpoint(query)]
    pub near: Option<String>,
    #[endpoint(query)]
    pub ns: Option<String>,
}

impl FeaturedEndpoint for ListServiceInstancesRequest {
    fn features(&self) -> Option<Features> {
        self.features.clone()
    }
}

/// One instance of a service: the node it runs on, its registration, and the
/// node's and the service's checks.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceEntry {
    pub node: ServiceEntryNode,
    pub service: AgentService,
    #[serde(default)]
    pub checks: Vec<HealthCheck>,
}

/// The node part of a [`ServiceEntry`].
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceEntryNode {
    #[serde(rename = "ID", default)]
    pub id: Option<String>,
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub datacenter: Option<String>,
}

/// Lists the instances of a service with their health.
///
/// See [`ListServiceInstancesRequest`]. Its span is a debug log span: a
/// lookup is background work, not part of a call (the upstream pool refreshes
/// its instances on its own), and is not exported as a trace.
#[tracing::instrument(level = "debug", skip(client, opts), err)]
pub async fn service(
    client: &impl Client,
    service: &str,
    opts: Option<&mut ListServiceInstancesRequestBuilder>,
) -> Result<ApiResponse<Vec<ServiceEntry>>, ClientError> {
    let mut default = ListServiceInstancesRequest::builder();
    let endpoint = opts
        .unwrap_or(&mut default)
        .service(service)
        .build()
        .map_err(|error| ClientError::APIError { code: 0, message: Some(error.to_string()) })?;
    api::exec_with_result(client, endpoint).await
}
