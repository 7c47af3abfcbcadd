//! Wires one validator together: simplex consensus, marshal (ordered delivery of finalized blocks, backfill,
//! durable archives of blocks and finalization certificates), block broadcast, the application and the
//! mempool gossip. Generic over the runtime and the p2p network, so the same code runs under the tokio
//! runtime on real sockets and under the deterministic runtime on the simulated network.

use std::num::{NonZeroU16, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use commonware_broadcast::buffered;
use commonware_codec::DecodeExt;
use commonware_consensus::marshal::core::Actor as MarshalActor;
use commonware_consensus::marshal::resolver::p2p as marshal_resolver;
use commonware_consensus::marshal::standard::Inline;
use commonware_consensus::marshal::{self, Start};
use commonware_consensus::simplex::config::{Floor, ForwardPolicy, SkipBudget, SkipPolicy};
use commonware_consensus::simplex::elector::RoundRobin;
use commonware_consensus::simplex::{self};
use commonware_consensus::types::{Epoch, Epocher as _, FixedEpocher, ViewDelta};
use commonware_cryptography::certificate::{ConstantProvider, Verifier as _};
use commonware_cryptography::ed25519::{PrivateKey, PublicKey};
use commonware_cryptography::sha256::Sha256;
use commonware_cryptography::{Digested, Digestible, Signer as _};
use commonware_p2p::utils::mux::{Builder as _, MuxHandle, Muxer};
use commonware_p2p::{Blocker, Provider, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::buffer::paged::CacheRef;
use commonware_runtime::{Clock, Handle, Metrics, Spawner, Storage};
use commonware_storage::archive::immutable;
use commonware_utils::ordered::Set;
use commonware_utils::{NZDuration, NZUsize, NZU16, NZU64};
use cw_rand::{CryptoRng, Rng};

use crate::app::{start_executor, App, Chain};
use crate::block::Block;
use crate::mempool::{start_gossip, Gossip};
use crate::{Scheme, NAMESPACE};

/// The p2p channels a validator uses, one per kind of traffic.
pub mod channels {
    pub const VOTES: u64 = 0;
    pub const CERTIFICATES: u64 = 1;
    pub const RESOLVER: u64 = 2;
    pub const BACKFILL: u64 = 3;
    pub const BLOCKS: u64 = 4;
    pub const MEMPOOL: u64 = 5;
    pub const ALL: [u64; 6] = [VOTES, CERTIFICATES, RESOLVER, BACKFILL, BLOCKS, MEMPOOL];
}

/// Blocks per epoch. The validator set is fixed at genesis until the staking issue drives changes; an epoch
/// this long means one epoch covers the chain's life until then, and the boundary logic (marshal re-proposes
/// the last block of an epoch) is exercised only by tests that shrink it.
pub const BLOCKS_PER_EPOCH: u64 = 1 << 40;

const PAGE_SIZE: NonZeroU16 = NZU16!(4096);
const PAGE_CACHE_PAGES: NonZeroUsize = NZUsize!(1024);
/// Read and write buffer of each journal and archive. Journals open a buffer per section, so a large one
/// costs a fresh allocation (and page faults) per section rather than speed.
const IO_BUFFER: NonZeroUsize = NZUsize!(64 << 10);

/// Timeouts and sizes of one validator's engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub signer: PrivateKey,
    pub participants: Vec<PublicKey>,
    /// Storage partitions are named after this, so two validators in one process never share one.
    pub partition_prefix: String,
    pub genesis: Block,
    pub leader_timeout: Duration,
    pub certification_timeout: Duration,
    pub timeout_retry: Duration,
    pub fetch_timeout: Duration,
    pub mailbox_size: usize,
    pub blocks_per_epoch: u64,
    /// The least time between a block and its child (see [`App`]).
    pub block_interval: Duration,
}

impl EngineConfig {
    pub fn new(
        signer: PrivateKey,
        participants: Vec<PublicKey>,
        partition_prefix: String,
        genesis: Block,
    ) -> Self {
        EngineConfig {
            signer,
            participants,
            partition_prefix,
            genesis,
            leader_timeout: Duration::from_secs(1),
            certification_timeout: Duration::from_secs(2),
            timeout_retry: Duration::from_secs(5),
            fetch_timeout: Duration::from_secs(1),
            mailbox_size: 1024,
            blocks_per_epoch: BLOCKS_PER_EPOCH,
            block_interval: Duration::from_millis(200),
        }
    }
}

/// The network side of a validator: a sender and receiver per channel in [`channels`], a view of the peer
/// set, and a way to block misbehaving peers.
#[derive(Debug)]
pub struct Network<S, R, P, B> {
    pub votes: (S, R),
    pub certificates: (S, R),
    pub resolver: (S, R),
    pub backfill: (S, R),
    pub blocks: (S, R),
    pub mempool: (S, R),
    pub peers: P,
    pub blocker: B,
}

impl<S, R, P, B> Network<S, R, P, B> {
    /// A network from one registration per channel of [`channels::ALL`], in that order (`register` is
    /// called with each channel number).
    pub async fn register<F, Fut>(mut register: F, peers: P, blocker: B) -> Network<S, R, P, B>
    where
        F: FnMut(u64) -> Fut,
        Fut: std::future::Future<Output = (S, R)>,
    {
        Network {
            votes: register(channels::VOTES).await,
            certificates: register(channels::CERTIFICATES).await,
            resolver: register(channels::RESOLVER).await,
            backfill: register(channels::BACKFILL).await,
            blocks: register(channels::BLOCKS).await,
            mempool: register(channels::MEMPOOL).await,
            peers,
            blocker,
        }
    }
}

/// The running validator's handles.
pub struct Validator {
    pub chain: Arc<Chain>,
    /// Hands transactions admitted locally to the other validators.
    pub gossip: Gossip,
    pub handles: Vec<Handle<()>>,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator").field("chain", &self.chain).field("tasks", &self.handles.len()).finish()
    }
}

