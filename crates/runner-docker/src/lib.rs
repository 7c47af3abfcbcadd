//! The container lease runner: Docker Engine through its API (bollard), on the local socket.
//!
//! Each lease gets its own containers (`tg-<lease>-<service>-<i>`), all labelled with the provider and the
//! lease, and — if any service exposes a port — its own bridge network (`tg-<lease>`), so services of a lease
//! reach each other by name and never see another lease. A lease that exposes nothing runs with no network
//! at all. CPU and memory limits come from the manifest's resources; exposed ports are published on the
//! host at ports Docker picks and reported back; GPUs are passed through only when the host has NVIDIA's
//! runtime. A lease's network cannot reach the host's own addresses or link-local ones (cloud metadata):
//! see `firewall`, on wherever the runner may manage iptables rules. Containers restart with the Docker daemon and are left alone when the provider daemon restarts,
//! which finds them again by label. Disk is bounded by watching, since not every storage driver takes a
//! quota (vfs does not): each container is labelled with its service's storage (all its volumes together),
//! and [`LeaseRunner::enforce`] stops a running one whose writable layer has grown past it.

mod firewall;

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, DeviceRequest, EndpointSettings, HostConfig, NetworkCreateRequest, NetworkingConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, ListContainersOptions,
    ListNetworksOptions, LogsOptions, RemoveContainerOptions, StartContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt as _;
use tensorgrid_runner::{BoxFuture, Eviction, LeaseRunner, RunnerError};
use tensorgrid_types::manifest::{ManifestGroup, Protocol, ServiceSpec};
use tensorgrid_types::provider_api::ServiceStatus;

const LABEL_PROVIDER: &str = "tensorgrid.provider";
const LABEL_LEASE: &str = "tensorgrid.lease";
const LABEL_SERVICE: &str = "tensorgrid.service";
/// The bytes of storage a container's service pays for (its volumes together); no label, no limit.
const LABEL_DISK: &str = "tensorgrid.disk_bytes";

/// A container's name as the lease's instances are named (`tg-<lease>-<service>-<i>`), without Docker's `/`.
fn instance_name(summary: &bollard::models::ContainerSummary) -> String {
    let name = summary.names.as_ref().and_then(|n| n.first()).map(String::as_str).unwrap_or_default();
    name.trim_start_matches('/').to_string()
}

fn engine(e: bollard::errors::Error) -> RunnerError {
    RunnerError::Engine(e.to_string())
}

/// Runs leases as Docker containers.
#[derive(Debug, Clone)]
pub struct DockerRunner {
    docker: Docker,
    /// Whose containers these are (the provider's address): a host may serve several providers.
    owner: String,
    /// The host address published ports bind to (`0.0.0.0` for the world, `127.0.0.1` for tests).
    publish_ip: String,
    /// Whether the host has NVIDIA's container runtime, so GPU requests can be passed through.
    nvidia: bool,
    /// Whether containers get a read-only root file system (with small in-memory `/tmp` and `/run`).
    read_only_root: bool,
    /// Why lease networks cannot be firewalled on this host, if they cannot.
    no_firewall: Option<String>,
}

/// The in-memory scratch directories a read-only container keeps writable; their pages count against the
/// container's memory limit.
const SCRATCH: [&str; 3] = ["/tmp", "/run", "/var/tmp"];

/// The capabilities a lease's containers keep (Docker's default set less NET_RAW, MKNOD, SYS_CHROOT,
/// SETFCAP, SETPCAP and AUDIT_WRITE): enough for servers that bind low ports and drop to their own user.
pub const LEASE_CAPABILITIES: [&str; 8] =
    ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "NET_BIND_SERVICE"];

