//! Size limits on transaction fields. They are part of the wire format (every node must agree on them
//! without reading state), so they are constants, not params. A field over its limit makes the transaction
//! malformed: it is refused at admission and changes nothing.

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

pub const MAX_CHAIN_ID_LEN: usize = 64;
pub const MAX_MEMO_LEN: usize = 256;
pub const MAX_URI_LEN: usize = 256;
pub const MAX_NAME_LEN: usize = 64;
pub const MAX_INFO_LEN: usize = 128;
pub const MAX_ATTRIBUTES: usize = 32;
pub const MAX_ATTRIBUTE_KEY_LEN: usize = 128;
pub const MAX_ATTRIBUTE_VALUE_LEN: usize = 128;
pub const MAX_STORAGE_VOLUMES: usize = 8;
pub const MAX_GPU_MODELS: usize = 16;
pub const MAX_AUDITORS: usize = 8;
pub const MAX_GROUPS: usize = 20;
pub const MAX_RESOURCE_UNITS: usize = 16;
pub const MAX_UNIT_COUNT: u32 = 1_000;
pub const MAX_JOB_INPUTS: usize = 64;
pub const MAX_JOB_ARGS: usize = 32;
pub const MAX_JOB_ARG_LEN: usize = 256;
pub const MAX_RUNTIMES: usize = 8;

/// A field that breaks the wire rules: which field, and why.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Malformed {
    pub field: String,
    pub reason: String,
}

impl Malformed {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Malformed { field: field.into(), reason: reason.into() }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

pub(crate) fn check_len(field: &str, len: usize, max: usize) -> Result<(), Malformed> {
    if len > max {
        Err(Malformed::new(field, format!("has {len} entries; at most {max} are allowed")))
    } else {
        Ok(())
    }
}

pub(crate) fn check_str(field: &str, value: &str, max: usize) -> Result<(), Malformed> {
    if value.len() > max {
        return Err(Malformed::new(
            field,
            format!("is {} bytes long; at most {max} are allowed", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Malformed::new(field, "contains control characters"));
    }
    Ok(())
}

/// Names (groups, volumes) are non-empty and limited to `[A-Za-z0-9._-]`, so they are safe in paths and URLs.
pub fn check_name(field: &str, value: &str) -> Result<(), Malformed> {
    if value.is_empty() {
        return Err(Malformed::new(field, "is empty"));
    }
    check_str(field, value, MAX_NAME_LEN)?;
    if let Some(c) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(Malformed::new(field, format!("contains `{c}`; use letters, digits, `.`, `_` and `-`")));
    }
    Ok(())
}
