//! What this machine has: CPU cores, memory and disk from the operating system, and NVIDIA GPUs through NVML
//! when the host has NVIDIA's management library (loaded at run time; without it the GPU list is empty). What
//! active work has reserved is subtracted before the bid engine sees it.

use std::path::Path;

pub use tensorgrid_provider_core::capacity::{Capacity, GpuInfo, Reservation};

/// Reads the operating system's view, with storage measured where `work_dir` lives.
pub fn detect(work_dir: &Path) -> Capacity {
    // If the operating system will not say, the provider offers what it can vouch for: the cores the
    // process may use, and no memory or storage (so it bids on nothing that needs them) — and says so.
    let cores = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
    let memory_bytes = match sysinfo::System::new() {
        Ok(mut system) => {
            system.refresh_memory();
            system.total_memory()
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the machine's memory; offering none");
            0
        }
    };
    let storage_bytes = match sysinfo::Disks::new_with_refreshed_list() {
        // The disk whose mount point is the longest prefix of the work directory holds it.
        Ok(disks) => disks
            .iter()
            .filter(|d| work_dir.starts_with(d.mount_point()))
            .max_by_key(|d| d.mount_point().as_os_str().len())
            .map(|d| d.available_space())
            .unwrap_or(0),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the machine's disks; offering no storage");
            0
        }
    };
    Capacity { cpu_millis: cores * 1000, memory_bytes, storage_bytes, gpus: detect_gpus() }
}

/// NVIDIA GPUs through NVML, or none when the library or a driver is missing.
#[cfg(feature = "nvml")]
fn detect_gpus() -> Vec<GpuInfo> {
    let nvml = match nvml_wrapper::Nvml::init() {
        Ok(nvml) => nvml,
        Err(e) => {
            tracing::info!(reason = %e, "no NVML on this host; offering no GPUs");
            return Vec::new();
        }
    };
    let count = nvml.device_count().unwrap_or(0);
    let mut gpus = Vec::new();
    for index in 0..count {
        let Ok(device) = nvml.device_by_index(index) else { continue };
        let name = device.name().unwrap_or_default();
        let vram_bytes = device.memory_info().map(|m| m.total).unwrap_or(0);
        gpus.push(GpuInfo { vendor: "nvidia".into(), model: model_of(&name), vram_bytes });
    }
    gpus
}

#[cfg(not(feature = "nvml"))]
fn detect_gpus() -> Vec<GpuInfo> {
    Vec::new()
}

/// An NVIDIA product name as Akash's GPU attributes spell models: `NVIDIA H100 80GB HBM3` → `h100`,
/// `NVIDIA GeForce RTX 4090` → `rtx4090`, `Tesla T4` → `t4`.
pub fn model_of(name: &str) -> String {
    let words: Vec<String> = name
        .split_whitespace()
        .filter(|w| !matches!(w.to_ascii_lowercase().as_str(), "nvidia" | "geforce" | "tesla" | "quadro"))
        .map(str::to_ascii_lowercase)
        .collect();
    match words.as_slice() {
        [] => "unknown".into(),
        // A series word (`RTX`, `GTX`) goes with the number after it.
        [series, number, ..]
            if series.chars().all(|c| c.is_ascii_alphabetic())
                && number.chars().next().is_some_and(|c| c.is_ascii_digit()) =>
        {
            format!("{series}{number}")
        }
        // `A100-SXM4-80GB`: the model is what comes before the form factor.
        [first, ..] => first.split('-').next().unwrap_or(first).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use tensorgrid_types::resources::ResourceUnits;

    use super::*;

    #[test]
    fn gpu_names_become_akash_style_models() {
        assert_eq!(model_of("NVIDIA H100 80GB HBM3"), "h100");
        assert_eq!(model_of("NVIDIA GeForce RTX 4090"), "rtx4090");
        assert_eq!(model_of("Tesla T4"), "t4");
        assert_eq!(model_of("NVIDIA A100-SXM4-80GB"), "a100");
        assert_eq!(model_of(""), "unknown");
    }

    #[test]
    fn the_machine_has_something_and_reservations_come_off_it() {
        let capacity = detect(&std::env::temp_dir());
        assert!(capacity.cpu_millis >= 1000);
        assert!(capacity.memory_bytes > 0);
        let mut reserved = Reservation::default();
        let units = ResourceUnits { cpu_millis: 500, memory_bytes: 1 << 20, ..ResourceUnits::default() };
        reserved.add(&units, 2);
        assert_eq!(reserved.cpu_millis, 1000);
        let left = capacity.minus(&reserved);
        assert_eq!(left.cpu_millis, capacity.cpu_millis - 1000);
        assert!(reserved.fits(&capacity).is_ok());
        reserved.gpus = 1;
        assert!(reserved.fits(&capacity).unwrap_err().contains("GPUs"));
    }
}