impl DockerRunner {
    /// Connects to the local Docker daemon and agrees on an API version with it.
    pub async fn connect(
        owner: impl Into<String>,
        publish_ip: impl Into<String>,
    ) -> Result<DockerRunner, RunnerError> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(engine)?
            .negotiate_version()
            .await
            .map_err(engine)?;
        let info = docker.info().await.map_err(engine)?;
        let nvidia = info.runtimes.is_some_and(|r| r.contains_key("nvidia"));
        let no_firewall = firewall::available().await.err();
        Ok(DockerRunner {
            docker,
            owner: owner.into(),
            publish_ip: publish_ip.into(),
            nvidia,
            read_only_root: false,
            no_firewall,
        })
    }

    /// Why lease networks are not kept away from the host and metadata addresses here, if they are not.
    pub fn firewall_unavailable(&self) -> Option<&str> {
        self.no_firewall.as_deref()
    }

    /// The interface of a lease's bridge network, as Docker names it (`br-` and the network id's start).
    async fn bridge_of(&self, network: &str) -> Option<String> {
        let inspect = self.docker.inspect_network(network, None).await.ok()?;
        if let Some(name) = inspect.options.as_ref().and_then(|o| o.get("com.docker.network.bridge.name")) {
            return Some(name.clone());
        }
        inspect.id.map(|id| format!("br-{}", &id[..id.len().min(12)]))
    }

    /// Puts a lease network's isolation rules in place, where the host allows.
    async fn isolate(&self, network: &str) -> Result<(), RunnerError> {
        if self.no_firewall.is_some() {
            return Ok(());
        }
        let bridge = self
            .bridge_of(network)
            .await
            .ok_or_else(|| RunnerError::Engine(format!("network {network} has no bridge")))?;
        firewall::isolate(&bridge)
            .await
            .map_err(|e| RunnerError::Engine(format!("cannot keep {network} away from the host: {e}")))
    }

    /// Runs every lease's containers with a read-only root file system: an operator's choice for hosts whose
    /// tenants' images write only to scratch directories and volumes (many do not, so it is off by default).
    pub fn with_read_only_root(mut self, read_only_root: bool) -> DockerRunner {
        self.read_only_root = read_only_root;
        self
    }

    fn network_name(lease: &str) -> String {
        format!("tg-{lease}")
    }

    fn labels(&self, lease: &str, service: Option<&str>) -> HashMap<String, String> {
        let mut labels = HashMap::from([
            (LABEL_PROVIDER.to_string(), self.owner.clone()),
            (LABEL_LEASE.to_string(), lease.to_string()),
        ]);
        if let Some(service) = service {
            labels.insert(LABEL_SERVICE.to_string(), service.to_string());
        }
        labels
    }

    fn filters(&self, lease: Option<&str>) -> HashMap<String, Vec<String>> {
        let mut labels = vec![format!("{LABEL_PROVIDER}={}", self.owner)];
        if let Some(lease) = lease {
            labels.push(format!("{LABEL_LEASE}={lease}"));
        }
        HashMap::from([("label".to_string(), labels)])
    }

    /// Makes sure the image is on the host, pulling it if the host can reach a registry.
    async fn ensure_image(&self, image: &str) -> Result<(), RunnerError> {
        if self.docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        let options = CreateImageOptions { from_image: Some(image.to_string()), ..Default::default() };
        let mut pull = self.docker.create_image(Some(options), None, None);
        while let Some(step) = pull.next().await {
            step.map_err(|e| {
                RunnerError::Unsupported(format!(
                    "image `{image}` is not on this host and could not be pulled: {e}"
                ))
            })?;
        }
        Ok(())
    }

    async fn create_service(
        &self,
        lease: &str,
        service: &ServiceSpec,
        instance: u32,
        network: Option<&str>,
    ) -> Result<String, RunnerError> {
        let name = format!("tg-{lease}-{}-{instance}", service.name);
        let resources = &service.resources;
        let mut exposed = Vec::new();
        let mut bindings = HashMap::new();
        for expose in service.expose.iter().filter(|e| e.global) {
            let proto = match expose.proto {
                Protocol::Udp => "udp",
                _ => "tcp",
            };
            let key = format!("{}/{proto}", expose.port);
            exposed.push(key.clone());
            bindings.insert(
                key,
                Some(vec![PortBinding {
                    host_ip: Some(self.publish_ip.clone()),
                    host_port: Some(String::new()),
                }]),
            );
        }
        let device_requests = if resources.gpu.units > 0 {
            if !self.nvidia {
                return Err(RunnerError::Unsupported(format!(
                    "service `{}` asks for {} GPUs and this host has no NVIDIA container runtime",
                    service.name, resources.gpu.units
                )));
            }
            Some(vec![DeviceRequest {
                driver: Some("nvidia".into()),
                count: Some(i64::from(resources.gpu.units)),
                capabilities: Some(vec![vec!["gpu".into()]]),
                ..Default::default()
            }])
        } else {
            None
        };
        let memory = i64::try_from(resources.memory_bytes).unwrap_or(i64::MAX);
        let host_config = HostConfig {
            nano_cpus: Some(
                i64::try_from(resources.cpu_millis.saturating_mul(1_000_000)).unwrap_or(i64::MAX),
            ),
            memory: Some(memory),
            // No swap beyond the memory limit: the tenant pays for memory, not for the host's disk.
            memory_swap: Some(memory),
            pids_limit: Some(4096),
            // Nothing in a lease gains privileges it did not start with (setuid binaries included), and it
            // starts with the few capabilities ordinary services need: no raw sockets (spoofing), device
            // nodes, chroot, audit or capability editing.
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(LEASE_CAPABILITIES.iter().map(|c| c.to_string()).collect()),
            port_bindings: Some(bindings),
            network_mode: Some(network.unwrap_or("none").to_string()),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            device_requests,
            readonly_rootfs: Some(self.read_only_root),
            tmpfs: self.read_only_root.then(|| {
                let size = (resources.memory_bytes / 4).max(1 << 20);
                SCRATCH.iter().map(|d| (d.to_string(), format!("rw,nosuid,nodev,size={size}"))).collect()
            }),
            ..Default::default()
        };
        let networking_config = network.map(|n| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                n.to_string(),
                EndpointSettings { aliases: Some(vec![service.name.clone()]), ..Default::default() },
            )])),
        });
        // Akash's `command` replaces the image's entrypoint and `args` its command.
        let (entrypoint, cmd) = match (service.command.is_empty(), service.args.is_empty()) {
            (true, true) => (None, None),
            (true, false) => (None, Some(service.args.clone())),
            (false, _) => (Some(service.command.clone()), Some(service.args.clone())),
        };
        let mut labels = self.labels(lease, Some(&service.name));
        let disk: u64 = resources.storage.iter().map(|s| s.bytes).fold(0, u64::saturating_add);
        if disk > 0 {
            labels.insert(LABEL_DISK.to_string(), disk.to_string());
        }
        let body = ContainerCreateBody {
            image: Some(service.image.clone()),
            entrypoint,
            cmd,
            env: Some(service.env.clone()),
            labels: Some(labels),
            exposed_ports: Some(exposed),
            host_config: Some(host_config),
            networking_config,
            ..Default::default()
        };
        let options = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
        self.docker.create_container(Some(options), body).await.map_err(engine)?;
        self.docker.start_container(&name, None::<StartContainerOptions>).await.map_err(engine)?;
        Ok(name)
    }

    async fn containers(
        &self,
        lease: Option<&str>,
    ) -> Result<Vec<bollard::models::ContainerSummary>, RunnerError> {
        let options =
            ListContainersOptions { all: true, filters: Some(self.filters(lease)), ..Default::default() };
        self.docker.list_containers(Some(options)).await.map_err(engine)
    }

    async fn status_of(&self, lease: &str) -> Result<Vec<ServiceStatus>, RunnerError> {
        let mut services: Vec<ServiceStatus> = Vec::new();
        for summary in self.containers(Some(lease)).await? {
            let Some(id) = summary.id else { continue };
            let inspect =
                self.docker.inspect_container(&id, None::<InspectContainerOptions>).await.map_err(engine)?;
            let service = inspect
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(LABEL_SERVICE).cloned())
                .unwrap_or_default();
            let running = inspect.state.as_ref().and_then(|s| s.running).unwrap_or(false);
            let mut endpoints = Vec::new();
            if let Some(ports) = inspect.network_settings.and_then(|n| n.ports) {
                for (key, bindings) in ports {
                    let port: u16 = key.split('/').next().and_then(|p| p.parse().ok()).unwrap_or(0);
                    for binding in bindings.unwrap_or_default() {
                        if let Some(host_port) = binding.host_port {
                            endpoints
                                .push((port, format!("{}:{host_port}", binding.host_ip.unwrap_or_default())));
                        }
                    }
                }
            }
            endpoints.sort();
            match services.iter_mut().find(|s| s.name == service) {
                Some(entry) => {
                    entry.total += 1;
                    entry.ready += u32::from(running);
                    entry.endpoints.extend(endpoints);
                }
                None => services.push(ServiceStatus {
                    name: service,
                    ready: u32::from(running),
                    total: 1,
                    endpoints,
                }),
            }
        }
        services.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(services)
    }

    async fn stop_lease(&self, lease: &str) -> Result<(), RunnerError> {
        for summary in self.containers(Some(lease)).await? {
            if let Some(id) = summary.id {
                let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
                match self.docker.remove_container(&id, Some(options)).await {
                    Ok(())
                    | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
                    Err(e) => return Err(engine(e)),
                }
            }
        }
        let network = Self::network_name(lease);
        let bridge = self.bridge_of(&network).await;
        match self.docker.remove_network(&network).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
            Err(e) => return Err(engine(e)),
        }
        if let (Some(bridge), None) = (bridge, &self.no_firewall) {
            firewall::release(&bridge).await.map_err(RunnerError::Engine)?;
        }
        Ok(())
    }

    async fn start_lease(
        &self,
        lease: &str,
        group: &ManifestGroup,
    ) -> Result<Vec<ServiceStatus>, RunnerError> {
        for service in &group.services {
            self.ensure_image(&service.image).await?;
        }
        let networked = group.services.iter().any(|s| !s.expose.is_empty());
        let network = if networked {
            let name = Self::network_name(lease);
            // Docker allows two networks of one name, and a container then cannot say which it joins: a
            // network a crashed earlier start left behind is removed (or, if something still uses it,
            // reused) instead of being doubled.
            let filters = HashMap::from([("name".to_string(), vec![name.clone()])]);
            let options = ListNetworksOptions { filters: Some(filters) };
            let mut in_use = false;
            for leftover in self.docker.list_networks(Some(options)).await.map_err(engine)? {
                if leftover.name.as_deref() != Some(name.as_str()) {
                    continue;
                }
                let Some(id) = leftover.id else { continue };
                match self.docker.remove_network(&id).await {
                    Ok(())
                    | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
                    Err(_) => in_use = true,
                }
            }
            if !in_use {
                let request = NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("bridge".into()),
                    labels: Some(self.labels(lease, None)),
                    ..Default::default()
                };
                match self.docker.create_network(request).await {
                    Ok(_)
                    | Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => {}
                    Err(e) => return Err(engine(e)),
                }
            }
            // Before any container joins it.
            if let Err(e) = self.isolate(&name).await {
                let _ = self.stop_lease(lease).await;
                return Err(e);
            }
            Some(name)
        } else {
            None
        };
        for service in &group.services {
            for instance in 0..service.count.max(1) {
                if let Err(e) = self.create_service(lease, service, instance, network.as_deref()).await {
                    // Half a lease is no lease: take down what started and say why.
                    let _ = self.stop_lease(lease).await;
                    return Err(e);
                }
            }
        }
        self.status_of(lease).await
    }

    /// Puts back the isolation rules of every lease network (a reboot or a firewall reload drops them).
    async fn isolate_all(&self) -> Result<(), RunnerError> {
        if self.no_firewall.is_some() {
            return Ok(());
        }
        let options = ListNetworksOptions { filters: Some(self.filters(None)) };
        for network in self.docker.list_networks(Some(options)).await.map_err(engine)? {
            if let Some(id) = network.id {
                self.isolate(&id).await?;
            }
        }
        Ok(())
    }

    async fn evict_over_disk(&self) -> Result<Vec<Eviction>, RunnerError> {
        self.isolate_all().await?;
        let options = ListContainersOptions {
            all: false,
            size: true,
            filters: Some(self.filters(None)),
            ..Default::default()
        };
        let mut evicted = Vec::new();
        for summary in self.docker.list_containers(Some(options)).await.map_err(engine)? {
            let labels = summary.labels.clone().unwrap_or_default();
            let Some(limit) = labels.get(LABEL_DISK).and_then(|v| v.parse::<u64>().ok()) else { continue };
            let used = summary.size_rw.and_then(|b| u64::try_from(b).ok()).unwrap_or(0);
            if used <= limit {
                continue;
            }
            let instance = instance_name(&summary);
            let Some(id) = summary.id else { continue };
            // Stopped by hand, a container with the unless-stopped policy stays stopped.
            self.docker.stop_container(&id, None::<StopContainerOptions>).await.map_err(engine)?;
            evicted.push(Eviction {
                lease: labels.get(LABEL_LEASE).cloned().unwrap_or_default(),
                instance,
                used_bytes: used,
                limit_bytes: limit,
            });
        }
        Ok(evicted)
    }

    async fn logs_of(&self, lease: &str, tail: usize) -> Result<String, RunnerError> {
        let mut out = String::new();
        let mut containers = self.containers(Some(lease)).await?;
        containers.sort_by(|a, b| a.names.cmp(&b.names));
        for summary in containers {
            let name = instance_name(&summary);
            let Some(id) = summary.id else { continue };
            let options =
                LogsOptions { stdout: true, stderr: true, tail: tail.to_string(), ..Default::default() };
            let mut stream = self.docker.logs(&id, Some(options));
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(engine)?;
                for line in String::from_utf8_lossy(&chunk.into_bytes()).lines() {
                    out.push_str(&format!("[{name}] {line}\n"));
                }
            }
        }
        Ok(out)
    }
}

