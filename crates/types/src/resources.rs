//! What a workload needs and what a provider offers: compute resources in exact integer units, plus
//! free-form key/value attributes for placement (region, tier, GPU vendor, ...).

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::crypto::Address;
use crate::limits::{self, Malformed};

/// A key/value attribute, e.g. `region=eu-west` or `capabilities/gpu/vendor/nvidia/model/a100=true`.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct Attribute {
    pub key: String,
    pub value: String,
}

impl Attribute {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Attribute { key: key.into(), value: value.into() }
    }
}

/// A storage volume: ephemeral or persistent, with an optional class (e.g. `beta3`, `ssd`).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Storage {
    pub name: String,
    pub bytes: u64,
    #[serde(default)]
    pub persistent: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
}

/// One acceptable GPU model. Empty model means "any model of this vendor".
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct GpuModel {
    pub vendor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Video memory in bytes, when the workload requires a specific size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vram_bytes: Option<u64>,
    /// Interconnect, e.g. `pcie` or `sxm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

/// GPU needs: how many units, and which models are acceptable (any of them).
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Gpu {
    pub units: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<GpuModel>,
}

/// The resources of one instance of a service.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ResourceUnits {
    /// Thousandths of a CPU core: `500` is half a core.
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage: Vec<Storage>,
    #[serde(default)]
    pub gpu: Gpu,
}

/// `count` identical instances with the given resources.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ResourceUnit {
    pub resources: ResourceUnits,
    pub count: u32,
}

/// Which providers may serve a group: all attributes must match exactly, and (checked by providers' bid
/// engines, since auditing lives off-chain for now) the listed auditors must have signed the provider's
/// attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct PlacementRequirements {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<Attribute>,
    #[serde(default)]
    pub signed_by: SignedBy,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedBy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub all_of: Vec<Address>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub any_of: Vec<Address>,
}

impl PlacementRequirements {
    /// The first required attribute the provider lacks, if any.
    pub fn first_unmet<'a>(&'a self, offered: &[Attribute]) -> Option<&'a Attribute> {
        self.attributes.iter().find(|want| !offered.iter().any(|have| have == *want))
    }
}

impl ResourceUnits {
    pub(crate) fn validate(&self, field: &str) -> Result<(), Malformed> {
        if self.cpu_millis == 0 {
            return Err(Malformed::new(
                format!("{field}.cpu_millis"),
                "must be at least 1 (a thousandth of a core)",
            ));
        }
        if self.memory_bytes == 0 {
            return Err(Malformed::new(format!("{field}.memory_bytes"), "must be at least 1 byte"));
        }
        limits::check_len(&format!("{field}.storage"), self.storage.len(), limits::MAX_STORAGE_VOLUMES)?;
        for (i, s) in self.storage.iter().enumerate() {
            limits::check_name(&format!("{field}.storage[{i}].name"), &s.name)?;
            if let Some(class) = &s.class {
                limits::check_str(&format!("{field}.storage[{i}].class"), class, limits::MAX_NAME_LEN)?;
            }
        }
        limits::check_len(&format!("{field}.gpu.models"), self.gpu.models.len(), limits::MAX_GPU_MODELS)?;
        if self.gpu.units == 0 && !self.gpu.models.is_empty() {
            return Err(Malformed::new(format!("{field}.gpu.models"), "lists models but gpu.units is 0"));
        }
        for (i, m) in self.gpu.models.iter().enumerate() {
            limits::check_str(&format!("{field}.gpu.models[{i}].vendor"), &m.vendor, limits::MAX_NAME_LEN)?;
            if let Some(model) = &m.model {
                limits::check_str(&format!("{field}.gpu.models[{i}].model"), model, limits::MAX_NAME_LEN)?;
            }
            if let Some(interface) = &m.interface {
                limits::check_str(
                    &format!("{field}.gpu.models[{i}].interface"),
                    interface,
                    limits::MAX_NAME_LEN,
                )?;
            }
        }
        Ok(())
    }
}

pub(crate) fn validate_attributes(field: &str, attributes: &[Attribute]) -> Result<(), Malformed> {
    limits::check_len(field, attributes.len(), limits::MAX_ATTRIBUTES)?;
    for (i, a) in attributes.iter().enumerate() {
        if a.key.is_empty() {
            return Err(Malformed::new(format!("{field}[{i}].key"), "is empty"));
        }
        limits::check_str(&format!("{field}[{i}].key"), &a.key, limits::MAX_ATTRIBUTE_KEY_LEN)?;
        limits::check_str(&format!("{field}[{i}].value"), &a.value, limits::MAX_ATTRIBUTE_VALUE_LEN)?;
    }
    Ok(())
}
