//! The binary as a user runs it: exit codes, text and JSON output.

use std::path::PathBuf;
use std::process::Command;

fn tgrid(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tgrid")).args(args).output().expect("tgrid runs")
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/akash-sdl")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn deploy_check_maps_a_manifest_and_prints_json() {
    let out = tgrid(&["deploy", "check", "--output", "json", &fixture("AUTOMATIC1111.yaml")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let group = &json["deployment"]["groups"][0];
    assert_eq!(group["name"], "akash");
    assert_eq!(group["max_price"], "5901639");
    assert_eq!(json["deployment"]["manifest"][0]["services"][0]["image"], "declab/automatic1111:0.1");
    assert_eq!(json["manifest_hash"].as_str().map(str::len), Some(64));
}

#[test]
fn deploy_check_rejects_with_file_line_field_and_exit_code_1() {
    let out = tgrid(&["deploy", "check", &fixture("centrifuge.yaml")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("centrifuge.yaml:50:17: profiles.compute.centrifuge.resources.memory.size"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `16Gi`?"), "{stderr}");

    let out = tgrid(&["deploy", "check", "--output", "json", &fixture("minio.yaml")]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(json["error"]["field"], "services.minio.expose[0].to");
    assert_eq!(json["error"]["line"], 12);

    let out = tgrid(&["deploy", "check", "no-such-file.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read no-such-file.yaml"));
}

#[test]
fn sim_tells_the_story_and_keeps_the_supply() {
    let out = tgrid(&["sim", "--seed", "3"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("job 1 completes"), "{text}");
    assert!(text.contains("escrow overdrawn"), "{text}");
    assert!(text.contains("total supply 10000 TGR (unchanged since genesis)"), "{text}");
    let out = tgrid(&["sim", "--seed", "3", "--output", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(json["total_supply"], "10000000000");
}
