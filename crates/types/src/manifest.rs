//! What a tenant deploys, as the provider runs it: services with images, commands, environment, exposed ports
//! and volumes, grouped as the chain's orders are. The chain keeps only a hash of it (`manifest_hash`); the
//! tenant sends the manifest itself to the provider, who recomputes the hash and refuses a mismatch.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::crypto::Hash;
use crate::market::GroupSpec;
use crate::resources::ResourceUnits;

#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// HTTP ingress settings for a globally exposed port (Akash's `http_options`, same defaults).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct HttpOptions {
    pub max_body_size: u64,
    pub read_timeout_ms: u64,
    pub send_timeout_ms: u64,
    pub next_tries: u32,
    pub next_timeout_ms: u64,
    pub next_cases: Vec<String>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            max_body_size: 1_048_576,
            read_timeout_ms: 60_000,
            send_timeout_ms: 60_000,
            next_tries: 3,
            next_timeout_ms: 0,
            next_cases: vec!["error".into(), "timeout".into()],
        }
    }
}

/// A port a service listens on and who may reach it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Expose {
    pub port: u16,
    /// The port it is published as; equal to `port` unless the manifest says `as`.
    pub external_port: u16,
    pub proto: Protocol,
    /// Reachable from the internet.
    pub global: bool,
    /// Other services of the deployment that may reach it.
    pub services: Vec<String>,
    /// Host names to route to it (Akash's `accept`).
    pub hosts: Vec<String>,
    pub http: HttpOptions,
}

/// A storage volume of the service's profile mounted into its containers.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Mount {
    pub volume: String,
    pub path: String,
    pub read_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    pub image: String,
    /// Replaces the image's entrypoint when not empty.
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// `NAME=value` entries, in the manifest's order.
    pub env: Vec<String>,
    pub resources: ResourceUnits,
    pub count: u32,
    pub expose: Vec<Expose>,
    pub mounts: Vec<Mount>,
}

/// The services that run under one order.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ManifestGroup {
    pub name: String,
    pub services: Vec<ServiceSpec>,
}

/// A deployment as the chain prices it (`groups`) and as providers run it (`manifest`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappedDeployment {
    pub groups: Vec<GroupSpec>,
    pub manifest: Vec<ManifestGroup>,
}

impl MappedDeployment {
    /// blake3 of the canonical JSON of the mapped deployment: serde's JSON of these types, whose fields have a
    /// fixed order and which hold no maps, so the same deployment always gives the same bytes.
    pub fn manifest_hash(&self) -> Hash {
        Hash::of(&serde_json::to_vec(self).unwrap_or_default())
    }
}