impl Validator {
    /// Stops every task of this validator (what a crash looks like to the others).
    pub fn abort(self) {
        for handle in self.handles {
            handle.abort();
        }
    }
}

/// Starts a validator whose ledger (with genesis applied) is in `chain`.
pub async fn start<E, S, R, P, B>(
    context: E,
    config: EngineConfig,
    chain: Arc<Chain>,
    network: Network<S, R, P, B>,
) -> Validator
where
    E: Clock + CryptoRng + Rng + Spawner + Storage + Metrics,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
    P: Provider<PublicKey = PublicKey>,
    B: Blocker<PublicKey = PublicKey>,
{
    let me = config.signer.public_key();
    let participants: Set<PublicKey> = Set::from_iter_dedup(config.participants.iter().cloned());
    let scheme = Scheme::signer(NAMESPACE, participants, config.signer.clone())
        .expect("the validator's key is in the genesis validator set (checked when the home was loaded)");
    let mailbox_size = NZUsize!(config.mailbox_size.max(1));
    let page_cache = CacheRef::new(PAGE_SIZE, PAGE_CACHE_PAGES);
    let prefix = config.partition_prefix.clone();
    let epocher = FixedEpocher::new(NZU64!(config.blocks_per_epoch.max(1)));
    let mut handles = Vec::new();

    let (resolver_rx, resolver) = marshal_resolver::init(
        context.child("marshal_resolver"),
        marshal_resolver::Config {
            public_key: me.clone(),
            peer_provider: network.peers.clone(),
            blocker: network.blocker.clone(),
            mailbox_size,
            fetch_timeout: NZDuration!(Duration::from_secs(2)),
            fetch_retry_delay: Duration::from_millis(100),
            priority_requests: false,
            priority_responses: false,
        },
        network.backfill,
    );

    let (broadcast_engine, buffer) = buffered::Engine::new(
        context.child("broadcast"),
        buffered::Config {
            public_key: me.clone(),
            mailbox_size,
            deque_size: 16,
            priority: false,
            codec_config: (),
            peer_provider: network.peers.clone(),
            strategy: Sequential,
        },
    );
    handles.push(broadcast_engine.start(network.blocks));

    let finalizations = immutable::Archive::init(
        context.child("finalizations_by_height"),
        archive_config(
            &prefix,
            "finalizations",
            page_cache.clone(),
            Scheme::certificate_codec_config_unbounded(),
        ),
    )
    .await
    .expect("the finalization archive opens (a storage failure at startup is fatal)");
    let blocks = immutable::Archive::init(
        context.child("finalized_blocks"),
        archive_config(&prefix, "blocks", page_cache.clone(), ()),
    )
    .await
    .expect("the block archive opens (a storage failure at startup is fatal)");

    let genesis_digest = config.genesis.digest();
    let (marshal_actor, marshal, _floor) = MarshalActor::init(
        context.child("marshal"),
        finalizations,
        blocks,
        marshal::Config {
            provider: ConstantProvider::<Scheme, Epoch>::new(scheme.clone()),
            epocher: epocher.clone(),
            start: Start::Genesis(Digested::precomputed(config.genesis.clone(), genesis_digest)),
            partition_prefix: format!("{prefix}-marshal"),
            mailbox_size,
            view_retention: ViewDelta::new(10),
            prunable_items_per_section: NZU64!(64),
            page_cache: page_cache.clone(),
            replay_buffer: IO_BUFFER,
            key_write_buffer: IO_BUFFER,
            value_write_buffer: IO_BUFFER,
            block_codec_config: (),
            max_repair: NZUsize!(32),
            max_pending_acks: NZUsize!(16),
            strategy: Sequential,
        },
    )
    .await;

    let (finalizer, executor) = start_executor(context.child("executor"), chain.clone());
    handles.push(executor);
    handles.push(marshal_actor.start(finalizer, buffer, (resolver_rx, resolver)));

    let (gossip, gossip_handle) = start_gossip(context.child("mempool"), chain.clone(), network.mempool);
    handles.push(gossip_handle);

    let wrapper = Inline::new(
        context.child("application"),
        App::new(chain.clone(), config.block_interval),
        marshal.clone(),
        epocher.clone(),
    );
    // Each epoch runs its own simplex instance on its own subchannels of the three consensus channels, so
    // an instance never sees another epoch's messages.
    // Votes for epochs this validator has not reached land in the backup queue: they tell it the network
    // moved on, and from whom to fetch the finalized blocks it missed.
    let (votes_mux, votes, ahead) =
        Muxer::builder(context.child("votes_mux"), network.votes.0, network.votes.1).with_backup().build();
    let (certificates_mux, certificates) =
        Muxer::new(context.child("certificates_mux"), network.certificates.0, network.certificates.1);
    let (resolver_mux, resolver) =
        Muxer::new(context.child("resolver_mux"), network.resolver.0, network.resolver.1);
    for mux in [votes_mux.start(), certificates_mux.start(), resolver_mux.start()] {
        handles.push(context.child("mux").spawn(move |_| async move {
            let _ = mux.await;
        }));
    }
    let epochs = Epochs {
        marshal,
        config,
        chain: chain.clone(),
        epocher,
        wrapper,
        blocker: network.blocker,
        genesis_digest,
        page_cache,
        mailbox_size,
        prefix,
    };
    handles.push(
        context
            .child("epochs")
            .spawn(move |context| epochs.run(context, votes, certificates, resolver, ahead)),
    );
    Validator { chain, gossip, handles }
}

