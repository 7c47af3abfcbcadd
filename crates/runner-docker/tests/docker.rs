//! The Docker lease runner against a real Docker Engine, with an image built here `FROM scratch` around
//! Debian's static busybox: a web service answers on its published port, limits are set on the container,
//! logs come back, leases cannot see each other, and stopping removes everything.
//!
//! Docker must be reachable (CI installs and starts it); set `TGRID_SKIP_DOCKER=1` to skip on a machine
//! without it, and the test says it skipped.

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use tensorgrid_runner::LeaseRunner;
use tensorgrid_runner_docker::DockerRunner;
use tensorgrid_types::manifest::{Expose, HttpOptions, ManifestGroup, Protocol, ServiceSpec};
use tensorgrid_types::resources::{ResourceUnits, Storage};

const IMAGE: &str = "tgrid-test/busybox:1";

// Saying that a test was skipped is the point of this message.
#[allow(clippy::print_stderr)]
fn docker_available() -> bool {
    if std::env::var_os("TGRID_SKIP_DOCKER").is_some() {
        eprintln!("TGRID_SKIP_DOCKER is set: the Docker runner test is skipped");
        return false;
    }
    true
}

/// Builds the test image from the host's static busybox (the same script the CLI's tests use).
fn build_image() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/images/build-busybox.sh");
    let out = Command::new("bash").arg(script).output().expect("bash runs");
    assert!(out.status.success(), "building {IMAGE}: {}", String::from_utf8_lossy(&out.stderr));
}

fn service(name: &str, script: &str, expose: Option<u16>) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        image: IMAGE.into(),
        command: vec!["/bin/busybox".into(), "sh".into(), "-c".into()],
        args: vec![script.into()],
        env: vec!["GREETING=hello-lease".into()],
        resources: ResourceUnits { cpu_millis: 500, memory_bytes: 64 << 20, ..ResourceUnits::default() },
        count: 1,
        expose: expose
            .map(|port| {
                vec![Expose {
                    port,
                    external_port: 80,
                    proto: Protocol::Tcp,
                    global: true,
                    services: vec![],
                    hosts: vec![],
                    http: HttpOptions::default(),
                }]
            })
            .unwrap_or_default(),
        mounts: vec![],
    }
}

