//! Every community-written Akash manifest in the shared fixtures either maps, or is rejected with an error
//! that names the file, the line and the field and says why.

use std::path::PathBuf;

use tensorgrid_sdl::{parse, SdlError, SdlOptions};

fn fixtures() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/akash-sdl");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the Akash SDL fixtures belong in {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_fixture_maps_or_is_rejected_with_a_located_reason() {
    let files = fixtures();
    assert!(files.len() >= 230, "expected the 230 community manifests, found {}", files.len());
    let (mut mapped, mut rejected, mut warnings) = (0, 0, 0);
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(path).unwrap();
        match parse(&name, &text, &SdlOptions::default()) {
            Ok(m) => {
                mapped += 1;
                warnings += m.warnings.len();
                assert!(!m.deployment.groups.is_empty(), "{name} mapped to nothing");
                // What providers will run fits what the chain prices, as providers check before starting it.
                for (group, spec) in m.deployment.manifest.iter().zip(&m.deployment.groups) {
                    assert_eq!(
                        group.fits(spec),
                        Ok(()),
                        "{name}: group {} runs more than it pays for",
                        spec.name
                    );
                }
                for w in &m.warnings {
                    assert!(w.line > 0 && !w.field.is_empty(), "{name}: warning without a place: {w}");
                }
            }
            Err(e) => {
                rejected += 1;
                let d = e.diagnostic();
                assert_eq!(d.file, name);
                assert!(d.line > 0, "{name}: error without a line: {e}");
                assert!(!d.message.is_empty());
                if matches!(e, SdlError::Invalid(_)) {
                    assert!(!d.field.is_empty(), "{name}: error without a field: {e}");
                }
                println!("rejected {e}");
            }
        }
    }
    println!("{} manifests: {mapped} mapped ({warnings} warnings), {rejected} rejected", files.len());
    assert_eq!(mapped + rejected, files.len());
}
