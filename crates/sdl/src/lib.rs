//! Akash SDL v2.0 manifests, accepted unchanged and mapped onto tensorgrid deployments.
//!
//! [`parse`] reads a manifest and returns the [`MappedDeployment`] (the groups the chain prices and the
//! services providers run) with warnings for what is not supported yet, or an [`SdlError`] that names the file,
//! the line, the field and why. Policy: unknown fields, IP endpoints and `signedBy` auditors that are not
//! tensorgrid addresses are warnings and the rest maps; only malformed or contradictory files are rejected.
//!
//! Mapping: each placement is one group (one order); each `deployment.<service>.<placement>` entry adds that
//! service's compute profile, `count` times, to the group. A group's `max_price` is the sum over its entries of
//! the placement's price for the profile times the count. Akash prices are per block in `uakt`/`uact`; they
//! become utgr per hour as `⌊amount × (3 600 000 ms / block time) × rate⌋`, with Akash's average block time
//! (6.1 s) and a rate of 1 utgr per uakt or uact by default, both set in [`SdlOptions`].

mod quantity;

use std::collections::BTreeMap;
use std::fmt;

use marked_yaml::{LoaderOptions, Node};
use serde::Serialize;
use tensorgrid_types::manifest::{
    Expose, HttpOptions, ManifestGroup, MappedDeployment, Mount, Protocol, ServiceSpec,
};
use tensorgrid_types::market::GroupSpec;
use tensorgrid_types::resources::{
    Attribute, Gpu, GpuModel, PlacementRequirements, ResourceUnit, ResourceUnits, SignedBy, Storage,
};
use tensorgrid_types::{Address, Amount, Hash};

pub use quantity::{cpu_millis, memory_bytes, storage_bytes, Decimal};

/// A conversion rate: `num / den` utgr per unit of the source denomination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Rate {
    pub num: u128,
    pub den: u128,
}

/// How Akash prices become tensorgrid prices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SdlOptions {
    /// Akash's average block time, which turns a price per block into a price per hour.
    pub block_time_ms: u64,
    pub utgr_per_uakt: Rate,
    pub utgr_per_uact: Rate,
}

impl Default for SdlOptions {
    fn default() -> Self {
        SdlOptions {
            block_time_ms: 6_100,
            utgr_per_uakt: Rate { num: 1, den: 1 },
            utgr_per_uact: Rate { num: 1, den: 1 },
        }
    }
}

/// A place in a manifest and what was found there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based; 0 when the position is unknown.
    pub line: usize,
    pub column: usize,
    /// Dotted path of the field, e.g. `profiles.compute.web.resources.memory.size`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a manifest could not be mapped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SdlError {
    /// Not valid YAML (or uses YAML features Akash manifests do not need: anchors, tags).
    #[error("{0}")]
    Yaml(Diagnostic),
    /// Valid YAML, but not a valid or consistent SDL.
    #[error("{0}")]
    Invalid(Diagnostic),
}

impl SdlError {
    pub fn diagnostic(&self) -> &Diagnostic {
        match self {
            SdlError::Yaml(d) | SdlError::Invalid(d) => d,
        }
    }
}

/// A manifest that mapped, with what the mapping left out or interpreted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mapped {
    pub deployment: MappedDeployment,
    pub manifest_hash: Hash,
    pub warnings: Vec<Diagnostic>,
}

