//! The registry on Consul's agent HTTP API, through consulrs.
//!
//! Each instance registers with a TTL check that starts critical, so it is
//! not handed out before its first heartbeat; `DeregisterCriticalServiceAfter`
//! lets Consul reap an instance that died without deregistering. Lookups ask
//! the health endpoint for passing instances only.
use std::{collections::HashMap, time::Duration};

use consulrs::{
    api::{check::common::AgentServiceCheckBuilder, service::requests::RegisterServiceRequest},
    client::{ConsulClient, ConsulClientSettingsBuilder},
    error::ClientError,
};

use super::{DiscoveryError, Instance, InstanceId, Registry, ServiceName, consul_health};

/// The service meta key under which an instance registers its metrics port.
pub const METRICS_PORT_META: &str = "metrics_port";

/// How this process talks to Consul and how its registrations behave.
#[derive(Debug, Clone)]
pub struct ConsulSettings {
    /// Consul's HTTP address, e.g. `http://127.0.0.1:8500` or `consul:8500`.
    pub address: String,
    /// The ACL token sent with every request (`X-Consul-Token`), if any.
    pub token: Option<crate::security::Token>,
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
        let invalid_settings = |source: Box<dyn std::error::Error + Send + Sync>| DiscoveryError::InvalidSettings {
            address: settings.address.clone(),
            source,
        };
        let mut builder = ConsulClientSettingsBuilder::default();
        builder.address(settings.address.clone());
        if let Some(token) = &settings.token {
            builder.token(token.expose());
        }
        let client_settings = builder.build().map_err(|error| invalid_settings(error.into()))?;
        let client = ConsulClient::new(client_settings).map_err(|error| invalid_settings(error.into()))?;
        Ok(Self { client, settings })
    }

    /// The id of the TTL check registered with an instance.
    pub fn check_id(instance: &InstanceId) -> String {
        format!("service:{instance}")
    }

    /// An error answer (which carries Consul's explanation) is a refusal;
    /// anything else means Consul could not be reached.
    fn error(&self, error: ClientError) -> DiscoveryError {
        let address = self.settings.address.clone();
        match &error {
            ClientError::APIError { message, .. } => {
                let message = match message.as_deref().map(str::trim) {
                    Some(message) if !message.is_empty() => message.to_string(),
                    _ => "no explanation given".to_string(),
                };
                DiscoveryError::Rejected { address, message, source: error.into() }
            }
            _ => DiscoveryError::Unreachable { address, source: error.into() },
        }
    }
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
            .map_err(|error| DiscoveryError::InvalidSettings {
                address: self.settings.address.clone(),
                source: error.into(),
            })?;
        let mut request = RegisterServiceRequest::builder();
        request.id(instance.id.as_str()).address(instance.host.clone()).port(u64::from(instance.port)).check(check);
        if let Some(port) = instance.metrics_port {
            // Prometheus finds each instance's metrics through this meta.
            request.meta(HashMap::from([(METRICS_PORT_META.to_string(), port.to_string())]));
        }
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
        let entries =
            consul_health::passing(&self.client, service.as_str()).await.map_err(|error| self.error(error))?.response;
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
                    metrics_port: registered
                        .meta
                        .as_ref()
                        .and_then(|meta| meta.get(METRICS_PORT_META))
                        .and_then(|port| port.parse().ok()),
                    server_name: None,
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
    use std::error::Error;

    use super::*;

    fn registry(address: String) -> ConsulRegistry {
        ConsulRegistry::new(ConsulSettings {
            address,
            token: None,
            check_ttl: Duration::from_secs(10),
            deregister_critical_after: Duration::from_secs(60),
        })
        .unwrap()
    }

    /// An error and its sources, outermost first.
    fn chain(error: &DiscoveryError) -> Vec<&(dyn Error + 'static)> {
        let mut chain: Vec<&(dyn Error + 'static)> = vec![error];
        let mut next = error.source();
        while let Some(source) = next {
            chain.push(source);
            next = source.source();
        }
        chain
    }

    #[tokio::test]
    async fn an_unreachable_agent_keeps_the_client_error_as_the_source() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let error = registry(closed.to_string()).healthy_instances(&ServiceName::new("rating")).await.unwrap_err();
        assert!(matches!(error, DiscoveryError::Unreachable { .. }), "{error:?}");
        assert_eq!(error.to_string(), format!("service registry at http://{closed} is unreachable"));
        assert!(error.source().is_some_and(|source| source.is::<ClientError>()), "{error:?}");
        let chain = chain(&error);
        let messages: Vec<String> = chain.iter().map(ToString::to_string).collect();
        let root = chain.last().and_then(|root| root.downcast_ref::<std::io::Error>());
        assert!(
            root.is_some_and(|root| root.kind() == std::io::ErrorKind::ConnectionRefused),
            "the refused connection is the root cause: {messages:?}"
        );
        assert!(!messages[0].contains(&messages[1]), "the message repeats its source: {messages:?}");
    }

    #[tokio::test]
    async fn a_refusal_keeps_consuls_explanation_and_the_client_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let consul = axum::Router::new().route(
            "/v1/health/service/{service}",
            axum::routing::get(|| async { (axum::http::StatusCode::FORBIDDEN, "Permission denied\n") }),
        );
        tokio::spawn(async move { axum::serve(listener, consul).await });
        let error = registry(address.to_string()).healthy_instances(&ServiceName::new("rating")).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("service registry at http://{address} refused the request: Permission denied")
        );
        let source = error.source().and_then(|source| source.downcast_ref::<ClientError>());
        assert!(matches!(source, Some(ClientError::APIError { code: 403, .. })), "{error:?}");
    }

    #[test]
    fn durations_use_consul_syntax() {
        assert_eq!(consul_duration(Duration::from_secs(10)), "10s");
        assert_eq!(consul_duration(Duration::from_millis(1500)), "1500ms");
    }
}
