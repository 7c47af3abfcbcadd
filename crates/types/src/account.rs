use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::amount::Amount;

/// An account exists once it has received funds. Its nonce counts the transactions it has had admitted.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Account {
    pub balance: Amount,
    /// The nonce the account's next transaction must carry.
    pub nonce: u64,
}
