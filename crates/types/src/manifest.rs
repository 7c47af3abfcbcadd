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

/// A manifest group that asks for more than its order pays for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "service `{service}` runs {count} instance(s) of its resources, but the priced group has room for {available} \
     of that profile"
)]
pub struct ExceedsGroup {
    pub service: String,
    pub count: u32,
    pub available: u32,
}

impl ManifestGroup {
    /// Whether the services fit what the order prices, with Akash's meaning of `count`: a service runs
    /// `count` instances (at least one) of its resource profile, and the group pays, per profile, for a number
    /// of units. A service may use fewer units than priced, never more, and never a profile the group does
    /// not price.
    pub fn fits(&self, group: &GroupSpec) -> Result<(), ExceedsGroup> {
        let mut room: Vec<(&ResourceUnits, u32)> =
            group.resources.iter().map(|u| (&u.resources, u.count)).collect();
        for service in &self.services {
            let count = service.count.max(1);
            let mut needed = count;
            for (_, left) in room.iter_mut().filter(|(units, _)| **units == service.resources) {
                let take = needed.min(*left);
                *left -= take;
                needed -= take;
            }
            if needed > 0 {
                return Err(ExceedsGroup { service: service.name.clone(), count, available: count - needed });
            }
        }
        Ok(())
    }
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

#[cfg(test)]
mod fit_tests {
    use super::*;
    use crate::amount::Amount;
    use crate::resources::ResourceUnit;

    fn units(cpu_millis: u64) -> ResourceUnits {
        ResourceUnits { cpu_millis, memory_bytes: 256 << 20, ..ResourceUnits::default() }
    }

    fn service(name: &str, cpu_millis: u64, count: u32) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            image: "busybox".into(),
            command: vec![],
            args: vec![],
            env: vec![],
            resources: units(cpu_millis),
            count,
            expose: vec![],
            mounts: vec![],
        }
    }

    fn group(units_and_counts: &[(u64, u32)]) -> GroupSpec {
        GroupSpec {
            name: "g".into(),
            requirements: Default::default(),
            resources: units_and_counts
                .iter()
                .map(|&(cpu, count)| ResourceUnit { resources: units(cpu), count })
                .collect(),
            max_price: Amount(1),
        }
    }

    #[test]
    fn services_fit_the_units_their_group_pays_for_and_no_more() {
        let priced = group(&[(500, 2), (1_000, 1)]);
        let fits = ManifestGroup {
            name: "g".into(),
            services: vec![service("web", 500, 2), service("db", 1_000, 1)],
        };
        assert_eq!(fits.fits(&priced), Ok(()));
        let fewer = ManifestGroup { name: "g".into(), services: vec![service("web", 500, 1)] };
        assert_eq!(fewer.fits(&priced), Ok(()));
        // The attack: a tenant prices one small unit and runs a thousand of them.
        let greedy = ManifestGroup { name: "g".into(), services: vec![service("web", 500, 1_000)] };
        assert_eq!(
            greedy.fits(&priced),
            Err(ExceedsGroup { service: "web".into(), count: 1_000, available: 2 })
        );
        // Two services drawing on the same profile share its units.
        let shared =
            ManifestGroup { name: "g".into(), services: vec![service("a", 500, 2), service("b", 500, 1)] };
        assert!(shared.fits(&priced).is_err());
        // A profile the group does not price at all, and a count of 0 (which still runs one instance).
        let bigger = ManifestGroup { name: "g".into(), services: vec![service("web", 4_000, 1)] };
        assert_eq!(bigger.fits(&priced).unwrap_err().available, 0);
        let zero = ManifestGroup { name: "g".into(), services: vec![service("web", 500, 0)] };
        assert_eq!(zero.fits(&priced), Ok(()));
    }
}
