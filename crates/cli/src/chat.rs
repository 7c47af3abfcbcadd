//! `tgrid chat "question"`: one question to a model through an OpenAI-compatible gateway, the answer streamed
//! to stdout as it arrives. Without flags it talks to the devnet whose `--home` it is given (the devnet
//! writes `gateway.json` there with the gateway's URL, an API key and the model).

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::chain::GatewayAccess;
use crate::ctx::Ctx;
use crate::Output;

#[derive(Debug, clap::Args)]
pub(crate) struct ChatArgs {
    /// The question.
    pub(crate) prompt: String,
    /// The model's name as the gateway lists it (`GET /v1/models`).
    #[arg(long, short)]
    pub(crate) model: Option<String>,
    /// The gateway's base URL, e.g. http://127.0.0.1:26680/v1.
    #[arg(long, env = "TGRID_GATEWAY")]
    pub(crate) gateway: Option<String>,
    /// The API key.
    #[arg(long, env = "TGRID_API_KEY", hide_env_values = true)]
    pub(crate) api_key: Option<String>,
    /// A system message before the question.
    #[arg(long)]
    pub(crate) system: Option<String>,
    #[arg(long, default_value_t = 256)]
    pub(crate) max_tokens: u32,
    #[arg(long, default_value_t = 0.7)]
    pub(crate) temperature: f64,
    /// Makes the answer repeatable.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
}

fn devnet_access(home: &std::path::Path) -> Option<GatewayAccess> {
    let path: PathBuf = home.join("gateway.json");
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

pub(crate) fn run(ctx: &Ctx, args: ChatArgs) -> anyhow::Result<()> {
    let access = devnet_access(&ctx.home);
    let gateway = args.gateway.or_else(|| access.as_ref().map(|a| a.url.clone())).context(
        "no gateway: pass --gateway URL (or TGRID_GATEWAY), or --home of a devnet started with --model",
    )?;
    let api_key = args
        .api_key
        .or_else(|| access.as_ref().map(|a| a.api_key.clone()))
        .context("no API key: pass --api-key (or TGRID_API_KEY)")?;
    let model = args
        .model
        .or_else(|| access.as_ref().map(|a| a.model.clone()).filter(|m| !m.is_empty()))
        .context("no model: pass --model NAME (see GET /v1/models)")?;
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(json!({ "role": "system", "content": system }));
    }
    messages.push(json!({ "role": "user", "content": args.prompt }));
    let mut body = json!({
        "model": model,
        "messages": messages,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "stream": true,
        "stream_options": { "include_usage": true },
    });
    if let Some(seed) = args.seed {
        body["seed"] = json!(seed);
    }
    let url = format!("{}/chat/completions", gateway.trim_end_matches('/'));
    let json_output = ctx.output == Output::Json;
    ctx.block_on(async move {
        let response = reqwest::Client::new()
            .post(&url)
            .bearer_auth(&api_key)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("cannot reach the gateway at {url}"))?;
        let status = response.status();
        if !status.is_success() {
            let error: Value = response.json().await.unwrap_or(Value::Null);
            let message = error["error"]["message"].as_str().unwrap_or("no details").to_string();
            anyhow::bail!("the gateway answered {status}: {message}");
        }
        let mut text = String::new();
        let mut usage = Value::Null;
        let mut finish = Value::Null;
        let mut buffer = Vec::new();
        let mut bytes = response.bytes_stream();
        let mut stdout = std::io::stdout();
        while let Some(chunk) = bytes.next().await {
            buffer.extend_from_slice(&chunk.context("the answer's stream broke")?);
            while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                let Some(data) = line.trim().strip_prefix("data:").map(str::trim) else { continue };
                if data == "[DONE]" {
                    continue;
                }
                let event: Value =
                    serde_json::from_str(data).context("a malformed event from the gateway")?;
                if let Some(message) = event["error"]["message"].as_str() {
                    anyhow::bail!("the answer broke off: {message}");
                }
                if !event["usage"].is_null() {
                    usage = event["usage"].clone();
                }
                if let Some(choice) = event["choices"].get(0) {
                    if let Some(piece) = choice["delta"]["content"].as_str() {
                        text.push_str(piece);
                        if !json_output {
                            write!(stdout, "{piece}")?;
                            stdout.flush()?;
                        }
                    }
                    if !choice["finish_reason"].is_null() {
                        finish = choice["finish_reason"].clone();
                    }
                }
            }
        }
        if json_output {
            crate::print_json(
                &json!({ "model": model, "content": text, "finish_reason": finish, "usage": usage }),
            )?;
        } else {
            writeln!(stdout)?;
        }
        Ok(())
    })
}
