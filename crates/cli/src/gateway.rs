//! `tgrid gateway --config gateway.toml`: runs the OpenAI-compatible gateway (see the gateway crate).

use std::path::Path;

use crate::ctx::Ctx;
use crate::emit_line;

pub(crate) fn run(ctx: &Ctx, config: &Path) -> anyhow::Result<()> {
    crate::init_logging();
    let file = tensorgrid_gateway::GatewayFile::load(config)?;
    let mut keys = Vec::with_capacity(file.keys.len());
    for entry in &file.keys {
        keys.push(tensorgrid_gateway::ApiKey {
            token: entry.token.clone(),
            account: ctx.unlock(&entry.account)?,
            channels: entry.channels.clone(),
            ceiling: entry.ceiling(),
        });
    }
    let config = tensorgrid_gateway::GatewayConfig {
        node: file.node,
        listen: file.listen,
        keys,
        refresh: file.refresh,
        data_dir: file.data_dir,
        models: file.models,
        limits: file.limits,
        allow_private_providers: file.allow_private_providers,
    };
    ctx.block_on(async move {
        let running = tensorgrid_gateway::start(config).await?;
        emit_line(&format!("gateway: http://{}/v1 (OpenAI-compatible)", running.addr))?;
        std::future::pending::<()>().await;
        Ok(())
    })
}