impl Mapped {
    /// A human summary: groups with their price and services, then the warnings.
    pub fn to_text(&self, file: &str) -> String {
        fn bytes(b: u64) -> String {
            const UNITS: [(&str, u64); 4] =
                [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
            for (name, size) in UNITS {
                if b >= size && b % (size / 1024) == 0 {
                    let whole = b / size;
                    let tenths = (b % size) * 10 / size;
                    return if tenths == 0 {
                        format!("{whole} {name}")
                    } else {
                        format!("{whole}.{tenths} {name}")
                    };
                }
            }
            format!("{b} B")
        }
        let groups = self.deployment.groups.len();
        let mut out = format!(
            "{file} maps to {groups} group{} (manifest hash {})\n",
            if groups == 1 { "" } else { "s" },
            self.manifest_hash
        );
        for (group, manifest) in self.deployment.groups.iter().zip(&self.deployment.manifest) {
            out.push_str(&format!(
                "  group {}: at most {} per hour",
                group.name,
                group.max_price.to_tgr_string()
            ));
            if !group.requirements.attributes.is_empty() {
                let attrs: Vec<String> =
                    group.requirements.attributes.iter().map(|a| format!("{}={}", a.key, a.value)).collect();
                out.push_str(&format!(", on providers with {}", attrs.join(", ")));
            }
            out.push('\n');
            for service in &manifest.services {
                let r = &service.resources;
                let cpu = if r.cpu_millis % 1000 == 0 {
                    format!("{}", r.cpu_millis / 1000)
                } else {
                    format!("{}.{:03}", r.cpu_millis / 1000, r.cpu_millis % 1000)
                        .trim_end_matches('0')
                        .to_string()
                };
                let mut parts = vec![format!("{cpu} CPU"), format!("{} memory", bytes(r.memory_bytes))];
                for s in &r.storage {
                    let kind = if s.persistent { " persistent" } else { "" };
                    parts.push(format!("{} {}{kind} storage", bytes(s.bytes), s.name));
                }
                if r.gpu.units > 0 {
                    let models: Vec<String> = r
                        .gpu
                        .models
                        .iter()
                        .map(|m| match &m.model {
                            Some(model) => format!("{} {model}", m.vendor),
                            None => m.vendor.clone(),
                        })
                        .collect();
                    parts.push(format!("{} GPU ({})", r.gpu.units, models.join(" or ")));
                }
                out.push_str(&format!(
                    "    {} × {}: {} — {}\n",
                    service.name,
                    service.count,
                    service.image,
                    parts.join(", ")
                ));
                for e in &service.expose {
                    let reach = if e.global { "the internet".to_string() } else { e.services.join(", ") };
                    out.push_str(&format!(
                        "      port {} → {} ({:?}) for {reach}\n",
                        e.port, e.external_port, e.proto
                    ));
                }
            }
        }
        if !self.warnings.is_empty() {
            out.push_str(&format!(
                "{} warning{}:\n",
                self.warnings.len(),
                if self.warnings.len() == 1 { "" } else { "s" }
            ));
            for w in &self.warnings {
                out.push_str(&format!("  {w}\n"));
            }
        }
        out
    }
}

/// Reads an SDL manifest. `file` is only used in diagnostics.
pub fn parse(file: &str, text: &str, options: &SdlOptions) -> Result<Mapped, SdlError> {
    let root =
        marked_yaml::parse_yaml_with_options(0, text, LoaderOptions::default().error_on_duplicate_keys(true))
            .map_err(|e| {
                let text = e.to_string();
                // The loader reports `line:column: message`; lift the position into the diagnostic.
                let (line, column, message) = split_position(&text);
                SdlError::Yaml(Diagnostic { file: file.into(), line, column, field: String::new(), message })
            })?;
    let mut cx = Cx { file, warnings: Vec::new(), options };
    let deployment = cx.document(&root)?;
    let manifest_hash = deployment.manifest_hash();
    Ok(Mapped { deployment, manifest_hash, warnings: cx.warnings })
}

fn split_position(text: &str) -> (usize, usize, String) {
    let mut parts = text.splitn(3, ':');
    match (parts.next().map(str::parse), parts.next().map(str::parse), parts.next()) {
        (Some(Ok(line)), Some(Ok(column)), Some(rest)) => (line, column, rest.trim().to_string()),
        _ => (0, 0, text.to_string()),
    }
}

fn position(node: &Node) -> (usize, usize) {
    node.span().start().map(|m| (m.line(), m.column())).unwrap_or((0, 0))
}

fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}.{child}")
    }
}

/// The closest of `known` to `key`, if it is close enough to be a typo.
fn suggestion<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    known.iter().copied().filter(|k| distance(key, k) <= 2).min_by_key(|k| distance(key, k))
}

/// A compute profile as read.
struct Profile {
    resources: ResourceUnits,
}

/// A placement as read: requirements and price per profile (utgr per hour, per instance).
struct Placement<'n> {
    node: &'n Node,
    requirements: PlacementRequirements,
    pricing: BTreeMap<String, (Amount, &'n Node)>,
}

/// A service as read, before it is placed.
struct Service {
    image: String,
    command: Vec<String>,
    args: Vec<String>,
    env: Vec<String>,
    expose: Vec<Expose>,
    mounts: Vec<(Mount, (usize, usize), String)>,
}

struct Cx<'a> {
    file: &'a str,
    warnings: Vec<Diagnostic>,
    options: &'a SdlOptions,
}

type Map = marked_yaml::types::MarkedMappingNode;