fn archive_config<C>(
    prefix: &str,
    name: &str,
    page_cache: CacheRef,
    codec_config: C,
) -> immutable::Config<C> {
    immutable::Config {
        metadata_partition: format!("{prefix}-{name}-metadata"),
        freezer_table_partition: format!("{prefix}-{name}-freezer-table"),
        freezer_table_initial_size: 1024,
        freezer_table_resize_frequency: 4,
        freezer_table_resize_chunk_size: 256,
        freezer_key_partition: format!("{prefix}-{name}-freezer-key"),
        freezer_key_page_cache: page_cache,
        freezer_value_partition: format!("{prefix}-{name}-freezer-value"),
        freezer_value_target_size: 64 << 20,
        freezer_value_compression: None,
        ordinal_partition: format!("{prefix}-{name}-ordinal"),
        items_per_section: NZU64!(1024),
        codec_config,
        replay_buffer: IO_BUFFER,
        freezer_key_write_buffer: IO_BUFFER,
        freezer_value_write_buffer: IO_BUFFER,
        ordinal_write_buffer: IO_BUFFER,
    }
}

/// The validators of an epoch. The set is the genesis set until the staking issue makes it come from the
/// ledger's state at the previous epoch's last block; this is the one place that will change.
fn validators_for(config: &EngineConfig, _epoch: Epoch) -> Set<PublicKey> {
    Set::from_iter_dedup(config.participants.iter().cloned())
}

