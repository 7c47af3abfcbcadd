//! The book of leases this provider serves: what each holds of the machine, where it is (waiting for the
//! tenant's manifest, starting, running, failed), when a manifest that never came closes it, and when
//! earnings are collected. Containers themselves are the interpreter's: it starts them when a manifest it
//! checked arrives and reports how that went; the core asks it to stop them when the chain closes the lease.

use tensorgrid_types::market::GroupSpec;
use tensorgrid_types::provider_api::LeaseRunState;

/// A lease to this provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseEntry {
    /// The order's group as the chain has it: what the lease pays for and holds.
    pub spec: GroupSpec,
    pub state: LeaseRunState,
    /// A close for a missing manifest is on its way.
    pub(crate) closing: bool,
}