impl Cx<'_> {
    fn diag(&self, node: &Node, field: &str, message: impl Into<String>) -> Diagnostic {
        let (line, column) = position(node);
        Diagnostic { file: self.file.into(), line, column, field: field.into(), message: message.into() }
    }

    fn error(&self, node: &Node, field: &str, message: impl Into<String>) -> SdlError {
        SdlError::Invalid(self.diag(node, field, message))
    }

    fn warn(&mut self, node: &Node, field: &str, message: impl Into<String>) {
        let d = self.diag(node, field, message);
        self.warnings.push(d);
    }

    fn warn_at(&mut self, at: (usize, usize), field: &str, message: impl Into<String>) {
        let (line, column) = at;
        self.warnings.push(Diagnostic {
            file: self.file.into(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        });
    }

    // --- shapes

    fn map<'n>(&self, node: &'n Node, field: &str) -> Result<&'n Map, SdlError> {
        node.as_mapping().ok_or_else(|| self.error(node, field, "must be a mapping of names to values"))
    }

    /// A mapping, or nothing for an empty value (`key:` with no value).
    fn map_or_empty<'n>(&self, node: &'n Node, field: &str) -> Result<Option<&'n Map>, SdlError> {
        if is_empty(node) {
            return Ok(None);
        }
        self.map(node, field).map(Some)
    }

    fn scalar<'n>(&self, node: &'n Node, field: &str) -> Result<&'n str, SdlError> {
        node.as_scalar().map(|s| s.as_str()).ok_or_else(|| self.error(node, field, "must be a single value"))
    }

    fn required<'n>(
        &self,
        map: &'n Map,
        parent: &Node,
        field: &str,
        key: &str,
    ) -> Result<&'n Node, SdlError> {
        map.get_node(key).ok_or_else(|| self.error(parent, &join(field, key), "is required but missing"))
    }

    fn strings(&self, node: &Node, field: &str) -> Result<Vec<String>, SdlError> {
        if is_empty(node) {
            return Ok(Vec::new());
        }
        let seq = node.as_sequence().ok_or_else(|| self.error(node, field, "must be a list of strings"))?;
        seq.iter()
            .enumerate()
            .map(|(i, n)| self.scalar(n, &format!("{field}[{i}]")).map(str::to_string))
            .collect()
    }

    fn boolean(&self, node: &Node, field: &str) -> Result<bool, SdlError> {
        match self.scalar(node, field)? {
            "true" | "True" | "TRUE" => Ok(true),
            "false" | "False" | "FALSE" => Ok(false),
            other => Err(self.error(node, field, format!("`{other}` is not true or false"))),
        }
    }

    fn integer<T: TryFrom<u128>>(
        &self,
        node: &Node,
        field: &str,
        min: u128,
        max: u128,
    ) -> Result<T, SdlError> {
        let text = self.scalar(node, field)?;
        if text.trim().is_empty() {
            return Err(self.error(
                node,
                field,
                format!("is empty; write a whole number between {min} and {max}"),
            ));
        }
        let value = text.parse::<u128>().ok().filter(|v| (min..=max).contains(v)).ok_or_else(|| {
            self.error(node, field, format!("`{text}` is not a whole number between {min} and {max}"))
        })?;
        T::try_from(value).map_err(|_| self.error(node, field, format!("`{text}` is out of range")))
    }

    /// Warns about keys of `map` that are not in `known`, naming the closest known key when it looks like a
    /// typo.
    fn unknown_keys(&mut self, map: &Map, field: &str, known: &[&str]) {
        for (key, value) in map.iter() {
            let name = key.as_str();
            if known.contains(&name) {
                continue;
            }
            let hint = match (suggestion(name, known), compose_field(name)) {
                (_, Some(advice)) => format!("is a docker-compose field, not Akash SDL; ignored ({advice})"),
                (Some(k), None) => format!("unknown field, ignored (did you mean `{k}`?)"),
                (None, None) => format!("unknown field, ignored (known here: {})", known.join(", ")),
            };
            let at = key.span().start().map(|m| (m.line(), m.column())).unwrap_or_else(|| position(value));
            self.warn_at(at, &join(field, name), hint);
        }
    }

    // --- the document

    fn document(&mut self, root: &Node) -> Result<MappedDeployment, SdlError> {
        let top = self.map(root, "")?;
        self.unknown_keys(top, "", &["version", "services", "profiles", "deployment", "endpoints"]);
        let version = self.required(top, root, "", "version")?;
        match self.scalar(version, "version")? {
            "2.0" | "2.1" => {}
            "2" => self.warn(version, "version", "`2` read as `2.0`"),
            other => {
                return Err(self.error(
                    version,
                    "version",
                    format!("`{other}` is not supported; use \"2.0\" or \"2.1\""),
                ));
            }
        }
        if let Some(endpoints) = top.get_node("endpoints") {
            if let Some(map) = self.map_or_empty(endpoints, "endpoints")? {
                for (name, value) in map.iter() {
                    let field = join("endpoints", name.as_str());
                    self.warn(value, &field, "IP endpoints are not supported yet; services exposed to it are published on the provider's shared address");
                }
            }
        }

        let services_node = self.required(top, root, "", "services")?;
        let services_map = self.map(services_node, "services")?;
        let mut services = BTreeMap::new();
        for (name, node) in services_map.iter() {
            let field = join("services", name.as_str());
            self.check_name(node, &field, name.as_str())?;
            if matches!(name.as_str(), "profiles" | "deployment" | "endpoints" | "version")
                && node.as_mapping().is_some_and(|m| m.get_node("image").is_none())
            {
                return Err(self.error(node, &field, format!("is read as a service because it is indented under `services`; move `{}:` back to the start of the line", name.as_str())));
            }
            services.insert(name.as_str().to_string(), (self.service(node, &field)?, node));
        }
        if services.is_empty() {
            return Err(self.error(
                services_node,
                "services",
                "is empty; a deployment needs at least one service",
            ));
        }

        let profiles_node = self.required(top, root, "", "profiles")?;
        let profiles_map = self.map(profiles_node, "profiles")?;
        self.unknown_keys(profiles_map, "profiles", &["compute", "placement"]);
        let compute_node = self.required(profiles_map, profiles_node, "profiles", "compute")?;
        let mut compute = BTreeMap::new();
        for (name, node) in self.map(compute_node, "profiles.compute")?.iter() {
            let field = join("profiles.compute", name.as_str());
            compute.insert(name.as_str().to_string(), (self.profile(node, &field)?, node));
        }
        let placement_node = self.required(profiles_map, profiles_node, "profiles", "placement")?;
        let mut placements = BTreeMap::new();
        for (name, node) in self.map(placement_node, "profiles.placement")?.iter() {
            let field = join("profiles.placement", name.as_str());
            self.check_name(node, &field, name.as_str())?;
            placements.insert(name.as_str().to_string(), self.placement(node, &field)?);
        }

        let deployment_node = self.required(top, root, "", "deployment")?;
        // placement → [(service, profile, count, node)]
        let mut groups: BTreeMap<String, Vec<(String, String, u32, &Node)>> = BTreeMap::new();
        for (service, by_placement) in self.map(deployment_node, "deployment")?.iter() {
            let field = join("deployment", service.as_str());
            if !services.contains_key(service.as_str()) {
                let known: Vec<&str> = services.keys().map(String::as_str).collect();
                return Err(self.error(
                    by_placement,
                    &field,
                    format!(
                        "deploys service `{}`, which `services` does not define (defined: {})",
                        service.as_str(),
                        known.join(", ")
                    ),
                ));
            }
            for (placement, entry) in self.map(by_placement, &field)?.iter() {
                let field = join(&field, placement.as_str());
                let Some(place) = placements.get(placement.as_str()) else {
                    let known: Vec<&str> = placements.keys().map(String::as_str).collect();
                    return Err(self.error(
                        entry,
                        &field,
                        format!(
                            "placement `{}` is not defined under profiles.placement (defined: {})",
                            placement.as_str(),
                            known.join(", ")
                        ),
                    ));
                };
                let entry_map = self.map(entry, &field)?;
                self.unknown_keys(entry_map, &field, &["profile", "count"]);
                let profile_node = self.required(entry_map, entry, &field, "profile")?;
                let profile = self.scalar(profile_node, &join(&field, "profile"))?.to_string();
                if !compute.contains_key(&profile) {
                    return Err(self.error(
                        profile_node,
                        &join(&field, "profile"),
                        format!("compute profile `{profile}` is not defined under profiles.compute"),
                    ));
                }
                if !place.pricing.contains_key(&profile) {
                    return Err(self.error(
                        place.node,
                        &format!("profiles.placement.{}.pricing", placement.as_str()),
                        format!(
                            "has no price for profile `{profile}`, which deployment.{}.{} uses",
                            service.as_str(),
                            placement.as_str()
                        ),
                    ));
                }
                let count = match entry_map.get_node("count") {
                    Some(n) => self.integer(
                        n,
                        &join(&field, "count"),
                        1,
                        u128::from(tensorgrid_types::limits::MAX_UNIT_COUNT),
                    )?,
                    None => 1,
                };
                groups.entry(placement.as_str().to_string()).or_default().push((
                    service.as_str().to_string(),
                    profile,
                    count,
                    entry,
                ));
            }
        }
        if groups.is_empty() {
            return Err(self.error(deployment_node, "deployment", "deploys nothing"));
        }
        for (name, (_, node)) in &services {
            if !groups.values().flatten().any(|(s, ..)| s == name) {
                self.warn(
                    node,
                    &join("services", name),
                    "is not deployed by any `deployment` entry, so it does not run",
                );
            }
        }

        let mut specs = Vec::new();
        let mut manifest = Vec::new();
        for (placement_name, entries) in groups {
            let Some(place) = placements.get(&placement_name) else { continue };
            let mut max_price = Amount::ZERO;
            let mut resources = Vec::new();
            let mut group_services = Vec::new();
            for (service_name, profile_name, count, entry) in entries {
                let (Some((profile, _)), Some((service, _)), Some((price, _))) = (
                    compute.get(&profile_name),
                    services.get(&service_name),
                    place.pricing.get(&profile_name),
                ) else {
                    continue;
                };
                let field = format!("deployment.{service_name}.{placement_name}");
                max_price = price
                    .checked_mul(u128::from(count))
                    .and_then(|p| max_price.checked_add(p))
                    .ok_or_else(|| self.error(entry, &field, "the group's price overflows"))?;
                resources.push(ResourceUnit { resources: profile.resources.clone(), count });
                let mut mounts = Vec::new();
                for (mount, at, mount_field) in &service.mounts {
                    if !profile.resources.storage.iter().any(|s| s.name == mount.volume) {
                        let volumes: Vec<&str> =
                            profile.resources.storage.iter().map(|s| s.name.as_str()).collect();
                        return Err(SdlError::Invalid(Diagnostic {
                            file: self.file.into(),
                            line: at.0,
                            column: at.1,
                            field: mount_field.clone(),
                            message: format!(
                                "mounts volume `{}`, but profile `{profile_name}` has only: {}",
                                mount.volume,
                                volumes.join(", ")
                            ),
                        }));
                    }
                    mounts.push(mount.clone());
                }
                group_services.push(ServiceSpec {
                    name: service_name.clone(),
                    image: service.image.clone(),
                    command: service.command.clone(),
                    args: service.args.clone(),
                    env: service.env.clone(),
                    resources: profile.resources.clone(),
                    count,
                    expose: service.expose.clone(),
                    mounts,
                });
            }
            let spec = GroupSpec {
                name: placement_name.clone(),
                requirements: place.requirements.clone(),
                resources,
                max_price,
            };
            let field = format!("profiles.placement.{placement_name}");
            spec.validate(&field).map_err(|m| self.error(place.node, &m.field, m.reason))?;
            specs.push(spec);
            manifest.push(ManifestGroup { name: placement_name, services: group_services });
        }
        if specs.len() > tensorgrid_types::limits::MAX_GROUPS {
            return Err(self.error(
                deployment_node,
                "deployment",
                format!(
                    "uses {} placements; at most {} are allowed",
                    specs.len(),
                    tensorgrid_types::limits::MAX_GROUPS
                ),
            ));
        }
        Ok(MappedDeployment { groups: specs, manifest })
    }

    fn check_name(&self, node: &Node, field: &str, name: &str) -> Result<(), SdlError> {
        tensorgrid_types::limits::check_name(field, name)
            .map_err(|m| self.error(node, field, format!("`{name}` is not a valid name: {}", m.reason)))
    }

    // --- services

    fn service(&mut self, node: &Node, field: &str) -> Result<Service, SdlError> {
        let map = self.map(node, field)?;
        self.unknown_keys(
            map,
            field,
            &["image", "command", "args", "env", "expose", "params", "credentials", "dependencies"],
        );
        let image_node = self.required(map, node, field, "image")?;
        let image = self.scalar(image_node, &join(field, "image"))?.trim().to_string();
        if image.is_empty() {
            return Err(self.error(image_node, &join(field, "image"), "is empty"));
        }
        let command = map
            .get_node("command")
            .map(|n| self.strings(n, &join(field, "command")))
            .transpose()?
            .unwrap_or_default();
        let args = map
            .get_node("args")
            .map(|n| self.strings(n, &join(field, "args")))
            .transpose()?
            .unwrap_or_default();
        let env = match map.get_node("env") {
            None => Vec::new(),
            Some(n) => {
                let env = self.strings(n, &join(field, "env"))?;
                for (i, entry) in env.iter().enumerate() {
                    let name = entry.split('=').next().unwrap_or_default();
                    if name.is_empty() || name.contains(char::is_whitespace) {
                        return Err(self.error(
                            n,
                            &format!("{field}.env[{i}]"),
                            format!("`{entry}` is not `NAME=value`"),
                        ));
                    }
                }
                env
            }
        };
        let mut expose = Vec::new();
        if let Some(n) = map.get_node("expose") {
            if !is_empty(n) {
                let seq = n
                    .as_sequence()
                    .ok_or_else(|| self.error(n, &join(field, "expose"), "must be a list of ports"))?;
                for (i, item) in seq.iter().enumerate() {
                    expose.push(self.expose(item, &format!("{field}.expose[{i}]"))?);
                }
            }
        }
        let mut mounts = Vec::new();
        if let Some(params) = map.get_node("params") {
            if let Some(params_map) = self.map_or_empty(params, &join(field, "params"))? {
                self.unknown_keys(params_map, &join(field, "params"), &["storage"]);
                if let Some(storage) = params_map.get_node("storage") {
                    let storage_field = format!("{field}.params.storage");
                    if let Some(volumes) = self.map_or_empty(storage, &storage_field)? {
                        for (volume, spec) in volumes.iter() {
                            let vfield = join(&storage_field, volume.as_str());
                            let spec_map = self.map(spec, &vfield)?;
                            self.unknown_keys(spec_map, &vfield, &["mount", "readOnly"]);
                            let path = match spec_map.get_node("mount") {
                                Some(m) => self.scalar(m, &join(&vfield, "mount"))?.to_string(),
                                None => String::new(),
                            };
                            if !path.starts_with('/') {
                                return Err(self.error(
                                    spec,
                                    &join(&vfield, "mount"),
                                    format!("`{path}` must be an absolute path"),
                                ));
                            }
                            let read_only = match spec_map.get_node("readOnly") {
                                Some(r) => self.boolean(r, &join(&vfield, "readOnly"))?,
                                None => false,
                            };
                            mounts.push((
                                Mount { volume: volume.as_str().to_string(), path, read_only },
                                position(spec),
                                vfield,
                            ));
                        }
                    }
                }
            }
        }
        if let Some(n) = map.get_node("credentials") {
            self.warn(n, &join(field, "credentials"), "private registry credentials are not supported yet and were left out; the image must be public or already on the provider");
        }
        if let Some(n) = map.get_node("dependencies") {
            self.warn(
                n,
                &join(field, "dependencies"),
                "service dependencies are not supported yet; services start independently",
            );
        }
        Ok(Service { image, command, args, env, expose, mounts })
    }

    fn expose(&mut self, node: &Node, field: &str) -> Result<Expose, SdlError> {
        let map = self.map(node, field)?;
        self.unknown_keys(map, field, &["port", "as", "proto", "to", "accept", "http_options"]);
        let port: u16 =
            self.integer(self.required(map, node, field, "port")?, &join(field, "port"), 1, 65_535)?;
        let external_port = match map.get_node("as") {
            Some(n) => self.integer(n, &join(field, "as"), 1, 65_535)?,
            None => port,
        };
        let proto = match map.get_node("proto") {
            None => Protocol::Tcp,
            Some(n) => match self.scalar(n, &join(field, "proto"))?.to_ascii_lowercase().as_str() {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                other => {
                    return Err(self.error(n, &join(field, "proto"), format!("`{other}` is not tcp or udp")))
                }
            },
        };
        let mut global = false;
        let mut services = Vec::new();
        if let Some(to) = map.get_node("to") {
            let to_field = join(field, "to");
            let seq = to.as_sequence().ok_or_else(|| {
                self.error(
                    to,
                    &to_field,
                    "must be a list, e.g. `to: [{ global: true }]` (write `- global: true` under `to:`)",
                )
            })?;
            for (i, target) in seq.iter().enumerate() {
                let tfield = format!("{to_field}[{i}]");
                let tmap = self.map(target, &tfield)?;
                self.unknown_keys(tmap, &tfield, &["global", "service", "ip"]);
                if let Some(g) = tmap.get_node("global") {
                    global |= self.boolean(g, &join(&tfield, "global"))?;
                }
                if let Some(s) = tmap.get_node("service") {
                    services.push(self.scalar(s, &join(&tfield, "service"))?.to_string());
                }
                if let Some(ip) = tmap.get_node("ip") {
                    self.warn(ip, &join(&tfield, "ip"), "IP endpoints are not supported yet; the port is published on the provider's shared address");
                }
            }
        }
        let hosts = map
            .get_node("accept")
            .map(|n| self.strings(n, &join(field, "accept")))
            .transpose()?
            .unwrap_or_default();
        let mut http = HttpOptions::default();
        if let Some(h) = map.get_node("http_options") {
            let hfield = join(field, "http_options");
            let hmap = self.map(h, &hfield)?;
            self.unknown_keys(
                hmap,
                &hfield,
                &[
                    "max_body_size",
                    "read_timeout",
                    "send_timeout",
                    "next_tries",
                    "next_timeout",
                    "next_cases",
                ],
            );
            if let Some(n) = hmap.get_node("max_body_size") {
                http.max_body_size = self.integer(n, &join(&hfield, "max_body_size"), 0, 100 << 20)?;
            }
            if let Some(n) = hmap.get_node("read_timeout") {
                http.read_timeout_ms = self.integer(n, &join(&hfield, "read_timeout"), 0, 60_000)?;
            }
            if let Some(n) = hmap.get_node("send_timeout") {
                http.send_timeout_ms = self.integer(n, &join(&hfield, "send_timeout"), 0, 60_000)?;
            }
            if let Some(n) = hmap.get_node("next_tries") {
                http.next_tries = self.integer(n, &join(&hfield, "next_tries"), 0, 100)?;
            }
            if let Some(n) = hmap.get_node("next_timeout") {
                http.next_timeout_ms = self.integer(n, &join(&hfield, "next_timeout"), 0, 60_000)?;
            }
            if let Some(n) = hmap.get_node("next_cases") {
                http.next_cases = self.strings(n, &join(&hfield, "next_cases"))?;
            }
        }
        Ok(Expose { port, external_port, proto, global, services, hosts, http })
    }

    // --- profiles

    fn profile(&mut self, node: &Node, field: &str) -> Result<Profile, SdlError> {
        let map = self.map(node, field)?;
        self.unknown_keys(map, field, &["resources"]);
        let res_node = self.required(map, node, field, "resources")?;
        let rfield = join(field, "resources");
        let res = self.map(res_node, &rfield)?;
        self.unknown_keys(res, &rfield, &["cpu", "memory", "storage", "gpu"]);

        let cpu_node = self.required(res, res_node, &rfield, "cpu")?;
        let cpu_map = self.map(cpu_node, &join(&rfield, "cpu"))?;
        self.unknown_keys(cpu_map, &join(&rfield, "cpu"), &["units", "attributes"]);
        let units = self.required(cpu_map, cpu_node, &join(&rfield, "cpu"), "units")?;
        let ufield = format!("{rfield}.cpu.units");
        let cpu_millis =
            cpu_millis(self.scalar(units, &ufield)?).map_err(|e| self.error(units, &ufield, e.0))?;
        if cpu_millis == 0 {
            return Err(self.error(units, &ufield, "is zero; ask for at least 1m (a thousandth of a core)"));
        }

        let mem_node = self.required(res, res_node, &rfield, "memory")?;
        let mem_map = self.map(mem_node, &join(&rfield, "memory"))?;
        self.unknown_keys(mem_map, &join(&rfield, "memory"), &["size"]);
        let size = self.required(mem_map, mem_node, &join(&rfield, "memory"), "size")?;
        let sfield = format!("{rfield}.memory.size");
        let memory_bytes =
            memory_bytes(self.scalar(size, &sfield)?).map_err(|e| self.error(size, &sfield, e.0))?;
        if memory_bytes == 0 {
            return Err(self.error(size, &sfield, "is zero"));
        }

        let storage = match res.get_node("storage") {
            None => Vec::new(),
            Some(n) => self.storage(n, &join(&rfield, "storage"))?,
        };
        let gpu = match res.get_node("gpu") {
            None => Gpu::default(),
            Some(n) => self.gpu(n, &join(&rfield, "gpu"))?,
        };
        Ok(Profile { resources: ResourceUnits { cpu_millis, memory_bytes, storage, gpu } })
    }

    fn storage(&mut self, node: &Node, field: &str) -> Result<Vec<Storage>, SdlError> {
        let items: Vec<(&Node, String)> = match node.as_sequence() {
            Some(seq) => seq.iter().enumerate().map(|(i, n)| (n, format!("{field}[{i}]"))).collect(),
            None => vec![(node, field.to_string())],
        };
        let mut volumes: Vec<Storage> = Vec::new();
        for (item, ifield) in items {
            let map = self.map(item, &ifield)?;
            self.unknown_keys(map, &ifield, &["name", "size", "attributes"]);
            let size = self.required(map, item, &ifield, "size")?;
            let szfield = join(&ifield, "size");
            let bytes =
                storage_bytes(self.scalar(size, &szfield)?).map_err(|e| self.error(size, &szfield, e.0))?;
            let name = match map.get_node("name") {
                Some(n) => self.scalar(n, &join(&ifield, "name"))?.to_string(),
                None => "default".to_string(),
            };
            self.check_name(item, &join(&ifield, "name"), &name)?;
            if volumes.iter().any(|v| v.name == name) {
                return Err(self.error(
                    item,
                    &join(&ifield, "name"),
                    format!("volume `{name}` is defined twice"),
                ));
            }
            let (mut persistent, mut class) = (false, None);
            if let Some(attrs) = map.get_node("attributes") {
                let afield = join(&ifield, "attributes");
                let amap = self.map(attrs, &afield)?;
                self.unknown_keys(amap, &afield, &["persistent", "class"]);
                if let Some(p) = amap.get_node("persistent") {
                    persistent = self.boolean(p, &join(&afield, "persistent"))?;
                }
                if let Some(c) = amap.get_node("class") {
                    class = Some(self.scalar(c, &join(&afield, "class"))?.to_string());
                }
                if class.as_deref() == Some("ram") && persistent {
                    return Err(self.error(attrs, &afield, "a `ram` volume cannot be persistent"));
                }
            }
            volumes.push(Storage { name, bytes, persistent, class });
        }
        Ok(volumes)
    }

    fn gpu(&mut self, node: &Node, field: &str) -> Result<Gpu, SdlError> {
        let map = self.map(node, field)?;
        self.unknown_keys(map, field, &["units", "attributes"]);
        let units_node = self.required(map, node, field, "units")?;
        let units: u32 = self.integer(units_node, &join(field, "units"), 0, 1_024)?;
        let mut models = Vec::new();
        if let Some(attrs) = map.get_node("attributes") {
            let afield = join(field, "attributes");
            let amap = self.map(attrs, &afield)?;
            self.unknown_keys(amap, &afield, &["vendor"]);
            if let Some(vendors) = amap.get_node("vendor") {
                let vfield = join(&afield, "vendor");
                for (vendor, spec) in self.map(vendors, &vfield)?.iter() {
                    let vendor_name = vendor.as_str().to_string();
                    let mfield = join(&vfield, &vendor_name);
                    if !matches!(vendor_name.as_str(), "nvidia" | "amd") {
                        self.warn(
                            spec,
                            &mfield,
                            format!(
                                "GPU vendor `{vendor_name}` is unusual; known vendors are nvidia and amd"
                            ),
                        );
                    }
                    if is_empty(spec) {
                        models.push(GpuModel {
                            vendor: vendor_name,
                            model: None,
                            vram_bytes: None,
                            interface: None,
                        });
                        continue;
                    }
                    let seq = spec.as_sequence().ok_or_else(|| {
                        self.error(spec, &mfield, "must be a list of models, e.g. `- model: a100`")
                    })?;
                    for (i, m) in seq.iter().enumerate() {
                        let field = format!("{mfield}[{i}]");
                        let mmap = self.map(m, &field)?;
                        self.unknown_keys(mmap, &field, &["model", "ram", "interface"]);
                        let model = mmap
                            .get_node("model")
                            .map(|n| self.scalar(n, &join(&field, "model")).map(str::to_string))
                            .transpose()?;
                        let vram_bytes = match mmap.get_node("ram") {
                            None => None,
                            Some(n) => Some(
                                memory_bytes(self.scalar(n, &join(&field, "ram"))?)
                                    .map_err(|e| self.error(n, &join(&field, "ram"), e.0))?,
                            ),
                        };
                        let interface = match mmap.get_node("interface") {
                            None => None,
                            Some(n) => {
                                let value = self.scalar(n, &join(&field, "interface"))?.to_ascii_lowercase();
                                if !matches!(value.as_str(), "pcie" | "sxm") {
                                    return Err(self.error(
                                        n,
                                        &join(&field, "interface"),
                                        format!("`{value}` is not pcie or sxm"),
                                    ));
                                }
                                Some(value)
                            }
                        };
                        models.push(GpuModel { vendor: vendor_name.clone(), model, vram_bytes, interface });
                    }
                }
            }
        }
        if units > 0 && models.is_empty() {
            return Err(self.error(
                node,
                &join(field, "attributes"),
                format!("{units} GPU units need a vendor, e.g. `attributes: {{ vendor: {{ nvidia: }} }}`"),
            ));
        }
        if units == 0 && !models.is_empty() {
            return Err(self.error(
                units_node,
                &join(field, "units"),
                "is 0 but GPU attributes are given; ask for at least one unit",
            ));
        }
        Ok(Gpu { units, models })
    }

    // --- placement

    fn placement<'n>(&mut self, node: &'n Node, field: &str) -> Result<Placement<'n>, SdlError> {
        let map = self.map(node, field)?;
        self.unknown_keys(map, field, &["attributes", "signedBy", "pricing"]);
        let mut attributes = Vec::new();
        if let Some(attrs) = map.get_node("attributes") {
            if let Some(amap) = self.map_or_empty(attrs, &join(field, "attributes"))? {
                for (key, value) in amap.iter() {
                    let vfield = format!("{field}.attributes.{}", key.as_str());
                    attributes.push(Attribute::new(key.as_str(), self.scalar(value, &vfield)?));
                }
            }
        }
        let mut signed_by = SignedBy::default();
        if let Some(sb) = map.get_node("signedBy") {
            let sfield = join(field, "signedBy");
            if let Some(smap) = self.map_or_empty(sb, &sfield)? {
                self.unknown_keys(smap, &sfield, &["anyOf", "allOf"]);
                for (key, target) in [("anyOf", &mut signed_by.any_of), ("allOf", &mut signed_by.all_of)] {
                    let Some(list) = smap.get_node(key) else { continue };
                    let lfield = join(&sfield, key);
                    for (i, auditor) in self.strings(list, &lfield)?.iter().enumerate() {
                        match auditor.parse::<Address>() {
                            Ok(address) => target.push(address),
                            Err(_) => self.warn(
                                list,
                                &format!("{lfield}[{i}]"),
                                format!(
                                    "auditor `{auditor}` is not a tensorgrid address (tg1…); it was left out"
                                ),
                            ),
                        }
                    }
                }
            }
        }
        let pricing_node = self.required(map, node, field, "pricing")?;
        let pfield = join(field, "pricing");
        let mut pricing = BTreeMap::new();
        for (profile, price) in self.map(pricing_node, &pfield)?.iter() {
            let field = join(&pfield, profile.as_str());
            pricing.insert(profile.as_str().to_string(), (self.price(price, &field)?, price));
        }
        Ok(Placement { node, requirements: PlacementRequirements { attributes, signed_by }, pricing })
    }

    /// Akash's price per block in `uakt`/`uact` → utgr per hour, rounded down so that the converted maximum
    /// never exceeds what the tenant wrote.
    fn price(&mut self, node: &Node, field: &str) -> Result<Amount, SdlError> {
        let map = self.map(node, field)?;
        self.unknown_keys(map, field, &["denom", "amount"]);
        let denom_node = self.required(map, node, field, "denom")?;
        let denom = self.scalar(denom_node, &join(field, "denom"))?;
        let rate = match denom {
            "uakt" => self.options.utgr_per_uakt,
            "uact" => self.options.utgr_per_uact,
            other => {
                return Err(self.error(
                    denom_node,
                    &join(field, "denom"),
                    format!("denomination `{other}` cannot be converted; use uakt or uact"),
                ));
            }
        };
        let amount_node = self.required(map, node, field, "amount")?;
        let afield = join(field, "amount");
        let text = self.scalar(amount_node, &afield)?;
        let amount = Decimal::parse(text.trim()).ok_or_else(|| {
            self.error(amount_node, &afield, format!("`{text}` is not a non-negative number"))
        })?;
        let numerator = amount
            .digits
            .checked_mul(3_600_000)
            .and_then(|v| v.checked_mul(rate.num))
            .ok_or_else(|| self.error(amount_node, &afield, "is too large"))?;
        let denominator = 10u128
            .checked_pow(amount.scale)
            .and_then(|v| v.checked_mul(u128::from(self.options.block_time_ms)))
            .and_then(|v| v.checked_mul(rate.den))
            .filter(|v| *v > 0)
            .ok_or_else(|| self.error(amount_node, &afield, "cannot be converted"))?;
        let per_hour = numerator / denominator;
        if per_hour == 0 {
            return Err(self.error(
                amount_node,
                &afield,
                format!("{text} {denom} per block is less than 1 utgr per hour"),
            ));
        }
        Ok(Amount(per_hour))
    }
}

/// Advice for docker-compose keys that people carry over into SDL files.
fn compose_field(key: &str) -> Option<&'static str> {
    Some(match key {
        "depends_on" | "depends-on" | "links" => {
            "services of a deployment start independently and reach each other by service name"
        }
        "restart" => "providers restart failed containers on their own",
        "volumes" => "declare storage in the compute profile and mount it under params.storage",
        "ports" => "use expose",
        "environment" => "use env",
        "cmd" | "entrypoint" => "use command and args",
        _ => return None,
    })
}

fn is_empty(node: &Node) -> bool {
    node.as_scalar().is_some_and(|s| matches!(s.as_str(), "" | "~" | "null"))
}
