//! The chain's starting state. The sum of the genesis balances is the total supply, forever (until epoch
//! rewards exist).

use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::crypto::Address;
use crate::params::Params;
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisAccount {
    pub address: Address,
    pub balance: Amount,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    pub chain_id: String,
    pub genesis_time: Timestamp,
    #[serde(default)]
    pub params: Params,
    pub accounts: Vec<GenesisAccount>,
}
