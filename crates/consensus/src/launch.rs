//! Launchers: the one-validator devnet and the N-validator local testnet, as validator homes that
//! [`crate::node::run`] serves.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use tensorgrid_types::{Genesis, GenesisAccount, Params};

use crate::node::{
    public_key_of_seed, ChainSpec, GenesisValidator, Home, NodeConfig, NodeError, Peer,
    DEFAULT_BLOCKS_PER_EPOCH,
};

/// Default devnet ports: p2p, then the API.
pub const DEVNET_P2P_PORT: u16 = 26656;
pub const DEVNET_RPC_PORT: u16 = 26657;

fn local(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

fn random_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    seed
}

/// The chain spec of a new local chain: `accounts` funded, `validators` named `validator-0…` with the given
/// consensus seeds.
pub fn local_spec(
    chain_id: &str,
    accounts: Vec<GenesisAccount>,
    seeds: &[[u8; 32]],
    blocks_per_epoch: u64,
) -> ChainSpec {
    ChainSpec {
        genesis: Genesis {
            chain_id: chain_id.into(),
            genesis_time: tensorgrid_node::wall_clock(),
            params: Params::default(),
            accounts,
        },
        validators: seeds
            .iter()
            .enumerate()
            .map(|(i, seed)| GenesisValidator {
                name: format!("validator-{i}"),
                consensus_key: public_key_of_seed(*seed),
            })
            .collect(),
        blocks_per_epoch,
    }
}

/// Writes a one-validator devnet home in `dir` with `params` unless one is there already (whose own genesis
/// then stands); returns whether it was new.
pub fn prepare_devnet(
    dir: &Path,
    accounts: Vec<GenesisAccount>,
    params: Params,
    p2p_port: u16,
    rpc_port: u16,
) -> Result<bool, NodeError> {
    if dir.join("genesis.json").exists() {
        Home::load(dir)?;
        return Ok(false);
    }
    let seed = random_seed();
    let mut spec = local_spec("tg-devnet", accounts, &[seed], DEFAULT_BLOCKS_PER_EPOCH);
    spec.genesis.params = params;
    let config = NodeConfig {
        name: "validator-0".into(),
        p2p_listen: local(p2p_port),
        rpc_listen: local(rpc_port),
        peers: vec![Peer { consensus_key: public_key_of_seed(seed), address: local(p2p_port) }],
        leader_timeout_ms: 1_000,
        certification_timeout_ms: 2_000,
        block_interval_ms: 200,
        state_history: crate::node::DEFAULT_STATE_HISTORY,
        rpc_requests_per_sec: tensorgrid_node::rpc::ApiLimits::default().requests_per_sec,
    };
    Home::create(dir, &spec, &config, seed)?;
    Ok(true)
}

/// One validator of a local testnet.
#[derive(Clone, Debug)]
pub struct TestnetNode {
    pub home: PathBuf,
    pub p2p: SocketAddr,
    pub rpc: SocketAddr,
}

/// Writes `n` validator homes under `dir` (`validator-0` …) sharing one chain spec, each listing all the
/// others as peers. Validator `i` listens for p2p on `base_port + 2i` and serves the API on `base_port + 2i
/// + 1`, all on 127.0.0.1.
pub fn prepare_testnet(
    dir: &Path,
    n: usize,
    base_port: u16,
    accounts: Vec<GenesisAccount>,
    blocks_per_epoch: u64,
) -> Result<Vec<TestnetNode>, NodeError> {
    if n == 0 {
        return Err(NodeError::Invalid {
            path: dir.into(),
            reason: "a testnet needs at least one validator".into(),
        });
    }
    let port = |i: usize, offset: usize| -> Result<u16, NodeError> {
        u16::try_from(usize::from(base_port) + 2 * i + offset).map_err(|_| NodeError::Invalid {
            path: dir.into(),
            reason: format!("ports from {base_port} do not fit {n} validators"),
        })
    };
    let seeds: Vec<[u8; 32]> = (0..n).map(|_| random_seed()).collect();
    let spec = local_spec("tg-testnet", accounts, &seeds, blocks_per_epoch);
    let mut peers = Vec::new();
    for (i, seed) in seeds.iter().enumerate() {
        peers.push(Peer { consensus_key: public_key_of_seed(*seed), address: local(port(i, 0)?) });
    }
    let mut nodes = Vec::new();
    for (i, seed) in seeds.iter().enumerate() {
        let home = dir.join(format!("validator-{i}"));
        let config = NodeConfig {
            name: format!("validator-{i}"),
            p2p_listen: local(port(i, 0)?),
            rpc_listen: local(port(i, 1)?),
            peers: peers.clone(),
            leader_timeout_ms: 1_000,
            certification_timeout_ms: 2_000,
            block_interval_ms: 200,
            state_history: crate::node::DEFAULT_STATE_HISTORY,
            rpc_requests_per_sec: tensorgrid_node::rpc::ApiLimits::default().requests_per_sec,
        };
        Home::create(&home, &spec, &config, *seed)?;
        nodes.push(TestnetNode { home, p2p: config.p2p_listen, rpc: config.rpc_listen });
    }
    Ok(nodes)
}