fn http_get(addr: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

fn inspect(name: &str, format: &str) -> String {
    let out = Command::new("docker").args(["inspect", "-f", format, name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn a_lease_runs_answers_is_limited_logs_is_isolated_and_is_removed() {
    if !docker_available() {
        return;
    }
    build_image();
    let runner =
        DockerRunner::connect("tg1testprovider", "127.0.0.1").await.expect("Docker Engine is reachable");
    let a = format!("t{}-1", std::process::id());
    let b = format!("t{}-2", std::process::id());
    let group = ManifestGroup {
        name: "west".into(),
        services: vec![
            service(
                "web",
                "/bin/busybox mkdir -p /www && echo $GREETING > /www/index.html && exec /bin/busybox httpd -f -p 8080 -h /www",
                Some(8080),
            ),
            service("worker", "while true; do echo tick; /bin/busybox sleep 1; done", None),
        ],
    };
    let started = runner.start(&a, &group).await.expect("the lease starts");
    let web = started.iter().find(|s| s.name == "web").expect("web runs");
    assert_eq!((web.ready, web.total), (1, 1));
    let (port, endpoint) = web.endpoints.first().cloned().expect("8080 is published");
    assert_eq!(port, 8080);

    // The published port answers with the page the service wrote from its environment.
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        if let Some(page) = http_get(&endpoint).filter(|p| p.contains("200")) {
            break page;
        }
        assert!(Instant::now() < deadline, "{endpoint} never answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(page.contains("hello-lease"), "{page}");

    // Limits from the manifest's resources are on the container.
    let container = format!("tg-{a}-web-0");
    assert_eq!(inspect(&container, "{{.HostConfig.NanoCpus}}"), "500000000");
    assert_eq!(inspect(&container, "{{.HostConfig.Memory}}"), (64u64 << 20).to_string());
    assert_eq!(inspect(&container, "{{.HostConfig.NetworkMode}}"), format!("tg-{a}"));

    // Logs carry each instance's name.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = runner.logs(&a, 50).await.unwrap();
        if logs.contains(&format!("[tg-{a}-worker-0] tick")) {
            break;
        }
        assert!(Instant::now() < deadline, "no worker output in: {logs}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Another lease cannot reach the first one's services, by name or at all.
    let probe = ManifestGroup {
        name: "probe".into(),
        services: vec![service(
            "probe",
            "/bin/busybox wget -T 2 -q -O- http://web:8080/ 2>&1; echo probe-done; exec /bin/busybox sleep 60",
            Some(9000),
        )],
    };
    runner.start(&b, &probe).await.expect("the second lease starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let logs = loop {
        let logs = runner.logs(&b, 50).await.unwrap();
        if logs.contains("probe-done") {
            break logs;
        }
        assert!(Instant::now() < deadline, "the probe never finished: {logs}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(!logs.contains("hello-lease"), "lease {b} reached lease {a}: {logs}");
    let mut leases = runner.leases().await.unwrap();
    leases.retain(|l| *l == a || *l == b);
    assert_eq!(leases, vec![a.clone(), b.clone()]);

    // Stopping removes the containers and the network; stopping again is fine.
    runner.stop(&a).await.unwrap();
    runner.stop(&b).await.unwrap();
    runner.stop(&a).await.unwrap();
    assert!(runner.status(&a).await.unwrap().is_empty());
    let networks =
        Command::new("docker").args(["network", "ls", "-q", "-f", &format!("name=tg-{a}")]).output().unwrap();
    assert!(String::from_utf8_lossy(&networks.stdout).trim().is_empty(), "the lease's network is gone");
    assert!(http_get(&endpoint).is_none_or(|p| !p.contains("hello-lease")), "the port no longer answers");
}

/// A tenant that writes more than the storage it pays for (the test host's storage driver has no quotas) is
/// stopped at the next check; one within its storage is left running.
#[tokio::test]
async fn an_instance_that_outgrows_its_storage_is_stopped_and_others_keep_running() {
    if !docker_available() {
        return;
    }
    build_image();
    let runner =
        DockerRunner::connect("tg1testprovider", "127.0.0.1").await.expect("Docker Engine is reachable");
    let lease = format!("t{}-disk", std::process::id());
    let with_storage = |name: &str, script: &str| {
        let mut s = service(name, script, None);
        s.resources.storage =
            vec![Storage { name: "default".into(), bytes: 4 << 20, persistent: false, class: None }];
        s
    };
    let group = ManifestGroup {
        name: "disk".into(),
        services: vec![
            with_storage(
                "filler",
                "/bin/busybox dd if=/dev/zero of=/fill bs=1048576 count=16 && echo filled && exec /bin/busybox sleep 600",
            ),
            with_storage("modest", "/bin/busybox dd if=/dev/zero of=/small bs=1024 count=64 && exec /bin/busybox sleep 600"),
        ],
    };
    runner.start(&lease, &group).await.expect("the lease starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !runner.logs(&lease, 40).await.unwrap().contains("filled") {
        assert!(Instant::now() < deadline, "the filler never wrote its file");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let evicted = runner.enforce().await.unwrap();
    let mine: Vec<_> = evicted.iter().filter(|e| e.lease == lease).collect();
    assert_eq!(mine.len(), 1, "{evicted:?}");
    assert_eq!(mine[0].instance, format!("tg-{lease}-filler-0"));
    assert!(mine[0].used_bytes >= 16 << 20 && mine[0].limit_bytes == 4 << 20, "{:?}", mine[0]);
    let status = runner.status(&lease).await.unwrap();
    let ready = |name: &str| status.iter().find(|s| s.name == name).map(|s| s.ready);
    assert_eq!((ready("filler"), ready("modest")), (Some(0), Some(1)));
    assert!(runner.enforce().await.unwrap().iter().all(|e| e.lease != lease), "nothing more to stop");
    runner.stop(&lease).await.unwrap();
}

/// A tenant's container tries the host it runs on (a server on all of the host's addresses, reached through
/// the lease's gateway) and gets nothing; link-local (cloud metadata) addresses are dropped on the way out;
/// the rules leave with the lease.
#[tokio::test]
async fn a_lease_cannot_reach_the_host_or_metadata_addresses() {
    if !docker_available() {
        return;
    }
    build_image();
    let runner =
        DockerRunner::connect("tg1testprovider", "127.0.0.1").await.expect("Docker Engine is reachable");
    assert_eq!(runner.firewall_unavailable(), None, "the test host lets the runner manage iptables");
    let host = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = host.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in host.incoming().flatten() {
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\n\r\nhost-secret\n");
        }
    });
    let lease = format!("t{}-fw", std::process::id());
    // The metadata address as clouds serve it, here on the host itself (as a metadata proxy would be).
    let metadata = Command::new("ip").args(["addr", "add", "169.254.169.254/32", "dev", "lo"]).status();
    let metadata = metadata.is_ok_and(|s| s.success());
    let script = format!(
        "GW=$(/bin/busybox ip route | /bin/busybox awk '/default/ {{print $3}}'); \
         printf 'GET / HTTP/1.0\r\n\r\n' | /bin/busybox nc -w 3 169.254.169.254 {port}; echo metadata-rc=$?; \
         printf 'GET / HTTP/1.0\r\n\r\n' | /bin/busybox nc -w 3 $GW {port}; echo reached-rc=$?; \
         exec /bin/busybox sleep 600"
    );
    let group = ManifestGroup { name: "fw".into(), services: vec![service("fw", &script, Some(8080))] };
    runner.start(&lease, &group).await.expect("the lease starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let logs = loop {
        let logs = runner.logs(&lease, 20).await.unwrap();
        if logs.contains("reached-rc=") {
            break logs;
        }
        assert!(Instant::now() < deadline, "the probe never finished: {logs}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    if metadata {
        let _ = Command::new("ip").args(["addr", "del", "169.254.169.254/32", "dev", "lo"]).status();
    }
    assert!(!logs.contains("host-secret"), "the lease reached the host or 169.254.169.254: {logs}");
    assert!(logs.contains("metadata-rc=1") && logs.contains("reached-rc=1"), "{logs}");
    let bridge = {
        let id = inspect(&format!("tg-{lease}"), "{{.Id}}");
        format!("br-{}", &id[..12])
    };
    let rule = |verb: &str| {
        Command::new("iptables")
            .args(["-w", verb, "FORWARD", "-i", &bridge, "-d", "169.254.0.0/16", "-j", "DROP"])
            .status()
            .unwrap()
            .success()
    };
    assert!(rule("-C"), "link-local addresses are dropped from {bridge}");
    // Lost rules (a firewall reload) come back at the next round of enforcement.
    assert!(rule("-D"));
    runner.enforce().await.unwrap();
    assert!(rule("-C"), "the rule is back");
    runner.stop(&lease).await.unwrap();
    assert!(!rule("-C"), "the rules leave with the lease");
}

/// An operator who chooses read-only roots gets them: the service writes to `/tmp` but not to `/`.
#[tokio::test]
async fn a_read_only_root_lets_a_service_write_scratch_only() {
    if !docker_available() {
        return;
    }
    build_image();
    let runner = DockerRunner::connect("tg1testprovider", "127.0.0.1")
        .await
        .expect("Docker Engine is reachable")
        .with_read_only_root(true);
    let lease = format!("t{}-ro", std::process::id());
    let script = "/bin/busybox touch /tmp/ok && echo tmp-writable; /bin/busybox touch /root-file || echo root-read-only; exec /bin/busybox sleep 600";
    let group = ManifestGroup { name: "ro".into(), services: vec![service("ro", script, None)] };
    runner.start(&lease, &group).await.expect("the lease starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let logs = loop {
        let logs = runner.logs(&lease, 20).await.unwrap();
        if logs.contains("root-read-only") {
            break logs;
        }
        assert!(Instant::now() < deadline, "no output: {logs}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(logs.contains("tmp-writable") && logs.contains("root-read-only"), "{logs}");
    assert_eq!(inspect(&format!("tg-{lease}-ro-0"), "{{.HostConfig.ReadonlyRootfs}}"), "true");
    runner.stop(&lease).await.unwrap();
}

#[tokio::test]
async fn a_missing_image_or_gpu_is_refused_with_a_reason_and_leaves_nothing_behind() {
    if !docker_available() {
        return;
    }
    let runner =
        DockerRunner::connect("tg1testprovider", "127.0.0.1").await.expect("Docker Engine is reachable");
    let lease = format!("t{}-3", std::process::id());
    let mut missing = service("app", "true", None);
    missing.image = "tgrid-test/no-such-image:0".into();
    let group = ManifestGroup { name: "g".into(), services: vec![missing] };
    let err = runner.start(&lease, &group).await.unwrap_err().to_string();
    assert!(err.contains("tgrid-test/no-such-image:0"), "{err}");
    assert!(runner.status(&lease).await.unwrap().is_empty());
}
