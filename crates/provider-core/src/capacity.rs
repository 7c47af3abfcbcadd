//! What a provider has and what its work holds: the machine's capacity (as the inventory found it) and the
//! reservations of running leases and jobs, which the bid engine subtracts before it decides.

use serde::Serialize;
use tensorgrid_types::resources::{Attribute, ResourceUnits};

/// A GPU the inventory found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GpuInfo {
    pub vendor: String,
    pub model: String,
    pub vram_bytes: u64,
}

/// The machine's capacity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Capacity {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    /// Free space on the file system of the work directory.
    pub storage_bytes: u64,
    pub gpus: Vec<GpuInfo>,
}

impl Capacity {
    /// What is left after `reserved`.
    pub fn minus(&self, reserved: &Reservation) -> Capacity {
        Capacity {
            cpu_millis: self.cpu_millis.saturating_sub(reserved.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(reserved.memory_bytes),
            storage_bytes: self.storage_bytes.saturating_sub(reserved.storage_bytes),
            gpus: self.gpus.iter().skip(reserved.gpus as usize).cloned().collect(),
        }
    }

    /// Attributes describing the machine, in Akash's `capabilities/…` style, offered alongside the
    /// operator's own.
    pub fn attributes(&self) -> Vec<Attribute> {
        let mut out = vec![
            Attribute::new("capabilities/cpu/cores", (self.cpu_millis / 1000).to_string()),
            Attribute::new("capabilities/memory/gib", (self.memory_bytes >> 30).to_string()),
        ];
        for gpu in &self.gpus {
            out.push(Attribute::new(
                format!("capabilities/gpu/vendor/{}/model/{}", gpu.vendor, gpu.model),
                "true",
            ));
        }
        out
    }
}

/// Resources set aside for work in progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Reservation {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub storage_bytes: u64,
    pub gpus: u32,
}

impl Reservation {
    pub fn add(&mut self, units: &ResourceUnits, count: u32) {
        let count = u64::from(count);
        self.cpu_millis = self.cpu_millis.saturating_add(units.cpu_millis.saturating_mul(count));
        self.memory_bytes = self.memory_bytes.saturating_add(units.memory_bytes.saturating_mul(count));
        let storage: u64 = units.storage.iter().map(|s| s.bytes).sum();
        self.storage_bytes = self.storage_bytes.saturating_add(storage.saturating_mul(count));
        self.gpus = self.gpus.saturating_add(units.gpu.units.saturating_mul(count as u32));
    }

    pub fn remove(&mut self, units: &ResourceUnits, count: u32) {
        let count = u64::from(count);
        self.cpu_millis = self.cpu_millis.saturating_sub(units.cpu_millis.saturating_mul(count));
        self.memory_bytes = self.memory_bytes.saturating_sub(units.memory_bytes.saturating_mul(count));
        let storage: u64 = units.storage.iter().map(|s| s.bytes).sum();
        self.storage_bytes = self.storage_bytes.saturating_sub(storage.saturating_mul(count));
        self.gpus = self.gpus.saturating_sub(units.gpu.units.saturating_mul(count as u32));
    }

    /// Every unit of an order's group, as many times as it asks.
    pub fn add_group(&mut self, group: &tensorgrid_types::market::GroupSpec) {
        for unit in &group.resources {
            self.add(&unit.resources, unit.count);
        }
    }

    pub fn remove_group(&mut self, group: &tensorgrid_types::market::GroupSpec) {
        for unit in &group.resources {
            self.remove(&unit.resources, unit.count);
        }
    }

    /// Whether this much fits in `capacity`.
    pub fn fits(&self, capacity: &Capacity) -> Result<(), String> {
        if self.cpu_millis > capacity.cpu_millis {
            return Err(format!("needs {} mCPU, {} free", self.cpu_millis, capacity.cpu_millis));
        }
        if self.memory_bytes > capacity.memory_bytes {
            return Err(format!(
                "needs {} MiB memory, {} MiB free",
                self.memory_bytes >> 20,
                capacity.memory_bytes >> 20
            ));
        }
        if self.storage_bytes > capacity.storage_bytes {
            return Err(format!(
                "needs {} MiB storage, {} MiB free",
                self.storage_bytes >> 20,
                capacity.storage_bytes >> 20
            ));
        }
        if self.gpus as usize > capacity.gpus.len() {
            return Err(format!("needs {} GPUs, {} free", self.gpus, capacity.gpus.len()));
        }
        Ok(())
    }
}
