//! Exact mappings, and one test per way a manifest can be wrong.

use tensorgrid_sdl::{parse, Rate, SdlError, SdlOptions};
use tensorgrid_types::manifest::Protocol;
use tensorgrid_types::resources::GpuModel;
use tensorgrid_types::Amount;

const AUTOMATIC1111: &str = r#"---
version: "2.0"
services:
  app:
    image: declab/automatic1111:0.1
    env:
      - "COMMANDLINE_ARGS=--listen --port=8080 --no-half"
      - "LINK_MODEL="
    expose:
      - port: 8080
        to:
          - global: true
profiles:
  compute:
    app:
      resources:
        cpu:
          units: 16.0
        memory:
          size: 35Gi
        gpu:
          units: 1
          attributes:
            vendor:
              nvidia:
        storage:
          size: 50Gi
  placement:
    akash:
      pricing:
        app:
          denom: uact
          amount: 10000
deployment:
  app:
    akash:
      profile: app
      count: 1
"#;

fn map(text: &str) -> tensorgrid_sdl::Mapped {
    parse("test.yaml", text, &SdlOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn reject(text: &str) -> SdlError {
    match parse("test.yaml", text, &SdlOptions::default()) {
        Ok(m) => panic!("expected an error, mapped {:?}", m.deployment.groups),
        Err(e) => e,
    }
}

#[test]
fn a_gpu_manifest_maps_exactly() {
    let m = map(AUTOMATIC1111);
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let [group] = m.deployment.groups.as_slice() else { panic!() };
    assert_eq!(group.name, "akash");
    // 10000 uact per block × (3 600 000 ms / 6 100 ms per block) = 5 901 639.3… → 5 901 639 utgr per hour.
    assert_eq!(group.max_price, Amount(5_901_639));
    let [unit] = group.resources.as_slice() else { panic!() };
    assert_eq!(unit.count, 1);
    assert_eq!(unit.resources.cpu_millis, 16_000);
    assert_eq!(unit.resources.memory_bytes, 35 << 30);
    assert_eq!(unit.resources.storage[0].name, "default");
    assert_eq!(unit.resources.storage[0].bytes, 50 << 30);
    assert_eq!(unit.resources.gpu.units, 1);
    assert_eq!(
        unit.resources.gpu.models,
        vec![GpuModel { vendor: "nvidia".into(), model: None, vram_bytes: None, interface: None }]
    );
    let service = &m.deployment.manifest[0].services[0];
    assert_eq!(service.image, "declab/automatic1111:0.1");
    assert_eq!(service.env, vec!["COMMANDLINE_ARGS=--listen --port=8080 --no-half", "LINK_MODEL="]);
    let expose = &service.expose[0];
    assert_eq!(
        (expose.port, expose.external_port, expose.proto, expose.global),
        (8080, 8080, Protocol::Tcp, true)
    );
    // The hash is a function of the mapping: stable, and sensitive to what providers run.
    assert_eq!(m.manifest_hash, map(AUTOMATIC1111).manifest_hash);
    let changed = map(&AUTOMATIC1111.replace("LINK_MODEL=", "LINK_MODEL=x"));
    assert_ne!(m.manifest_hash, changed.manifest_hash);
}

const TWO_PLACEMENTS: &str = r#"
version: "2.0"
services:
  web:
    image: nginx:1.27
    command: ["nginx"]
    args: ["-g", "daemon off;"]
    expose:
      - port: 80
        as: 8080
        accept: [example.org]
        to:
          - global: true
      - port: 53
        proto: UDP
        to:
          - service: db
    params:
      storage:
        data:
          mount: /var/www
          readOnly: true
  db:
    image: postgres:16
profiles:
  compute:
    small:
      resources:
        cpu: { units: 500m }
        memory: { size: 512Mi }
        storage:
          - size: 1Gi
          - name: data
            size: 10G
            attributes: { persistent: true, class: beta3 }
    gpu:
      resources:
        cpu: { units: 2 }
        memory: { size: 8Gi }
        gpu:
          units: 2
          attributes:
            vendor:
              nvidia:
                - model: a100
                  ram: 80Gi
                  interface: sxm
                - model: h100
  placement:
    west:
      attributes: { region: us-west, tier: community }
      pricing:
        small: { denom: uakt, amount: 100 }
        gpu: { denom: uakt, amount: "1000.5" }
    east:
      pricing:
        small: { denom: uact, amount: 61 }
deployment:
  web:
    west: { profile: small, count: 3 }
  db:
    east: { profile: small }
    west: { profile: gpu, count: 1 }
"#;

#[test]
fn groups_follow_placements_and_prices_sum_over_counts() {
    let m = map(TWO_PLACEMENTS);
    let names: Vec<&str> = m.deployment.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["east", "west"], "groups are sorted by placement name");
    let (east, west) = (&m.deployment.groups[0], &m.deployment.groups[1]);
    // 61 uact/block → ⌊61 × 3600000 / 6100⌋ = 36 000 utgr/h.
    assert_eq!(east.max_price, Amount(36_000));
    // 3 × ⌊100 × 3600000/6100⌋ + ⌊1000.5 × 3600000/6100⌋ = 3 × 59 016 + 590 459.
    assert_eq!(west.max_price, Amount(3 * 59_016 + 590_459));
    assert_eq!(west.requirements.attributes.len(), 2);
    let units: Vec<(u64, u32)> = west.resources.iter().map(|u| (u.resources.cpu_millis, u.count)).collect();
    assert_eq!(units, [(500, 3), (2000, 1)]);
    let gpu = &west.resources[1].resources.gpu;
    assert_eq!(gpu.units, 2);
    assert_eq!(gpu.models[0].vram_bytes, Some(80 << 30));
    assert_eq!(gpu.models[0].interface.as_deref(), Some("sxm"));
    assert_eq!(gpu.models[1].model.as_deref(), Some("h100"));
    let storage = &west.resources[0].resources.storage;
    assert_eq!(
        (storage[1].name.as_str(), storage[1].bytes, storage[1].persistent),
        ("data", 10_000_000_000, true)
    );

    let web = m.deployment.manifest[1].services.iter().find(|s| s.name == "web").unwrap();
    assert_eq!(
        (web.command.clone(), web.args.clone()),
        (vec!["nginx".to_string()], vec!["-g".to_string(), "daemon off;".to_string()])
    );
    assert_eq!(
        (web.expose[0].external_port, web.expose[0].hosts.clone()),
        (8080, vec!["example.org".to_string()])
    );
    assert_eq!(
        (web.expose[1].proto, web.expose[1].global, web.expose[1].services.clone()),
        (Protocol::Udp, false, vec!["db".to_string()])
    );
    assert_eq!((web.mounts[0].path.as_str(), web.mounts[0].read_only), ("/var/www", true));
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
}

#[test]
fn rates_and_block_time_are_configurable() {
    let options =
        SdlOptions { block_time_ms: 6_000, utgr_per_uakt: Rate { num: 2, den: 1 }, ..SdlOptions::default() };
    let m = parse("t.yaml", TWO_PLACEMENTS, &options).unwrap();
    // 61 uact at 6 s per block: 61 × 600 = 36 600; uakt doubles: 3 × 2 × 60 000 + 2 × 600 300.
    assert_eq!(m.deployment.groups[0].max_price, Amount(36_600));
    assert_eq!(m.deployment.groups[1].max_price, Amount(3 * 120_000 + 1_200_600));
}

/// (what to change in AUTOMATIC1111, the field the error must name, a phrase its message must contain)
const BROKEN: &[(&str, &str, &str, &str)] = &[
    ("version: \"2.0\"", "version: \"3.0\"", "version", "not supported"),
    ("profile: app", "profile: big", "deployment.app.akash.profile", "`big` is not defined"),
    ("  app:\n    akash:", "  app:\n    azure:", "deployment.app.azure", "placement `azure` is not defined"),
    (
        "  app:\n    akash:\n      profile",
        "  site:\n    akash:\n      profile",
        "deployment.site",
        "does not define",
    ),
    (
        "        app:\n          denom",
        "        other:\n          denom",
        "profiles.placement.akash.pricing",
        "no price for profile `app`",
    ),
    (
        "denom: uact",
        "denom: uatom",
        "profiles.placement.akash.pricing.app.denom",
        "`uatom` cannot be converted",
    ),
    (
        "amount: 10000",
        "amount: -5",
        "profiles.placement.akash.pricing.app.amount",
        "not a non-negative number",
    ),
    (
        "amount: 10000",
        "amount: 0.0001",
        "profiles.placement.akash.pricing.app.amount",
        "less than 1 utgr per hour",
    ),
    ("count: 1", "count: 0", "deployment.app.akash.count", "between 1 and"),
    ("units: 16.0", "units: 0", "profiles.compute.app.resources.cpu.units", "is zero"),
    ("size: 35Gi", "size: 35GB", "profiles.compute.app.resources.memory.size", "did you mean `35Gi`"),
    ("size: 50Gi", "size: fifty", "profiles.compute.app.resources.storage.size", "not a storage size"),
    ("- port: 8080", "- port: 80800", "services.app.expose[0].port", "between 1 and 65535"),
    (
        "            vendor:\n              nvidia:\n",
        "            vendor: [nvidia]\n",
        "profiles.compute.app.resources.gpu.attributes.vendor",
        "must be a mapping",
    ),
    ("    image: declab/automatic1111:0.1\n", "", "services.app.image", "required"),
    ("    env:\n", "    env: yes\n", "services.app.env", "list of strings"),
];

#[test]
fn each_mistake_is_named_with_its_field() {
    for (from, to, field, phrase) in BROKEN {
        assert!(AUTOMATIC1111.contains(from), "fixture lacks {from:?}");
        let text = AUTOMATIC1111.replacen(from, to, 1);
        let e = reject(&text);
        let d = e.diagnostic();
        assert_eq!(d.field, *field, "for {to:?}: {e}");
        assert!(d.message.contains(phrase), "for {to:?}: {e}");
        assert!(d.line > 0, "{e}");
        assert!(e.to_string().starts_with("test.yaml:"), "{e}");
    }
}

#[test]
fn gpu_units_need_a_vendor_and_mounts_need_a_volume() {
    let e = reject(
        &AUTOMATIC1111.replace("          attributes:\n            vendor:\n              nvidia:\n", ""),
    );
    assert!(e.diagnostic().message.contains("need a vendor"), "{e}");
    let with_mount = AUTOMATIC1111.replace(
        "    expose:",
        "    params:\n      storage:\n        cache:\n          mount: /cache\n    expose:",
    );
    let e = reject(&with_mount);
    assert_eq!(e.diagnostic().field, "services.app.params.storage.cache");
    assert!(e.diagnostic().message.contains("profile `app` has only: default"), "{e}");
}

#[test]
fn yaml_errors_and_duplicate_keys_are_rejected_with_a_position() {
    let e = reject("version: \"2.0\"\nservices: [\n");
    assert!(matches!(e, SdlError::Yaml(_)));
    assert!(e.diagnostic().line > 0, "{e}");
    let e = reject(&AUTOMATIC1111.replace("      count: 1\n", "      count: 1\n      count: 2\n"));
    assert!(matches!(e, SdlError::Yaml(_)), "{e}");
    assert!(e.to_string().to_lowercase().contains("duplicate"), "{e}");
}

#[test]
fn what_is_not_supported_is_a_warning_and_the_rest_maps() {
    let text = AUTOMATIC1111
        .replace("    image: declab", "    restart: always\n    imgae: typo\n    image: declab")
        .replace("          - global: true", "          - global: true\n          - ip: myip")
        .replace(
            "      pricing:",
            "      signedBy:\n        anyOf:\n          - akash1365yvmc4s7awdyj3n2sav7xfx76adc6dnmlx63\n      pricing:",
        );
    let m = map(&text);
    let fields: Vec<&str> = m.warnings.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "services.app.restart",
            "services.app.imgae",
            "services.app.expose[0].to[1].ip",
            "profiles.placement.akash.signedBy.anyOf[0]"
        ]
    );
    assert!(m.warnings[0].message.contains("docker-compose"));
    assert!(m.warnings[1].message.contains("did you mean `image`?"));
    assert!(m.deployment.groups[0].requirements.signed_by.any_of.is_empty());
}