impl LeaseRunner for DockerRunner {
    fn start<'a>(
        &'a self,
        lease: &'a str,
        group: &'a ManifestGroup,
    ) -> BoxFuture<'a, Result<Vec<ServiceStatus>, RunnerError>> {
        Box::pin(self.start_lease(lease, group))
    }

    fn status<'a>(&'a self, lease: &'a str) -> BoxFuture<'a, Result<Vec<ServiceStatus>, RunnerError>> {
        Box::pin(self.status_of(lease))
    }

    fn logs<'a>(&'a self, lease: &'a str, tail: usize) -> BoxFuture<'a, Result<String, RunnerError>> {
        Box::pin(self.logs_of(lease, tail))
    }

    fn stop<'a>(&'a self, lease: &'a str) -> BoxFuture<'a, Result<(), RunnerError>> {
        Box::pin(self.stop_lease(lease))
    }

    fn enforce(&self) -> BoxFuture<'_, Result<Vec<Eviction>, RunnerError>> {
        Box::pin(self.evict_over_disk())
    }

    fn leases(&self) -> BoxFuture<'_, Result<Vec<String>, RunnerError>> {
        Box::pin(async move {
            let mut leases: Vec<String> = self
                .containers(None)
                .await?
                .into_iter()
                .filter_map(|c| c.labels.and_then(|l| l.get(LABEL_LEASE).cloned()))
                .collect();
            leases.sort();
            leases.dedup();
            Ok(leases)
        })
    }
}
