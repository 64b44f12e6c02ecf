//! The registry on Consul's agent HTTP API, through consulrs.
//!
//! Each instance registers with a TTL check that starts critical, so it is
//! not handed out before its first heartbeat; `DeregisterCriticalServiceAfter`
//! lets Consul reap an instance that died without deregistering. Lookups ask
//! the health endpoint for passing instances only.
use std::time::Duration;

use consulrs::{
    api::{check::common::AgentServiceCheckBuilder, service::requests::RegisterServiceRequest},
    client::{ConsulClient, ConsulClientSettingsBuilder},
    error::ClientError,
};

use super::{DiscoveryError, Instance, InstanceId, Registry, ServiceName, consul_health};

/// How this process talks to Consul and how its registrations behave.
#[derive(Debug, Clone)]
pub struct ConsulSettings {
    /// Consul's HTTP address, e.g. `http://127.0.0.1:8500` or `consul:8500`.
    pub address: String,
    /// The TTL of each instance's check; heartbeats go out well inside it.
    pub check_ttl: Duration,
    /// How long an instance may stay critical before Consul removes it.
    pub deregister_critical_after: Duration,
}

pub struct ConsulRegistry {
    client: ConsulClient,
    settings: ConsulSettings,
}

impl ConsulRegistry {
    pub fn new(mut settings: ConsulSettings) -> Result<Self, DiscoveryError> {
        if !settings.address.contains("://") {
            // Consul's own tools accept CONSUL_HTTP_ADDR without a scheme.
            settings.address = format!("http://{}", settings.address);
        }
        let client_settings = ConsulClientSettingsBuilder::default()
            .address(settings.address.clone())
            .build()
            .map_err(|error| DiscoveryError::Rejected(format!("invalid Consul settings: {error}")))?;
        let client = ConsulClient::new(client_settings).map_err(|error| self::unreachable(&settings.address, error))?;
        Ok(Self { client, settings })
    }

    /// The id of the TTL check registered with an instance.
    pub fn check_id(instance: &InstanceId) -> String {
        format!("service:{instance}")
    }

    fn error(&self, error: ClientError) -> DiscoveryError {
        match error {
            ClientError::APIError { code, message } => {
                DiscoveryError::Rejected(format!("HTTP {code}: {}", message.unwrap_or_default().trim()))
            }
            other => unreachable(&self.settings.address, other),
        }
    }
}

fn unreachable(address: &str, error: ClientError) -> DiscoveryError {
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    DiscoveryError::Unreachable { address: address.to_string(), reason }
}

/// Consul's duration syntax, e.g. `10s`, `1500ms`.
fn consul_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

#[async_trait::async_trait]
impl Registry for ConsulRegistry {
    async fn register(&self, instance: &Instance) -> Result<(), DiscoveryError> {
        let check = AgentServiceCheckBuilder::default()
            .check_id(Self::check_id(&instance.id))
            .name(format!("{} TTL", instance.service))
            .ttl(consul_duration(self.settings.check_ttl))
            .deregister_critical_service_after(consul_duration(self.settings.deregister_critical_after))
            .build()
            .map_err(|error| DiscoveryError::Rejected(error.to_string()))?;
        let mut request = RegisterServiceRequest::builder();
        request.id(instance.id.as_str()).address(instance.host.clone()).port(u64::from(instance.port)).check(check);
        consulrs::service::register(&self.client, instance.service.as_str(), Some(&mut request))
            .await
            .map_err(|error| self.error(error))?;
        Ok(())
    }

    async fn deregister(&self, instance: &Instance) -> Result<(), DiscoveryError> {
        match consulrs::service::deregister(&self.client, instance.id.as_str(), None).await {
            Ok(_) => Ok(()),
            // Already gone (reaped, or the agent restarted): the goal is reached.
            Err(ClientError::APIError { code: 404, .. }) => Ok(()),
            Err(error) => Err(self.error(error)),
        }
    }

    async fn report_healthy(&self, instance: &Instance) -> Result<(), DiscoveryError> {
        match consulrs::check::pass(&self.client, &Self::check_id(&instance.id), None).await {
            Ok(_) => Ok(()),
            // Consul answers 404 (older versions 500) for a check it does not
            // know: the registration was lost and must be made again.
            Err(ClientError::APIError { code: 404 | 500, message })
                if message.as_deref().is_some_and(|text| text.contains("check") || text.contains("Check")) =>
            {
                Err(DiscoveryError::UnknownInstance(instance.id.clone()))
            }
            Err(error) => Err(self.error(error)),
        }
    }

    async fn healthy_instances(&self, service: &ServiceName) -> Result<Vec<Instance>, DiscoveryError> {
        let mut request = consul_health::ListServiceInstancesRequest::builder();
        request.passing(true);
        let entries = consul_health::service(&self.client, service.as_str(), Some(&mut request))
            .await
            .map_err(|error| self.error(error))?
            .response;
        Ok(entries
            .into_iter()
            .filter_map(|entry| {
                let registered = entry.service;
                // An empty service address means "the node's address" in Consul.
                let host = registered.address.filter(|address| !address.is_empty()).or(entry.node.address)?;
                Some(Instance {
                    id: InstanceId::new(registered.id?),
                    service: service.clone(),
                    host,
                    port: u16::try_from(registered.port?).ok()?,
                })
            })
            .collect())
    }

    fn describe(&self) -> String {
        format!("consul at {}", self.settings.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_consul_syntax() {
        assert_eq!(consul_duration(Duration::from_secs(10)), "10s");
        assert_eq!(consul_duration(Duration::from_millis(1500)), "1500ms");
    }
}
