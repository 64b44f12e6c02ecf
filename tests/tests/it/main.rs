//! The end-to-end tests, one module per area, in one test binary: the
//! services, rdkafka and sqlx are linked once rather than once per area.
//! nextest still runs every test in a process of its own
//! (`cargo nextest run -p e2e faults::` runs one area).

mod auth;
mod compose;
mod connections;
mod consul_discovery;
mod demo;
mod dns_discovery;
mod event_contract;
mod faults;
mod healthcheck;
mod hostile_input;
mod kafka_ingestion;
mod kubernetes;
mod logs;
mod metadata_repository;
mod metadata_storage;
mod metrics;
mod observability_config;
mod overload;
mod rating_repository;
mod rating_scale_out;
mod rating_storage;
mod ratingingester;
mod saturation;
mod secrets;
mod services;
mod static_discovery;
mod tls;
mod traces;
mod walkthrough;