/// Runs one simplex instance per epoch: when this validator has committed the last block of an epoch, the
/// instance of the next epoch starts from that block (its genesis: marshal re-proposes an epoch's last block
/// instead of building past it) and the previous instance stops.
struct Epochs<W, B> {
    marshal: marshal::core::Mailbox<Scheme, marshal::standard::Standard<Block>>,
    config: EngineConfig,
    chain: Arc<Chain>,
    epocher: FixedEpocher,
    wrapper: W,
    blocker: B,
    genesis_digest: commonware_cryptography::sha256::Digest,
    page_cache: CacheRef,
    mailbox_size: NonZeroUsize,
    prefix: String,
}

impl<W, B> Epochs<W, B>
where
    W: commonware_consensus::CertifiableAutomaton<
            Context = commonware_consensus::simplex::types::Context<
                commonware_cryptography::sha256::Digest,
                PublicKey,
            >,
            Digest = commonware_cryptography::sha256::Digest,
        > + commonware_consensus::Relay<
            Digest = commonware_cryptography::sha256::Digest,
            PublicKey = PublicKey,
            Plan = simplex::Plan<PublicKey>,
        > + commonware_consensus::Reporter<
            Activity = simplex::types::Activity<Scheme, commonware_cryptography::sha256::Digest>,
        >,
    B: Blocker<PublicKey = PublicKey>,
{
    /// The epoch of the next block this validator will commit.
    fn current(&self) -> Epoch {
        let next = commonware_consensus::types::Height::new(self.chain.committed_height() + 1);
        self.epocher.containing(next).map(|info| info.epoch()).unwrap_or(Epoch::zero())
    }

    /// The block an epoch's instance starts from: genesis, or the previous epoch's last block.
    fn floor(&self, epoch: Epoch) -> Option<commonware_cryptography::sha256::Digest> {
        let Some(previous) = epoch.get().checked_sub(1) else { return Some(self.genesis_digest) };
        let last = self.epocher.last(Epoch::new(previous))?.get();
        let record = self.chain.block(last).ok().flatten()?;
        let bytes = hex::decode(record.digest).ok()?;
        commonware_cryptography::sha256::Digest::decode(bytes::Bytes::from(bytes)).ok()
    }

    async fn run<E, S>(
        self,
        context: E,
        mut votes: MuxHandle<S>,
        mut certificates: MuxHandle<S>,
        mut resolver: MuxHandle<S>,
        mut ahead: commonware_utils::channel::mpsc::Receiver<(u64, (PublicKey, commonware_runtime::IoBuf))>,
    ) where
        E: Clock + CryptoRng + Rng + Spawner + Storage + Metrics,
        S: Sender<PublicKey = PublicKey>,
    {
        // The epoch whose subchannels are registered, and its instance if this validator is in its set.
        let mut running: Option<(Epoch, Option<Handle<()>>)> = None;
        let mut last_hint = 0u64;
        loop {
            let epoch = self.current();
            if running.as_ref().map(|(e, _)| *e) != Some(epoch) {
                if let Some((_, Some(handle))) = running.take() {
                    handle.abort();
                }
                let Some(floor) = self.floor(epoch) else {
                    tracing::error!(
                        epoch = epoch.get(),
                        "no record of the previous epoch's last block; stopping"
                    );
                    return;
                };
                let sub = epoch.get();
                let (Ok(v), Ok(c), Ok(r)) = (
                    votes.register(sub).await,
                    certificates.register(sub).await,
                    resolver.register(sub).await,
                ) else {
                    tracing::error!(epoch = sub, "the epoch's subchannels are already taken; stopping");
                    return;
                };
                let Some(scheme) = Scheme::signer(
                    NAMESPACE,
                    validators_for(&self.config, epoch),
                    self.config.signer.clone(),
                ) else {
                    tracing::warn!(epoch = sub, "not a validator of this epoch; following only");
                    running = Some((epoch, None));
                    continue;
                };
                tracing::info!(epoch = sub, "starting the epoch's consensus instance");
                let engine = self.instance(&context, epoch, floor, scheme);
                running = Some((epoch, Some(engine.start(v, c, r))));
            }
            let committed = self.chain.committed_height();
            commonware_macros::select! {
                _ = self.chain.wait_committed(committed + 1) => {},
                message = ahead.recv() => {
                    let Some((sub, (peer, _))) = message else { continue };
                    self.catch_up(epoch, Epoch::new(sub), peer, &mut last_hint);
                },
            }
        }
    }

    /// A peer voting in a later epoch has finalized the last block of the epoch before it: ask marshal to
    /// fetch that finalization from the peer, which backfills every block in between.
    fn catch_up(&self, ours: Epoch, theirs: Epoch, peer: PublicKey, last_hint: &mut u64) {
        if theirs <= ours {
            return;
        }
        let Some(target) = theirs.get().checked_sub(1).and_then(|e| self.epocher.last(Epoch::new(e))) else {
            return;
        };
        if target.get() <= self.chain.committed_height() || target.get() <= *last_hint {
            return;
        }
        *last_hint = target.get();
        tracing::info!(
            ours = ours.get(),
            theirs = theirs.get(),
            height = target.get(),
            "behind; fetching finalized blocks"
        );
        self.marshal.hint_finalized(target, commonware_utils::vec::NonEmptyVec::new(peer));
    }

    #[allow(clippy::type_complexity)]
    fn instance<E>(
        &self,
        context: &E,
        epoch: Epoch,
        floor: commonware_cryptography::sha256::Digest,
        scheme: Scheme,
    ) -> simplex::Engine<
        E,
        Scheme,
        RoundRobin<Sha256>,
        B,
        commonware_cryptography::sha256::Digest,
        W,
        W,
        W,
        Sequential,
    >
    where
        E: Clock + CryptoRng + Rng + Spawner + Storage + Metrics,
    {
        let config = &self.config;
        simplex::Engine::new(
            context.child("simplex").with_attribute("epoch", epoch.get()),
            simplex::config::Config {
                scheme,
                elector: RoundRobin::<Sha256>::default(),
                blocker: self.blocker.clone(),
                automaton: self.wrapper.clone(),
                relay: self.wrapper.clone(),
                reporter: self.wrapper.clone(),
                strategy: Sequential,
                partition: format!("{}-simplex-{}", self.prefix, epoch.get()),
                mailbox_size: self.mailbox_size,
                epoch,
                floor: Floor::Genesis(floor),
                replay_buffer: IO_BUFFER,
                write_buffer: IO_BUFFER,
                page_cache: self.page_cache.clone(),
                leader_timeout: config.leader_timeout,
                certification_timeout: config.certification_timeout,
                timeout_retry: config.timeout_retry,
                view_retention: ViewDelta::new(10),
                skip: SkipPolicy::Enabled {
                    timeout: config.certification_timeout * 3,
                    budget: SkipBudget::Participants,
                },
                fetch_timeout: NZDuration!(config.fetch_timeout.max(Duration::from_millis(1))),
                fetch_retry_delay: Duration::from_millis(100),
                forward: ForwardPolicy::Disabled,
                track_historical_votes: false,
            },
        )
    }
}
